//! Deliver: the `orderer.AtomicBroadcast/Deliver` stream, served by
//! [`BroadcastService`](crate::broadcast::BroadcastService).
//!
//! Each envelope the client sends is a seek request; requests on one stream
//! are served one after the other, as in Fabric. A request is answered with
//! the blocks it asks for and then one status: SUCCESS after the stop block,
//! or the reason it ended early. Then the next request is read; the stream
//! ends when the client closes its side or goes away.
//!
//! A request is checked in Fabric's order: the headers decode (BAD_REQUEST),
//! the channel exists (NOT_FOUND), with mutual TLS the header's
//! `tls_cert_hash` matches the client certificate (BAD_REQUEST), then
//! [`check_deliver_seek`](crate::msgprocessor::check_deliver_seek): type,
//! timestamp and seek info (BAD_REQUEST), creator, signature and
//! `/Channel/Readers` (FORBIDDEN).
//!
//! Positions, with `h` the ledger height when the request arrives:
//!
//! | position | start | stop |
//! | --- | --- | --- |
//! | oldest | 0 | the start block |
//! | newest | `h - 1` | `h - 1` (at least the start block) |
//! | specified `n` | `n`; NOT_FOUND if `n > h` | `n`; BAD_REQUEST if before the start |
//! | next commit | `h` | `h` |
//!
//! With `BLOCK_UNTIL_READY` the stream waits for blocks not yet written;
//! with `FAIL_IF_NOT_READY` it answers NOT_FOUND on reaching one.
//! `HEADER_WITH_SIG` sends blocks without their data.
//!
//! Access is evaluated again before every block, as Fabric's session access
//! control does: FORBIDDEN once the creator's certificate has expired,
//! and the request is checked anew against each new channel config.
//!
//! Where this differs from Fabric: a `newest` stop before the start block
//! (e.g. start at next commit) stops at the start block instead of never
//! stopping, and a `next commit` stop is the height at request time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt as _};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};
use twill_configtx::channel::ChannelConfig;
use twill_protos::common::{
    Block, ChannelHeader, Envelope, Payload, SignatureHeader, Status as FabricStatus,
};
use twill_protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use twill_protos::orderer::seek_position::Type as Position;
use twill_protos::orderer::{deliver_response, DeliverResponse, SeekInfo};

use crate::broadcast::{is_decode_error, ChainManager, ChainSupport};
use crate::msgprocessor::{self, Reject};

const LOG: &str = "orderer::deliver";

/// Responses (blocks) queued ahead of a slow client.
const SEND_BUFFER: usize = 4;

/// How often a Deliver stream waiting for blocks checks that its chain
/// still runs.
const HALT_POLL: Duration = Duration::from_secs(1);

/// The client went away; stop serving its stream.
struct Gone;

type Tx = mpsc::Sender<Result<DeliverResponse, Status>>;

/// Serves one Deliver stream. With `mutual_tls`, requests must carry the
/// hash of the client's TLS certificate.
pub(crate) fn serve<M: ChainManager>(
    chains: Arc<M>,
    request: Request<Streaming<Envelope>>,
    mutual_tls: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<DeliverResponse, Status>> + Send + 'static {
    let binding = mutual_tls
        .then(|| twill_comm::peer_cert_der(&request).map(|der| twill_comm::cert_hash(&der)));
    let remote = request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut inbound = request.into_inner();
    let (tx, rx) = mpsc::channel(SEND_BUFFER);
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
                        if is_decode_error(&status) {
                            tracing::warn!(target: LOG, %remote, message = status.message(), "malformed deliver request");
                            let _ = tx.send(Ok(status_response(FabricStatus::BadRequest))).await;
                        } else {
                            tracing::debug!(target: LOG, %remote, code = ?status.code(), "deliver stream ended");
                        }
                        return;
                    }
                };
                let session = Session {
                    tx: &tx,
                    remote: &remote,
                    binding: binding.as_ref(),
                };
                let status = match session.deliver_blocks(chains.as_ref(), &env).await {
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
            () = shutdown => {
                let _ = tx.try_send(Ok(status_response(FabricStatus::ServiceUnavailable)));
            }
        }
    });
    ReceiverStream::new(rx)
}

fn status_response(status: FabricStatus) -> DeliverResponse {
    DeliverResponse {
        r#type: Some(deliver_response::Type::Status(status as i32)),
    }
}

/// One request being served.
struct Session<'a> {
    tx: &'a Tx,
    remote: &'a str,
    /// `Some` with mutual TLS: the client certificate's hash, if it sent one.
    binding: Option<&'a Option<[u8; 32]>>,
}

