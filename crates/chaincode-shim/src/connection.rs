//! One chaincode stream: the handshake, the reader loop, and the routing of
//! peer replies to the transactions waiting for them.
//!
//! The reader loop owns the incoming half of the stream. Every TRANSACTION
//! or INIT becomes a task of its own; its stub's requests go out through the
//! shared outbound queue, and the peer's RESPONSE or ERROR comes back to it
//! through a oneshot registered under the transaction's (channel, tx id).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{FutureExt, Stream, StreamExt};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use twill_protos::peer::chaincode_message::Type as MsgType;
use twill_protos::peer::{ChaincodeId, ChaincodeMessage, Response};

use crate::error::{Error, Result};
use crate::router::Router;
use crate::stub::Stub;
use crate::LOG;

/// How many outgoing messages may wait for the stream.
pub(crate) const OUTBOUND_CAPACITY: usize = 256;

/// Largest message accepted or sent (Fabric's default for chaincode
/// streams).
pub(crate) const MAX_MESSAGE_SIZE: usize = 100 * 1024 * 1024;

/// A transaction's identity on a stream.
pub(crate) type TxKey = (String, String);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves the maps consistent (every
    // critical section is a single insert or remove), so poison is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the reader loop and the transaction tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    outbound: mpsc::Sender<ChaincodeMessage>,
    /// Requests waiting for the peer's reply, one at most per transaction.
    pending: Mutex<HashMap<TxKey, oneshot::Sender<ChaincodeMessage>>>,
    /// Transactions running now.
    running: Mutex<HashSet<TxKey>>,
}

impl Shared {
    pub(crate) fn new(outbound: mpsc::Sender<ChaincodeMessage>) -> Arc<Self> {
        Arc::new(Self {
            outbound,
            pending: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) async fn send(&self, message: ChaincodeMessage) -> Result<()> {
        self.outbound
            .send(message)
            .await
            .map_err(|_| Error::Disconnected)
    }

    /// Sends a request for a transaction and waits for the peer's reply.
    pub(crate) async fn request(
        &self,
        channel_id: &str,
        tx_id: &str,
        kind: MsgType,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let key: TxKey = (channel_id.to_owned(), tx_id.to_owned());
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.contains_key(&key) {
                return Err(Error::Protocol(format!(
                    "transaction {tx_id} already has a request in flight"
                )));
            }
            pending.insert(key.clone(), reply_tx);
        }
        // Forget the waiter however this future ends, dropped included.
        let _waiting = PendingGuard {
            shared: self,
            key: Some(key),
        };
        tracing::trace!(target: LOG, tx_id, channel_id, kind = kind.as_str_name(), "request");
        self.send(message(kind, payload, tx_id, channel_id)).await?;
        let reply = reply_rx.await.map_err(|_| Error::Disconnected)?;
        match MsgType::try_from(reply.r#type) {
            Ok(MsgType::Response) => Ok(reply.payload),
            Ok(MsgType::Error) => Err(Error::Peer(
                String::from_utf8_lossy(&reply.payload).into_owned(),
            )),
            _ => Err(Error::Protocol(format!(
                "expected RESPONSE or ERROR to {}, got {}",
                kind.as_str_name(),
                type_name(reply.r#type)
            ))),
        }
    }

    /// Hands a RESPONSE or ERROR to the request waiting for it.
    fn deliver(&self, reply: ChaincodeMessage) {
        let key: TxKey = (reply.channel_id.clone(), reply.txid.clone());
        let waiter = lock(&self.pending).remove(&key);
        match waiter {
            Some(waiter) => {
                // The request may have been dropped meanwhile; nothing to do then.
                let _ = waiter.send(reply);
            }
            None => tracing::warn!(
                target: LOG,
                tx_id = %reply.txid,
                channel_id = %reply.channel_id,
                kind = %type_name(reply.r#type),
                "reply for no pending request; dropped"
            ),
        }
    }
}

struct PendingGuard<'a> {
    shared: &'a Shared,
    key: Option<TxKey>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.shared.pending).remove(&key);
        }
    }
}

struct RunningGuard {
    shared: Arc<Shared>,
    key: TxKey,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        lock(&self.shared.running).remove(&self.key);
    }
}

pub(crate) fn message(
    kind: MsgType,
    payload: Vec<u8>,
    tx_id: &str,
    channel_id: &str,
) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: tx_id.to_owned(),
        channel_id: channel_id.to_owned(),
        ..ChaincodeMessage::default()
    }
}

pub(crate) fn type_name(kind: i32) -> String {
    MsgType::try_from(kind)
        .map(|t| t.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("type {kind}"))
}

/// The REGISTER message that opens every stream.
pub(crate) fn register_message(chaincode_id: &str) -> ChaincodeMessage {
    let id = ChaincodeId {
        name: chaincode_id.to_owned(),
        ..ChaincodeId::default()
    };
    message(MsgType::Register, id.encode_to_vec(), "", "")
}

