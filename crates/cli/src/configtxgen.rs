//! `twill configtxgen`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args};
use prost::Message;
use twill_configtx::{channel::config_from_block, genesis, inspect, profile::LoadedConfigtx};
use twill_protos::common::Block;

/// Arguments of `twill configtxgen` (documented on the subcommand).
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["output_block", "inspect_block"])))]
pub struct ConfigtxgenArgs {
    /// The configtx.yaml to read.
    #[arg(long, value_name = "FILE", default_value = "configtx.yaml")]
    config: PathBuf,
    /// Profile of configtx.yaml to use.
    #[arg(long, value_name = "NAME", requires = "output_block")]
    profile: Option<String>,
    /// Channel name (lowercase letters, digits, '.' and '-').
    #[arg(long = "channel-id", value_name = "ID", requires = "output_block")]
    channel_id: Option<String>,
    /// Write the genesis block to this file.
    #[arg(long = "output-block", value_name = "FILE", requires_all = ["profile", "channel_id"])]
    output_block: Option<PathBuf>,
    /// Print the block in this file as JSON.
    #[arg(
        long = "inspect-block",
        value_name = "FILE",
        conflicts_with = "output_block"
    )]
    inspect_block: Option<PathBuf>,
}

/// Runs `twill configtxgen`.
pub fn run(args: ConfigtxgenArgs) -> anyhow::Result<()> {
    if let Some(path) = args.inspect_block {
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        let block = Block::decode(bytes.as_slice())
            .with_context(|| format!("{}: not a protobuf common.Block", path.display()))?;
        let json = inspect::block_to_json(&block);
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let (Some(out), Some(profile), Some(channel_id)) =
        (args.output_block, args.profile, args.channel_id)
    else {
        anyhow::bail!("--output-block needs --profile and --channel-id");
    };
    let cfg = LoadedConfigtx::load(&args.config)?;
    let block = genesis::genesis_block_from_profile(&cfg, &profile, &channel_id)?;
    // Round-trip through the typed view so a block we cannot use is never written.
    let (_, env) = config_from_block(&block)?;
    if let Some(config) = env.config.as_ref() {
        twill_configtx::channel::ChannelConfig::from_config(config)
            .with_context(|| format!("profile {profile} builds an unusable config"))?;
    }
    std::fs::write(&out, block.encode_to_vec()).with_context(|| format!("{}", out.display()))?;
    println!(
        "wrote genesis block of channel '{channel_id}' (profile {profile}) to {}",
        out.display()
    );
    Ok(())
}
