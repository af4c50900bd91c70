//! JSON rich queries over the state database (Mango-style selectors).
//!
//! Fabric chaincode calls `GetQueryResult` / `GetQueryResultWithPagination`
//! with a CouchDB Mango query. Twill has no CouchDB: this module parses such
//! a query once ([`Query::parse`]: the selector is compiled into a matcher
//! tree and every `$regex` is compiled), then [`execute`] scans a
//! namespace's documents in key order, keeps the matching JSON objects,
//! sorts, skips, pages and projects them.
//!
//! The user-facing reference (every operator, ordering rules, paging,
//! differences from CouchDB) is `docs/rich-queries.md`.
//!
//! # Limits
//!
//! - Selectors nest at most [`MAX_SELECTOR_DEPTH`] levels (objects and
//!   arrays, counted from the selector itself).
//! - A `$regex` pattern is at most [`MAX_REGEX_LEN`] bytes and compiles to
//!   at most [`REGEX_SIZE_LIMIT`] bytes; matching is linear-time (the
//!   `regex` crate: no backreferences or look-around).
//! - One call returns at most [`MAX_RESULTS`] records, whatever `limit` or
//!   the page size say (Fabric's default `totalQueryLimit`); larger
//!   requests are silently capped, as Fabric does.
//! - A bookmark is at most [`MAX_BOOKMARK_LEN`] bytes.
//!
//! # Example
//!
//! ```
//! use twill_ledger::richquery::{execute, Query};
//!
//! let query = Query::parse(
//!     r#"{"selector": {"owner": "bob", "size": {"$gte": 10}}, "sort": [{"size": "desc"}]}"#,
//! )?;
//! let docs = vec![
//!     ("a1".to_string(), br#"{"owner":"bob","size":10}"#.to_vec()),
//!     ("a2".to_string(), br#"{"owner":"amy","size":50}"#.to_vec()),
//!     ("a3".to_string(), br#"{"owner":"bob","size":30}"#.to_vec()),
//!     ("a4".to_string(), b"not json".to_vec()),
//! ];
//! let page = execute(&query, docs.into_iter().map(Ok::<_, String>), None, "")?;
//! let keys: Vec<&str> = page.records.iter().map(|(k, _)| k.as_str()).collect();
//! assert_eq!(keys, ["a3", "a1"]);
//! # Ok::<(), twill_ledger::richquery::QueryError>(())
//! ```

mod bookmark;
mod collate;
mod error;
mod path;
mod selector;

use std::cmp::Ordering;

use serde_json::{Map, Value};

use bookmark::Position;
use path::FieldPath;
use selector::Node;

pub use error::QueryError;

/// How deeply a selector may nest objects and arrays.
pub const MAX_SELECTOR_DEPTH: usize = 64;

/// Longest `$regex` pattern accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;

/// Most memory one compiled `$regex` (and, separately, its lazy DFA cache)
/// may use, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Most records one [`execute`] call returns.
pub const MAX_RESULTS: usize = 100_000;

/// Longest bookmark accepted, in bytes.
pub const MAX_BOOKMARK_LEN: usize = 16 * 1024;

/// Top-level members CouchDB accepts that change nothing here.
const IGNORED_MEMBERS: &[&str] = &[
    "r",
    "conflicts",
    "update",
    "stable",
    "stale",
    "execution_stats",
    "allow_fallback",
];

/// Which way a sort field orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    /// Smallest first (the default).
    Asc,
    /// Largest first.
    Desc,
}

/// One entry of a query's `sort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortField {
    /// The field name as written (dotted for nested fields).
    pub field: String,
    /// Its direction.
    pub direction: SortDirection,
}

/// A parsed and compiled rich query.
#[derive(Debug, Clone)]
pub struct Query {
    selector: Node,
    uses_id: bool,
    sort: Vec<SortField>,
    sort_paths: SortPaths,
    limit: Option<u64>,
    skip: u64,
    bookmark: Option<String>,
    fields: Vec<String>,
    field_paths: Vec<FieldPath>,
    use_index: Vec<String>,
}

