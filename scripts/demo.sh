#!/usr/bin/env bash
# The main job, as far as Twill goes today: generate the test network's crypto
# material and the genesis block of `mychannel`, show what was made, then
# bring up three Raft orderers as processes, join them to a channel and order
# signed transactions for a few seconds. (Peers, chaincode and the gateway
# come with later issues; this script will then run a full transaction.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --locked -q -p twill-cli -p twill-orderer
twill=target/debug/twill
net=network-configs/test-network

echo "==> twill cryptogen generate"
"$twill" cryptogen generate --config "$net/crypto-config.yaml" --output "$net/organizations"

echo
echo "==> twill configtxgen (profile TwoOrgsApplicationGenesis, channel mychannel)"
"$twill" configtxgen --config "$net/configtx.yaml" \
    --profile TwoOrgsApplicationGenesis --channel-id mychannel --output-block "$net/mychannel.block"

echo
echo "==> what the genesis block holds (twill configtxgen --inspect-block)"
"$twill" configtxgen --inspect-block "$net/mychannel.block" | python3 -c '
import json, sys
b = json.load(sys.stdin)
p = b["data"]["data"][0]["payload"]
g = p["data"]["config"]["channel_group"]["groups"]
print("channel:     ", p["header"]["channel_header"]["channel_id"])
print("block number:", b["header"]["number"])
print("peer orgs:   ", ", ".join(g["Application"]["groups"]))
print("orderer orgs:", ", ".join(g["Orderer"]["groups"]))
raft = g["Orderer"]["values"]["ConsensusType"]["value"]["metadata"]
print("consenters:  ", ", ".join("%s:%s" % (c["host"], c["port"]) for c in raft["consenters"]))
bs = g["Orderer"]["values"]["BatchSize"]["value"]
print("batch:       ", bs["max_message_count"], "tx or", bs["preferred_max_bytes"], "bytes, timeout",
      g["Orderer"]["values"]["BatchTimeout"]["value"]["timeout"])
'
echo
echo "crypto material: $net/organizations"
echo "genesis block:   $net/mychannel.block"

echo
echo "==> three orderers (separate processes, TLS, Raft) ordering signed transactions for 3 s"
echo "    (debug build: release figures are in docs/benchmarks.md)"
"$twill" bench orderer --duration 3 --clients 4
