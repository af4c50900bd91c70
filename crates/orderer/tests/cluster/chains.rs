//! Real chains (the test network's three orderers, crypto material from
//! twill-cryptogen) talking through `GrpcCluster` and `ClusterService` over
//! mutual TLS: Raft traffic, followers forwarding to the leader, Pull, and a
//! follower that was cut off catching up through a Raft snapshot and pulled
//! blocks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use twill_comm::{bind, ClientAuth, ClientTls, ServerTls};
use twill_configtx::block::{block_header_hash, channel_header, envelope};
use twill_configtx::genesis::genesis_block_from_profile;
use twill_configtx::profile::LoadedConfigtx;
use twill_msp::SigningIdentity;
use twill_orderer::chain::{Chain, ChainHandle, ChainOptions, Cluster as _};
use twill_orderer::cluster::{ChannelSource, GrpcCluster};
use twill_orderer::msgprocessor::Reject;
use twill_orderer::writer::is_config_block;
use twill_protos::common::{Block, HeaderType, SignatureHeader, Status};

use crate::{eventually, Server, CHANNEL, SERIAL};

/// The chains of one orderer, by channel.
#[derive(Default)]
struct Chains(Mutex<HashMap<String, ChainHandle>>);

impl ChannelSource for Chains {
    type Chain = ChainHandle;

    fn chain(&self, channel: &str) -> Option<ChainHandle> {
        self.0.lock().unwrap().get(channel).cloned()
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn first_cert_der(pem: &[u8]) -> Vec<u8> {
    twill_crypto::pem::parse_pem_blocks(std::str::from_utf8(pem).unwrap())
        .unwrap()
        .remove(0)
        .1
}

/// One orderer: TLS material, its listener and its chain.
struct Node {
    signer: Arc<SigningIdentity>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
    source: Arc<Chains>,
    server: Server,
    cluster: Arc<GrpcCluster>,
    chain: Option<ChainHandle>,
}

impl Node {
    fn server_tls(&self) -> ServerTls {
        ServerTls::from_pem(
            &self.cert_pem,
            &self.key_pem,
            vec![self.ca_pem.clone()],
            ClientAuth::Required,
        )
        .unwrap()
    }

    fn chain(&self) -> ChainHandle {
        self.chain.clone().unwrap()
    }
}

/// Three orderers of the test network, their consenter ports rewritten to
/// free ones, serving the cluster service with mutual TLS.
async fn start_orderers(dir: &Path) -> (Vec<Node>, Block) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(bind("127.0.0.1:0").await.unwrap());
    }
    let tn = dir.join("test-network");
    std::fs::create_dir_all(&tn).unwrap();
    std::fs::copy(
        repo_file("network-configs/test-network/crypto-config.yaml"),
        tn.join("crypto-config.yaml"),
    )
    .unwrap();
    let mut configtx =
        std::fs::read_to_string(repo_file("network-configs/test-network/configtx.yaml")).unwrap();
    for (default, (_, addr)) in ["7055", "8055", "9055"].iter().zip(&listeners) {
        let from = format!("Port: {default}\n");
        assert!(configtx.contains(&from));
        configtx = configtx.replace(&from, &format!("Port: {}\n", addr.port()));
    }
    configtx = configtx.replace("BatchTimeout: 2s", "BatchTimeout: 200ms");
    std::fs::write(tn.join("configtx.yaml"), configtx).unwrap();
    let cfg = twill_cryptogen::load_config(&tn.join("crypto-config.yaml")).unwrap();
    twill_cryptogen::generate(&cfg, &tn.join("organizations")).unwrap();
    let genesis = genesis_block_from_profile(
        &LoadedConfigtx::load(&tn.join("configtx.yaml")).unwrap(),
        "TwoOrgsApplicationGenesis",
        CHANNEL,
    )
    .unwrap();

