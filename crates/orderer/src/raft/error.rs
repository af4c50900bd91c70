//! The error type of the replicated log.

/// A `Result` whose error is [`RaftError`].
pub type RaftResult<T> = Result<T, RaftError>;

/// Everything that can go wrong in the replicated log.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// This node is not the leader; `leader` is the leader it knows of, if
    /// any. The caller should forward the request there (or retry later).
    #[error("not the raft leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader as far as this node knows.
        leader: Option<u64>,
    },

    /// raft-rs refused the proposal (for example during a leadership
    /// transfer, or when too many bytes are uncommitted). Nothing was
    /// appended; it is safe to retry.
    #[error("proposal dropped")]
    ProposalDropped,

    /// The proposal was appended to the leader's log, but the leader lost its
    /// leadership (or its term changed) before the entry was committed.
    ///
    /// The outcome is unknown: the entry may still be committed by the next
    /// leader, or be overwritten. A caller that retries must tolerate a
    /// duplicate (the orderer deduplicates envelopes by transaction id).
    #[error("outcome unknown: leadership lost before entry {index} (term {term}) committed")]
    UnknownOutcome {
        /// The term the entry was proposed in.
        term: u64,
        /// The index the entry was appended at.
        index: u64,
    },

    /// The proposal was not applied within [`RaftConfig::proposal_timeout`].
    /// As with [`RaftError::UnknownOutcome`] the entry may still commit.
    ///
    /// [`RaftConfig::proposal_timeout`]: super::RaftConfig::proposal_timeout
    #[error("proposal at index {index} (term {term}) timed out; it may still commit")]
    Timeout {
        /// The term the entry was proposed in.
        term: u64,
        /// The index the entry was appended at.
        index: u64,
    },

    /// A different entry was committed at the proposal's index: the proposal
    /// is definitely lost, and safe to retry.
    #[error("entry {index} of term {term} was overwritten by another leader")]
    Overwritten {
        /// The term the entry was proposed in.
        term: u64,
        /// The index the entry was appended at.
        index: u64,
    },

    /// A membership change was refused (another change is still pending, or
    /// the change is invalid for the current configuration).
    #[error("conf change rejected: {reason}")]
    ConfChangeRejected {
        /// Why it was refused.
        reason: String,
    },

    /// Empty proposals are reserved for the leader's own no-op entries.
    #[error("empty proposal")]
    EmptyProposal,

    /// The node's mailbox is full; the message was dropped.
    #[error("raft mailbox full")]
    Busy,

    /// The node's loop is not running (shut down, or stopped after a fatal
    /// storage or state machine error).
    #[error("raft node stopped")]
    Stopped,

    /// The configuration is invalid.
    #[error("invalid raft config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// Persisted raft state is inconsistent with itself or with the state
    /// machine.
    #[error("corrupt raft state: {reason}")]
    Corrupt {
        /// What is inconsistent.
        reason: String,
    },

    /// An error from raft-rs.
    #[error("raft: {0}")]
    Raft(#[from] ::raft::Error),

    /// Reading or writing a file of the raft log failed. A failed write is
    /// fatal for the node: the log's tail is then unknown until it is
    /// reopened.
    #[error("raft log {}: {source}", path.display())]
    LogIo {
        /// The file or directory concerned.
        path: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },

    /// The raft log directory holds the sled database that earlier versions
    /// of Twill kept the raft log in, which this version cannot read.
    #[error(
        "the raft log in {} is in the old sled format, which this version no longer reads; \
         to recover, stop the orderer, remove that directory (the channel's `raft` directory) \
         and start it again: the orderer then rejoins the channel's Raft group and catches up \
         from the other orderers",
        dir.display()
    )]
    OldLogFormat {
        /// The channel's raft directory.
        dir: std::path::PathBuf,
    },

    /// An error from a sled database (raft logs no longer use sled; kept
    /// for applications whose state lives in sled).
    #[error("raft storage: {0}")]
    Storage(#[from] sled::Error),

    /// A protobuf encoding or decoding error.
    #[error("raft codec: {0}")]
    Codec(#[from] protobuf::ProtobufError),

    /// An I/O error (for example spawning the loop thread).
    #[error("raft io: {0}")]
    Io(#[from] std::io::Error),

    /// An error reported by the [`StateMachine`](super::StateMachine).
    #[error("state machine: {0}")]
    Application(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RaftError {
    /// Wraps an application error, for [`StateMachine`](super::StateMachine)
    /// implementations.
    pub fn application(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Application(err.into())
    }

    /// True for errors after which the proposal may or may not have been
    /// committed ([`UnknownOutcome`](Self::UnknownOutcome),
    /// [`Timeout`](Self::Timeout)).
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, Self::UnknownOutcome { .. } | Self::Timeout { .. })
    }
}

impl From<RaftError> for ::raft::Error {
    fn from(err: RaftError) -> Self {
        match err {
            RaftError::Raft(e) => e,
            other => ::raft::Error::Store(::raft::StorageError::Other(Box::new(other))),
        }
    }
}
