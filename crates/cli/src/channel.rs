//! `twill channel ...`: channel config updates made from the command line.
//!
//! `twill channel add-crl` puts a certificate revocation list (as `twill ca
//! revoke --gencrl` writes it) into an application org's MSP definition in
//! the channel config, so that the peers refuse the revoked identities:
//!
//! 1. the channel's current config is read from its last config block,
//!    fetched from the orderer with `Deliver` (the newest block names the
//!    last config block in its metadata);
//! 2. in `/Channel/Application/<org>/MSP` the CRL is added to the
//!    `FabricMSPConfig`'s `revocation_list`, replacing a CRL of the same
//!    issuer;
//! 3. the config update between the two configs is signed by the org admin
//!    (`CORE_PEER_MSPCONFIGPATH`, `CORE_PEER_LOCALMSPID`), wrapped in a
//!    CONFIG_UPDATE envelope and broadcast to the orderer;
//! 4. the orderer's new config block is awaited, and then each peer given
//!    with `--peer-address` until it has committed that block.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{ArgAction, Args, Subcommand};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use twill_comm::ClientTls;
use twill_configtx::channel::config_from_block;
use twill_msp::SigningIdentity;
use twill_protos::common::{Block, Config, ConfigUpdateEnvelope, Envelope, Status};
use twill_protos::msp::{FabricMspConfig, MspConfig};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::orderer::{
    deliver_response, seek_position, SeekNewest, SeekPosition, SeekSpecified,
};
use twill_protos::peer::TxValidationCode;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::chaincode::{
    broadcast, validation_code_name, wait_for_commit, OrdererTarget, PeerTarget,
};
use crate::peer::load_signer;

/// How long to wait for blocks from the orderer and for the peers.
const WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `twill channel`.
#[derive(Debug, Args)]
pub(crate) struct ChannelArgs {
    #[command(subcommand)]
    command: ChannelCommand,
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Add a CRL to an org's MSP in the channel config (a config update signed by
    /// the org's admin), so that the peers refuse the identities it revokes.
    ///
    /// A CRL already in the MSP from the same issuer is replaced. The signing
    /// identity is the org admin's, from --msp-dir/--msp-id
    /// (CORE_PEER_MSPCONFIGPATH / CORE_PEER_LOCALMSPID).
    ///
    /// Example:
    ///   twill ca revoke -e user1 --gencrl -u https://localhost:7054 --tls.certfiles ca-tls.pem \
    ///       --mspdir org1/caadmin/msp
    ///   twill channel add-crl --channel mychannel --org Org1MSP --crl org1/caadmin/msp/crls/crl.pem \
    ///       --orderer localhost:7050 --orderer-tls-ca tlsca.example.com-cert.pem \
    ///       --msp-dir users/Admin@org1.example.com/msp --msp-id Org1MSP \
    ///       --peer-address localhost:7051 --tls-ca tlsca.org1.example.com-cert.pem
    #[command(verbatim_doc_comment)]
    AddCrl(AddCrlArgs),
}

#[derive(Debug, Args)]
struct AddCrlArgs {
    /// The channel.
    #[arg(short = 'c', long, alias = "channelID", value_name = "NAME")]
    channel: String,
    /// MSP id of the application org whose MSP gets the CRL, e.g. Org1MSP.
    #[arg(long, value_name = "MSPID")]
    org: String,
    /// PEM file with the CRL (`-----BEGIN X509 CRL-----`), e.g. the
    /// crls/crl.pem that `twill ca revoke --gencrl` writes.
    #[arg(long, value_name = "FILE")]
    crl: PathBuf,
    /// The orderer's client address (Deliver and Broadcast).
    #[arg(short = 'o', long, value_name = "HOST:PORT")]
    orderer: String,
    /// PEM file with the TLS CA certificate(s) of the orderer; without it
    /// the orderer is called in plain text.
    #[arg(long, alias = "cafile", value_name = "FILE")]
    orderer_tls_ca: Option<PathBuf>,
    /// MSP folder of an admin of the org (signs the config update).
    #[arg(long, env = "CORE_PEER_MSPCONFIGPATH", value_name = "DIR")]
    msp_dir: PathBuf,
    /// MSP id of that admin's organization.
    #[arg(long, env = "CORE_PEER_LOCALMSPID", value_name = "ID")]
    msp_id: String,
    /// A peer to wait for until it has committed the new config block
    /// (repeat for several peers). Without it, add-crl returns once the
    /// orderer has cut the config block.
    #[arg(long, value_name = "HOST:PORT", action = ArgAction::Append)]
    peer_address: Vec<String>,
    /// PEM file with TLS CA certificate(s) of the peers (repeatable; every
    /// file is trusted for every peer); without it the peers are called in
    /// plain text.
    #[arg(long, value_name = "FILE", action = ArgAction::Append)]
    tls_ca: Vec<PathBuf>,
}