    let mut nodes = Vec::new();
    for (i, (listener, addr)) in listeners.into_iter().enumerate() {
        let home = tn.join(format!(
            "organizations/ordererOrganizations/example.com/orderers/orderer{i}.example.com"
        ));
        let read = |rel: &str| std::fs::read(home.join(rel)).unwrap();
        let (cert_pem, key_pem, ca_pem) = (
            read("tls/server.crt"),
            read("tls/server.key"),
            read("tls/ca.crt"),
        );
        let signer =
            Arc::new(SigningIdentity::from_msp_dir(&home.join("msp"), "OrdererMSP").unwrap());
        let source = Arc::new(Chains::default());
        let server_tls = ServerTls::from_pem(
            &cert_pem,
            &key_pem,
            vec![ca_pem.clone()],
            ClientAuth::Required,
        )
        .unwrap();
        let server = Server::serve(listener, addr, source.clone(), Some(&server_tls), false);
        let client_tls =
            ClientTls::new(vec![ca_pem.clone()]).with_identity(cert_pem.clone(), key_pem.clone());
        nodes.push(Node {
            signer,
            cert_pem,
            key_pem,
            ca_pem,
            source,
            server,
            cluster: GrpcCluster::new(Some(client_tls)),
            chain: None,
        });
    }
    let opts = ChainOptions {
        tick_interval: Some(Duration::from_millis(50)),
        snapshot_interval_bytes: Some(4 * 1024),
        ..ChainOptions::default()
    };
    for (i, node) in nodes.iter_mut().enumerate() {
        let chain = Chain::start(
            &dir.join(format!("orderer{i}")).join(CHANNEL),
            Some(&genesis),
            node.signer.clone(),
            &first_cert_der(&node.cert_pem),
            node.cluster.clone(),
            opts.clone(),
        )
        .unwrap();
        node.source
            .0
            .lock()
            .unwrap()
            .insert(CHANNEL.to_owned(), chain.clone());
        node.chain = Some(chain);
    }
    (nodes, genesis)
}

fn tx(n: u64) -> Vec<u8> {
    let ch = channel_header(
        HeaderType::EndorserTransaction,
        0,
        CHANNEL,
        &format!("tx-{n}"),
    );
    let sh = SignatureHeader {
        creator: b"test".to_vec(),
        nonce: n.to_be_bytes().to_vec(),
    };
    let mut env = envelope(&ch, &sh, format!("payload {n}").into_bytes());
    env.signature = vec![1, 2, 3];
    env.encode_to_vec()
}

/// Orders `env` through `chain`, retrying while there is no leader.
async fn order(chain: &ChainHandle, env: Vec<u8>) -> Result<(), Reject> {
    let mut last = Ok(());
    for _ in 0..100 {
        last = chain.order(env.clone()).await;
        match &last {
            Err(r) if r.status == Status::ServiceUnavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return last,
        }
    }
    last
}

async fn wait_leader(chains: &[ChainHandle]) -> u64 {
    let mut leader = 0;
    eventually("a leader everyone agrees on", || {
        let statuses: Vec<_> = chains.iter().map(|c| c.status()).collect();
        let Some(l) = statuses[0].leader else {
            return false;
        };
        let agreed = statuses.iter().all(|s| s.leader == Some(l))
            && statuses.iter().filter(|s| s.is_leader).count() == 1;
        if agreed {
            leader = l;
        }
        agreed
    })
    .await;
    leader
}

fn blocks(chain: &ChainHandle) -> Vec<Block> {
    let store = chain.block_store();
    (0..store.height())
        .map(|n| store.block(n).unwrap().unwrap())
        .collect()
}

fn envelopes(chain: &ChainHandle) -> Vec<Vec<u8>> {
    blocks(chain)
        .into_iter()
        .filter(|b| !is_config_block(b))
        .flat_map(|b| b.data.unwrap().data)
        .collect()
}

fn hashes(chain: &ChainHandle) -> Vec<[u8; 32]> {
    blocks(chain)
        .iter()
        .map(|b| block_header_hash(b.header.as_ref().unwrap()))
        .collect()
}

async fn wait_converged(chains: &[ChainHandle], count: usize) {
    eventually(&format!("{count} envelopes on every chain"), || {
        let height = chains[0].status().height;
        chains
            .iter()
            .all(|c| c.status().height == height && envelopes(c).len() == count)
    })
    .await;
    let reference = hashes(&chains[0]);
    for chain in &chains[1..] {
        assert_eq!(
            hashes(chain),
            reference,
            "consenter {}",
            chain.consenter_id()
        );
    }
}

