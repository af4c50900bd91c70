//! The peer's `gateway.Gateway` service (Fabric 2.4+ semantics), what
//! Fabric's `@hyperledger/fabric-gateway` clients, Caliper's peer-gateway
//! connector and Twill's own client SDK call.
//!
//! | RPC | what it does |
//! | --- | --- |
//! | `Evaluate` | runs the proposal on this peer (or on a peer of the requested org) without ordering; a chaincode error is a gRPC `UNKNOWN` with an `ErrorDetail` |
//! | `Endorse` | collects endorsements that satisfy the chaincode's endorsement policy ([`endorse`]) and returns the unsigned transaction envelope |
//! | `Submit` | sends the client-signed envelope to an orderer of the channel, trying the next one when an orderer is unreachable or unavailable |
//! | `CommitStatus` | waits until the transaction is in a committed block; returns its validation code and block number |
//! | `ChaincodeEvents` | streams a chaincode's events of VALID transactions, one message per block with events, from a start block or after a checkpointed transaction |
//!
//! Failures carry `gateway.ErrorDetail`s (address, MSP id, message) in the
//! `grpc-status-details-bin` trailer ([`error`]). Requests are checked as
//! Fabric checks them: proposals by the endorser (creator, signature, tx id,
//! Writers), commit-status and event requests by the signature of the
//! identity they name and the channel's Readers policy.
//!
//! Nothing ties a request to the connection it came on: a proposal endorsed
//! through one connection can be submitted, and its status asked, through
//! another (Fabric's offline-signing flow).

mod broadcast;
pub mod conn;
pub mod endorse;
pub mod error;
mod events;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use prost::Message as _;
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};
use twill_configtx::channel::ChannelConfig;
use twill_ledger::{TxLocation, TxLookup};
use twill_msp::Identity;
use twill_protos::common::{Envelope, Status as FabricStatus};
use twill_protos::gateway::gateway_server::{Gateway, GatewayServer};
use twill_protos::gateway::{
    ChaincodeEventsResponse, CommitStatusRequest, CommitStatusResponse, EndorseRequest,
    EndorseResponse, ErrorDetail, EvaluateRequest, EvaluateResponse, SignedChaincodeEventsRequest,
    SignedCommitStatusRequest, SubmitRequest, SubmitResponse,
};
use twill_protos::peer::{ProposalResponse, SignedProposal};

use crate::channel::Channel;
use crate::deliver::APPLICATION_READERS;
use crate::deliverclient::{orderer_endpoints, OrdererConnection};
use crate::endorser::{unpack, EndorserService, EndorserSupport, UnpackedProposal};
use crate::lifecycle::LifecycleCache;
use conn::{Connections, Kind};
use endorse::{Failure, OrgPeers, PlanPolicy, Target};
use error::{detail, with_details};

const LOG: &str = "peer::gateway";

/// How long one orderer may take to accept a transaction.
pub const BROADCAST_TIMEOUT: Duration = Duration::from_secs(30);

/// The message of an endorsement failure (Fabric's wording).
const ENDORSE_FAILED: &str = "failed to endorse transaction, see attached details for more info";

/// Where this peer is and how it reaches other nodes.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The peer's MSP id.
    pub local_msp_id: String,
    /// The address other nodes know this peer by (`peer.address`, with an
    /// unspecified host replaced by the listener's).
    pub local_address: String,
    /// Every address that names this peer (so that it is not dialed as a
    /// remote anchor peer).
    pub self_addresses: Vec<String>,
    /// TLS settings for dialing peers and orderers.
    pub connection: OrdererConnection,
}

/// The Gateway gRPC service; see the [module docs](self).
pub struct GatewayService<S> {
    support: Arc<S>,
    endorser: Arc<EndorserService<S>>,
    config: GatewayConfig,
    conns: Arc<Connections>,
    broadcaster: broadcast::Broadcaster,
    next_orderer: AtomicUsize,
    shutdown: watch::Receiver<bool>,
    /// Endorsement plans' policies by (channel, config sequence, chaincode).
    plans: LifecycleCache<(String, u64, String), PlanPolicy>,
}

