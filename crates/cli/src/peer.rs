//! `twill peer ...`: Fabric's `peer channel join|list|getinfo` against a
//! peer's `protos.Endorser/ProcessProposal` (system chaincodes `cscc` and
//! `qscc`).
//!
//! The identity that signs the proposal is read from an MSP folder
//! (`--msp-dir`, `--msp-id`; Fabric's `CORE_PEER_MSPCONFIGPATH` and
//! `CORE_PEER_LOCALMSPID` work too). With `--tls-ca` the peer is dialed over
//! TLS; without it, in plain text.
//!
//! Output follows Fabric's peer CLI:
//!
//! ```text
//! $ twill peer channel join -b mychannel.block ...
//! Successfully submitted proposal to join channel
//! $ twill peer channel list ...
//! Channels peers has joined:
//! mychannel
//! $ twill peer channel getinfo -c mychannel ...
//! Blockchain info: {"height":3,"currentBlockHash":"...","previousBlockHash":"..."}
//! ```
//!
//! A proposal the peer answers with a status other than 200 fails with
//! `bad proposal response <status>: <message>` and exit code 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Args, Subcommand};
use prost::Message;
use twill_comm::ClientTls;
use twill_msp::SigningIdentity;
use twill_protos::common::{
    Block, BlockchainInfo, ChannelHeader, Header, HeaderType, SignatureHeader,
};
use twill_protos::peer::endorser_client::EndorserClient;
use twill_protos::peer::{
    chaincode_spec, ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec,
    ChaincodeProposalPayload, ChaincodeSpec, ChannelQueryResponse, Proposal, ProposalResponse,
    SignedProposal,
};

/// How long to wait for the peer's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `twill peer`.
#[derive(Debug, Args)]
pub struct PeerArgs {
    #[command(subcommand)]
    command: PeerCommand,
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Channel actions on a peer: join, list, getinfo.
    ///
    /// Example:
    ///   twill peer channel list --peer-address localhost:7051 --tls-ca tlsca.pem \
    ///       --msp-dir users/Admin@org1.example.com/msp --msp-id Org1MSP
    #[command(verbatim_doc_comment)]
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
}