fn option_err(option: &'static str, expected: &'static str) -> QueryError {
    QueryError::BadOption { option, expected }
}

fn non_negative(v: &Value, option: &'static str) -> Result<u64, QueryError> {
    v.as_u64()
        .ok_or_else(|| option_err(option, "a non-negative integer"))
}

/// Compiled sort paths, each with whether it is `_id`.
type SortPaths = Vec<(FieldPath, bool)>;

fn parse_sort(v: &Value) -> Result<(Vec<SortField>, SortPaths), QueryError> {
    let Value::Array(entries) = v else {
        return Err(QueryError::SortNotArray);
    };
    let mut sort = Vec::with_capacity(entries.len());
    let mut paths = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let (field, direction) = match entry {
            Value::String(f) => (f.clone(), SortDirection::Asc),
            Value::Object(obj) if obj.len() == 1 => {
                let Some((f, dir)) = obj.iter().next() else {
                    return Err(QueryError::BadSortEntry { index });
                };
                let direction = match dir.as_str() {
                    Some("asc") => SortDirection::Asc,
                    Some("desc") => SortDirection::Desc,
                    _ => return Err(QueryError::BadSortDirection { field: f.clone() }),
                };
                (f.clone(), direction)
            }
            _ => return Err(QueryError::BadSortEntry { index }),
        };
        let path = FieldPath::parse(&field).ok_or(QueryError::EmptyOptionField {
            option: "sort",
            index,
        })?;
        let is_id = path.is_single("_id");
        paths.push((path, is_id));
        sort.push(SortField { field, direction });
    }
    Ok((sort, paths))
}

fn parse_fields(v: &Value) -> Result<(Vec<String>, Vec<FieldPath>), QueryError> {
    let expected = "an array of field names";
    let Value::Array(entries) = v else {
        return Err(option_err("fields", expected));
    };
    let mut names = Vec::with_capacity(entries.len());
    let mut paths = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Value::String(name) = entry else {
            return Err(option_err("fields", expected));
        };
        paths.push(FieldPath::parse(name).ok_or(QueryError::EmptyOptionField {
            option: "fields",
            index,
        })?);
        names.push(name.clone());
    }
    Ok((names, paths))
}

fn parse_use_index(v: &Value) -> Result<Vec<String>, QueryError> {
    let expected = "a design document name or [design document, index name]";
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if (1..=2).contains(&items.len()) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| option_err("use_index", expected))
            })
            .collect(),
        _ => Err(option_err("use_index", expected)),
    }
}

impl Query {
    /// Parses and compiles a query such as
    /// `{"selector": {"owner": "bob"}, "sort": ["size"], "limit": 10}`.
    ///
    /// Recognised members: `selector` (required), `sort`, `limit`, `skip`,
    /// `bookmark`, `fields`, `use_index`; CouchDB's `r`, `conflicts`,
    /// `update`, `stable`, `stale`, `execution_stats` and `allow_fallback`
    /// are accepted and ignored. Anything else is an error.
    pub fn parse(json: &str) -> Result<Query, QueryError> {
        let value: Value = serde_json::from_str(json).map_err(|e| QueryError::InvalidJson {
            reason: e.to_string(),
        })?;
        let Value::Object(obj) = value else {
            return Err(QueryError::NotAnObject);
        };
        let mut query = Query {
            selector: Node::And(Vec::new()),
            uses_id: false,
            sort: Vec::new(),
            sort_paths: Vec::new(),
            limit: None,
            skip: 0,
            bookmark: None,
            fields: Vec::new(),
            field_paths: Vec::new(),
            use_index: Vec::new(),
        };
        let mut have_selector = false;
        for (key, v) in &obj {
            match key.as_str() {
                "selector" => {
                    query.selector = selector::compile(v)?;
                    have_selector = true;
                }
                "limit" => query.limit = Some(non_negative(v, "limit")?),
                "skip" => query.skip = non_negative(v, "skip")?,
                "sort" => (query.sort, query.sort_paths) = parse_sort(v)?,
                "fields" => (query.fields, query.field_paths) = parse_fields(v)?,
                "bookmark" => match v {
                    Value::String(b) => query.bookmark = Some(b.clone()),
                    _ => return Err(option_err("bookmark", "a string")),
                },
                "use_index" => query.use_index = parse_use_index(v)?,
                k if IGNORED_MEMBERS.contains(&k) => {}
                _ => return Err(QueryError::UnknownMember { key: key.clone() }),
            }
        }
        if !have_selector {
            return Err(QueryError::MissingSelector);
        }
        query.uses_id =
            query.selector.uses_id() || query.sort_paths.iter().any(|(_, is_id)| *is_id);
        Ok(query)
    }

