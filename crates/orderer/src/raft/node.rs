//! The node loop that owns a `RawNode`, and the handles that talk to it.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ::raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use ::raft::{Changer, RawNode, SnapshotStatus, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use super::codec::decode;
use super::logging::raft_logger;
use super::storage::LogStorage;
use super::{
    RaftConfig, RaftError, RaftResult, RaftStatus, StateMachine, Transport, BOOTSTRAP_INDEX,
};

/// Commands drained in one turn before the readies are handled, so that a
/// burst of proposals shares one fsync.
const MAX_BATCH: usize = 1024;

const LOG_TARGET: &str = "orderer::raft";

type Reply = oneshot::Sender<RaftResult<(u64, u64)>>;

/// Requests that go through the bounded mailbox.
enum Command {
    Propose { data: Vec<u8>, reply: Reply },
    ProposeConfChange { cc: ConfChangeV2, reply: Reply },
    Step(Box<Message>),
}

/// Requests that go through the unbounded mailbox (must never be lost).
enum Control {
    Unreachable(u64),
    SnapshotStatus { to: u64, ok: bool },
    Tick,
    Shutdown,
}

/// Lets a [`Transport`] report failed deliveries back to its node. Cheap to
/// clone; reports never block and are dropped once the node has stopped.
#[derive(Clone, Debug)]
pub struct Reporter {
    ctrl: mpsc::UnboundedSender<Control>,
}

impl Reporter {
    /// Reports that a message to `to` could not be delivered, so that the
    /// leader stops streaming to it and probes instead.
    pub fn report_unreachable(&self, to: u64) {
        let _ = self.ctrl.send(Control::Unreachable(to));
    }

    /// Reports whether a `MsgSnapshot` to `to` was delivered (`ok`) or lost.
    pub fn report_snapshot(&self, to: u64, ok: bool) {
        let _ = self.ctrl.send(Control::SnapshotStatus { to, ok });
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Unreachable(to) => write!(f, "Unreachable({to})"),
            Control::SnapshotStatus { to, ok } => write!(f, "SnapshotStatus({to}, {ok})"),
            Control::Tick => f.write_str("Tick"),
            Control::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// A cheap, cloneable handle to a running [`RaftNode`]'s loop.
#[derive(Clone)]
pub struct RaftHandle {
    id: u64,
    cmd: mpsc::Sender<Command>,
    reporter: Reporter,
    status: watch::Receiver<RaftStatus>,
}

impl std::fmt::Debug for RaftHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftHandle").field("id", &self.id).finish()
    }
}

impl RaftHandle {
    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Proposes `data` (non-empty) as a new entry. Resolves once the entry is
    /// committed and applied locally, with its `(term, index)`.
    ///
    /// Errors: [`RaftError::NotLeader`] on a non-leader (forward to the named
    /// leader), [`RaftError::ProposalDropped`] (nothing appended, retry),
    /// [`RaftError::UnknownOutcome`] and [`RaftError::Timeout`] (the entry may
    /// still commit), [`RaftError::Overwritten`] (definitely lost),
    /// [`RaftError::Stopped`].
    pub async fn propose(&self, data: Vec<u8>) -> RaftResult<(u64, u64)> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Propose { data, reply })
            .await
            .map_err(|_| RaftError::Stopped)?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Proposes a membership change (add a learner, promote it, remove a
    /// node). Resolves with the change's `(term, index)` once it has been
    /// applied locally, or fails with [`RaftError::ConfChangeRejected`] when
    /// another change is pending or the change does not fit the current
    /// configuration (plus the errors of [`propose`](Self::propose)).
    ///
    /// A change that enters a joint configuration resolves when the joint
    /// configuration is entered; the leader then leaves it on its own (with an
    /// empty `ConfChangeV2`), which [`RaftStatus::voters_outgoing`] becoming
    /// empty shows.
    pub async fn propose_conf_change(&self, cc: ConfChangeV2) -> RaftResult<(u64, u64)> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::ProposeConfChange { cc, reply })
            .await
            .map_err(|_| RaftError::Stopped)?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Hands a message received from a peer to the loop. Never blocks: a full
    /// mailbox drops it with [`RaftError::Busy`] (raft retransmits).
    pub fn step(&self, msg: Message) -> RaftResult<()> {
        self.cmd
            .try_send(Command::Step(Box::new(msg)))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => RaftError::Busy,
                mpsc::error::TrySendError::Closed(_) => RaftError::Stopped,
            })
    }

    /// Reports that a message to `to` could not be delivered.
    pub fn report_unreachable(&self, to: u64) {
        self.reporter.report_unreachable(to);
    }

    /// Reports whether a snapshot sent to `to` was delivered.
    pub fn report_snapshot(&self, to: u64, ok: bool) {
        self.reporter.report_snapshot(to, ok);
    }

    /// A [`Reporter`] for this node.
    pub fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    /// Advances logical time by one tick. Only meaningful with
    /// [`RaftConfig::manual_ticks`]; with the timer it adds an extra tick.
    pub fn tick(&self) -> RaftResult<()> {
        self.reporter
            .ctrl
            .send(Control::Tick)
            .map_err(|_| RaftError::Stopped)
    }

    /// The latest published status (cheap: no round trip to the loop).
    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status the loop publishes. It reports the
    /// channel closed once the loop has exited.
    pub fn subscribe_status(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// Asks the loop to stop and waits until it has. Pending proposals fail
    /// with [`RaftError::Stopped`].
    pub async fn shutdown(&self) {
        let _ = self.reporter.ctrl.send(Control::Shutdown);
        let mut status = self.status.clone();
        while status.changed().await.is_ok() {}
    }
}

