//! Errors of the state database and of composite-key handling.

use std::path::PathBuf;

use thiserror::Error;

/// Result alias of the [`state`](crate::state) module.
pub type Result<T> = std::result::Result<T, StateError>;

/// Everything that can go wrong in the state database, the history index,
/// the savepoint or composite-key encoding.
///
/// Converts into [`LedgerError::State`](crate::LedgerError::State) with `?`.
/// [`StateError::code`] gives each variant a stable string to match on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// Creating the database directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The directory being created.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// sled failed.
    #[error("state database error: {0}")]
    Db(#[from] sled::Error),

    /// A namespace that cannot be stored: it contains U+0000, which
    /// separates the namespace from the key on disk.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A key longer than the history index can length-prefix (u32).
    #[error("key of {len} bytes in namespace {namespace:?} is too long")]
    KeyTooLong {
        /// The namespace.
        namespace: String,
        /// The key's length in bytes.
        len: usize,
    },

    /// Key-level metadata whose encoding exceeds 4 GiB.
    #[error("metadata of key {key:?} in namespace {namespace:?} is too large")]
    MetadataTooLarge {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },

    /// [`StateDb::commit`](crate::state::StateDb::commit) was asked to commit
    /// a block at or below the savepoint. Nothing was written.
    #[error("block {block} is already committed to the state database (savepoint {savepoint})")]
    AlreadyCommitted {
        /// The block offered.
        block: u64,
        /// The savepoint found.
        savepoint: u64,
    },

    /// A stored entry this module cannot have written.
    #[error("corrupt {kind} entry at key {}: {reason}", hex::encode(key))]
    Corrupt {
        /// Which kind of entry (`state`, `history`, `savepoint`, ...).
        kind: &'static str,
        /// The raw sled key of the entry.
        key: Vec<u8>,
        /// What is wrong.
        reason: &'static str,
    },

    /// The database was written by an unknown format version.
    #[error("unsupported state database format {found:?}")]
    UnsupportedFormat {
        /// The format marker found.
        found: Vec<u8>,
    },

    /// An object type or attribute of a composite key holds a character that
    /// composite keys reserve (U+0000 or U+10FFFF).
    #[error(
        "composite key part {part:?} contains {} at byte {position}; U+0000 and U+10FFFF are not allowed",
        format!("U+{:04X}", u32::from(*ch))
    )]
    InvalidCompositeKeyPart {
        /// The offending object type or attribute.
        part: String,
        /// Byte offset of the character within `part`.
        position: usize,
        /// The reserved character found.
        ch: char,
    },

    /// A string that is not a well-formed composite key.
    #[error("not a composite key {key:?}: {reason}")]
    NotCompositeKey {
        /// The key as given.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A simple (non-composite) key was expected, e.g. for a range bound,
    /// but the key starts with U+0000, which marks composite keys.
    #[error("key {key:?} starts with U+0000, which is reserved for composite keys")]
    CompositeKeyNotAllowed {
        /// The key as given.
        key: String,
    },
}

impl StateError {
    /// A stable, machine-matchable code for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Io { .. } => "STATE_IO",
            StateError::Db(_) => "STATE_DB",
            StateError::InvalidNamespace { .. } => "STATE_INVALID_NAMESPACE",
            StateError::KeyTooLong { .. } => "STATE_KEY_TOO_LONG",
            StateError::MetadataTooLarge { .. } => "STATE_METADATA_TOO_LARGE",
            StateError::AlreadyCommitted { .. } => "STATE_ALREADY_COMMITTED",
            StateError::Corrupt { .. } => "STATE_CORRUPT",
            StateError::UnsupportedFormat { .. } => "STATE_UNSUPPORTED_FORMAT",
            StateError::InvalidCompositeKeyPart { .. } => "STATE_INVALID_COMPOSITE_KEY_PART",
            StateError::NotCompositeKey { .. } => "STATE_NOT_COMPOSITE_KEY",
            StateError::CompositeKeyNotAllowed { .. } => "STATE_COMPOSITE_KEY_NOT_ALLOWED",
        }
    }
}
