//! gRPC statuses carrying Fabric's `gateway.ErrorDetail`s.
//!
//! Fabric's gateway clients read the `grpc-status-details-bin` trailer as a
//! `google.rpc.Status` whose `details` are `Any`-wrapped `ErrorDetail`s
//! (address, MSP id, message), one per node that failed.

use prost::Message as _;
use tonic::{Code, Status};
use twill_protos::gateway::ErrorDetail;
use twill_protos::google::rpc;

/// The type URL of an `ErrorDetail` packed in an `Any`.
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/gateway.ErrorDetail";

/// What went wrong at one node.
pub fn detail(address: &str, msp_id: &str, message: impl Into<String>) -> ErrorDetail {
    ErrorDetail {
        address: address.to_owned(),
        msp_id: msp_id.to_owned(),
        message: message.into(),
    }
}

/// A status with `code` and `message` whose details trailer lists
/// `details`. The message ends with a one-line summary of the details so
/// that clients that do not read the trailer still see the cause.
pub fn with_details(code: Code, message: &str, details: Vec<ErrorDetail>) -> Status {
    let mut text = message.to_owned();
    for (i, d) in details.iter().enumerate() {
        text.push_str(if i == 0 { ": " } else { "; " });
        let who = match (d.address.is_empty(), d.msp_id.is_empty()) {
            (false, false) => format!("{} ({})", d.address, d.msp_id),
            (false, true) => d.address.clone(),
            (true, false) => d.msp_id.clone(),
            (true, true) => String::new(),
        };
        if !who.is_empty() {
            text.push_str(&who);
            text.push_str(": ");
        }
        text.push_str(&d.message);
    }
    raw(code, text, details)
}

/// A status with exactly `message` whose details trailer lists `details`
/// (for messages that already say what the details say).
pub fn raw(code: Code, message: String, details: Vec<ErrorDetail>) -> Status {
    let text = message;
    let status = rpc::Status {
        code: code as i32,
        message: text.clone(),
        details: details
            .iter()
            .map(|d| twill_protos::prost_types::Any {
                type_url: ERROR_DETAIL_TYPE_URL.to_owned(),
                value: d.encode_to_vec(),
            })
            .collect(),
    };
    Status::with_details(code, text, status.encode_to_vec().into())
}

/// The `ErrorDetail`s in a status made by [`with_details`] (or by Fabric's
/// gateway); empty when it carries none.
pub fn details_of(status: &Status) -> Vec<ErrorDetail> {
    rpc::Status::decode(status.details())
        .map(|s| {
            s.details
                .iter()
                .filter_map(|any| ErrorDetail::decode(any.value.as_slice()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn details_round_trip_through_the_trailer() {
        let status = with_details(
            Code::Aborted,
            "failed to endorse transaction, see attached details for more info",
            vec![
                detail("127.0.0.1:7051", "Org1MSP", "chaincode response 500, boom"),
                detail("", "Org2MSP", "no peer of the org is known"),
            ],
        );
        assert_eq!(status.code(), Code::Aborted);
        assert!(status
            .message()
            .contains("127.0.0.1:7051 (Org1MSP): chaincode response 500, boom"));
        assert!(status
            .message()
            .ends_with("; Org2MSP: no peer of the org is known"));
        let details = details_of(&status);
        assert_eq!(details.len(), 2);
        assert_eq!(details[0].msp_id, "Org1MSP");
        assert_eq!(details[1].message, "no peer of the org is known");
        let raw = rpc::Status::decode(status.details()).unwrap();
        assert_eq!(raw.details[0].type_url, ERROR_DETAIL_TYPE_URL);
        assert_eq!(raw.code, Code::Aborted as i32);
    }

    #[test]
    fn no_details_no_summary() {
        let status = with_details(Code::InvalidArgument, "bad", Vec::new());
        assert_eq!(status.message(), "bad");
        assert!(details_of(&status).is_empty());
    }
}
