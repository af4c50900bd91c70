//! The system chaincodes the peer serves through ProcessProposal: `cscc`
//! (channel join and listing) and `qscc` (ledger queries).
//!
//! Arguments are Fabric's: `args[0]` is the function name.
//!
//! | chaincode | function | arguments | returns | who may call |
//! | --- | --- | --- | --- | --- |
//! | `cscc` | `JoinChain` | `args[1]`: the genesis block | nothing | an admin of the peer's local MSP |
//! | `cscc` | `GetChannels` | — | `protos.ChannelQueryResponse` | a member of the local MSP |
//! | `qscc` | `GetChainInfo` | `args[1]`: channel | `common.BlockchainInfo` | `/Channel/Application/Readers` |
//! | `qscc` | `GetBlockByNumber` | channel, number (decimal text) | `common.Block` | same |
//! | `qscc` | `GetBlockByHash` | channel, header hash (raw bytes) | `common.Block` | same |
//! | `qscc` | `GetTransactionByID` | channel, tx id | `protos.ProcessedTransaction` | same |
//! | `qscc` | `GetBlockByTxID` | channel, tx id | `common.Block` | same |
//!
//! Failures are chaincode errors (a `Response` with status 500 and a
//! message), as in Fabric.

use prost::Message as _;
use twill_msp::{Identity, Msp};
use twill_policy::SignedData;
use twill_protos::common::{Block, Envelope};
use twill_protos::peer::{ChannelInfo, ChannelQueryResponse, ProcessedTransaction, Response};

use crate::channel::Channel;
use crate::deliver::APPLICATION_READERS;

/// Name of the configuration system chaincode.
pub const CSCC: &str = "cscc";
/// Name of the query system chaincode.
pub const QSCC: &str = "qscc";

/// `cscc` function: join a channel from its genesis block.
pub const JOIN_CHAIN: &str = "JoinChain";
/// `cscc` function: list joined channels.
pub const GET_CHANNELS: &str = "GetChannels";
/// `qscc` function: height and tip hashes.
pub const GET_CHAIN_INFO: &str = "GetChainInfo";
/// `qscc` function: a block by number.
pub const GET_BLOCK_BY_NUMBER: &str = "GetBlockByNumber";
/// `qscc` function: a block by header hash.
pub const GET_BLOCK_BY_HASH: &str = "GetBlockByHash";
/// `qscc` function: a transaction and its validation code.
pub const GET_TRANSACTION_BY_ID: &str = "GetTransactionByID";
/// `qscc` function: the block holding a transaction.
pub const GET_BLOCK_BY_TX_ID: &str = "GetBlockByTxID";

/// Status of a successful chaincode response.
pub const OK: i32 = 200;
/// Status of a failed chaincode response.
pub const ERROR: i32 = 500;

/// A successful response carrying `payload`.
pub fn success(payload: Vec<u8>) -> Response {
    Response {
        status: OK,
        message: String::new(),
        payload,
    }
}

/// A failed response with `message`.
pub fn error(message: impl Into<String>) -> Response {
    Response {
        status: ERROR,
        message: message.into(),
        payload: Vec::new(),
    }
}

/// The proposal as signed by its creator: what ACL checks evaluate.
#[derive(Debug, Clone)]
pub struct SignedProposalData {
    /// `SignedProposal.proposal_bytes`.
    pub proposal_bytes: Vec<u8>,
    /// `SignedProposal.signature`.
    pub signature: Vec<u8>,
    /// The creator (`SerializedIdentity` bytes).
    pub creator: Vec<u8>,
}

impl SignedProposalData {
    fn signed_data(&self) -> SignedData {
        SignedData {
            data: self.proposal_bytes.clone(),
            identity: self.creator.clone(),
            signature: self.signature.clone(),
        }
    }
}

/// What `cscc JoinChain` checked: the block to join with and its channel.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The channel id the block belongs to.
    pub channel_id: String,
    /// The genesis block.
    pub block: Block,
}

