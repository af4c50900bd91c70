//! Block and transaction validation: the committer's checks (Fabric's
//! `txvalidator`, built-in validation plugin and MVCC validator).
//!
//! A [`BlockValidator`] owns a rayon pool and a cache of compiled chaincode
//! policies. For each block it offers two steps:
//!
//! 1. [`BlockValidator::verify_block`]: the header's data hash and the
//!    orderer signatures against `/Channel/Orderer/BlockValidation`;
//! 2. [`BlockValidator::validate`]: one `TxValidationCode` per transaction
//!    and the [`UpdateBatch`] of the valid ones, plus the new channel config
//!    when the block is a config block.
//!
//! # Checks, in order
//!
//! In parallel across the block's transactions:
//!
//! | check | code when it fails |
//! | --- | --- |
//! | entry is empty | `NIL_ENVELOPE` |
//! | envelope decodes | `INVALID_OTHER_REASON` |
//! | payload decodes | `BAD_PAYLOAD` |
//! | header present, channel and signature headers decode, type is ENDORSER_TRANSACTION / CONFIG / CONFIG_UPDATE, epoch 0, nonce and creator set | `BAD_COMMON_HEADER` |
//! | channel id is this validator's channel | `TARGET_CHAIN_NOT_FOUND` |
//! | creator deserializes, is valid in the channel MSPs, signed the payload | `BAD_CREATOR_SIGNATURE` |
//! | CONFIG_UPDATE is not a block transaction | `UNSUPPORTED_TX_PAYLOAD` |
//! | CONFIG carries data | `INVALID_CONFIG_TRANSACTION` |
//! | tx id = hex(SHA-256(nonce ‖ creator)) | `BAD_PROPOSAL_TXID` |
//! | one action, action signature header valid, payloads decode, proposal hash matches | `INVALID_ENDORSER_TRANSACTION` |
//! | tx id not in the ledger ([`TxIdIndex`]) | `DUPLICATE_TXID` |
//! | chaincode header extension decodes | `BAD_HEADER_EXTENSION` |
//! | `ChaincodeAction` decodes | `BAD_RESPONSE_PAYLOAD` |
//! | read-write sets decode | `BAD_RWSET` |
//! | chaincode ids present | `INVALID_OTHER_REASON` |
//! | chaincode name set and consistent, version set | `INVALID_CHAINCODE` |
//! | chaincode event names the invoked chaincode | `INVALID_OTHER_REASON` |
//! | no namespace twice | `ILLEGAL_WRITESET` |
//! | each namespace invoked or written has a committed definition ([`lifecycle`]) | `INVALID_CHAINCODE` |
//! | endorsements satisfy its policy (key-level policies for written keys) | `ENDORSEMENT_POLICY_FAILURE` |
//!
//! Then sequentially in block order, for transactions still valid:
//!
//! | check | code |
//! | --- | --- |
//! | no written key had its metadata changed by an earlier endorsement-valid tx of the block | `ENDORSEMENT_POLICY_FAILURE` |
//! | tx id not used by an earlier valid tx of the block | `DUPLICATE_TXID` |
//! | each read's version is the committed one and no earlier valid tx of the block wrote the key | `MVCC_READ_CONFLICT` |
//! | each range query gives the same keys and versions over committed state merged with the earlier valid writes (raw reads or Fabric's merkle summary) | `PHANTOM_READ_CONFLICT` |
//!
//! # Where this differs from Fabric
//!
//! * The channel id is checked before the creator: a validator knows only
//!   its own channel's MSPs (Fabric fails the creator check for a foreign
//!   channel, and never sees one because orderers keep channels apart).
//! * A `_lifecycle` metadata key of another datatype, or a malformed
//!   definition, makes the tx `INVALID_CHAINCODE`; Fabric stops committing.
//! * The validation plugin name is not looked up: every definition is
//!   validated with the built-in logic.
//! * Private data: hashed writes make their namespace subject to its
//!   policy, but collection-level endorsement policies, key-level policies
//!   of private keys and MVCC of hashed reads are not checked.
//! * A CONFIG transaction is accepted when it is alone in its block and
//!   carries the next config sequence; its `last_update` is not re-validated
//!   against the current config's `mod_policy`s (the orderer did that, and
//!   [`BlockValidator::verify_block`] checks the orderer signed the block).
//! * Block 0 is not meant to be validated (the genesis config is unsigned).
//! * A metadata write counts as a write of the key for in-block MVCC
//!   conflicts (it gives the key a new version).

