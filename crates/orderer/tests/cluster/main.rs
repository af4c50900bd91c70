//! Integration tests of `twill_orderer::cluster` over real sockets on
//! 127.0.0.1 with mutual TLS: Raft nodes talking through `GrpcCluster` and
//! `ClusterService`, consenter authorization, Forward and Pull, and links to
//! unreachable peers.
//!
//! The service is driven through a fake `ChannelSource` whose chains are bare
//! Raft nodes (or canned blocks), so that the transport is tested without the
//! full chain stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chains;
mod pki;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use twill_comm::{bind, incoming, server_builder, ClientAuth, ClientTls, ServerTls};
use twill_orderer::chain::Cluster as _;
use twill_orderer::cluster::{
    cluster_server, ChannelSource, ClusterChain, ClusterCloser, ClusterOptions, ClusterService,
    GrpcCluster,
};
use twill_orderer::msgprocessor::Reject;
use twill_orderer::raft::eraftpb::{Message, MessageType};
use twill_orderer::raft::{
    encode_message, RaftConfig, RaftError, RaftHandle, RaftNode, RaftResult, Reporter,
    StateMachine, Transport,
};
use twill_protos::common::{Block, BlockHeader, Status};
use twill_protos::etcdraft::Consenter;
use twill_protos::twill::cluster::cluster_client::ClusterClient;
use twill_protos::twill::cluster::{ForwardRequest, PullRequest, RaftEnvelope};

use pki::{Ca, Leaf};

const CHANNEL: &str = "mychannel";
const WAIT: Duration = Duration::from_secs(30);

/// These tests run real Raft timers; one at a time on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------ fake chains

/// Envelopes a chain was asked to order, and whether they were config.
type Forwarded = (Vec<Vec<u8>>, bool);

/// A channel as the service sees it: a consenter set, an optional Raft node
/// behind it, canned blocks and a canned Forward answer.
#[derive(Clone, Default)]
struct FakeChain {
    consenters: Arc<Mutex<Vec<Consenter>>>,
    raft: Option<RaftHandle>,
    blocks: Arc<Vec<Vec<u8>>>,
    forwarded: Arc<Mutex<Vec<Forwarded>>>,
    forward_answer: Option<Reject>,
}

#[async_trait::async_trait]
impl ClusterChain for FakeChain {
    fn consenters(&self) -> Vec<Consenter> {
        self.consenters.lock().unwrap().clone()
    }

    fn step(&self, msg: Message) -> Result<(), RaftError> {
        match &self.raft {
            Some(raft) => raft.step(msg),
            None => Err(RaftError::Stopped),
        }
    }

    async fn order_forwarded(&self, envelopes: Vec<Vec<u8>>, config: bool) -> Result<(), Reject> {
        self.forwarded.lock().unwrap().push((envelopes, config));
        match &self.forward_answer {
            Some(reject) => Err(reject.clone()),
            None => Ok(()),
        }
    }

    fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn block_bytes(&self, number: u64) -> Result<Option<Vec<u8>>, String> {
        Ok(self.blocks.get(number as usize).cloned())
    }
}

#[derive(Default)]
struct FakeSource {
    chains: Mutex<HashMap<String, FakeChain>>,
}

impl FakeSource {
    fn put(&self, channel: &str, chain: FakeChain) {
        self.chains
            .lock()
            .unwrap()
            .insert(channel.to_owned(), chain);
    }
}

impl ChannelSource for FakeSource {
    type Chain = FakeChain;

    fn chain(&self, channel: &str) -> Option<FakeChain> {
        self.chains.lock().unwrap().get(channel).cloned()
    }
}

// ------------------------------------------------------------ raft state machine

/// Records applied entries in memory.
struct RecordingSm {
    applied: u64,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl StateMachine for RecordingSm {
    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) -> RaftResult<()> {
        self.log.lock().unwrap().push(data.to_vec());
        self.applied = index;
        Ok(())
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn note_applied(&mut self, index: u64) {
        self.applied = index;
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&mut self, index: u64, _term: u64, _data: &[u8]) -> RaftResult<()> {
        self.applied = index;
        Ok(())
    }
}

/// A transport that delivers nothing (for nodes whose reporter is borrowed).
struct Nowhere;

impl Transport for Nowhere {
    fn send(&self, msg: Message, reporter: &Reporter) {
        reporter.report_unreachable(msg.to);
    }
}

fn raft_config(id: u64, peers: Vec<u64>) -> RaftConfig {
    let mut cfg = RaftConfig::new(id, peers);
    cfg.tick_interval = Duration::from_millis(50);
    cfg.election_tick = 10;
    cfg.heartbeat_tick = 1;
    cfg
}

// ------------------------------------------------------------ servers

/// A running cluster listener.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    closer: ClusterCloser,
    task: Option<JoinHandle<()>>,
}

