//! The on-disk format of block files.
//!
//! A channel's blocks live in `blocks/blockfile_NNNNNN` (six or more decimal
//! digits, numbered from 0 without gaps). Each file is a plain sequence of
//! records, one per block, with no file header:
//!
//! ```text
//! offset  size  field
//!      0     4  magic "TWB1"
//!      4     4  len: length of the block bytes, u32 little-endian
//!      8     4  CRC-32 (IEEE) of the block bytes, u32 little-endian
//!     12     4  CRC-32 (IEEE) of bytes 0..12, u32 little-endian
//!     16   len  the serialized `common.Block`
//! ```
//!
//! The header carries its own checksum so that a damaged length is caught
//! before it is trusted: recovery can then tell a torn tail (the last,
//! incomplete write before a crash) from damage in the middle of a file.
//! CRC-32 rather than SHA-256 because it only has to catch accidental
//! damage (torn writes, bit rot); the block's own hash chain, re-checked on
//! recovery, covers the content.
//!
//! This module is public so that tools (and tests) can read or write block
//! files without a [`BlockStore`](crate::BlockStore).

use crate::error::{LedgerError, Result};

/// First four bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"TWB1";

/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// Largest block, in serialized bytes, that a record can hold.
pub const MAX_RECORD_PAYLOAD: usize = u32::MAX as usize;

/// Prefix of block file names.
pub const BLOCK_FILE_PREFIX: &str = "blockfile_";

/// The parsed, checksum-verified header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Length of the block bytes that follow the header.
    pub len: u32,
    /// CRC-32 of those bytes.
    pub payload_crc: u32,
}

impl RecordHeader {
    /// The header for `payload`.
    ///
    /// Fails with [`LedgerError::BlockTooLarge`] past [`MAX_RECORD_PAYLOAD`].
    pub fn for_payload(payload: &[u8]) -> Result<RecordHeader> {
        let len = u32::try_from(payload.len()).map_err(|_| LedgerError::BlockTooLarge {
            len: payload.len(),
            max: MAX_RECORD_PAYLOAD,
        })?;
        Ok(RecordHeader {
            len,
            payload_crc: crc32fast::hash(payload),
        })
    }

    /// The 16 header bytes.
    pub fn to_bytes(self) -> [u8; RECORD_HEADER_LEN] {
        let mut out = [0u8; RECORD_HEADER_LEN];
        out[0..4].copy_from_slice(&RECORD_MAGIC);
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&out[0..12]);
        out[12..16].copy_from_slice(&header_crc.to_le_bytes());
        out
    }

    /// Parses header bytes; `None` when the magic or the header checksum is
    /// wrong (a torn or damaged header).
    pub fn parse(bytes: &[u8; RECORD_HEADER_LEN]) -> Option<RecordHeader> {
        if bytes[0..4] != RECORD_MAGIC {
            return None;
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if crc32fast::hash(&bytes[0..12]) != word(12) {
            return None;
        }
        Some(RecordHeader {
            len: word(4),
            payload_crc: word(8),
        })
    }

    /// Length of the whole record, header included.
    pub fn record_len(self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// One complete record (header followed by `payload`), as [`BlockStore`]
/// writes it.
///
/// [`BlockStore`]: crate::BlockStore
pub fn encode_record(payload: &[u8]) -> Result<Vec<u8>> {
    let header = RecordHeader::for_payload(payload)?;
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The name of block file `number`: `blockfile_000042`.
pub fn block_file_name(number: u32) -> String {
    format!("{BLOCK_FILE_PREFIX}{number:06}")
}

/// The number of a block file from its name, for names exactly as
/// [`block_file_name`] makes them.
pub fn parse_block_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(BLOCK_FILE_PREFIX)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u32 = digits.parse().ok()?;
    (block_file_name(number) == name).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let header = RecordHeader::for_payload(b"hello").unwrap();
        let bytes = header.to_bytes();
        assert_eq!(&bytes[0..4], b"TWB1");
        assert_eq!(RecordHeader::parse(&bytes), Some(header));
        assert_eq!(header.record_len(), 21);
    }

    #[test]
    fn header_damage_is_detected() {
        let bytes = RecordHeader::for_payload(b"hello").unwrap().to_bytes();
        for i in 0..RECORD_HEADER_LEN {
            let mut damaged = bytes;
            damaged[i] ^= 0x01;
            assert_eq!(RecordHeader::parse(&damaged), None, "byte {i}");
        }
        assert_eq!(RecordHeader::parse(&[0u8; RECORD_HEADER_LEN]), None);
    }

    #[test]
    fn encode_record_layout() {
        let rec = encode_record(b"abc").unwrap();
        assert_eq!(rec.len(), RECORD_HEADER_LEN + 3);
        assert_eq!(&rec[4..8], &3u32.to_le_bytes());
        assert_eq!(&rec[8..12], &crc32fast::hash(b"abc").to_le_bytes());
        assert_eq!(&rec[16..], b"abc");
    }

    #[test]
    fn file_names() {
        assert_eq!(block_file_name(0), "blockfile_000000");
        assert_eq!(block_file_name(1234567), "blockfile_1234567");
        assert_eq!(parse_block_file_name("blockfile_000042"), Some(42));
        assert_eq!(parse_block_file_name("blockfile_1234567"), Some(1234567));
        assert_eq!(parse_block_file_name("blockfile_42"), None);
        assert_eq!(parse_block_file_name("blockfile_0000042"), None);
        assert_eq!(parse_block_file_name("blockfile_00004x"), None);
        assert_eq!(parse_block_file_name("other"), None);
    }
}
