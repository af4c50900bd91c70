//! [`LogStorage`]: the durable raft log of one group, as an append-only
//! write-ahead log file with everything since the latest snapshot in memory.
//!
//! # Memory
//!
//! The hard state, the latest snapshot, the entries after it and the
//! configuration history are all kept in memory, decoded, so that raft-rs
//! reads (`entries`, `term`) never touch the disk or decode anything. Memory
//! stays bounded because the node loop takes a snapshot, and drops the log
//! up to it, once [`LogStorage::bytes_since_snapshot`] exceeds
//! `snapshot_interval_bytes`.
//!
//! # File format
//!
//! The directory holds one file, `raft.log`, a sequence of records:
//!
//! ```text
//! [u32 LE payload length][u32 LE CRC-32 (IEEE) of the payload][payload]
//! payload = [kind: u8][body]
//! ```
//!
//! Inside a body, `msg` is a protobuf message framed as `[u32 LE length]
//! [bytes]`. The kinds:
//!
//! - `1` Append: `[u8 flags][msg HardState if flags & 1][msg Entry]*`, new
//!   entries and (optionally) the hard state written with them. An append
//!   whose first index is at or below the last stored index first drops the
//!   stored tail from there (a new leader overwriting uncommitted entries).
//! - `2` HardState: a protobuf `HardState` filling the body, unframed (a
//!   new commit index, or a vote without entries).
//! - `3` ConfState: `[u64 LE index][protobuf ConfState]`, the configuration
//!   in force from `index` on.
//! - `4` Snapshot: `[msg Snapshot][msg HardState]([u64 LE index][msg
//!   ConfState])*`, a full reset: the snapshot, the hard state, and the
//!   whole configuration history; every entry before it is forgotten.
//!
//! Opening the storage replays the records in order to rebuild memory.
//! Compaction ([`LogStorage::compact_to`]) and installing a snapshot
//! ([`LogStorage::apply_snapshot`]) rewrite the log: a Snapshot record, then
//! the entries still kept, into `raft.log.tmp`, which is synced and renamed
//! over `raft.log` before the directory is synced.
//!
//! # Crash safety
//!
//! Records are only ever added at the end of the file, and
//! [`LogStorage::flush`] makes everything written so far durable with one
//! `fdatasync`. A crash can therefore only damage the records written after
//! the last flush, and only at the end of the file: a record cut short, or
//! one whose checksum does not match (pages that never reached the disk).
//! Opening the log cuts such a tail off and logs a warning; it holds nothing
//! that was ever promised durable, because raft-rs sends the messages that
//! depend on a write only after the flush. Entries and the hard state that
//! goes with them are one record, so a torn write can never keep one without
//! the other. A damaged record followed by intact ones is not what a torn
//! append leaves (its damage is at the end), and the intact records after it
//! may have been acknowledged: rather than drop them, opening fails with
//! [`RaftError::Corrupt`] naming the file and offset.
//!
//! A rewrite is atomic: until the rename the old file is complete and in
//! force, holding the state just before the compaction or snapshot (one the
//! node already went through), and after it the new file is complete
//! because it was synced before the rename. A leftover `raft.log.tmp` is
//! deleted on open.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use ::raft::{GetEntriesContext, RaftState, StorageError};
use protobuf::Message as _;

use super::codec::decode;
use super::{RaftError, RaftResult, BOOTSTRAP_INDEX, BOOTSTRAP_TERM};

const LOG_TARGET: &str = "orderer::raft";

/// The log file in the storage directory.
const LOG_FILE: &str = "raft.log";
/// Where a rewritten log is prepared before it replaces [`LOG_FILE`].
const TMP_FILE: &str = "raft.log.tmp";
/// Held locked (`flock`) while the storage is open.
const LOCK_FILE: &str = "raft.lock";
/// Files that sled 0.34, which held the raft log before, creates in its
/// directory.
const SLED_FILES: [&str; 2] = ["conf", "db"];
/// How long `open` waits for another instance to release the lock (one that
/// is shutting down, e.g. a channel being rejoined).
const LOCK_WAIT: Duration = Duration::from_secs(10);

const HEADER_LEN: usize = 8;
const KIND_APPEND: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
const APPEND_HAS_HARD_STATE: u8 = 1;

/// Records buffered beyond this size are handed to the OS before the next
/// flush, so that a long run of unsynced writes does not pile up in memory.
const WRITE_BUFFER_LIMIT: usize = 1 << 20;
/// Entries per Append record when the log is rewritten.
const REWRITE_RECORD_BYTES: usize = 4 << 20;

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

// ----------------------------------------------------------------- encoding

/// Starts a record of `kind` at the end of `buf`; returns where it starts.
fn begin_record(buf: &mut Vec<u8>, kind: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    buf.push(kind);
    start
}

