//! Test and benchmark helpers (feature `testkit`): a 2-org test network's
//! crypto material and channel config in a temp dir, a builder of signed
//! endorser transactions, orderer-signed blocks, and `_lifecycle`
//! definitions in a [`MemState`].
//!
//! ```no_run
//! use twill_peer::validation::testkit::{TestNetwork, TxBuilder, write};
//!
//! let net = TestNetwork::new()?;
//! let tx = TxBuilder::new(&net.client(1)?, "mychannel", "basic")
//!     .writes("basic", vec![write("k", b"v")])
//!     .endorsed_by(&net.peer(1)?)
//!     .endorsed_by(&net.peer(2)?)
//!     .build()?;
//! # Ok::<(), twill_peer::validation::testkit::TestkitError>(())
//! ```

use std::path::PathBuf;

use prost::Message;
use twill_configtx::block::{
    block_header_bytes, block_header_hash, channel_header, compute_tx_id, new_block,
};
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_configtx::genesis::genesis_block_from_profile;
use twill_configtx::profile::LoadedConfigtx;
use twill_ledger::state::Height;
use twill_msp::SigningIdentity;
use twill_protos::common::{
    Block, BlockHeader, BlockMetadataIndex, Envelope, Header, HeaderType, LastConfig, Metadata,
    MetadataSignature, OrdererBlockMetadata, Payload, SignatureHeader, SignaturePolicyEnvelope,
};
use twill_protos::kvrwset::{
    range_query_info::ReadsInfo, KvMetadataEntry, KvMetadataWrite, KvRead, KvWrite, KvrwSet,
    QueryReads, RangeQueryInfo, Version,
};
use twill_protos::lifecycle::ChaincodeValidationInfo;
use twill_protos::peer::{
    application_policy, ApplicationPolicy, ChaincodeAction, ChaincodeActionPayload,
    ChaincodeEndorsedAction, ChaincodeHeaderExtension, ChaincodeId, ChaincodeProposalPayload,
    Endorsement, ProposalResponsePayload, Response, Transaction, TransactionAction,
};
use twill_protos::rwset::{tx_read_write_set::DataModel, NsReadWriteSet, TxReadWriteSet};

use super::lifecycle::{definition_entries, LIFECYCLE_NAMESPACE};
use super::MemState;

/// The channel of the test network.
pub const CHANNEL: &str = "mychannel";

const CRYPTO_CONFIG: &str =
    include_str!("../../../../network-configs/test-network/crypto-config.yaml");
const CONFIGTX: &str = include_str!("../../../../network-configs/test-network/configtx.yaml");

/// A testkit step failed.
#[derive(Debug, thiserror::Error)]
#[error("testkit: {0}")]
pub struct TestkitError(pub String);

/// Result alias of the testkit.
pub type TestkitResult<T> = Result<T, TestkitError>;

fn err(what: &str, e: impl std::fmt::Display) -> TestkitError {
    TestkitError(format!("{what}: {e}"))
}

/// The test network (Org1, Org2, three orderers) in a temp dir.
pub struct TestNetwork {
    dir: tempfile::TempDir,
    genesis: Block,
}

