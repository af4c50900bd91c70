//! asset-transfer: Fabric's asset-transfer-basic sample as Rust chaincode
//! on the Twill shim.
//!
//! This binary owns the sample's contract (assets as JSON under their ids,
//! with `InitLedger`, `CreateAsset`, `ReadAsset`, `UpdateAsset`,
//! `DeleteAsset`, `AssetExists`, `TransferAsset`, `GetAllAssets`,
//! `GetAssetHistory` and `QueryAssets`) and its process entry point: it
//! reads the launch settings the way Fabric passes them
//! ([`twill_chaincode_shim::config_from_env`]) and either dials the peer or
//! serves it as a chaincode server. Logs go to stderr (`RUST_LOG` filters
//! them); on failure it prints the error and exits with status 1, so that
//! its launcher can restart it.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod contract;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use twill_chaincode_shim::{config_from_env, serve, start, Mode};

async fn run() -> twill_chaincode_shim::Result<()> {
    let router = contract::router();
    match config_from_env(std::env::args())? {
        Mode::Dial(config) => {
            tracing::info!(peer = %config.peer_address, id = %config.chaincode_id, "dialing the peer");
            start(config, router).await
        }
        Mode::Server(config) => {
            tracing::info!(address = %config.address, id = %config.chaincode_id, "running as a chaincode server");
            serve(config, router).await
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "asset-transfer stopped");
            eprintln!("asset-transfer: {error}");
            ExitCode::FAILURE
        }
    }
}
