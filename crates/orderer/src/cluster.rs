//! Orderer-to-orderer communication over gRPC with mutual TLS: the
//! `twill.cluster.Cluster` service (`proto/twill/cluster.proto`).
//!
//! Two halves:
//!
//! - [`GrpcCluster`], the client side, implements the chains'
//!   [`Cluster`](crate::chain::Cluster) seam: a Raft [`Transport`] per
//!   channel, [`forward`](crate::chain::Cluster::forward) of envelopes to the
//!   leader, and [`pull_blocks`](crate::chain::Cluster::pull_blocks) from
//!   other consenters.
//! - [`ClusterService`], the server side, hands inbound Raft messages to the
//!   channel's Raft node, orders forwarded envelopes and serves blocks. Every
//!   call is authorized against the channel's consenter set: the caller's TLS
//!   client certificate must be one of the consenters' certificates.
//!
//! # Raft transport
//!
//! Each (channel, remote consenter) pair has a *link*: a bounded queue of
//! outgoing messages ([`ClusterOptions::send_queue`]) drained by one task on
//! the runtime that created the [`GrpcCluster`]. The task dials the consenter
//! (TLS, the server name being the consenter's host) when the first message
//! arrives, keeps one client-streaming `Step` call open and writes the queued
//! messages into it, each as a [`RaftEnvelope`]. When the call fails (dial
//! error, TLS refusal, `PERMISSION_DENIED`, the peer going away) the task
//! reports the peer unreachable and backs off (doubling from
//! [`ClusterOptions::min_backoff`] up to [`ClusterOptions::max_backoff`]);
//! until the next attempt messages for that peer are dropped at once.
//!
//! [`Transport::send`] never blocks the Raft loop: a message that finds the
//! queue full, the link backing off or the consenter unknown is dropped and
//! reported with [`Reporter::report_unreachable`] (raft retransmits, probing
//! the follower). A `MsgSnapshot` is reported with
//! [`Reporter::report_snapshot`]: `true` once the gRPC stream has taken it,
//! `false` if it was dropped or the call failed first.
//!
//! [`GrpcCluster::link_stats`] exposes per-link counters.
//!
//! # Forward and Pull
//!
//! Both use one lazily connected gRPC channel per consenter address, shared
//! by all channels. `Forward` answers once the leader has ordered the
//! envelopes; a non-SUCCESS answer is returned as that [`Reject`], a failed
//! call as `SERVICE_UNAVAILABLE`. `Pull` tries the other consenters in turn
//! until one streams the whole range, checking that block numbers follow each
//! other (hash chaining is the chain's business).
//!
//! # Server
//!
//! [`ClusterService`] serves the channels of a [`ChannelSource`] (the
//! [`Registrar`] in the orderer; tests plug in their own). Each call names a
//! channel: unknown channels get `NOT_FOUND`; a caller whose TLS client
//! certificate (DER) is neither the client nor the server TLS certificate of
//! one of the channel's consenters gets `PERMISSION_DENIED`, as does a caller
//! without a certificate unless [`ClusterService::allow_insecure`] is set
//! (plaintext test listeners). A Step stream re-checks the consenter set
//! every second, so a consenter removed by a config update loses access.
//! `Pull` streams `[start, end)` (`end = 0`: up to the current height);
//! ranges beyond the height get `OUT_OF_RANGE`.
//!
//! Serve it with a [`ClientAuth::Required`](twill_comm::ClientAuth) TLS
//! server: `server_builder(Some(&tls))?.add_service(cluster_server(svc))`.
//! Peers keep their Step streams open for good, so a graceful shutdown must
//! end them: take [`ClusterService::closer`] before handing the service to
//! tonic, trigger the server's shutdown, then call [`ClusterCloser::close`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::{Request, Response, Streaming};
use twill_comm::{connect, connect_lazy, peer_cert_der, with_message_limits, ClientTls};
use twill_protos::common::{Block, Status};
use twill_protos::etcdraft::Consenter;
use twill_protos::twill::cluster::cluster_client::ClusterClient;
use twill_protos::twill::cluster::cluster_server::{self, ClusterServer};
use twill_protos::twill::cluster::{
    ForwardRequest, ForwardResponse, PullRequest, PullResponse, RaftEnvelope, StepAck,
};

use crate::chain::{ChainError, ChainHandle};
use crate::msgprocessor::Reject;
use crate::raft::eraftpb::{Message, MessageType};
use crate::raft::{decode_message, encode_message, RaftError, Reporter, Transport};
use crate::registrar::Registrar;

const LOG_TARGET: &str = "orderer::cluster";

/// Envelopes buffered between a link's queue and its gRPC stream.
const STREAM_BUFFER: usize = 16;

/// How long a Step stream trusts an authorization before checking the
/// channel's consenter set again.
const AUTH_RECHECK: Duration = Duration::from_secs(1);

/// Blocks streamed by `Pull` ahead of the client.
const PULL_BUFFER: usize = 8;

// ------------------------------------------------------------------ options

