//! The project's own test-network config loads and generates.

use std::path::PathBuf;

use twill_cryptogen::OrgKind;
use x509_parser::extensions::GeneralName;

fn test_network_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../network-configs/test-network/crypto-config.yaml")
}

#[test]
fn test_network_crypto_config_generates() {
    let config = twill_cryptogen::load_config(&test_network_config()).expect("loads");
    assert_eq!(config.orderer_orgs.len(), 1);
    assert_eq!(config.peer_orgs.len(), 2);
    assert!(config
        .orderer_orgs
        .iter()
        .chain(&config.peer_orgs)
        .all(|org| org.enable_node_ous));

    let dir = tempfile::tempdir().unwrap();
    let report = twill_cryptogen::generate(&config, dir.path()).expect("generates");
    let summary: Vec<_> = report
        .orgs
        .iter()
        .map(|o| (o.kind, o.domain.as_str(), o.nodes.clone(), o.users.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                OrgKind::Orderer,
                "example.com",
                vec![
                    "orderer0.example.com".to_string(),
                    "orderer1.example.com".to_string(),
                    "orderer2.example.com".to_string()
                ],
                vec!["Admin@example.com".to_string()]
            ),
            (
                OrgKind::Peer,
                "org1.example.com",
                vec!["peer0.org1.example.com".to_string()],
                vec![
                    "Admin@org1.example.com".to_string(),
                    "User1@org1.example.com".to_string()
                ]
            ),
            (
                OrgKind::Peer,
                "org2.example.com",
                vec!["peer0.org2.example.com".to_string()],
                vec![
                    "Admin@org2.example.com".to_string(),
                    "User1@org2.example.com".to_string()
                ]
            ),
        ]
    );

    let out = dir.path();
    for path in [
        "ordererOrganizations/example.com/orderers/orderer2.example.com/tls/server.crt",
        "ordererOrganizations/example.com/msp/config.yaml",
        "peerOrganizations/org1.example.com/peers/peer0.org1.example.com/msp/keystore/priv_sk",
        "peerOrganizations/org2.example.com/users/User1@org2.example.com/tls/client.key",
    ] {
        assert!(out.join(path).is_file(), "{path}");
    }
    // Every node's TLS certificate is usable on this machine.
    let pem = crate::read_pem(
        &out.join("peerOrganizations/org2.example.com/peers/peer0.org2.example.com/tls/server.crt"),
    );
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names = &san.value.general_names;
    assert!(
        names.contains(&GeneralName::DNSName("localhost")),
        "{names:?}"
    );
    assert!(
        names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])),
        "{names:?}"
    );
}
