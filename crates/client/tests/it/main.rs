//! End-to-end tests of the SDK against a real network started with
//! `twill network up` (3 orderers, 2 peers per org, chaincode `basic` on
//! `mychannel`).
//!
//! The node binaries are built first with
//! `cargo build -p twill-cli -p twill-peer -p twill-orderer -p asset-transfer`
//! unless `TWILL_BIN_DIR` names a folder that already holds them. Set
//! `TWILL_KEEP_TEST_DIRS=1` to keep the network's folder (logs) after the
//! test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net;
mod scenario;
