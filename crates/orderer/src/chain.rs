//! One channel's ordering chain: a Raft group that replicates envelopes, and
//! the deterministic state machine that turns the committed log into blocks.
//!
//! # Model
//!
//! [`ChainHandle::order`] proposes checked envelopes into the channel's Raft
//! log and answers once the entry is committed (durable on a majority). The
//! leader batches concurrent calls into one entry; a follower forwards to the
//! leader through [`Cluster::forward`]. Every orderer applies committed
//! entries (`twill.cluster.OrdererEntry`) in log order:
//!
//! | entry | effect |
//! | --- | --- |
//! | `Envelopes` | each envelope not seen before goes through the [`BlockCutter`]; every cut batch becomes a block |
//! | `Cut { height }` | if the chain has `height` blocks and envelopes are pending, they become a block |
//! | `Config(envelope)` | re-checked with [`check_config_envelope`]; if valid, pending envelopes are cut into a block, then the config block is written alone and the new config takes effect |
//!
//! Blocks are written (signed, appended, fsynced) on the Raft loop thread,
//! which owns the [`BlockWriter`], the cutter and the appends. Everyone else
//! reads the [`BlockStore`] through an `Arc`.
//!
//! # Tasks
//!
//! Besides the Raft loop thread, a chain runs three tokio tasks:
//!
//! - the *submitter*: collects `order` calls for up to [`BATCH_WINDOW`] (or
//!   [`ChainOptions::max_batch_entries`] envelopes), proposes them as one
//!   entry (leader) or forwards them (follower), and answers every caller;
//! - the *batch timer*: the state machine publishes whether envelopes are
//!   pending; after the channel's `BatchTimeout` the leader proposes
//!   `Cut { height }`. Every node runs the timer, only the leader proposes;
//! - the *membership* task: the leader turns consenter changes (from config
//!   blocks) into Raft membership changes, one at a time: add a new consenter
//!   as a learner, promote it, remove a consenter that left.
//!
//! # Raft ids and block metadata
//!
//! The consenters of the genesis config get ids `1..=n` in config order; a
//! consenter added later gets the next unused id. Every block written records
//! `etcdraft.BlockMetadata { consenter_ids, next_consenter_id, raft_index }`
//! in its consenter metadata, where `consenter_ids[i]` is the id of the
//! `i`-th consenter of the config in force (a config block records the
//! mapping of its own config) and `raft_index` is the index of the entry that
//! completed the block. Consenters are matched across configs by their TLS
//! certificates (DER after PEM decoding); this node finds its own id by
//! comparing its cluster certificate with each consenter's client and server
//! certificate.
//!
//! # Durability, restart and deduplication
//!
//! Blocks are the state machine's only durable state. On restart the state
//! machine reports `raft_index - 1` of the last block as its applied index,
//! so the Raft log is replayed from the entry that completed the last block:
//! that entry may have left envelopes pending after the cut, and they are
//! fed to a fresh cutter again.
//!
//! Replaying entries whose effects are already in the ledger is harmless
//! because every entry is idempotent against the ledger:
//!
//! - envelopes are deduplicated: an envelope whose SHA-256 is already in a
//!   block of the channel, or pending in the cutter, is skipped. The hashes
//!   of all ordered envelopes are kept in a small sled database next to the
//!   ledger (`dedupe/`: hash → block number, plus the indexed height, written
//!   in one batch per block). It is derived from the blocks alone, so it is
//!   identical on every node, and it is brought up to the ledger height on
//!   open, so a lost (unflushed) tail is rebuilt. Deduplication also makes a
//!   client's resubmission after an unknown outcome safe;
//! - `Cut { height }` does nothing once the chain has grown past `height`;
//! - a config envelope fails its sequence check once its config is in force.
//!
//! While envelopes are pending, the applied index reported to Raft stays
//! just before the entry that contributed the first pending envelope, so
//! that neither a restart nor log compaction loses them.
//!
//! # Snapshots
//!
//! A Raft snapshot carries the last block's number and header hash
//! ([`SnapshotData`]). A node that installs one pulls the blocks it lacks
//! from other consenters ([`Cluster::pull_blocks`], in the background; the
//! restore is retried until the blocks are there), checks that they chain
//! from its tip to the snapshot's hash (numbers, previous hashes and data
//! hashes) and appends them. The hash chain, anchored at a hash agreed
//! through Raft, authenticates the blocks; their signatures are not checked
//! again.
//!
//! # Joining later
//!
//! A node can start on a ledger whose blocks were pulled from others (the
//! [`Registrar`](crate::registrar::Registrar) does this when joining with a
//! config block later than block 0). Its Raft log is then empty while its
//! blocks come from a log it never had: an `onboarding` marker file tells
//! the state machine to report an applied index no higher than what Raft
//! gave it until it has caught up. A node whose id is one of the genesis
//! consenters bootstraps as a founding member (Raft replays the log from the
//! start, deduplicated against the pulled blocks); a node added later starts
//! empty and waits for the leader to add it as a learner and send a
//! snapshot.
//!
//! # Limits
//!
//! - A config update may add or remove at most one consenter; a certificate
//!   rotation counts as a removal plus an addition and is refused.
//! - A learner is promoted as soon as it has been added, without waiting for
//!   it to catch up.
//! - A node removed from the consenters halts its chain at once (a removed
//!   leader does not remove itself; the next leader does). Shrinking a
//!   two-node channel to one can therefore stall.
//! - [`check_config_envelope`] judges certificate expiry at the local clock,
//!   so nodes whose clocks disagree around an expiry could disagree on a
//!   config entry.
//! - Pulled blocks are held in memory until the whole range has arrived.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use twill_configtx::block::{block_data_hash, block_header_hash};
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_ledger::{BlockStore, BlockStoreOptions, LedgerError};
use twill_msp::SigningIdentity;
use twill_protos::common::{Block, BlockData, ChannelHeader, Envelope, Payload, Status};
use twill_protos::etcdraft;
use twill_protos::twill::cluster::{orderer_entry::Kind, CutRequest, EnvelopeBatch, OrdererEntry};

use crate::cutter::BlockCutter;
use crate::msgprocessor::{check_config_envelope, Reject};
use crate::raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use crate::raft::{
    RaftConfig, RaftError, RaftHandle, RaftNode, RaftResult, RaftStatus, StateMachine, Transport,
    BOOTSTRAP_INDEX,
};
use crate::writer::{consenter_metadata, is_config_block, BlockWriter, WriterError};

const LOG_TARGET: &str = "orderer::chain";

/// How long the leader's submitter waits for more `order` calls to share one
/// Raft entry.
pub const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// Default of [`ChainOptions::max_batch_entries`].
pub const DEFAULT_MAX_BATCH_ENTRIES: usize = 1000;

/// An entry stops collecting envelopes once it holds this many bytes.
const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

/// Capacity of the submitter's queue.
const SUBMIT_QUEUE: usize = 16 * 1024;

/// Subdirectory of the channel directory holding the Raft log.
pub const RAFT_DIR: &str = "raft";

/// Opens a channel's block store as an orderer needs it: blocks are looked
/// up by number and hash only, so transaction ids are not indexed (one index
/// write a block instead of one a transaction).
pub fn open_block_store(dir: &Path) -> Result<BlockStore, LedgerError> {
    BlockStore::open_with(
        dir,
        BlockStoreOptions {
            index_transactions: false,
            ..BlockStoreOptions::default()
        },
    )
}

/// Subdirectory of the channel directory holding the envelope hashes.
pub const DEDUPE_DIR: &str = "dedupe";

/// Marker file: the ledger holds blocks from a Raft log this node has not
/// caught up with yet (see the module docs, "Joining later").
pub const ONBOARDING_MARKER: &str = "onboarding";

/// sled page cache of the dedupe database.
const DEDUPE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Key of the indexed height in the dedupe database (hash keys are 32 bytes).
const DEDUPE_HEIGHT_KEY: &[u8] = b"height";

/// A `Result` whose error is [`ChainError`].
pub type ChainResult<T> = Result<T, ChainError>;

