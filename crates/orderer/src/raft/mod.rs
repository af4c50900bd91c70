//! A replicated log on raft-rs: one Raft group per channel.
//!
//! Twill's orderer proposes every client envelope (and every "cut the block
//! now" marker from the leader's batch timer) as a Raft entry. A Broadcast is
//! acknowledged once its entry is committed, so an acknowledged envelope is
//! durable on a majority. Every orderer then feeds committed entries, in log
//! order, to a deterministic [`StateMachine`] (the block cutter), which builds
//! identical blocks everywhere. This module knows nothing about blocks: it is
//! a generic replicated log with the application plugged in through
//! [`StateMachine`] and the network plugged in through [`Transport`].
//!
//! # Tasks and threads
//!
//! [`RaftNode::start`] spawns one dedicated OS thread per group (named
//! `raft-<id>`). The thread owns the `RawNode`, the [`LogStorage`] and the
//! [`StateMachine`]; nothing else touches them. It runs a small
//! current-thread tokio runtime only to wait on its mailboxes and its tick
//! timer; raft log fsyncs and state machine calls block that thread and
//! never an async worker of the caller's runtime. Everything else talks to
//! the loop through a cheap, cloneable [`RaftHandle`]:
//!
//! - a bounded command mailbox (proposals, conf changes, inbound raft
//!   messages); a full mailbox makes [`RaftHandle::step`] fail with
//!   [`RaftError::Busy`] (raft retransmits) and makes proposals wait;
//! - an unbounded control mailbox (unreachable and snapshot reports, manual
//!   ticks, shutdown), so that reports are never lost;
//! - a `tokio::sync::watch` on which the loop publishes [`RaftStatus`].
//!
//! # The loop
//!
//! Each turn the loop waits for a command, a control message or a tick,
//! drains whatever else is already queued (so many proposals share one
//! fsync), and then handles every `Ready` in the order raft-rs requires:
//!
//! 1. send `messages` (leader-only, so replication overlaps the leader's
//!    fsync);
//! 2. install a received snapshot into storage and the state machine;
//! 3. apply committed entries (they are already durable locally);
//! 4. write new entries and the hard state as one raft log record, and flush
//!    when raft says the write must be synced;
//! 5. only then send `persisted_messages` (votes, append responses);
//! 6. `advance`, persist the new commit index, send the light ready's
//!    messages, apply its committed entries, `advance_apply`.
//!
//! A failed write to the raft log, or an error from
//! [`StateMachine::apply`], is fatal: the loop logs it and stops, and every
//! handle call then returns [`RaftError::Stopped`].
//!
//! # Proposals
//!
//! [`RaftHandle::propose`] only works on the leader; elsewhere it fails at
//! once with [`RaftError::NotLeader`] naming the known leader, and the caller
//! forwards (as Fabric's followers forward `Submit`). On the leader the entry's
//! `(term, index)` is recorded; the future resolves when the entry with that
//! index is applied locally, successfully if its term matches. See
//! [`RaftError::UnknownOutcome`] and [`RaftError::Timeout`] for the cases
//! where the outcome cannot be known.
//!
//! # Snapshots and compaction
//!
//! When more than [`RaftConfig::snapshot_interval_bytes`] of entries were
//! written since the last snapshot, the loop takes a snapshot at
//! [`StateMachine::applied_index`] (the index whose effects are durable in the
//! application), with [`StateMachine::snapshot`] as payload, and drops the log
//! up to it. A follower that needs entries that were dropped gets that
//! snapshot and calls [`StateMachine::restore`], which for the orderer pulls
//! the missing blocks from other orderers. Until `restore` succeeds (it is
//! retried on ticks) later committed entries are kept in the log and applied
//! afterwards. [`LogStorage`] keeps the log since the latest snapshot in
//! memory, so the snapshot interval also bounds that memory.
//!
//! # Bootstrap and membership
//!
//! A founding member (non-empty [`RaftConfig::peers`]) with empty storage
//! writes an initial snapshot at index 1 whose `ConfState` holds all founding
//! voters; every founding member must be given the same list. A node that
//! joins later starts with an empty `peers`: it stays passive until the
//! leader, after adding it as a learner, sends it a snapshot (the log before
//! index 2 never exists, so a joiner always catches up through a snapshot,
//! which carries the right `ConfState`). Storage that already holds state is
//! never bootstrapped again.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use twill_orderer::raft::{
//!     eraftpb::Message, RaftConfig, RaftError, RaftNode, Reporter, StateMachine, Transport,
//! };
//!
//! struct Log(Vec<Vec<u8>>, u64);
//! impl StateMachine for Log {
//!     fn apply(&mut self, index: u64, _term: u64, data: &[u8]) -> Result<(), RaftError> {
//!         self.0.push(data.to_vec());
//!         self.1 = index;
//!         Ok(())
//!     }
//!     fn applied_index(&self) -> u64 { 0 } // nothing is durable in this toy
//!     fn note_applied(&mut self, index: u64) { self.1 = index; }
//!     fn snapshot(&self) -> Vec<u8> { Vec::new() }
//!     fn restore(&mut self, _i: u64, _t: u64, _d: &[u8]) -> Result<(), RaftError> { Ok(()) }
//! }
//!
//! struct Loopback;
//! impl Transport for Loopback {
//!     fn send(&self, msg: Message, reporter: &Reporter) { reporter.report_unreachable(msg.to); }
//! }
//!
//! # async fn demo() -> Result<(), RaftError> {
//! let dir = std::env::temp_dir().join("twill-raft-demo");
//! let cfg = RaftConfig::new(1, vec![1]);
//! let (node, handle) = RaftNode::start(cfg, &dir, Log(Vec::new(), 0), Arc::new(Loopback))?;
//! let mut status = handle.subscribe_status();
//! status.wait_for(|s| s.leader == Some(1)).await.ok();
//! let (term, index) = handle.propose(b"hello".to_vec()).await?;
//! println!("committed at term {term} index {index}");
//! node.shutdown();
//! # Ok(())
//! # }
//! ```

