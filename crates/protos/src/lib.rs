//! Protocol types for Twill, wire-compatible with Hyperledger Fabric v2.5.
//!
//! The `.proto` sources live in the workspace's `proto/` folder and are
//! Twill's own, written to match Fabric's package names, message names,
//! field numbers and gRPC service paths. They are compiled at build time by
//! `protox` (no `protoc` needed) into one Rust module per protobuf package:
//!
//! | module | Fabric package | what it holds |
//! | --- | --- | --- |
//! | [`common`] | `common` | envelopes, blocks, config tree, policies, principals |
//! | [`msp`] | `msp` | serialized identities, MSP configuration |
//! | [`orderer`] | `orderer` | Broadcast/Deliver, batch and consensus config |
//! | [`etcdraft`] | `etcdraft` | Raft consenter metadata |
//! | [`peer`] | `protos` | proposals, transactions, shim, deliver, endorser |
//! | [`rwset`], [`kvrwset`] | `rwset`, `kvrwset` | read-write sets |
//! | [`queryresult`] | `queryresult` | query records for chaincode |
//! | [`lifecycle`] | `lifecycle` | `_lifecycle` arguments and results |
//! | [`gateway`] | `gateway` | the Fabric Gateway service |
//! | [`google::rpc`] | `google.rpc` | rich gRPC error status |
//! | [`twill::cluster`] | `twill.cluster` | Twill's orderer-to-orderer service (ours) |
//! | [`twill::ca`] | `twill.ca` | the certificate authority's gRPC API (ours) |
//!
//! Every map field is a `BTreeMap`, so encoding is deterministic: the same
//! config always serialises to the same bytes on every node.
//!
//! ```
//! use prost::Message;
//! use twill_protos::common::{Envelope, Payload};
//!
//! let env = Envelope { payload: Payload::default().encode_to_vec(), signature: vec![1, 2] };
//! let bytes = env.encode_to_vec();
//! assert_eq!(Envelope::decode(bytes.as_slice()).unwrap(), env);
//! ```

#![allow(missing_docs, clippy::all, clippy::unwrap_used)]

pub use prost;

pub mod wire;
pub use prost_types;

/// Fabric package `common`.
pub mod common {
    include!(concat!(env!("OUT_DIR"), "/common.rs"));
}

/// Fabric package `msp`.
pub mod msp {
    include!(concat!(env!("OUT_DIR"), "/msp.rs"));
}

/// Fabric package `orderer`.
pub mod orderer {
    include!(concat!(env!("OUT_DIR"), "/orderer.rs"));
}

/// Fabric package `etcdraft`.
pub mod etcdraft {
    include!(concat!(env!("OUT_DIR"), "/etcdraft.rs"));
}

/// Fabric package `protos` (the peer's messages and services).
pub mod protos {
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

/// Alias for [`protos`], under the name Twill's crates use.
pub use protos as peer;

/// Fabric package `rwset`.
pub mod rwset {
    include!(concat!(env!("OUT_DIR"), "/rwset.rs"));
}

/// Fabric package `kvrwset`.
pub mod kvrwset {
    include!(concat!(env!("OUT_DIR"), "/kvrwset.rs"));
}

/// Fabric package `queryresult`.
pub mod queryresult {
    include!(concat!(env!("OUT_DIR"), "/queryresult.rs"));
}

/// Fabric package `lifecycle`.
pub mod lifecycle {
    include!(concat!(env!("OUT_DIR"), "/lifecycle.rs"));
}

/// Fabric package `gateway`.
pub mod gateway {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

/// Twill's own services (not part of Fabric).
pub mod twill {
    /// Package `twill.cluster`: orderer-to-orderer traffic.
    pub mod cluster {
        include!(concat!(env!("OUT_DIR"), "/twill.cluster.rs"));
    }

    /// Package `twill.ca`: the certificate authority's gRPC API.
    pub mod ca {
        include!(concat!(env!("OUT_DIR"), "/twill.ca.rs"));
    }
}

/// Google's rich error model, used for gateway error details.
pub mod google {
    /// Package `google.rpc`.
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}
