//! The connection to a gateway peer and the handles derived from it:
//! [`Gateway`] → [`Network`] (a channel) → [`Contract`] (a chaincode).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tonic::transport::Channel;
use twill_comm::ClientTls;
use twill_protos::common::{Envelope, Payload};
use twill_protos::gateway::gateway_client::GatewayClient;
use twill_protos::gateway::{
    self as gw, CommitStatusRequest, SignedChaincodeEventsRequest, SignedCommitStatusRequest,
};
use twill_protos::peer::deliver_client::DeliverClient;

use crate::error::{Error, Result};
use crate::events::{self, BlockEventsRequest, ChaincodeEventsRequest, EventsOptions};
use crate::identity::{Identity, Signer};
use crate::profile::ConnectionProfile;
use crate::proposal::{self, Commit, Proposal, ProposalOptions, SubmittedTransaction, Transaction};

/// Default deadline of `Evaluate` calls.
pub const DEFAULT_EVALUATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of `Endorse` calls.
pub const DEFAULT_ENDORSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default deadline of `Submit` calls.
pub const DEFAULT_SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of `CommitStatus` calls (they wait for the commit).
pub const DEFAULT_COMMIT_STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// Deadlines of the gateway's unary calls; `None` waits forever.
///
/// Each deadline is sent to the server as `grpc-timeout` and enforced on
/// the client too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `Evaluate`.
    pub evaluate: Option<Duration>,
    /// `Endorse`.
    pub endorse: Option<Duration>,
    /// `Submit`.
    pub submit: Option<Duration>,
    /// `CommitStatus`.
    pub commit_status: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            evaluate: Some(DEFAULT_EVALUATE_TIMEOUT),
            endorse: Some(DEFAULT_ENDORSE_TIMEOUT),
            submit: Some(DEFAULT_SUBMIT_TIMEOUT),
            commit_status: Some(DEFAULT_COMMIT_STATUS_TIMEOUT),
        }
    }
}

/// Where the gateway peer listens and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    address: String,
    tls: Option<ClientTls>,
    client_cert_pem: Option<Vec<u8>>,
}

impl Endpoint {
    /// A peer at `address` (`host:port`) in plain text (`grpc://`).
    pub fn plaintext(address: impl Into<String>) -> Self {
        Endpoint {
            address: address.into(),
            tls: None,
            client_cert_pem: None,
        }
    }

    /// A peer at `address` over TLS, trusting the CA certificates in
    /// `ca_pem`.
    pub fn tls(address: impl Into<String>, ca_pem: impl Into<Vec<u8>>) -> Self {
        Endpoint {
            address: address.into(),
            tls: Some(ClientTls::new(vec![ca_pem.into()])),
            client_cert_pem: None,
        }
    }

    /// A peer at `address` over TLS, trusting the CA certificates in the
    /// PEM file `ca_file`.
    pub fn tls_ca_file(address: impl Into<String>, ca_file: impl AsRef<Path>) -> Result<Self> {
        let path = ca_file.as_ref();
        let pem = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Endpoint::tls(address, pem))
    }

    /// Verifies the peer's TLS certificate against `name` instead of the
    /// dialed host (the profile's `ssl-target-name-override`). No effect
    /// in plain text.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.tls = self.tls.map(|t| t.with_server_name(name));
        self
    }

    /// Presents a client certificate (mutual TLS). No effect in plain text.
    pub fn client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        if let Some(tls) = self.tls.take() {
            let cert_pem = cert_pem.into();
            self.client_cert_pem = Some(cert_pem.clone());
            self.tls = Some(tls.with_identity(cert_pem, key_pem));
        }
        self
    }

    /// [`Endpoint::client_identity`] from PEM files.
    pub fn client_identity_files(
        self,
        cert_file: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<Self> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let cert = read(cert_file.as_ref())?;
        let key = read(key_file.as_ref())?;
        Ok(self.client_identity(cert, key))
    }

    /// The `host:port` dialed.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether TLS is used.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Builds a [`Gateway`]; see [`Gateway::builder`].
