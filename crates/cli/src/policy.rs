//! `twill policy`.

use clap::{Args, Subcommand};
use prost::Message;

/// Arguments of `twill policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Parse a signature policy expression and print it back, or say where it is wrong.
    ///
    /// The language is Fabric's: AND(...), OR(...), OutOf(n, ...) over
    /// principals 'MSPID.role' with role member, admin, client, peer or orderer.
    ///
    /// Example:
    ///   twill policy check "AND('Org1MSP.peer', OR('Org2MSP.member', 'Org3MSP.admin'))"
    #[command(verbatim_doc_comment)]
    Check {
        /// The policy expression.
        expr: String,
        /// Also print the encoded SignaturePolicyEnvelope as hex.
        #[arg(long)]
        hex: bool,
    },
}

/// Runs `twill policy`.
pub fn run(args: PolicyArgs) -> anyhow::Result<()> {
    match args.command {
        PolicyCommand::Check { expr, hex } => {
            let env = twill_policy::parse_policy(&expr)?;
            println!("{}", twill_policy::policy_to_string(&env)?);
            if hex {
                let bytes = env.encode_to_vec();
                let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                println!("{text}");
            }
            Ok(())
        }
    }
}
