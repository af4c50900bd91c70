//! The asset-transfer binary against a scripted peer: the process dials a
//! mock `ChaincodeSupport` server, runs the sample's functions over the
//! real protocol, and exits with an error when the peer goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use prost::Message;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use twill_protos::peer::chaincode_message::Type;
use twill_protos::peer::chaincode_support_server::{ChaincodeSupport, ChaincodeSupportServer};
use twill_protos::peer::{
    ChaincodeEvent, ChaincodeId, ChaincodeInput, ChaincodeMessage, DelState, GetHistoryForKey,
    GetQueryResult, GetState, GetStateByRange, PutState, QueryResponse, QueryResultBytes,
};
use twill_protos::prost_types::Timestamp;
use twill_protos::queryresult::{KeyModification, Kv};

const WAIT: Duration = Duration::from_secs(30);
const CC_ID: &str = "basic_1.0:0123abcd";
const CHANNEL: &str = "mychannel";

type Outbound = mpsc::Sender<Result<ChaincodeMessage, Status>>;

struct MockPeer {
    streams: mpsc::UnboundedSender<(Streaming<ChaincodeMessage>, Outbound)>,
}

#[tonic::async_trait]
impl ChaincodeSupport for MockPeer {
    type RegisterStream = ReceiverStream<Result<ChaincodeMessage, Status>>;

