//! The SDK's error type.
//!
//! Every failed gateway call carries the gRPC status code and message the
//! peer sent and the per-endorser [`ErrorDetail`]s from the
//! `grpc-status-details-bin` trailer; calls tied to a transaction also carry
//! its id. A transaction that was ordered but not committed as VALID is a
//! [`CommitError`] naming the validation code.

use std::fmt;
use std::path::PathBuf;

use prost::Message;
use twill_protos::gateway;
use twill_protos::google::rpc;
use twill_protos::peer::TxValidationCode;

/// Result of SDK calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One endorsing or ordering node's part of a failure, as the gateway
/// reports it (`gateway.ErrorDetail`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorDetail {
    /// The node's address, e.g. `peer0.org2.example.com:9051`.
    pub address: String,
    /// The node's MSP id, e.g. `Org2MSP`.
    pub msp_id: String,
    /// What went wrong there.
    pub message: String,
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.address, self.msp_id, self.message)
    }
}

impl From<gateway::ErrorDetail> for ErrorDetail {
    fn from(d: gateway::ErrorDetail) -> Self {
        ErrorDetail {
            address: d.address,
            msp_id: d.msp_id,
            message: d.message,
        }
    }
}

/// A non-OK gRPC status from the gateway or a Deliver service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// The gRPC status code.
    pub code: tonic::Code,
    /// The status message.
    pub message: String,
    /// Per-node details, decoded from the `grpc-status-details-bin`
    /// trailer (empty when the server sent none).
    pub details: Vec<ErrorDetail>,
}

impl GatewayError {
    /// Reads code, message and details from a tonic status.
    ///
    /// The details trailer is a `google.rpc.Status` whose `details` are
    /// `Any`s; each `Any.value` is decoded as a `gateway.ErrorDetail`
    /// whatever its type URL, as Fabric's own clients do. Entries that do
    /// not decode are skipped.
    pub fn from_status(status: &tonic::Status) -> Self {
        GatewayError {
            code: status.code(),
            message: status.message().to_owned(),
            details: decode_details(status.details()),
        }
    }
}

/// The `gateway.ErrorDetail`s packed in a `grpc-status-details-bin` value.
pub fn decode_details(bytes: &[u8]) -> Vec<ErrorDetail> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let Ok(status) = rpc::Status::decode(bytes) else {
        return Vec::new();
    };
    status
        .details
        .iter()
        .filter_map(|any| gateway::ErrorDetail::decode(any.value.as_slice()).ok())
        .map(ErrorDetail::from)
        .collect()
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)?;
        for d in &self.details {
            write!(f, "; {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GatewayError {}

/// A transaction that reached a block but was not committed as VALID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "transaction {transaction_id} failed to commit with status code {code} ({}) in block {block_number}",
    validation_code_name(*.code)
)]
pub struct CommitError {
    /// The transaction id.
    pub transaction_id: String,
    /// The raw `protos.TxValidationCode`.
    pub code: i32,
    /// The block that holds the transaction.
    pub block_number: u64,
}

impl CommitError {
    /// The validation code, if it is one Fabric defines.
    pub fn validation_code(&self) -> Option<TxValidationCode> {
        TxValidationCode::try_from(self.code).ok()
    }

    /// The code's name, e.g. `MVCC_READ_CONFLICT`.
    pub fn code_name(&self) -> String {
        validation_code_name(self.code)
    }
}

/// The name of a `protos.TxValidationCode` value (`MVCC_READ_CONFLICT`), or
/// `code N` for an unknown one.
pub fn validation_code_name(code: i32) -> String {
    TxValidationCode::try_from(code)
        .map_or_else(|_| format!("code {code}"), |c| c.as_str_name().to_owned())
}

