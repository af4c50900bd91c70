//! The endorser's transaction simulator.
//!
//! While a chaincode runs one transaction, its state requests (GET_STATE,
//! PUT_STATE, GET_STATE_BY_RANGE, ...) are answered by a [`TxSimulator`]
//! created for that transaction. The simulator reads the channel's committed
//! world state, buffers the writes, and records what the transaction
//! observed. [`TxSimulator::into_results`] turns the record into the
//! `TxReadWriteSet` the endorser signs, which the committer later re-checks
//! in its MVCC stage ([`crate::validation`]).
//!
//! # Semantics
//!
//! They are Fabric's read-write set rules:
//!
//! - **Committed reads only.** A transaction never sees its own writes:
//!   [`TxSimulator::get_state`] after [`TxSimulator::put_state`] of the same
//!   key returns the committed value, and range scans and rich queries list
//!   committed keys only.
//! - **Point reads** record `(key, version)`, with no version for an absent
//!   key. Reads are unique per key; the first read of a key is the one kept.
//! - **Writes** are buffered; the last write of a key wins. An empty value
//!   is recorded as a delete: Fabric's peers cannot tell an empty value from
//!   a missing one, and the committer treats both as a delete.
//! - **Metadata writes** carry the key's whole metadata map: setting one
//!   entry merges it into the key's committed entries (and the entries set
//!   earlier in the transaction). Because the merge depends on the committed
//!   entries, it records a read of the key.
//! - **Range scans** ([`TxSimulator::get_state_by_range`]) record a
//!   `RangeQueryInfo` of exactly the results handed out, in batches. A scan
//!   that ran to its end records `itr_exhausted` and the requested end key;
//!   one that stopped early records the last key handed out as its end key
//!   (the committer then re-scans up to and including it). More than
//!   [`QUERY_READS_MAX_DEGREE`] results are recorded as Fabric's merkle
//!   summary ([`crate::validation::merkle_summary`]) instead of raw reads.
//!   A scan from which nothing was ever requested records nothing.
//! - **Paginated range queries** ([`TxSimulator::get_state_by_range_page`]):
//!   a non-empty bookmark replaces the start key; the page is recorded like
//!   a scan that stopped after its last item (or ran to the end when the
//!   returned bookmark is empty).
//! - **Rich queries** ([`TxSimulator::get_query_result`]) record every key
//!   they hand out as a point read, as Fabric's simulator does: a later
//!   change of such a key invalidates the transaction, but keys that would
//!   newly match the query do not (no phantom protection). Chaincode should
//!   not base updates on rich query results.
//! - **Paginated queries and writes exclude each other** within one
//!   transaction, as in Fabric: a paginated query after a write, or a write
//!   after a paginated query, is refused.
//! - **History** ([`TxSimulator::get_history_for_key`]) is not recorded.
//! - **Private data** is not supported: every private data request fails
//!   with [`SimulationError::PrivateDataUnsupported`].
//!
//! # No snapshot
//!
//! Reads go straight to the [`StateDb`]; a block committed while the
//! transaction runs may be visible to some reads and not to earlier ones.
//! That is safe without a snapshot: every recorded read and range carries
//! the version it saw, and the committer accepts the transaction only if
//! all of them still hold against the state it validates against. A read
//! made before a block that changed its key carries an older version and
//! fails that check, so a transaction whose reads straddle a commit
//! validates only if none of the keys it saw were changed in between. When
//! the simulator itself sees two different versions of one key, the
//! transaction is certain to fail, and [`TxSimulator::into_results`]
//! reports [`SimulationError::StateChanged`] instead of producing results.
//!
//! # Threads
//!
//! One simulator serves one transaction. It is `Send`, and the chaincode
//! handler keeps it behind a mutex, since a chaincode's requests arrive on
//! blocking-pool threads one at a time.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::iter::Peekable;
use std::str::FromStr;
use std::sync::Arc;

use prost::Message as _;
use thiserror::Error;
use tracing::{debug, trace};
use twill_ledger::richquery::{self, Query, QueryError};
use twill_ledger::state::{Height, HistoryEntry, RangeIter, StateDb, StateError};
use twill_protos::kvrwset::{
    range_query_info::ReadsInfo, KvMetadataEntry, KvMetadataWrite, KvRead, KvWrite, KvrwSet,
    QueryReads, RangeQueryInfo, Version,
};
use twill_protos::rwset::{tx_read_write_set::DataModel, NsReadWriteSet, TxReadWriteSet};

use crate::validation::merkle_summary;

const LOG: &str = "peer::simulator";

/// Range query results beyond this many are recorded as a merkle summary
/// with this maximum degree rather than as raw reads (Fabric's value).
pub const QUERY_READS_MAX_DEGREE: u32 = 50;

/// Most results one range scan or paginated range query hands out, unless
/// changed with [`TxSimulator::with_total_query_limit`] (Fabric's default
/// `ledger.state.totalQueryLimit`). A scan that reaches it ends early, as
/// if the chaincode had stopped reading.
pub const DEFAULT_TOTAL_QUERY_LIMIT: usize = 100_000;

/// Result alias of the simulator.
pub type Result<T> = std::result::Result<T, SimulationError>;

/// Why a simulator request failed. The chaincode handler answers the
/// request with an ERROR carrying the message.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimulationError {
    /// A request named an empty key.
    #[error("empty key in namespace {namespace:?}")]
    EmptyKey {
        /// The namespace of the request.
        namespace: String,
    },

    /// A namespace that cannot exist in the state database.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A private data request (one naming a collection).
    #[error("private data is not supported (collection {collection:?})")]
    PrivateDataUnsupported {
        /// The collection named by the request.
        collection: String,
    },

    /// A paginated query in a transaction that has already written.
    #[error("transaction {tx_id}: paginated queries are not allowed in a transaction that writes")]
    PaginatedQueryAfterWrite {
        /// The transaction.
        tx_id: String,
    },

    /// A write in a transaction that has already run a paginated query.
    #[error("transaction {tx_id}: writes are not allowed after a paginated query")]
    WriteAfterPaginatedQuery {
        /// The transaction.
        tx_id: String,
    },

    /// A scan id that is not open: never opened, closed, or run to its end.
    #[error("no open query iterator {id}")]
    UnknownScan {
        /// The id as given.
        id: ScanId,
    },

    /// The state database failed.
    #[error("state database error in namespace {namespace:?}: {source}")]
    State {
        /// The namespace being read.
        namespace: String,
        /// The underlying error.
        #[source]
        source: StateError,
    },

    /// A rich query could not be parsed or run.
    #[error("rich query in namespace {namespace:?}: {source}")]
    Query {
        /// The namespace queried.
        namespace: String,
        /// The underlying error.
        #[source]
        source: QueryError,
    },

    /// The transaction saw two different versions of one key: a block was
    /// committed while it ran, and its read set can no longer pass the
    /// committer's MVCC check. Running it again sees the new state.
    #[error(
        "key {key:?} in namespace {namespace:?} changed while transaction {tx_id} ran; \
         its reads are inconsistent"
    )]
    StateChanged {
        /// The transaction.
        tx_id: String,
        /// The namespace of the key.
        namespace: String,
        /// The key read at two versions.
        key: String,
    },
}

impl SimulationError {
    /// A stable, machine-matchable code for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            SimulationError::EmptyKey { .. } => "SIM_EMPTY_KEY",
            SimulationError::InvalidNamespace { .. } => "SIM_INVALID_NAMESPACE",
            SimulationError::PrivateDataUnsupported { .. } => "SIM_PRIVATE_DATA_UNSUPPORTED",
            SimulationError::PaginatedQueryAfterWrite { .. } => "SIM_PAGINATED_QUERY_AFTER_WRITE",
            SimulationError::WriteAfterPaginatedQuery { .. } => "SIM_WRITE_AFTER_PAGINATED_QUERY",
            SimulationError::UnknownScan { .. } => "SIM_UNKNOWN_SCAN",
            SimulationError::State { .. } => "SIM_STATE",
            SimulationError::Query { .. } => "SIM_QUERY",
            SimulationError::StateChanged { .. } => "SIM_STATE_CHANGED",
        }
    }
}

