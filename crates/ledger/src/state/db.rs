//! [`StateDb`]: world state, history index and savepoint of one channel in
//! one sled tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use twill_crypto::Sha256Hasher;

use super::encoding::{
    check_namespace, decode_history_key, decode_history_value, decode_metadata_only,
    decode_savepoint, decode_state_entry, decode_state_value, decode_version, encode_history_value,
    encode_savepoint, encode_state_value, history_key, history_key_prefix, state_key, state_ns_end,
    state_ns_prefix, FORMAT_KEY, FORMAT_VERSION, HISTORY_PREFIX, OLD_FORMATS, SAVEPOINT_KEY,
    STATE_PREFIX,
};
use super::error::{Result, StateError};
use super::types::{Height, HistoryEntry, KeyWrite, UpdateBatch, VersionedValue};

/// sled cache size used by [`StateDb::open`].
pub const DEFAULT_STATE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Name of the sled tree holding everything.
const TREE_NAME: &[u8] = b"state";

/// How long `open` waits for sled's file lock, which a `StateDb` dropped a
/// moment ago in this process may still hold from a background thread.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The versioned world state of one channel, with its history index and
/// savepoint. See the [module docs](crate::state) for the layout and the
/// guarantees.
///
/// Reads are lock-free sled lookups and may run from any number of threads
/// while a commit is in progress: they see the state before or after the
/// whole commit, never part of it.
pub struct StateDb {
    db: sled::Db,
    tree: sled::Tree,
    /// Serializes commits, so the savepoint check and the batch that moves
    /// the savepoint cannot interleave with another commit.
    commit_lock: Mutex<()>,
    /// The stamp of every namespace no commit of this instance has written.
    opened: u64,
    /// Per namespace, the stamp taken after the last commit that wrote it.
    stamps: Mutex<HashMap<String, u64>>,
    /// The savepoint, published after every commit.
    savepoint_tx: tokio::sync::watch::Sender<Option<u64>>,
}

/// Source of [`StateDb::namespace_stamp`] values, shared by every instance
/// in the process so that two instances never hand out the same stamp.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

fn next_stamp() -> u64 {
    NEXT_STAMP.fetch_add(1, Ordering::Relaxed)
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb")
            .field("entries", &self.tree.len())
            .finish_non_exhaustive()
    }
}

/// One page of a paginated range query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The keys and values of the page, in key order.
    pub items: Vec<(String, VersionedValue)>,
    /// The key to resume from (pass it as `bookmark`), or empty when the
    /// range is exhausted.
    pub bookmark: String,
}

/// Iterator over `(key, value)` pairs of one namespace in key order,
/// returned by [`StateDb::range`].
pub struct RangeIter {
    inner: Option<sled::Iter>,
    prefix_len: usize,
    error: Option<StateError>,
}

impl std::fmt::Debug for RangeIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeIter")
            .field("done", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl RangeIter {
    fn failed(error: StateError) -> RangeIter {
        RangeIter {
            inner: None,
            prefix_len: 0,
            error: Some(error),
        }
    }

    fn empty() -> RangeIter {
        RangeIter {
            inner: None,
            prefix_len: 0,
            error: None,
        }
    }

    fn decode(&self, raw_key: &[u8], raw_value: &[u8]) -> Result<(String, VersionedValue)> {
        let key = raw_key
            .get(self.prefix_len..)
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or_else(|| StateError::Corrupt {
                kind: "state",
                key: raw_key.to_vec(),
                reason: "key is not UTF-8",
            })?;
        Ok((key.to_owned(), decode_state_value(raw_key, raw_value)?))
    }
}

impl Iterator for RangeIter {
    type Item = Result<(String, VersionedValue)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.error.take() {
            return Some(Err(error));
        }
        let item = self.inner.as_mut()?.next()?;
        let result = item
            .map_err(StateError::from)
            .and_then(|(k, v)| self.decode(&k, &v));
        if result.is_err() {
            // Stop after the first error rather than skip past damage.
            self.inner = None;
        }
        Some(result)
    }
}

