//! Revocation end to end: `twill network up --ca` starts a twill-ca per
//! org signing with the org's CA key pair and enrolls the nodes', Admins'
//! and User1s' signing identities through them (checked against the CAs'
//! certificate lists); a user registered and enrolled
//! through Org1's CA submits CreateAsset (VALID); the CA revokes it and its
//! CRL goes into Org1MSP in the channel config (`twill channel add-crl`);
//! then the endorsers refuse that user's next transaction as revoked, while
//! Org1's User1 still transacts.
//!
//! Needs `twill-peer`, `twill-orderer`, `twill-ca` and `asset-transfer`
//! next to `twill`: `cargo build -p twill-cli -p twill-peer -p twill-orderer
//! -p twill-ca -p asset-transfer`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::network::{network, text, Down};
use crate::orderer_e2e::ONE_NETWORK_AT_A_TIME;

/// Runs `twill <args>`, killed after `timeout`.
fn twill_within(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twill"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run twill");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait for twill").is_some() {
            return child.wait_with_output().expect("twill output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("twill output");
            panic!(
                "twill {args:?} did not finish within {} s: {}",
                timeout.as_secs(),
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(300);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The address of node `name` in network.json.
fn address_of(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join("network.json")).expect("network.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("network.json is JSON");
    json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["address"].as_str())
        .unwrap_or_else(|| panic!("{name} not in network.json: {json}"))
        .to_string()
}

/// Submits CreateAsset `id` as the identity in `msp` through the gateway
/// peer named by the connection `profile`; `Err` is the error text.
fn gateway_create(profile: &Path, msp: &Path, id: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gateway = twill_client::Gateway::from_profile(profile, msp)
            .await
            .map_err(|e| e.to_string())?;
        gateway
            .network("mychannel")
            .contract("basic")
            .submit("CreateAsset", &[id, "red", "3", "Ann", "10"])
            .await
            .map(drop)
            .map_err(|e| format!("{e} ({:?})", e.code()))
    })
}

/// The serial (lowercase hex) and subject of the certificate in `path`.
fn serial_and_subject(path: &Path) -> (String, String) {
    use x509_parser::prelude::FromDer;
    let pem = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let blocks = twill_crypto::pem::parse_pem_blocks(&pem).expect("PEM");
    let der = &blocks.first().expect("a PEM block").1;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).expect("X.509");
    (hex::encode(cert.raw_serial()), cert.subject().to_string())
}

/// Asserts that the signing certificate of msp folder `msp` is the only
/// one there and is in the certificate list of the CA at `ca_url` (as
/// enrollment `id`, with `OU=<ou>` first), as its registrar `ca_admin` sees it.
fn assert_issued_by_ca(ca_url: &str, ca: &[&str], ca_admin: &Path, id: &str, ou: &str, msp: &Path) {
    let signcerts: Vec<_> = std::fs::read_dir(msp.join("signcerts"))
        .expect("signcerts")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(signcerts, ["cert.pem"], "{}", msp.display());
    let (serial, subject) = serial_and_subject(&msp.join("signcerts/cert.pem"));
    assert_eq!(subject, format!("OU={ou}, CN={id}"), "{}", msp.display());
    for f in ["config.yaml", "cacerts"] {
        assert!(msp.join(f).exists(), "{}: no {f}", msp.display());
    }
    let mut args = vec!["ca", "certificate", "list", "-u", ca_url];
    args.extend(ca);
    args.extend(["--mspdir", s(ca_admin), "--id", id]);
    let out = twill_within(&args, CALL_TIMEOUT);
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!("Serial: {serial}, Subject: {subject},")),
        "{id} ({serial}) not issued by {ca_url}: {listed}"
    );
}

