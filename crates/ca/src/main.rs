//! `twill-ca`: parses the command line, loads the configuration, sets up
//! logging and runs [`twill_ca::run`] until Ctrl-C or SIGTERM.

/// mimalloc: the allocator of every Twill process (glibc malloc was over a
/// tenth of a node's CPU under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser as _;
use twill_ca::config::{CaArgs, CaConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let args = CaArgs::parse();
    twill_ops::init_logging("info");
    twill_ops::disable_transparent_huge_pages();
    let config = match CaConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("twill-ca: {e}");
            return ExitCode::from(2);
        }
    };
    for key in &config.ignored {
        tracing::info!(target: "ca::config", key = %key, "ignored (a Fabric CA setting Twill does not use)");
    }
    if args.config_check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    if config.settings.bootstrap.is_empty() && !config.home.join("registry").exists() {
        eprintln!("twill-ca: a bootstrap identity is needed on first start (-b admin:adminpw or registry.identities)");
        return ExitCode::from(2);
    }
    match twill_ca::run(config, twill_ops::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "ca::server", error = %e, "twill-ca failed");
            eprintln!("twill-ca: {e}");
            ExitCode::FAILURE
        }
    }
}