    async fn register(
        &self,
        request: Request<Streaming<ChaincodeMessage>>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let _ = self.streams.send((request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn msg(kind: Type, payload: Vec<u8>, txid: &str) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: txid.into(),
        channel_id: CHANNEL.into(),
        ..Default::default()
    }
}

/// What the chaincode answered to one transaction.
#[derive(Debug)]
struct Outcome {
    status: i32,
    message: String,
    payload: String,
    event: Option<ChaincodeEvent>,
}

struct Peer {
    inbound: Streaming<ChaincodeMessage>,
    outbound: Outbound,
    state: BTreeMap<String, Vec<u8>>,
    tx_count: u32,
}

impl Peer {
    async fn recv(&mut self) -> ChaincodeMessage {
        tokio::time::timeout(WAIT, self.inbound.next())
            .await
            .expect("timed out waiting for the chaincode")
            .expect("chaincode closed the stream")
            .expect("stream error")
    }

    async fn send(&self, message: ChaincodeMessage) {
        self.outbound.send(Ok(message)).await.unwrap();
    }

    /// Runs one transaction, answering the chaincode's requests from the
    /// in-memory state.
    async fn invoke(&mut self, args: &[&str]) -> Outcome {
        self.tx_count += 1;
        let txid = format!("tx{}", self.tx_count);
        let input = ChaincodeInput {
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            ..Default::default()
        };
        self.send(msg(Type::Transaction, input.encode_to_vec(), &txid))
            .await;
        loop {
            let message = self.recv().await;
            assert_eq!(message.txid, txid);
            assert_eq!(message.channel_id, CHANNEL);
            if message.r#type == Type::Completed as i32 {
                let response =
                    twill_protos::peer::Response::decode(message.payload.as_slice()).unwrap();
                return Outcome {
                    status: response.status,
                    message: response.message,
                    payload: String::from_utf8(response.payload).unwrap(),
                    event: message.chaincode_event,
                };
            }
            let reply = self.answer(&message);
            self.send(msg(Type::Response, reply, &txid)).await;
        }
    }

    fn answer(&mut self, request: &ChaincodeMessage) -> Vec<u8> {
        let payload = request.payload.as_slice();
        let records = |pairs: Vec<(&String, &Vec<u8>)>| QueryResponse {
            results: pairs
                .into_iter()
                .map(|(key, value)| QueryResultBytes {
                    result_bytes: Kv {
                        namespace: "basic".into(),
                        key: key.clone(),
                        value: value.clone(),
                    }
                    .encode_to_vec(),
                })
                .collect(),
            has_more: false,
            id: "q".into(),
            metadata: Vec::new(),
        };
        match Type::try_from(request.r#type).unwrap() {
            Type::GetState => {
                let get = GetState::decode(payload).unwrap();
                self.state.get(&get.key).cloned().unwrap_or_default()
            }
            Type::PutState => {
                let put = PutState::decode(payload).unwrap();
                self.state.insert(put.key, put.value);
                Vec::new()
            }
            Type::DelState => {
                let del = DelState::decode(payload).unwrap();
                self.state.remove(&del.key);
                Vec::new()
            }
            Type::GetStateByRange => {
                let range = GetStateByRange::decode(payload).unwrap();
                assert_eq!((range.start_key.as_str(), range.end_key.as_str()), ("", ""));
                records(self.state.iter().collect()).encode_to_vec()
            }
            Type::GetQueryResult => {
                // Enough of a CouchDB selector: top-level field equality.
                let query = GetQueryResult::decode(payload).unwrap();
                let query: Value = serde_json::from_str(&query.query).unwrap();
                let selector = query["selector"].as_object().unwrap().clone();
                let matching = self
                    .state
                    .iter()
                    .filter(|(_, v)| {
                        let doc: Value = serde_json::from_slice(v).unwrap();
                        selector.iter().all(|(field, want)| doc[field] == *want)
                    })
                    .collect();
                records(matching).encode_to_vec()
            }
            Type::GetHistoryForKey => {
                let key = GetHistoryForKey::decode(payload).unwrap().key;
                let change = KeyModification {
                    tx_id: "tx-hist".into(),
                    value: self.state.get(&key).cloned().unwrap_or_default(),
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 0,
                    }),
                    is_delete: false,
                };
                QueryResponse {
                    results: vec![QueryResultBytes {
                        result_bytes: change.encode_to_vec(),
                    }],
                    ..Default::default()
                }
                .encode_to_vec()
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
}

fn ok(outcome: &Outcome) -> &str {
    assert_eq!(outcome.status, 200, "{}", outcome.message);
    &outcome.payload
}

fn failed(outcome: &Outcome) -> &str {
    assert_eq!(outcome.status, 500, "{outcome:?}");
    &outcome.message
}

fn event(outcome: &Outcome) -> (String, Value) {
    let event = outcome.event.as_ref().expect("event");
    (
        event.event_name.clone(),
        serde_json::from_slice(&event.payload).unwrap(),
    )
}

#[tokio::test]
async fn asset_transfer_over_the_chaincode_protocol() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    tokio::spawn(
        Server::builder()
            .add_service(ChaincodeSupportServer::new(MockPeer {
                streams: streams_tx,
            }))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_asset-transfer"))
        .arg(format!("-peer.address={addr}"))
        .env("CORE_CHAINCODE_ID_NAME", CC_ID)
        .env_remove("CORE_PEER_ADDRESS")
        .env_remove("CHAINCODE_SERVER_ADDRESS")
        .env_remove("CORE_PEER_TLS_ENABLED")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let (inbound, outbound) = tokio::time::timeout(WAIT, streams.recv())
        .await
        .expect("the chaincode did not connect")
        .unwrap();
    let mut peer = Peer {
        inbound,
        outbound,
        state: BTreeMap::new(),
        tx_count: 0,
    };
    let register = peer.recv().await;
    assert_eq!(register.r#type, Type::Register as i32);
    assert_eq!(
        ChaincodeId::decode(register.payload.as_slice())
            .unwrap()
            .name,
        CC_ID
    );
    peer.send(msg(Type::Registered, Vec::new(), "")).await;
    peer.send(msg(Type::Ready, Vec::new(), "")).await;

    ok(&peer.invoke(&["InitLedger"]).await);
    assert_eq!(peer.state.len(), 6);
    assert_eq!(
        peer.state["asset1"],
        br#"{"AppraisedValue":300,"Color":"blue","ID":"asset1","Owner":"Tomoko","Size":5}"#
    );

    let all: Vec<Value> = serde_json::from_str(ok(&peer.invoke(&["GetAllAssets"]).await)).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[2]["Owner"], "Jin Soo");

    let created = peer
        .invoke(&["CreateAsset", "asset7", "purple", "20", "Ana", "900"])
        .await;
    ok(&created);
    let (name, payload) = event(&created);
    assert_eq!(name, "CreateAsset");
    assert_eq!(payload["Size"], 20);
    assert_eq!(
        failed(
            &peer
                .invoke(&["CreateAsset", "asset7", "purple", "20", "Ana", "900"])
                .await
        ),
        "the asset asset7 already exists"
    );
    assert_eq!(
        failed(
            &peer
                .invoke(&["CreateAsset", "asset8", "purple", "huge", "Ana", "900"])
                .await
        ),
        r#"size must be an integer, got "huge""#
    );
    assert!(failed(&peer.invoke(&["CreateAsset", "asset8"]).await).contains("expects 5"));

    assert_eq!(
        ok(&peer.invoke(&["ReadAsset", "asset7"]).await),
        r#"{"AppraisedValue":900,"Color":"purple","ID":"asset7","Owner":"Ana","Size":20}"#
    );

    let updated = peer
        .invoke(&["UpdateAsset", "asset7", "gold", "21", "Ana", "950"])
        .await;
    ok(&updated);
    assert_eq!(event(&updated).1["Color"], "gold");
    assert_eq!(
        failed(
            &peer
                .invoke(&["UpdateAsset", "nope", "gold", "1", "X", "1"])
                .await
        ),
        "the asset nope does not exist"
    );

    let transferred = peer.invoke(&["TransferAsset", "asset7", "Zoe"]).await;
    assert_eq!(ok(&transferred), "Ana");
    let (name, payload) = event(&transferred);
    assert_eq!(
        (name.as_str(), &payload["Owner"]),
        ("TransferAsset", &Value::from("Zoe"))
    );

    let history: Value =
        serde_json::from_str(ok(&peer.invoke(&["GetAssetHistory", "asset7"]).await)).unwrap();
    assert_eq!(history[0]["txId"], "tx-hist");
    assert_eq!(history[0]["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(history[0]["isDelete"], false);
    assert_eq!(history[0]["asset"]["Owner"], "Zoe");

    let found: Vec<Value> = serde_json::from_str(ok(&peer
        .invoke(&["QueryAssets", r#"{"selector":{"Owner":"Max"}}"#])
        .await))
    .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["ID"], "asset4");
    assert!(failed(&peer.invoke(&["QueryAssets", "{not json"]).await).contains("not valid JSON"));

    let deleted = peer.invoke(&["DeleteAsset", "asset7"]).await;
    ok(&deleted);
    let (name, payload) = event(&deleted);
    assert_eq!(
        (name.as_str(), &payload["ID"]),
        ("DeleteAsset", &Value::from("asset7"))
    );
    assert_eq!(ok(&peer.invoke(&["AssetExists", "asset7"]).await), "false");
    assert_eq!(ok(&peer.invoke(&["AssetExists", "asset1"]).await), "true");
    assert_eq!(
        failed(&peer.invoke(&["ReadAsset", "asset7"]).await),
        "the asset asset7 does not exist"
    );
    assert_eq!(
        failed(&peer.invoke(&["Nonsense"]).await),
        "unknown function: Nonsense"
    );

    // The peer goes away: the process exits with an error for its launcher.
    drop(peer);
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the chaincode did not exit")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("asset-transfer: the connection to the peer is closed"),
        "{stderr}"
    );
}

#[test]
fn missing_settings_exit_with_the_variable_named() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_asset-transfer"))
        .env_clear()
        .env("CORE_CHAINCODE_ID_NAME", CC_ID)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CORE_PEER_ADDRESS"), "{stderr}");
}