#[test]
fn a_revoked_user_is_refused_after_the_crl_config_update() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let _down = Down { dir: dir.clone() };

    let up = network(&["up", "--ca"], &dir, Duration::from_secs(900));
    assert!(up.status.success(), "{}", text(&up));
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();

    // The CA of each org: its URL and TLS certificate in the org folder and
    // in the connection profile.
    let orgs = dir.join("organizations/peerOrganizations");
    let org1 = orgs.join("org1.example.com");
    let ca_addr = address_of(&dir, "ca.org1.example.com");
    let ca_url = format!("https://{ca_addr}");
    assert!(stdout.contains(&ca_url), "{}", text(&up));
    let url_file = std::fs::read_to_string(org1.join("ca/ca-url.txt")).expect("ca/ca-url.txt");
    assert_eq!(url_file.trim(), ca_url);
    for f in [
        org1.join("ca/tls-cert.pem"),
        dir.join("organizations/fabric-ca/org1/tls-cert.pem"),
        orgs.join("org2.example.com/ca/tls-cert.pem"),
        org1.join("users/appuser1@org1.example.com/msp/signcerts/cert.pem"),
        org1.join("users/caadmin@org1.example.com/msp/signcerts/cert.pem"),
    ] {
        let pem = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    }
    let profile: serde_json::Value = serde_json::from_slice(
        &std::fs::read(org1.join("connection-org1.json")).expect("connection-org1.json"),
    )
    .expect("connection-org1.json parses");
    assert_eq!(
        profile["organizations"]["Org1"]["certificateAuthorities"],
        serde_json::json!(["ca.org1.example.com"])
    );
    let ca = &profile["certificateAuthorities"]["ca.org1.example.com"];
    assert_eq!(ca["url"], ca_url.as_str(), "{profile}");
    assert_eq!(ca["caName"], "ca-org1", "{profile}");
    assert!(
        ca["tlsCACerts"]["pem"][0]
            .as_str()
            .is_some_and(|p| p.starts_with("-----BEGIN CERTIFICATE-----")),
        "{profile}"
    );
    let yaml = std::fs::read_to_string(org1.join("connection-org1.yaml")).expect("yaml");
    assert!(yaml.contains("certificateAuthorities"), "{yaml}");
    assert!(yaml.contains(&ca_url), "{yaml}");

    let status = network(&["status"], &dir, Duration::from_secs(120));
    let status_out = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status_out.contains("8 of 8 node(s) running"),
        "{status_out}"
    );

    // Register and enroll `revokee` through Org1's CA with `twill ca`.
    let ca_root = org1.join("ca/ca.org1.example.com-cert.pem");
    let ca_admin = org1.join("users/caadmin@org1.example.com/msp");
    let conn = [
        "--caname",
        "ca-org1",
        "--tls.certfiles",
        s(&ca_root),
        "--mspdir",
        s(&ca_admin),
    ];

    // The nodes, Admins and User1s were enrolled through the CAs: the
    // orderer org's (ca-orderer) and the peer orgs'.
    let orderer_org = dir.join("organizations/ordererOrganizations/example.com");
    let orderer_ca_url =
        std::fs::read_to_string(orderer_org.join("ca/ca-url.txt")).expect("orderer ca-url.txt");
    let orderer_ca_url = orderer_ca_url.trim();
    assert_eq!(
        orderer_ca_url,
        format!("https://{}", address_of(&dir, "ca.example.com"))
    );
    let orderer_ca_root = orderer_org.join("ca/ca.example.com-cert.pem");
    let orderer_conn = [
        "--caname",
        "ca-orderer",
        "--tls.certfiles",
        s(&orderer_ca_root),
    ];
    let orderer_ca_admin = orderer_org.join("users/caadmin@example.com/msp");
    for (id, ou, msp) in [
        (
            "orderer0.example.com",
            "orderer",
            orderer_org.join("orderers/orderer0.example.com/msp"),
        ),
        (
            "orderer2.example.com",
            "orderer",
            orderer_org.join("orderers/orderer2.example.com/msp"),
        ),
        (
            "Admin@example.com",
            "admin",
            orderer_org.join("users/Admin@example.com/msp"),
        ),
    ] {
        assert_issued_by_ca(
            orderer_ca_url,
            &orderer_conn,
            &orderer_ca_admin,
            id,
            ou,
            &msp,
        );
    }
    let org1_conn = ["--caname", "ca-org1", "--tls.certfiles", s(&ca_root)];
    for (id, ou, msp) in [
        (
            "peer0.org1.example.com",
            "peer",
            org1.join("peers/peer0.org1.example.com/msp"),
        ),
        (
            "Admin@org1.example.com",
            "admin",
            org1.join("users/Admin@org1.example.com/msp"),
        ),
        (
            "User1@org1.example.com",
            "client",
            org1.join("users/User1@org1.example.com/msp"),
        ),
    ] {
        assert_issued_by_ca(&ca_url, &org1_conn, &ca_admin, id, ou, &msp);
    }
    let org2 = orgs.join("org2.example.com");
    let org2_ca_url = std::fs::read_to_string(org2.join("ca/ca-url.txt")).expect("org2 ca-url");
    let org2_ca_root = org2.join("ca/ca.org2.example.com-cert.pem");
    assert_issued_by_ca(
        org2_ca_url.trim(),
        &["--caname", "ca-org2", "--tls.certfiles", s(&org2_ca_root)],
        &org2.join("users/caadmin@org2.example.com/msp"),
        "peer0.org2.example.com",
        "peer",
        &org2.join("peers/peer0.org2.example.com/msp"),
    );

    let mut args = vec!["ca", "register", "-u", &ca_url];
    args.extend(conn);
    args.extend([
        "--id.name",
        "revokee",
        "--id.secret",
        "revokeepw",
        "--id.type",
        "client",
    ]);
    let out = twill_within(&args, CALL_TIMEOUT);
    assert!(out.status.success(), "{}", text(&out));
    let revokee = tmp.path().join("revokee/msp");
    let enroll_url = format!("https://revokee:revokeepw@{ca_addr}");
    let out = twill_within(
        &[
            "ca",
            "enroll",
            "-u",
            &enroll_url,
            "--caname",
            "ca-org1",
            "--tls.certfiles",
            s(&ca_root),
            "--mspdir",
            s(&revokee),
        ],
        CALL_TIMEOUT,
    );
    assert!(out.status.success(), "{}", text(&out));

    // Transactions: endorsed by peer0 of each org, ordered by orderer0.
    let orderer = address_of(&dir, "orderer0");
    let orderer_ca =
        dir.join("organizations/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem");
    let peer1 = address_of(&dir, "peer0.org1.example.com");
    let peer2 = address_of(&dir, "peer0.org2.example.com");
    let tls1 = org1.join("tlsca/tlsca.org1.example.com-cert.pem");
    let tls2 = orgs.join("org2.example.com/tlsca/tlsca.org2.example.com-cert.pem");
    let invoke = |msp: &Path, asset: &str| -> Output {
        let ctor = format!(r#"{{"Args":["CreateAsset","{asset}","blue","5","Tom","35"]}}"#);
        twill_within(
            &[
                "chaincode",
                "invoke",
                "-C",
                "mychannel",
                "-n",
                "basic",
                "-c",
                &ctor,
                "-o",
                &orderer,
                "--orderer-tls-ca",
                s(&orderer_ca),
                "--peer-address",
                &peer1,
                "--tls-ca",
                s(&tls1),
                "--peer-address",
                &peer2,
                "--tls-ca",
                s(&tls2),
                "--msp-dir",
                s(msp),
                "--msp-id",
                "Org1MSP",
            ],
            CALL_TIMEOUT,
        )
    };
    let out = invoke(&revokee, "revokee-asset-1");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("committed with status (VALID)"),
        "{}",
        text(&out)
    );
    // The same user through the Gateway (Fabric's client protocol, here
    // Twill's SDK with the connection profile `up --ca` wrote).
    let profile = org1.join("connection-org1.yaml");
    assert!(
        gateway_create(&profile, &revokee, "revokee-gw-1").is_ok(),
        "a CA-enrolled user's transaction through the gateway commits VALID"
    );
    // appuser1, which `up` enrolled through the CA, transacts too.
    let appuser = org1.join("users/appuser1@org1.example.com/msp");
    let out = invoke(&appuser, "appuser1-asset-1");
    assert!(out.status.success(), "{}", text(&out));

    // Revoke it and get the CA's CRL.
    let mut args = vec!["ca", "revoke", "-u", &ca_url];
    args.extend(conn);
    args.extend(["-e", "revokee", "--gencrl"]);
    let out = twill_within(&args, CALL_TIMEOUT);
    assert!(out.status.success(), "{}", text(&out));
    let crl = ca_admin.join("crls/crl.pem");
    assert!(crl.is_file(), "{}", text(&out));

    // The CRL into Org1MSP's MSP, signed by Org1's admin; wait for both peers.
    let admin = org1.join("users/Admin@org1.example.com/msp");
    let out = twill_within(
        &[
            "channel",
            "add-crl",
            "--channel",
            "mychannel",
            "--org",
            "Org1MSP",
            "--crl",
            s(&crl),
            "--orderer",
            &orderer,
            "--orderer-tls-ca",
            s(&orderer_ca),
            "--msp-dir",
            s(&admin),
            "--msp-id",
            "Org1MSP",
            "--peer-address",
            &peer1,
            "--peer-address",
            &peer2,
            "--tls-ca",
            s(&tls1),
            "--tls-ca",
            s(&tls2),
        ],
        CALL_TIMEOUT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let added = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(added.contains("added to Org1MSP's MSP"), "{added}");
    assert_eq!(
        added.matches("has committed config block").count(),
        2,
        "{added}"
    );

    // The revoked user is refused by the endorsers; User1 is not.
    let out = invoke(&revokee, "revokee-asset-2");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("revoked"), "{}", text(&out));
    assert!(err.contains("endors"), "{}", text(&out));
    let user1 = org1.join("users/User1@org1.example.com/msp");
    let out = invoke(&user1, "user1-asset-1");
    assert!(out.status.success(), "{}", text(&out));
    // Through the gateway: the endorser refuses the revoked identity.
    let refused = gateway_create(&profile, &revokee, "revokee-gw-2").unwrap_err();
    assert!(refused.contains("revoked"), "{refused}");
    assert!(gateway_create(&profile, &user1, "user1-gw-1").is_ok());

    // The same CRL again changes nothing and says so.
    let out = twill_within(
        &[
            "channel",
            "add-crl",
            "-c",
            "mychannel",
            "--org",
            "Org1MSP",
            "--crl",
            s(&crl),
            "-o",
            &orderer,
            "--orderer-tls-ca",
            s(&orderer_ca),
            "--msp-dir",
            s(&admin),
            "--msp-id",
            "Org1MSP",
        ],
        CALL_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in Org1MSP"),
        "{}",
        text(&out)
    );

    // Bad input is one line naming the flag.
    let not_a_crl = tmp.path().join("not-a-crl.pem");
    std::fs::write(&not_a_crl, "hello").unwrap();
    for (org, file, needles) in [
        ("Org9MSP", &crl, ["--org", "Org9MSP"]),
        ("Org1MSP", &not_a_crl, ["--crl", "not-a-crl.pem"]),
    ] {
        let out = twill_within(
            &[
                "channel",
                "add-crl",
                "-c",
                "mychannel",
                "--org",
                org,
                "--crl",
                s(file),
                "-o",
                &orderer,
                "--orderer-tls-ca",
                s(&orderer_ca),
                "--msp-dir",
                s(&admin),
                "--msp-id",
                "Org1MSP",
            ],
            CALL_TIMEOUT,
        );
        crate::assert_one_line_error(&out, &needles);
    }

    let down = network(&["down", "--clean"], &dir, Duration::from_secs(120));
    assert!(down.status.success(), "{}", text(&down));
    assert!(!dir.exists());
}
