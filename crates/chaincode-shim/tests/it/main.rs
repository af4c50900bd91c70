//! The shim against a scripted peer, in dial and server mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use twill_chaincode_shim::{
    serve_with_listener, start, ClientTls, DialConfig, Error, ServerConfig, ServerTls,
};
use twill_protos::common::{ChannelHeader, Header, SignatureHeader};
use twill_protos::msp::SerializedIdentity;
use twill_protos::peer::chaincode_client::ChaincodeClient;
use twill_protos::peer::chaincode_message::Type;
use twill_protos::peer::{ChaincodeInput, ChaincodeProposalPayload, Proposal, SignedProposal};
use twill_protos::prost_types::Timestamp;

/// Starts a mock peer and the shim dialing it; returns the peer's stream
/// after the handshake.
async fn dial() -> (PeerSide, JoinHandle<twill_chaincode_shim::Result<()>>) {
    let (addr, mut streams) = mock_peer(None).await;
    let shim = tokio::spawn(start(DialConfig::new(addr.to_string(), CC_ID), router()));
    let mut peer = next_stream(&mut streams).await;
    peer.handshake().await;
    (peer, shim)
}

#[tokio::test]
async fn dial_transaction_reads_writes_ranges_and_sets_event() {
    let (mut peer, _shim) = dial().await;
    let mut ledger = Ledger::new(&[("k1", "v1"), ("k2", "v2"), ("k3", "v3")]);

    peer.send(transaction("tx1", &["ledger_work", "a", "1", "b", "2"]))
        .await;
    let done = peer.serve(&mut ledger, 1).await;

    let completed = &done["tx1"];
    assert_eq!(completed.channel_id, CHANNEL);
    let response = response(completed);
    assert_eq!(response.status, 200, "{}", response.message);
    assert_eq!(
        String::from_utf8(response.payload).unwrap(),
        "a=1 missing=true all=a=1,b=2,k1=v1,k2=v2,k3=v3"
    );
    let event = completed.chaincode_event.as_ref().expect("event");
    assert_eq!(event.event_name, "ledger_work");
    assert_eq!(event.payload, b"5 records");

    // Five records in batches of two: two QUERY_STATE_NEXT, no close.
    assert_eq!(ledger.count(Type::PutState), 2);
    assert_eq!(ledger.count(Type::GetStateByRange), 1);
    assert_eq!(ledger.count(Type::QueryStateNext), 2);
    assert_eq!(ledger.count(Type::QueryStateClose), 0);
    assert_eq!(ledger.state["a"], b"1");
}

#[tokio::test]
async fn unknown_function_completes_with_status_500() {
    let (mut peer, _shim) = dial().await;
    peer.send(transaction("tx-unknown", &["NoSuchFunction", "x"]))
        .await;
    peer.send(transaction("tx-empty", &[])).await;
    let done = peer.serve(&mut Ledger::new(&[]), 2).await;

    let unknown = response(&done["tx-unknown"]);
    assert_eq!(unknown.status, 500);
    assert_eq!(unknown.message, "unknown function: NoSuchFunction");
    assert!(done["tx-unknown"].chaincode_event.is_none());

    let empty = response(&done["tx-empty"]);
    assert_eq!(empty.status, 500);
    assert_eq!(empty.message, "no function name given");
}

#[tokio::test]
async fn handler_errors_and_panics_complete_with_their_status() {
    let (mut peer, _shim) = dial().await;
    peer.send(transaction("tx-fail", &["fail"])).await;
    peer.send(transaction("tx-panic", &["panics"])).await;
    let done = peer.serve(&mut Ledger::new(&[]), 2).await;

    let failed = response(&done["tx-fail"]);
    assert_eq!(
        (failed.status, failed.message.as_str()),
        (403, "not allowed")
    );
    let panicked = response(&done["tx-panic"]);
    assert_eq!(panicked.status, 500);
    assert!(
        panicked.message.contains("panicked"),
        "{}",
        panicked.message
    );

    // The connection survives both.
    peer.send(transaction("tx-after", &["read", "k"])).await;
    let done = peer.serve(&mut Ledger::new(&[("k", "v")]), 1).await;
    assert_eq!(response(&done["tx-after"]).payload, b"tx-after:v");
}

