//! Collecting endorsements for `Endorse` (and running `Evaluate`): the
//! endorsement plan, remote endorsers and the transaction the client signs.
//!
//! The plan: the local peer endorses first (unless the client named
//! endorsing organizations without the local one); while the collected
//! endorsers do not satisfy the chaincode's endorsement policy, the next
//! organization of the channel is asked, trying its peers (its
//! `AnchorPeers` in the channel config) one after the other until one
//! answers. A chaincode error from any endorser ends the call (it would
//! answer the same elsewhere); a peer that cannot be reached, or refuses
//! the proposal, is recorded and the next peer of that org tried.

use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use twill_configtx::channel::ChannelConfig;
use twill_msp::Identity;
use twill_policy::Policy;
use twill_protos::common::Envelope;
use twill_protos::gateway::ErrorDetail;
use twill_protos::peer::endorser_client::EndorserClient;
use twill_protos::peer::{Endorsement, ProposalResponse, SignedProposal};

use super::conn::{Connections, Kind};
use super::error::detail;
use crate::endorser::UnpackedProposal;

/// How long a remote endorser may take (the chaincode execution timeout
/// plus margin).
pub const REMOTE_ENDORSE_TIMEOUT: Duration = Duration::from_secs(35);

/// One endorser the gateway may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This peer, in process.
    Local,
    /// Another peer, at `host:port`.
    Remote(String),
}

/// An org and the peers the gateway knows for it, local peer first.
#[derive(Debug, Clone)]
pub struct OrgPeers {
    /// MSP id.
    pub msp_id: String,
    /// Where to ask, in order.
    pub targets: Vec<Target>,
}

/// The channel's application orgs with their peers: `local_msp` first
/// (this peer, then its other anchor peers), then the others in config
/// order. `is_self` tells whether an anchor-peer address is this peer.
pub fn org_peers(
    cfg: &ChannelConfig,
    local_msp: &str,
    is_self: &dyn Fn(&str) -> bool,
) -> Vec<OrgPeers> {
    let mut out = Vec::new();
    let mut local = OrgPeers {
        msp_id: local_msp.to_owned(),
        targets: vec![Target::Local],
    };
    for org in cfg.application_orgs.values() {
        let remotes = org
            .anchor_peers
            .iter()
            .map(|(host, port)| format!("{host}:{port}"))
            .filter(|a| !is_self(a))
            .map(Target::Remote);
        if org.msp_id == local_msp {
            local.targets.extend(remotes);
        } else {
            out.push(OrgPeers {
                msp_id: org.msp_id.clone(),
                targets: remotes.collect(),
            });
        }
    }
    out.insert(0, local);
    out
}

/// Why one endorser did not endorse.
#[derive(Debug)]
pub enum Failure {
    /// The chaincode (or the peer's checks before it) answered with an
    /// error status: asking another peer would not help.
    Chaincode(ErrorDetail),
    /// The peer could not be reached or refused the call: another peer of
    /// the org may do.
    Unreachable(ErrorDetail),
}

/// Asks remote peer `address` of `msp_id` to endorse `signed`.
pub async fn endorse_remote(
    conns: &Connections,
    channel_id: &str,
    cfg: &ChannelConfig,
    address: &str,
    msp_id: &str,
    signed: &SignedProposal,
) -> Result<ProposalResponse, Failure> {
    let channel = conns
        .get(Kind::Peer, channel_id, cfg, address)
        .map_err(|e| Failure::Unreachable(detail(address, msp_id, e)))?;
    let mut client = twill_comm::with_message_limits!(EndorserClient::new(channel));
    let mut request = tonic::Request::new(signed.clone());
    request.set_timeout(REMOTE_ENDORSE_TIMEOUT);
    let response = match tokio::time::timeout(
        REMOTE_ENDORSE_TIMEOUT,
        client.process_proposal(request),
    )
    .await
    {
        Err(_) => {
            return Err(Failure::Unreachable(detail(
                address,
                msp_id,
                format!("no answer within {}s", REMOTE_ENDORSE_TIMEOUT.as_secs()),
            )))
        }
        Ok(Err(status)) => {
            let message = match status.code() {
                Code::Unavailable => format!("peer unavailable: {}", status.message()),
                code => format!("rpc error: code = {code:?} desc = {}", status.message()),
            };
            return Err(Failure::Unreachable(detail(address, msp_id, message)));
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    check_response(response, address, msp_id)
}

/// An endorsed response, or the chaincode failure it reports.
pub fn check_response(
    response: ProposalResponse,
    address: &str,
    msp_id: &str,
) -> Result<ProposalResponse, Failure> {
    let (status, message) = response
        .response
        .as_ref()
        .map(|r| (r.status, r.message.clone()))
        .unwrap_or((500, "the proposal response carries no response".into()));
    if status >= 400 || response.endorsement.is_none() {
        return Err(Failure::Chaincode(detail(
            address,
            msp_id,
            format!("chaincode response {status}, {message}"),
        )));
    }
    Ok(response)
}

/// True if the endorsers of `responses` satisfy `policy`.
pub fn satisfied(cfg: &ChannelConfig, policy: &dyn Policy, responses: &[ProposalResponse]) -> bool {
    let ids: Vec<Identity> = responses
        .iter()
        .filter_map(|r| r.endorsement.as_ref())
        .filter_map(|e| cfg.msps.deserialize_identity(&e.endorser).ok())
        .collect();
    policy.evaluate_identities(&ids).is_ok()
}

/// The unsigned transaction envelope carrying `responses`' endorsements
/// for proposal `up` (the bytes the client signs and submits). All
/// responses must carry the same `ProposalResponsePayload`.
pub fn assemble(up: &UnpackedProposal, responses: &[ProposalResponse]) -> Result<Envelope, String> {
    let first = responses
        .first()
        .ok_or("no endorsements to assemble a transaction from")?;
    if let Some(other) = responses.iter().find(|r| r.payload != first.payload) {
        let who = other
            .endorsement
            .as_ref()
            .and_then(|e| twill_msp::deserialize_serialized_identity(&e.endorser).ok())
            .map(|(msp, _)| msp)
            .unwrap_or_default();
        return Err(format!(
            "ProposalResponsePayloads do not match: the endorsement of {who} differs from the first one (the chaincode is not deterministic, or the peers' states differ)"
        ));
    }
    let endorsements: Vec<Endorsement> = responses
        .iter()
        .filter_map(|r| r.endorsement.clone())
        .collect();
    let payload = twill_configtx::block::endorser_transaction_payload(
        &up.proposal,
        first.payload.clone(),
        endorsements,
    )
    .map_err(|e| format!("error unmarshalling the proposal: {e}"))?;
    Ok(Envelope {
        payload,
        signature: Vec::new(),
    })
}

/// The policy a chaincode's endorsements must meet, or `None` when one
/// endorsement by this peer is all that is asked (system chaincodes).
pub type PlanPolicy = Option<Arc<dyn Policy>>;