impl Session<'_> {
    fn refuse(&self, channel: &str, reject: Reject) -> FabricStatus {
        if reject.status == FabricStatus::NotFound {
            tracing::debug!(target: LOG, %channel, remote = self.remote, info = %reject.info, "deliver request refused");
        } else {
            tracing::warn!(
                target: LOG,
                %channel,
                remote = self.remote,
                status = reject.status.as_str_name(),
                info = %reject.info,
                "deliver request refused"
            );
        }
        reject.status
    }

    async fn deliver_blocks<M: ChainManager>(
        &self,
        chains: &M,
        env: &Envelope,
    ) -> Result<FabricStatus, Gone> {
        let header = match msgprocessor::classify(env) {
            Ok((_, header)) => header,
            Err(r) => return Ok(self.refuse("", r)),
        };
        let channel = header.channel_id.clone();
        let Some(chain) = chains.get_chain(&channel) else {
            let reject = Reject {
                status: FabricStatus::NotFound,
                info: format!("channel {channel} not found"),
            };
            return Ok(self.refuse(&channel, reject));
        };
        if chain.is_halted() {
            let reject = Reject {
                status: FabricStatus::ServiceUnavailable,
                info: format!("channel {channel} is not running"),
            };
            return Ok(self.refuse(&channel, reject));
        }
        if let Some(client_hash) = self.binding {
            if let Err(r) = check_binding(&header, client_hash.as_ref()) {
                return Ok(self.refuse(&channel, r));
            }
        }
        let accepted_at = SystemTime::now();
        let mut cfg = chain.config();
        let seek = match check_seek(env, &cfg, accepted_at).await {
            Ok(seek) => seek,
            Err(r) => return Ok(self.refuse(&channel, r)),
        };
        let session_end = creator_not_after(env, &cfg);

        let store = chain.block_store();
        let mut heights = store.subscribe();
        let height = store.height();
        let (start, stop) = match resolve(&seek, height) {
            Ok(range) => range,
            Err(r) => return Ok(self.refuse(&channel, r)),
        };
        let fail_if_not_ready = seek.behavior == SeekBehavior::FailIfNotReady as i32;
        let header_only = seek.content_type == SeekContentType::HeaderWithSig as i32;
        tracing::debug!(target: LOG, %channel, remote = self.remote, start, stop, fail_if_not_ready, "delivering");

        let mut number = start;
        loop {
            if fail_if_not_ready && number >= store.height() {
                let reject = Reject {
                    status: FabricStatus::NotFound,
                    info: format!("block {number} is not yet written"),
                };
                return Ok(self.refuse(&channel, reject));
            }
            loop {
                if number < *heights.borrow_and_update() {
                    break;
                }
                let halted = tokio::select! {
                    () = self.tx.closed() => return Err(Gone),
                    changed = heights.changed() => changed.is_err(),
                    // The chain does not announce that it stopped; look.
                    () = tokio::time::sleep(HALT_POLL) => chain.is_halted(),
                };
                if halted {
                    let reject = Reject {
                        status: FabricStatus::ServiceUnavailable,
                        info: format!("channel {channel} is no longer served"),
                    };
                    return Ok(self.refuse(&channel, reject));
                }
            }

            if session_end.is_some_and(|end| SystemTime::now() > end) {
                let reject = Reject::forbidden("the client's certificate has expired");
                return Ok(self.refuse(&channel, reject));
            }
            let current = chain.config();
            if current.config.sequence != cfg.config.sequence {
                cfg = current;
                if let Err(r) = check_seek(env, &cfg, accepted_at).await {
                    return Ok(self.refuse(&channel, r));
                }
            }

            let block = match read_block(&store, number).await {
                Ok(block) => block,
                Err(r) => return Ok(self.refuse(&channel, r)),
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
            let response = DeliverResponse {
                r#type: Some(deliver_response::Type::Block(block)),
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

/// Fabric's mutual TLS binding: the request names the hash of the TLS
/// client certificate it was sent with.
fn check_binding(header: &ChannelHeader, client_hash: Option<&[u8; 32]>) -> Result<(), Reject> {
    if header.tls_cert_hash.is_empty() {
        return Err(Reject::bad_request(
            "client didn't include its TLS cert hash",
        ));
    }
    let Some(hash) = client_hash else {
        return Err(Reject::bad_request("client didn't send a TLS certificate"));
    };
    if header.tls_cert_hash.as_slice() != hash.as_slice() {
        return Err(Reject::bad_request(
            "claimed TLS cert hash doesn't match the TLS certificate the client sent",
        ));
    }
    Ok(())
}

/// [`msgprocessor::check_deliver_seek_at`] on the blocking pool (it checks
/// a signature and a certificate chain).
async fn check_seek(
    env: &Envelope,
    cfg: &Arc<ChannelConfig>,
    at: SystemTime,
) -> Result<SeekInfo, Reject> {
    let env = env.clone();
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || msgprocessor::check_deliver_seek_at(&env, &cfg, at))
        .await
        .map_err(|e| Reject::internal(format!("deliver request check failed: {e}")))?
}

/// When the request's creator certificate expires, if it can be told.
fn creator_not_after(env: &Envelope, cfg: &ChannelConfig) -> Option<SystemTime> {
    let payload = Payload::decode(env.payload.as_slice()).ok()?;
    let sh = SignatureHeader::decode(payload.header?.signature_header.as_slice()).ok()?;
    let id = cfg.msps.deserialize_identity(&sh.creator).ok()?;
    Some(SystemTime::from(id.not_after()))
}

/// The first and last block numbers of a request at ledger height `height`.
fn resolve(seek: &SeekInfo, height: u64) -> Result<(u64, u64), Reject> {
    let position = |p: Option<&twill_protos::orderer::SeekPosition>, what: &str| {
        p.and_then(|p| p.r#type)
            .ok_or_else(|| Reject::bad_request(format!("seek info has no {what} position")))
    };
    let newest = height.saturating_sub(1);
    let start = match position(seek.start.as_ref(), "start")? {
        Position::Oldest(_) => 0,
        Position::Newest(_) => newest,
        Position::NextCommit(_) => height,
        Position::Specified(s) => {
            if s.number > height {
                return Err(Reject {
                    status: FabricStatus::NotFound,
                    info: format!(
                        "start block {} is beyond the ledger height {height}",
                        s.number
                    ),
                });
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
                return Err(Reject::bad_request(format!(
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
    let bytes = tokio::task::spawn_blocking(move || store.block_bytes(number))
        .await
        .map_err(|e| Reject::internal(format!("reading block {number} failed: {e}")))?
        .map_err(|e| Reject::internal(format!("reading block {number} failed: {e}")))?
        .ok_or_else(|| Reject {
            status: FabricStatus::ServiceUnavailable,
            info: format!("block {number} is missing from the ledger"),
        })?;
    Block::decode(bytes.as_slice())
        .map_err(|e| Reject::internal(format!("block {number} does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_protos::orderer::{
        SeekNewest, SeekNextCommit, SeekOldest, SeekPosition, SeekSpecified,
    };

    fn pos(t: Position) -> Option<SeekPosition> {
        Some(SeekPosition { r#type: Some(t) })
    }

    fn seek(start: Position, stop: Position) -> SeekInfo {
        SeekInfo {
            start: pos(start),
            stop: pos(stop),
            ..Default::default()
        }
    }

    fn spec(n: u64) -> Position {
        Position::Specified(SeekSpecified { number: n })
    }

    #[test]
    fn positions_resolve_as_fabric() {
        let h = 5;
        let r = |s, e| resolve(&seek(s, e), h);
        assert_eq!(
            r(
                Position::Oldest(SeekOldest {}),
                Position::Newest(SeekNewest {})
            )
            .unwrap(),
            (0, 4)
        );
        assert_eq!(
            r(
                Position::Oldest(SeekOldest {}),
                Position::Oldest(SeekOldest {})
            )
            .unwrap(),
            (0, 0)
        );
        assert_eq!(
            r(
                Position::Newest(SeekNewest {}),
                Position::Newest(SeekNewest {})
            )
            .unwrap(),
            (4, 4)
        );
        assert_eq!(r(spec(2), spec(3)).unwrap(), (2, 3));
        assert_eq!(r(spec(5), spec(u64::MAX)).unwrap(), (5, u64::MAX));
        assert_eq!(
            r(
                Position::NextCommit(SeekNextCommit {}),
                Position::Newest(SeekNewest {})
            )
            .unwrap(),
            (5, 5)
        );
        assert_eq!(
            r(spec(6), spec(7)).unwrap_err().status,
            FabricStatus::NotFound
        );
        assert_eq!(
            r(spec(3), spec(2)).unwrap_err().status,
            FabricStatus::BadRequest
        );
        let no_stop = SeekInfo {
            start: pos(spec(0)),
            ..Default::default()
        };
        assert_eq!(
            resolve(&no_stop, h).unwrap_err().status,
            FabricStatus::BadRequest
        );
    }

    #[test]
    fn binding() {
        let mut header = ChannelHeader::default();
        let hash = [7u8; 32];
        assert!(check_binding(&header, Some(&hash)).is_err());
        header.tls_cert_hash = hash.to_vec();
        assert!(check_binding(&header, None).is_err());
        assert!(check_binding(&header, Some(&[8u8; 32])).is_err());
        assert!(check_binding(&header, Some(&hash)).is_ok());
    }
}
