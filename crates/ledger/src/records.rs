//! Reading records from block files, and telling a torn tail from damage.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{CorruptIssue, LedgerError, Result};
use crate::format::{RecordHeader, RECORD_HEADER_LEN, RECORD_MAGIC};

/// What sits at an offset of a block file.
pub(crate) enum Scanned {
    /// The offset is the end of the file.
    End,
    /// A complete record whose checksums hold.
    Record {
        header: RecordHeader,
        payload: Vec<u8>,
    },
    /// Bytes that are not a complete, intact record.
    Damaged(Damage),
}

/// Ways the bytes at an offset fail to be a record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Damage {
    /// Fewer bytes than a header remain.
    ShortHeader { available: u64 },
    /// Magic or header checksum wrong.
    BadHeader,
    /// The header is intact but the block bytes run past the end of file.
    BodyPastEof {
        header: RecordHeader,
        available: u64,
    },
    /// Header intact, block bytes present, but their checksum is wrong.
    BadChecksum { header: RecordHeader, computed: u32 },
}

impl Damage {
    pub fn issue(self) -> CorruptIssue {
        match self {
            Damage::ShortHeader { available } => CorruptIssue::TruncatedRecord {
                needed: RECORD_HEADER_LEN as u64,
                available,
            },
            Damage::BadHeader => CorruptIssue::BadRecordHeader,
            Damage::BodyPastEof { header, available } => CorruptIssue::TruncatedRecord {
                needed: header.record_len(),
                available,
            },
            Damage::BadChecksum { header, computed } => CorruptIssue::ChecksumMismatch {
                stored: header.payload_crc,
                computed,
            },
        }
    }
}

/// Reads the record at `offset` of a file `file_len` bytes long.
pub(crate) fn read_record_at(
    file: &File,
    path: &Path,
    offset: u64,
    file_len: u64,
) -> Result<Scanned> {
    let available = file_len.saturating_sub(offset);
    if available == 0 {
        return Ok(Scanned::End);
    }
    if available < RECORD_HEADER_LEN as u64 {
        return Ok(Scanned::Damaged(Damage::ShortHeader { available }));
    }
    let mut head = [0u8; RECORD_HEADER_LEN];
    file.read_exact_at(&mut head, offset)
        .map_err(|e| LedgerError::io(path, e))?;
    let Some(header) = RecordHeader::parse(&head) else {
        return Ok(Scanned::Damaged(Damage::BadHeader));
    };
    if header.record_len() > available {
        return Ok(Scanned::Damaged(Damage::BodyPastEof { header, available }));
    }
    let mut payload = vec![0u8; header.len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER_LEN as u64)
        .map_err(|e| LedgerError::io(path, e))?;
    let computed = crc32fast::hash(&payload);
    if computed != header.payload_crc {
        return Ok(Scanned::Damaged(Damage::BadChecksum { header, computed }));
    }
    Ok(Scanned::Record { header, payload })
}

/// Whether damage found at `offset` of the last block file can be the
/// remains of one interrupted append, and so may be cut off.
///
/// Every append writes one record and syncs it before the next begins, so
/// a crash can only leave the final record incomplete. Damage qualifies
/// when nothing intact could follow it: a short header, a body running past
/// the end of file, a checksum failure in a record that ends exactly at the
/// end of file, or a broken header with no intact record anywhere after it.
pub(crate) fn is_torn_tail(
    file: &File,
    path: &Path,
    damage: Damage,
    offset: u64,
    file_len: u64,
) -> Result<bool> {
    match damage {
        Damage::ShortHeader { .. } | Damage::BodyPastEof { .. } => Ok(true),
        Damage::BadChecksum { header, .. } => {
            Ok(offset.saturating_add(header.record_len()) == file_len)
        }
        Damage::BadHeader => Ok(!intact_record_after(file, path, offset + 1, file_len)?),
    }
}

