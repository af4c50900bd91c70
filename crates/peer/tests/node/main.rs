//! Process-level tests of `twill-peer`: a real peer process on free ports,
//! three real `twill-orderer` processes (from `twill_cli::netkit`), the
//! `twill` CLI, and gRPC clients.
//!
//! The orderer and CLI binaries must be built first:
//! `cargo build -p twill-orderer -p twill-cli` (the peer binary is built by
//! cargo for this test). Set `TWILL_KEEP_TEST_DIRS=1` to keep the folders
//! and read the node logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use twill_cli::netkit::{free_ports, seek_envelope, signed_envelope, NetOptions, OrdererNet};
use twill_comm::ClientTls;
use twill_msp::SigningIdentity;
use twill_protos::common::{Block, BlockchainInfo, Envelope, HeaderType, Status};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::peer::deliver_client::DeliverClient;
use twill_protos::peer::endorser_client::EndorserClient;
use twill_protos::peer::{
    deliver_response, filtered_transaction, ChaincodeAction, ChaincodeActionPayload,
    ChaincodeEndorsedAction, ChaincodeEvent, ChannelQueryResponse, DeliverResponse,
    ProcessedTransaction, ProposalResponse, ProposalResponsePayload, SignedProposal, Transaction,
    TransactionAction,
};

mod chaincode;
mod gateway;
mod ledger;

static ONE_NETWORK_AT_A_TIME: Mutex<()> = Mutex::new(());

const TIMEOUT: Duration = Duration::from_secs(90);
const CHANNEL: &str = "mychannel";
const ORG1: &str = "organizations/peerOrganizations/org1.example.com";

struct TestDir {
    _tmp: Option<tempfile::TempDir>,
    path: PathBuf,
}

