//! Selector compilation and matching.
//!
//! A selector is compiled once into a tree of [`Node`]s whose leaves are
//! `(field path, condition)` pairs. Field names are pushed down to the
//! leaves (`{"a": {"$or": [{"$gt": 1}, {"b": 2}]}}` becomes
//! `a > 1 OR a.b == 2`) and negations (`$not`, `$nor`) are pushed down to
//! the conditions with De Morgan's laws, flipping comparisons where
//! possible. That gives CouchDB's rule for missing fields everywhere: a
//! condition on a field the document lacks is false, whatever negations
//! surround it, except `$exists: false`.

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::collate::{collate, equal, integer};
use super::path::FieldPath;
use super::{QueryError, MAX_REGEX_LEN, MAX_SELECTOR_DEPTH, REGEX_SIZE_LIMIT};

/// A compiled selector.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// All children match (true when empty).
    And(Vec<Node>),
    /// Some child matches (false when empty).
    Or(Vec<Node>),
    /// The value at `path` satisfies `cond`.
    Field {
        /// Where to look.
        path: FieldPath,
        /// Whether the path is `_id`, which resolves to the record's key.
        is_id: bool,
        /// What must hold there.
        cond: Cond,
    },
}

/// The comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// The JSON type names `$type` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    fn of(v: &Value) -> JsonType {
        match v {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    fn parse(name: &str) -> Option<JsonType> {
        Some(match name {
            "null" => JsonType::Null,
            "boolean" => JsonType::Boolean,
            "number" => JsonType::Number,
            "string" => JsonType::String,
            "array" => JsonType::Array,
            "object" => JsonType::Object,
            _ => return None,
        })
    }
}

/// A condition on one value.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Cmp(CmpOp, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(JsonType),
    Size(usize),
    Mod(i128, i128),
    Regex(Regex),
    All(Vec<Value>),
    ElemMatch(Box<Node>),
    AllMatch(Box<Node>),
    KeyMapMatch(Box<Node>),
    Not(Box<Cond>),
}

/// Compiles the `selector` member of a query.
pub(crate) fn compile(selector: &Value) -> Result<Node, QueryError> {
    let Value::Object(obj) = selector else {
        return Err(QueryError::NotASelector {
            path: "selector".to_string(),
        });
    };
    compile_object(obj, &FieldPath::default(), "selector", 1)
}

fn too_deep(at: &str, depth: usize) -> Result<(), QueryError> {
    if depth > MAX_SELECTOR_DEPTH {
        return Err(QueryError::TooDeep {
            path: at.to_string(),
            max: MAX_SELECTOR_DEPTH,
        });
    }
    Ok(())
}

fn leaf(prefix: &FieldPath, cond: Cond) -> Node {
    Node::Field {
        path: prefix.clone(),
        is_id: prefix.is_single("_id"),
        cond,
    }
}

fn bad(op: &'static str, expected: &'static str, at: &str) -> QueryError {
    QueryError::BadOperand {
        op,
        expected,
        path: at.to_string(),
    }
}

/// Compiles an object of conditions on the value at `prefix`; its members
/// are ANDed.
fn compile_object(
    obj: &Map<String, Value>,
    prefix: &FieldPath,
    at: &str,
    depth: usize,
) -> Result<Node, QueryError> {
    too_deep(at, depth)?;
    let mut parts = Vec::with_capacity(obj.len());
    for (key, arg) in obj {
        if key.starts_with('$') {
            parts.push(compile_operator(key, arg, prefix, at, depth)?);
        } else {
            let Some(sub) = FieldPath::parse(key) else {
                return Err(QueryError::EmptyFieldName {
                    path: format!("{at}.{key}"),
                });
            };
            let here = format!("{at}.{key}");
            parts.push(compile_value(arg, &prefix.join(&sub), &here, depth + 1)?);
        }
    }
    Ok(if parts.len() == 1 {
        parts.swap_remove(0)
    } else {
        Node::And(parts)
    })
}

/// Compiles what a field name maps to: an object of conditions and
/// sub-fields, or a literal meaning equality.
fn compile_value(
    arg: &Value,
    prefix: &FieldPath,
    at: &str,
    depth: usize,
) -> Result<Node, QueryError> {
    match arg {
        Value::Object(obj) if !obj.is_empty() => compile_object(obj, prefix, at, depth),
        literal => Ok(leaf(prefix, Cond::Cmp(CmpOp::Eq, literal.clone()))),
    }
}

/// Compiles each element of a `$and`/`$or`/`$nor` array.
fn compile_list(
    op: &'static str,
    arg: &Value,
    prefix: &FieldPath,
    at: &str,
    depth: usize,
) -> Result<Vec<Node>, QueryError> {
    let Value::Array(items) = arg else {
        return Err(bad(op, "an array of selectors", at));
    };
    too_deep(at, depth + 1)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let here = format!("{at}.{op}[{i}]");
            match item {
                Value::Object(obj) => compile_object(obj, prefix, &here, depth + 2),
                _ => Err(QueryError::NotASelector { path: here }),
            }
        })
        .collect()
}