/// The id of an open scan (range scan or rich query), unique within one
/// simulator. Its decimal form ([`Display`](fmt::Display) /
/// [`FromStr`]) is what the handler sends the chaincode as the iterator id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScanId(u64);

impl fmt::Display for ScanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for ScanId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> std::result::Result<ScanId, Self::Err> {
        s.parse().map(ScanId)
    }
}

/// One batch of a scan's results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanBatch {
    /// `(key, value)` pairs in the scan's order.
    pub items: Vec<(String, Vec<u8>)>,
    /// True if the scan has more results. When false the scan is closed and
    /// its id no longer valid.
    pub has_more: bool,
}

/// One page of a paginated range or rich query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultPage {
    /// `(key, value)` pairs of the page.
    pub items: Vec<(String, Vec<u8>)>,
    /// Pass it back to get the next page. For range queries it is the key
    /// following the page, empty once the range is exhausted; for rich
    /// queries it is the query engine's opaque bookmark.
    pub bookmark: String,
}

/// What one transaction recorded in one namespace.
#[derive(Debug, Default)]
struct NsRecord {
    /// Point reads: key → version seen (`None` = absent). First read wins.
    reads: BTreeMap<String, Option<Height>>,
    /// Range queries in the order they were opened.
    ranges: Vec<RangeRecord>,
    /// Buffered writes: key → value, `None` = delete. Last write wins.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Buffered metadata writes: key → the key's full metadata map.
    metadata_writes: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Every version seen of a key by any read, to notice a commit landing
    /// between two reads of the same key. First observation kept.
    seen: HashMap<String, Option<Height>>,
}

impl NsRecord {
    fn is_empty(&self) -> bool {
        self.reads.is_empty()
            && self.writes.is_empty()
            && self.metadata_writes.is_empty()
            && !self.ranges.iter().any(|r| r.observed)
    }

    fn has_writes(&self) -> bool {
        !self.writes.is_empty() || !self.metadata_writes.is_empty()
    }

    /// Records a point read (first read of a key wins); false if the
    /// transaction had seen another version of the key before.
    fn read(&mut self, key: &str, version: Option<Height>) -> bool {
        self.reads.entry(key.to_owned()).or_insert(version);
        self.observe(key, version)
    }

    /// Notes a version seen of a key; false if another was seen before.
    fn observe(&mut self, key: &str, version: Option<Height>) -> bool {
        match self.seen.get(key) {
            Some(first) => *first == version,
            None => {
                self.seen.insert(key.to_owned(), version);
                true
            }
        }
    }
}

/// One range query's record.
#[derive(Debug)]
struct RangeRecord {
    /// The start key the scan began at.
    start: String,
    /// The end key requested (exclusive; empty = unbounded).
    end: String,
    /// Keys and versions handed out, in key order.
    reads: Reads,
    /// True once the scan found no further key in the range.
    exhausted: bool,
    /// True once results were requested (nothing is recorded before).
    observed: bool,
}

impl RangeRecord {
    fn into_info(self) -> RangeQueryInfo {
        let end_key = if self.exhausted {
            self.end
        } else {
            // Stopped early: the committer re-checks up to the last key
            // handed out, inclusive.
            match self.reads.last() {
                Some((key, _)) => key.clone(),
                None => self.end,
            }
        };
        let reads_info = if self.reads.is_empty() {
            None
        } else {
            Some(match merkle_summary(&self.reads, QUERY_READS_MAX_DEGREE) {
                Some(summary) => ReadsInfo::ReadsMerkleHashes(summary),
                None => ReadsInfo::RawReads(QueryReads {
                    kv_reads: self
                        .reads
                        .into_iter()
                        .map(|(key, h)| kv_read(key, Some(h)))
                        .collect(),
                }),
            })
        };
        RangeQueryInfo {
            start_key: self.start,
            end_key,
            itr_exhausted: self.exhausted,
            reads_info,
        }
    }
}

/// An open scan.
struct Scan {
    ns: String,
    source: ScanSource,
}

enum ScanSource {
    /// A lazy range scan over committed state; `record` indexes the
    /// namespace's range records.
    Range {
        iter: Box<Peekable<RangeIter>>,
        record: usize,
        handed_out: usize,
    },
    /// A rich query's results with the versions the query saw.
    Records(VecDeque<(String, Vec<u8>, Height)>),
}

/// Keys with the versions seen, in key order.
type Reads = Vec<(String, Height)>;

/// Rich query results: key, value (possibly projected), version matched.
type QueryRecords = Vec<(String, Vec<u8>, Height)>;

/// Simulates one transaction against the committed state of a channel. See
/// the [module docs](self) for the semantics.
pub struct TxSimulator {
    db: Arc<StateDb>,
    channel_id: String,
    tx_id: String,
    namespaces: BTreeMap<String, NsRecord>,
    scans: HashMap<ScanId, Scan>,
    next_scan: u64,
    total_query_limit: usize,
    write_performed: bool,
    paginated_query_performed: bool,
    /// The first key seen at two versions: (namespace, key).
    changed: Option<(String, String)>,
}

impl fmt::Debug for TxSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxSimulator")
            .field("channel_id", &self.channel_id)
            .field("tx_id", &self.tx_id)
            .field("namespaces", &self.namespaces.len())
            .field("open_scans", &self.scans.len())
            .finish_non_exhaustive()
    }
}

impl TxSimulator {
    /// A simulator for transaction `tx_id` on channel `channel_id`, reading
    /// the channel's committed state `db`.
    pub fn new(
        db: Arc<StateDb>,
        channel_id: impl Into<String>,
        tx_id: impl Into<String>,
    ) -> TxSimulator {
        TxSimulator {
            db,
            channel_id: channel_id.into(),
            tx_id: tx_id.into(),
            namespaces: BTreeMap::new(),
            scans: HashMap::new(),
            next_scan: 0,
            total_query_limit: DEFAULT_TOTAL_QUERY_LIMIT,
            write_performed: false,
            paginated_query_performed: false,
            changed: None,
        }
    }

    /// Sets the most results one range scan or paginated range query hands
    /// out (at least 1; default [`DEFAULT_TOTAL_QUERY_LIMIT`]).
    pub fn with_total_query_limit(mut self, limit: usize) -> TxSimulator {
        self.total_query_limit = limit.max(1);
        self
    }

    /// The transaction id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The channel id.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    // ---- point reads -------------------------------------------------

    /// The committed value of `key` in `ns` (`None` if absent), recording
    /// a read of its committed version. The transaction's own writes are
    /// not visible.
    pub fn get_state(&mut self, ns: &str, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(ns, key)?;
        let committed = self.db.get(ns, key).map_err(state_error(ns))?;
        let (value, version) = match committed {
            Some(vv) => (Some(vv.value), Some(vv.version)),
            None => (None, None),
        };
        self.record_read(ns, key, version);
        trace!(target: LOG, tx_id = %self.tx_id, ns, key, ?version, "get_state");
        Ok(value)
    }

