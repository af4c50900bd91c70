//! The real committer: validation, state, history and crash recovery.
//!
//! [`LedgerCommitter`] is the [`Committer`] the peer runs with. For each
//! channel it keeps a [`StateDb`] next to the block store
//! (`<ledger root>/<channel>/state/`) and a [`BlockValidator`]. A block
//! goes through:
//!
//! 1. [`BlockValidator::verify_block`]: data hash and orderer signatures
//!    against the config in force (not for block 0, which join supplies);
//! 2. [`BlockValidator::validate`]: one `TxValidationCode` per transaction
//!    and the writes of the valid ones;
//! 3. the codes go into the TRANSACTIONS_FILTER and the block is appended
//!    to the block store (`fdatasync`ed);
//! 4. state writes, history and the savepoint are committed in one atomic
//!    sled batch ([`StateDb::commit`]);
//! 5. a config block replaces the channel config for the next block.
//!
//! # Pipelining
//!
//! Step 4 runs on a background thread while the next block is verified and
//! validated: the validator reads the state through the previous block's
//! batch (keys it writes come from the batch, the rest from the database),
//! which gives the same answers as the committed state would. Before the
//! next block's state commit starts, the previous one is waited for, so
//! state commits happen in block order and the savepoint only moves
//! forward. [`ChannelLedger::state`] waits for the running commit, so
//! readers always see whole blocks.
//!
//! The signature checks of the next blocks also run ahead: a block source
//! that has received blocks beyond the one being committed hands them to
//! [`Committer::prepare`], which starts [`BlockValidator::prepare`] on the
//! validation pool (up to [`LOOKAHEAD`] blocks). When the block's turn
//! comes, only the state-dependent checks are left. A prepared result is
//! used only if it was made for the same block under the config sequence in
//! force; a config block in between makes the next block be checked again.
//!
//! # Recovery
//!
//! The block store is the source of truth. After a crash the state DB's
//! savepoint may be behind the block store (step 4 not done, or not yet
//! flushed by sled). When a channel is opened, every block past the
//! savepoint is validated again against the config and state in force
//! before it — with the tx-id index limited to earlier blocks, so a block's
//! own transactions do not count as duplicates — and its writes are
//! committed. Validation is deterministic, so the codes equal those in the
//! stored TRANSACTIONS_FILTER; a difference stops the open with an error
//! rather than committing a state no other peer has.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tracing::{info, warn};
use twill_configtx::channel::ChannelConfig;
use twill_ledger::state::{Height, KeyWrite, StateDb, UpdateBatch};
use twill_ledger::{BlockStore, LedgerError};
use twill_protos::common::Block;

use crate::blocks;
use crate::channel::{config_of, Channel, CommitError, CommitOutcome, Committer};
use crate::validation::{
    set_tx_filter, tx_filter, BlockValidator, PreparedBlock, StateAccessError, StateView, TxIdIndex,
};

const LOG: &str = "peer::committer";

/// Blocks past the one being committed whose checks may run ahead.
pub const LOOKAHEAD: usize = 4;

/// Folder of a channel's state database inside its ledger folder.
pub const STATE_DIR: &str = "state";

/// The per-channel handles of the committer.
pub struct ChannelLedger {
    state: Arc<StateDb>,
    validator: BlockValidator,
    /// The state commit of the last block, running in the background.
    pending: Mutex<Option<Arc<PendingCommit>>>,
    /// Blocks whose state-independent checks were started ahead, by number.
    prepared: Mutex<Vec<(u64, Arc<PrepareSlot>)>>,
}

/// The result of [`BlockValidator::prepare`] running on the pool.
#[derive(Default)]
struct PrepareSlot {
    /// `None` while running; then the result (`None` if it failed: the
    /// block is checked again in its turn and reports the error there).
    done: Mutex<Option<Option<PreparedBlock>>>,
    cv: Condvar,
}

impl PrepareSlot {
    fn finish(&self, result: Option<PreparedBlock>) {
        *self.done.lock() = Some(result);
        self.cv.notify_all();
    }

    fn wait(&self) -> Option<PreparedBlock> {
        let mut done = self.done.lock();
        loop {
            if let Some(result) = done.take() {
                return result;
            }
            self.cv.wait(&mut done);
        }
    }
}

