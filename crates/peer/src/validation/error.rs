//! Errors of block validation.

/// A state or tx-id lookup failed (the store is unreadable, not "absent").
#[derive(Debug, thiserror::Error)]
#[error("state access failed: {message}")]
pub struct StateAccessError {
    /// What went wrong, from the store.
    pub message: String,
}

impl StateAccessError {
    /// An error with the store's message.
    pub fn new(message: impl Into<String>) -> Self {
        StateAccessError {
            message: message.into(),
        }
    }
}

/// Why a whole block could not be validated. Problems of single
/// transactions are not errors: they become a `TxValidationCode`.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The block lacks a header or data.
    #[error("malformed block {number}: {reason}")]
    MalformedBlock {
        /// The block number (`u64::MAX` when the header is missing).
        number: u64,
        /// What is missing.
        reason: &'static str,
    },
    /// The header's data hash is not the hash of the block's data.
    #[error("block {number}: data hash {header} does not match the data's hash {computed}")]
    DataHash {
        /// The block number.
        number: u64,
        /// Hex of the header's data hash.
        header: String,
        /// Hex of the hash computed over the data.
        computed: String,
    },
    /// The channel config has no `/Channel/Orderer/BlockValidation` policy.
    #[error("the channel config has no {path} policy")]
    MissingPolicy {
        /// The policy path looked up.
        path: &'static str,
    },
    /// The orderer signatures were refused.
    #[error(transparent)]
    Signatures(#[from] twill_configtx::block::BlockVerifyError),
    /// The committed state or the tx-id index could not be read.
    #[error(transparent)]
    State(#[from] StateAccessError),
    /// A CONFIG transaction's config could not be decoded or applied.
    #[error("block {number}: config transaction is unusable: {source}")]
    Config {
        /// The block number.
        number: u64,
        /// Why.
        source: twill_configtx::ConfigtxError,
    },
    /// A CONFIG transaction does not carry the next config sequence.
    #[error(
        "block {number}: config sequence {got} does not follow the current sequence {current}"
    )]
    ConfigSequence {
        /// The block number.
        number: u64,
        /// The current config's sequence.
        current: u64,
        /// The sequence in the block.
        got: u64,
    },
}

/// Result alias of the validation module.
pub type Result<T> = std::result::Result<T, ValidationError>;
