//! Multi-process tests of the ordering service: three `twill-orderer`
//! processes with TLS on 127.0.0.1, joined with `twill osnadmin`.
//!
//! The scenarios share one lock so that only one network runs at a time: on
//! a 2-core machine several Raft groups at once would mostly test the
//! scheduler.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use twill_cli::netkit::{seek_envelope, signed_envelope, NetOptions, OrdererNet};
use twill_comm::ClientTls;
use twill_protos::common::{Block, ChannelHeader, Envelope, Payload, Status};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::orderer::deliver_response;

pub(crate) static ONE_NETWORK_AT_A_TIME: Mutex<()> = Mutex::new(());

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A temp dir for one network; kept after the test when
/// `TWILL_KEEP_TEST_DIRS` is set, to read the node logs.
struct TestDir {
    _tmp: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl TestDir {
    fn path(&self) -> &std::path::Path {
        &self.path
    }
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

fn net(dir: &std::path::Path) -> OrdererNet {
    let mut net = OrdererNet::create(
        dir,
        NetOptions {
            orderers: 3,
            batch_timeout: "250ms".into(),
            max_message_count: 500,
            tick_interval: "100ms".into(),
            ..Default::default()
        },
    )
    .unwrap();
    net.start_all(START_TIMEOUT).unwrap();
    net.join_all().unwrap();
    net
}

/// A started, joined network with a known leader, for one test at a time.
/// Fields drop in order: processes first, then the runtime, the files and
/// finally the lock that lets the next test start.
struct Running {
    net: OrdererNet,
    rt: tokio::runtime::Runtime,
    leader: usize,
    _dir: TestDir,
    _one: std::sync::MutexGuard<'static, ()>,
}

fn running() -> Running {
    let one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = test_dir();
    let net = net(dir.path());
    let rt = runtime();
    let leader = wait_leader(&net, &[0, 1, 2]);
    Running {
        net,
        rt,
        leader,
        _dir: dir,
        _one: one,
    }
}

/// Plain HTTP GET against an operations endpoint; returns the body.
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

/// A metric's value for channel `mychannel` from `/metrics`.
fn metric(net: &OrdererNet, i: usize, name: &str) -> Option<f64> {
    let body = http_get(&net.orderers[i].operations_address(), "/metrics")?;
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains("mychannel"))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits for one orderer (among `alive`) to report itself leader.
fn wait_leader(net: &OrdererNet, alive: &[usize]) -> usize {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        for &i in alive {
            if metric(net, i, "raft_is_leader") == Some(1.0) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no Raft leader among {alive:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client_tls(net: &OrdererNet) -> ClientTls {
    ClientTls::new(vec![net.orderer_tls_ca().unwrap()])
}

/// Sends `envelopes` over one Broadcast stream to orderer `addr`, keeping up
/// to `window` unanswered; returns the ids answered SUCCESS and the ids
/// still unanswered or refused when the stream broke.
async fn broadcast(
    addr: String,
    tls: ClientTls,
    envelopes: Vec<(String, Envelope)>,
    window: usize,
) -> (Vec<String>, Vec<(String, Envelope)>) {
    let mut acked = Vec::new();
    let Ok(channel) = twill_comm::connect(&addr, Some(&tls)).await else {
        return (acked, envelopes);
    };
    let mut client = AtomicBroadcastClient::new(channel)
        .max_decoding_message_size(twill_comm::DEFAULT_MAX_MESSAGE_SIZE);
    let (tx, rx) = mpsc::channel::<Envelope>(window);
    let Ok(resp) = client.broadcast(ReceiverStream::new(rx)).await else {
        return (acked, envelopes);
    };
    let mut responses = resp.into_inner();
    let mut in_flight = std::collections::VecDeque::new();
    let mut todo = envelopes.into_iter();
    let mut failed = Vec::new();
    loop {
        while in_flight.len() < window {
            match todo.next() {
                Some((id, env)) => {
                    if tx.send(env.clone()).await.is_err() {
                        failed.push((id, env));
                        break;
                    }
                    in_flight.push_back((id, env));
                }
                None => break,
            }
        }
        if in_flight.is_empty() {
            break;
        }
        match responses.message().await {
            Ok(Some(r)) => {
                let (id, env) = in_flight.pop_front().unwrap();
                if r.status == Status::Success as i32 {
                    acked.push(id);
                } else {
                    failed.push((id, env));
                }
            }
            _ => break,
        }
    }
    failed.extend(in_flight);
    failed.extend(todo);
    (acked, failed)
}

/// All blocks 0..height of orderer `i`, via Deliver.
async fn deliver_all(net: &OrdererNet, i: usize, height: u64) -> Vec<Block> {
    let user = net.signer("org1.example.com", "Org1MSP", "User1").unwrap();
    let seek = seek_envelope(&user, "mychannel", 0, Some(height - 1)).unwrap();
    let channel = twill_comm::connect(&net.orderers[i].client_address(), Some(&client_tls(net)))
        .await
        .unwrap();
    let mut client = AtomicBroadcastClient::new(channel)
        .max_decoding_message_size(twill_comm::DEFAULT_MAX_MESSAGE_SIZE);
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
            Some(deliver_response::Type::Block(b)) => blocks.push(b),
            Some(deliver_response::Type::Status(s)) => {
                assert_eq!(
                    s,
                    Status::Success as i32,
                    "deliver from orderer{i} ended with {s}"
                );
                break;
            }
            None => panic!("empty deliver response"),
        }
    }
    drop(tx);
    blocks
}

fn tx_ids(block: &Block) -> Vec<String> {
    block
        .data
        .as_ref()
        .map(|d| {
            d.data
                .iter()
                .filter_map(|e| {
                    let env = Envelope::decode(e.as_slice()).ok()?;
                    let p = Payload::decode(env.payload.as_slice()).ok()?;
                    let ch = ChannelHeader::decode(p.header?.channel_header.as_slice()).ok()?;
                    Some(ch.tx_id)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every orderer in `alive` reports the same ledger height, and
/// it stays put for a second; returns it.
fn wait_converged(net: &OrdererNet, alive: &[usize], at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stable_since: Option<(u64, Instant)> = None;
    loop {
        let heights: Vec<Option<f64>> = alive
            .iter()
            .map(|&i| metric(net, i, "ledger_height"))
            .collect();
        let first = heights[0];
        if heights.iter().all(|h| *h == first && h.is_some()) {
            let h = first.unwrap_or(0.0) as u64;
            if h >= at_least {
                match stable_since {
                    Some((sh, t)) if sh == h && t.elapsed() > Duration::from_secs(1) => return h,
                    Some((sh, _)) if sh == h => {}
                    _ => stable_since = Some((h, Instant::now())),
                }
            }
        } else {
            stable_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "heights never converged: {heights:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks every orderer has the same chain and every acknowledged tx id is
/// in exactly one block.
fn check_chains(
    net: &OrdererNet,
    rt: &tokio::runtime::Runtime,
    alive: &[usize],
    height: u64,
    acked: &[String],
) {
    let mut reference: Option<Vec<Vec<u8>>> = None;
    for &i in alive {
        let blocks = rt.block_on(deliver_all(net, i, height));
        assert_eq!(
            blocks.len() as u64,
            height,
            "orderer{i} delivered a short chain"
        );
        let hashes: Vec<Vec<u8>> = blocks
            .iter()
            .map(|b| twill_configtx::block::block_header_hash(b.header.as_ref().unwrap()).to_vec())
            .collect();
        match &reference {
            None => {
                let mut seen: BTreeMap<String, u64> = BTreeMap::new();
                for b in &blocks {
                    for id in tx_ids(b) {
                        *seen.entry(id).or_default() += 1;
                    }
                }
                for id in acked {
                    assert_eq!(
                        seen.get(id),
                        Some(&1),
                        "acknowledged tx {id} is not in exactly one block"
                    );
                }
                let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
                assert!(dupes.is_empty(), "tx ids ordered twice: {dupes:?}");
                reference = Some(hashes);
            }
            Some(r) => assert_eq!(&hashes, r, "orderer{i} has a different chain"),
        }
    }
}

#[test]
fn leader_kill_loses_no_acknowledged_envelope() {
    let mut r = running();
    let (net, rt) = (&mut r.net, &r.rt);
    let leader = r.leader;

    let user = net.signer("org1.example.com", "Org1MSP", "User1").unwrap();
    let total = 10_000;
    let clients = 4;
    let mut batches: Vec<Vec<(String, Envelope)>> = vec![Vec::new(); clients];
    for n in 0..total {
        batches[n % clients]
            .push(signed_envelope(&user, "mychannel", vec![(n % 251) as u8; 200]).unwrap());
    }
    let tls = client_tls(net);
    let addrs: Vec<String> = net.orderers.iter().map(|o| o.client_address()).collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));

    // First half of each client's envelopes, then kill the leader, then the rest.
    let (first, second): (Vec<_>, Vec<_>) = batches
        .into_iter()
        .map(|mut b| {
            let rest = b.split_off(b.len() / 2);
            (b, rest)
        })
        .unzip();
    let run = |parts: Vec<Vec<(String, Envelope)>>, avoid: Option<usize>| {
        let tasks: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(c, envs)| {
                let tls = tls.clone();
                let addrs = addrs.clone();
                let acked = acked.clone();
                rt.spawn(async move {
                    let mut pending = envs;
                    let mut target = c % addrs.len();
                    for _attempt in 0..20 {
                        if Some(target) == avoid {
                            target = (target + 1) % addrs.len();
                        }
                        let (ok, failed) =
                            broadcast(addrs[target].clone(), tls.clone(), pending, 100).await;
                        acked.lock().unwrap().extend(ok);
                        pending = failed;
                        if pending.is_empty() {
                            break;
                        }
                        target = (target + 1) % addrs.len();
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    pending.len()
                })
            })
            .collect();
        let left: usize = rt.block_on(async {
            let mut left = 0;
            for t in tasks {
                left += t.await.unwrap();
            }
            left
        });
        left
    };
    assert_eq!(run(first, None), 0, "first half not fully acknowledged");
    net.kill(leader).unwrap();
    let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let left = run(second, Some(leader));
    assert_eq!(left, 0, "envelopes still unacknowledged after retries");

    // Bring the old leader back; it must catch up.
    net.start(leader).unwrap();
    net.wait_listening(leader, START_TIMEOUT).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.iter().collect::<BTreeSet<_>>().len(), total);
    let height = wait_converged(net, &[0, 1, 2], 2);
    check_chains(net, rt, &[0, 1, 2], height, &acked);
    let _ = alive;
}

#[test]
fn wiped_orderer_rejoins_and_catches_up() {
    let mut r = running();
    let (net, rt) = (&mut r.net, &r.rt);
    let user = net.signer("org1.example.com", "Org1MSP", "User1").unwrap();
    let envs: Vec<_> = (0..1500)
        .map(|n| signed_envelope(&user, "mychannel", vec![n as u8; 100]).unwrap())
        .collect();
    let (acked, failed) = rt.block_on(broadcast(
        net.orderers[0].client_address(),
        client_tls(net),
        envs,
        100,
    ));
    assert!(failed.is_empty());

    // orderer2 loses its disk.
    net.kill(2).unwrap();
    std::fs::remove_dir_all(net.path("data/orderer2")).unwrap();
    net.start(2).unwrap();
    net.wait_listening(2, START_TIMEOUT).unwrap();
    net.join(2).unwrap();
    let height = wait_converged(net, &[0, 1, 2], 2);
    check_chains(net, rt, &[0, 1, 2], height, &acked);
}

/// Cuts the leader off with `cut`, checks the others elect a new leader and
/// keep ordering, heals with `heal`, and checks all chains converge.
fn leader_outage(cut: impl FnOnce(&OrdererNet, usize), heal: impl FnOnce(&OrdererNet, usize)) {
    let r = running();
    let (net, rt) = (&r.net, &r.rt);
    let leader = r.leader;
    let user = net.signer("org1.example.com", "Org1MSP", "User1").unwrap();

    cut(net, leader);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = wait_leader(net, &others);
    assert_ne!(new_leader, leader);
    let envs: Vec<_> = (0..500)
        .map(|n| signed_envelope(&user, "mychannel", vec![n as u8; 64]).unwrap())
        .collect();
    let (acked, failed) = rt.block_on(broadcast(
        net.orderers[new_leader].client_address(),
        client_tls(net),
        envs,
        50,
    ));
    assert!(
        failed.is_empty(),
        "{} envelopes failed while the old leader was out",
        failed.len()
    );

    heal(net, leader);
    let height = wait_converged(net, &[0, 1, 2], 2);
    check_chains(net, rt, &[0, 1, 2], height, &acked);
}

#[test]
fn isolated_leader_is_replaced_and_chains_converge() {
    // All of the leader's cluster traffic dropped both ways, as in a
    // network partition; clients can still reach it.
    leader_outage(
        |net, leader| net.isolate(leader, true).unwrap(),
        |net, leader| net.isolate(leader, false).unwrap(),
    );
}

#[test]
fn frozen_leader_is_replaced_and_chains_converge() {
    // A frozen process (SIGSTOP) stops answering anyone, mid-whatever it was
    // doing; when thawed it must find its place again.
    leader_outage(
        |net, leader| signal(net.pid(leader).unwrap(), "STOP"),
        |net, leader| signal(net.pid(leader).unwrap(), "CONT"),
    );
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Sends one envelope on a fresh Broadcast stream; returns (status, info).
async fn broadcast_one(addr: String, tls: ClientTls, env: Envelope) -> (i32, String) {
    let channel = twill_comm::connect(&addr, Some(&tls)).await.unwrap();
    let mut client = AtomicBroadcastClient::new(channel);
    let (tx, rx) = mpsc::channel(1);
    tx.send(env).await.unwrap();
    let mut responses = client
        .broadcast(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let r = responses
        .message()
        .await
        .unwrap()
        .expect("a broadcast response");
    drop(tx);
    (r.status, r.info)
}

#[test]
fn config_update_needs_enough_admin_signatures() {
    use twill_configtx::update::{compute_update, config_update_tx, sign_config_update};
    use twill_protos::common::{ConfigPolicy, ConfigUpdateEnvelope};

    let r = running();
    let (net, rt) = (&r.net, &r.rt);

    let genesis = Block::decode(std::fs::read(&net.genesis_block).unwrap().as_slice()).unwrap();
    let (_, env) = twill_configtx::channel::config_from_block(&genesis).unwrap();
    let current = env.config.unwrap();
    let mut desired = current.clone();
    let policy = twill_policy::builder::implicit_meta_config_policy(
        twill_protos::common::implicit_meta_policy::Rule::Any,
        "Readers",
    );
    desired
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap()
        .policies
        .insert(
            "MyPolicy".into(),
            ConfigPolicy {
                version: 0,
                policy: Some(policy),
                mod_policy: "Admins".into(),
            },
        );
    let update = compute_update("mychannel", &current, &desired).unwrap();
    let bytes = update.encode_to_vec();
    let org1 = net.signer("org1.example.com", "Org1MSP", "Admin").unwrap();
    let org2 = net.signer("org2.example.com", "Org2MSP", "Admin").unwrap();
    let signed_by = |signers: &[&twill_msp::SigningIdentity]| {
        let cue = ConfigUpdateEnvelope {
            config_update: bytes.clone(),
            signatures: signers
                .iter()
                .map(|s| sign_config_update(&bytes, s).unwrap())
                .collect(),
        };
        config_update_tx("mychannel", &cue, &org1).unwrap()
    };
    let tls = client_tls(net);
    let addr = net.orderers[1].client_address();

    // One of two org admins: refused, naming the policy.
    let (status, info) = rt.block_on(broadcast_one(
        addr.clone(),
        tls.clone(),
        signed_by(&[&org1]),
    ));
    assert!(
        status == Status::Forbidden as i32 || status == Status::BadRequest as i32,
        "status {status}: {info}"
    );
    assert!(info.contains("/Channel/Application/Admins"), "{info}");

    // Both: accepted, and every orderer writes the config block.
    let (status, info) = rt.block_on(broadcast_one(addr, tls, signed_by(&[&org1, &org2])));
    assert_eq!(status, Status::Success as i32, "{info}");
    let height = wait_converged(net, &[0, 1, 2], 2);
    check_chains(net, rt, &[0, 1, 2], height, &[]);
    let blocks = rt.block_on(deliver_all(net, 0, height));
    let (_, cfg) = twill_configtx::channel::config_from_block(&blocks[1]).unwrap();
    let cfg = cfg.config.unwrap();
    assert_eq!(cfg.sequence, 1);
    assert!(cfg.channel_group.unwrap().groups["Application"]
        .policies
        .contains_key("MyPolicy"));
}

#[test]
fn bad_input_gets_precise_statuses_and_the_node_keeps_serving() {
    let r = running();
    let (net, rt) = (&r.net, &r.rt);
    let tls = client_tls(net);
    let addr = net.orderers[0].client_address();
    let user = net.signer("org1.example.com", "Org1MSP", "User1").unwrap();

    // Oversized: AbsoluteMaxBytes is 10 MB in this network.
    let (_, big) = signed_envelope(&user, "mychannel", vec![1; 11 * 1024 * 1024]).unwrap();
    let (status, info) = rt.block_on(broadcast_one(addr.clone(), tls.clone(), big));
    assert_eq!(status, Status::BadRequest as i32, "{info}");
    assert!(info.contains("exceeds"), "{info}");

    // Bad signature.
    let (_, mut env) = signed_envelope(&user, "mychannel", b"x".to_vec()).unwrap();
    env.signature[10] ^= 0xff;
    let (status, info) = rt.block_on(broadcast_one(addr.clone(), tls.clone(), env));
    assert_eq!(status, Status::Forbidden as i32, "{info}");

    // Unknown channel.
    let (_, env) = signed_envelope(&user, "nosuchchannel", b"x".to_vec()).unwrap();
    let (status, info) = rt.block_on(broadcast_one(addr.clone(), tls.clone(), env));
    assert_eq!(status, Status::NotFound as i32, "{info}");

    // Garbage payload bytes.
    let env = Envelope {
        payload: vec![0xff; 64],
        signature: vec![1, 2, 3],
    };
    let (status, info) = rt.block_on(broadcast_one(addr.clone(), tls.clone(), env));
    assert_eq!(status, Status::BadRequest as i32, "{info}");

    // An identity of an org that is not in the channel: refused on
    // Broadcast (unknown MSP) and on Deliver (not a channel reader).
    let org3 = twill_cryptogen::parse_config(
        "PeerOrgs:\n  - Name: Org3\n    Domain: org3.example.com\n    EnableNodeOUs: true\n    Users:\n      Count: 1\n",
        "org3.yaml",
    )
    .unwrap();
    twill_cryptogen::generate(&org3, &net.path("organizations")).unwrap();
    let outsider = net.signer("org3.example.com", "Org3MSP", "User1").unwrap();
    let (_, env) = signed_envelope(&outsider, "mychannel", b"x".to_vec()).unwrap();
    let (status, info) = rt.block_on(broadcast_one(addr.clone(), tls.clone(), env));
    assert_eq!(status, Status::Forbidden as i32, "{info}");
    assert!(info.contains("Org3MSP"), "{info}");
    let seek = seek_envelope(&outsider, "mychannel", 0, Some(0)).unwrap();
    let status = rt.block_on(async {
        let channel = twill_comm::connect(&addr, Some(&tls)).await.unwrap();
        let mut client = AtomicBroadcastClient::new(channel);
        let (tx, rx) = mpsc::channel(1);
        tx.send(seek).await.unwrap();
        let mut stream = client
            .deliver(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let r = stream.message().await.unwrap().expect("a deliver response");
        drop(tx);
        r.r#type
    });
    assert_eq!(
        status,
        Some(deliver_response::Type::Status(Status::Forbidden as i32)),
        "an outsider must not read the channel"
    );

    // And a good one still goes through.
    let (_, env) = signed_envelope(&user, "mychannel", b"fine".to_vec()).unwrap();
    let (status, info) = rt.block_on(broadcast_one(addr, tls, env));
    assert_eq!(status, Status::Success as i32, "{info}");
}
