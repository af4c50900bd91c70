//! Composite keys: an object type and attributes packed into one state key.
//!
//! Layout: `U+0000 objectType U+0000 attr1 U+0000 attr2 U+0000 …`. The
//! leading U+0000 keeps composite keys apart from simple keys, which is why
//! range queries refuse keys that start with it. All keys sharing a prefix
//! lie in `[prefix, prefix + U+10FFFF)`.

use crate::error::{Error, Result};

/// The separator between composite key parts, and its first character.
pub const COMPOSITE_KEY_SEPARATOR: char = '\u{0000}';

/// The highest Unicode scalar value; appended to a prefix, it bounds the
/// range of every key that starts with the prefix.
pub const MAX_UNICODE_RUNE: char = '\u{10FFFF}';

fn check_part(part: &str, what: &str) -> Result<()> {
    if let Some(bad) = part
        .chars()
        .find(|&c| c == COMPOSITE_KEY_SEPARATOR || c == MAX_UNICODE_RUNE)
    {
        return Err(Error::InvalidKey(format!(
            "{what} {part:?} contains the reserved character U+{:04X}",
            u32::from(bad)
        )));
    }
    Ok(())
}

/// Builds the composite key for `object_type` and `attributes`.
///
/// Neither may contain U+0000 or U+10FFFF.
pub fn create_composite_key<S: AsRef<str>>(object_type: &str, attributes: &[S]) -> Result<String> {
    check_part(object_type, "object type")?;
    let mut key = String::with_capacity(
        2 + object_type.len()
            + attributes
                .iter()
                .map(|a| a.as_ref().len() + 1)
                .sum::<usize>(),
    );
    key.push(COMPOSITE_KEY_SEPARATOR);
    key.push_str(object_type);
    key.push(COMPOSITE_KEY_SEPARATOR);
    for attribute in attributes {
        let attribute = attribute.as_ref();
        check_part(attribute, "attribute")?;
        key.push_str(attribute);
        key.push(COMPOSITE_KEY_SEPARATOR);
    }
    Ok(key)
}

/// Splits a composite key into its object type and attributes.
pub fn split_composite_key(key: &str) -> Result<(String, Vec<String>)> {
    let body = key
        .strip_prefix(COMPOSITE_KEY_SEPARATOR)
        .and_then(|rest| rest.strip_suffix(COMPOSITE_KEY_SEPARATOR))
        .ok_or_else(|| Error::InvalidKey(format!("{key:?} is not a composite key")))?;
    let mut parts = body.split(COMPOSITE_KEY_SEPARATOR).map(str::to_owned);
    let object_type = parts.next().unwrap_or_default();
    Ok((object_type, parts.collect()))
}

/// The `[start, end)` range holding every composite key whose object type
/// is `object_type` and whose first attributes are `attributes`.
pub fn partial_composite_key_range<S: AsRef<str>>(
    object_type: &str,
    attributes: &[S],
) -> Result<(String, String)> {
    let start = create_composite_key(object_type, attributes)?;
    let mut end = start.clone();
    end.push(MAX_UNICODE_RUNE);
    Ok((start, end))
}

/// Refuses composite keys where only simple keys belong (range bounds).
pub(crate) fn check_simple_key(key: &str) -> Result<()> {
    if key.starts_with(COMPOSITE_KEY_SEPARATOR) {
        return Err(Error::InvalidKey(format!(
            "{key:?} starts with U+0000, which is reserved for composite keys; \
             use get_state_by_partial_composite_key"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lays_out_parts_with_separators() {
        let key = create_composite_key("color~name", &["blue", "asset1"]).unwrap();
        assert_eq!(key, "\u{0}color~name\u{0}blue\u{0}asset1\u{0}");
        let no_attrs = create_composite_key::<&str>("owner", &[]).unwrap();
        assert_eq!(no_attrs, "\u{0}owner\u{0}");
    }

    #[test]
    fn split_reverses_create() {
        let key = create_composite_key("t", &["a", "", "c d"]).unwrap();
        let (object_type, attributes) = split_composite_key(&key).unwrap();
        assert_eq!(object_type, "t");
        assert_eq!(attributes, vec!["a", "", "c d"]);

        let (object_type, attributes) =
            split_composite_key(&create_composite_key::<String>("only", &[]).unwrap()).unwrap();
        assert_eq!(object_type, "only");
        assert!(attributes.is_empty());
    }

    #[test]
    fn split_rejects_simple_keys() {
        assert!(matches!(
            split_composite_key("asset1"),
            Err(Error::InvalidKey(_))
        ));
        assert!(split_composite_key("\u{0}unterminated").is_err());
        assert!(split_composite_key("").is_err());
    }

    #[test]
    fn reserved_characters_are_refused() {
        assert!(create_composite_key("a\u{0}b", &["x"]).is_err());
        assert!(create_composite_key("t", &["x\u{10FFFF}"]).is_err());
        assert!(create_composite_key("t", &["x\u{0}"]).is_err());
    }

    #[test]
    fn partial_range_covers_longer_keys_only() {
        let (start, end) = partial_composite_key_range("color~name", &["blue"]).unwrap();
        assert_eq!(start, "\u{0}color~name\u{0}blue\u{0}");
        assert_eq!(end, "\u{0}color~name\u{0}blue\u{0}\u{10FFFF}");
        let inside = create_composite_key("color~name", &["blue", "asset9"]).unwrap();
        let outside = create_composite_key("color~name", &["bluegreen", "asset1"]).unwrap();
        assert!(start.as_str() <= inside.as_str() && inside < end);
        assert!(!(start.as_str() <= outside.as_str() && outside < end));
    }

    #[test]
    fn simple_key_check() {
        assert!(check_simple_key("").is_ok());
        assert!(check_simple_key("asset1").is_ok());
        assert!(check_simple_key("\u{0}t\u{0}").is_err());
    }
}