impl StateDb {
    /// Opens (creating if needed) the state database in `dir` with the
    /// default cache size.
    pub fn open(dir: &Path) -> Result<StateDb> {
        StateDb::open_with_cache(dir, DEFAULT_STATE_CACHE_BYTES)
    }

    /// Opens (creating if needed) the state database in `dir`, giving sled
    /// a page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<StateDb> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = open_sled(dir, cache_bytes)?;
        let tree = db.open_tree(TREE_NAME)?;
        match tree.get(FORMAT_KEY)? {
            None => {
                tree.insert(FORMAT_KEY, FORMAT_VERSION)?;
            }
            Some(found) if found.as_ref() == FORMAT_VERSION => {}
            Some(found) if OLD_FORMATS.contains(&found.as_ref()) => {
                // The block store is the source of truth: start empty and
                // let recovery re-apply every block in the new layout.
                tracing::warn!(
                    target: "ledger::state",
                    dir = %dir.display(),
                    found = %String::from_utf8_lossy(&found),
                    "state database has an earlier layout; rebuilding it from the block store"
                );
                tree.clear()?;
                tree.insert(FORMAT_KEY, FORMAT_VERSION)?;
            }
            Some(found) => {
                return Err(StateError::UnsupportedFormat {
                    found: found.to_vec(),
                })
            }
        }
        let savepoint = match tree.get(SAVEPOINT_KEY)? {
            Some(raw) => Some(decode_savepoint(&raw)?),
            None => None,
        };
        Ok(StateDb {
            db,
            tree,
            commit_lock: Mutex::new(()),
            opened: next_stamp(),
            stamps: Mutex::new(HashMap::new()),
            savepoint_tx: tokio::sync::watch::channel(savepoint).0,
        })
    }

    /// A receiver of the [`savepoint`](Self::savepoint), updated after every
    /// commit: for callers that must not answer before a block's effects
    /// are readable (the peer's Gateway `CommitStatus`).
    pub fn subscribe_savepoint(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.savepoint_tx.subscribe()
    }

    /// A number that changes whenever a commit writes to namespace `ns`,
    /// for caches of values derived from it (the peer keeps chaincode
    /// definitions read from `_lifecycle` this way).
    ///
    /// Stamps are unique in the process: two `StateDb` instances, or one
    /// namespace before and after a commit, never share one. A commit
    /// applies its writes before it takes the new stamp, so whatever was
    /// read after seeing a stamp is at least as new as that stamp; a value
    /// cached together with the stamp read *before* reading the value is
    /// thus current for as long as the stamp stays the same.
    pub fn namespace_stamp(&self, ns: &str) -> u64 {
        self.stamps.lock().get(ns).copied().unwrap_or(self.opened)
    }

    /// The committed value of `key` in namespace `ns`, with its version and
    /// metadata; `None` if absent or deleted.
    pub fn get(&self, ns: &str, key: &str) -> Result<Option<VersionedValue>> {
        check_namespace(ns)?;
        let raw_key = state_key(ns, key);
        match self.tree.get(&raw_key)? {
            Some(raw) => Ok(Some(decode_state_value(&raw_key, &raw)?)),
            None => Ok(None),
        }
    }

    /// The version of `key`, without decoding its value or metadata (the
    /// validator's MVCC check calls this once per read).
    pub fn get_version(&self, ns: &str, key: &str) -> Result<Option<Height>> {
        check_namespace(ns)?;
        let raw_key = state_key(ns, key);
        match self.tree.get(&raw_key)? {
            Some(raw) => Ok(Some(decode_version(&raw_key, &raw)?)),
            None => Ok(None),
        }
    }

    /// The key-level metadata of `key`: `None` if the key is absent, an
    /// empty map if it has none.
    pub fn get_metadata(&self, ns: &str, key: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
        check_namespace(ns)?;
        let raw_key = state_key(ns, key);
        match self.tree.get(&raw_key)? {
            Some(raw) => Ok(Some(decode_metadata_only(&raw_key, &raw)?)),
            None => Ok(None),
        }
    }

    /// The keys of `ns` in `[start, end)`, in byte order of the UTF-8 key.
    /// An empty `start` means from the first key, an empty `end` up to and
    /// including the last key of the namespace. `start >= end` (with `end`
    /// non-empty) gives nothing.
    ///
    /// This is the ledger-level scan (Fabric's state DB): with an empty
    /// `start` it includes composite keys, which sort first. Chaincode
    /// shims never ask for that in a plain range query; see
    /// [`composite`](super::composite).
    pub fn range(&self, ns: &str, start: &str, end: &str) -> RangeIter {
        if let Err(e) = check_namespace(ns) {
            return RangeIter::failed(e);
        }
        if !end.is_empty() && start >= end {
            return RangeIter::empty();
        }
        let prefix_len = state_ns_prefix(ns).len();
        let lo = state_key(ns, start);
        let hi = if end.is_empty() {
            state_ns_end(ns)
        } else {
            state_key(ns, end)
        };
        RangeIter {
            inner: Some(self.tree.range(lo..hi)),
            prefix_len,
            error: None,
        }
    }

    /// One page of `[start, end)` in `ns`, with the semantics of Fabric's
    /// `GetStateByRangeWithPagination` on its LevelDB state DB: a non-empty
    /// `bookmark` replaces `start`; at most `page_size` items are returned
    /// (0 means no limit); the returned bookmark is the key that follows
    /// the page within the range, or empty when the range is exhausted
    /// (also when the page ends exactly at the last key).
    pub fn range_page(
        &self,
        ns: &str,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<Page> {
        let start = if bookmark.is_empty() { start } else { bookmark };
        let mut iter = self.range(ns, start, end);
        let limit = if page_size == 0 {
            usize::MAX
        } else {
            page_size as usize
        };
        let mut items = Vec::new();
        while items.len() < limit {
            match iter.next() {
                Some(item) => items.push(item?),
                None => {
                    return Ok(Page {
                        items,
                        bookmark: String::new(),
                    })
                }
            }
        }
        let bookmark = match iter.next() {
            Some(item) => item?.0,
            None => String::new(),
        };
        Ok(Page { items, bookmark })
    }

    /// The number of the last block whose effects are committed, or `None`
    /// for a fresh database.
    pub fn savepoint(&self) -> Result<Option<u64>> {
        match self.tree.get(SAVEPOINT_KEY)? {
            Some(raw) => Ok(Some(decode_savepoint(&raw)?)),
            None => Ok(None),
        }
    }

    /// Applies block `block`'s writes, deletes, metadata writes and history
    /// entries and moves the savepoint to `block`, all in one atomic sled
    /// batch: after a crash either all of it is visible or none.
    ///
    /// Value writes keep the key's metadata (unless the batch deleted the
    /// key before re-creating it). A metadata write applies only if the key
    /// exists at the writing transaction (it is ignored for a key deleted
    /// later in the batch or absent), and moves the key's version to the
    /// later of its own height and the value write's height.
    ///
    /// Fails with [`StateError::AlreadyCommitted`] if the savepoint is
    /// already `block` or later, and with [`StateError::InvalidNamespace`]
    /// for a namespace containing U+0000; a failed commit writes nothing.
    /// Does not fsync: the block store is the durable record, and the
    /// committer replays blocks past the savepoint after a crash.
    pub fn commit(&self, batch: &UpdateBatch, block: u64) -> Result<()> {
        let _guard = self.commit_lock.lock();
        if let Some(savepoint) = self.savepoint()? {
            if block <= savepoint {
                return Err(StateError::AlreadyCommitted { block, savepoint });
            }
        }
        let mut out = sled::Batch::default();

        // Per key, the batch's value changes (put or delete) in height order.
        let mut events: BTreeMap<(&str, &str), Vec<&HistoryEntry>> = BTreeMap::new();
        for entry in &batch.history {
            check_namespace(&entry.namespace)?;
            events
                .entry((entry.namespace.as_str(), entry.key.as_str()))
                .or_default()
                .push(entry);
        }

        let keys: BTreeSet<&(String, String)> =
            batch.writes.keys().chain(batch.metadata.keys()).collect();
        for nk in keys {
            let (ns, key) = (nk.0.as_str(), nk.1.as_str());
            check_namespace(ns)?;
            let raw_key = state_key(ns, key);
            let write = batch.writes.get(nk).map(|(w, h)| (w, *h));
            let meta = batch.metadata.get(nk).map(|(m, h)| (m, *h));
            let mut key_events = events.remove(&(ns, key)).unwrap_or_default();
            key_events.sort_by_key(|e| e.height);
            let mut changes: Vec<(Height, bool)> =
                key_events.iter().map(|e| (e.height, e.is_delete)).collect();
            if let Some((w, h)) = write {
                if !changes.iter().any(|(eh, _)| *eh == h) {
                    changes.push((h, matches!(w, KeyWrite::Delete)));
                    changes.sort();
                }
            }
            let stored = match self.tree.get(&raw_key)? {
                Some(raw) => Some(decode_state_entry(&raw_key, &raw)?),
                None => None,
            };
            let resolved = resolve(stored.as_ref(), write, meta, &changes);

            // History: a value write retires the stored current value to
            // its own entry; every change of the batch gets one, except a
            // final put, which lives in the state entry.
            if write.is_some() {
                if let Some((old, old_height)) = &stored {
                    out.insert(
                        history_key(ns, key, *old_height)?,
                        encode_history_value(false, &old.value),
                    );
                }
            }
            let current = match (&resolved, write) {
                (Resolved::Set { value_height, .. }, Some(_)) => Some(*value_height),
                _ => None,
            };
            for e in key_events.iter().filter(|e| Some(e.height) != current) {
                out.insert(
                    history_key(ns, key, e.height)?,
                    encode_history_value(e.is_delete, &e.value),
                );
            }

            match resolved {
                Resolved::Remove => out.remove(raw_key),
                Resolved::Unchanged => {}
                Resolved::Set {
                    value,
                    version,
                    value_height,
                    metadata,
                } => {
                    let encoded =
                        encode_state_value(ns, key, &value, version, value_height, &metadata)?;
                    out.insert(raw_key, encoded);
                }
            }
        }
        // History entries of keys the batch does not write (not produced by
        // UpdateBatch::put, kept for completeness).
        for ((ns, key), entries) in events {
            for e in entries {
                out.insert(
                    history_key(ns, key, e.height)?,
                    encode_history_value(e.is_delete, &e.value),
                );
            }
        }

        out.insert(SAVEPOINT_KEY, &encode_savepoint(block));
        self.tree.apply_batch(out)?;
        let written: BTreeSet<&str> = batch
            .writes
            .keys()
            .chain(batch.metadata.keys())
            .map(|(ns, _)| ns.as_str())
            .collect();
        if !written.is_empty() {
            let mut stamps = self.stamps.lock();
            for ns in written {
                stamps.insert(ns.to_owned(), next_stamp());
            }
        }
        self.savepoint_tx.send_replace(Some(block));
        tracing::debug!(
            target: "ledger::state",
            block,
            writes = batch.writes.len(),
            metadata_writes = batch.metadata.len(),
            history = batch.history.len(),
            "committed state"
        );
        Ok(())
    }

    /// Every committed change of `key` in `ns`, newest first, as Fabric
    /// v2.x's `GetHistoryForKey` returns them.
    pub fn history(&self, ns: &str, key: &str) -> Result<Vec<HistoryEntry>> {
        check_namespace(ns)?;
        let prefix = history_key_prefix(ns, key)?;
        let mut out = Vec::new();
        // The current value is the newest entry; older ones are under 'h'.
        let raw_key = state_key(ns, key);
        if let Some(raw) = self.tree.get(&raw_key)? {
            let (current, value_height) = decode_state_entry(&raw_key, &raw)?;
            out.push(HistoryEntry {
                namespace: ns.to_owned(),
                key: key.to_owned(),
                height: value_height,
                is_delete: false,
                value: current.value,
            });
        }
        for item in self.tree.scan_prefix(&prefix).rev() {
            let (raw_key, raw_value) = item?;
            let (_, _, height) = decode_history_key(&raw_key)?;
            let (is_delete, value) = decode_history_value(&raw_key, &raw_value)?;
            out.push(HistoryEntry {
                namespace: ns.to_owned(),
                key: key.to_owned(),
                height,
                is_delete,
                value: value.to_vec(),
            });
        }
        Ok(out)
    }

    /// SHA-256 over every state entry (namespace, key, value, version,
    /// height of the value's write, metadata) in key order, then every
    /// stored history entry in key order, then the savepoint. Two databases
    /// that committed the same batches give the same hash, however sled
    /// laid out its files.
    pub fn state_hash(&self) -> Result<[u8; 32]> {
        let mut h = Sha256Hasher::new();
        h.update(b"twill-state-hash-v1");
        for item in self.tree.scan_prefix([STATE_PREFIX]) {
            let (raw_key, raw_value) = item?;
            let (ns, key) = split_state_key(&raw_key)?;
            let (vv, value_height) = decode_state_entry(&raw_key, &raw_value)?;
            h.update(b"s");
            framed(&mut h, ns);
            framed(&mut h, key);
            framed(&mut h, &vv.value);
            h.update(&vv.version.to_bytes());
            h.update(&value_height.to_bytes());
            h.update(&(vv.metadata.len() as u64).to_be_bytes());
            for (name, entry) in &vv.metadata {
                framed(&mut h, name.as_bytes());
                framed(&mut h, entry);
            }
        }
        for item in self.tree.scan_prefix([HISTORY_PREFIX]) {
            let (raw_key, raw_value) = item?;
            let (ns, key, height) = decode_history_key(&raw_key)?;
            let (is_delete, value) = decode_history_value(&raw_key, &raw_value)?;
            h.update(b"h");
            framed(&mut h, ns.as_bytes());
            framed(&mut h, key.as_bytes());
            h.update(&height.to_bytes());
            h.update(&[u8::from(is_delete)]);
            framed(&mut h, value);
        }
        match self.savepoint()? {
            Some(block) => {
                h.update(b"p\x01");
                h.update(&block.to_be_bytes());
            }
            None => h.update(b"p\x00"),
        }
        Ok(h.finalize())
    }

    /// Flushes sled's dirty pages to disk (for orderly shutdown). Blocks;
    /// from async code, call it on a blocking thread.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// What a commit does to one state key.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    Remove,
    Unchanged,
    Set {
        value: Vec<u8>,
        version: Height,
        /// Height of the write that set `value`.
        value_height: Height,
        metadata: BTreeMap<String, Vec<u8>>,
    },
}

