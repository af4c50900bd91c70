//! An in-memory Bloom filter of the transaction ids a [`BlockStore`] has
//! indexed, so that the common look-up of an id that is *not* stored (a new
//! transaction's duplicate check at endorsement, at validation and at
//! append; a commit-status request that arrives before its block) answers
//! without a sled read.
//!
//! The filter never gives a false "absent": an id is added before its index
//! entry is written, and the filter is only consulted once a scan of the
//! index that was already on disk at open has gone through every stored id.
//! Until then (a background thread does the scan, so that opening a large
//! ledger is not slowed down) every look-up goes to the index, as it would
//! without a filter. A "maybe" costs one index read, as before.
//!
//! The filter grows by segments: each segment is a fixed Bloom filter sized
//! for twice the ids of the one before, so memory stays near
//! [`BITS_PER_ID`] bits per stored id and a segment never fills past its
//! design rate.
//!
//! [`BlockStore`]: crate::BlockStore

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::RwLock;
use tracing::{debug, warn};

/// Ids the first segment is sized for; each next segment takes twice as many.
const FIRST_CAPACITY: usize = 1 << 15;

/// Bits per id of a segment's capacity. With [`PROBES`] probes a full
/// segment answers "maybe" for about 0.3% of absent ids.
const BITS_PER_ID: usize = 12;

/// Bit positions set and tested per id.
const PROBES: u64 = 8;

/// Ids the scan hands over per write lock.
const SCAN_BATCH: usize = 1024;

/// The filter; see the module docs.
#[derive(Debug)]
pub(crate) struct TxIdFilter {
    segments: RwLock<Vec<Segment>>,
    /// Every id stored before the store opened has been added.
    ready: AtomicBool,
    /// The store is closing: the scan stops.
    stop: AtomicBool,
    hasher: std::hash::RandomState,
}

#[derive(Debug)]
struct Segment {
    words: Vec<u64>,
    bits: u64,
    capacity: usize,
    len: usize,
}

impl Segment {
    fn with_capacity(capacity: usize) -> Segment {
        let bits = (capacity * BITS_PER_ID) as u64;
        Segment {
            words: vec![0; bits.div_ceil(64) as usize],
            bits,
            capacity,
            len: 0,
        }
    }

    fn insert(&mut self, h: u64) {
        for bit in positions(h, self.bits) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.len += 1;
    }

