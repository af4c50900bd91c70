//! The client-facing `orderer.AtomicBroadcast` gRPC service: Broadcast here,
//! Deliver in [`crate::deliver`].
//!
//! Broadcast is a bidirectional stream: the client sends envelopes, the
//! orderer answers each with one `BroadcastResponse`, in the order the
//! envelopes came. For each envelope:
//!
//! 1. the headers are decoded and it is classified
//!    ([`msgprocessor::classify`]): BAD_REQUEST if they do not decode;
//! 2. the channel is looked up: NOT_FOUND `channel X not found`;
//! 3. a normal transaction passes [`msgprocessor::check_normal`] and is
//!    handed to [`ChainSupport::order`]; a CONFIG_UPDATE goes through
//!    [`msgprocessor::process_config_update`], signed by this orderer, and
//!    the resulting CONFIG envelope to [`ChainSupport::configure`];
//! 4. SUCCESS once the chain has ordered it (Raft committed), or the
//!    chain's [`Reject`] status and text.
//!
//! Up to [`MAX_IN_FLIGHT`] envelopes of one stream are worked on at once, so
//! that a client streaming many envelopes is not held to one Raft round trip
//! each; answers still leave in order. Signature checks run on the blocking
//! pool, off the async workers.
//!
//! A malformed envelope is answered BAD_REQUEST and the stream goes on. A
//! gRPC message that does not even decode as an `Envelope` is answered
//! BAD_REQUEST too, but gRPC cannot read past it, so the stream then ends.
//!
//! The seam is [`ChainManager`] (find a channel) and [`ChainSupport`] (what
//! both services need of one channel), implemented for
//! [`Registrar`](crate::registrar::Registrar) and
//! [`ChainHandle`](crate::chain::ChainHandle); tests can serve fakes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt as _};
use prost::Message as _;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use twill_configtx::channel::ChannelConfig;
use twill_ledger::BlockStore;
use twill_msp::SigningIdentity;
use twill_protos::common::{Envelope, Status as FabricStatus};
use twill_protos::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use twill_protos::orderer::{BroadcastResponse, DeliverResponse};

use crate::msgprocessor::{self, Classification, Reject};
use crate::operations::OrdererMetrics;

const LOG: &str = "orderer::broadcast";

/// Envelopes of one Broadcast stream processed concurrently.
pub const MAX_IN_FLIGHT: usize = 64;

/// What Broadcast and Deliver need from one channel.
#[tonic::async_trait]
pub trait ChainSupport: Clone + Send + Sync + 'static {
    /// The channel's current config.
    fn config(&self) -> Arc<ChannelConfig>;
    /// This orderer's signing identity, which signs CONFIG envelopes.
    fn signer(&self) -> Arc<SigningIdentity>;
    /// The channel's blocks.
    fn block_store(&self) -> Arc<BlockStore>;
    /// True once the chain has stopped (the channel was removed, or its
    /// Raft node failed); Deliver streams then end.
    fn is_halted(&self) -> bool;
    /// Orders a checked normal envelope; returns once it is committed.
    async fn order(&self, envelope: Vec<u8>) -> Result<(), Reject>;
    /// Orders a CONFIG envelope made by this orderer; returns once it is
    /// committed.
    async fn configure(&self, config_envelope: Vec<u8>) -> Result<(), Reject>;
}

/// Where the services find channels.
pub trait ChainManager: Send + Sync + 'static {
    /// The chain type served.
    type Chain: ChainSupport;
    /// The chain of `channel`, if this orderer serves it.
    fn get_chain(&self, channel: &str) -> Option<Self::Chain>;
}

#[tonic::async_trait]
impl ChainSupport for crate::chain::ChainHandle {
    fn config(&self) -> Arc<ChannelConfig> {
        crate::chain::ChainHandle::config(self)
    }

    fn signer(&self) -> Arc<SigningIdentity> {
        crate::chain::ChainHandle::signer(self)
    }

    fn block_store(&self) -> Arc<BlockStore> {
        crate::chain::ChainHandle::block_store(self)
    }

    fn is_halted(&self) -> bool {
        crate::chain::ChainHandle::is_halted(self)
    }