/// Tunables of [`GrpcCluster`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Outgoing Raft messages queued per remote consenter and channel before
    /// new ones are dropped (Fabric's `General.Cluster.SendBufferSize`).
    pub send_queue: usize,
    /// First delay before redialing a consenter after a failed Step call.
    pub min_backoff: Duration,
    /// Longest delay between redials.
    pub max_backoff: Duration,
    /// How long a `Forward` may take, ordering included.
    pub forward_timeout: Duration,
    /// How long `Pull` waits for each block (and for the call to start)
    /// before trying another consenter.
    pub pull_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            send_queue: 256,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            forward_timeout: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of one link (this node to one consenter, for one channel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages handed to the gRPC stream.
    pub sent: u64,
    /// Raft snapshots (`MsgSnapshot`) among them.
    pub snapshots: u64,
    /// Messages dropped: queue full, peer unreachable, call failed.
    pub dropped: u64,
    /// Times the peer was reported unreachable to Raft.
    pub unreachable_reports: u64,
    /// A Step call is open (the consenter was dialed successfully).
    pub connected: bool,
    /// The link is backing off after a failure; messages are dropped.
    pub backing_off: bool,
}

#[derive(Default)]
struct LinkCounters {
    sent: AtomicU64,
    snapshots: AtomicU64,
    dropped: AtomicU64,
    unreachable_reports: AtomicU64,
    connected: AtomicBool,
    backing_off: AtomicBool,
}

impl LinkCounters {
    fn stats(&self) -> LinkStats {
        LinkStats {
            sent: self.sent.load(Ordering::Relaxed),
            snapshots: self.snapshots.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            unreachable_reports: self.unreachable_reports.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            backing_off: self.backing_off.load(Ordering::Relaxed),
        }
    }

    /// Counts a dropped message and reports it: unreachable always, and a
    /// failed snapshot for a `MsgSnapshot`.
    fn drop_message(&self, reporter: &Reporter, to: u64, snapshot: bool) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreachable_reports.fetch_add(1, Ordering::Relaxed);
        reporter.report_unreachable(to);
        if snapshot {
            reporter.report_snapshot(to, false);
        }
    }
}

// ------------------------------------------------------------------ helpers

/// `host:port` of a consenter (IPv6 literals bracketed).
pub fn consenter_address(c: &Consenter) -> String {
    if c.host.contains(':') && !c.host.starts_with('[') {
        format!("[{}]:{}", c.host, c.port)
    } else {
        format!("{}:{}", c.host, c.port)
    }
}

/// The DER of the first certificate in `bytes`, which holds PEM (as in
/// channel configs) or, failing that, is taken as DER.
fn cert_der(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.is_empty() {
        return None;
    }
    match std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| twill_crypto::pem::parse_pem_blocks(text).ok())
    {
        Some(blocks) if !blocks.is_empty() => blocks
            .into_iter()
            .find(|(label, _)| label == "CERTIFICATE")
            .map(|(_, der)| der),
        _ => Some(bytes.to_vec()),
    }
}

/// PEM-to-DER conversions of consenter certificates already made. Every
/// cluster message is checked against the consenters' certificates, which
/// change only with the channel config; decoding their PEM each time cost
/// more than the rest of the message handling.
type DerMemo = HashMap<Vec<u8>, Option<Arc<[u8]>>>;

/// Entries kept before the memo starts over (consenter sets are small).
const DER_MEMO_LIMIT: usize = 1024;

fn cert_der_memo(bytes: &[u8]) -> Option<Arc<[u8]>> {
    static MEMO: std::sync::OnceLock<Mutex<DerMemo>> = std::sync::OnceLock::new();
    let memo = MEMO.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = memo.lock().get(bytes) {
        return hit.clone();
    }
    let der: Option<Arc<[u8]>> = cert_der(bytes).map(Arc::from);
    let mut memo = memo.lock();
    if memo.len() >= DER_MEMO_LIMIT {
        memo.clear();
    }
    memo.insert(bytes.to_vec(), der.clone());
    der
}

/// Whether `der` is the client or server TLS certificate of one of
/// `consenters` (DER equality; the config holds PEM).
pub fn is_consenter_cert(consenters: &[Consenter], der: &[u8]) -> bool {
    consenters.iter().any(|c| {
        [&c.client_tls_cert, &c.server_tls_cert]
            .into_iter()
            .any(|cert| cert_der_memo(cert).is_some_and(|d| *d == *der))
    })
}

/// Aborts a spawned task when dropped (its caller gave up).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ------------------------------------------------------------------ client

/// What all links and calls of one [`GrpcCluster`] share.
struct Shared {
    tls: Option<ClientTls>,
    opts: ClusterOptions,
    /// The runtime the cluster was created on: link tasks and calls run
    /// there even when the caller is the Raft loop's own thread.
    runtime: Option<tokio::runtime::Handle>,
    /// Lazily connected channels for Forward and Pull, by address.
    conns: Mutex<HashMap<String, Channel>>,
}

impl Shared {
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
    }

    /// The shared lazy channel to `addr`.
    fn channel(&self, addr: &str) -> Result<Channel, twill_comm::CommError> {
        let mut conns = self.conns.lock();
        if let Some(ch) = conns.get(addr) {
            return Ok(ch.clone());
        }
        // tonic spawns the channel's worker on the current runtime.
        let _guard = self.runtime.as_ref().map(|rt| rt.enter());
        let ch = connect_lazy(addr, self.tls.as_ref())?;
        conns.insert(addr.to_owned(), ch.clone());
        Ok(ch)
    }

    /// Runs `fut` on the cluster's runtime (so that tonic's I/O has a
    /// reactor whatever the caller's executor), cancelling it if the caller
    /// stops waiting.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        match self.runtime() {
            Some(rt) => {
                let mut task = AbortOnDrop(rt.spawn(fut));
                (&mut task.0).await.map_err(|e| e.to_string())
            }
            None => Ok(fut.await),
        }
    }
}

