//! The per-channel block store: append-only block files plus a sled index.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use twill_configtx::block::{block_data_hash, block_header_hash};
use twill_protos::common::{
    Block, BlockData, BlockHeader, BlockMetadataIndex, LastConfig, Metadata, OrdererBlockMetadata,
};

use crate::error::{CorruptIssue, IndexIssue, LastConfigIssue, LedgerError, Result};
use crate::format::{self, RecordHeader, RECORD_HEADER_LEN};
use crate::index::{self, BlockLoc, Checkpoint};
use crate::records::{self, Scanned};
use crate::txfilter::{self, TxIdFilter};
use crate::txwait::{TxWait, TxWaiters};

/// Default size at which appends roll over to a new block file: 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// Default sled page cache for one channel's index: 32 MiB.
pub const DEFAULT_INDEX_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Read handles kept open at once; older ones are dropped when exceeded.
const MAX_OPEN_READERS: usize = 16;

const TX_FILTER_SLOT: usize = BlockMetadataIndex::TransactionsFilter as usize;
const SIGNATURES_SLOT: usize = BlockMetadataIndex::Signatures as usize;
/// Fabric deprecated the LAST_CONFIG slot but older orderers still fill it.
const LAST_CONFIG_SLOT: usize = 1;

/// Tuning for [`BlockStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStoreOptions {
    /// Appends go to a new block file once the current one would grow past
    /// this many bytes. A block larger than the limit gets a file of its own.
    pub max_file_size: u64,
    /// Check every record's checksum in every block file on open, not only
    /// the last file's (the only one a crash can damage). Slower to open,
    /// for audits and after suspected disk trouble.
    pub verify_all_on_open: bool,
    /// sled page cache for the index, in bytes.
    pub index_cache_bytes: u64,
    /// Index every transaction id (for [`BlockStore::tx_location`] and the
    /// other look-ups by tx id). An orderer, which never looks blocks up by
    /// transaction, turns it off: a block's append then writes three index
    /// entries instead of one a transaction, and the tx-id look-ups find
    /// nothing.
    pub index_transactions: bool,
}

impl Default for BlockStoreOptions {
    fn default() -> Self {
        BlockStoreOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            verify_all_on_open: false,
            index_cache_bytes: DEFAULT_INDEX_CACHE_BYTES,
            index_transactions: true,
        }
    }
}

impl BlockStoreOptions {
    /// Checks the options can work.
    pub fn validate(&self) -> Result<()> {
        if self.max_file_size == 0 {
            return Err(LedgerError::InvalidOptions {
                reason: "max_file_size must be greater than zero",
            });
        }
        Ok(())
    }
}

/// Where a transaction sits in the chain, and how the committer judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxLocation {
    /// Number of the block holding the transaction.
    pub block_number: u64,
    /// Position of the envelope in the block's data.
    pub tx_index: u32,
    /// The `TxValidationCode` byte from the block's TRANSACTIONS_FILTER
    /// metadata (0 = VALID, also used when the block carries no filter, as
    /// blocks straight from the orderer do).
    pub validation_code: u8,
}

/// The answer of [`BlockStore::tx_location_or_wait`].
#[derive(Debug)]
pub enum TxLookup {
    /// The transaction is stored here.
    Stored(TxLocation),
    /// Not stored yet: resolves when it is.
    Pending(TxWait),
}

#[derive(Debug, Clone, Copy)]
struct Tip {
    height: u64,
    last_hash: Option<[u8; 32]>,
}

struct Writer {
    file: File,
    file_no: u32,
    size: u64,
    /// Set when an append failed after touching disk: nothing more is
    /// appended until the store is reopened and recovery has run.
    failed: bool,
}

/// A channel's blocks: append-only block files indexed in sled.
///
/// `Send + Sync`: share it behind an `Arc`. Appends are serialised by an
/// internal mutex; reads run concurrently with each other and with appends,
/// and never see a block before its index entries are in place.
///
/// All I/O is blocking (appends `fsync`): call it from a dedicated thread
/// or `spawn_blocking`, not from an async task.
pub struct BlockStore {
    dir: PathBuf,
    blocks_dir: PathBuf,
    max_file_size: u64,
    /// [`BlockStoreOptions::index_transactions`].
    index_transactions: bool,
    index: sled::Db,
    tip: RwLock<Tip>,
    writer: Mutex<Writer>,
    readers: RwLock<HashMap<u32, Arc<File>>>,
    height_tx: watch::Sender<u64>,
    /// Callers of [`tx_location_or_wait`](Self::tx_location_or_wait) whose
    /// transaction is not stored yet.
    tx_waiters: Arc<TxWaiters>,
    /// Stored tx ids, to answer "not stored" without an index read (only
    /// with [`BlockStoreOptions::index_transactions`]).
    tx_filter: Option<Arc<TxIdFilter>>,
    /// The thread adding the ids stored before open to `tx_filter`.
    filter_scan: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held (locked) for the store's lifetime; declared last so it is
    /// released only after the index has been dropped.
    _lock: File,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tip = *self.tip.read();
        f.debug_struct("BlockStore")
            .field("dir", &self.dir)
            .field("height", &tip.height)
            .finish_non_exhaustive()
    }
}