/// Fills in the header of the record that starts at `start`.
fn finish_record(buf: &mut [u8], start: usize) -> RaftResult<()> {
    let payload = &buf[start + HEADER_LEN..];
    let len = u32::try_from(payload.len()).map_err(|_| RaftError::Corrupt {
        reason: format!("raft log record of {} bytes is too large", payload.len()),
    })?;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends `m` as `[u32 LE length][protobuf]`; returns the protobuf's length.
fn put_msg<M: protobuf::Message>(buf: &mut Vec<u8>, m: &M) -> RaftResult<u64> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    m.write_to_vec(buf)?;
    let len = buf.len() - at - 4;
    let len32 = u32::try_from(len).map_err(|_| RaftError::Corrupt {
        reason: format!("raft message of {len} bytes is too large to store"),
    })?;
    buf[at..at + 4].copy_from_slice(&len32.to_le_bytes());
    Ok(len as u64)
}

/// Appends an Append record; returns the encoded bytes of the entries.
fn put_append(buf: &mut Vec<u8>, entries: &[Entry], hs: Option<&HardState>) -> RaftResult<u64> {
    let start = begin_record(buf, KIND_APPEND);
    let encoded = (|| {
        buf.push(if hs.is_some() {
            APPEND_HAS_HARD_STATE
        } else {
            0
        });
        if let Some(hs) = hs {
            put_msg(buf, hs)?;
        }
        let mut bytes = 0;
        for e in entries {
            bytes += put_msg(buf, e)?;
        }
        Ok(bytes)
    })();
    end_record(buf, start, encoded)
}

/// Appends a Snapshot record (a full reset).
fn put_snapshot<'a>(
    buf: &mut Vec<u8>,
    snap: &Snapshot,
    hs: &HardState,
    confs: impl Iterator<Item = (&'a u64, &'a ConfState)>,
) -> RaftResult<()> {
    let start = begin_record(buf, KIND_SNAPSHOT);
    let encoded = (|| {
        put_msg(buf, snap)?;
        put_msg(buf, hs)?;
        for (index, cs) in confs {
            buf.extend_from_slice(&index.to_le_bytes());
            put_msg(buf, cs)?;
        }
        Ok(())
    })();
    end_record(buf, start, encoded)
}

/// Finishes the record at `start` if its body was encoded, or removes it.
fn end_record<T>(buf: &mut Vec<u8>, start: usize, encoded: RaftResult<T>) -> RaftResult<T> {
    let finished = encoded.and_then(|v| finish_record(buf, start).map(|()| v));
    if finished.is_err() {
        buf.truncate(start);
    }
    finished
}

/// Reads a record body.
struct Body<'a> {
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "record body ends {} bytes early",
                n - self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A `[u32 LE length][protobuf]` message; also returns its length.
    fn msg<M: protobuf::Message>(&mut self) -> Result<(M, u64), String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        let len = u32::from_le_bytes(b);
        let bytes = self.take(len as usize)?;
        let m = decode(bytes).map_err(|e| e.to_string())?;
        Ok((m, u64::from(len)))
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// One decoded record.
enum Record {
    Append {
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        bytes: u64,
    },
    HardState(HardState),
    ConfState(u64, ConfState),
    Snapshot {
        snapshot: Snapshot,
        hard_state: HardState,
        confs: BTreeMap<u64, ConfState>,
    },
}