/// Process-wide fault switch for tests: while set, this node drops all
/// cluster traffic in both directions (Raft messages, forwards, block
/// pulls), as if a network partition cut it off from the other orderers.
/// Client-facing listeners keep working. Driven by `server::run` from the
/// `TWILL_TEST_ISOLATE_FILE` environment variable; never set otherwise.
static ISOLATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Cuts this node off from (or reconnects it to) the other orderers: a
/// process-wide fault switch for tests. While set, the node drops all
/// cluster traffic in both directions (Raft messages, forwards, block
/// pulls); client-facing listeners keep working.
pub fn set_isolated(isolated: bool) {
    if ISOLATED.swap(isolated, Ordering::SeqCst) != isolated {
        tracing::warn!(target: LOG_TARGET, isolated, "test fault switch: cluster traffic {}", if isolated { "dropped" } else { "restored" });
    }
}

fn isolated() -> bool {
    ISOLATED.load(Ordering::Relaxed)
}

/// The gRPC implementation of the chains' [`Cluster`](crate::chain::Cluster)
/// seam. See the [module docs](self).
pub struct GrpcCluster {
    shared: Arc<Shared>,
    channels: Mutex<HashMap<String, Arc<ChannelLinks>>>,
}

impl std::fmt::Debug for GrpcCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcCluster")
            .field("tls", &self.shared.tls)
            .field("channels", &self.channels.lock().len())
            .finish()
    }
}

impl GrpcCluster {
    /// A cluster client presenting `client_tls` (this node's cluster client
    /// certificate and key, and the CAs trusted for other orderers' server
    /// certificates); `None` dials in plaintext, for tests only.
    ///
    /// Call it within a tokio runtime: link tasks are spawned on it.
    pub fn new(client_tls: Option<ClientTls>) -> Arc<Self> {
        Self::with_options(client_tls, ClusterOptions::default())
    }

