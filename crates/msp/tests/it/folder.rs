use crate::pki::{Ca, Leaf};
use crate::{identity, ORG1};
use std::fs;
use std::path::{Path, PathBuf};
use twill_msp::{
    fabric_msp_config_to_msp_config, load_fabric_msp_config, role_principal, Msp, MspError,
    MspManager, SigningIdentity,
};
use twill_protos::common::msp_role::MspRoleType;

const CA_FILE: &str = "ca.org1.example.com-cert.pem";

const NODE_OUS_YAML: &str = "\
NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: orderer
";

fn write(path: &Path, contents: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// A peer's `msp/` folder as cryptogen lays it out, plus a CRL and a decoy key.
struct Folder {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: Ca,
    peer: Leaf,
    revoked: Leaf,
}

fn peer_folder() -> Folder {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("msp");
    let root = Ca::root("ca.org1.example.com");
    let tls_root = Ca::root("tlsca.org1.example.com");
    let peer = root.leaf("peer0.org1.example.com", &["peer"]);
    let revoked = root.leaf("peer9.org1.example.com", &["peer"]);
    let decoy = root.leaf("decoy", &["client"]);

    write(&dir.join("cacerts").join(CA_FILE), root.pem().as_bytes());
    write(
        &dir.join("tlscacerts/tlsca.org1.example.com-cert.pem"),
        tls_root.pem().as_bytes(),
    );
    write(
        &dir.join("signcerts/peer0.org1.example.com-cert.pem"),
        peer.pem.as_bytes(),
    );
    // Sorted first, so the loader must pick the key by public key, not name.
    write(&dir.join("keystore/0000_sk"), decoy.key_pem().as_bytes());
    write(&dir.join("keystore/README"), b"not a key");
    write(&dir.join("keystore/priv_sk"), peer.key_pem().as_bytes());
    write(
        &dir.join("crls/crl.pem"),
        root.crl(&[revoked.serial]).as_bytes(),
    );
    write(&dir.join("config.yaml"), NODE_OUS_YAML.as_bytes());
    fs::create_dir_all(dir.join("admincerts")).unwrap();
    Folder {
        _tmp: tmp,
        dir,
        root,
        peer,
        revoked,
    }
}

#[test]
fn signing_identity_from_msp_dir() {
    let f = peer_folder();
    let signer = SigningIdentity::from_msp_dir(&f.dir, ORG1).unwrap();
    assert_eq!(signer.identity().cert_der(), f.peer.der.as_slice());
    assert_eq!(signer.identity().mspid(), ORG1);

    let sig = signer.sign(b"proposal bytes").unwrap();
    assert!(twill_crypto::is_low_s(&sig).unwrap());
    signer.identity().verify(b"proposal bytes", &sig).unwrap();

    // The receiving side: deserialize the creator, validate, verify.
    let msp = Msp::from_config(&load_fabric_msp_config(&f.dir, ORG1).unwrap()).unwrap();
    let manager = MspManager::new([msp]);
    let creator = manager.deserialize_identity(&signer.serialize()).unwrap();
    manager.validate(&creator).unwrap();
    creator.verify(b"proposal bytes", &sig).unwrap();
    assert!(creator.verify(b"other bytes", &sig).is_err());
    manager
        .satisfies_principal(&creator, &role_principal(ORG1, MspRoleType::Peer))
        .unwrap();
    assert!(format!("{signer:?}").contains("peer0.org1.example.com"));
    assert!(!format!("{signer:?}").contains("PRIVATE"));
}

#[test]
fn load_fabric_msp_config_reads_the_folder() {
    let f = peer_folder();
    let cfg = load_fabric_msp_config(&f.dir, ORG1).unwrap();
    assert_eq!(cfg.name, ORG1);
    assert_eq!(cfg.root_certs, vec![f.root.pem().into_bytes()]);
    assert!(cfg.intermediate_certs.is_empty());
    assert!(cfg.admins.is_empty());
    assert_eq!(cfg.tls_root_certs.len(), 1);
    assert_eq!(cfg.revocation_list.len(), 1);
    assert!(String::from_utf8_lossy(&cfg.revocation_list[0]).contains("BEGIN X509 CRL"));
    assert!(cfg.signing_identity.is_none());
    let crypto = cfg.crypto_config.as_ref().unwrap();
    assert_eq!(crypto.signature_hash_family, "SHA2");
    assert_eq!(crypto.identity_identifier_hash_function, "SHA256");

    let node_ous = cfg.fabric_node_ous.as_ref().unwrap();
    assert!(node_ous.enable);
    for (id, ou) in [
        (&node_ous.client_ou_identifier, "client"),
        (&node_ous.peer_ou_identifier, "peer"),
        (&node_ous.admin_ou_identifier, "admin"),
        (&node_ous.orderer_ou_identifier, "orderer"),
    ] {
        let id = id.as_ref().unwrap();
        assert_eq!(id.organizational_unit_identifier, ou);
        assert_eq!(id.certificate, f.root.pem().into_bytes());
    }

    // The MSP built from it enforces the CRL and the NodeOUs, also after a
    // trip through the channel-config encoding.
    let msp = Msp::from_msp_config(&fabric_msp_config_to_msp_config(&cfg)).unwrap();
    assert_eq!(msp.config(), &cfg);
    assert!(msp.node_ous_enabled());
    msp.validate(&identity(&f.peer)).unwrap();
    assert!(matches!(
        msp.validate(&identity(&f.revoked)),
        Err(MspError::Revoked { .. })
    ));
    assert!(matches!(
        msp.validate(&identity(&f.root.leaf("x", &["marketing"]))),
        Err(MspError::MissingNodeOu { .. })
    ));
}

#[test]
fn ou_identifiers_and_bundles_are_read() {
    let f = peer_folder();
    let ica = f.root.intermediate("ica.org1.example.com");
    // Two certificates in one file stay one entry, of which only the first
    // certificate counts (Fabric's getPemMaterialFromDir / getCertFromPem).
    let other_root = Ca::root("other");
    let bundle = format!("{}{}", f.root.pem(), other_root.pem());
    write(&f.dir.join("cacerts").join(CA_FILE), bundle.as_bytes());
    write(
        &f.dir.join("intermediatecerts/ica.pem"),
        ica.pem().as_bytes(),
    );
    write(&f.dir.join("intermediatecerts/notes.txt"), b"skipped");
    let admin = ica.leaf("Admin@org1.example.com", &["COP"]);
    write(
        &f.dir.join("admincerts/Admin@org1.example.com-cert.pem"),
        admin.pem.as_bytes(),
    );
    write(
        &f.dir.join("config.yaml"),
        b"OrganizationalUnitIdentifiers:\n  - Certificate: intermediatecerts/ica.pem\n    OrganizationalUnitIdentifier: COP\n",
    );
    let cfg = load_fabric_msp_config(&f.dir, ORG1).unwrap();
    assert_eq!(cfg.root_certs, vec![bundle.into_bytes()]);
    assert_eq!(cfg.intermediate_certs, vec![ica.pem().into_bytes()]);
    assert_eq!(cfg.admins, vec![admin.pem.clone().into_bytes()]);
    assert!(cfg.fabric_node_ous.is_none());
    assert_eq!(cfg.organizational_unit_identifiers.len(), 1);
    assert_eq!(
        cfg.organizational_unit_identifiers[0].organizational_unit_identifier,
        "COP"
    );
    let msp = Msp::from_config(&cfg).unwrap();
    msp.validate(&identity(&ica.leaf("u", &["COP"]))).unwrap();
    assert!(matches!(
        msp.validate(&identity(&other_root.leaf("u", &["COP"]))),
        Err(MspError::UntrustedChain { .. })
    ));
    assert!(matches!(
        msp.validate(&identity(&ica.leaf("u", &["other"]))),
        Err(MspError::OuNotRecognized { .. })
    ));
}

#[test]
fn cacerts_bundle_does_not_make_the_intermediate_a_root() {
    let f = peer_folder();
    let ica = f.root.intermediate("ica.org1.example.com");
    // cacerts/ holds root + intermediate in one file; intermediatecerts/ is empty.
    write(
        &f.dir.join("cacerts").join(CA_FILE),
        format!("{}{}", f.root.pem(), ica.pem()).as_bytes(),
    );
    let cfg = load_fabric_msp_config(&f.dir, ORG1).unwrap();
    assert_eq!(cfg.root_certs.len(), 1);
    assert!(cfg.intermediate_certs.is_empty());
    let msp = Msp::from_config(&cfg).unwrap();
    // The intermediate is unknown to the MSP, so its leaves do not chain.
    let under_ica = identity(&ica.leaf("peer1.org1.example.com", &["peer"]));
    assert!(matches!(
        msp.validate(&under_ica),
        Err(MspError::UntrustedChain { .. })
    ));
    assert!(msp
        .satisfies_principal(&under_ica, &role_principal(ORG1, MspRoleType::Member))
        .is_err());
    // The root still issues identities (it is not an internal CA either).
    msp.validate(&identity(&f.peer)).unwrap();

    // The same bundle given directly in the configuration behaves the same.
    let mut direct = cfg.clone();
    direct.root_certs = vec![format!("{}{}", f.root.pem(), ica.pem()).into_bytes()];
    let msp = Msp::from_config(&direct).unwrap();
    assert!(matches!(
        msp.validate(&under_ica),
        Err(MspError::UntrustedChain { .. })
    ));

    // A bundle in intermediate_certs counts for its first certificate only.
    let ica2 = f.root.intermediate("ica2.org1.example.com");
    let mut bundled = cfg.clone();
    bundled.intermediate_certs = vec![format!("{}{}", ica.pem(), ica2.pem()).into_bytes()];
    // The NodeOUs of the folder pin roles to the root's chain; use admincerts.
    bundled.fabric_node_ous = None;
    bundled.admins = vec![ica.leaf("Admin", &[]).pem.into_bytes()];
    let msp = Msp::from_config(&bundled).unwrap();
    msp.validate(&identity(&ica.leaf("p", &["peer"]))).unwrap();
    assert!(matches!(
        msp.validate(&identity(&ica2.leaf("p", &["peer"]))),
        Err(MspError::UntrustedChain { .. })
    ));

    // So does a CRL entry: only its first CRL revokes anything.
    let crls = |first: &[u64], second: &[u64]| {
        let mut c = cfg.clone();
        c.revocation_list =
            vec![format!("{}{}", f.root.crl(first), f.root.crl(second)).into_bytes()];
        Msp::from_config(&c).unwrap()
    };
    crls(&[], &[f.peer.serial])
        .validate(&identity(&f.peer))
        .unwrap();
    assert!(matches!(
        crls(&[f.peer.serial], &[]).validate(&identity(&f.peer)),
        Err(MspError::Revoked { .. })
    ));
}

#[test]
fn ou_identifier_without_certificate_is_rejected() {
    let f = peer_folder();
    write(
        &f.dir.join("config.yaml"),
        b"OrganizationalUnitIdentifiers:\n  - OrganizationalUnitIdentifier: COP\n",
    );
    assert!(matches!(
        load_fabric_msp_config(&f.dir, ORG1),
        Err(MspError::OuIdentifierWithoutCertificate { ref ou }) if ou == "COP"
    ));
}

#[test]
fn disabled_node_ous_are_not_loaded() {
    let f = peer_folder();
    write(
        &f.dir.join("config.yaml"),
        NODE_OUS_YAML
            .replace("Enable: true", "Enable: false")
            .as_bytes(),
    );
    let cfg = load_fabric_msp_config(&f.dir, ORG1).unwrap();
    assert!(cfg.fabric_node_ous.is_none());

    // Role entries with an empty OU are dropped.
    write(
        &f.dir.join("config.yaml"),
        b"NodeOUs:\n  Enable: true\n  ClientOUIdentifier:\n    OrganizationalUnitIdentifier: \"\"\n  AdminOUIdentifier:\n    OrganizationalUnitIdentifier: admin\n",
    );
    let cfg = load_fabric_msp_config(&f.dir, ORG1).unwrap();
    let node_ous = cfg.fabric_node_ous.unwrap();
    assert!(node_ous.client_ou_identifier.is_none());
    assert_eq!(
        node_ous
            .admin_ou_identifier
            .unwrap()
            .organizational_unit_identifier,
        "admin"
    );
}

#[test]
fn missing_folder_error_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope/msp");
    let err = load_fabric_msp_config(&missing, ORG1).unwrap_err();
    assert!(
        matches!(err, MspError::MissingPath { ref path } if path == &missing),
        "{err:?}"
    );
    assert!(err.to_string().contains(&missing.display().to_string()));
    assert!(matches!(
        SigningIdentity::from_msp_dir(&missing, ORG1),
        Err(MspError::MissingPath { .. })
    ));

    // A folder without cacerts/ names cacerts/.
    let empty = tmp.path().join("msp");
    fs::create_dir_all(&empty).unwrap();
    let err = load_fabric_msp_config(&empty, ORG1).unwrap_err();
    assert!(
        matches!(err, MspError::MissingPath { ref path } if path.ends_with("cacerts")),
        "{err:?}"
    );
    // An empty cacerts/ is no better.
    fs::create_dir_all(empty.join("cacerts")).unwrap();
    let err = load_fabric_msp_config(&empty, ORG1).unwrap_err();
    assert!(
        matches!(err, MspError::NoCertificateIn { ref path } if path.ends_with("cacerts")),
        "{err:?}"
    );
}

