//! Settings of one Raft group.

use std::time::Duration;

use super::{RaftError, RaftResult};

/// Settings of one Raft group (one channel on one orderer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node's raft id; must not be 0.
    pub id: u64,
    /// The founding voters, identical on every founding member (this node
    /// included). Empty for a node that joins an existing group: it waits to
    /// be added as a learner and to receive a snapshot. Only used when the
    /// storage is empty.
    pub peers: Vec<u64>,
    /// Ticks without hearing from a leader before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_tick: usize,
    /// How long one tick is (Fabric's etcdraft `TickInterval`).
    pub tick_interval: Duration,
    /// When true no timer runs: ticks happen only through
    /// [`RaftHandle::tick`](super::RaftHandle::tick), for deterministic tests.
    /// Proposal timeouts and restore retries count ticks, so they only
    /// advance with manual ticks too.
    pub manual_ticks: bool,
    /// Largest append message in bytes (0 would mean one entry per message).
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// Bytes of uncommitted entries the leader accepts before dropping
    /// proposals.
    pub max_uncommitted_size: u64,
    /// Bytes of entries written since the last snapshot after which the loop
    /// takes a snapshot and compacts the log (Fabric's
    /// `SnapshotIntervalSize`).
    pub snapshot_interval_bytes: u64,
    /// Pre-vote, so that a node rejoining after a partition does not disrupt
    /// the group.
    pub pre_vote: bool,
    /// A leader steps down when it cannot hear from a quorum.
    pub check_quorum: bool,
    /// How long a proposal may wait to be applied before it fails with
    /// [`RaftError::Timeout`]. Rounded up to whole ticks.
    pub proposal_timeout: Duration,
    /// Capacity of the command mailbox (proposals and inbound messages).
    pub mailbox_capacity: usize,
}

impl RaftConfig {
    /// Default settings for node `id` founding a group of `peers`.
    pub fn new(id: u64, peers: Vec<u64>) -> Self {
        Self {
            id,
            peers,
            election_tick: 10,
            heartbeat_tick: 1,
            tick_interval: Duration::from_millis(100),
            manual_ticks: false,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_uncommitted_size: 64 * 1024 * 1024,
            snapshot_interval_bytes: 16 * 1024 * 1024,
            pre_vote: true,
            check_quorum: true,
            proposal_timeout: Duration::from_secs(10),
            mailbox_capacity: 4096,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> RaftResult<()> {
        let invalid = |reason: &str| {
            Err(RaftError::InvalidConfig {
                reason: reason.to_owned(),
            })
        };
        if self.id == 0 {
            return invalid("id must not be 0");
        }
        if self.peers.contains(&0) {
            return invalid("peer ids must not be 0");
        }
        if !self.peers.is_empty() && !self.peers.contains(&self.id) {
            return invalid("a founding member must list itself in peers");
        }
        if self.tick_interval.is_zero() {
            return invalid("tick_interval must be positive");
        }
        if self.mailbox_capacity == 0 {
            return invalid("mailbox_capacity must be positive");
        }
        if self.snapshot_interval_bytes == 0 {
            return invalid("snapshot_interval_bytes must be positive");
        }
        self.raft_config(0).validate()?;
        Ok(())
    }

    /// The proposal timeout in ticks (at least one).
    pub(crate) fn proposal_timeout_ticks(&self) -> u64 {
        let tick = self.tick_interval.as_nanos().max(1);
        let ticks = self.proposal_timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    /// The raft-rs configuration, starting from `applied`.
    pub(crate) fn raft_config(&self, applied: u64) -> ::raft::Config {
        ::raft::Config {
            id: self.id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            max_uncommitted_size: self.max_uncommitted_size,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            ..::raft::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let cfg = RaftConfig::new(1, vec![1, 2, 3]);
        cfg.validate().expect("defaults are valid");
        assert_eq!(cfg.proposal_timeout_ticks(), 100);
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(RaftConfig::new(0, vec![]).validate().is_err());
        assert!(RaftConfig::new(4, vec![1, 2, 3]).validate().is_err());
        let mut cfg = RaftConfig::new(1, vec![1]);
        cfg.election_tick = 1;
        assert!(cfg.validate().is_err());
        let mut cfg = RaftConfig::new(1, vec![]);
        cfg.tick_interval = Duration::ZERO;
        assert!(cfg.validate().is_err());
    }
}
