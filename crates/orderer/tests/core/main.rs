//! Integration tests of the orderer core (block writer, message processor)
//! against the test network's own config, with material made by
//! twill-cryptogen in a temp dir.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::new_without_default)]

mod msgprocessor;
mod writer;

use std::path::{Path, PathBuf};

use twill_configtx::block::{channel_header, compute_tx_id, envelope};
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_configtx::genesis::genesis_block_from_profile;
use twill_configtx::profile::LoadedConfigtx;
use twill_msp::SigningIdentity;
use twill_protos::common::{Block, Envelope, HeaderType, SignatureHeader};

pub const CHANNEL: &str = "mychannel";

/// Org3 exists in crypto material only: it is not a member of the channel.
const ORG3_CRYPTO: &str = "PeerOrgs:
  - Name: Org3
    Domain: org3.example.com
    EnableNodeOUs: true
    Template:
      Count: 1
    Users:
      Count: 1
";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A temp dir holding the test network's config files and crypto material.
pub struct Net {
    pub dir: tempfile::TempDir,
}

impl Net {
    pub fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let tn = dir.path().join("test-network");
        std::fs::create_dir_all(&tn).unwrap();
        for f in ["crypto-config.yaml", "configtx.yaml"] {
            std::fs::copy(
                repo_file(&format!("network-configs/test-network/{f}")),
                tn.join(f),
            )
            .unwrap();
        }
        let orgs = tn.join("organizations");
        let cfg = twill_cryptogen::load_config(&tn.join("crypto-config.yaml")).unwrap();
        twill_cryptogen::generate(&cfg, &orgs).unwrap();
        let org3 = twill_cryptogen::parse_config(ORG3_CRYPTO, "org3.yaml").unwrap();
        twill_cryptogen::generate(&org3, &orgs).unwrap();
        Net { dir }
    }

    fn orgs(&self) -> PathBuf {
        self.dir.path().join("test-network/organizations")
    }

    pub fn genesis(&self) -> Block {
        let cfg =
            LoadedConfigtx::load(&self.dir.path().join("test-network/configtx.yaml")).unwrap();
        genesis_block_from_profile(&cfg, "TwoOrgsApplicationGenesis", CHANNEL).unwrap()
    }

    /// `user` (`Admin`, `User1`) of a peer org, e.g. `("org1", "Org1MSP", "User1")`.
    pub fn user(&self, org: &str, mspid: &str, user: &str) -> SigningIdentity {
        let domain = format!("{org}.example.com");
        let dir = self
            .orgs()
            .join("peerOrganizations")
            .join(&domain)
            .join("users")
            .join(format!("{user}@{domain}"))
            .join("msp");
        SigningIdentity::from_msp_dir(&dir, mspid).unwrap()
    }

    /// The peer `peer0` of a peer org.
    pub fn peer(&self, org: &str, mspid: &str) -> SigningIdentity {
        let domain = format!("{org}.example.com");
        let dir = self
            .orgs()
            .join("peerOrganizations")
            .join(&domain)
            .join("peers")
            .join(format!("peer0.{domain}"))
            .join("msp");
        SigningIdentity::from_msp_dir(&dir, mspid).unwrap()
    }

    /// An orderer node's identity (`orderer0` .. `orderer2`).
    pub fn orderer(&self, name: &str) -> SigningIdentity {
        let dir = self
            .orgs()
            .join("ordererOrganizations/example.com/orderers")
            .join(format!("{name}.example.com"))
            .join("msp");
        SigningIdentity::from_msp_dir(&dir, "OrdererMSP").unwrap()
    }
}

/// The typed config of a config block.
pub fn config_of(block: &Block) -> ChannelConfig {
    let (_, env) = config_from_block(block).unwrap();
    ChannelConfig::from_config(&env.config.unwrap()).unwrap()
}

/// An envelope of type `kind` for `channel` carrying `data`, signed by `signer`.
pub fn signed_env(
    signer: &SigningIdentity,
    kind: HeaderType,
    channel: &str,
    data: Vec<u8>,
) -> Envelope {
    let creator = signer.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = compute_tx_id(&nonce, &creator);
    let ch = channel_header(kind, 0, channel, &tx_id);
    let mut env = envelope(&ch, &SignatureHeader { creator, nonce }, data);
    env.signature = signer.sign(&env.payload).unwrap();
    env
}
