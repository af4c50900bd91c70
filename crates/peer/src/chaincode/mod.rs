//! Chaincode support: the peer's side of Fabric's chaincode protocol.
//!
//! A chaincode process talks to the peer over one bidirectional stream of
//! `ChaincodeMessage`s. The stream is opened either by the chaincode
//! (`protos.ChaincodeSupport/Register`, served by [`ChaincodeSupportService`];
//! what `fabric-chaincode-node start` and Twill's shim in dial mode do) or by
//! the peer (`protos.Chaincode/Connect` on a chaincode server, for
//! chaincode-as-a-service). Either way the chaincode speaks first:
//!
//! ```text
//! chaincode → REGISTER (ChaincodeID{name: package id})
//! peer      → REGISTERED, READY
//! peer      → TRANSACTION / INIT (ChaincodeInput, txid, channel, SignedProposal)
//! chaincode → GET_STATE / PUT_STATE / ... ; peer → RESPONSE | ERROR
//! chaincode → COMPLETED (Response, event) | ERROR
//! ```
//!
//! [`ChaincodeRegistry`] keeps the registered streams by chaincode id and
//! runs transactions on them ([`ChaincodeRegistry::execute`]): many at once
//! on one stream, told apart by (channel, tx id); each with a timeout. A
//! transaction's requests are answered by its [`TxRequests`] (the endorser's
//! transaction simulator). When a stream breaks, the transactions in flight
//! on it fail with [`ChaincodeError::Disconnected`] and the chaincode is
//! forgotten until it registers again.
//!
//! The peer never sends KEEPALIVE (Node chaincode exits on it) and always
//! puts the client's SignedProposal into TRANSACTION and INIT (the Node
//! contract API needs it for the client identity).

mod handler;
mod requests;
mod runtime;
mod service;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use twill_protos::peer::chaincode_message::Type as MsgType;
use twill_protos::peer::{ChaincodeEvent, ChaincodeMessage, Response, SignedProposal};

pub use handler::serve_stream;
pub use requests::{SimulatorRequests, QUERY_BATCH};
pub use runtime::{ChaincodeRuntime, LaunchConfig, RunRequest, Simulated, DEFAULT_STARTUP_TIMEOUT};
pub use service::{connect_chaincode_server, ChaincodeSupportService};

const LOG: &str = "peer::chaincode";

/// How long a transaction may run in the chaincode (Fabric's
/// `chaincode.executetimeout` default).
pub const DEFAULT_EXECUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why running a transaction in a chaincode failed (not a chaincode's own
/// error response, which is a [`Response`] with status ≥ 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChaincodeError {
    /// No chaincode with this id is registered (not running, or not yet
    /// connected).
    #[error("chaincode {id} is not running")]
    NotRunning {
        /// The chaincode id (package id).
        id: String,
    },
    /// The same (channel, tx id) is already running in this chaincode.
    #[error("transaction {tx_id} is already running in chaincode {id}")]
    DuplicateTransaction {
        /// The chaincode id.
        id: String,
        /// The transaction id.
        tx_id: String,
    },
    /// The chaincode did not answer in time.
    #[error("chaincode {id} did not complete transaction {tx_id} within {timeout:?}")]
    Timeout {
        /// The chaincode id.
        id: String,
        /// The transaction id.
        tx_id: String,
        /// The limit.
        timeout: Duration,
    },
    /// The stream to the chaincode broke while the transaction ran.
    #[error("chaincode {id} disconnected while running transaction {tx_id}")]
    Disconnected {
        /// The chaincode id.
        id: String,
        /// The transaction id.
        tx_id: String,
    },
    /// The chaincode answered with ERROR instead of COMPLETED.
    #[error("chaincode {id} failed transaction {tx_id}: {message}")]
    Failed {
        /// The chaincode id.
        id: String,
        /// The transaction id.
        tx_id: String,
        /// The chaincode's error text.
        message: String,
    },
    /// The chaincode's COMPLETED message could not be decoded.
    #[error("chaincode {id} sent a malformed completion for {tx_id}: {reason}")]
    Malformed {
        /// The chaincode id.
        id: String,
        /// The transaction id.
        tx_id: String,
        /// What was wrong.
        reason: String,
    },
}

