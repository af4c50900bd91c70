//! Block assembly, header chaining and orderer signatures.
//!
//! A [`BlockWriter`] follows the tip of one channel's chain: its height, the
//! hash of the tip's header and the number of the last config block. It
//! builds the next block from a batch ([`BlockWriter::create_next`]) and,
//! once the block is ordered, stamps it the way a Fabric 2.x orderer does
//! ([`BlockWriter::commit`]):
//!
//! - `SIGNATURES` slot: `Metadata { value, signatures: [one] }` where `value`
//!   is `OrdererBlockMetadata { last_config, consenter_metadata }` and the
//!   signature is over `value ‖ signature_header ‖ DER(block header)`;
//! - `LAST_CONFIG` slot (deprecated, for old readers):
//!   `Metadata { value: LastConfig { index } }`.
//!
//! As in Fabric, `OrdererBlockMetadata.consenter_metadata` holds the consenter
//! metadata wrapped in a `Metadata { value }` message, so Fabric's readers
//! (`GetConsenterMetadataFromBlock`) find it; [`consenter_metadata`] unwraps
//! it.
//!
//! [`verify_block_signatures`] is the receiving side: peers and following
//! orderers check a block's signatures against
//! `/Channel/Orderer/BlockValidation`.
//!
//! Errors are this module's [`WriterError`].

use std::sync::Arc;

use prost::Message;
use tracing::debug;
use twill_configtx::block::{block_data_hash, block_header_bytes, block_header_hash, new_block};
use twill_msp::SigningIdentity;
use twill_policy::Policy;
use twill_protos::common::{
    Block, BlockData, BlockHeader, BlockMetadata, BlockMetadataIndex, ChannelHeader, Envelope,
    HeaderType, LastConfig, Metadata, MetadataSignature, OrdererBlockMetadata, Payload,
    SignatureHeader,
};

/// Number of block metadata slots Fabric defines (SIGNATURES .. COMMIT_HASH).
const METADATA_SLOTS: usize = BlockMetadataIndex::CommitHash as usize + 1;

/// Index of the deprecated LAST_CONFIG slot, still written for old readers.
#[allow(deprecated)]
const LAST_CONFIG_SLOT: usize = BlockMetadataIndex::LastConfig as usize;

const SIGNATURES_SLOT: usize = BlockMetadataIndex::Signatures as usize;

/// Length of the random nonce in a block signature's header.
const NONCE_LEN: usize = 24;

/// What can go wrong while writing or checking blocks.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The block lacks a part every block must have.
    #[error("block {number}: {reason}")]
    Malformed {
        /// The block number, or `u64::MAX` when the header is missing.
        number: u64,
        /// What is missing or wrong.
        reason: String,
    },
    /// A message inside the block does not decode.
    #[error("block {number}: cannot decode {what}: {source}")]
    Decode {
        /// The block number.
        number: u64,
        /// Which message.
        what: &'static str,
        /// The decoder's error.
        source: prost::DecodeError,
    },
    /// The block records no last config index and is not a config block.
    #[error("block {number} records no last config index")]
    NoLastConfig {
        /// The block number.
        number: u64,
    },
    /// The block is not the next one after the chain tip.
    #[error("block {number} does not extend the chain: the next block is {expected}")]
    NotNext {
        /// The block's number.
        number: u64,
        /// The number the next block must have.
        expected: u64,
    },
    /// The block's previous hash is not the tip's header hash.
    #[error("block {number}: previous hash {got} is not the tip's hash {expected}")]
    WrongPreviousHash {
        /// The block's number.
        number: u64,
        /// Hex of the tip's header hash.
        expected: String,
        /// Hex of the block's previous hash.
        got: String,
    },
    /// The block's data hash does not match its data.
    #[error("block {number}: data hash does not match the block's data")]
    WrongDataHash {
        /// The block's number.
        number: u64,
    },
    /// The orderer's identity could not sign.
    #[error("cannot sign block {number}: {source}")]
    Sign {
        /// The block's number.
        number: u64,
        /// The signer's error.
        source: twill_msp::MspError,
    },
    /// No randomness for the signature header's nonce.
    #[error("cannot draw a nonce: {0}")]
    Rng(twill_crypto::CryptoError),
    /// The block has no SIGNATURES metadata.
    #[error("block {number} carries no orderer signatures")]
    NoSignatures {
        /// The block's number.
        number: u64,
    },
    /// The block's signatures do not satisfy the block validation policy.
    #[error("block {number}: signatures do not satisfy the block validation policy: {source}")]
    PolicyNotSatisfied {
        /// The block's number.
        number: u64,
        /// Why the policy failed.
        source: twill_policy::PolicyError,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, WriterError>;

/// Builds and signs the blocks of one channel, following its chain tip.
///
/// One task owns it (the channel's consensus loop); it holds no locks.
pub struct BlockWriter {
    signer: Arc<SigningIdentity>,
    height: u64,
    tip_hash: Vec<u8>,
    last_config: u64,
}

impl std::fmt::Debug for BlockWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("height", &self.height)
            .field("tip_hash", &hex_of(&self.tip_hash))
            .field("last_config", &self.last_config)
            .finish_non_exhaustive()
    }
}

