#!/usr/bin/env bash
# The main job: bring up a local Twill network with one command and run a
# demo transaction. `twill network up` generates the crypto material and the
# genesis block of `mychannel`, starts three Raft orderers and a peer of
# Org1 and of Org2 as processes (no Docker), joins them to the channel,
# deploys the Rust asset-transfer chaincode as `basic` (approved by both
# orgs, committed), submits a CreateAsset and reads it back. The network
# keeps running; the script ends with its status and how to stop it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked -q -p twill-cli -p twill-peer -p twill-orderer -p asset-transfer
twill=target/release/twill
state=.twill-network

# A network left by an earlier run is stopped and removed first.
"$twill" network down --state-dir "$state" --clean >/dev/null 2>&1 || true

"$twill" network up --state-dir "$state"
echo
"$twill" network status --state-dir "$state"
echo
echo "Logs: $state/logs/. Stop the network with:"
echo "  $twill network down --state-dir $state --clean"