/// A block checked and serialised, ready to be written.
struct Prepared {
    number: u64,
    header_hash: [u8; 32],
    /// Record header followed by the block bytes.
    record: Vec<u8>,
    payload_len: u32,
    txs: Vec<TxEntry>,
}

struct TxEntry {
    tx_id: String,
    tx_index: u32,
    validation_code: u8,
}

/// Why a block does not continue the chain; mapped to an append error or,
/// during recovery, to a corruption issue.
enum ChainFault {
    MissingHeader,
    Number {
        expected: u64,
        got: u64,
    },
    PreviousHash {
        number: u64,
        expected: Vec<u8>,
        got: Vec<u8>,
    },
    DataHash {
        number: u64,
    },
}

impl ChainFault {
    fn into_append_error(self) -> LedgerError {
        match self {
            ChainFault::MissingHeader => LedgerError::MissingHeader,
            ChainFault::Number { expected, got } => LedgerError::WrongNumber { expected, got },
            ChainFault::PreviousHash {
                number,
                expected,
                got,
            } => LedgerError::WrongPreviousHash {
                number,
                expected,
                got,
            },
            ChainFault::DataHash { number } => LedgerError::WrongDataHash { number },
        }
    }

    fn into_issue(self) -> CorruptIssue {
        match self {
            ChainFault::MissingHeader => CorruptIssue::MissingHeader,
            ChainFault::Number { expected, got } => CorruptIssue::UnexpectedNumber {
                expected,
                found: got,
            },
            ChainFault::PreviousHash { number, .. } => CorruptIssue::BrokenHashChain { number },
            ChainFault::DataHash { number } => CorruptIssue::DataHashMismatch { number },
        }
    }
}

fn check_data_hash(block: &Block) -> std::result::Result<&BlockHeader, ChainFault> {
    let header = block.header.as_ref().ok_or(ChainFault::MissingHeader)?;
    let empty = BlockData::default();
    let computed = block_data_hash(block.data.as_ref().unwrap_or(&empty));
    if header.data_hash.as_slice() != computed.as_slice() {
        return Err(ChainFault::DataHash {
            number: header.number,
        });
    }
    Ok(header)
}

fn check_link(header: &BlockHeader, tip: &Tip) -> std::result::Result<(), ChainFault> {
    if header.number != tip.height {
        return Err(ChainFault::Number {
            expected: tip.height,
            got: header.number,
        });
    }
    let expected: &[u8] = match &tip.last_hash {
        Some(hash) => hash,
        None => &[],
    };
    if header.previous_hash.as_slice() != expected {
        return Err(ChainFault::PreviousHash {
            number: header.number,
            expected: expected.to_vec(),
            got: header.previous_hash.clone(),
        });
    }
    Ok(())
}

/// The tx id in an envelope's channel header, if it decodes and is set.
fn envelope_tx_id(bytes: &[u8]) -> Option<String> {
    twill_protos::wire::envelope_tx_id(bytes)
}

/// The transactions of a block to index: first occurrence of each tx id
/// within the block, with its validation code.
fn block_txs(block: &Block) -> Vec<TxEntry> {
    let Some(data) = &block.data else {
        return Vec::new();
    };
    let filter: &[u8] = block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(TX_FILTER_SLOT))
        .map_or(&[], Vec::as_slice);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(data.data.len());
    for (i, env) in data.data.iter().enumerate() {
        let Ok(tx_index) = u32::try_from(i) else {
            break;
        };
        let Some(tx_id) = envelope_tx_id(env) else {
            continue;
        };
        if !seen.insert(tx_id.clone()) {
            continue;
        }
        out.push(TxEntry {
            tx_id,
            tx_index,
            validation_code: filter.get(i).copied().unwrap_or(0),
        });
    }
    out
}

/// The locations of block `number`'s transactions ([`block_txs`] keeps the
/// first occurrence of each id; an id stored by an earlier block keeps that
/// location, and nobody can still be waiting for it).
fn stored_txs(number: u64, txs: &[TxEntry]) -> impl Iterator<Item = (&str, TxLocation)> {
    txs.iter().map(move |tx| {
        (
            tx.tx_id.as_str(),
            TxLocation {
                block_number: number,
                tx_index: tx.tx_index,
                validation_code: tx.validation_code,
            },
        )
    })
}

