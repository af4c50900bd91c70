//! In-process tests of the channel chain and the registrar: three orderers
//! of the test network on a [`LocalNetwork`], with crypto material made by
//! twill-cryptogen in a temp dir, 20 ms Raft ticks and a 200 ms batch
//! timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::new_without_default)]

mod config;
mod ordering;
mod registrar;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tempfile::TempDir;
use twill_configtx::block::{block_header_hash, channel_header, envelope};
use twill_configtx::channel::ChannelConfig;
use twill_configtx::genesis::genesis_block_from_profile;
use twill_configtx::profile::LoadedConfigtx;
use twill_configtx::update::{compute_update, config_update_tx, sign_config_update};
use twill_msp::SigningIdentity;
use twill_orderer::chain::local::{LocalCluster, LocalNetwork};
use twill_orderer::chain::{Chain, ChainHandle, ChainOptions};
use twill_orderer::msgprocessor::process_config_update;
use twill_orderer::writer::is_config_block;
use twill_protos::common::{
    Block, Config, ConfigUpdateEnvelope, Envelope, HeaderType, SignatureHeader,
};
use twill_protos::etcdraft;
use twill_protos::orderer::{BatchSize, ConsensusType};

pub const CHANNEL: &str = "mychannel";

/// Longest any wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// The tests run real Raft ticks; one at a time, so that they do not starve
/// each other on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The test network's config files and crypto material in a temp dir.
pub struct Crypto {
    pub dir: TempDir,
}

impl Crypto {
    pub fn new() -> Crypto {
        Crypto::with_batch_timeout("200ms")
    }

    /// The material, with the channel's `BatchTimeout` set to `timeout`.
    pub fn with_batch_timeout(timeout: &str) -> Crypto {
        let dir = tempfile::tempdir().unwrap();
        let tn = dir.path().join("test-network");
        std::fs::create_dir_all(&tn).unwrap();
        // orderer3 is an OrdererMSP node that no genesis config names.
        let crypto_config =
            std::fs::read_to_string(repo_file("network-configs/test-network/crypto-config.yaml"))
                .unwrap();
        assert!(crypto_config.contains("      - Hostname: orderer0\n"));
        std::fs::write(
            tn.join("crypto-config.yaml"),
            crypto_config.replace(
                "      - Hostname: orderer0\n",
                "      - Hostname: orderer3\n      - Hostname: orderer0\n",
            ),
        )
        .unwrap();
        let configtx =
            std::fs::read_to_string(repo_file("network-configs/test-network/configtx.yaml"))
                .unwrap();
        assert!(configtx.contains("BatchTimeout: 2s"));
        std::fs::write(
            tn.join("configtx.yaml"),
            configtx.replace("BatchTimeout: 2s", &format!("BatchTimeout: {timeout}")),
        )
        .unwrap();
        let cfg = twill_cryptogen::load_config(&tn.join("crypto-config.yaml")).unwrap();
        twill_cryptogen::generate(&cfg, &tn.join("organizations")).unwrap();
        Crypto { dir }
    }

    fn orgs(&self) -> PathBuf {
        self.dir.path().join("test-network/organizations")
    }

    pub fn genesis(&self) -> Block {
        let cfg =
            LoadedConfigtx::load(&self.dir.path().join("test-network/configtx.yaml")).unwrap();
        genesis_block_from_profile(&cfg, "TwoOrgsApplicationGenesis", CHANNEL).unwrap()
    }

    /// Orderer `i`'s signing identity and cluster certificate (DER).
    pub fn orderer(&self, i: usize) -> (Arc<SigningIdentity>, Vec<u8>) {
        let dir = self.orgs().join(format!(
            "ordererOrganizations/example.com/orderers/orderer{i}.example.com"
        ));
        let signer = SigningIdentity::from_msp_dir(&dir.join("msp"), "OrdererMSP").unwrap();
        (Arc::new(signer), cert_der(&dir.join("tls/server.crt")))
    }

    /// Orderer `i`'s cluster certificate as PEM (as channel configs hold it).
    pub fn orderer_tls_pem(&self, i: usize) -> Vec<u8> {
        std::fs::read(self.orgs().join(format!(
            "ordererOrganizations/example.com/orderers/orderer{i}.example.com/tls/server.crt"
        )))
        .unwrap()
    }

    /// The TLS certificate of Org1's peer: not a consenter.
    pub fn peer_tls_cert(&self) -> Vec<u8> {
        cert_der(
            &self.orgs().join(
                "peerOrganizations/org1.example.com/peers/peer0.org1.example.com/tls/server.crt",
            ),
        )
    }

