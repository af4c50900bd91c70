//! Long-lived `Broadcast` streams from the gateway to the orderers.
//!
//! Opening a gRPC stream per submitted transaction costs both sides a
//! stream set-up and tear-down; instead each orderer gets a few streams
//! that stay open, and transactions are multiplexed onto them. An orderer
//! answers a stream's envelopes in the order it received them (it works on
//! up to 64 of them at once), so each stream keeps a FIFO of the callers
//! waiting for an answer. When a stream fails, its waiting callers get the
//! error (and try another orderer); the stream is opened again for the next
//! transaction.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel as GrpcChannel;
use twill_protos::common::Envelope;
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::orderer::BroadcastResponse;

const LOG: &str = "peer::gateway::broadcast";

/// Streams kept open to each orderer.
pub const STREAMS_PER_ORDERER: usize = 4;

/// Envelopes one stream carries unanswered (the orderer's per-stream limit).
pub const STREAM_WINDOW: usize = 64;

/// Entries kept before the stream table is emptied (stale config
/// sequences pile up only across config updates).
const TABLE_LIMIT: usize = 256;

type Reply = oneshot::Sender<Result<BroadcastResponse, String>>;
type Job = (Envelope, Reply);
/// Streams by (channel, orderer address, config sequence).
type StreamTable = HashMap<(String, String, u64), Vec<mpsc::Sender<Job>>>;

/// The open streams, by (channel, orderer address, config sequence).
#[derive(Debug, Default)]
pub struct Broadcaster {
    streams: Mutex<StreamTable>,
    next: AtomicUsize,
}

impl Broadcaster {
    /// Sends `envelope` to the orderer at `address` over one of its
    /// streams (opened over `grpc` if needed) and waits for its answer.
    /// The error says why the orderer did not answer.
    pub async fn send(
        &self,
        key: (String, String, u64),
        grpc: impl FnOnce() -> Result<GrpcChannel, String>,
        envelope: Envelope,
    ) -> Result<BroadcastResponse, String> {
        let sender = self.stream(key, grpc)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send((envelope, reply))
            .await
            .map_err(|_| "the broadcast stream task ended".to_owned())?;
        answer
            .await
            .map_err(|_| "the broadcast stream ended without an answer".to_owned())?
    }

    fn stream(
        &self,
        key: (String, String, u64),
        grpc: impl FnOnce() -> Result<GrpcChannel, String>,
    ) -> Result<mpsc::Sender<Job>, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(list) = self.streams.lock().get(&key) {
            return Ok(list[n % list.len()].clone());
        }
        let grpc = grpc()?;
        let list: Vec<mpsc::Sender<Job>> = (0..STREAMS_PER_ORDERER)
            .map(|_| {
                let (tx, rx) = mpsc::channel(STREAM_WINDOW);
                tokio::spawn(run_stream(grpc.clone(), key.1.clone(), rx));
                tx
            })
            .collect();
        let mut table = self.streams.lock();
        if table.len() >= TABLE_LIMIT {
            table.clear();
        }
        let list = table.entry(key).or_insert(list);
        Ok(list[n % list.len()].clone())
    }
}

/// Serves one stream slot until every sender is dropped: opens the stream
/// on the first job, forwards jobs while fewer than [`STREAM_WINDOW`] wait,
/// hands answers to the waiting callers in order, and on a failure fails
/// the waiting callers and reopens for the next job.
async fn run_stream(grpc: GrpcChannel, address: String, mut jobs: mpsc::Receiver<Job>) {
    loop {
        let Some((first, reply)) = jobs.recv().await else {
            return;
        };
        let (env_tx, env_rx) = mpsc::channel::<Envelope>(STREAM_WINDOW);
        let mut waiting: VecDeque<Reply> = VecDeque::with_capacity(STREAM_WINDOW);
        // Cannot fail: the receiver is alive and the buffer empty.
        let _ = env_tx.try_send(first);
        waiting.push_back(reply);
        let mut client = twill_comm::with_message_limits!(AtomicBroadcastClient::new(grpc.clone()));
        let mut answers = match client.broadcast(ReceiverStream::new(env_rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                fail_all(
                    &mut waiting,
                    &format!(
                        "rpc error: code = {:?} desc = {}",
                        status.code(),
                        status.message()
                    ),
                );
                continue;
            }
        };
        tracing::debug!(target: LOG, orderer = %address, "broadcast stream opened");
        let mut closing = false;
        loop {
            tokio::select! {
                job = jobs.recv(), if !closing && waiting.len() < STREAM_WINDOW => match job {
                    Some((envelope, reply)) => {
                        if env_tx.send(envelope).await.is_err() {
                            let _ = reply.send(Err("the broadcast stream closed".into()));
                            break;
                        }
                        waiting.push_back(reply);
                    }
                    None => closing = true,
                },
                answer = answers.message() => match answer {
                    Ok(Some(response)) => {
                        if let Some(reply) = waiting.pop_front() {
                            let _ = reply.send(Ok(response));
                        }
                        if closing && waiting.is_empty() {
                            return;
                        }
                    }
                    Ok(None) => {
                        fail_all(&mut waiting, "the orderer closed the broadcast stream");
                        break;
                    }
                    Err(status) => {
                        fail_all(
                            &mut waiting,
                            &format!("rpc error: code = {:?} desc = {}", status.code(), status.message()),
                        );
                        break;
                    }
                },
            }
        }
        if closing {
            return;
        }
        tracing::debug!(target: LOG, orderer = %address, "broadcast stream ended; reopening on demand");
    }
}

fn fail_all(waiting: &mut VecDeque<Reply>, why: &str) {
    for reply in waiting.drain(..) {
        let _ = reply.send(Err(why.to_owned()));
    }
}
