//! Valid transactions end to end: orderers cut them, two peers validate
//! and commit them into their state DBs; one peer is `kill -9`ed at random
//! points while blocks arrive and must end with exactly the state of the
//! peer that never crashed.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use twill_cli::netkit::{NetOptions, OrdererNet};
use twill_ledger::state::StateDb;
use twill_msp::SigningIdentity;
use twill_peer::validation::lifecycle::{definition_entries, LIFECYCLE_NAMESPACE};
use twill_peer::validation::testkit::{delete, read, signature_policy, write, TxBuilder};
use twill_protos::common::{Envelope, Status};
use twill_protos::lifecycle::ChaincodeValidationInfo;
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;

use super::*;

const CC: &str = "basic";

fn peer_identity(net: &OrdererNet, org: u8) -> SigningIdentity {
    let domain = format!("org{org}.example.com");
    let dir = net.path(&format!(
        "organizations/peerOrganizations/{domain}/peers/peer0.{domain}/msp"
    ));
    SigningIdentity::from_msp_dir(&dir, &format!("Org{org}MSP")).unwrap()
}

/// Sends all envelopes on one Broadcast stream to orderer `i`; any not
/// acknowledged with SUCCESS are retried one by one.
async fn broadcast_all(net: &OrdererNet, i: usize, envelopes: Vec<Envelope>) {
    let tls = orderer_tls(net);
    let addr = net.orderers[i].client_address();
    let channel = twill_comm::connect(&addr, Some(&tls)).await.unwrap();
    let mut client = AtomicBroadcastClient::new(channel);
    let (tx, rx) = mpsc::channel(envelopes.len().max(1));
    for env in &envelopes {
        tx.send(env.clone()).await.unwrap();
    }
    drop(tx);
    let mut responses = client
        .broadcast(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut retry = Vec::new();
    for env in envelopes {
        match responses.message().await {
            Ok(Some(r)) if r.status == Status::Success as i32 => {}
            _ => retry.push(env),
        }
    }
    if !retry.is_empty() {
        broadcast(net, &[0, 1, 2], retry).await;
    }
}

fn pseudo_random(bound: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos.wrapping_mul(2_654_435_761)) % bound.max(1)
}

fn ledger_root(net: &OrdererNet, name: &str) -> PathBuf {
    net.root.join("data").join(name).join("ledgersData")
}

fn join(net: &OrdererNet, peer: &PeerProc) {
    let block = net.genesis_block.to_string_lossy().into_owned();
    let (ok, out, err) = cli(net, peer, "Admin", &["join", "-b", &block]);
    assert!(ok, "join failed: {out}{err}");
}