/// Everything that can go wrong in the SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `Evaluate` failed.
    #[error("evaluate of transaction {transaction_id} failed: {source}")]
    Evaluate {
        /// The transaction id of the proposal.
        transaction_id: String,
        /// What the gateway answered.
        #[source]
        source: GatewayError,
    },
    /// `Endorse` failed.
    #[error("endorsement of transaction {transaction_id} failed: {source}")]
    Endorse {
        /// The transaction id of the proposal.
        transaction_id: String,
        /// What the gateway answered.
        #[source]
        source: GatewayError,
    },
    /// `Submit` failed: the transaction was not accepted for ordering.
    #[error("submit of transaction {transaction_id} failed: {source}")]
    Submit {
        /// The transaction id.
        transaction_id: String,
        /// What the gateway answered.
        #[source]
        source: GatewayError,
    },
    /// `CommitStatus` failed: the status could not be obtained (this says
    /// nothing about whether the transaction commits).
    #[error("commit status of transaction {transaction_id} unavailable: {source}")]
    CommitStatus {
        /// The transaction id.
        transaction_id: String,
        /// What the gateway answered.
        #[source]
        source: GatewayError,
    },
    /// The transaction committed with a validation code other than VALID.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The chaincode events stream failed.
    #[error("chaincode events failed: {source}")]
    ChaincodeEvents {
        /// What the gateway answered.
        #[source]
        source: GatewayError,
    },
    /// The block events stream failed at the gRPC level.
    #[error("block events failed: {source}")]
    BlockEvents {
        /// What the peer answered.
        #[source]
        source: GatewayError,
    },
    /// The Deliver service ended the block events stream with a status
    /// (`common.Status`, e.g. 403 FORBIDDEN, 404 NOT_FOUND).
    #[error("block events ended by the peer with status {status} ({name})", name = deliver_status_name(*.status))]
    DeliverStatus {
        /// The `common.Status` value.
        status: i32,
    },
    /// A call needs a signature but the gateway has no signer; sign the
    /// digest offline and use the `Gateway::new_signed_*` functions.
    #[error("{what} is not signed and the gateway has no signer")]
    Unsigned {
        /// What needs a signature.
        what: &'static str,
    },
    /// The signer failed.
    #[error("signing failed: {reason}")]
    Sign {
        /// Why.
        reason: String,
    },
    /// An identity or key could not be loaded.
    #[error("identity: {reason}")]
    Identity {
        /// Why.
        reason: String,
    },
    /// A connection profile is malformed or lacks what was asked for.
    #[error("connection profile{}: {reason}", source_suffix(.path))]
    Profile {
        /// The profile file, if read from one.
        path: Option<PathBuf>,
        /// Why.
        reason: String,
    },
    /// The gateway builder lacks a required setting.
    #[error("gateway builder: {missing} is required")]
    Builder {
        /// The missing setting.
        missing: &'static str,
    },
    /// Dialing the peer failed, or its address or TLS material is invalid.
    #[error("connection: {0}")]
    Connect(#[from] twill_comm::CommError),
    /// A message from the server, or bytes passed in for offline signing,
    /// did not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A result could not be decoded as JSON into the requested type.
    #[error("result of {function} is not the expected JSON: {source}")]
    Json {
        /// The chaincode function.
        function: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

fn source_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn deliver_status_name(status: i32) -> &'static str {
    twill_protos::common::Status::try_from(status).map_or("unknown", |s| s.as_str_name())
}

impl Error {
    /// The gRPC failure behind this error, if it is one.
    pub fn gateway_error(&self) -> Option<&GatewayError> {
        match self {
            Error::Evaluate { source, .. }
            | Error::Endorse { source, .. }
            | Error::Submit { source, .. }
            | Error::CommitStatus { source, .. }
            | Error::ChaincodeEvents { source }
            | Error::BlockEvents { source } => Some(source),
            _ => None,
        }
    }

    /// The gRPC status code, if this is a gRPC failure.
    pub fn code(&self) -> Option<tonic::Code> {
        self.gateway_error().map(|e| e.code)
    }

    /// The per-node details of a gRPC failure (empty otherwise).
    pub fn details(&self) -> &[ErrorDetail] {
        self.gateway_error().map_or(&[], |e| e.details.as_slice())
    }

    /// The transaction the error is about, if any.
    pub fn transaction_id(&self) -> Option<&str> {
        match self {
            Error::Evaluate { transaction_id, .. }
            | Error::Endorse { transaction_id, .. }
            | Error::Submit { transaction_id, .. }
            | Error::CommitStatus { transaction_id, .. } => Some(transaction_id),
            Error::Commit(e) => Some(&e.transaction_id),
            _ => None,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl fmt::Display) -> Self {
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn packed(details: &[gateway::ErrorDetail]) -> Vec<u8> {
        rpc::Status {
            code: 10,
            message: "failed to endorse".into(),
            details: details
                .iter()
                .map(|d| prost_types::Any {
                    type_url: "type.googleapis.com/gateway.ErrorDetail".into(),
                    value: d.encode_to_vec(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    use twill_protos::prost_types;

    #[test]
    fn details_decode_from_the_trailer() {
        let d = gateway::ErrorDetail {
            address: "peer0.org2.example.com:9051".into(),
            msp_id: "Org2MSP".into(),
            message: "chaincode response 500, nope".into(),
        };
        let status = tonic::Status::with_details(
            tonic::Code::Aborted,
            "failed to endorse transaction",
            packed(std::slice::from_ref(&d)).into(),
        );
        let e = GatewayError::from_status(&status);
        assert_eq!(e.code, tonic::Code::Aborted);
        assert_eq!(e.details, vec![ErrorDetail::from(d)]);
        let text = e.to_string();
        assert!(text.contains("Org2MSP") && text.contains("nope"), "{text}");
    }

    #[test]
    fn missing_or_garbage_details_are_empty() {
        assert!(decode_details(&[]).is_empty());
        assert!(decode_details(&[0xff, 0xff, 0xff]).is_empty());
        let s = tonic::Status::unavailable("down");
        assert!(GatewayError::from_status(&s).details.is_empty());
    }

    #[test]
    fn commit_error_names_the_code() {
        let e = CommitError {
            transaction_id: "abc".into(),
            code: TxValidationCode::MvccReadConflict as i32,
            block_number: 7,
        };
        assert_eq!(e.code_name(), "MVCC_READ_CONFLICT");
        let text = Error::from(e).to_string();
        assert!(text.contains("MVCC_READ_CONFLICT") && text.contains("abc"));
        assert_eq!(validation_code_name(1000), "code 1000");
    }
}
