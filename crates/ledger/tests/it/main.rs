//! Integration tests for the block store: the public API, reopening, and
//! crash recovery driven by damaging block files on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blockstore;
mod crash;
mod recovery;
mod richquery;
mod state;
mod support;
