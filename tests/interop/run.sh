#!/usr/bin/env bash
# Runs the Fabric interop suite. Expects target/debug/twill to be built
# already (cargo build), or TWILL_BIN to point at a twill binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v npm >/dev/null 2>&1; then
  echo "tests/interop: npm not found; Node.js 20+ is required" >&2
  exit 1
fi

npm ci --no-audit --no-fund
npm test