/// What can go wrong when starting, running or joining a chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The channel already exists on this node.
    #[error("channel {channel} already exists")]
    AlreadyExists {
        /// The channel.
        channel: String,
    },
    /// The channel does not exist on this node.
    #[error("channel {channel} does not exist")]
    NotFound {
        /// The channel.
        channel: String,
    },
    /// This node's cluster certificate is not among the channel's consenters.
    #[error("this orderer is not a consenter of channel {channel}")]
    NotAConsenter {
        /// The channel.
        channel: String,
    },
    /// A block (given to join, pulled from another node, or in the ledger)
    /// is not what it must be.
    #[error("invalid block: {reason}")]
    InvalidBlock {
        /// What is wrong.
        reason: String,
    },
    /// The ledger holds no block and no genesis block was given.
    #[error("the ledger in {} is empty and no genesis block was given", dir.display())]
    EmptyLedger {
        /// The channel directory.
        dir: PathBuf,
    },
    /// The block store failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The Raft node failed.
    #[error("raft: {0}")]
    Raft(#[from] RaftError),
    /// Writing or signing a block failed.
    #[error("block writer: {0}")]
    Writer(#[from] WriterError),
    /// The dedupe database failed.
    #[error("dedupe index: {0}")]
    Index(#[from] sled::Error),
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Blocks could not be pulled from other consenters (the text says
    /// which blocks and why).
    #[error("cannot pull blocks: {0}")]
    Pull(String),
    /// Blocks are being pulled in the background; the caller retries later.
    #[error("catching up: pulling blocks [{start}, {end}) from other consenters")]
    CatchingUp {
        /// First block wanted.
        start: u64,
        /// One past the last block wanted.
        end: u64,
    },
    /// The ledger disagrees with the chain the other consenters agreed on.
    #[error("block {number} differs from the one the Raft snapshot names")]
    Diverged {
        /// The block number.
        number: u64,
    },
    /// A Raft snapshot payload that is not a [`SnapshotData`].
    #[error("malformed snapshot payload of {len} bytes")]
    BadSnapshot {
        /// Its length.
        len: usize,
    },
    /// The chain was halted.
    #[error("the chain of channel {channel} is halted")]
    Halted {
        /// The channel.
        channel: String,
    },
    /// No tokio runtime to run the chain's tasks on.
    #[error("a chain must be started from within a tokio runtime")]
    NoRuntime,
}

impl ChainError {
    /// The HTTP status the channel participation API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ChainError::AlreadyExists { .. } => 409,
            ChainError::NotFound { .. } => 404,
            ChainError::NotAConsenter { .. } => 403,
            ChainError::InvalidBlock { .. } | ChainError::BadSnapshot { .. } => 400,
            ChainError::Pull(_) | ChainError::CatchingUp { .. } | ChainError::Halted { .. } => 503,
            _ => 500,
        }
    }

    /// A stable code for the variant, for logs and clients.
    pub fn code(&self) -> &'static str {
        match self {
            ChainError::AlreadyExists { .. } => "CHAIN_ALREADY_EXISTS",
            ChainError::NotFound { .. } => "CHAIN_NOT_FOUND",
            ChainError::NotAConsenter { .. } => "CHAIN_NOT_A_CONSENTER",
            ChainError::InvalidBlock { .. } => "CHAIN_INVALID_BLOCK",
            ChainError::EmptyLedger { .. } => "CHAIN_EMPTY_LEDGER",
            ChainError::Ledger(_) => "CHAIN_LEDGER",
            ChainError::Raft(_) => "CHAIN_RAFT",
            ChainError::Writer(_) => "CHAIN_WRITER",
            ChainError::Index(_) => "CHAIN_DEDUPE_INDEX",
            ChainError::Io { .. } => "CHAIN_IO",
            ChainError::Pull(_) => "CHAIN_PULL",
            ChainError::CatchingUp { .. } => "CHAIN_CATCHING_UP",
            ChainError::Diverged { .. } => "CHAIN_DIVERGED",
            ChainError::BadSnapshot { .. } => "CHAIN_BAD_SNAPSHOT",
            ChainError::Halted { .. } => "CHAIN_HALTED",
            ChainError::NoRuntime => "CHAIN_NO_RUNTIME",
        }
    }

    fn invalid(reason: impl Into<String>) -> Self {
        ChainError::InvalidBlock {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ChainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What a chain needs from the network: a Raft transport to its consenters,
/// forwarding to the leader and pulling blocks. Implemented over gRPC in
/// [`cluster`](crate::cluster); [`local::LocalNetwork`] is an in-process one.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// A Raft transport for this channel, sending to consenters by raft id.
    fn transport(
        &self,
        channel: &str,
        self_id: u64,
        peers: BTreeMap<u64, etcdraft::Consenter>,
    ) -> Arc<dyn Transport>;

    /// Consenter set changed (config block): update addresses/certs.
    fn update_peers(&self, channel: &str, peers: BTreeMap<u64, etcdraft::Consenter>);

    /// Hand envelopes to the leader `to`; Ok once committed there.
    async fn forward(
        &self,
        channel: &str,
        to: u64,
        envelopes: Vec<Vec<u8>>,
        config: bool,
    ) -> Result<(), Reject>;

    /// Blocks [start, end) of the channel from any other consenter, in order.
    async fn pull_blocks(
        &self,
        channel: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<Block>, ChainError>;

    /// The channel was removed locally.
    fn remove_channel(&self, channel: &str);
}

/// Tuning of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOptions {
    /// Overrides the channel config's etcdraft `TickInterval` (tests).
    pub tick_interval: Option<Duration>,
    /// Overrides the channel config's `SnapshotIntervalSize`.
    pub snapshot_interval_bytes: Option<u64>,
    /// Most envelopes the leader puts in one Raft entry.
    pub max_batch_entries: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions {
            tick_interval: None,
            snapshot_interval_bytes: None,
            max_batch_entries: DEFAULT_MAX_BATCH_ENTRIES,
        }
    }
}

/// A chain's state at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// Blocks in the ledger.
    pub height: u64,
    /// This node's raft id in the channel.
    pub consenter_id: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// True if this node is the leader.
    pub is_leader: bool,
    /// The current Raft term.
    pub term: u64,
    /// Sequence of the config in force.
    pub config_sequence: u64,
}

/// The payload of the chain's Raft snapshots: the number and header hash of
/// the last block. Encoded as 8 bytes big-endian number ‖ 32 bytes hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotData {
    /// Number of the last block.
    pub number: u64,
    /// SHA-256 of its header.
    pub hash: [u8; 32],
}

impl SnapshotData {
    /// The encoded payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out
    }

    /// Decodes a payload made by [`SnapshotData::encode`].
    pub fn decode(data: &[u8]) -> ChainResult<Self> {
        let bad = || ChainError::BadSnapshot { len: data.len() };
        if data.len() != 40 {
            return Err(bad());
        }
        let number = u64::from_be_bytes(data[..8].try_into().map_err(|_| bad())?);
        let hash: [u8; 32] = data[8..].try_into().map_err(|_| bad())?;
        Ok(SnapshotData { number, hash })
    }
}

/// Starts chains.
#[derive(Debug)]
pub struct Chain;

impl Chain {
    /// Opens (or creates) the channel's ledger in `channel_dir` and starts
    /// its chain: the Raft node (log in `channel_dir/raft`) and the chain's
    /// tasks, on the current tokio runtime.
    ///
    /// `genesis` is the channel's block 0: it is appended when the ledger is
    /// empty, and must match block 0 otherwise. With `None` the ledger must
    /// hold blocks already (a restart, or a join whose blocks were pulled).
    /// `self_cert_der` is this node's cluster TLS certificate (DER); it
    /// identifies this node among the consenters.
    ///
    /// Blocks briefly (opening sled databases, appending the genesis block).
    pub fn start(
        channel_dir: &Path,
        genesis: Option<&Block>,
        signer: Arc<SigningIdentity>,
        self_cert_der: &[u8],
        cluster: Arc<dyn Cluster>,
        opts: ChainOptions,
    ) -> ChainResult<ChainHandle> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ChainError::NoRuntime)?;
        let store = Arc::new(open_block_store(channel_dir)?);
        if let Some(genesis) = genesis {
            ensure_genesis(&store, genesis)?;
        }
        let height = store.height();
        let Some(last_number) = height.checked_sub(1) else {
            return Err(ChainError::EmptyLedger {
                dir: channel_dir.to_path_buf(),
            });
        };
        let last = read_block(&store, last_number)?;
        let config_block = store
            .last_config_block()?
            .ok_or_else(|| ChainError::invalid("the ledger has no config block"))?;
        let info = inspect_config_block(&config_block, self_cert_der)?;
        let config = Arc::new(info.config);
        let channel_id = info.channel_id;
        let meta = raft_metadata(&last, &config)?;
        let peers = consenter_map(&config, &meta.consenter_ids);
        let self_id =
            find_self(&peers, self_cert_der).ok_or_else(|| ChainError::NotAConsenter {
                channel: channel_id.clone(),
            })?;

        // Founding members are the genesis consenters, ids 1..=n.
        let genesis_consenters = if height == 1 {
            config.raft.consenters.len()
        } else {
            inspect_config_block(&read_block(&store, 0)?, self_cert_der)?
                .config
                .raft
                .consenters
                .len()
        } as u64;
        let founders: Vec<u64> = (1..=genesis_consenters).collect();
        let raft_peers = if founders.contains(&self_id) {
            founders
        } else {
            Vec::new()
        };

        let raft_dir = channel_dir.join(RAFT_DIR);
        let marker = channel_dir.join(ONBOARDING_MARKER);
        if !raft_dir.exists() && meta.raft_index > BOOTSTRAP_INDEX {
            write_marker(channel_dir, &marker)?;
        }
        let onboarding = marker.exists().then_some(marker);

        let dedupe = Dedupe::open(&channel_dir.join(DEDUPE_DIR), &store)?;
        let writer = BlockWriter::new(&last, signer.clone())?;
        let cutter = BlockCutter::new(config.batch_size);
        let (config_tx, config_rx) = watch::channel(config.clone());
        let (pending_tx, pending_rx) = watch::channel(PendingState {
            pending: false,
            height,
            generation: 0,
        });
        let (members_tx, members_rx) = watch::channel(meta.consenter_ids.clone());
        let durable = meta.raft_index.saturating_sub(1);
        let raft_cfg = raft_config(self_id, raft_peers, &config, &opts);
        let tick = raft_cfg.tick_interval;

        let sm = ChainState {
            channel_id: channel_id.clone(),
            signer: signer.clone(),
            store: store.clone(),
            writer,
            cutter,
            config: config.clone(),
            meta,
            dedupe,
            durable,
            pending_since: None,
            processed: if onboarding.is_some() { 0 } else { durable },
            onboarding,
            cluster: cluster.clone(),
            config_tx,
            pending_tx,
            members_tx,
            runtime: runtime.clone(),
            pull: Arc::new(Mutex::new(PullState::default())),
        };
        let transport = cluster.transport(&channel_id, self_id, peers);
        let (node, raft) = RaftNode::start(raft_cfg, &raft_dir, sm, transport)?;
        info!(
            target: LOG_TARGET,
            channel = %channel_id,
            consenter_id = self_id,
            height,
            "chain started"
        );

        let (submit_tx, submit_rx) = mpsc::channel(SUBMIT_QUEUE);
        let (shutdown_tx, _) = watch::channel(false);
        let (halt_done, _) = watch::channel(false);
        let router = Arc::new(Router {
            channel_id: channel_id.clone(),
            self_id,
            raft: raft.clone(),
            cluster: cluster.clone(),
        });
        let inner = Arc::new_cyclic(|weak: &Weak<ChainInner>| {
            let tasks = vec![
                runtime.spawn(submitter(
                    router,
                    submit_rx,
                    opts.max_batch_entries.max(1),
                    shutdown_tx.subscribe(),
                )),
                runtime.spawn(batch_timer(
                    channel_id.clone(),
                    raft.clone(),
                    pending_rx,
                    config_rx.clone(),
                    shutdown_tx.subscribe(),
                )),
                runtime.spawn(membership(
                    channel_id.clone(),
                    self_id,
                    raft.clone(),
                    members_rx.clone(),
                    weak.clone(),
                    tick,
                    shutdown_tx.subscribe(),
                )),
            ];
            ChainInner {
                channel_id,
                consenter_id: self_id,
                signer,
                store,
                config: config_rx,
                members: members_rx,
                raft,
                node: Mutex::new(Some(node)),
                submit: submit_tx,
                shutdown: shutdown_tx,
                halted: AtomicBool::new(false),
                halt_done,
                tasks: Mutex::new(tasks),
            }
        });
        Ok(ChainHandle { inner })
    }
}