impl ChannelLedger {
    /// The channel's state database (for queries and simulation), once the
    /// last committed block's writes are in it.
    pub fn state(&self) -> &Arc<StateDb> {
        if let Err(e) = self.wait_pending() {
            warn!(target: LOG, error = %e, "a background state commit failed");
        }
        &self.state
    }

    /// Waits for the background state commit, if any.
    fn wait_pending(&self) -> Result<(), String> {
        let pending = self.pending.lock().take();
        match pending {
            Some(p) => p.wait(),
            None => Ok(()),
        }
    }
}

/// A block's state commit running on its own thread while the next block
/// is validated (see the module docs, "Pipelining").
struct PendingCommit {
    block: u64,
    batch: UpdateBatch,
    done: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
}

impl PendingCommit {
    fn start(state: Arc<StateDb>, block: u64, batch: UpdateBatch) -> Arc<PendingCommit> {
        let pending = Arc::new(PendingCommit {
            block,
            batch,
            done: Mutex::new(None),
            cv: Condvar::new(),
        });
        let job = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("state-commit".into())
            .spawn(move || {
                let result = state
                    .commit(&job.batch, job.block)
                    .map_err(|e| format!("block {}: state commit: {e}", job.block));
                *job.done.lock() = Some(result);
                job.cv.notify_all();
            });
        if let Err(e) = spawned {
            *pending.done.lock() = Some(Err(format!("starting the state commit thread: {e}")));
        }
        pending
    }

    fn wait(&self) -> Result<(), String> {
        let mut done = self.done.lock();
        loop {
            if let Some(result) = done.as_ref() {
                return result.clone();
            }
            self.cv.wait(&mut done);
        }
    }
}

/// Validates and commits blocks with state and history (see the
/// [module docs](self)).
pub struct LedgerCommitter {
    threads: usize,
    channels: Mutex<HashMap<String, Arc<ChannelLedger>>>,
}

