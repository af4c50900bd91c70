//! The peer's `protos.Deliver` service: `Deliver` (full blocks),
//! `DeliverFiltered` (Fabric's [`FilteredBlock`](twill_protos::peer::FilteredBlock)
//! view) and `DeliverWithPrivateData` (blocks with their private data; the
//! private data map is empty until the private data store exists).
//!
//! Each envelope a client sends is a seek request, served one after the
//! other on a stream: the blocks asked for, then one status (SUCCESS after
//! the stop block, or why it stopped early). Requests are checked in this
//! order: headers decode (BAD_REQUEST), the channel is joined (NOT_FOUND),
//! with mutual TLS the header's `tls_cert_hash` matches the client
//! certificate (BAD_REQUEST), the type is DELIVER_SEEK_INFO and the
//! timestamp within [`TIME_WINDOW`] (BAD_REQUEST), the creator is a valid
//! identity of a channel MSP that signed the payload and satisfies
//! `/Channel/Application/Readers` (FORBIDDEN), the seek info decodes with
//! start and stop (BAD_REQUEST).
//!
//! Positions, with `h` the height when the request arrives: oldest = 0,
//! newest = `h - 1`, specified `n` (NOT_FOUND if `n > h` at the start),
//! next commit = `h`; a stop before the start is BAD_REQUEST.
//! `BLOCK_UNTIL_READY` waits for blocks not yet committed,
//! `FAIL_IF_NOT_READY` answers NOT_FOUND on reaching one, and
//! `HEADER_WITH_SIG` sends blocks without their data. Access is checked
//! again whenever the channel config changes while streaming.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt as _};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use twill_configtx::channel::ChannelConfig;
use twill_msp::MspError;
use twill_protos::common::{
    Block, ChannelHeader, Envelope, HeaderType, Payload, SignatureHeader, Status as FabricStatus,
};
use twill_protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use twill_protos::orderer::seek_position::Type as Position;
use twill_protos::orderer::SeekInfo;
use twill_protos::peer::deliver_server::{Deliver, DeliverServer};
use twill_protos::peer::{deliver_response, BlockAndPrivateData, DeliverResponse};

use crate::channel::Channel;

const LOG: &str = "peer::deliver";

/// Policy a Deliver client must satisfy (Fabric's `event/Block` and
/// `event/FilteredBlock` ACLs default to it).
pub const APPLICATION_READERS: &str = "/Channel/Application/Readers";

/// How far a request's timestamp may be from the peer's clock (Fabric's
/// `peer.authentication.timewindow` default).
pub const TIME_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Responses queued ahead of a slow client.
const SEND_BUFFER: usize = 4;

/// Finds joined channels; implemented by the node.
pub trait ChannelLookup: Send + Sync + 'static {
    /// The channel `id`, if this peer has joined it.
    fn channel(&self, id: &str) -> Option<Arc<Channel>>;
}

/// Which of the three Deliver calls a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverMode {
    /// `Deliver`: full blocks.
    Blocks,
    /// `DeliverFiltered`: filtered blocks.
    Filtered,
    /// `DeliverWithPrivateData`: blocks and private data.
    WithPrivateData,
}

/// A refused request: the status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Fabric status.
    pub status: FabricStatus,
    /// Why, for the log.
    pub info: String,
}

impl Reject {
    fn new(status: FabricStatus, info: impl Into<String>) -> Self {
        Reject {
            status,
            info: info.into(),
        }
    }
}

/// The Deliver gRPC service.
pub struct DeliverService<L> {
    channels: Arc<L>,
    mutual_tls: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl<L> std::fmt::Debug for DeliverService<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverService")
            .field("mutual_tls", &self.mutual_tls)
            .finish_non_exhaustive()
    }
}

