#!/usr/bin/env bash
# The Fabric interop suite: Twill against Hyperledger Fabric's own npm
# packages (protobuf classes, the Fabric Gateway client, Node chaincode,
# Caliper). See README.md.
#
# 1. `npm ci` here and in caliper/ (exact versions from the lock files);
# 2. the Node chaincode's node_modules (its install.sh, a no-op when current);
# 3. `twill network up` in a temp dir: 3 Raft orderers, a peer of Org1 and
#    of Org2, mychannel, the Rust asset-transfer deployed as `basic`;
# 4. deploys the Node asset-transfer as `basic-node`, a chaincode-as-a-service
#    package whose server this script starts (fabric-chaincode-node server);
# 5. `npm test` (node --test) with TWILL_INTEROP_NETWORK set to the state dir;
# 6. a short Caliper 0.6.0 benchmark (caliper/run.mjs), failing on any failed
#    transaction.
# The network is stopped and its folder removed on exit, whatever happened
# (TWILL_INTEROP_KEEP_TMP=1 keeps the folder, logs included).
#
# Needs the binaries built (`cargo build --workspace --bins`): TWILL_BIN names
# the twill binary (default ../../target/debug/twill); twill-peer,
# twill-orderer and asset-transfer are taken from its folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "tests/interop: $tool not found; Node.js 20+ is required" >&2
    exit 1
  fi
done

TWILL_BIN="${TWILL_BIN:-$repo/target/debug/twill}"
if [ ! -x "$TWILL_BIN" ]; then
  echo "tests/interop: twill binary not found at $TWILL_BIN; build it with" \
    "\`cargo build --workspace --bins\` or set TWILL_BIN" >&2
  exit 1
fi
TWILL_BIN="$(cd "$(dirname "$TWILL_BIN")" && pwd)/$(basename "$TWILL_BIN")"
export TWILL_BIN
# twill-ca is built next to twill (ca.test.mjs starts it).
export TWILL_CA_BIN="${TWILL_CA_BIN:-$(dirname "$TWILL_BIN")/twill-ca}"

timings=()
step_started=0
step_name=""
now() { date +%s.%N; }
step() {
  finish_step
  step_name="$1"
  step_started="$(now)"
  printf '\n==> %s\n' "$1"
}
finish_step() {
  if [ -n "$step_name" ]; then
    timings+=("$(awk -v a="$step_started" -v b="$(now)" -v n="$step_name" \
      'BEGIN { printf "%7.1fs  %s", b - a, n }')")
    step_name=""
  fi
}
print_timings() {
  finish_step
  if [ "${#timings[@]}" -gt 0 ]; then
    printf '\ntests/interop timings:\n'
    printf '  %s\n' "${timings[@]}"
  fi
}

