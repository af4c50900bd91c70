//! `protos.Endorser/ProcessProposal` for the system chaincodes.
//!
//! A proposal is unpacked and checked as Fabric's endorser does before it
//! runs anything: the headers decode, the header type is
//! ENDORSER_TRANSACTION or CONFIG, the epoch is 0, nonce and creator are
//! set, `tx_id` is `hex(SHA-256(nonce ‖ creator))`, and the creator is a
//! valid identity — of the peer's local MSP for a proposal without a
//! channel (how `peer channel join/list/getinfo` send them), else of the
//! channel's MSPs — whose signature over `proposal_bytes` verifies. A
//! proposal failing these checks gets a gRPC error (INVALID_ARGUMENT or
//! PERMISSION_DENIED), as Fabric returns an error for them.
//!
//! Then the chaincode named in the header extension runs: `cscc` and
//! `qscc` ([`crate::scc`]). Any other chaincode gets a response with status
//! 500: user chaincodes are not served yet. So does a proposal for a channel
//! this peer has not joined.
//!
//! Every answer is a `ProposalResponse` with the chaincode's `Response`, a
//! `ProposalResponsePayload` (proposal hash, and a `ChaincodeAction`
//! carrying the response and the chaincode id) and an endorsement by the
//! peer's identity over `payload ‖ endorser`. (Fabric leaves payload and
//! endorsement empty for channel-less system chaincode calls; clients only
//! read the response there.)

use std::sync::Arc;
use std::time::SystemTime;

use prost::Message as _;
use tonic::{Request, Response as TonicResponse, Status};
use twill_msp::{Identity, Msp, SigningIdentity};
use twill_protos::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
use twill_protos::peer::endorser_server::{Endorser, EndorserServer};
use twill_protos::peer::{
    ChaincodeAction, ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput,
    ChaincodeInvocationSpec, ChaincodeProposalPayload, Endorsement, Proposal, ProposalResponse,
    ProposalResponsePayload, Response, SignedProposal,
};

use twill_ledger::state::StateDb;

use crate::chaincode::{ChaincodeRuntime, RunRequest, Simulated};
use crate::channel::Channel;
use crate::deliver::ChannelLookup;
use crate::scc::{self, CsccAction, SignedProposalData};

const LOG: &str = "peer::endorser";

/// What the endorser needs from the node.
#[tonic::async_trait]
pub trait EndorserSupport: ChannelLookup {
    /// Ids of the joined channels, sorted.
    fn channel_ids(&self) -> Vec<String>;

    /// Joins the channel of `request` from its genesis block: creates the
    /// ledger, commits the block and starts pulling. The error is the
    /// message for the client.
    async fn join(&self, request: scc::JoinRequest) -> Result<(), String>;

    /// The runtime for user chaincodes and `_lifecycle`; `None` serves the
    /// system chaincodes `cscc` and `qscc` only. The default is `None`.
    fn runtime(&self) -> Option<Arc<ChaincodeRuntime>> {
        None
    }

    /// The state database of a joined channel, for simulations. The
    /// default has none.
    fn state(&self, channel: &str) -> Option<Arc<StateDb>> {
        let _ = channel;
        None
    }
}

/// Channel policy a proposal's creator must satisfy (Fabric's default ACL
/// for `peer/Propose`).
pub const PROPOSE_POLICY: &str = "/Channel/Application/Writers";

/// A proposal unpacked by [`unpack`].
#[derive(Debug, Clone)]
pub struct UnpackedProposal {
    /// The proposal.
    pub proposal: Proposal,
    /// Its channel header.
    pub channel_header: ChannelHeader,
    /// Its signature header.
    pub signature_header: SignatureHeader,
    /// The chaincode called.
    pub chaincode_name: String,
    /// The invocation arguments (`args[0]` is the function).
    pub args: Vec<Vec<u8>>,
    /// The whole invocation input (args, decorations, is_init).
    pub input: ChaincodeInput,
    /// The hash a proposal response must name.
    pub proposal_hash: Vec<u8>,
}