impl TestNetwork {
    /// Generates the crypto material and the genesis block of [`CHANNEL`].
    pub fn new() -> TestkitResult<TestNetwork> {
        let dir = tempfile::tempdir().map_err(|e| err("temp dir", e))?;
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("configtx.yaml"), CONFIGTX).map_err(|e| err("configtx", e))?;
        let crypto = twill_cryptogen::parse_config(CRYPTO_CONFIG, "crypto-config.yaml")
            .map_err(|e| err("crypto config", e))?;
        twill_cryptogen::generate(&crypto, &root.join("organizations"))
            .map_err(|e| err("cryptogen", e))?;
        let cfg = LoadedConfigtx::load(&root.join("configtx.yaml"))
            .map_err(|e| err("configtx.yaml", e))?;
        let genesis = genesis_block_from_profile(&cfg, "TwoOrgsApplicationGenesis", CHANNEL)
            .map_err(|e| err("genesis", e))?;
        Ok(TestNetwork { dir, genesis })
    }

    fn orgs(&self) -> PathBuf {
        self.dir.path().join("organizations")
    }

    /// The genesis block of [`CHANNEL`].
    pub fn genesis(&self) -> &Block {
        &self.genesis
    }

    /// The channel config of the genesis block.
    pub fn config(&self) -> TestkitResult<ChannelConfig> {
        let (_, env) = config_from_block(&self.genesis).map_err(|e| err("config block", e))?;
        let config = env.config.ok_or_else(|| err("config block", "no config"))?;
        ChannelConfig::from_config(&config).map_err(|e| err("channel config", e))
    }

    fn identity(&self, path: PathBuf, mspid: &str) -> TestkitResult<SigningIdentity> {
        SigningIdentity::from_msp_dir(&path, mspid).map_err(|e| err("msp dir", e))
    }

    /// `peer0` of org `n` (1 or 2).
    pub fn peer(&self, n: u8) -> TestkitResult<SigningIdentity> {
        let domain = format!("org{n}.example.com");
        self.identity(
            self.orgs()
                .join("peerOrganizations")
                .join(&domain)
                .join(format!("peers/peer0.{domain}/msp")),
            &format!("Org{n}MSP"),
        )
    }

    /// `User1` (a client) of org `n` (1 or 2).
    pub fn client(&self, n: u8) -> TestkitResult<SigningIdentity> {
        let domain = format!("org{n}.example.com");
        self.identity(
            self.orgs()
                .join("peerOrganizations")
                .join(&domain)
                .join(format!("users/User1@{domain}/msp")),
            &format!("Org{n}MSP"),
        )
    }

    /// Orderer node `orderer{n}` (0..=2).
    pub fn orderer(&self, n: u8) -> TestkitResult<SigningIdentity> {
        self.identity(
            self.orgs().join(format!(
                "ordererOrganizations/example.com/orderers/orderer{n}.example.com/msp"
            )),
            "OrdererMSP",
        )
    }
}

/// A read of `key` at `version` (`None` = the key was absent).
pub fn read(key: &str, version: Option<Height>) -> KvRead {
    KvRead {
        key: key.to_owned(),
        version: version.map(|h| Version {
            block_num: h.block,
            tx_num: h.tx,
        }),
    }
}

/// A write of `value` to `key`.
pub fn write(key: &str, value: &[u8]) -> KvWrite {
    KvWrite {
        key: key.to_owned(),
        is_delete: false,
        value: value.to_vec(),
    }
}

/// A delete of `key`.
pub fn delete(key: &str) -> KvWrite {
    KvWrite {
        key: key.to_owned(),
        is_delete: true,
        value: Vec::new(),
    }
}

/// A range query over `[start, end)` that saw `results` and ran to the end.
pub fn range_query(start: &str, end: &str, results: &[(&str, Height)]) -> RangeQueryInfo {
    RangeQueryInfo {
        start_key: start.to_owned(),
        end_key: end.to_owned(),
        itr_exhausted: true,
        reads_info: Some(ReadsInfo::RawReads(QueryReads {
            kv_reads: results.iter().map(|(k, h)| read(k, Some(*h))).collect(),
        })),
    }
}

/// A metadata write setting `key`'s key-level endorsement policy.
pub fn set_key_policy(key: &str, policy: &SignaturePolicyEnvelope) -> KvMetadataWrite {
    KvMetadataWrite {
        key: key.to_owned(),
        entries: vec![KvMetadataEntry {
            name: "VALIDATION_PARAMETER".to_owned(),
            value: policy.encode_to_vec(),
        }],
    }
}

/// Builds a signed endorser transaction: a proposal by `creator`, a
/// proposal response payload carrying the read-write set, endorsements by
/// the chosen peers over `prp ‖ endorser`, and the envelope signed by the
/// creator.
pub struct TxBuilder<'a> {
    creator: &'a SigningIdentity,
    channel: String,
    chaincode: String,
    version: String,
    rwsets: Vec<(String, KvrwSet)>,
    endorsers: Vec<&'a SigningIdentity>,
    tx_id: Option<String>,
    nonce: Option<Vec<u8>>,
}

impl<'a> TxBuilder<'a> {
    /// A transaction invoking `chaincode` (version "1.0") on `channel`.
    pub fn new(creator: &'a SigningIdentity, channel: &str, chaincode: &str) -> Self {
        TxBuilder {
            creator,
            channel: channel.to_owned(),
            chaincode: chaincode.to_owned(),
            version: "1.0".to_owned(),
            rwsets: Vec::new(),
            endorsers: Vec::new(),
            tx_id: None,
            nonce: None,
        }
    }

