//! One orderer run by `server::run` on loopback ports chosen by the OS:
//! joined to a one-consenter channel through the admin API (HTTPS, mutual
//! TLS), then driven over gRPC with TLS: Broadcast (transactions, a config
//! update, and bad inputs on the same stream), Deliver (ranges, errors on
//! one stream, shutdown while waiting), and the operations endpoint.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use twill_comm::{ClientTls, TlsFiles};
use twill_configtx::block::{channel_header, compute_tx_id, envelope};
use twill_configtx::channel::config_from_block;
use twill_configtx::genesis::genesis_block_from_profile;
use twill_configtx::profile::LoadedConfigtx;
use twill_configtx::update::{compute_update, config_update_tx, sign_config_update};
use twill_msp::SigningIdentity;
use twill_orderer::config::OrdererConfig;
use twill_orderer::server::{self, Endpoints, ServerError};
use twill_protos::common::{
    Block, ChannelHeader, ConfigUpdateEnvelope, Envelope, HeaderType, Payload, SignatureHeader,
    Status,
};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use twill_protos::orderer::seek_position::Type as Position;
use twill_protos::orderer::{
    deliver_response, BatchSize, BroadcastResponse, DeliverResponse, SeekInfo, SeekNewest,
    SeekOldest, SeekPosition, SeekSpecified,
};

pub(crate) const CHANNEL: &str = "mychannel";
const PROFILE: &str = "TwoOrgsApplicationGenesis";
const ORDERER: &str =
    "organizations/ordererOrganizations/example.com/orderers/orderer0.example.com";
const TLS_CA: &str =
    "organizations/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem";
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// The node's config: every port 0, paths relative to the file.
fn orderer_yaml() -> String {
    format!(
        "\
General:
  ListenAddress: 127.0.0.1
  ListenPort: 0
  TLS:
    Enabled: true
    Certificate: {ORDERER}/tls/server.crt
    PrivateKey: {ORDERER}/tls/server.key
    RootCAs:
      - {ORDERER}/tls/ca.crt
  Cluster:
    ListenAddress: 127.0.0.1
    ListenPort: 0
    RootCAs:
      - {TLS_CA}
  LocalMSPDir: {ORDERER}/msp
  LocalMSPID: OrdererMSP
  BootstrapMethod: none
FileLedger:
  Location: replaced-by-the-environment
Admin:
  ListenAddress: 127.0.0.1:0
  TLS:
    Enabled: true
    Certificate: {ORDERER}/tls/server.crt
    PrivateKey: {ORDERER}/tls/server.key
    ClientAuthRequired: true
    ClientRootCAs:
      - {TLS_CA}
Operations:
  ListenAddress: 127.0.0.1:0
Twill:
  RaftTickInterval: 20ms
"
    )
}

/// The test network's material and a one-consenter channel.
pub(crate) struct Net {
    dir: tempfile::TempDir,
}

