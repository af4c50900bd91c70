//! Twill's ledger storage. This crate holds the per-channel **block store**,
//! shared by the orderer (its copy of each channel's chain) and the peer
//! (the committed chain, before state and history are built from it).
//!
//! # On-disk layout
//!
//! One directory per channel ([`channel_dir`]):
//!
//! ```text
//! <root>/<channel_id>/
//!   blocks/blockfile_000000     append-only records, one per block
//!   blocks/blockfile_000001     started once the previous file reaches
//!   ...                         `max_file_size` (default 64 MiB)
//!   index/                      sled database
//!   LOCK                        held by the open BlockStore
//! ```
//!
//! A record is a 16-byte header (magic `TWB1`, block length, CRC-32 of the
//! block bytes, CRC-32 of the header) followed by the serialized
//! `common.Block` exactly as appended; see [`format`](mod@format). The sled index maps
//! block number → (file, offset, length), block header hash → number, and
//! tx id → ([`TxLocation`]: block number, position in the block, validation
//! code from the TRANSACTIONS_FILTER metadata slot), plus a checkpoint: the
//! indexed height and the last block's header hash. A block's entries and
//! the new checkpoint are written by one atomic sled batch. An in-memory
//! Bloom filter of the indexed tx ids answers most look-ups of ids that are
//! not stored without reading the index ([`BlockStore::tx_filter_ready`]).
//!
//! # Crash guarantees
//!
//! The block files are the source of truth; the index can always be
//! rebuilt from them (delete `index/` and reopen).
//!
//! - [`BlockStore::append`] writes the record, `fdatasync`s it, and only then
//!   updates the index. When it returns `Ok`, the block survives a crash
//!   (`kill -9` or power loss), even if sled had not yet flushed its index.
//! - On open, recovery reads the checkpoint and checks that the block it
//!   names is on disk with the recorded hash. A checkpoint pointing past the
//!   end of the block files means files were lost: open fails with
//!   [`LedgerError::Corrupt`] rather than forgetting blocks.
//! - Complete records after the checkpoint (appended, but the crash came
//!   before the index was updated or flushed) are re-indexed after checking
//!   their checksum, number, `previous_hash` chain and `data_hash`.
//! - An incomplete record at the tail of the last block file — the one
//!   append a crash can interrupt — is cut off. Damage anywhere else (a bad
//!   checksum with intact records after it, a broken record in an earlier
//!   file or in the indexed part of the last file) fails the open with
//!   [`LedgerError::Corrupt`] naming the file and offset. Only the last file
//!   is checksummed on open unless [`BlockStoreOptions::verify_all_on_open`]
//!   is set; every read checks its record's checksum.
//!
//! Transaction ids keep their **first** location: Fabric's committer marks
//! later duplicates invalid, and the store records where the id first
//! appeared.
//!
//! Only one [`BlockStore`] at a time may have a directory open (the `LOCK`
//! file; a second open fails with [`LedgerError::Locked`]). Unix only: reads
//! and writes are positioned (`pread`/`pwrite`).
//!
//! All calls are blocking (appends `fsync`); from async code, run them on
//! `spawn_blocking` or a dedicated thread. [`BlockStore::subscribe`] hands
//! out a `tokio::sync::watch` receiver of the height for Deliver streams;
//! [`BlockStore::tx_location_or_wait`] a future of one transaction's
//! location, for callers waiting for their transaction to commit.
//!
//! # Example
//!
//! ```
//! use twill_configtx::block::{block_header_hash, new_block};
//! use twill_ledger::{channel_dir, BlockStore};
//!
//! let root = tempfile::tempdir()?;
//! let dir = channel_dir(root.path(), "mychannel")?;
//! let store = BlockStore::open(&dir)?;
//!
//! let genesis = new_block(0, Vec::new(), vec![b"config envelope".to_vec()]);
//! store.append(&genesis)?;
//! let hash = block_header_hash(genesis.header.as_ref().unwrap());
//! store.append(&new_block(1, hash.to_vec(), vec![b"tx".to_vec()]))?;
//!
//! assert_eq!(store.height(), 2);
//! assert_eq!(store.block(0)?, Some(genesis));
//! drop(store);
//!
//! // Reopening runs recovery and finds everything again.
//! let store = BlockStore::open(&dir)?;
//! assert_eq!(store.height(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # State database
//!
//! [`state::StateDb`] is the peer's versioned world state for one channel,
//! with the history index (`GetHistoryForKey`, newest first) and the
//! savepoint (last block whose effects are applied), all in one sled tree.
//! The committer hands it each block's [`state::UpdateBatch`];
//! [`state::StateDb::commit`] writes values, metadata, history and the new
//! savepoint in one atomic sled batch, without fsync: after a crash the
//! committer replays the blocks after the savepoint from the block store.
//! Range queries, pagination bookmarks and composite keys
//! ([`state::composite`]) behave as on Fabric's LevelDB state database.
//!
//! ```
//! use twill_ledger::state::{create_composite_key, Height, KeyWrite, StateDb, UpdateBatch};
//!
//! let dir = tempfile::tempdir()?;
//! let db = StateDb::open(dir.path())?;
//! let key = create_composite_key("owner", ["alice", "car1"])?;
//! let mut batch = UpdateBatch::default();
//! batch.put("fabcar", &key, KeyWrite::Put(b"blue".to_vec()), Height::new(1, 0));
//! db.commit(&batch, 1)?;
//!
//! assert_eq!(db.get_version("fabcar", &key)?, Some(Height::new(1, 0)));
//! assert_eq!(db.savepoint()?, Some(1));
//! assert_eq!(db.history("fabcar", &key)?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod blockstore;
mod error;
pub mod format;
mod index;
mod records;
pub mod richquery;
pub mod state;
mod txfilter;
mod txwait;

