//! `twill network up|status|down` with real processes: the network comes
//! up detached, status sees every node running, the connection profiles
//! name the peers, and down stops everything (and removes the state folder
//! with `--clean`). One test per network shape: one peer per org, and two
//! peers per org (`--peers-per-org 2`).
//!
//! Needs `twill-peer`, `twill-orderer` and `asset-transfer` next to `twill`:
//! `cargo build -p twill-cli -p twill-peer -p twill-orderer -p asset-transfer`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::orderer_e2e::ONE_NETWORK_AT_A_TIME;

/// Runs `twill network <args> --state-dir <dir>`, killed after `timeout`.
pub(crate) fn network(args: &[&str], dir: &Path, timeout: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twill"))
        .arg("network")
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
                "twill network {args:?} did not finish within {} s; stdout: {} stderr: {}",
                timeout.as_secs(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Pids recorded in network.json.
fn recorded_pids(dir: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(dir.join("network.json")) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    json["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| u32::try_from(n["pid"].as_u64()?).ok())
        .collect()
}

/// Live processes in the process groups of `pids` (the nodes lead their
/// own group; the chaincode processes join their peer's).
fn group_members(pids: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                .is_some_and(|pgrp| pids.contains(&pgrp))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Runs `twill network down --clean` on drop, and kills with SIGKILL what
/// still runs in the recorded nodes' process groups, so a failing test
/// leaves no process behind.
pub(crate) struct Down {
    pub(crate) dir: PathBuf,
}

impl Drop for Down {
    fn drop(&mut self) {
        if !self.dir.join("network.json").exists() {
            return;
        }
        let pids = recorded_pids(&self.dir);
        let _ = Command::new(env!("CARGO_BIN_EXE_twill"))
            .args(["network", "down", "--clean", "--state-dir"])
            .arg(&self.dir)
            .output();
        let left: Vec<String> = group_members(&pids).iter().map(u32::to_string).collect();
        if !left.is_empty() {
            let _ = Command::new("kill").arg("-9").args(&left).status();
        }
    }
}

#[test]
fn network_up_status_down() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let _down = Down { dir: dir.clone() };

    let up = network(&["up"], &dir, Duration::from_secs(600));
    assert!(up.status.success(), "{}", text(&up));
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(stdout.contains("ReadAsset asset-"), "{}", text(&up));
    assert!(stdout.contains("\"Owner\":\"Tomoko\""), "{}", text(&up));
    let pids = recorded_pids(&dir);
    assert_eq!(pids.len(), 5, "3 orderers and 2 peers: {pids:?}");

    // The nodes outlive `up`.
    let status = network(&["status"], &dir, Duration::from_secs(120));
    assert!(status.status.success(), "{}", text(&status));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("5 of 5 node(s) running"), "{}", text(&status));
    for name in [
        "orderer0",
        "orderer1",
        "orderer2",
        "peer0.org1.example.com",
        "peer0.org2.example.com",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {out}"));
        assert!(line.contains("running"), "{line}");
    }

    // A second `up` refuses.
    let again = network(&["up"], &dir, Duration::from_secs(120));
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("twill network down"),
        "{}",
        text(&again)
    );

    let org1 = dir.join("organizations/peerOrganizations/org1.example.com");
    let profile: serde_json::Value = serde_json::from_slice(
        &std::fs::read(org1.join("connection-org1.json")).expect("connection-org1.json"),
    )
    .expect("connection-org1.json parses");
    let url = profile["peers"]["peer0.org1.example.com"]["url"]
        .as_str()
        .expect("peer url");
    assert!(url.starts_with("grpcs://127.0.0.1:"), "{url}");
    assert_eq!(profile["organizations"]["Org1"]["mspid"], "Org1MSP");
    let pem = profile["peers"]["peer0.org1.example.com"]["tlsCACerts"]["pem"]
        .as_str()
        .expect("pem");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let yaml = std::fs::read_to_string(org1.join("connection-org1.yaml")).expect("yaml");
    assert!(yaml.contains(url), "{yaml}");
    assert!(org1.join("users/User1@org1.example.com/msp").is_dir());

    // The nodes and the two chaincode processes.
    let members = group_members(&pids);
    assert!(members.len() >= 7, "{members:?}");

    let down = network(&["down", "--clean"], &dir, Duration::from_secs(120));
    assert!(down.status.success(), "{}", text(&down));
    for pid in pids.iter().chain(&members) {
        assert!(!alive(*pid), "pid {pid} still runs after down");
    }
    assert!(!dir.exists(), "{} still exists", dir.display());

    // Idempotent.
    let again = network(&["down"], &dir, Duration::from_secs(60));
    assert!(again.status.success(), "{}", text(&again));
}

/// The nodes of network.json: (name, kind, address).
fn recorded_nodes(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("network.json")).expect("network.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("network.json is JSON");
    json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let field = |k: &str| n[k].as_str().expect(k).to_string();
            (field("name"), field("kind"), field("address"))
        })
        .collect()
}

