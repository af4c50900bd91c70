//! `twill-client`: the Rust client SDK for Twill and Hyperledger Fabric
//! networks.
//!
//! Applications talk to one *gateway peer* with Fabric's Gateway protocol
//! (`gateway.Gateway`: Evaluate, Endorse, Submit, CommitStatus,
//! ChaincodeEvents) and read blocks with `protos.Deliver/Deliver` — the
//! same wire protocol as Fabric's `@hyperledger/fabric-gateway`, so the SDK
//! works against Twill peers and Fabric 2.4+ peers alike.
//!
//! This crate owns:
//!
//! - identities and signing ([`identity`]): an MSP id plus PEM certificate,
//!   and a [`Signer`] over SHA-256 digests (ECDSA P-256, DER, low S) that
//!   may live outside the process;
//! - Fabric's connection profile ([`ConnectionProfile`], JSON or YAML);
//! - the connection ([`Gateway`], built with [`Gateway::builder`]) and its
//!   handles [`Network`] (a channel) and [`Contract`] (a chaincode);
//! - the transaction flow: [`Contract::evaluate`], [`Contract::submit`],
//!   [`Contract::submit_async`], and step by step with offline signing
//!   ([`Proposal`] → [`Transaction`] → [`Commit`], each with `bytes()` and
//!   `digest()`, rebuilt by `Gateway::new_signed_*`);
//! - chaincode and block event streams ([`Network::chaincode_events`],
//!   [`Network::block_events`]) with [`Checkpointer`]s to resume them;
//! - typed errors ([`Error`]) carrying the gRPC code, the transaction id and
//!   the gateway's per-node [`ErrorDetail`]s, and [`CommitError`] for
//!   transactions that commit with a validation code other than VALID;
//! - helpers for a few-line application ([`ChaincodeInvoker`],
//!   [`ChaincodeQuerier`]).
//!
//! Nothing here spawns tasks: each call runs on the caller's tokio runtime,
//! and the connection (tonic's channel) reconnects on demand. See
//! `docs/client.md` for a guide.
//!
//! # Example
//!
//! ```no_run
//! use twill_client::{EventsOptions, Gateway, StreamExt};
//!
//! # async fn demo() -> twill_client::Result<()> {
//! let gateway = Gateway::from_profile(
//!     ".twill-network/organizations/peerOrganizations/org1.example.com/connection-org1.yaml",
//!     ".twill-network/organizations/peerOrganizations/org1.example.com/users/User1@org1.example.com/msp",
//! )
//! .await?;
//! let network = gateway.network("mychannel");
//! let contract = network.contract("basic");
//!
//! let mut events = network.chaincode_events("basic", EventsOptions::new()).await?;
//! contract.submit("CreateAsset", &["asset7", "blue", "5", "Tom", "100"]).await?;
//! let asset = contract.evaluate("ReadAsset", &["asset7"]).await?;
//! println!("{}", String::from_utf8_lossy(&asset));
//! if let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("{} in block {}", event.event_name, event.block_number);
//! }
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod error;
pub mod events;
pub mod gateway;
pub mod helpers;
pub mod identity;
pub mod profile;
pub mod proposal;

#[cfg(test)]
mod testing;

pub use checkpoint::{Checkpoint, Checkpointer, FileCheckpointer, InMemoryCheckpointer};
pub use error::{CommitError, Error, ErrorDetail, GatewayError, Result};
pub use events::{
    BlockEvents, BlockEventsRequest, ChaincodeEvent, ChaincodeEvents, ChaincodeEventsRequest,
    EventsOptions,
};
pub use futures::StreamExt;
pub use gateway::{Contract, Endpoint, Gateway, GatewayBuilder, Network, Timeouts};
pub use helpers::{ChaincodeInvoker, ChaincodeQuerier};
pub use identity::{Identity, PrivateKeySigner, Signer};
pub use profile::{ConnectionProfile, PeerEndpoint};
pub use proposal::{Commit, Proposal, ProposalOptions, Status, SubmittedTransaction, Transaction};
/// The protobuf types the SDK exposes (blocks, envelopes, …).
pub use twill_protos as protos;