use std::path::{Path, PathBuf};

pub use blockstore::{
    last_config_index, BlockIter, BlockStore, BlockStoreOptions, TxLocation, TxLookup,
    DEFAULT_INDEX_CACHE_BYTES, DEFAULT_MAX_FILE_SIZE,
};
pub use error::{CorruptIssue, IndexIssue, LastConfigIssue, LedgerError, Result};
pub use txwait::TxWait;

/// Opens a sled database, retrying for up to `wait` while its file lock is
/// held: sled's background threads keep a just-dropped instance's lock for
/// a moment, so reopening a database right after closing it (a restart in
/// tests, a channel rejoined) would otherwise fail with "could not acquire
/// lock".
pub fn open_sled_waiting(
    config: &sled::Config,
    wait: std::time::Duration,
) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if (e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Longest channel id Fabric accepts.
pub const MAX_CHANNEL_ID_LEN: usize = 249;

/// The directory of channel `channel_id`'s ledger under `root`.
///
/// The id must follow Fabric's channel name rule — a lowercase ASCII letter
/// followed by lowercase letters, digits, `.` and `-`, at most 249
/// characters — so it can never name a path outside `root` (no `/`, no
/// `..`, no leading `.`).
pub fn channel_dir(root: &Path, channel_id: &str) -> Result<PathBuf> {
    validate_channel_id(channel_id)?;
    Ok(root.join(channel_id))
}

/// Checks `channel_id` against Fabric's channel name rule
/// (`[a-z][a-z0-9.-]*`, at most [`MAX_CHANNEL_ID_LEN`] characters).
pub fn validate_channel_id(channel_id: &str) -> Result<()> {
    let refuse = |reason| {
        Err(LedgerError::InvalidChannelId {
            channel_id: channel_id.to_string(),
            reason,
        })
    };
    let Some(first) = channel_id.bytes().next() else {
        return refuse("empty");
    };
    if channel_id.len() > MAX_CHANNEL_ID_LEN {
        return refuse("longer than 249 characters");
    }
    if !first.is_ascii_lowercase() {
        return refuse("must start with a lowercase letter");
    }
    if !channel_id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return refuse("only lowercase letters, digits, '.' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_dir_accepts_fabric_names() {
        let root = Path::new("/data/ledgers");
        assert_eq!(
            channel_dir(root, "mychannel").unwrap(),
            root.join("mychannel")
        );
        assert!(channel_dir(root, "a.b-c.9").is_ok());
        assert!(channel_dir(root, &"a".repeat(249)).is_ok());
    }

    #[test]
    fn channel_dir_refuses_traversal_and_odd_names() {
        let root = Path::new("/data/ledgers");
        for bad in [
            "", "..", ".", "../etc", "a/b", "/abs", "a\\b", "Upper", "9lives", "-x", ".hidden",
            "spa ce", "nul\0", "ü",
        ] {
            let err = channel_dir(root, bad).unwrap_err();
            assert_eq!(err.code(), "LEDGER_INVALID_CHANNEL_ID", "{bad:?}");
        }
        assert!(channel_dir(root, &"a".repeat(250)).is_err());
    }
}