impl ChaincodeError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ChaincodeError::NotRunning { .. } => "CHAINCODE_NOT_RUNNING",
            ChaincodeError::DuplicateTransaction { .. } => "CHAINCODE_DUPLICATE_TX",
            ChaincodeError::Timeout { .. } => "CHAINCODE_TIMEOUT",
            ChaincodeError::Disconnected { .. } => "CHAINCODE_DISCONNECTED",
            ChaincodeError::Failed { .. } => "CHAINCODE_FAILED",
            ChaincodeError::Malformed { .. } => "CHAINCODE_MALFORMED",
        }
    }
}

/// Answers the requests a chaincode makes while it runs one transaction
/// (state reads and writes, queries). Implemented over the transaction
/// simulator by the endorser.
pub trait TxRequests: Send + Sync {
    /// Handles one request message (GET_STATE, PUT_STATE, ...): `Ok` is the
    /// RESPONSE payload, `Err` the text of an ERROR reply. Called on a
    /// blocking thread (on the connection's task for the kinds
    /// [`answers_from_memory`](Self::answers_from_memory) names), one request
    /// at a time per transaction.
    fn handle(&self, request: &ChaincodeMessage) -> Result<Vec<u8>, String>;

    /// True when [`handle`](Self::handle) answers requests of type `kind`
    /// from memory, without blocking I/O: they are then handled on the
    /// connection's task, saving two thread hand-offs a request. Default:
    /// none.
    fn answers_from_memory(&self, kind: MsgType) -> bool {
        let _ = kind;
        false
    }
}

/// What to run in a chaincode.
pub struct Invocation {
    /// Channel of the transaction.
    pub channel_id: String,
    /// Transaction id.
    pub tx_id: String,
    /// Serialized `ChaincodeInput`.
    pub input: Vec<u8>,
    /// INIT instead of TRANSACTION.
    pub is_init: bool,
    /// The client's signed proposal.
    pub proposal: Option<SignedProposal>,
    /// Serves the chaincode's requests.
    pub requests: Arc<dyn TxRequests>,
}

impl std::fmt::Debug for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("channel_id", &self.channel_id)
            .field("tx_id", &self.tx_id)
            .field("is_init", &self.is_init)
            .finish_non_exhaustive()
    }
}

/// A chaincode's answer to one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The chaincode's response (status 200 on success; ≥ 400 is an error).
    pub response: Response,
    /// The event it set, if any (`chaincode_id` and `tx_id` not yet filled).
    pub event: Option<ChaincodeEvent>,
}

/// One registered chaincode stream.
pub(crate) struct Connection {
    id: String,
    /// Serial number, so a stream that ends does not unregister its
    /// successor.
    serial: u64,
    outgoing: mpsc::Sender<ChaincodeMessage>,
    running: Mutex<HashMap<(String, String), RunningTx>>,
}

/// A transaction in flight on a connection.
struct RunningTx {
    requests: Arc<dyn TxRequests>,
    done: oneshot::Sender<Result<ChaincodeMessage, ChaincodeError>>,
}

impl Connection {
    fn fail_all(&self) {
        let running: Vec<((String, String), RunningTx)> = self.running.lock().drain().collect();
        for ((_, tx_id), tx) in running {
            let _ = tx.done.send(Err(ChaincodeError::Disconnected {
                id: self.id.clone(),
                tx_id,
            }));
        }
    }
}

/// The registered chaincodes of a peer, by chaincode id (the package id the
/// chaincode sends in REGISTER).
#[derive(Default)]
pub struct ChaincodeRegistry {
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    next_serial: Mutex<u64>,
    /// Bumped on every registration, for [`ChaincodeRegistry::wait_for`].
    registered: Mutex<Option<watch::Sender<u64>>>,
    execute_timeout: Mutex<Option<Duration>>,
}

impl std::fmt::Debug for ChaincodeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeRegistry")
            .field("registered", &self.ids())
            .finish_non_exhaustive()
    }
}

impl ChaincodeRegistry {
    /// An empty registry with [`DEFAULT_EXECUTE_TIMEOUT`].
    pub fn new() -> Arc<ChaincodeRegistry> {
        Arc::new(ChaincodeRegistry::default())
    }

    /// An empty registry whose transactions time out after `timeout`.
    pub fn with_execute_timeout(timeout: Duration) -> Arc<ChaincodeRegistry> {
        let registry = ChaincodeRegistry::default();
        *registry.execute_timeout.lock() = Some(timeout);
        Arc::new(registry)
    }

    /// Ids of the registered chaincodes, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.connections.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// True if a chaincode with this id is registered.
    pub fn is_registered(&self, id: &str) -> bool {
        self.connections.lock().contains_key(id)
    }