# ---------------------------------------------------------------------------
# Clean-up, whatever happens
# ---------------------------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/twill-interop.XXXXXX")"
state="$tmp/network"
cc_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  finish_step
  if [ -n "$cc_pid" ] && kill -0 "$cc_pid" 2>/dev/null; then
    kill "$cc_pid" 2>/dev/null
    wait "$cc_pid" 2>/dev/null
  fi
  step "twill network down"
  if [ "${TWILL_INTEROP_KEEP_TMP:-}" = 1 ]; then
    "$TWILL_BIN" network down --state-dir "$state" >/dev/null
    echo "tests/interop: kept $tmp (network stopped; logs in $state/logs)"
  else
    if [ "$rc" -ne 0 ] && [ -d "$state/logs" ]; then
      echo "tests/interop: failed (exit $rc); last lines of the node logs:" >&2
      for log in "$state"/logs/*.log; do
        printf '\n--- %s\n' "$log" >&2
        tail -n 15 "$log" >&2
      done
    fi
    "$TWILL_BIN" network down --state-dir "$state" --clean >/dev/null
    rm -rf "$tmp"
  fi
  print_timings
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# npm packages
# ---------------------------------------------------------------------------
# --ignore-scripts: nothing here needs an install script, and it keeps npm
# from compiling optional native add-ons (pkcs11js, ssh2's crypto binding).
step "npm ci (tests/interop, tests/interop/caliper)"
npm ci --no-audit --no-fund --ignore-scripts
(cd caliper && npm ci --no-audit --no-fund --ignore-scripts)

step "Node chaincode dependencies (chaincode-examples/asset-transfer-node/install.sh)"
node_cc="$repo/chaincode-examples/asset-transfer-node"
"$node_cc/install.sh"

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------
step "twill network up --state-dir $state"
"$TWILL_BIN" network up --state-dir "$state"

org_dir() { echo "$state/organizations/peerOrganizations/org$1.example.com"; }
peer_addr() {
  node -e '
    const net = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const n = net.nodes.find((n) => n.name === process.argv[2]);
    if (!n) { console.error(`no ${process.argv[2]} in network.json`); process.exit(1); }
    console.log(n.address);' "$state/network.json" "$1"
}
orderer="$(peer_addr orderer0)"
orderer_ca="$state/organizations/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem"
peer1="$(peer_addr peer0.org1.example.com)"
peer2="$(peer_addr peer0.org2.example.com)"
ca1="$(org_dir 1)/tlsca/tlsca.org1.example.com-cert.pem"
ca2="$(org_dir 2)/tlsca/tlsca.org2.example.com-cert.pem"

# `twill` as org $1's admin.
as_admin() {
  local org="$1"
  shift
  CORE_PEER_MSPCONFIGPATH="$(org_dir "$org")/users/Admin@org$org.example.com/msp" \
    CORE_PEER_LOCALMSPID="Org${org}MSP" "$TWILL_BIN" "$@"
}
peer_of() { if [ "$1" = 1 ]; then echo "--peer-address $peer1 --tls-ca $ca1"; else echo "--peer-address $peer2 --tls-ca $ca2"; fi; }

# ---------------------------------------------------------------------------
# basic-node: the Node chaincode as a service
# ---------------------------------------------------------------------------
step "deploy basic-node (Node chaincode as a service: package, install x2, approve x2, commit)"
cc_port="$(node -e '
  const s = require("net").createServer().listen(0, "127.0.0.1", () => {
    console.log(s.address().port); s.close(); });')"
mkdir -p "$tmp/basic-node"
printf '{"address": "127.0.0.1:%s", "dial_timeout": "10s", "tls_required": false}\n' \
  "$cc_port" >"$tmp/basic-node/connection.json"
as_admin 1 chaincode package "$tmp/basic-node.tar.gz" --path "$tmp/basic-node" \
  --lang ccaas --label basic-node_1.0
package_id=""
for org in 1 2; do
  # shellcheck disable=SC2046
  out="$(as_admin "$org" chaincode install "$tmp/basic-node.tar.gz" $(peer_of "$org"))"
  echo "$out"
  id="$(echo "$out" | sed -n 's/^Chaincode code package identifier: *//p')"
  if [ -z "$id" ] || { [ -n "$package_id" ] && [ "$id" != "$package_id" ]; }; then
    echo "tests/interop: unexpected package id '$id' from Org$org's peer" >&2
    exit 1
  fi
  package_id="$id"
done

# The chaincode server; the peers dial it at the address in connection.json.
# The chaincode module is its folder (package.json "main"): run from there.
(
  cd "$node_cc"
  CHAINCODE_SERVER_ADDRESS="127.0.0.1:$cc_port" CHAINCODE_ID="$package_id" \
    exec node node_modules/.bin/fabric-chaincode-node server \
    --chaincode-address "127.0.0.1:$cc_port" --chaincode-id "$package_id"
) >"$state/logs/basic-node.log" 2>&1 </dev/null &
cc_pid=$!
for _ in $(seq 1 200); do
  if node -e '
    const c = require("net").connect(+process.argv[1], "127.0.0.1");
    c.on("connect", () => process.exit(0)); c.on("error", () => process.exit(1));' "$cc_port"; then
    break
  fi
  if ! kill -0 "$cc_pid" 2>/dev/null; then
    echo "tests/interop: the Node chaincode server exited; see its log:" >&2
    cat "$state/logs/basic-node.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "Node chaincode server listening on 127.0.0.1:$cc_port (pid $cc_pid)"

definition=(-C mychannel -n basic-node -v 1.0 --sequence 1)
for org in 1 2; do
  # shellcheck disable=SC2046
  as_admin "$org" chaincode approveformyorg "${definition[@]}" --package-id "$package_id" \
    $(peer_of "$org") --orderer "$orderer" --orderer-tls-ca "$orderer_ca"
done
# shellcheck disable=SC2046
as_admin 1 chaincode commit "${definition[@]}" $(peer_of 1) $(peer_of 2) \
  --orderer "$orderer" --orderer-tls-ca "$orderer_ca"
# shellcheck disable=SC2046
as_admin 1 chaincode querycommitted -C mychannel -n basic-node $(peer_of 1)

# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------
export TWILL_INTEROP_NETWORK="$state"
step "npm test (node --test: genesis block, Fabric Gateway client)"
npm test

step "Caliper 0.6.0 benchmark (peer-gateway connector)"
(cd caliper && node run.mjs)
finish_step
echo
echo "tests/interop: all passed"