/// A running Raft group member: owns the loop thread. Dropping it stops the
/// loop and joins the thread (which blocks until the loop's current turn
/// ends; in async code call [`RaftHandle::shutdown`] first).
pub struct RaftNode {
    handle: RaftHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.handle.id)
            .finish()
    }
}

impl RaftNode {
    /// Opens (or creates) the raft storage in `storage_dir`, recovers or
    /// bootstraps the group state, and starts the loop on a dedicated thread
    /// named `raft-<id>`.
    ///
    /// Blocks briefly (opening the raft log replays it into memory: the
    /// entries since the latest snapshot). Fails if the configuration is
    /// invalid, the storage cannot be opened or is inconsistent with
    /// `sm.applied_index()`.
    pub fn start(
        cfg: RaftConfig,
        storage_dir: &Path,
        sm: impl StateMachine,
        transport: Arc<dyn Transport>,
    ) -> RaftResult<(RaftNode, RaftHandle)> {
        cfg.validate()?;
        let storage = LogStorage::open(storage_dir)?;
        let id = cfg.id;
        let (cmd_tx, cmd_rx) = mpsc::channel(cfg.mailbox_capacity);
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(RaftStatus {
            id,
            ..RaftStatus::default()
        });
        let status_tx = Arc::new(status_tx);
        let reporter = Reporter { ctrl: ctrl_tx };
        let handle = RaftHandle {
            id,
            cmd: cmd_tx,
            reporter: reporter.clone(),
            status: status_rx,
        };
        let (init_tx, init_rx) = std::sync::mpsc::sync_channel::<RaftResult<()>>(1);
        let thread = std::thread::Builder::new()
            .name(format!("raft-{id}"))
            .spawn(move || {
                let core_status = status_tx.clone();
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || {
                    match Core::new(cfg, storage, sm, transport, reporter, core_status) {
                        Ok(core) => {
                            let _ = init_tx.send(Ok(()));
                            core.run(cmd_rx, ctrl_rx);
                        }
                        Err(err) => {
                            let _ = init_tx.send(Err(err));
                        }
                    }
                }));
                if outcome.is_err() {
                    tracing::error!(target: LOG_TARGET, raft_id = id, "raft loop panicked");
                    // Tell every watcher the node is gone, so the chain
                    // reports itself halted instead of looking healthy.
                    status_tx.send_modify(|status| status.stopped = true);
                }
            })?;
        let node = RaftNode {
            handle: handle.clone(),
            thread: Some(thread),
        };
        match init_rx.recv() {
            Ok(Ok(())) => Ok((node, handle)),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(RaftError::Stopped),
        }
    }

    /// A handle to this node.
    pub fn handle(&self) -> RaftHandle {
        self.handle.clone()
    }

    /// Stops the loop and waits for its thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.reporter.ctrl.send(Control::Shutdown);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(target: LOG_TARGET, raft_id = self.handle.id, "raft thread panicked");
            }
        }
    }
}

