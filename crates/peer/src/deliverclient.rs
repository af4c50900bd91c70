//! The block source of a channel: pulls blocks from the channel's orderers
//! with `orderer.AtomicBroadcast/Deliver` and hands each to the
//! [`Committer`].
//!
//! One [`BlockPuller`] task runs per channel. It reads the orderer endpoints
//! from the channel config (each orderer org's `Endpoints`, else the
//! channel's global `OrdererAddresses`) and tries them in order, starting
//! with the first. To each it sends one seek request signed by the peer's
//! identity — from the current height to the end of time,
//! `BLOCK_UNTIL_READY` — and commits every block it receives, in order, on a
//! blocking thread. It reads a few blocks ahead of the commits and hands
//! each to [`Committer::prepare`] on arrival, so their signature checks run
//! while the blocks before them commit. When the stream fails, ends or answers with a status, or
//! a block fails to commit, the puller moves to the next endpoint and
//! resumes from the height, pausing a little longer after each failure in
//! a row (from [`RETRY_MIN`] up to [`RETRY_MAX`]); a block committed resets
//! the pause.
//!
//! With `peer.tls.enabled` the orderers are dialed over TLS and trusted
//! through the orderer orgs' TLS root and intermediate certificates from the
//! channel config; `peer.tls.clientCert.file`/`clientKey.file`, when set,
//! are presented as client certificate (and their hash put in the seek
//! request's `tls_cert_hash`).
//!
//! Where this differs from Fabric: endpoints are tried in config order
//! rather than shuffled, and there is no block-censorship detection (an
//! orderer that stays connected but stops sending is not left).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use prost::Message as _;
use tokio::sync::watch;
use twill_comm::ClientTls;
use twill_configtx::channel::ChannelConfig;
use twill_configtx::keys;
use twill_msp::SigningIdentity;
use twill_protos::common::Envelope;
use twill_protos::common::{
    Block, Header, HeaderType, OrdererAddresses, Payload, SignatureHeader, Status,
};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::orderer::{
    deliver_response, seek_info, seek_position, SeekInfo, SeekPosition, SeekSpecified,
};

use crate::channel::{Channel, Committer};
use crate::operations::PeerMetrics;

const LOG: &str = "peer::deliverclient";

/// Pause after the first failure in a row.
pub const RETRY_MIN: Duration = Duration::from_millis(100);

/// Longest pause between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Blocks received but not yet committed, at most.
const READ_AHEAD: usize = crate::committer::LOOKAHEAD;

/// Length of the nonce in seek requests.
const NONCE_LEN: usize = 24;

/// How the peer connects to orderers.
#[derive(Debug, Clone, Default)]
pub struct OrdererConnection {
    /// Dial orderers over TLS (`peer.tls.enabled`).
    pub tls: bool,
    /// Client certificate and key (PEM) to present, if any.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Why one attempt to pull from an orderer ended.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("the channel config names no orderer endpoints")]
    NoEndpoints,
    #[error("no TLS root certificates for the orderers in the channel config")]
    NoRoots,
    #[error("{0}")]
    Comm(#[from] twill_comm::CommError),
    #[error("cannot sign the seek request: {0}")]
    Sign(#[from] twill_msp::MspError),
    #[error("deliver call failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("the orderer answered {status}")]
    Status { status: String },
    #[error("the orderer closed the stream")]
    Closed,
    #[error("the orderer sent block {got}, expected {expected}")]
    OutOfOrder { got: u64, expected: u64 },
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the peer is shutting down")]
    Shutdown,
}

/// Pulls one channel's blocks; see the [module docs](self).
pub struct BlockPuller {
    channel: Arc<Channel>,
    signer: Arc<SigningIdentity>,
    committer: Arc<dyn Committer>,
    metrics: Arc<PeerMetrics>,
    connection: OrdererConnection,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for BlockPuller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockPuller")
            .field("channel", &self.channel.id())
            .finish_non_exhaustive()
    }
}

impl BlockPuller {
    /// A puller for `channel`; it stops once `shutdown` turns `true`.
    pub fn new(
        channel: Arc<Channel>,
        signer: Arc<SigningIdentity>,
        committer: Arc<dyn Committer>,
        metrics: Arc<PeerMetrics>,
        connection: OrdererConnection,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        BlockPuller {
            channel,
            signer,
            committer,
            metrics,
            connection,
            shutdown,
        }
    }

