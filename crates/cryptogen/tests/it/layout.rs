//! The directory tree and file-level properties of generated material.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use twill_cryptogen::OrgKind;

use crate::{files_under, generate_from, THREE_ORGS};

/// Files every local MSP (node or user) holds, relative to its base dir.
fn local_msp_files(domain: &str, cn: &str, tls_side: &str, node_ous: bool) -> Vec<String> {
    let mut files = vec![
        format!("msp/cacerts/ca.{domain}-cert.pem"),
        format!("msp/tlscacerts/tlsca.{domain}-cert.pem"),
        "msp/keystore/priv_sk".to_string(),
        format!("msp/signcerts/{cn}-cert.pem"),
        "tls/ca.crt".to_string(),
        format!("tls/{tls_side}.crt"),
        format!("tls/{tls_side}.key"),
    ];
    if node_ous {
        files.push("msp/config.yaml".to_string());
    }
    files
}

fn expected_org_files(
    domain: &str,
    nodes_dir: &str,
    nodes: &[&str],
    users: &[&str],
    node_ous: bool,
) -> BTreeSet<String> {
    let mut files: BTreeSet<String> = [
        format!("ca/ca.{domain}-cert.pem"),
        "ca/priv_sk".to_string(),
        format!("tlsca/tlsca.{domain}-cert.pem"),
        "tlsca/priv_sk".to_string(),
        format!("msp/cacerts/ca.{domain}-cert.pem"),
        format!("msp/tlscacerts/tlsca.{domain}-cert.pem"),
    ]
    .into_iter()
    .collect();
    if node_ous {
        files.insert("msp/config.yaml".to_string());
    } else {
        files.insert(format!("msp/admincerts/Admin@{domain}-cert.pem"));
    }
    for node in nodes {
        let cn = format!("{node}.{domain}");
        for f in local_msp_files(domain, &cn, "server", node_ous) {
            files.insert(format!("{nodes_dir}/{cn}/{f}"));
        }
        if !node_ous {
            files.insert(format!(
                "{nodes_dir}/{cn}/msp/admincerts/Admin@{domain}-cert.pem"
            ));
        }
    }
    for user in users {
        let cn = format!("{user}@{domain}");
        for f in local_msp_files(domain, &cn, "client", node_ous) {
            files.insert(format!("users/{cn}/{f}"));
        }
        if !node_ous {
            files.insert(format!("users/{cn}/msp/admincerts/{cn}-cert.pem"));
        }
    }
    files
}