mod error;
pub mod lifecycle;
mod memory;
mod mvcc;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tx;

use std::collections::BTreeMap;

use rayon::prelude::*;
use tracing::{debug, info};
use twill_configtx::block::{block_data_hash, verify_block_signatures};
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_ledger::state::{Height, UpdateBatch};
use twill_protos::common::Block;
use twill_protos::peer::TxValidationCode;

pub use error::{Result, StateAccessError, ValidationError};
pub use memory::{MemState, MemTxIds};
pub use mvcc::merkle_summary;

use lifecycle::{BlockPolicies, PolicyCache};
use tx::{finish_tx, precheck_tx, Prechecked, TxContext};

/// Path of the policy that block signatures must satisfy.
pub const BLOCK_VALIDATION_POLICY: &str = "/Channel/Orderer/BlockValidation";

/// Read access to the committed state as of the previous block.
pub trait StateView: Sync {
    /// The version of a key, `None` if absent.
    fn version(&self, ns: &str, key: &str)
        -> std::result::Result<Option<Height>, StateAccessError>;
    /// The key-level metadata of a key, `None` if the key is absent.
    fn metadata(
        &self,
        ns: &str,
        key: &str,
    ) -> std::result::Result<Option<BTreeMap<String, Vec<u8>>>, StateAccessError>;
    /// The value of a key (used for `_lifecycle` definitions).
    fn get(&self, ns: &str, key: &str) -> std::result::Result<Option<Vec<u8>>, StateAccessError>;
    /// Keys in `[start, end)` of a namespace with their versions, in key
    /// order; `end` empty means unbounded.
    fn range_versions(
        &self,
        ns: &str,
        start: &str,
        end: &str,
    ) -> std::result::Result<Vec<(String, Height)>, StateAccessError>;
}

/// Which transaction ids the ledger already holds.
pub trait TxIdIndex: Sync {
    /// True if a committed block holds a transaction with this id.
    fn contains(&self, tx_id: &str) -> std::result::Result<bool, StateAccessError>;
}

/// The outcome of validating one block.
#[derive(Debug, Clone)]
pub struct ValidatedBlock {
    /// One code per transaction, in block order.
    pub codes: Vec<TxValidationCode>,
    /// The writes of the valid transactions at their heights.
    pub batch: UpdateBatch,
    /// The channel config the block installs, when it is a config block.
    pub new_config: Option<ChannelConfig>,
}

impl ValidatedBlock {
    /// Number of valid transactions.
    pub fn valid_count(&self) -> usize {
        self.codes
            .iter()
            .filter(|c| **c == TxValidationCode::Valid)
            .count()
    }
}

/// The state-independent checks of one block, made by
/// [`BlockValidator::prepare`] ahead of the block's turn.
#[derive(Debug)]
pub struct PreparedBlock {
    number: u64,
    data_hash: Vec<u8>,
    config_sequence: u64,
    txs: Vec<Prechecked>,
}

impl PreparedBlock {
    /// The number of the block these checks are for.
    pub fn number(&self) -> u64 {
        self.number
    }
}

/// A block's number, header data hash and data.
fn block_parts(block: &Block) -> Result<(u64, &[u8], &twill_protos::common::BlockData)> {
    let header = block
        .header
        .as_ref()
        .ok_or(ValidationError::MalformedBlock {
            number: u64::MAX,
            reason: "no header",
        })?;
    let data = block.data.as_ref().ok_or(ValidationError::MalformedBlock {
        number: header.number,
        reason: "no data",
    })?;
    Ok((header.number, header.data_hash.as_slice(), data))
}

/// Validates the blocks of one channel (see the [module docs](self)).
pub struct BlockValidator {
    channel: String,
    pool: rayon::ThreadPool,
    policies: PolicyCache,
}