/// Checks a `cscc` call's arguments and authorization. `JoinChain` yields
/// the join to perform (the caller does it, asynchronously);
/// `GetChannels` is answered from `channel_ids`.
pub fn cscc(
    args: &[Vec<u8>],
    local_msp: &Msp,
    creator: &SignedProposalData,
    channel_ids: impl FnOnce() -> Vec<String>,
) -> Result<CsccAction, Response> {
    let Some(fname) = args.first() else {
        return Err(error(format!(
            "Incorrect number of arguments, {}",
            args.len()
        )));
    };
    let fname = String::from_utf8_lossy(fname).into_owned();
    match fname.as_str() {
        JOIN_CHAIN => {
            let Some(block_bytes) = args.get(1).filter(|b| !b.is_empty()) else {
                return Err(error(
                    "Cannot join the channel <nil> configuration block provided",
                ));
            };
            let block = Block::decode(block_bytes.as_slice())
                .map_err(|e| error(format!("Failed to reconstruct the genesis block, {e}")))?;
            let (ch, config_env) =
                twill_configtx::channel::config_from_block(&block).map_err(|e| {
                    error(format!(
                        "\"JoinChain\" request failed to extract channel id from the block due to [{e}]"
                    ))
                })?;
            let cid = ch.channel_id;
            let has_application = config_env
                .config
                .as_ref()
                .and_then(|c| c.channel_group.as_ref())
                .is_some_and(|g| {
                    g.groups
                        .contains_key(twill_configtx::keys::APPLICATION_GROUP)
                });
            if !has_application {
                return Err(error(format!(
                    "\"JoinChain\" for channelID = {cid} failed because of validation of configuration block, because of Invalid configuration block, missing Application configuration group"
                )));
            }
            check_local(local_msp, creator, true)
                .map_err(|e| error(format!("access denied for [{JOIN_CHAIN}][{cid}]: [{e}]")))?;
            Ok(CsccAction::Join(JoinRequest {
                channel_id: cid,
                block,
            }))
        }
        GET_CHANNELS => {
            check_local(local_msp, creator, false)
                .map_err(|e| error(format!("access denied for [{GET_CHANNELS}]: {e}")))?;
            let response = ChannelQueryResponse {
                channels: channel_ids()
                    .into_iter()
                    .map(|channel_id| ChannelInfo { channel_id })
                    .collect(),
            };
            Ok(CsccAction::Respond(success(response.encode_to_vec())))
        }
        other => {
            if args.len() < 2 {
                return Err(error(format!(
                    "Incorrect number of arguments, {}",
                    args.len()
                )));
            }
            Err(error(format!("Requested function {other} not found.")))
        }
    }
}

/// What a `cscc` call asks of the node.
#[derive(Debug, Clone)]
pub enum CsccAction {
    /// Join this channel.
    Join(JoinRequest),
    /// Answer with this response.
    Respond(Response),
}

/// The creator must be a valid member (or, with `admin`, an admin) of the
/// local MSP and must have signed the proposal.
pub(crate) fn check_local(
    local_msp: &Msp,
    creator: &SignedProposalData,
    admin: bool,
) -> Result<(), String> {
    let id: Identity = local_msp
        .deserialize_identity(&creator.creator)
        .map_err(|e| {
            format!(
                "the creator is not an identity of the local MSP {}: {e}",
                local_msp.id()
            )
        })?;
    local_msp
        .validate(&id)
        .map_err(|e| format!("the creator is not valid in the local MSP: {e}"))?;
    id.verify(&creator.proposal_bytes, &creator.signature)
        .map_err(|e| format!("the creator's signature is invalid: {e}"))?;
    if admin && !local_msp.is_admin(&id) {
        return Err(format!(
            "the creator {} '{}' is not an admin of the local MSP {} (policy Admins)",
            id.mspid(),
            id.common_name(),
            local_msp.id()
        ));
    }
    Ok(())
}

