//! Composite keys, encoded byte-for-byte as Fabric's chaincode shims encode
//! them, so that keys written by Go, Node or Java chaincode and by Twill's
//! Rust shim are interchangeable.
//!
//! A composite key is U+0000, the object type, U+0000, then each attribute
//! followed by U+0000:
//!
//! ```text
//! create_composite_key("owner", ["alice", "car1"]) == "\0owner\0alice\0car1\0"
//! ```
//!
//! Object type and attributes must not contain U+0000 (the separator) or
//! U+10FFFF (the upper bound of partial-key ranges). Fabric also rejects
//! parts that are not valid UTF-8; here the `&str` type guarantees it, so
//! bytes arriving from the wire must go through `std::str::from_utf8` first.
//!
//! Because every composite key starts with U+0000, composite keys sort
//! before all simple keys of a namespace. Fabric's shims keep the two
//! apart: `GetStateByRange` refuses start or end keys that start with
//! U+0000 ([`validate_simple_key`]) and replaces an empty start key with
//! [`EMPTY_KEY_SUBSTITUTE`] (U+0001), so a plain range query never returns
//! composite keys; `GetStateByPartialCompositeKey` scans
//! [`composite_key_range`].

use super::error::{Result, StateError};

/// First character of every composite key, and the separator after the
/// object type and after each attribute.
pub const COMPOSITE_KEY_SEPARATOR: char = '\u{0}';

/// The largest Unicode scalar value; appended to a partial composite key to
/// form the exclusive end of its range.
pub const MAX_UNICODE_RUNE: char = '\u{10FFFF}';

/// What Fabric's shims send as the start key of `GetStateByRange` when the
/// chaincode passes an empty one, so the range skips composite keys.
pub const EMPTY_KEY_SUBSTITUTE: &str = "\u{1}";

fn check_part(part: &str) -> Result<()> {
    match part
        .char_indices()
        .find(|(_, c)| *c == COMPOSITE_KEY_SEPARATOR || *c == MAX_UNICODE_RUNE)
    {
        Some((position, ch)) => Err(StateError::InvalidCompositeKeyPart {
            part: part.to_owned(),
            position,
            ch,
        }),
        None => Ok(()),
    }
}

/// Builds the composite key of `object_type` and `attributes`, as Fabric's
/// `CreateCompositeKey` does. An empty attribute list gives the partial key
/// of the object type alone.
pub fn create_composite_key<I>(object_type: &str, attributes: I) -> Result<String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    check_part(object_type)?;
    let mut key = String::with_capacity(object_type.len() + 2);
    key.push(COMPOSITE_KEY_SEPARATOR);
    key.push_str(object_type);
    key.push(COMPOSITE_KEY_SEPARATOR);
    for attribute in attributes {
        let attribute = attribute.as_ref();
        check_part(attribute)?;
        key.push_str(attribute);
        key.push(COMPOSITE_KEY_SEPARATOR);
    }
    Ok(key)
}

/// Splits a composite key into its object type and attributes: the inverse
/// of [`create_composite_key`]. Refuses keys that do not start and end with
/// U+0000.
pub fn split_composite_key(key: &str) -> Result<(String, Vec<String>)> {
    let refuse = |reason| StateError::NotCompositeKey {
        key: key.to_owned(),
        reason,
    };
    let body = key
        .strip_prefix(COMPOSITE_KEY_SEPARATOR)
        .ok_or_else(|| refuse("does not start with U+0000"))?;
    let body = body
        .strip_suffix(COMPOSITE_KEY_SEPARATOR)
        .ok_or_else(|| refuse("does not end with U+0000"))?;
    let mut parts = body.split(COMPOSITE_KEY_SEPARATOR).map(str::to_owned);
    // `split` always yields at least one item, so the object type exists.
    let object_type = parts.next().unwrap_or_default();
    Ok((object_type, parts.collect()))
}

/// The `[start, end)` key range of `GetStateByPartialCompositeKey`: start is
/// the partial composite key, end is it followed by U+10FFFF.
pub fn composite_key_range<I>(object_type: &str, attributes: I) -> Result<(String, String)>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let start = create_composite_key(object_type, attributes)?;
    let mut end = start.clone();
    end.push(MAX_UNICODE_RUNE);
    Ok((start, end))
}

/// True if `key` is in the composite-key space (starts with U+0000).
pub fn is_composite_key(key: &str) -> bool {
    key.starts_with(COMPOSITE_KEY_SEPARATOR)
}

/// Fabric's check on the bounds of a plain range query: a simple key must
/// not start with U+0000.
pub fn validate_simple_key(key: &str) -> Result<()> {
    if is_composite_key(key) {
        return Err(StateError::CompositeKeyNotAllowed {
            key: key.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_fabric() {
        assert_eq!(
            create_composite_key("owner", ["alice", "car1"]).unwrap(),
            "\u{0}owner\u{0}alice\u{0}car1\u{0}"
        );
        assert_eq!(
            create_composite_key("t", Vec::<String>::new()).unwrap(),
            "\u{0}t\u{0}"
        );
        assert_eq!(create_composite_key("", [""]).unwrap(), "\u{0}\u{0}\u{0}");
    }

    #[test]
    fn round_trips_including_empty_and_non_ascii_parts() {
        let attrs = vec!["", "żółw", "日本", "a b"];
        let key = create_composite_key("typ€", &attrs).unwrap();
        let (object_type, got) = split_composite_key(&key).unwrap();
        assert_eq!(object_type, "typ€");
        assert_eq!(got, attrs);
    }

    #[test]
    fn refuses_reserved_characters_with_position() {
        let err = create_composite_key("ok", ["ab\u{0}c"]).unwrap_err();
        match &err {
            StateError::InvalidCompositeKeyPart { position, ch, .. } => {
                assert_eq!((*position, *ch), (2, '\u{0}'));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("U+0000"), "{err}");
        let err = create_composite_key("x\u{10FFFF}", ["a"]).unwrap_err();
        assert!(err.to_string().contains("U+10FFFF"), "{err}");
        assert!(composite_key_range("a", ["\u{0}"]).is_err());
        // U+10FFFE is allowed.
        assert!(create_composite_key("a", ["\u{10FFFE}"]).is_ok());
    }

    #[test]
    fn split_refuses_malformed_keys() {
        for bad in ["", "plain", "\u{0}", "\u{0}abc", "abc\u{0}"] {
            let err = split_composite_key(bad).unwrap_err();
            assert_eq!(err.code(), "STATE_NOT_COMPOSITE_KEY", "{bad:?}");
        }
    }

    #[test]
    fn range_covers_exactly_the_partial_key_family() {
        let (start, end) = composite_key_range("owner", ["alice"]).unwrap();
        let inside = create_composite_key("owner", ["alice", "car9"]).unwrap();
        let outside = create_composite_key("owner", ["alicia", "car1"]).unwrap();
        let prefix_clash = create_composite_key("owner", ["alice2"]).unwrap();
        assert!(start <= inside && inside < end);
        assert!(!(start <= outside && outside < end));
        assert!(!(start <= prefix_clash && prefix_clash < end));
        assert!(end.ends_with('\u{10FFFF}'));
    }

    #[test]
    fn simple_key_check() {
        assert!(validate_simple_key("a").is_ok());
        assert!(validate_simple_key(EMPTY_KEY_SUBSTITUTE).is_ok());
        assert_eq!(
            validate_simple_key("\u{0}a\u{0}").unwrap_err().code(),
            "STATE_COMPOSITE_KEY_NOT_ALLOWED"
        );
    }
}
