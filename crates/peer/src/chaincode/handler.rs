//! One chaincode stream: the REGISTER handshake, then routing of every
//! message to the transaction it belongs to.

use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use prost::Message as _;
use tokio::sync::mpsc;
use twill_protos::peer::chaincode_message::Type as MsgType;
use twill_protos::peer::{ChaincodeId, ChaincodeMessage};

use super::{ChaincodeRegistry, Connection, LOG};

/// Serves one chaincode stream until it ends: expects REGISTER first,
/// answers REGISTERED and READY, registers the chaincode in `registry`,
/// then dispatches its messages. `outgoing` feeds the stream's other
/// direction. Returns why the stream ended badly, if it did.
pub async fn serve_stream<S>(
    registry: Arc<ChaincodeRegistry>,
    mut incoming: S,
    outgoing: mpsc::Sender<ChaincodeMessage>,
) -> Result<(), String>
where
    S: Stream<Item = Result<ChaincodeMessage, tonic::Status>> + Unpin + Send,
{
    let first = match incoming.next().await {
        Some(Ok(m)) => m,
        Some(Err(status)) => return Err(format!("stream failed before REGISTER: {status}")),
        None => return Err("stream ended before REGISTER".into()),
    };
    let id = match register_id(&first) {
        Ok(id) => id,
        Err(reason) => {
            let _ = outgoing.send(error_reply(&first, &reason)).await;
            return Err(reason);
        }
    };
    for kind in [MsgType::Registered, MsgType::Ready] {
        let reply = ChaincodeMessage {
            r#type: kind as i32,
            ..Default::default()
        };
        if outgoing.send(reply).await.is_err() {
            return Err(format!("chaincode {id} went away during the handshake"));
        }
    }
    let connection = registry.register(&id, outgoing.clone());
    let ended = loop {
        match incoming.next().await {
            Some(Ok(message)) => dispatch(&connection, message),
            Some(Err(status)) => break Err(format!("chaincode {id}: stream failed: {status}")),
            None => break Ok(()),
        }
    };
    registry.unregister(&connection);
    ended
}

/// The chaincode id a REGISTER message names.
fn register_id(message: &ChaincodeMessage) -> Result<String, String> {
    if message.r#type != MsgType::Register as i32 {
        return Err(format!(
            "the first message must be REGISTER, got {}",
            type_name(message.r#type)
        ));
    }
    let cc = ChaincodeId::decode(message.payload.as_slice())
        .map_err(|e| format!("REGISTER payload is not a ChaincodeID: {e}"))?;
    if cc.name.is_empty() {
        return Err("REGISTER names no chaincode".into());
    }
    Ok(cc.name)
}

/// Routes one message of a registered chaincode.
fn dispatch(connection: &Arc<Connection>, message: ChaincodeMessage) {
    let key = (message.channel_id.clone(), message.txid.clone());
    match MsgType::try_from(message.r#type) {
        Ok(MsgType::Completed | MsgType::Error) => {
            let running = connection.running.lock().remove(&key);
            match running {
                Some(tx) => {
                    // Release the request handler before waking the caller,
                    // which then owns the simulation alone.
                    let super::RunningTx { requests, done } = tx;
                    drop(requests);
                    let _ = done.send(Ok(message));
                }
                None => {
                    tracing::warn!(target: LOG, chaincode = %connection.id, tx_id = %message.txid, "completion for a transaction that is not running (timed out?)");
                }
            }
        }
        Ok(MsgType::Keepalive) => {}
        Ok(
            MsgType::GetState
            | MsgType::PutState
            | MsgType::DelState
            | MsgType::GetStateByRange
            | MsgType::GetQueryResult
            | MsgType::QueryStateNext
            | MsgType::QueryStateClose
            | MsgType::GetHistoryForKey
            | MsgType::GetStateMetadata
            | MsgType::PutStateMetadata
            | MsgType::GetPrivateDataHash
            | MsgType::PurgePrivateData
            | MsgType::InvokeChaincode
            | MsgType::WriteBatchState
            | MsgType::GetStateMultiple,
        ) => {
            let requests = connection
                .running
                .lock()
                .get(&key)
                .map(|tx| tx.requests.clone());
            let outgoing = connection.outgoing.clone();
            let Some(requests) = requests else {
                let reply = error_reply(
                    &message,
                    &format!("no transaction {} is running on channel '{}'", key.1, key.0),
                );
                send_soon(outgoing, reply);
                return;
            };
            let inline = MsgType::try_from(message.r#type)
                .is_ok_and(|kind| requests.answers_from_memory(kind));
            if inline {
                let answer = requests.handle(&message);
                // Let go of the simulation before the chaincode can see the
                // answer: once it has, it may finish the transaction, and the
                // runtime then takes the simulation back for itself.
                drop(requests);
                send_soon(outgoing, reply_to(message.channel_id, message.txid, answer));
                return;
            }
            tokio::spawn(async move {
                let (channel_id, txid) = (message.channel_id.clone(), message.txid.clone());
                let answer = tokio::task::spawn_blocking(move || requests.handle(&message))
                    .await
                    .unwrap_or_else(|e| Err(format!("request handler failed: {e}")));
                let _ = outgoing.send(reply_to(channel_id, txid, answer)).await;
            });
        }
        _ => {
            tracing::warn!(target: LOG, chaincode = %connection.id, kind = %type_name(message.r#type), "ignoring an unexpected message from the chaincode");
        }
    }
}

/// The RESPONSE (or, for an error, ERROR) message answering a request of
/// transaction `txid`.
fn reply_to(channel_id: String, txid: String, answer: Result<Vec<u8>, String>) -> ChaincodeMessage {
    let (kind, payload) = match answer {
        Ok(payload) => (MsgType::Response, payload),
        Err(text) => (MsgType::Error, text.into_bytes()),
    };
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid,
        channel_id,
        ..Default::default()
    }
}

/// An ERROR reply to `message` carrying `text`.
fn error_reply(message: &ChaincodeMessage, text: &str) -> ChaincodeMessage {
    reply_to(
        message.channel_id.clone(),
        message.txid.clone(),
        Err(text.to_owned()),
    )
}

/// Queues `reply` on the chaincode's stream: at once if there is room, else
/// from a task that waits for room (the dispatcher never blocks).
fn send_soon(outgoing: mpsc::Sender<ChaincodeMessage>, reply: ChaincodeMessage) {
    if let Err(mpsc::error::TrySendError::Full(reply)) = outgoing.try_send(reply) {
        tokio::spawn(async move {
            let _ = outgoing.send(reply).await;
        });
    }
}

fn type_name(kind: i32) -> String {
    MsgType::try_from(kind)
        .map(|t| t.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("type {kind}"))
}