impl Net {
    pub(crate) fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let tn = dir.path().join("test-network");
        std::fs::create_dir_all(&tn).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../network-configs/test-network");
        for f in ["crypto-config.yaml", "configtx.yaml"] {
            std::fs::copy(src.join(f), tn.join(f)).unwrap();
        }
        let crypto = twill_cryptogen::load_config(&tn.join("crypto-config.yaml")).unwrap();
        twill_cryptogen::generate(&crypto, &tn.join("organizations")).unwrap();
        std::fs::write(tn.join("orderer0.yaml"), orderer_yaml()).unwrap();
        Net { dir }
    }

    pub(crate) fn tn(&self) -> PathBuf {
        self.dir.path().join("test-network")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state/orderer0")
    }

    /// Block 0 of the channel: the test network's profile with orderer0 as
    /// the only consenter and a short batch timeout.
    pub(crate) fn genesis(&self) -> Block {
        let mut cfg = LoadedConfigtx::load(&self.tn().join("configtx.yaml")).unwrap();
        let profile = cfg.file.profiles.get_mut(PROFILE).unwrap();
        let orderer = profile.orderer.as_mut().unwrap();
        orderer.etcd_raft.as_mut().unwrap().consenters.truncate(1);
        orderer.batch_timeout = "100ms".into();
        genesis_block_from_profile(&cfg, PROFILE, CHANNEL).unwrap()
    }

    pub(crate) fn identity(&self, msp: &str, mspid: &str) -> SigningIdentity {
        SigningIdentity::from_msp_dir(&self.tn().join("organizations").join(msp), mspid).unwrap()
    }

    pub(crate) fn user1(&self) -> SigningIdentity {
        self.identity(
            "peerOrganizations/org1.example.com/users/User1@org1.example.com/msp",
            "Org1MSP",
        )
    }

    pub(crate) fn orderer_admin(&self) -> SigningIdentity {
        self.identity(
            "ordererOrganizations/example.com/users/Admin@example.com/msp",
            "OrdererMSP",
        )
    }

    /// TLS trusting orderer0's TLS CA, optionally with the orderer admin's
    /// client certificate.
    pub(crate) fn client_tls(&self, with_admin_cert: bool) -> ClientTls {
        let ca = self.tn().join(ORDERER).join("tls/ca.crt");
        if with_admin_cert {
            let user = self
                .tn()
                .join("organizations/ordererOrganizations/example.com/users/Admin@example.com/tls");
            ClientTls::from_files(&TlsFiles {
                cert: user.join("client.crt"),
                key: user.join("client.key"),
                root_cas: vec![ca],
            })
            .unwrap()
        } else {
            ClientTls::from_root_files(&[ca]).unwrap()
        }
    }
}