/// Decodes a signed proposal and checks its headers (no signature check).
pub fn unpack(signed: &SignedProposal) -> Result<UnpackedProposal, String> {
    if signed.proposal_bytes.is_empty() {
        return Err("empty proposal bytes".into());
    }
    if signed.signature.is_empty() {
        return Err("empty signature bytes".into());
    }
    let proposal = Proposal::decode(signed.proposal_bytes.as_slice())
        .map_err(|e| format!("error unmarshalling Proposal: {e}"))?;
    let header = Header::decode(proposal.header.as_slice())
        .map_err(|e| format!("error unmarshalling Header: {e}"))?;
    let ch = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| format!("error unmarshalling ChannelHeader: {e}"))?;
    let sh = SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| format!("error unmarshalling SignatureHeader: {e}"))?;
    if ch.r#type != HeaderType::EndorserTransaction as i32 && ch.r#type != HeaderType::Config as i32
    {
        return Err(format!("invalid header type {}", ch.r#type));
    }
    if ch.epoch != 0 {
        return Err("epoch is non-zero".into());
    }
    if sh.nonce.is_empty() {
        return Err("nonce is empty".into());
    }
    if sh.creator.is_empty() {
        return Err("creator is empty".into());
    }
    let expected = twill_configtx::block::compute_tx_id(&sh.nonce, &sh.creator);
    if ch.tx_id != expected {
        return Err(format!(
            "incorrectly computed txid '{}' -- expected '{expected}'",
            ch.tx_id
        ));
    }
    let ext = ChaincodeHeaderExtension::decode(ch.extension.as_slice())
        .map_err(|e| format!("error unmarshalling ChaincodeHeaderExtension: {e}"))?;
    let chaincode_name = ext
        .chaincode_id
        .map(|id| id.name)
        .filter(|n| !n.is_empty())
        .ok_or("ChaincodeHeaderExtension.ChaincodeId.Name is empty")?;
    let cpp = ChaincodeProposalPayload::decode(proposal.payload.as_slice())
        .map_err(|e| format!("error unmarshalling ChaincodeProposalPayload: {e}"))?;
    let cis = ChaincodeInvocationSpec::decode(cpp.input.as_slice())
        .map_err(|e| format!("error unmarshalling ChaincodeInvocationSpec: {e}"))?;
    let input = cis
        .chaincode_spec
        .and_then(|s| s.input)
        .ok_or("chaincode invocation spec did not contain chaincode input")?;
    let args = input.args.clone();
    // The hash covers the payload without its transient data.
    let without_transient = ChaincodeProposalPayload {
        input: cpp.input,
        transient_map: Default::default(),
    };
    let mut hasher = twill_crypto::Sha256Hasher::new();
    hasher.update(&header.channel_header);
    hasher.update(&header.signature_header);
    hasher.update(&without_transient.encode_to_vec());
    Ok(UnpackedProposal {
        proposal,
        channel_header: ch,
        signature_header: sh,
        chaincode_name,
        args,
        input,
        proposal_hash: hasher.finalize().to_vec(),
    })
}

/// The Endorser gRPC service; see the [module docs](self).
pub struct EndorserService<S> {
    support: Arc<S>,
    signer: Arc<SigningIdentity>,
    local_msp: Arc<Msp>,
}

impl<S> std::fmt::Debug for EndorserService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndorserService")
            .field("local_msp", &self.local_msp.id())
            .finish_non_exhaustive()
    }
}

impl<S: EndorserSupport> EndorserService<S> {
    /// A service answering for `support`'s channels, signing with `signer`
    /// and authorizing channel-less calls against `local_msp`.
    pub fn new(support: Arc<S>, signer: Arc<SigningIdentity>, local_msp: Arc<Msp>) -> Self {
        EndorserService {
            support,
            signer,
            local_msp,
        }
    }

    /// The tonic server for this service, with Twill's message limits.
    pub fn into_server(self) -> EndorserServer<Self> {
        twill_comm::with_message_limits!(EndorserServer::new(self))
    }

    /// The tonic server for a shared service (the gateway uses the same
    /// one), with Twill's message limits.
    pub fn server_for(service: Arc<Self>) -> EndorserServer<Self> {
        twill_comm::with_message_limits!(EndorserServer::from_arc(service))
    }

    /// The peer's signing identity.
    pub fn signer(&self) -> &Arc<SigningIdentity> {
        &self.signer
    }

    /// The creator as an identity of the local MSP or of `channel`, valid
    /// now, whose signature over the proposal verifies.
    fn check_creator(
        &self,
        signed: &SignedProposal,
        up: &UnpackedProposal,
        channel: Option<&Channel>,
    ) -> Result<Identity, Status> {
        let cid = &up.channel_header.channel_id;
        let creator = &up.signature_header.creator;
        let denied = |detail: String| {
            Status::permission_denied(format!("access denied: channel [{cid}] {detail}"))
        };
        let id = match channel {
            None => {
                let id = self.local_msp.deserialize_identity(creator).map_err(|e| {
                    denied(format!(
                        "creator is not an identity of the local MSP {}: {e}",
                        self.local_msp.id()
                    ))
                })?;
                self.local_msp
                    .validate(&id)
                    .map_err(|e| denied(format!("creator org [{}]: {e}", id.mspid())))?;
                id
            }
            Some(ch) => {
                let cfg = ch.config();
                let id = cfg.msps.deserialize_identity(creator).map_err(|e| {
                    denied(format!("creator org unknown, creator is malformed: {e}"))
                })?;
                cfg.msps
                    .validate_at(&id, SystemTime::now())
                    .map_err(|e| denied(format!("creator org [{}]: {e}", id.mspid())))?;
                id
            }
        };
        id.verify(&signed.proposal_bytes, &signed.signature)
            .map_err(|e| {
                denied(format!(
                    "creator org [{}]: the signature over the proposal is invalid: {e}",
                    id.mspid()
                ))
            })?;
        Ok(id)
    }