mod codec;
mod config;
mod error;
mod logging;
mod node;
mod status;
mod storage;

pub use ::raft::eraftpb;

pub use codec::{decode_message, encode_message};
pub use config::RaftConfig;
pub use error::{RaftError, RaftResult};
pub use node::{RaftHandle, RaftNode, Reporter};
pub use status::{RaftStatus, Role};
pub use storage::LogStorage;

/// The index of the initial snapshot that founding members write on
/// bootstrap. Real entries start at `BOOTSTRAP_INDEX + 1`, so a node that
/// joins later (with an empty log) can only catch up through a snapshot.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// The term of the initial snapshot written on bootstrap.
pub const BOOTSTRAP_TERM: u64 = 1;

/// The application side of the replicated log, owned by the node's loop
/// thread.
///
/// Implementations must be deterministic: every node applies the same entries
/// in the same order and must end in the same state.
pub trait StateMachine: Send + 'static {
    /// Applies one committed normal entry with non-empty `data`, in log order;
    /// `index` is its raft index and `term` the term it was proposed in.
    ///
    /// Entries at or below [`applied_index`](Self::applied_index) are never
    /// passed again. An `Err` is fatal: the loop stops, and after a restart
    /// the entries after `applied_index` are applied again.
    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> RaftResult<()>;

    /// The index of the last entry whose effects are durable in the
    /// application's own storage. On restart the log is replayed from the next
    /// index, and snapshots are taken at this index.
    fn applied_index(&self) -> u64;

    /// Called, in log order, for an entry that carries nothing for the
    /// application: the empty entry a new leader appends, or a membership
    /// change (and once with [`BOOTSTRAP_INDEX`] when a founding member
    /// starts from scratch). The application may persist `index` as applied
    /// if it has no other unpersisted effects.
    fn note_applied(&mut self, index: u64);

    /// An opaque description of the application's state at
    /// [`applied_index`](Self::applied_index) (for the orderer: the last block
    /// number and its header hash).
    fn snapshot(&self) -> Vec<u8>;

    /// Installs a snapshot taken by another node at `index`/`term`: the
    /// application must bring its state up to `data` (for the orderer: pull
    /// the missing blocks from other orderers) before returning `Ok`, after
    /// which [`applied_index`](Self::applied_index) must be at least `index`.
    ///
    /// An `Err` is not fatal: the loop retries later, and meanwhile keeps
    /// newer committed entries in the log for after the restore.
    fn restore(&mut self, index: u64, term: u64, data: &[u8]) -> RaftResult<()>;
}

/// How raft messages leave this node.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msg` for node `msg.to`. It must not block the loop.
    ///
    /// When a message cannot be delivered (now or later, from the
    /// transport's own tasks) report it through `reporter` (it can be
    /// cloned and kept): [`Reporter::report_unreachable`] for any message, and
    /// additionally [`Reporter::report_snapshot`] with `ok = false` for a
    /// `MsgSnapshot`. Once a `MsgSnapshot` has been handed to the peer,
    /// report it with `ok = true`.
    fn send(&self, msg: eraftpb::Message, reporter: &Reporter);
}
