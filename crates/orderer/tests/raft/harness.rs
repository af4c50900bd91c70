//! In-process cluster harness: a simulated network that can isolate nodes,
//! a recording state machine persisted in sled, and wait helpers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use twill_orderer::raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Message, MessageType,
};
use twill_orderer::raft::{
    RaftConfig, RaftError, RaftHandle, RaftNode, RaftResult, RaftStatus, Reporter, StateMachine,
    Transport,
};

/// How long any wait in these tests may take before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Cluster tests are timing-sensitive (real ticks); run one at a time so that
/// they do not starve each other on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

// ---------------------------------------------------------------- network

/// Routes messages between in-process nodes.
#[derive(Default)]
pub struct Network {
    handles: Mutex<HashMap<u64, RaftHandle>>,
    isolated: Mutex<HashSet<u64>>,
}

impl Network {
    pub fn register(&self, handle: RaftHandle) {
        self.handles.lock().unwrap().insert(handle.id(), handle);
    }

    pub fn unregister(&self, id: u64) {
        self.handles.lock().unwrap().remove(&id);
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: u64) {
        self.isolated.lock().unwrap().insert(id);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.isolated.lock().unwrap().clear();
    }

    fn link_up(&self, from: u64, to: u64) -> bool {
        let isolated = self.isolated.lock().unwrap();
        !isolated.contains(&from) && !isolated.contains(&to)
    }
}

/// One node's view of the [`Network`].
pub struct NetTransport {
    id: u64,
    net: Arc<Network>,
}

impl Transport for NetTransport {
    fn send(&self, msg: Message, reporter: &Reporter) {
        let to = msg.to;
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let target = if self.net.link_up(self.id, to) {
            self.net.handles.lock().unwrap().get(&to).cloned()
        } else {
            None
        };
        let delivered = target.is_some_and(|h| h.step(msg).is_ok());
        if !delivered {
            reporter.report_unreachable(to);
        }
        if snapshot {
            reporter.report_snapshot(to, delivered);
        }
    }
}

// ---------------------------------------------------------- state machine

/// What a node's state machine did, shared with the test (and with other
/// nodes' state machines, which "pull blocks" from it on restore).
#[derive(Default, Debug)]
pub struct Record {
    /// Applied normal entries, in order.
    pub applied: Vec<(u64, Vec<u8>)>,
    /// Highest index applied or noted.
    pub applied_index: u64,
    /// Indexes of every restore call (failed ones included).
    pub restores: Vec<u64>,
    /// Restore calls still to fail on purpose.
    pub fail_restores: usize,
    /// Broken expectations (re-applied or skipped entries, bad snapshots).
    pub violations: Vec<String>,
    /// How many times the state machine was opened.
    pub starts: u32,
}

pub type Shared = Arc<Mutex<Record>>;

/// Every node's [`Record`], by id.
#[derive(Default)]
pub struct Registry {
    records: Mutex<HashMap<u64, Shared>>,
}

impl Registry {
    pub fn record(&self, id: u64) -> Shared {
        self.records.lock().unwrap().entry(id).or_default().clone()
    }

    /// The applied entries up to `index` of some other node that has them.
    fn fetch(&self, me: u64, index: u64) -> Option<Vec<(u64, Vec<u8>)>> {
        let records: Vec<(u64, Shared)> = self
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        records
            .into_iter()
            .filter(|(id, _)| *id != me)
            .find_map(|(_, r)| {
                let r = r.lock().unwrap();
                (r.applied_index >= index).then(|| {
                    r.applied
                        .iter()
                        .filter(|(i, _)| *i <= index)
                        .cloned()
                        .collect()
                })
            })
    }
}

