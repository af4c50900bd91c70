//! What the loop publishes about its node.

/// The role of a node in its Raft group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Probing whether it could win an election (pre-vote).
    PreCandidate,
    /// Campaigning.
    Candidate,
    /// The leader.
    Leader,
}

impl From<::raft::StateRole> for Role {
    fn from(role: ::raft::StateRole) -> Self {
        match role {
            ::raft::StateRole::Follower => Role::Follower,
            ::raft::StateRole::PreCandidate => Role::PreCandidate,
            ::raft::StateRole::Candidate => Role::Candidate,
            ::raft::StateRole::Leader => Role::Leader,
        }
    }
}

/// A snapshot of a node's raft state, published by the loop after each turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's id.
    pub id: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// This node's role.
    pub role: Role,
    /// The highest index known to be committed.
    pub commit: u64,
    /// The highest index handed to the state machine.
    pub applied: u64,
    /// The last index in the local log.
    pub last_index: u64,
    /// The index of the latest snapshot (the log starts right after it).
    pub snapshot_index: u64,
    /// Voters of the current configuration (sorted).
    pub voters: Vec<u64>,
    /// Learners of the current configuration (sorted).
    pub learners: Vec<u64>,
    /// Outgoing voters while in a joint configuration (sorted; empty
    /// otherwise).
    pub voters_outgoing: Vec<u64>,
    /// True while a received snapshot waits for
    /// [`StateMachine::restore`](super::StateMachine::restore) to succeed.
    pub restore_pending: bool,
    /// True once the loop has stopped (shutdown or fatal error).
    pub stopped: bool,
}

impl RaftStatus {
    /// True if this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}
