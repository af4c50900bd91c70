//! A scripted peer for the shim's tests: a `ChaincodeSupport` server (or a
//! `Chaincode` client) whose stream the test drives by hand, and an
//! in-memory ledger that answers the chaincode's requests.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use twill_chaincode_shim::{Error, Router, Stub};
use twill_protos::peer::chaincode_message::Type;
use twill_protos::peer::chaincode_support_server::{ChaincodeSupport, ChaincodeSupportServer};
use twill_protos::peer::{
    ChaincodeId, ChaincodeInput, ChaincodeMessage, ChaincodeSpec, DelState, GetHistoryForKey,
    GetQueryResult, GetState, GetStateByRange, GetStateMetadata, PutState, PutStateMetadata,
    QueryMetadata, QueryResponse, QueryResponseMetadata, QueryResultBytes, QueryStateClose,
    QueryStateNext, StateMetadata, StateMetadataResult,
};
use twill_protos::prost_types::Timestamp;
use twill_protos::queryresult::{KeyModification, Kv};

pub const CC_ID: &str = "basic_1.0:ab12cd34";
pub const CHANNEL: &str = "mychannel";
const WAIT: Duration = Duration::from_secs(20);

/// The peer's end of one chaincode stream.
pub struct PeerSide {
    pub inbound: Streaming<ChaincodeMessage>,
    pub outbound: mpsc::Sender<ChaincodeMessage>,
}

impl PeerSide {
    /// The next message from the chaincode; panics on timeout or stream end.
    pub async fn recv(&mut self) -> ChaincodeMessage {
        tokio::time::timeout(WAIT, self.inbound.next())
            .await
            .expect("timed out waiting for the chaincode")
            .expect("chaincode closed the stream")
            .expect("stream error")
    }

    pub async fn send(&self, message: ChaincodeMessage) {
        self.outbound.send(message).await.expect("stream closed");
    }

    /// Expects REGISTER for `CC_ID`, answers REGISTERED and READY.
    pub async fn handshake(&mut self) {
        let register = self.recv().await;
        assert_eq!(register.r#type, Type::Register as i32);
        let id = ChaincodeId::decode(register.payload.as_slice()).unwrap();
        assert_eq!(id.name, CC_ID);
        self.send(msg(Type::Registered, Vec::new(), "", "")).await;
        self.send(msg(Type::Ready, Vec::new(), "", "")).await;
    }

    /// Answers the chaincode's requests from `ledger` until `count`
    /// transactions have sent COMPLETED or ERROR; returns those by tx id.
    pub async fn serve(
        &mut self,
        ledger: &mut Ledger,
        count: usize,
    ) -> HashMap<String, ChaincodeMessage> {
        let mut done = HashMap::new();
        while done.len() < count {
            let message = self.recv().await;
            match Type::try_from(message.r#type).unwrap() {
                Type::Completed | Type::Error => {
                    done.insert(message.txid.clone(), message);
                }
                _ => {
                    let reply = ledger.answer(&message);
                    self.send(reply).await;
                }
            }
        }
        done
    }
}

pub fn msg(kind: Type, payload: Vec<u8>, txid: &str, channel: &str) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: txid.into(),
        channel_id: channel.into(),
        ..Default::default()
    }
}

