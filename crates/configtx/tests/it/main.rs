//! Integration tests of twill-configtx against material made by
//! twill-cryptogen from the test network's own config files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::new_without_default)]

mod genesis;
mod update;

use std::path::{Path, PathBuf};

use twill_configtx::profile::LoadedConfigtx;

/// A tempdir holding `test-network/{crypto-config.yaml,configtx.yaml,organizations/}`
/// plus an extra org, Org3, for config update tests.
pub struct Net {
    pub dir: tempfile::TempDir,
}

const ORG3_CRYPTO: &str = "PeerOrgs:
  - Name: Org3
    Domain: org3.example.com
    EnableNodeOUs: true
    Template:
      Count: 1
    Users:
      Count: 1
";

/// configtx.yaml additions: an Org3 definition and a profile including it.
const ORG3_PROFILE: &str = "
  ThreeOrgs:
    <<: *ChannelDefaults
    Orderer:
      <<: *OrdererDefaults
      Organizations:
        - *OrdererOrg
    Application:
      <<: *ApplicationDefaults
      Organizations:
        - *Org1
        - *Org2
        - Name: Org3MSP
          ID: Org3MSP
          MSPDir: organizations/peerOrganizations/org3.example.com/msp
          Policies:
            Readers:
              Type: Signature
              Rule: \"OR('Org3MSP.member')\"
            Writers:
              Type: Signature
              Rule: \"OR('Org3MSP.member')\"
            Admins:
              Type: Signature
              Rule: \"OR('Org3MSP.admin')\"
            Endorsement:
              Type: Signature
              Rule: \"OR('Org3MSP.peer')\"
";

pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

impl Net {
    pub fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let tn = dir.path().join("test-network");
        std::fs::create_dir_all(&tn).unwrap();
        std::fs::copy(
            repo_file("network-configs/test-network/crypto-config.yaml"),
            tn.join("crypto-config.yaml"),
        )
        .unwrap();
        let mut configtx =
            std::fs::read_to_string(repo_file("network-configs/test-network/configtx.yaml"))
                .unwrap();
        configtx.push_str(ORG3_PROFILE);
        std::fs::write(tn.join("configtx.yaml"), configtx).unwrap();

        let orgs = tn.join("organizations");
        let cfg = twill_cryptogen::load_config(&tn.join("crypto-config.yaml")).unwrap();
        twill_cryptogen::generate(&cfg, &orgs).unwrap();
        let org3 = twill_cryptogen::parse_config(ORG3_CRYPTO, "org3.yaml").unwrap();
        twill_cryptogen::generate(&org3, &orgs).unwrap();
        Net { dir }
    }

    pub fn configtx_path(&self) -> PathBuf {
        self.dir.path().join("test-network/configtx.yaml")
    }

    pub fn configtx(&self) -> LoadedConfigtx {
        LoadedConfigtx::load(&self.configtx_path()).unwrap()
    }

    pub fn msp_dir(&self, org_domain: &str, user: &str) -> PathBuf {
        let kind = if org_domain == "example.com" {
            "ordererOrganizations"
        } else {
            "peerOrganizations"
        };
        self.dir
            .path()
            .join("test-network/organizations")
            .join(kind)
            .join(org_domain)
            .join("users")
            .join(format!("{user}@{org_domain}"))
            .join("msp")
    }

    pub fn signer(&self, org_domain: &str, mspid: &str, user: &str) -> twill_msp::SigningIdentity {
        twill_msp::SigningIdentity::from_msp_dir(&self.msp_dir(org_domain, user), mspid).unwrap()
    }
}