    /// The orderer org's admin.
    pub fn orderer_admin(&self) -> SigningIdentity {
        let dir = self
            .orgs()
            .join("ordererOrganizations/example.com/users/Admin@example.com/msp");
        SigningIdentity::from_msp_dir(&dir, "OrdererMSP").unwrap()
    }
}

fn cert_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path).unwrap();
    twill_crypto::pem::parse_pem_blocks(&pem)
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
        .1
}

/// Test timing: 20 ms ticks.
pub fn opts() -> ChainOptions {
    ChainOptions {
        tick_interval: Some(Duration::from_millis(20)),
        ..ChainOptions::default()
    }
}

/// A distinct (unsigned) transaction envelope; the chain does not check
/// envelopes, the Broadcast service does.
pub fn tx(n: u64) -> Vec<u8> {
    let ch = channel_header(
        HeaderType::EndorserTransaction,
        0,
        CHANNEL,
        &format!("tx-{n}"),
    );
    let sh = SignatureHeader {
        creator: b"test".to_vec(),
        nonce: n.to_be_bytes().to_vec(),
    };
    let mut env = envelope(&ch, &sh, format!("payload {n}").into_bytes());
    env.signature = vec![1, 2, 3];
    env.encode_to_vec()
}

/// Polls `cond` every 20 ms until it holds; panics after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the chains agree on one leader among them; returns its id.
pub async fn wait_leader(chains: &[ChainHandle]) -> u64 {
    let mut leader = 0;
    eventually("a leader everyone agrees on", || {
        let statuses: Vec<_> = chains.iter().map(|c| c.status()).collect();
        let Some(l) = statuses[0].leader else {
            return false;
        };
        let agreed = statuses.iter().all(|s| s.leader == Some(l))
            && statuses.iter().filter(|s| s.is_leader).count() == 1
            && chains.iter().any(|c| c.consenter_id() == l);
        if agreed {
            leader = l;
        }
        agreed
    })
    .await;
    leader
}

/// Runs `f` up to a few times while it fails with SERVICE_UNAVAILABLE (no
/// leader yet, leadership moving).
pub async fn retry<F, Fut>(mut f: F) -> Result<(), twill_orderer::msgprocessor::Reject>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), twill_orderer::msgprocessor::Reject>>,
{
    let mut last = Ok(());
    for _ in 0..20 {
        last = f().await;
        match &last {
            Err(r) if r.status == twill_protos::common::Status::ServiceUnavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return last,
        }
    }
    last
}

/// Every block of the chain.
pub fn blocks(chain: &ChainHandle) -> Vec<Block> {
    let store = chain.block_store();
    (0..store.height())
        .map(|n| store.block(n).unwrap().unwrap())
        .collect()
}

/// The envelopes of the chain's non-config blocks, in order.
pub fn ordered_envelopes(chain: &ChainHandle) -> Vec<Vec<u8>> {
    blocks(chain)
        .into_iter()
        .filter(|b| !is_config_block(b))
        .flat_map(|b| b.data.unwrap().data)
        .collect()
}

/// Header hashes of every block.
pub fn header_hashes(chain: &ChainHandle) -> Vec<[u8; 32]> {
    blocks(chain)
        .iter()
        .map(|b| block_header_hash(b.header.as_ref().unwrap()))
        .collect()
}

/// Waits until every chain holds the same `count` envelopes and the same
/// height, then checks that every block is identical (header hash).
pub async fn wait_converged(chains: &[ChainHandle], count: usize) {
    eventually(&format!("{count} envelopes on every chain"), || {
        let height = chains[0].status().height;
        chains
            .iter()
            .all(|c| c.status().height == height && ordered_envelopes(c).len() == count)
    })
    .await;
    let reference = header_hashes(&chains[0]);
    for chain in &chains[1..] {
        assert_eq!(
            header_hashes(chain),
            reference,
            "chain of consenter {} differs",
            chain.consenter_id()
        );
    }
}

/// Asserts `chain` holds exactly the envelopes `sent`, each once.
pub fn assert_exactly_once(chain: &ChainHandle, sent: &[Vec<u8>]) {
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for env in ordered_envelopes(chain) {
        *counts.entry(env).or_default() += 1;
    }
    assert_eq!(counts.len(), sent.len(), "distinct envelopes");
    for env in sent {
        assert_eq!(
            counts.get(env),
            Some(&1),
            "an envelope is not there exactly once"
        );
    }
}