/// Writes a block's index entries and the new checkpoint in one atomic
/// batch. Tx ids already indexed keep their first location; `known_new`
/// (when given, one flag per tx) marks ids known not to be indexed yet,
/// which skip that check.
fn index_block(
    db: &sled::Db,
    number: u64,
    header_hash: [u8; 32],
    loc: BlockLoc,
    txs: &[TxEntry],
    known_new: Option<&[bool]>,
) -> Result<()> {
    let mut batch = sled::Batch::default();
    batch.insert(&index::block_key(number)[..], &loc.encode()[..]);
    batch.insert(
        &index::hash_key(&header_hash)[..],
        &index::encode_u64(number)[..],
    );
    for (i, tx) in txs.iter().enumerate() {
        let key = index::tx_key(&tx.tx_id);
        let new = known_new.is_some_and(|flags| flags.get(i) == Some(&true));
        if !new && db.contains_key(&key)? {
            debug!(target: "ledger::blockstore", tx_id = %tx.tx_id, block = number, "duplicate tx id; keeping first occurrence");
            continue;
        }
        let value = index::encode_tx(TxLocation {
            block_number: number,
            tx_index: tx.tx_index,
            validation_code: tx.validation_code,
        });
        batch.insert(key, &value[..]);
    }
    let checkpoint = Checkpoint {
        height: number + 1,
        last_hash: header_hash,
    };
    batch.insert(index::CHECKPOINT_KEY, &checkpoint.encode()[..]);
    db.apply_batch(batch)?;
    Ok(())
}

fn corrupt(file: &Path, offset: u64, issue: CorruptIssue) -> LedgerError {
    LedgerError::Corrupt {
        file: file.to_path_buf(),
        offset,
        issue,
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LedgerError::io(dir, e))
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(|e| LedgerError::io(path, e))?.len())
}

/// How long [`open_index`] waits for sled's own lock.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Takes the store's lock file, `<dir>/LOCK`, so that only one
/// [`BlockStore`] at a time works on a directory.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LedgerError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::io(&path, e)),
    }
}

/// Opens the sled index. We hold the store's own lock, so nobody else has
/// the index open; but sled's background threads may still hold its file
/// lock for a moment after a previous `BlockStore` in this process was
/// dropped. Wait that out instead of failing.
fn open_index(index_dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(index_dir)
        .cache_capacity(cache_bytes);
    Ok(crate::open_sled_waiting(&config, SLED_LOCK_WAIT)?)
}

/// Numbers of the block files in `blocks_dir`, ascending.
fn list_block_files(blocks_dir: &Path) -> Result<Vec<u32>> {
    let mut files = Vec::new();
    let entries = fs::read_dir(blocks_dir).map_err(|e| LedgerError::io(blocks_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LedgerError::io(blocks_dir, e))?;
        let name = entry.file_name();
        match name.to_str().and_then(format::parse_block_file_name) {
            Some(n) => files.push(n),
            None => {
                warn!(target: "ledger::blockstore", file = ?entry.path(), "ignoring unknown file in blocks directory")
            }
        }
    }
    files.sort_unstable();
    Ok(files)
}

impl BlockStore {
    /// Opens (creating if needed) the block store in `dir` with default
    /// options, running crash recovery.
    pub fn open(dir: &Path) -> Result<BlockStore> {
        BlockStore::open_with(dir, BlockStoreOptions::default())
    }

