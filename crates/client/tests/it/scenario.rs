//! One network, every SDK feature against it: submit and evaluate, commit
//! statuses and a real MVCC conflict, chaincode events in order with a
//! checkpoint resume, block events with a checkpoint resume, offline
//! signing, typed errors with gateway details, the example app, and
//! endorsement failing over between the peers of an org.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use twill_client::protos::common::{Block, ChannelHeader, Envelope, Payload};
use twill_client::{
    identity, ChaincodeEvent, ChaincodeInvoker, ChaincodeQuerier, Checkpointer, Error,
    EventsOptions, FileCheckpointer, Gateway, InMemoryCheckpointer, ProposalOptions, Signer,
    StreamExt,
};

use crate::net::Net;

const CHANNEL: &str = "mychannel";
const CHAINCODE: &str = "basic";
/// Longest wait for an event that should come.
const EVENT_WAIT: Duration = Duration::from_secs(60);

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

async fn next_event(events: &mut twill_client::ChaincodeEvents) -> ChaincodeEvent {
    tokio::time::timeout(EVENT_WAIT, events.next())
        .await
        .expect("a chaincode event in time")
        .expect("the stream stays open")
        .expect("an event, not an error")
}

async fn next_block(blocks: &mut twill_client::BlockEvents) -> Block {
    tokio::time::timeout(EVENT_WAIT, blocks.next())
        .await
        .expect("a block in time")
        .expect("the stream stays open")
        .expect("a block, not an error")
}

fn number(block: &Block) -> u64 {
    twill_client::events::block_number(block)
}

/// The transaction ids in a block, in order.
fn tx_ids(block: &Block) -> Vec<String> {
    block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|bytes| {
            let env = Envelope::decode(bytes.as_slice()).ok()?;
            let payload = Payload::decode(env.payload.as_slice()).ok()?;
            let ch = ChannelHeader::decode(payload.header?.channel_header.as_slice()).ok()?;
            Some(ch.tx_id)
        })
        .collect()
}

fn asset_json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).expect("an asset as JSON")
}