/// Works out the final state of one key from its stored entry (with the
/// height of its value's write), the batch's final value write, its
/// metadata write, and the ordered value changes (height, is_delete) the
/// batch made to it.
fn resolve(
    stored: Option<&(VersionedValue, Height)>,
    write: Option<(&KeyWrite, Height)>,
    meta: Option<(&BTreeMap<String, Vec<u8>>, Height)>,
    events: &[(Height, bool)],
) -> Resolved {
    // A metadata write takes effect if the key exists when it is written
    // and is not deleted afterwards in the batch.
    let meta_survives = |stored_exists: bool, m: Height| {
        let exists_at_m = match events.iter().rev().find(|(h, _)| *h <= m) {
            Some((_, is_delete)) => !is_delete,
            None => stored_exists,
        };
        exists_at_m && !events.iter().any(|(h, d)| *d && *h > m)
    };
    match write {
        Some((KeyWrite::Delete, _)) => Resolved::Remove,
        Some((KeyWrite::Put(value), w)) => {
            if let Some((entries, m)) = meta {
                if meta_survives(stored.is_some(), m) {
                    return Resolved::Set {
                        value: value.clone(),
                        version: w.max(m),
                        value_height: w,
                        metadata: entries.clone(),
                    };
                }
            }
            let deleted_in_batch = events.iter().any(|(_, d)| *d);
            let metadata = match (stored, deleted_in_batch) {
                (Some((old, _)), false) => old.metadata.clone(),
                _ => BTreeMap::new(),
            };
            Resolved::Set {
                value: value.clone(),
                version: w,
                value_height: w,
                metadata,
            }
        }
        None => {
            let (Some((entries, m)), Some((old, value_height))) = (meta, stored) else {
                return Resolved::Unchanged;
            };
            if !meta_survives(true, m) {
                return Resolved::Unchanged;
            }
            Resolved::Set {
                value: old.value.clone(),
                version: old.version.max(m),
                value_height: *value_height,
                metadata: entries.clone(),
            }
        }
    }
}