    /// Pulls until shutdown.
    pub async fn run(mut self) {
        let id = self.channel.id().to_string();
        let mut next = 0usize;
        let mut failures = 0u32;
        tracing::info!(target: LOG, channel = %id, height = self.channel.height(), "block puller started");
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let endpoints = orderer_endpoints(&self.channel.config());
            let result = if endpoints.is_empty() {
                Err(PullError::NoEndpoints)
            } else {
                let endpoint = endpoints[next % endpoints.len()].clone();
                let mut committed = 0u64;
                let r = self.pull_from(&endpoint, &mut committed).await;
                if committed > 0 {
                    failures = 0;
                }
                self.metrics.set_source(&id, None);
                match &r {
                    Err(PullError::Shutdown) => break,
                    Err(e) => {
                        tracing::warn!(target: LOG, channel = %id, orderer = %endpoint, error = %e, "pulling blocks failed; trying the next orderer");
                    }
                    Ok(()) => {}
                }
                next = next.wrapping_add(1);
                r
            };
            if let Err(PullError::NoEndpoints) = result {
                tracing::warn!(target: LOG, channel = %id, "the channel config names no orderer endpoints");
            }
            failures = failures.saturating_add(1);
            let pause = backoff(failures);
            let mut stop = self.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        tracing::info!(target: LOG, channel = %id, "block puller stopped");
    }

    async fn pull_from(&mut self, endpoint: &str, committed: &mut u64) -> Result<(), PullError> {
        let id = self.channel.id().to_string();
        let cfg = self.channel.config();
        let tls = if self.connection.tls {
            let roots = orderer_tls_roots(&cfg);
            if roots.is_empty() {
                return Err(PullError::NoRoots);
            }
            let mut tls = ClientTls::new(roots);
            if let Some((cert, key)) = &self.connection.client_identity {
                tls = tls.with_identity(cert.clone(), key.clone());
            }
            Some(tls)
        } else {
            None
        };
        let channel = tokio::select! {
            c = twill_comm::connect(endpoint, tls.as_ref()) => c?,
            _ = self.shutdown.wait_for(|s| *s) => return Err(PullError::Shutdown),
        };
        let mut client = twill_comm::with_message_limits!(AtomicBroadcastClient::new(channel));
        let start = self.channel.height();
        let tls_cert_hash = self
            .connection
            .client_identity
            .as_ref()
            .and_then(|(cert, _)| first_cert_der(cert))
            .map(|der| twill_comm::cert_hash(&der).to_vec())
            .unwrap_or_default();
        let seek = seek_envelope(&self.signer, &id, start, tls_cert_hash)?;
        // Keep the request side open: the orderer serves one request at a
        // time and the stream lives as long as this call.
        let requests = futures::stream::once(async move { seek }).chain(futures::stream::pending());
        let mut responses = tokio::select! {
            r = client.deliver(requests) => r?.into_inner(),
            _ = self.shutdown.wait_for(|s| *s) => return Err(PullError::Shutdown),
        };
        tracing::info!(target: LOG, channel = %id, orderer = %endpoint, start, "pulling blocks");
        self.metrics.set_source(&id, Some(endpoint));

        // Blocks are read up to READ_AHEAD ahead of the commits; each is
        // handed to Committer::prepare on arrival, so its signature checks
        // overlap the commits of the blocks before it.
        let (queue, mut queued) = tokio::sync::mpsc::channel::<Block>(READ_AHEAD);
        let committer = self.committer.clone();
        let channel = self.channel.clone();
        let mut shutdown = self.shutdown.clone();
        let reading = async move {
            let mut expected = start;
            loop {
                let item = tokio::select! {
                    item = responses.next() => item,
                    _ = shutdown.wait_for(|s| *s) => return Err(PullError::Shutdown),
                };
                let response = match item {
                    None => return Err(PullError::Closed),
                    Some(Err(status)) => return Err(PullError::Rpc(status)),
                    Some(Ok(r)) => r,
                };
                match response.r#type {
                    Some(deliver_response::Type::Block(block)) => {
                        let got = crate::blocks::block_number(&block);
                        if got != expected {
                            return Err(PullError::OutOfOrder { got, expected });
                        }
                        expected += 1;
                        committer.prepare(&channel, &block);
                        if queue.send(block).await.is_err() {
                            // The committing side stopped; it reports why.
                            return Ok(());
                        }
                    }
                    Some(deliver_response::Type::Status(code)) => {
                        let status = Status::try_from(code)
                            .map(|s| s.as_str_name().to_string())
                            .unwrap_or_else(|_| code.to_string());
                        return Err(PullError::Status { status });
                    }
                    None => return Err(PullError::Closed),
                }
            }
        };
        let committing = async {
            while let Some(block) = queued.recv().await {
                self.commit(block).await?;
                *committed += 1;
            }
            Ok::<(), PullError>(())
        };
        tokio::pin!(reading, committing);
        tokio::select! {
            biased;
            // The stream ended: commit what was received, then report.
            read = &mut reading => {
                let commits = committing.await;
                commits.and(read)
            }
            // A commit failed (the reader is dropped), or the queue closed,
            // which happens only once the reader has finished.
            commits = &mut committing => match commits {
                Err(e) => Err(e),
                Ok(()) => reading.await,
            },
        }
    }