impl Drop for RaftNode {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    ConfChange,
}

/// A proposal appended on this (leader) node, waiting to be applied.
struct Pending {
    term: u64,
    kind: Kind,
    /// Tick count at which it times out.
    deadline: u64,
    reply: Reply,
}

/// The loop's state; lives on the loop thread only.
struct Core<S: StateMachine> {
    /// `Some(commit)` while a node that started with empty storage has not
    /// yet caught up to the highest commit index a leader told it about.
    /// Such a node may be an old member whose data was wiped: it no longer
    /// remembers its votes, so it must not vote for candidates whose log
    /// shows history it has not seen.
    catching_up: Option<u64>,
    cfg: RaftConfig,
    node: RawNode<LogStorage>,
    sm: S,
    transport: Arc<dyn Transport>,
    reporter: Reporter,
    status_tx: Arc<watch::Sender<RaftStatus>>,
    /// The last index handed to the state machine (applied, noted or
    /// restored).
    applied: u64,
    /// The last committed index raft delivered; membership changes take
    /// effect here even while the state machine waits for a restore.
    delivered: u64,
    /// The configuration as of `delivered`.
    conf: ConfState,
    /// A snapshot whose `StateMachine::restore` has not succeeded yet.
    pending_restore: Option<Snapshot>,
    restore_retry_at: u64,
    restore_backoff: u64,
    proposals: BTreeMap<u64, Pending>,
    ticks: u64,
    /// The term this node last led in, to notice a lost leadership.
    led_term: Option<u64>,
}

impl<S: StateMachine> Core<S> {
    fn new(
        cfg: RaftConfig,
        mut storage: LogStorage,
        mut sm: S,
        transport: Arc<dyn Transport>,
        reporter: Reporter,
        status_tx: Arc<watch::Sender<RaftStatus>>,
    ) -> RaftResult<Self> {
        let fresh = storage.is_empty();
        if storage.is_empty() && !cfg.peers.is_empty() {
            let mut voters = cfg.peers.clone();
            voters.sort_unstable();
            voters.dedup();
            storage.bootstrap(&voters)?;
            tracing::info!(target: LOG_TARGET, raft_id = cfg.id, ?voters, "bootstrapped raft group");
        }
        let snap = storage.latest_snapshot().clone();
        let snap_index = snap.get_metadata().index;
        let last_index = snap_index.max(::raft::Storage::last_index(&storage)?);
        if snap_index == BOOTSTRAP_INDEX && sm.applied_index() < BOOTSTRAP_INDEX {
            // The bootstrap snapshot stands for an empty application state;
            // note it so that applied indexes form one contiguous sequence.
            sm.note_applied(BOOTSTRAP_INDEX);
        }
        let sm_applied = sm.applied_index();
        if sm_applied > last_index {
            return Err(RaftError::Corrupt {
                reason: format!(
                    "state machine applied index {sm_applied} is beyond the raft log ({last_index})"
                ),
            });
        }
        // raft-rs must not re-deliver what the application already has, and
        // cannot deliver what a snapshot replaced.
        let start_applied = sm_applied.max(snap_index);
        let pending_restore =
            (sm_applied < snap_index && snap_index > BOOTSTRAP_INDEX).then_some(snap);
        let applied = if pending_restore.is_some() {
            sm_applied
        } else {
            start_applied
        };
        // Whatever the application applied was committed; the commit index
        // on disk may lag because it is written without a flush.
        if storage.hard_state().commit < start_applied {
            storage.set_commit(start_applied)?;
            storage.flush()?;
        }
        storage.set_initial_applied(start_applied);
        let conf = storage.conf_state_at(start_applied)?;
        let logger = raft_logger(cfg.id);
        let node = RawNode::new(&cfg.raft_config(start_applied), storage, &logger)?;
        tracing::info!(
            target: LOG_TARGET,
            raft_id = cfg.id,
            applied,
            last_index,
            snapshot_index = snap_index,
            restore_pending = pending_restore.is_some(),
            "raft node started"
        );
        let mut core = Self {
            cfg,
            node,
            sm,
            transport,
            reporter,
            status_tx,
            applied,
            delivered: start_applied,
            conf,
            pending_restore,
            restore_retry_at: 0,
            restore_backoff: 1,
            proposals: BTreeMap::new(),
            ticks: 0,
            led_term: None,
            catching_up: fresh.then_some(0),
        };
        core.publish_status(false);
        Ok(core)
    }

    fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut ctrl_rx: mpsc::UnboundedReceiver<Control>,
    ) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(err) => {
                tracing::error!(target: LOG_TARGET, raft_id = self.cfg.id, %err, "cannot build the raft loop runtime");
                self.publish_status(true);
                return;
            }
        };
        let manual = self.cfg.manual_ticks;
        let tick_interval = self.cfg.tick_interval;
        rt.block_on(async move {
            let mut ticker = tokio::time::interval(tick_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut cmd_open = true;
            loop {
                let keep_going = tokio::select! {
                    biased;
                    ctrl = ctrl_rx.recv() => match ctrl {
                        Some(ctrl) => self.on_control(ctrl),
                        None => false,
                    },
                    cmd = cmd_rx.recv(), if cmd_open => {
                        match cmd {
                            Some(cmd) => self.on_command(cmd),
                            None => cmd_open = false,
                        }
                        true
                    },
                    _ = ticker.tick(), if !manual => {
                        self.on_tick();
                        true
                    },
                };
                if !keep_going || !self.drain(&mut cmd_rx, &mut ctrl_rx) {
                    break;
                }
                if let Err(err) = self.process() {
                    tracing::error!(
                        target: LOG_TARGET,
                        raft_id = self.cfg.id,
                        %err,
                        "fatal raft error; stopping the raft loop"
                    );
                    break;
                }
                self.publish_status(false);
            }
            self.publish_status(true);
            tracing::info!(target: LOG_TARGET, raft_id = self.cfg.id, "raft loop stopped");
        });
    }

    /// Takes what is already queued without waiting. False on shutdown.
    fn drain(
        &mut self,
        cmd_rx: &mut mpsc::Receiver<Command>,
        ctrl_rx: &mut mpsc::UnboundedReceiver<Control>,
    ) -> bool {
        for _ in 0..MAX_BATCH {
            match ctrl_rx.try_recv() {
                Ok(ctrl) => {
                    if !self.on_control(ctrl) {
                        return false;
                    }
                }
                Err(_) => break,
            }
        }
        for _ in 0..MAX_BATCH {
            match cmd_rx.try_recv() {
                Ok(cmd) => self.on_command(cmd),
                Err(_) => break,
            }
        }
        true
    }

    fn on_control(&mut self, ctrl: Control) -> bool {
        match ctrl {
            Control::Unreachable(to) => self.node.report_unreachable(to),
            Control::SnapshotStatus { to, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
            }
            Control::Tick => self.on_tick(),
            Control::Shutdown => return false,
        }
        true
    }

    /// Keeps a peer that lost its Raft log (a wiped data dir rejoining
    /// under the same id) from crashing this node or stalling forever.
    ///
    /// - As a follower, a heartbeat may claim a commit index beyond our log
    ///   (the leader remembers how far we had got before the wipe);
    ///   raft-rs panics on that, so the commit is clamped to our last
    ///   index. Our next append rejection then tells the leader where we
    ///   really are.
    /// - As leader, an append rejection hinting at an index below what we
    ///   believe the peer has means the peer lost entries; raft-rs would
    ///   ignore it as stale, so the peer's progress is reset to its hint
    ///   and probed from there (or sent a snapshot if compacted away).
    ///
    /// - A node that started with empty storage does not vote for
    ///   candidates with history until it has caught up (see
    ///   `catching_up`); returns `false` for such a dropped request.
    ///
    /// Lowering a follower's commit or a leader's view of a follower only
    /// delays progress; it never commits anything early.
    fn guard_lost_log(&mut self, msg: &mut Message) -> bool {
        use ::raft::eraftpb::MessageType;
        let last_index = self.node.raft.raft_log.last_index();
        if let Some(target) = self.catching_up {
            match msg.get_msg_type() {
                MessageType::MsgHeartbeat | MessageType::MsgAppend => {
                    let target = target.max(msg.commit);
                    if self.node.raft.raft_log.committed >= target && target > 0 {
                        tracing::info!(target: LOG_TARGET, raft_id = self.cfg.id, commit = target, "fresh node caught up; voting again");
                        self.catching_up = None;
                    } else {
                        self.catching_up = Some(target);
                    }
                }
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                    if msg.index > BOOTSTRAP_INDEX =>
                {
                    tracing::info!(target: LOG_TARGET, raft_id = self.cfg.id, from = msg.from, candidate_index = msg.index,
                        "not voting: this node started empty and has not caught up with the channel's history");
                    return false;
                }
                _ => {}
            }
        }
        match msg.get_msg_type() {
            MessageType::MsgHeartbeat if msg.commit > last_index => {
                tracing::warn!(target: LOG_TARGET, raft_id = self.cfg.id, from = msg.from, commit = msg.commit, last_index,
                    "leader's commit index is past our log; was our data lost? clamping");
                // Tell the leader where our log really ends. A heartbeat
                // alone never makes it send entries it believes we have, so
                // answer as a rejected append hinting at our last index.
                let mut notice = Message::default();
                notice.set_msg_type(MessageType::MsgAppendResponse);
                notice.to = msg.from;
                notice.from = self.cfg.id;
                notice.term = msg.term;
                notice.index = msg.commit;
                notice.reject = true;
                notice.reject_hint = last_index;
                self.transport.send(notice, &self.reporter);
                msg.commit = last_index;
            }
            MessageType::MsgAppendResponse
                if msg.reject && self.node.raft.state == StateRole::Leader =>
            {
                let from = msg.from;
                let hint = msg.reject_hint;
                if let Some(pr) = self.node.raft.mut_prs().get_mut(from) {
                    if hint < pr.matched {
                        tracing::warn!(target: LOG_TARGET, raft_id = self.cfg.id, peer = from, hint, matched = pr.matched,
                            "peer lost part of its log; probing it again from its last index");
                        pr.matched = hint;
                        pr.next_idx = hint + 1;
                        pr.become_probe();
                        self.node.raft.send_append(from);
                    }
                }
            }
            _ => {}
        }
        true
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Step(mut msg) => {
                let (from, msg_type) = (msg.from, msg.get_msg_type());
                if !self.guard_lost_log(&mut msg) {
                    return;
                }
                match self.node.step(*msg) {
                    Ok(()) => {}
                    Err(::raft::Error::StepLocalMsg | ::raft::Error::StepPeerNotFound) => {
                        tracing::debug!(target: LOG_TARGET, raft_id = self.cfg.id, from, ?msg_type, "dropped raft message");
                    }
                    Err(err) => {
                        tracing::warn!(target: LOG_TARGET, raft_id = self.cfg.id, from, ?msg_type, %err, "raft message failed");
                    }
                }
            }
            Command::Propose { data, reply } => {
                if data.is_empty() {
                    let _ = reply.send(Err(RaftError::EmptyProposal));
                    return;
                }
                self.propose(Kind::Normal, reply, |node| node.propose(Vec::new(), data));
            }
            Command::ProposeConfChange { cc, reply } => {
                if let Err(err) = self.check_conf_change(&cc) {
                    let _ = reply.send(Err(err));
                    return;
                }
                self.propose(Kind::ConfChange, reply, |node| {
                    node.propose_conf_change(Vec::new(), cc)
                });
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        let id = self.node.raft.leader_id;
        (id != ::raft::INVALID_ID).then_some(id)
    }

    fn check_conf_change(&self, cc: &ConfChangeV2) -> RaftResult<()> {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader {
            return Err(RaftError::NotLeader {
                leader: self.leader(),
            });
        }
        if raft.has_pending_conf() {
            return Err(RaftError::ConfChangeRejected {
                reason: "another membership change is not applied yet".to_owned(),
            });
        }
        let mut changer = Changer::new(raft.prs());
        let checked = if cc.leave_joint() {
            changer.leave_joint()
        } else if let Some(auto_leave) = cc.enter_joint() {
            changer.enter_joint(auto_leave, &cc.changes)
        } else {
            changer.simple(&cc.changes)
        };
        checked
            .map(|_| ())
            .map_err(|err| RaftError::ConfChangeRejected {
                reason: err.to_string(),
            })
    }

    fn propose(
        &mut self,
        kind: Kind,
        reply: Reply,
        append: impl FnOnce(&mut RawNode<LogStorage>) -> ::raft::Result<()>,
    ) {
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(RaftError::NotLeader {
                leader: self.leader(),
            }));
            return;
        }
        let before = self.node.raft.raft_log.last_index();
        match append(&mut self.node) {
            Ok(()) => {}
            Err(::raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(RaftError::ProposalDropped));
                return;
            }
            Err(err) => {
                let _ = reply.send(Err(err.into()));
                return;
            }
        }
        let index = self.node.raft.raft_log.last_index();
        let term = self.node.raft.term;
        if index != before + 1 {
            // raft-rs appends exactly one entry per accepted proposal; if it
            // ever did otherwise the entry cannot be tracked.
            let _ = reply.send(Err(RaftError::UnknownOutcome { term, index }));
            return;
        }
        let deadline = self.ticks + self.cfg.proposal_timeout_ticks();
        self.proposals.insert(
            index,
            Pending {
                term,
                kind,
                deadline,
                reply,
            },
        );
    }

    fn on_tick(&mut self) {
        self.node.tick();
        self.ticks += 1;
        let now = self.ticks;
        let expired: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&index, _)| index)
            .collect();
        for index in expired {
            if let Some(p) = self.proposals.remove(&index) {
                let _ = p.reply.send(Err(RaftError::Timeout {
                    term: p.term,
                    index,
                }));
            }
        }
    }

    /// Handles every pending `Ready`, then the work that follows from it.
    fn process(&mut self) -> RaftResult<()> {
        loop {
            self.maybe_leave_joint();
            if !self.node.has_ready() {
                break;
            }
            self.handle_ready()?;
        }
        self.check_leadership();
        self.try_restore()?;
        self.maybe_snapshot()?;
        Ok(())
    }

    fn handle_ready(&mut self) -> RaftResult<()> {
        let mut rd = self.node.ready();

        // Leader messages go out before the leader's own fsync.
        self.send(rd.take_messages());

        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot())?;
        }

        // Committed entries are durable here already.
        let committed = rd.take_committed_entries();
        self.apply_entries(committed)?;

        let started = Instant::now();
        if !rd.entries().is_empty() || rd.hs().is_some() {
            self.node.mut_store().append(rd.entries(), rd.hs())?;
        }
        if rd.must_sync() {
            self.node.mut_store().flush()?;
        }
        self.warn_if_slow(started);

        // Votes and append responses only once the state they promise is
        // durable.
        self.send(rd.take_persisted_messages());

        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed)?;
        self.node.advance_apply();
        Ok(())
    }

    fn warn_if_slow(&self, started: Instant) {
        let elapsed = started.elapsed();
        let limit = self
            .cfg
            .tick_interval
            .saturating_mul(u32::try_from(self.cfg.election_tick).unwrap_or(u32::MAX))
            / 2;
        if elapsed > limit {
            tracing::warn!(
                target: LOG_TARGET,
                raft_id = self.cfg.id,
                elapsed_ms = elapsed.as_millis() as u64,
                "persisting raft data took more than half the election timeout"
            );
        }
    }

    fn send(&self, msgs: Vec<Message>) {
        for msg in msgs {
            self.transport.send(msg, &self.reporter);
        }
    }

    /// Replaces the log with a snapshot from the leader and makes it
    /// durable; the state machine restores from it right after the ready.
    fn install_snapshot(&mut self, snap: &Snapshot) -> RaftResult<()> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        self.node.mut_store().apply_snapshot(snap)?;
        self.node.mut_store().flush()?;
        self.conf = meta.get_conf_state().clone();
        self.delivered = index;
        tracing::info!(target: LOG_TARGET, raft_id = self.cfg.id, index, term, "installed raft snapshot");
        // Proposals inside the snapshot can no longer be matched to entries.
        let covered: Vec<u64> = self.proposals.range(..=index).map(|(&i, _)| i).collect();
        for i in covered {
            if let Some(p) = self.proposals.remove(&i) {
                let _ = p.reply.send(Err(RaftError::UnknownOutcome {
                    term: p.term,
                    index: i,
                }));
            }
        }
        if index > self.applied {
            self.pending_restore = Some(snap.clone());
            self.restore_retry_at = self.ticks;
            self.restore_backoff = 1;
        }
        Ok(())
    }

    fn try_restore(&mut self) -> RaftResult<()> {
        let Some(snap) = &self.pending_restore else {
            return Ok(());
        };
        if self.ticks < self.restore_retry_at {
            return Ok(());
        }
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        match self.sm.restore(index, term, &snap.data) {
            Ok(()) => {
                tracing::info!(target: LOG_TARGET, raft_id = self.cfg.id, index, term, "state machine restored from snapshot");
                self.pending_restore = None;
                self.applied = self.applied.max(index);
                self.catch_up()
            }
            Err(err) => {
                self.restore_backoff =
                    (self.restore_backoff * 2).min(self.cfg.election_tick as u64);
                self.restore_retry_at = self.ticks + self.restore_backoff;
                tracing::warn!(
                    target: LOG_TARGET,
                    raft_id = self.cfg.id,
                    index,
                    %err,
                    retry_in_ticks = self.restore_backoff,
                    "state machine restore failed; will retry"
                );
                Ok(())
            }
        }
    }

    /// Applies, from the log, the entries committed while a restore was
    /// pending.
    fn catch_up(&mut self) -> RaftResult<()> {
        while self.applied < self.delivered {
            let entries = self.node.store().read_entries(
                self.applied + 1,
                self.delivered + 1,
                Some(self.cfg.max_size_per_msg),
            )?;
            for entry in &entries {
                self.apply_to_sm(entry)?;
            }
        }
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> RaftResult<()> {
        for entry in &entries {
            if entry.index <= self.delivered {
                continue;
            }
            self.delivered = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(entry)?;
                }
                EntryType::EntryNormal => {}
            }
            if self.pending_restore.is_none() {
                self.apply_to_sm(entry)?;
            }
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, entry: &Entry) -> RaftResult<()> {
        let result = if entry.get_entry_type() == EntryType::EntryConfChange {
            let cc: ConfChange = decode(&entry.data)?;
            self.node.apply_conf_change(&cc)
        } else {
            let cc: ConfChangeV2 = decode(&entry.data)?;
            self.node.apply_conf_change(&cc)
        };
        let reply = match result {
            Ok(cs) => {
                self.node.mut_store().record_conf_state(entry.index, &cs)?;
                tracing::info!(
                    target: LOG_TARGET,
                    raft_id = self.cfg.id,
                    index = entry.index,
                    voters = ?cs.voters,
                    learners = ?cs.learners,
                    voters_outgoing = ?cs.voters_outgoing,
                    "membership changed"
                );
                self.conf = cs;
                Ok((entry.term, entry.index))
            }
            Err(err) => {
                // Every node refuses the same committed change the same way.
                tracing::warn!(target: LOG_TARGET, raft_id = self.cfg.id, index = entry.index, %err, "ignored invalid membership change");
                Err(RaftError::ConfChangeRejected {
                    reason: err.to_string(),
                })
            }
        };
        if let Some(p) = self.proposals.remove(&entry.index) {
            let outcome = if p.term == entry.term {
                reply
            } else {
                Err(RaftError::Overwritten {
                    term: p.term,
                    index: entry.index,
                })
            };
            let _ = p.reply.send(outcome);
        }
        Ok(())
    }

    fn apply_to_sm(&mut self, entry: &Entry) -> RaftResult<()> {
        if entry.index <= self.applied {
            return Ok(());
        }
        let normal = entry.get_entry_type() == EntryType::EntryNormal;
        if normal && !entry.data.is_empty() {
            self.sm.apply(entry.index, entry.term, &entry.data)?;
        } else {
            self.sm.note_applied(entry.index);
        }
        self.applied = entry.index;
        if normal {
            if let Some(p) = self.proposals.remove(&entry.index) {
                let outcome = match (p.term == entry.term, p.kind) {
                    (true, Kind::Normal) => Ok((entry.term, entry.index)),
                    // raft-rs turns a conf change it must refuse into an
                    // empty normal entry.
                    (true, Kind::ConfChange) => Err(RaftError::ConfChangeRejected {
                        reason: "raft refused it: another membership change was pending".to_owned(),
                    }),
                    (false, _) => Err(RaftError::Overwritten {
                        term: p.term,
                        index: entry.index,
                    }),
                };
                let _ = p.reply.send(outcome);
            }
        }
        Ok(())
    }

    /// Fails the proposals that may never commit once this node stops being
    /// the leader of the term they were proposed in.
    fn check_leadership(&mut self) {
        let raft = &self.node.raft;
        let led = (raft.state == StateRole::Leader).then_some(raft.term);
        if led == self.led_term {
            return;
        }
        self.led_term = led;
        let committed = raft.raft_log.committed;
        let lost: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(&index, p)| Some(p.term) != led && index > committed)
            .map(|(&index, _)| index)
            .collect();
        for index in lost {
            if let Some(p) = self.proposals.remove(&index) {
                let _ = p.reply.send(Err(RaftError::UnknownOutcome {
                    term: p.term,
                    index,
                }));
            }
        }
    }

    /// raft-rs leaves a joint configuration on its own only if the leader
    /// that entered it is still leading; any leader does it here.
    fn maybe_leave_joint(&mut self) {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader
            || self.conf.voters_outgoing.is_empty()
            || raft.has_pending_conf()
        {
            return;
        }
        match self
            .node
            .propose_conf_change(Vec::new(), ConfChangeV2::default())
        {
            Ok(()) => {
                tracing::info!(target: LOG_TARGET, raft_id = self.cfg.id, "proposed leaving the joint configuration");
            }
            Err(err) => {
                tracing::warn!(target: LOG_TARGET, raft_id = self.cfg.id, %err, "could not propose leaving the joint configuration");
            }
        }
    }

    /// Takes a snapshot at the application's durable index and compacts the
    /// log, when enough was written since the last one or when raft asked for
    /// a snapshot it could not get.
    fn maybe_snapshot(&mut self) -> RaftResult<()> {
        let store = self.node.store();
        let requested = store.take_snapshot_request();
        let due = store.bytes_since_snapshot() > self.cfg.snapshot_interval_bytes;
        if !(requested || due) || self.pending_restore.is_some() {
            return Ok(());
        }
        let index = self.sm.applied_index().min(self.applied);
        if index <= store.latest_snapshot().get_metadata().index {
            return Ok(());
        }
        let data = self.sm.snapshot();
        self.node.mut_store().compact_to(index, data)?;
        tracing::info!(target: LOG_TARGET, raft_id = self.cfg.id, index, requested, "took raft snapshot and compacted the log");
        Ok(())
    }

    fn publish_status(&mut self, stopped: bool) {
        let raft = &self.node.raft;
        let sorted = |ids: &[u64]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids
        };
        let status = RaftStatus {
            id: self.cfg.id,
            leader: self.leader(),
            term: raft.term,
            role: raft.state.into(),
            commit: raft.raft_log.committed,
            applied: self.applied,
            last_index: raft.raft_log.last_index(),
            snapshot_index: self.node.store().latest_snapshot().get_metadata().index,
            voters: sorted(&self.conf.voters),
            learners: sorted(&self.conf.learners),
            voters_outgoing: sorted(&self.conf.voters_outgoing),
            restore_pending: self.pending_restore.is_some(),
            stopped,
        };
        self.status_tx.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}