/// A TRANSACTION calling `args` (function first).
pub fn transaction(txid: &str, args: &[&str]) -> ChaincodeMessage {
    let input = ChaincodeInput {
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    msg(Type::Transaction, input.encode_to_vec(), txid, CHANNEL)
}

/// The `Response` inside a COMPLETED message.
pub fn response(message: &ChaincodeMessage) -> twill_protos::peer::Response {
    assert_eq!(
        message.r#type,
        Type::Completed as i32,
        "expected COMPLETED, got {message:?}"
    );
    twill_protos::peer::Response::decode(message.payload.as_slice()).unwrap()
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ChaincodeMessage, Status>> + Send>>;

struct MockPeer {
    streams: mpsc::UnboundedSender<PeerSide>,
}

#[tonic::async_trait]
impl ChaincodeSupport for MockPeer {
    type RegisterStream = OutStream;

    async fn register(
        &self,
        request: Request<Streaming<ChaincodeMessage>>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let _ = self.streams.send(PeerSide {
            inbound: request.into_inner(),
            outbound: tx,
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }
}

/// Starts a mock peer on 127.0.0.1:0; every `Register` call shows up on
/// the returned receiver.
pub async fn mock_peer(
    tls: Option<ServerTlsConfig>,
) -> (SocketAddr, mpsc::UnboundedReceiver<PeerSide>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).unwrap();
    }
    let router = builder.add_service(ChaincodeSupportServer::new(MockPeer { streams: tx }));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    (addr, rx)
}

pub async fn next_stream(streams: &mut mpsc::UnboundedReceiver<PeerSide>) -> PeerSide {
    tokio::time::timeout(WAIT, streams.recv())
        .await
        .expect("the chaincode did not connect")
        .expect("mock peer stopped")
}

/// An in-memory ledger answering the shim's requests like a peer would
/// (writes apply at once, which is enough for the tests).
pub struct Ledger {
    pub state: BTreeMap<String, Vec<u8>>,
    pub metadata: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Records per QueryResponse for unpaginated queries.
    pub batch: usize,
    iterators: HashMap<String, VecDeque<Vec<u8>>>,
    next_id: u32,
    /// Request types seen, in order.
    pub seen: Vec<Type>,
    /// Keys whose GET_STATE is answered with ERROR.
    pub failing_keys: Vec<String>,
    /// Answer QUERY_STATE_NEXT with ERROR.
    pub fail_next: bool,
    /// Query ids closed by the chaincode.
    pub closed: Vec<String>,
}

impl Ledger {
    pub fn new(entries: &[(&str, &str)]) -> Self {
        Self {
            state: entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            metadata: BTreeMap::new(),
            batch: 2,
            iterators: HashMap::new(),
            next_id: 0,
            seen: Vec::new(),
            failing_keys: Vec::new(),
            fail_next: false,
            closed: Vec::new(),
        }
    }

    pub fn count(&self, kind: Type) -> usize {
        self.seen.iter().filter(|&&t| t == kind).count()
    }

    pub fn answer(&mut self, request: &ChaincodeMessage) -> ChaincodeMessage {
        let kind = Type::try_from(request.r#type).unwrap();
        self.seen.push(kind);
        let payload = request.payload.as_slice();
        let result: Result<Vec<u8>, String> = match kind {
            Type::GetState => {
                let get = GetState::decode(payload).unwrap();
                if self.failing_keys.contains(&get.key) {
                    Err(format!("cannot read {}", get.key))
                } else {
                    Ok(self.state.get(&get.key).cloned().unwrap_or_default())
                }
            }
            Type::PutState => {
                let put = PutState::decode(payload).unwrap();
                self.state.insert(put.key, put.value);
                Ok(Vec::new())
            }
            Type::DelState => {
                let del = DelState::decode(payload).unwrap();
                self.state.remove(&del.key);
                Ok(Vec::new())
            }
            Type::GetStateByRange => {
                let range = GetStateByRange::decode(payload).unwrap();
                let records: Vec<(String, Vec<u8>)> = self
                    .state
                    .iter()
                    .filter(|(k, _)| k.as_str() >= range.start_key.as_str())
                    .filter(|(k, _)| {
                        range.end_key.is_empty() || k.as_str() < range.end_key.as_str()
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok(self.records(records, &range.metadata))
            }
            Type::GetQueryResult => {
                // The "query" is a substring the value must contain.
                let query = GetQueryResult::decode(payload).unwrap();
                let records: Vec<(String, Vec<u8>)> = self
                    .state
                    .iter()
                    .filter(|(_, v)| String::from_utf8_lossy(v).contains(&query.query))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok(self.records(records, &query.metadata))
            }
            Type::QueryStateNext => {
                let next = QueryStateNext::decode(payload).unwrap();
                if self.fail_next {
                    return msg(
                        Type::Error,
                        b"iterator expired".to_vec(),
                        &request.txid,
                        &request.channel_id,
                    );
                }
                match self.iterators.remove(&next.id) {
                    Some(rest) => Ok(self.batch_of(next.id, rest).encode_to_vec()),
                    None => Err(format!("no query {}", next.id)),
                }
            }
            Type::QueryStateClose => {
                let close = QueryStateClose::decode(payload).unwrap();
                self.closed.push(close.id.clone());
                self.iterators.remove(&close.id);
                Ok(QueryResponse {
                    id: close.id,
                    ..Default::default()
                }
                .encode_to_vec())
            }
            Type::GetHistoryForKey => {
                let history = GetHistoryForKey::decode(payload).unwrap();
                let records = [
                    KeyModification {
                        tx_id: "tx-a".into(),
                        value: format!("{}-v1", history.key).into_bytes(),
                        timestamp: Some(Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 0,
                        }),
                        is_delete: false,
                    },
                    KeyModification {
                        tx_id: "tx-b".into(),
                        value: Vec::new(),
                        timestamp: Some(Timestamp {
                            seconds: 1_700_000_100,
                            nanos: 500,
                        }),
                        is_delete: true,
                    },
                ];
                let records = records.iter().map(Message::encode_to_vec).collect();
                let id = self.fresh_id();
                Ok(self.batch_of(id, records).encode_to_vec())
            }
            Type::GetStateMetadata => {
                let get = GetStateMetadata::decode(payload).unwrap();
                let entries = self
                    .metadata
                    .get(&get.key)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| StateMetadata {
                                metakey: k.clone(),
                                value: v.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(StateMetadataResult { entries }.encode_to_vec())
            }
            Type::PutStateMetadata => {
                let put = PutStateMetadata::decode(payload).unwrap();
                let entry = put.metadata.unwrap();
                self.metadata
                    .entry(put.key)
                    .or_default()
                    .insert(entry.metakey, entry.value);
                Ok(Vec::new())
            }
            Type::InvokeChaincode => {
                let spec = ChaincodeSpec::decode(payload).unwrap();
                let name = spec.chaincode_id.unwrap().name;
                let args: Vec<String> = spec
                    .input
                    .unwrap()
                    .args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let response = twill_protos::peer::Response {
                    status: 200,
                    message: String::new(),
                    payload: format!("{name}:{}", args.join(",")).into_bytes(),
                };
                let inner = msg(
                    Type::Completed,
                    response.encode_to_vec(),
                    &request.txid,
                    &request.channel_id,
                );
                Ok(inner.encode_to_vec())
            }
            other => Err(format!("unsupported request {other:?}")),
        };
        match result {
            Ok(payload) => msg(Type::Response, payload, &request.txid, &request.channel_id),
            Err(text) => msg(
                Type::Error,
                text.into_bytes(),
                &request.txid,
                &request.channel_id,
            ),
        }
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("query-{}", self.next_id)
    }

    /// A query's first response: one page when `metadata` asks for
    /// pagination, else the first batch.
    fn records(&mut self, records: Vec<(String, Vec<u8>)>, metadata: &[u8]) -> Vec<u8> {
        let encoded = |(key, value): &(String, Vec<u8>)| {
            Kv {
                namespace: "basic".into(),
                key: key.clone(),
                value: value.clone(),
            }
            .encode_to_vec()
        };
        if metadata.is_empty() {
            let id = self.fresh_id();
            return self
                .batch_of(id, records.iter().map(encoded).collect())
                .encode_to_vec();
        }
        let page = QueryMetadata::decode(metadata).unwrap();
        let from = records
            .iter()
            .position(|(k, _)| page.bookmark.is_empty() || *k >= page.bookmark)
            .unwrap_or(records.len());
        let size = usize::try_from(page.page_size).unwrap();
        let chunk = &records[from..(from + size).min(records.len())];
        let bookmark = records
            .get(from + size)
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        QueryResponse {
            results: chunk
                .iter()
                .map(|r| QueryResultBytes {
                    result_bytes: encoded(r),
                })
                .collect(),
            has_more: false,
            id: self.fresh_id(),
            metadata: QueryResponseMetadata {
                fetched_records_count: i32::try_from(chunk.len()).unwrap(),
                bookmark,
            }
            .encode_to_vec(),
        }
        .encode_to_vec()
    }

    fn batch_of(&mut self, id: String, mut rest: VecDeque<Vec<u8>>) -> QueryResponse {
        let take = self.batch.min(rest.len());
        let results = rest
            .drain(..take)
            .map(|result_bytes| QueryResultBytes { result_bytes })
            .collect();
        let has_more = !rest.is_empty();
        if has_more {
            self.iterators.insert(id.clone(), rest);
        }
        QueryResponse {
            results,
            has_more,
            id,
            metadata: Vec::new(),
        }
    }
}

// ---- the chaincode under test -----------------------------------------

/// Puts the argument pairs, reads one back and one missing key, lists the
/// whole state and sets two events (the second should win).
async fn ledger_work(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>, Error> {
    for pair in args.chunks(2) {
        stub.put_state(&pair[0], pair[1].as_bytes()).await?;
    }
    let a = stub.get_state("a").await?.unwrap_or_default();
    let missing = stub.get_state("no-such-key").await?;
    let all = stub.get_state_by_range("", "").await?;
    let listed: Vec<String> = all
        .iter()
        .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)))
        .collect();
    stub.set_event("first", "ignored")?;
    stub.set_event("ledger_work", format!("{} records", all.len()))?;
    Ok(format!(
        "a={} missing={} all={}",
        String::from_utf8_lossy(&a),
        missing.is_none(),
        listed.join(",")
    )
    .into_bytes())
}

/// Reads args[0] and returns it with the transaction id.
async fn read(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>, Error> {
    let value = stub
        .get_state(&args[0])
        .await?
        .ok_or_else(|| Error::chaincode(format!("{} not found", args[0])))?;
    Ok(format!("{}:{}", stub.tx_id(), String::from_utf8_lossy(&value)).into_bytes())
}

async fn fail(_stub: &mut Stub, _args: Vec<String>) -> Result<Vec<u8>, Error> {
    Err(Error::with_status(403, "not allowed"))
}

async fn panics(_stub: &mut Stub, _args: Vec<String>) -> Result<Vec<u8>, Error> {
    panic!("handler bug")
}

/// Who called, with what transient data, when.
async fn whoami(stub: &mut Stub, _args: Vec<String>) -> Result<Vec<u8>, Error> {
    let creator = stub
        .creator()
        .ok_or_else(|| Error::chaincode("no creator"))?
        .clone();
    let secret = stub
        .get_transient()
        .get("secret")
        .cloned()
        .unwrap_or_default();
    let seconds = stub.tx_timestamp().map(|t| t.seconds).unwrap_or_default();
    Ok(format!(
        "{}|{}|{}|{}",
        creator.msp_id,
        String::from_utf8_lossy(&creator.id_bytes),
        String::from_utf8_lossy(&secret),
        seconds
    )
    .into_bytes())
}

/// Exercises history, paging, rich queries, metadata, composite keys and
/// chaincode-to-chaincode calls.
async fn extras(stub: &mut Stub, _args: Vec<String>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();

    let history = stub.get_history_for_key("k1").await?;
    out.push(format!(
        "history={}",
        history
            .iter()
            .map(|m| format!(
                "{}:{}:{}",
                m.tx_id,
                String::from_utf8_lossy(&m.value),
                m.is_delete
            ))
            .collect::<Vec<_>>()
            .join(";")
    ));

    let (page, meta) = stub
        .get_state_by_range_with_pagination("k", "l", 2, "")
        .await?;
    let (page2, meta2) = stub
        .get_state_by_range_with_pagination("k", "l", 2, &meta.bookmark)
        .await?;
    out.push(format!(
        "pages={}|{}|{}|{}|{}",
        page.iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>()
            .join(","),
        meta.fetched_records_count,
        meta.bookmark,
        page2
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>()
            .join(","),
        meta2.bookmark
    ));

    let rich = stub.get_query_result("v").await?;
    out.push(format!("rich={}", rich.len()));

    stub.set_state_validation_parameter("k1", b"policy".to_vec())
        .await?;
    let policy = stub.get_state_validation_parameter("k1").await?;
    let none = stub.get_state_validation_parameter("k2").await?;
    out.push(format!(
        "policy={}|{}",
        String::from_utf8_lossy(&policy.unwrap_or_default()),
        none.is_none()
    ));

    let key = stub.create_composite_key("owner~id", &["tom", "a1"])?;
    stub.put_state(&key, b"x".to_vec()).await?;
    let other = stub.create_composite_key("owner~id", &["tomas", "a2"])?;
    stub.put_state(&other, b"y".to_vec()).await?;
    let toms = stub
        .get_state_by_partial_composite_key("owner~id", &["tom"])
        .await?;
    let (object_type, attributes) = stub.split_composite_key(&toms[0].key)?;
    out.push(format!(
        "composite={}|{}|{}",
        toms.len(),
        object_type,
        attributes.join("/")
    ));

    let called = stub
        .invoke_chaincode("other", &["fn", "x"], "otherchannel")
        .await?;
    out.push(format!(
        "invoke={}|{}",
        called.status,
        String::from_utf8_lossy(&called.payload)
    ));

    Ok(out.join("\n").into_bytes())
}

async fn init(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>, Error> {
    stub.put_state("initialised", args.join(",").into_bytes())
        .await?;
    Ok(format!("init via {}", stub.function()).into_bytes())
}

pub fn router() -> Router {
    Router::new()
        .route("ledger_work", ledger_work)
        .route("read", read)
        .route("fail", fail)
        .route("panics", panics)
        .route("whoami", whoami)
        .route("extras", extras)
        .init(init)
}