fn sub_selector(
    op: &'static str,
    arg: &Value,
    at: &str,
    depth: usize,
) -> Result<Box<Node>, QueryError> {
    let Value::Object(obj) = arg else {
        return Err(bad(op, "a selector object", at));
    };
    let here = format!("{at}.{op}");
    Ok(Box::new(compile_object(
        obj,
        &FieldPath::default(),
        &here,
        depth + 1,
    )?))
}

fn value_list(op: &'static str, arg: &Value, at: &str) -> Result<Vec<Value>, QueryError> {
    match arg {
        Value::Array(items) => Ok(items.clone()),
        _ => Err(bad(op, "an array", at)),
    }
}

fn compile_operator(
    op: &str,
    arg: &Value,
    prefix: &FieldPath,
    at: &str,
    depth: usize,
) -> Result<Node, QueryError> {
    let cmp = |o| Ok(leaf(prefix, Cond::Cmp(o, arg.clone())));
    match op {
        "$and" => Ok(Node::And(compile_list("$and", arg, prefix, at, depth)?)),
        // CouchDB treats an empty `$or` as matching everything.
        "$or" => {
            let list = compile_list("$or", arg, prefix, at, depth)?;
            Ok(if list.is_empty() {
                Node::And(list)
            } else {
                Node::Or(list)
            })
        }
        "$nor" => Ok(Node::And(
            compile_list("$nor", arg, prefix, at, depth)?
                .into_iter()
                .map(negate)
                .collect(),
        )),
        "$not" => match arg {
            Value::Object(obj) => Ok(negate(compile_object(
                obj,
                prefix,
                &format!("{at}.$not"),
                depth + 1,
            )?)),
            _ => Err(bad("$not", "a selector object", at)),
        },
        "$eq" => cmp(CmpOp::Eq),
        "$ne" => cmp(CmpOp::Ne),
        "$gt" => cmp(CmpOp::Gt),
        "$gte" => cmp(CmpOp::Gte),
        "$lt" => cmp(CmpOp::Lt),
        "$lte" => cmp(CmpOp::Lte),
        "$in" => Ok(leaf(prefix, Cond::In(value_list("$in", arg, at)?))),
        "$nin" => Ok(leaf(prefix, Cond::Nin(value_list("$nin", arg, at)?))),
        "$all" => Ok(leaf(prefix, Cond::All(value_list("$all", arg, at)?))),
        "$exists" => match arg {
            Value::Bool(b) => Ok(leaf(prefix, Cond::Exists(*b))),
            _ => Err(bad("$exists", "true or false", at)),
        },
        "$type" => match arg.as_str().and_then(JsonType::parse) {
            Some(t) => Ok(leaf(prefix, Cond::Type(t))),
            None => Err(bad(
                "$type",
                "one of \"null\", \"boolean\", \"number\", \"string\", \"array\", \"object\"",
                at,
            )),
        },
        "$size" => match arg.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(leaf(prefix, Cond::Size(n))),
            None => Err(bad("$size", "a non-negative integer", at)),
        },
        "$mod" => match arg.as_array().map(Vec::as_slice) {
            Some([d, r]) => match (integer(d), integer(r)) {
                (Some(d), Some(r)) if d != 0 => Ok(leaf(prefix, Cond::Mod(d, r))),
                _ => Err(bad(
                    "$mod",
                    "[divisor, remainder] integers with a non-zero divisor",
                    at,
                )),
            },
            _ => Err(bad(
                "$mod",
                "[divisor, remainder] integers with a non-zero divisor",
                at,
            )),
        },
        "$regex" => {
            let Value::String(pattern) = arg else {
                return Err(bad("$regex", "a string", at));
            };
            Ok(leaf(prefix, Cond::Regex(compile_regex(pattern, at)?)))
        }
        "$elemMatch" => Ok(leaf(
            prefix,
            Cond::ElemMatch(sub_selector("$elemMatch", arg, at, depth)?),
        )),
        "$allMatch" => Ok(leaf(
            prefix,
            Cond::AllMatch(sub_selector("$allMatch", arg, at, depth)?),
        )),
        "$keyMapMatch" => Ok(leaf(
            prefix,
            Cond::KeyMapMatch(sub_selector("$keyMapMatch", arg, at, depth)?),
        )),
        "$text" | "$where" | "$geoWithin" | "$geoIntersects" | "$near" | "$nearSphere"
        | "$beginsWith" => Err(QueryError::UnsupportedOperator {
            op: op.to_string(),
            path: at.to_string(),
        }),
        _ => Err(QueryError::UnknownOperator {
            op: op.to_string(),
            path: at.to_string(),
        }),
    }
}