impl std::fmt::Debug for BlockValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockValidator")
            .field("channel", &self.channel)
            .field("threads", &self.pool.current_num_threads())
            .finish_non_exhaustive()
    }
}

impl BlockValidator {
    /// A validator for channel `channel_id` checking transactions on
    /// `threads` threads (at least one). Should the pool fail to start, one
    /// with rayon's default size is used.
    pub fn new(channel_id: impl Into<String>, threads: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("validator-{i}"))
            .build()
            .or_else(|_| rayon::ThreadPoolBuilder::new().build());
        let pool = match pool {
            Ok(p) => p,
            // Not even a default pool: nothing sensible is left to try.
            Err(e) => panic!("cannot start a validation thread pool: {e}"),
        };
        BlockValidator {
            channel: channel_id.into(),
            pool,
            policies: PolicyCache::default(),
        }
    }

    /// The channel this validator checks.
    pub fn channel_id(&self) -> &str {
        &self.channel
    }

    /// Checks that the header's data hash matches the data and that the
    /// orderer signatures satisfy `/Channel/Orderer/BlockValidation` of
    /// `config` (the config in force before this block).
    pub fn verify_block(&self, block: &Block, config: &ChannelConfig) -> Result<()> {
        let header = block
            .header
            .as_ref()
            .ok_or(ValidationError::MalformedBlock {
                number: u64::MAX,
                reason: "no header",
            })?;
        let data = block.data.as_ref().ok_or(ValidationError::MalformedBlock {
            number: header.number,
            reason: "no data",
        })?;
        let computed = block_data_hash(data);
        if computed.as_slice() != header.data_hash.as_slice() {
            return Err(ValidationError::DataHash {
                number: header.number,
                header: hex::encode(&header.data_hash),
                computed: hex::encode(computed),
            });
        }
        let policy = config.policies.get_policy(BLOCK_VALIDATION_POLICY).ok_or(
            ValidationError::MissingPolicy {
                path: BLOCK_VALIDATION_POLICY,
            },
        )?;
        // On the calling thread: the pool may be busy checking the next
        // blocks ahead, and a block carries one signature per orderer.
        Ok(verify_block_signatures(block, policy.as_ref())?)
    }

    /// The state-independent checks of `block`'s transactions (format,
    /// creator and endorsement signatures, tx ids, structure) against
    /// `config`, on the validator's pool. They are most of a block's work and
    /// need neither the state nor the blocks before it, so a committer runs
    /// them for the next blocks while it commits the current one and hands
    /// the result to [`BlockValidator::validate_prepared`].
    pub fn prepare(&self, block: &Block, config: &ChannelConfig) -> Result<PreparedBlock> {
        let (number, data_hash, data) = block_parts(block)?;
        let txs = self.pool.install(|| {
            data.data
                .par_iter()
                .map(|entry| precheck_tx(&self.channel, &config.msps, entry))
                .collect()
        });
        Ok(PreparedBlock {
            number,
            data_hash: data_hash.to_vec(),
            config_sequence: config.config.sequence,
            txs,
        })
    }

    /// Runs `job` on the validator's pool (for [`BlockValidator::prepare`]
    /// ahead of time); returns at once.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.pool.spawn(job);
    }

    /// Validates every transaction of `block` against `config` (the config
    /// in force before this block), the committed `state` and the ledger's
    /// tx ids; returns the codes and the state update of the valid ones.
    ///
    /// Errors are reserved for problems of the whole block (missing header
    /// or data, unreadable state, an unusable config transaction).
    pub fn validate(
        &self,
        block: &Block,
        config: &ChannelConfig,
        state: &dyn StateView,
        txids: &dyn TxIdIndex,
    ) -> Result<ValidatedBlock> {
        self.validate_prepared(block, config, None, state, txids)
    }

    /// [`BlockValidator::validate`] reusing the result of
    /// [`BlockValidator::prepare`] when it was made for this block (same
    /// number and data hash) under this config sequence; otherwise the
    /// checks are run here.
    pub fn validate_prepared(
        &self,
        block: &Block,
        config: &ChannelConfig,
        prepared: Option<PreparedBlock>,
        state: &dyn StateView,
        txids: &dyn TxIdIndex,
    ) -> Result<ValidatedBlock> {
        let (number, data_hash, data) = block_parts(block)?;
        let prepared = prepared.filter(|p| {
            p.number == number
                && p.data_hash == data_hash
                && p.config_sequence == config.config.sequence
                && p.txs.len() == data.data.len()
        });
        let policies = BlockPolicies::new(&self.policies, config, &self.channel, state);
        let ctx = TxContext {
            policies: &policies,
            state,
            txids,
        };
        let mut checks = match prepared {
            // Prepared ahead: the pool is likely busy with the next blocks,
            // and what is left is a few state reads per transaction.
            Some(p) => p
                .txs
                .into_iter()
                .map(|pre| finish_tx(&ctx, pre))
                .collect::<std::result::Result<Vec<_>, _>>()?,
            None => self.pool.install(|| {
                data.data
                    .par_iter()
                    .map(|entry| finish_tx(&ctx, precheck_tx(&self.channel, &config.msps, entry)))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })?,
        };

        let mut new_config = None;
        let tx_count = checks.len();
        for check in checks.iter_mut().filter(|c| c.is_config) {
            if tx_count != 1 {
                debug!(target: "peer::validation", block = number, "config transaction shares its block");
                check.code = TxValidationCode::InvalidConfigTransaction;
                check.is_config = false;
                continue;
            }
            new_config = Some(self.next_config(block, number, config)?);
        }

        let batch = mvcc::sequential_stage(number, &mut checks, state)?;
        let codes: Vec<TxValidationCode> = checks.iter().map(|c| c.code).collect();
        let out = ValidatedBlock {
            codes,
            batch,
            new_config,
        };
        debug!(
            target: "peer::validation",
            channel = %self.channel,
            block = number,
            txs = tx_count,
            valid = out.valid_count(),
            "block validated"
        );
        Ok(out)
    }

    fn next_config(
        &self,
        block: &Block,
        number: u64,
        current: &ChannelConfig,
    ) -> Result<ChannelConfig> {
        let config_err = |source| ValidationError::Config { number, source };
        let (_, envelope) = config_from_block(block).map_err(config_err)?;
        let config = envelope.config.unwrap_or_default();
        let expected = current.config.sequence.saturating_add(1);
        if config.sequence != expected {
            return Err(ValidationError::ConfigSequence {
                number,
                current: current.config.sequence,
                got: config.sequence,
            });
        }
        let next = ChannelConfig::from_config(&config).map_err(config_err)?;
        info!(target: "peer::validation", channel = %self.channel, block = number, sequence = config.sequence, "config block validated");
        Ok(next)
    }
}