    async fn order(&self, envelope: Vec<u8>) -> Result<(), Reject> {
        crate::chain::ChainHandle::order(self, envelope).await
    }

    async fn configure(&self, config_envelope: Vec<u8>) -> Result<(), Reject> {
        crate::chain::ChainHandle::configure(self, config_envelope).await
    }
}

impl ChainManager for crate::registrar::Registrar {
    type Chain = crate::chain::ChainHandle;

    fn get_chain(&self, channel: &str) -> Option<Self::Chain> {
        self.get(channel)
    }
}

/// The `AtomicBroadcast` service (Broadcast and Deliver) over the channels
/// of `M`.
pub struct BroadcastService<M: ChainManager = crate::registrar::Registrar> {
    chains: Arc<M>,
    metrics: Option<Arc<OrdererMetrics>>,
    max_in_flight: usize,
    mutual_tls: bool,
    shutdown: Option<watch::Receiver<bool>>,
}

impl<M: ChainManager> std::fmt::Debug for BroadcastService<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastService")
            .field("max_in_flight", &self.max_in_flight)
            .field("mutual_tls", &self.mutual_tls)
            .finish_non_exhaustive()
    }
}

impl<M: ChainManager> BroadcastService<M> {
    /// Serves the channels of `chains`.
    pub fn new(chains: Arc<M>) -> Self {
        BroadcastService {
            chains,
            metrics: None,
            max_in_flight: MAX_IN_FLIGHT,
            mutual_tls: false,
            shutdown: None,
        }
    }

    /// Counts Broadcast answers and latencies in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<OrdererMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Envelopes of one stream processed concurrently (at least 1).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Declares that the listener requires client certificates; Deliver
    /// then requires each request's `tls_cert_hash` to match the client's
    /// certificate, as Fabric does with `ClientAuthRequired`.
    pub fn with_mutual_tls(mut self, required: bool) -> Self {
        self.mutual_tls = required;
        self
    }

    /// Ends open streams once `shutdown` turns `true`: Broadcast streams
    /// close after the answers already due, Deliver streams are answered
    /// SERVICE_UNAVAILABLE. Without this, a server's graceful shutdown waits
    /// for clients to close their streams.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// The tonic server for this service, with 100 MiB message limits.
    pub fn into_server(self) -> AtomicBroadcastServer<Self> {
        twill_comm::with_message_limits!(AtomicBroadcastServer::new(self))
    }
}