    /// Opens (creating if needed) the block store in `dir`, running crash
    /// recovery: see the crate docs for what it repairs and what it refuses.
    pub fn open_with(dir: &Path, opts: BlockStoreOptions) -> Result<BlockStore> {
        opts.validate()?;
        let blocks_dir = dir.join("blocks");
        let index_dir = dir.join("index");
        fs::create_dir_all(&blocks_dir).map_err(|e| LedgerError::io(&blocks_dir, e))?;
        sync_dir(dir)?;
        let lock = lock_dir(dir)?;
        let index = open_index(&index_dir, opts.index_cache_bytes)?;
        match index.get(index::VERSION_KEY)? {
            None => {
                index.insert(
                    index::VERSION_KEY,
                    &index::encode_u64(index::FORMAT_VERSION),
                )?;
            }
            Some(v) => {
                let found = index::decode_u64("version", &v)?;
                if found != index::FORMAT_VERSION {
                    return Err(LedgerError::IndexCorrupt {
                        issue: IndexIssue::UnsupportedVersion { found },
                    });
                }
            }
        }

        let recovery = Recovery {
            blocks_dir: &blocks_dir,
            index: &index,
            opts: &opts,
        };
        let (tip, writer) = recovery.run()?;
        let (height_tx, _) = watch::channel(tip.height);
        let (tx_filter, filter_scan) = if opts.index_transactions {
            let filter = Arc::new(TxIdFilter::new());
            let scan = txfilter::spawn_scan(index.clone(), index::TX_PREFIX, filter.clone());
            (Some(filter), scan)
        } else {
            (None, None)
        };
        info!(target: "ledger::blockstore", dir = %dir.display(), height = tip.height, "block store open");
        Ok(BlockStore {
            dir: dir.to_path_buf(),
            blocks_dir,
            max_file_size: opts.max_file_size,
            index_transactions: opts.index_transactions,
            index,
            tip: RwLock::new(tip),
            writer: Mutex::new(writer),
            readers: RwLock::new(HashMap::new()),
            height_tx,
            tx_waiters: Arc::default(),
            tx_filter,
            filter_scan: Mutex::new(filter_scan),
            _lock: lock,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of blocks stored, which is also the next block's number.
    pub fn height(&self) -> u64 {
        self.tip.read().height
    }

    /// Header hash of the last block; `None` while the store is empty.
    pub fn last_block_hash(&self) -> Option<[u8; 32]> {
        self.tip.read().last_hash
    }

    /// Appends the next block and indexes it.
    ///
    /// The block's number must equal [`height`](Self::height), its
    /// `previous_hash` must be [`last_block_hash`](Self::last_block_hash)
    /// (empty for block 0) and its `data_hash` must match its data; otherwise
    /// it is refused with `WrongNumber`, `WrongPreviousHash` or
    /// `WrongDataHash` and the store is unchanged. When this returns `Ok` the
    /// block is on disk (`fdatasync`ed) and visible to readers, and
    /// subscribers have been told the new height.
    pub fn append(&self, block: &Block) -> Result<()> {
        check_data_hash(block).map_err(ChainFault::into_append_error)?;
        self.append_prepared(block)
    }

    /// Like [`append`](Self::append) but trusts the block's `data_hash`
    /// instead of re-hashing its data: for a writer that has just built the
    /// block and computed that hash itself (the orderer's hot path). The
    /// number and previous-hash checks still apply.
    pub fn append_built(&self, block: &Block) -> Result<()> {
        self.append_prepared(block)
    }

    fn append_prepared(&self, block: &Block) -> Result<()> {
        let prepared = self.prepare(block)?;
        let mut writer = self.writer.lock();
        if writer.failed {
            return Err(LedgerError::WriterFailed);
        }
        let tip = *self.tip.read();
        let header = block.header.as_ref().ok_or(LedgerError::MissingHeader)?;
        check_link(header, &tip).map_err(ChainFault::into_append_error)?;

        let record_len = prepared.record.len() as u64;
        if writer.size > 0 && writer.size.saturating_add(record_len) > self.max_file_size {
            if let Err(e) = self.roll(&mut writer) {
                writer.failed = true;
                return Err(e);
            }
        }

        let offset = writer.size;
        let path = self.file_path(writer.file_no);
        if let Err(e) = writer.file.write_all_at(&prepared.record, offset) {
            // Cut the partial record so the next append starts clean; if even
            // that fails, leave it to recovery.
            if writer.file.set_len(offset).is_err() {
                writer.failed = true;
            }
            return Err(LedgerError::io(path, e));
        }
        if let Err(e) = writer.file.sync_data() {
            // After a failed fsync the page cache state is unknown.
            writer.failed = true;
            return Err(LedgerError::io(path, e));
        }
        writer.size = offset + record_len;

        let loc = BlockLoc {
            file: writer.file_no,
            offset,
            len: prepared.payload_len,
        };
        // Ids the filter rules out are new (no index read for the
        // first-location check). They go into the filter before the index:
        // the filter may say "maybe" for an id the index lacks, never
        // "absent" for one it holds.
        let known_new: Option<Vec<bool>> = self
            .tx_filter
            .as_ref()
            .map(|filter| filter.insert_all(prepared.txs.iter().map(|tx| tx.tx_id.as_bytes())));
        if let Err(e) = index_block(
            &self.index,
            prepared.number,
            prepared.header_hash,
            loc,
            &prepared.txs,
            known_new.as_deref(),
        ) {
            // The block is durable but unindexed: recovery will index it.
            writer.failed = true;
            return Err(e);
        }

        let height = prepared.number + 1;
        *self.tip.write() = Tip {
            height,
            last_hash: Some(prepared.header_hash),
        };
        // Sent under the writer lock so that subscribers never see the
        // height go backwards when appends race.
        self.height_tx.send_replace(height);
        // Also under the writer lock: a waiter must hear of the block that
        // first stored its id, not of a racing later one repeating it.
        self.tx_waiters
            .notify(stored_txs(prepared.number, &prepared.txs));
        drop(writer);
        debug!(target: "ledger::blockstore", block = prepared.number, bytes = record_len, txs = prepared.txs.len(), "block appended");
        Ok(())
    }

    /// Serialises the block and extracts what the index needs.
    fn prepare(&self, block: &Block) -> Result<Prepared> {
        let header = block.header.as_ref().ok_or(LedgerError::MissingHeader)?;
        let mut record = Vec::with_capacity(RECORD_HEADER_LEN + block.encoded_len());
        record.resize(RECORD_HEADER_LEN, 0);
        block
            .encode(&mut record)
            .map_err(|_| LedgerError::BlockTooLarge {
                len: block.encoded_len(),
                max: format::MAX_RECORD_PAYLOAD,
            })?;
        let record_header = RecordHeader::for_payload(&record[RECORD_HEADER_LEN..])?;
        record[..RECORD_HEADER_LEN].copy_from_slice(&record_header.to_bytes());
        Ok(Prepared {
            number: header.number,
            header_hash: block_header_hash(header),
            record,
            payload_len: record_header.len,
            txs: if self.index_transactions {
                block_txs(block)
            } else {
                Vec::new()
            },
        })
    }

    /// Starts the next block file.
    fn roll(&self, writer: &mut Writer) -> Result<()> {
        let next = writer.file_no.checked_add(1).ok_or_else(|| {
            LedgerError::io(
                &self.blocks_dir,
                std::io::Error::other("block file numbers exhausted"),
            )
        })?;
        let path = self.file_path(next);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LedgerError::io(&path, e))?;
        // The new directory entry must survive a crash with the data in it.
        sync_dir(&self.blocks_dir)?;
        info!(target: "ledger::blockstore", file = %path.display(), "rolled to new block file");
        *writer = Writer {
            file,
            file_no: next,
            size: 0,
            failed: false,
        };
        Ok(())
    }

    fn file_path(&self, file_no: u32) -> PathBuf {
        self.blocks_dir.join(format::block_file_name(file_no))
    }

    fn reader(&self, file_no: u32) -> Result<Arc<File>> {
        if let Some(file) = self.readers.read().get(&file_no) {
            return Ok(Arc::clone(file));
        }
        let path = self.file_path(file_no);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(&path, 0, CorruptIssue::MissingFile));
            }
            Err(e) => return Err(LedgerError::io(&path, e)),
        };
        let mut readers = self.readers.write();
        if readers.len() >= MAX_OPEN_READERS {
            readers.clear();
        }
        Ok(Arc::clone(readers.entry(file_no).or_insert(file)))
    }

    /// The location of block `number`, if it is below the height.
    fn block_loc(&self, number: u64) -> Result<Option<BlockLoc>> {
        if number >= self.height() {
            return Ok(None);
        }
        match self.index.get(index::block_key(number))? {
            Some(v) => Ok(Some(BlockLoc::decode(&v)?)),
            None => Err(LedgerError::IndexCorrupt {
                issue: IndexIssue::MissingBlockEntry { number },
            }),
        }
    }

    fn read_payload(&self, loc: BlockLoc) -> Result<Vec<u8>> {
        let file = self.reader(loc.file)?;
        let path = self.file_path(loc.file);
        let len = file_len(&file, &path)?;
        match records::read_record_at(&file, &path, loc.offset, len)? {
            Scanned::Record { header, payload } if header.len == loc.len => Ok(payload),
            Scanned::Record { header, .. } => Err(corrupt(
                &path,
                loc.offset,
                CorruptIssue::LengthMismatch {
                    indexed: loc.len,
                    stored: header.len,
                },
            )),
            Scanned::Damaged(damage) => Err(corrupt(&path, loc.offset, damage.issue())),
            Scanned::End => Err(corrupt(
                &path,
                loc.offset,
                CorruptIssue::TruncatedRecord {
                    needed: RECORD_HEADER_LEN as u64 + u64::from(loc.len),
                    available: 0,
                },
            )),
        }
    }

    /// The serialized `common.Block` bytes of block `number` exactly as
    /// appended (checksum verified), or `None` at or past the height. Deliver
    /// can send these without decoding and re-encoding.
    pub fn block_bytes(&self, number: u64) -> Result<Option<Vec<u8>>> {
        match self.block_loc(number)? {
            Some(loc) => self.read_payload(loc).map(Some),
            None => Ok(None),
        }
    }

    /// Block `number`, or `None` at or past the height.
    pub fn block(&self, number: u64) -> Result<Option<Block>> {
        let Some(loc) = self.block_loc(number)? else {
            return Ok(None);
        };
        let payload = self.read_payload(loc)?;
        let path = self.file_path(loc.file);
        let block = Block::decode(payload.as_slice())
            .map_err(|e| corrupt(&path, loc.offset, CorruptIssue::Undecodable(e)))?;
        let found = block
            .header
            .as_ref()
            .ok_or_else(|| corrupt(&path, loc.offset, CorruptIssue::MissingHeader))?
            .number;
        if found != number {
            return Err(corrupt(
                &path,
                loc.offset,
                CorruptIssue::UnexpectedNumber {
                    expected: number,
                    found,
                },
            ));
        }
        Ok(Some(block))
    }

    /// The block whose header hash is `hash`.
    pub fn block_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Block>> {
        match self.index.get(index::hash_key(hash))? {
            Some(v) => self.block(index::decode_u64("block by hash", &v)?),
            None => Ok(None),
        }
    }

    /// Where the transaction with id `tx_id` was first stored (always `None`
    /// for a store opened without
    /// [`index_transactions`](BlockStoreOptions::index_transactions)).
    pub fn tx_location(&self, tx_id: &str) -> Result<Option<TxLocation>> {
        if !self.may_hold_tx(tx_id) {
            return Ok(None);
        }
        match self.index.get(index::tx_key(tx_id))? {
            Some(v) => Ok(Some(index::decode_tx(&v)?)),
            None => Ok(None),
        }
    }

    /// Where the transaction with id `tx_id` is stored, or, if it is not
    /// yet, a [`TxWait`] that resolves when a block holding it is appended
    /// (to `None` if the store closes first). The waiter is registered
    /// before the index is read, so an append racing with this call is
    /// never missed. A store opened without
    /// [`index_transactions`](BlockStoreOptions::index_transactions) always
    /// answers with a wait that only ends when the store closes.
    pub fn tx_location_or_wait(&self, tx_id: &str) -> Result<TxLookup> {
        let wait = self.tx_waiters.register(tx_id);
        // Dropping `wait` on the way out unregisters it.
        Ok(match self.tx_location(tx_id)? {
            Some(location) => TxLookup::Stored(location),
            None => TxLookup::Pending(wait),
        })
    }

    /// The block holding the first transaction with id `tx_id`.
    pub fn block_by_tx_id(&self, tx_id: &str) -> Result<Option<Block>> {
        match self.tx_location(tx_id)? {
            Some(loc) => self.block(loc.block_number),
            None => Ok(None),
        }
    }

    /// Whether a transaction with id `tx_id` is stored.
    pub fn contains_tx(&self, tx_id: &str) -> Result<bool> {
        if !self.may_hold_tx(tx_id) {
            return Ok(false);
        }
        Ok(self.index.contains_key(index::tx_key(tx_id))?)
    }

    /// Whether look-ups of tx ids that are not stored are answered from
    /// memory: true once the background scan of the ids stored before the
    /// store opened has finished (never for a store without the tx index).
    /// Until then every look-up reads the index; the answers are the same.
    pub fn tx_filter_ready(&self) -> bool {
        self.tx_filter
            .as_ref()
            .is_some_and(|filter| filter.is_ready())
    }

    /// False if the tx-id filter is sure `tx_id` is not indexed.
    fn may_hold_tx(&self, tx_id: &str) -> bool {
        self.tx_filter
            .as_ref()
            .is_none_or(|filter| filter.may_contain(tx_id.as_bytes()))
    }

    /// A receiver of the height, updated after every append; for Deliver
    /// streams waiting for the next block.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.height_tx.subscribe()
    }

    /// Blocks from `start` on. The iterator ends at the height as it is
    /// when each next block is asked for, so it also yields blocks appended
    /// while iterating; it ends after the first error.
    pub fn iter_from(&self, start: u64) -> BlockIter<'_> {
        BlockIter {
            store: self,
            next: start,
            done: false,
        }
    }

    /// The channel's latest config block: the one the last block's metadata
    /// names (see [`last_config_index`]), else block 0. `None` while empty.
    pub fn last_config_block(&self) -> Result<Option<Block>> {
        let height = self.height();
        let Some(number) = height.checked_sub(1) else {
            return Ok(None);
        };
        let Some(last) = self.block(number)? else {
            return Ok(None);
        };
        let index = last_config_index(&last)?.unwrap_or(0);
        if index >= height {
            return Err(LedgerError::BadLastConfig {
                number,
                reason: LastConfigIssue::PastHeight { index, height },
            });
        }
        self.block(index)
    }

    /// Flushes the index to disk. Appends do not need this for durability
    /// (recovery rebuilds index entries from the block files); it shortens
    /// the next open's recovery.
    pub fn flush_index(&self) -> Result<()> {
        self.index.flush()?;
        Ok(())
    }
}