/// A handle to a running chain; cheap to clone.
#[derive(Clone)]
pub struct ChainHandle {
    inner: Arc<ChainInner>,
}

struct ChainInner {
    channel_id: String,
    consenter_id: u64,
    signer: Arc<SigningIdentity>,
    store: Arc<BlockStore>,
    config: watch::Receiver<Arc<ChannelConfig>>,
    members: watch::Receiver<Vec<u64>>,
    raft: RaftHandle,
    node: Mutex<Option<RaftNode>>,
    submit: mpsc::Sender<Submission>,
    shutdown: watch::Sender<bool>,
    halted: AtomicBool,
    halt_done: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for ChainInner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
        // Dropping the node stops the Raft loop and joins its thread.
    }
}

impl fmt::Debug for ChainHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainHandle")
            .field("channel_id", &self.inner.channel_id)
            .field("consenter_id", &self.inner.consenter_id)
            .finish_non_exhaustive()
    }
}

impl ChainHandle {
    /// The channel this chain orders.
    pub fn channel_id(&self) -> &str {
        &self.inner.channel_id
    }

    /// The config in force (replaced when a config block is written).
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.inner.config.borrow().clone()
    }

    /// A receiver that sees every config the chain switches to.
    pub fn subscribe_config(&self) -> watch::Receiver<Arc<ChannelConfig>> {
        self.inner.config.clone()
    }

    /// The channel's ledger.
    pub fn block_store(&self) -> Arc<BlockStore> {
        self.inner.store.clone()
    }

    /// The channel's Raft node (for the cluster server to step messages).
    pub fn raft(&self) -> &RaftHandle {
        &self.inner.raft
    }

    /// This node's raft id in the channel.
    pub fn consenter_id(&self) -> u64 {
        self.inner.consenter_id
    }

    /// The identity that signs this node's blocks.
    pub fn signer(&self) -> Arc<SigningIdentity> {
        self.inner.signer.clone()
    }

    /// True once the chain was halted or its Raft loop stopped.
    pub fn is_halted(&self) -> bool {
        self.inner.halted.load(Ordering::SeqCst) || self.inner.raft.status().stopped
    }

    /// Orders a checked normal envelope (serialized `common.Envelope`).
    ///
    /// `Ok` once it is committed in the Raft log (durable on a majority).
    /// The leader proposes it (sharing one entry with concurrent calls); a
    /// follower forwards it to the leader. Without a leader, or when the
    /// outcome is unknown (leadership lost before the commit), the answer is
    /// SERVICE_UNAVAILABLE; resubmitting is safe since duplicates are
    /// dropped when applied.
    pub async fn order(&self, envelope: Vec<u8>) -> Result<(), Reject> {
        self.submit(vec![envelope], false, false).await
    }

    /// Orders a CONFIG envelope (serialized) made by
    /// [`process_config_update`](crate::msgprocessor::process_config_update).
    ///
    /// It is checked against the current config first (BAD_REQUEST or
    /// FORBIDDEN as [`check_config_envelope`] says; BAD_REQUEST if it changes
    /// more than one consenter). `Ok` means the entry committed; it is
    /// checked again when applied and skipped if another config update got
    /// in first (the config sequence then tells).
    pub async fn configure(&self, config_envelope: Vec<u8>) -> Result<(), Reject> {
        self.precheck_config(&config_envelope)?;
        self.submit(vec![config_envelope], true, false).await
    }

    /// For the cluster server: envelopes forwarded by a follower. Only the
    /// leader accepts them (SERVICE_UNAVAILABLE "not the leader" elsewhere).
    pub async fn order_forwarded(
        &self,
        envelopes: Vec<Vec<u8>>,
        config: bool,
    ) -> Result<(), Reject> {
        if !self.inner.raft.status().is_leader() {
            return Err(unavailable(format!(
                "not the leader of channel {}",
                self.inner.channel_id
            )));
        }
        self.submit(envelopes, config, true).await
    }

    /// Height, leadership, term and config sequence.
    pub fn status(&self) -> ChainStatus {
        let raft = self.inner.raft.status();
        ChainStatus {
            height: self.inner.store.height(),
            consenter_id: self.inner.consenter_id,
            leader: raft.leader,
            is_leader: raft.is_leader(),
            term: raft.term,
            config_sequence: self.inner.config.borrow().config.sequence,
        }
    }

    /// Stops the chain: its tasks, its Raft node (waiting for the loop
    /// thread to end). Pending calls fail with SERVICE_UNAVAILABLE. Calling
    /// it again waits for the first call to finish.
    pub async fn halt(&self) {
        let inner = &self.inner;
        if inner.halted.swap(true, Ordering::SeqCst) {
            let mut done = inner.halt_done.subscribe();
            let _ = done.wait_for(|d| *d).await;
            return;
        }
        let _ = inner.shutdown.send(true);
        inner.raft.shutdown().await;
        let node = inner.node.lock().take();
        if let Some(node) = node {
            let _ = tokio::task::spawn_blocking(move || drop(node)).await;
        }
        for task in inner.tasks.lock().drain(..) {
            task.abort();
        }
        inner.halt_done.send_replace(true);
        info!(target: LOG_TARGET, channel = %inner.channel_id, "chain halted");
    }

    async fn submit(
        &self,
        envelopes: Vec<Vec<u8>>,
        config: bool,
        forwarded: bool,
    ) -> Result<(), Reject> {
        let halted = || {
            unavailable(format!(
                "the chain of channel {} is halted",
                self.inner.channel_id
            ))
        };
        if self.inner.halted.load(Ordering::SeqCst) {
            return Err(halted());
        }
        if envelopes.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .submit
            .send(Submission {
                envelopes,
                config,
                forwarded,
                reply,
            })
            .await
            .map_err(|_| halted())?;
        rx.await.map_err(|_| halted())?
    }

    fn precheck_config(&self, bytes: &[u8]) -> Result<(), Reject> {
        let env = Envelope::decode(bytes)
            .map_err(|e| Reject::bad_request(format!("malformed CONFIG envelope: {e}")))?;
        let channel = envelope_channel(&env).unwrap_or_default();
        if channel != self.inner.channel_id {
            return Err(Reject::bad_request(format!(
                "CONFIG envelope is for channel '{channel}', not '{}'",
                self.inner.channel_id
            )));
        }
        let current = self.config();
        let config = check_config_envelope(&env, &current)?;
        let next = ChannelConfig::from_config(&config)
            .map_err(|e| Reject::bad_request(format!("the updated config is not valid: {e}")))?;
        let ids = self.inner.members.borrow().clone();
        if ids.len() == current.raft.consenters.len() {
            next_membership(&current, &ids, 0, &next).map_err(Reject::bad_request)?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------- submission

/// One `order`/`configure`/`order_forwarded` call waiting for its entry.
struct Submission {
    envelopes: Vec<Vec<u8>>,
    config: bool,
    forwarded: bool,
    reply: oneshot::Sender<Result<(), Reject>>,
}

/// Proposes on the leader, forwards elsewhere.
struct Router {
    channel_id: String,
    self_id: u64,
    raft: RaftHandle,
    cluster: Arc<dyn Cluster>,
}

impl Router {
    async fn route(
        &self,
        envelopes: Vec<Vec<u8>>,
        config: bool,
        may_forward: bool,
    ) -> Result<(), Reject> {
        let status = self.raft.status();
        let mut leader = status.leader;
        if status.is_leader() {
            match self.propose(&envelopes, config).await {
                Ok(()) => return Ok(()),
                Err(RaftError::NotLeader { leader: now }) => leader = now,
                Err(err) => return Err(self.reject(err)),
            }
        }
        if !may_forward {
            return Err(unavailable(format!(
                "not the leader of channel {}",
                self.channel_id
            )));
        }
        match leader {
            Some(to) if to != self.self_id => {
                self.cluster
                    .forward(&self.channel_id, to, envelopes, config)
                    .await
            }
            _ => Err(self.reject(RaftError::NotLeader { leader: None })),
        }
    }

    async fn propose(&self, envelopes: &[Vec<u8>], config: bool) -> Result<(), RaftError> {
        if config {
            for env in envelopes {
                self.raft
                    .propose(encode_entry(Kind::Config(env.clone())))
                    .await?;
            }
            return Ok(());
        }
        let entry = encode_entry(Kind::Envelopes(EnvelopeBatch {
            envelopes: envelopes.to_vec(),
        }));
        self.raft.propose(entry).await.map(|_| ())
    }

    fn reject(&self, err: RaftError) -> Reject {
        let channel = &self.channel_id;
        match err {
            RaftError::NotLeader { leader: None } => {
                unavailable(format!("no Raft leader for channel {channel}"))
            }
            RaftError::NotLeader { leader: Some(l) } => unavailable(format!(
                "the Raft leadership of channel {channel} moved to node {l}; retry"
            )),
            RaftError::ProposalDropped | RaftError::Busy => unavailable(format!(
                "the Raft leader of channel {channel} could not take the entry now \
                 (leadership transfer or too much uncommitted data); retry"
            )),
            err @ (RaftError::UnknownOutcome { .. } | RaftError::Timeout { .. }) => {
                unavailable(format!(
                    "channel {channel}: {err}; the envelopes may or may not be ordered, \
                     resubmitting them is safe (duplicates are dropped)"
                ))
            }
            err @ RaftError::Overwritten { .. } => {
                unavailable(format!("channel {channel}: {err}; resubmit"))
            }
            RaftError::Stopped => unavailable(format!("the chain of channel {channel} is halted")),
            err => Reject::internal(format!("channel {channel}: {err}")),
        }
    }
}

/// Collects submissions into entries and dispatches them.
async fn submitter(
    router: Arc<Router>,
    mut rx: mpsc::Receiver<Submission>,
    max_entries: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            sub = rx.recv() => match sub {
                Some(sub) => sub,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        if first.config {
            tokio::spawn(flush(router.clone(), vec![first]));
            continue;
        }
        let mut count = first.envelopes.len();
        let mut bytes: usize = first.envelopes.iter().map(Vec::len).sum();
        let mut batch = vec![first];
        let deadline = Instant::now() + BATCH_WINDOW;
        while count < max_entries && bytes < MAX_ENTRY_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(sub)) if sub.config => {
                    tokio::spawn(flush(router.clone(), vec![sub]));
                }
                Ok(Some(sub)) => {
                    count += sub.envelopes.len();
                    bytes += sub.envelopes.iter().map(Vec::len).sum::<usize>();
                    batch.push(sub);
                }
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(flush(router.clone(), batch));
    }
    rx.close();
    while let Ok(sub) = rx.try_recv() {
        let _ = sub.reply.send(Err(unavailable(format!(
            "the chain of channel {} is halted",
            router.channel_id
        ))));
    }
}

/// Orders one batch of submissions and answers each of them.
async fn flush(router: Arc<Router>, batch: Vec<Submission>) {
    let config = batch.iter().any(|s| s.config);
    let (forwarded, local): (Vec<Submission>, Vec<Submission>) =
        batch.into_iter().partition(|s| s.forwarded);
    for (group, may_forward) in [(local, true), (forwarded, false)] {
        if group.is_empty() {
            continue;
        }
        let mut envelopes = Vec::new();
        let mut replies = Vec::with_capacity(group.len());
        for sub in group {
            envelopes.extend(sub.envelopes);
            replies.push(sub.reply);
        }
        let outcome = router.route(envelopes, config, may_forward).await;
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }
}

fn encode_entry(kind: Kind) -> Vec<u8> {
    OrdererEntry { kind: Some(kind) }.encode_to_vec()
}

fn unavailable(info: impl Into<String>) -> Reject {
    Reject {
        status: Status::ServiceUnavailable,
        info: info.into(),
    }
}

// ------------------------------------------------------------ batch timer

/// What the state machine publishes for the batch timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingState {
    /// Envelopes are pending in the cutter.
    pending: bool,
    /// The ledger height (the `Cut` to propose).
    height: u64,
    /// Bumped whenever a new pending batch starts.
    generation: u64,
}

