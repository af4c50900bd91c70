//! Byte layout of the state tree. Everything lives in one sled tree so that
//! one `sled::Batch` commits state, history and savepoint atomically.
//!
//! ```text
//! 's' ns 0x00 key                          -> version(16) value_height(16) meta_len(u32 BE) meta value
//! 'h' ns 0x00 key_len(u32 BE) key height(16) -> flag(1: 0 put, 1 delete) value
//! 'm' "savepoint"                          -> block number (u64 BE)
//! 'm' "format"                             -> FORMAT_VERSION
//! ```
//!
//! `meta` is a sequence of (name_len u32 BE, name, value_len u32 BE, value)
//! in name order. Namespaces never contain 0x00, so `'s' ns 0x00` is a
//! prefix owned by exactly one namespace, and its keys sort in the byte
//! order of the key. Keys may contain 0x00 (composite keys): the history
//! key length-prefixes the key so that the entries of one key are exactly
//! the keys under `'h' ns 0x00 len key`, followed by a fixed 16 bytes.
//!
//! A key's current value is its newest history entry: it is kept only in
//! the state entry (with `value_height`, the height of the write that set
//! it, which differs from `version` after a metadata-only write). When a
//! later write replaces or deletes it, the commit moves it to an `'h'`
//! entry. Creating a key therefore costs one write, not two.

use std::collections::BTreeMap;

use super::error::{Result, StateError};
use super::types::{Height, VersionedValue};

pub(crate) const STATE_PREFIX: u8 = b's';
pub(crate) const HISTORY_PREFIX: u8 = b'h';
pub(crate) const SAVEPOINT_KEY: &[u8] = b"msavepoint";
pub(crate) const FORMAT_KEY: &[u8] = b"mformat";
pub(crate) const FORMAT_VERSION: &[u8] = b"twill-state-2";
/// Earlier layouts a database may hold; it is rebuilt from the block store.
pub(crate) const OLD_FORMATS: &[&[u8]] = &[b"twill-state-1"];

const NS_SEP: u8 = 0x00;
const HEIGHT_LEN: usize = 16;

/// Refuses namespaces that would break the key layout.
pub(crate) fn check_namespace(ns: &str) -> Result<()> {
    if ns.as_bytes().contains(&NS_SEP) {
        return Err(StateError::InvalidNamespace {
            namespace: ns.to_owned(),
            reason: "contains U+0000",
        });
    }
    Ok(())
}

/// `'s' ns 0x00`: every state key of `ns` starts with it.
pub(crate) fn state_ns_prefix(ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 2);
    k.push(STATE_PREFIX);
    k.extend_from_slice(ns.as_bytes());
    k.push(NS_SEP);
    k
}

/// `'s' ns 0x01`: the first byte string after every state key of `ns`.
pub(crate) fn state_ns_end(ns: &str) -> Vec<u8> {
    let mut k = state_ns_prefix(ns);
    if let Some(last) = k.last_mut() {
        *last = NS_SEP + 1;
    }
    k
}

pub(crate) fn state_key(ns: &str, key: &str) -> Vec<u8> {
    let mut k = state_ns_prefix(ns);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `'h' ns 0x00 len key`: every history key of (ns, key) starts with it.
pub(crate) fn history_key_prefix(ns: &str, key: &str) -> Result<Vec<u8>> {
    let len = u32::try_from(key.len()).map_err(|_| StateError::KeyTooLong {
        namespace: ns.to_owned(),
        len: key.len(),
    })?;
    let mut k = Vec::with_capacity(ns.len() + key.len() + 6 + HEIGHT_LEN);
    k.push(HISTORY_PREFIX);
    k.extend_from_slice(ns.as_bytes());
    k.push(NS_SEP);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    Ok(k)
}

pub(crate) fn history_key(ns: &str, key: &str, height: Height) -> Result<Vec<u8>> {
    let mut k = history_key_prefix(ns, key)?;
    k.extend_from_slice(&height.to_bytes());
    Ok(k)
}

/// Splits a history key back into (ns, key, height).
pub(crate) fn decode_history_key(raw: &[u8]) -> Result<(String, String, Height)> {
    let corrupt = |reason| StateError::Corrupt {
        kind: "history",
        key: raw.to_vec(),
        reason,
    };
    let rest = raw
        .strip_prefix(&[HISTORY_PREFIX])
        .ok_or_else(|| corrupt("wrong prefix"))?;
    let sep = rest
        .iter()
        .position(|b| *b == NS_SEP)
        .ok_or_else(|| corrupt("no namespace separator"))?;
    let (ns, rest) = (&rest[..sep], &rest[sep + 1..]);
    let (len, rest) = split_u32(rest).ok_or_else(|| corrupt("truncated key length"))?;
    let len = len as usize;
    if rest.len() != len + HEIGHT_LEN {
        return Err(corrupt("key length does not match the entry"));
    }
    let (key, height) = rest.split_at(len);
    let height = Height::from_bytes(height).ok_or_else(|| corrupt("bad height"))?;
    let ns = std::str::from_utf8(ns).map_err(|_| corrupt("namespace is not UTF-8"))?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt("key is not UTF-8"))?;
    Ok((ns.to_owned(), key.to_owned(), height))
}

