#!/usr/bin/env bash
# Installs the Node dependencies of the asset-transfer-node chaincode exactly as
# pinned in package-lock.json. Safe to call repeatedly: when node_modules was
# already installed from the same lock file (and the same Node major version),
# it does nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install.sh: '$tool' not found on PATH; Node.js >= 18 is required" >&2
        exit 1
    fi
done

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
    echo "install.sh: Node.js >= 18 is required, found $(node --version)" >&2
    exit 1
fi

if [ ! -f package-lock.json ]; then
    echo "install.sh: package-lock.json is missing in $here" >&2
    exit 1
fi

# The stamp lives inside node_modules so that `npm ci` (which wipes
# node_modules) or a manual `rm -rf node_modules` invalidates it too.
stamp_file="node_modules/.twill-install-stamp"
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
wanted="lock=${lock_hash} node=${node_major}"

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$wanted" ] \
    && [ -d node_modules/fabric-shim ] && [ -d node_modules/fabric-contract-api ]; then
    echo "install.sh: node_modules is up to date with package-lock.json, skipping npm ci"
    exit 0
fi

echo "install.sh: running npm ci in $here"
npm ci --no-audit --no-fund
printf '%s\n' "$wanted" > "$stamp_file"
echo "install.sh: done"