/// Proposes `Cut { height }` once a pending batch is `BatchTimeout` old, if
/// this node leads.
async fn batch_timer(
    channel_id: String,
    raft: RaftHandle,
    mut pending: watch::Receiver<PendingState>,
    config: watch::Receiver<Arc<ChannelConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // (generation, height, deadline) of the batch being timed.
    let mut armed: Option<(u64, u64, Instant)> = None;
    loop {
        let state = *pending.borrow_and_update();
        armed = match armed {
            _ if !state.pending => None,
            Some(a) if a.0 == state.generation => Some(a),
            _ => Some((
                state.generation,
                state.height,
                Instant::now() + config.borrow().batch_timeout,
            )),
        };
        let deadline = armed.map(|a| a.2);
        tokio::select! {
            _ = shutdown.changed() => break,
            changed = pending.changed() => if changed.is_err() { break },
            _ = sleep_until(deadline) => {
                let Some((generation, height, _)) = armed else { continue };
                if raft.status().is_leader() {
                    let raft = raft.clone();
                    let channel = channel_id.clone();
                    tokio::spawn(async move {
                        let entry = encode_entry(Kind::Cut(CutRequest { height }));
                        if let Err(err) = raft.propose(entry).await {
                            debug!(target: LOG_TARGET, channel = %channel, height, %err, "batch timeout cut not ordered");
                        }
                    });
                }
                // Try again after another timeout unless the batch is cut.
                armed = Some((generation, height, Instant::now() + config.borrow().batch_timeout));
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// ------------------------------------------------------------- membership

/// On the leader, turns the consenter ids of the config in force into Raft
/// membership changes; halts the chain when this node is no longer a
/// consenter.
async fn membership(
    channel_id: String,
    self_id: u64,
    raft: RaftHandle,
    mut wanted: watch::Receiver<Vec<u64>>,
    chain: Weak<ChainInner>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut status = raft.subscribe_status();
    let retry = (tick * 5).max(Duration::from_millis(50));
    loop {
        let want = wanted.borrow_and_update().clone();
        if !want.contains(&self_id) {
            warn!(target: LOG_TARGET, channel = %channel_id, consenter_id = self_id, "this node was removed from the consenters; halting the chain");
            if let Some(inner) = chain.upgrade() {
                let handle = ChainHandle { inner };
                tokio::spawn(async move { handle.halt().await });
            }
            return;
        }
        let st = status.borrow_and_update().clone();
        if st.stopped {
            return;
        }
        if st.is_leader() && st.voters_outgoing.is_empty() {
            if let Some(cc) = next_conf_change(&st, &want, self_id) {
                let what = format!("{:?}", cc.get_changes());
                match raft.propose_conf_change(cc).await {
                    Ok((_, index)) => {
                        info!(target: LOG_TARGET, channel = %channel_id, index, change = %what, "raft membership changed");
                        // Decide the next step on a status that shows this one.
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            seen = status.wait_for(|s| s.applied >= index || s.stopped) => {
                                if seen.is_err() { return }
                            }
                        }
                        continue;
                    }
                    Err(err) => {
                        debug!(target: LOG_TARGET, channel = %channel_id, change = %what, %err, "raft membership change not done; will retry");
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            _ = tokio::time::sleep(retry) => {}
                        }
                        continue;
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = wanted.changed() => if changed.is_err() { return },
            changed = status.changed() => if changed.is_err() { return },
        }
    }
}

/// The next single membership change that moves `status` towards `want`:
/// add a missing consenter as a learner, promote a wanted learner, remove a
/// node that is no longer wanted (never this node itself).
fn next_conf_change(status: &RaftStatus, want: &[u64], self_id: u64) -> Option<ConfChangeV2> {
    let single = |ty: ConfChangeType, id: u64| {
        let mut change = ConfChangeSingle::default();
        change.set_change_type(ty);
        change.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(change);
        cc
    };
    let member = |id: &u64| status.voters.contains(id) || status.learners.contains(id);
    if let Some(&id) = want.iter().find(|id| !member(id)) {
        return Some(single(ConfChangeType::AddLearnerNode, id));
    }
    if let Some(&id) = status.learners.iter().find(|id| want.contains(id)) {
        return Some(single(ConfChangeType::AddNode, id));
    }
    status
        .voters
        .iter()
        .chain(&status.learners)
        .find(|id| **id != self_id && !want.contains(id))
        .map(|&id| single(ConfChangeType::RemoveNode, id))
}

// ---------------------------------------------------------- state machine

/// A background pull for a snapshot restore.
#[derive(Default)]
struct PullState {
    in_flight: Option<(u64, u64)>,
    done: Option<(u64, u64, ChainResult<Vec<Block>>)>,
}

/// The chain's state machine, owned by the Raft loop thread.
struct ChainState {
    channel_id: String,
    signer: Arc<SigningIdentity>,
    store: Arc<BlockStore>,
    writer: BlockWriter,
    cutter: BlockCutter,
    config: Arc<ChannelConfig>,
    /// Raft metadata of the last block written (its `raft_index` included).
    meta: etcdraft::BlockMetadata,
    dedupe: Dedupe,
    /// Every entry up to here has all its effects in the ledger (valid
    /// while nothing is pending).
    durable: u64,
    /// The entry that contributed the first pending envelope.
    pending_since: Option<u64>,
    /// The highest index Raft handed over (applied, noted or restored).
    processed: u64,
    /// The onboarding marker, while the Raft log may be behind the ledger.
    onboarding: Option<PathBuf>,
    cluster: Arc<dyn Cluster>,
    config_tx: watch::Sender<Arc<ChannelConfig>>,
    pending_tx: watch::Sender<PendingState>,
    members_tx: watch::Sender<Vec<u64>>,
    runtime: tokio::runtime::Handle,
    pull: Arc<Mutex<PullState>>,
}

impl StateMachine for ChainState {
    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) -> RaftResult<()> {
        self.apply_entry(index, data)
            .map_err(RaftError::application)
    }

    fn applied_index(&self) -> u64 {
        let durable = self.durable_index();
        if self.onboarding.is_some() {
            durable.min(self.processed)
        } else {
            durable
        }
    }

    fn note_applied(&mut self, index: u64) {
        self.after_entry(index, true);
    }

    fn snapshot(&self) -> Vec<u8> {
        let number = self.store.height().saturating_sub(1);
        let hash = self.store.last_block_hash().unwrap_or_default();
        SnapshotData { number, hash }.encode()
    }

    fn restore(&mut self, index: u64, _term: u64, data: &[u8]) -> RaftResult<()> {
        self.restore_snapshot(index, data)
            .map_err(RaftError::application)
    }
}

impl ChainState {
    fn durable_index(&self) -> u64 {
        match self.pending_since {
            Some(first) => first.saturating_sub(1),
            None => self.durable,
        }
    }

    fn apply_entry(&mut self, index: u64, data: &[u8]) -> ChainResult<()> {
        let was_pending = self.cutter.pending_len() > 0;
        let mut cut = false;
        match OrdererEntry::decode(data) {
            Err(err) => {
                warn!(target: LOG_TARGET, channel = %self.channel_id, index, %err, "skipped an undecodable raft entry");
            }
            Ok(OrdererEntry { kind: None }) => {
                warn!(target: LOG_TARGET, channel = %self.channel_id, index, "skipped an empty raft entry");
            }
            Ok(OrdererEntry {
                kind: Some(Kind::Envelopes(batch)),
            }) => {
                for env in batch.envelopes {
                    let hash = twill_crypto::sha256(&env);
                    if self.dedupe.seen(&hash)? {
                        debug!(target: LOG_TARGET, channel = %self.channel_id, index, "dropped a duplicate envelope");
                        continue;
                    }
                    self.dedupe.push_pending(hash);
                    let (batches, _) = self.cutter.ordered(env);
                    for batch in batches {
                        let hashes = self.dedupe.take_pending(batch.len());
                        self.write_block(batch, hashes, false, index)?;
                        cut = true;
                    }
                }
            }
            Ok(OrdererEntry {
                kind: Some(Kind::Cut(CutRequest { height })),
            }) => {
                if height == self.store.height() && self.cutter.pending_len() > 0 {
                    let batch = self.cutter.cut();
                    let hashes = self.dedupe.take_pending(batch.len());
                    self.write_block(batch, hashes, false, index)?;
                    cut = true;
                }
            }
            Ok(OrdererEntry {
                kind: Some(Kind::Config(env)),
            }) => {
                cut = self.apply_config(index, env)?;
            }
        }
        self.after_entry(index, was_pending && !cut);
        Ok(())
    }

    /// Bookkeeping after entry `index`; `continued` says the pending batch
    /// (if any) is the one that was pending before the entry.
    fn after_entry(&mut self, index: u64, continued: bool) {
        self.processed = self.processed.max(index);
        if self.cutter.pending_len() == 0 {
            self.pending_since = None;
            self.durable = self.durable.max(index);
        } else if !continued {
            self.pending_since = Some(index);
        } else if self.pending_since.is_none() {
            self.pending_since = Some(self.durable + 1);
        }
        self.publish_pending();
        self.check_onboarding();
    }

    fn publish_pending(&self) {
        let pending = self.cutter.pending_len() > 0;
        let height = self.store.height();
        self.pending_tx.send_if_modified(|state| {
            if state.pending == pending && state.height == height {
                return false;
            }
            if pending && (!state.pending || state.height != height) {
                state.generation += 1;
            }
            state.pending = pending;
            state.height = height;
            true
        });
    }

    fn check_onboarding(&mut self) {
        let Some(marker) = &self.onboarding else {
            return;
        };
        if self.processed < self.durable_index() {
            return;
        }
        match std::fs::remove_file(marker) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                warn!(target: LOG_TARGET, channel = %self.channel_id, %err, "cannot remove the onboarding marker");
                return;
            }
        }
        info!(target: LOG_TARGET, channel = %self.channel_id, index = self.processed, "caught up with the raft log");
        self.onboarding = None;
    }

    /// Writes the next block holding `envelopes`, completed by entry `index`.
    /// Writes the next block from `envelopes`, whose SHA-256 hashes (in
    /// order) are `hashes`.
    fn write_block(
        &mut self,
        envelopes: Vec<Vec<u8>>,
        hashes: Vec<[u8; 32]>,
        is_config: bool,
        index: u64,
    ) -> ChainResult<()> {
        self.meta.raft_index = index;
        let block = self
            .writer
            .write_next(envelopes, is_config, self.meta.encode_to_vec())?;
        // The writer computed the data hash itself a moment ago.
        self.store.append_built(&block)?;
        self.dedupe.record_hashes(&block, &hashes)?;
        debug!(
            target: LOG_TARGET,
            channel = %self.channel_id,
            number = self.writer.height() - 1,
            index,
            is_config,
            "block written"
        );
        Ok(())
    }

    /// Applies a config entry; true if blocks were written.
    fn apply_config(&mut self, index: u64, env_bytes: Vec<u8>) -> ChainResult<bool> {
        let skip = |reason: &dyn fmt::Display| -> ChainResult<bool> {
            warn!(target: LOG_TARGET, channel = %self.channel_id, index, %reason, "skipped a config entry");
            Ok(false)
        };
        let hash = twill_crypto::sha256(&env_bytes);
        if self.dedupe.seen(&hash)? {
            // A replay after a restart or a catch-up.
            debug!(target: LOG_TARGET, channel = %self.channel_id, index, "config entry already in the ledger");
            return Ok(false);
        }
        let env = match Envelope::decode(env_bytes.as_slice()) {
            Ok(env) => env,
            Err(err) => return skip(&err),
        };
        match envelope_channel(&env) {
            Some(channel) if channel == self.channel_id => {}
            other => return skip(&format!("the envelope is for channel {other:?}")),
        }
        let config = match check_config_envelope(&env, &self.config) {
            Ok(config) => config,
            Err(reject) => return skip(&reject),
        };
        let next = match ChannelConfig::from_config(&config) {
            Ok(next) => next,
            Err(err) => return skip(&err),
        };
        let (ids, next_id) = match next_membership(
            &self.config,
            &self.meta.consenter_ids,
            self.meta.next_consenter_id,
            &next,
        ) {
            Ok(change) => change,
            Err(reason) => return skip(&reason),
        };
        if self.cutter.pending_len() > 0 {
            let batch = self.cutter.cut();
            let hashes = self.dedupe.take_pending(batch.len());
            self.write_block(batch, hashes, false, index)?;
        }
        self.meta.consenter_ids = ids;
        self.meta.next_consenter_id = next_id;
        self.write_block(vec![env_bytes], vec![hash], true, index)?;
        info!(
            target: LOG_TARGET,
            channel = %self.channel_id,
            sequence = next.config.sequence,
            consenter_ids = ?self.meta.consenter_ids,
            "config block written"
        );
        self.install_config(Arc::new(next));
        Ok(true)
    }

    fn install_config(&mut self, config: Arc<ChannelConfig>) {
        self.cutter.set_batch_size(config.batch_size);
        self.config = config.clone();
        self.config_tx.send_replace(config);
        self.publish_members();
    }

    fn publish_members(&self) {
        let peers = consenter_map(&self.config, &self.meta.consenter_ids);
        self.cluster.update_peers(&self.channel_id, peers);
        let ids = self.meta.consenter_ids.clone();
        self.members_tx.send_if_modified(|current| {
            if *current == ids {
                false
            } else {
                *current = ids;
                true
            }
        });
    }

    fn restore_snapshot(&mut self, index: u64, data: &[u8]) -> ChainResult<()> {
        let snap = SnapshotData::decode(data)?;
        let height = self.store.height();
        if snap.number < height {
            let ours = read_block(&self.store, snap.number)?;
            let ours = ours.header.as_ref().map(block_header_hash);
            if ours != Some(snap.hash) {
                return Err(ChainError::Diverged {
                    number: snap.number,
                });
            }
            if self.cutter.pending_len() > 0 {
                warn!(target: LOG_TARGET, channel = %self.channel_id, index, "dropping pending envelopes covered by a raft snapshot");
            }
        } else {
            let (start, end) = (height, snap.number + 1);
            let done = {
                let mut pull = self.pull.lock();
                match pull.done.take() {
                    Some((s, e, result)) if (s, e) == (start, end) => Some(result),
                    _ => None,
                }
            };
            match done {
                Some(Ok(blocks)) => self.append_pulled(blocks, start, &snap.hash)?,
                Some(Err(err)) => return Err(err),
                None => {
                    self.start_pull(start, end);
                    return Err(ChainError::CatchingUp { start, end });
                }
            }
        }
        self.cutter.cut();
        self.dedupe.clear_pending();
        self.pending_since = None;
        self.processed = self.processed.max(index);
        self.durable = self.durable.max(index);
        self.publish_pending();
        self.check_onboarding();
        info!(target: LOG_TARGET, channel = %self.channel_id, index, height = self.store.height(), "restored from a raft snapshot");
        Ok(())
    }

    fn start_pull(&self, start: u64, end: u64) {
        let mut pull = self.pull.lock();
        if pull.in_flight.is_some() {
            return;
        }
        pull.in_flight = Some((start, end));
        let slot = self.pull.clone();
        let cluster = self.cluster.clone();
        let channel = self.channel_id.clone();
        info!(target: LOG_TARGET, channel = %channel, start, end, "pulling blocks from other consenters");
        self.runtime.spawn(async move {
            let result = cluster.pull_blocks(&channel, start, end).await;
            let mut pull = slot.lock();
            pull.in_flight = None;
            pull.done = Some((start, end, result));
        });
    }

    /// Checks pulled blocks against the tip and the snapshot's hash, appends
    /// them and reloads the writer, metadata and config from the ledger.
    fn append_pulled(
        &mut self,
        blocks: Vec<Block>,
        start: u64,
        anchor: &[u8; 32],
    ) -> ChainResult<()> {
        verify_pulled(&blocks, start, self.store.last_block_hash(), anchor)?;
        let mut result = Ok(());
        for block in &blocks {
            result = self
                .store
                .append(block)
                .map_err(ChainError::from)
                .and_then(|()| self.dedupe.record_block(block));
            if result.is_err() {
                break;
            }
        }
        self.reload_from_store()?;
        result
    }

    fn reload_from_store(&mut self) -> ChainResult<()> {
        let last = read_block(&self.store, self.store.height().saturating_sub(1))?;
        let config_block = self
            .store
            .last_config_block()?
            .ok_or_else(|| ChainError::invalid("the ledger has no config block"))?;
        let config = config_of_block(&config_block)?;
        self.meta = raft_metadata(&last, &config)?;
        self.writer = BlockWriter::new(&last, self.signer.clone())?;
        if config.config.sequence != self.config.config.sequence {
            self.install_config(Arc::new(config));
        } else {
            self.publish_members();
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ dedupe

/// Hashes of every envelope ordered on the channel (see the module docs).
struct Dedupe {
    db: sled::Db,
    /// Hashes of the envelopes pending in the cutter.
    pending: HashSet<[u8; 32]>,
    /// The same hashes in cutter order, so that a cut batch takes its
    /// hashes from the front instead of hashing its envelopes again.
    order: VecDeque<[u8; 32]>,
}

impl Dedupe {
    fn open(dir: &Path, store: &BlockStore) -> ChainResult<Dedupe> {
        let db = twill_ledger::open_sled_waiting(
            &sled::Config::new()
                .path(dir)
                .cache_capacity(DEDUPE_CACHE_BYTES),
            Duration::from_secs(10),
        )?;
        let mut indexed = match db.get(DEDUPE_HEIGHT_KEY)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                ChainError::io(dir, std::io::Error::other("corrupt dedupe height"))
            })?),
            None => 0,
        };
        let height = store.height();
        if indexed > height {
            warn!(target: LOG_TARGET, dir = %dir.display(), indexed, height, "dedupe index is ahead of the ledger; rebuilding it");
            db.clear()?;
            indexed = 0;
        }
        let dedupe = Dedupe {
            db,
            pending: HashSet::new(),
            order: VecDeque::new(),
        };
        for number in indexed..height {
            dedupe.record(&read_block(store, number)?)?;
        }
        Ok(dedupe)
    }

    fn seen(&self, hash: &[u8; 32]) -> ChainResult<bool> {
        Ok(self.pending.contains(hash) || self.db.contains_key(hash)?)
    }

    /// Notes an envelope that has just entered the cutter.
    fn push_pending(&mut self, hash: [u8; 32]) {
        self.pending.insert(hash);
        self.order.push_back(hash);
    }

    /// The hashes of the next `n` envelopes the cutter released (cutter
    /// order is first in, first out), no longer pending.
    fn take_pending(&mut self, n: usize) -> Vec<[u8; 32]> {
        let n = n.min(self.order.len());
        let hashes: Vec<[u8; 32]> = self.order.drain(..n).collect();
        for hash in &hashes {
            self.pending.remove(hash);
        }
        hashes
    }

    fn clear_pending(&mut self) {
        self.pending.clear();
        self.order.clear();
    }

    fn record_block(&mut self, block: &Block) -> ChainResult<()> {
        // Hash each envelope once: it leaves the pending set and enters the
        // durable index under the same key.
        let hashes = envelope_hashes(block);
        for hash in &hashes {
            self.pending.remove(hash);
        }
        self.order.retain(|h| !hashes.contains(h));
        self.record_hashes(block, &hashes)
    }

    fn record(&self, block: &Block) -> ChainResult<()> {
        self.record_hashes(block, &envelope_hashes(block))
    }

    fn record_hashes(&self, block: &Block, hashes: &[[u8; 32]]) -> ChainResult<()> {
        let number = block.header.as_ref().map_or(0, |h| h.number);
        let mut batch = sled::Batch::default();
        for hash in hashes {
            batch.insert(&hash[..], &number.to_be_bytes()[..]);
        }
        batch.insert(DEDUPE_HEIGHT_KEY, &(number + 1).to_be_bytes()[..]);
        self.db.apply_batch(batch)?;
        Ok(())
    }
}

// ----------------------------------------------------------------- helpers

/// What a config block says about a channel, for starting or joining it.
pub(crate) struct ConfigBlockInfo {
    pub(crate) channel_id: String,
    pub(crate) config: ChannelConfig,
    pub(crate) number: u64,
    /// The Raft metadata of the block (ids `1..=n` for block 0).
    pub(crate) meta: etcdraft::BlockMetadata,
    /// This node's raft id, if it is a consenter.
    pub(crate) self_id: Option<u64>,
}

/// Decodes a config block: channel, config, consenter ids and this node's id.
pub(crate) fn inspect_config_block(
    block: &Block,
    self_cert_der: &[u8],
) -> ChainResult<ConfigBlockInfo> {
    let number = block
        .header
        .as_ref()
        .ok_or_else(|| ChainError::invalid("the block has no header"))?
        .number;
    if !is_config_block(block) {
        return Err(ChainError::invalid(format!(
            "block {number} is not a config block"
        )));
    }
    let (header, _) = config_from_block(block)
        .map_err(|e| ChainError::invalid(format!("block {number}: {e}")))?;
    let config = config_of_block(block)?;
    let meta = raft_metadata(block, &config)?;
    let peers = consenter_map(&config, &meta.consenter_ids);
    Ok(ConfigBlockInfo {
        channel_id: header.channel_id,
        self_id: find_self(&peers, self_cert_der),
        config,
        number,
        meta,
    })
}

impl ConfigBlockInfo {
    /// The block's consenters by raft id.
    pub(crate) fn peers(&self) -> BTreeMap<u64, etcdraft::Consenter> {
        consenter_map(&self.config, &self.meta.consenter_ids)
    }
}

fn config_of_block(block: &Block) -> ChainResult<ChannelConfig> {
    let (_, env) = config_from_block(block).map_err(|e| ChainError::invalid(e.to_string()))?;
    let config = env
        .config
        .ok_or_else(|| ChainError::invalid("the config block holds no config"))?;
    ChannelConfig::from_config(&config)
        .map_err(|e| ChainError::invalid(format!("the block's config is not valid: {e}")))
}

/// The Raft metadata of `block`, under `config` (the config in force at
/// it): ids `1..=n` for block 0, else what its consenter metadata records.
fn raft_metadata(block: &Block, config: &ChannelConfig) -> ChainResult<etcdraft::BlockMetadata> {
    let header = block
        .header
        .as_ref()
        .ok_or_else(|| ChainError::invalid("the block has no header"))?;
    let n = config.raft.consenters.len() as u64;
    if header.number == 0 {
        return Ok(etcdraft::BlockMetadata {
            consenter_ids: (1..=n).collect(),
            next_consenter_id: n + 1,
            raft_index: 0,
        });
    }
    let bytes = consenter_metadata(block)?;
    let meta = etcdraft::BlockMetadata::decode(bytes.as_slice()).map_err(|e| {
        ChainError::invalid(format!(
            "block {}: malformed etcdraft.BlockMetadata: {e}",
            header.number
        ))
    })?;
    if meta.consenter_ids.len() as u64 != n || meta.next_consenter_id == 0 {
        return Err(ChainError::invalid(format!(
            "block {}: its raft metadata names {} consenter ids for {n} consenters",
            header.number,
            meta.consenter_ids.len()
        )));
    }
    Ok(meta)
}

/// Consenters by raft id.
/// SHA-256 of every envelope of `block`, in order.
fn envelope_hashes(block: &Block) -> Vec<[u8; 32]> {
    block
        .data
        .as_ref()
        .map(|d| d.data.iter().map(|env| twill_crypto::sha256(env)).collect())
        .unwrap_or_default()
}

fn consenter_map(config: &ChannelConfig, ids: &[u64]) -> BTreeMap<u64, etcdraft::Consenter> {
    ids.iter()
        .copied()
        .zip(config.raft.consenters.iter().cloned())
        .collect()
}

/// The DER of the first certificate in `bytes` (PEM), or `bytes` as is.
fn cert_der(bytes: &[u8]) -> Vec<u8> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| twill_crypto::pem::parse_pem_blocks(text).ok())
        .and_then(|blocks| blocks.into_iter().find(|(label, _)| label == "CERTIFICATE"))
        .map_or_else(|| bytes.to_vec(), |(_, der)| der)
}

