//! Field paths: `"a.b.0"` parsed once, then walked over `&Value` without
//! allocating.

use serde_json::Value;

/// One step of a field path: an object member name, which also indexes an
/// array when it is a decimal number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    name: String,
    index: Option<usize>,
}

impl Segment {
    fn new(name: String) -> Segment {
        let index = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            name.parse().ok()
        } else {
            None
        };
        Segment { name, index }
    }
}

/// A parsed field path. Empty means "the value itself" (used inside
/// `$elemMatch` and for operators applied at the top of a selector).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Splits a dotted field name. `\.` is a literal dot and `\\` a
    /// literal backslash; `\` before any other character (such as `$`)
    /// just keeps that character. Returns `None` if a segment is empty.
    pub(crate) fn parse(field: &str) -> Option<FieldPath> {
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut chars = field.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next) => current.push(next),
                    None => current.push('\\'),
                },
                '.' => {
                    if current.is_empty() {
                        return None;
                    }
                    segments.push(Segment::new(std::mem::take(&mut current)));
                }
                _ => current.push(c),
            }
        }
        if current.is_empty() {
            return None;
        }
        segments.push(Segment::new(current));
        Some(FieldPath { segments })
    }

    /// This path followed by `other`.
    pub(crate) fn join(&self, other: &FieldPath) -> FieldPath {
        let mut segments = self.segments.clone();
        segments.extend(other.segments.iter().cloned());
        FieldPath { segments }
    }

    /// Whether the path is exactly the top-level member `name`.
    pub(crate) fn is_single(&self, name: &str) -> bool {
        matches!(self.segments.as_slice(), [s] if s.name == name)
    }

    /// The value at this path, descending through objects and (by numeric
    /// segment) arrays.
    pub(crate) fn resolve<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut v = root;
        for seg in &self.segments {
            v = match v {
                Value::Object(map) => map.get(&seg.name)?,
                Value::Array(items) => items.get(seg.index?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// Copies the value at this path (objects only) from `src` into `dst`,
    /// creating the enclosing objects; used by `fields` projection.
    pub(crate) fn project(&self, src: &Value, dst: &mut serde_json::Map<String, Value>) {
        let Some((last, parents)) = self.segments.split_last() else {
            return;
        };
        let mut s = src;
        for seg in &self.segments {
            s = match s {
                Value::Object(map) => match map.get(&seg.name) {
                    Some(v) => v,
                    None => return,
                },
                _ => return,
            };
        }
        let mut d = dst;
        for seg in parents {
            let entry = d
                .entry(seg.name.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            d = match entry {
                Value::Object(map) => map,
                // An earlier, shorter field already copied this whole value.
                _ => return,
            };
        }
        d.insert(last.name.clone(), s.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_dots_and_escapes() {
        let p = FieldPath::parse(r"a\.b.c").unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[0].name, "a.b");
        assert_eq!(FieldPath::parse(r"\$x").unwrap().segments[0].name, "$x");
        for bad in ["", ".", "a.", ".a", "a..b"] {
            assert!(FieldPath::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn resolves_objects_and_array_indexes() {
        let doc = json!({"a": {"b": [10, {"c": 3}]}, "a.b": 7});
        let get = |f: &str| FieldPath::parse(f).unwrap().resolve(&doc).cloned();
        assert_eq!(get("a.b.0"), Some(json!(10)));
        assert_eq!(get("a.b.1.c"), Some(json!(3)));
        assert_eq!(get(r"a\.b"), Some(json!(7)));
        assert_eq!(get("a.b.2"), None);
        assert_eq!(get("a.b.x"), None);
        assert_eq!(get("a.b.0.c"), None);
    }
}