/// Runs `twill channel ...`.
pub(crate) fn run(args: ChannelArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match args.command {
        ChannelCommand::AddCrl(a) => {
            let out = runtime.block_on(add_crl(a))?;
            print!("{out}");
        }
    }
    Ok(())
}

/// TLS trusting the PEM files in `cas`; `None` (plain text) without files.
fn tls_from(cas: &[PathBuf], flag: &str) -> anyhow::Result<Option<ClientTls>> {
    if cas.is_empty() {
        return Ok(None);
    }
    let names = cas
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let tls = ClientTls::from_root_files(cas)
        .with_context(|| format!("{flag}: reading the TLS CA certificates {names}"))?;
    Ok(Some(tls))
}

async fn add_crl(args: AddCrlArgs) -> anyhow::Result<String> {
    let crl_pem = std::fs::read(&args.crl)
        .with_context(|| format!("--crl: reading {}", args.crl.display()))?;
    let issuer = crl_issuer(&crl_pem)
        .with_context(|| format!("--crl: {} is not a PEM CRL", args.crl.display()))?;
    let admin = load_signer(&args.msp_dir, &args.msp_id).context("--msp-dir/--msp-id")?;
    let orderer = OrdererTarget {
        address: args.orderer.clone(),
        tls: tls_from(args.orderer_tls_ca.as_slice(), "--orderer-tls-ca")?,
    };
    let peers_tls = tls_from(&args.tls_ca, "--tls-ca")?;
    let peers: Vec<PeerTarget> = args
        .peer_address
        .iter()
        .map(|address| PeerTarget {
            address: address.clone(),
            tls: peers_tls.clone(),
        })
        .collect();

    let (newest, config) = current_config(&orderer, &admin, &args.channel).await?;
    let mut updated = config.clone();
    let replaced = add_crl_to_config(&mut updated, &args.org, &crl_pem, &issuer)?;
    let update = twill_configtx::update::compute_update(&args.channel, &config, &updated)
        .with_context(|| {
            format!(
                "computing the config update (is this CRL already in {}'s MSP?)",
                args.org
            )
        })?;
    let update_bytes = update.encode_to_vec();
    let signature = twill_configtx::update::sign_config_update(&update_bytes, &admin)
        .context("signing the config update")?;
    let update_env = ConfigUpdateEnvelope {
        config_update: update_bytes,
        signatures: vec![signature],
    };
    let tx = twill_configtx::update::config_update_tx(&args.channel, &update_env, &admin)
        .context("wrapping the config update in an envelope")?;
    broadcast(&orderer, tx)
        .await
        .context("broadcasting the config update")?;

    let (config_block, tx_id) =
        wait_config_block(&orderer, &admin, &args.channel, newest + 1).await?;
    let mut out = format!(
        "CRL {} {} {}'s MSP in the config of channel {}: config block {config_block}\n",
        args.crl.display(),
        if replaced {
            "replaced a CRL of"
        } else {
            "added to"
        },
        args.org,
        args.channel
    );
    for peer in &peers {
        wait_peer_commit(peer, &admin, &args.channel, config_block, &tx_id).await?;
        out.push_str(&format!(
            "the peer at {} has committed config block {config_block}\n",
            peer.address
        ));
    }
    Ok(out)
}

/// The issuer (raw DER name) of the CRL in `pem`; an error says what is
/// wrong with it.
fn crl_issuer(pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(pem).context("not text")?;
    let begin = "-----BEGIN X509 CRL-----";
    let end = "-----END X509 CRL-----";
    let start = text
        .find(begin)
        .ok_or_else(|| anyhow!("no '{begin}' line"))?;
    let rest = &text[start + begin.len()..];
    let stop = rest.find(end).ok_or_else(|| anyhow!("no '{end}' line"))?;
    let b64: String = rest[..stop].split_whitespace().collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("bad base64 in the CRL block")?;
    let (_, crl) = CertificateRevocationList::from_der(&der)
        .map_err(|e| anyhow!("the CRL does not parse: {e}"))?;
    Ok(crl.issuer().as_raw().to_vec())
}

