//! Bookmarks: where the previous page ended.
//!
//! A bookmark is the unpadded base64url encoding of a small JSON object:
//! `{"v":1,"k":"<last key>"}` for unsorted queries, plus `"s":[...]`, the
//! last record's sort values, for sorted ones. Resuming returns the records
//! strictly after that position in the query's order, so a page is never
//! repeated or skipped even if earlier records changed in between.

use serde_json::{json, Value};

use super::{QueryError, MAX_BOOKMARK_LEN};

/// The position of the last record of a page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Position {
    /// The record's key.
    pub(crate) key: String,
    /// Its sort values, one per sort field (empty when unsorted).
    pub(crate) sort: Vec<Value>,
}

const VERSION: u64 = 1;

fn bad(reason: impl Into<String>) -> QueryError {
    QueryError::BadBookmark {
        reason: reason.into(),
    }
}

impl Position {
    /// The bookmark string for this position.
    pub(crate) fn encode(&self) -> String {
        let body = if self.sort.is_empty() {
            json!({"v": VERSION, "k": self.key})
        } else {
            json!({"v": VERSION, "k": self.key, "s": self.sort})
        };
        base64url_encode(body.to_string().as_bytes())
    }

    /// Decodes a bookmark made for a query with `sort_fields` sort fields.
    pub(crate) fn decode(bookmark: &str, sort_fields: usize) -> Result<Position, QueryError> {
        if bookmark.len() > MAX_BOOKMARK_LEN {
            return Err(bad(format!(
                "{} bytes long, the limit is {MAX_BOOKMARK_LEN}",
                bookmark.len()
            )));
        }
        let bytes = base64url_decode(bookmark).ok_or_else(|| bad("not base64url"))?;
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|_| bad("not a bookmark this peer issued"))?;
        let Value::Object(mut obj) = body else {
            return Err(bad("not a bookmark this peer issued"));
        };
        if obj.get("v").and_then(Value::as_u64) != Some(VERSION) {
            return Err(bad("unknown bookmark version"));
        }
        let key = match obj.remove("k") {
            Some(Value::String(k)) => k,
            _ => return Err(bad("no key")),
        };
        let sort = match obj.remove("s") {
            None => Vec::new(),
            Some(Value::Array(values)) => values,
            Some(_) => return Err(bad("malformed sort position")),
        };
        if sort.len() != sort_fields {
            return Err(bad(format!(
                "made for a query with {} sort field(s), this one has {sort_fields}",
                sort.len()
            )));
        }
        Ok(Position { key, sort })
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        for i in 0..produced {
            out.push((n >> (16 - 8 * i)) as u8);
        }
        // Canonical encodings only: the unused low bits must be zero.
        let tail_mask = match produced {
            1 => 0xffff,
            2 => 0xff,
            _ => 0,
        };
        if n & tail_mask != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        let data: Vec<u8> = (0u8..=255).collect();
        for len in 0..40 {
            let enc = base64url_encode(&data[..len]);
            assert!(!enc.contains('='));
            assert_eq!(base64url_decode(&enc).unwrap(), &data[..len], "len {len}");
        }
        assert_eq!(base64url_encode(b"\xfb\xff"), "-_8");
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("ab=c").is_none());
        // Non-canonical trailing bits are refused.
        assert!(base64url_decode("AB").is_none());
    }

    #[test]
    fn positions_round_trip_and_check_sort_arity() {
        let p = Position {
            key: "asset\u{0}7".to_string(),
            sort: vec![json!(3), json!("x")],
        };
        let enc = p.encode();
        assert_eq!(Position::decode(&enc, 2).unwrap(), p);
        let err = Position::decode(&enc, 1).unwrap_err();
        assert_eq!(err.code(), "QUERY_BAD_BOOKMARK");
        assert!(err.to_string().contains("2 sort field(s)"), "{err}");
    }
}
