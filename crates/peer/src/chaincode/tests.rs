//! The registry and stream handler against a scripted chaincode over
//! in-memory channels.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use twill_protos::peer::chaincode_message::Type as MsgType;
use twill_protos::peer::{
    ChaincodeEvent, ChaincodeId, ChaincodeMessage, GetState, Response, SignedProposal,
};

use super::*;

const ID: &str = "basic_1.0:00ff";

/// Answers GET_STATE with "value-of-<key>" (on a blocking thread) and
/// refuses everything else (PUT_STATE on the connection's task).
struct Echo;

impl TxRequests for Echo {
    fn answers_from_memory(&self, kind: MsgType) -> bool {
        kind == MsgType::PutState
    }

    fn handle(&self, request: &ChaincodeMessage) -> Result<Vec<u8>, String> {
        if request.r#type != MsgType::GetState as i32 {
            return Err("only GET_STATE here".into());
        }
        let get = GetState::decode(request.payload.as_slice()).map_err(|e| e.to_string())?;
        Ok(format!("value-of-{}", get.key).into_bytes())
    }
}

/// The chaincode's end of a stream served by `serve_stream`.
struct FakeChaincode {
    to_peer: mpsc::Sender<Result<ChaincodeMessage, tonic::Status>>,
    from_peer: mpsc::Receiver<ChaincodeMessage>,
    served: tokio::task::JoinHandle<Result<(), String>>,
}