/// Splits a raw state key into (namespace, key) bytes.
fn split_state_key(raw_key: &[u8]) -> Result<(&[u8], &[u8])> {
    let rest = raw_key.get(1..).unwrap_or_default();
    let sep = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| StateError::Corrupt {
            kind: "state",
            key: raw_key.to_vec(),
            reason: "no namespace separator",
        })?;
    Ok((&rest[..sep], &rest[sep + 1..]))
}

/// Length-prefixed bytes, so adjacent fields cannot run into each other.
fn framed(h: &mut Sha256Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// Opens sled, waiting out the file lock a just-dropped instance's
/// background threads may still hold.
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let config = sled::Config::new().path(dir).cache_capacity(cache_bytes);
    Ok(crate::open_sled_waiting(&config, SLED_LOCK_WAIT)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, v: &[u8]) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(name.to_owned(), v.to_vec())])
    }

    fn open() -> (tempfile::TempDir, StateDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        (dir, db)
    }

    fn seed(db: &StateDb) {
        let mut b = UpdateBatch::default();
        b.put("cc", "k", KeyWrite::Put(b"v0".to_vec()), Height::new(1, 0));
        b.put_metadata("cc", "k", meta("A", b"old"), Height::new(1, 0));
        db.commit(&b, 1).unwrap();
    }

    #[test]
    fn namespace_stamps_change_with_writes_to_that_namespace_only() {
        let (_d, db) = open();
        let (_d2, other) = open();
        let cc0 = db.namespace_stamp("cc");
        assert_eq!(db.namespace_stamp("cc"), cc0);
        assert_eq!(db.namespace_stamp("other"), cc0);
        assert_ne!(other.namespace_stamp("cc"), cc0, "instances share a stamp");
        seed(&db);
        let cc1 = db.namespace_stamp("cc");
        assert_ne!(cc1, cc0);
        assert_eq!(db.namespace_stamp("other"), cc0);
        // A metadata-only write counts as a write of its namespace.
        let mut b = UpdateBatch::default();
        b.put_metadata("cc", "k", meta("A", b"x"), Height::new(2, 0));
        db.commit(&b, 2).unwrap();
        assert_ne!(db.namespace_stamp("cc"), cc1);
        // A commit that writes nothing leaves every stamp alone.
        let cc2 = db.namespace_stamp("cc");
        db.commit(&UpdateBatch::default(), 3).unwrap();
        assert_eq!(db.namespace_stamp("cc"), cc2);
        // A failed commit too.
        assert!(db.commit(&UpdateBatch::default(), 3).is_err());
        assert_eq!(db.namespace_stamp("cc"), cc2);
    }

    #[test]
    fn the_savepoint_is_published_after_each_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let seen = db.subscribe_savepoint();
        assert_eq!(*seen.borrow(), None);
        seed(&db);
        assert_eq!(*seen.borrow(), Some(1));
        db.commit(&UpdateBatch::default(), 2).unwrap();
        assert_eq!(*seen.borrow(), Some(2));
        drop(db);
        // Reopened, it starts from the stored savepoint.
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(*db.subscribe_savepoint().borrow(), Some(2));
    }

    #[test]
    fn metadata_before_a_later_value_write_survives_with_the_later_version() {
        let (_d, db) = open();
        seed(&db);
        let mut b = UpdateBatch::default();
        b.put_metadata("cc", "k", meta("A", b"new"), Height::new(2, 1));
        b.put("cc", "k", KeyWrite::Put(b"v1".to_vec()), Height::new(2, 4));
        db.commit(&b, 2).unwrap();
        let vv = db.get("cc", "k").unwrap().unwrap();
        assert_eq!(vv.value, b"v1");
        assert_eq!(vv.version, Height::new(2, 4));
        assert_eq!(vv.metadata, meta("A", b"new"));
    }

    #[test]
    fn metadata_after_a_value_write_moves_the_version() {
        let (_d, db) = open();
        seed(&db);
        let mut b = UpdateBatch::default();
        b.put("cc", "k", KeyWrite::Put(b"v1".to_vec()), Height::new(2, 0));
        b.put_metadata("cc", "k", meta("A", b"new"), Height::new(2, 3));
        db.commit(&b, 2).unwrap();
        let vv = db.get("cc", "k").unwrap().unwrap();
        assert_eq!(
            (vv.value.as_slice(), vv.version),
            (&b"v1"[..], Height::new(2, 3))
        );
        assert_eq!(vv.metadata, meta("A", b"new"));
    }

    #[test]
    fn delete_then_recreate_drops_old_and_earlier_metadata() {
        let (_d, db) = open();
        seed(&db);
        let mut b = UpdateBatch::default();
        b.put_metadata("cc", "k", meta("A", b"mid"), Height::new(2, 0));
        b.put("cc", "k", KeyWrite::Delete, Height::new(2, 1));
        b.put("cc", "k", KeyWrite::Put(b"v2".to_vec()), Height::new(2, 2));
        db.commit(&b, 2).unwrap();
        let vv = db.get("cc", "k").unwrap().unwrap();
        assert_eq!(vv.value, b"v2");
        assert_eq!(vv.version, Height::new(2, 2));
        assert!(vv.metadata.is_empty(), "{:?}", vv.metadata);
    }

    #[test]
    fn metadata_on_a_key_deleted_earlier_in_the_batch_is_ignored() {
        let (_d, db) = open();
        seed(&db);
        let mut b = UpdateBatch::default();
        b.put("cc", "k", KeyWrite::Delete, Height::new(2, 0));
        b.put_metadata("cc", "k", meta("A", b"x"), Height::new(2, 1));
        b.put("cc", "k", KeyWrite::Put(b"v2".to_vec()), Height::new(2, 2));
        db.commit(&b, 2).unwrap();
        let vv = db.get("cc", "k").unwrap().unwrap();
        assert!(vv.metadata.is_empty());
        assert_eq!(vv.version, Height::new(2, 2));
    }

    #[test]
    fn metadata_on_an_absent_key_writes_nothing() {
        let (_d, db) = open();
        let mut b = UpdateBatch::default();
        b.put_metadata("cc", "ghost", meta("A", b"x"), Height::new(1, 0));
        db.commit(&b, 1).unwrap();
        assert_eq!(db.get("cc", "ghost").unwrap(), None);
        assert_eq!(db.savepoint().unwrap(), Some(1));
    }

    #[test]
    fn metadata_only_write_keeps_value_and_moves_version() {
        let (_d, db) = open();
        seed(&db);
        let mut b = UpdateBatch::default();
        b.put_metadata("cc", "k", BTreeMap::new(), Height::new(3, 7));
        db.commit(&b, 3).unwrap();
        let vv = db.get("cc", "k").unwrap().unwrap();
        assert_eq!(vv.value, b"v0");
        assert_eq!(vv.version, Height::new(3, 7));
        assert_eq!(db.get_metadata("cc", "k").unwrap(), Some(BTreeMap::new()));
        // A metadata write is not a change of the value: no history entry.
        assert_eq!(db.history("cc", "k").unwrap().len(), 1);
    }

    #[test]
    fn range_with_inverted_bounds_is_empty() {
        let (_d, db) = open();
        seed(&db);
        assert_eq!(db.range("cc", "z", "a").count(), 0);
        assert_eq!(db.range("cc", "k", "k").count(), 0);
        assert_eq!(db.range("cc", "k", "").count(), 1);
    }

    #[test]
    fn bad_namespace_fails_reads_and_range() {
        let (_d, db) = open();
        assert_eq!(
            db.get_version("a\0b", "k").unwrap_err().code(),
            "STATE_INVALID_NAMESPACE"
        );
        let items: Vec<_> = db.range("a\0b", "", "").collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }
}
