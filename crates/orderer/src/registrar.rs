//! The channels of this orderer: join (from a config block), list, get,
//! remove; reopens the joined channels at start.
//!
//! # Layout
//!
//! Every channel lives in `<root>/chains/<channel>/` (its ledger, Raft log
//! and dedupe index; see [`chain`](crate::chain)). Two more kinds of entries
//! can appear there:
//!
//! - `<channel>/join-block`: the config block a channel was joined with,
//!   while the blocks up to it are still being pulled (onboarding). It is
//!   deleted once the chain runs; if the node stops before that, onboarding
//!   resumes at the next start.
//! - `.removed-<channel>-<nanos>`: a removed channel's directory, renamed
//!   (atomically) before it is deleted, so that a crash never leaves half a
//!   channel under its name. Leftovers are deleted at start.
//!
//! # Joining
//!
//! With block 0 (the genesis block) the chain starts right away. With a later
//! config block, the registrar answers at once with status `onboarding` and,
//! in the background, pulls blocks `0..=number` from the consenters named in
//! that block, checks that they chain up to it (hash links and data hashes;
//! the join block itself is the trust anchor) and appends them; then the
//! chain starts and catches up through Raft. Pulls are retried with backoff
//! until they succeed or the channel is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prost::Message as _;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use twill_configtx::block::block_header_hash;
use twill_msp::SigningIdentity;
use twill_protos::common::Block;

use crate::chain::{
    inspect_config_block, verify_pulled, Chain, ChainError, ChainHandle, ChainOptions, ChainResult,
    Cluster,
};

const LOG_TARGET: &str = "orderer::registrar";

/// Subdirectory of the ledger root holding one directory per channel.
pub const CHAINS_DIR: &str = "chains";

/// File in a channel directory holding the join block while onboarding.
pub const JOIN_BLOCK_FILE: &str = "join-block";

/// Prefix of removed channel directories awaiting deletion.
const REMOVED_PREFIX: &str = ".removed-";

/// First and longest wait between onboarding attempts.
const ONBOARD_RETRY_MIN: Duration = Duration::from_millis(500);
const ONBOARD_RETRY_MAX: Duration = Duration::from_secs(30);

/// Status of a channel that runs.
pub const STATUS_ACTIVE: &str = "active";
/// Status of a channel whose blocks up to the join block are being pulled.
pub const STATUS_ONBOARDING: &str = "onboarding";
/// Status of a channel whose chain does not run (halted, or this node is no
/// longer a consenter).
pub const STATUS_INACTIVE: &str = "inactive";
/// Status of a channel whose chain failed to start after onboarding.
pub const STATUS_FAILED: &str = "failed";
/// The only consensus relation this orderer has to its channels.
pub const RELATION_CONSENTER: &str = "consenter";

/// One channel of this orderer, as the participation API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// `/participation/v1/channels/<name>`.
    pub url: String,
    /// Always `"consenter"`.
    pub consensus_relation: String,
    /// `"active"`, `"onboarding"`, `"inactive"` or `"failed"`.
    pub status: String,
    /// Blocks in the channel's ledger.
    pub height: u64,
}

impl ChannelInfo {
    fn new(name: &str, status: &str, height: u64) -> Self {
        ChannelInfo {
            name: name.to_string(),
            url: format!("/participation/v1/channels/{name}"),
            consensus_relation: RELATION_CONSENTER.to_string(),
            status: status.to_string(),
            height,
        }
    }
}

enum Slot {
    /// Reserved by a join in progress.
    Joining,
    Active(ChainHandle),
    Onboarding {
        pulled: Arc<AtomicU64>,
        task: JoinHandle<()>,
    },
    Inactive {
        height: u64,
    },
    Failed {
        height: u64,
    },
}