#[test]
fn config_yaml_with_missing_certificate_names_it() {
    let f = peer_folder();
    write(
        &f.dir.join("config.yaml"),
        b"NodeOUs:\n  Enable: true\n  PeerOUIdentifier:\n    Certificate: cacerts/gone.pem\n    OrganizationalUnitIdentifier: peer\n",
    );
    let err = load_fabric_msp_config(&f.dir, ORG1).unwrap_err();
    assert!(
        matches!(err, MspError::MissingPath { ref path } if path.ends_with("cacerts/gone.pem")),
        "{err:?}"
    );

    write(&f.dir.join("config.yaml"), b"NodeOUs: [unclosed");
    assert!(matches!(
        load_fabric_msp_config(&f.dir, ORG1),
        Err(MspError::InvalidConfigFile { .. })
    ));

    write(&f.dir.join("config.yaml"), b"# nothing configured\n");
    let cfg = load_fabric_msp_config(&f.dir, ORG1).unwrap();
    assert!(cfg.fabric_node_ous.is_none());
}

#[test]
fn keystore_without_matching_key() {
    let f = peer_folder();
    fs::remove_file(f.dir.join("keystore/priv_sk")).unwrap();
    let err = SigningIdentity::from_msp_dir(&f.dir, ORG1).unwrap_err();
    assert!(
        matches!(err, MspError::NoMatchingKey { ref path } if path.ends_with("keystore")),
        "{err:?}"
    );

    fs::remove_dir_all(f.dir.join("signcerts")).unwrap();
    fs::create_dir_all(f.dir.join("signcerts")).unwrap();
    assert!(matches!(
        SigningIdentity::from_msp_dir(&f.dir, ORG1),
        Err(MspError::NoCertificateIn { .. })
    ));
}