impl BlockWriter {
    /// A writer resuming from `last_block`, the current tip of the chain.
    ///
    /// The last config index is the tip's own number when the tip is a
    /// config block, else the one its metadata records (see
    /// [`last_config_index`]).
    pub fn new(last_block: &Block, signer: Arc<SigningIdentity>) -> Result<Self> {
        let header = header_of(last_block)?;
        let number = header.number;
        let height = number
            .checked_add(1)
            .ok_or_else(|| WriterError::Malformed {
                number,
                reason: "block number leaves no room for a next block".into(),
            })?;
        let last_config = if is_config_block(last_block) {
            number
        } else {
            last_config_index(last_block)?
        };
        Ok(BlockWriter {
            signer,
            height,
            tip_hash: block_header_hash(header).to_vec(),
            last_config,
        })
    }

    /// The number the next block gets (tip number + 1).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The header hash of the tip: the next block's `previous_hash`.
    pub fn tip_hash(&self) -> &[u8] {
        &self.tip_hash
    }

    /// Number of the last config block at or before the tip.
    pub fn last_config(&self) -> u64 {
        self.last_config
    }

    /// The identity that signs blocks.
    pub fn signer(&self) -> &Arc<SigningIdentity> {
        &self.signer
    }

    /// The unsigned next block holding `envelopes` (encoded `Envelope`s):
    /// number = height, previous hash = tip hash, data hash set, five
    /// empty metadata slots.
    pub fn create_next(&self, envelopes: Vec<Vec<u8>>) -> Block {
        new_block(self.height, self.tip_hash.clone(), envelopes)
    }

    /// Stamps an ordered block with its metadata and this orderer's
    /// signature, then makes it the new tip.
    ///
    /// `is_config` says the block holds a config transaction; it then becomes
    /// the last config block, recorded in its own metadata as Fabric does.
    /// `consenter_metadata` is the consenter's opaque state for this block
    /// (for Raft, the encoded `etcdraft.BlockMetadata`); it is stored wrapped
    /// in a `Metadata` message. Any signatures already in the block are
    /// replaced: each orderer signs the blocks it writes.
    ///
    /// Nothing changes if the block is not the next one after the tip (by
    /// number and previous hash), its data hash is wrong, or signing fails.
    pub fn commit(
        &mut self,
        block: &mut Block,
        is_config: bool,
        consenter_metadata: Vec<u8>,
    ) -> Result<()> {
        let header = header_of(block)?.clone();
        let number = header.number;
        if number != self.height {
            return Err(WriterError::NotNext {
                number,
                expected: self.height,
            });
        }
        if header.previous_hash != self.tip_hash {
            return Err(WriterError::WrongPreviousHash {
                number,
                expected: hex_of(&self.tip_hash),
                got: hex_of(&header.previous_hash),
            });
        }
        let empty = BlockData::default();
        let data = block.data.as_ref().unwrap_or(&empty);
        if block_data_hash(data).as_slice() != header.data_hash.as_slice() {
            return Err(WriterError::WrongDataHash { number });
        }
        self.stamp(block, header, is_config, consenter_metadata)
    }

    /// Builds the next block from `envelopes` and stamps it, in one step:
    /// the block is made here, so its number, previous hash and data hash
    /// are right by construction and are not hashed a second time (this is
    /// the hot path of every orderer). Use [`BlockWriter::commit`] for a
    /// block built elsewhere.
    pub fn write_next(
        &mut self,
        envelopes: Vec<Vec<u8>>,
        is_config: bool,
        consenter_metadata: Vec<u8>,
    ) -> Result<Block> {
        let mut block = self.create_next(envelopes);
        let header = header_of(&block)?.clone();
        self.stamp(&mut block, header, is_config, consenter_metadata)?;
        Ok(block)
    }