/// What one inbound stream item turned into.
enum Inbound {
    Envelope(Envelope),
    /// The gRPC message did not decode; answered BAD_REQUEST, then the end.
    Undecodable(String),
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<M: ChainManager> AtomicBroadcast for BroadcastService<M> {
    type BroadcastStream = ResponseStream<BroadcastResponse>;
    type DeliverStream = ResponseStream<DeliverResponse>;

    async fn broadcast(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        let remote = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::debug!(target: LOG, %remote, "broadcast stream opened");
        let inbound = request.into_inner();
        let chains = self.chains.clone();
        let metrics = self.metrics.clone();
        let remote = Arc::<str>::from(remote);
        let answers = inbound
            .scan(false, |ended, item| {
                if *ended {
                    return futures::future::ready(None);
                }
                let next = match item {
                    Ok(env) => Some(Inbound::Envelope(env)),
                    Err(status) if is_decode_error(&status) => {
                        *ended = true;
                        Some(Inbound::Undecodable(status.message().to_string()))
                    }
                    Err(status) => {
                        // The client went away or reset the stream.
                        tracing::debug!(target: LOG, code = ?status.code(), message = status.message(), "broadcast stream ended");
                        None
                    }
                };
                futures::future::ready(next)
            })
            .map(move |item| {
                let chains = chains.clone();
                let metrics = metrics.clone();
                let remote = remote.clone();
                async move {
                    match item {
                        Inbound::Envelope(env) => {
                            process(chains.as_ref(), metrics.as_deref(), &remote, env).await
                        }
                        Inbound::Undecodable(message) => {
                            let reject =
                                Reject::bad_request(format!("malformed message: {message}"));
                            tracing::warn!(target: LOG, %remote, info = %reject.info, "rejecting broadcast");
                            reject.broadcast_response()
                        }
                    }
                }
            })
            .buffered(self.max_in_flight)
            .map(Ok)
            .take_until(stopped(self.shutdown.clone()));
        Ok(Response::new(Box::pin(answers)))
    }

    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let stream = crate::deliver::serve(
            self.chains.clone(),
            request,
            self.mutual_tls,
            stopped(self.shutdown.clone()),
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Completes once `shutdown` turns `true`; never without a receiver.
pub(crate) async fn stopped(shutdown: Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(mut rx) => {
            if rx.wait_for(|stop| *stop).await.is_err() {
                // The sender is gone without a stop: serve on.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Whether a stream error means the client's message could not be decoded
/// (or was too large), as opposed to the stream breaking.
pub(crate) fn is_decode_error(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Internal | tonic::Code::OutOfRange | tonic::Code::InvalidArgument
    ) && !status.message().contains("h2 protocol error")
}

/// Processes one envelope into its answer, counting it in `metrics`.
async fn process<M: ChainManager>(
    chains: &M,
    metrics: Option<&OrdererMetrics>,
    remote: &str,
    env: Envelope,
) -> BroadcastResponse {
    let started = Instant::now();
    let (channel, result) = handle(chains, env).await;
    let response = match &result {
        Ok(()) => BroadcastResponse {
            status: FabricStatus::Success as i32,
            info: String::new(),
        },
        Err(reject) => {
            tracing::warn!(
                target: LOG,
                channel = channel.as_deref().unwrap_or(""),
                %remote,
                status = reject.status.as_str_name(),
                info = %reject.info,
                "rejecting broadcast"
            );
            reject.broadcast_response()
        }
    };
    if let Some(m) = metrics {
        let status = match &result {
            Ok(()) => FabricStatus::Success,
            Err(r) => r.status,
        };
        // Only channels this orderer serves get their own series, so that
        // clients cannot grow the label set at will.
        let label = channel.as_deref().unwrap_or("");
        m.inc_broadcast(label, status.as_str_name());
        if channel.is_some() {
            m.observe_broadcast_latency(label, started.elapsed());
        }
    }
    response
}

/// Checks and orders one envelope. Returns the channel if it is served.
async fn handle<M: ChainManager>(
    chains: &M,
    env: Envelope,
) -> (Option<String>, Result<(), Reject>) {
    let (class, header) = match msgprocessor::classify(&env) {
        Ok(c) => c,
        Err(r) => return (None, Err(r)),
    };
    let channel_id = header.channel_id;
    let Some(chain) = chains.get_chain(&channel_id) else {
        return (
            None,
            Err(Reject {
                status: FabricStatus::NotFound,
                info: format!("channel {channel_id} not found"),
            }),
        );
    };
    let result = match class {
        Classification::Normal => order_normal(&chain, env).await,
        Classification::ConfigUpdate => order_config_update(&chain, env, &channel_id).await,
    };
    if result.is_ok() {
        tracing::debug!(target: LOG, channel = %channel_id, tx_id = %header.tx_id, "ordered");
    }
    (Some(channel_id), result)
}

async fn order_normal<C: ChainSupport>(chain: &C, env: Envelope) -> Result<(), Reject> {
    let cfg = chain.config();
    // Checked inline: one signature verification (~0.1 ms) is cheaper than
    // handing every envelope to the blocking pool and back.
    let len = env.encoded_len();
    msgprocessor::check_normal(len, &env, &cfg)?;
    chain.order(env.encode_to_vec()).await
}

async fn order_config_update<C: ChainSupport>(
    chain: &C,
    env: Envelope,
    channel_id: &str,
) -> Result<(), Reject> {
    let cfg = chain.config();
    let signer = chain.signer();
    let channel = channel_id.to_string();
    let config_env = tokio::task::spawn_blocking(move || {
        msgprocessor::process_config_update(&env, &cfg, &channel, &signer)
            .map(|(config_env, _next)| config_env.encode_to_vec())
    })
    .await
    .map_err(|e| Reject::internal(format!("config update processing failed: {e}")))??;
    chain.configure(config_env).await
}