/// What identifies a consenter across configs: the DER of its client and
/// server TLS certificates.
type ConsenterKey = (Vec<u8>, Vec<u8>);

/// The [`ConsenterKey`] of `c`.
fn consenter_key(c: &etcdraft::Consenter) -> ConsenterKey {
    (cert_der(&c.client_tls_cert), cert_der(&c.server_tls_cert))
}

/// This node's raft id: the consenter whose client or server TLS
/// certificate is `self_cert_der`.
fn find_self(peers: &BTreeMap<u64, etcdraft::Consenter>, self_cert_der: &[u8]) -> Option<u64> {
    peers
        .iter()
        .find(|(_, c)| {
            cert_der(&c.client_tls_cert) == self_cert_der
                || cert_der(&c.server_tls_cert) == self_cert_der
        })
        .map(|(&id, _)| id)
}

/// The consenter ids and next id after switching from `current` (whose
/// consenters have `ids`) to `next`. Refuses configs without consenters,
/// with a consenter twice, or changing more than one consenter.
fn next_membership(
    current: &ChannelConfig,
    ids: &[u64],
    mut next_id: u64,
    next: &ChannelConfig,
) -> Result<(Vec<u64>, u64), String> {
    if next.raft.consenters.is_empty() {
        return Err("the new config has no consenters".into());
    }
    let old: Vec<(u64, ConsenterKey)> = ids
        .iter()
        .copied()
        .zip(current.raft.consenters.iter().map(consenter_key))
        .collect();
    let mut new_ids = Vec::with_capacity(next.raft.consenters.len());
    let mut seen = HashSet::new();
    let mut added = 0usize;
    for consenter in &next.raft.consenters {
        let key = consenter_key(consenter);
        if !seen.insert(key.clone()) {
            return Err(format!(
                "consenter {}:{} is listed twice",
                consenter.host, consenter.port
            ));
        }
        match old.iter().find(|(_, k)| *k == key) {
            Some((id, _)) => new_ids.push(*id),
            None => {
                new_ids.push(next_id);
                next_id += 1;
                added += 1;
            }
        }
    }
    let removed = old.iter().filter(|(id, _)| !new_ids.contains(id)).count();
    if added + removed > 1 {
        return Err(format!(
            "the update adds {added} and removes {removed} consenters; \
             change one consenter per config update"
        ));
    }
    Ok((new_ids, next_id))
}