fn relative_files(root: &Path) -> BTreeSet<String> {
    files_under(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn writes_exactly_fabrics_layout() {
    let (dir, report) = generate_from(THREE_ORGS);
    let out = dir.path();

    let orderer = out.join("ordererOrganizations/example.com");
    assert_eq!(
        relative_files(&orderer),
        expected_org_files(
            "example.com",
            "orderers",
            &["orderer0", "orderer1", "orderer2"],
            &["Admin"],
            true
        )
    );
    for domain in ["org1.example.com", "org2.example.com"] {
        let org = out.join("peerOrganizations").join(domain);
        assert_eq!(
            relative_files(&org),
            expected_org_files(domain, "peers", &["peer0"], &["Admin", "User1"], true),
            "{domain}"
        );
    }
    // Nothing else at the top level (no scratch directories left behind).
    let mut top: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["ordererOrganizations", "peerOrganizations"]);
    let peer_orgs: BTreeSet<_> = std::fs::read_dir(out.join("peerOrganizations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        peer_orgs,
        BTreeSet::from([
            "org1.example.com".to_string(),
            "org2.example.com".to_string()
        ])
    );

    // The report lists the orgs, their identities and exactly the files on disk.
    assert_eq!(report.output, out);
    let summary: Vec<_> = report
        .orgs
        .iter()
        .map(|o| (o.kind, o.name.as_str(), o.domain.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (OrgKind::Orderer, "Orderer", "example.com"),
            (OrgKind::Peer, "Org1", "org1.example.com"),
            (OrgKind::Peer, "Org2", "org2.example.com"),
        ]
    );
    assert_eq!(
        report.orgs[0].nodes,
        [
            "orderer0.example.com",
            "orderer1.example.com",
            "orderer2.example.com"
        ]
    );
    assert_eq!(report.orgs[0].users, ["Admin@example.com"]);
    assert_eq!(report.orgs[1].nodes, ["peer0.org1.example.com"]);
    assert_eq!(
        report.orgs[1].users,
        ["Admin@org1.example.com", "User1@org1.example.com"]
    );
    assert_eq!(
        report.orgs[1].dir,
        out.join("peerOrganizations/org1.example.com")
    );
    let reported: BTreeSet<PathBuf> = report.files().map(Path::to_path_buf).collect();
    let on_disk: BTreeSet<PathBuf> = files_under(out).into_iter().collect();
    assert_eq!(reported, on_disk);
}

#[test]
fn node_ous_config_yaml_is_fabric_format() {
    let (dir, _) = generate_from(THREE_ORGS);
    let org = dir.path().join("peerOrganizations/org1.example.com");
    let expected = "\
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
    for msp in [
        "msp",
        "peers/peer0.org1.example.com/msp",
        "users/Admin@org1.example.com/msp",
        "users/User1@org1.example.com/msp",
    ] {
        let text = std::fs::read_to_string(org.join(msp).join("config.yaml")).unwrap();
        assert_eq!(text, expected, "{msp}");
        // Every referenced certificate exists relative to the MSP dir.
        assert!(org
            .join(msp)
            .join("cacerts/ca.org1.example.com-cert.pem")
            .is_file());
    }
}

#[test]
fn without_node_ous_admins_are_listed_in_admincerts() {
    let yaml = "PeerOrgs:\n  - Name: Org1\n    Domain: org1.example.com\n    Template: {Count: 1}\n    Users: {Count: 1}\n";
    let (dir, _) = generate_from(yaml);
    let org = dir.path().join("peerOrganizations/org1.example.com");
    assert_eq!(
        relative_files(&org),
        expected_org_files(
            "org1.example.com",
            "peers",
            &["peer0"],
            &["Admin", "User1"],
            false
        )
    );
    let admin = std::fs::read(
        org.join("users/Admin@org1.example.com/msp/signcerts/Admin@org1.example.com-cert.pem"),
    )
    .unwrap();
    for copy in [
        "msp/admincerts/Admin@org1.example.com-cert.pem",
        "peers/peer0.org1.example.com/msp/admincerts/Admin@org1.example.com-cert.pem",
        "users/Admin@org1.example.com/msp/admincerts/Admin@org1.example.com-cert.pem",
    ] {
        assert_eq!(std::fs::read(org.join(copy)).unwrap(), admin, "{copy}");
    }
    // A plain user's MSP lists the user itself, as Fabric's tool does.
    let user = std::fs::read(
        org.join("users/User1@org1.example.com/msp/signcerts/User1@org1.example.com-cert.pem"),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(
            org.join("users/User1@org1.example.com/msp/admincerts/User1@org1.example.com-cert.pem")
        )
        .unwrap(),
        user
    );
}

#[cfg(unix)]
#[test]
fn private_keys_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, report) = generate_from(THREE_ORGS);
    let mut keys = 0;
    for path in report.files() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        if name == "priv_sk" || name.ends_with(".key") {
            keys += 1;
            assert_eq!(mode, 0o600, "{}", path.display());
        } else {
            assert_eq!(mode, 0o644, "{}", path.display());
        }
    }
    // 3 orgs x 2 CAs, 5 nodes and 5 users with two keys each.
    assert_eq!(keys, 6 + 2 * 5 + 2 * 5);
}

#[test]
fn rerun_regenerates_cleanly() {
    let (dir, _) = generate_from(THREE_ORGS);
    let out = dir.path();
    let org1 = out.join("peerOrganizations/org1.example.com");
    let key_path = org1.join("ca/priv_sk");
    let old_key = std::fs::read(&key_path).unwrap();
    let stale = org1.join("peers/peer9.org1.example.com/msp/keystore/priv_sk");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, "stale").unwrap();
    // An organisation the config does not mention must survive.
    let other = out.join("peerOrganizations/other.example.com/keep.txt");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, "keep").unwrap();
    // Leftovers of an interrupted run are cleared.
    let scratch = out.join("peerOrganizations/.org1.example.com.partial");
    std::fs::create_dir_all(&scratch).unwrap();

    let config = twill_cryptogen::parse_config(THREE_ORGS, "test.yaml").unwrap();
    twill_cryptogen::generate(&config, out).unwrap();

    assert_ne!(std::fs::read(&key_path).unwrap(), old_key);
    assert!(!stale.exists());
    assert!(!org1.join("peers/peer9.org1.example.com").exists());
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep");
    assert!(!scratch.exists());
}

#[test]
fn generate_validates_hand_built_configs() {
    let config = twill_cryptogen::CryptoConfig {
        peer_orgs: vec![twill_cryptogen::OrgSpec {
            name: "Org1".into(),
            domain: "../escape".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = twill_cryptogen::generate(&config, dir.path()).unwrap_err();
    assert!(err.to_string().contains("PeerOrgs[0].Domain"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