#[tokio::test]
async fn concurrent_transactions_are_answered_independently() {
    let (mut peer, _shim) = dial().await;
    let mut ledger = Ledger::new(&[("x", "value-x"), ("y", "value-y")]);

    peer.send(transaction("tx-x", &["read", "x"])).await;
    peer.send(transaction("tx-y", &["read", "y"])).await;

    // Both transactions are waiting on the peer at the same time.
    let first = peer.recv().await;
    let second = peer.recv().await;
    assert_eq!(first.r#type, Type::GetState as i32);
    assert_eq!(second.r#type, Type::GetState as i32);
    let mut txids = [first.txid.clone(), second.txid.clone()];
    txids.sort();
    assert_eq!(txids, ["tx-x", "tx-y"]);

    // Answer in reverse order of arrival.
    let reply_second = ledger.answer(&second);
    let reply_first = ledger.answer(&first);
    peer.send(reply_second).await;
    peer.send(reply_first).await;

    let done = peer.serve(&mut ledger, 2).await;
    assert_eq!(response(&done["tx-x"]).payload, b"tx-x:value-x");
    assert_eq!(response(&done["tx-y"]).payload, b"tx-y:value-y");
}

#[tokio::test]
async fn the_same_transaction_twice_at_once_is_refused() {
    let (mut peer, _shim) = dial().await;
    let mut ledger = Ledger::new(&[("k", "v")]);

    peer.send(transaction("tx-dup", &["read", "k"])).await;
    let request = peer.recv().await;
    assert_eq!(request.r#type, Type::GetState as i32);

    peer.send(transaction("tx-dup", &["read", "k"])).await;
    let refused = peer.recv().await;
    assert_eq!(refused.r#type, Type::Error as i32);
    assert_eq!(refused.txid, "tx-dup");

    peer.send(ledger.answer(&request)).await;
    let done = peer.serve(&mut ledger, 1).await;
    assert_eq!(response(&done["tx-dup"]).payload, b"tx-dup:v");
}

#[tokio::test]
async fn peer_error_reply_fails_the_transaction() {
    let (mut peer, _shim) = dial().await;
    let mut ledger = Ledger::new(&[]);
    ledger.failing_keys.push("locked".into());

    peer.send(transaction("tx-err", &["read", "locked"])).await;
    let done = peer.serve(&mut ledger, 1).await;
    let failed = response(&done["tx-err"]);
    assert_eq!(failed.status, 500);
    assert_eq!(failed.message, "peer error: cannot read locked");
}

#[tokio::test]
async fn failed_batch_closes_the_query() {
    let (mut peer, _shim) = dial().await;
    let mut ledger = Ledger::new(&[("k1", "v1"), ("k2", "v2"), ("k3", "v3")]);
    ledger.fail_next = true;

    peer.send(transaction("tx-range", &["ledger_work"])).await;
    let done = peer.serve(&mut ledger, 1).await;
    let failed = response(&done["tx-range"]);
    assert_eq!(failed.status, 500);
    assert_eq!(failed.message, "peer error: iterator expired");
    assert_eq!(ledger.closed, ["query-1"]);
}

#[tokio::test]
async fn undecodable_input_is_answered_with_error() {
    let (mut peer, _shim) = dial().await;
    let mut garbage = transaction("tx-bad", &[]);
    garbage.payload = vec![0xff, 0xff, 0xff];
    peer.send(garbage).await;

    let reply = peer.recv().await;
    assert_eq!(reply.r#type, Type::Error as i32);
    assert_eq!(reply.txid, "tx-bad");
    assert_eq!(reply.channel_id, CHANNEL);
    assert!(String::from_utf8_lossy(&reply.payload).contains("ChaincodeInput"));
}

#[tokio::test]
async fn proposal_gives_creator_transient_and_timestamp() {
    let (mut peer, _shim) = dial().await;
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let header = Header {
        channel_header: ChannelHeader {
            timestamp: Some(Timestamp {
                seconds: 1_700_000_123,
                nanos: 9,
            }),
            channel_id: CHANNEL.into(),
            tx_id: "tx-who".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        signature_header: SignatureHeader {
            creator: SerializedIdentity {
                mspid: "Org1MSP".into(),
                id_bytes: pem.as_bytes().to_vec(),
            }
            .encode_to_vec(),
            nonce: vec![1, 2, 3],
        }
        .encode_to_vec(),
    };
    let payload = ChaincodeProposalPayload {
        input: Vec::new(),
        transient_map: BTreeMap::from([("secret".to_owned(), b"42".to_vec())]),
    };
    let proposal = Proposal {
        header: header.encode_to_vec(),
        payload: payload.encode_to_vec(),
        extension: Vec::new(),
    };
    let mut tx = transaction("tx-who", &["whoami"]);
    tx.proposal = Some(SignedProposal {
        proposal_bytes: proposal.encode_to_vec(),
        signature: vec![7],
    });
    peer.send(tx).await;

    let done = peer.serve(&mut Ledger::new(&[]), 1).await;
    let response = response(&done["tx-who"]);
    assert_eq!(response.status, 200, "{}", response.message);
    assert_eq!(
        String::from_utf8(response.payload).unwrap(),
        format!("Org1MSP|{pem}|42|1700000123")
    );
}

#[tokio::test]
async fn init_message_goes_to_the_init_handler() {
    let (mut peer, _shim) = dial().await;
    let mut ledger = Ledger::new(&[]);
    let input = ChaincodeInput {
        args: vec![b"InitLedger".to_vec(), b"p".to_vec(), b"q".to_vec()],
        is_init: true,
        ..Default::default()
    };
    peer.send(msg(Type::Init, input.encode_to_vec(), "tx-init", CHANNEL))
        .await;
    let done = peer.serve(&mut ledger, 1).await;
    assert_eq!(response(&done["tx-init"]).payload, b"init via InitLedger");
    assert_eq!(ledger.state["initialised"], b"p,q");
}

#[tokio::test]
async fn history_pages_queries_metadata_composite_keys_and_invoke() {
    let (mut peer, _shim) = dial().await;
    let mut ledger = Ledger::new(&[("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("z", "other")]);

    peer.send(transaction("tx-extras", &["extras"])).await;
    let done = peer.serve(&mut ledger, 1).await;
    let response = response(&done["tx-extras"]);
    assert_eq!(response.status, 200, "{}", response.message);
    let text = String::from_utf8(response.payload).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "history=tx-a:k1-v1:false;tx-b::true",
            "pages=k1,k2|2|k3|k3|",
            "rich=3",
            "policy=policy|true",
            "composite=1|owner~id|tom/a1",
            "invoke=200|other/otherchannel:fn,x",
        ]
    );
    assert_eq!(
        ledger.metadata["k1"]["VALIDATION_PARAMETER"],
        b"policy".to_vec()
    );
}

#[tokio::test]
async fn stream_end_ends_start_with_disconnected() {
    let (peer, shim) = dial().await;
    drop(peer);
    let result = tokio::time::timeout(Duration::from_secs(20), shim)
        .await
        .expect("start did not return")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
}

#[tokio::test]
async fn refused_registration_is_an_error() {
    let (addr, mut streams) = mock_peer(None).await;
    let shim = tokio::spawn(start(DialConfig::new(addr.to_string(), CC_ID), router()));
    let mut peer = next_stream(&mut streams).await;
    let register = peer.recv().await;
    assert_eq!(register.r#type, Type::Register as i32);
    peer.send(msg(Type::Error, b"unknown chaincode".to_vec(), "", ""))
        .await;
    let result = tokio::time::timeout(Duration::from_secs(20), shim)
        .await
        .unwrap()
        .unwrap();
    match result {
        Err(Error::Registration(text)) => assert_eq!(text, "unknown chaincode"),
        other => panic!("expected a registration error, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_peer_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = start(DialConfig::new(addr.to_string(), CC_ID), router()).await;
    assert!(matches!(result, Err(Error::Transport { .. })), "{result:?}");
}

/// Plays the peer against a chaincode server: dials `Connect`.
async fn connect(channel: tonic::transport::Channel) -> PeerSide {
    let (tx, rx) = mpsc::channel(64);
    let inbound = ChaincodeClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    PeerSide {
        inbound,
        outbound: tx,
    }
}

#[tokio::test]
async fn server_mode_registers_on_every_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with_listener(
        listener,
        ServerConfig::new(addr.to_string(), CC_ID),
        router(),
    ));
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut first = connect(channel.clone()).await;
    first.handshake().await;
    let mut second = connect(channel).await;
    second.handshake().await;

    let mut ledger = Ledger::new(&[("k1", "v1")]);
    first
        .send(transaction("tx-s1", &["ledger_work", "a", "9"]))
        .await;
    let done = first.serve(&mut ledger, 1).await;
    let response_1 = response(&done["tx-s1"]);
    assert_eq!(
        String::from_utf8(response_1.payload).unwrap(),
        "a=9 missing=true all=a=9,k1=v1"
    );
    assert_eq!(
        done["tx-s1"].chaincode_event.as_ref().unwrap().event_name,
        "ledger_work"
    );

    second.send(transaction("tx-s2", &["read", "k1"])).await;
    let done = second.serve(&mut ledger, 1).await;
    assert_eq!(response(&done["tx-s2"]).payload, b"tx-s2:v1");

    // Dropping one connection leaves the other working.
    drop(first);
    second.send(transaction("tx-s3", &["nope"])).await;
    let done = second.serve(&mut ledger, 1).await;
    assert_eq!(response(&done["tx-s3"]).status, 500);
}

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca_cert.pem(),
        server: leaf("localhost"),
        client: leaf("client.example"),
    }
}

#[tokio::test]
async fn mutual_tls_in_both_modes() {
    let pki = pki();

    // Dial mode: the mock peer requires a client certificate.
    let peer_tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    let (addr, mut streams) = mock_peer(Some(peer_tls)).await;
    let config = DialConfig {
        peer_address: addr.to_string(),
        chaincode_id: CC_ID.into(),
        tls: Some(ClientTls {
            root_ca_pem: pki.ca_pem.clone().into_bytes(),
            identity: Some((
                pki.client.0.clone().into_bytes(),
                pki.client.1.clone().into_bytes(),
            )),
            domain_name: Some("localhost".into()),
        }),
    };
    assert!(config.uri().starts_with("https://"));
    let _shim = tokio::spawn(start(config, router()));
    let mut peer = next_stream(&mut streams).await;
    peer.handshake().await;
    peer.send(transaction("tx-tls", &["read", "k"])).await;
    let done = peer.serve(&mut Ledger::new(&[("k", "secure")]), 1).await;
    assert_eq!(response(&done["tx-tls"]).payload, b"tx-tls:secure");

    // Server mode: the chaincode requires the peer's client certificate.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig {
        address: addr.to_string(),
        chaincode_id: CC_ID.into(),
        tls: Some(ServerTls {
            cert_pem: pki.server.0.clone().into_bytes(),
            key_pem: pki.server.1.clone().into_bytes(),
            client_ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        }),
    };
    tokio::spawn(serve_with_listener(listener, config, router()));
    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(&pki.client.0, &pki.client.1))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(client_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut peer = connect(channel).await;
    peer.handshake().await;
    peer.send(transaction("tx-tls2", &["read", "k"])).await;
    let done = peer.serve(&mut Ledger::new(&[("k", "served")]), 1).await;
    assert_eq!(response(&done["tx-tls2"]).payload, b"tx-tls2:served");

    // Without a client certificate the chaincode server refuses the peer.
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    let refused = async {
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .ok()?
            .tls_config(anonymous)
            .ok()?
            .connect()
            .await
            .ok()?;
        let (_tx, rx) = mpsc::channel(1);
        ChaincodeClient::new(channel)
            .connect(ReceiverStream::new(rx))
            .await
            .ok()
    }
    .await;
    assert!(refused.is_none());
}