#[test]
fn network_up_with_two_peers_per_org() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let _down = Down { dir: dir.clone() };

    let up = network(
        &["up", "--peers-per-org", "2"],
        &dir,
        Duration::from_secs(600),
    );
    assert!(up.status.success(), "{}", text(&up));
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(stdout.contains("2 peer(s) per org"), "{}", text(&up));
    assert!(stdout.contains("\"Owner\":\"Tomoko\""), "{}", text(&up));
    assert!(
        stdout.contains("Admin@org2.example.com/msp") && stdout.contains("connection-org2.yaml"),
        "{}",
        text(&up)
    );

    let peers = [
        "peer0.org1.example.com",
        "peer1.org1.example.com",
        "peer0.org2.example.com",
        "peer1.org2.example.com",
    ];
    let nodes = recorded_nodes(&dir);
    let names = |kind: &str| -> Vec<&str> {
        nodes
            .iter()
            .filter(|n| n.1 == kind)
            .map(|n| n.0.as_str())
            .collect()
    };
    assert_eq!(names("orderer"), ["orderer0", "orderer1", "orderer2"]);
    assert_eq!(names("peer"), peers);
    let pids = recorded_pids(&dir);
    assert_eq!(pids.len(), 7, "{pids:?}");
    for p in peers {
        assert!(dir.join("peers").join(p).join("core.yaml").is_file(), "{p}");
        assert!(dir.join("logs").join(format!("{p}.log")).is_file(), "{p}");
    }

    // Every node runs, and every peer has committed the demo transaction:
    // genesis, two approvals, the commit of basic and CreateAsset.
    let status = network(&["status"], &dir, Duration::from_secs(120));
    assert!(status.status.success(), "{}", text(&status));
    let out = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(out.contains("7 of 7 node(s) running"), "{out}");
    let mut heights = Vec::new();
    for (name, kind, _) in &nodes {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} missing: {out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.get(3), Some(&"running"), "{line}");
        assert_eq!(cols.get(5), Some(&"OK"), "{line}");
        if kind == "peer" {
            heights.push(cols.get(4).and_then(|h| h.parse::<u64>().ok()));
        }
    }
    assert_eq!(heights.len(), 4, "{out}");
    assert!(
        heights
            .iter()
            .all(|h| *h == heights[0] && h.is_some_and(|h| h >= 5)),
        "peers at different heights: {heights:?}\n{out}"
    );
    let summary_height = format!(
        "every peer at height {} of mychannel",
        heights[0].unwrap_or(0)
    );
    assert!(stdout.contains(&summary_height), "{}", text(&up));

    // Org1's connection profile names both its peers, peer0 first.
    let org1 = dir.join("organizations/peerOrganizations/org1.example.com");
    let profile: serde_json::Value = serde_json::from_slice(
        &std::fs::read(org1.join("connection-org1.json")).expect("connection-org1.json"),
    )
    .expect("connection-org1.json parses");
    assert_eq!(
        profile["organizations"]["Org1"]["peers"],
        serde_json::json!(["peer0.org1.example.com", "peer1.org1.example.com"])
    );
    let yaml = std::fs::read_to_string(org1.join("connection-org1.yaml")).expect("yaml");
    for (name, _, address) in nodes.iter().filter(|n| n.0.ends_with("org1.example.com")) {
        let peer = &profile["peers"][name];
        let url = format!("grpcs://{address}");
        assert_eq!(peer["url"], url.as_str(), "{profile}");
        assert_eq!(
            peer["grpcOptions"]["ssl-target-name-override"],
            name.as_str()
        );
        let pem = peer["tlsCACerts"]["pem"].as_str().expect("pem");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(yaml.contains(&url), "{yaml}");
    }
    assert_eq!(profile["peers"].as_object().map(|m| m.len()), Some(2));

    // Every peer is an anchor peer of its org.
    let configtx = std::fs::read_to_string(dir.join("configtx.yaml")).expect("configtx.yaml");
    for (_, kind, address) in &nodes {
        if kind == "peer" {
            let port = address.rsplit(':').next().expect("port");
            assert!(
                configtx.contains(&format!("- Host: 127.0.0.1\n              Port: {port}\n")),
                "{address} is no anchor peer: {configtx}"
            );
        }
    }

    // The nodes and the chaincode processes of the two endorsing peers.
    let members = group_members(&pids);
    assert!(members.len() >= 9, "{members:?}");

    // `down` without --clean stops everything and keeps the folder.
    let down = network(&["down"], &dir, Duration::from_secs(120));
    assert!(down.status.success(), "{}", text(&down));
    for pid in pids.iter().chain(&members) {
        assert!(!alive(*pid), "pid {pid} still runs after down");
    }
    assert!(dir.join("logs/peer1.org2.example.com.log").is_file());
    let status = network(&["status"], &dir, Duration::from_secs(60));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("0 of 7 node(s) running"),
        "{}",
        text(&status)
    );
}

#[test]
fn network_up_refuses_peers_per_org_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    for n in ["0", "5"] {
        let up = network(&["up", "--peers-per-org", n], &dir, Duration::from_secs(60));
        assert!(!up.status.success(), "{}", text(&up));
        let err = String::from_utf8_lossy(&up.stderr);
        assert!(err.contains("--peers-per-org"), "{}", text(&up));
        assert!(err.contains("1..=4"), "{}", text(&up));
        assert!(!dir.exists(), "{}", text(&up));
    }
}
