//! `BroadcastService` over a fake chain, on a plaintext loopback server:
//! answers keep their order while envelopes are processed concurrently,
//! chain refusals reach the client, Deliver waits for blocks as they are
//! appended, and a halted chain ends a waiting Deliver request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use twill_configtx::block::{block_header_hash, new_block};
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_ledger::BlockStore;
use twill_msp::SigningIdentity;
use twill_orderer::broadcast::{BroadcastService, ChainManager, ChainSupport};
use twill_orderer::msgprocessor::Reject;
use twill_protos::common::{Block, Envelope, Payload, Status};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::orderer::seek_info::SeekBehavior;

use crate::node::{
    block_number, broadcast_stream, deliver_stream, header_of, seek, specified, status, tx, Client,
    Net, CHANNEL,
};

#[derive(Clone)]
struct FakeChain(Arc<Inner>);

struct Inner {
    config: Arc<ChannelConfig>,
    signer: Arc<SigningIdentity>,
    store: Arc<BlockStore>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    ordered: Mutex<Vec<String>>,
    halted: AtomicBool,
}

#[tonic::async_trait]
impl ChainSupport for FakeChain {
    fn config(&self) -> Arc<ChannelConfig> {
        self.0.config.clone()
    }

    fn signer(&self) -> Arc<SigningIdentity> {
        self.0.signer.clone()
    }

    fn block_store(&self) -> Arc<BlockStore> {
        self.0.store.clone()
    }

    fn is_halted(&self) -> bool {
        self.0.halted.load(Ordering::SeqCst)
    }

    /// Takes longer for early envelopes than for later ones, so that
    /// answers would come out of order if they were not put back in it;
    /// refuses envelopes whose data says "refuse".
    async fn order(&self, envelope: Vec<u8>) -> Result<(), Reject> {
        let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let env = Envelope::decode(envelope.as_slice()).unwrap();
        let data =
            String::from_utf8(Payload::decode(env.payload.as_slice()).unwrap().data).unwrap();
        let n: u64 = data.rsplit(' ').next().unwrap().parse().unwrap();
        tokio::time::sleep(Duration::from_millis(100u64.saturating_sub(n * 3))).await;
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if n % 7 == 3 {
            return Err(Reject::bad_request("fake refusal"));
        }
        self.0
            .ordered
            .lock()
            .unwrap()
            .push(header_of(&envelope).tx_id);
        Ok(())
    }

    async fn configure(&self, _config_envelope: Vec<u8>) -> Result<(), Reject> {
        Err(Reject::internal("not in this fake"))
    }
}

struct FakeManager(FakeChain);

impl ChainManager for FakeManager {
    type Chain = FakeChain;

    fn get_chain(&self, channel: &str) -> Option<FakeChain> {
        (channel == CHANNEL).then(|| self.0.clone())
    }
}

struct Setup {
    net: Net,
    chain: FakeChain,
    genesis: Block,
    client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn setup() -> Setup {
    let net = Net::new();
    let genesis = net.genesis();
    let (_, config_env) = config_from_block(&genesis).unwrap();
    let config = ChannelConfig::from_config(&config_env.config.unwrap()).unwrap();
    let dir = twill_ledger::channel_dir(&net.tn().join("ledger"), CHANNEL).unwrap();
    let store = BlockStore::open(&dir).unwrap();
    store.append(&genesis).unwrap();
    let signer = net.identity(
        "ordererOrganizations/example.com/orderers/orderer0.example.com/msp",
        "OrdererMSP",
    );
    let chain = FakeChain(Arc::new(Inner {
        config: Arc::new(config),
        signer: Arc::new(signer),
        store: Arc::new(store),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        ordered: Mutex::new(Vec::new()),
        halted: AtomicBool::new(false),
    }));
    let service =
        BroadcastService::new(Arc::new(FakeManager(chain.clone()))).with_max_in_flight(16);
    let (listener, addr) = twill_comm::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = twill_comm::server_builder(None)
        .unwrap()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(twill_comm::incoming(listener), async {
            let _ = stopped.await;
        });
    tokio::spawn(server);
    let channel = twill_comm::connect(&addr.to_string(), None).await.unwrap();
    let client = twill_comm::with_message_limits!(AtomicBroadcastClient::new(channel));
    Setup {
        net,
        chain,
        genesis,
        client,
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_in_order_while_processing_concurrently() {
    let mut s = setup().await;
    let user = s.net.user1();
    let mut b = broadcast_stream(&mut s.client).await;
    let mut want = Vec::new();
    let mut accepted = Vec::new();
    for n in 0..30 {
        let (env, id) = tx(&user, CHANNEL, n);
        b.send(env).await;
        if n % 7 == 3 {
            want.push(Status::BadRequest);
        } else {
            want.push(Status::Success);
            accepted.push(id);
        }
    }
    for (n, expected) in want.iter().enumerate() {
        let resp = b.next().await.unwrap();
        assert_eq!(status(&resp), *expected, "envelope {n}: {}", resp.info);
        if *expected == Status::BadRequest {
            assert_eq!(resp.info, "fake refusal");
        }
    }
    let max = s.chain.0.max_in_flight.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 16, "{max} envelopes were ordered at once");
    let mut ordered = s.chain.0.ordered.lock().unwrap().clone();
    ordered.sort();
    accepted.sort();
    assert_eq!(ordered, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_waits_for_blocks_and_ends_when_halted() {
    let mut s = setup().await;
    let user = s.net.user1();
    let mut d = deliver_stream(&mut s.client).await;
    d.send(seek(
        &user,
        CHANNEL,
        specified(1),
        specified(2),
        SeekBehavior::BlockUntilReady,
    ))
    .await;

    // The blocks come after the request.
    let store = s.chain.0.store.clone();
    let mut previous = block_header_hash(s.genesis.header.as_ref().unwrap()).to_vec();
    for n in 1..=2u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let block = new_block(
            n,
            previous,
            vec![tx(&user, CHANNEL, n as usize).0.encode_to_vec()],
        );
        previous = block_header_hash(block.header.as_ref().unwrap()).to_vec();
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.append(&block).unwrap())
            .await
            .unwrap();
    }
    let mut numbers = Vec::new();
    loop {
        match d.next().await.unwrap().r#type.unwrap() {
            twill_protos::orderer::deliver_response::Type::Block(b) => {
                numbers.push(block_number(&b))
            }
            twill_protos::orderer::deliver_response::Type::Status(st) => {
                assert_eq!(st, Status::Success as i32);
                break;
            }
        }
    }
    assert_eq!(numbers, [1, 2]);

    // Waiting for block 3 when the chain stops.
    d.send(seek(
        &user,
        CHANNEL,
        specified(3),
        specified(u64::MAX),
        SeekBehavior::BlockUntilReady,
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.chain.0.halted.store(true, Ordering::SeqCst);
    let (blocks, st) = {
        let mut blocks = Vec::new();
        loop {
            match d.next().await.unwrap().r#type.unwrap() {
                twill_protos::orderer::deliver_response::Type::Block(b) => blocks.push(b),
                twill_protos::orderer::deliver_response::Type::Status(st) => {
                    break (blocks, Status::try_from(st).unwrap())
                }
            }
        }
    };
    assert!(blocks.is_empty());
    assert_eq!(st, Status::ServiceUnavailable);

    // A halted chain refuses new requests at once.
    let (blocks, st) = d
        .request(seek(
            &user,
            CHANNEL,
            specified(0),
            specified(0),
            SeekBehavior::BlockUntilReady,
        ))
        .await;
    assert!(blocks.is_empty());
    assert_eq!(st, Status::ServiceUnavailable);
}