    /// Waits up to `timeout` for chaincode `id` to register.
    pub async fn wait_for(&self, id: &str, timeout: Duration) -> bool {
        let mut changes = {
            let mut sender = self.registered.lock();
            sender
                .get_or_insert_with(|| watch::channel(0).0)
                .subscribe()
        };
        let wait = async {
            loop {
                if self.is_registered(id) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.is_registered(id)
    }

    fn timeout(&self) -> Duration {
        self.execute_timeout
            .lock()
            .unwrap_or(DEFAULT_EXECUTE_TIMEOUT)
    }

    /// Records a registered stream; replaces an earlier stream of the same
    /// chaincode (whose transactions keep running on it).
    pub(crate) fn register(
        &self,
        id: &str,
        outgoing: mpsc::Sender<ChaincodeMessage>,
    ) -> Arc<Connection> {
        let serial = {
            let mut next = self.next_serial.lock();
            *next += 1;
            *next
        };
        let connection = Arc::new(Connection {
            id: id.to_owned(),
            serial,
            outgoing,
            running: Mutex::new(HashMap::new()),
        });
        self.connections
            .lock()
            .insert(id.to_owned(), connection.clone());
        if let Some(sender) = self.registered.lock().as_ref() {
            sender.send_modify(|n| *n += 1);
        }
        tracing::info!(target: LOG, chaincode = %id, "chaincode registered");
        connection
    }

    /// Forgets a stream that ended and fails its transactions in flight.
    pub(crate) fn unregister(&self, connection: &Connection) {
        {
            let mut connections = self.connections.lock();
            if connections
                .get(&connection.id)
                .is_some_and(|c| c.serial == connection.serial)
            {
                connections.remove(&connection.id);
            }
        }
        connection.fail_all();
        tracing::info!(target: LOG, chaincode = %connection.id, "chaincode stream ended");
    }

    /// Runs one transaction in chaincode `id` and waits for its completion
    /// (at most the execute timeout).
    pub async fn execute(
        &self,
        id: &str,
        invocation: Invocation,
    ) -> Result<Completion, ChaincodeError> {
        let connection = self
            .connections
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ChaincodeError::NotRunning { id: id.to_owned() })?;
        let key = (invocation.channel_id.clone(), invocation.tx_id.clone());
        let (done_tx, done_rx) = oneshot::channel();
        {
            let mut running = connection.running.lock();
            if running.contains_key(&key) {
                return Err(ChaincodeError::DuplicateTransaction {
                    id: id.to_owned(),
                    tx_id: invocation.tx_id,
                });
            }
            running.insert(
                key.clone(),
                RunningTx {
                    requests: invocation.requests.clone(),
                    done: done_tx,
                },
            );
        }
        let message = ChaincodeMessage {
            r#type: if invocation.is_init {
                MsgType::Init
            } else {
                MsgType::Transaction
            } as i32,
            payload: invocation.input,
            txid: invocation.tx_id.clone(),
            proposal: invocation.proposal,
            channel_id: invocation.channel_id.clone(),
            ..Default::default()
        };
        let disconnected = || ChaincodeError::Disconnected {
            id: id.to_owned(),
            tx_id: invocation.tx_id.clone(),
        };
        if connection.outgoing.send(message).await.is_err() {
            connection.running.lock().remove(&key);
            return Err(disconnected());
        }
        let timeout = self.timeout();
        let answer = match tokio::time::timeout(timeout, done_rx).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(disconnected()),
            Err(_) => {
                connection.running.lock().remove(&key);
                return Err(ChaincodeError::Timeout {
                    id: id.to_owned(),
                    tx_id: invocation.tx_id,
                    timeout,
                });
            }
        };
        completion(id, &invocation.tx_id, answer)
    }
}

/// Turns the chaincode's final message into a [`Completion`].
fn completion(
    id: &str,
    tx_id: &str,
    message: ChaincodeMessage,
) -> Result<Completion, ChaincodeError> {
    use prost::Message as _;
    match MsgType::try_from(message.r#type) {
        Ok(MsgType::Completed) => {
            let response = Response::decode(message.payload.as_slice()).map_err(|e| {
                ChaincodeError::Malformed {
                    id: id.to_owned(),
                    tx_id: tx_id.to_owned(),
                    reason: format!("response does not decode: {e}"),
                }
            })?;
            Ok(Completion {
                response,
                event: message.chaincode_event,
            })
        }
        _ => Err(ChaincodeError::Failed {
            id: id.to_owned(),
            tx_id: tx_id.to_owned(),
            message: String::from_utf8_lossy(&message.payload).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