/// A running node.
struct Node {
    endpoints: Endpoints,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Node {
    async fn start(net: &Net) -> Node {
        let env = vec![(
            "ORDERER_FILELEDGER_LOCATION".to_string(),
            net.state().display().to_string(),
        )];
        let config = OrdererConfig::load_with_env(&net.tn().join("orderer0.yaml"), env).unwrap();
        assert_eq!(config.file_ledger.location, net.state());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(config, async {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        let endpoints = loop {
            if let Ok(e) = Endpoints::read(&net.state()) {
                break e;
            }
            if task.is_finished() {
                panic!("the node stopped: {:?}", task.await);
            }
            assert!(started.elapsed() < DEADLINE, "no endpoints.json");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Node {
            endpoints,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the node did not stop");
        result.unwrap().unwrap();
    }
}

/// An envelope of `kind` for `channel` carrying `data`, signed by `signer`;
/// returns it with its tx id.
pub(crate) fn signed(
    signer: &SigningIdentity,
    kind: HeaderType,
    channel: &str,
    data: Vec<u8>,
) -> (Envelope, String) {
    let creator = signer.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = compute_tx_id(&nonce, &creator);
    let ch = channel_header(kind, 0, channel, &tx_id);
    let mut env = envelope(&ch, &SignatureHeader { creator, nonce }, data);
    env.signature = signer.sign(&env.payload).unwrap();
    (env, tx_id)
}

pub(crate) fn tx(signer: &SigningIdentity, channel: &str, n: usize) -> (Envelope, String) {
    signed(
        signer,
        HeaderType::EndorserTransaction,
        channel,
        format!("transaction {n}").into_bytes(),
    )
}

pub(crate) fn seek(
    signer: &SigningIdentity,
    channel: &str,
    start: Position,
    stop: Position,
    behavior: SeekBehavior,
) -> Envelope {
    let info = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(start),
        }),
        stop: Some(SeekPosition { r#type: Some(stop) }),
        behavior: behavior as i32,
        ..Default::default()
    };
    signed(
        signer,
        HeaderType::DeliverSeekInfo,
        channel,
        info.encode_to_vec(),
    )
    .0
}

pub(crate) fn specified(number: u64) -> Position {
    Position::Specified(SeekSpecified { number })
}

pub(crate) fn oldest() -> Position {
    Position::Oldest(SeekOldest {})
}

pub(crate) fn newest() -> Position {
    Position::Newest(SeekNewest {})
}

/// Same envelope, signature over something else.
pub(crate) fn badly_signed(signer: &SigningIdentity, mut env: Envelope) -> Envelope {
    env.signature = signer.sign(b"not the payload").unwrap();
    env
}

pub(crate) fn garbage() -> Envelope {
    Envelope {
        payload: b"\xff\xffnot a payload".to_vec(),
        signature: Vec::new(),
    }
}

pub(crate) fn header_of(env_bytes: &[u8]) -> ChannelHeader {
    let env = Envelope::decode(env_bytes).unwrap();
    let payload = Payload::decode(env.payload.as_slice()).unwrap();
    ChannelHeader::decode(payload.header.unwrap().channel_header.as_slice()).unwrap()
}

pub(crate) fn block_number(b: &Block) -> u64 {
    b.header.as_ref().unwrap().number
}

pub(crate) type Client = AtomicBroadcastClient<tonic::transport::Channel>;

/// A bidirectional stream: requests go in through `tx`.
pub(crate) struct Stream<T> {
    pub(crate) tx: mpsc::Sender<Envelope>,
    pub(crate) rx: tonic::Streaming<T>,
}

impl<T> Stream<T> {
    pub(crate) async fn send(&self, env: Envelope) {
        self.tx.send(env).await.unwrap();
    }

    pub(crate) async fn next(&mut self) -> Option<T> {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("no answer in time")
            .unwrap()
    }
}

pub(crate) async fn broadcast_stream(client: &mut Client) -> Stream<BroadcastResponse> {
    let (tx, rx) = mpsc::channel(128);
    let rx = client
        .broadcast(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    Stream { tx, rx }
}

pub(crate) async fn deliver_stream(client: &mut Client) -> Stream<DeliverResponse> {
    let (tx, rx) = mpsc::channel(16);
    let rx = client
        .deliver(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    Stream { tx, rx }
}

impl Stream<DeliverResponse> {
    /// Sends a request and collects its blocks up to the final status.
    pub(crate) async fn request(&mut self, env: Envelope) -> (Vec<Block>, Status) {
        self.send(env).await;
        let mut blocks = Vec::new();
        loop {
            match self.next().await.expect("stream ended").r#type {
                Some(deliver_response::Type::Block(b)) => blocks.push(b),
                Some(deliver_response::Type::Status(s)) => {
                    return (blocks, Status::try_from(s).unwrap());
                }
                None => panic!("empty deliver response"),
            }
        }
    }
}

pub(crate) fn status(resp: &BroadcastResponse) -> Status {
    Status::try_from(resp.status).unwrap()
}

/// Broadcasts `env` alone until the channel has a leader and takes it.
async fn broadcast_until_accepted(client: &mut Client, env: Envelope) {
    let started = Instant::now();
    loop {
        let mut s = broadcast_stream(client).await;
        s.send(env.clone()).await;
        let resp = s.next().await.unwrap();
        match status(&resp) {
            Status::Success => return,
            Status::ServiceUnavailable if started.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("broadcast answered {other:?}: {}", resp.info),
        }
    }
}

/// A plain HTTP/1.1 exchange, over TLS when `tls` is given; returns the
/// status code and body.
async fn http(
    addr: &str,
    tls: Option<&ClientTls>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let raw = match tls {
        Some(tls) => {
            let mut config = (*tls.rustls_config().unwrap()).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name =
                tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1".to_string())
                    .unwrap();
            let mut stream = connector.connect(name, tcp).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            read_all(&mut stream).await
        }
        None => {
            let mut stream = tcp;
            stream.write_all(&bytes).await.unwrap();
            read_all(&mut stream).await
        }
    };
    let text = String::from_utf8_lossy(&raw).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

async fn read_all<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = stream.read_to_end(&mut buf).await {
        // Servers may close without a TLS close_notify.
        assert!(!buf.is_empty(), "read failed: {e}");
    }
    buf
}

/// Joins the node to the channel of `block` through the admin API.
async fn join(node: &Node, net: &Net, block: &Block) {
    let boundary = "twill-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"config-block\"; filename=\"{CHANNEL}.block\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&block.encode_to_vec());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let admin = node.endpoints.admin.as_deref().unwrap();
    let (code, text) = http(
        admin,
        Some(&net.client_tls(true)),
        "POST",
        "/participation/v1/channels",
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
    )
    .await;
    assert_eq!(code, 201, "join answered {code}: {text}");
    assert!(text.contains(CHANNEL), "{text}");
}

/// A CONFIG_UPDATE raising the orderer's `MaxMessageCount` to 20, signed by
/// the orderer org's admin.
fn batch_size_update(net: &Net, genesis: &Block) -> Envelope {
    let (_, config_env) = config_from_block(genesis).unwrap();
    let original = config_env.config.unwrap();
    let mut updated = original.clone();
    let orderer = updated
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Orderer")
        .unwrap();
    let value = orderer.values.get_mut("BatchSize").unwrap();
    let mut batch = BatchSize::decode(value.value.as_slice()).unwrap();
    batch.max_message_count = 20;
    value.value = batch.encode_to_vec();
    let update = compute_update(CHANNEL, &original, &updated).unwrap();
    let update_bytes = update.encode_to_vec();
    let admin = net.orderer_admin();
    let update_env = ConfigUpdateEnvelope {
        signatures: vec![sign_config_update(&update_bytes, &admin).unwrap()],
        config_update: update_bytes,
    };
    config_update_tx(CHANNEL, &update_env, &admin).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_orderer_over_grpc() {
    let net = Net::new();
    let genesis = net.genesis();
    let node = Node::start(&net).await;
    let endpoints = node.endpoints.clone();
    assert_ne!(
        endpoints.client, endpoints.cluster,
        "dedicated cluster listener"
    );
    assert!(endpoints.operations.is_some());

    // Operations: the node is healthy.
    let ops = endpoints.operations.clone().unwrap();
    let (code, body) = http(&ops, None, "GET", "/healthz", "", b"").await;
    assert_eq!(code, 200, "{body}");

    join(&node, &net, &genesis).await;

    let channel = twill_comm::connect(&endpoints.client, Some(&net.client_tls(false)))
        .await
        .unwrap();
    let mut client = twill_comm::with_message_limits!(AtomicBroadcastClient::new(channel));
    let user = net.user1();

    // The first transaction waits for the Raft leader.
    let (first, first_id) = tx(&user, CHANNEL, 0);
    broadcast_until_accepted(&mut client, first).await;
    let mut expected: BTreeSet<String> = [first_id].into();

    // One stream: good envelopes and bad ones, answered in order, and the
    // stream keeps serving.
    let mut b = broadcast_stream(&mut client).await;
    let mut sent = Vec::new();
    for n in 1..=3 {
        let (env, id) = tx(&user, CHANNEL, n);
        expected.insert(id);
        sent.push((env, Status::Success));
    }
    sent.push((garbage(), Status::BadRequest));
    sent.push((tx(&user, "nochannel", 99).0, Status::NotFound));
    sent.push((
        badly_signed(&user, tx(&user, CHANNEL, 98).0),
        Status::Forbidden,
    ));
    for n in 4..=6 {
        let (env, id) = tx(&user, CHANNEL, n);
        expected.insert(id);
        sent.push((env, Status::Success));
    }
    for (env, _) in &sent {
        b.send(env.clone()).await;
    }
    for (i, (_, want)) in sent.iter().enumerate() {
        let resp = b.next().await.unwrap();
        assert_eq!(status(&resp), *want, "envelope {i}: {}", resp.info);
        if *want == Status::NotFound {
            assert_eq!(resp.info, "channel nochannel not found");
        }
    }
    // Still serving after the errors: a transaction, then a config update.
    let (env, id) = tx(&user, CHANNEL, 7);
    expected.insert(id);
    b.send(env).await;
    assert_eq!(status(&b.next().await.unwrap()), Status::Success);
    b.send(batch_size_update(&net, &genesis)).await;
    let resp = b.next().await.unwrap();
    assert_eq!(status(&resp), Status::Success, "{}", resp.info);
    drop(b.tx);
    assert!(
        b.rx.message().await.unwrap().is_none(),
        "stream ends with the client's"
    );

    // Deliver from the start until every transaction and the config block
    // have been seen.
    let mut d = deliver_stream(&mut client).await;
    d.send(seek(
        &user,
        CHANNEL,
        oldest(),
        specified(u64::MAX),
        SeekBehavior::BlockUntilReady,
    ))
    .await;
    let mut missing = expected.clone();
    let mut config_block = None;
    let mut last: Option<u64> = None;
    while !missing.is_empty() || config_block.is_none() {
        let resp = d.next().await.expect("deliver ended");
        let Some(deliver_response::Type::Block(block)) = resp.r#type else {
            panic!("unexpected deliver response {resp:?}");
        };
        let number = block_number(&block);
        assert_eq!(number, last.map_or(0, |n| n + 1), "blocks come in order");
        last = Some(number);
        let data = &block.data.as_ref().unwrap().data;
        for env in data {
            let header = header_of(env);
            if header.r#type == HeaderType::Config as i32 && number > 0 {
                assert_eq!(data.len(), 1, "a config block holds only its config");
                config_block = Some(number);
            }
            missing.remove(&header.tx_id);
        }
    }
    let last = last.unwrap();
    assert!(config_block.unwrap() > 0);
    drop(d);

    // One Deliver stream, several requests: errors end a request, not the
    // stream.
    let mut d = deliver_stream(&mut client).await;
    let (blocks, st) = d.request(garbage()).await;
    assert_eq!((blocks.len(), st), (0, Status::BadRequest));
    let (blocks, st) = d
        .request(seek(
            &user,
            "nochannel",
            oldest(),
            newest(),
            SeekBehavior::BlockUntilReady,
        ))
        .await;
    assert_eq!((blocks.len(), st), (0, Status::NotFound));
    let bad = badly_signed(
        &user,
        seek(
            &user,
            CHANNEL,
            oldest(),
            newest(),
            SeekBehavior::BlockUntilReady,
        ),
    );
    let (blocks, st) = d.request(bad).await;
    assert_eq!((blocks.len(), st), (0, Status::Forbidden));
    let (blocks, st) = d
        .request(seek(
            &user,
            CHANNEL,
            specified(2),
            specified(1),
            SeekBehavior::BlockUntilReady,
        ))
        .await;
    assert_eq!((blocks.len(), st), (0, Status::BadRequest));
    let (blocks, st) = d
        .request(seek(
            &user,
            CHANNEL,
            specified(last + 100),
            newest(),
            SeekBehavior::BlockUntilReady,
        ))
        .await;
    assert_eq!(
        (blocks.len(), st),
        (0, Status::NotFound),
        "start beyond the height"
    );
    let (blocks, st) = d
        .request(seek(
            &user,
            CHANNEL,
            specified(last + 1),
            specified(last + 5),
            SeekBehavior::FailIfNotReady,
        ))
        .await;
    assert_eq!((blocks.len(), st), (0, Status::NotFound), "not ready");
    let (blocks, st) = d
        .request(seek(
            &user,
            CHANNEL,
            oldest(),
            specified(last),
            SeekBehavior::BlockUntilReady,
        ))
        .await;
    assert_eq!(st, Status::Success);
    let numbers: Vec<u64> = blocks.iter().map(block_number).collect();
    assert_eq!(numbers, (0..=last).collect::<Vec<_>>());
    let (blocks, st) = d
        .request(seek(
            &user,
            CHANNEL,
            newest(),
            newest(),
            SeekBehavior::BlockUntilReady,
        ))
        .await;
    assert_eq!(st, Status::Success);
    assert_eq!(blocks.iter().map(block_number).collect::<Vec<_>>(), [last]);
    let info = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(specified(1)),
        }),
        stop: Some(SeekPosition {
            r#type: Some(specified(1)),
        }),
        content_type: SeekContentType::HeaderWithSig as i32,
        ..Default::default()
    };
    let headers_only = signed(
        &user,
        HeaderType::DeliverSeekInfo,
        CHANNEL,
        info.encode_to_vec(),
    )
    .0;
    let (blocks, st) = d.request(headers_only).await;
    assert_eq!(st, Status::Success);
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].data.is_none() && blocks[0].metadata.is_some());

    // A request waiting for blocks that never come is ended by shutdown.
    d.send(seek(
        &user,
        CHANNEL,
        specified(last + 1),
        specified(u64::MAX),
        SeekBehavior::BlockUntilReady,
    ))
    .await;
    let waiting = tokio::spawn(async move {
        let mut statuses = Vec::new();
        while let Ok(Some(resp)) = d.rx.message().await {
            if let Some(deliver_response::Type::Status(s)) = resp.r#type {
                statuses.push(s);
            }
        }
        statuses
    });
    node.stop().await;
    let statuses = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(statuses, [Status::ServiceUnavailable as i32]);
}
