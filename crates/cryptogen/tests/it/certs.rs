//! Certificate and key contents, checked the way an MSP would check them.

use std::net::IpAddr;
use std::path::Path;

use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

use crate::{common_name, generate_from, ous, read_pem, THREE_ORGS};

fn ski(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn aki(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    cert.basic_constraints()
        .unwrap()
        .map(|bc| bc.value.ca)
        .unwrap_or(false)
}

fn sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Some(ext) = cert.subject_alternative_name().unwrap() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
                        n => panic!("bad IP SAN length {n}"),
                    };
                    ips.push(ip);
                }
                other => panic!("unexpected SAN {other:?}"),
            }
        }
    }
    (dns, ips)
}

/// Checks that the key file is PKCS#8 PEM and holds the private half of
/// the certificate's public key.
fn assert_key_matches(key_path: &Path, cert: &X509Certificate<'_>) {
    let text = std::fs::read_to_string(key_path).unwrap();
    assert!(
        text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{}: not PKCS#8 PEM",
        key_path.display()
    );
    let pem = read_pem(key_path);
    assert_eq!(pem.label, "PRIVATE KEY");
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pem.contents, &rng)
        .unwrap_or_else(|e| panic!("{}: {e}", key_path.display()));
    use ring::signature::KeyPair;
    assert_eq!(
        key.public_key().as_ref(),
        cert.public_key().subject_public_key.data.as_ref(),
        "{}: key does not match certificate",
        key_path.display()
    );
}

/// P-256 group order over two, big-endian.
const HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

fn assert_low_s(cert: &X509Certificate<'_>) {
    let sig = cert.signature_value.data.as_ref();
    // SEQUENCE { INTEGER r, INTEGER s }, short-form lengths for P-256.
    assert_eq!(sig[0], 0x30);
    let r_len = usize::from(sig[3]);
    let s_start = 4 + r_len;
    assert_eq!(sig[s_start], 0x02);
    let s = &sig[s_start + 2..];
    let s = &s[s.iter().position(|&b| b != 0).unwrap_or(s.len())..];
    let mut padded = [0u8; 32];
    padded[32 - s.len()..].copy_from_slice(s);
    assert!(
        padded <= HALF_N,
        "high-S signature on {}",
        common_name(cert)
    );
}

struct Org<'a> {
    root: &'a Path,
    domain: &'a str,
}

impl Org<'_> {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.root.join(rel)
    }
}