fn digest(entries: &[(u64, Vec<u8>)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (index, data) in entries {
        for b in index.to_be_bytes().iter().chain(data) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

const KEY_APPLIED: &[u8] = b"applied";

/// A state machine that records what it applies, durably (sled), like an
/// orderer's ledger would: the applied index is written atomically with the
/// data.
pub struct TestSm {
    id: u64,
    db: sled::Db,
    applied: u64,
    record: Shared,
    registry: Arc<Registry>,
}

impl TestSm {
    pub fn open(id: u64, dir: &Path, registry: &Arc<Registry>) -> TestSm {
        let db = sled::open(dir).unwrap();
        let applied = db
            .get(KEY_APPLIED)
            .unwrap()
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
            .unwrap_or(0);
        let log: Vec<(u64, Vec<u8>)> = db
            .iter()
            .map(|kv| kv.unwrap())
            .filter(|(k, _)| k.len() == 8)
            .map(|(k, v)| {
                (
                    u64::from_be_bytes(k.as_ref().try_into().unwrap()),
                    v.to_vec(),
                )
            })
            .collect();
        let record = registry.record(id);
        {
            let mut r = record.lock().unwrap();
            r.applied = log;
            r.applied_index = applied;
            r.starts += 1;
        }
        TestSm {
            id,
            db,
            applied,
            record,
            registry: registry.clone(),
        }
    }

    fn advance(&mut self, index: u64, data: Option<&[u8]>) -> RaftResult<()> {
        let mut r = self.record.lock().unwrap();
        if index != self.applied + 1 {
            r.violations.push(format!(
                "node {} got index {index} after {}",
                self.id, self.applied
            ));
        }
        let mut batch = sled::Batch::default();
        if let Some(data) = data {
            batch.insert(&index.to_be_bytes()[..], data);
        }
        batch.insert(KEY_APPLIED, &index.to_be_bytes()[..]);
        self.db.apply_batch(batch).map_err(RaftError::application)?;
        self.applied = index;
        r.applied_index = index;
        if let Some(data) = data {
            r.applied.push((index, data.to_vec()));
        }
        Ok(())
    }
}

impl Drop for TestSm {
    fn drop(&mut self) {
        let _ = self.db.flush();
    }
}

impl StateMachine for TestSm {
    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) -> RaftResult<()> {
        self.advance(index, Some(data))
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn note_applied(&mut self, index: u64) {
        self.advance(index, None).unwrap();
    }

    fn snapshot(&self) -> Vec<u8> {
        let r = self.record.lock().unwrap();
        let mut out = self.applied.to_be_bytes().to_vec();
        out.extend_from_slice(&digest(&r.applied).to_be_bytes());
        out
    }

    fn restore(&mut self, index: u64, _term: u64, data: &[u8]) -> RaftResult<()> {
        {
            let mut r = self.record.lock().unwrap();
            r.restores.push(index);
            if r.fail_restores > 0 {
                r.fail_restores -= 1;
                return Err(RaftError::application("injected restore failure"));
            }
        }
        let snap_index = u64::from_be_bytes(data[..8].try_into().unwrap());
        let snap_digest = u64::from_be_bytes(data[8..16].try_into().unwrap());
        // "Pull the missing blocks" from a peer that has them.
        let Some(prefix) = self.registry.fetch(self.id, index) else {
            return Err(RaftError::application("no peer has the data yet"));
        };
        let mut r = self.record.lock().unwrap();
        if snap_index != index || digest(&prefix) != snap_digest {
            r.violations.push(format!(
                "node {}: snapshot at {index} does not match the data pulled",
                self.id
            ));
        }
        let mut batch = sled::Batch::default();
        for k in self.db.iter().keys() {
            batch.remove(k.unwrap());
        }
        for (i, d) in &prefix {
            batch.insert(&i.to_be_bytes()[..], &d[..]);
        }
        batch.insert(KEY_APPLIED, &index.to_be_bytes()[..]);
        self.db.apply_batch(batch).map_err(RaftError::application)?;
        self.applied = index;
        r.applied = prefix;
        r.applied_index = index;
        Ok(())
    }
}

// ---------------------------------------------------------------- cluster

type Tweak = Box<dyn Fn(&mut RaftConfig) + Send + Sync>;

/// A set of nodes on one [`Network`], each with its own directories.
pub struct Cluster {
    pub net: Arc<Network>,
    pub registry: Arc<Registry>,
    dir: TempDir,
    nodes: HashMap<u64, RaftNode>,
    handles: HashMap<u64, RaftHandle>,
    tweak: Tweak,
}

/// Test timing: 20 ms ticks, elections after 10-20 ticks.
pub fn test_config(id: u64, peers: Vec<u64>) -> RaftConfig {
    let mut cfg = RaftConfig::new(id, peers);
    cfg.tick_interval = Duration::from_millis(20);
    cfg.election_tick = 10;
    cfg.heartbeat_tick = 1;
    cfg.proposal_timeout = Duration::from_secs(10);
    cfg
}

impl Cluster {
    /// Starts founding members `ids`, with `tweak` applied to each config.
    pub fn start(ids: &[u64], tweak: impl Fn(&mut RaftConfig) + Send + Sync + 'static) -> Cluster {
        let mut cluster = Cluster {
            net: Arc::new(Network::default()),
            registry: Arc::new(Registry::default()),
            dir: tempfile::tempdir().unwrap(),
            nodes: HashMap::new(),
            handles: HashMap::new(),
            tweak: Box::new(tweak),
        };
        for &id in ids {
            cluster.start_node(id, ids.to_vec());
        }
        cluster
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// The directory of node `id`'s raft log.
    pub fn raft_dir(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("raft")
    }

    /// Starts (or restarts) node `id`; `peers` is empty for a joiner.
    pub fn start_node(&mut self, id: u64, peers: Vec<u64>) -> RaftHandle {
        let mut cfg = test_config(id, peers);
        (self.tweak)(&mut cfg);
        let dir = self.node_dir(id);
        let sm = TestSm::open(id, &dir.join("sm"), &self.registry);
        let transport = Arc::new(NetTransport {
            id,
            net: self.net.clone(),
        });
        let (node, handle) = RaftNode::start(cfg, &self.raft_dir(id), sm, transport).unwrap();
        self.net.register(handle.clone());
        self.nodes.insert(id, node);
        self.handles.insert(id, handle.clone());
        handle
    }

    /// Stops node `id` (its directories stay).
    pub async fn stop_node(&mut self, id: u64) {
        self.net.unregister(id);
        let handle = self.handles.remove(&id).unwrap();
        handle.shutdown().await;
        drop(self.nodes.remove(&id));
    }

    pub fn handle(&self, id: u64) -> RaftHandle {
        self.handles[&id].clone()
    }

    pub fn handles(&self) -> HashMap<u64, RaftHandle> {
        self.handles.clone()
    }

    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.handles.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn status(&self, id: u64) -> RaftStatus {
        self.handles[&id].status()
    }

    pub fn record(&self, id: u64) -> Shared {
        self.registry.record(id)
    }

    pub fn applied(&self, id: u64) -> Vec<(u64, Vec<u8>)> {
        self.record(id).lock().unwrap().applied.clone()
    }

    /// Waits until every node of `among` agrees on one leader in `among`.
    pub async fn wait_leader(&self, among: &[u64]) -> u64 {
        let mut leader = 0;
        eventually("a leader everyone agrees on", || {
            let statuses: Vec<RaftStatus> = among.iter().map(|id| self.status(*id)).collect();
            let Some(l) = statuses[0].leader else {
                return false;
            };
            let agreed = among.contains(&l)
                && statuses
                    .iter()
                    .all(|s| s.leader == Some(l) && s.term == statuses[0].term)
                && statuses.iter().filter(|s| s.is_leader()).count() == 1
                && self.status(l).is_leader();
            leader = l;
            agreed
        })
        .await;
        leader
    }

    /// Waits until every node of `among` has applied `index`.
    pub async fn wait_applied(&self, among: &[u64], index: u64) {
        eventually(&format!("{among:?} to apply {index}"), || {
            among.iter().all(|id| self.status(*id).applied >= index)
        })
        .await;
    }

    /// Proposes through whichever node leads, following redirects and
    /// retrying when the outcome is unknown (so `data` may commit twice).
    pub async fn propose(&self, data: Vec<u8>) -> (u64, u64) {
        propose_anywhere(&self.handles, data).await
    }

    /// Asserts no node recorded a broken expectation.
    pub fn assert_no_violations(&self) {
        let records = self.registry.records.lock().unwrap();
        for (id, r) in records.iter() {
            let r = r.lock().unwrap();
            assert!(r.violations.is_empty(), "node {id}: {:?}", r.violations);
        }
    }

    /// Asserts that `among` applied exactly the same entries.
    pub fn assert_same_applied(&self, among: &[u64]) {
        let first = self.applied(among[0]);
        for id in &among[1..] {
            let other = self.applied(*id);
            assert_eq!(
                first.len(),
                other.len(),
                "node {} and node {id} applied different counts",
                among[0]
            );
            assert!(first == other, "node {} and node {id} diverge", among[0]);
        }
    }
}

/// Proposes via the leader among `handles`, retrying on redirects and
/// unknown outcomes until it succeeds.
pub async fn propose_anywhere(handles: &HashMap<u64, RaftHandle>, data: Vec<u8>) -> (u64, u64) {
    let deadline = Instant::now() + WAIT;
    let mut target = *handles.keys().min().unwrap();
    loop {
        assert!(Instant::now() < deadline, "proposal never committed");
        match handles[&target].propose(data.clone()).await {
            Ok(at) => return at,
            Err(RaftError::NotLeader { leader: Some(l) }) if handles.contains_key(&l) => target = l,
            Err(
                RaftError::NotLeader { .. }
                | RaftError::ProposalDropped
                | RaftError::UnknownOutcome { .. }
                | RaftError::Timeout { .. }
                | RaftError::Overwritten { .. },
            ) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(l) = handles.values().find_map(|h| h.status().leader) {
                    if handles.contains_key(&l) {
                        target = l;
                    }
                }
            }
            Err(err) => panic!("proposal failed: {err}"),
        }
    }
}

/// Polls `cond` until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A membership change of single steps.
pub fn conf_change(changes: &[(ConfChangeType, u64)], explicit: bool) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    for (ty, id) in changes {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(*ty);
        single.node_id = *id;
        cc.mut_changes().push(single);
    }
    if explicit {
        cc.set_transition(ConfChangeTransition::Explicit);
    }
    cc
}