impl Server {
    async fn start<S: ChannelSource>(
        source: Arc<S>,
        tls: Option<&ServerTls>,
        listen: &str,
        allow_insecure: bool,
    ) -> Server {
        let (listener, addr) = bind(listen).await.unwrap();
        Server::serve(listener, addr, source, tls, allow_insecure)
    }

    /// Serves the cluster service for `source` on `listener`.
    fn serve<S: ChannelSource>(
        listener: tokio::net::TcpListener,
        addr: SocketAddr,
        source: Arc<S>,
        tls: Option<&ServerTls>,
        allow_insecure: bool,
    ) -> Server {
        let svc = ClusterService::new(source).allow_insecure(allow_insecure);
        let closer = svc.closer();
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = server_builder(tls)
            .unwrap()
            .add_service(cluster_server(svc))
            .serve_with_incoming_shutdown(incoming(listener), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            serve.await.unwrap();
        });
        Server {
            addr,
            stop: Some(stop),
            closer,
            task: Some(task),
        }
    }

    /// Stops accepting, ends open calls, and waits for the server to exit.
    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.closer.close();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server shut down in time")
                .unwrap();
        }
    }
}

fn server_tls(ca: &Ca, leaf: &Leaf) -> ServerTls {
    ServerTls::from_pem(
        &leaf.cert_pem,
        &leaf.key_pem,
        vec![ca.cert_pem.clone().into_bytes()],
        ClientAuth::Required,
    )
    .unwrap()
}

fn client_tls(ca: &Ca, leaf: &Leaf) -> ClientTls {
    ClientTls::new(vec![ca.cert_pem.clone().into_bytes()])
        .with_identity(leaf.cert_pem.clone(), leaf.key_pem.clone())
}

