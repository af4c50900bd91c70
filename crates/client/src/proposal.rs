//! The life of a transaction: [`Proposal`] → (endorse) → [`Transaction`] →
//! (submit) → [`SubmittedTransaction`] / [`Commit`] → [`Status`].
//!
//! Each step can be signed offline: `bytes()` is a serialized form another
//! process can hold, `digest()` is what to sign, and the gateway's
//! `new_signed_*` functions rebuild the step from the two. The serialized
//! forms are the gateway package's client-side containers —
//! `ProposedTransaction`, `PreparedTransaction` and
//! `SignedCommitStatusRequest` — as Fabric's clients use.

use std::collections::BTreeMap;

use prost::Message;
use twill_protos::common::{ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader};
use twill_protos::gateway::{
    CommitStatusRequest, EndorseRequest, EvaluateRequest, PreparedTransaction, ProposedTransaction,
    SignedCommitStatusRequest, SubmitRequest,
};
use twill_protos::peer::{
    chaincode_spec, ChaincodeAction, ChaincodeActionPayload, ChaincodeHeaderExtension, ChaincodeId,
    ChaincodeInput, ChaincodeInvocationSpec, ChaincodeProposalPayload, ChaincodeSpec,
    Proposal as ProposalMessage, ProposalResponsePayload, SignedProposal,
    Transaction as TransactionMessage, TxValidationCode,
};

use crate::error::{CommitError, Error, GatewayError, Result};
use crate::gateway::{request, with_deadline, Gateway};

/// Length of a proposal nonce, as Fabric's clients use.
pub const NONCE_LEN: usize = 24;

/// What a proposal carries besides the function name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProposalOptions {
    pub(crate) arguments: Vec<Vec<u8>>,
    pub(crate) transient: BTreeMap<String, Vec<u8>>,
    pub(crate) endorsing_organizations: Vec<String>,
}

impl ProposalOptions {
    /// No arguments, no transient data, endorsers chosen by the gateway.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one argument (bytes passed through unchanged).
    pub fn argument(mut self, arg: impl AsRef<[u8]>) -> Self {
        self.arguments.push(arg.as_ref().to_vec());
        self
    }

    /// Appends arguments.
    pub fn arguments<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        self.arguments
            .extend(args.into_iter().map(|a| a.as_ref().to_vec()));
        self
    }

    /// Appends string arguments (UTF-8).
    pub fn string_arguments(self, args: &[&str]) -> Self {
        self.arguments(args.iter().map(|a| a.as_bytes()))
    }

    /// Adds transient data: passed to the endorsing chaincode, never
    /// written to the transaction.
    pub fn transient(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.transient.insert(key.into(), value.into());
        self
    }

    /// The organizations (MSP ids) that must endorse, overriding the
    /// gateway's choice; for `evaluate`, the organizations to ask.
    pub fn endorsing_organizations<I, S>(mut self, orgs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endorsing_organizations = orgs.into_iter().map(Into::into).collect();
        self
    }
}

/// An unsigned proposal and its transaction id.
pub(crate) struct Built {
    pub(crate) transaction_id: String,
    pub(crate) proposal_bytes: Vec<u8>,
}

/// Builds a proposal exactly as Fabric's gateway clients do: an
/// ENDORSER_TRANSACTION header with a fresh 24-byte nonce, the tx id as hex
/// of SHA-256(nonce ‖ creator), a chaincode id holding only the name, and
/// the function name followed by the arguments as the chaincode input.
pub(crate) fn build(
    identity: &crate::Identity,
    channel: &str,
    chaincode: &str,
    function: Vec<u8>,
    arguments: Vec<Vec<u8>>,
    transient: BTreeMap<String, Vec<u8>>,
) -> Built {
    let creator = identity.serialize();
    let nonce = twill_crypto::random_bytes(NONCE_LEN);
    let transaction_id = twill_configtx::block::compute_tx_id(&nonce, &creator);
    let chaincode_id = ChaincodeId {
        name: chaincode.to_owned(),
        ..Default::default()
    };
    let channel_header = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        version: 0,
        timestamp: Some(twill_configtx::block::now_timestamp()),
        channel_id: channel.to_owned(),
        tx_id: transaction_id.clone(),
        epoch: 0,
        extension: ChaincodeHeaderExtension {
            chaincode_id: Some(chaincode_id.clone()),
        }
        .encode_to_vec(),
        tls_cert_hash: Vec::new(),
    };
    let mut args = Vec::with_capacity(arguments.len() + 1);
    args.push(function);
    args.extend(arguments);
    let invocation = ChaincodeInvocationSpec {
        chaincode_spec: Some(ChaincodeSpec {
            r#type: chaincode_spec::Type::Node as i32,
            chaincode_id: Some(chaincode_id),
            input: Some(ChaincodeInput {
                args,
                decorations: BTreeMap::new(),
                is_init: false,
            }),
            timeout: 0,
        }),
    };
    let proposal = ProposalMessage {
        header: Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: SignatureHeader { creator, nonce }.encode_to_vec(),
        }
        .encode_to_vec(),
        payload: ChaincodeProposalPayload {
            input: invocation.encode_to_vec(),
            transient_map: transient,
        }
        .encode_to_vec(),
        extension: Vec::new(),
    };
    Built {
        transaction_id,
        proposal_bytes: proposal.encode_to_vec(),
    }
}