fn envelope_channel(env: &Envelope) -> Option<String> {
    let payload = Payload::decode(env.payload.as_slice()).ok()?;
    let header = payload.header?;
    let ch = ChannelHeader::decode(header.channel_header.as_slice()).ok()?;
    Some(ch.channel_id)
}

fn read_block(store: &BlockStore, number: u64) -> ChainResult<Block> {
    store
        .block(number)?
        .ok_or_else(|| ChainError::invalid(format!("block {number} is missing from the ledger")))
}

/// Appends `genesis` to an empty ledger, or checks it is the ledger's
/// block 0.
fn ensure_genesis(store: &BlockStore, genesis: &Block) -> ChainResult<()> {
    let header = genesis
        .header
        .as_ref()
        .ok_or_else(|| ChainError::invalid("the genesis block has no header"))?;
    if header.number != 0 {
        return Err(ChainError::invalid(format!(
            "a genesis block is block 0, not block {}",
            header.number
        )));
    }
    if !is_config_block(genesis) {
        return Err(ChainError::invalid(
            "the genesis block is not a config block",
        ));
    }
    if store.height() == 0 {
        store.append(genesis)?;
        return Ok(());
    }
    let ours = read_block(store, 0)?;
    if ours.header.as_ref().map(block_header_hash) != Some(block_header_hash(header)) {
        return Err(ChainError::invalid(
            "the ledger holds a different genesis block",
        ));
    }
    Ok(())
}