fn compile_regex(pattern: &str, at: &str) -> Result<Regex, QueryError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(QueryError::InvalidRegex {
            path: at.to_string(),
            reason: format!(
                "pattern is {} bytes, the limit is {MAX_REGEX_LEN}",
                pattern.len()
            ),
        });
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(MAX_SELECTOR_DEPTH as u32)
        .build()
        .map_err(|e| QueryError::InvalidRegex {
            path: at.to_string(),
            reason: e.to_string(),
        })
}

/// The selector matching exactly what `node` does not, except that
/// conditions on missing fields stay false (CouchDB's normalisation).
fn negate(node: Node) -> Node {
    match node {
        Node::And(list) => Node::Or(list.into_iter().map(negate).collect()),
        Node::Or(list) => Node::And(list.into_iter().map(negate).collect()),
        Node::Field { path, is_id, cond } => Node::Field {
            path,
            is_id,
            cond: negate_cond(cond),
        },
    }
}

fn negate_cond(cond: Cond) -> Cond {
    match cond {
        Cond::Cmp(op, v) => {
            let flipped = match op {
                CmpOp::Eq => CmpOp::Ne,
                CmpOp::Ne => CmpOp::Eq,
                CmpOp::Gt => CmpOp::Lte,
                CmpOp::Gte => CmpOp::Lt,
                CmpOp::Lt => CmpOp::Gte,
                CmpOp::Lte => CmpOp::Gt,
            };
            Cond::Cmp(flipped, v)
        }
        Cond::In(v) => Cond::Nin(v),
        Cond::Nin(v) => Cond::In(v),
        Cond::Exists(b) => Cond::Exists(!b),
        Cond::Not(inner) => *inner,
        other => Cond::Not(Box::new(other)),
    }
}

impl Node {
    /// Whether `root` matches. `id` is the record's key as a JSON string,
    /// which `_id` resolves to when given.
    pub(crate) fn matches(&self, root: &Value, id: Option<&Value>) -> bool {
        match self {
            Node::And(list) => list.iter().all(|n| n.matches(root, id)),
            Node::Or(list) => list.iter().any(|n| n.matches(root, id)),
            Node::Field { path, is_id, cond } => {
                let found = match id {
                    Some(id) if *is_id => Some(id),
                    _ => path.resolve(root),
                };
                match found {
                    Some(v) => cond.matches(v),
                    None => matches!(cond, Cond::Exists(false)),
                }
            }
        }
    }

    /// Whether the selector mentions `_id` anywhere outside sub-selectors.
    pub(crate) fn uses_id(&self) -> bool {
        match self {
            Node::And(list) | Node::Or(list) => list.iter().any(Node::uses_id),
            Node::Field { is_id, .. } => *is_id,
        }
    }
}

impl Cond {
    fn matches(&self, v: &Value) -> bool {
        match self {
            Cond::Cmp(op, arg) => {
                let o = collate(v, arg);
                match op {
                    CmpOp::Eq => o == Ordering::Equal,
                    CmpOp::Ne => o != Ordering::Equal,
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Gte => o != Ordering::Less,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Lte => o != Ordering::Greater,
                }
            }
            Cond::In(args) => in_list(v, args),
            Cond::Nin(args) => !in_list(v, args),
            Cond::Exists(b) => *b,
            Cond::Type(t) => JsonType::of(v) == *t,
            Cond::Size(n) => v.as_array().is_some_and(|a| a.len() == *n),
            Cond::Mod(d, r) => integer(v).is_some_and(|x| x % d == *r),
            Cond::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Cond::All(args) => match v {
                Value::Array(items) if !args.is_empty() => {
                    args.iter().all(|a| items.iter().any(|i| equal(i, a)))
                        || matches!(args.as_slice(), [only @ Value::Array(_)] if equal(only, v))
                }
                _ => false,
            },
            Cond::ElemMatch(node) => v
                .as_array()
                .is_some_and(|items| items.iter().any(|i| node.matches(i, None))),
            Cond::AllMatch(node) => v.as_array().is_some_and(|items| {
                !items.is_empty() && items.iter().all(|i| node.matches(i, None))
            }),
            Cond::KeyMapMatch(node) => v.as_object().is_some_and(|obj| {
                obj.keys()
                    .any(|k| node.matches(&Value::String(k.clone()), None))
            }),
            Cond::Not(inner) => !inner.matches(v),
        }
    }
}

/// `$in`: the value, or for an array any of its elements, equals one of
/// `args`.
fn in_list(v: &Value, args: &[Value]) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|i| args.iter().any(|a| equal(i, a))),
        _ => args.iter().any(|a| equal(v, a)),
    }
}
