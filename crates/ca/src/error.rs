//! The CA's errors, with the Fabric CA code and HTTP status each maps to.

/// Fabric CA's numeric error codes used by this server (the numbers are
/// Fabric CA's, so clients can match on them).
pub mod codes {
    /// Unknown / internal error.
    pub const UNKNOWN: i64 = 0;
    /// HTTP method not allowed.
    pub const METHOD_NOT_ALLOWED: i64 = 1;
    /// The request body is not valid.
    pub const BAD_REQUEST_BODY: i64 = 5;
    /// Certificate to revoke not found.
    pub const REVOKE_CERT_NOT_FOUND: i64 = 8;
    /// Certificate to revoke belongs to another identity.
    pub const CERT_WRONG_OWNER: i64 = 9;
    /// Identity to revoke not found.
    pub const REVOKE_ID_NOT_FOUND: i64 = 10;
    /// Missing fields in the revocation request.
    pub const MISSING_REVOKE_ARGS: i64 = 15;
    /// The CA name is unknown.
    pub const CA_NOT_FOUND: i64 = 19;
    /// Authentication failed (every cause reports this code).
    pub const AUTHENTICATION_FAILURE: i64 = 20;
    /// Bad certificate signing request.
    pub const BAD_CSR: i64 = 31;
    /// Invalid time in a gencrl request.
    pub const INVALID_TIME: i64 = 36;
    /// Failed to generate a CRL.
    pub const GEN_CRL: i64 = 41;
    /// Failed to read or change an identity.
    pub const GETTING_USER: i64 = 49;
    /// Failed to change an affiliation.
    pub const AFFILIATION: i64 = 60;
    /// Certificate already revoked.
    pub const CERT_ALREADY_REVOKED: i64 = 66;
    /// Authorization failed (every cause reports this code).
    pub const AUTHORIZATION_FAILURE: i64 = 71;
}

/// Result alias of this crate.
pub type CaResult<T> = Result<T, CaError>;

/// Everything that can go wrong in the CA.
///
/// Authentication and authorization failures keep their precise reason for
/// the log, but clients only see Fabric CA's generic
/// "Authentication failure" (code 20) / "Authorization failure" (code 71).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Credentials or token refused; `reason` is logged only.
    #[error("authentication failure: {reason}")]
    Authentication {
        /// Why (never sent to the client).
        reason: String,
    },
    /// The caller is not allowed to do this; `reason` is logged only.
    #[error("authorization failure: {reason}")]
    Authorization {
        /// Why (never sent to the client).
        reason: String,
    },
    /// The request body or query is not valid.
    #[error("{message}")]
    BadRequest {
        /// Fabric CA code.
        code: i64,
        /// What is wrong.
        message: String,
    },
    /// The certificate signing request is not acceptable.
    #[error("{message}")]
    BadCsr {
        /// HTTP status (400 malformed, 403 wrong subject).
        status: u16,
        /// What is wrong.
        message: String,
    },
    /// Something named in the request does not exist.
    #[error("{message}")]
    NotFound {
        /// Fabric CA code.
        code: i64,
        /// What is missing.
        message: String,
    },
    /// The request conflicts with the registry (as Fabric CA, HTTP 500 code 0
    /// for duplicates unless a specific code exists).
    #[error("{message}")]
    Conflict {
        /// Fabric CA code.
        code: i64,
        /// What conflicts.
        message: String,
    },
    /// The HTTP method is not served on this path.
    #[error("Method {method} is not allowed")]
    MethodNotAllowed {
        /// The method.
        method: String,
    },
    /// The sled database failed.
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    /// A file under the CA home could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Certificate or CRL generation failed.
    #[error("certificate error: {0}")]
    Cert(String),
    /// Stored data is corrupt.
    #[error("corrupt registry record {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration is not valid.
    #[error("configuration: {0}")]
    Config(String),
}

impl CaError {
    /// An authentication failure for `reason`.
    pub fn authn(reason: impl Into<String>) -> Self {
        Self::Authentication {
            reason: reason.into(),
        }
    }

    /// An authorization failure for `reason`.
    pub fn authz(reason: impl Into<String>) -> Self {
        Self::Authorization {
            reason: reason.into(),
        }
    }

    /// A bad request with `code`.
    pub fn bad(code: i64, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// HTTP status code of the response.
    pub fn status(&self) -> u16 {
        match self {
            Self::Authentication { .. } => 401,
            Self::Authorization { .. } => 403,
            Self::BadRequest { .. } => 400,
            Self::BadCsr { status, .. } => *status,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict { .. }
            | Self::Db(_)
            | Self::Io { .. }
            | Self::Cert(_)
            | Self::Corrupt { .. }
            | Self::Config(_) => 500,
        }
    }

    /// Fabric CA error code sent to the client.
    pub fn code(&self) -> i64 {
        match self {
            Self::Authentication { .. } => codes::AUTHENTICATION_FAILURE,
            Self::Authorization { .. } => codes::AUTHORIZATION_FAILURE,
            Self::BadRequest { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. } => *code,
            Self::BadCsr { .. } => codes::BAD_CSR,
            Self::MethodNotAllowed { .. } => codes::METHOD_NOT_ALLOWED,
            Self::Db(_)
            | Self::Io { .. }
            | Self::Cert(_)
            | Self::Corrupt { .. }
            | Self::Config(_) => codes::UNKNOWN,
        }
    }

    /// The message sent to the client (generic for auth failures and
    /// internal errors).
    pub fn client_message(&self) -> String {
        match self {
            Self::Authentication { .. } => "Authentication failure".into(),
            Self::Authorization { .. } => "Authorization failure".into(),
            Self::Db(_) | Self::Io { .. } | Self::Corrupt { .. } | Self::Config(_) => {
                "Internal server error".into()
            }
            other => other.to_string(),
        }
    }
}
