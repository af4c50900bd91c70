//! [`SledStorage`]: the durable raft log of one group, in one sled database.
//!
//! Layout (all integers big-endian):
//!
//! - tree `entries`: index → protobuf `Entry`, contiguous from
//!   `snapshot.index + 1` to the last index;
//! - tree `meta`: `hard_state` → protobuf `HardState`, `snapshot` → protobuf
//!   `Snapshot` (metadata with its `ConfState`, and the application payload);
//! - tree `confs`: index → protobuf `ConfState` in effect from that index on,
//!   for every applied membership change since the snapshot (and the one in
//!   effect at the snapshot). It answers "which configuration was in force
//!   at index i", which restarts and snapshots taken at the application's
//!   durable index need.
//!
//! Every change is one sled transaction across the trees; callers decide when
//! to flush.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ::raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use ::raft::{GetEntriesContext, RaftState, StorageError};
use protobuf::Message as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional as _;

use super::codec::{decode, encode};
use super::{RaftError, RaftResult, BOOTSTRAP_INDEX, BOOTSTRAP_TERM};

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> RaftResult<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| RaftError::Corrupt {
        reason: format!("raft key of {} bytes", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn storage_err(err: impl Into<RaftError>) -> ::raft::Error {
    err.into().into()
}

/// True if `id` is a member (voter or learner, incoming or outgoing) of `cs`.
pub(crate) fn conf_contains(cs: &ConfState, id: u64) -> bool {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next)
        .any(|&v| v == id)
}

/// Writes to apply in one transaction.
#[derive(Default)]
struct WriteSet {
    entries: sled::Batch,
    meta: sled::Batch,
    confs: sled::Batch,
}

/// A `raft::Storage` on sled: the log, hard state, snapshot and
/// configuration history of one Raft group.
///
/// Reads (the `raft::Storage` methods) come from raft-rs inside the loop;
/// writes come from the loop between readies. The terms of all stored
/// entries are cached in memory so that `term()` needs no disk read.
pub struct SledStorage {
    db: sled::Db,
    entries: sled::Tree,
    meta: sled::Tree,
    confs: sled::Tree,
    hard_state: HardState,
    /// The latest snapshot; index 0 when there is none.
    snapshot: Snapshot,
    /// Terms of the stored entries, from `first_index()` on.
    terms: VecDeque<u64>,
    /// Encoded bytes of entries written since the latest snapshot.
    bytes_since_snapshot: u64,
    /// The applied index raft-rs will be started with, so that
    /// `initial_state` reports the configuration in force at that index.
    initial_applied: Option<u64>,
    /// Set when raft-rs asked for a snapshot this storage could not serve.
    snapshot_requested: AtomicBool,
}

impl SledStorage {
    /// Opens (or creates) the storage in directory `dir` and checks that it
    /// is consistent.
    pub fn open(dir: &Path) -> RaftResult<Self> {
        // A just-closed instance may still hold the lock for a moment.
        let db = twill_ledger::open_sled_waiting(
            &sled::Config::new().path(dir),
            std::time::Duration::from_secs(10),
        )?;
        let entries = db.open_tree("entries")?;
        let meta = db.open_tree("meta")?;
        let confs = db.open_tree("confs")?;
        let hard_state = match meta.get(KEY_HARD_STATE)? {
            Some(v) => decode(&v)?,
            None => HardState::default(),
        };
        let snapshot = match meta.get(KEY_SNAPSHOT)? {
            Some(v) => decode(&v)?,
            None => Snapshot::default(),
        };
        let mut storage = Self {
            db,
            entries,
            meta,
            confs,
            hard_state,
            snapshot,
            terms: VecDeque::new(),
            bytes_since_snapshot: 0,
            initial_applied: None,
            snapshot_requested: AtomicBool::new(false),
        };
        storage.load_terms()?;
        Ok(storage)
    }

    fn load_terms(&mut self) -> RaftResult<()> {
        for (expected, kv) in (self.first_index()..).zip(self.entries.iter()) {
            let (k, v) = kv?;
            let index = key_index(&k)?;
            if index != expected {
                return Err(RaftError::Corrupt {
                    reason: format!("raft log has index {index} where {expected} was expected"),
                });
            }
            let entry: Entry = decode(&v)?;
            if entry.index != index {
                return Err(RaftError::Corrupt {
                    reason: format!("entry stored under {index} says index {}", entry.index),
                });
            }
            self.terms.push_back(entry.term);
            self.bytes_since_snapshot += v.len() as u64;
        }
        Ok(())
    }

    /// True if nothing was ever stored (no hard state, snapshot or entry).
    pub fn is_empty(&self) -> bool {
        self.hard_state == HardState::default()
            && self.snapshot.get_metadata().index == 0
            && self.terms.is_empty()
    }

    /// Initialises empty storage for a founding member: an initial snapshot
    /// at [`BOOTSTRAP_INDEX`] whose configuration has `voters`, and a hard
    /// state committed up to it. Flushes.
    pub fn bootstrap(&mut self, voters: &[u64]) -> RaftResult<()> {
        if !self.is_empty() {
            return Err(RaftError::Corrupt {
                reason: "refusing to bootstrap storage that has state".to_owned(),
            });
        }
        let cs = ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        };
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = BOOTSTRAP_INDEX;
        snap.mut_metadata().term = BOOTSTRAP_TERM;
        snap.mut_metadata().set_conf_state(cs.clone());
        let hs = HardState {
            term: BOOTSTRAP_TERM,
            commit: BOOTSTRAP_INDEX,
            ..HardState::default()
        };

        let mut ws = WriteSet::default();
        ws.meta.insert(KEY_SNAPSHOT, encode(&snap)?);
        ws.meta.insert(KEY_HARD_STATE, encode(&hs)?);
        ws.confs.insert(&key(BOOTSTRAP_INDEX)[..], encode(&cs)?);
        self.commit(&ws)?;
        self.flush()?;
        self.snapshot = snap;
        self.hard_state = hs;
        Ok(())
    }

    fn commit(&self, ws: &WriteSet) -> RaftResult<()> {
        (&self.entries, &self.meta, &self.confs)
            .transaction(|(entries, meta, confs)| {
                entries.apply_batch(&ws.entries)?;
                meta.apply_batch(&ws.meta)?;
                confs.apply_batch(&ws.confs)?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|err| match err {
                TransactionError::Storage(e) => RaftError::Storage(e),
                TransactionError::Abort(()) => RaftError::Corrupt {
                    reason: "raft storage transaction aborted".to_owned(),
                },
            })
    }

    /// Makes every write so far durable (fsync).
    pub fn flush(&self) -> RaftResult<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Appends `entries` (replacing any stored entries from the first one's
    /// index on, as raft-rs asks when a new leader overwrites an uncommitted
    /// tail) and records `hard_state`, in one transaction. Does not flush.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> RaftResult<()> {
        let mut ws = WriteSet::default();
        let mut bytes = 0u64;
        if let Some(first) = entries.first() {
            let (first_index, last_index) = (self.first_index(), self.last_index());
            if first.index < first_index || first.index > last_index + 1 {
                return Err(RaftError::Corrupt {
                    reason: format!(
                        "append at {} outside stored range {first_index}..={last_index}",
                        first.index
                    ),
                });
            }
            for index in first.index..=last_index {
                ws.entries.remove(&key(index)[..]);
            }
            for (offset, e) in entries.iter().enumerate() {
                if e.index != first.index + offset as u64 {
                    return Err(RaftError::Corrupt {
                        reason: format!("non-contiguous entries to append at {}", e.index),
                    });
                }
                let value = encode(e)?;
                bytes += value.len() as u64;
                ws.entries.insert(&key(e.index)[..], value);
            }
        }
        if let Some(hs) = hard_state {
            ws.meta.insert(KEY_HARD_STATE, encode(hs)?);
        }
        self.commit(&ws)?;

        if let Some(first) = entries.first() {
            let keep = usize::try_from(first.index - self.first_index()).unwrap_or(usize::MAX);
            self.terms.truncate(keep);
            self.terms.extend(entries.iter().map(|e| e.term));
            self.bytes_since_snapshot += bytes;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records a new commit index (with the rest of the hard state). Does
    /// not flush: a lost commit index is recomputed on restart.
    pub fn set_commit(&mut self, commit: u64) -> RaftResult<()> {
        if commit <= self.hard_state.commit {
            return Ok(());
        }
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.append(&[], Some(&hs))
    }

    /// Replaces the whole log with a snapshot received from the leader: the
    /// entries are dropped, the hard state is committed up to the snapshot
    /// and the configuration history restarts from its `ConfState`. Does not
    /// flush.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> RaftResult<()> {
        let meta = snap.get_metadata();
        if meta.index < self.first_index() {
            return Err(::raft::Error::Store(StorageError::SnapshotOutOfDate).into());
        }
        let mut ws = WriteSet::default();
        for index in self.first_index()..=self.last_index() {
            ws.entries.remove(&key(index)[..]);
        }
        for k in self.confs.iter().keys() {
            ws.confs.remove(k?);
        }
        ws.confs
            .insert(&key(meta.index)[..], encode(meta.get_conf_state())?);
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        ws.meta.insert(KEY_HARD_STATE, encode(&hs)?);
        ws.meta.insert(KEY_SNAPSHOT, encode(snap)?);
        self.commit(&ws)?;

        self.hard_state = hs;
        self.snapshot = snap.clone();
        self.terms.clear();
        self.bytes_since_snapshot = 0;
        Ok(())
    }

    /// Takes a snapshot at `index` (which must be applied, and within the
    /// log) with the application payload `data`, and drops the log up to it.
    /// The snapshot keeps the term of `index` and the configuration in force
    /// there. Does not flush.
    pub fn compact_to(&mut self, index: u64, data: Vec<u8>) -> RaftResult<()> {
        let first = self.first_index();
        if index < first || index > self.last_index() {
            return Err(RaftError::Corrupt {
                reason: format!(
                    "cannot snapshot at {index} outside the log {first}..={}",
                    self.last_index()
                ),
            });
        }
        let term = self.term_of(index)?;
        let (conf_key, cs) = self.conf_entry_at(index)?;

        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(cs);

        let mut ws = WriteSet::default();
        for i in first..=index {
            ws.entries.remove(&key(i)[..]);
        }
        for k in self.confs.range(..&key(conf_key)[..]).keys() {
            ws.confs.remove(k?);
        }
        ws.meta.insert(KEY_SNAPSHOT, encode(&snap)?);
        self.commit(&ws)?;

        let dropped = usize::try_from(index + 1 - first).unwrap_or(usize::MAX);
        self.terms.drain(..dropped.min(self.terms.len()));
        self.snapshot = snap;
        self.bytes_since_snapshot = 0;
        Ok(())
    }

    /// Records that configuration `cs` is in force from `index` on. Flushes:
    /// the application may persist `index` as applied right after.
    pub fn record_conf_state(&mut self, index: u64, cs: &ConfState) -> RaftResult<()> {
        self.confs.insert(&key(index)[..], encode(cs)?)?;
        self.flush()
    }

    fn conf_entry_at(&self, index: u64) -> RaftResult<(u64, ConfState)> {
        match self.confs.range(..=&key(index)[..]).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok((key_index(&k)?, decode(&v)?))
            }
            None => Ok((0, ConfState::default())),
        }
    }

    /// The configuration in force at `index` (the empty configuration if
    /// none was ever recorded).
    pub fn conf_state_at(&self, index: u64) -> RaftResult<ConfState> {
        Ok(self.conf_entry_at(index)?.1)
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The latest snapshot (index 0 if none).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Encoded bytes of entries written since the latest snapshot.
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.bytes_since_snapshot
    }

    /// Sets the applied index raft-rs will be started with, so that
    /// `initial_state` reports the configuration in force there (raft-rs
    /// replays later membership changes itself).
    pub fn set_initial_applied(&mut self, applied: u64) {
        self.initial_applied = Some(applied);
    }

    /// True (once) if raft-rs asked for a snapshot that could not be served,
    /// so that the loop should take a fresh one.
    pub(crate) fn take_snapshot_request(&self) -> bool {
        self.snapshot_requested.swap(false, Ordering::Relaxed)
    }

    /// The first index in the log (the latest snapshot's index + 1).
    pub fn first_index(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    /// The last index in the log (the snapshot's index if the log is empty).
    pub fn last_index(&self) -> u64 {
        self.snapshot.get_metadata().index + self.terms.len() as u64
    }

    fn term_of(&self, index: u64) -> RaftResult<u64> {
        let snap = self.snapshot.get_metadata();
        if index == snap.index {
            return Ok(snap.term);
        }
        if index < snap.index {
            return Err(::raft::Error::Store(StorageError::Compacted).into());
        }
        usize::try_from(index - snap.index - 1)
            .ok()
            .and_then(|offset| self.terms.get(offset).copied())
            .ok_or(::raft::Error::Store(StorageError::Unavailable).into())
    }

    /// Reads stored entries `[low, high)`, at most `max_size` bytes but at
    /// least one entry.
    pub fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> RaftResult<Vec<Entry>> {
        if low < self.first_index() {
            return Err(::raft::Error::Store(StorageError::Compacted).into());
        }
        if high > self.last_index() + 1 {
            return Err(::raft::Error::Store(StorageError::Unavailable).into());
        }
        let mut out: Vec<Entry> = Vec::new();
        let mut size = 0u64;
        for kv in self.entries.range(&key(low)[..]..&key(high)[..]) {
            let (_, v) = kv?;
            let entry: Entry = decode(&v)?;
            let expected = low + out.len() as u64;
            if entry.index != expected {
                return Err(RaftError::Corrupt {
                    reason: format!("raft log has {} where {expected} was expected", entry.index),
                });
            }
            size += u64::from(entry.compute_size());
            if !out.is_empty() && max_size.is_some_and(|max| size > max) {
                return Ok(out);
            }
            out.push(entry);
        }
        if (out.len() as u64) < high.saturating_sub(low) {
            return Err(RaftError::Corrupt {
                reason: format!("entries {low}..{high} missing from the raft log"),
            });
        }
        Ok(out)
    }
}

impl ::raft::Storage for SledStorage {
    fn initial_state(&self) -> ::raft::Result<RaftState> {
        let at = self.initial_applied.unwrap_or(u64::MAX);
        let conf_state = self.conf_state_at(at).map_err(storage_err)?;
        Ok(RaftState::new(self.hard_state.clone(), conf_state))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> ::raft::Result<Vec<Entry>> {
        self.read_entries(low, high, max_size.into())
            .map_err(storage_err)
    }

    fn term(&self, idx: u64) -> ::raft::Result<u64> {
        self.term_of(idx).map_err(storage_err)
    }

    fn first_index(&self) -> ::raft::Result<u64> {
        Ok(SledStorage::first_index(self))
    }

    fn last_index(&self) -> ::raft::Result<u64> {
        Ok(SledStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> ::raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        // The bootstrap snapshot carries no application state and only the
        // founding voters; a joiner needs one that includes itself.
        if meta.index <= BOOTSTRAP_INDEX
            || meta.index < request_index
            || !conf_contains(meta.get_conf_state(), to)
        {
            self.snapshot_requested.store(true, Ordering::Relaxed);
            return Err(::raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::raft::Storage as _;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    fn open(dir: &Path) -> SledStorage {
        SledStorage::open(dir).expect("open storage")
    }

    #[test]
    fn bootstrap_append_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = open(dir.path());
            assert!(s.is_empty());
            s.bootstrap(&[1, 2, 3]).expect("bootstrap");
            assert!(s.bootstrap(&[1]).is_err(), "bootstrap twice");
            assert_eq!(s.first_index(), 2);
            assert_eq!(s.last_index(), 1);
            assert_eq!(s.term(1).expect("term"), BOOTSTRAP_TERM);
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 1,
                ..HardState::default()
            };
            let ents: Vec<_> = (2..=6).map(|i| entry(i, 2, b"x")).collect();
            s.append(&ents, Some(&hs)).expect("append");
            // A new leader overwrites the uncommitted tail.
            let ents: Vec<_> = (5..=5).map(|i| entry(i, 3, b"y")).collect();
            s.append(&ents, None).expect("overwrite");
            s.flush().expect("flush");
        }
        let s = open(dir.path());
        assert!(!s.is_empty());
        assert_eq!(s.last_index(), 5);
        assert_eq!(s.term(4).expect("term"), 2);
        assert_eq!(s.term(5).expect("term"), 3);
        assert_eq!(s.hard_state().vote, 1);
        let state = s.initial_state().expect("state");
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        let got = s
            .entries(2, 6, None, GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        let one = s
            .entries(2, 6, Some(0), GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(one.len(), 1, "max_size still yields one entry");
        assert!(s.term(7).is_err());
    }

    #[test]
    fn compaction_and_conf_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        s.bootstrap(&[1, 2, 3]).expect("bootstrap");
        let ents: Vec<_> = (2..=10).map(|i| entry(i, 2, b"data")).collect();
        s.append(&ents, None).expect("append");
        let cs = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            ..ConfState::default()
        };
        s.record_conf_state(5, &cs).expect("conf");
        assert_eq!(
            s.conf_state_at(4).expect("conf").learners,
            Vec::<u64>::new()
        );
        assert_eq!(s.conf_state_at(5).expect("conf").learners, vec![4]);

        // The bootstrap snapshot is never served; a fresh one is asked for.
        assert!(s.snapshot(0, 4).is_err());
        assert!(s.take_snapshot_request());
        assert!(!s.take_snapshot_request());

        s.compact_to(7, b"app".to_vec()).expect("compact");
        assert_eq!(s.first_index(), 8);
        assert_eq!(s.term(7).expect("term"), 2);
        assert!(s.term(6).is_err());
        assert!(s
            .entries(6, 9, None, GetEntriesContext::empty(false))
            .is_err());
        let snap = s.snapshot(0, 4).expect("snapshot");
        assert_eq!(snap.get_metadata().index, 7);
        assert_eq!(snap.get_metadata().get_conf_state().learners, vec![4]);
        assert_eq!(&snap.data[..], b"app");
        drop(s);

        let mut s = open(dir.path());
        assert_eq!(s.first_index(), 8);
        assert_eq!(s.last_index(), 10);
        s.set_initial_applied(7);
        let state = s.initial_state().expect("state");
        assert_eq!(state.conf_state.learners, vec![4]);

        // A follower installs a newer snapshot from its leader.
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 20;
        snap.mut_metadata().term = 4;
        let cs = ConfState {
            voters: vec![1, 2],
            ..ConfState::default()
        };
        snap.mut_metadata().set_conf_state(cs);
        s.apply_snapshot(&snap).expect("apply snapshot");
        assert_eq!(s.first_index(), 21);
        assert_eq!(s.last_index(), 20);
        assert_eq!(s.hard_state().commit, 20);
        assert_eq!(s.hard_state().term, 4);
        assert_eq!(s.conf_state_at(u64::MAX).expect("conf").voters, vec![1, 2]);
        assert_eq!(s.conf_state_at(7).expect("conf"), ConfState::default());
        s.append(&[entry(21, 4, b"z")], None)
            .expect("append after snapshot");
        assert_eq!(s.last_index(), 21);
    }
}
