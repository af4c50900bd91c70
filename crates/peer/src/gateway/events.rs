//! `ChaincodeEvents`: a chaincode's events, block by block.
//!
//! The start block is the block holding `after_transaction_id` when that
//! transaction is in the ledger, else `start_position.specified`, else (for
//! `next_commit` or no position) the current height. From there every block
//! is read in turn — waiting for blocks not yet committed — and the events
//! of its VALID transactions from the requested chaincode are sent as one
//! message, skipping blocks without any. In the block of
//! `after_transaction_id`, that transaction and those before it are
//! skipped. The stream ends only when the client goes away or the peer
//! shuts down.

use std::sync::Arc;

use prost::Message as _;
use tokio::sync::mpsc;
use tonic::Status;
use twill_protos::gateway::{
    ChaincodeEventsRequest, ChaincodeEventsResponse, SignedChaincodeEventsRequest,
};
use twill_protos::orderer::seek_position;

use super::{EventStream, GatewayService, LOG};
use crate::blocks::chaincode_events;
use crate::endorser::EndorserSupport;

/// Responses buffered ahead of a slow client.
const BUFFER: usize = 16;

/// Checks the request and starts streaming.
pub(super) fn open<S: EndorserSupport>(
    gateway: &GatewayService<S>,
    signed: SignedChaincodeEventsRequest,
) -> Result<EventStream, Status> {
    let request = ChaincodeEventsRequest::decode(signed.request.as_slice()).map_err(|e| {
        Status::invalid_argument(format!("error unmarshalling ChaincodeEventsRequest: {e}"))
    })?;
    if request.chaincode_id.is_empty() {
        return Err(Status::invalid_argument(
            "the request names no chaincode_id",
        ));
    }
    let channel = gateway.channel(&request.channel_id)?;
    gateway.check_reader(
        &channel,
        &request.identity,
        &signed.request,
        &signed.signature,
    )?;
    let store = channel.store().clone();
    // The block and position of the checkpointed transaction, if it is in
    // the ledger.
    let after = if request.after_transaction_id.is_empty() {
        None
    } else {
        store
            .tx_location(&request.after_transaction_id)
            .map_err(|e| Status::aborted(format!("looking up the checkpoint transaction: {e}")))?
    };
    let start = match (
        &after,
        request
            .start_position
            .as_ref()
            .and_then(|p| p.r#type.as_ref()),
    ) {
        (Some(l), _) => l.block_number,
        (None, Some(seek_position::Type::Specified(s))) => s.number,
        (None, Some(seek_position::Type::NextCommit(_)) | None) => store.height(),
        (None, Some(seek_position::Type::Oldest(_))) => {
            return Err(Status::invalid_argument(
                "start position 'oldest' is not supported: use a specified block number",
            ))
        }
        (None, Some(seek_position::Type::Newest(_))) => return Err(Status::invalid_argument(
            "start position 'newest' is not supported: use next commit or a specified block number",
        )),
    };
    let skip_through = after.map(|l| (l.block_number, l.tx_index as usize));
    let (tx, rx) = mpsc::channel(BUFFER);
    let chaincode = request.chaincode_id.clone();
    let cid = request.channel_id.clone();
    let mut shutdown = gateway.shutdown.clone();
    tokio::spawn(async move {
        let mut heights = store.subscribe();
        let mut number = start;
        tracing::debug!(target: LOG, channel = %cid, %chaincode, start, "chaincode events stream opened");
        loop {
            if store.height() <= number {
                tokio::select! {
                    changed = heights.changed() => if changed.is_err() { break },
                    _ = async { shutdown.wait_for(|s| *s).await.map(drop) } => {
                        let _ = tx.send(Err(Status::unavailable("the peer is shutting down"))).await;
                        break;
                    }
                    () = tx.closed() => break,
                }
                continue;
            }
            let reader = Arc::clone(&store);
            let n = number;
            let block = match tokio::task::spawn_blocking(move || reader.block(n)).await {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => {
                    let _ = tx
                        .send(Err(Status::not_found(format!(
                            "block {n} is not in the ledger"
                        ))))
                        .await;
                    break;
                }
                Ok(Err(e)) => {
                    let _ = tx
                        .send(Err(Status::aborted(format!("reading block {n}: {e}"))))
                        .await;
                    break;
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("reading block {n}: {e}"))))
                        .await;
                    break;
                }
            };
            let events: Vec<_> = chaincode_events(&block, &chaincode)
                .into_iter()
                .filter(|(index, _)| match skip_through {
                    Some((b, last)) if b == number => *index > last,
                    _ => true,
                })
                .map(|(_, e)| e)
                .collect();
            if !events.is_empty() {
                let response = ChaincodeEventsResponse {
                    events,
                    block_number: number,
                };
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
            number += 1;
        }
        tracing::debug!(target: LOG, channel = %cid, %chaincode, "chaincode events stream closed");
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