#[derive(Default)]
pub struct GatewayBuilder {
    identity: Option<Identity>,
    signer: Option<Arc<dyn Signer>>,
    endpoint: Option<Endpoint>,
    channel: Option<Channel>,
    timeouts: Timeouts,
    tls_cert_hash: Option<Vec<u8>>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("identity", &self.identity)
            .field("has_signer", &self.signer.is_some())
            .field("endpoint", &self.endpoint)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// The client identity (required).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The signer. Without one, every message must be signed offline.
    pub fn signer(mut self, signer: impl Signer + 'static) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }

    /// A shared signer.
    pub fn shared_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The gateway peer to dial.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// An already configured tonic channel, instead of an endpoint (to share
    /// one connection between gateways, or to use custom transport
    /// settings).
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }

    /// All call deadlines at once.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Deadline of `Evaluate` calls.
    pub fn evaluate_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.evaluate = Some(timeout);
        self
    }

    /// Deadline of `Endorse` calls.
    pub fn endorse_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.endorse = Some(timeout);
        self
    }

    /// Deadline of `Submit` calls.
    pub fn submit_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.submit = Some(timeout);
        self
    }

    /// Deadline of `CommitStatus` calls.
    pub fn commit_status_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.commit_status = Some(timeout);
        self
    }

    /// The SHA-256 of the client's TLS certificate (DER), put in block
    /// event requests for peers that bind Deliver requests to the mutual
    /// TLS identity. Set automatically from the endpoint's client
    /// certificate; this overrides it.
    pub fn tls_client_certificate_hash(mut self, hash: impl Into<Vec<u8>>) -> Self {
        self.tls_cert_hash = Some(hash.into());
        self
    }

    /// Creates the gateway. The connection is made on first use and remade
    /// after failures, so this makes no network call; it checks the
    /// address and the TLS material.
    pub async fn connect(self) -> Result<Gateway> {
        let identity = self.identity.ok_or(Error::Builder {
            missing: "identity",
        })?;
        let mut tls_cert_hash = self.tls_cert_hash;
        let channel = match (self.channel, self.endpoint) {
            (Some(channel), _) => channel,
            (None, Some(endpoint)) => {
                if let Some(tls) = &endpoint.tls {
                    tls.validate()?;
                }
                if tls_cert_hash.is_none() {
                    tls_cert_hash = endpoint.client_cert_pem.as_deref().and_then(cert_hash);
                }
                twill_comm::connect_lazy(&endpoint.address, endpoint.tls.as_ref())?
            }
            (None, None) => {
                return Err(Error::Builder {
                    missing: "endpoint or channel",
                })
            }
        };
        let client = twill_comm::with_message_limits!(GatewayClient::new(channel.clone()));
        let deliver = twill_comm::with_message_limits!(DeliverClient::new(channel));
        Ok(Gateway {
            inner: Arc::new(Inner {
                client,
                deliver,
                identity,
                signer: self.signer,
                timeouts: self.timeouts,
                tls_cert_hash,
            }),
        })
    }
}

/// SHA-256 of the first certificate (DER) in `cert_pem`.
fn cert_hash(cert_pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(cert_pem).ok()?;
    let blocks = twill_crypto::pem::parse_pem_blocks(text).ok()?;
    let (_, der) = blocks
        .into_iter()
        .find(|(label, _)| label == "CERTIFICATE")?;
    Some(twill_crypto::sha256(&der).to_vec())
}

pub(crate) struct Inner {
    pub(crate) client: GatewayClient<Channel>,
    pub(crate) deliver: DeliverClient<Channel>,
    pub(crate) identity: Identity,
    pub(crate) signer: Option<Arc<dyn Signer>>,
    pub(crate) timeouts: Timeouts,
    pub(crate) tls_cert_hash: Option<Vec<u8>>,
}

