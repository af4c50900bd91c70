//! One joined channel ([`Channel`]) and the seam through which blocks are
//! committed to it ([`Committer`]).
//!
//! A [`Channel`] holds the channel's block store (at
//! `twill_ledger::channel_dir(ledger_root, id)`) and its current config.
//! Blocks reach it only through a [`Committer`]: the block puller
//! ([`crate::deliverclient`]) hands every block pulled from the ordering
//! service to [`Committer::commit`] on a blocking thread, one block at a
//! time and in order; joining hands it the genesis block. The committer
//! validates the block, writes the TRANSACTIONS_FILTER, applies config
//! blocks with [`Channel::set_config`] and appends the block to
//! [`Channel::store`].
//!
//! The peer's committer is [`crate::committer::LedgerCommitter`]
//! (validation, state, history, crash recovery).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use twill_peer::channel::{Channel, Committer};
//! use twill_peer::committer::LedgerCommitter;
//! # fn example(genesis: twill_protos::common::Block) -> Result<(), Box<dyn std::error::Error>> {
//! let root = std::path::Path::new("/var/twill/peer0/ledgersData");
//! let channel = Channel::create(root, &genesis)?;
//! let committer: Arc<dyn Committer> = Arc::new(LedgerCommitter::default());
//! committer.open_channel(&channel)?;
//! committer.commit(&channel, genesis)?;
//! assert_eq!(channel.height(), 1);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_configtx::ConfigtxError;
use twill_ledger::{BlockStore, LedgerError};
use twill_protos::common::{Block, BlockchainInfo};

use crate::blocks::{self, BlockError};

/// Policy that must be satisfied by a block's orderer signatures.
pub const BLOCK_VALIDATION_POLICY: &str = "/Channel/Orderer/BlockValidation";

/// Why a channel could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The ledger failed.
    #[error("channel {channel}: ledger: {source}")]
    Ledger {
        /// The channel.
        channel: String,
        /// The ledger's error.
        #[source]
        source: LedgerError,
    },
    /// The channel's config block is missing or not valid.
    #[error("channel {channel}: config: {source}")]
    Config {
        /// The channel.
        channel: String,
        /// What is wrong with it.
        #[source]
        source: ConfigtxError,
    },
    /// The ledger folder exists but holds no block.
    #[error("channel {channel}: the ledger at {} is empty", dir.display())]
    Empty {
        /// The channel.
        channel: String,
        /// Its folder.
        dir: PathBuf,
    },
    /// The channel's ledger folder already exists.
    #[error("channel {channel}: a ledger already exists at {}", dir.display())]
    Exists {
        /// The channel.
        channel: String,
        /// Its folder.
        dir: PathBuf,
    },
    /// The block given to create a channel is not a genesis block.
    #[error("channel {channel}: block {number} is not a genesis block (its number must be 0)")]
    NotGenesis {
        /// The channel.
        channel: String,
        /// The block's number.
        number: u64,
    },
}

/// Why a block could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The block is not the next one of the chain.
    #[error("channel {channel}: block {number} is not the next block (height is {height})")]
    NotNext {
        /// The channel.
        channel: String,
        /// The block's number.
        number: u64,
        /// The ledger height.
        height: u64,
    },
    /// The block failed a check.
    #[error("channel {channel}: {source}")]
    Block {
        /// The channel.
        channel: String,
        /// The check that failed.
        #[source]
        source: BlockError,
    },
    /// A config block carries a config that cannot be used.
    #[error("channel {channel}: config block {number}: {source}")]
    Config {
        /// The channel.
        channel: String,
        /// The block's number.
        number: u64,
        /// What is wrong.
        #[source]
        source: ConfigtxError,
    },
    /// Appending to the ledger failed.
    #[error("channel {channel}: ledger: {source}")]
    Ledger {
        /// The channel.
        channel: String,
        /// The ledger's error.
        #[source]
        source: LedgerError,
    },
    /// Any other failure of a committer implementation.
    #[error("channel {channel}: block {number}: {reason}")]
    Other {
        /// The channel.
        channel: String,
        /// The block's number.
        number: u64,
        /// What failed.
        reason: String,
    },
}

/// What a commit did, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The committed block's number.
    pub number: u64,
    /// The TRANSACTIONS_FILTER written: one `TxValidationCode` per transaction.
    pub validation_codes: Vec<u8>,
    /// Whether the block was a config block (and the config was applied).
    pub config_updated: bool,
}

/// Validates and commits blocks to a channel.
///
/// Calls come from blocking threads (never the async reactor), one block at
/// a time per channel and in chain order: block `n` is only offered when
/// the channel's height is `n`. An error leaves the channel as it was; the
/// puller then fetches the block again (from another orderer).
pub trait Committer: Send + Sync {
    /// Called once for each channel before its first [`commit`]: when the
    /// node opens an existing channel at start, and when a channel is
    /// created by joining (before the genesis block is committed). Open
    /// per-channel state here. The default does nothing.
    ///
    /// [`commit`]: Committer::commit
    fn open_channel(&self, channel: &Channel) -> Result<(), CommitError> {
        let _ = channel;
        Ok(())
    }

