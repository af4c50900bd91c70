//! The two ways to open the chaincode stream: dialing the peer's
//! `ChaincodeSupport.Register`, or serving `Chaincode.Connect` for it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use twill_protos::peer::chaincode_server::{Chaincode, ChaincodeServer};
use twill_protos::peer::chaincode_support_client::ChaincodeSupportClient;
use twill_protos::peer::ChaincodeMessage;

use crate::config::{DialConfig, ServerConfig};
use crate::connection::{self, Shared, MAX_MESSAGE_SIZE, OUTBOUND_CAPACITY};
use crate::error::{Error, Result};
use crate::router::Router;
use crate::LOG;

/// How long dialing the peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 keepalive ping interval. Go gRPC servers (Fabric's peer) refuse
/// pings more frequent than once a minute, so stay well above that.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(120);

/// How long a keepalive ping may go unanswered.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Dials the peer and serves its transactions until the stream ends.
///
/// Returns only with an error: [`Error::Disconnected`] when the peer closed
/// the stream. The shim does not reconnect; the process is expected to exit
/// so that whoever launched it can start it again.
pub async fn start(config: DialConfig, router: Router) -> Result<()> {
    let uri = config.uri();
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|source| Error::Transport {
            context: format!("invalid peer address {uri}"),
            source,
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        let mut tls_config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.root_ca_pem));
        if let Some((cert, key)) = &tls.identity {
            tls_config = tls_config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &tls.domain_name {
            tls_config = tls_config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(tls_config)
            .map_err(|source| Error::Transport {
                context: "client TLS settings".into(),
                source,
            })?;
    }
    tracing::info!(target: LOG, peer = %uri, chaincode_id = %config.chaincode_id, "connecting to the peer");
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| Error::Transport {
            context: format!("cannot connect to the peer at {uri}"),
            source,
        })?;
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let shared = Shared::new(outbound_tx);
    // The peer reads REGISTER before it answers anything, so it has to be
    // queued before the call waits for the response headers.
    shared
        .send(connection::register_message(&config.chaincode_id))
        .await?;
    let mut client = ChaincodeSupportClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let inbound = client
        .register(ReceiverStream::new(outbound_rx))
        .await?
        .into_inner();
    connection::run(shared, Arc::new(router), inbound).await
}

/// Listens on `config.address` and serves the peer's `Chaincode.Connect`
/// calls; every call is a registration of its own, and they all share
/// `router`. Runs until the server fails.
pub async fn serve(config: ServerConfig, router: Router) -> Result<()> {
    let listener = TcpListener::bind(&config.address)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot listen on {}", config.address),
            source,
        })?;
    serve_with_listener(listener, config, router).await
}

/// [`serve`] on a listener the caller bound (`config.address` is then only
/// used in logs).
pub async fn serve_with_listener(
    listener: TcpListener,
    config: ServerConfig,
    router: Router,
) -> Result<()> {
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.address.clone());
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        let mut tls_config =
            ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            tls_config = tls_config.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(tls_config)
            .map_err(|source| Error::Transport {
                context: "server TLS settings".into(),
                source,
            })?;
    }
    let service = ChaincodeService {
        chaincode_id: config.chaincode_id.clone(),
        router: Arc::new(router),
    };
    let service = ChaincodeServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    tracing::info!(
        target: LOG,
        address = %local,
        chaincode_id = %config.chaincode_id,
        tls = config.tls.is_some(),
        "serving the chaincode"
    );
    builder
        .add_service(service)
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .map_err(|source| Error::Transport {
            context: format!("chaincode server on {local}"),
            source,
        })
}

/// The `protos.Chaincode` service: each `Connect` stream registers the
/// chaincode with the calling peer.
struct ChaincodeService {
    chaincode_id: String,
    router: Arc<Router>,
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<ChaincodeMessage, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Chaincode for ChaincodeService {
    type ConnectStream = OutboundStream;

    async fn connect(
        &self,
        request: tonic::Request<tonic::Streaming<ChaincodeMessage>>,
    ) -> Result<tonic::Response<Self::ConnectStream>, tonic::Status> {
        let remote = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let inbound = request.into_inner();
        let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let shared = Shared::new(outbound_tx);
        shared
            .send(connection::register_message(&self.chaincode_id))
            .await
            .map_err(|_| tonic::Status::internal("outbound queue closed"))?;
        let router = Arc::clone(&self.router);
        tracing::info!(target: LOG, peer = %remote, "peer connected");
        tokio::spawn(async move {
            match connection::run(shared, router, inbound).await {
                Err(Error::Disconnected) | Ok(()) => {
                    tracing::info!(target: LOG, peer = %remote, "peer disconnected");
                }
                Err(error) => {
                    tracing::warn!(target: LOG, peer = %remote, %error, "peer connection failed");
                }
            }
        });
        let outbound = ReceiverStream::new(outbound_rx).map(Ok);
        Ok(tonic::Response::new(Box::pin(outbound)))
    }
}