    /// True if `creator` (whose signature was checked) is a valid admin of
    /// the peer's local MSP.
    fn local_admin(&self, creator: &[u8]) -> bool {
        self.local_msp
            .deserialize_identity(creator)
            .is_ok_and(|id| self.local_msp.validate(&id).is_ok() && self.local_msp.is_admin(&id))
    }

    /// Runs a system chaincode: `cscc` and `qscc` answer directly.
    async fn invoke_system(&self, signed: &SignedProposal, up: &UnpackedProposal) -> Response {
        let creator = SignedProposalData {
            proposal_bytes: signed.proposal_bytes.clone(),
            signature: signed.signature.clone(),
            creator: up.signature_header.creator.clone(),
        };
        match up.chaincode_name.as_str() {
            scc::CSCC => {
                let support = self.support.clone();
                match scc::cscc(&up.args, &self.local_msp, &creator, || {
                    support.channel_ids()
                }) {
                    Err(response) => response,
                    Ok(CsccAction::Respond(response)) => response,
                    Ok(CsccAction::Join(request)) => {
                        let cid = request.channel_id.clone();
                        match self.support.join(request).await {
                            Ok(()) => {
                                tracing::info!(target: LOG, channel = %cid, "joined channel");
                                scc::success(Vec::new())
                            }
                            Err(message) => scc::error(message),
                        }
                    }
                }
            }
            scc::QSCC => {
                let support = self.support.clone();
                let args = up.args.clone();
                tokio::task::spawn_blocking(move || {
                    scc::qscc(&args, &creator, |cid| support.channel(cid))
                })
                .await
                .unwrap_or_else(|e| scc::error(format!("qscc failed: {e}")))
            }
            other => scc::error(format!(
                "chaincode '{other}' is not available on this peer: only the system chaincodes cscc and qscc are served"
            )),
        }
    }

    /// Runs the proposal's chaincode: system chaincodes answer directly,
    /// `_lifecycle` and user chaincodes go through the runtime.
    ///
    /// `creator` is the proposal's creator, already deserialized, validated
    /// and checked to have signed the proposal.
    async fn invoke(
        &self,
        signed: &SignedProposal,
        up: &UnpackedProposal,
        channel: Option<&Arc<Channel>>,
        creator: &Identity,
    ) -> Result<Simulated, Response> {
        let runtime = match up.chaincode_name.as_str() {
            scc::CSCC | scc::QSCC => None,
            _ => self.support.runtime(),
        };
        let Some(runtime) = runtime else {
            let response = self.invoke_system(signed, up).await;
            if response.status >= 400 {
                return Err(response);
            }
            return Ok(Simulated {
                response,
                results: Vec::new(),
                events: Vec::new(),
                chaincode_id: ChaincodeId {
                    name: up.chaincode_name.clone(),
                    ..Default::default()
                },
            });
        };
        let tx_id = &up.channel_header.tx_id;
        if let Some(ch) = channel {
            // A point read of the tx-id index: cheap enough for the async
            // worker (no thread hop per proposal).
            let seen = ch
                .store()
                .tx_location(tx_id)
                .map_err(|e| scc::error(format!("duplicate check failed: {e}")))?;
            if seen.is_some() {
                return Err(scc::error(format!("duplicate transaction found [{tx_id}]")));
            }
            let config = ch.config();
            let policy = config.policies.get_policy(PROPOSE_POLICY).ok_or_else(|| {
                scc::error(format!(
                    "channel '{}' has no policy {PROPOSE_POLICY}",
                    ch.id()
                ))
            })?;
            // The creator's signature was verified already: evaluate the
            // policy over the identity rather than verifying it again.
            if let Err(e) = policy.evaluate_identities(std::slice::from_ref(creator)) {
                return Err(scc::error(format!(
                    "access denied for [propose]: the creator does not satisfy {PROPOSE_POLICY} of channel '{}': {e}",
                    ch.id()
                )));
            }
        }
        // Only `_lifecycle` asks whether the creator administers this org.
        let local_admin = up.chaincode_name == crate::lifecycle::LIFECYCLE_NAMESPACE
            && self.local_admin(&up.signature_header.creator);
        runtime
            .run(RunRequest {
                channel: channel.cloned(),
                state: channel.and_then(|c| self.support.state(c.id())),
                signed,
                chaincode: &up.chaincode_name,
                tx_id,
                input: up.input.clone(),
                local_admin,
            })
            .await
    }