    fn may_contain(&self, h: u64) -> bool {
        positions(h, self.bits).all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// The bit positions of hash `h` in a segment of `bits` bits (double
/// hashing, reduced to the size by a multiply-shift).
fn positions(h: u64, bits: u64) -> impl Iterator<Item = u64> {
    let step = h.rotate_left(32) | 1;
    (0..PROBES).map(move |i| {
        let g = h.wrapping_add(i.wrapping_mul(step));
        ((u128::from(g) * u128::from(bits)) >> 64) as u64
    })
}

impl TxIdFilter {
    /// An empty filter, not ready until [`mark_ready`](Self::mark_ready).
    pub(crate) fn new() -> TxIdFilter {
        TxIdFilter {
            segments: RwLock::new(vec![Segment::with_capacity(FIRST_CAPACITY)]),
            ready: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Adds ids (as their bytes) under one lock, and tells for each whether
    /// it was certainly absent before (always false while not ready): an
    /// appender learns which of its ids are new at the cost of adding them.
    /// The ids must be distinct.
    pub(crate) fn insert_all<'a>(&self, ids: impl IntoIterator<Item = &'a [u8]>) -> Vec<bool> {
        let hashes: Vec<u64> = ids.into_iter().map(|id| self.hash(id)).collect();
        if hashes.is_empty() {
            return Vec::new();
        }
        let mut segments = self.segments.write();
        let ready = self.ready.load(Ordering::Acquire);
        let mut new = Vec::with_capacity(hashes.len());
        for h in hashes {
            new.push(ready && !segments.iter().any(|s| s.may_contain(h)));
            if segments
                .last()
                .is_some_and(|last| last.len >= last.capacity)
            {
                let capacity = segments
                    .last()
                    .map_or(FIRST_CAPACITY, |last| last.capacity.saturating_mul(2));
                segments.push(Segment::with_capacity(capacity));
            }
            if let Some(last) = segments.last_mut() {
                last.insert(h);
            }
        }
        new
    }

    /// False only if `id` is certainly not stored; true while the filter
    /// is not ready.
    pub(crate) fn may_contain(&self, id: &[u8]) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            return true;
        }
        let h = self.hash(id);
        self.segments.read().iter().any(|s| s.may_contain(h))
    }

    /// From now on, "absent" answers are trusted.
    pub(crate) fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether [`mark_ready`](Self::mark_ready) has been called.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Asks a running scan to stop.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Starts the scan of the ids already in `index` (keys `prefix` + id) on a
/// thread of its own; the filter is marked ready when it has seen them all.
/// If the scan fails the filter simply stays "not ready" (every look-up
/// reads the index).
pub(crate) fn spawn_scan(
    index: sled::Db,
    prefix: &'static [u8],
    filter: Arc<TxIdFilter>,
) -> Option<JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("tx-id-filter".into())
        .spawn(move || {
            let mut batch: Vec<sled::IVec> = Vec::with_capacity(SCAN_BATCH);
            let mut count = 0usize;
            for item in index.scan_prefix(prefix) {
                if filter.stopped() {
                    return;
                }
                match item {
                    Ok((key, _)) => batch.push(key),
                    Err(e) => {
                        warn!(target: "ledger::blockstore", error = %e, "tx-id filter scan failed; look-ups keep reading the index");
                        return;
                    }
                }
                if batch.len() == SCAN_BATCH {
                    count += batch.len();
                    filter.insert_all(batch.iter().map(|k| &k[prefix.len()..]));
                    batch.clear();
                }
            }
            count += batch.len();
            filter.insert_all(batch.iter().map(|k| &k[prefix.len()..]));
            filter.mark_ready();
            debug!(target: "ledger::blockstore", ids = count, "tx-id filter ready");
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            warn!(target: "ledger::blockstore", error = %e, "cannot start the tx-id filter scan; look-ups keep reading the index");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> String {
        format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// A sled database holding tx-id keys (`t` + id) for ids `0..n`.
    fn index_with_ids(n: usize) -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        for i in 0..n {
            db.insert(format!("t{}", id(i)), &b"loc"[..]).unwrap();
        }
        (dir, db)
    }

    #[test]
    fn insert_tells_which_ids_were_new_once_ready() {
        let f = TxIdFilter::new();
        // Not ready: nothing can be called new.
        assert_eq!(f.insert_all([&b"a"[..], b"b"]), vec![false, false]);
        f.mark_ready();
        assert_eq!(f.insert_all([&b"a"[..], b"c"]), vec![false, true]);
        assert!(f.insert_all(std::iter::empty()).is_empty());
    }

    #[test]
    fn not_ready_says_maybe_to_everything() {
        let f = TxIdFilter::new();
        assert!(f.may_contain(b"never-added"));
        f.mark_ready();
        assert!(!f.may_contain(b"never-added"));
    }

    #[test]
    fn no_false_negatives_across_segments_and_few_false_positives() {
        let f = TxIdFilter::new();
        f.mark_ready();
        let n = FIRST_CAPACITY * 3 + 17; // three segments
        let ids: Vec<String> = (0..n).map(id).collect();
        for chunk in ids.chunks(500) {
            f.insert_all(chunk.iter().map(|s| s.as_bytes()));
        }
        assert_eq!(f.segments.read().len(), 3);
        assert!(ids.iter().all(|s| f.may_contain(s.as_bytes())));
        let probes = 20_000;
        let false_positives = (n..n + probes)
            .map(id)
            .filter(|s| f.may_contain(s.as_bytes()))
            .count();
        // About 0.3% a full segment; three segments stay well under 2%.
        assert!(
            false_positives < probes / 50,
            "{false_positives} false positives in {probes}"
        );
    }

    #[test]
    fn scan_adds_stored_ids_then_marks_ready() {
        let (_dir, db) = index_with_ids(3000);
        db.insert("mcheckpoint", &b"x"[..]).unwrap();
        let f = Arc::new(TxIdFilter::new());
        spawn_scan(db.clone(), b"t", f.clone())
            .unwrap()
            .join()
            .unwrap();
        assert!(f.is_ready());
        assert!((0..3000).all(|i| f.may_contain(id(i).as_bytes())));
        // Keys outside the prefix are not ids.
        let strays = (3000..6000)
            .filter(|&i| f.may_contain(id(i).as_bytes()))
            .count();
        assert!(strays < 60, "{strays}");
    }

    #[test]
    fn stopped_scan_never_becomes_ready() {
        let (_dir, db) = index_with_ids(10);
        let f = Arc::new(TxIdFilter::new());
        f.stop();
        spawn_scan(db, b"t", f.clone()).unwrap().join().unwrap();
        assert!(!f.is_ready());
        assert!(f.may_contain(b"anything"));
    }
}