/// Runs a stream whose REGISTER has already been queued on `shared`'s
/// outbound queue: waits for REGISTERED, then serves transactions until the
/// stream ends. Always ends in an error, [`Error::Disconnected`] when the
/// peer closed the stream.
pub(crate) async fn run<S>(shared: Arc<Shared>, router: Arc<Router>, mut inbound: S) -> Result<()>
where
    S: Stream<Item = Result<ChaincodeMessage, tonic::Status>> + Unpin + Send,
{
    handshake(&mut inbound).await?;
    tracing::info!(target: LOG, "registered with the peer");
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            next = inbound.next() => {
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(status)) => return Err(Error::Status(status)),
                    None => return Err(Error::Disconnected),
                };
                dispatch(&shared, &router, &mut tasks, message).await?;
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(target: LOG, %error, "transaction task failed");
                }
            }
        }
    }
}

async fn handshake<S>(inbound: &mut S) -> Result<()>
where
    S: Stream<Item = Result<ChaincodeMessage, tonic::Status>> + Unpin + Send,
{
    let mut registered = false;
    loop {
        let message = match inbound.next().await {
            Some(Ok(message)) => message,
            Some(Err(status)) => return Err(Error::Status(status)),
            None => {
                return Err(Error::Registration(
                    "the peer closed the stream during registration".into(),
                ))
            }
        };
        match MsgType::try_from(message.r#type) {
            Ok(MsgType::Registered) if !registered => {
                tracing::debug!(target: LOG, "REGISTERED");
                registered = true;
            }
            Ok(MsgType::Ready) if registered => return Ok(()),
            Ok(MsgType::Keepalive) => {}
            Ok(MsgType::Error) => {
                return Err(Error::Registration(
                    String::from_utf8_lossy(&message.payload).into_owned(),
                ))
            }
            _ => {
                return Err(Error::Registration(format!(
                    "unexpected {} while registering",
                    type_name(message.r#type)
                )))
            }
        }
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    router: &Arc<Router>,
    tasks: &mut JoinSet<()>,
    message: ChaincodeMessage,
) -> Result<()> {
    match MsgType::try_from(message.r#type) {
        Ok(MsgType::Response | MsgType::Error) => shared.deliver(message),
        Ok(kind @ (MsgType::Transaction | MsgType::Init)) => {
            let key: TxKey = (message.channel_id.clone(), message.txid.clone());
            if !lock(&shared.running).insert(key.clone()) {
                tracing::warn!(target: LOG, tx_id = %key.1, channel_id = %key.0, "duplicate transaction");
                let text = format!("transaction {} is already running", key.1);
                shared
                    .send(message_reply(MsgType::Error, text.into_bytes(), &message))
                    .await?;
                return Ok(());
            }
            let guard = RunningGuard {
                shared: Arc::clone(shared),
                key,
            };
            let shared = Arc::clone(shared);
            let router = Arc::clone(router);
            tasks.spawn(async move {
                let reply = execute(&shared, &router, kind == MsgType::Init, message).await;
                // Finished before the peer hears so: it may reuse the id at once.
                drop(guard);
                if shared.send(reply).await.is_err() {
                    tracing::warn!(target: LOG, "stream closed before the transaction's reply went out");
                }
            });
        }
        Ok(MsgType::Keepalive) => {}
        _ => tracing::warn!(
            target: LOG,
            kind = %type_name(message.r#type),
            tx_id = %message.txid,
            "unexpected message ignored"
        ),
    }
    Ok(())
}

fn message_reply(kind: MsgType, payload: Vec<u8>, to: &ChaincodeMessage) -> ChaincodeMessage {
    message(kind, payload, &to.txid, &to.channel_id)
}

/// Runs one transaction and builds its COMPLETED (or, for undecodable
/// input, ERROR) reply.
async fn execute(
    shared: &Arc<Shared>,
    router: &Router,
    is_init: bool,
    incoming: ChaincodeMessage,
) -> ChaincodeMessage {
    let tx_id = incoming.txid.clone();
    let channel_id = incoming.channel_id.clone();
    let mut stub = match Stub::from_message(Arc::clone(shared), incoming) {
        Ok(stub) => stub,
        Err(error) => {
            tracing::warn!(target: LOG, %tx_id, %channel_id, %error, "undecodable transaction");
            return message(
                MsgType::Error,
                error.to_string().into_bytes(),
                &tx_id,
                &channel_id,
            );
        }
    };
    let outcome = AssertUnwindSafe(router.dispatch(&mut stub, is_init))
        .catch_unwind()
        .await;
    let response = match outcome {
        Ok(Ok(payload)) => Response {
            status: 200,
            message: String::new(),
            payload,
        },
        Ok(Err(error)) => {
            tracing::debug!(target: LOG, %tx_id, %error, "transaction failed");
            Response {
                status: error.status(),
                message: error.to_string(),
                payload: Vec::new(),
            }
        }
        Err(_) => {
            tracing::error!(target: LOG, %tx_id, function = stub.function(), "chaincode function panicked");
            Response {
                status: crate::error::ERROR_STATUS,
                message: format!("chaincode function {} panicked", stub.function()),
                payload: Vec::new(),
            }
        }
    };
    tracing::debug!(target: LOG, %tx_id, %channel_id, status = response.status, "transaction completed");
    let mut reply = message(
        MsgType::Completed,
        response.encode_to_vec(),
        &tx_id,
        &channel_id,
    );
    reply.chaincode_event = stub.take_event();
    reply
}