pub(crate) fn encode_history_value(is_delete: bool, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + value.len());
    v.push(u8::from(is_delete));
    v.extend_from_slice(value);
    v
}

/// (is_delete, value) of a history entry.
pub(crate) fn decode_history_value<'a>(raw_key: &[u8], raw: &'a [u8]) -> Result<(bool, &'a [u8])> {
    match raw.split_first() {
        Some((0, value)) => Ok((false, value)),
        Some((1, value)) => Ok((true, value)),
        _ => Err(StateError::Corrupt {
            kind: "history",
            key: raw_key.to_vec(),
            reason: "bad delete flag",
        }),
    }
}

pub(crate) fn encode_state_value(
    ns: &str,
    key: &str,
    value: &[u8],
    version: Height,
    value_height: Height,
    metadata: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>> {
    let too_large = || StateError::MetadataTooLarge {
        namespace: ns.to_owned(),
        key: key.to_owned(),
    };
    let mut meta = Vec::new();
    for (name, entry) in metadata {
        let name_len = u32::try_from(name.len()).map_err(|_| too_large())?;
        let entry_len = u32::try_from(entry.len()).map_err(|_| too_large())?;
        meta.extend_from_slice(&name_len.to_be_bytes());
        meta.extend_from_slice(name.as_bytes());
        meta.extend_from_slice(&entry_len.to_be_bytes());
        meta.extend_from_slice(entry);
    }
    let meta_len = u32::try_from(meta.len()).map_err(|_| too_large())?;
    let mut out = Vec::with_capacity(2 * HEIGHT_LEN + 4 + meta.len() + value.len());
    out.extend_from_slice(&version.to_bytes());
    out.extend_from_slice(&value_height.to_bytes());
    out.extend_from_slice(&meta_len.to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(value);
    Ok(out)
}

/// The version alone, without touching metadata or value.
pub(crate) fn decode_version(raw_key: &[u8], raw: &[u8]) -> Result<Height> {
    raw.get(..HEIGHT_LEN)
        .and_then(Height::from_bytes)
        .ok_or_else(|| StateError::Corrupt {
            kind: "state",
            key: raw_key.to_vec(),
            reason: "value shorter than a version",
        })
}

/// Splits a stored state value into (version, value height, raw metadata,
/// value).
fn split_state_value<'a>(
    raw_key: &[u8],
    raw: &'a [u8],
) -> Result<(Height, Height, &'a [u8], &'a [u8])> {
    let corrupt = |reason| StateError::Corrupt {
        kind: "state",
        key: raw_key.to_vec(),
        reason,
    };
    let version = decode_version(raw_key, raw)?;
    let value_height = raw
        .get(HEIGHT_LEN..2 * HEIGHT_LEN)
        .and_then(Height::from_bytes)
        .ok_or_else(|| corrupt("value shorter than two heights"))?;
    let (meta_len, rest) =
        split_u32(&raw[2 * HEIGHT_LEN..]).ok_or_else(|| corrupt("truncated metadata length"))?;
    let meta_len = meta_len as usize;
    if rest.len() < meta_len {
        return Err(corrupt("metadata runs past the end of the value"));
    }
    let (meta, value) = rest.split_at(meta_len);
    Ok((version, value_height, meta, value))
}

fn decode_metadata(raw_key: &[u8], mut meta: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    let corrupt = |reason| StateError::Corrupt {
        kind: "state",
        key: raw_key.to_vec(),
        reason,
    };
    let mut out = BTreeMap::new();
    while !meta.is_empty() {
        let (name, rest) = split_chunk(meta).ok_or_else(|| corrupt("truncated metadata name"))?;
        let (entry, rest) = split_chunk(rest).ok_or_else(|| corrupt("truncated metadata entry"))?;
        let name = std::str::from_utf8(name).map_err(|_| corrupt("metadata name is not UTF-8"))?;
        out.insert(name.to_owned(), entry.to_vec());
        meta = rest;
    }
    Ok(out)
}

pub(crate) fn decode_metadata_only(
    raw_key: &[u8],
    raw: &[u8],
) -> Result<BTreeMap<String, Vec<u8>>> {
    let (_, _, meta, _) = split_state_value(raw_key, raw)?;
    decode_metadata(raw_key, meta)
}

pub(crate) fn decode_state_value(raw_key: &[u8], raw: &[u8]) -> Result<VersionedValue> {
    Ok(decode_state_entry(raw_key, raw)?.0)
}

/// The versioned value and the height of the write that set the value.
pub(crate) fn decode_state_entry(raw_key: &[u8], raw: &[u8]) -> Result<(VersionedValue, Height)> {
    let (version, value_height, meta, value) = split_state_value(raw_key, raw)?;
    Ok((
        VersionedValue {
            value: value.to_vec(),
            version,
            metadata: decode_metadata(raw_key, meta)?,
        },
        value_height,
    ))
}

pub(crate) fn encode_savepoint(block: u64) -> [u8; 8] {
    block.to_be_bytes()
}

pub(crate) fn decode_savepoint(raw: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| StateError::Corrupt {
        kind: "savepoint",
        key: SAVEPOINT_KEY.to_vec(),
        reason: "not 8 bytes",
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn split_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (len, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*len), rest))
}