impl Drop for BlockStore {
    fn drop(&mut self) {
        self.tx_waiters.close();
        // The scan holds a handle on the index: end it before the index
        // (and the directory lock) are released.
        if let Some(filter) = &self.tx_filter {
            filter.stop();
        }
        if let Some(scan) = self.filter_scan.lock().take() {
            let _ = scan.join();
        }
        if let Err(e) = self.index.flush() {
            warn!(target: "ledger::blockstore", error = %e, "index flush on close failed");
        }
    }
}

/// Iterator over stored blocks, from [`BlockStore::iter_from`].
#[derive(Debug)]
pub struct BlockIter<'a> {
    store: &'a BlockStore,
    next: u64,
    done: bool,
}

impl Iterator for BlockIter<'_> {
    type Item = Result<Block>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.store.block(self.next) {
            Ok(Some(block)) => {
                self.next += 1;
                Some(Ok(block))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The number of the last config block that `block`'s metadata names:
/// `OrdererBlockMetadata.last_config.index` inside the SIGNATURES slot's
/// `Metadata.value` (Fabric 2.x), else the deprecated LAST_CONFIG slot's
/// `LastConfig.index`. `None` when neither slot carries it.
pub fn last_config_index(block: &Block) -> Result<Option<u64>> {
    let number = block.header.as_ref().map_or(0, |h| h.number);
    let slots: &[Vec<u8>] = block.metadata.as_ref().map_or(&[], |m| &m.metadata);
    let bad = |slot: usize, source: prost::DecodeError| LedgerError::BadLastConfig {
        number,
        reason: LastConfigIssue::Undecodable { slot, source },
    };
    if let Some(bytes) = slots.get(SIGNATURES_SLOT).filter(|b| !b.is_empty()) {
        let metadata = Metadata::decode(bytes.as_slice()).map_err(|e| bad(SIGNATURES_SLOT, e))?;
        if !metadata.value.is_empty() {
            let orderer = OrdererBlockMetadata::decode(metadata.value.as_slice())
                .map_err(|e| bad(SIGNATURES_SLOT, e))?;
            if let Some(last_config) = orderer.last_config {
                return Ok(Some(last_config.index));
            }
        }
    }
    if let Some(bytes) = slots.get(LAST_CONFIG_SLOT).filter(|b| !b.is_empty()) {
        let metadata = Metadata::decode(bytes.as_slice()).map_err(|e| bad(LAST_CONFIG_SLOT, e))?;
        let last_config =
            LastConfig::decode(metadata.value.as_slice()).map_err(|e| bad(LAST_CONFIG_SLOT, e))?;
        return Ok(Some(last_config.index));
    }
    Ok(None)
}

/// Brings the index in line with the block files on open.
struct Recovery<'a> {
    blocks_dir: &'a Path,
    index: &'a sled::Db,
    opts: &'a BlockStoreOptions,
}

impl Recovery<'_> {
    fn path(&self, file_no: u32) -> PathBuf {
        self.blocks_dir.join(format::block_file_name(file_no))
    }

    fn run(&self) -> Result<(Tip, Writer)> {
        let files = list_block_files(self.blocks_dir)?;
        for (expected, found) in files.iter().enumerate() {
            if u32::try_from(expected).ok() != Some(*found) {
                let missing = u32::try_from(expected).unwrap_or(u32::MAX);
                return Err(corrupt(&self.path(missing), 0, CorruptIssue::MissingFile));
            }
        }
        let last_file = files.last().copied();

        let checkpoint = match self.index.get(index::CHECKPOINT_KEY)? {
            Some(v) => Some(Checkpoint::decode(&v)?),
            None => None,
        };
        let (mut tip, start_file, start_offset) = match checkpoint {
            Some(cp) if cp.height > 0 => self.check_checkpoint(cp, last_file)?,
            _ => (
                Tip {
                    height: 0,
                    last_hash: None,
                },
                0,
                0,
            ),
        };

        let last_file = match last_file {
            Some(n) => n,
            None => {
                let path = self.path(0);
                File::create(&path).map_err(|e| LedgerError::io(&path, e))?;
                sync_dir(self.blocks_dir)?;
                0
            }
        };

        if self.opts.verify_all_on_open {
            for file_no in 0..start_file {
                self.verify_indexed(file_no, None)?;
            }
        }
        if self.opts.verify_all_on_open || start_file == last_file {
            self.verify_indexed(start_file, Some(start_offset))?;
        }

        let indexed_before = tip.height;
        for file_no in start_file..=last_file {
            let from = if file_no == start_file {
                start_offset
            } else {
                0
            };
            self.reindex_file(file_no, from, file_no == last_file, &mut tip)?;
        }
        if tip.height > indexed_before {
            info!(target: "ledger::blockstore", from = indexed_before, to = tip.height, "re-indexed blocks found beyond the index checkpoint");
            self.index.flush()?;
        }

        let path = self.path(last_file);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LedgerError::io(&path, e))?;
        let size = file_len(&file, &path)?;
        Ok((
            tip,
            Writer {
                file,
                file_no: last_file,
                size,
                failed: false,
            },
        ))
    }

    /// Checks the checkpoint's last block is really on disk with the hash
    /// the checkpoint recorded; returns the tip and the position after it.
    fn check_checkpoint(&self, cp: Checkpoint, last_file: Option<u32>) -> Result<(Tip, u32, u64)> {
        let number = cp.height - 1;
        let loc = match self.index.get(index::block_key(number))? {
            Some(v) => BlockLoc::decode(&v)?,
            None => {
                return Err(LedgerError::IndexCorrupt {
                    issue: IndexIssue::MissingBlockEntry { number },
                })
            }
        };
        let path = self.path(loc.file);
        let end = loc
            .offset
            .saturating_add(RECORD_HEADER_LEN as u64 + u64::from(loc.len));
        let file = if last_file.is_some_and(|last| loc.file <= last) {
            Some(File::open(&path).map_err(|e| LedgerError::io(&path, e))?)
        } else {
            None
        };
        let len = match &file {
            Some(f) => file_len(f, &path)?,
            None => 0,
        };
        let Some(file) = file.filter(|_| end <= len) else {
            return Err(corrupt(
                &path,
                loc.offset,
                CorruptIssue::IndexedRecordMissing {
                    number,
                    file_len: len,
                },
            ));
        };
        let payload = match records::read_record_at(&file, &path, loc.offset, len)? {
            Scanned::Record { header, payload } if header.len == loc.len => payload,
            Scanned::Record { header, .. } => {
                return Err(corrupt(
                    &path,
                    loc.offset,
                    CorruptIssue::LengthMismatch {
                        indexed: loc.len,
                        stored: header.len,
                    },
                ))
            }
            Scanned::Damaged(d) => return Err(corrupt(&path, loc.offset, d.issue())),
            Scanned::End => {
                return Err(corrupt(
                    &path,
                    loc.offset,
                    CorruptIssue::IndexedRecordMissing {
                        number,
                        file_len: len,
                    },
                ))
            }
        };
        let block = Block::decode(payload.as_slice())
            .map_err(|e| corrupt(&path, loc.offset, CorruptIssue::Undecodable(e)))?;
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| corrupt(&path, loc.offset, CorruptIssue::MissingHeader))?;
        if header.number != number {
            return Err(corrupt(
                &path,
                loc.offset,
                CorruptIssue::UnexpectedNumber {
                    expected: number,
                    found: header.number,
                },
            ));
        }
        if block_header_hash(header) != cp.last_hash {
            return Err(corrupt(
                &path,
                loc.offset,
                CorruptIssue::CheckpointHashMismatch { number },
            ));
        }
        Ok((
            Tip {
                height: cp.height,
                last_hash: Some(cp.last_hash),
            },
            loc.file,
            end,
        ))
    }

    /// Checks the records of an indexed region (`0..end`, or the whole
    /// file) are intact and end exactly at `end`. No repair here: indexed
    /// blocks were durable, so any damage is corruption.
    fn verify_indexed(&self, file_no: u32, end: Option<u64>) -> Result<()> {
        let path = self.path(file_no);
        let file = File::open(&path).map_err(|e| LedgerError::io(&path, e))?;
        let len = file_len(&file, &path)?;
        let end = end.unwrap_or(len);
        let mut offset = 0;
        while offset < end {
            match records::read_record_at(&file, &path, offset, end)? {
                Scanned::Record { header, .. } => offset += header.record_len(),
                Scanned::Damaged(d) => return Err(corrupt(&path, offset, d.issue())),
                Scanned::End => break,
            }
        }
        Ok(())
    }

    /// Indexes the records of one file from `from` on, checking each
    /// continues the chain. On the last file, a torn tail is cut off.
    fn reindex_file(&self, file_no: u32, from: u64, is_last: bool, tip: &mut Tip) -> Result<()> {
        let path = self.path(file_no);
        let file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(&path)
            .map_err(|e| LedgerError::io(&path, e))?;
        let len = file_len(&file, &path)?;
        let mut offset = from;
        loop {
            match records::read_record_at(&file, &path, offset, len)? {
                Scanned::End => return Ok(()),
                Scanned::Record { header, payload } => {
                    let block = Block::decode(payload.as_slice())
                        .map_err(|e| corrupt(&path, offset, CorruptIssue::Undecodable(e)))?;
                    let block_header = check_data_hash(&block)
                        .and_then(|h| check_link(h, tip).map(|()| h))
                        .map_err(|fault| corrupt(&path, offset, fault.into_issue()))?;
                    let number = block_header.number;
                    let header_hash = block_header_hash(block_header);
                    let loc = BlockLoc {
                        file: file_no,
                        offset,
                        len: header.len,
                    };
                    let txs = if self.opts.index_transactions {
                        block_txs(&block)
                    } else {
                        Vec::new()
                    };
                    index_block(self.index, number, header_hash, loc, &txs, None)?;
                    *tip = Tip {
                        height: number + 1,
                        last_hash: Some(header_hash),
                    };
                    offset += header.record_len();
                }
                Scanned::Damaged(damage) => {
                    if is_last && records::is_torn_tail(&file, &path, damage, offset, len)? {
                        warn!(
                            target: "ledger::blockstore",
                            file = %path.display(),
                            offset,
                            dropped_bytes = len - offset,
                            issue = %damage.issue(),
                            "cutting torn record at the tail of the last block file"
                        );
                        file.set_len(offset)
                            .and_then(|()| file.sync_all())
                            .map_err(|e| LedgerError::io(&path, e))?;
                        return Ok(());
                    }
                    return Err(corrupt(&path, offset, damage.issue()));
                }
            }
        }
    }
}