    /// [`GrpcCluster::new`] with explicit tunables.
    pub fn with_options(client_tls: Option<ClientTls>, opts: ClusterOptions) -> Arc<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        if runtime.is_none() {
            tracing::warn!(target: LOG_TARGET, "cluster client created outside a tokio runtime");
        }
        Arc::new(GrpcCluster {
            shared: Arc::new(Shared {
                tls: client_tls,
                opts,
                runtime,
                conns: Mutex::new(HashMap::new()),
            }),
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// Counters of the links of `channel`, by remote raft id.
    pub fn link_stats(&self, channel: &str) -> BTreeMap<u64, LinkStats> {
        let Some(links) = self.channels.lock().get(channel).cloned() else {
            return BTreeMap::new();
        };
        let state = links.state.read();
        state
            .links
            .iter()
            .map(|(id, link)| (*id, link.counters.stats()))
            .collect()
    }

    fn links(&self, channel: &str) -> Option<Arc<ChannelLinks>> {
        self.channels.lock().get(channel).cloned()
    }

    /// Drops cached Forward/Pull channels to addresses no channel uses.
    fn prune_conns(&self) {
        let in_use: HashSet<String> = self
            .channels
            .lock()
            .values()
            .flat_map(|links| {
                links
                    .state
                    .read()
                    .peers
                    .values()
                    .map(consenter_address)
                    .collect::<Vec<_>>()
            })
            .collect();
        self.shared
            .conns
            .lock()
            .retain(|addr, _| in_use.contains(addr));
    }

    /// The other consenters of `channel`, by raft id, with their addresses.
    /// The raft ids whose consenter TLS certificate (client or server) is
    /// `der` in `channel`, as known from the chain's last `transport` /
    /// `update_peers` call. `None` when the channel is unknown here.
    pub fn raft_ids_of_cert(&self, channel: &str, der: &[u8]) -> Option<Vec<u64>> {
        let links = self.links(channel)?;
        let state = links.state.read();
        Some(
            state
                .peers
                .iter()
                .filter(|(_, c)| is_consenter_cert(std::slice::from_ref(*c), der))
                .map(|(id, _)| *id)
                .collect(),
        )
    }

    fn remotes(&self, channel: &str) -> Vec<(u64, String)> {
        let Some(links) = self.links(channel) else {
            return Vec::new();
        };
        let state = links.state.read();
        state
            .peers
            .iter()
            .filter(|(id, _)| **id != links.self_id)
            .map(|(id, c)| (*id, consenter_address(c)))
            .collect()
    }
}

/// The links of one channel, shared by its [`Transport`] and the cluster.
struct ChannelLinks {
    channel: String,
    /// This node's raft id (0 when not known).
    self_id: u64,
    shared: Arc<Shared>,
    state: RwLock<LinksState>,
}

#[derive(Default)]
struct LinksState {
    peers: BTreeMap<u64, Consenter>,
    links: HashMap<u64, Link>,
    closed: bool,
}

/// The sending end of one link; dropping it lets the link's task end.
struct Link {
    addr: String,
    tx: mpsc::Sender<Outgoing>,
    counters: Arc<LinkCounters>,
}

struct Outgoing {
    message: Vec<u8>,
    snapshot: bool,
    reporter: Reporter,
}

impl ChannelLinks {
    fn new(channel: &str, self_id: u64, shared: Arc<Shared>) -> Self {
        ChannelLinks {
            channel: channel.to_owned(),
            self_id,
            shared,
            state: RwLock::new(LinksState::default()),
        }
    }

    /// Replaces the consenter set: links to removed consenters or to
    /// consenters whose address changed are closed, new ones are created.
    fn set_peers(&self, peers: BTreeMap<u64, Consenter>) {
        let mut state = self.state.write();
        if state.closed {
            return;
        }
        state.links.retain(|id, link| {
            peers
                .get(id)
                .is_some_and(|c| consenter_address(c) == link.addr)
        });
        for (id, consenter) in &peers {
            if *id == self.self_id || *id == 0 || state.links.contains_key(id) {
                continue;
            }
            let link = self.spawn_link(*id, consenter_address(consenter));
            state.links.insert(*id, link);
        }
        state.peers = peers;
    }

    fn close(&self) {
        let mut state = self.state.write();
        state.closed = true;
        state.links.clear();
    }

    fn spawn_link(&self, to: u64, addr: String) -> Link {
        let (tx, rx) = mpsc::channel(self.shared.opts.send_queue.max(1));
        let counters = Arc::new(LinkCounters::default());
        let task = LinkTask {
            channel: self.channel.clone(),
            to,
            addr: addr.clone(),
            shared: self.shared.clone(),
            counters: counters.clone(),
            rx,
            reporter: None,
            reported_down: false,
        };
        match self.shared.runtime() {
            Some(rt) => {
                rt.spawn(task.run());
            }
            None => {
                // Without a runtime the queue's receiver is dropped: every
                // send fails and is reported.
                tracing::error!(target: LOG_TARGET, channel = %self.channel, to, "no tokio runtime for the cluster link");
            }
        }
        Link { addr, tx, counters }
    }
}

/// The [`Transport`] of one channel's Raft node.
struct GrpcTransport {
    links: Arc<ChannelLinks>,
}

impl Transport for GrpcTransport {
    fn send(&self, msg: Message, reporter: &Reporter) {
        let to = msg.to;
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        if isolated() {
            reporter.report_unreachable(to);
            if snapshot {
                reporter.report_snapshot(to, false);
            }
            return;
        }
        let state = self.links.state.read();
        let Some(link) = state.links.get(&to) else {
            tracing::debug!(target: LOG_TARGET, channel = %self.links.channel, to, "no link to raft node; message dropped");
            reporter.report_unreachable(to);
            if snapshot {
                reporter.report_snapshot(to, false);
            }
            return;
        };
        if link.counters.backing_off.load(Ordering::Relaxed) {
            link.counters.drop_message(reporter, to, snapshot);
            return;
        }
        let message = match encode_message(&msg) {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!(target: LOG_TARGET, channel = %self.links.channel, to, %err, "cannot encode raft message");
                link.counters.drop_message(reporter, to, snapshot);
                return;
            }
        };
        let out = Outgoing {
            message,
            snapshot,
            reporter: reporter.clone(),
        };
        if let Err(err) = link.tx.try_send(out) {
            let full = matches!(err, mpsc::error::TrySendError::Full(_));
            tracing::trace!(target: LOG_TARGET, channel = %self.links.channel, to, full, "raft message dropped");
            link.counters.drop_message(reporter, to, snapshot);
        }
    }
}

/// An envelope on its way into the Step stream; `taken` fires when the
/// stream takes it (for snapshot reports).
struct Queued {
    envelope: RaftEnvelope,
    taken: Option<oneshot::Sender<()>>,
}

/// Drains one link's queue into a Step call, redialing with backoff.
struct LinkTask {
    channel: String,
    to: u64,
    addr: String,
    shared: Arc<Shared>,
    counters: Arc<LinkCounters>,
    rx: mpsc::Receiver<Outgoing>,
    /// The reporter of the latest message (the Raft node's).
    reporter: Option<Reporter>,
    /// A failure was logged at warn level and no success since.
    reported_down: bool,
}

/// Why a Step call stopped.
enum StreamEnd {
    /// The link was closed (queue dropped): the task ends.
    Closed,
    /// The call failed or the peer ended it.
    Failed(String),
}

impl LinkTask {
    async fn run(mut self) {
        let min = self.shared.opts.min_backoff;
        let max = self.shared.opts.max_backoff.max(min);
        let mut backoff = min;
        loop {
            // Dial only when there is something to send.
            let Some(first) = self.rx.recv().await else {
                return;
            };
            let started = Instant::now();
            let reason = match self.stream(first).await {
                StreamEnd::Closed => return,
                StreamEnd::Failed(reason) => reason,
            };
            self.counters.connected.store(false, Ordering::Relaxed);
            if started.elapsed() > max {
                // It worked for a while: start over with short delays.
                backoff = min;
            }
            if self.reported_down {
                tracing::debug!(target: LOG_TARGET, channel = %self.channel, to = self.to, addr = %self.addr, %reason, "cluster stream to consenter failed again");
            } else {
                tracing::warn!(target: LOG_TARGET, channel = %self.channel, to = self.to, addr = %self.addr, %reason, "cluster stream to consenter failed");
                self.reported_down = true;
            }
            if let Some(reporter) = &self.reporter {
                self.counters
                    .unreachable_reports
                    .fetch_add(1, Ordering::Relaxed);
                reporter.report_unreachable(self.to);
            }
            self.counters.backing_off.store(true, Ordering::Relaxed);
            let until = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    m = self.rx.recv() => match m {
                        Some(m) => self.counters.drop_message(&m.reporter, self.to, m.snapshot),
                        None => return,
                    },
                }
            }
            self.counters.backing_off.store(false, Ordering::Relaxed);
            backoff = (backoff * 2).min(max);
        }
    }

    /// Dials the consenter and streams queued messages until the call ends
    /// or the link is closed.
    async fn stream(&mut self, first: Outgoing) -> StreamEnd {
        // Bounded by the dial and TLS handshake timeouts; messages queue up
        // (and overflow) meanwhile.
        let channel = match connect(&self.addr, self.shared.tls.as_ref()).await {
            Ok(channel) => channel,
            Err(err) => {
                self.counters
                    .drop_message(&first.reporter, self.to, first.snapshot);
                self.reporter = Some(first.reporter);
                return StreamEnd::Failed(err.to_string());
            }
        };
        self.counters.connected.store(true, Ordering::Relaxed);
        if self.reported_down {
            tracing::info!(target: LOG_TARGET, channel = %self.channel, to = self.to, addr = %self.addr, "reconnected to consenter");
            self.reported_down = false;
        }
        let mut client = with_message_limits!(ClusterClient::new(channel));
        let (call_tx, call_rx) = mpsc::channel::<Queued>(STREAM_BUFFER);
        let counters = self.counters.clone();
        let outbound = ReceiverStream::new(call_rx).map(move |q: Queued| {
            counters.sent.fetch_add(1, Ordering::Relaxed);
            if let Some(taken) = q.taken {
                let _ = taken.send(());
            }
            q.envelope
        });
        let call = client.step(outbound);
        tokio::pin!(call);
        let ended = |res: Result<Response<StepAck>, tonic::Status>| match res {
            Ok(_) => StreamEnd::Failed("the consenter ended the stream".to_owned()),
            Err(status) => StreamEnd::Failed(format!("{:?}: {}", status.code(), status.message())),
        };
        let mut next = Some(first);
        loop {
            let out = match next.take() {
                Some(out) => out,
                None => tokio::select! {
                    biased;
                    res = &mut call => return ended(res),
                    m = self.rx.recv() => match m {
                        Some(m) => m,
                        None => return StreamEnd::Closed,
                    },
                },
            };
            let Outgoing {
                message,
                snapshot,
                reporter,
            } = out;
            let (taken_tx, taken_rx) = if snapshot {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let queued = Queued {
                envelope: RaftEnvelope {
                    channel_id: self.channel.clone(),
                    message,
                },
                taken: taken_tx,
            };
            tokio::select! {
                biased;
                res = &mut call => {
                    self.counters.drop_message(&reporter, self.to, snapshot);
                    self.reporter = Some(reporter);
                    return ended(res);
                }
                sent = call_tx.send(queued) => {
                    if sent.is_err() {
                        // The request stream is gone: the call is ending
                        // (the next turn sees it end).
                        self.counters.drop_message(&reporter, self.to, snapshot);
                        self.reporter = Some(reporter);
                        continue;
                    }
                }
            }
            if let Some(taken_rx) = taken_rx {
                tokio::select! {
                    biased;
                    taken = taken_rx => {
                        if taken.is_ok() {
                            self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
                        }
                        reporter.report_snapshot(self.to, taken.is_ok());
                    }
                    res = &mut call => {
                        reporter.report_snapshot(self.to, false);
                        self.reporter = Some(reporter);
                        return ended(res);
                    }
                }
            }
            self.reporter = Some(reporter);
        }
    }
}