    /// The channel's state database (for the endorser's simulations), once
    /// the blocks committed so far are in it; `None` if this committer keeps
    /// no state. The default keeps none.
    fn state(&self, channel: &str) -> Option<std::sync::Arc<twill_ledger::state::StateDb>> {
        let _ = channel;
        None
    }

    /// A hint that `block` will be committed after the blocks before it:
    /// a committer may start the checks that need neither the state nor
    /// the earlier blocks. Blocks that are not ahead of the channel's
    /// height are ignored. The default does nothing.
    fn prepare(&self, channel: &Channel, block: &Block) {
        let _ = (channel, block);
    }

    /// Validates `block`, sets its TRANSACTIONS_FILTER, appends it to
    /// `channel.store()` and, for a config block, calls
    /// [`Channel::set_config`]. Block 0 (the genesis block given to join)
    /// carries no orderer signatures.
    fn commit(&self, channel: &Channel, block: Block) -> Result<CommitOutcome, CommitError>;
}

/// The typed config carried by a config block.
pub fn config_of(block: &Block) -> Result<ChannelConfig, ConfigtxError> {
    let (_, env) = config_from_block(block)?;
    let config = env
        .config
        .ok_or_else(|| ConfigtxError::NotConfig("config envelope has no config".into()))?;
    ChannelConfig::from_config(&config)
}

/// A joined channel: its block store and current config.
pub struct Channel {
    id: String,
    store: Arc<BlockStore>,
    config: RwLock<Arc<ChannelConfig>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("height", &self.height())
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Opens the existing channel `id` under `ledger_root`, taking its
    /// config from the latest config block. Blocking.
    pub fn open(ledger_root: &Path, id: &str) -> Result<Channel, ChannelError> {
        let ledger = |source| ChannelError::Ledger {
            channel: id.to_string(),
            source,
        };
        let dir = twill_ledger::channel_dir(ledger_root, id).map_err(ledger)?;
        let store = BlockStore::open(&dir).map_err(ledger)?;
        let block =
            store
                .last_config_block()
                .map_err(ledger)?
                .ok_or_else(|| ChannelError::Empty {
                    channel: id.to_string(),
                    dir: dir.clone(),
                })?;
        let config = config_of(&block).map_err(|source| ChannelError::Config {
            channel: id.to_string(),
            source,
        })?;
        Ok(Channel {
            id: id.to_string(),
            store: Arc::new(store),
            config: RwLock::new(Arc::new(config)),
        })
    }

    /// Creates the ledger of the channel `genesis` belongs to, empty, with
    /// the config `genesis` carries. The genesis block itself is then
    /// committed through the [`Committer`]. Blocking.
    pub fn create(ledger_root: &Path, genesis: &Block) -> Result<Channel, ChannelError> {
        let (ch, _) = config_from_block(genesis).map_err(|source| ChannelError::Config {
            channel: String::new(),
            source,
        })?;
        let id = ch.channel_id;
        let number = blocks::block_number(genesis);
        if number != 0 {
            return Err(ChannelError::NotGenesis {
                channel: id,
                number,
            });
        }
        let config = config_of(genesis).map_err(|source| ChannelError::Config {
            channel: id.clone(),
            source,
        })?;
        let ledger = |source| ChannelError::Ledger {
            channel: id.clone(),
            source,
        };
        let dir = twill_ledger::channel_dir(ledger_root, &id).map_err(ledger)?;
        if dir.exists() {
            return Err(ChannelError::Exists { channel: id, dir });
        }
        let store = BlockStore::open(&dir).map_err(ledger)?;
        Ok(Channel {
            id,
            store: Arc::new(store),
            config: RwLock::new(Arc::new(config)),
        })
    }

    /// The channel id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The channel's block store.
    pub fn store(&self) -> &Arc<BlockStore> {
        &self.store
    }

    /// The current channel config.
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.config.read().clone()
    }

    /// Replaces the channel config (after committing a config block).
    pub fn set_config(&self, config: ChannelConfig) {
        *self.config.write() = Arc::new(config);
    }

    /// Number of committed blocks.
    pub fn height(&self) -> u64 {
        self.store.height()
    }

    /// Height and the hashes of the last block and the one before it, as
    /// qscc's `GetChainInfo` returns them. Blocking.
    pub fn chain_info(&self) -> Result<BlockchainInfo, LedgerError> {
        let height = self.store.height();
        let mut info = BlockchainInfo {
            height,
            ..Default::default()
        };
        if let Some(last) = height.checked_sub(1) {
            if let Some(block) = self.store.block(last)? {
                if let Some(h) = &block.header {
                    info.current_block_hash = twill_configtx::block::block_header_hash(h).to_vec();
                    info.previous_block_hash.clone_from(&h.previous_hash);
                }
            }
        }
        Ok(info)
    }
}

/// Ids of the channel folders under `ledger_root` (names that are valid
/// channel ids), sorted.
pub fn channel_ids_on_disk(ledger_root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(ledger_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            if twill_ledger::validate_channel_id(name).is_ok() {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}