/// Serves a `qscc` call. `lookup` finds a joined channel. Blocking (reads
/// the ledger).
pub fn qscc(
    args: &[Vec<u8>],
    creator: &SignedProposalData,
    lookup: impl FnOnce(&str) -> Option<std::sync::Arc<Channel>>,
) -> Response {
    if args.len() < 2 {
        return error(format!("Incorrect number of arguments, {}", args.len()));
    }
    let fname = String::from_utf8_lossy(&args[0]).into_owned();
    let cid = String::from_utf8_lossy(&args[1]).into_owned();
    if fname != GET_CHAIN_INFO && args.len() < 3 {
        return error(format!("missing 3rd argument for {fname}"));
    }
    let Some(channel) = lookup(&cid) else {
        return error(format!(
            "Invalid chain ID, {cid}: this peer has not joined channel '{cid}'"
        ));
    };
    let known = [
        GET_CHAIN_INFO,
        GET_BLOCK_BY_NUMBER,
        GET_BLOCK_BY_HASH,
        GET_TRANSACTION_BY_ID,
        GET_BLOCK_BY_TX_ID,
    ];
    if !known.contains(&fname.as_str()) {
        return error(format!("Requested function {fname} not found."));
    }
    let cfg = channel.config();
    let allowed = match cfg.policies.get_policy(APPLICATION_READERS) {
        Some(policy) => policy
            .evaluate(&[creator.signed_data()])
            .map_err(|e| e.to_string()),
        None => Err(format!("policy {APPLICATION_READERS} does not exist")),
    };
    if let Err(e) = allowed {
        return error(format!(
            "access denied for [{fname}][{cid}]: [failed evaluating policy {APPLICATION_READERS}: {e}]"
        ));
    }
    let store = channel.store();
    let arg = args.get(2).map(Vec::as_slice).unwrap_or_default();
    match fname.as_str() {
        GET_CHAIN_INFO => match channel.chain_info() {
            Ok(info) => success(info.encode_to_vec()),
            Err(e) => error(format!("Failed to get block info with error {e}")),
        },
        GET_BLOCK_BY_NUMBER => {
            let text = String::from_utf8_lossy(arg);
            let number = match text.parse::<u64>() {
                Ok(n) => n,
                Err(e) => {
                    return error(format!(
                        "Failed to parse block number with error {e} (got '{text}')"
                    ))
                }
            };
            match store.block_bytes(number) {
                Ok(Some(bytes)) => success(bytes),
                Ok(None) => error(format!(
                    "Failed to get block number {number}, error the ledger height is {}",
                    store.height()
                )),
                Err(e) => error(format!("Failed to get block number {number}, error {e}")),
            }
        }
        GET_BLOCK_BY_HASH => {
            let Ok(hash) = <[u8; 32]>::try_from(arg) else {
                return error(format!(
                    "Failed to get block hash {}, error a block hash is 32 bytes, got {}",
                    hex::encode(arg),
                    arg.len()
                ));
            };
            match store.block_by_hash(&hash) {
                Ok(Some(block)) => success(block.encode_to_vec()),
                Ok(None) => error(format!(
                    "Failed to get block hash {}, error no such block",
                    hex::encode(hash)
                )),
                Err(e) => error(format!(
                    "Failed to get block hash {}, error {e}",
                    hex::encode(hash)
                )),
            }
        }
        GET_TRANSACTION_BY_ID => {
            let tx_id = String::from_utf8_lossy(arg).into_owned();
            if tx_id.is_empty() {
                return error("Transaction ID must not be nil.");
            }
            let not_found = |why: String| {
                error(format!(
                    "Failed to get transaction with id {tx_id}, error {why}"
                ))
            };
            let loc = match store.tx_location(&tx_id) {
                Ok(Some(loc)) => loc,
                Ok(None) => return not_found("no such transaction ID".into()),
                Err(e) => return not_found(e.to_string()),
            };
            let block = match store.block(loc.block_number) {
                Ok(Some(b)) => b,
                Ok(None) => return not_found(format!("block {} is missing", loc.block_number)),
                Err(e) => return not_found(e.to_string()),
            };
            let env = block
                .data
                .as_ref()
                .and_then(|d| d.data.get(loc.tx_index as usize))
                .and_then(|b| Envelope::decode(b.as_slice()).ok());
            let Some(env) = env else {
                return not_found(format!(
                    "transaction {} of block {} does not decode",
                    loc.tx_index, loc.block_number
                ));
            };
            let processed = ProcessedTransaction {
                transaction_envelope: Some(env),
                validation_code: i32::from(loc.validation_code),
            };
            success(processed.encode_to_vec())
        }
        GET_BLOCK_BY_TX_ID => {
            let tx_id = String::from_utf8_lossy(arg).into_owned();
            match store.block_by_tx_id(&tx_id) {
                Ok(Some(block)) => success(block.encode_to_vec()),
                Ok(None) => error(format!(
                    "Failed to get block for txID {tx_id}, error no such transaction ID"
                )),
                Err(e) => error(format!("Failed to get block for txID {tx_id}, error {e}")),
            }
        }
        _ => error(format!("Requested function {fname} not found.")),
    }
}