/// Whether an intact record (valid header, body within the file, matching
/// checksum) starts anywhere in `from..file_len`.
fn intact_record_after(file: &File, path: &Path, from: u64, file_len: u64) -> Result<bool> {
    let Some(rest_len) = file_len
        .checked_sub(from)
        .and_then(|n| usize::try_from(n).ok())
    else {
        return Ok(false);
    };
    let mut rest = vec![0u8; rest_len];
    file.read_exact_at(&mut rest, from)
        .map_err(|e| LedgerError::io(path, e))?;
    let mut at = 0usize;
    while let Some(found) = find(&rest[at..], &RECORD_MAGIC) {
        let start = at + found;
        if let Some(head) = rest
            .get(start..start + RECORD_HEADER_LEN)
            .and_then(|h| <&[u8; RECORD_HEADER_LEN]>::try_from(h).ok())
        {
            if let Some(header) = RecordHeader::parse(head) {
                let body_start = start + RECORD_HEADER_LEN;
                if let Some(body) = rest.get(body_start..body_start + header.len as usize) {
                    if crc32fast::hash(body) == header.payload_crc {
                        return Ok(true);
                    }
                }
            }
        }
        at = start + 1;
    }
    Ok(false)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_record;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        (f, bytes.len() as u64)
    }

    #[test]
    fn reads_records_in_sequence() {
        let mut bytes = encode_record(b"one").unwrap();
        bytes.extend(encode_record(b"second").unwrap());
        let (f, len) = file_with(&bytes);
        let file = f.as_file();
        let Scanned::Record { header, payload } = read_record_at(file, f.path(), 0, len).unwrap()
        else {
            panic!("expected a record")
        };
        assert_eq!(payload, b"one");
        let next = header.record_len();
        let Scanned::Record { payload, .. } = read_record_at(file, f.path(), next, len).unwrap()
        else {
            panic!("expected a record")
        };
        assert_eq!(payload, b"second");
        assert!(matches!(
            read_record_at(file, f.path(), len, len).unwrap(),
            Scanned::End
        ));
    }

    #[test]
    fn classifies_damage() {
        let rec = encode_record(&[0x42; 100]).unwrap();
        // Half a record at the end: torn.
        let (f, len) = file_with(&rec[..rec.len() / 2]);
        let Scanned::Damaged(d) = read_record_at(f.as_file(), f.path(), 0, len).unwrap() else {
            panic!("expected damage")
        };
        assert!(matches!(d, Damage::BodyPastEof { .. }));
        assert!(is_torn_tail(f.as_file(), f.path(), d, 0, len).unwrap());

        // A flipped payload byte in the last record: torn (it ends at EOF).
        let mut flipped = rec.clone();
        flipped[RECORD_HEADER_LEN] ^= 0xff;
        let (f, len) = file_with(&flipped);
        let Scanned::Damaged(d) = read_record_at(f.as_file(), f.path(), 0, len).unwrap() else {
            panic!("expected damage")
        };
        assert!(matches!(d, Damage::BadChecksum { .. }));
        assert!(is_torn_tail(f.as_file(), f.path(), d, 0, len).unwrap());

        // The same followed by an intact record: not torn.
        let mut two = flipped.clone();
        two.extend(&rec);
        let (f, len) = file_with(&two);
        let Scanned::Damaged(d) = read_record_at(f.as_file(), f.path(), 0, len).unwrap() else {
            panic!("expected damage")
        };
        assert!(!is_torn_tail(f.as_file(), f.path(), d, 0, len).unwrap());

        // A broken header followed by an intact record: not torn.
        let mut bad_head = rec.clone();
        bad_head[5] ^= 0x01;
        bad_head.extend(&rec);
        let (f, len) = file_with(&bad_head);
        let Scanned::Damaged(d) = read_record_at(f.as_file(), f.path(), 0, len).unwrap() else {
            panic!("expected damage")
        };
        assert!(matches!(d, Damage::BadHeader));
        assert!(!is_torn_tail(f.as_file(), f.path(), d, 0, len).unwrap());

        // Garbage alone: torn.
        let (f, len) = file_with(&[0xAB; 100]);
        let Scanned::Damaged(d) = read_record_at(f.as_file(), f.path(), 0, len).unwrap() else {
            panic!("expected damage")
        };
        assert!(is_torn_tail(f.as_file(), f.path(), d, 0, len).unwrap());

        // A few bytes: short header, torn.
        let (f, len) = file_with(&rec[..5]);
        let Scanned::Damaged(d) = read_record_at(f.as_file(), f.path(), 0, len).unwrap() else {
            panic!("expected damage")
        };
        assert!(matches!(d, Damage::ShortHeader { available: 5 }));
        assert!(is_torn_tail(f.as_file(), f.path(), d, 0, len).unwrap());
    }
}