    fn ns(&mut self, ns: &str) -> &mut KvrwSet {
        let pos = match self.rwsets.iter().position(|(n, _)| n == ns) {
            Some(p) => p,
            None => {
                self.rwsets.push((ns.to_owned(), KvrwSet::default()));
                self.rwsets.len() - 1
            }
        };
        &mut self.rwsets[pos].1
    }

    /// Adds reads in namespace `ns`.
    pub fn reads(mut self, ns: &str, reads: Vec<KvRead>) -> Self {
        self.ns(ns).reads.extend(reads);
        self
    }

    /// Adds writes in namespace `ns`.
    pub fn writes(mut self, ns: &str, writes: Vec<KvWrite>) -> Self {
        self.ns(ns).writes.extend(writes);
        self
    }

    /// Adds range queries in namespace `ns`.
    pub fn range_queries(mut self, ns: &str, queries: Vec<RangeQueryInfo>) -> Self {
        self.ns(ns).range_queries_info.extend(queries);
        self
    }

    /// Adds metadata writes in namespace `ns`.
    pub fn metadata_writes(mut self, ns: &str, writes: Vec<KvMetadataWrite>) -> Self {
        self.ns(ns).metadata_writes.extend(writes);
        self
    }

    /// Adds an endorsement by `peer`.
    pub fn endorsed_by(mut self, peer: &'a SigningIdentity) -> Self {
        self.endorsers.push(peer);
        self
    }

    /// Uses this tx id instead of the computed one.
    pub fn tx_id(mut self, tx_id: &str) -> Self {
        self.tx_id = Some(tx_id.to_owned());
        self
    }

    /// Uses this nonce instead of a random one (same nonce and creator →
    /// same tx id).
    pub fn nonce(mut self, nonce: &[u8]) -> Self {
        self.nonce = Some(nonce.to_vec());
        self
    }

    /// The signed envelope and its tx id.
    pub fn build(self) -> TestkitResult<(String, Envelope)> {
        let creator = self.creator.serialize();
        let nonce = self
            .nonce
            .clone()
            .unwrap_or_else(|| twill_crypto::random_bytes(24));
        let tx_id = self
            .tx_id
            .clone()
            .unwrap_or_else(|| compute_tx_id(&nonce, &creator));
        let mut chdr = channel_header(HeaderType::EndorserTransaction, 0, &self.channel, &tx_id);
        chdr.extension = ChaincodeHeaderExtension {
            chaincode_id: Some(ChaincodeId {
                path: String::new(),
                name: self.chaincode.clone(),
                version: String::new(),
            }),
        }
        .encode_to_vec();
        let chdr_bytes = chdr.encode_to_vec();
        let shdr_bytes = SignatureHeader { creator, nonce }.encode_to_vec();
        let cpp_bytes = ChaincodeProposalPayload {
            input: b"invoke".to_vec(),
            transient_map: Default::default(),
        }
        .encode_to_vec();
        let mut hasher = twill_crypto::Sha256Hasher::new();
        hasher.update(&chdr_bytes);
        hasher.update(&shdr_bytes);
        hasher.update(&cpp_bytes);
        let proposal_hash = hasher.finalize().to_vec();

        let results = TxReadWriteSet {
            data_model: DataModel::Kv as i32,
            ns_rwset: self
                .rwsets
                .iter()
                .map(|(ns, kv)| NsReadWriteSet {
                    namespace: ns.clone(),
                    rwset: kv.encode_to_vec(),
                    collection_hashed_rwset: Vec::new(),
                })
                .collect(),
        }
        .encode_to_vec();
        let action = ChaincodeAction {
            results,
            events: Vec::new(),
            response: Some(Response {
                status: 200,
                message: String::new(),
                payload: Vec::new(),
            }),
            chaincode_id: Some(ChaincodeId {
                path: String::new(),
                name: self.chaincode.clone(),
                version: self.version.clone(),
            }),
        };
        let prp = ProposalResponsePayload {
            proposal_hash,
            extension: action.encode_to_vec(),
        }
        .encode_to_vec();
        let mut endorsements = Vec::with_capacity(self.endorsers.len());
        for peer in &self.endorsers {
            let endorser = peer.serialize();
            let mut signed = prp.clone();
            signed.extend_from_slice(&endorser);
            let signature = peer.sign(&signed).map_err(|e| err("endorse", e))?;
            endorsements.push(Endorsement {
                endorser,
                signature,
            });
        }
        let cap = ChaincodeActionPayload {
            chaincode_proposal_payload: cpp_bytes,
            action: Some(ChaincodeEndorsedAction {
                proposal_response_payload: prp,
                endorsements,
            }),
        };
        let tx = Transaction {
            actions: vec![TransactionAction {
                header: shdr_bytes.clone(),
                payload: cap.encode_to_vec(),
            }],
        };
        let payload = Payload {
            header: Some(Header {
                channel_header: chdr_bytes,
                signature_header: shdr_bytes,
            }),
            data: tx.encode_to_vec(),
        }
        .encode_to_vec();
        let signature = self
            .creator
            .sign(&payload)
            .map_err(|e| err("sign envelope", e))?;
        Ok((tx_id, Envelope { payload, signature }))
    }
}