fn consenter(addr: SocketAddr, leaf: &Leaf) -> Consenter {
    Consenter {
        host: addr.ip().to_string(),
        port: u32::from(addr.port()),
        client_tls_cert: leaf.cert_pem.clone().into_bytes(),
        server_tls_cert: leaf.cert_pem.clone().into_bytes(),
    }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let (listener, addr) = bind("127.0.0.1:0").await.unwrap();
    drop(listener);
    addr
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------ raft nodes

/// One orderer of a test network: its cluster listener, its cluster client
/// and a Raft node for [`CHANNEL`].
struct Orderer {
    id: u64,
    leaf: Leaf,
    source: Arc<FakeSource>,
    server: Server,
    cluster: Arc<GrpcCluster>,
    node: Option<RaftNode>,
    handle: RaftHandle,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Starts `n` orderers with mutual TLS, all consenters of [`CHANNEL`].
async fn start_network(ca: &Ca, n: u64, dir: &TempDir) -> Vec<Orderer> {
    let mut servers = Vec::new();
    for id in 1..=n {
        let leaf = ca.node(&format!("orderer{id}"));
        let source = Arc::new(FakeSource::default());
        let server = Server::start(
            source.clone(),
            Some(&server_tls(ca, &leaf)),
            "127.0.0.1:0",
            false,
        )
        .await;
        servers.push((id, leaf, source, server));
    }
    let peers: BTreeMap<u64, Consenter> = servers
        .iter()
        .map(|(id, leaf, _, server)| (*id, consenter(server.addr, leaf)))
        .collect();
    let ids: Vec<u64> = peers.keys().copied().collect();
    let mut orderers = Vec::new();
    for (id, leaf, source, server) in servers {
        let cluster = GrpcCluster::new(Some(client_tls(ca, &leaf)));
        let transport = cluster.transport(CHANNEL, id, peers.clone());
        let log = Arc::new(Mutex::new(Vec::new()));
        let sm = RecordingSm {
            applied: 0,
            log: log.clone(),
        };
        let (node, handle) = RaftNode::start(
            raft_config(id, ids.clone()),
            &dir.path().join(format!("raft{id}")),
            sm,
            transport,
        )
        .unwrap();
        source.put(
            CHANNEL,
            FakeChain {
                consenters: Arc::new(Mutex::new(peers.values().cloned().collect())),
                raft: Some(handle.clone()),
                ..FakeChain::default()
            },
        );
        orderers.push(Orderer {
            id,
            leaf,
            source,
            server,
            cluster,
            node: Some(node),
            handle,
            log,
        });
    }
    orderers
}

async fn wait_leader(orderers: &[&Orderer]) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let statuses: Vec<_> = orderers.iter().map(|o| o.handle.status()).collect();
        if let Some(leader) = statuses.iter().find(|s| s.is_leader()) {
            let id = leader.id;
            if statuses.iter().all(|s| s.leader == Some(id)) {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Proposes `data` on whichever node leads, retrying through elections.
async fn propose(orderers: &[&Orderer], data: Vec<u8>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let leader = wait_leader(orderers).await;
        let handle = &orderers.iter().find(|o| o.id == leader).unwrap().handle;
        match handle.propose(data.clone()).await {
            Ok(_) => return,
            Err(err) => {
                assert!(Instant::now() < deadline, "proposal failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn stop_network(orderers: Vec<Orderer>) {
    for mut o in orderers {
        o.handle.shutdown().await;
        drop(o.node.take());
        o.server.shutdown().await;
    }
}

// ------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_commits_over_grpc_with_mutual_tls() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("cluster-ca");
    let dir = tempfile::tempdir().unwrap();
    let orderers = start_network(&ca, 3, &dir).await;
    let all: Vec<&Orderer> = orderers.iter().collect();

    wait_leader(&all).await;
    let entries: Vec<Vec<u8>> = (0..20).map(|i| format!("entry-{i}").into_bytes()).collect();
    for e in &entries {
        propose(&all, e.clone()).await;
    }
    for o in &orderers {
        eventually(&format!("orderer {} to apply everything", o.id), || {
            o.log.lock().unwrap().len() == entries.len()
        })
        .await;
        assert_eq!(*o.log.lock().unwrap(), entries, "orderer {}", o.id);
    }
    // The leader streamed to both followers, and each follower answered
    // the leader, over open Step calls.
    let leader = wait_leader(&all).await;
    for o in &orderers {
        let stats = o.cluster.link_stats(CHANNEL);
        assert_eq!(stats.len(), 2, "orderer {}: {stats:?}", o.id);
        for (to, s) in &stats {
            if o.id == leader || *to == leader {
                assert!(s.sent > 0, "orderer {} -> {to}: {s:?}", o.id);
                assert!(s.connected, "orderer {} -> {to}: {s:?}", o.id);
            }
        }
    }
    stop_network(orderers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consenter_that_goes_away_is_reported_and_catches_up_on_return() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("cluster-ca");
    let dir = tempfile::tempdir().unwrap();
    let mut orderers = start_network(&ca, 3, &dir).await;
    {
        let all: Vec<&Orderer> = orderers.iter().collect();
        wait_leader(&all).await;
        propose(&all, b"before".to_vec()).await;
    }

    // Orderer 3's listener goes away (its Raft node keeps running but hears
    // nothing). The other two keep committing.
    let addr3 = orderers[2].server.addr;
    orderers[2].server.shutdown().await;
    let unreachable_before: u64 = orderers[..2]
        .iter()
        .map(|o| o.cluster.link_stats(CHANNEL)[&3].unreachable_reports)
        .sum();
    {
        let two: Vec<&Orderer> = orderers[..2].iter().collect();
        for i in 0..5 {
            propose(&two, format!("while-down-{i}").into_bytes()).await;
        }
    }
    eventually("orderer 3 to be reported unreachable", || {
        orderers[..2]
            .iter()
            .map(|o| o.cluster.link_stats(CHANNEL)[&3].unreachable_reports)
            .sum::<u64>()
            > unreachable_before
    })
    .await;
    assert!(orderers[2].log.lock().unwrap().len() <= 1);

    // It comes back on the same address: links redial and it catches up.
    let source3 = orderers[2].source.clone();
    let tls3 = server_tls(&ca, &orderers[2].leaf);
    orderers[2].server = Server::start(source3, Some(&tls3), &addr3.to_string(), false).await;
    eventually("orderer 3 to catch up", || {
        orderers[2].log.lock().unwrap().len() == 6
    })
    .await;
    assert_eq!(
        *orderers[2].log.lock().unwrap(),
        *orderers[0].log.lock().unwrap()
    );
    stop_network(orderers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_consenters_are_refused() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("cluster-ca");
    let member = ca.node("orderer1");
    let server_leaf = ca.node("orderer2");
    let intruder = ca.node("intruder");
    let source = Arc::new(FakeSource::default());
    let mut server = Server::start(
        source.clone(),
        Some(&server_tls(&ca, &server_leaf)),
        "127.0.0.1:0",
        false,
    )
    .await;
    let consenters = vec![
        consenter(server.addr, &server_leaf),
        consenter(closed_port().await, &member),
    ];
    source.put(
        CHANNEL,
        FakeChain {
            consenters: Arc::new(Mutex::new(consenters)),
            blocks: Arc::new(blocks(0..3)),
            ..FakeChain::default()
        },
    );
    let addr = server.addr.to_string();

    let client = |leaf: &Leaf| {
        let tls = client_tls(&ca, leaf);
        let addr = addr.clone();
        async move {
            let ch = twill_comm::connect(&addr, Some(&tls)).await.unwrap();
            ClusterClient::new(ch)
        }
    };

    // The intruder's certificate is issued by the trusted CA (so TLS lets it
    // in) but is not a consenter certificate of the channel.
    let mut bad = client(&intruder).await;
    let step = bad
        .step(tokio_stream::iter(vec![envelope(CHANNEL, 1)]))
        .await
        .unwrap_err();
    assert_eq!(step.code(), tonic::Code::PermissionDenied, "{step:?}");
    assert!(step.message().contains(CHANNEL), "{step:?}");
    let fwd = bad.forward(forward_request(CHANNEL)).await.unwrap_err();
    assert_eq!(fwd.code(), tonic::Code::PermissionDenied, "{fwd:?}");
    let pull = bad.pull(pull_request(CHANNEL, 0, 0)).await.unwrap_err();
    assert_eq!(pull.code(), tonic::Code::PermissionDenied, "{pull:?}");

    // A consenter is let in, with its client certificate.
    let mut good = client(&member).await;
    let fwd = good
        .forward(forward_request(CHANNEL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fwd.status, Status::Success as i32);
    let mut pulled = good
        .pull(pull_request(CHANNEL, 1, 0))
        .await
        .unwrap()
        .into_inner();
    let mut numbers = Vec::new();
    while let Some(resp) = pulled.message().await.unwrap() {
        numbers.push(
            Block::decode(resp.block.as_slice())
                .unwrap()
                .header
                .unwrap()
                .number,
        );
    }
    assert_eq!(numbers, vec![1, 2]);

    // Unknown channels and ranges.
    let unknown = good
        .forward(forward_request("nochannel"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let beyond = good.pull(pull_request(CHANNEL, 2, 5)).await.unwrap_err();
    assert_eq!(beyond.code(), tonic::Code::OutOfRange, "{beyond:?}");
    let beyond = good.pull(pull_request(CHANNEL, 3, 0)).await.unwrap_err();
    assert_eq!(beyond.code(), tonic::Code::OutOfRange, "{beyond:?}");

    // Raft messages from a consenter are accepted (this chain has no Raft
    // node: they are dropped, and the stream stays healthy).
    let ack = good
        .step(tokio_stream::iter(vec![
            envelope(CHANNEL, 1),
            envelope(CHANNEL, 2),
        ]))
        .await;
    assert!(ack.is_ok(), "{ack:?}");
    let malformed = good
        .step(tokio_stream::iter(vec![RaftEnvelope {
            channel_id: CHANNEL.to_owned(),
            message: vec![0xff, 0xff, 0xff],
        }]))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);

    // Removing the member from the consenter set revokes it.
    source
        .chain(CHANNEL)
        .unwrap()
        .consenters
        .lock()
        .unwrap()
        .retain(|c| c.client_tls_cert != member.cert_pem.as_bytes());
    let revoked = good.forward(forward_request(CHANNEL)).await.unwrap_err();
    assert_eq!(revoked.code(), tonic::Code::PermissionDenied, "{revoked:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_needs_allow_insecure() {
    let _serial = SERIAL.lock().await;
    let source = Arc::new(FakeSource::default());
    source.put(CHANNEL, FakeChain::default());
    let mut strict = Server::start(source.clone(), None, "127.0.0.1:0", false).await;
    let mut lax = Server::start(source.clone(), None, "127.0.0.1:0", true).await;

    let ch = twill_comm::connect(&strict.addr.to_string(), None)
        .await
        .unwrap();
    let err = ClusterClient::new(ch)
        .forward(forward_request(CHANNEL))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    let ch = twill_comm::connect(&lax.addr.to_string(), None)
        .await
        .unwrap();
    let resp = ClusterClient::new(ch)
        .forward(forward_request(CHANNEL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, Status::Success as i32);
    strict.shutdown().await;
    lax.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_and_pull_through_grpc_cluster() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("cluster-ca");
    let me = ca.node("orderer1");
    let good_leaf = ca.node("orderer2");
    let liar_leaf = ca.node("orderer3");
    let refuser_leaf = ca.node("orderer4");

    // Orderer 2 serves blocks 0..5 and accepts forwards; orderer 3 serves
    // misnumbered blocks; orderer 4 refuses forwards; orderer 5 is down.
    let mut servers = Vec::new();
    let mut chains = Vec::new();
    for (leaf, chain) in [
        (
            &good_leaf,
            FakeChain {
                blocks: Arc::new(blocks(0..5)),
                ..FakeChain::default()
            },
        ),
        (
            &liar_leaf,
            FakeChain {
                blocks: Arc::new(blocks((0..5).map(|n| if n == 3 { 7 } else { n }))),
                ..FakeChain::default()
            },
        ),
        (
            &refuser_leaf,
            FakeChain {
                forward_answer: Some(Reject::forbidden("not the leader of anything")),
                ..FakeChain::default()
            },
        ),
    ] {
        let source = Arc::new(FakeSource::default());
        source.put(CHANNEL, chain.clone());
        let server =
            Server::start(source, Some(&server_tls(&ca, leaf)), "127.0.0.1:0", false).await;
        servers.push(server);
        chains.push(chain);
    }
    let down = closed_port().await;
    let mut peers = BTreeMap::new();
    peers.insert(1, consenter(closed_port().await, &me));
    peers.insert(2, consenter(servers[0].addr, &good_leaf));
    peers.insert(3, consenter(servers[1].addr, &liar_leaf));
    peers.insert(4, consenter(servers[2].addr, &refuser_leaf));
    peers.insert(5, consenter(down, &ca.node("orderer5")));
    for chain in &chains {
        *chain.consenters.lock().unwrap() = peers.values().cloned().collect();
    }

    let cluster = GrpcCluster::new(Some(client_tls(&ca, &me)));
    cluster.update_peers(CHANNEL, peers.clone());

    // Forward: success, a refusal passed through, transport failures.
    let envs = vec![b"env-1".to_vec(), b"env-2".to_vec()];
    cluster
        .forward(CHANNEL, 2, envs.clone(), true)
        .await
        .unwrap();
    assert_eq!(
        *chains[0].forwarded.lock().unwrap(),
        vec![(envs.clone(), true)]
    );
    let refused = cluster
        .forward(CHANNEL, 4, envs.clone(), false)
        .await
        .unwrap_err();
    assert_eq!(refused.status, Status::Forbidden);
    assert_eq!(refused.info, "not the leader of anything");
    let unreachable = cluster
        .forward(CHANNEL, 5, envs.clone(), false)
        .await
        .unwrap_err();
    assert_eq!(
        unreachable.status,
        Status::ServiceUnavailable,
        "{unreachable:?}"
    );
    let unknown = cluster
        .forward(CHANNEL, 9, envs.clone(), false)
        .await
        .unwrap_err();
    assert_eq!(unknown.status, Status::ServiceUnavailable);
    let no_channel = cluster.forward("other", 2, envs, false).await.unwrap_err();
    assert_eq!(no_channel.status, Status::ServiceUnavailable);

    // Pull: orderer 1 is "self" for update_peers (no self id), but it is down
    // anyway; 2 has everything.
    let got = cluster.pull_blocks(CHANNEL, 1, 5).await.unwrap();
    let numbers: Vec<u64> = got
        .iter()
        .map(|b| b.header.as_ref().unwrap().number)
        .collect();
    assert_eq!(numbers, vec![1, 2, 3, 4]);
    assert!(cluster.pull_blocks(CHANNEL, 3, 3).await.unwrap().is_empty());

    // Without orderer 2 only the liar (misnumbered block 3), the refuser (no
    // blocks) and dead ones remain: the pull fails, naming each attempt.
    let mut without_good = peers.clone();
    without_good.remove(&2);
    cluster.update_peers(CHANNEL, without_good);
    let err = cluster
        .pull_blocks(CHANNEL, 0, 5)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected block 3"), "{err}");
    assert!(err.contains("consenter 4"), "{err}");
    assert!(err.contains("consenter 5"), "{err}");
    // A range the liar serves correctly succeeds.
    let got = cluster.pull_blocks(CHANNEL, 0, 3).await.unwrap();
    assert_eq!(got.len(), 3);

    cluster.remove_channel(CHANNEL);
    assert!(cluster.pull_blocks(CHANNEL, 0, 1).await.is_err());
    for mut s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peers_are_reported_without_blocking() {
    let _serial = SERIAL.lock().await;
    let ca = Ca::new("cluster-ca");
    let me = ca.node("orderer1");
    let dir = tempfile::tempdir().unwrap();
    // A Raft node only to get a real Reporter.
    let (node, handle) = RaftNode::start(
        raft_config(1, vec![1]),
        dir.path(),
        RecordingSm {
            applied: 0,
            log: Arc::default(),
        },
        Arc::new(Nowhere),
    )
    .unwrap();
    let reporter = handle.reporter();

    // Peer 2: connection refused. Peer 3: accepts TCP but never answers the
    // TLS handshake, so dialing hangs until its timeout.
    let refused = closed_port().await;
    let (blackhole, blackhole_addr) = bind("127.0.0.1:0").await.unwrap();
    let mut peers = BTreeMap::new();
    peers.insert(1, consenter(closed_port().await, &me));
    peers.insert(2, consenter(refused, &ca.node("orderer2")));
    peers.insert(3, consenter(blackhole_addr, &ca.node("orderer3")));
    let opts = ClusterOptions {
        send_queue: 8,
        ..ClusterOptions::default()
    };
    let cluster = GrpcCluster::with_options(Some(client_tls(&ca, &me)), opts);
    let transport = cluster.transport(CHANNEL, 1, peers);

    let started = Instant::now();
    for i in 0..1000 {
        for to in [2, 3, 9] {
            transport.send(heartbeat(to, i), &reporter);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "sending blocked for {:?}",
        started.elapsed()
    );

    eventually("peer 2 to be reported unreachable", || {
        let s = cluster.link_stats(CHANNEL)[&2];
        s.unreachable_reports > 0 && s.dropped > 0
    })
    .await;
    // The blackholed peer's queue overflowed at once: at most the queue, the
    // stream buffer and the message being dialed for were kept.
    let s3 = cluster.link_stats(CHANNEL)[&3];
    assert!(s3.dropped >= 1000 - 8 - 16 - 1, "{s3:?}");
    assert!(s3.unreachable_reports >= s3.dropped, "{s3:?}");
    assert_eq!(s3.sent, 0);
    assert!(!cluster.link_stats(CHANNEL).contains_key(&9));

    // A snapshot to a dead peer is dropped too (and reported failed).
    let mut snap = heartbeat(2, 0);
    snap.set_msg_type(MessageType::MsgSnapshot);
    transport.send(snap, &reporter);

    cluster.remove_channel(CHANNEL);
    assert!(cluster.link_stats(CHANNEL).is_empty());
    // Sends after removal are reported, not queued.
    transport.send(heartbeat(2, 0), &reporter);
    drop(blackhole);
    handle.shutdown().await;
    drop(node);
}

// ------------------------------------------------------------ helpers

fn heartbeat(to: u64, term: u64) -> Message {
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgHeartbeat);
    msg.to = to;
    msg.from = 1;
    msg.term = term;
    msg
}

fn envelope(channel: &str, to: u64) -> RaftEnvelope {
    RaftEnvelope {
        channel_id: channel.to_owned(),
        message: encode_message(&heartbeat(to, 1)).unwrap(),
    }
}

fn forward_request(channel: &str) -> ForwardRequest {
    ForwardRequest {
        channel_id: channel.to_owned(),
        envelopes: vec![b"envelope".to_vec()],
        config: false,
    }
}

fn pull_request(channel: &str, start: u64, end: u64) -> PullRequest {
    PullRequest {
        channel_id: channel.to_owned(),
        start,
        end,
    }
}

/// Serialized blocks with the given numbers (nothing else in them).
fn blocks(numbers: impl IntoIterator<Item = u64>) -> Vec<Vec<u8>> {
    numbers
        .into_iter()
        .map(|number| {
            Block {
                header: Some(BlockHeader {
                    number,
                    ..BlockHeader::default()
                }),
                ..Block::default()
            }
            .encode_to_vec()
        })
        .collect()
}