impl std::fmt::Debug for LedgerCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerCommitter")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl LedgerCommitter {
    /// A committer validating on `threads` threads per channel (0 = one per
    /// core).
    pub fn new(threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        LedgerCommitter {
            threads,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The handles of an opened channel.
    pub fn channel(&self, id: &str) -> Option<Arc<ChannelLedger>> {
        self.channels.lock().get(id).cloned()
    }

    fn ledger_of(&self, channel: &Channel) -> Result<Arc<ChannelLedger>, CommitError> {
        self.channel(channel.id())
            .ok_or_else(|| CommitError::Other {
                channel: channel.id().to_string(),
                number: channel.height(),
                reason: "the channel's state database is not open".into(),
            })
    }
}

impl Default for LedgerCommitter {
    fn default() -> Self {
        LedgerCommitter::new(0)
    }
}

fn other(channel: &Channel, number: u64, reason: impl std::fmt::Display) -> CommitError {
    CommitError::Other {
        channel: channel.id().to_string(),
        number,
        reason: reason.to_string(),
    }
}

impl Committer for LedgerCommitter {
    fn open_channel(&self, channel: &Channel) -> Result<(), CommitError> {
        let dir = channel.store().dir().join(STATE_DIR);
        let state = StateDb::open(&dir).map_err(|e| {
            other(
                channel,
                channel.height(),
                format!("opening {}: {e}", dir.display()),
            )
        })?;
        let ledger = Arc::new(ChannelLedger {
            state: Arc::new(state),
            validator: BlockValidator::new(channel.id(), self.threads),
            pending: Mutex::new(None),
            prepared: Mutex::new(Vec::new()),
        });
        recover(channel, &ledger)?;
        self.channels
            .lock()
            .insert(channel.id().to_string(), ledger);
        Ok(())
    }

    fn state(&self, channel: &str) -> Option<Arc<StateDb>> {
        self.channel(channel).map(|ledger| ledger.state().clone())
    }

    fn prepare(&self, channel: &Channel, block: &Block) {
        let number = blocks::block_number(block);
        let Ok(ledger) = self.ledger_of(channel) else {
            return;
        };
        let height = channel.height();
        if number < height || number > height + LOOKAHEAD as u64 {
            return;
        }
        let slot = Arc::new(PrepareSlot::default());
        {
            let mut prepared = ledger.prepared.lock();
            prepared.retain(|(n, _)| *n >= height);
            if prepared.iter().any(|(n, _)| *n == number) {
                return;
            }
            prepared.push((number, slot.clone()));
        }
        let block = block.clone();
        let config = channel.config();
        let job_ledger = ledger.clone();
        ledger.validator.spawn(move || {
            // A panic in a spawned rayon job would abort the process: catch
            // it, and let the block be checked again in its turn.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job_ledger.validator.prepare(&block, &config)
            }));
            let prepared = match result {
                Ok(Ok(p)) => Some(p),
                Ok(Err(e)) => {
                    tracing::debug!(target: LOG, number, error = %e, "checking a block ahead failed");
                    None
                }
                Err(_) => {
                    tracing::error!(target: LOG, number, "checking a block ahead panicked");
                    None
                }
            };
            slot.finish(prepared);
        });
    }

    fn commit(&self, channel: &Channel, mut block: Block) -> Result<CommitOutcome, CommitError> {
        let ledger = self.ledger_of(channel)?;
        let number = blocks::block_number(&block);
        let height = channel.height();
        if number != height {
            return Err(CommitError::NotNext {
                channel: channel.id().to_string(),
                number,
                height,
            });
        }
        if number == 0 {
            return commit_genesis(channel, &ledger, block);
        }
        let config = channel.config();
        ledger
            .validator
            .verify_block(&block, &config)
            .map_err(|e| other(channel, number, e))?;
        let prepared = take_prepared(&ledger, number);
        // The previous block's state commit may still be running: read
        // through its batch.
        let previous = ledger.pending.lock().clone();
        let view = OverlayView {
            db: &ledger.state,
            pending: previous.as_deref(),
        };
        let validated = ledger
            .validator
            .validate_prepared(
                &block,
                &config,
                prepared,
                &view,
                &TxIds {
                    store: channel.store(),
                    below: number,
                },
            )
            .map_err(|e| other(channel, number, e))?;
        set_tx_filter(&mut block, &validated.codes);
        // verify_block checked the data hash.
        channel
            .store()
            .append_built(&block)
            .map_err(|source| CommitError::Ledger {
                channel: channel.id().to_string(),
                source,
            })?;
        // State commits stay in block order: the previous one first.
        ledger
            .wait_pending()
            .map_err(|e| other(channel, number, e))?;
        *ledger.pending.lock() = Some(PendingCommit::start(
            ledger.state.clone(),
            number,
            normalise(validated.batch),
        ));
        let config_updated = validated.new_config.is_some();
        if let Some(cfg) = validated.new_config {
            info!(target: LOG, channel = %channel.id(), number, sequence = cfg.config.sequence, "channel config updated");
            channel.set_config(cfg);
        }
        Ok(CommitOutcome {
            number,
            validation_codes: blocks::filter_bytes(&validated.codes),
            config_updated,
        })
    }
}

/// Waits for the checks of block `number` if they were started ahead, and
/// forgets those of earlier blocks.
fn take_prepared(ledger: &ChannelLedger, number: u64) -> Option<PreparedBlock> {
    let slot = {
        let mut prepared = ledger.prepared.lock();
        let slot = prepared
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, slot)| slot.clone());
        prepared.retain(|(n, _)| *n > number);
        slot
    };
    slot.and_then(|s| s.wait())
}

/// Block 0: no orderer signatures to check, no transactions to validate
/// (its config transaction is the channel's starting config).
fn commit_genesis(
    channel: &Channel,
    ledger: &ChannelLedger,
    mut block: Block,
) -> Result<CommitOutcome, CommitError> {
    blocks::check_data_hash(&block).map_err(|source| CommitError::Block {
        channel: channel.id().to_string(),
        source,
    })?;
    let codes = blocks::all_valid(blocks::tx_count(&block));
    blocks::set_tx_filter(&mut block, codes.clone());
    channel
        .store()
        .append_built(&block)
        .map_err(|source| CommitError::Ledger {
            channel: channel.id().to_string(),
            source,
        })?;
    if ledger
        .state
        .savepoint()
        .map_err(|e| other(channel, 0, e))?
        .is_none()
    {
        ledger
            .state
            .commit(&UpdateBatch::default(), 0)
            .map_err(|e| other(channel, 0, e))?;
    }
    Ok(CommitOutcome {
        number: 0,
        validation_codes: codes,
        config_updated: false,
    })
}

