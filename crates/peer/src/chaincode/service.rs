//! `protos.ChaincodeSupport/Register` (chaincode dials the peer) and the
//! dialer for chaincode servers (`protos.Chaincode/Connect`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use twill_protos::peer::chaincode_client::ChaincodeClient;
use twill_protos::peer::chaincode_support_server::{ChaincodeSupport, ChaincodeSupportServer};
use twill_protos::peer::ChaincodeMessage;

use super::{serve_stream, ChaincodeRegistry, LOG};

/// Messages queued towards one chaincode before senders wait.
const OUTGOING_QUEUE: usize = 256;

/// The peer's `protos.ChaincodeSupport` service.
#[derive(Debug, Clone)]
pub struct ChaincodeSupportService {
    registry: Arc<ChaincodeRegistry>,
}

impl ChaincodeSupportService {
    /// A service registering chaincodes in `registry`.
    pub fn new(registry: Arc<ChaincodeRegistry>) -> Self {
        ChaincodeSupportService { registry }
    }

    /// The tonic server for it.
    pub fn into_server(self) -> ChaincodeSupportServer<Self> {
        twill_comm::with_message_limits!(ChaincodeSupportServer::new(self))
    }
}

#[tonic::async_trait]
impl ChaincodeSupport for ChaincodeSupportService {
    type RegisterStream = ReceiverStream<Result<ChaincodeMessage, Status>>;

    async fn register(
        &self,
        request: Request<Streaming<ChaincodeMessage>>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        let incoming = request.into_inner();
        let (out_tx, mut out_rx) = mpsc::channel::<ChaincodeMessage>(OUTGOING_QUEUE);
        let (stream_tx, stream_rx) = mpsc::channel(OUTGOING_QUEUE);
        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if stream_tx.send(Ok(message)).await.is_err() {
                    break;
                }
            }
        });
        let registry = self.registry.clone();
        tokio::spawn(async move {
            if let Err(reason) = serve_stream(registry, incoming, out_tx).await {
                tracing::warn!(target: LOG, error = %reason, "chaincode stream ended with an error");
            }
        });
        Ok(Response::new(ReceiverStream::new(stream_rx)))
    }
}

/// Dials a chaincode server (chaincode as a service) at `endpoint` and
/// serves the stream it opens, until it ends. `tls` is the client TLS to
/// use, if the connection requires it.
pub async fn connect_chaincode_server(
    registry: Arc<ChaincodeRegistry>,
    endpoint: &str,
    tls: Option<&twill_comm::ClientTls>,
    dial_timeout: Duration,
) -> Result<(), String> {
    let channel = tokio::time::timeout(dial_timeout, twill_comm::connect(endpoint, tls))
        .await
        .map_err(|_| {
            format!("dialing chaincode server {endpoint} timed out after {dial_timeout:?}")
        })?
        .map_err(|e| format!("dialing chaincode server {endpoint}: {e}"))?;
    let mut client = twill_comm::with_message_limits!(ChaincodeClient::new(channel));
    let (out_tx, out_rx) = mpsc::channel::<ChaincodeMessage>(OUTGOING_QUEUE);
    let incoming = client
        .connect(ReceiverStream::new(out_rx))
        .await
        .map_err(|s| format!("chaincode server {endpoint}: Connect failed: {s}"))?
        .into_inner();
    serve_stream(registry, incoming, out_tx).await
}