/// Checks one org's CAs and every identity in it.
fn check_org(org: &Org<'_>, nodes_dir: &str, nodes: &[(&str, bool)], users: &[&str]) {
    let domain = org.domain;
    let ca_pem = read_pem(&org.path(&format!("ca/ca.{domain}-cert.pem")));
    let ca = ca_pem.parse_x509().unwrap();
    let tlsca_pem = read_pem(&org.path(&format!("tlsca/tlsca.{domain}-cert.pem")));
    let tlsca = tlsca_pem.parse_x509().unwrap();

    for (cert, cn, key) in [
        (&ca, format!("ca.{domain}"), "ca/priv_sk"),
        (&tlsca, format!("tlsca.{domain}"), "tlsca/priv_sk"),
    ] {
        assert_eq!(cert.version(), X509Version::V3);
        assert_eq!(common_name(cert), cn);
        let org_names: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(org_names, [domain]);
        let country: Vec<_> = cert
            .subject()
            .iter_country()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(country, ["US"]);
        let st: Vec<_> = cert
            .subject()
            .iter_state_or_province()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(st, ["California"]);
        let l: Vec<_> = cert
            .subject()
            .iter_locality()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(l, ["San Francisco"]);
        assert_eq!(cert.subject(), cert.issuer());
        assert!(is_ca(cert), "{cn} must be a CA");
        let ku = cert.key_usage().unwrap().expect("key usage").value;
        assert!(
            ku.digital_signature() && ku.key_encipherment() && ku.key_cert_sign() && ku.crl_sign()
        );
        let eku = cert.extended_key_usage().unwrap().expect("eku").value;
        assert!(eku.client_auth && eku.server_auth);
        assert_eq!(ski(cert).map(|s| s.len()), Some(32), "{cn}: SHA-256 SKI");
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
        cert.verify_signature(None)
            .expect("self-signed CA verifies");
        assert_low_s(cert);
        assert_key_matches(&org.path(key), cert);

        // Ten years (3650 days) from five minutes ago.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        assert!(
            (now - 301 - 60..=now - 299 + 60).contains(&not_before),
            "{not_before} vs {now}"
        );
        assert_eq!(not_after - not_before, 3650 * 24 * 3600);
    }
    assert_ne!(ski(&ca), ski(&tlsca));

    let identities = nodes
        .iter()
        .map(|(host, _)| {
            (
                format!("{nodes_dir}/{host}.{domain}"),
                format!("{host}.{domain}"),
                "server",
            )
        })
        .chain(users.iter().map(|u| {
            (
                format!("users/{u}@{domain}"),
                format!("{u}@{domain}"),
                "client",
            )
        }));
    for (base, cn, side) in identities {
        let sign_path = org.path(&format!("{base}/msp/signcerts/{cn}-cert.pem"));
        let sign_pem = read_pem(&sign_path);
        let sign = sign_pem.parse_x509().unwrap();
        assert_eq!(common_name(&sign), cn);
        assert_eq!(sign.issuer(), ca.subject());
        sign.verify_signature(Some(ca.public_key()))
            .unwrap_or_else(|e| panic!("{cn}: signcert does not chain to the CA: {e:?}"));
        assert!(sign.verify_signature(Some(tlsca.public_key())).is_err());
        assert_low_s(&sign);
        assert!(!is_ca(&sign), "{cn}");
        assert!(
            sign.basic_constraints().unwrap().is_some(),
            "{cn}: explicit CA:false"
        );
        let ku = sign.key_usage().unwrap().expect("key usage").value;
        assert_eq!(ku.flags, 1, "{cn}: digitalSignature only");
        assert_eq!(aki(&sign), ski(&ca), "{cn}: AKI is the CA's SKI");
        assert_eq!(
            sign.subject().iter_organization().count(),
            0,
            "{cn}: no O on leaves"
        );
        assert_key_matches(&org.path(&format!("{base}/msp/keystore/priv_sk")), &sign);

        // The MSP's CA copies are the CA certificates themselves.
        assert_eq!(
            std::fs::read(org.path(&format!("{base}/msp/cacerts/ca.{domain}-cert.pem"))).unwrap(),
            std::fs::read(org.path(&format!("ca/ca.{domain}-cert.pem"))).unwrap()
        );
        assert_eq!(
            std::fs::read(org.path(&format!("{base}/msp/tlscacerts/tlsca.{domain}-cert.pem")))
                .unwrap(),
            std::fs::read(org.path(&format!("tlsca/tlsca.{domain}-cert.pem"))).unwrap()
        );
        assert_eq!(
            std::fs::read(org.path(&format!("{base}/tls/ca.crt"))).unwrap(),
            std::fs::read(org.path(&format!("tlsca/tlsca.{domain}-cert.pem"))).unwrap()
        );

        let tls_pem = read_pem(&org.path(&format!("{base}/tls/{side}.crt")));
        let tls = tls_pem.parse_x509().unwrap();
        assert_eq!(common_name(&tls), cn);
        tls.verify_signature(Some(tlsca.public_key()))
            .unwrap_or_else(|e| panic!("{cn}: TLS cert does not chain to the TLS CA: {e:?}"));
        assert_low_s(&tls);
        assert!(!is_ca(&tls));
        let ku = tls.key_usage().unwrap().expect("key usage").value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let eku = tls.extended_key_usage().unwrap().expect("eku").value;
        assert!(eku.server_auth && eku.client_auth);
        assert_eq!(aki(&tls), ski(&tlsca));
        assert!(ous(&tls).is_empty(), "{cn}: TLS certs carry no role OU");
        assert_key_matches(&org.path(&format!("{base}/tls/{side}.key")), &tls);
        assert_ne!(
            std::fs::read(org.path(&format!("{base}/tls/{side}.key"))).unwrap(),
            std::fs::read(org.path(&format!("{base}/msp/keystore/priv_sk"))).unwrap(),
            "{cn}: TLS and signing keys differ"
        );
    }

    for (host, with_local_sans) in nodes {
        let cn = format!("{host}.{domain}");
        let tls_pem = read_pem(&org.path(&format!("{nodes_dir}/{cn}/tls/server.crt")));
        let tls = tls_pem.parse_x509().unwrap();
        let (dns, ips) = sans(&tls);
        assert!(dns.contains(&cn), "{cn}: {dns:?}");
        assert!(dns.contains(&host.to_string()), "{cn}: {dns:?}");
        if *with_local_sans {
            assert!(dns.contains(&"localhost".to_string()), "{cn}: {dns:?}");
            assert_eq!(ips, ["127.0.0.1".parse::<IpAddr>().unwrap()], "{cn}");
        } else {
            assert_eq!(dns, [cn.clone(), host.to_string()]);
            assert!(ips.is_empty());
        }
    }
}

fn signcert_ous(root: &Path, rel: &str) -> Vec<String> {
    let pem = read_pem(&root.join(rel));
    let cert = pem.parse_x509().unwrap();
    ous(&cert)
}