fn split_chunk(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = split_u32(b)?;
    let len = len as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_value_round_trips_and_version_reads_alone() {
        let mut meta = BTreeMap::new();
        meta.insert("VALIDATION_PARAMETER".to_owned(), vec![1, 2, 3]);
        meta.insert("b".to_owned(), Vec::new());
        let raw = encode_state_value(
            "cc",
            "k",
            b"val",
            Height::new(7, 2),
            Height::new(5, 1),
            &meta,
        )
        .unwrap();
        assert_eq!(decode_version(b"k", &raw).unwrap(), Height::new(7, 2));
        let (vv, value_height) = decode_state_entry(b"k", &raw).unwrap();
        assert_eq!(value_height, Height::new(5, 1));
        assert_eq!(vv.value, b"val");
        assert_eq!(vv.metadata, meta);
        assert_eq!(decode_metadata_only(b"k", &raw).unwrap(), meta);
    }

    #[test]
    fn truncated_state_values_are_corrupt() {
        let h = Height::new(1, 1);
        let raw = encode_state_value("cc", "k", b"", h, h, &BTreeMap::new()).unwrap();
        assert!(decode_state_value(b"k", &raw[..10]).is_err());
        assert!(decode_state_value(b"k", &raw[..18]).is_err());
        assert!(decode_state_value(b"k", &raw[..34]).is_err());
        let mut meta = BTreeMap::new();
        meta.insert("n".to_owned(), vec![9; 10]);
        let raw = encode_state_value("cc", "k", b"", h, h, &meta).unwrap();
        let err = decode_state_value(b"k", &raw[..raw.len() - 1]).unwrap_err();
        assert_eq!(err.code(), "STATE_CORRUPT");
    }

    #[test]
    fn history_keys_of_distinct_keys_do_not_nest() {
        // "a" and "a\0b": without the length prefix, the first would be a
        // prefix of the second.
        let p = history_key_prefix("cc", "a").unwrap();
        let other = history_key("cc", "a\0b", Height::new(0, 0)).unwrap();
        assert!(!other.starts_with(&p));
        let k = history_key("cc", "a\0b", Height::new(3, 4)).unwrap();
        assert_eq!(
            decode_history_key(&k).unwrap(),
            ("cc".to_owned(), "a\0b".to_owned(), Height::new(3, 4))
        );
        assert!(decode_history_key(&k[..k.len() - 1]).is_err());
    }

    #[test]
    fn namespace_end_bounds_only_its_own_keys() {
        let end = state_ns_end("cc");
        assert!(state_key("cc", "\u{10FFFF}") < end);
        assert!(state_key("cc1", "") > end);
        assert!(state_key("cc", "") >= state_ns_prefix("cc"));
        assert!(check_namespace("a\0b").is_err());
        assert!(check_namespace("mycc$$collection").is_ok());
    }
}