#[test]
fn sdk_against_a_real_network() {
    let net = Net::up(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(scenario(&net));
}

async fn scenario(net: &Net) {
    let gateway = Gateway::from_profile(net.profile(1), net.user_msp(1))
        .await
        .expect("connect through the connection profile");
    assert_eq!(gateway.identity().msp_id(), "Org1MSP");
    let network = gateway.network(CHANNEL);
    let contract = network.contract(CHAINCODE);

    // --- submit, evaluate, chaincode events -------------------------------
    let mut events = network
        .chaincode_events(CHAINCODE, EventsOptions::new())
        .await
        .expect("chaincode events from the next commit");

    let a = unique("asset-a");
    let submitted = contract
        .submit_async("CreateAsset", &[&a, "blue", "5", "Tom", "100"])
        .await
        .expect("CreateAsset a accepted for ordering");
    let tx_a = submitted.transaction_id().to_owned();
    assert_eq!(tx_a.len(), 64);
    let status_a = submitted.status().await.expect("commit status of a");
    assert!(status_a.successful(), "{status_a:?}");

    let querier = ChaincodeQuerier::new(contract.clone());
    let read: serde_json::Value = querier.query_json("ReadAsset", &[&a]).await.unwrap();
    assert_eq!(read["ID"], a.as_str());
    assert_eq!(read["Color"], "blue");
    assert_eq!(read["Owner"], "Tom");
    assert_eq!(read["AppraisedValue"], 100);

    let b = unique("asset-b");
    ChaincodeInvoker::new(contract.clone())
        .invoke("CreateAsset", &[&b, "red", "7", "Ana", "300"])
        .await
        .expect("CreateAsset b committed");
    let c = unique("asset-c");
    contract
        .submit("CreateAsset", &[&c, "green", "9", "Li", "500"])
        .await
        .expect("CreateAsset c committed");

    let ev_a = next_event(&mut events).await;
    assert_eq!(ev_a.transaction_id, tx_a);
    assert_eq!(ev_a.block_number, status_a.block_number);
    assert_eq!(ev_a.chaincode_name, CHAINCODE);
    assert_eq!(ev_a.event_name, "CreateAsset");
    assert_eq!(asset_json(&ev_a.payload)["ID"], a.as_str());
    let ev_b = next_event(&mut events).await;
    assert_eq!(asset_json(&ev_b.payload)["ID"], b.as_str());
    drop(events);

    // Resume after a: b and c come again, in order, nothing before.
    let dir = tempfile::tempdir().unwrap();
    let checkpoint_file = dir.path().join("basic.checkpoint");
    {
        let checkpointer = FileCheckpointer::open(&checkpoint_file).unwrap();
        checkpointer.checkpoint_chaincode_event(&ev_a).unwrap();
    }
    let checkpointer = FileCheckpointer::open(&checkpoint_file).unwrap();
    assert_eq!(checkpointer.block_number(), Some(ev_a.block_number));
    let mut events = network
        .chaincode_events(CHAINCODE, EventsOptions::new().checkpoint(&checkpointer))
        .await
        .unwrap();
    let again_b = next_event(&mut events).await;
    assert_eq!(again_b, ev_b);
    checkpointer.checkpoint_chaincode_event(&again_b).unwrap();
    let ev_c = next_event(&mut events).await;
    assert_eq!(asset_json(&ev_c.payload)["ID"], c.as_str());
    assert!(ev_c.block_number >= ev_b.block_number);
    drop(events);

    // --- block events ------------------------------------------------------
    let block_checkpoint = InMemoryCheckpointer::new();
    let mut blocks = network
        .block_events(EventsOptions::new().start_block(status_a.block_number))
        .await
        .expect("block events");
    let block_a = next_block(&mut blocks).await;
    assert_eq!(number(&block_a), status_a.block_number);
    assert!(tx_ids(&block_a).contains(&tx_a), "{:?}", tx_ids(&block_a));
    block_checkpoint.checkpoint_block(number(&block_a)).unwrap();
    let following = next_block(&mut blocks).await;
    assert_eq!(number(&following), status_a.block_number + 1);
    drop(blocks);
    let mut blocks = network
        .block_events(EventsOptions::new().checkpoint(&block_checkpoint))
        .await
        .unwrap();
    let resumed = next_block(&mut blocks).await;
    assert_eq!(
        resumed, following,
        "resumes at the block after the checkpoint"
    );
    drop(blocks);

    // --- offline signing ---------------------------------------------------
    let (user, key) = identity::from_msp_dir(net.user_msp(1), "Org1MSP").unwrap();
    let peer = twill_client::ConnectionProfile::from_file(net.profile(1))
        .unwrap()
        .peer(None, None)
        .unwrap();
    let offline = Gateway::builder()
        .identity(user)
        .endpoint(peer.endpoint().unwrap())
        .connect()
        .await
        .unwrap();
    let offline_contract = offline.network(CHANNEL).contract(CHAINCODE);
    let d = unique("asset-d");
    let unsigned = offline_contract
        .new_proposal(
            "CreateAsset",
            ProposalOptions::new().arguments([d.as_str(), "white", "1", "Kim", "10"]),
        )
        .unwrap();
    assert!(matches!(
        offline_contract.evaluate("ReadAsset", &[&a]).await,
        Err(Error::Unsigned { .. })
    ));
    let proposal = offline
        .new_signed_proposal(
            &unsigned.bytes(),
            key.sign_digest(&unsigned.digest()).unwrap(),
        )
        .unwrap();
    let unsigned_tx = proposal.endorse().await.expect("offline-signed endorse");
    let tx = offline
        .new_signed_transaction(
            &unsigned_tx.bytes(),
            key.sign_digest(&unsigned_tx.digest()).unwrap(),
        )
        .unwrap();
    let submitted = tx.submit().await.expect("offline-signed submit");
    let commit = offline
        .new_signed_commit(
            &submitted.commit().bytes(),
            key.sign_digest(&submitted.commit().digest()).unwrap(),
        )
        .unwrap();
    let status = commit.status().await.expect("offline-signed commit status");
    assert!(status.successful(), "{status:?}");
    assert_eq!(status.transaction_id, unsigned.transaction_id());
    assert_eq!(
        asset_json(&contract.evaluate("ReadAsset", &[&d]).await.unwrap())["Owner"],
        "Kim"
    );

    // --- a real MVCC conflict ---------------------------------------------
    // Both updates read a at the same version; whichever is ordered second
    // is invalidated.
    let update = |color: &'static str| {
        contract
            .new_proposal(
                "UpdateAsset",
                ProposalOptions::new().arguments([a.as_str(), color, "5", "Tom", "100"]),
            )
            .unwrap()
    };
    let (first, second) = (update("black"), update("pink"));
    let first = first.endorse().await.unwrap();
    let second = second.endorse().await.unwrap();
    let first = first.submit().await.unwrap();
    let second = second.submit().await.unwrap();
    let mut statuses = vec![
        first.status().await.unwrap(),
        second.status().await.unwrap(),
    ];
    statuses.sort_by_key(|s| !s.successful());
    assert!(statuses[0].successful(), "{statuses:?}");
    let conflict = statuses[1].check().unwrap_err();
    assert_eq!(conflict.code_name(), "MVCC_READ_CONFLICT", "{conflict}");
    assert!(Error::from(conflict.clone())
        .to_string()
        .contains("MVCC_READ_CONFLICT"));

    // --- typed errors ------------------------------------------------------
    let err = network
        .contract("no-such-chaincode")
        .evaluate("ReadAsset", &[&a])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Evaluate { .. }), "{err:?}");
    assert_eq!(err.transaction_id().map(str::len), Some(64));
    assert!(err.code().is_some());
    assert!(!err.details().is_empty(), "{err:?}");
    assert!(
        err.details().iter().all(|d| d.msp_id == "Org1MSP"),
        "{err:?}"
    );

    let err = network
        .contract("no-such-chaincode")
        .submit("CreateAsset", &["x", "y", "1", "z", "1"])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Endorse { .. }), "{err:?}");
    assert!(!err.details().is_empty(), "{err:?}");

    let err = gateway
        .network("no-such-channel")
        .contract(CHAINCODE)
        .evaluate("ReadAsset", &[&a])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Evaluate { .. }), "{err:?}");
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");

    // A chaincode error reaches the client with the endorser's details.
    let err = contract
        .submit("CreateAsset", &[&a, "blue", "5", "Tom", "100"])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Endorse { .. }), "{err:?}");
    assert!(err.to_string().contains("exists"), "{err}");

    // --- the example app ---------------------------------------------------
    if let Some(example) = net.example("asset_transfer") {
        run_example(&example, &net.dir).await;
    } else {
        eprintln!("examples/asset_transfer not built; skipping it");
    }

    // --- endorsement fails over between Org2's peers -------------------------
    net.kill("peer0.org2.example.com");
    let e = unique("asset-e");
    contract
        .submit("CreateAsset", &[&e, "grey", "2", "Joe", "20"])
        .await
        .expect("endorsed by peer1.org2 while peer0.org2 is down");
    net.kill("peer1.org2.example.com");
    let err = contract
        .submit(
            "CreateAsset",
            &[&unique("asset-f"), "grey", "2", "Joe", "20"],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Endorse { .. }), "{err:?}");
    assert!(
        err.details().iter().any(|d| d.msp_id == "Org2MSP"),
        "the details name Org2: {err}"
    );
}

async fn run_example(example: &Path, state_dir: &Path) {
    let out = tokio::process::Command::new(example)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .await
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created asset-"), "{stdout}");
    assert!(stdout.contains("\"Color\":\"blue\""), "{stdout}");
    assert!(stdout.contains("event CreateAsset in block"), "{stdout}");
}