#[test]
fn certificates_chain_and_carry_fabric_extensions() {
    let (dir, _) = generate_from(THREE_ORGS);
    let out = dir.path();
    check_org(
        &Org {
            root: &out.join("ordererOrganizations/example.com"),
            domain: "example.com",
        },
        "orderers",
        &[("orderer0", true), ("orderer1", true), ("orderer2", true)],
        &["Admin"],
    );
    check_org(
        &Org {
            root: &out.join("peerOrganizations/org1.example.com"),
            domain: "org1.example.com",
        },
        "peers",
        &[("peer0", true)],
        &["Admin", "User1"],
    );
    check_org(
        &Org {
            root: &out.join("peerOrganizations/org2.example.com"),
            domain: "org2.example.com",
        },
        "peers",
        &[("peer0", false)],
        &["Admin", "User1"],
    );
}

#[test]
fn signing_certs_carry_node_ou_roles() {
    let (dir, _) = generate_from(THREE_ORGS);
    let out = dir.path();
    let cases = [
        (
            "ordererOrganizations/example.com/orderers/orderer1.example.com/msp/signcerts/orderer1.example.com-cert.pem",
            "orderer",
        ),
        (
            "ordererOrganizations/example.com/users/Admin@example.com/msp/signcerts/Admin@example.com-cert.pem",
            "admin",
        ),
        (
            "peerOrganizations/org1.example.com/peers/peer0.org1.example.com/msp/signcerts/peer0.org1.example.com-cert.pem",
            "peer",
        ),
        (
            "peerOrganizations/org1.example.com/users/Admin@org1.example.com/msp/signcerts/Admin@org1.example.com-cert.pem",
            "admin",
        ),
        (
            "peerOrganizations/org2.example.com/users/User1@org2.example.com/msp/signcerts/User1@org2.example.com-cert.pem",
            "client",
        ),
    ];
    for (rel, role) in cases {
        assert_eq!(signcert_ous(out, rel), [role], "{rel}");
    }
}

#[test]
fn no_role_ous_without_node_ous() {
    let yaml = "PeerOrgs:\n  - Domain: org1.example.com\n    Template: {Count: 1}\n";
    let (dir, _) = generate_from(yaml);
    let org = dir.path().join("peerOrganizations/org1.example.com");
    assert!(signcert_ous(
        &org,
        "peers/peer0.org1.example.com/msp/signcerts/peer0.org1.example.com-cert.pem"
    )
    .is_empty());
    assert!(signcert_ous(
        &org,
        "users/Admin@org1.example.com/msp/signcerts/Admin@org1.example.com-cert.pem"
    )
    .is_empty());
}

#[test]
fn ca_subject_fields_and_extra_ou_are_honoured() {
    let yaml = r#"
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    EnableNodeOUs: true
    CA:
      Hostname: rootca
      Country: NL
      Province: Noord-Holland
      Locality: Amsterdam
      OrganizationalUnit: Research
      StreetAddress: Damrak 1
      PostalCode: "1012"
    Specs:
      - Hostname: alpha
        CommonName: "{{.Hostname}}-node.{{.Domain}}"
        SANS: ["{{.CommonName}}.alt", "::1"]
"#;
    let (dir, _) = generate_from(yaml);
    let org = dir.path().join("peerOrganizations/org1.example.com");
    let ca_pem = read_pem(&org.join("ca/rootca.org1.example.com-cert.pem"));
    let ca = ca_pem.parse_x509().unwrap();
    assert_eq!(common_name(&ca), "rootca.org1.example.com");
    assert_eq!(ous(&ca), ["Research"]);
    let subject = ca.subject().to_string();
    for part in [
        "C=NL",
        "ST=Noord-Holland",
        "L=Amsterdam",
        "O=org1.example.com",
    ] {
        assert!(subject.contains(part), "{subject}");
    }
    assert!(org
        .join("tlsca/tlsrootca.org1.example.com-cert.pem")
        .is_file());
    let config = std::fs::read_to_string(org.join("msp/config.yaml")).unwrap();
    assert!(config.contains("Certificate: cacerts/rootca.org1.example.com-cert.pem"));

    let base = org.join("peers/alpha-node.org1.example.com");
    let sign_pem = read_pem(&base.join("msp/signcerts/alpha-node.org1.example.com-cert.pem"));
    let sign = sign_pem.parse_x509().unwrap();
    assert_eq!(ous(&sign), ["Research", "peer"]);
    sign.verify_signature(Some(ca.public_key())).unwrap();
    let tls_pem = read_pem(&base.join("tls/server.crt"));
    let tls = tls_pem.parse_x509().unwrap();
    let (dns, ips) = sans(&tls);
    assert_eq!(
        dns,
        [
            "alpha-node.org1.example.com",
            "alpha",
            "alpha-node.org1.example.com.alt"
        ]
    );
    assert_eq!(ips, ["::1".parse::<IpAddr>().unwrap()]);
}