/// Adds `crl_pem` to the `revocation_list` of the application org with
/// MSP id `msp_id`, removing CRLs of the same issuer; whether one was
/// removed.
fn add_crl_to_config(
    config: &mut Config,
    msp_id: &str,
    crl_pem: &[u8],
    issuer: &[u8],
) -> anyhow::Result<bool> {
    let application = config
        .channel_group
        .as_mut()
        .and_then(|g| g.groups.get_mut("Application"))
        .ok_or_else(|| anyhow!("the channel config has no /Channel/Application group"))?;
    let mut known = Vec::new();
    for (name, org) in application.groups.iter_mut() {
        let Some(value) = org.values.get_mut("MSP") else {
            continue;
        };
        let mut msp: MspConfig = MspConfig::decode(value.value.as_slice())
            .with_context(|| format!("/Channel/Application/{name}/MSP is not an MSPConfig"))?;
        let mut fabric = FabricMspConfig::decode(msp.config.as_slice()).with_context(|| {
            format!("/Channel/Application/{name}/MSP does not hold a FabricMSPConfig")
        })?;
        if fabric.name != msp_id {
            known.push(fabric.name);
            continue;
        }
        let before = fabric.revocation_list.len();
        fabric
            .revocation_list
            .retain(|old| crl_issuer(old).map_or(true, |i| i != issuer));
        let replaced = fabric.revocation_list.len() != before;
        fabric.revocation_list.push(crl_pem.to_vec());
        msp.config = fabric.encode_to_vec();
        value.value = msp.encode_to_vec();
        return Ok(replaced);
    }
    bail!(
        "--org: no application org with MSP id {msp_id} in the channel config (orgs: {})",
        known.join(", ")
    )
}

/// A signed Deliver request for the blocks from `start` (`None`: the
/// newest) to `stop`.
fn seek_request(
    signer: &SigningIdentity,
    channel: &str,
    start: Option<u64>,
    stop: Option<u64>,
) -> anyhow::Result<Envelope> {
    let position = |n: Option<u64>| SeekPosition {
        r#type: Some(match n {
            Some(number) => seek_position::Type::Specified(SeekSpecified { number }),
            None => seek_position::Type::Newest(SeekNewest {}),
        }),
    };
    crate::netkit::seek_envelope_between(signer, channel, position(start), position(stop))
        .context("signing the Deliver request")
}