    /// Signs `block` (whose `header` extends the tip) and advances the tip.
    fn stamp(
        &mut self,
        block: &mut Block,
        header: BlockHeader,
        is_config: bool,
        consenter_metadata: Vec<u8>,
    ) -> Result<()> {
        let number = header.number;
        if is_config && !is_config_block(block) {
            return Err(WriterError::Malformed {
                number,
                reason: "committed as a config block but holds no single CONFIG envelope".into(),
            });
        }
        let last_config = if is_config { number } else { self.last_config };

        let value = OrdererBlockMetadata {
            last_config: Some(LastConfig { index: last_config }),
            consenter_metadata: Metadata {
                value: consenter_metadata,
                signatures: Vec::new(),
            }
            .encode_to_vec(),
        }
        .encode_to_vec();
        let nonce = twill_crypto::try_random_bytes(NONCE_LEN).map_err(WriterError::Rng)?;
        let signature_header = SignatureHeader {
            creator: self.signer.serialize(),
            nonce,
        }
        .encode_to_vec();
        let signed = concat(&[&value, &signature_header, &block_header_bytes(&header)]);
        let signature = self
            .signer
            .sign(&signed)
            .map_err(|source| WriterError::Sign { number, source })?;
        let signatures_slot = Metadata {
            value,
            signatures: vec![MetadataSignature {
                signature_header,
                signature,
                identifier_header: Vec::new(),
            }],
        }
        .encode_to_vec();
        let last_config_slot = Metadata {
            value: LastConfig { index: last_config }.encode_to_vec(),
            signatures: Vec::new(),
        }
        .encode_to_vec();

        let metadata = block.metadata.get_or_insert_with(BlockMetadata::default);
        if metadata.metadata.len() < METADATA_SLOTS {
            metadata.metadata.resize(METADATA_SLOTS, Vec::new());
        }
        metadata.metadata[SIGNATURES_SLOT] = signatures_slot;
        metadata.metadata[LAST_CONFIG_SLOT] = last_config_slot;

        self.height = number + 1;
        self.tip_hash = block_header_hash(&header).to_vec();
        self.last_config = last_config;
        debug!(
            target: "orderer::writer",
            number,
            last_config,
            is_config,
            txs = block.data.as_ref().map_or(0, |d| d.data.len()),
            "block committed"
        );
        Ok(())
    }
}

/// The unsigned block after the one with header `prev`, holding
/// `envelopes`; for a consenter that builds blocks ahead of the committed
/// tip.
pub fn block_after(prev: &BlockHeader, envelopes: Vec<Vec<u8>>) -> Block {
    new_block(
        prev.number.saturating_add(1),
        block_header_hash(prev).to_vec(),
        envelopes,
    )
}