/// The peer to call and the identity to call it with.
#[derive(Debug, Args)]
struct Connection {
    /// The peer's address (peer.address).
    #[arg(long, env = "CORE_PEER_ADDRESS", value_name = "HOST:PORT")]
    peer_address: String,
    /// MSP folder of the identity signing the proposal (an org admin's for
    /// join).
    #[arg(long, env = "CORE_PEER_MSPCONFIGPATH", value_name = "DIR")]
    msp_dir: PathBuf,
    /// MSP id of that identity.
    #[arg(long, env = "CORE_PEER_LOCALMSPID", value_name = "ID")]
    msp_id: String,
    /// PEM file with the TLS CA certificate(s) of the peer; without it,
    /// plain text is used.
    #[arg(long, env = "CORE_PEER_TLS_ROOTCERT_FILE", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Join the peer to a channel from the channel's genesis block (cscc JoinChain).
    ///
    /// Example:
    ///   twill peer channel join -b mychannel.block --peer-address localhost:7051 \
    ///       --tls-ca tlsca.pem --msp-dir users/Admin@org1.example.com/msp --msp-id Org1MSP
    #[command(verbatim_doc_comment)]
    Join {
        /// File with the channel's genesis block.
        #[arg(short = 'b', long, value_name = "FILE")]
        block: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the channels the peer has joined (cscc GetChannels).
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a channel's height and tip hashes on the peer (qscc GetChainInfo).
    ///
    /// Example:
    ///   twill peer channel getinfo -c mychannel --peer-address localhost:7051 ...
    #[command(verbatim_doc_comment)]
    Getinfo {
        /// The channel.
        #[arg(short = 'c', long, alias = "channelID", value_name = "NAME")]
        channel_id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs `twill peer`.
pub fn run(args: PeerArgs) -> anyhow::Result<()> {
    let PeerCommand::Channel { command } = args.command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = runtime.block_on(channel(command))?;
    print!("{out}");
    Ok(())
}

async fn channel(command: ChannelCommand) -> anyhow::Result<String> {
    match command {
        ChannelCommand::Join { block, conn } => {
            let bytes =
                std::fs::read(&block).with_context(|| format!("reading {}", block.display()))?;
            Block::decode(bytes.as_slice())
                .with_context(|| format!("{} does not hold a block", block.display()))?;
            let signer = signer(&conn)?;
            let proposal = signed_proposal(
                &signer,
                HeaderType::Config,
                "",
                "cscc",
                vec![b"JoinChain".to_vec(), bytes],
            )?;
            call_ok(&conn, proposal).await?;
            Ok("Successfully submitted proposal to join channel\n".into())
        }
        ChannelCommand::List { conn } => {
            let signer = signer(&conn)?;
            let proposal = signed_proposal(
                &signer,
                HeaderType::EndorserTransaction,
                "",
                "cscc",
                vec![b"GetChannels".to_vec()],
            )?;
            let payload = call_ok(&conn, proposal).await?;
            let channels = ChannelQueryResponse::decode(payload.as_slice())
                .context("the peer's answer is not a ChannelQueryResponse")?;
            let mut out = String::from("Channels peers has joined: \n");
            for c in channels.channels {
                out.push_str(&c.channel_id);
                out.push('\n');
            }
            Ok(out)
        }
        ChannelCommand::Getinfo { channel_id, conn } => {
            let signer = signer(&conn)?;
            let proposal = signed_proposal(
                &signer,
                HeaderType::EndorserTransaction,
                "",
                "qscc",
                vec![b"GetChainInfo".to_vec(), channel_id.into_bytes()],
            )?;
            let payload = call_ok(&conn, proposal).await?;
            let info = BlockchainInfo::decode(payload.as_slice())
                .context("the peer's answer is not a BlockchainInfo")?;
            Ok(format!(
                "Blockchain info: {}\n",
                blockchain_info_json(&info)
            ))
        }
    }
}

fn signer(conn: &Connection) -> anyhow::Result<SigningIdentity> {
    load_signer(&conn.msp_dir, &conn.msp_id)
}

/// The signing identity `msp_id` kept in the MSP folder `msp_dir`.
pub fn load_signer(msp_dir: &Path, msp_id: &str) -> anyhow::Result<SigningIdentity> {
    SigningIdentity::from_msp_dir(msp_dir, msp_id).with_context(|| {
        format!(
            "loading the signing identity of {msp_id} from {}",
            msp_dir.display()
        )
    })
}

/// Sends `proposal` and returns the response payload; fails unless the
/// status is 200.
async fn call_ok(conn: &Connection, proposal: SignedProposal) -> anyhow::Result<Vec<u8>> {
    let tls = match &conn.tls_ca {
        Some(ca) => Some(ClientTls::from_root_files(std::slice::from_ref(ca))?),
        None => None,
    };
    let response = process_proposal(&conn.peer_address, tls.as_ref(), proposal).await?;
    let Some(r) = response.response else {
        bail!("the peer's proposal response carries no response");
    };
    if r.status != 200 {
        bail!("bad proposal response {}: {}", r.status, r.message);
    }
    Ok(r.payload)
}

/// Calls `ProcessProposal` on the peer at `address`.
pub async fn process_proposal(
    address: &str,
    tls: Option<&ClientTls>,
    proposal: SignedProposal,
) -> anyhow::Result<ProposalResponse> {
    let channel = twill_comm::connect(address, tls)
        .await
        .with_context(|| format!("connecting to the peer at {address}"))?;
    let mut client = twill_comm::with_message_limits!(EndorserClient::new(channel));
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, client.process_proposal(proposal))
        .await
        .with_context(|| format!("the peer at {address} did not answer in time"))?
        .map_err(|s| {
            anyhow::anyhow!(
                "error endorsing proposal: {}: {}",
                code_name(s.code()),
                s.message()
            )
        })?;
    Ok(reply.into_inner())
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// A signed proposal calling `chaincode` with `args` on `channel` (empty:
/// no channel, as Fabric's CLI sends system chaincode calls).
pub fn signed_proposal(
    signer: &SigningIdentity,
    header_type: HeaderType,
    channel: &str,
    chaincode: &str,
    args: Vec<Vec<u8>>,
) -> anyhow::Result<SignedProposal> {
    let input = ChaincodeInput {
        args,
        ..Default::default()
    };
    let built = build_proposal(
        signer,
        header_type,
        channel,
        chaincode,
        input,
        Default::default(),
    )?;
    Ok(built.signed)
}

/// A proposal as built and signed by [`build_proposal`], with its tx id
/// and the unsigned [`Proposal`] (needed to assemble the transaction).
#[derive(Debug, Clone)]
pub struct BuiltProposal {
    /// The transaction id in the channel header.
    pub tx_id: String,
    /// The proposal before signing.
    pub proposal: Proposal,
    /// The proposal with the creator's signature, ready to send.
    pub signed: SignedProposal,
}

/// Builds and signs a proposal calling `chaincode` with `input` on
/// `channel` (empty: no channel), with `transient` data that goes to the
/// endorsers but never into the transaction.
pub fn build_proposal(
    signer: &SigningIdentity,
    header_type: HeaderType,
    channel: &str,
    chaincode: &str,
    input: ChaincodeInput,
    transient: BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<BuiltProposal> {
    let creator = signer.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = twill_configtx::block::compute_tx_id(&nonce, &creator);
    let chaincode_id = ChaincodeId {
        name: chaincode.to_string(),
        ..Default::default()
    };
    let mut ch: ChannelHeader =
        twill_configtx::block::channel_header(header_type, 0, channel, &tx_id);
    ch.extension = ChaincodeHeaderExtension {
        chaincode_id: Some(chaincode_id.clone()),
    }
    .encode_to_vec();
    let cis = ChaincodeInvocationSpec {
        chaincode_spec: Some(ChaincodeSpec {
            r#type: chaincode_spec::Type::Golang as i32,
            chaincode_id: Some(chaincode_id),
            input: Some(input),
            timeout: 0,
        }),
    };
    let proposal = Proposal {
        header: Header {
            channel_header: ch.encode_to_vec(),
            signature_header: SignatureHeader { creator, nonce }.encode_to_vec(),
        }
        .encode_to_vec(),
        payload: ChaincodeProposalPayload {
            input: cis.encode_to_vec(),
            transient_map: transient,
        }
        .encode_to_vec(),
        extension: Vec::new(),
    };
    let proposal_bytes = proposal.encode_to_vec();
    let signature = signer.sign(&proposal_bytes)?;
    Ok(BuiltProposal {
        tx_id,
        proposal,
        signed: SignedProposal {
            proposal_bytes,
            signature,
        },
    })
}

/// `BlockchainInfo` as Go's `encoding/json` prints Fabric's struct: empty
/// fields left out, hashes in standard base64.
pub fn blockchain_info_json(info: &BlockchainInfo) -> String {
    let mut map = serde_json::Map::new();
    if info.height != 0 {
        map.insert("height".into(), info.height.into());
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    if !info.current_block_hash.is_empty() {
        map.insert(
            "currentBlockHash".into(),
            b64(&info.current_block_hash).into(),
        );
    }
    if !info.previous_block_hash.is_empty() {
        map.insert(
            "previousBlockHash".into(),
            b64(&info.previous_block_hash).into(),
        );
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json_like_fabric() {
        let info = BlockchainInfo {
            height: 2,
            current_block_hash: vec![1, 2, 3],
            previous_block_hash: vec![],
            bootstrapping_snapshot_info: None,
        };
        assert_eq!(
            blockchain_info_json(&info),
            r#"{"height":2,"currentBlockHash":"AQID"}"#
        );
    }
}