/// A connection to a gateway peer, with the identity that signs through it.
///
/// Cheap to clone; clones share the connection. All transactions go
/// through this one peer, which endorses with the other organizations'
/// peers and talks to the orderers on the client's behalf.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("identity", &self.inner.identity)
            .field("has_signer", &self.inner.signer.is_some())
            .field("timeouts", &self.inner.timeouts)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts building a gateway connection.
    ///
    /// ```no_run
    /// # async fn demo() -> twill_client::Result<()> {
    /// use twill_client::{identity, Endpoint, Gateway};
    ///
    /// let (id, signer) = identity::from_msp_dir("users/User1@org1.example.com/msp", "Org1MSP")?;
    /// let gateway = Gateway::builder()
    ///     .identity(id)
    ///     .signer(signer)
    ///     .endpoint(Endpoint::tls_ca_file("localhost:7051", "tlsca.pem")?.server_name("peer0.org1.example.com"))
    ///     .connect()
    ///     .await?;
    /// let contract = gateway.network("mychannel").contract("basic");
    /// let asset = contract.evaluate("ReadAsset", &["asset1"]).await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// Connects as the user whose MSP folder is `msp_dir` to the first
    /// peer of the client organization of the connection profile at
    /// `profile` (JSON or YAML); the MSP id is the organization's.
    pub async fn from_profile(
        profile: impl AsRef<Path>,
        msp_dir: impl AsRef<Path>,
    ) -> Result<Self> {
        let profile = ConnectionProfile::from_file(profile)?;
        let peer = profile.peer(None, None)?;
        let (identity, signer) = crate::identity::from_msp_dir(msp_dir, &peer.msp_id)?;
        Gateway::builder()
            .identity(identity)
            .signer(signer)
            .endpoint(peer.endpoint()?)
            .connect()
            .await
    }

    /// The client identity.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The call deadlines.
    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// The channel `name`.
    pub fn network(&self, name: impl Into<String>) -> Network {
        Network {
            gateway: self.clone(),
            name: name.into(),
        }
    }

    /// A proposal signed offline: `bytes` from [`Proposal::bytes`] and the
    /// signature of [`Proposal::digest`].
    pub fn new_signed_proposal(&self, bytes: &[u8], signature: Vec<u8>) -> Result<Proposal> {
        Proposal::from_bytes(self.clone(), bytes, Some(signature))
    }

    /// A transaction signed offline: `bytes` from [`Transaction::bytes`]
    /// and the signature of [`Transaction::digest`].
    pub fn new_signed_transaction(&self, bytes: &[u8], signature: Vec<u8>) -> Result<Transaction> {
        Transaction::from_bytes(self.clone(), bytes, Some(signature))
    }

    /// A commit status request signed offline: `bytes` from
    /// [`Commit::bytes`] and the signature of [`Commit::digest`].
    pub fn new_signed_commit(&self, bytes: &[u8], signature: Vec<u8>) -> Result<Commit> {
        Commit::from_bytes(self.clone(), bytes, Some(signature))
    }

    /// A chaincode events request signed offline.
    pub fn new_signed_chaincode_events_request(
        &self,
        bytes: &[u8],
        signature: Vec<u8>,
    ) -> Result<ChaincodeEventsRequest> {
        let mut signed = SignedChaincodeEventsRequest::decode(bytes)
            .map_err(|e| Error::malformed("gateway.SignedChaincodeEventsRequest", e))?;
        gw::ChaincodeEventsRequest::decode(signed.request.as_slice())
            .map_err(|e| Error::malformed("gateway.ChaincodeEventsRequest", e))?;
        signed.signature = signature;
        Ok(ChaincodeEventsRequest::new(self.clone(), signed))
    }

    /// A block events request signed offline.
    pub fn new_signed_block_events_request(
        &self,
        bytes: &[u8],
        signature: Vec<u8>,
    ) -> Result<BlockEventsRequest> {
        let mut envelope =
            Envelope::decode(bytes).map_err(|e| Error::malformed("common.Envelope", e))?;
        Payload::decode(envelope.payload.as_slice())
            .map_err(|e| Error::malformed("common.Payload", e))?;
        envelope.signature = signature;
        Ok(BlockEventsRequest::new(self.clone(), envelope))
    }

    /// Signs `message` with the gateway's signer, or fails with
    /// [`Error::Unsigned`] naming `what`.
    pub(crate) fn sign(&self, what: &'static str, message: &[u8]) -> Result<Vec<u8>> {
        match &self.inner.signer {
            Some(signer) => signer.sign_message(message),
            None => Err(Error::Unsigned { what }),
        }
    }

    pub(crate) fn has_signer(&self) -> bool {
        self.inner.signer.is_some()
    }

    /// A commit status request for `transaction_id` on `channel`, signed
    /// if the gateway has a signer.
    pub(crate) fn commit_for(&self, channel: &str, transaction_id: &str) -> Result<Commit> {
        let request = CommitStatusRequest {
            transaction_id: transaction_id.to_owned(),
            channel_id: channel.to_owned(),
            identity: self.inner.identity.serialize(),
        }
        .encode_to_vec();
        let signature = if self.has_signer() {
            self.sign("commit status request", &request)?
        } else {
            Vec::new()
        };
        Ok(Commit::new(
            self.clone(),
            transaction_id.to_owned(),
            SignedCommitStatusRequest { request, signature },
        ))
    }
}

