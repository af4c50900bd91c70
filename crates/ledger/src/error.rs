//! The crate's single error type.

use std::path::PathBuf;

use thiserror::Error;

/// Result alias used by every fallible function in this crate.
pub type Result<T> = std::result::Result<T, LedgerError>;

/// Everything that can go wrong in the ledger.
///
/// Callers tell three families apart: a refused [`append`] (`WrongNumber`,
/// `WrongPreviousHash`, `WrongDataHash`, `MissingHeader`, `BlockTooLarge`:
/// the block is bad, the store is untouched), persisted data that does not
/// check out (`Corrupt`, `IndexCorrupt`: needs an operator), and the
/// environment failing (`Io`, `Index`, `WriterFailed`). [`LedgerError::code`]
/// gives each variant a stable string to match on.
///
/// [`append`]: crate::BlockStore::append
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being worked on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The sled index database failed.
    #[error("index database error: {0}")]
    Index(#[from] sled::Error),

    /// A block file holds bytes that cannot be a record this store wrote, or
    /// that contradict the index. Not repaired automatically.
    #[error("corrupt block file {} at offset {offset}: {issue}", file.display())]
    Corrupt {
        /// The block file.
        file: PathBuf,
        /// Byte offset of the record (or of the place the record should be).
        offset: u64,
        /// What is wrong there.
        issue: CorruptIssue,
    },

    /// The sled index holds a value this crate did not write.
    #[error("corrupt block index: {issue}")]
    IndexCorrupt {
        /// What is wrong.
        issue: IndexIssue,
    },

    /// The block's number is not the store's height.
    #[error("block number {got} is not the next block number {expected}")]
    WrongNumber {
        /// The store's height, which the next block must carry.
        expected: u64,
        /// The number the block carries.
        got: u64,
    },

    /// The block's `previous_hash` is not the header hash of the last block
    /// (or is not empty for block 0).
    #[error(
        "block {number}: previous_hash {} does not match last block hash {}",
        hex::encode(got),
        hex::encode(expected)
    )]
    WrongPreviousHash {
        /// The block's number.
        number: u64,
        /// The hash the block should have carried (empty for block 0).
        expected: Vec<u8>,
        /// The hash it carries.
        got: Vec<u8>,
    },

    /// The block's `data_hash` is not SHA-256 over its data entries.
    #[error("block {number}: data_hash does not match the block data")]
    WrongDataHash {
        /// The block's number.
        number: u64,
    },

    /// The block has no header.
    #[error("block has no header")]
    MissingHeader,

    /// The serialized block does not fit a record (4 GiB - 1 bytes).
    #[error("serialized block of {len} bytes exceeds the record limit of {max} bytes")]
    BlockTooLarge {
        /// Serialized length.
        len: usize,
        /// Largest length a record can hold.
        max: usize,
    },

    /// An earlier append failed after touching the block file or the index,
    /// so the in-memory state can no longer be trusted. Reopen the store:
    /// recovery repairs the files and re-indexes.
    #[error("an earlier append failed part-way; reopen the block store to recover")]
    WriterFailed,

    /// Another open [`BlockStore`](crate::BlockStore), in this process or
    /// another, holds the directory's lock file.
    #[error("block store {} is already open elsewhere", dir.display())]
    Locked {
        /// The store's directory.
        dir: PathBuf,
    },

    /// A channel id that cannot name a ledger directory.
    #[error("invalid channel id {channel_id:?}: {reason}")]
    InvalidChannelId {
        /// The id as given.
        channel_id: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The state database, history index or savepoint failed; see
    /// [`StateError`](crate::state::StateError).
    #[error(transparent)]
    State(#[from] crate::state::StateError),

    /// [`BlockStoreOptions`](crate::BlockStoreOptions) that cannot work.
    #[error("invalid block store options: {reason}")]
    InvalidOptions {
        /// Why.
        reason: &'static str,
    },

    /// The last block's metadata names a last config block that cannot be
    /// read: its metadata does not decode, or the index is past the height.
    #[error("block {number}: bad last-config metadata: {reason}")]
    BadLastConfig {
        /// The block whose metadata was read.
        number: u64,
        /// What is wrong.
        reason: LastConfigIssue,
    },
}

impl LedgerError {
    /// A stable, machine-matchable code for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Io { .. } => "LEDGER_IO",
            LedgerError::Index(_) => "LEDGER_INDEX_DB",
            LedgerError::Corrupt { .. } => "LEDGER_CORRUPT_BLOCKFILE",
            LedgerError::IndexCorrupt { .. } => "LEDGER_CORRUPT_INDEX",
            LedgerError::WrongNumber { .. } => "LEDGER_WRONG_NUMBER",
            LedgerError::WrongPreviousHash { .. } => "LEDGER_WRONG_PREVIOUS_HASH",
            LedgerError::WrongDataHash { .. } => "LEDGER_WRONG_DATA_HASH",
            LedgerError::MissingHeader => "LEDGER_MISSING_HEADER",
            LedgerError::BlockTooLarge { .. } => "LEDGER_BLOCK_TOO_LARGE",
            LedgerError::WriterFailed => "LEDGER_WRITER_FAILED",
            LedgerError::Locked { .. } => "LEDGER_LOCKED",
            LedgerError::InvalidChannelId { .. } => "LEDGER_INVALID_CHANNEL_ID",
            LedgerError::InvalidOptions { .. } => "LEDGER_INVALID_OPTIONS",
            LedgerError::State(e) => e.code(),
            LedgerError::BadLastConfig { .. } => "LEDGER_BAD_LAST_CONFIG",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LedgerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What is wrong with a record in a block file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CorruptIssue {
    /// The record header's magic or its own checksum is wrong.
    #[error("bad record header (magic or header checksum)")]
    BadRecordHeader,
    /// The file ends inside a record that is not at the repairable tail.
    #[error("record truncated: needs {needed} bytes, file has {available}")]
    TruncatedRecord {
        /// Bytes the record needs from its offset.
        needed: u64,
        /// Bytes the file has from that offset.
        available: u64,
    },
    /// The CRC32 of the block bytes does not match the one stored.
    #[error("block bytes checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The CRC32 in the record header.
        stored: u32,
        /// The CRC32 of the bytes read.
        computed: u32,
    },
    /// The index and the record header disagree on the record's length.
    #[error("record length {stored} differs from the indexed length {indexed}")]
    LengthMismatch {
        /// Length in the index.
        indexed: u32,
        /// Length in the record header.
        stored: u32,
    },
    /// The checksummed bytes are not a `common.Block`.
    #[error("record does not decode as a block: {0}")]
    Undecodable(prost::DecodeError),
    /// The block decodes but has no header.
    #[error("stored block has no header")]
    MissingHeader,
    /// The block is not the one expected at this place in the chain.
    #[error("expected block {expected}, found block {found}")]
    UnexpectedNumber {
        /// The number this position should hold.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// The block's `previous_hash` does not match the block before it.
    #[error("block {number} does not chain to the previous block's hash")]
    BrokenHashChain {
        /// The block's number.
        number: u64,
    },
    /// The block's `data_hash` does not match its data.
    #[error("block {number} data_hash does not match its data")]
    DataHashMismatch {
        /// The block's number.
        number: u64,
    },
    /// The index checkpoint names a record beyond the end of the block files:
    /// block files were lost or truncated behind the index's back.
    #[error(
        "indexed block {number} lies beyond the end of the block files (file length {file_len})"
    )]
    IndexedRecordMissing {
        /// The block the index points at.
        number: u64,
        /// The file's length (0 when the file is missing).
        file_len: u64,
    },
    /// The last indexed block's header hash differs from the checkpoint's.
    #[error("block {number} header hash differs from the index checkpoint")]
    CheckpointHashMismatch {
        /// The block's number.
        number: u64,
    },
    /// A block file in the middle of the sequence is missing.
    #[error("block file is missing")]
    MissingFile,
    /// Bytes that are not a record follow the last record of a file that
    /// is not the last one, or sit inside the indexed region.
    #[error("unexpected bytes after the last record")]
    TrailingBytes,
}

/// What is wrong with the sled index.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IndexIssue {
    /// The checkpoint says a block is indexed but its entry is absent.
    #[error("no location entry for indexed block {number}")]
    MissingBlockEntry {
        /// The block number.
        number: u64,
    },
    /// A value has the wrong length for its kind.
    #[error("{kind} entry has {len} bytes")]
    BadValue {
        /// Which kind of entry.
        kind: &'static str,
        /// Its length.
        len: usize,
    },
    /// The index was written by an unknown format version.
    #[error("unsupported index format version {found}")]
    UnsupportedVersion {
        /// The version found.
        found: u64,
    },
}

/// What is wrong with a block's last-config metadata.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LastConfigIssue {
    /// A metadata slot does not decode.
    #[error("metadata slot {slot} does not decode: {source}")]
    Undecodable {
        /// The slot index.
        slot: usize,
        /// The decode error.
        source: prost::DecodeError,
    },
    /// The named config block is not in the store.
    #[error("last config index {index} is not below the height {height}")]
    PastHeight {
        /// The index named.
        index: u64,
        /// The store's height.
        height: u64,
    },
}
