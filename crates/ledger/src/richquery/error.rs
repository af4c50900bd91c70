//! The rich query error type.

use thiserror::Error;

/// Everything that can go wrong parsing or running a rich query.
///
/// Every variant that concerns the query text names the offending part:
/// selector positions are written as a path starting at `selector`
/// (`selector.owner`, `selector.$or[1].size`), so a chaincode developer can
/// find the mistake. [`QueryError::code`] gives each variant a stable string
/// to match on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query text is not valid JSON.
    #[error("invalid query JSON: {reason}")]
    InvalidJson {
        /// What the JSON parser reported.
        reason: String,
    },

    /// The query is valid JSON but not a JSON object.
    #[error("query must be a JSON object such as {{\"selector\": {{...}}}}")]
    NotAnObject,

    /// The query has no `selector` member.
    #[error("query has no \"selector\"")]
    MissingSelector,

    /// The query has a top-level member this engine does not know.
    #[error("unknown query member \"{key}\"")]
    UnknownMember {
        /// The member's name.
        key: String,
    },

    /// A top-level query option (`limit`, `skip`, `bookmark`, `fields`,
    /// `use_index`) has the wrong type.
    #[error("query option \"{option}\" expects {expected}")]
    BadOption {
        /// The option's name.
        option: &'static str,
        /// What it should have been.
        expected: &'static str,
    },

    /// A selector, or a part of one that must be an object, is something
    /// else.
    #[error("expected a selector object at {path}")]
    NotASelector {
        /// Where in the selector.
        path: String,
    },

    /// A `$`-key that is no operator.
    #[error("unknown operator \"{op}\" at {path}")]
    UnknownOperator {
        /// The operator as written.
        op: String,
        /// The field (or combination) it was applied to.
        path: String,
    },

    /// A CouchDB operator this engine does not implement (`$text`,
    /// `$where`, the geo operators).
    #[error("operator \"{op}\" is not supported at {path}")]
    UnsupportedOperator {
        /// The operator as written.
        op: String,
        /// Where it was used.
        path: String,
    },

    /// An operator was given an operand of the wrong type or range.
    #[error("{op} expects {expected} at {path}")]
    BadOperand {
        /// The operator.
        op: &'static str,
        /// What it should have been given.
        expected: &'static str,
        /// The field it was applied to.
        path: String,
    },

    /// A field name in the selector is empty (`""`, `"a..b"`, `"a."`).
    #[error("empty field name at {path}")]
    EmptyFieldName {
        /// Where in the selector.
        path: String,
    },

    /// The selector nests objects and arrays deeper than
    /// [`MAX_SELECTOR_DEPTH`](super::MAX_SELECTOR_DEPTH).
    #[error("selector nested deeper than {max} levels at {path}")]
    TooDeep {
        /// Where the limit was crossed.
        path: String,
        /// The limit.
        max: usize,
    },

    /// A `$regex` pattern does not compile, or exceeds the size limits.
    #[error("invalid regex at {path}: {reason}")]
    InvalidRegex {
        /// The field the regex was applied to.
        path: String,
        /// Why it was refused.
        reason: String,
    },

    /// `sort` is not an array.
    #[error("\"sort\" must be an array of field names or {{\"field\": \"asc\"|\"desc\"}} objects")]
    SortNotArray,

    /// A `sort` entry is neither a field name nor a one-member object.
    #[error("sort entry {index} must be a field name or a {{\"field\": \"asc\"|\"desc\"}} object")]
    BadSortEntry {
        /// Zero-based position in the `sort` array.
        index: usize,
    },

    /// A `sort` entry's direction is not `"asc"` or `"desc"`.
    #[error("sort field \"{field}\": direction must be \"asc\" or \"desc\"")]
    BadSortDirection {
        /// The sort field.
        field: String,
    },

    /// A `sort` or `fields` entry names an empty field.
    #[error("empty field name in \"{option}\" entry {index}")]
    EmptyOptionField {
        /// `sort` or `fields`.
        option: &'static str,
        /// Zero-based position in the array.
        index: usize,
    },

    /// The bookmark does not decode, or was made for a differently sorted
    /// query.
    #[error("invalid bookmark: {reason}")]
    BadBookmark {
        /// What is wrong with it.
        reason: String,
    },

    /// A page size of zero was asked for.
    #[error("page size must be at least 1")]
    ZeroPageSize,

    /// The document source failed while the query was running.
    #[error("reading documents failed: {0}")]
    Source(String),

    /// A projected document could not be serialized.
    #[error("encoding a result failed: {0}")]
    Encode(String),
}

impl QueryError {
    /// A stable code for this error, for clients and operators to match on.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::InvalidJson { .. } => "QUERY_INVALID_JSON",
            QueryError::NotAnObject => "QUERY_NOT_AN_OBJECT",
            QueryError::MissingSelector => "QUERY_MISSING_SELECTOR",
            QueryError::UnknownMember { .. } => "QUERY_UNKNOWN_MEMBER",
            QueryError::BadOption { .. } => "QUERY_BAD_OPTION",
            QueryError::NotASelector { .. } => "QUERY_NOT_A_SELECTOR",
            QueryError::UnknownOperator { .. } => "QUERY_UNKNOWN_OPERATOR",
            QueryError::UnsupportedOperator { .. } => "QUERY_UNSUPPORTED_OPERATOR",
            QueryError::BadOperand { .. } => "QUERY_BAD_OPERAND",
            QueryError::EmptyFieldName { .. } => "QUERY_EMPTY_FIELD_NAME",
            QueryError::TooDeep { .. } => "QUERY_TOO_DEEP",
            QueryError::InvalidRegex { .. } => "QUERY_INVALID_REGEX",
            QueryError::SortNotArray => "QUERY_BAD_SORT",
            QueryError::BadSortEntry { .. } => "QUERY_BAD_SORT",
            QueryError::BadSortDirection { .. } => "QUERY_BAD_SORT",
            QueryError::EmptyOptionField { .. } => "QUERY_EMPTY_FIELD_NAME",
            QueryError::BadBookmark { .. } => "QUERY_BAD_BOOKMARK",
            QueryError::ZeroPageSize => "QUERY_ZERO_PAGE_SIZE",
            QueryError::Source(_) => "QUERY_SOURCE",
            QueryError::Encode(_) => "QUERY_ENCODE",
        }
    }
}