/// Wraps `message` in a request carrying `timeout` as its deadline.
pub(crate) fn request<T>(message: T, timeout: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    request
}

/// Awaits `call`, failing with DEADLINE_EXCEEDED after `timeout`.
pub(crate) async fn with_deadline<T, Fut>(
    timeout: Option<Duration>,
    call: Fut,
) -> std::result::Result<T, tonic::Status>
where
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let response = match timeout {
        Some(t) => match tokio::time::timeout(t, call).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {} ms",
                t.as_millis()
            ))),
        },
        None => call.await,
    };
    response.map(tonic::Response::into_inner)
}

/// A channel seen through the gateway.
#[derive(Debug, Clone)]
pub struct Network {
    pub(crate) gateway: Gateway,
    pub(crate) name: String,
}

impl Network {
    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The chaincode `chaincode` (its default contract).
    pub fn contract(&self, chaincode: impl Into<String>) -> Contract {
        Contract {
            network: self.clone(),
            chaincode: chaincode.into(),
            contract_name: None,
        }
    }

    /// A named contract of a chaincode: its functions are called as
    /// `contract:function`.
    pub fn contract_with_name(
        &self,
        chaincode: impl Into<String>,
        contract_name: impl Into<String>,
    ) -> Contract {
        Contract {
            network: self.clone(),
            chaincode: chaincode.into(),
            contract_name: Some(contract_name.into()),
        }
    }

    /// Events emitted by `chaincode`'s valid transactions, block by block,
    /// as a stream that does not end on its own (drop it to stop).
    ///
    /// Starts at the next block committed unless `options` name a start
    /// block or a checkpoint.
    pub async fn chaincode_events(
        &self,
        chaincode: &str,
        options: EventsOptions,
    ) -> Result<events::ChaincodeEvents> {
        self.new_chaincode_events_request(chaincode, options)?
            .events()
            .await
    }

    /// A chaincode events request to sign offline ([`ChaincodeEventsRequest::bytes`],
    /// [`ChaincodeEventsRequest::digest`]) or to start later. Signed now if
    /// the gateway has a signer.
    pub fn new_chaincode_events_request(
        &self,
        chaincode: &str,
        options: EventsOptions,
    ) -> Result<ChaincodeEventsRequest> {
        let request =
            events::chaincode_events_request(&self.name, chaincode, &self.gateway, &options);
        let signature = if self.gateway.has_signer() {
            self.gateway.sign("chaincode events request", &request)?
        } else {
            Vec::new()
        };
        Ok(ChaincodeEventsRequest::new(
            self.gateway.clone(),
            SignedChaincodeEventsRequest { request, signature },
        ))
    }

    /// Full blocks of the channel from the peer's `protos.Deliver` service,
    /// as a stream that does not end on its own (drop it to stop).
    ///
    /// Starts at the next block committed unless `options` name a start
    /// block or a checkpoint.
    pub async fn block_events(&self, options: EventsOptions) -> Result<events::BlockEvents> {
        self.new_block_events_request(options)?.events().await
    }