    /// [`get_state`](Self::get_state) for each of `keys`, in order.
    pub fn get_state_multiple(
        &mut self,
        ns: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|key| self.get_state(ns, key)).collect()
    }

    /// The committed key-level metadata of `key` (empty if the key is
    /// absent or has none), recording a read of the key like
    /// [`get_state`](Self::get_state).
    pub fn get_state_metadata(&mut self, ns: &str, key: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        check_key(ns, key)?;
        let committed = self.db.get(ns, key).map_err(state_error(ns))?;
        let (metadata, version) = match committed {
            Some(vv) => (vv.metadata, Some(vv.version)),
            None => (BTreeMap::new(), None),
        };
        self.record_read(ns, key, version);
        Ok(metadata)
    }

    // ---- writes ------------------------------------------------------

    /// Buffers a write of `value` to `key` (an empty value is a delete).
    /// Keys starting with U+0000 are composite keys and allowed.
    pub fn put_state(&mut self, ns: &str, key: &str, value: Vec<u8>) -> Result<()> {
        check_key(ns, key)?;
        self.check_write_allowed()?;
        let value = (!value.is_empty()).then_some(value);
        self.ns_mut(ns).writes.insert(key.to_owned(), value);
        self.write_performed = true;
        Ok(())
    }

    /// Buffers a delete of `key`.
    pub fn del_state(&mut self, ns: &str, key: &str) -> Result<()> {
        check_key(ns, key)?;
        self.check_write_allowed()?;
        self.ns_mut(ns).writes.insert(key.to_owned(), None);
        self.write_performed = true;
        Ok(())
    }

    /// Buffers setting metadata entry `name` of `key` to `value`. The
    /// recorded metadata write holds the key's full map: the committed
    /// entries, those set earlier in this transaction, and this one. The
    /// first metadata write of a key reads its committed metadata and
    /// records that read.
    pub fn put_state_metadata(
        &mut self,
        ns: &str,
        key: &str,
        name: &str,
        value: Vec<u8>,
    ) -> Result<()> {
        check_key(ns, key)?;
        self.check_write_allowed()?;
        let pending = self
            .namespaces
            .get(ns)
            .is_some_and(|r| r.metadata_writes.contains_key(key));
        if !pending {
            let committed = self.db.get(ns, key).map_err(state_error(ns))?;
            let (base, version) = match committed {
                Some(vv) => (vv.metadata, Some(vv.version)),
                None => (BTreeMap::new(), None),
            };
            self.record_read(ns, key, version);
            self.ns_mut(ns).metadata_writes.insert(key.to_owned(), base);
        }
        self.ns_mut(ns)
            .metadata_writes
            .entry(key.to_owned())
            .or_default()
            .insert(name.to_owned(), value);
        self.write_performed = true;
        Ok(())
    }

    // ---- range scans -------------------------------------------------

    /// Opens a scan of the committed keys of `ns` in `[start, end)` in
    /// byte order (empty `start`: from the first key, composite keys
    /// included; empty `end`: to the last). Fetch results with
    /// [`scan_next`](Self::scan_next); what is fetched is what gets
    /// recorded.
    pub fn get_state_by_range(&mut self, ns: &str, start: &str, end: &str) -> Result<ScanId> {
        check_namespace(ns)?;
        let iter = Box::new(self.db.range(ns, start, end).peekable());
        let record = {
            let ranges = &mut self.ns_mut(ns).ranges;
            ranges.push(RangeRecord {
                start: start.to_owned(),
                end: end.to_owned(),
                reads: Vec::new(),
                exhausted: false,
                observed: false,
            });
            ranges.len() - 1
        };
        let id = self.open_scan(
            ns,
            ScanSource::Range {
                iter,
                record,
                handed_out: 0,
            },
        );
        trace!(target: LOG, tx_id = %self.tx_id, ns, start, end, scan = %id, "range scan opened");
        Ok(id)
    }

    /// The next results of scan `id`: at most `max` items (at least one is
    /// asked for), and whether more remain. A scan without more results is
    /// closed. A storage error closes the scan too; what it handed out
    /// before stays recorded.
    pub fn scan_next(&mut self, id: ScanId, max: usize) -> Result<ScanBatch> {
        let mut scan = self
            .scans
            .remove(&id)
            .ok_or(SimulationError::UnknownScan { id })?;
        let max = max.max(1);
        let batch = match &mut scan.source {
            ScanSource::Range {
                iter,
                record,
                handed_out,
            } => {
                let allowed = self.total_query_limit.saturating_sub(*handed_out);
                let (batch, reads, exhausted) =
                    next_range_batch(iter, max.min(allowed), allowed <= max)
                        .map_err(state_error(&scan.ns))?;
                *handed_out += batch.items.len();
                self.record_range_batch(&scan.ns, *record, reads, exhausted);
                batch
            }
            ScanSource::Records(records) => {
                let take = max.min(records.len());
                let mut items = Vec::with_capacity(take);
                for (key, value, version) in records.drain(..take) {
                    self.record_read(&scan.ns, &key, Some(version));
                    items.push((key, value));
                }
                ScanBatch {
                    items,
                    has_more: !records.is_empty(),
                }
            }
        };
        if batch.has_more {
            self.scans.insert(id, scan);
        } else {
            trace!(target: LOG, tx_id = %self.tx_id, scan = %id, "scan finished");
        }
        Ok(batch)
    }

    /// Closes scan `id`. Closing a scan that is not open (already closed or
    /// finished) is not an error.
    pub fn scan_close(&mut self, id: ScanId) {
        if self.scans.remove(&id).is_some() {
            trace!(target: LOG, tx_id = %self.tx_id, scan = %id, "scan closed");
        }
    }

    /// One page of the committed keys of `ns` in `[start, end)`: a
    /// non-empty `bookmark` replaces `start`; at most `page_size` items (0,
    /// or more than the total query limit, means the limit). The returned
    /// bookmark is the key after the page, empty once the range is
    /// exhausted. Recorded like a scan over the page. Refused in a
    /// transaction that has written.
    pub fn get_state_by_range_page(
        &mut self,
        ns: &str,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<ResultPage> {
        check_namespace(ns)?;
        self.check_paginated_allowed()?;
        let limit = match usize::try_from(page_size) {
            Ok(0) | Err(_) => self.total_query_limit,
            Ok(n) => n.min(self.total_query_limit),
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let page = self
            .db
            .range_page(ns, start, end, limit, bookmark)
            .map_err(state_error(ns))?;
        self.paginated_query_performed = true;
        let effective_start = if bookmark.is_empty() { start } else { bookmark };
        let reads: Reads = page
            .items
            .iter()
            .map(|(key, vv)| (key.clone(), vv.version))
            .collect();
        let record = {
            let ranges = &mut self.ns_mut(ns).ranges;
            ranges.push(RangeRecord {
                start: effective_start.to_owned(),
                end: end.to_owned(),
                reads: Vec::new(),
                exhausted: false,
                observed: false,
            });
            ranges.len() - 1
        };
        let exhausted = page.bookmark.is_empty() || page.items.is_empty();
        self.record_range_batch(ns, record, reads, exhausted);
        Ok(ResultPage {
            items: page
                .items
                .into_iter()
                .map(|(key, vv)| (key, vv.value))
                .collect(),
            bookmark: page.bookmark,
        })
    }

    // ---- rich queries ------------------------------------------------

    /// Runs rich query `query` (see `docs/rich-queries.md`) over the
    /// committed state of `ns` and opens a scan over its results; each
    /// result fetched with [`scan_next`](Self::scan_next) is recorded as a
    /// point read (no phantom protection).
    pub fn get_query_result(&mut self, ns: &str, query: &str) -> Result<ScanId> {
        check_namespace(ns)?;
        let (records, _) = self.run_query(ns, query, None, "")?;
        let id = self.open_scan(ns, ScanSource::Records(records.into()));
        trace!(target: LOG, tx_id = %self.tx_id, ns, scan = %id, "rich query opened");
        Ok(id)
    }

    /// One page of rich query `query` over the committed state of `ns`
    /// (`page_size` ≥ 1; `bookmark` from the previous page, empty for the
    /// first). Every result is recorded as a point read. Refused in a
    /// transaction that has written.
    pub fn get_query_result_page(
        &mut self,
        ns: &str,
        query: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<ResultPage> {
        check_namespace(ns)?;
        self.check_paginated_allowed()?;
        let (records, bookmark) = self.run_query(ns, query, Some(page_size), bookmark)?;
        self.paginated_query_performed = true;
        let mut items = Vec::with_capacity(records.len());
        for (key, value, version) in records {
            self.record_read(ns, &key, Some(version));
            items.push((key, value));
        }
        Ok(ResultPage { items, bookmark })
    }

    /// Runs a rich query; returns each result with the version of the value
    /// the query matched, and the query's bookmark.
    fn run_query(
        &self,
        ns: &str,
        query: &str,
        page_size: Option<u32>,
        bookmark: &str,
    ) -> Result<(QueryRecords, String)> {
        let query_error = |source| SimulationError::Query {
            namespace: ns.to_owned(),
            source,
        };
        let parsed = Query::parse(query).map_err(query_error)?;
        // Versions of the documents as the query saw them, in key order.
        let mut seen: Reads = Vec::new();
        let docs = self.db.range(ns, "", "").map(|item| {
            item.map(|(key, vv)| {
                seen.push((key.clone(), vv.version));
                (key, vv.value)
            })
        });
        let page = richquery::execute(&parsed, docs, page_size, bookmark).map_err(query_error)?;
        let mut out = Vec::with_capacity(page.records.len());
        for (key, value) in page.records {
            let version = match seen.binary_search_by(|(k, _)| k.as_str().cmp(key.as_str())) {
                Ok(i) => Some(seen[i].1),
                // Every result comes from the scan; look it up should that
                // ever not hold.
                Err(_) => self.db.get_version(ns, &key).map_err(state_error(ns))?,
            };
            if let Some(version) = version {
                out.push((key, value, version));
            }
        }
        Ok((out, page.bookmark))
    }

    // ---- history -----------------------------------------------------

    /// Every committed change of `key`, newest first. Not recorded: history
    /// is not part of the read set.
    pub fn get_history_for_key(&self, ns: &str, key: &str) -> Result<Vec<HistoryEntry>> {
        check_key(ns, key)?;
        self.db.history(ns, key).map_err(state_error(ns))
    }

    // ---- private data ------------------------------------------------

    /// The error every private data request gets: private data collections
    /// are not supported.
    pub fn private_data_unsupported(collection: &str) -> SimulationError {
        SimulationError::PrivateDataUnsupported {
            collection: collection.to_owned(),
        }
    }

    /// Private data read: always [`SimulationError::PrivateDataUnsupported`].
    pub fn get_private_data(
        &mut self,
        _ns: &str,
        collection: &str,
        _key: &str,
    ) -> Result<Option<Vec<u8>>> {
        Err(Self::private_data_unsupported(collection))
    }

    /// Private data write: always [`SimulationError::PrivateDataUnsupported`].
    pub fn put_private_data(
        &mut self,
        _ns: &str,
        collection: &str,
        _key: &str,
        _value: Vec<u8>,
    ) -> Result<()> {
        Err(Self::private_data_unsupported(collection))
    }

    /// Private data delete: always [`SimulationError::PrivateDataUnsupported`].
    pub fn del_private_data(&mut self, _ns: &str, collection: &str, _key: &str) -> Result<()> {
        Err(Self::private_data_unsupported(collection))
    }

    // ---- results -----------------------------------------------------

    /// Namespaces the transaction writes (values or metadata), sorted.
    pub fn written_namespaces(&self) -> Vec<&str> {
        self.namespaces
            .iter()
            .filter(|(_, r)| r.has_writes())
            .map(|(ns, _)| ns.as_str())
            .collect()
    }

    /// True if the transaction writes anything.
    pub fn has_writes(&self) -> bool {
        self.namespaces.values().any(NsRecord::has_writes)
    }

    /// The transaction's read-write set: data model KV, one
    /// `NsReadWriteSet` per namespace that recorded anything, sorted by
    /// namespace; each holds a serialized `KVRWSet` with reads sorted by
    /// key, range queries in the order they were opened (identical ones
    /// once), writes and metadata writes sorted by key. Scans still open
    /// are recorded as far as they were read.
    ///
    /// Fails with [`SimulationError::StateChanged`] if the transaction saw
    /// two versions of a key, since the committer would reject it.
    pub fn into_results(self) -> Result<TxReadWriteSet> {
        if let Some((namespace, key)) = self.changed {
            return Err(SimulationError::StateChanged {
                tx_id: self.tx_id,
                namespace,
                key,
            });
        }
        let mut ns_rwset = Vec::with_capacity(self.namespaces.len());
        for (namespace, record) in self.namespaces {
            if record.is_empty() {
                continue;
            }
            let kv = build_kvrwset(record);
            debug!(
                target: LOG,
                tx_id = %self.tx_id,
                ns = %namespace,
                reads = kv.reads.len(),
                ranges = kv.range_queries_info.len(),
                writes = kv.writes.len(),
                metadata_writes = kv.metadata_writes.len(),
                "simulation results"
            );
            ns_rwset.push(NsReadWriteSet {
                namespace,
                rwset: kv.encode_to_vec(),
                collection_hashed_rwset: Vec::new(),
            });
        }
        Ok(TxReadWriteSet {
            data_model: DataModel::Kv as i32,
            ns_rwset,
        })
    }

    // ---- internals ---------------------------------------------------

    fn ns_mut(&mut self, ns: &str) -> &mut NsRecord {
        self.namespaces.entry(ns.to_owned()).or_default()
    }

    fn open_scan(&mut self, ns: &str, source: ScanSource) -> ScanId {
        let id = ScanId(self.next_scan);
        self.next_scan += 1;
        self.scans.insert(
            id,
            Scan {
                ns: ns.to_owned(),
                source,
            },
        );
        id
    }

    fn record_read(&mut self, ns: &str, key: &str, version: Option<Height>) {
        if !self.ns_mut(ns).read(key, version) {
            self.note_changed(ns, key);
        }
    }

    fn record_range_batch(&mut self, ns: &str, record: usize, reads: Reads, exhausted: bool) {
        let mut changed = Vec::new();
        let ns_record = self.ns_mut(ns);
        for (key, version) in &reads {
            if !ns_record.observe(key, Some(*version)) {
                changed.push(key.clone());
            }
        }
        if let Some(range) = ns_record.ranges.get_mut(record) {
            range.observed = range.observed || !reads.is_empty() || exhausted;
            range.exhausted = exhausted;
            range.reads.extend(reads);
        }
        for key in changed {
            self.note_changed(ns, &key);
        }
    }

    fn note_changed(&mut self, ns: &str, key: &str) {
        debug!(target: LOG, tx_id = %self.tx_id, ns, key, "key read at two versions: state changed during simulation");
        if self.changed.is_none() {
            self.changed = Some((ns.to_owned(), key.to_owned()));
        }
    }

    fn check_write_allowed(&self) -> Result<()> {
        if self.paginated_query_performed {
            return Err(SimulationError::WriteAfterPaginatedQuery {
                tx_id: self.tx_id.clone(),
            });
        }
        Ok(())
    }

    fn check_paginated_allowed(&self) -> Result<()> {
        if self.write_performed {
            return Err(SimulationError::PaginatedQueryAfterWrite {
                tx_id: self.tx_id.clone(),
            });
        }
        Ok(())
    }
}

/// Pulls up to `want` results from a range scan; `at_limit` says that
/// handing out `want` results reaches the total query limit. Returns the
/// batch (with `has_more`), the keys and versions handed out, and whether
/// the range is exhausted.
fn next_range_batch(
    iter: &mut Peekable<RangeIter>,
    want: usize,
    at_limit: bool,
) -> std::result::Result<(ScanBatch, Reads, bool), StateError> {
    let mut items = Vec::with_capacity(want.min(1024));
    let mut reads = Vec::with_capacity(want.min(1024));
    while items.len() < want {
        let Some(item) = iter.next() else {
            let batch = ScanBatch {
                items,
                has_more: false,
            };
            return Ok((batch, reads, true));
        };
        let (key, vv) = item?;
        reads.push((key.clone(), vv.version));
        items.push((key, vv.value));
    }
    // Look ahead so the chaincode learns that the range ended without
    // asking again. The key looked at is not handed out, so not recorded.
    let exhausted = iter.peek().is_none();
    let batch = ScanBatch {
        items,
        has_more: !exhausted && !at_limit,
    };
    Ok((batch, reads, exhausted))
}

fn build_kvrwset(record: NsRecord) -> KvrwSet {
    let reads = record
        .reads
        .into_iter()
        .map(|(key, version)| kv_read(key, version))
        .collect();
    let mut seen_ranges = HashSet::new();
    let range_queries_info = record
        .ranges
        .into_iter()
        .filter(|r| r.observed)
        .map(RangeRecord::into_info)
        .filter(|info| {
            seen_ranges.insert((
                info.start_key.clone(),
                info.end_key.clone(),
                info.itr_exhausted,
            ))
        })
        .collect();
    let writes = record
        .writes
        .into_iter()
        .map(|(key, value)| KvWrite {
            key,
            is_delete: value.is_none(),
            value: value.unwrap_or_default(),
        })
        .collect();
    let metadata_writes = record
        .metadata_writes
        .into_iter()
        .map(|(key, entries)| KvMetadataWrite {
            key,
            entries: entries
                .into_iter()
                .map(|(name, value)| KvMetadataEntry { name, value })
                .collect(),
        })
        .collect();
    KvrwSet {
        reads,
        range_queries_info,
        writes,
        metadata_writes,
    }
}

fn kv_read(key: String, version: Option<Height>) -> KvRead {
    KvRead {
        key,
        version: version.map(|h| Version {
            block_num: h.block,
            tx_num: h.tx,
        }),
    }
}

fn state_error(ns: &str) -> impl Fn(StateError) -> SimulationError + '_ {
    move |source| SimulationError::State {
        namespace: ns.to_owned(),
        source,
    }
}

fn check_namespace(ns: &str) -> Result<()> {
    let reason = if ns.is_empty() {
        "empty"
    } else if ns.contains('\0') {
        "contains U+0000"
    } else {
        return Ok(());
    };
    Err(SimulationError::InvalidNamespace {
        namespace: ns.to_owned(),
        reason,
    })
}

fn check_key(ns: &str, key: &str) -> Result<()> {
    check_namespace(ns)?;
    if key.is_empty() {
        return Err(SimulationError::EmptyKey {
            namespace: ns.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_ledger::state::{KeyWrite, UpdateBatch};

    const CC: &str = "basic";

    fn open() -> (tempfile::TempDir, Arc<StateDb>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(StateDb::open(dir.path()).unwrap());
        (dir, db)
    }

    /// Commits `entries` of namespace `ns` as block `block`, entry `i` at
    /// height `(block, i)`.
    fn seed(db: &StateDb, block: u64, ns: &str, entries: &[(&str, &[u8])]) {
        let mut batch = UpdateBatch::default();
        for (i, (key, value)) in entries.iter().enumerate() {
            let write = if value.is_empty() {
                KeyWrite::Delete
            } else {
                KeyWrite::Put(value.to_vec())
            };
            batch.put(ns, key, write, Height::new(block, i as u64));
        }
        db.commit(&batch, block).unwrap();
    }

    fn sim(db: &Arc<StateDb>) -> TxSimulator {
        TxSimulator::new(db.clone(), "mychannel", "tx1")
    }

    fn version(block: u64, tx: u64) -> Option<Version> {
        Some(Version {
            block_num: block,
            tx_num: tx,
        })
    }

    fn results_of(sim: TxSimulator) -> TxReadWriteSet {
        sim.into_results().unwrap()
    }

    /// The decoded `KVRWSet` of namespace `ns`.
    fn kv_of(results: &TxReadWriteSet, ns: &str) -> KvrwSet {
        let set = results
            .ns_rwset
            .iter()
            .find(|s| s.namespace == ns)
            .unwrap_or_else(|| panic!("no rwset for {ns}"));
        KvrwSet::decode(set.rwset.as_slice()).unwrap()
    }

    fn raw_reads(info: &RangeQueryInfo) -> Vec<(String, Option<Version>)> {
        match &info.reads_info {
            Some(ReadsInfo::RawReads(raw)) => raw
                .kv_reads
                .iter()
                .map(|r| (r.key.clone(), r.version))
                .collect(),
            Some(ReadsInfo::ReadsMerkleHashes(_)) => panic!("merkle summary, not raw reads"),
            None => Vec::new(),
        }
    }

    fn keys(items: &[(String, Vec<u8>)]) -> Vec<&str> {
        items.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn reads_see_committed_state_not_own_writes() {
        let (_dir, db) = open();
        seed(&db, 3, CC, &[("x", b"old"), ("a", b"va")]);
        let mut s = sim(&db);
        s.put_state(CC, "a", b"new".to_vec()).unwrap();
        assert_eq!(s.get_state(CC, "a").unwrap(), Some(b"va".to_vec()));
        s.del_state(CC, "x").unwrap();
        assert_eq!(s.get_state(CC, "x").unwrap(), Some(b"old".to_vec()));

        let kv = kv_of(&results_of(s), CC);
        let reads: Vec<_> = kv
            .reads
            .iter()
            .map(|r| (r.key.as_str(), r.version))
            .collect();
        assert_eq!(reads, [("a", version(3, 1)), ("x", version(3, 0))]);
        assert_eq!(kv.writes.len(), 2);
    }

    #[test]
    fn an_absent_key_is_read_without_version() {
        let (_dir, db) = open();
        let mut s = sim(&db);
        assert_eq!(s.get_state(CC, "ghost").unwrap(), None);
        assert!(s.get_state_metadata(CC, "ghost2").unwrap().is_empty());
        let kv = kv_of(&results_of(s), CC);
        assert_eq!(
            kv.reads,
            [
                KvRead {
                    key: "ghost".into(),
                    version: None
                },
                KvRead {
                    key: "ghost2".into(),
                    version: None
                }
            ]
        );
    }

    #[test]
    fn repeated_reads_record_one_read_per_key() {
        let (_dir, db) = open();
        seed(&db, 1, CC, &[("k", b"v")]);
        let mut s = sim(&db);
        for _ in 0..3 {
            s.get_state(CC, "k").unwrap();
        }
        s.get_state_metadata(CC, "k").unwrap();
        let kv = kv_of(&results_of(s), CC);
        assert_eq!(kv.reads.len(), 1);
        assert_eq!(kv.reads[0].version, version(1, 0));
    }

    #[test]
    fn a_commit_between_two_reads_of_a_key_fails_the_results() {
        let (_dir, db) = open();
        seed(&db, 1, CC, &[("k", b"v1")]);
        let mut s = sim(&db);
        assert_eq!(s.get_state(CC, "k").unwrap(), Some(b"v1".to_vec()));
        seed(&db, 2, CC, &[("k", b"v2")]);
        // The later read sees the new value but the first read is kept.
        assert_eq!(s.get_state(CC, "k").unwrap(), Some(b"v2".to_vec()));
        let err = s.into_results().unwrap_err();
        assert_eq!(err.code(), "SIM_STATE_CHANGED");
        assert!(
            matches!(&err, SimulationError::StateChanged { namespace, key, .. } if namespace == CC && key == "k"),
            "{err}"
        );
    }

    #[test]
    fn a_commit_seen_by_a_range_after_a_point_read_fails_the_results() {
        let (_dir, db) = open();
        let mut s = sim(&db);
        assert_eq!(s.get_state(CC, "k").unwrap(), None);
        seed(&db, 1, CC, &[("k", b"v1")]);
        let scan = s.get_state_by_range(CC, "", "").unwrap();
        assert_eq!(keys(&s.scan_next(scan, 10).unwrap().items), ["k"]);
        assert_eq!(s.into_results().unwrap_err().code(), "SIM_STATE_CHANGED");
    }

    #[test]
    fn last_write_wins_and_a_delete_replaces_a_put() {
        let (_dir, db) = open();
        let mut s = sim(&db);
        s.put_state(CC, "k", b"1".to_vec()).unwrap();
        s.put_state(CC, "k", b"2".to_vec()).unwrap();
        s.put_state(CC, "gone", b"x".to_vec()).unwrap();
        s.del_state(CC, "gone").unwrap();
        s.del_state(CC, "back").unwrap();
        s.put_state(CC, "back", b"again".to_vec()).unwrap();
        s.put_state(CC, "empty", Vec::new()).unwrap();
        let composite = "\u{0}owner\u{0}alice\u{0}";
        s.put_state(CC, composite, b"c".to_vec()).unwrap();

        let kv = kv_of(&results_of(s), CC);
        let writes: Vec<_> = kv
            .writes
            .iter()
            .map(|w| (w.key.as_str(), w.is_delete, w.value.as_slice()))
            .collect();
        assert_eq!(
            writes,
            [
                (composite, false, &b"c"[..]),
                ("back", false, &b"again"[..]),
                ("empty", true, &b""[..]),
                ("gone", true, &b""[..]),
                ("k", false, &b"2"[..]),
            ]
        );
        assert!(kv.reads.is_empty());
    }

    #[test]
    fn bad_keys_and_namespaces_are_refused() {
        let (_dir, db) = open();
        let mut s = sim(&db);
        let empty = s.put_state(CC, "", b"v".to_vec()).unwrap_err();
        assert!(matches!(&empty, SimulationError::EmptyKey { namespace } if namespace == CC));
        assert_eq!(s.get_state(CC, "").unwrap_err().code(), "SIM_EMPTY_KEY");
        assert_eq!(
            s.del_state("", "k").unwrap_err().code(),
            "SIM_INVALID_NAMESPACE"
        );
        assert_eq!(
            s.get_state_by_range("a\0b", "", "").unwrap_err().code(),
            "SIM_INVALID_NAMESPACE"
        );
        assert!(!s.has_writes());
        assert!(results_of(s).ns_rwset.is_empty());
    }

    fn seed_keys(db: &StateDb, n: usize) -> Vec<String> {
        let names: Vec<String> = (0..n).map(|i| format!("k{i:03}")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
        seed(db, 1, CC, &entries);
        names
    }

    #[test]
    fn a_range_scan_stopped_early_records_only_what_it_handed_out() {
        let (_dir, db) = open();
        seed_keys(&db, 5);
        let mut s = sim(&db);
        let scan = s.get_state_by_range(CC, "k000", "k999").unwrap();
        let batch = s.scan_next(scan, 2).unwrap();
        assert_eq!(keys(&batch.items), ["k000", "k001"]);
        assert!(batch.has_more);
        s.scan_close(scan);
        assert_eq!(s.scan_next(scan, 2).unwrap_err().code(), "SIM_UNKNOWN_SCAN");

        let kv = kv_of(&results_of(s), CC);
        assert!(kv.reads.is_empty(), "range results are not point reads");
        let [info] = kv.range_queries_info.as_slice() else {
            panic!("{:?}", kv.range_queries_info)
        };
        assert_eq!(info.start_key, "k000");
        assert_eq!(
            info.end_key, "k001",
            "stopped early: end is the last key handed out"
        );
        assert!(!info.itr_exhausted);
        assert_eq!(
            raw_reads(info),
            [
                ("k000".into(), version(1, 0)),
                ("k001".into(), version(1, 1))
            ]
        );
    }

    #[test]
    fn a_range_scan_in_batches_to_the_end_is_exhausted() {
        let (_dir, db) = open();
        seed_keys(&db, 5);
        let mut s = sim(&db);
        s.put_state(CC, "k002a", b"own write".to_vec()).unwrap();
        let scan = s.get_state_by_range(CC, "k001", "").unwrap();
        let mut got = Vec::new();
        let mut batches = 0;
        loop {
            let batch = s.scan_next(scan, 2).unwrap();
            batches += 1;
            got.extend(batch.items);
            if !batch.has_more {
                break;
            }
        }
        // Four keys from k001: batches of 2 and 2; the look-ahead tells
        // the second batch that nothing follows.
        assert_eq!(batches, 2);
        assert_eq!(keys(&got), ["k001", "k002", "k003", "k004"]);
        // Finished scans are closed; closing again is harmless.
        assert_eq!(s.scan_next(scan, 1).unwrap_err().code(), "SIM_UNKNOWN_SCAN");
        s.scan_close(scan);

        let kv = kv_of(&results_of(s), CC);
        let [info] = kv.range_queries_info.as_slice() else {
            panic!("{:?}", kv.range_queries_info)
        };
        assert_eq!(
            (info.start_key.as_str(), info.end_key.as_str()),
            ("k001", "")
        );
        assert!(info.itr_exhausted);
        assert_eq!(raw_reads(info).len(), 4);
    }

    #[test]
    fn an_empty_range_is_exhausted_without_reads() {
        let (_dir, db) = open();
        seed_keys(&db, 2);
        let mut s = sim(&db);
        let scan = s.get_state_by_range(CC, "x", "z").unwrap();
        let batch = s.scan_next(scan, 100).unwrap();
        assert_eq!(batch, ScanBatch::default());
        let kv = kv_of(&results_of(s), CC);
        assert_eq!(
            kv.range_queries_info,
            [RangeQueryInfo {
                start_key: "x".into(),
                end_key: "z".into(),
                itr_exhausted: true,
                reads_info: None,
            }]
        );
    }

    #[test]
    fn a_scan_never_read_records_nothing() {
        let (_dir, db) = open();
        seed_keys(&db, 2);
        let mut s = sim(&db);
        let scan = s.get_state_by_range(CC, "", "").unwrap();
        s.scan_close(scan);
        assert!(results_of(s).ns_rwset.is_empty());
    }

    #[test]
    fn the_total_query_limit_ends_a_scan_early() {
        let (_dir, db) = open();
        seed_keys(&db, 5);
        let mut s = sim(&db).with_total_query_limit(3);
        let scan = s.get_state_by_range(CC, "", "").unwrap();
        let first = s.scan_next(scan, 2).unwrap();
        assert!(first.has_more);
        let second = s.scan_next(scan, 2).unwrap();
        assert_eq!(keys(&second.items), ["k002"]);
        assert!(!second.has_more);
        let kv = kv_of(&results_of(s), CC);
        let info = &kv.range_queries_info[0];
        assert!(!info.itr_exhausted);
        assert_eq!(info.end_key, "k002");
        assert_eq!(raw_reads(info).len(), 3);
    }

    #[test]
    fn many_range_results_are_recorded_as_a_merkle_summary() {
        let (_dir, db) = open();
        let names = seed_keys(&db, 60);
        let mut s = sim(&db);
        let small = s.get_state_by_range(CC, "", "k050").unwrap();
        assert_eq!(s.scan_next(small, 100).unwrap().items.len(), 50);
        let large = s.get_state_by_range(CC, "", "").unwrap();
        assert_eq!(s.scan_next(large, 100).unwrap().items.len(), 60);

        let kv = kv_of(&results_of(s), CC);
        assert_eq!(raw_reads(&kv.range_queries_info[0]).len(), 50);
        let expected: Vec<(String, Height)> = names
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), Height::new(1, i as u64)))
            .collect();
        let summary = merkle_summary(&expected, QUERY_READS_MAX_DEGREE).unwrap();
        assert_eq!(
            kv.range_queries_info[1].reads_info,
            Some(ReadsInfo::ReadsMerkleHashes(summary))
        );
    }

    #[test]
    fn paginated_range_queries_follow_the_bookmark() {
        let (_dir, db) = open();
        seed(
            &db,
            1,
            CC,
            &[
                ("a", b"1"),
                ("b", b"2"),
                ("c", b"3"),
                ("d", b"4"),
                ("e", b"5"),
            ],
        );
        let mut s = sim(&db);
        let first = s.get_state_by_range_page(CC, "a", "", 2, "").unwrap();
        assert_eq!(keys(&first.items), ["a", "b"]);
        assert_eq!(first.bookmark, "c");
        let second = s
            .get_state_by_range_page(CC, "a", "", 2, &first.bookmark)
            .unwrap();
        assert_eq!(keys(&second.items), ["c", "d"]);
        assert_eq!(second.bookmark, "e");
        let last = s
            .get_state_by_range_page(CC, "a", "", 2, &second.bookmark)
            .unwrap();
        assert_eq!(keys(&last.items), ["e"]);
        assert_eq!(last.bookmark, "");
        assert_eq!(last.items[0].1, b"5");

        let kv = kv_of(&results_of(s), CC);
        let ranges: Vec<_> = kv
            .range_queries_info
            .iter()
            .map(|i| (i.start_key.as_str(), i.end_key.as_str(), i.itr_exhausted))
            .collect();
        assert_eq!(
            ranges,
            [("a", "b", false), ("c", "d", false), ("e", "", true)]
        );
        assert_eq!(
            raw_reads(&kv.range_queries_info[1]),
            [("c".into(), version(1, 2)), ("d".into(), version(1, 3))]
        );
    }

    #[test]
    fn paginated_queries_and_writes_exclude_each_other() {
        let (_dir, db) = open();
        seed_keys(&db, 3);
        let mut reader = sim(&db);
        reader.get_state_by_range_page(CC, "", "", 1, "").unwrap();
        let err = reader.put_state(CC, "k", b"v".to_vec()).unwrap_err();
        assert_eq!(err.code(), "SIM_WRITE_AFTER_PAGINATED_QUERY");
        assert_eq!(
            reader
                .put_state_metadata(CC, "k", "A", b"v".to_vec())
                .unwrap_err()
                .code(),
            "SIM_WRITE_AFTER_PAGINATED_QUERY"
        );

        let mut writer = sim(&db);
        writer.del_state(CC, "k000").unwrap();
        let err = writer
            .get_state_by_range_page(CC, "", "", 1, "")
            .unwrap_err();
        assert_eq!(err.code(), "SIM_PAGINATED_QUERY_AFTER_WRITE");
        let err = writer
            .get_query_result_page(CC, r#"{"selector":{}}"#, 1, "")
            .unwrap_err();
        assert_eq!(err.code(), "SIM_PAGINATED_QUERY_AFTER_WRITE");
        // Unpaginated queries stay allowed.
        writer.get_state_by_range(CC, "", "").unwrap();
    }

    #[test]
    fn a_metadata_write_carries_the_full_map() {
        let (_dir, db) = open();
        let mut batch = UpdateBatch::default();
        let h = Height::new(1, 0);
        batch.put(CC, "k", KeyWrite::Put(b"v".to_vec()), h);
        batch.put_metadata(
            CC,
            "k",
            BTreeMap::from([
                ("A".to_owned(), b"a0".to_vec()),
                ("B".to_owned(), b"b0".to_vec()),
            ]),
            h,
        );
        db.commit(&batch, 1).unwrap();

        let mut s = sim(&db);
        s.put_state_metadata(CC, "k", "A", b"a1".to_vec()).unwrap();
        s.put_state_metadata(CC, "k", "C", b"c1".to_vec()).unwrap();
        s.put_state_metadata(CC, "new", "A", b"n".to_vec()).unwrap();
        // Reads still see the committed metadata.
        assert_eq!(s.get_state_metadata(CC, "k").unwrap()["A"], b"a0");
        assert!(s.has_writes());
        assert_eq!(s.written_namespaces(), [CC]);

        let kv = kv_of(&results_of(s), CC);
        let entries = |w: &KvMetadataWrite| -> Vec<(String, Vec<u8>)> {
            w.entries
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect()
        };
        assert_eq!(kv.metadata_writes.len(), 2);
        assert_eq!(kv.metadata_writes[0].key, "k");
        assert_eq!(
            entries(&kv.metadata_writes[0]),
            [
                ("A".to_owned(), b"a1".to_vec()),
                ("B".to_owned(), b"b0".to_vec()),
                ("C".to_owned(), b"c1".to_vec()),
            ]
        );
        assert_eq!(kv.metadata_writes[1].key, "new");
        assert_eq!(
            entries(&kv.metadata_writes[1]),
            [("A".to_owned(), b"n".to_vec())]
        );
        // The merge read the committed metadata: both keys are recorded.
        let reads: Vec<_> = kv
            .reads
            .iter()
            .map(|r| (r.key.as_str(), r.version))
            .collect();
        assert_eq!(reads, [("k", version(1, 0)), ("new", None)]);
        assert!(kv.writes.is_empty());
    }

    #[test]
    fn results_are_ordered_and_round_trip() {
        let (_dir, db) = open();
        seed(&db, 1, "zeta", &[("m", b"1"), ("n", b"2")]);
        seed(&db, 2, "alpha", &[("q", b"3")]);
        let mut s = sim(&db);
        s.put_state("zeta", "y", b"y".to_vec()).unwrap();
        s.get_state("zeta", "n").unwrap();
        s.put_state("zeta", "b", b"b".to_vec()).unwrap();
        s.get_state("zeta", "m").unwrap();
        let second = s.get_state_by_range("zeta", "n", "").unwrap();
        let first = s.get_state_by_range("zeta", "", "n").unwrap();
        s.scan_next(first, 10).unwrap();
        s.scan_next(second, 10).unwrap();
        s.get_state("alpha", "q").unwrap();
        s.get_state("middle", "nothing").unwrap();
        assert_eq!(s.written_namespaces(), ["zeta"]);

        let results = results_of(s);
        assert_eq!(results.data_model, DataModel::Kv as i32);
        let names: Vec<_> = results
            .ns_rwset
            .iter()
            .map(|n| n.namespace.as_str())
            .collect();
        assert_eq!(names, ["alpha", "middle", "zeta"]);

        let expected = KvrwSet {
            reads: vec![
                kv_read("m".into(), Some(Height::new(1, 0))),
                kv_read("n".into(), Some(Height::new(1, 1))),
            ],
            // In the order the scans were opened, not read.
            range_queries_info: vec![
                RangeQueryInfo {
                    start_key: "n".into(),
                    end_key: "".into(),
                    itr_exhausted: true,
                    reads_info: Some(ReadsInfo::RawReads(QueryReads {
                        kv_reads: vec![kv_read("n".into(), Some(Height::new(1, 1)))],
                    })),
                },
                RangeQueryInfo {
                    start_key: "".into(),
                    end_key: "n".into(),
                    itr_exhausted: true,
                    reads_info: Some(ReadsInfo::RawReads(QueryReads {
                        kv_reads: vec![kv_read("m".into(), Some(Height::new(1, 0)))],
                    })),
                },
            ],
            writes: vec![
                KvWrite {
                    key: "b".into(),
                    is_delete: false,
                    value: b"b".to_vec(),
                },
                KvWrite {
                    key: "y".into(),
                    is_delete: false,
                    value: b"y".to_vec(),
                },
            ],
            metadata_writes: Vec::new(),
        };
        assert_eq!(kv_of(&results, "zeta"), expected);
        assert_eq!(
            kv_of(&results, "alpha").reads,
            [kv_read("q".into(), Some(Height::new(2, 0)))]
        );
        // The whole structure survives encoding.
        let bytes = results.encode_to_vec();
        assert_eq!(TxReadWriteSet::decode(bytes.as_slice()).unwrap(), results);
    }

    #[test]
    fn identical_range_queries_are_recorded_once() {
        let (_dir, db) = open();
        seed_keys(&db, 2);
        let mut s = sim(&db);
        for _ in 0..2 {
            let scan = s.get_state_by_range(CC, "", "").unwrap();
            s.scan_next(scan, 10).unwrap();
        }
        assert_eq!(kv_of(&results_of(s), CC).range_queries_info.len(), 1);
    }

    #[test]
    fn rich_query_results_are_read_as_fetched() {
        let (_dir, db) = open();
        seed(
            &db,
            1,
            CC,
            &[
                ("a", br#"{"owner":"bob"}"#),
                ("b", br#"{"owner":"eve"}"#),
                ("c", br#"{"owner":"bob"}"#),
                ("d", br#"{"owner":"bob"}"#),
            ],
        );
        let mut s = sim(&db);
        let scan = s
            .get_query_result(CC, r#"{"selector":{"owner":"bob"}}"#)
            .unwrap();
        let batch = s.scan_next(scan, 2).unwrap();
        assert_eq!(keys(&batch.items), ["a", "c"]);
        assert!(batch.has_more);
        s.scan_close(scan);
        let page = s
            .get_query_result_page(CC, r#"{"selector":{"owner":"eve"}}"#, 5, "")
            .unwrap();
        assert_eq!(keys(&page.items), ["b"]);
        let bad = s.get_query_result(CC, "{").unwrap_err();
        assert_eq!(bad.code(), "SIM_QUERY");

        let kv = kv_of(&results_of(s), CC);
        // What was handed out is read (d was never fetched); no range info.
        let reads: Vec<_> = kv
            .reads
            .iter()
            .map(|r| (r.key.as_str(), r.version))
            .collect();
        assert_eq!(
            reads,
            [
                ("a", version(1, 0)),
                ("b", version(1, 1)),
                ("c", version(1, 2))
            ]
        );
        assert!(kv.range_queries_info.is_empty());
    }

    #[test]
    fn history_is_returned_but_not_recorded() {
        let (_dir, db) = open();
        seed(&db, 1, CC, &[("k", b"v1")]);
        seed(&db, 2, CC, &[("k", b"v2")]);
        let s = sim(&db);
        let history = s.get_history_for_key(CC, "k").unwrap();
        let values: Vec<_> = history.iter().map(|e| e.value.as_slice()).collect();
        assert_eq!(values, [&b"v2"[..], &b"v1"[..]]);
        assert!(results_of(s).ns_rwset.is_empty());
    }

    #[test]
    fn private_data_is_refused() {
        let (_dir, db) = open();
        let mut s = sim(&db);
        let err = s.get_private_data(CC, "secrets", "k").unwrap_err();
        assert!(matches!(
            &err,
            SimulationError::PrivateDataUnsupported { collection } if collection == "secrets"
        ));
        assert_eq!(err.code(), "SIM_PRIVATE_DATA_UNSUPPORTED");
        assert!(s
            .put_private_data(CC, "secrets", "k", b"v".to_vec())
            .is_err());
        assert!(s.del_private_data(CC, "secrets", "k").is_err());
        assert!(!s.has_writes());
    }

    #[test]
    fn scan_ids_print_and_parse() {
        let (_dir, db) = open();
        let mut s = sim(&db);
        let a = s.get_state_by_range(CC, "", "").unwrap();
        let b = s.get_state_by_range(CC, "", "").unwrap();
        assert_ne!(a, b);
        assert_eq!(b.to_string().parse::<ScanId>().unwrap(), b);
        assert!("x".parse::<ScanId>().is_err());
    }

    #[test]
    fn the_simulator_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<TxSimulator>();
        assert_send::<SimulationError>();
    }

    /// Simulated read-write sets go through the committer's validation
    /// (signed by the test network) and get the codes the MVCC stage gives.
    #[cfg(feature = "testkit")]
    #[test]
    fn simulated_rwsets_pass_the_committers_mvcc_stage() {
        use crate::validation::testkit::{
            channel_policy_ref, define_chaincode, signed_block, TestNetwork, TxBuilder, CHANNEL,
        };
        use crate::validation::{BlockValidator, MemState, MemTxIds, StateAccessError, StateView};
        use twill_protos::peer::TxValidationCode as Code;

        struct DbView<'a>(&'a StateDb);

        fn access(e: StateError) -> StateAccessError {
            StateAccessError::new(e.to_string())
        }

        impl StateView for DbView<'_> {
            fn version(
                &self,
                ns: &str,
                key: &str,
            ) -> std::result::Result<Option<Height>, StateAccessError> {
                self.0.get_version(ns, key).map_err(access)
            }
            fn metadata(
                &self,
                ns: &str,
                key: &str,
            ) -> std::result::Result<Option<BTreeMap<String, Vec<u8>>>, StateAccessError>
            {
                self.0.get_metadata(ns, key).map_err(access)
            }
            fn get(
                &self,
                ns: &str,
                key: &str,
            ) -> std::result::Result<Option<Vec<u8>>, StateAccessError> {
                Ok(self.0.get(ns, key).map_err(access)?.map(|v| v.value))
            }
            fn range_versions(
                &self,
                ns: &str,
                start: &str,
                end: &str,
            ) -> std::result::Result<Vec<(String, Height)>, StateAccessError> {
                self.0
                    .range(ns, start, end)
                    .map(|item| item.map(|(k, v)| (k, v.version)).map_err(access))
                    .collect()
            }
        }

        let (_dir, db) = open();
        // Block 0: the chaincode definition and three keys.
        let mut definitions = MemState::new();
        define_chaincode(
            &mut definitions,
            CC,
            1,
            &channel_policy_ref("/Channel/Application/Endorsement"),
        );
        let mut batch = UpdateBatch::default();
        for ((ns, key), vv) in &definitions.entries {
            batch.put(ns, key, KeyWrite::Put(vv.value.clone()), vv.version);
        }
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            batch.put(
                CC,
                key,
                KeyWrite::Put(b"v".to_vec()),
                Height::new(0, i as u64 + 1),
            );
        }
        db.commit(&batch, 0).unwrap();

        let net = TestNetwork::new().unwrap();
        let (client, peer1, peer2) = (
            net.client(1).unwrap(),
            net.peer(1).unwrap(),
            net.peer(2).unwrap(),
        );
        let envelope = |tx: TxSimulator| {
            let results = tx.into_results().unwrap();
            let mut builder = TxBuilder::new(&client, CHANNEL, CC)
                .endorsed_by(&peer1)
                .endorsed_by(&peer2);
            for ns in &results.ns_rwset {
                let kv = KvrwSet::decode(ns.rwset.as_slice()).unwrap();
                builder = builder
                    .reads(&ns.namespace, kv.reads)
                    .range_queries(&ns.namespace, kv.range_queries_info)
                    .writes(&ns.namespace, kv.writes)
                    .metadata_writes(&ns.namespace, kv.metadata_writes);
            }
            builder.build().unwrap().1
        };

        // tx1 reads a, an absent key and [a, c), and writes a and d.
        let mut tx1 = sim(&db);
        tx1.get_state(CC, "a").unwrap();
        tx1.get_state(CC, "zz").unwrap();
        let scan = tx1.get_state_by_range(CC, "a", "c").unwrap();
        assert_eq!(tx1.scan_next(scan, 100).unwrap().items.len(), 2);
        tx1.put_state(CC, "a", b"new".to_vec()).unwrap();
        tx1.put_state(CC, "d", b"vd".to_vec()).unwrap();
        // tx2 read a, which tx1 (earlier in the block) writes.
        let mut tx2 = sim(&db);
        tx2.get_state(CC, "a").unwrap();
        tx2.put_state(CC, "b", b"x".to_vec()).unwrap();
        // tx3 stopped its scan from b after one key: d, which tx1 adds, is
        // outside what it saw.
        let mut tx3 = sim(&db);
        let scan = tx3.get_state_by_range(CC, "b", "").unwrap();
        assert!(tx3.scan_next(scan, 1).unwrap().has_more);
        tx3.scan_close(scan);
        tx3.put_state(CC, "e", b"ve".to_vec()).unwrap();
        // tx4 scanned from b to the end: d is a phantom.
        let mut tx4 = sim(&db);
        let scan = tx4.get_state_by_range(CC, "b", "").unwrap();
        assert!(!tx4.scan_next(scan, 100).unwrap().has_more);
        tx4.put_state(CC, "f", b"vf".to_vec()).unwrap();

        let envelopes = [envelope(tx1), envelope(tx2), envelope(tx3), envelope(tx4)];
        let orderer = net.orderer(0).unwrap();
        let block =
            signed_block(net.genesis().header.as_ref().unwrap(), &envelopes, &orderer).unwrap();
        let validator = BlockValidator::new(CHANNEL, 1);
        let out = validator
            .validate(
                &block,
                &net.config().unwrap(),
                &DbView(&db),
                &MemTxIds::default(),
            )
            .unwrap();
        assert_eq!(
            out.codes,
            [
                Code::Valid,
                Code::MvccReadConflict,
                Code::Valid,
                Code::PhantomReadConflict
            ]
        );

        // Committed, the valid writes are what the next simulation reads.
        db.commit(&out.batch, 1).unwrap();
        let mut next = sim(&db);
        assert_eq!(next.get_state(CC, "a").unwrap(), Some(b"new".to_vec()));
        assert_eq!(next.get_state(CC, "e").unwrap(), Some(b"ve".to_vec()));
        assert_eq!(next.get_state(CC, "f").unwrap(), None);
        let kv = kv_of(&results_of(next), CC);
        assert_eq!(kv.reads[0].version, version(1, 0));
        assert_eq!(kv.reads[1].version, version(1, 2));
    }
}