#[async_trait::async_trait]
impl crate::chain::Cluster for GrpcCluster {
    fn transport(
        &self,
        channel: &str,
        self_id: u64,
        peers: BTreeMap<u64, Consenter>,
    ) -> Arc<dyn Transport> {
        let links = Arc::new(ChannelLinks::new(channel, self_id, self.shared.clone()));
        links.set_peers(peers);
        let old = self
            .channels
            .lock()
            .insert(channel.to_owned(), links.clone());
        if let Some(old) = old {
            old.close();
        }
        self.prune_conns();
        Arc::new(GrpcTransport { links })
    }

    fn update_peers(&self, channel: &str, peers: BTreeMap<u64, Consenter>) {
        let links = self
            .channels
            .lock()
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(ChannelLinks::new(channel, 0, self.shared.clone())))
            .clone();
        links.set_peers(peers);
        self.prune_conns();
    }

    async fn forward(
        &self,
        channel: &str,
        to: u64,
        envelopes: Vec<Vec<u8>>,
        config: bool,
    ) -> Result<(), Reject> {
        let unavailable = |info: String| Reject {
            status: Status::ServiceUnavailable,
            info,
        };
        if isolated() {
            return Err(unavailable(format!(
                "cannot reach the leader of channel {channel}: this orderer is cut off from the cluster"
            )));
        }
        let Some(addr) = self
            .remotes(channel)
            .into_iter()
            .find_map(|(id, addr)| (id == to).then_some(addr))
        else {
            return Err(unavailable(format!(
                "no endpoint known for consenter {to} of channel {channel}"
            )));
        };
        let shared = self.shared.clone();
        let request = ForwardRequest {
            channel_id: channel.to_owned(),
            envelopes,
            config,
        };
        let call_addr = addr.clone();
        let outcome = self
            .shared
            .run(async move {
                let ch = shared.channel(&call_addr).map_err(|e| e.to_string())?;
                let mut client = with_message_limits!(ClusterClient::new(ch));
                match tokio::time::timeout(shared.opts.forward_timeout, client.forward(request))
                    .await
                {
                    Err(_) => Err("timed out".to_owned()),
                    Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                    Ok(Ok(resp)) => Ok(resp.into_inner()),
                }
            })
            .await
            .and_then(|r| r);
        match outcome {
            Err(err) => Err(unavailable(format!(
                "forwarding to consenter {to} ({addr}) of channel {channel} failed: {err}"
            ))),
            Ok(resp) if resp.status == Status::Success as i32 => Ok(()),
            Ok(resp) => Err(Reject {
                status: Status::try_from(resp.status).unwrap_or(Status::InternalServerError),
                info: resp.info,
            }),
        }
    }

    async fn pull_blocks(
        &self,
        channel: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<Block>, ChainError> {
        if isolated() {
            return Err(ChainError::Pull(format!(
                "cannot pull blocks of channel {channel}: this orderer is cut off from the cluster"
            )));
        }
        if end <= start {
            return Ok(Vec::new());
        }
        let remotes = self.remotes(channel);
        if remotes.is_empty() {
            return Err(pull_error(format!(
                "no other consenter known for channel {channel}"
            )));
        }
        let mut failures = Vec::new();
        for (id, addr) in remotes {
            let shared = self.shared.clone();
            let call_addr = addr.clone();
            let channel_id = channel.to_owned();
            let outcome = self
                .shared
                .run(async move { pull_from(&shared, &call_addr, &channel_id, start, end).await })
                .await
                .and_then(|r| r);
            match outcome {
                Ok(blocks) => return Ok(blocks),
                Err(err) => {
                    tracing::warn!(target: LOG_TARGET, %channel, consenter = id, %addr, start, end, %err, "pulling blocks failed");
                    failures.push(format!("consenter {id} ({addr}): {err}"));
                }
            }
        }
        Err(pull_error(format!(
            "cannot pull blocks [{start}, {end}) of channel {channel}: {}",
            failures.join("; ")
        )))
    }

    fn remove_channel(&self, channel: &str) {
        let removed = self.channels.lock().remove(channel);
        if let Some(links) = removed {
            links.close();
        }
        self.prune_conns();
    }
}

