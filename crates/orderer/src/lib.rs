//! Twill's ordering service: Broadcast/Deliver, block cutting, and one Raft
//! group (raft-rs) per channel.
//!
//! Its parts:
//! - [`raft`]: the durable raft-rs log (a write-ahead log file) and the node
//!   loop that owns a `RawNode`, with a pluggable transport;
//! - [`cutter`]: Fabric's deterministic block cutting rules;
//! - [`writer`]: block assembly, header chaining and orderer signatures;
//! - [`msgprocessor`]: checks on incoming envelopes and config updates.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

// The binary's global allocator (main.rs).
use mimalloc as _;

pub mod broadcast;
pub mod chain;
pub mod cluster;
pub mod config;
pub mod cutter;
pub mod deliver;
pub mod msgprocessor;
pub mod operations;
pub mod participation;
pub mod raft;
pub mod registrar;
pub mod server;
pub mod writer;
