//! Test organisations: an rcgen root CA per MSP, NodeOU-classified leaves,
//! and signatures made with the leaves' keys.

use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::sync::Arc;
use twill_crypto::SigningKey;
use twill_msp::{Msp, MspManager};
use twill_policy::SignedData;
use twill_protos::msp::{FabricMspConfig, FabricNodeOUs, FabricOuIdentifier, SerializedIdentity};

/// One organisation: its CA and MSP configuration with NodeOUs on.
pub struct Org {
    pub mspid: String,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub config: FabricMspConfig,
}

/// A leaf identity with its signing key.
pub struct Signer {
    pub mspid: String,
    pub cert_pem: String,
    key: SigningKey,
}

fn dn(org: &str, cn: &str, ou: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    if let Some(ou) = ou {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn node_ou(ou: &str) -> Option<FabricOuIdentifier> {
    Some(FabricOuIdentifier {
        certificate: Vec::new(),
        organizational_unit_identifier: ou.to_owned(),
    })
}

impl Org {
    pub fn new(mspid: &str) -> Org {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(mspid, &format!("ca.{mspid}"), None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        let config = FabricMspConfig {
            name: mspid.to_owned(),
            root_certs: vec![ca.pem().into_bytes()],
            fabric_node_ous: Some(FabricNodeOUs {
                enable: true,
                client_ou_identifier: node_ou("client"),
                peer_ou_identifier: node_ou("peer"),
                admin_ou_identifier: node_ou("admin"),
                orderer_ou_identifier: node_ou("orderer"),
            }),
            ..FabricMspConfig::default()
        };
        Org {
            mspid: mspid.to_owned(),
            ca,
            config,
        }
    }

    pub fn msp(&self) -> Msp {
        Msp::from_config(&self.config).expect("msp")
    }

    /// A leaf with NodeOU `ou` (`peer`, `admin`, `client` or `orderer`).
    pub fn signer(&self, cn: &str, ou: &str) -> Signer {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&self.mspid, cn, Some(ou));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf cert");
        Signer {
            mspid: self.mspid.clone(),
            cert_pem: cert.pem(),
            key: SigningKey::from_pkcs8_der(&key.serialize_der()).expect("signing key"),
        }
    }

    pub fn peer(&self) -> Signer {
        self.signer(&format!("peer0.{}", self.mspid), "peer")
    }

    pub fn admin(&self) -> Signer {
        self.signer(&format!("Admin@{}", self.mspid), "admin")
    }

    pub fn client(&self) -> Signer {
        self.signer(&format!("User1@{}", self.mspid), "client")
    }
}

impl Signer {
    pub fn serialized(&self) -> Vec<u8> {
        SerializedIdentity {
            mspid: self.mspid.clone(),
            id_bytes: self.cert_pem.clone().into_bytes(),
        }
        .encode_to_vec()
    }

    /// A good signature by this signer over `data`.
    pub fn sign(&self, data: &[u8]) -> SignedData {
        SignedData {
            data: data.to_vec(),
            identity: self.serialized(),
            signature: self.key.sign(data).expect("sign"),
        }
    }
}

/// The MSP manager of a channel with these organisations.
pub fn msps(orgs: &[&Org]) -> Arc<MspManager> {
    Arc::new(MspManager::new(orgs.iter().map(|o| o.msp())))
}

/// Everyone signs `data`.
pub fn sign_all(data: &[u8], signers: &[&Signer]) -> Vec<SignedData> {
    signers.iter().map(|s| s.sign(data)).collect()
}