impl<S> std::fmt::Debug for GatewayService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: EndorserSupport> GatewayService<S> {
    /// A gateway for `support`'s channels that endorses locally through
    /// `endorser`; event streams end when `shutdown` turns `true`.
    pub fn new(
        support: Arc<S>,
        endorser: Arc<EndorserService<S>>,
        config: GatewayConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let conns = Connections::new(config.connection.clone());
        GatewayService {
            support,
            endorser,
            config,
            conns,
            broadcaster: broadcast::Broadcaster::default(),
            next_orderer: AtomicUsize::new(0),
            shutdown,
            plans: LifecycleCache::default(),
        }
    }

    /// The tonic server for this service, with Twill's message limits.
    pub fn into_server(self) -> GatewayServer<Self> {
        twill_comm::with_message_limits!(GatewayServer::new(self))
    }

    fn local_detail(&self, message: impl Into<String>) -> ErrorDetail {
        detail(
            &self.config.local_address,
            &self.config.local_msp_id,
            message,
        )
    }

    fn is_self(&self, address: &str) -> bool {
        self.config.self_addresses.iter().any(|a| a == address)
    }

    /// A joined channel, or NOT_FOUND naming it.
    fn channel(&self, id: &str) -> Result<Arc<Channel>, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("the request names no channel"));
        }
        self.support
            .channel(id)
            .ok_or_else(|| Status::not_found(format!("channel '{id}' not found on this peer")))
    }

    /// Decodes and checks a proposal and its request's ids.
    fn proposal(
        &self,
        tx_id: &str,
        channel_id: &str,
        signed: Option<SignedProposal>,
    ) -> Result<(SignedProposal, UnpackedProposal, Arc<Channel>), Status> {
        let signed =
            signed.ok_or_else(|| Status::invalid_argument("a proposed transaction is required"))?;
        let up = unpack(&signed).map_err(Status::invalid_argument)?;
        let ch = &up.channel_header;
        if !tx_id.is_empty() && tx_id != ch.tx_id {
            return Err(Status::invalid_argument(format!(
                "transaction_id '{tx_id}' does not match the proposal's tx id '{}'",
                ch.tx_id
            )));
        }
        if !channel_id.is_empty() && channel_id != ch.channel_id {
            return Err(Status::invalid_argument(format!(
                "channel_id '{channel_id}' does not match the proposal's channel '{}'",
                ch.channel_id
            )));
        }
        let channel = self.channel(&ch.channel_id)?;
        Ok((signed, up, channel))
    }

    /// The proposal's channel id, the channel's config and its orgs with
    /// their peers (this org first).
    fn orgs_of(
        &self,
        up: &UnpackedProposal,
        channel: &Channel,
    ) -> (String, Arc<ChannelConfig>, Vec<OrgPeers>) {
        let cfg = channel.config();
        let orgs = endorse::org_peers(&cfg, &self.config.local_msp_id, &|a| self.is_self(a));
        (up.channel_header.channel_id.clone(), cfg, orgs)
    }

    /// Endorses on this peer: a gRPC error from the endorser's checks
    /// (malformed, refused creator) is returned with the local peer's
    /// detail; a chaincode failure is a [`Failure::Chaincode`].
    async fn endorse_local(
        &self,
        proposal: Proposed<'_>,
        remote: &str,
    ) -> Result<Result<ProposalResponse, Failure>, Status> {
        match self
            .endorser
            .process_unpacked(proposal.signed, proposal.unpacked, remote)
            .await
        {
            Ok(response) => Ok(endorse::check_response(
                response,
                &self.config.local_address,
                &self.config.local_msp_id,
            )),
            Err(status) => Err(error::raw(
                status.code(),
                status.message().to_owned(),
                vec![self.local_detail(status.message())],
            )),
        }
    }

    /// Asks one endorser (this peer in process, or a remote peer of
    /// `msp_id`) to process `signed`.
    async fn ask(
        &self,
        target: &Target,
        msp_id: &str,
        channel_id: &str,
        cfg: &ChannelConfig,
        proposal: Proposed<'_>,
        remote: &str,
    ) -> Result<Result<ProposalResponse, Failure>, Status> {
        match target {
            Target::Local => self.endorse_local(proposal, remote).await,
            Target::Remote(address) => Ok(endorse::endorse_remote(
                &self.conns,
                channel_id,
                cfg,
                address,
                msp_id,
                proposal.signed,
            )
            .await),
        }
    }

    /// Tries the targets of one org in order; the first endorsement wins.
    /// `Err(Ok(details))`: no peer of the org endorsed (all unreachable);
    /// `Err(Err(status))`: stop the whole call.
    async fn endorse_org(
        &self,
        org: &OrgPeers,
        channel_id: &str,
        cfg: &ChannelConfig,
        proposal: Proposed<'_>,
        remote: &str,
    ) -> Result<ProposalResponse, Result<Vec<ErrorDetail>, Status>> {
        let mut details = Vec::new();
        if org.targets.is_empty() {
            details.push(detail(
                "",
                &org.msp_id,
                format!(
                    "no peers of {} are known: the channel config lists no anchor peers for it",
                    org.msp_id
                ),
            ));
        }
        for target in &org.targets {
            let outcome = self
                .ask(target, &org.msp_id, channel_id, cfg, proposal, remote)
                .await
                .map_err(Err)?;
            match outcome {
                Ok(response) => return Ok(response),
                Err(Failure::Chaincode(d)) => {
                    details.push(d);
                    return Err(Err(with_details(Code::Aborted, ENDORSE_FAILED, details)));
                }
                Err(Failure::Unreachable(d)) => {
                    tracing::info!(target: LOG, channel = channel_id, org = %org.msp_id, address = %d.address, error = %d.message, "endorser failed; trying the next peer of the org");
                    details.push(d);
                }
            }
        }
        Err(Ok(details))
    }

    /// The endorsement policy of the proposal's chaincode on `channel`.
    fn plan_policy(&self, channel: &Channel, cfg: &ChannelConfig, chaincode: &str) -> PlanPolicy {
        use crate::validation::lifecycle::{
            application_policy, field_key, lifecycle_policy, LIFECYCLE_NAMESPACE,
        };
        match chaincode {
            crate::scc::CSCC | crate::scc::QSCC => return None,
            LIFECYCLE_NAMESPACE => return Some(lifecycle_policy(cfg)),
            _ => {}
        }
        let state = self.support.state(channel.id())?;
        // Compiled against this config's MSPs and policies.
        let key = (
            channel.id().to_owned(),
            cfg.config.sequence,
            chaincode.to_owned(),
        );
        // A failed state read is not kept: only what the state says is.
        let read = || -> Result<PlanPolicy, ()> {
            let Some(raw) = state
                .get(LIFECYCLE_NAMESPACE, &field_key(chaincode, "ValidationInfo"))
                .map_err(drop)?
            else {
                return Ok(None);
            };
            let info = twill_protos::lifecycle::StateData::decode(raw.value.as_slice())
                .ok()
                .and_then(|data| match data.r#type {
                    Some(twill_protos::lifecycle::state_data::Type::Bytes(bytes)) => {
                        twill_protos::lifecycle::ChaincodeValidationInfo::decode(bytes.as_slice())
                            .ok()
                    }
                    _ => None,
                });
            Ok(info.map(|info| application_policy(cfg, &info.validation_parameter)))
        };
        self.plans.get_or_try(&state, key, read).ok().flatten()
    }

    async fn do_endorse(
        &self,
        request: EndorseRequest,
        remote: &str,
    ) -> Result<EndorseResponse, Status> {
        let (signed, up, channel) = self.proposal(
            &request.transaction_id,
            &request.channel_id,
            request.proposed_transaction,
        )?;
        let (cid, cfg, mut orgs) = self.orgs_of(&up, &channel);
        let requested = !request.endorsing_organizations.is_empty();
        if requested {
            let wanted = &request.endorsing_organizations;
            if let Some(unknown) = wanted
                .iter()
                .find(|m| !orgs.iter().any(|o| &&o.msp_id == m))
            {
                return Err(Status::invalid_argument(format!(
                    "endorsing organization '{unknown}' is not an application org of channel '{cid}'"
                )));
            }
            orgs.retain(|o| wanted.contains(&o.msp_id));
        }
        let policy = if requested {
            None
        } else {
            self.plan_policy(&channel, &cfg, &up.chaincode_name)
        };
        let mut responses: Vec<ProposalResponse> = Vec::new();
        let mut missing: Vec<ErrorDetail> = Vec::new();
        // Whether the policy held after the last endorsement (checked once
        // per org, not again after the loop).
        let mut done = false;
        for org in &orgs {
            let proposal = Proposed {
                signed: &signed,
                unpacked: &up,
            };
            match self.endorse_org(org, &cid, &cfg, proposal, remote).await {
                Ok(response) => responses.push(response),
                Err(Err(status)) => return Err(status),
                Err(Ok(details)) => missing.extend(details),
            }
            done = match &policy {
                _ if requested => false,
                None => !responses.is_empty(),
                Some(p) => endorse::satisfied(&cfg, p.as_ref(), &responses),
            };
            if done {
                break;
            }
        }
        let enough = if requested { missing.is_empty() } else { done };
        if !enough {
            tracing::info!(target: LOG, channel = %cid, chaincode = %up.chaincode_name, tx_id = %up.channel_header.tx_id, endorsements = responses.len(), "not enough endorsements");
            return Err(with_details(
                Code::Aborted,
                "failed to collect enough transaction endorsements, see attached details for more info",
                missing,
            ));
        }
        let envelope = endorse::assemble(&up, &responses).map_err(|e| {
            with_details(
                Code::Aborted,
                "failed to assemble transaction",
                vec![self.local_detail(e)],
            )
        })?;
        Ok(EndorseResponse {
            prepared_transaction: Some(envelope),
        })
    }

    async fn do_evaluate(
        &self,
        request: EvaluateRequest,
        remote: &str,
    ) -> Result<EvaluateResponse, Status> {
        let (signed, up, channel) = self.proposal(
            &request.transaction_id,
            &request.channel_id,
            request.proposed_transaction,
        )?;
        let (cid, cfg, mut orgs) = self.orgs_of(&up, &channel);
        if !request.target_organizations.is_empty() {
            orgs.retain(|o| request.target_organizations.contains(&o.msp_id));
            if orgs.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "none of the target organizations {:?} is an application org of channel '{cid}'",
                    request.target_organizations
                )));
            }
        } else {
            orgs.truncate(1);
        }
        let mut details = Vec::new();
        for org in &orgs {
            for target in &org.targets {
                let proposal = Proposed {
                    signed: &signed,
                    unpacked: &up,
                };
                let outcome = self
                    .ask(target, &org.msp_id, &cid, &cfg, proposal, remote)
                    .await?;
                match outcome {
                    Ok(response) => {
                        return Ok(EvaluateResponse {
                            result: response.response,
                        })
                    }
                    Err(Failure::Chaincode(d)) => {
                        let message =
                            format!("evaluate call to endorser returned error: {}", d.message);
                        return Err(error::raw(Code::Unknown, message, vec![d]));
                    }
                    Err(Failure::Unreachable(d)) => details.push(d),
                }
            }
        }
        Err(with_details(
            Code::Unavailable,
            "no peers available to evaluate the transaction",
            details,
        ))
    }

    async fn do_submit(&self, request: SubmitRequest) -> Result<SubmitResponse, Status> {
        let envelope = request
            .prepared_transaction
            .ok_or_else(|| Status::invalid_argument("a prepared transaction is required"))?;
        if envelope.signature.is_empty() {
            return Err(Status::invalid_argument(
                "prepared transaction must be signed",
            ));
        }
        let channel = self.channel(&request.channel_id)?;
        let cfg = channel.config();
        let endpoints = orderer_endpoints(&cfg);
        if endpoints.is_empty() {
            return Err(Status::unavailable(format!(
                "no orderer endpoints in the config of channel '{}'",
                request.channel_id
            )));
        }
        let start = self.next_orderer.fetch_add(1, Ordering::Relaxed);
        let mut details = Vec::new();
        for i in 0..endpoints.len() {
            let address = &endpoints[(start + i) % endpoints.len()];
            let msp = orderer_msp(&cfg, address);
            match self
                .broadcast(&request.channel_id, &cfg, address, &envelope)
                .await
            {
                Ok(()) => return Ok(SubmitResponse {}),
                Err(BroadcastFailure::Refused { status, info }) => {
                    return Err(with_details(
                        Code::Aborted,
                        &format!("received unsuccessful response from orderer: status={status}, info={info}"),
                        vec![detail(address, &msp, format!("status={status}, info={info}"))],
                    ));
                }
                Err(BroadcastFailure::Unavailable(message)) => {
                    tracing::info!(target: LOG, channel = %request.channel_id, orderer = %address, error = %message, "orderer failed; trying the next one");
                    details.push(detail(address, &msp, message));
                }
            }
        }
        Err(with_details(
            Code::Unavailable,
            "no orderers could successfully process the transaction",
            details,
        ))
    }

    async fn broadcast(
        &self,
        channel_id: &str,
        cfg: &ChannelConfig,
        address: &str,
        envelope: &Envelope,
    ) -> Result<(), BroadcastFailure> {
        let key = (
            channel_id.to_owned(),
            address.to_owned(),
            cfg.config.sequence,
        );
        let conns = &self.conns;
        let sent = self.broadcaster.send(
            key,
            || conns.get(Kind::Orderer, channel_id, cfg, address),
            envelope.clone(),
        );
        let answer = match tokio::time::timeout(BROADCAST_TIMEOUT, sent).await {
            Err(_) => {
                return Err(BroadcastFailure::Unavailable(format!(
                    "no answer within {}s",
                    BROADCAST_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(message)) => return Err(BroadcastFailure::Unavailable(message)),
            Ok(Ok(r)) => r,
        };
        let status = FabricStatus::try_from(answer.status).unwrap_or(FabricStatus::Unknown);
        match status {
            FabricStatus::Success => Ok(()),
            FabricStatus::ServiceUnavailable | FabricStatus::InternalServerError => {
                Err(BroadcastFailure::Unavailable(format!(
                    "status={}, info={}",
                    status.as_str_name(),
                    answer.info
                )))
            }
            other => Err(BroadcastFailure::Refused {
                status: other.as_str_name().to_owned(),
                info: answer.info,
            }),
        }
    }

    /// Decodes a signed request naming `identity`, checks that the
    /// identity is valid on `channel`, signed `request`, and satisfies the
    /// channel's Readers policy.
    fn check_reader(
        &self,
        channel: &Channel,
        identity: &[u8],
        request: &[u8],
        signature: &[u8],
    ) -> Result<Identity, Status> {
        let cfg = channel.config();
        let cid = channel.id();
        let denied = |why: String| {
            Status::permission_denied(format!("access denied: channel [{cid}] {why}"))
        };
        if identity.is_empty() {
            return Err(Status::invalid_argument("the request names no identity"));
        }
        let id = cfg.msps.deserialize_identity(identity).map_err(|e| {
            denied(format!(
                "the identity is not a member of the channel's orgs: {e}"
            ))
        })?;
        cfg.msps
            .validate_at(&id, SystemTime::now())
            .map_err(|e| denied(format!("identity of org [{}]: {e}", id.mspid())))?;
        id.verify(request, signature).map_err(|e| {
            denied(format!(
                "identity of org [{}]: the request signature is invalid: {e}",
                id.mspid()
            ))
        })?;
        let policy = cfg
            .policies
            .get_policy(APPLICATION_READERS)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "channel '{cid}' has no policy {APPLICATION_READERS}"
                ))
            })?;
        policy
            .evaluate_identities(std::slice::from_ref(&id))
            .map_err(|e| {
                denied(format!(
                    "the identity does not satisfy {APPLICATION_READERS}: {e}"
                ))
            })?;
        Ok(id)
    }

    async fn do_commit_status(
        &self,
        signed: SignedCommitStatusRequest,
        deadline: Option<Duration>,
    ) -> Result<CommitStatusResponse, Status> {
        let request = CommitStatusRequest::decode(signed.request.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("error unmarshalling CommitStatusRequest: {e}"))
        })?;
        if request.transaction_id.is_empty() {
            return Err(Status::invalid_argument(
                "the request names no transaction_id",
            ));
        }
        let channel = self.support.channel(&request.channel_id).ok_or_else(|| {
            Status::failed_precondition(format!(
                "channel '{}' not found on this peer",
                request.channel_id
            ))
        })?;
        self.check_reader(
            &channel,
            &request.identity,
            &signed.request,
            &signed.signature,
        )?;
        let store = channel.store().clone();
        let lookup = store
            .tx_location_or_wait(&request.transaction_id)
            .map_err(|e| {
                Status::aborted(format!(
                    "looking up transaction {}: {e}",
                    request.transaction_id
                ))
            })?;
        // The channel's store is not needed to wait: drop the references
        // so a closing channel is not held open by waiting calls.
        drop((store, channel));
        // As Fabric's gateway does, answer only once the block's writes are
        // readable on this peer: the committer appends a block before its
        // state commit has finished.
        let savepoint = self
            .support
            .state(&request.channel_id)
            .map(|state| state.subscribe_savepoint());
        let mut shutdown = self.shutdown.clone();
        // Answer DEADLINE_EXCEEDED just before the client's deadline, rather
        // than let the server's timeout cancel the call.
        let expiry = async {
            match deadline {
                Some(d) => tokio::time::sleep(d.saturating_sub(DEADLINE_MARGIN)).await,
                None => std::future::pending().await,
            }
        };
        let answer = async {
            let location = match lookup {
                TxLookup::Stored(location) => location,
                TxLookup::Pending(wait) => wait
                    .await
                    .ok_or_else(|| Status::unavailable("the channel's ledger was closed"))?,
            };
            if let Some(mut savepoint) = savepoint {
                let block = location.block_number;
                savepoint
                    .wait_for(|s| s.is_some_and(|s| s >= block))
                    .await
                    .map_err(|_| Status::unavailable("the channel's ledger was closed"))?;
            }
            Ok(commit_status_of(location))
        };
        tokio::select! {
            answer = answer => answer,
            _ = async { shutdown.wait_for(|s| *s).await.map(drop) } => {
                Err(Status::unavailable("the peer is shutting down"))
            }
            () = expiry => {
                Err(Status::deadline_exceeded(format!(
                    "transaction {} was not committed before the call's deadline",
                    request.transaction_id
                )))
            }
        }
    }
}

