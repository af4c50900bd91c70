//! The Twill peer: it keeps each joined channel's ledger, pulls blocks from
//! the ordering service, validates and commits them, and serves Deliver and
//! the system chaincodes. The binary `twill-peer` is a thin wrapper around
//! [`node::run`].
//!
//! Layout:
//!
//! - [`config`]: the `core.yaml` subset and `CORE_*` environment overrides;
//! - [`node`]: startup, the channel registry [`node::Peer`], the listeners;
//! - [`channel`]: a joined [`channel::Channel`] (block store + config) and
//!   the [`channel::Committer`] seam every block goes through, with the
//!   committer [`committer::LedgerCommitter`];
//! - [`deliverclient`]: one task per channel pulling blocks from the
//!   channel's orderers, with failover;
//! - [`deliver`]: the peer's `protos.Deliver` service (blocks, filtered
//!   blocks, blocks with private data);
//! - [`endorser`] and [`scc`]: `protos.Endorser/ProcessProposal` for the
//!   system chaincodes `cscc` and `qscc`;
//! - [`gateway`]: the `gateway.Gateway` service Fabric's client SDKs use
//!   (endorsement plans across orgs, submit to the orderers, commit
//!   status, chaincode events);
//! - [`blocks`]: TRANSACTIONS_FILTER, signatures and filtered blocks;
//! - [`operations`]: `/healthz`, `/metrics`, `/version`;
//! - [`validation`]: block and transaction validation (the real committer's
//!   checks).
//!
//! Tasks: one tonic server (Endorser, Gateway, Deliver, ChaincodeSupport), one operations HTTP server,
//! one block puller per channel; commits and ledger reads run on the
//! blocking pool.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use twill_peer::config::PeerConfig;
//! use twill_peer::node;
//!
//! let config = PeerConfig::load("core.yaml".as_ref())?;
//! node::run(config, node::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

// The binary's global allocator (main.rs).
use mimalloc as _;

pub mod blocks;
pub mod chaincode;
pub mod channel;
pub mod committer;
pub mod config;
pub mod deliver;
pub mod deliverclient;
pub mod endorser;
pub mod gateway;
pub mod lifecycle;
pub mod node;
pub mod operations;
pub mod scc;
pub mod simulator;
pub mod validation;
