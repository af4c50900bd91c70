//! `twill-peer`: parses the command line, loads the configuration, sets up
//! logging and runs [`twill_peer::node::run`] until Ctrl-C or SIGTERM.

/// mimalloc: the allocator of every Twill process (glibc malloc was over a
/// tenth of a node's CPU under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser as _;
use twill_peer::config::{PeerArgs, PeerConfig};
use twill_peer::node::{self, NodeMaterial};

#[tokio::main]
async fn main() -> ExitCode {
    let args = PeerArgs::parse();
    node::init_logging("info");
    twill_ops::disable_transparent_huge_pages();
    let path = args.config_path();
    let config = match PeerConfig::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("twill-peer: {e}");
            return ExitCode::from(2);
        }
    };
    if args.config_check {
        return match NodeMaterial::load(&config) {
            Ok(_) => {
                for key in config.ignored_keys() {
                    println!(
                        "{}: {key}: ignored (a Fabric setting Twill does not use)",
                        path.display()
                    );
                }
                println!("{}: configuration OK", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("twill-peer: {e}");
                ExitCode::from(2)
            }
        };
    }
    match node::run(config, node::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "peer::node", error = %e, "peer failed");
            eprintln!("twill-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