    async fn commit(&self, block: Block) -> Result<(), PullError> {
        let channel = self.channel.clone();
        let committer = self.committer.clone();
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || committer.commit(&channel, block))
            .await
            .map_err(|e| PullError::Commit(format!("commit task failed: {e}")))?
            .map_err(|e| PullError::Commit(e.to_string()))?;
        let height = self.channel.height();
        self.metrics.record_commit(
            self.channel.id(),
            height,
            started.elapsed(),
            &outcome.validation_codes,
        );
        tracing::debug!(target: LOG, channel = %self.channel.id(), number = outcome.number, txs = outcome.validation_codes.len(), "block committed");
        Ok(())
    }
}

fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(10);
    RETRY_MIN.saturating_mul(1 << shift).min(RETRY_MAX)
}

/// The orderer endpoints of a channel config: every orderer org's
/// `Endpoints` in org order, else the channel's `OrdererAddresses`.
pub fn orderer_endpoints(cfg: &ChannelConfig) -> Vec<String> {
    let per_org: Vec<String> = cfg
        .orderer_orgs
        .values()
        .flat_map(|org| org.endpoints.iter().cloned())
        .collect();
    if !per_org.is_empty() {
        return per_org;
    }
    cfg.config
        .channel_group
        .as_ref()
        .and_then(|g| g.values.get(keys::ORDERER_ADDRESSES))
        .and_then(|v| OrdererAddresses::decode(v.value.as_slice()).ok())
        .map(|a| a.addresses)
        .unwrap_or_default()
}

/// PEM TLS root and intermediate certificates of every orderer org.
pub fn orderer_tls_roots(cfg: &ChannelConfig) -> Vec<Vec<u8>> {
    let mut roots = Vec::new();
    for org in cfg.orderer_orgs.values() {
        if let Some(msp) = cfg.msps.get(&org.msp_id) {
            let c = msp.config();
            roots.extend(c.tls_root_certs.iter().cloned());
            roots.extend(c.tls_intermediate_certs.iter().cloned());
        }
    }
    roots
}

fn first_cert_der(pem_bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem_bytes).ok()?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    let b64: String = text[start..stop].split_whitespace().collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A seek request for blocks `start..` (no end), signed by `signer`.
pub fn seek_envelope(
    signer: &SigningIdentity,
    channel: &str,
    start: u64,
    tls_cert_hash: Vec<u8>,
) -> Result<Envelope, twill_msp::MspError> {
    let position = |n: u64| SeekPosition {
        r#type: Some(seek_position::Type::Specified(SeekSpecified { number: n })),
    };
    let seek = SeekInfo {
        start: Some(position(start)),
        stop: Some(position(u64::MAX)),
        behavior: seek_info::SeekBehavior::BlockUntilReady as i32,
        error_response: seek_info::SeekErrorResponse::Strict as i32,
        content_type: seek_info::SeekContentType::Block as i32,
    };
    let creator = signer.serialize();
    let nonce = twill_crypto::random_bytes(NONCE_LEN);
    let tx_id = twill_configtx::block::compute_tx_id(&nonce, &creator);
    let mut ch =
        twill_configtx::block::channel_header(HeaderType::DeliverSeekInfo, 0, channel, &tx_id);
    ch.tls_cert_hash = tls_cert_hash;
    let payload = Payload {
        header: Some(Header {
            channel_header: ch.encode_to_vec(),
            signature_header: SignatureHeader { creator, nonce }.encode_to_vec(),
        }),
        data: seek.encode_to_vec(),
    }
    .encode_to_vec();
    let signature = signer.sign(&payload)?;
    Ok(Envelope { payload, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), RETRY_MIN);
        assert_eq!(backoff(2), RETRY_MIN * 2);
        assert_eq!(backoff(40), RETRY_MAX);
    }

    #[test]
    fn pem_to_der() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        assert_eq!(first_cert_der(pem), Some(vec![1, 2, 3]));
        assert_eq!(first_cert_der(b"nothing"), None);
    }
}
