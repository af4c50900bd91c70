//! Integration tests of `twill_orderer::raft`: in-process clusters on a
//! simulated network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod membership;
mod outcome;
mod partition;
mod replication;
mod restart;
mod snapshot;
