//! `twill cryptogen`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Arguments of `twill cryptogen`.
#[derive(Debug, Args)]
pub struct CryptogenArgs {
    #[command(subcommand)]
    command: CryptogenCommand,
}

#[derive(Debug, Subcommand)]
enum CryptogenCommand {
    /// Generate the MSP and TLS material described by a crypto-config.yaml.
    ///
    /// Writes Fabric's layout under the output folder:
    /// peerOrganizations/<domain>/{ca,tlsca,msp,peers,users} and
    /// ordererOrganizations/<domain>/{ca,tlsca,msp,orderers,users}. An org's
    /// folder is replaced as a whole when it already exists.
    ///
    /// Example:
    ///   twill cryptogen generate --config network-configs/test-network/crypto-config.yaml \
    ///       --output network-configs/test-network/organizations
    #[command(verbatim_doc_comment)]
    Generate {
        /// The crypto-config.yaml to read.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Folder to write the material into (created if missing).
        #[arg(long, value_name = "DIR", default_value = "crypto-config")]
        output: PathBuf,
    },
}

/// Runs `twill cryptogen`.
pub fn run(args: CryptogenArgs) -> anyhow::Result<()> {
    match args.command {
        CryptogenCommand::Generate { config, output } => {
            let cfg = twill_cryptogen::load_config(&config)?;
            let report = twill_cryptogen::generate(&cfg, &output)?;
            for org in &report.orgs {
                println!(
                    "{} ({}): {} node(s), {} user(s) in {}",
                    org.name,
                    org.domain,
                    org.nodes.len(),
                    org.users.len(),
                    org.dir.display()
                );
            }
            println!(
                "wrote {} files under {}",
                report.files().count(),
                output.display()
            );
            Ok(())
        }
    }
}