impl<L: ChannelLookup> DeliverService<L> {
    /// Serves the channels of `channels`. With `mutual_tls`, requests must
    /// carry the hash of the client's TLS certificate. Open streams end with
    /// SERVICE_UNAVAILABLE once `shutdown` turns `true`.
    pub fn new(
        channels: Arc<L>,
        mutual_tls: bool,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        DeliverService {
            channels,
            mutual_tls,
            shutdown,
        }
    }

    /// The tonic server for this service, with Twill's message limits.
    pub fn into_server(self) -> DeliverServer<Self> {
        twill_comm::with_message_limits!(DeliverServer::new(self))
    }

    fn serve(
        &self,
        request: Request<Streaming<Envelope>>,
        mode: DeliverMode,
    ) -> ReceiverStream<Result<DeliverResponse, Status>> {
        let binding = self
            .mutual_tls
            .then(|| twill_comm::peer_cert_der(&request).map(|der| twill_comm::cert_hash(&der)));
        let remote = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        let channels = self.channels.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let requests = async {
                loop {
                    let item = tokio::select! {
                        () = tx.closed() => return,
                        item = inbound.next() => item,
                    };
                    let env = match item {
                        None => return,
                        Some(Ok(env)) => env,
                        Some(Err(status)) => {
                            tracing::debug!(target: LOG, %remote, code = ?status.code(), message = status.message(), "deliver stream ended");
                            if status.code() == tonic::Code::Internal {
                                let _ =
                                    tx.send(Ok(status_response(FabricStatus::BadRequest))).await;
                            }
                            return;
                        }
                    };
                    let session = Session {
                        tx: &tx,
                        remote: &remote,
                        binding: binding.as_ref(),
                        mode,
                    };
                    let status = match session.serve(channels.as_ref(), &env).await {
                        Ok(status) => status,
                        Err(Gone) => return,
                    };
                    if tx.send(Ok(status_response(status))).await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                () = requests => {}
                _ = shutdown.wait_for(|s| *s) => {
                    let _ = tx.try_send(Ok(status_response(FabricStatus::ServiceUnavailable)));
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

type ResponseStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<DeliverResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<L: ChannelLookup> Deliver for DeliverService<L> {
    type DeliverStream = ResponseStream;
    type DeliverFilteredStream = ResponseStream;
    type DeliverWithPrivateDataStream = ResponseStream;

    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        Ok(Response::new(Box::pin(
            self.serve(request, DeliverMode::Blocks),
        )))
    }

    async fn deliver_filtered(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverFilteredStream>, Status> {
        Ok(Response::new(Box::pin(
            self.serve(request, DeliverMode::Filtered),
        )))
    }

    async fn deliver_with_private_data(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverWithPrivateDataStream>, Status> {
        Ok(Response::new(Box::pin(
            self.serve(request, DeliverMode::WithPrivateData),
        )))
    }
}

fn status_response(status: FabricStatus) -> DeliverResponse {
    DeliverResponse {
        r#type: Some(deliver_response::Type::Status(status as i32)),
    }
}

/// The client went away.
struct Gone;

type Tx = mpsc::Sender<Result<DeliverResponse, Status>>;

struct Session<'a> {
    tx: &'a Tx,
    remote: &'a str,
    binding: Option<&'a Option<[u8; 32]>>,
    mode: DeliverMode,
}

impl Session<'_> {
    fn refuse(&self, channel: &str, reject: Reject) -> FabricStatus {
        tracing::warn!(
            target: LOG,
            %channel,
            remote = self.remote,
            status = reject.status.as_str_name(),
            info = %reject.info,
            "deliver request refused"
        );
        reject.status
    }

    async fn serve<L: ChannelLookup>(
        &self,
        channels: &L,
        env: &Envelope,
    ) -> Result<FabricStatus, Gone> {
        let (payload, ch, sh) = match parse(env) {
            Ok(p) => p,
            Err(r) => return Ok(self.refuse("", r)),
        };
        let channel_id = ch.channel_id.clone();
        let Some(channel) = channels.channel(&channel_id) else {
            let r = Reject::new(
                FabricStatus::NotFound,
                format!("channel {channel_id} not found"),
            );
            return Ok(self.refuse(&channel_id, r));
        };
        if let Some(client_hash) = self.binding {
            if let Err(r) = check_binding(&ch, client_hash.as_ref()) {
                return Ok(self.refuse(&channel_id, r));
            }
        }
        let accepted_at = SystemTime::now();
        let mut cfg = channel.config();
        let seek = match check_request(env, &payload, &ch, &sh, &cfg, accepted_at).await {
            Ok(seek) => seek,
            Err(r) => return Ok(self.refuse(&channel_id, r)),
        };
        let store = channel.store().clone();
        let mut heights = store.subscribe();
        let (start, stop) = match resolve(&seek, store.height()) {
            Ok(range) => range,
            Err(r) => return Ok(self.refuse(&channel_id, r)),
        };
        let fail_if_not_ready = seek.behavior == SeekBehavior::FailIfNotReady as i32;
        let header_only = seek.content_type == SeekContentType::HeaderWithSig as i32;
        tracing::debug!(target: LOG, channel = %channel_id, remote = self.remote, start, stop, mode = ?self.mode, "delivering");
        let mut number = start;
        loop {
            if fail_if_not_ready && number >= store.height() {
                let r = Reject::new(
                    FabricStatus::NotFound,
                    format!("block {number} is not yet committed"),
                );
                return Ok(self.refuse(&channel_id, r));
            }
            while number >= *heights.borrow_and_update() {
                tokio::select! {
                    () = self.tx.closed() => return Err(Gone),
                    changed = heights.changed() => {
                        if changed.is_err() {
                            let r = Reject::new(FabricStatus::ServiceUnavailable, "the channel is no longer served");
                            return Ok(self.refuse(&channel_id, r));
                        }
                    }
                }
            }
            let current = channel.config();
            if current.config.sequence != cfg.config.sequence {
                cfg = current;
                if let Err(r) = check_request(env, &payload, &ch, &sh, &cfg, accepted_at).await {
                    return Ok(self.refuse(&channel_id, r));
                }
            }
            let block = match read_block(&store, number).await {
                Ok(b) => b,
                Err(r) => return Ok(self.refuse(&channel_id, r)),
            };
            let block = if header_only {
                Block {
                    header: block.header,
                    data: None,
                    metadata: block.metadata,
                }
            } else {
                block
            };
            let response = match self.mode {
                DeliverMode::Blocks => deliver_response::Type::Block(block),
                DeliverMode::Filtered => {
                    deliver_response::Type::FilteredBlock(crate::blocks::to_filtered_block(&block))
                }
                DeliverMode::WithPrivateData => {
                    deliver_response::Type::BlockAndPrivateData(BlockAndPrivateData {
                        block: Some(block),
                        private_data_map: Default::default(),
                    })
                }
            };
            let response = DeliverResponse {
                r#type: Some(response),
            };
            self.tx.send(Ok(response)).await.map_err(|_| Gone)?;
            if number >= stop {
                break;
            }
            number += 1;
        }
        Ok(FabricStatus::Success)
    }
}

fn parse(env: &Envelope) -> Result<(Payload, ChannelHeader, SignatureHeader), Reject> {
    let bad = |m: String| Reject::new(FabricStatus::BadRequest, m);
    let payload = Payload::decode(env.payload.as_slice())
        .map_err(|e| bad(format!("malformed envelope payload: {e}")))?;
    let header = payload
        .header
        .as_ref()
        .ok_or_else(|| bad("envelope payload has no header".into()))?;
    let ch = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| bad(format!("malformed channel header: {e}")))?;
    let sh = SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| bad(format!("malformed signature header: {e}")))?;
    Ok((payload, ch, sh))
}

fn check_binding(header: &ChannelHeader, client_hash: Option<&[u8; 32]>) -> Result<(), Reject> {
    let bad = |m: &str| Reject::new(FabricStatus::BadRequest, m);
    if header.tls_cert_hash.is_empty() {
        return Err(bad("client didn't include its TLS cert hash"));
    }
    let Some(hash) = client_hash else {
        return Err(bad("client didn't send a TLS certificate"));
    };
    if header.tls_cert_hash.as_slice() != hash.as_slice() {
        return Err(bad(
            "claimed TLS cert hash doesn't match the TLS certificate the client sent",
        ));
    }
    Ok(())
}

/// The request checks that involve signatures, on the blocking pool.
async fn check_request(
    env: &Envelope,
    payload: &Payload,
    ch: &ChannelHeader,
    sh: &SignatureHeader,
    cfg: &Arc<ChannelConfig>,
    now: SystemTime,
) -> Result<SeekInfo, Reject> {
    let (env, payload, ch, sh, cfg) = (
        env.clone(),
        payload.clone(),
        ch.clone(),
        sh.clone(),
        cfg.clone(),
    );
    tokio::task::spawn_blocking(move || check_request_at(&env, &payload, &ch, &sh, &cfg, now))
        .await
        .map_err(|e| {
            Reject::new(
                FabricStatus::InternalServerError,
                format!("request check failed: {e}"),
            )
        })?
}

/// Checks a seek request at time `now`; see the [module docs](self).
pub fn check_request_at(
    env: &Envelope,
    payload: &Payload,
    ch: &ChannelHeader,
    sh: &SignatureHeader,
    cfg: &ChannelConfig,
    now: SystemTime,
) -> Result<SeekInfo, Reject> {
    let bad = |m: String| Reject::new(FabricStatus::BadRequest, m);
    let forbidden = |m: String| Reject::new(FabricStatus::Forbidden, m);
    if ch.r#type != HeaderType::DeliverSeekInfo as i32 {
        return Err(bad(format!(
            "envelope of type {} is not a DELIVER_SEEK_INFO request",
            ch.r#type
        )));
    }
    let ts = ch
        .timestamp
        .as_ref()
        .ok_or_else(|| bad("channel header in envelope must contain timestamp".into()))?;
    let env_nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    let now_nanos = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    let window = i128::try_from(TIME_WINDOW.as_nanos()).unwrap_or(i128::MAX);
    if (now_nanos - env_nanos).abs() > window {
        return Err(bad(format!(
            "envelope timestamp {}s is more than {}s apart from the peer's time",
            ts.seconds,
            TIME_WINDOW.as_secs()
        )));
    }
    let id = match cfg.msps.deserialize_identity(&sh.creator) {
        Ok(id) => id,
        Err(MspError::UnknownMsp { mspid }) => {
            return Err(forbidden(format!(
                "creator is of MSP '{mspid}', which is not a member of this channel"
            )))
        }
        Err(e) => return Err(forbidden(format!("creator does not deserialize: {e}"))),
    };
    let name = format!("{} '{}'", id.mspid(), id.common_name());
    cfg.msps
        .validate_at(&id, now)
        .map_err(|e| forbidden(format!("creator {name} is not valid: {e}")))?;
    id.verify(&env.payload, &env.signature)
        .map_err(|e| forbidden(format!("signature of creator {name} is invalid: {e}")))?;
    let policy = cfg
        .policies
        .get_policy(APPLICATION_READERS)
        .ok_or_else(|| forbidden(format!("policy {APPLICATION_READERS} does not exist")))?;
    policy
        .evaluate_identities(std::slice::from_ref(&id))
        .map_err(|e| {
            forbidden(format!(
                "creator {name} does not satisfy policy {APPLICATION_READERS}: {e}"
            ))
        })?;
    let seek = SeekInfo::decode(payload.data.as_slice())
        .map_err(|e| bad(format!("malformed SeekInfo: {e}")))?;
    if seek.start.is_none() || seek.stop.is_none() {
        return Err(bad("seek info is missing its start or stop position".into()));
    }
    Ok(seek)
}

/// The first and last block numbers of a request at height `height`.
pub fn resolve(seek: &SeekInfo, height: u64) -> Result<(u64, u64), Reject> {
    let bad = |m: String| Reject::new(FabricStatus::BadRequest, m);
    let position = |p: Option<&twill_protos::orderer::SeekPosition>, what: &str| {
        p.and_then(|p| p.r#type)
            .ok_or_else(|| bad(format!("seek info has no {what} position")))
    };
    let newest = height.saturating_sub(1);
    let start = match position(seek.start.as_ref(), "start")? {
        Position::Oldest(_) => 0,
        Position::Newest(_) => newest,
        Position::NextCommit(_) => height,
        Position::Specified(s) => {
            if s.number > height {
                return Err(Reject::new(
                    FabricStatus::NotFound,
                    format!(
                        "start block {} is beyond the ledger height {height}",
                        s.number
                    ),
                ));
            }
            s.number
        }
    };
    let stop = match position(seek.stop.as_ref(), "stop")? {
        Position::Oldest(_) => start,
        Position::Newest(_) => newest.max(start),
        Position::NextCommit(_) => height.max(start),
        Position::Specified(s) => {
            if s.number < start {
                return Err(bad(format!(
                    "stop block {} is before the start block {start}",
                    s.number
                )));
            }
            s.number
        }
    };
    Ok((start, stop))
}

async fn read_block(store: &Arc<twill_ledger::BlockStore>, number: u64) -> Result<Block, Reject> {
    let store = store.clone();
    let internal = |m: String| Reject::new(FabricStatus::InternalServerError, m);
    tokio::task::spawn_blocking(move || store.block(number))
        .await
        .map_err(|e| internal(format!("reading block {number} failed: {e}")))?
        .map_err(|e| internal(format!("reading block {number} failed: {e}")))?
        .ok_or_else(|| {
            Reject::new(
                FabricStatus::ServiceUnavailable,
                format!("block {number} is missing from the ledger"),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use twill_protos::orderer::{
        SeekNewest, SeekNextCommit, SeekOldest, SeekPosition, SeekSpecified,
    };

    fn seek(start: Position, stop: Position) -> SeekInfo {
        SeekInfo {
            start: Some(SeekPosition {
                r#type: Some(start),
            }),
            stop: Some(SeekPosition { r#type: Some(stop) }),
            ..Default::default()
        }
    }

    #[test]
    fn positions() {
        let spec = |n| Position::Specified(SeekSpecified { number: n });
        assert_eq!(
            resolve(
                &seek(
                    Position::Oldest(SeekOldest {}),
                    Position::Newest(SeekNewest {})
                ),
                5
            )
            .unwrap(),
            (0, 4)
        );
        assert_eq!(
            resolve(
                &seek(
                    Position::NextCommit(SeekNextCommit {}),
                    Position::Newest(SeekNewest {})
                ),
                5
            )
            .unwrap(),
            (5, 5)
        );
        assert_eq!(resolve(&seek(spec(2), spec(3)), 5).unwrap(), (2, 3));
        assert_eq!(
            resolve(&seek(spec(6), spec(7)), 5).unwrap_err().status,
            FabricStatus::NotFound
        );
        assert_eq!(
            resolve(&seek(spec(3), spec(2)), 5).unwrap_err().status,
            FabricStatus::BadRequest
        );
    }

    #[test]
    fn binding() {
        let mut h = ChannelHeader::default();
        assert!(check_binding(&h, Some(&[1; 32])).is_err());
        h.tls_cert_hash = vec![1; 32];
        assert!(check_binding(&h, None).is_err());
        assert!(check_binding(&h, Some(&[2; 32])).is_err());
        assert!(check_binding(&h, Some(&[1; 32])).is_ok());
    }

    #[test]
    fn garbage_is_bad_request() {
        let env = Envelope {
            payload: vec![0xff, 0xff],
            signature: vec![],
        };
        assert_eq!(parse(&env).unwrap_err().status, FabricStatus::BadRequest);
    }
}