impl FakeChaincode {
    async fn connect(registry: &Arc<ChaincodeRegistry>) -> FakeChaincode {
        let (to_peer, incoming) = mpsc::channel(16);
        let (outgoing, from_peer) = mpsc::channel(16);
        let served = tokio::spawn(serve_stream(
            registry.clone(),
            ReceiverStream::new(incoming),
            outgoing,
        ));
        let mut cc = FakeChaincode {
            to_peer,
            from_peer,
            served,
        };
        cc.send(ChaincodeMessage {
            r#type: MsgType::Register as i32,
            payload: ChaincodeId {
                name: ID.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            ..Default::default()
        })
        .await;
        assert_eq!(cc.recv().await.r#type, MsgType::Registered as i32);
        assert_eq!(cc.recv().await.r#type, MsgType::Ready as i32);
        cc
    }

    async fn send(&mut self, message: ChaincodeMessage) {
        self.to_peer.send(Ok(message)).await.unwrap();
    }

    async fn recv(&mut self) -> ChaincodeMessage {
        tokio::time::timeout(Duration::from_secs(5), self.from_peer.recv())
            .await
            .expect("a message from the peer")
            .expect("stream open")
    }
}

fn invocation(tx_id: &str) -> Invocation {
    Invocation {
        channel_id: "mychannel".into(),
        tx_id: tx_id.into(),
        input: b"input".to_vec(),
        is_init: false,
        proposal: Some(SignedProposal {
            proposal_bytes: b"proposal".to_vec(),
            signature: b"sig".to_vec(),
        }),
        requests: Arc::new(Echo),
    }
}

fn completed(tx_id: &str, status: i32, payload: &[u8]) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: MsgType::Completed as i32,
        payload: Response {
            status,
            message: String::new(),
            payload: payload.to_vec(),
        }
        .encode_to_vec(),
        txid: tx_id.into(),
        channel_id: "mychannel".into(),
        chaincode_event: Some(ChaincodeEvent {
            event_name: "Done".into(),
            payload: payload.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_transaction_round_trip_with_a_state_request() {
    let registry = ChaincodeRegistry::new();
    let mut cc = FakeChaincode::connect(&registry).await;
    assert!(registry.wait_for(ID, Duration::from_secs(1)).await);

    let reg = registry.clone();
    let run = tokio::spawn(async move { reg.execute(ID, invocation("tx1")).await });
    let tx = cc.recv().await;
    assert_eq!(tx.r#type, MsgType::Transaction as i32);
    assert_eq!(
        (tx.txid.as_str(), tx.channel_id.as_str()),
        ("tx1", "mychannel")
    );
    assert_eq!(tx.payload, b"input");
    assert_eq!(tx.proposal.unwrap().proposal_bytes, b"proposal");

    cc.send(ChaincodeMessage {
        r#type: MsgType::GetState as i32,
        payload: GetState {
            key: "k".into(),
            collection: String::new(),
        }
        .encode_to_vec(),
        txid: "tx1".into(),
        channel_id: "mychannel".into(),
        ..Default::default()
    })
    .await;
    let answer = cc.recv().await;
    assert_eq!(answer.r#type, MsgType::Response as i32);
    assert_eq!(answer.payload, b"value-of-k");
    assert_eq!(answer.txid, "tx1");

    cc.send(completed("tx1", 200, b"ok")).await;
    let done = run.await.unwrap().unwrap();
    assert_eq!(done.response.status, 200);
    assert_eq!(done.response.payload, b"ok");
    assert_eq!(done.event.unwrap().event_name, "Done");
}

#[tokio::test]
async fn requests_of_a_transaction_not_running_get_an_error() {
    let registry = ChaincodeRegistry::new();
    let mut cc = FakeChaincode::connect(&registry).await;
    cc.send(ChaincodeMessage {
        r#type: MsgType::GetState as i32,
        txid: "nope".into(),
        channel_id: "mychannel".into(),
        ..Default::default()
    })
    .await;
    let answer = cc.recv().await;
    assert_eq!(answer.r#type, MsgType::Error as i32);
    assert!(String::from_utf8_lossy(&answer.payload).contains("nope"));
}

#[tokio::test]
async fn a_request_the_simulator_refuses_gets_the_error_text() {
    let registry = ChaincodeRegistry::new();
    let mut cc = FakeChaincode::connect(&registry).await;
    let reg = registry.clone();
    let run = tokio::spawn(async move { reg.execute(ID, invocation("tx2")).await });
    let _ = cc.recv().await;
    cc.send(ChaincodeMessage {
        r#type: MsgType::PutState as i32,
        txid: "tx2".into(),
        channel_id: "mychannel".into(),
        ..Default::default()
    })
    .await;
    let answer = cc.recv().await;
    assert_eq!(answer.r#type, MsgType::Error as i32);
    assert_eq!(answer.payload, b"only GET_STATE here");
    cc.send(completed("tx2", 500, b"")).await;
    assert_eq!(run.await.unwrap().unwrap().response.status, 500);
}

#[tokio::test]
async fn a_broken_stream_fails_the_transactions_in_flight_and_unregisters() {
    let registry = ChaincodeRegistry::new();
    let mut cc = FakeChaincode::connect(&registry).await;
    let reg = registry.clone();
    let run = tokio::spawn(async move { reg.execute(ID, invocation("tx3")).await });
    let _ = cc.recv().await;
    drop(cc.to_peer);
    let err = run.await.unwrap().unwrap_err();
    assert!(matches!(err, ChaincodeError::Disconnected { .. }), "{err}");
    assert!(cc.served.await.unwrap().is_ok());
    assert!(!registry.is_registered(ID));
    let err = registry.execute(ID, invocation("tx4")).await.unwrap_err();
    assert_eq!(err.code(), "CHAINCODE_NOT_RUNNING");
}

#[tokio::test]
async fn a_silent_chaincode_times_out_and_a_late_answer_is_ignored() {
    let registry = ChaincodeRegistry::with_execute_timeout(Duration::from_millis(200));
    let mut cc = FakeChaincode::connect(&registry).await;
    let err = registry.execute(ID, invocation("tx5")).await.unwrap_err();
    assert!(matches!(err, ChaincodeError::Timeout { .. }), "{err}");
    let _ = cc.recv().await;
    cc.send(completed("tx5", 200, b"late")).await;
    // The stream keeps serving: a new transaction still completes.
    let reg = registry.clone();
    let run = tokio::spawn(async move { reg.execute(ID, invocation("tx6")).await });
    let tx = cc.recv().await;
    assert_eq!(tx.txid, "tx6");
    cc.send(completed("tx6", 200, b"fine")).await;
    assert_eq!(run.await.unwrap().unwrap().response.payload, b"fine");
}

#[tokio::test]
async fn an_error_reply_fails_the_transaction_with_its_text() {
    let registry = ChaincodeRegistry::new();
    let mut cc = FakeChaincode::connect(&registry).await;
    let reg = registry.clone();
    let run = tokio::spawn(async move { reg.execute(ID, invocation("tx7")).await });
    let _ = cc.recv().await;
    cc.send(ChaincodeMessage {
        r#type: MsgType::Error as i32,
        payload: b"cannot decode input".to_vec(),
        txid: "tx7".into(),
        channel_id: "mychannel".into(),
        ..Default::default()
    })
    .await;
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(
        err,
        ChaincodeError::Failed {
            id: ID.into(),
            tx_id: "tx7".into(),
            message: "cannot decode input".into()
        }
    );
}

#[tokio::test]
async fn a_stream_that_does_not_start_with_register_is_refused() {
    let registry = ChaincodeRegistry::new();
    let (to_peer, incoming) = mpsc::channel(4);
    let (outgoing, mut from_peer) = mpsc::channel(4);
    to_peer
        .send(Ok(ChaincodeMessage {
            r#type: MsgType::Completed as i32,
            ..Default::default()
        }))
        .await
        .unwrap();
    let err = serve_stream(registry.clone(), ReceiverStream::new(incoming), outgoing)
        .await
        .unwrap_err();
    assert!(err.contains("REGISTER"), "{err}");
    let reply = from_peer.recv().await.unwrap();
    assert_eq!(reply.r#type, MsgType::Error as i32);
    assert!(registry.ids().is_empty());
}
