//! Integration tests of twill-msp against a PKI generated with rcgen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod folder;
mod identity;
mod manager;
mod pki;
mod principals;
mod setup;
mod time;
mod validation;

use pki::{Ca, Leaf};
use twill_msp::{Identity, Msp};
use twill_protos::msp::{FabricCryptoConfig, FabricMspConfig, FabricNodeOUs, FabricOuIdentifier};

pub const ORG1: &str = "Org1MSP";

/// NodeOU identifiers client/peer/admin/orderer, each pinned to `cert_pem`
/// when given.
pub fn node_ous(cert_pem: Option<&str>) -> FabricNodeOUs {
    let id = |ou: &str| {
        Some(FabricOuIdentifier {
            certificate: cert_pem.map(|c| c.as_bytes().to_vec()).unwrap_or_default(),
            organizational_unit_identifier: ou.to_owned(),
        })
    };
    FabricNodeOUs {
        enable: true,
        client_ou_identifier: id("client"),
        peer_ou_identifier: id("peer"),
        admin_ou_identifier: id("admin"),
        orderer_ou_identifier: id("orderer"),
    }
}

/// A config builder with sensible defaults.
pub struct Config {
    pub cfg: FabricMspConfig,
}

impl Config {
    pub fn new(name: &str, root: &Ca) -> Config {
        Config {
            cfg: FabricMspConfig {
                name: name.to_owned(),
                root_certs: vec![root.pem().into_bytes()],
                crypto_config: Some(FabricCryptoConfig {
                    signature_hash_family: "SHA2".into(),
                    identity_identifier_hash_function: "SHA256".into(),
                }),
                ..Default::default()
            },
        }
    }

    pub fn intermediate(mut self, ca: &Ca) -> Self {
        self.cfg.intermediate_certs.push(ca.pem().into_bytes());
        self
    }

    pub fn node_ous(mut self, cert_pem: Option<&str>) -> Self {
        self.cfg.fabric_node_ous = Some(node_ous(cert_pem));
        self
    }

    pub fn crl(mut self, crl_pem: String) -> Self {
        self.cfg.revocation_list.push(crl_pem.into_bytes());
        self
    }

    pub fn admin(mut self, leaf: &Leaf) -> Self {
        self.cfg.admins.push(leaf.pem.clone().into_bytes());
        self
    }

    pub fn build(self) -> Msp {
        Msp::from_config(&self.cfg).unwrap()
    }
}

/// The usual test organisation: one root, NodeOUs on, one leaf per role.
pub struct Org {
    pub root: Ca,
    pub peer: Leaf,
    pub admin: Leaf,
    pub client: Leaf,
    pub orderer: Leaf,
}

impl Org {
    pub fn generate() -> Org {
        let root = Ca::root("ca.org1.example.com");
        Org {
            peer: root.leaf("peer0.org1.example.com", &["peer"]),
            admin: root.leaf("Admin@org1.example.com", &["admin"]),
            client: root.leaf("User1@org1.example.com", &["client"]),
            orderer: root.leaf("orderer.org1.example.com", &["orderer"]),
            root,
        }
    }

    pub fn msp(&self) -> Msp {
        Config::new(ORG1, &self.root).node_ous(None).build()
    }
}

pub fn identity(leaf: &Leaf) -> Identity {
    Identity::from_pem(ORG1, leaf.pem.as_bytes()).unwrap()
}
