//! The shim's error type.

/// Status a chaincode error response carries unless the chaincode picks
/// another one (Fabric's `shim.ERROR`).
pub const ERROR_STATUS: i32 = 500;

/// Lowest status the peer treats as an error response (Fabric's
/// `shim.ERRORTHRESHOLD`).
pub const ERROR_THRESHOLD: i32 = 400;

/// Everything that can go wrong in the shim, and the error a chaincode
/// function returns.
///
/// A handler that returns an `Err` makes the transaction answer with a
/// COMPLETED message whose `Response` carries [`Error::status`] and the
/// error's text as its message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chaincode rejected the transaction (the function's own error).
    #[error("{message}")]
    Chaincode {
        /// Response status, at least [`ERROR_THRESHOLD`].
        status: i32,
        /// Message returned to the client.
        message: String,
    },
    /// A setting (environment variable or argument) is missing or invalid.
    #[error("{variable}: {reason}")]
    Config {
        /// The variable or argument at fault.
        variable: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key or composite key part is not acceptable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An event was set without a name.
    #[error("event name must not be empty")]
    EmptyEventName,
    /// The peer answered a request with ERROR.
    #[error("peer error: {0}")]
    Peer(String),
    /// The peer refused the registration or broke the handshake.
    #[error("registration failed: {0}")]
    Registration(String),
    /// The peer sent something the protocol does not allow here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A message from the peer could not be decoded.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// Which message failed.
        what: &'static str,
        /// The decoder's complaint.
        source: prost::DecodeError,
    },
    /// The stream to the peer ended; the chaincode process should be
    /// restarted by its supervisor.
    #[error("the connection to the peer is closed")]
    Disconnected,
    /// The gRPC stream failed.
    #[error("gRPC stream failed: {0}")]
    Status(#[from] tonic::Status),
    /// Connecting, listening or configuring TLS failed.
    #[error("{context}: {source}")]
    Transport {
        /// What was being done.
        context: String,
        /// tonic's error.
        source: tonic::transport::Error,
    },
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// A chaincode error with status 500 and `message`, for handlers to
    /// reject a transaction.
    pub fn chaincode(message: impl Into<String>) -> Self {
        Self::Chaincode {
            status: ERROR_STATUS,
            message: message.into(),
        }
    }

    /// A chaincode error with a chosen status; statuses below
    /// [`ERROR_THRESHOLD`] are raised to 500, since the peer would take them
    /// for success.
    pub fn with_status(status: i32, message: impl Into<String>) -> Self {
        let status = if status < ERROR_THRESHOLD {
            ERROR_STATUS
        } else {
            status
        };
        Self::Chaincode {
            status,
            message: message.into(),
        }
    }

    /// The response status this error produces: its own for
    /// [`Error::Chaincode`], 500 for everything else.
    pub fn status(&self) -> i32 {
        match self {
            Self::Chaincode { status, .. } => *status,
            _ => ERROR_STATUS,
        }
    }

    pub(crate) fn config(variable: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            variable: variable.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn decode(what: &'static str) -> impl FnOnce(prost::DecodeError) -> Self {
        move |source| Self::Decode { what, source }
    }
}

/// Result with the shim's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
