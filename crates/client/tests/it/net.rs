//! A `twill network` for a test: brought up in a temp folder, stopped (every
//! process group) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Folder holding `twill`, `twill-peer`, `twill-orderer` and
/// `asset-transfer`: `TWILL_BIN_DIR`, or this profile's target folder
/// after building them there.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TWILL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/it-<hash>
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile folder")
        .to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build.args([
        "build",
        "-p",
        "twill-cli",
        "-p",
        "twill-peer",
        "-p",
        "twill-orderer",
        "-p",
        "asset-transfer",
    ]);
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let out = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "building the node binaries failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `twill network <args> --state-dir <dir>`, killed after `timeout`.
fn twill_network(bins: &Path, args: &[&str], dir: &Path, timeout: Duration) -> Output {
    let mut child = Command::new(bins.join("twill"))
        .arg("network")
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .env("TWILL_BIN_DIR", bins)
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
            panic!("twill network {args:?} timed out: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running network.
pub struct Net {
    bins: PathBuf,
    /// The state folder (`--state-dir`).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Net {
    /// `twill network up --peers-per-org <n>` in a fresh temp folder.
    pub fn up(peers_per_org: u8) -> Net {
        let bins = bin_dir();
        let tmp = tempfile::Builder::new()
            .prefix("twill-client-e2e-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().join("net");
        let keep = std::env::var_os("TWILL_KEEP_TEST_DIRS").is_some();
        let tmp = if keep {
            eprintln!("network folder kept: {}", tmp.keep().display());
            None
        } else {
            Some(tmp)
        };
        let net = Net {
            bins,
            dir,
            _tmp: tmp,
        };
        let n = peers_per_org.to_string();
        let up = twill_network(
            &net.bins,
            &["up", "--peers-per-org", &n],
            &net.dir,
            Duration::from_secs(900),
        );
        assert!(up.status.success(), "network up failed: {}", text(&up));
        net
    }

    fn org_dir(&self, org: u8) -> PathBuf {
        self.dir.join(format!(
            "organizations/peerOrganizations/org{org}.example.com"
        ))
    }

    /// The YAML connection profile of `org` (1 or 2).
    pub fn profile(&self, org: u8) -> PathBuf {
        self.org_dir(org).join(format!("connection-org{org}.yaml"))
    }

    /// The MSP folder of `org`'s User1.
    pub fn user_msp(&self, org: u8) -> PathBuf {
        self.org_dir(org)
            .join(format!("users/User1@org{org}.example.com/msp"))
    }

    /// The pid `network.json` records for node `name`.
    pub fn pid(&self, name: &str) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("network.json")).expect("network.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("network.json is JSON");
        json["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .and_then(|n| n["pid"].as_u64())
            .unwrap_or_else(|| panic!("no node {name} in network.json: {text}")) as u32
    }

    /// Kills node `name` (SIGKILL) and waits until it is gone.
    pub fn kill(&self, name: &str) {
        let pid = self.pid(name);
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {name} ({pid})");
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "{name} ({pid}) still runs");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The example binary built next to the test, if cargo built it.
    pub fn example(&self, name: &str) -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let path = exe.parent()?.parent()?.join("examples").join(name);
        path.is_file().then_some(path)
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            rest.split_whitespace().next().map(str::to_owned)
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.dir.join("network.json").exists() {
            let mut down = Command::new(self.bins.join("twill"));
            down.args(["network", "down", "--state-dir"]).arg(&self.dir);
            if self._tmp.is_some() {
                down.arg("--clean");
            }
            let _ = down.output();
        }
    }
}