/// Checks that `blocks` are blocks `start..` chaining from `tip` (the
/// header hash of block `start - 1`, `None` for `start == 0`) to a last
/// block whose header hash is `anchor`, with matching data hashes.
pub(crate) fn verify_pulled(
    blocks: &[Block],
    start: u64,
    tip: Option<[u8; 32]>,
    anchor: &[u8; 32],
) -> ChainResult<()> {
    let mut prev = tip;
    let empty = BlockData::default();
    for (offset, block) in blocks.iter().enumerate() {
        let expected = start + offset as u64;
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| ChainError::invalid(format!("pulled block {expected} has no header")))?;
        if header.number != expected {
            return Err(ChainError::invalid(format!(
                "pulled block {} where block {expected} was expected",
                header.number
            )));
        }
        if header.previous_hash != prev.map(|p| p.to_vec()).unwrap_or_default() {
            return Err(ChainError::invalid(format!(
                "pulled block {expected} does not chain to block {}",
                expected.saturating_sub(1)
            )));
        }
        if block_data_hash(block.data.as_ref().unwrap_or(&empty)).as_slice()
            != header.data_hash.as_slice()
        {
            return Err(ChainError::invalid(format!(
                "pulled block {expected}: data hash does not match its data"
            )));
        }
        prev = Some(block_header_hash(header));
    }
    if prev.as_ref() != Some(anchor) {
        return Err(ChainError::invalid(format!(
            "pulled blocks [{start}, {}) do not end at the expected block hash",
            start + blocks.len() as u64
        )));
    }
    Ok(())
}