/// Writes the codes into the block's TRANSACTIONS_FILTER metadata slot,
/// one byte per transaction, as Fabric does; adds missing metadata slots.
pub fn set_tx_filter(block: &mut Block, codes: &[TxValidationCode]) {
    crate::blocks::set_tx_filter(block, crate::blocks::filter_bytes(codes));
}

/// Reads the TRANSACTIONS_FILTER slot back into codes (unknown bytes become
/// `INVALID_OTHER_REASON`); empty when the slot is absent.
pub fn tx_filter(block: &Block) -> Vec<TxValidationCode> {
    crate::blocks::tx_filter(block)
        .iter()
        .map(|b| {
            TxValidationCode::try_from(i32::from(*b))
                .unwrap_or(TxValidationCode::InvalidOtherReason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_filter_round_trip() {
        let mut block = twill_configtx::block::new_block(3, vec![], vec![vec![1], vec![2]]);
        block.metadata = None;
        let codes = [
            TxValidationCode::Valid,
            TxValidationCode::MvccReadConflict,
            TxValidationCode::InvalidOtherReason,
        ];
        set_tx_filter(&mut block, &codes);
        let md = block.metadata.as_ref().unwrap();
        assert_eq!(md.metadata.len(), 5);
        assert_eq!(md.metadata[2], vec![0, 11, 255]);
        assert_eq!(tx_filter(&block), codes.to_vec());
    }
}