    /// Whether `doc` satisfies the selector. Only JSON objects can match.
    /// `_id` here is looked up in the document itself; [`execute`] resolves
    /// it to the record's key instead.
    pub fn matches(&self, doc: &Value) -> bool {
        doc.is_object() && self.selector.matches(doc, None)
    }

    /// The `sort` entries, in order.
    pub fn sort(&self) -> &[SortField] {
        &self.sort
    }

    /// The `limit`, if given.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// The `skip` (0 if not given).
    pub fn skip(&self) -> u64 {
        self.skip
    }

    /// The `bookmark` written in the query, if any.
    pub fn bookmark(&self) -> Option<&str> {
        self.bookmark.as_deref()
    }

    /// The `fields` to project, empty for whole documents.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The `use_index` hint (design document and optionally index name).
    /// Recorded only: queries always scan.
    pub fn use_index(&self) -> &[String] {
        &self.use_index
    }

    fn sort_values(&self, doc: &Value, id: Option<&Value>) -> Option<Vec<Value>> {
        self.sort_paths
            .iter()
            .map(|(path, is_id)| match id {
                Some(id) if *is_id => Some(id.clone()),
                _ => path.resolve(doc).cloned(),
            })
            .collect()
    }

    /// Orders two records by the sort fields, then by key.
    fn cmp_position(
        &self,
        a_vals: &[Value],
        a_key: &str,
        b_vals: &[Value],
        b_key: &str,
    ) -> Ordering {
        for ((x, y), field) in a_vals.iter().zip(b_vals).zip(&self.sort) {
            let o = collate::collate(x, y);
            let o = match field.direction {
                SortDirection::Asc => o,
                SortDirection::Desc => o.reverse(),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a_key.cmp(b_key)
    }

    fn output(&self, bytes: Vec<u8>, doc: Option<Value>) -> Result<Vec<u8>, QueryError> {
        match doc {
            Some(doc) if !self.field_paths.is_empty() => {
                let mut out = Map::new();
                for path in &self.field_paths {
                    path.project(&doc, &mut out);
                }
                serde_json::to_vec(&Value::Object(out))
                    .map_err(|e| QueryError::Encode(e.to_string()))
            }
            _ => Ok(bytes),
        }
    }
}

/// One page of query results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPage {
    /// `(key, value)` pairs: the document's JSON bytes, projected to the
    /// query's `fields` when it has any (otherwise exactly as stored).
    pub records: Vec<(String, Vec<u8>)>,
    /// Where this page ended: pass it back to get the next page. When the
    /// page is empty this is the bookmark the call was given.
    pub bookmark: String,
}

/// A matching record waiting to be sorted.
struct Candidate {
    sort: Vec<Value>,
    key: String,
    bytes: Vec<u8>,
    doc: Option<Value>,
}

/// Runs `query` over documents given in key order (key, raw value bytes).
/// Values that are not JSON objects never match.
///
/// `page_size`: `None` runs the query without paging (`limit` and `skip`
/// apply, capped at [`MAX_RESULTS`]). `Some(n)` is Fabric's
/// `GetQueryResultWithPagination`: at most `n` records (capped at
/// [`MAX_RESULTS`]; the query's `limit` is ignored, as Fabric does) and a
/// bookmark which, passed back as `bookmark`, resumes after the last record
/// returned. `bookmark` empty means from the start (then the query's own
/// `bookmark` member is used, if any). `skip` applies only when starting
/// from the beginning.
///
/// With a `sort`, documents lacking any sort field are left out (as
/// CouchDB's indexes do), and records with equal sort values are ordered by
/// key. Without one, records come in key order and the scan stops as soon
/// as the page is full.
///
/// An error from `docs` ends the query with [`QueryError::Source`].
pub fn execute<I, E>(
    query: &Query,
    docs: I,
    page_size: Option<u32>,
    bookmark: &str,
) -> Result<QueryPage, QueryError>
where
    I: IntoIterator<Item = Result<(String, Vec<u8>), E>>,
    E: std::fmt::Display,
{
    let bookmark = if bookmark.is_empty() {
        query.bookmark.as_deref().unwrap_or("")
    } else {
        bookmark
    };
    let resume = if bookmark.is_empty() {
        None
    } else {
        Some(Position::decode(bookmark, query.sort.len())?)
    };
    let want = match page_size {
        Some(0) => return Err(QueryError::ZeroPageSize),
        Some(n) => usize::try_from(n).unwrap_or(MAX_RESULTS),
        None => query
            .limit
            .map_or(MAX_RESULTS, |l| usize::try_from(l).unwrap_or(MAX_RESULTS)),
    }
    .min(MAX_RESULTS);
    let skip = match resume {
        Some(_) => 0,
        None => usize::try_from(query.skip).unwrap_or(usize::MAX),
    };
    let mut page = QueryPage {
        records: Vec::new(),
        bookmark: bookmark.to_string(),
    };
    if want == 0 {
        return Ok(page);
    }
    let keep_doc = !query.field_paths.is_empty();
    let sorted = !query.sort.is_empty();
    let need = skip.saturating_add(want);
    let mut skipped = 0usize;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut last: Option<Position> = None;

    for item in docs {
        let (key, bytes) = item.map_err(|e| QueryError::Source(e.to_string()))?;
        if !sorted {
            if let Some(r) = &resume {
                if key.as_str() <= r.key.as_str() {
                    continue;
                }
            }
        }
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if !doc.is_object() {
            continue;
        }
        let id = query.uses_id.then(|| Value::String(key.clone()));
        if !query.selector.matches(&doc, id.as_ref()) {
            continue;
        }
        if !sorted {
            if skipped < skip {
                skipped += 1;
                continue;
            }
            let value = query.output(bytes, keep_doc.then_some(doc))?;
            page.records.push((key, value));
            if page.records.len() >= want {
                break;
            }
            continue;
        }
        let Some(sort) = query.sort_values(&doc, id.as_ref()) else {
            continue;
        };
        if let Some(r) = &resume {
            if query.cmp_position(&sort, &key, &r.sort, &r.key) != Ordering::Greater {
                continue;
            }
        }
        candidates.push(Candidate {
            sort,
            key,
            bytes,
            doc: keep_doc.then_some(doc),
        });
        // Keep memory bounded by the records we may still return.
        if candidates.len() >= need.saturating_mul(2).max(1024) {
            sort_candidates(query, &mut candidates);
            candidates.truncate(need);
        }
    }

    if sorted {
        sort_candidates(query, &mut candidates);
        for c in candidates.into_iter().skip(skip).take(want) {
            let value = query.output(c.bytes, c.doc)?;
            last = Some(Position {
                key: c.key.clone(),
                sort: c.sort,
            });
            page.records.push((c.key, value));
        }
    }
    if !sorted {
        last = page.records.last().map(|(key, _)| Position {
            key: key.clone(),
            sort: Vec::new(),
        });
    }
    if let Some(last) = last {
        page.bookmark = last.encode();
    }
    Ok(page)
}

fn sort_candidates(query: &Query, candidates: &mut [Candidate]) {
    candidates.sort_unstable_by(|a, b| query.cmp_position(&a.sort, &a.key, &b.sort, &b.key));
}