fn write_marker(dir: &Path, marker: &Path) -> ChainResult<()> {
    std::fs::File::create(marker)
        .and_then(|f| f.sync_all())
        .map_err(|e| ChainError::io(marker, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ChainError::io(dir, e))
}

/// The Raft settings from the channel's etcdraft options and `opts`.
fn raft_config(
    id: u64,
    peers: Vec<u64>,
    config: &ChannelConfig,
    opts: &ChainOptions,
) -> RaftConfig {
    let mut cfg = RaftConfig::new(id, peers);
    let options = config.raft.options.clone().unwrap_or_default();
    if let Some(tick) = opts.tick_interval {
        cfg.tick_interval = tick;
    } else if let Ok(tick) = twill_configtx::duration::parse_duration(&options.tick_interval) {
        if !tick.is_zero() {
            cfg.tick_interval = tick;
        }
    }
    if options.heartbeat_tick > 0 {
        cfg.heartbeat_tick = options.heartbeat_tick as usize;
    }
    if options.election_tick > 0 {
        cfg.election_tick = options.election_tick as usize;
    }
    if cfg.election_tick <= cfg.heartbeat_tick {
        cfg.election_tick = cfg.heartbeat_tick * 10;
    }
    if let Some(bytes) = opts.snapshot_interval_bytes {
        cfg.snapshot_interval_bytes = bytes.max(1);
    } else if options.snapshot_interval_size > 0 {
        cfg.snapshot_interval_bytes = u64::from(options.snapshot_interval_size);
    }
    let election = cfg
        .tick_interval
        .saturating_mul(u32::try_from(cfg.election_tick).unwrap_or(u32::MAX));
    cfg.proposal_timeout = cfg.proposal_timeout.max(election.saturating_mul(4));
    cfg
}

// ------------------------------------------------------------------- local

pub mod local {
    //! An in-process [`Cluster`]: chains of several "nodes"
    //! in one process, routed by channel and raft id, with links that can be
    //! cut. For tests and examples.
    //!
    //! Each node gets a [`LocalCluster`] from [`LocalNetwork::add_node`] and
    //! passes it to its chains (or registrar); once a chain is started, the
    //! node announces it with [`LocalCluster::register`]. Raft messages to
    //! chains not registered (yet) are reported unreachable.

    use super::*;

    /// Chains by (channel, raft id): their node and a weak reference.
    type Routes = HashMap<(String, u64), Route>;

    /// Where a chain runs. Raft messages go straight to its [`RaftHandle`]
    /// (which does not keep the chain alive), so that a transport never ends
    /// up dropping the last reference to a chain on a Raft loop thread.
    struct Route {
        node: usize,
        raft: RaftHandle,
        chain: Weak<ChainInner>,
    }

    /// Routes between the chains of in-process nodes.
    #[derive(Default)]
    pub struct LocalNetwork {
        routes: Mutex<Routes>,
        isolated: Mutex<HashSet<usize>>,
        nodes: Mutex<usize>,
    }

    impl fmt::Debug for LocalNetwork {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("LocalNetwork")
                .field("nodes", &*self.nodes.lock())
                .finish_non_exhaustive()
        }
    }

    impl LocalNetwork {
        /// An empty network.
        pub fn new() -> Arc<LocalNetwork> {
            Arc::new(LocalNetwork::default())
        }

        /// A new node on the network.
        pub fn add_node(self: &Arc<Self>) -> Arc<LocalCluster> {
            let mut nodes = self.nodes.lock();
            let node = *nodes;
            *nodes += 1;
            Arc::new(LocalCluster {
                net: self.clone(),
                node,
            })
        }

        /// Cuts every link to and from `node`.
        pub fn isolate(&self, node: usize) {
            self.isolated.lock().insert(node);
        }

        /// Restores the links of `node`.
        pub fn reconnect(&self, node: usize) {
            self.isolated.lock().remove(&node);
        }

        /// Restores every link.
        pub fn heal(&self) {
            self.isolated.lock().clear();
        }

        fn link_up(&self, a: usize, b: usize) -> bool {
            let isolated = self.isolated.lock();
            !isolated.contains(&a) && !isolated.contains(&b)
        }

        /// The chain with raft id `id` in `channel`, and its node.
        fn lookup(&self, channel: &str, id: u64) -> Option<(usize, ChainHandle)> {
            let routes = self.routes.lock();
            let route = routes.get(&(channel.to_string(), id))?;
            let inner = route.chain.upgrade()?;
            Some((route.node, ChainHandle { inner }))
        }

        /// The Raft node with id `id` in `channel`, and its node.
        fn raft(&self, channel: &str, id: u64) -> Option<(usize, RaftHandle)> {
            let routes = self.routes.lock();
            let route = routes.get(&(channel.to_string(), id))?;
            Some((route.node, route.raft.clone()))
        }

        /// Every live chain of `channel`, with its node.
        fn chains(&self, channel: &str) -> Vec<(usize, ChainHandle)> {
            let routes = self.routes.lock();
            routes
                .iter()
                .filter(|((c, _), _)| c == channel)
                .filter_map(|(_, route)| {
                    route
                        .chain
                        .upgrade()
                        .map(|inner| (route.node, ChainHandle { inner }))
                })
                .collect()
        }
    }

    /// One node's view of a [`LocalNetwork`].
    #[derive(Debug)]
    pub struct LocalCluster {
        net: Arc<LocalNetwork>,
        node: usize,
    }

    impl LocalCluster {
        /// This node's number on the network.
        pub fn node(&self) -> usize {
            self.node
        }

        /// Makes `chain` (running on this node) reachable by its channel and
        /// raft id. The network keeps only a weak reference.
        pub fn register(&self, chain: &ChainHandle) {
            self.net.routes.lock().insert(
                (chain.channel_id().to_string(), chain.consenter_id()),
                Route {
                    node: self.node,
                    raft: chain.raft().clone(),
                    chain: Arc::downgrade(&chain.inner),
                },
            );
        }
    }

    struct LocalTransport {
        net: Arc<LocalNetwork>,
        node: usize,
        channel: String,
    }

    impl Transport for LocalTransport {
        fn send(&self, msg: crate::raft::eraftpb::Message, reporter: &crate::raft::Reporter) {
            let to = msg.to;
            let snapshot = msg.get_msg_type() == crate::raft::eraftpb::MessageType::MsgSnapshot;
            let delivered = match self.net.raft(&self.channel, to) {
                Some((node, raft)) if self.net.link_up(self.node, node) => raft.step(msg).is_ok(),
                _ => false,
            };
            if !delivered {
                reporter.report_unreachable(to);
            }
            if snapshot {
                reporter.report_snapshot(to, delivered);
            }
        }
    }

    #[async_trait::async_trait]
    impl Cluster for LocalCluster {
        fn transport(
            &self,
            channel: &str,
            _self_id: u64,
            _peers: BTreeMap<u64, etcdraft::Consenter>,
        ) -> Arc<dyn Transport> {
            Arc::new(LocalTransport {
                net: self.net.clone(),
                node: self.node,
                channel: channel.to_string(),
            })
        }

        fn update_peers(&self, _channel: &str, _peers: BTreeMap<u64, etcdraft::Consenter>) {}

        async fn forward(
            &self,
            channel: &str,
            to: u64,
            envelopes: Vec<Vec<u8>>,
            config: bool,
        ) -> Result<(), Reject> {
            match self.net.lookup(channel, to) {
                Some((node, chain)) if self.net.link_up(self.node, node) => {
                    chain.order_forwarded(envelopes, config).await
                }
                _ => Err(unavailable(format!(
                    "the leader {to} of channel {channel} is unreachable"
                ))),
            }
        }

        async fn pull_blocks(
            &self,
            channel: &str,
            start: u64,
            end: u64,
        ) -> Result<Vec<Block>, ChainError> {
            let fail = |reason: String| {
                ChainError::Pull(format!(
                    "blocks [{start}, {end}) of channel {channel}: {reason}"
                ))
            };
            let source = self
                .net
                .chains(channel)
                .into_iter()
                .find(|(node, chain)| {
                    *node != self.node
                        && self.net.link_up(self.node, *node)
                        && chain.block_store().height() >= end
                })
                .ok_or_else(|| fail("no reachable consenter has these blocks".into()))?;
            let store = source.1.block_store();
            (start..end)
                .map(|n| match store.block(n) {
                    Ok(Some(block)) => Ok(block),
                    Ok(None) => Err(fail(format!("block {n} is missing"))),
                    Err(err) => Err(fail(err.to_string())),
                })
                .collect()
        }

        fn remove_channel(&self, channel: &str) {
            self.net
                .routes
                .lock()
                .retain(|(c, _), route| !(c == channel && route.node == self.node));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(voters: &[u64], learners: &[u64]) -> RaftStatus {
        RaftStatus {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            ..RaftStatus::default()
        }
    }

    fn change(cc: &ConfChangeV2) -> (ConfChangeType, u64) {
        let single = &cc.get_changes()[0];
        (single.get_change_type(), single.node_id)
    }

    #[test]
    fn membership_steps() {
        assert!(next_conf_change(&status(&[1, 2, 3], &[]), &[1, 2, 3], 1).is_none());
        let cc = next_conf_change(&status(&[1, 2, 3], &[]), &[1, 2, 3, 4], 1);
        assert_eq!(
            change(&cc.expect("add")),
            (ConfChangeType::AddLearnerNode, 4)
        );
        let cc = next_conf_change(&status(&[1, 2, 3], &[4]), &[1, 2, 3, 4], 1);
        assert_eq!(change(&cc.expect("promote")), (ConfChangeType::AddNode, 4));
        let cc = next_conf_change(&status(&[1, 2, 3, 4], &[]), &[1, 2, 4], 1);
        assert_eq!(
            change(&cc.expect("remove")),
            (ConfChangeType::RemoveNode, 3)
        );
        // Never removes itself.
        assert!(next_conf_change(&status(&[1, 2, 3], &[]), &[2, 3], 1).is_none());
    }

    #[test]
    fn snapshot_data_round_trip() {
        let data = SnapshotData {
            number: 42,
            hash: [7; 32],
        };
        assert_eq!(SnapshotData::decode(&data.encode()).ok(), Some(data));
        assert!(SnapshotData::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn pulled_blocks_must_chain_to_the_anchor() {
        let b0 = twill_configtx::block::new_block(0, Vec::new(), vec![b"g".to_vec()]);
        let h0 = block_header_hash(b0.header.as_ref().expect("header"));
        let b1 = twill_configtx::block::new_block(1, h0.to_vec(), vec![b"a".to_vec()]);
        let h1 = block_header_hash(b1.header.as_ref().expect("header"));
        let blocks = vec![b0.clone(), b1.clone()];
        assert!(verify_pulled(&blocks, 0, None, &h1).is_ok());
        assert!(verify_pulled(&blocks[1..], 1, Some(h0), &h1).is_ok());
        assert!(verify_pulled(&blocks, 0, None, &h0).is_err());
        assert!(verify_pulled(&blocks[1..], 1, Some(h1), &h1).is_err());
        let mut bad = b1;
        bad.data = Some(BlockData {
            data: vec![b"b".to_vec()],
        });
        assert!(verify_pulled(&[b0, bad], 0, None, &h1).is_err());
    }

    #[test]
    fn error_statuses() {
        let e = ChainError::AlreadyExists {
            channel: "c".into(),
        };
        assert_eq!((e.http_status(), e.code()), (409, "CHAIN_ALREADY_EXISTS"));
        assert_eq!(
            ChainError::NotFound {
                channel: "c".into()
            }
            .http_status(),
            404
        );
        assert_eq!(ChainError::invalid("x").http_status(), 400);
    }
}
