//! `twill network up|status|down` with real processes: the network comes
//! up detached, status sees every node running, the connection profile
//! names a peer, and down stops everything and removes the state folder.
//!
//! Needs `twill-peer`, `twill-orderer` and `asset-transfer` next to `twill`:
//! `cargo build -p twill-cli -p twill-peer -p twill-orderer -p asset-transfer`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::orderer_e2e::ONE_NETWORK_AT_A_TIME;

/// Runs `twill network <args> --state-dir <dir>`, killed after `timeout`.
fn network(args: &[&str], dir: &Path, timeout: Duration) -> Output {
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

fn text(o: &Output) -> String {
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
    let json: serde_json::Value = serde_json::from_str(&text).expect("network.json is JSON");
    json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["pid"].as_u64().expect("pid") as u32)
        .collect()
}

/// Live processes in the process groups of `pids` (the nodes lead their
/// own group; the chaincode processes join their peer's).
fn group_members(pids: &[u32]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
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

/// Runs `twill network down --clean` on drop, so a failing test leaves no
/// process behind.
struct Down {
    dir: PathBuf,
}

impl Drop for Down {
    fn drop(&mut self) {
        if self.dir.join("network.json").exists() {
            let _ = Command::new(env!("CARGO_BIN_EXE_twill"))
                .args(["network", "down", "--clean", "--state-dir"])
                .arg(&self.dir)
                .output();
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