/// The channels of this orderer.
pub struct Registrar {
    chains_dir: PathBuf,
    signer: Arc<SigningIdentity>,
    self_cert_der: Vec<u8>,
    cluster: Arc<dyn Cluster>,
    opts: ChainOptions,
    slots: Mutex<BTreeMap<String, Slot>>,
    me: Weak<Registrar>,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("chains_dir", &self.chains_dir)
            .field("channels", &self.slots.lock().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// Opens the ledger root (`<root>/chains/<channel>/...`), restarting
    /// every channel found there (and resuming interrupted onboardings).
    ///
    /// Must be called within a tokio runtime. Fails if a channel's ledger
    /// cannot be opened or its chain cannot start, except that a channel of
    /// which this node is no longer a consenter is listed as inactive.
    pub fn open(
        root: &Path,
        signer: Arc<SigningIdentity>,
        self_cert_der: Vec<u8>,
        cluster: Arc<dyn Cluster>,
        opts: ChainOptions,
    ) -> ChainResult<Arc<Registrar>> {
        let chains_dir = root.join(CHAINS_DIR);
        std::fs::create_dir_all(&chains_dir).map_err(|e| ChainError::io(&chains_dir, e))?;
        let registrar = Arc::new_cyclic(|me| Registrar {
            chains_dir: chains_dir.clone(),
            signer,
            self_cert_der,
            cluster,
            opts,
            slots: Mutex::new(BTreeMap::new()),
            me: me.clone(),
        });
        let mut names = Vec::new();
        let entries = std::fs::read_dir(&chains_dir).map_err(|e| ChainError::io(&chains_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ChainError::io(&chains_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(REMOVED_PREFIX) {
                if let Err(err) = std::fs::remove_dir_all(&path) {
                    warn!(target: LOG_TARGET, path = %path.display(), %err, "cannot delete a removed channel's directory");
                }
                continue;
            }
            if !path.is_dir() || twill_ledger::validate_channel_id(&name).is_err() {
                warn!(target: LOG_TARGET, path = %path.display(), "ignoring an entry that is not a channel");
                continue;
            }
            names.push(name);
        }
        names.sort();
        for name in names {
            registrar.reopen(&name)?;
        }
        info!(target: LOG_TARGET, root = %root.display(), channels = registrar.slots.lock().len(), "registrar open");
        Ok(registrar)
    }

    fn reopen(&self, name: &str) -> ChainResult<()> {
        let dir = self.chains_dir.join(name);
        let join_file = dir.join(JOIN_BLOCK_FILE);
        if join_file.exists() {
            let bytes = std::fs::read(&join_file).map_err(|e| ChainError::io(&join_file, e))?;
            let block = Block::decode(bytes.as_slice()).map_err(|e| ChainError::InvalidBlock {
                reason: format!("{}: {e}", join_file.display()),
            })?;
            info!(target: LOG_TARGET, channel = name, "resuming onboarding");
            self.start_onboarding(name, dir, block);
            return Ok(());
        }
        match self.start_chain(&dir, None) {
            Ok(chain) => {
                self.slots
                    .lock()
                    .insert(name.to_string(), Slot::Active(chain));
            }
            Err(ChainError::NotAConsenter { .. }) => {
                warn!(target: LOG_TARGET, channel = name, "this node is no longer a consenter of the channel; not starting it");
                let height = ledger_height(&dir);
                self.slots
                    .lock()
                    .insert(name.to_string(), Slot::Inactive { height });
            }
            Err(ChainError::EmptyLedger { .. }) => {
                warn!(target: LOG_TARGET, channel = name, "deleting a channel whose join never completed");
                std::fs::remove_dir_all(&dir).map_err(|e| ChainError::io(&dir, e))?;
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    fn start_chain(&self, dir: &Path, genesis: Option<&Block>) -> ChainResult<ChainHandle> {
        Chain::start(
            dir,
            genesis,
            self.signer.clone(),
            &self.self_cert_der,
            self.cluster.clone(),
            self.opts.clone(),
        )
    }

    /// Joins a channel from its config block: block 0 creates the channel;
    /// a later config block joins an existing channel, pulling blocks
    /// `0..=number` from other consenters first (status `onboarding` until
    /// the chain runs).
    ///
    /// Errors: [`ChainError::InvalidBlock`] (not a config block, bad config
    /// or channel name), [`ChainError::AlreadyExists`],
    /// [`ChainError::NotAConsenter`] (this node's certificate is not among
    /// the block's consenters), and whatever starting the chain meets.
    pub async fn join(&self, config_block: Block) -> ChainResult<ChannelInfo> {
        let info = inspect_config_block(&config_block, &self.self_cert_der)?;
        let channel = info.channel_id.clone();
        twill_ledger::validate_channel_id(&channel).map_err(|e| ChainError::InvalidBlock {
            reason: e.to_string(),
        })?;
        let dir = self.chains_dir.join(&channel);
        {
            let mut slots = self.slots.lock();
            if slots.contains_key(&channel) || dir.exists() {
                return Err(ChainError::AlreadyExists { channel });
            }
            if info.self_id.is_none() {
                return Err(ChainError::NotAConsenter { channel });
            }
            slots.insert(channel.clone(), Slot::Joining);
        }
        let outcome = self.do_join(&channel, &dir, config_block, info.number);
        match outcome {
            Ok(info) => Ok(info),
            Err(err) => {
                self.slots.lock().remove(&channel);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(target: LOG_TARGET, channel = %channel, err = %e, "cannot clean up after a failed join");
                    }
                }
                Err(err)
            }
        }
    }

    fn do_join(
        &self,
        channel: &str,
        dir: &Path,
        block: Block,
        number: u64,
    ) -> ChainResult<ChannelInfo> {
        std::fs::create_dir_all(dir).map_err(|e| ChainError::io(dir, e))?;
        if number == 0 {
            let chain = off_reactor(|| self.start_chain(dir, Some(&block)))?;
            let height = chain.block_store().height();
            self.slots
                .lock()
                .insert(channel.to_string(), Slot::Active(chain));
            info!(target: LOG_TARGET, channel, "joined channel from its genesis block");
            return Ok(ChannelInfo::new(channel, STATUS_ACTIVE, height));
        }
        let join_file = dir.join(JOIN_BLOCK_FILE);
        std::fs::write(&join_file, block.encode_to_vec())
            .and_then(|()| std::fs::File::open(&join_file)?.sync_all())
            .map_err(|e| ChainError::io(&join_file, e))?;
        info!(target: LOG_TARGET, channel, number, "joining channel: pulling blocks up to the join block");
        self.start_onboarding(channel, dir.to_path_buf(), block);
        Ok(ChannelInfo::new(channel, STATUS_ONBOARDING, 0))
    }

    fn start_onboarding(&self, channel: &str, dir: PathBuf, block: Block) {
        let pulled = Arc::new(AtomicU64::new(0));
        let mut slots = self.slots.lock();
        // Spawned under the lock: the task swaps its slot only after it is
        // in place.
        let task = tokio::spawn(onboard(
            self.me.clone(),
            channel.to_string(),
            dir,
            block,
            pulled.clone(),
        ));
        slots.insert(channel.to_string(), Slot::Onboarding { pulled, task });
    }

    /// Pulls and appends the blocks up to the join block `number` (whose
    /// header hash is `anchor`) into the ledger in `dir`.
    async fn catch_up(
        &self,
        channel: &str,
        dir: &Path,
        number: u64,
        anchor: &[u8; 32],
        pulled: &AtomicU64,
    ) -> ChainResult<()> {
        let store = Arc::new(crate::chain::open_block_store(dir)?);
        let height = store.height();
        pulled.store(height, Ordering::Relaxed);
        if height > number {
            let ours = store
                .block(number)?
                .and_then(|b| b.header)
                .map(|h| block_header_hash(&h));
            if ours.as_ref() != Some(anchor) {
                return Err(ChainError::InvalidBlock {
                    reason: format!("the ledger's block {number} is not the join block"),
                });
            }
            return Ok(());
        }
        self.cluster.update_peers(channel, {
            let bytes = std::fs::read(dir.join(JOIN_BLOCK_FILE))
                .map_err(|e| ChainError::io(dir.join(JOIN_BLOCK_FILE), e))?;
            let block = Block::decode(bytes.as_slice()).map_err(|e| ChainError::InvalidBlock {
                reason: e.to_string(),
            })?;
            inspect_config_block(&block, &self.self_cert_der)?.peers()
        });
        let blocks = self
            .cluster
            .pull_blocks(channel, height, number + 1)
            .await?;
        verify_pulled(&blocks, height, store.last_block_hash(), anchor)?;
        let appended = store.clone();
        let result = tokio::task::spawn_blocking(move || -> ChainResult<u64> {
            for block in &blocks {
                appended.append(block)?;
            }
            Ok(appended.height())
        })
        .await
        .map_err(|e| ChainError::io(dir, std::io::Error::other(e.to_string())))?;
        pulled.store(store.height(), Ordering::Relaxed);
        result.map(|_| ())
    }

    /// Every channel, sorted by name.
    pub fn list(&self) -> Vec<ChannelInfo> {
        self.slots
            .lock()
            .iter()
            .map(|(name, slot)| slot_info(name, slot))
            .collect()
    }

    /// The running chain of `channel`.
    pub fn get(&self, channel: &str) -> Option<ChainHandle> {
        match self.slots.lock().get(channel) {
            Some(Slot::Active(chain)) => Some(chain.clone()),
            _ => None,
        }
    }

    /// What the participation API shows about `channel`.
    pub fn info(&self, channel: &str) -> Option<ChannelInfo> {
        self.slots
            .lock()
            .get(channel)
            .map(|slot| slot_info(channel, slot))
    }

    /// Halts the chain (or stops onboarding) and deletes the channel's
    /// data. [`ChainError::NotFound`] if there is no such channel.
    pub async fn remove(&self, channel: &str) -> ChainResult<()> {
        let slot = {
            let mut slots = self.slots.lock();
            match slots.get(channel) {
                None | Some(Slot::Joining) => {
                    return Err(ChainError::NotFound {
                        channel: channel.to_string(),
                    })
                }
                Some(_) => slots.remove(channel),
            }
        };
        match slot {
            Some(Slot::Active(chain)) => chain.halt().await,
            Some(Slot::Onboarding { task, .. }) => {
                task.abort();
                let _ = task.await;
            }
            _ => {}
        }
        self.cluster.remove_channel(channel);
        let dir = self.chains_dir.join(channel);
        if dir.exists() {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let tomb = self
                .chains_dir
                .join(format!("{REMOVED_PREFIX}{channel}-{nanos}"));
            std::fs::rename(&dir, &tomb).map_err(|e| ChainError::io(&dir, e))?;
            let deleted = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&tomb))
                .await
                .map_err(|e| ChainError::io(&dir, std::io::Error::other(e.to_string())))?;
            if let Err(err) = deleted {
                // Deleted at the next start.
                warn!(target: LOG_TARGET, channel, %err, "cannot delete the removed channel's data yet");
            }
        }
        info!(target: LOG_TARGET, channel, "channel removed");
        Ok(())
    }

    /// Halts every chain and stops every onboarding.
    pub async fn shutdown(&self) {
        let slots = std::mem::take(&mut *self.slots.lock());
        for (_, slot) in slots {
            match slot {
                Slot::Active(chain) => chain.halt().await,
                Slot::Onboarding { task, .. } => {
                    task.abort();
                    let _ = task.await;
                }
                _ => {}
            }
        }
        info!(target: LOG_TARGET, "registrar shut down");
    }
}

fn slot_info(name: &str, slot: &Slot) -> ChannelInfo {
    match slot {
        Slot::Joining => ChannelInfo::new(name, STATUS_ONBOARDING, 0),
        Slot::Active(chain) => {
            let status = if chain.is_halted() {
                STATUS_INACTIVE
            } else {
                STATUS_ACTIVE
            };
            ChannelInfo::new(name, status, chain.block_store().height())
        }
        Slot::Onboarding { pulled, .. } => {
            ChannelInfo::new(name, STATUS_ONBOARDING, pulled.load(Ordering::Relaxed))
        }
        Slot::Inactive { height } => ChannelInfo::new(name, STATUS_INACTIVE, *height),
        Slot::Failed { height } => ChannelInfo::new(name, STATUS_FAILED, *height),
    }
}

fn ledger_height(dir: &Path) -> u64 {
    crate::chain::open_block_store(dir).map_or(0, |store| store.height())
}

/// Background onboarding of `channel`: pull up to the join block, then
/// start the chain and make it active.
/// Runs blocking work (opening a ledger, rebuilding the dedupe index,
/// starting the Raft thread) without stalling the async worker it is called
/// from, when the runtime can lend the thread out; on a single-threaded
/// runtime (tests) it simply runs.
fn off_reactor<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

async fn onboard(
    me: Weak<Registrar>,
    channel: String,
    dir: PathBuf,
    block: Block,
    pulled: Arc<AtomicU64>,
) {
    let Some(header) = block.header.as_ref() else {
        return;
    };
    let number = header.number;
    let anchor = block_header_hash(header);
    let mut backoff = ONBOARD_RETRY_MIN;
    loop {
        let Some(registrar) = me.upgrade() else {
            return;
        };
        match registrar
            .catch_up(&channel, &dir, number, &anchor, &pulled)
            .await
        {
            Ok(()) => break,
            Err(err) => {
                warn!(target: LOG_TARGET, channel = %channel, number, %err, retry_in_ms = backoff.as_millis() as u64, "onboarding: cannot pull the channel's blocks yet");
            }
        }
        drop(registrar);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(ONBOARD_RETRY_MAX);
    }
    let Some(registrar) = me.upgrade() else {
        return;
    };
    match off_reactor(|| registrar.start_chain(&dir, None)) {
        Ok(chain) => {
            if let Err(err) = std::fs::remove_file(dir.join(JOIN_BLOCK_FILE)) {
                warn!(target: LOG_TARGET, channel = %channel, %err, "cannot delete the join block file");
            }
            let placed = {
                let mut slots = registrar.slots.lock();
                if matches!(slots.get(&channel), Some(Slot::Onboarding { .. })) {
                    slots.insert(channel.clone(), Slot::Active(chain.clone()));
                    true
                } else {
                    false
                }
            };
            if placed {
                info!(target: LOG_TARGET, channel = %channel, number, "onboarding done; chain started");
            } else {
                chain.halt().await;
            }
        }
        Err(err) => {
            error!(target: LOG_TARGET, channel = %channel, %err, "onboarding: the chain does not start");
            let mut slots = registrar.slots.lock();
            if matches!(slots.get(&channel), Some(Slot::Onboarding { .. })) {
                let height = pulled.load(Ordering::Relaxed);
                slots.insert(channel.clone(), Slot::Failed { height });
            }
        }
    }
}