fn decode_record(payload: &[u8]) -> Result<Record, String> {
    let (&kind, body) = payload
        .split_first()
        .ok_or_else(|| "empty record".to_owned())?;
    let mut b = Body { rest: body };
    let record = match kind {
        KIND_APPEND => {
            let flags = b.u8()?;
            let hard_state = if flags & APPEND_HAS_HARD_STATE != 0 {
                Some(b.msg()?.0)
            } else {
                None
            };
            let (mut entries, mut bytes) = (Vec::new(), 0);
            while !b.is_empty() {
                let (e, len) = b.msg()?;
                entries.push(e);
                bytes += len;
            }
            Record::Append {
                hard_state,
                entries,
                bytes,
            }
        }
        KIND_HARD_STATE => Record::HardState(decode(body).map_err(|e| e.to_string())?),
        KIND_CONF_STATE => {
            let index = b.u64()?;
            Record::ConfState(index, decode(b.rest).map_err(|e| e.to_string())?)
        }
        KIND_SNAPSHOT => {
            let snapshot: Snapshot = b.msg()?.0;
            let hard_state: HardState = b.msg()?.0;
            let mut confs = BTreeMap::new();
            while !b.is_empty() {
                let index = b.u64()?;
                confs.insert(index, b.msg()?.0);
            }
            Record::Snapshot {
                snapshot,
                hard_state,
                confs,
            }
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    Ok(record)
}

/// The record at `pos` in `data` if it is complete and its checksum holds:
/// its payload and the offset after it.
fn record_at(data: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = data.get(pos..pos.checked_add(HEADER_LEN)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    // Every payload has its kind byte; an empty one would pass the checksum
    // (the CRC-32 of nothing is 0) in a zero-filled tail.
    if len == 0 {
        return None;
    }
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = pos + HEADER_LEN;
    let payload = data.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some((payload, start + len))
}

/// Where the first intact record after `pos` starts, if there is one.
fn intact_record_after(data: &[u8], pos: usize) -> Option<usize> {
    ((pos + 1)..data.len().saturating_sub(HEADER_LEN)).find(|&p| {
        let kind = data.get(p + HEADER_LEN).copied().unwrap_or(0);
        (KIND_APPEND..=KIND_SNAPSHOT).contains(&kind) && record_at(data, p).is_some()
    })
}

// ------------------------------------------------------------------- memory

/// Everything since the latest snapshot, as replayed from the log or kept
/// up to date by the writes.
#[derive(Default)]
struct Log {
    hard_state: HardState,
    /// The latest snapshot; index 0 when there is none.
    snapshot: Snapshot,
    /// The entries from `first_index()` on.
    entries: VecDeque<Entry>,
    /// Index → configuration in force from that index on, for every applied
    /// membership change since the snapshot, and the one in force at it.
    confs: BTreeMap<u64, ConfState>,
    /// Encoded bytes of entries written since the latest snapshot.
    bytes_since_snapshot: u64,
}

impl Log {
    fn first_index(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot.get_metadata().index + self.entries.len() as u64
    }

    /// Checks that `entries` are contiguous and can be appended (possibly
    /// replacing a tail of the stored ones).
    fn check_append(&self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let (first_index, last_index) = (self.first_index(), self.last_index());
        if first.index < first_index || first.index > last_index + 1 {
            return Err(format!(
                "append at {} outside stored range {first_index}..={last_index}",
                first.index
            ));
        }
        for (offset, e) in entries.iter().enumerate() {
            if e.index != first.index + offset as u64 {
                return Err(format!("non-contiguous entries to append at {}", e.index));
            }
        }
        Ok(())
    }

    /// Appends checked `entries`, dropping the stored ones they replace.
    fn append(&mut self, entries: impl IntoIterator<Item = Entry>, bytes: u64) {
        let mut entries = entries.into_iter().peekable();
        if let Some(first) = entries.peek() {
            let keep = usize::try_from(first.index - self.first_index()).unwrap_or(usize::MAX);
            self.entries.truncate(keep);
            self.entries.extend(entries);
            self.bytes_since_snapshot += bytes;
        }
    }

    /// Applies one replayed record.
    fn replay(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Append {
                hard_state,
                entries,
                bytes,
            } => {
                self.check_append(&entries)?;
                self.append(entries, bytes);
                if let Some(hs) = hard_state {
                    self.hard_state = hs;
                }
            }
            Record::HardState(hs) => self.hard_state = hs,
            Record::ConfState(index, cs) => {
                self.confs.insert(index, cs);
            }
            Record::Snapshot {
                snapshot,
                hard_state,
                confs,
            } => {
                *self = Log {
                    hard_state,
                    snapshot,
                    entries: VecDeque::new(),
                    confs,
                    bytes_since_snapshot: 0,
                };
            }
        }
        Ok(())
    }

    /// Checks what replay cannot check record by record.
    fn check(&self) -> Result<(), String> {
        let mut prev_term = self.snapshot.get_metadata().term;
        for (expected, e) in (self.first_index()..).zip(&self.entries) {
            if e.index != expected {
                return Err(format!(
                    "raft log has index {} where {expected} was expected",
                    e.index
                ));
            }
            if e.term < prev_term {
                return Err(format!(
                    "entry {} has term {} after term {prev_term}",
                    e.index, e.term
                ));
            }
            prev_term = e.term;
        }
        if self.hard_state.commit > self.last_index() {
            return Err(format!(
                "commit index {} is beyond the last index {}",
                self.hard_state.commit,
                self.last_index()
            ));
        }
        Ok(())
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
            .and_then(|offset| self.entries.get(offset))
            .map(|e| e.term)
            .ok_or(::raft::Error::Store(StorageError::Unavailable).into())
    }

    fn conf_entry_at(&self, index: u64) -> (u64, ConfState) {
        match self.confs.range(..=index).next_back() {
            Some((&at, cs)) => (at, cs.clone()),
            None => (0, ConfState::default()),
        }
    }
}

// ------------------------------------------------------------------ storage

/// A `raft::Storage` on a write-ahead log file: the log, hard state,
/// snapshot and configuration history of one Raft group.
///
/// Reads (the `raft::Storage` methods) come from raft-rs inside the loop and
/// are served from memory; writes come from the loop between readies, are
/// appended to the log file, and become durable on [`flush`](Self::flush).
/// The file format, and why it is crash safe, are described at the top of
/// `crates/orderer/src/raft/storage.rs`.
pub struct LogStorage {
    dir: PathBuf,
    /// `dir/raft.log`.
    path: PathBuf,
    /// The log file, opened for appending.
    file: File,
    /// Locked for as long as this instance lives.
    _lock: File,
    /// Records not yet handed to the OS.
    buf: Vec<u8>,
    /// True when records were written since the last `fdatasync`.
    unsynced: bool,
    /// Set when a write or sync failed: the file's tail is then unknown, so
    /// nothing more may be written (the node stops; reopening recovers).
    failed: bool,
    log: Log,
    /// The applied index raft-rs will be started with, so that
    /// `initial_state` reports the configuration in force at that index.
    initial_applied: Option<u64>,
    /// Set when raft-rs asked for a snapshot this storage could not serve.
    snapshot_requested: AtomicBool,
}

impl std::fmt::Debug for LogStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStorage")
            .field("path", &self.path)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RaftError + '_ {
    move |source| RaftError::LogIo {
        path: path.to_owned(),
        source,
    }
}

/// Makes the directory entries in `dir` durable.
fn sync_dir(dir: &Path) -> RaftResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Takes the storage directory's lock, waiting up to `wait` for an instance
/// that is closing.
fn lock_dir(dir: &Path, wait: Duration) -> RaftResult<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(RaftError::LogIo {
                    path,
                    source: io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "the raft log is in use by another instance",
                    ),
                })
            }
            Err(fs::TryLockError::Error(source)) => return Err(RaftError::LogIo { path, source }),
        }
    }
}