#[test]
fn valid_transactions_commit_state_and_a_killed_peer_recovers_it() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    require_binaries();
    let dir = test_dir();
    let mut net = OrdererNet::create(
        dir.path.as_path(),
        NetOptions {
            orderers: 3,
            batch_timeout: "100ms".into(),
            max_message_count: 10,
            tick_interval: "100ms".into(),
            ..Default::default()
        },
    )
    .unwrap();
    net.start_all(TIMEOUT).unwrap();
    net.join_all().unwrap();
    let rt = runtime();
    let tls = peer_tls(&net);
    let user = user(&net);
    let peer1 = peer_identity(&net, 1);
    let peer2 = peer_identity(&net, 2);

    let mut victim = PeerProc::start_as(&net.root, "peer-victim");
    let steady = PeerProc::start_as(&net.root, "peer-steady");
    join(&net, &victim);
    join(&net, &steady);

    // Define the chaincode: a `_lifecycle` transaction endorsed by both
    // orgs (LifecycleEndorsement is a majority of Org1 and Org2).
    let policy = twill_policy::parse_policy("AND('Org1MSP.peer','Org2MSP.peer')").unwrap();
    let info = ChaincodeValidationInfo {
        validation_plugin: "vscc".into(),
        validation_parameter: signature_policy(policy).encode_to_vec(),
    };
    let writes = definition_entries(CC, 1, "1.0", &info)
        .into_iter()
        .map(|(k, v)| write(&k, &v))
        .collect();
    let (_, define) = TxBuilder::new(&user, CHANNEL, LIFECYCLE_NAMESPACE)
        .writes(LIFECYCLE_NAMESPACE, writes)
        .endorsed_by(&peer1)
        .endorsed_by(&peer2)
        .build()
        .unwrap();
    rt.block_on(broadcast_all(&net, 0, vec![define]));
    // Transactions in the same block as the definition would not see it.
    rt.block_on(wait_height(&steady, &tls, &user, 2));

    // Rounds of transactions; the victim is killed (SIGKILL) at a random
    // moment while each round's blocks are being cut and committed, then
    // restarted on the same ledger.
    let rounds = 6;
    let per_round = 40;
    let mut kills = 0;
    for round in 0..rounds {
        let mut envs = Vec::new();
        for i in 0..per_round {
            let mut b = TxBuilder::new(&user, CHANNEL, CC);
            let mut ws = vec![write(
                &format!("asset{round:02}_{i:03}"),
                format!("{{\"owner\":\"org{}\",\"round\":{round}}}", i % 2 + 1).as_bytes(),
            )];
            if round > 0 && i % 5 == 0 {
                // Delete a key of the previous round.
                ws.push(delete(&format!("asset{:02}_{i:03}", round - 1)));
            }
            if i % 7 == 3 {
                // A stale read: the key exists (or existed) but is read as
                // absent, so the tx fails MVCC once round 0 is committed.
                b = b.reads(CC, vec![read("asset00_003", None)]);
            }
            let (_, env) = b
                .writes(CC, ws)
                .endorsed_by(&peer1)
                .endorsed_by(&peer2)
                .build()
                .unwrap();
            envs.push(env);
        }
        // One endorsement short of the policy: always invalid.
        let (_, weak) = TxBuilder::new(&user, CHANNEL, CC)
            .writes(CC, vec![write(&format!("weak{round}"), b"x")])
            .endorsed_by(&peer1)
            .build()
            .unwrap();
        envs.push(weak);
        rt.block_on(broadcast_all(&net, round % 3, envs));
        std::thread::sleep(Duration::from_millis(pseudo_random(400)));
        assert!(victim.is_running(), "victim died: {}", victim.log.display());
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
        kills += 1;
        victim = PeerProc::start_as(&net.root, "peer-victim");
    }
    assert!(kills >= 5);

    // Both peers reach the orderers' height (and the orderers stay there).
    let deadline = Instant::now() + TIMEOUT;
    let (height, a, b) = loop {
        let a = rt.block_on(chain_info(&victim, &tls, &user));
        let b = rt.block_on(chain_info(&steady, &tls, &user));
        let orderers: Vec<u64> = (0..3).filter_map(|i| orderer_height(&net, i)).collect();
        if orderers.len() == 3 && orderers.iter().all(|h| *h == a.height) && a.height == b.height {
            break (a.height, a, b);
        }
        assert!(
            Instant::now() < deadline,
            "peers at {} and {}, orderers at {orderers:?}; see {}",
            a.height,
            b.height,
            victim.log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(a.current_block_hash, b.current_block_hash);
    drop(victim);
    drop(steady);

    // Identical state and history, and it is the state the transactions
    // describe.
    let victim_root = ledger_root(&net, "peer-victim");
    let steady_root = ledger_root(&net, "peer-steady");
    let hash_a = twill_peer::committer::state_hash_of(&victim_root, CHANNEL).unwrap();
    let hash_b = twill_peer::committer::state_hash_of(&steady_root, CHANNEL).unwrap();
    assert_eq!(hash_a, hash_b, "the crashed peer's state differs");

    let state_dir = twill_ledger::channel_dir(&steady_root, CHANNEL)
        .unwrap()
        .join(twill_peer::committer::STATE_DIR);
    let db = StateDb::open(&state_dir).unwrap();
    assert_eq!(db.savepoint().unwrap(), Some(height - 1));
    // A key of the last round that no tx deletes.
    let last = db
        .get(CC, &format!("asset{:02}_001", rounds - 1))
        .unwrap()
        .expect("last round's key committed");
    assert!(String::from_utf8_lossy(&last.value).contains("\"round\":5"));
    // Deleted by the next round: gone, with a put and a delete in history.
    assert!(db.get(CC, "asset00_000").unwrap().is_none());
    let history = db.history(CC, "asset00_000").unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(history[0].is_delete && !history[1].is_delete);
    // Under-endorsed and stale-read transactions left no writes.
    for round in 0..rounds {
        assert!(db.get(CC, &format!("weak{round}")).unwrap().is_none());
    }
    assert!(db.get(CC, "asset01_003").unwrap().is_none());
    // The chaincode definition is in `_lifecycle`.
    assert!(db
        .get(LIFECYCLE_NAMESPACE, "namespaces/metadata/basic")
        .unwrap()
        .is_some());
}