    /// A block events request (a signed seek envelope) to sign offline or
    /// to start later. Signed now if the gateway has a signer.
    pub fn new_block_events_request(&self, options: EventsOptions) -> Result<BlockEventsRequest> {
        let payload = events::seek_payload(&self.name, &self.gateway, &options);
        let signature = if self.gateway.has_signer() {
            self.gateway.sign("block events request", &payload)?
        } else {
            Vec::new()
        };
        Ok(BlockEventsRequest::new(
            self.gateway.clone(),
            Envelope { payload, signature },
        ))
    }

    /// A handle on the commit status of a transaction submitted earlier
    /// (by id).
    pub fn commit(&self, transaction_id: &str) -> Result<Commit> {
        self.gateway.commit_for(&self.name, transaction_id)
    }
}

/// A chaincode on a channel, whose functions the client evaluates
/// (queries) and submits (transactions).
#[derive(Debug, Clone)]
pub struct Contract {
    pub(crate) network: Network,
    pub(crate) chaincode: String,
    pub(crate) contract_name: Option<String>,
}

impl Contract {
    /// The chaincode name.
    pub fn chaincode_name(&self) -> &str {
        &self.chaincode
    }

    /// The contract name, if one was given.
    pub fn contract_name(&self) -> Option<&str> {
        self.contract_name.as_deref()
    }

    /// The network (channel).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Runs `function` with string `args` on one peer without ordering it,
    /// and returns its result.
    pub async fn evaluate(&self, function: &str, args: &[&str]) -> Result<Vec<u8>> {
        self.evaluate_with(function, ProposalOptions::new().string_arguments(args))
            .await
    }

    /// [`Contract::evaluate`] with options (byte arguments, transient data,
    /// target organizations).
    pub async fn evaluate_with(&self, function: &str, options: ProposalOptions) -> Result<Vec<u8>> {
        self.new_proposal(function, options)?.evaluate().await
    }

    /// Endorses, submits and waits for the commit of `function` with
    /// string `args`; returns its result. Fails with [`Error::Commit`]
    /// unless the transaction is committed as VALID.
    pub async fn submit(&self, function: &str, args: &[&str]) -> Result<Vec<u8>> {
        self.submit_with(function, ProposalOptions::new().string_arguments(args))
            .await
    }

    /// [`Contract::submit`] with options.
    pub async fn submit_with(&self, function: &str, options: ProposalOptions) -> Result<Vec<u8>> {
        let submitted = self.submit_async_with(function, options).await?;
        let status = submitted.status().await?;
        status.check()?;
        Ok(submitted.into_result())
    }

    /// Endorses and submits `function` with string `args`; returns once the
    /// orderer accepted it, with the result and a handle to wait for the
    /// commit.
    pub async fn submit_async(
        &self,
        function: &str,
        args: &[&str],
    ) -> Result<SubmittedTransaction> {
        self.submit_async_with(function, ProposalOptions::new().string_arguments(args))
            .await
    }

    /// [`Contract::submit_async`] with options.
    pub async fn submit_async_with(
        &self,
        function: &str,
        options: ProposalOptions,
    ) -> Result<SubmittedTransaction> {
        self.new_proposal(function, options)?
            .endorse()
            .await?
            .submit()
            .await
    }

    /// Builds a proposal to call `function`: evaluate or endorse it, or sign
    /// it offline first ([`Proposal::bytes`], [`Proposal::digest`],
    /// [`Gateway::new_signed_proposal`]). Signed now if the gateway has a
    /// signer.
    pub fn new_proposal(&self, function: &str, options: ProposalOptions) -> Result<Proposal> {
        let gateway = &self.network.gateway;
        let name = match &self.contract_name {
            Some(contract) => format!("{contract}:{function}"),
            None => function.to_owned(),
        };
        let built = proposal::build(
            &gateway.inner.identity,
            &self.network.name,
            &self.chaincode,
            name.into_bytes(),
            options.arguments,
            options.transient,
        );
        let signature = if gateway.has_signer() {
            gateway.sign("proposal", &built.proposal_bytes)?
        } else {
            Vec::new()
        };
        Ok(Proposal::new(
            gateway.clone(),
            self.network.name.clone(),
            built.transaction_id,
            built.proposal_bytes,
            signature,
            options.endorsing_organizations,
        ))
    }
}