/// Whether the block holds exactly one envelope and it is of type CONFIG.
pub fn is_config_block(block: &Block) -> bool {
    let Some(data) = &block.data else {
        return false;
    };
    let [only] = data.data.as_slice() else {
        return false;
    };
    let header_type = Envelope::decode(only.as_slice())
        .ok()
        .and_then(|env| Payload::decode(env.payload.as_slice()).ok())
        .and_then(|payload| payload.header)
        .and_then(|h| ChannelHeader::decode(h.channel_header.as_slice()).ok())
        .map(|ch| ch.r#type);
    header_type == Some(HeaderType::Config as i32)
}

/// The last config index a block records: from `OrdererBlockMetadata` in
/// its SIGNATURES slot, else (blocks of pre-1.4.1 orderers) from the
/// LAST_CONFIG slot. Block 0 records 0 even without metadata.
pub fn last_config_index(block: &Block) -> Result<u64> {
    let number = header_of(block)?.number;
    if let Some(md) = slot(block, SIGNATURES_SLOT, number)? {
        if !md.value.is_empty() {
            let obm = decode::<OrdererBlockMetadata>(&md.value, number, "OrdererBlockMetadata")?;
            return obm
                .last_config
                .map(|lc| lc.index)
                .ok_or(WriterError::NoLastConfig { number });
        }
    }
    if let Some(md) = slot(block, LAST_CONFIG_SLOT, number)? {
        if !md.value.is_empty() {
            return Ok(decode::<LastConfig>(&md.value, number, "LastConfig")?.index);
        }
    }
    if number == 0 {
        return Ok(0);
    }
    Err(WriterError::NoLastConfig { number })
}

/// The consenter metadata [`BlockWriter::commit`] stored in the block
/// (unwrapped from its `Metadata` message); empty if there is none.
pub fn consenter_metadata(block: &Block) -> Result<Vec<u8>> {
    let number = header_of(block)?.number;
    let Some(md) = slot(block, SIGNATURES_SLOT, number)? else {
        return Ok(Vec::new());
    };
    if md.value.is_empty() {
        return Ok(Vec::new());
    }
    let obm = decode::<OrdererBlockMetadata>(&md.value, number, "OrdererBlockMetadata")?;
    Ok(decode::<Metadata>(&obm.consenter_metadata, number, "consenter Metadata")?.value)
}

/// Checks a block's orderer signatures against `policy` (normally
/// `/Channel/Orderer/BlockValidation`).
///
/// Each signature in the SIGNATURES slot stands for
/// `SignedData { data: value ‖ signature_header ‖ DER(header), identity:
/// signature_header.creator, signature }`; the policy decides whether the
/// valid ones suffice. Signatures carrying only an identifier header (BFT
/// orderers) are skipped. The data hash is not checked here.
pub fn verify_block_signatures(block: &Block, policy: &dyn Policy) -> Result<()> {
    use twill_configtx::block::BlockVerifyError;
    twill_configtx::block::verify_block_signatures(block, policy).map_err(|e| match e {
        BlockVerifyError::NoHeader => WriterError::Malformed {
            number: u64::MAX,
            reason: "block has no header".into(),
        },
        BlockVerifyError::Decode {
            number,
            what,
            source,
        } => WriterError::Decode {
            number,
            what,
            source,
        },
        BlockVerifyError::NoSignatures { number } => WriterError::NoSignatures { number },
        BlockVerifyError::PolicyNotSatisfied { number, source } => {
            WriterError::PolicyNotSatisfied { number, source }
        }
    })
}

fn header_of(block: &Block) -> Result<&BlockHeader> {
    block.header.as_ref().ok_or_else(|| WriterError::Malformed {
        number: u64::MAX,
        reason: "block has no header".into(),
    })
}

/// The decoded metadata slot `index`, `None` if absent or empty.
fn slot(block: &Block, index: usize, number: u64) -> Result<Option<Metadata>> {
    match block.metadata.as_ref().and_then(|m| m.metadata.get(index)) {
        Some(bytes) if !bytes.is_empty() => {
            decode::<Metadata>(bytes, number, "block Metadata").map(Some)
        }
        _ => Ok(None),
    }
}

fn decode<M: Message + Default>(bytes: &[u8], number: u64, what: &'static str) -> Result<M> {
    M::decode(bytes).map_err(|source| WriterError::Decode {
        number,
        what,
        source,
    })
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_without_config_envelope_are_not_config() {
        assert!(!is_config_block(&new_block(1, vec![], vec![])));
        assert!(!is_config_block(&new_block(
            1,
            vec![],
            vec![vec![0xff, 0x01]]
        )));
        assert!(!is_config_block(&Block::default()));
    }

    #[test]
    fn last_config_fallbacks() {
        let mut b = new_block(0, vec![], vec![]);
        assert_eq!(last_config_index(&b).unwrap(), 0);
        b.header.as_mut().unwrap().number = 7;
        assert!(matches!(
            last_config_index(&b),
            Err(WriterError::NoLastConfig { number: 7 })
        ));
        b.metadata.as_mut().unwrap().metadata[LAST_CONFIG_SLOT] = Metadata {
            value: LastConfig { index: 4 }.encode_to_vec(),
            signatures: vec![],
        }
        .encode_to_vec();
        assert_eq!(last_config_index(&b).unwrap(), 4);
        b.metadata.as_mut().unwrap().metadata[SIGNATURES_SLOT] = Metadata {
            value: OrdererBlockMetadata {
                last_config: Some(LastConfig { index: 5 }),
                consenter_metadata: vec![],
            }
            .encode_to_vec(),
            signatures: vec![],
        }
        .encode_to_vec();
        assert_eq!(last_config_index(&b).unwrap(), 5, "SIGNATURES slot wins");
        b.metadata.as_mut().unwrap().metadata[SIGNATURES_SLOT] = vec![0xff];
        assert!(matches!(
            last_config_index(&b),
            Err(WriterError::Decode { .. })
        ));
        assert!(matches!(
            last_config_index(&Block::default()),
            Err(WriterError::Malformed { .. })
        ));
    }

    #[test]
    fn block_after_chains() {
        let prev = new_block(3, vec![1; 32], vec![b"a".to_vec()]);
        let next = block_after(prev.header.as_ref().unwrap(), vec![b"b".to_vec()]);
        let h = next.header.unwrap();
        assert_eq!(h.number, 4);
        assert_eq!(
            h.previous_hash,
            block_header_hash(prev.header.as_ref().unwrap()).to_vec()
        );
        assert_eq!(h.data_hash, twill_crypto::sha256(b"b").to_vec());
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex_of(&[0x0a, 0xff]), "0aff");
    }
}
