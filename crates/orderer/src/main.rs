//! `twill-orderer`: parses the command line, loads the configuration, sets
//! up logging and runs [`twill_orderer::server::run`] until Ctrl-C or
//! SIGTERM.

/// mimalloc: the allocator of every Twill process (glibc malloc was over a
/// tenth of a node's CPU under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser as _;
use twill_orderer::config::{OrdererArgs, OrdererConfig};
use twill_orderer::server::{self, NodeMaterial};

#[tokio::main]
async fn main() -> ExitCode {
    let args = OrdererArgs::parse();
    server::init_logging("info");
    twill_ops::disable_transparent_huge_pages();
    let path = args.config_path();
    let config = match OrdererConfig::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("twill-orderer: {e}");
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
                eprintln!("twill-orderer: {e}");
                ExitCode::from(2)
            }
        };
    }
    match server::run(config, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "orderer::server", error = %e, "orderer failed");
            eprintln!("twill-orderer: {e}");
            ExitCode::FAILURE
        }
    }
}