impl LogStorage {
    /// Opens (or creates) the storage in directory `dir`, replays the log
    /// and checks that it is consistent.
    ///
    /// A record cut short or failing its checksum at the end of the log is
    /// what a crash during a write leaves behind: it is cut off, with a
    /// warning. Damage anywhere else fails with [`RaftError::Corrupt`]; a
    /// directory holding the sled database of earlier versions fails with
    /// [`RaftError::OldLogFormat`].
    pub fn open(dir: &Path) -> RaftResult<Self> {
        Self::open_waiting(dir, LOCK_WAIT)
    }

    fn open_waiting(dir: &Path, lock_wait: Duration) -> RaftResult<Self> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let path = dir.join(LOG_FILE);
        let exists = path.try_exists().map_err(io_err(&path))?;
        if !exists && SLED_FILES.iter().any(|f| dir.join(f).exists()) {
            return Err(RaftError::OldLogFormat {
                dir: dir.to_owned(),
            });
        }
        let lock = lock_dir(dir, lock_wait)?;
        let tmp = dir.join(TMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => tracing::info!(
                target: LOG_TARGET,
                path = %tmp.display(),
                "removed an unfinished raft log rewrite"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp)(e)),
        }

        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if !exists {
            sync_dir(dir)?;
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_err(&path))?;
        let log = replay(&path, &file, &data)?;
        Ok(Self {
            dir: dir.to_owned(),
            path,
            file,
            _lock: lock,
            buf: Vec::new(),
            unsynced: false,
            failed: false,
            log,
            initial_applied: None,
            snapshot_requested: AtomicBool::new(false),
        })
    }

    /// True if nothing was ever stored (no hard state, snapshot or entry).
    pub fn is_empty(&self) -> bool {
        self.log.hard_state == HardState::default()
            && self.log.snapshot.get_metadata().index == 0
            && self.log.entries.is_empty()
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
        let log = Log {
            hard_state: HardState {
                term: BOOTSTRAP_TERM,
                commit: BOOTSTRAP_INDEX,
                ..HardState::default()
            },
            snapshot: snap,
            entries: VecDeque::new(),
            confs: BTreeMap::from([(BOOTSTRAP_INDEX, cs)]),
            bytes_since_snapshot: 0,
        };
        self.rewrite(&log, log.entries.iter())?;
        self.log = log;
        Ok(())
    }

    /// Makes every write so far durable (`fdatasync`; nothing to do if
    /// nothing was written since the last flush).
    pub fn flush(&mut self) -> RaftResult<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.write_out()?;
        let synced = self.file.sync_data();
        self.check_io(synced)?;
        self.unsynced = false;
        Ok(())
    }

    /// Fails once a write or sync has failed.
    fn check_writable(&self) -> RaftResult<()> {
        if self.failed {
            return Err(RaftError::LogIo {
                path: self.path.clone(),
                source: io::Error::other("an earlier write to the raft log failed"),
            });
        }
        Ok(())
    }

    /// Hands the buffered records to the OS.
    fn write_out(&mut self) -> RaftResult<()> {
        self.check_writable()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buf);
        self.check_io(written)?;
        self.buf.clear();
        Ok(())
    }

    fn check_io(&mut self, result: io::Result<()>) -> RaftResult<()> {
        result.map_err(|source| {
            self.failed = true;
            RaftError::LogIo {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Notes that a record was added to the buffer.
    fn buffered(&mut self) -> RaftResult<()> {
        self.unsynced = true;
        if self.buf.len() >= WRITE_BUFFER_LIMIT {
            self.write_out()?;
        }
        Ok(())
    }

    /// Appends `entries` (replacing any stored entries from the first one's
    /// index on, as raft-rs asks when a new leader overwrites an uncommitted
    /// tail) and records `hard_state`, in one record. Does not flush.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> RaftResult<()> {
        self.log
            .check_append(entries)
            .map_err(|reason| RaftError::Corrupt { reason })?;
        match (entries.is_empty(), hard_state) {
            (true, None) => return Ok(()),
            (true, Some(hs)) => {
                let start = begin_record(&mut self.buf, KIND_HARD_STATE);
                let encoded = hs.write_to_vec(&mut self.buf).map_err(RaftError::from);
                end_record(&mut self.buf, start, encoded)?;
            }
            (false, hs) => {
                let bytes = put_append(&mut self.buf, entries, hs)?;
                self.log.append(entries.iter().cloned(), bytes);
            }
        }
        if let Some(hs) = hard_state {
            self.log.hard_state = hs.clone();
        }
        self.buffered()
    }

    /// Records a new commit index (with the rest of the hard state). Does
    /// not flush: a lost commit index is recomputed on restart.
    pub fn set_commit(&mut self, commit: u64) -> RaftResult<()> {
        if commit <= self.log.hard_state.commit {
            return Ok(());
        }
        let mut hs = self.log.hard_state.clone();
        hs.commit = commit;
        self.append(&[], Some(&hs))
    }

    /// Replaces the whole log with a snapshot received from the leader: the
    /// entries are dropped, the hard state is committed up to the snapshot
    /// and the configuration history restarts from its `ConfState`. The log
    /// file is rewritten (and synced).
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> RaftResult<()> {
        let meta = snap.get_metadata();
        if meta.index < self.first_index() {
            return Err(::raft::Error::Store(StorageError::SnapshotOutOfDate).into());
        }
        let mut hard_state = self.log.hard_state.clone();
        hard_state.term = hard_state.term.max(meta.term);
        hard_state.commit = meta.index;
        let log = Log {
            hard_state,
            snapshot: snap.clone(),
            entries: VecDeque::new(),
            confs: BTreeMap::from([(meta.index, meta.get_conf_state().clone())]),
            bytes_since_snapshot: 0,
        };
        self.rewrite(&log, log.entries.iter())?;
        self.log = log;
        Ok(())
    }

    /// Takes a snapshot at `index` (which must be applied, and within the
    /// log) with the application payload `data`, and drops the log up to it.
    /// The snapshot keeps the term of `index` and the configuration in force
    /// there. The log file is rewritten (and synced).
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
        let term = self.log.term_of(index)?;
        let (conf_index, cs) = self.log.conf_entry_at(index);

        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(cs);

        let dropped = usize::try_from(index + 1 - first).unwrap_or(usize::MAX);
        let log = Log {
            hard_state: self.log.hard_state.clone(),
            snapshot: snap,
            // Filled in below, once the rewrite succeeded.
            entries: VecDeque::new(),
            confs: self
                .log
                .confs
                .range(conf_index..)
                .map(|(&i, cs)| (i, cs.clone()))
                .collect(),
            bytes_since_snapshot: 0,
        };
        self.check_writable()?;
        let file = write_log_file(
            &self.dir,
            &self.path,
            &log,
            self.log.entries.iter().skip(dropped),
        )?;
        self.replaced(file)?;
        let kept = self
            .log
            .entries
            .split_off(dropped.min(self.log.entries.len()));
        self.log = Log {
            entries: kept,
            ..log
        };
        Ok(())
    }

    /// Replaces the log file with one holding `log`'s snapshot, hard state
    /// and configuration history followed by `entries`, durably.
    fn rewrite<'a>(
        &mut self,
        log: &Log,
        entries: impl Iterator<Item = &'a Entry>,
    ) -> RaftResult<()> {
        self.check_writable()?;
        let file = write_log_file(&self.dir, &self.path, log, entries)?;
        self.replaced(file)
    }

    /// Switches to the rewritten log file `file`, now at `self.path`.
    fn replaced(&mut self, file: File) -> RaftResult<()> {
        // The old file is gone: its buffered records are superseded, and from
        // here on only the new one may be written.
        self.file = file;
        self.buf.clear();
        self.unsynced = false;
        sync_dir(&self.dir).inspect_err(|_| self.failed = true)
    }

    /// Records that configuration `cs` is in force from `index` on. Flushes:
    /// the application may persist `index` as applied right after.
    pub fn record_conf_state(&mut self, index: u64, cs: &ConfState) -> RaftResult<()> {
        let start = begin_record(&mut self.buf, KIND_CONF_STATE);
        self.buf.extend_from_slice(&index.to_le_bytes());
        let encoded = cs.write_to_vec(&mut self.buf).map_err(RaftError::from);
        end_record(&mut self.buf, start, encoded)?;
        self.log.confs.insert(index, cs.clone());
        self.buffered()?;
        self.flush()
    }

    /// The configuration in force at `index` (the empty configuration if
    /// none was ever recorded).
    pub fn conf_state_at(&self, index: u64) -> RaftResult<ConfState> {
        Ok(self.log.conf_entry_at(index).1)
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.log.hard_state
    }

    /// The latest snapshot (index 0 if none).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.log.snapshot
    }

    /// Encoded bytes of entries written since the latest snapshot (after a
    /// restart: of the entries stored since it).
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.log.bytes_since_snapshot
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
        self.log.first_index()
    }

    /// The last index in the log (the snapshot's index if the log is empty).
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// Reads stored entries `[low, high)`, at most `max_size` bytes but at
    /// least one entry.
    pub fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> RaftResult<Vec<Entry>> {
        let first = self.first_index();
        if low < first {
            return Err(::raft::Error::Store(StorageError::Compacted).into());
        }
        if high > self.last_index() + 1 {
            return Err(::raft::Error::Store(StorageError::Unavailable).into());
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let (from, to) = ((low - first) as usize, (high - first) as usize);
        // raft-rs often asks for everything up to the last index with a
        // small `max_size`; do not reserve for all of it.
        let mut out: Vec<Entry> = Vec::with_capacity((to - from).min(64));
        let mut size = 0u64;
        for entry in self.log.entries.range(from..to) {
            size += u64::from(entry.compute_size());
            if !out.is_empty() && max_size.is_some_and(|max| size > max) {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }
}

/// Writes `log`'s snapshot, hard state and configuration history followed by
/// `entries` to `dir/raft.log.tmp`, syncs it and renames it to `path`.
/// Returns the new file, open for appending.
fn write_log_file<'a>(
    dir: &Path,
    path: &Path,
    log: &Log,
    entries: impl Iterator<Item = &'a Entry>,
) -> RaftResult<File> {
    let tmp = dir.join(TMP_FILE);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let mut buf = Vec::new();
    put_snapshot(&mut buf, &log.snapshot, &log.hard_state, log.confs.iter())?;
    let mut batch: Vec<Entry> = Vec::new();
    let mut batch_bytes = 0;
    for e in entries {
        batch_bytes += e.data.len() + e.context.len();
        batch.push(e.clone());
        if batch_bytes >= REWRITE_RECORD_BYTES {
            put_append(&mut buf, &batch, None)?;
            file.write_all(&buf).map_err(io_err(&tmp))?;
            buf.clear();
            batch.clear();
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        put_append(&mut buf, &batch, None)?;
    }
    file.write_all(&buf).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(file)
}

/// Rebuilds the log from the records in `data` (the contents of `file` at
/// `path`), cutting off a torn tail.
fn replay(path: &Path, file: &File, data: &[u8]) -> RaftResult<Log> {
    let corrupt = |offset: usize, what: &str| RaftError::Corrupt {
        reason: format!("{} at offset {offset}: {what}", path.display()),
    };
    let mut log = Log::default();
    let mut pos = 0;
    while pos < data.len() {
        let Some((payload, next)) = record_at(data, pos) else {
            if let Some(at) = intact_record_after(data, pos) {
                return Err(corrupt(
                    pos,
                    &format!("damaged record followed by an intact one at offset {at}"),
                ));
            }
            tracing::warn!(
                target: LOG_TARGET,
                path = %path.display(),
                offset = pos,
                dropped_bytes = data.len() - pos,
                "raft log ends in a torn write (a crash before the last flush); cutting it off"
            );
            file.set_len(pos as u64)
                .and_then(|()| file.sync_all())
                .map_err(io_err(path))?;
            break;
        };
        let record = decode_record(payload).map_err(|what| corrupt(pos, &what))?;
        log.replay(record).map_err(|what| corrupt(pos, &what))?;
        pos = next;
    }
    log.check().map_err(|what| RaftError::Corrupt {
        reason: format!("{}: {what}", path.display()),
    })?;
    Ok(log)
}

impl Drop for LogStorage {
    /// Hands unflushed records to the OS, so that a clean shutdown keeps
    /// them (as it would a commit index written without a flush).
    fn drop(&mut self) {
        if !self.failed && !self.buf.is_empty() {
            if let Err(err) = self.write_out() {
                tracing::warn!(target: LOG_TARGET, %err, "could not write the raft log's last records on close");
            }
        }
    }
}

impl ::raft::Storage for LogStorage {
    fn initial_state(&self) -> ::raft::Result<RaftState> {
        let at = self.initial_applied.unwrap_or(u64::MAX);
        let conf_state = self.conf_state_at(at).map_err(storage_err)?;
        Ok(RaftState::new(self.log.hard_state.clone(), conf_state))
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
        self.log.term_of(idx).map_err(storage_err)
    }

    fn first_index(&self) -> ::raft::Result<u64> {
        Ok(LogStorage::first_index(self))
    }

    fn last_index(&self) -> ::raft::Result<u64> {
        Ok(LogStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> ::raft::Result<Snapshot> {
        let meta = self.log.snapshot.get_metadata();
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
        Ok(self.log.snapshot.clone())
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

    fn open(dir: &Path) -> LogStorage {
        LogStorage::open(dir).expect("open storage")
    }

    fn indexes(s: &LogStorage) -> Vec<u64> {
        s.read_entries(s.first_index(), s.last_index() + 1, None)
            .expect("entries")
            .iter()
            .map(|e| e.index)
            .collect()
    }

    fn log_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(LOG_FILE)).expect("log file").len()
    }

    /// The offsets at which the records of the log file start.
    fn record_offsets(dir: &Path) -> Vec<usize> {
        let data = fs::read(dir.join(LOG_FILE)).expect("read log");
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some((_, next)) = record_at(&data, pos) {
            out.push(pos);
            pos = next;
        }
        assert_eq!(pos, data.len(), "the log ends in a torn record");
        out
    }

    #[test]
    fn record_checksum_is_crc32() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32fast::hash(b""), 0);
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
        assert_eq!(&got[3].data[..], b"y");
        let one = s
            .entries(2, 6, Some(0), GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(one.len(), 1, "max_size still yields one entry");
        assert!(s.term(7).is_err());
        assert!(matches!(
            s.entries(2, 7, None, GetEntriesContext::empty(false)),
            Err(::raft::Error::Store(StorageError::Unavailable))
        ));
        assert!(matches!(
            s.entries(1, 3, None, GetEntriesContext::empty(false)),
            Err(::raft::Error::Store(StorageError::Compacted))
        ));
        assert!(s.read_entries(4, 4, None).expect("empty range").is_empty());
    }

    #[test]
    fn conflicting_append_truncates_tail_then_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        s.bootstrap(&[1]).expect("bootstrap");
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..HardState::default()
        };
        let ents: Vec<_> = (2..=9).map(|i| entry(i, 2, b"old")).collect();
        s.append(&ents, Some(&hs)).expect("append");
        s.flush().expect("flush");
        let bytes_before = s.bytes_since_snapshot();
        // A leader of term 3 replaces everything from 4 on with a shorter
        // tail, then the log grows again.
        let hs3 = HardState {
            term: 3,
            vote: 2,
            commit: 4,
            ..HardState::default()
        };
        s.append(&[entry(4, 3, b"new4"), entry(5, 3, b"new5")], Some(&hs3))
            .expect("overwrite");
        assert_eq!(s.last_index(), 5);
        assert!(s.bytes_since_snapshot() > bytes_before);
        s.append(&[entry(6, 3, b"new6")], None).expect("append");
        s.set_commit(5).expect("commit");
        s.set_commit(2).expect("an older commit is ignored");
        s.flush().expect("flush");
        // An append that would leave a gap, or reach into the snapshot, is
        // refused and changes nothing.
        assert!(s.append(&[entry(8, 3, b"gap")], None).is_err());
        assert!(s.append(&[entry(1, 3, b"old")], None).is_err());
        assert!(s
            .append(&[entry(7, 3, b"a"), entry(9, 3, b"b")], None)
            .is_err());
        assert_eq!(s.last_index(), 6);
        drop(s);

        let s = open(dir.path());
        assert_eq!(indexes(&s), [2, 3, 4, 5, 6]);
        let terms: Vec<u64> = (2..=6).map(|i| s.term(i).expect("term")).collect();
        assert_eq!(terms, [2, 2, 3, 3, 3]);
        let got = s.read_entries(4, 7, None).expect("entries");
        assert_eq!(&got[0].data[..], b"new4");
        assert_eq!(&got[2].data[..], b"new6");
        assert_eq!(s.hard_state().term, 3);
        assert_eq!(s.hard_state().vote, 2);
        assert_eq!(s.hard_state().commit, 5);
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
        assert!(s.bytes_since_snapshot() > 0);

        // The bootstrap snapshot is never served; a fresh one is asked for.
        assert!(s.snapshot(0, 4).is_err());
        assert!(s.take_snapshot_request());
        assert!(!s.take_snapshot_request());

        s.compact_to(7, b"app".to_vec()).expect("compact");
        assert!(s.compact_to(6, Vec::new()).is_err(), "behind the snapshot");
        assert!(s.compact_to(11, Vec::new()).is_err(), "beyond the log");
        assert_eq!(s.first_index(), 8);
        assert_eq!(s.bytes_since_snapshot(), 0);
        assert_eq!(s.term(7).expect("term"), 2);
        assert!(s.term(6).is_err());
        assert!(s
            .entries(6, 9, None, GetEntriesContext::empty(false))
            .is_err());
        let snap = s.snapshot(0, 4).expect("snapshot");
        assert_eq!(snap.get_metadata().index, 7);
        assert_eq!(snap.get_metadata().get_conf_state().learners, vec![4]);
        assert_eq!(&snap.data[..], b"app");
        // The configuration recorded at 5 is kept: it is in force at 7.
        assert_eq!(s.conf_state_at(6).expect("conf").learners, vec![4]);
        assert_eq!(s.conf_state_at(4).expect("conf"), ConfState::default());
        // Writes after the rewrite go to the new file.
        s.append(&[entry(11, 2, b"after")], None).expect("append");
        s.flush().expect("flush");
        drop(s);
        assert!(!dir.path().join(TMP_FILE).exists());

        let mut s = open(dir.path());
        assert_eq!(s.first_index(), 8);
        assert_eq!(s.last_index(), 11);
        assert_eq!(indexes(&s), [8, 9, 10, 11]);
        assert_eq!(s.latest_snapshot().get_metadata().index, 7);
        assert_eq!(&s.latest_snapshot().data[..], b"app");
        assert_eq!(s.conf_state_at(6).expect("conf").learners, vec![4]);
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
        let mut stale = snap.clone();
        stale.mut_metadata().index = 7;
        assert!(matches!(
            s.apply_snapshot(&stale),
            Err(RaftError::Raft(::raft::Error::Store(
                StorageError::SnapshotOutOfDate
            )))
        ));
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
        s.flush().expect("flush");
        drop(s);

        let s = open(dir.path());
        assert_eq!(s.first_index(), 21);
        assert_eq!(indexes(&s), [21]);
        assert_eq!(s.hard_state().commit, 20);
        assert_eq!(s.hard_state().term, 4);
        assert_eq!(s.latest_snapshot().get_metadata().index, 20);
        assert_eq!(s.conf_state_at(u64::MAX).expect("conf").voters, vec![1, 2]);
        assert_eq!(s.conf_state_at(19).expect("conf"), ConfState::default());
    }

    #[test]
    fn unflushed_writes_survive_a_clean_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        s.bootstrap(&[1]).expect("bootstrap");
        s.append(&[entry(2, 1, b"a")], None).expect("append");
        s.flush().expect("flush");
        let len = log_len(dir.path());
        s.set_commit(2).expect("commit");
        // Buffered, not yet written, and nothing to sync twice.
        assert_eq!(log_len(dir.path()), len);
        drop(s);
        assert!(log_len(dir.path()) > len);
        let s = open(dir.path());
        assert_eq!(s.hard_state().commit, 2);
    }

    /// A log of entries 2..=6, each appended with its hard state (commit one
    /// behind) and flushed on its own: one record each after the snapshot.
    fn torn_fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        s.bootstrap(&[1]).expect("bootstrap");
        for i in 2..=6 {
            let hs = HardState {
                term: 2,
                commit: i - 1,
                ..HardState::default()
            };
            s.append(&[entry(i, 2, &[i as u8; 100])], Some(&hs))
                .expect("append");
            s.flush().expect("flush");
        }
        dir
    }

    fn assert_recovers_prefix(dir: &Path, last: u64) {
        let mut s = open(dir);
        assert_eq!(s.last_index(), last);
        assert_eq!(s.hard_state().commit, last - 1);
        let data = s.read_entries(2, last + 1, None).expect("entries");
        assert!(data.iter().all(|e| e.data[..] == [e.index as u8; 100][..]));
        // The log goes on from there, and reopens cleanly.
        s.append(&[entry(last + 1, 3, b"next")], None)
            .expect("append after recovery");
        s.flush().expect("flush");
        drop(s);
        let s = open(dir);
        assert_eq!(s.last_index(), last + 1);
        assert_eq!(s.term(last + 1).expect("term"), 3);
        record_offsets(dir);
    }

    #[test]
    fn torn_tail_is_cut_off() {
        // The last record cut short, at several points (inside the header
        // and inside the payload).
        for cut in [1u64, 5, 9, 60] {
            let dir = torn_fixture();
            let offsets = record_offsets(dir.path());
            let last = *offsets.last().expect("records") as u64;
            let file = OpenOptions::new()
                .write(true)
                .open(dir.path().join(LOG_FILE))
                .expect("open");
            file.set_len(last + cut).expect("truncate");
            drop(file);
            assert_recovers_prefix(dir.path(), 5);
            assert_eq!(
                record_offsets(dir.path()).len(),
                offsets.len(),
                "cut {cut}: the torn record was replaced by the new one"
            );
        }
    }

    #[test]
    fn garbage_tail_is_cut_off() {
        for garbage in [
            vec![0u8; 4096],
            (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            vec![0xff; 3],
        ] {
            let dir = torn_fixture();
            let mut file = OpenOptions::new()
                .append(true)
                .open(dir.path().join(LOG_FILE))
                .expect("open");
            file.write_all(&garbage).expect("garbage");
            drop(file);
            assert_recovers_prefix(dir.path(), 6);
        }
    }

    #[test]
    fn damaged_middle_record_is_corruption() {
        let dir = torn_fixture();
        let offsets = record_offsets(dir.path());
        let path = dir.path().join(LOG_FILE);
        let mut data = fs::read(&path).expect("read");
        let victim = offsets[2];
        data[victim + HEADER_LEN + 20] ^= 0x40;
        fs::write(&path, &data).expect("write");
        let err = LogStorage::open(dir.path()).expect_err("corrupt log");
        let msg = err.to_string();
        assert!(matches!(err, RaftError::Corrupt { .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("offset {victim}")), "{msg}");
        // Nothing was cut off.
        assert_eq!(fs::read(&path).expect("read"), data);

        // A damaged length field is caught the same way.
        data[victim + HEADER_LEN + 20] ^= 0x40;
        data[victim + 1] ^= 0x10;
        fs::write(&path, &data).expect("write");
        let err = LogStorage::open(dir.path()).expect_err("corrupt log");
        assert!(matches!(err, RaftError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn old_sled_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_dir = dir.path().join("raft");
        {
            let db = sled::open(&raft_dir).expect("sled");
            db.open_tree("entries")
                .expect("tree")
                .insert(b"k", b"v")
                .expect("insert");
            db.flush().expect("flush");
        }
        let err = LogStorage::open(&raft_dir).expect_err("old format");
        let msg = err.to_string();
        assert!(matches!(err, RaftError::OldLogFormat { .. }), "{msg}");
        assert!(msg.contains("sled"), "{msg}");
        assert!(msg.contains(&raft_dir.display().to_string()), "{msg}");
        // Nothing was touched.
        assert!(!raft_dir.join(LOG_FILE).exists());
        assert!(raft_dir.join("db").exists());
    }

    #[test]
    fn one_instance_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path());
        let err = LogStorage::open_waiting(dir.path(), Duration::ZERO).expect_err("locked");
        assert!(matches!(err, RaftError::LogIo { .. }), "{err}");
        drop(s);
        LogStorage::open_waiting(dir.path(), Duration::ZERO).expect("open after close");
    }

    #[test]
    fn leftover_rewrite_is_ignored() {
        let dir = torn_fixture();
        fs::write(dir.path().join(TMP_FILE), b"half a rewrite").expect("tmp");
        let s = open(dir.path());
        assert_eq!(s.last_index(), 6);
        assert!(!dir.path().join(TMP_FILE).exists());
    }
}
