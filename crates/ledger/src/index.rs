//! Keys and values of the sled index.
//!
//! One sled tree holds everything, so that all entries for a block are
//! written by one atomic batch together with the checkpoint:
//!
//! | key | value |
//! | --- | --- |
//! | `m` `version` | format version, u64 BE (currently 1) |
//! | `m` `checkpoint` | height u64 BE ‖ last block header hash (32 bytes) |
//! | `b` ‖ number u64 BE | file u32 BE ‖ offset u64 BE ‖ len u32 BE |
//! | `h` ‖ header hash | block number u64 BE |
//! | `t` ‖ tx id (UTF-8) | block number u64 BE ‖ tx index u32 BE ‖ validation code u8 |

use crate::error::{IndexIssue, LedgerError, Result};
use crate::TxLocation;

pub(crate) const VERSION_KEY: &[u8] = b"mversion";
pub(crate) const CHECKPOINT_KEY: &[u8] = b"mcheckpoint";
pub(crate) const FORMAT_VERSION: u64 = 1;

/// Where a block's record sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockLoc {
    /// Block file number.
    pub file: u32,
    /// Offset of the record header.
    pub offset: u64,
    /// Length of the block bytes (without the header).
    pub len: u32,
}

impl BlockLoc {
    pub fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..4].copy_from_slice(&self.file.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..16].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockLoc> {
        let b: &[u8; 16] = bytes
            .try_into()
            .map_err(|_| bad_value("block location", bytes))?;
        Ok(BlockLoc {
            file: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            offset: u64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]),
            len: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// The index's checkpoint: how many blocks are indexed and the header hash
/// of the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub height: u64,
    pub last_hash: [u8; 32],
}

impl Checkpoint {
    pub fn encode(self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[0..8].copy_from_slice(&self.height.to_be_bytes());
        out[8..40].copy_from_slice(&self.last_hash);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint> {
        if bytes.len() != 40 {
            return Err(bad_value("checkpoint", bytes));
        }
        let mut height = [0u8; 8];
        height.copy_from_slice(&bytes[0..8]);
        let mut last_hash = [0u8; 32];
        last_hash.copy_from_slice(&bytes[8..40]);
        Ok(Checkpoint {
            height: u64::from_be_bytes(height),
            last_hash,
        })
    }
}

pub(crate) fn block_key(number: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = b'b';
    key[1..9].copy_from_slice(&number.to_be_bytes());
    key
}

pub(crate) fn hash_key(hash: &[u8; 32]) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = b'h';
    key[1..33].copy_from_slice(hash);
    key
}

/// Prefix of the tx-id keys (`t` + the id's bytes).
pub(crate) const TX_PREFIX: &[u8] = b"t";

pub(crate) fn tx_key(tx_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(TX_PREFIX.len() + tx_id.len());
    key.extend_from_slice(TX_PREFIX);
    key.extend_from_slice(tx_id.as_bytes());
    key
}

pub(crate) fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

pub(crate) fn decode_u64(kind: &'static str, bytes: &[u8]) -> Result<u64> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| bad_value(kind, bytes))?;
    Ok(u64::from_be_bytes(b))
}

pub(crate) fn encode_tx(loc: TxLocation) -> [u8; 13] {
    let mut out = [0u8; 13];
    out[0..8].copy_from_slice(&loc.block_number.to_be_bytes());
    out[8..12].copy_from_slice(&loc.tx_index.to_be_bytes());
    out[12] = loc.validation_code;
    out
}

pub(crate) fn decode_tx(bytes: &[u8]) -> Result<TxLocation> {
    let b: &[u8; 13] = bytes
        .try_into()
        .map_err(|_| bad_value("tx location", bytes))?;
    Ok(TxLocation {
        block_number: u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        tx_index: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        validation_code: b[12],
    })
}

fn bad_value(kind: &'static str, bytes: &[u8]) -> LedgerError {
    LedgerError::IndexCorrupt {
        issue: IndexIssue::BadValue {
            kind,
            len: bytes.len(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let loc = BlockLoc {
            file: 7,
            offset: 1 << 40,
            len: 12345,
        };
        assert_eq!(BlockLoc::decode(&loc.encode()).unwrap(), loc);
        let cp = Checkpoint {
            height: 99,
            last_hash: [7; 32],
        };
        assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
        let tx = TxLocation {
            block_number: 5,
            tx_index: 3,
            validation_code: 11,
        };
        assert_eq!(decode_tx(&encode_tx(tx)).unwrap(), tx);
        assert_eq!(decode_u64("n", &encode_u64(42)).unwrap(), 42);
    }

    #[test]
    fn bad_lengths_are_index_corruption() {
        assert!(matches!(
            BlockLoc::decode(&[0; 15]),
            Err(LedgerError::IndexCorrupt { .. })
        ));
        assert!(Checkpoint::decode(&[0; 39]).is_err());
        assert!(decode_tx(&[0; 14]).is_err());
        assert!(decode_u64("n", &[0; 7]).is_err());
    }

    #[test]
    fn block_keys_sort_by_number() {
        assert!(block_key(1) < block_key(2));
        assert!(block_key(255) < block_key(256));
    }
}