fn pull_error(msg: String) -> ChainError {
    ChainError::Pull(msg)
}

/// Pulls blocks `[start, end)` of `channel` from the consenter at `addr`.
async fn pull_from(
    shared: &Shared,
    addr: &str,
    channel: &str,
    start: u64,
    end: u64,
) -> Result<Vec<Block>, String> {
    let wait = shared.opts.pull_timeout;
    let ch = shared.channel(addr).map_err(|e| e.to_string())?;
    let mut client = with_message_limits!(ClusterClient::new(ch));
    let request = PullRequest {
        channel_id: channel.to_owned(),
        start,
        end,
    };
    let mut stream = match tokio::time::timeout(wait, client.pull(request)).await {
        Err(_) => return Err("timed out".to_owned()),
        Ok(Err(status)) => return Err(format!("{:?}: {}", status.code(), status.message())),
        Ok(Ok(resp)) => resp.into_inner(),
    };
    let want = usize::try_from(end - start).map_err(|_| "range too large".to_owned())?;
    let mut blocks = Vec::with_capacity(want.min(1024));
    while blocks.len() < want {
        let next = start + blocks.len() as u64;
        let msg = match tokio::time::timeout(wait, stream.message()).await {
            Err(_) => return Err(format!("timed out waiting for block {next}")),
            Ok(Err(status)) => {
                return Err(format!(
                    "after {} blocks: {:?}: {}",
                    blocks.len(),
                    status.code(),
                    status.message()
                ))
            }
            Ok(Ok(None)) => {
                return Err(format!(
                    "stream ended after {} of {want} blocks",
                    blocks.len()
                ))
            }
            Ok(Ok(Some(msg))) => msg,
        };
        let block = Block::decode(msg.block.as_slice())
            .map_err(|e| format!("block {next} does not decode: {e}"))?;
        let number = block.header.as_ref().map(|h| h.number);
        if number != Some(next) {
            return Err(format!("expected block {next}, got {number:?}"));
        }
        blocks.push(block);
    }
    Ok(blocks)
}

// ------------------------------------------------------------------ server

/// What [`ClusterService`] needs from one channel. Implemented for
/// [`ChainHandle`]; tests implement it over a bare Raft node.
#[async_trait::async_trait]
pub trait ClusterChain: Clone + Send + Sync + 'static {
    /// The channel's consenters, as in its current config.
    fn consenters(&self) -> Vec<Consenter>;

    /// Hands an inbound Raft message to the channel's Raft node.
    fn step(&self, msg: Message) -> Result<(), RaftError>;

    /// Orders envelopes a follower forwarded (this node should lead).
    async fn order_forwarded(&self, envelopes: Vec<Vec<u8>>, config: bool) -> Result<(), Reject>;

    /// Blocks in the ledger.
    fn height(&self) -> u64;

    /// The serialized block `number`, `None` if absent. May block on I/O.
    fn block_bytes(&self, number: u64) -> Result<Option<Vec<u8>>, String>;
}

