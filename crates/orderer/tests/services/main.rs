//! Integration tests of the orderer node's services:
//!
//! - `config`: `OrdererConfig` files, environment overrides and errors;
//! - `fake`: `BroadcastService` over a fake chain (ordering of answers,
//!   concurrency, Deliver waiting for blocks, halted chains);
//! - `node`: a single orderer run by `server::run`, joined through the admin
//!   API and driven over gRPC and HTTPS on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod fake;
mod node;