/// Re-applies the blocks the block store holds past the state savepoint.
fn recover(channel: &Channel, ledger: &ChannelLedger) -> Result<(), CommitError> {
    let store = channel.store();
    let height = store.height();
    if height == 0 {
        return Ok(());
    }
    let savepoint = ledger.state.savepoint().map_err(|e| other(channel, 0, e))?;
    let first = match savepoint {
        Some(s) if s + 1 >= height => return Ok(()),
        Some(s) => s + 1,
        None => {
            // Only the genesis block can precede the first savepoint.
            ledger
                .state
                .commit(&UpdateBatch::default(), 0)
                .map_err(|e| other(channel, 0, e))?;
            1
        }
    };
    if first >= height {
        return Ok(());
    }
    let read = |n: u64| -> Result<Block, CommitError> {
        store
            .block(n)
            .map_err(|source| CommitError::Ledger {
                channel: channel.id().to_string(),
                source,
            })?
            .ok_or_else(|| other(channel, n, "block missing from the block store"))
    };
    let mut config = config_before(channel, first, &read)?;
    warn!(target: LOG, channel = %channel.id(), from = first, to = height - 1, "state is behind the block store; re-applying blocks");
    for number in first..height {
        let block = read(number)?;
        let validated = ledger
            .validator
            .validate(
                &block,
                &config,
                &StateAdapter(&ledger.state),
                &TxIds {
                    store,
                    below: number,
                },
            )
            .map_err(|e| other(channel, number, e))?;
        let stored = tx_filter(&block);
        if stored != validated.codes {
            return Err(other(
                channel,
                number,
                "re-validation gives other codes than the stored TRANSACTIONS_FILTER; refusing to rebuild the state",
            ));
        }
        ledger
            .state
            .commit(&normalise(validated.batch), number)
            .map_err(|e| other(channel, number, e))?;
        if let Some(cfg) = validated.new_config {
            config = Arc::new(cfg);
        }
    }
    channel.set_config((*config).clone());
    info!(target: LOG, channel = %channel.id(), height, "state recovered");
    Ok(())
}

/// The config in force before block `first`: the one named by the
/// LAST_CONFIG of block `first - 1`.
fn config_before(
    channel: &Channel,
    first: u64,
    read: &dyn Fn(u64) -> Result<Block, CommitError>,
) -> Result<Arc<ChannelConfig>, CommitError> {
    let prev = read(first - 1)?;
    let index = twill_ledger::last_config_index(&prev)
        .map_err(|source| CommitError::Ledger {
            channel: channel.id().to_string(),
            source,
        })?
        .unwrap_or(0);
    let config_block = read(index)?;
    config_of(&config_block)
        .map(Arc::new)
        .map_err(|source| CommitError::Config {
            channel: channel.id().to_string(),
            number: index,
            source,
        })
}

/// Fabric treats a write of an empty value as a delete.
fn normalise(mut batch: UpdateBatch) -> UpdateBatch {
    for (write, _) in batch.writes.values_mut() {
        if matches!(write, KeyWrite::Put(v) if v.is_empty()) {
            *write = KeyWrite::Delete;
        }
    }
    for entry in &mut batch.history {
        if entry.value.is_empty() {
            entry.is_delete = true;
        }
    }
    batch
}

/// The state database as the validator reads it.
struct StateAdapter<'a>(&'a StateDb);

fn access(e: impl std::fmt::Display) -> StateAccessError {
    StateAccessError::new(e.to_string())
}

impl StateView for StateAdapter<'_> {
    fn version(&self, ns: &str, key: &str) -> Result<Option<Height>, StateAccessError> {
        self.0.get_version(ns, key).map_err(access)
    }

    fn metadata(
        &self,
        ns: &str,
        key: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, StateAccessError> {
        self.0.get_metadata(ns, key).map_err(access)
    }

    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateAccessError> {
        Ok(self.0.get(ns, key).map_err(access)?.map(|v| v.value))
    }

    fn range_versions(
        &self,
        ns: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Height)>, StateAccessError> {
        self.0
            .range(ns, start, end)
            .map(|item| item.map(|(k, v)| (k, v.version)).map_err(access))
            .collect()
    }
}

/// The committed state as it is once `pending` (the previous block's
/// batch, possibly still being written) is in: keys the batch writes are
/// answered from the batch, the rest from the database. Metadata of a key
/// the batch touches is read after waiting for the commit (rare: only
/// key-level endorsement looks at it).
struct OverlayView<'a> {
    db: &'a StateDb,
    pending: Option<&'a PendingCommit>,
}