/// The etcdraft metadata of a block written by a chain.
pub fn raft_meta(block: &Block) -> etcdraft::BlockMetadata {
    let bytes = twill_orderer::writer::consenter_metadata(block).unwrap();
    etcdraft::BlockMetadata::decode(bytes.as_slice()).unwrap()
}

/// Three orderers on one [`LocalNetwork`], each with its own directory.
pub struct Cluster {
    pub crypto: Crypto,
    pub net: Arc<LocalNetwork>,
    pub nodes: Vec<Arc<LocalCluster>>,
    pub genesis: Block,
    pub dir: TempDir,
    pub opts: ChainOptions,
}

impl Cluster {
    pub fn new(opts: ChainOptions) -> Cluster {
        Cluster::with_crypto(Crypto::new(), opts)
    }

    pub fn with_crypto(crypto: Crypto, opts: ChainOptions) -> Cluster {
        let net = LocalNetwork::new();
        let nodes = (0..3).map(|_| net.add_node()).collect();
        let genesis = crypto.genesis();
        Cluster {
            crypto,
            net,
            nodes,
            genesis,
            dir: tempfile::tempdir().unwrap(),
            opts,
        }
    }

    pub fn chain_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("orderer{i}")).join(CHANNEL)
    }

    /// Starts (or restarts) orderer `i`'s chain and registers it.
    pub fn start(&self, i: usize) -> ChainHandle {
        let (signer, cert) = self.crypto.orderer(i);
        let chain = Chain::start(
            &self.chain_dir(i),
            Some(&self.genesis),
            signer,
            &cert,
            self.nodes[i].clone(),
            self.opts.clone(),
        )
        .unwrap();
        self.nodes[i].register(&chain);
        chain
    }

    pub fn start_all(&self) -> Vec<ChainHandle> {
        (0..3).map(|i| self.start(i)).collect()
    }

    /// The node index of a chain (its raft id - 1).
    pub fn node_of(chain: &ChainHandle) -> usize {
        (chain.consenter_id() - 1) as usize
    }
}

/// Halts every chain.
pub async fn halt_all(chains: &[ChainHandle]) {
    for chain in chains {
        chain.halt().await;
    }
}

/// A CONFIG_UPDATE changing `desired` from `cfg`, signed and submitted by
/// the orderer org's admin.
pub fn config_update(crypto: &Crypto, cfg: &ChannelConfig, desired: &Config) -> Envelope {
    let update = compute_update(CHANNEL, &cfg.config, desired).unwrap();
    let bytes = update.encode_to_vec();
    let admin = crypto.orderer_admin();
    let update_env = ConfigUpdateEnvelope {
        signatures: vec![sign_config_update(&bytes, &admin).unwrap()],
        config_update: bytes,
    };
    config_update_tx(CHANNEL, &update_env, &admin).unwrap()
}

/// The config with `BatchSize.MaxMessageCount` set to `count`.
pub fn with_max_message_count(cfg: &ChannelConfig, count: u32) -> Config {
    let mut desired = cfg.config.clone();
    let orderer = desired
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Orderer")
        .unwrap();
    let value = orderer.values.get_mut("BatchSize").unwrap();
    let mut bs = BatchSize::decode(value.value.as_slice()).unwrap();
    bs.max_message_count = count;
    value.value = bs.encode_to_vec();
    desired
}

/// The config with only the first `n` consenters.
pub fn with_consenters(cfg: &ChannelConfig, n: usize) -> Config {
    edit_consenters(cfg, |c| c.truncate(n))
}

/// The config with its consenter list changed by `edit`.
pub fn edit_consenters(
    cfg: &ChannelConfig,
    edit: impl FnOnce(&mut Vec<etcdraft::Consenter>),
) -> Config {
    let mut desired = cfg.config.clone();
    let orderer = desired
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Orderer")
        .unwrap();
    let value = orderer.values.get_mut("ConsensusType").unwrap();
    let mut ct = ConsensusType::decode(value.value.as_slice()).unwrap();
    let mut md = etcdraft::ConfigMetadata::decode(ct.metadata.as_slice()).unwrap();
    edit(&mut md.consenters);
    ct.metadata = md.encode_to_vec();
    value.value = ct.encode_to_vec();
    desired
}

/// The CONFIG envelope (serialized) `chain` makes of `update`.
pub fn config_envelope(chain: &ChainHandle, update: &Envelope) -> Vec<u8> {
    let (env, _) =
        process_config_update(update, &chain.config(), CHANNEL, &chain.signer()).unwrap();
    env.encode_to_vec()
}
