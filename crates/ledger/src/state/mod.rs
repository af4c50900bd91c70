//! The versioned state database and the history index of one channel.
//!
//! Shared vocabulary (this module): [`Height`], [`VersionedValue`],
//! [`UpdateBatch`], [`HistoryEntry`]. The committer builds an
//! [`UpdateBatch`] from a block's valid transactions and commits it with
//! [`StateDb::commit`] in one atomic step together with the history entries
//! and the savepoint.
//!
//! # Storage
//!
//! One sled database per channel, everything in one tree so that a single
//! `sled::Batch` covers state, history and savepoint:
//!
//! ```text
//! 's' ns 0x00 key                            -> version(16) meta_len(u32) meta value
//! 'h' ns 0x00 key_len(u32 BE) key height(16) -> delete flag(1) value
//! 'm' "savepoint"                            -> last committed block (u64 BE)
//! 'm' "format"                               -> format marker
//! ```
//!
//! Versions are [`Height::to_bytes`] (big-endian block, tx), so
//! [`StateDb::get_version`] reads 16 bytes and decodes nothing else.
//! Namespaces may not contain U+0000; keys may (composite keys), which is
//! why the history key length-prefixes the key.
//!
//! # Queries, as Fabric answers them
//!
//! - [`StateDb::range`] scans `[start, end)` in UTF-8 byte order; empty
//!   bounds are open. Composite keys (leading U+0000) sort first: Fabric's
//!   shims keep them out of plain range queries by refusing composite
//!   bounds and sending U+0001 for an empty start (see [`composite`]).
//! - [`StateDb::range_page`] follows LevelDB's `GetStateByRangeWithPagination`:
//!   the bookmark replaces the start key, and the bookmark returned is the
//!   next key in the range, or empty once the range is exhausted.
//! - [`StateDb::history`] returns a key's changes newest first, like
//!   Fabric v2's history DB (`core/ledger/kvledger/history/query_executer.go`
//!   iterates its range backwards).
//!
//! # Crash behaviour
//!
//! A commit is atomic but not fsynced: after a crash the database shows
//! the state as of some savepoint, and the committer replays blocks after
//! [`StateDb::savepoint`] from the block store. Committing a block at or
//! below the savepoint is refused ([`StateError::AlreadyCommitted`]).

pub mod composite;
mod db;
mod encoding;
mod error;
mod query;
mod types;

pub use composite::{
    composite_key_range, create_composite_key, is_composite_key, split_composite_key,
    validate_simple_key,
};
pub use db::{Page, RangeIter, StateDb, DEFAULT_STATE_CACHE_BYTES};
pub use error::{Result, StateError};
pub use types::{Height, HistoryEntry, KeyWrite, UpdateBatch, VersionedValue};