/// Where [`ClusterService`] finds channels. Implemented for [`Registrar`].
pub trait ChannelSource: Send + Sync + 'static {
    /// The chain type served.
    type Chain: ClusterChain;

    /// The chain of `channel`, if this node serves it.
    fn chain(&self, channel: &str) -> Option<Self::Chain>;
}

impl ChannelSource for Registrar {
    type Chain = ChainHandle;

    fn chain(&self, channel: &str) -> Option<ChainHandle> {
        self.get(channel)
    }
}

#[async_trait::async_trait]
impl ClusterChain for ChainHandle {
    fn consenters(&self) -> Vec<Consenter> {
        self.config().raft.consenters.clone()
    }

    fn step(&self, msg: Message) -> Result<(), RaftError> {
        self.raft().step(msg)
    }

    async fn order_forwarded(&self, envelopes: Vec<Vec<u8>>, config: bool) -> Result<(), Reject> {
        ChainHandle::order_forwarded(self, envelopes, config).await
    }

    fn height(&self) -> u64 {
        self.block_store().height()
    }

    fn block_bytes(&self, number: u64) -> Result<Option<Vec<u8>>, String> {
        self.block_store()
            .block_bytes(number)
            .map_err(|e| e.to_string())
    }
}

/// The server side of `twill.cluster.Cluster`. See the [module docs](self).
pub struct ClusterService<S: ChannelSource = Registrar> {
    source: Arc<S>,
    /// Who is who: when set, an inbound Raft message must come from the
    /// raft id that belongs to the caller's certificate.
    directory: Option<Arc<GrpcCluster>>,
    allow_insecure: bool,
    closer: ClusterCloser,
    closing: watch::Receiver<bool>,
}

/// Ends the long-lived calls of a [`ClusterService`] (Step streams, Pull
/// streams) with `UNAVAILABLE` and refuses new ones.
///
/// Peers keep their Step streams open indefinitely, and a tonic server's
/// graceful shutdown waits for every open call: stop accepting first (trigger
/// the server's shutdown future), then call [`ClusterCloser::close`].
#[derive(Clone, Debug)]
pub struct ClusterCloser(Arc<watch::Sender<bool>>);

impl ClusterCloser {
    /// Ends open calls and refuses new ones.
    pub fn close(&self) {
        self.0.send_replace(true);
    }
}

impl<S: ChannelSource> std::fmt::Debug for ClusterService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterService")
            .field("allow_insecure", &self.allow_insecure)
            .finish_non_exhaustive()
    }
}

impl<S: ChannelSource> ClusterService<S> {
    /// Serves the channels of `source`, authorizing callers by their TLS
    /// client certificate.
    pub fn new(source: Arc<S>) -> Self {
        let (tx, closing) = watch::channel(false);
        ClusterService {
            source,
            directory: None,
            allow_insecure: false,
            closer: ClusterCloser(Arc::new(tx)),
            closing,
        }
    }

    /// A handle that ends this service's open calls (for shutdown).
    pub fn closer(&self) -> ClusterCloser {
        self.closer.clone()
    }

    fn check_open(&self) -> Result<(), tonic::Status> {
        if *self.closing.borrow() {
            Err(shutting_down())
        } else {
            Ok(())
        }
    }

    /// Checks the sender id of every inbound Raft message against the raft
    /// ids `cluster` knows for the caller's certificate, so one consenter
    /// cannot speak (vote, acknowledge) for another.
    pub fn with_directory(mut self, cluster: Arc<GrpcCluster>) -> Self {
        self.directory = Some(cluster);
        self
    }

    /// With `true`, callers without a TLS client certificate (a plaintext
    /// listener) are let in. For tests only.
    pub fn allow_insecure(mut self, allow: bool) -> Self {
        self.allow_insecure = allow;
        self
    }

    /// The chain of `channel` if the caller (client certificate `cert`) is
    /// one of its consenters.
    fn authorize(&self, channel: &str, cert: Option<&[u8]>) -> Result<S::Chain, tonic::Status> {
        let chain = self
            .source
            .chain(channel)
            .ok_or_else(|| tonic::Status::not_found(format!("channel {channel} not found")))?;
        match cert {
            Some(der) if is_consenter_cert(&chain.consenters(), der) => Ok(chain),
            Some(der) => {
                let hash: String = twill_comm::cert_hash(der)
                    .iter()
                    .take(8)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                tracing::warn!(target: LOG_TARGET, %channel, cert_hash = %hash, "cluster call from a non-consenter refused");
                Err(tonic::Status::permission_denied(format!(
                    "the client TLS certificate is not a consenter certificate of channel {channel}"
                )))
            }
            None if self.allow_insecure => Ok(chain),
            None => Err(tonic::Status::permission_denied(format!(
                "no client TLS certificate: channel {channel} only accepts its consenters"
            ))),
        }
    }
}

fn shutting_down() -> tonic::Status {
    tonic::Status::unavailable("the orderer is shutting down")
}