/// Orders `txs` spread over `chains` concurrently.
async fn order_all(chains: &[ChainHandle], txs: &[Vec<u8>]) {
    let mut calls = Vec::new();
    for (i, env) in txs.iter().enumerate() {
        let chain = chains[i % chains.len()].clone();
        let env = env.clone();
        calls.push(tokio::spawn(async move { order(&chain, env).await }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_order_forward_pull_and_catch_up_over_grpc() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, genesis) = start_orderers(dir.path()).await;
    let chains: Vec<ChainHandle> = nodes.iter().map(Node::chain).collect();
    let leader = wait_leader(&chains).await;

    // Envelopes given to every node: followers forward them to the leader
    // over gRPC.
    let mut sent: Vec<Vec<u8>> = (0..60).map(tx).collect();
    order_all(&chains, &sent).await;
    wait_converged(&chains, sent.len()).await;

    // Any node pulls the whole ledger from the others, identical to its own.
    let follower = nodes
        .iter()
        .position(|n| n.chain().consenter_id() != leader)
        .unwrap();
    let height = chains[follower].status().height;
    let pulled = nodes[follower]
        .cluster
        .pull_blocks(CHANNEL, 0, height)
        .await
        .unwrap();
    assert_eq!(pulled.len() as u64, height);
    assert!(pulled[0] == genesis, "block 0 is the genesis block");
    // Same blocks (each orderer signs its own copy: compare headers).
    let pulled_hashes: Vec<[u8; 32]> = pulled
        .iter()
        .map(|b| block_header_hash(b.header.as_ref().unwrap()))
        .collect();
    assert_eq!(pulled_hashes, hashes(&chains[follower]));
    let err = nodes[follower]
        .cluster
        .pull_blocks(CHANNEL, 0, height + 5)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("OutOfRange"), "{err}");

    // Forwarding straight to the leader, as a follower's chain does.
    let to_leader = nodes[follower]
        .cluster
        .forward(CHANNEL, leader, vec![tx(500)], false)
        .await;
    assert!(to_leader.is_ok(), "{to_leader:?}");
    sent.push(tx(500));

    // Cut one follower off (its listener goes away: nothing reaches it)
    // while the others order enough for the leader to compact its log.
    let lagging = follower;
    let addr = nodes[lagging].server.addr;
    nodes[lagging].server.shutdown().await;
    let others: Vec<ChainHandle> = chains
        .iter()
        .filter(|c| c.consenter_id() != chains[lagging].consenter_id())
        .cloned()
        .collect();
    for round in 0..6u64 {
        let batch: Vec<Vec<u8>> = (1000 + round * 50..1000 + round * 50 + 50)
            .map(tx)
            .collect();
        order_all(&others, &batch).await;
        sent.extend(batch);
    }
    wait_converged(&others, sent.len()).await;
    eventually("the others to compact their logs", || {
        others.iter().all(|c| c.raft().status().snapshot_index > 10)
    })
    .await;
    assert!(chains[lagging].status().height < others[0].status().height);
    let to_lagging_link = nodes
        .iter()
        .find(|n| n.chain().consenter_id() == leader)
        .unwrap()
        .cluster
        .link_stats(CHANNEL)[&chains[lagging].consenter_id()];
    assert!(
        to_lagging_link.unreachable_reports > 0,
        "{to_lagging_link:?}"
    );

    // Back on the same address: a Raft snapshot reaches it over Step and it
    // pulls the blocks it missed over Pull.
    let tls = nodes[lagging].server_tls();
    let (listener, addr) = bind(&addr.to_string()).await.unwrap();
    nodes[lagging].server = Server::serve(
        listener,
        addr,
        nodes[lagging].source.clone(),
        Some(&tls),
        false,
    );
    wait_converged(&chains, sent.len()).await;
    assert!(
        chains[lagging].raft().status().snapshot_index > 10,
        "the lagging node caught up through a snapshot"
    );
    let snapshots_sent: u64 = nodes
        .iter()
        .filter(|n| n.chain().consenter_id() != chains[lagging].consenter_id())
        .map(|n| n.cluster.link_stats(CHANNEL)[&chains[lagging].consenter_id()].snapshots)
        .sum();
    assert!(
        snapshots_sent > 0,
        "a raft snapshot went over the Step stream"
    );

    // And it keeps ordering afterwards, forwarding from the lagging node.
    let more: Vec<Vec<u8>> = (5000..5010).map(tx).collect();
    for env in &more {
        order(&chains[lagging], env.clone()).await.unwrap();
    }
    sent.extend(more);
    wait_converged(&chains, sent.len()).await;

    for chain in &chains {
        chain.halt().await;
    }
    for node in &mut nodes {
        node.server.shutdown().await;
    }
}
