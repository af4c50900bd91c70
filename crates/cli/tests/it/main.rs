//! End-to-end tests of the `twill` binary: the documented test-network flow
//! and the error behaviour for bad input (one line naming file/field, exit 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ca;
mod network;
mod orderer_e2e;
mod osnadmin;
mod revocation;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn twill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twill"))
        .args(args)
        .output()
        .expect("run twill")
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Copies the test-network configs into a temp dir, as `test-network/`.
fn test_network() -> (tempfile::TempDir, PathBuf) {
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
    (dir, tn)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure: exit code 1, one line on stderr containing each needle.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn generate(tn: &Path) -> Output {
    twill(&[
        "cryptogen",
        "generate",
        "--config",
        p(&tn.join("crypto-config.yaml")),
        "--output",
        p(&tn.join("organizations")),
    ])
}

#[test]
fn documented_flow_produces_material_and_a_genesis_block() {
    let (dir, tn) = test_network();
    let out = generate(&tn);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in [
        "organizations/peerOrganizations/org1.example.com/msp/config.yaml",
        "organizations/peerOrganizations/org2.example.com/users/User1@org2.example.com/msp/keystore/priv_sk",
        "organizations/ordererOrganizations/example.com/orderers/orderer2.example.com/tls/server.crt",
    ] {
        assert!(tn.join(f).is_file(), "missing {f}");
    }

    let block = dir.path().join("mychannel.block");
    let out = twill(&[
        "configtxgen",
        "--config",
        p(&tn.join("configtx.yaml")),
        "--profile",
        "TwoOrgsApplicationGenesis",
        "--channel-id",
        "mychannel",
        "--output-block",
        p(&block),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::metadata(&block).unwrap().len() > 1000);

    let out = twill(&["configtxgen", "--inspect-block", p(&block)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let payload = &json["data"]["data"][0]["payload"];
    assert_eq!(payload["header"]["channel_header"]["type"], "CONFIG");
    assert_eq!(
        payload["header"]["channel_header"]["channel_id"],
        "mychannel"
    );
    let groups = &payload["data"]["config"]["channel_group"]["groups"];
    assert_eq!(
        groups["Application"]["groups"]["Org1MSP"]["values"]["MSP"]["value"]["config"]["name"],
        "Org1MSP"
    );
    assert_eq!(
        groups["Orderer"]["values"]["ConsensusType"]["value"]["metadata"]["consenters"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        groups["Application"]["policies"]["Endorsement"]["policy"]["value"]["rule"],
        "MAJORITY"
    );
}

#[test]
fn malformed_yaml_is_one_line_naming_the_file() {
    let (_dir, tn) = test_network();
    let cfg = tn.join("configtx.yaml");
    std::fs::write(&cfg, "Profiles:\n  X: [oops\n").unwrap();
    let out = twill(&[
        "configtxgen",
        "--config",
        p(&cfg),
        "--profile",
        "X",
        "--channel-id",
        "c",
        "--output-block",
        p(&tn.join("b.block")),
    ]);
    assert_one_line_error(&out, &["configtx.yaml", "line 2"]);

    let cc = tn.join("crypto-config.yaml");
    std::fs::write(&cc, "PeerOrgs:\n  - Name: [\n").unwrap();
    assert_one_line_error(&generate(&tn), &["crypto-config.yaml"]);
}

#[test]
fn missing_msp_dir_names_the_field() {
    let (dir, tn) = test_network();
    assert!(generate(&tn).status.success());
    std::fs::remove_dir_all(tn.join("organizations/peerOrganizations/org2.example.com/msp"))
        .unwrap();
    let out = twill(&[
        "configtxgen",
        "--config",
        p(&tn.join("configtx.yaml")),
        "--profile",
        "TwoOrgsApplicationGenesis",
        "--channel-id",
        "mychannel",
        "--output-block",
        p(&dir.path().join("b.block")),
    ]);
    assert_one_line_error(
        &out,
        &[
            "configtx.yaml",
            "Organizations[1].MSPDir",
            "org2.example.com/msp",
        ],
    );
    assert!(!dir.path().join("b.block").exists(), "no block on failure");
}

#[test]
fn unknown_profile_is_named() {
    let (dir, tn) = test_network();
    assert!(generate(&tn).status.success());
    let out = twill(&[
        "configtxgen",
        "--config",
        p(&tn.join("configtx.yaml")),
        "--profile",
        "Nope",
        "--channel-id",
        "mychannel",
        "--output-block",
        p(&dir.path().join("b.block")),
    ]);
    assert_one_line_error(
        &out,
        &["configtx.yaml", "Nope", "TwoOrgsApplicationGenesis"],
    );
}

#[test]
fn missing_config_file_is_named() {
    let out = twill(&[
        "cryptogen",
        "generate",
        "--config",
        "/nonexistent/crypto.yaml",
    ]);
    assert_one_line_error(&out, &["/nonexistent/crypto.yaml"]);
}

#[test]
fn policy_check_prints_or_points_at_the_error() {
    let out = twill(&[
        "policy",
        "check",
        "AND('Org1MSP.peer',OR('Org2MSP.member','Org3MSP.admin'))",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "AND('Org1MSP.peer', OR('Org2MSP.member', 'Org3MSP.admin'))"
    );
    let out = twill(&["policy", "check", "AND('Org1MSP.peer', 'Org2MSP.chef')"]);
    assert_one_line_error(&out, &["chef"]);
    let out = twill(&["policy", "check", "OR('Org1MSP.peer'))"]);
    assert_one_line_error(&out, &["position"]);
}

#[test]
fn inspect_rejects_a_file_that_is_not_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("junk.block");
    std::fs::write(&f, b"\xff\xff\xff\xff not a block").unwrap();
    let out = twill(&["configtxgen", "--inspect-block", p(&f)]);
    assert_one_line_error(&out, &["junk.block"]);
}

#[test]
fn help_texts_carry_examples() {
    for args in [
        vec!["--help"],
        vec!["cryptogen", "--help"],
        vec!["policy", "--help"],
        vec!["cryptogen", "generate", "--help"],
        vec!["configtxgen", "--help"],
        vec!["policy", "check", "--help"],
    ] {
        let out = twill(&args);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}