impl OverlayView<'_> {
    /// What the pending batch does to the key: `Some(Some(write))` for a
    /// value write, `Some(None)` for a metadata-only write, `None` if it
    /// does not touch the key (or nothing is pending).
    #[allow(clippy::option_option)]
    fn pending_write(&self, ns: &str, key: &str) -> Option<Option<&(KeyWrite, Height)>> {
        let pending = self.pending?;
        let k = (ns.to_owned(), key.to_owned());
        match pending.batch.writes.get(&k) {
            Some(w) => Some(Some(w)),
            None => pending.batch.metadata.contains_key(&k).then_some(None),
        }
    }
}

impl StateView for OverlayView<'_> {
    fn version(&self, ns: &str, key: &str) -> Result<Option<Height>, StateAccessError> {
        match self.pending_write(ns, key) {
            Some(Some((KeyWrite::Put(_), h))) => Ok(Some(*h)),
            Some(Some((KeyWrite::Delete, _))) => Ok(None),
            Some(None) => {
                // A metadata-only write moves the version too.
                if let Some(p) = self.pending {
                    p.wait().map_err(access)?;
                }
                StateAdapter(self.db).version(ns, key)
            }
            None => StateAdapter(self.db).version(ns, key),
        }
    }

    fn metadata(
        &self,
        ns: &str,
        key: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Vec<u8>>>, StateAccessError> {
        if let (Some(p), Some(_)) = (self.pending, self.pending_write(ns, key)) {
            p.wait().map_err(access)?;
        }
        StateAdapter(self.db).metadata(ns, key)
    }

    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateAccessError> {
        match self.pending_write(ns, key) {
            Some(Some((KeyWrite::Put(v), _))) => Ok(Some(v.clone())),
            Some(Some((KeyWrite::Delete, _))) => Ok(None),
            _ => StateAdapter(self.db).get(ns, key),
        }
    }

    fn range_versions(
        &self,
        ns: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Height)>, StateAccessError> {
        let Some(pending) = self.pending else {
            return StateAdapter(self.db).range_versions(ns, start, end);
        };
        let mut merged: std::collections::BTreeMap<String, Height> = StateAdapter(self.db)
            .range_versions(ns, start, end)?
            .into_iter()
            .collect();
        let in_range = |k: &str| k >= start && (end.is_empty() || k < end);
        for ((wns, key), (write, h)) in &pending.batch.writes {
            if wns != ns || !in_range(key) {
                continue;
            }
            match write {
                KeyWrite::Put(_) => {
                    merged.insert(key.clone(), *h);
                }
                KeyWrite::Delete => {
                    merged.remove(key);
                }
            }
        }
        for (mns, key) in pending.batch.metadata.keys() {
            if mns == ns && in_range(key) && merged.contains_key(key) {
                // Its version may have moved: ask the committed state.
                pending.wait().map_err(access)?;
                return StateAdapter(self.db).range_versions(ns, start, end);
            }
        }
        Ok(merged.into_iter().collect())
    }
}

/// The block store's tx-id index, limited to blocks before `below` (so a
/// block being re-applied after a crash does not see its own ids).
struct TxIds<'a> {
    store: &'a BlockStore,
    below: u64,
}

impl TxIdIndex for TxIds<'_> {
    fn contains(&self, tx_id: &str) -> Result<bool, StateAccessError> {
        let loc = self
            .store
            .tx_location(tx_id)
            .map_err(|e: LedgerError| access(e))?;
        Ok(loc.is_some_and(|l| l.block_number < self.below))
    }
}

/// The state hash (see [`StateDb::state_hash`]) of channel `channel_id`
/// of a stopped peer's ledger under `ledger_root`, after the recovery a
/// starting peer would run: blocks in the block store past the savepoint
/// are re-applied first. For tests and tools; the peer must not be running.
pub fn state_hash_of(ledger_root: &Path, channel_id: &str) -> Result<[u8; 32], String> {
    let channel = Channel::open(ledger_root, channel_id).map_err(|e| e.to_string())?;
    let committer = LedgerCommitter::new(1);
    committer
        .open_channel(&channel)
        .map_err(|e| e.to_string())?;
    let ledger = committer
        .channel(channel_id)
        .ok_or_else(|| format!("channel {channel_id} did not open"))?;
    let hash = ledger.state.state_hash().map_err(|e| e.to_string())?;
    ledger.state.flush().map_err(|e| e.to_string())?;
    Ok(hash)
}