fn test_dir() -> TestDir {
    let tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("TWILL_KEEP_TEST_DIRS").is_some() {
        let path = tmp.keep();
        eprintln!("network files in {}", path.display());
        return TestDir { _tmp: None, path };
    }
    TestDir {
        path: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn require_binaries() {
    let dir = twill_cli::netkit::bin_dir().unwrap();
    for bin in ["twill-orderer", "twill"] {
        assert!(
            dir.join(bin).is_file(),
            "{} not found in {}: run `cargo build -p twill-orderer -p twill-cli` first",
            bin,
            dir.display()
        );
    }
}

/// A `twill-peer` process of Org1.
struct PeerProc {
    child: Child,
    address: String,
    operations: String,
    log: PathBuf,
}

impl PeerProc {
    fn start(root: &Path) -> PeerProc {
        PeerProc::start_as(root, "peer0.org1")
    }

    /// A peer process with Org1's peer0 identity whose config, ledger
    /// (`data/<name>`) and log are named `name`; restarting with the same
    /// name reopens the same ledger (on new ports).
    fn start_as(root: &Path, name: &str) -> PeerProc {
        PeerProc::start_org(root, name, 1)
    }

    /// [`PeerProc::start_as`] with org `org`'s peer0 identity.
    fn start_org(root: &Path, name: &str, org: u8) -> PeerProc {
        let ports = free_ports(2).unwrap();
        let node = format!(
            "organizations/peerOrganizations/org{org}.example.com/peers/peer0.org{org}.example.com"
        );
        let yaml = format!(
            "peer:
  id: peer0.org{org}.example.com
  listenAddress: 127.0.0.1:{p}
  address: 127.0.0.1:{p}
  mspConfigPath: {node}/msp
  localMspId: Org{org}MSP
  fileSystemPath: data/{name}
  tls:
    enabled: true
    cert:
      file: {node}/tls/server.crt
    key:
      file: {node}/tls/server.key
    rootcert:
      file: {node}/tls/ca.crt
  gossip:
    bootstrap: 127.0.0.1:{p}
operations:
  listenAddress: 127.0.0.1:{o}
",
            p = ports[0],
            o = ports[1]
        );
        let config = root.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let log = root.join("logs").join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_twill-peer"))
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("TWILL_NET_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut peer = PeerProc {
            child,
            address: format!("127.0.0.1:{}", ports[0]),
            operations: format!("127.0.0.1:{}", ports[1]),
            log,
        };
        peer.wait_listening();
        peer
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        let addr: SocketAddr = self.address.parse().unwrap();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "twill-peer exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "twill-peer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer_tls(net: &OrdererNet) -> ClientTls {
    ClientTls::from_root_files(
        &[net.path(&format!("{ORG1}/tlsca/tlsca.org1.example.com-cert.pem"))],
    )
    .unwrap()
}

fn orderer_tls(net: &OrdererNet) -> ClientTls {
    ClientTls::new(vec![net.orderer_tls_ca().unwrap()])
}

fn admin(net: &OrdererNet) -> SigningIdentity {
    net.signer("org1.example.com", "Org1MSP", "Admin").unwrap()
}

fn user(net: &OrdererNet) -> SigningIdentity {
    net.signer("org1.example.com", "Org1MSP", "User1").unwrap()
}

fn msp_dir(net: &OrdererNet, who: &str) -> PathBuf {
    net.path(&format!("{ORG1}/users/{who}@org1.example.com/msp"))
}

/// Runs `twill peer channel ...` as `who` of Org1; returns (success, stdout, stderr).
fn cli(net: &OrdererNet, peer: &PeerProc, who: &str, args: &[&str]) -> (bool, String, String) {
    let bin = twill_cli::netkit::bin_dir().unwrap().join("twill");
    let out = Command::new(bin)
        .args(["peer", "channel"])
        .args(args)
        .arg("--peer-address")
        .arg(&peer.address)
        .arg("--msp-dir")
        .arg(msp_dir(net, who))
        .arg("--msp-id")
        .arg("Org1MSP")
        .arg("--tls-ca")
        .arg(net.path(&format!("{ORG1}/tlsca/tlsca.org1.example.com-cert.pem")))
        .env_remove("CORE_PEER_ADDRESS")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn propose(
    peer: &PeerProc,
    tls: &ClientTls,
    proposal: SignedProposal,
) -> Result<ProposalResponse, tonic::Status> {
    let channel = twill_comm::connect(&peer.address, Some(tls)).await.unwrap();
    let mut client = EndorserClient::new(channel);
    client
        .process_proposal(proposal)
        .await
        .map(|r| r.into_inner())
}

async fn qscc(
    peer: &PeerProc,
    tls: &ClientTls,
    signer: &SigningIdentity,
    args: &[&[u8]],
) -> twill_protos::peer::Response {
    let proposal = twill_cli::peer::signed_proposal(
        signer,
        HeaderType::EndorserTransaction,
        "",
        "qscc",
        args.iter().map(|a| a.to_vec()).collect(),
    )
    .unwrap();
    propose(peer, tls, proposal)
        .await
        .unwrap()
        .response
        .unwrap()
}

async fn chain_info(peer: &PeerProc, tls: &ClientTls, signer: &SigningIdentity) -> BlockchainInfo {
    let r = qscc(peer, tls, signer, &[b"GetChainInfo", CHANNEL.as_bytes()]).await;
    assert_eq!(r.status, 200, "{}", r.message);
    BlockchainInfo::decode(r.payload.as_slice()).unwrap()
}

async fn wait_height(
    peer: &PeerProc,
    tls: &ClientTls,
    signer: &SigningIdentity,
    height: u64,
) -> BlockchainInfo {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let info = chain_info(peer, tls, signer).await;
        if info.height >= height {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "peer stuck at height {} (want {height}); see {}",
            info.height,
            peer.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An endorser transaction envelope whose one action carries a chaincode
/// event with a payload.
fn tx_with_event(signer: &SigningIdentity, n: usize) -> (String, Envelope) {
    // The tx id is only known after signing; the event names it by number.
    let event = ChaincodeEvent {
        chaincode_id: "basic".into(),
        tx_id: format!("tx-{n}"),
        event_name: "Created".into(),
        payload: b"private payload".to_vec(),
    };
    let action = ChaincodeAction {
        events: event.encode_to_vec(),
        ..Default::default()
    };
    let prp = ProposalResponsePayload {
        proposal_hash: vec![n as u8],
        extension: action.encode_to_vec(),
    };
    let cap = ChaincodeActionPayload {
        chaincode_proposal_payload: Vec::new(),
        action: Some(ChaincodeEndorsedAction {
            proposal_response_payload: prp.encode_to_vec(),
            endorsements: Vec::new(),
        }),
    };
    let tx = Transaction {
        actions: vec![TransactionAction {
            header: Vec::new(),
            payload: cap.encode_to_vec(),
        }],
    };
    signed_envelope(signer, CHANNEL, tx.encode_to_vec()).unwrap()
}

/// Broadcasts each envelope until an orderer among `alive` acknowledges it.
async fn broadcast(net: &OrdererNet, alive: &[usize], envelopes: Vec<Envelope>) {
    let tls = orderer_tls(net);
    let deadline = Instant::now() + TIMEOUT;
    for env in envelopes {
        let mut attempt = 0usize;
        loop {
            let addr = net.orderers[alive[attempt % alive.len()]].client_address();
            attempt += 1;
            if let Ok(channel) = twill_comm::connect(&addr, Some(&tls)).await {
                let mut client = AtomicBroadcastClient::new(channel);
                let (tx, rx) = mpsc::channel(1);
                tx.send(env.clone()).await.unwrap();
                if let Ok(resp) = client.broadcast(ReceiverStream::new(rx)).await {
                    let mut responses = resp.into_inner();
                    if let Ok(Some(r)) = responses.message().await {
                        if r.status == Status::Success as i32 {
                            break;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "broadcast never acknowledged");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The orderer address the peer pulls from, per its `/metrics`.
fn pulling_from(peer: &PeerProc) -> Option<String> {
    let body = http_get(&peer.operations, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with("deliver_orderer_connected{"))
        .and_then(|l| l.split("orderer=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
}

/// The height of orderer `i`'s ledger, per its `/metrics`.
fn orderer_height(net: &OrdererNet, i: usize) -> Option<u64> {
    let body = http_get(&net.orderers[i].operations_address(), "/metrics")?;
    body.lines()
        .find(|l| l.starts_with("ledger_height{") && l.contains(CHANNEL))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Opens a Deliver-family stream on the peer and collects responses until
/// the first status.
async fn peer_deliver(
    peer: &PeerProc,
    tls: &ClientTls,
    env: Envelope,
    filtered: bool,
) -> (Vec<DeliverResponse>, i32) {
    let channel = twill_comm::connect(&peer.address, Some(tls)).await.unwrap();
    let mut client = twill_comm::with_message_limits!(DeliverClient::new(channel));
    let (tx, rx) = mpsc::channel(1);
    tx.send(env).await.unwrap();
    let mut stream = if filtered {
        client.deliver_filtered(ReceiverStream::new(rx)).await
    } else {
        client.deliver(ReceiverStream::new(rx)).await
    }
    .unwrap()
    .into_inner();
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(TIMEOUT, stream.message())
        .await
        .expect("deliver answers in time")
        .unwrap()
    {
        if let Some(deliver_response::Type::Status(s)) = r.r#type {
            drop(tx);
            return (out, s);
        }
        out.push(r);
    }
    panic!("deliver stream ended without a status");
}

/// The whole path: join through the CLI, blocks ordered by three orderers
/// reach the peer with the same hashes, the peer serves them (full and
/// filtered) with TRANSACTIONS_FILTER set, qscc finds transactions, and
/// killing the orderer the peer reads from makes it fail over.
#[test]
fn peer_joins_follows_the_orderers_and_fails_over() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    require_binaries();
    let dir = test_dir();
    let mut net = OrdererNet::create(
        dir.path.as_path(),
        NetOptions {
            orderers: 3,
            batch_timeout: "200ms".into(),
            max_message_count: 10,
            tick_interval: "100ms".into(),
            ..Default::default()
        },
    )
    .unwrap();
    net.start_all(TIMEOUT).unwrap();
    net.join_all().unwrap();
    let mut peer = PeerProc::start(&net.root);
    let rt = runtime();
    let tls = peer_tls(&net);
    let user = user(&net);

    // Join with the CLI, as an Org1 admin.
    let block = net.genesis_block.to_string_lossy().into_owned();
    let (ok, out, err) = cli(&net, &peer, "Admin", &["join", "-b", &block]);
    assert!(ok, "join failed: {out}{err}");
    assert!(
        out.contains("Successfully submitted proposal to join channel"),
        "{out}"
    );
    let (ok, out, err) = cli(&net, &peer, "Admin", &["list"]);
    assert!(ok, "{err}");
    assert_eq!(out, "Channels peers has joined: \nmychannel\n");
    // Joining twice is refused.
    let (ok, _, err) = cli(&net, &peer, "Admin", &["join", "-b", &block]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");

    // Order a few transactions.
    let envelopes: Vec<(String, Envelope)> = (0..5).map(|n| tx_with_event(&user, n)).collect();
    let tx_ids: Vec<String> = envelopes.iter().map(|(id, _)| id.clone()).collect();
    rt.block_on(broadcast(
        &net,
        &[0, 1, 2],
        envelopes.into_iter().map(|(_, e)| e).collect(),
    ));
    let deadline = Instant::now() + TIMEOUT;
    let target = loop {
        let heights: Vec<u64> = (0..3).filter_map(|i| orderer_height(&net, i)).collect();
        if let Some(h) = heights.iter().max() {
            if *h >= 2 {
                break *h;
            }
        }
        assert!(Instant::now() < deadline, "orderers did not cut a block");
        std::thread::sleep(Duration::from_millis(100));
    };

    // The peer reaches the orderers' height with the same tip hash.
    let info = rt.block_on(wait_height(&peer, &tls, &user, target));
    let orderer_blocks = rt.block_on(orderer_deliver(&net, 0, info.height));
    let tip = orderer_blocks.last().unwrap().header.clone().unwrap();
    assert_eq!(
        info.current_block_hash,
        twill_configtx::block::block_header_hash(&tip).to_vec()
    );
    assert_eq!(info.previous_block_hash, tip.previous_hash);

    // getinfo through the CLI prints Fabric's line.
    let (ok, out, err) = cli(&net, &peer, "User1", &["getinfo", "-c", CHANNEL]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Blockchain info: {\"height\":"), "{out}");
    assert!(out.contains("\"currentBlockHash\":\""), "{out}");

    // Deliver from the peer: every block, with the filter set.
    let seek = seek_envelope(&user, CHANNEL, 0, Some(info.height - 1)).unwrap();
    let (responses, status) = rt.block_on(peer_deliver(&peer, &tls, seek, false));
    assert_eq!(status, Status::Success as i32);
    assert_eq!(responses.len() as u64, info.height);
    let mut seen_txs = 0;
    for (n, r) in responses.iter().enumerate() {
        let Some(deliver_response::Type::Block(b)) = &r.r#type else {
            panic!("not a block: {r:?}");
        };
        assert_eq!(b.header.as_ref().unwrap().number, n as u64);
        let count = b.data.as_ref().map_or(0, |d| d.data.len());
        let filter = &b.metadata.as_ref().unwrap().metadata[2];
        assert_eq!(filter.len(), count, "block {n} TRANSACTIONS_FILTER");
        if n == 0 {
            assert_eq!(filter, &vec![0u8; count], "the genesis block is valid");
        } else {
            // These transactions carry no endorsements: the committer marks
            // them invalid (valid ones are covered by the ledger e2e test).
            assert!(filter.iter().all(|c| *c != 0), "block {n}: {filter:?}");
        }
        if n > 0 {
            seen_txs += count;
        }
    }
    assert_eq!(seen_txs, tx_ids.len());

    // DeliverFiltered: tx ids, codes, events without payload.
    let seek = seek_envelope(&user, CHANNEL, 1, Some(info.height - 1)).unwrap();
    let (responses, status) = rt.block_on(peer_deliver(&peer, &tls, seek, true));
    assert_eq!(status, Status::Success as i32);
    let mut filtered_ids = Vec::new();
    for r in &responses {
        let Some(deliver_response::Type::FilteredBlock(fb)) = &r.r#type else {
            panic!("not a filtered block: {r:?}");
        };
        assert_eq!(fb.channel_id, CHANNEL);
        for t in &fb.filtered_transactions {
            assert_ne!(t.tx_validation_code, 0, "unendorsed tx marked valid");
            assert_eq!(t.r#type, HeaderType::EndorserTransaction as i32);
            let Some(filtered_transaction::Data::TransactionActions(a)) = &t.data else {
                panic!("no actions in {t:?}");
            };
            let ev = a.chaincode_actions[0].chaincode_event.as_ref().unwrap();
            assert_eq!(ev.event_name, "Created");
            assert!(ev.payload.is_empty(), "event payload must be stripped");
            filtered_ids.push(t.txid.clone());
        }
    }
    assert_eq!(filtered_ids, tx_ids);

    // qscc lookups.
    rt.block_on(async {
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[
                b"GetTransactionByID",
                CHANNEL.as_bytes(),
                tx_ids[2].as_bytes(),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.message);
        let pt = ProcessedTransaction::decode(r.payload.as_slice()).unwrap();
        assert_ne!(pt.validation_code, 0, "the stored code of an unendorsed tx");
        assert!(pt.transaction_envelope.is_some());
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[b"GetBlockByTxID", CHANNEL.as_bytes(), tx_ids[2].as_bytes()],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.message);
        let by_tx = Block::decode(r.payload.as_slice()).unwrap();
        let number = by_tx.header.as_ref().unwrap().number;
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[
                b"GetBlockByNumber",
                CHANNEL.as_bytes(),
                number.to_string().as_bytes(),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.message);
        assert_eq!(Block::decode(r.payload.as_slice()).unwrap(), by_tx);
        let hash = twill_configtx::block::block_header_hash(by_tx.header.as_ref().unwrap());
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[b"GetBlockByHash", CHANNEL.as_bytes(), &hash],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.message);
        assert_eq!(Block::decode(r.payload.as_slice()).unwrap(), by_tx);
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[b"GetBlockByNumber", CHANNEL.as_bytes(), b"999"],
        )
        .await;
        assert_eq!(r.status, 500);
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[b"GetTransactionByID", CHANNEL.as_bytes(), b"nope"],
        )
        .await;
        assert_eq!(r.status, 500);
        assert!(r.message.contains("nope"), "{}", r.message);
    });

    // Fail over: kill the orderer the peer pulls from, order more.
    let source = pulling_from(&peer).expect("the peer reports its block source");
    let killed = net
        .orderers
        .iter()
        .position(|o| o.client_address() == source)
        .expect("the source is one of the orderers");
    net.kill(killed).unwrap();
    let alive: Vec<usize> = (0..3).filter(|i| *i != killed).collect();
    let more: Vec<Envelope> = (5..8).map(|n| tx_with_event(&user, n).1).collect();
    rt.block_on(broadcast(&net, &alive, more));
    let deadline = Instant::now() + TIMEOUT;
    let target = loop {
        let h = alive
            .iter()
            .filter_map(|i| orderer_height(&net, *i))
            .max()
            .unwrap_or(0);
        if h > info.height {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "surviving orderers did not cut a block"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = rt.block_on(wait_height(&peer, &tls, &user, target));
    assert!(after.height >= target);
    let now_from = pulling_from(&peer);
    assert_ne!(now_from.as_deref(), Some(source.as_str()));
    let metrics = http_get(&peer.operations, "/metrics").unwrap();
    assert!(
        metrics.contains("ledger_blockchain_height{channel=\"mychannel\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ledger_transaction_count{channel=\"mychannel\",validation_code=\""),
        "{metrics}"
    );
    let health = http_get(&peer.operations, "/healthz").unwrap();
    assert!(health.contains("\"OK\""), "{health}");
    assert!(peer.is_running());
}

async fn orderer_deliver(net: &OrdererNet, i: usize, height: u64) -> Vec<Block> {
    let user = user(net);
    let seek = seek_envelope(&user, CHANNEL, 0, Some(height - 1)).unwrap();
    let channel = twill_comm::connect(&net.orderers[i].client_address(), Some(&orderer_tls(net)))
        .await
        .unwrap();
    let mut client = twill_comm::with_message_limits!(AtomicBroadcastClient::new(channel));
    let (tx, rx) = mpsc::channel(1);
    tx.send(seek).await.unwrap();
    let mut stream = client
        .deliver(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut blocks = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        match r.r#type {
            Some(twill_protos::orderer::deliver_response::Type::Block(b)) => blocks.push(b),
            Some(twill_protos::orderer::deliver_response::Type::Status(s)) => {
                assert_eq!(s, Status::Success as i32);
                break;
            }
            None => panic!("empty deliver response"),
        }
    }
    drop(tx);
    blocks
}

/// Bad input is refused with a clear answer and the peer keeps serving.
/// No orderer runs: the peer only needs the genesis block.
#[test]
fn bad_input_is_refused_and_the_peer_keeps_serving() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    require_binaries();
    let dir = test_dir();
    let net = OrdererNet::create(dir.path.as_path(), NetOptions::default()).unwrap();
    let mut peer = PeerProc::start(&net.root);
    let rt = runtime();
    let tls = peer_tls(&net);
    let user = user(&net);
    let block = net.genesis_block.to_string_lossy().into_owned();

    // JoinChain by a non-admin: a 500 response naming the reason.
    let (ok, _, err) = cli(&net, &peer, "User1", &["join", "-b", &block]);
    assert!(!ok);
    assert!(err.contains("bad proposal response 500"), "{err}");
    assert!(
        err.contains("access denied for [JoinChain][mychannel]"),
        "{err}"
    );
    assert!(err.contains("not an admin"), "{err}");

    // An admin of another org is not even known to the local MSP.
    let org2_admin = net.signer("org2.example.com", "Org2MSP", "Admin").unwrap();
    let bytes = std::fs::read(&net.genesis_block).unwrap();
    let proposal = twill_cli::peer::signed_proposal(
        &org2_admin,
        HeaderType::Config,
        "",
        "cscc",
        vec![b"JoinChain".to_vec(), bytes.clone()],
    )
    .unwrap();
    let err = rt.block_on(propose(&peer, &tls, proposal)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("local MSP"), "{}", err.message());

    // Garbage: an error, and the node keeps serving.
    for garbage in [
        SignedProposal {
            proposal_bytes: vec![0xff, 0x00, 0x13],
            signature: vec![1],
        },
        SignedProposal {
            proposal_bytes: vec![],
            signature: vec![],
        },
    ] {
        let err = rt.block_on(propose(&peer, &tls, garbage)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
    // A proposal with a forged signature.
    let mut forged = twill_cli::peer::signed_proposal(
        &user,
        HeaderType::EndorserTransaction,
        "",
        "cscc",
        vec![b"GetChannels".to_vec()],
    )
    .unwrap();
    forged.signature = admin(&net).sign(b"something else").unwrap();
    let err = rt.block_on(propose(&peer, &tls, forged)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // The admin joins.
    let (ok, out, err) = cli(&net, &peer, "Admin", &["join", "-b", &block]);
    assert!(ok, "{out}{err}");

    rt.block_on(async {
        // qscc for a channel the peer has not joined.
        let r = qscc(&peer, &tls, &user, &[b"GetChainInfo", b"nosuchchannel"]).await;
        assert_eq!(r.status, 500);
        assert!(r.message.contains("nosuchchannel"), "{}", r.message);
        // Wrong arity and unknown functions.
        let r = qscc(&peer, &tls, &user, &[b"GetChainInfo"]).await;
        assert_eq!(r.status, 500);
        assert!(
            r.message.contains("Incorrect number of arguments"),
            "{}",
            r.message
        );
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[b"GetBlockByNumber", CHANNEL.as_bytes()],
        )
        .await;
        assert!(r.message.contains("missing 3rd argument"), "{}", r.message);
        let r = qscc(&peer, &tls, &user, &[b"Explode", CHANNEL.as_bytes(), b"x"]).await;
        assert_eq!(r.status, 500);
        let r = qscc(
            &peer,
            &tls,
            &user,
            &[b"GetBlockByNumber", CHANNEL.as_bytes(), b"abc"],
        )
        .await;
        assert!(
            r.message.contains("Failed to parse block number"),
            "{}",
            r.message
        );
        // A user chaincode without a channel, and one never defined on
        // the channel: clear 500s, unendorsed.
        let p = twill_cli::peer::signed_proposal(
            &user,
            HeaderType::EndorserTransaction,
            "",
            "basic",
            vec![b"Get".to_vec()],
        )
        .unwrap();
        let answer = propose(&peer, &tls, p).await.unwrap();
        assert!(answer.endorsement.is_none());
        let r = answer.response.unwrap();
        assert_eq!(r.status, 500);
        assert!(
            r.message.contains("can only be called on a channel"),
            "{}",
            r.message
        );
        let p = twill_cli::peer::signed_proposal(
            &user,
            HeaderType::EndorserTransaction,
            CHANNEL,
            "basic",
            vec![b"Get".to_vec()],
        )
        .unwrap();
        let r = propose(&peer, &tls, p).await.unwrap().response.unwrap();
        assert_eq!(r.status, 500);
        assert!(
            r.message.contains("chaincode basic not found"),
            "{}",
            r.message
        );
        // A proposal on a channel the peer has not joined.
        let p = twill_cli::peer::signed_proposal(
            &user,
            HeaderType::EndorserTransaction,
            "otherchannel",
            "qscc",
            vec![b"GetChainInfo".to_vec(), b"otherchannel".to_vec()],
        )
        .unwrap();
        let r = propose(&peer, &tls, p).await.unwrap().response.unwrap();
        assert_eq!(r.status, 500);
        assert!(
            r.message.contains("channel 'otherchannel' not found"),
            "{}",
            r.message
        );

        // Still serving, and answers are signed by the peer.
        let p = twill_cli::peer::signed_proposal(
            &user,
            HeaderType::EndorserTransaction,
            "",
            "cscc",
            vec![b"GetChannels".to_vec()],
        )
        .unwrap();
        let resp = propose(&peer, &tls, p).await.unwrap();
        let r = resp.response.clone().unwrap();
        assert_eq!(r.status, 200, "{}", r.message);
        let channels = ChannelQueryResponse::decode(r.payload.as_slice()).unwrap();
        assert_eq!(channels.channels[0].channel_id, CHANNEL);
        let e = resp.endorsement.unwrap();
        let mut signed = resp.payload.clone();
        signed.extend_from_slice(&e.endorser);
        let peer_id = SigningIdentity::from_msp_dir(
            &net.path(&format!("{ORG1}/peers/peer0.org1.example.com/msp")),
            "Org1MSP",
        )
        .unwrap();
        assert_eq!(e.endorser, peer_id.serialize());
        peer_id.identity().verify(&signed, &e.signature).unwrap();

        // Deliver by an identity outside /Channel/Application/Readers.
        let orderer_admin = net.signer("example.com", "OrdererMSP", "Admin").unwrap();
        let seek = seek_envelope(&orderer_admin, CHANNEL, 0, Some(0)).unwrap();
        let (blocks, status) = peer_deliver(&peer, &tls, seek, false).await;
        assert!(blocks.is_empty());
        assert_eq!(status, Status::Forbidden as i32);
        // Deliver for an unknown channel.
        let seek = seek_envelope(&user, "nosuchchannel", 0, Some(0)).unwrap();
        let (_, status) = peer_deliver(&peer, &tls, seek, false).await;
        assert_eq!(status, Status::NotFound as i32);
        // A reader gets the genesis block with its filter.
        let seek = seek_envelope(&user, CHANNEL, 0, Some(0)).unwrap();
        let (blocks, status) = peer_deliver(&peer, &tls, seek, false).await;
        assert_eq!(status, Status::Success as i32);
        assert_eq!(blocks.len(), 1);
    });
    assert!(peer.is_running());
}