/// The blocks `start..=stop` (`start = None`: only the newest) of `channel`
/// from the orderer's Deliver; `stop = None` reads blocks as they come
/// until `keep` says enough. Fails after [`WAIT_TIMEOUT`].
async fn deliver(
    orderer: &OrdererTarget,
    signer: &SigningIdentity,
    channel: &str,
    start: Option<u64>,
    stop: Option<u64>,
    mut keep: impl FnMut(&Block) -> bool,
) -> anyhow::Result<Vec<Block>> {
    let address = &orderer.address;
    let request = seek_request(signer, channel, start, stop)?;
    let conn = twill_comm::connect(address, orderer.tls.as_ref())
        .await
        .with_context(|| format!("connecting to the orderer at {address}"))?;
    let mut client = twill_comm::with_message_limits!(AtomicBroadcastClient::new(conn));
    let (tx, rx) = mpsc::channel(1);
    tx.send(request)
        .await
        .map_err(|_| anyhow!("queueing the Deliver request for {address}"))?;
    let reading = async {
        let mut stream = client
            .deliver(ReceiverStream::new(rx))
            .await
            .map_err(|s| {
                anyhow!(
                    "opening Deliver on the orderer at {address}: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?
            .into_inner();
        let mut blocks = Vec::new();
        loop {
            let message = stream.message().await.map_err(|s| {
                anyhow!(
                    "Deliver on the orderer at {address} failed: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?;
            match message.and_then(|m| m.r#type) {
                Some(deliver_response::Type::Block(block)) => {
                    let more = keep(&block);
                    blocks.push(block);
                    if !more {
                        return Ok(blocks);
                    }
                }
                Some(deliver_response::Type::Status(s)) if s == Status::Success as i32 => {
                    return Ok(blocks);
                }
                Some(deliver_response::Type::Status(s)) => {
                    let name = Status::try_from(s)
                        .map_or_else(|_| s.to_string(), |s| s.as_str_name().to_owned());
                    bail!(
                        "the orderer at {address} answered Deliver on channel {channel} with status {name}"
                    );
                }
                None => bail!("the orderer at {address} closed Deliver on channel {channel}"),
            }
        }
    };
    let blocks = tokio::time::timeout(WAIT_TIMEOUT, reading)
        .await
        .map_err(|_| {
            anyhow!(
                "the orderer at {address} did not send the blocks of channel {channel} within {}s",
                WAIT_TIMEOUT.as_secs()
            )
        })??;
    drop(tx);
    Ok(blocks)
}

fn block_number(block: &Block) -> u64 {
    block.header.as_ref().map_or(0, |h| h.number)
}

/// The number of the newest block of `channel` and the channel's current
/// config (from its last config block).
async fn current_config(
    orderer: &OrdererTarget,
    signer: &SigningIdentity,
    channel: &str,
) -> anyhow::Result<(u64, Config)> {
    let newest = deliver(orderer, signer, channel, None, None, |_| false)
        .await?
        .pop()
        .ok_or_else(|| anyhow!("the orderer sent no block of channel {channel}"))?;
    let number = block_number(&newest);
    let last_config = twill_ledger::last_config_index(&newest)
        .with_context(|| format!("reading the last config index of block {number}"))?
        .ok_or_else(|| anyhow!("block {number} of {channel} does not name its config block"))?;
    let block = if last_config == number {
        newest
    } else {
        deliver(
            orderer,
            signer,
            channel,
            Some(last_config),
            Some(last_config),
            |_| true,
        )
        .await?
        .pop()
        .ok_or_else(|| anyhow!("the orderer did not send config block {last_config}"))?
    };
    let (_, envelope) = config_from_block(&block)
        .with_context(|| format!("block {last_config} of {channel} is not a config block"))?;
    let config = envelope
        .config
        .ok_or_else(|| anyhow!("config block {last_config} of {channel} carries no config"))?;
    Ok((number, config))
}

/// Reads blocks from `start` until a config block comes; its number and
/// the id of the transaction it holds.
async fn wait_config_block(
    orderer: &OrdererTarget,
    signer: &SigningIdentity,
    channel: &str,
    start: u64,
) -> anyhow::Result<(u64, String)> {
    let is_config = |b: &Block| {
        twill_ledger::last_config_index(b)
            .ok()
            .flatten()
            .is_some_and(|i| i == block_number(b))
    };
    let blocks = deliver(orderer, signer, channel, Some(start), None, |b| {
        !is_config(b)
    })
    .await
    .context("waiting for the orderer to cut the config block")?;
    let block = blocks
        .iter()
        .find(|b| is_config(b))
        .ok_or_else(|| anyhow!("the orderer sent no config block of channel {channel}"))?;
    let number = block_number(block);
    let (header, _) = config_from_block(block)
        .with_context(|| format!("block {number} of {channel} is not a config block"))?;
    Ok((number, header.tx_id))
}

/// Waits until `peer` has committed config block `number` holding
/// transaction `tx_id` (followed with DeliverFiltered, which any member of
/// the channel may read, unlike qscc on another org's peer).
async fn wait_peer_commit(
    peer: &PeerTarget,
    signer: &SigningIdentity,
    channel: &str,
    number: u64,
    tx_id: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let code = wait_for_commit(peer, signer, channel, tx_id, number, deadline)
        .await
        .with_context(|| {
            format!(
                "waiting for the peer at {} to commit config block {number}",
                peer.address
            )
        })?;
    if code != TxValidationCode::Valid as i32 {
        bail!(
            "the peer at {} committed config block {number} as {}",
            peer.address,
            validation_code_name(code)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_crl_block_is_refused() {
        let err = crl_issuer(b"hello").unwrap_err().to_string();
        assert!(err.contains("BEGIN X509 CRL"), "{err}");
        let err = crl_issuer(b"-----BEGIN X509 CRL-----\n!!\n-----END X509 CRL-----\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("base64"), "{err}");
    }
}