/// Block `number` after `previous` holding `envelopes`, signed by `orderer`
/// as a Fabric orderer signs (SIGNATURES slot over
/// `value ‖ signature_header ‖ DER(header)`).
pub fn signed_block(
    previous: &BlockHeader,
    envelopes: &[Envelope],
    orderer: &SigningIdentity,
) -> TestkitResult<Block> {
    let mut block = new_block(
        previous.number.saturating_add(1),
        block_header_hash(previous).to_vec(),
        envelopes.iter().map(|e| e.encode_to_vec()).collect(),
    );
    sign_block(&mut block, orderer, 0)?;
    Ok(block)
}

/// (Re)writes the SIGNATURES slot of `block` with one signature by `orderer`.
pub fn sign_block(
    block: &mut Block,
    orderer: &SigningIdentity,
    last_config: u64,
) -> TestkitResult<()> {
    let header = block
        .header
        .as_ref()
        .ok_or_else(|| err("sign block", "no header"))?;
    let value = OrdererBlockMetadata {
        last_config: Some(LastConfig { index: last_config }),
        consenter_metadata: Vec::new(),
    }
    .encode_to_vec();
    let signature_header = SignatureHeader {
        creator: orderer.serialize(),
        nonce: twill_crypto::random_bytes(24),
    }
    .encode_to_vec();
    let mut signed = value.clone();
    signed.extend_from_slice(&signature_header);
    signed.extend_from_slice(&block_header_bytes(header));
    let signature = orderer.sign(&signed).map_err(|e| err("sign block", e))?;
    let md = Metadata {
        value,
        signatures: vec![MetadataSignature {
            signature_header,
            signature,
            identifier_header: Vec::new(),
        }],
    };
    let metadata = block.metadata.get_or_insert_with(Default::default);
    let slot = BlockMetadataIndex::Signatures as usize;
    if metadata.metadata.len() <= slot {
        metadata.metadata.resize(slot + 1, Vec::new());
    }
    metadata.metadata[slot] = md.encode_to_vec();
    Ok(())
}

/// An `ApplicationPolicy` referring to a channel config policy.
pub fn channel_policy_ref(path: &str) -> ApplicationPolicy {
    ApplicationPolicy {
        r#type: Some(application_policy::Type::ChannelConfigPolicyReference(
            path.to_owned(),
        )),
    }
}

/// An `ApplicationPolicy` holding a signature policy.
pub fn signature_policy(env: SignaturePolicyEnvelope) -> ApplicationPolicy {
    ApplicationPolicy {
        r#type: Some(application_policy::Type::SignaturePolicy(env)),
    }
}

/// Commits a definition of chaincode `name` (sequence `sequence`) with
/// endorsement policy `policy` into the `_lifecycle` namespace of `state`.
pub fn define_chaincode(
    state: &mut MemState,
    name: &str,
    sequence: i64,
    policy: &ApplicationPolicy,
) {
    let info = ChaincodeValidationInfo {
        validation_plugin: "vscc".to_owned(),
        validation_parameter: policy.encode_to_vec(),
    };
    for (key, value) in definition_entries(name, sequence, "1.0", &info) {
        state.put(LIFECYCLE_NAMESPACE, &key, value, Height::new(0, 0));
    }
}