/// The tonic server for `svc`, with 100 MiB message limits both ways.
pub fn cluster_server<S: ChannelSource>(
    svc: ClusterService<S>,
) -> ClusterServer<ClusterService<S>> {
    with_message_limits!(ClusterServer::new(svc))
}

#[tonic::async_trait]
impl<S: ChannelSource> cluster_server::Cluster for ClusterService<S> {
    async fn step(
        &self,
        request: Request<Streaming<RaftEnvelope>>,
    ) -> Result<Response<StepAck>, tonic::Status> {
        self.check_open()?;
        let cert = peer_cert_der(&request);
        let mut stream = request.into_inner();
        let mut closing = self.closing.clone();
        // Channels this stream was authorized for, and when.
        let mut authorized: HashMap<String, (S::Chain, Instant)> = HashMap::new();
        loop {
            let envelope = tokio::select! {
                msg = stream.message() => match msg? {
                    Some(envelope) => envelope,
                    None => break,
                },
                _ = closing.wait_for(|closed| *closed) => return Err(shutting_down()),
            };
            let fresh = authorized
                .get(&envelope.channel_id)
                .filter(|(_, at)| at.elapsed() < AUTH_RECHECK)
                .map(|(chain, _)| chain.clone());
            let chain = match fresh {
                Some(chain) => chain,
                None => {
                    let chain = self.authorize(&envelope.channel_id, cert.as_deref())?;
                    authorized.insert(envelope.channel_id.clone(), (chain.clone(), Instant::now()));
                    chain
                }
            };
            if isolated() {
                continue;
            }
            let msg = decode_message(&envelope.message).map_err(|err| {
                tonic::Status::invalid_argument(format!(
                    "malformed raft message for channel {}: {err}",
                    envelope.channel_id
                ))
            })?;
            if let (Some(dir), Some(der)) = (&self.directory, cert.as_deref()) {
                if let Some(ids) = dir.raft_ids_of_cert(&envelope.channel_id, der) {
                    if !ids.contains(&msg.from) {
                        tracing::warn!(target: LOG_TARGET, channel = %envelope.channel_id, from = msg.from, ?ids,
                            "raft message claims a sender other than the caller's certificate; dropped");
                        continue;
                    }
                }
            }
            match chain.step(msg) {
                Ok(()) => {}
                Err(RaftError::Busy) => {
                    tracing::debug!(target: LOG_TARGET, channel = %envelope.channel_id, "raft mailbox full; inbound message dropped");
                }
                Err(err) => {
                    tracing::debug!(target: LOG_TARGET, channel = %envelope.channel_id, %err, "inbound raft message dropped");
                }
            }
        }
        Ok(Response::new(StepAck {}))
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, tonic::Status> {
        self.check_open()?;
        if isolated() {
            return Err(tonic::Status::unavailable(
                "this orderer is cut off from the cluster",
            ));
        }
        let cert = peer_cert_der(&request);
        let req = request.into_inner();
        let chain = self.authorize(&req.channel_id, cert.as_deref())?;
        let response = match chain.order_forwarded(req.envelopes, req.config).await {
            Ok(()) => ForwardResponse {
                status: Status::Success as i32,
                info: String::new(),
                index: 0,
            },
            Err(reject) => ForwardResponse {
                status: reject.status as i32,
                info: reject.info,
                index: 0,
            },
        };
        Ok(Response::new(response))
    }

    type PullStream = ReceiverStream<Result<PullResponse, tonic::Status>>;

    async fn pull(
        &self,
        request: Request<PullRequest>,
    ) -> Result<Response<Self::PullStream>, tonic::Status> {
        self.check_open()?;
        if isolated() {
            return Err(tonic::Status::unavailable(
                "this orderer is cut off from the cluster",
            ));
        }
        let cert = peer_cert_der(&request);
        let req = request.into_inner();
        let channel = req.channel_id;
        let chain = self.authorize(&channel, cert.as_deref())?;
        let height = chain.height();
        let start = req.start;
        let end = if req.end == 0 { height } else { req.end };
        if req.end != 0 && start >= end {
            return Err(tonic::Status::invalid_argument(format!(
                "empty block range [{start}, {end})"
            )));
        }
        if start >= height || end > height {
            return Err(tonic::Status::out_of_range(format!(
                "channel {channel} has {height} blocks; [{start}, {end}) requested"
            )));
        }
        let (tx, rx) = mpsc::channel(PULL_BUFFER);
        let mut closing = self.closing.clone();
        tokio::spawn(async move {
            for number in start..end {
                if *closing.borrow_and_update() {
                    let _ = tx.send(Err(shutting_down())).await;
                    return;
                }
                let reader = chain.clone();
                let read = tokio::task::spawn_blocking(move || reader.block_bytes(number)).await;
                let item = match read {
                    Ok(Ok(Some(block))) => Ok(PullResponse { block }),
                    Ok(Ok(None)) => Err(tonic::Status::not_found(format!(
                        "block {number} of channel {channel} not found"
                    ))),
                    Ok(Err(err)) => Err(tonic::Status::internal(format!(
                        "reading block {number} of channel {channel}: {err}"
                    ))),
                    Err(err) => Err(tonic::Status::internal(format!(
                        "reading block {number} of channel {channel}: {err}"
                    ))),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