    /// The signed `ProposalResponse` carrying a simulation's outcome.
    fn respond(
        &self,
        up: &UnpackedProposal,
        simulated: Simulated,
    ) -> Result<ProposalResponse, Status> {
        let response = simulated.response;
        let action = ChaincodeAction {
            results: simulated.results,
            events: simulated.events,
            response: Some(response.clone()),
            chaincode_id: Some(simulated.chaincode_id),
        };
        let payload = ProposalResponsePayload {
            proposal_hash: up.proposal_hash.clone(),
            extension: action.encode_to_vec(),
        }
        .encode_to_vec();
        let endorser = self.signer.serialize();
        let mut signed = Vec::with_capacity(payload.len() + endorser.len());
        signed.extend_from_slice(&payload);
        signed.extend_from_slice(&endorser);
        let signature = self.signer.sign(&signed).map_err(|e| {
            tracing::error!(target: LOG, error = %e, "cannot sign a proposal response");
            Status::internal(format!("the peer cannot sign its response: {e}"))
        })?;
        Ok(ProposalResponse {
            version: 1,
            timestamp: Some(twill_configtx::block::now_timestamp()),
            response: Some(response),
            payload,
            endorsement: Some(Endorsement {
                endorser,
                signature,
            }),
            interest: None,
        })
    }

    /// An unendorsed `ProposalResponse` carrying a failure (as Fabric
    /// answers a failed simulation or a chaincode error).
    fn refuse(response: Response) -> ProposalResponse {
        ProposalResponse {
            version: 1,
            timestamp: Some(twill_configtx::block::now_timestamp()),
            response: Some(response),
            payload: Vec::new(),
            endorsement: None,
            interest: None,
        }
    }
}

impl<S: EndorserSupport> EndorserService<S> {
    /// Processes one signed proposal as `ProcessProposal` does: a gRPC
    /// error for a malformed proposal or a creator that is refused, else a
    /// `ProposalResponse` (endorsed, or unendorsed with the failure).
    /// `remote` names the caller in logs. The gateway calls this for the
    /// local peer's endorsements.
    pub async fn process(
        &self,
        signed: &SignedProposal,
        remote: &str,
    ) -> Result<ProposalResponse, Status> {
        let up = unpack(signed).map_err(|e| {
            tracing::warn!(target: LOG, %remote, error = %e, "refused a malformed proposal");
            Status::invalid_argument(e)
        })?;
        self.process_unpacked(signed, &up, remote).await
    }

    /// [`process`](Self::process) for a proposal the caller has already
    /// unpacked (the gateway, endorsing on its own peer).
    pub async fn process_unpacked(
        &self,
        signed: &SignedProposal,
        up: &UnpackedProposal,
        remote: &str,
    ) -> Result<ProposalResponse, Status> {
        let cid = up.channel_header.channel_id.clone();
        let channel = if cid.is_empty() {
            None
        } else {
            match self.support.channel(&cid) {
                Some(ch) => Some(ch),
                None => {
                    let response = scc::error(format!("channel '{cid}' not found"));
                    return Ok(Self::refuse(response));
                }
            }
        };
        let identity = self
            .check_creator(signed, up, channel.as_deref())
            .inspect_err(|e| {
                tracing::warn!(target: LOG, %remote, channel = %cid, error = e.message(), "refused a proposal");
            })?;
        tracing::debug!(
            target: LOG,
            %remote,
            channel = %cid,
            chaincode = %up.chaincode_name,
            creator = %format!("{} '{}'", identity.mspid(), identity.common_name()),
            "processing proposal"
        );
        match self.invoke(signed, up, channel.as_ref(), &identity).await {
            Ok(simulated) => self.respond(up, simulated),
            Err(response) => {
                tracing::info!(target: LOG, channel = %cid, chaincode = %up.chaincode_name, status = response.status, message = %response.message, "proposal failed");
                Ok(Self::refuse(response))
            }
        }
    }
}

#[tonic::async_trait]
impl<S: EndorserSupport> Endorser for EndorserService<S> {
    async fn process_proposal(
        &self,
        request: Request<SignedProposal>,
    ) -> Result<TonicResponse<ProposalResponse>, Status> {
        let remote = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let signed = request.into_inner();
        self.process(&signed, &remote).await.map(TonicResponse::new)
    }
}