/// A transaction proposal, ready to evaluate or endorse.
#[derive(Clone)]
pub struct Proposal {
    gateway: Gateway,
    channel: String,
    transaction_id: String,
    signed: SignedProposal,
    endorsing_organizations: Vec<String>,
}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposal")
            .field("channel", &self.channel)
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

impl Proposal {
    pub(crate) fn new(
        gateway: Gateway,
        channel: String,
        transaction_id: String,
        proposal_bytes: Vec<u8>,
        signature: Vec<u8>,
        endorsing_organizations: Vec<String>,
    ) -> Self {
        Proposal {
            gateway,
            channel,
            transaction_id,
            signed: SignedProposal {
                proposal_bytes,
                signature,
            },
            endorsing_organizations,
        }
    }

    /// Rebuilds a proposal from [`Proposal::bytes`], with `signature`
    /// replacing whatever signature it had.
    pub(crate) fn from_bytes(
        gateway: Gateway,
        bytes: &[u8],
        signature: Option<Vec<u8>>,
    ) -> Result<Self> {
        let proposed = ProposedTransaction::decode(bytes)
            .map_err(|e| Error::malformed("gateway.ProposedTransaction", e))?;
        let mut signed = proposed
            .proposal
            .ok_or_else(|| Error::malformed("gateway.ProposedTransaction", "no proposal"))?;
        if let Some(signature) = signature {
            signed.signature = signature;
        }
        let proposal = ProposalMessage::decode(signed.proposal_bytes.as_slice())
            .map_err(|e| Error::malformed("protos.Proposal", e))?;
        let header = Header::decode(proposal.header.as_slice())
            .map_err(|e| Error::malformed("common.Header", e))?;
        let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
            .map_err(|e| Error::malformed("common.ChannelHeader", e))?;
        if channel_header.tx_id != proposed.transaction_id {
            return Err(Error::malformed(
                "gateway.ProposedTransaction",
                "transaction id differs from the proposal's",
            ));
        }
        Ok(Proposal {
            gateway,
            channel: channel_header.channel_id,
            transaction_id: proposed.transaction_id,
            signed,
            endorsing_organizations: proposed.endorsing_organizations,
        })
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> &str {
        &self.transaction_id
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The serialized `gateway.ProposedTransaction`, to hand to an offline
    /// signer together with [`Proposal::digest`].
    pub fn bytes(&self) -> Vec<u8> {
        ProposedTransaction {
            transaction_id: self.transaction_id.clone(),
            proposal: Some(self.signed.clone()),
            endorsing_organizations: self.endorsing_organizations.clone(),
        }
        .encode_to_vec()
    }

    /// SHA-256 of the proposal bytes: what the creator signs.
    pub fn digest(&self) -> Vec<u8> {
        twill_crypto::sha256(&self.signed.proposal_bytes).to_vec()
    }

    /// The proposal as sent to the gateway (its signature is empty until
    /// signed).
    pub fn signed_proposal(&self) -> &SignedProposal {
        &self.signed
    }

    /// The organizations asked to endorse (empty: the gateway chooses).
    pub fn endorsing_organizations(&self) -> &[String] {
        &self.endorsing_organizations
    }

    fn ready(&self) -> Result<SignedProposal> {
        let mut signed = self.signed.clone();
        if signed.signature.is_empty() {
            signed.signature = self.gateway.sign("proposal", &signed.proposal_bytes)?;
        }
        Ok(signed)
    }

    /// Runs the proposal on one peer without ordering it; returns the
    /// chaincode's result.
    pub async fn evaluate(&self) -> Result<Vec<u8>> {
        let signed = self.ready()?;
        let message = EvaluateRequest {
            transaction_id: self.transaction_id.clone(),
            channel_id: self.channel.clone(),
            proposed_transaction: Some(signed),
            target_organizations: self.endorsing_organizations.clone(),
        };
        let timeout = self.gateway.inner.timeouts.evaluate;
        let mut client = self.gateway.inner.client.clone();
        let response = with_deadline(timeout, client.evaluate(request(message, timeout)))
            .await
            .map_err(|s| Error::Evaluate {
                transaction_id: self.transaction_id.clone(),
                source: GatewayError::from_status(&s),
            })?;
        Ok(response.result.map(|r| r.payload).unwrap_or_default())
    }

    /// Has the proposal endorsed; returns the transaction to submit.
    pub async fn endorse(&self) -> Result<Transaction> {
        let signed = self.ready()?;
        let message = EndorseRequest {
            transaction_id: self.transaction_id.clone(),
            channel_id: self.channel.clone(),
            proposed_transaction: Some(signed),
            endorsing_organizations: self.endorsing_organizations.clone(),
        };
        let timeout = self.gateway.inner.timeouts.endorse;
        let mut client = self.gateway.inner.client.clone();
        let response = with_deadline(timeout, client.endorse(request(message, timeout)))
            .await
            .map_err(|s| Error::Endorse {
                transaction_id: self.transaction_id.clone(),
                source: GatewayError::from_status(&s),
            })?;
        let envelope = response.prepared_transaction.ok_or_else(|| {
            Error::malformed("gateway.EndorseResponse", "no prepared transaction")
        })?;
        Transaction::from_envelope(self.gateway.clone(), self.transaction_id.clone(), envelope)
    }
}

/// An endorsed transaction, ready to sign and submit.
#[derive(Clone)]
pub struct Transaction {
    gateway: Gateway,
    channel: String,
    transaction_id: String,
    envelope: Envelope,
    result: Vec<u8>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("channel", &self.channel)
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

impl Transaction {
    fn from_envelope(gateway: Gateway, transaction_id: String, envelope: Envelope) -> Result<Self> {
        let (channel, result) = parse_prepared(&envelope)?;
        Ok(Transaction {
            gateway,
            channel,
            transaction_id,
            envelope,
            result,
        })
    }

    pub(crate) fn from_bytes(
        gateway: Gateway,
        bytes: &[u8],
        signature: Option<Vec<u8>>,
    ) -> Result<Self> {
        let prepared = PreparedTransaction::decode(bytes)
            .map_err(|e| Error::malformed("gateway.PreparedTransaction", e))?;
        let mut envelope = prepared
            .envelope
            .ok_or_else(|| Error::malformed("gateway.PreparedTransaction", "no envelope"))?;
        if let Some(signature) = signature {
            envelope.signature = signature;
        }
        Self::from_envelope(gateway, prepared.transaction_id, envelope)
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> &str {
        &self.transaction_id
    }

    /// The channel, as the endorsed transaction names it.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The chaincode's result, as endorsed.
    pub fn result(&self) -> &[u8] {
        &self.result
    }

    /// The serialized `gateway.PreparedTransaction`, for offline signing.
    pub fn bytes(&self) -> Vec<u8> {
        PreparedTransaction {
            transaction_id: self.transaction_id.clone(),
            envelope: Some(self.envelope.clone()),
        }
        .encode_to_vec()
    }

    /// SHA-256 of the envelope payload: what the creator signs.
    pub fn digest(&self) -> Vec<u8> {
        twill_crypto::sha256(&self.envelope.payload).to_vec()
    }

    /// The transaction envelope (its signature is empty until signed).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Sends the signed transaction to be ordered; returns once the
    /// orderer accepted it.
    pub async fn submit(&self) -> Result<SubmittedTransaction> {
        let mut envelope = self.envelope.clone();
        if envelope.signature.is_empty() {
            envelope.signature = self.gateway.sign("transaction", &envelope.payload)?;
        }
        let transaction_id = self.transaction_id.clone();
        let message = SubmitRequest {
            transaction_id: transaction_id.clone(),
            channel_id: self.channel.clone(),
            prepared_transaction: Some(envelope),
        };
        let timeout = self.gateway.inner.timeouts.submit;
        let mut client = self.gateway.inner.client.clone();
        with_deadline(timeout, client.submit(request(message, timeout)))
            .await
            .map_err(|s| Error::Submit {
                transaction_id: transaction_id.clone(),
                source: GatewayError::from_status(&s),
            })?;
        let commit = self.gateway.commit_for(&self.channel, &transaction_id)?;
        Ok(SubmittedTransaction {
            result: self.result.clone(),
            commit,
        })
    }
}

/// The channel and the chaincode result of an endorsed envelope: the
/// result is the response payload of the first action that has one.
fn parse_prepared(envelope: &Envelope) -> Result<(String, Vec<u8>)> {
    let payload = Payload::decode(envelope.payload.as_slice())
        .map_err(|e| Error::malformed("common.Payload", e))?;
    let header = payload
        .header
        .ok_or_else(|| Error::malformed("common.Payload", "no header"))?;
    let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| Error::malformed("common.ChannelHeader", e))?;
    let transaction = TransactionMessage::decode(payload.data.as_slice())
        .map_err(|e| Error::malformed("protos.Transaction", e))?;
    for action in &transaction.actions {
        let Ok(cap) = ChaincodeActionPayload::decode(action.payload.as_slice()) else {
            continue;
        };
        let Some(endorsed) = cap.action else {
            continue;
        };
        let Ok(prp) =
            ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
        else {
            continue;
        };
        let Ok(chaincode_action) = ChaincodeAction::decode(prp.extension.as_slice()) else {
            continue;
        };
        if let Some(response) = chaincode_action.response {
            return Ok((channel_header.channel_id, response.payload));
        }
    }
    Err(Error::malformed(
        "prepared transaction",
        "no proposal response found",
    ))
}

/// A transaction accepted for ordering: its result and a handle to wait
/// for its commit.
#[derive(Debug, Clone)]
pub struct SubmittedTransaction {
    result: Vec<u8>,
    commit: Commit,
}

impl SubmittedTransaction {
    /// The chaincode's result.
    pub fn result(&self) -> &[u8] {
        &self.result
    }

    /// The result, consuming the handle.
    pub fn into_result(self) -> Vec<u8> {
        self.result
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> &str {
        self.commit.transaction_id()
    }

    /// The commit status handle (e.g. to sign it offline).
    pub fn commit(&self) -> &Commit {
        &self.commit
    }

    /// Waits for the commit; see [`Commit::status`].
    pub async fn status(&self) -> Result<Status> {
        self.commit.status().await
    }
}

/// A request for a transaction's commit status.
#[derive(Clone)]
pub struct Commit {
    gateway: Gateway,
    transaction_id: String,
    signed: SignedCommitStatusRequest,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit")
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

impl Commit {
    pub(crate) fn new(
        gateway: Gateway,
        transaction_id: String,
        signed: SignedCommitStatusRequest,
    ) -> Self {
        Commit {
            gateway,
            transaction_id,
            signed,
        }
    }

    pub(crate) fn from_bytes(
        gateway: Gateway,
        bytes: &[u8],
        signature: Option<Vec<u8>>,
    ) -> Result<Self> {
        let mut signed = SignedCommitStatusRequest::decode(bytes)
            .map_err(|e| Error::malformed("gateway.SignedCommitStatusRequest", e))?;
        let request = CommitStatusRequest::decode(signed.request.as_slice())
            .map_err(|e| Error::malformed("gateway.CommitStatusRequest", e))?;
        if let Some(signature) = signature {
            signed.signature = signature;
        }
        Ok(Commit::new(gateway, request.transaction_id, signed))
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> &str {
        &self.transaction_id
    }

    /// The serialized `gateway.SignedCommitStatusRequest`, for offline
    /// signing.
    pub fn bytes(&self) -> Vec<u8> {
        self.signed.encode_to_vec()
    }

    /// SHA-256 of the request bytes: what the client signs.
    pub fn digest(&self) -> Vec<u8> {
        twill_crypto::sha256(&self.signed.request).to_vec()
    }

    /// Waits until the transaction is committed and returns its status
    /// (which may be a validation failure; see [`Status::check`]).
    pub async fn status(&self) -> Result<Status> {
        let mut signed = self.signed.clone();
        if signed.signature.is_empty() {
            signed.signature = self
                .gateway
                .sign("commit status request", &signed.request)?;
        }
        let timeout = self.gateway.inner.timeouts.commit_status;
        let mut client = self.gateway.inner.client.clone();
        let response = with_deadline(timeout, client.commit_status(request(signed, timeout)))
            .await
            .map_err(|s| Error::CommitStatus {
                transaction_id: self.transaction_id.clone(),
                source: GatewayError::from_status(&s),
            })?;
        Ok(Status {
            transaction_id: self.transaction_id.clone(),
            code: response.result,
            block_number: response.block_number,
        })
    }
}

/// How a transaction was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The transaction id.
    pub transaction_id: String,
    /// The raw `protos.TxValidationCode` (0 is VALID).
    pub code: i32,
    /// The block holding the transaction.
    pub block_number: u64,
}

impl Status {
    /// Whether the transaction is VALID (its writes are in the ledger).
    pub fn successful(&self) -> bool {
        self.code == TxValidationCode::Valid as i32
    }

    /// The validation code, if it is one Fabric defines.
    pub fn validation_code(&self) -> Option<TxValidationCode> {
        TxValidationCode::try_from(self.code).ok()
    }

    /// `Ok` if VALID, else the [`CommitError`].
    pub fn check(&self) -> Result<(), CommitError> {
        if self.successful() {
            Ok(())
        } else {
            Err(CommitError {
                transaction_id: self.transaction_id.clone(),
                code: self.code,
                block_number: self.block_number,
            })
        }
    }
}