/// The answer for a transaction stored at `location`.
fn commit_status_of(location: TxLocation) -> CommitStatusResponse {
    CommitStatusResponse {
        result: i32::from(location.validation_code),
        block_number: location.block_number,
    }
}

/// A proposal as the gateway passes it to an endorser: the signed bytes
/// for a remote peer, and the decoded form this peer's own endorser can
/// use without decoding it again.
#[derive(Clone, Copy)]
struct Proposed<'a> {
    signed: &'a SignedProposal,
    unpacked: &'a UnpackedProposal,
}

/// How long before the client's deadline a waiting call gives up.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// The `grpc-timeout` a client set on a call, if any.
fn grpc_timeout<T>(request: &Request<T>) -> Option<Duration> {
    let text = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Why one orderer did not take a transaction.
enum BroadcastFailure {
    /// Unreachable, timed out or temporarily unable: try another.
    Unavailable(String),
    /// Refused the transaction (4xx): another would refuse it too.
    Refused { status: String, info: String },
}

/// The MSP id of the orderer org listing `address` among its endpoints.
fn orderer_msp(cfg: &ChannelConfig, address: &str) -> String {
    cfg.orderer_orgs
        .values()
        .find(|o| o.endpoints.iter().any(|e| e == address))
        .map(|o| o.msp_id.clone())
        .unwrap_or_default()
}

fn remote_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ChaincodeEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: EndorserSupport> Gateway for GatewayService<S> {
    async fn endorse(
        &self,
        request: Request<EndorseRequest>,
    ) -> Result<Response<EndorseResponse>, Status> {
        let remote = remote_of(&request);
        self.do_endorse(request.into_inner(), &remote)
            .await
            .map(Response::new)
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        self.do_submit(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn commit_status(
        &self,
        request: Request<SignedCommitStatusRequest>,
    ) -> Result<Response<CommitStatusResponse>, Status> {
        let deadline = grpc_timeout(&request);
        self.do_commit_status(request.into_inner(), deadline)
            .await
            .map(Response::new)
    }

    async fn evaluate(
        &self,
        request: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let remote = remote_of(&request);
        self.do_evaluate(request.into_inner(), &remote)
            .await
            .map(Response::new)
    }

    type ChaincodeEventsStream = EventStream;

    async fn chaincode_events(
        &self,
        request: Request<SignedChaincodeEventsRequest>,
    ) -> Result<Response<Self::ChaincodeEventsStream>, Status> {
        let signed = request.into_inner();
        let stream = events::open(self, signed)?;
        Ok(Response::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let with = |v: &str| {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert("grpc-timeout", v.parse().unwrap_or_else(|_| unreachable!()));
            grpc_timeout(&r)
        };
        assert_eq!(with("2S"), Some(Duration::from_secs(2)));
        assert_eq!(with("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(with("3M"), Some(Duration::from_secs(180)));
        assert_eq!(with("10u"), Some(Duration::from_micros(10)));
        assert_eq!(with("x"), None);
        assert_eq!(with("5Q"), None);
        assert_eq!(grpc_timeout(&Request::new(())), None);
    }
}
