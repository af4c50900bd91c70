//! `twill network up|down|status`: a local test network, like Fabric's
//! `test-network/network.sh`, made of detached processes that outlive the
//! command.
//!
//! `up` lays out the crypto material, the genesis block of `mychannel` and
//! the node configs in a state folder (see [`OrdererNet`] for the orderers'
//! part), starts 3 Raft orderers and 2 orgs × N peers in their own process
//! groups, records them in `<state-dir>/network.json`, joins everything to
//! the channel, deploys the Rust asset-transfer chaincode as `basic` and
//! runs one CreateAsset and one ReadAsset. `down` stops what network.json
//! names (with the chaincode processes, which live in their peer's process
//! group); `status` shows each node's process, channel height and health.
//!
//! With `--ca`, `up` first starts one `twill-ca` per org (orderer org,
//! Org1, Org2), signing with the org's cryptogen CA key pair and serving
//! HTTPS; enrolls its registrar, and registers and enrolls through it the
//! signing identities of the org's nodes, Admin and User1 (replacing
//! cryptogen's; TLS stays cryptogen's) and a client `appuser1`; then starts
//! the nodes, and lists the peer orgs' CAs in the connection profiles (see
//! docs/network.md).
//!
//! ```text
//! <state-dir>/
//!   network.json                 the nodes: name, kind, pid, address, operations
//!   organizations/...            crypto material and connection profiles
//!   mychannel.block              genesis block of mychannel
//!   configtx.yaml, crypto-config.yaml
//!   orderer0.yaml ... data/orderer0/ ...   orderer configs and ledgers
//!   peers/<peer>/core.yaml, peers/<peer>/data/   peer configs and ledgers
//!   logs/<node>.log              process output
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use twill_comm::ClientTls;
use twill_protos::common::HeaderType;
use twill_protos::peer::ChaincodeInput;

use crate::chaincode::{OrdererTarget, PeerTarget};
use crate::netkit::{bin_dir, NetOptions, OrdererNet};
use crate::netstart::{
    create_asset_reporting, deploy_chaincode_reporting, http_get, http_get_status, join_peers,
    msp_dir, org_dir, tls_ca, wait_leader, PeerFiles, PeerProc, CHAINCODE, CHANNEL,
};
use crate::peer::{build_proposal, load_signer, process_proposal};

/// Time allowed for starting processes, Raft elections and commits (a
/// small machine building and running everything at once is slow).
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Time between SIGTERM and SIGKILL in `down`.
const TERM_GRACE: Duration = Duration::from_secs(5);
const STATE_FILE: &str = "network.json";
pub(crate) const DEFAULT_STATE_DIR: &str = "./.twill-network";
/// Most peers per org `up` starts.
const MAX_PEERS_PER_ORG: u8 = 4;

/// Arguments of `twill network`.
#[derive(Debug, Args)]
pub(crate) struct NetworkArgs {
    #[command(subcommand)]
    command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create and start the network (3 Raft orderers, Org1 and Org2 with
    /// --peers-per-org peers each), deploy chaincode `basic` and run a demo
    /// transaction.
    Up(UpArgs),
    /// Stop every process of the network (and optionally remove its folder).
    Down(DownArgs),
    /// Show each node's process, height on mychannel and health.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Folder holding the network's files, logs and network.json.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Peers of each of the two orgs, 1 to 4: peer0..peer<N-1>.org<1|2>.example.com,
    /// each with its own port, core.yaml, ledger and log, joined to mychannel,
    /// with chaincode basic installed, an anchor peer of its org in the
    /// channel config, and listed in its org's connection profile.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_PEERS_PER_ORG)),
    )]
    peers_per_org: u8,
    /// Also start one twill-ca per org, orderer org included (HTTPS,
    /// bootstrap admin:adminpw, signing with the org's CA key pair), before
    /// the nodes; register and enroll through it the signing identities of
    /// the org's peers or orderers, Admin and User1 (instead of cryptogen's;
    /// TLS certificates stay cryptogen's) and a client appuser1 of each peer
    /// org; list the peer orgs' CAs in the connection profiles
    /// (certificateAuthorities).
    #[arg(long)]
    ca: bool,
}

#[derive(Debug, Args)]
struct DownArgs {
    /// Folder holding the network's files, logs and network.json.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Also remove the state folder.
    #[arg(long)]
    clean: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Folder holding the network's files, logs and network.json.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

/// Runs `twill network ...`.
pub(crate) fn run(args: NetworkArgs) -> anyhow::Result<()> {
    match args.command {
        NetworkCommand::Up(a) => up(a),
        NetworkCommand::Down(a) => down(a),
        NetworkCommand::Status(a) => status(a),
    }
}

// ---------------------------------------------------------------------------
// network.json
// ---------------------------------------------------------------------------

/// One process of the network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    /// Node name (`orderer0`, `peer0.org1.example.com`).
    pub(crate) name: String,
    /// `orderer`, `peer` or `ca`.
    pub(crate) kind: String,
    /// Process id.
    pub(crate) pid: u32,
    /// gRPC endpoint (HTTPS for a CA), `127.0.0.1:<port>`.
    pub(crate) address: String,
    /// Operations endpoint (`/healthz`, `/metrics`); empty for a CA.
    pub(crate) operations: String,
    /// Its log file.
    pub(crate) log: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct NetworkFile {
    /// The channel the network runs.
    pub(crate) channel: String,
    /// Its processes.
    pub(crate) nodes: Vec<NodeRecord>,
}

impl NetworkFile {
    /// Reads `<dir>/network.json`; `None` if there is none.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Option<NetworkFile>> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a network description", path.display()))?;
        Ok(Some(file))
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

// ---------------------------------------------------------------------------
// Processes (Linux /proc)
// ---------------------------------------------------------------------------

/// The state letter and process group of `pid`, from /proc/<pid>/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Whether `pid` runs a Twill node (not a process that reused the pid of
/// a node that is gone, e.g. after a reboot).
fn node_alive(pid: u32) -> bool {
    alive(pid)
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with("twill-"))
}

/// Live processes whose process group is one of `groups` (the nodes, which
/// lead their own group, and the chaincode processes their peers started).
pub(crate) fn group_members(groups: &BTreeSet<u32>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            matches!(proc_stat(*pid), Some((state, pgrp))
                if state != 'Z' && state != 'X' && groups.contains(&pgrp))
        })
        .collect()
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops the nodes' process groups: SIGTERM, then SIGKILL after
/// [`TERM_GRACE`]. Returns the number of processes signalled.
fn stop_groups(pids: &[u32]) -> usize {
    // A live pid that is no Twill node was reused: leave its group alone.
    let groups: BTreeSet<u32> = pids
        .iter()
        .copied()
        .filter(|p| node_alive(*p) || !alive(*p))
        .collect();
    let mut members = group_members(&groups);
    // A node that is not (yet) a group leader: signal it directly.
    for pid in pids {
        if node_alive(*pid) && !members.contains(pid) {
            members.push(*pid);
        }
    }
    let count = members.len();
    signal("TERM", &members);
    let deadline = Instant::now() + TERM_GRACE;
    loop {
        let left: Vec<u32> = members.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            signal("KILL", &left);
            // Chaincode processes started meanwhile.
            signal("KILL", &group_members(&groups));
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    count
}

// ---------------------------------------------------------------------------
// up
// ---------------------------------------------------------------------------

/// The step `up` is at, for the progress display and the error message.
struct Progress {
    bar: ProgressBar,
    step: String,
    log: Option<PathBuf>,
}

impl Progress {
    fn new(steps: u64) -> Progress {
        let bar = ProgressBar::new(steps).with_style(
            // `wide_msg` is cut to the terminal's width: a wrapped line
            // would leave copies of itself on the screen.
            ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar,
            step: String::new(),
            log: None,
        }
    }

    fn step(&mut self, name: &str, log: Option<&Path>) {
        if !self.step.is_empty() {
            self.bar.inc(1);
        }
        self.step = name.to_string();
        self.log = log.map(Path::to_path_buf);
        self.bar.set_message(name.to_string());
    }
}

/// The processes `up` started, stopped on drop unless `up` succeeded.
struct Started {
    nodes: Vec<NodeRecord>,
    orderers: Vec<Child>,
    cas: Vec<Child>,
    peers: Vec<PeerProc>,
    keep: bool,
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.keep {
            for p in &mut self.peers {
                p.detach();
            }
            return;
        }
        let pids: Vec<u32> = self.nodes.iter().map(|n| n.pid).collect();
        stop_groups(&pids);
        for c in self.orderers.iter_mut().chain(self.cas.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The peers' Drop kills and reaps them.
    }
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    if !(1..=MAX_PEERS_PER_ORG).contains(&args.peers_per_org) {
        bail!(
            "--peers-per-org must be between 1 and {MAX_PEERS_PER_ORG}, not {}",
            args.peers_per_org
        );
    }
    let dir = &args.state_dir;
    if let Some(file) = NetworkFile::read(dir)? {
        let running: Vec<&str> = file
            .nodes
            .iter()
            .filter(|n| node_alive(n.pid))
            .map(|n| n.name.as_str())
            .collect();
        if !running.is_empty() {
            bail!(
                "a network is already running in {} ({}): run `twill network down --state-dir {}` first",
                dir.display(),
                running.join(", "),
                dir.display()
            );
        }
        // Leftovers of a stopped network: start afresh.
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the old network in {}", dir.display()))?;
    } else if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty and holds no {STATE_FILE}: choose another --state-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let bins = bin_dir()?;
    let mut needed = vec!["twill-peer", "twill-orderer", "asset-transfer"];
    if args.ca {
        needed.push("twill-ca");
    }
    for name in needed {
        if !bins.join(name).is_file() {
            bail!(
                "{name} not found in {}: build it with \
                 `cargo build -p twill-cli -p twill-peer -p twill-orderer -p twill-ca -p asset-transfer`",
                bins.display()
            );
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let steps = if args.ca { UP_STEPS + 2 } else { UP_STEPS };
    let mut progress = Progress::new(steps);
    let mut started = Started {
        nodes: Vec::new(),
        orderers: Vec::new(),
        cas: Vec::new(),
        peers: Vec::new(),
        keep: false,
    };
    let result = up_steps(
        &rt,
        &root,
        &bins,
        usize::from(args.peers_per_org),
        args.ca,
        &mut progress,
        &mut started,
    );
    progress.bar.finish_and_clear();
    match result {
        Ok(summary) => {
            started.keep = true;
            print!("{summary}");
            Ok(())
        }
        Err(e) => {
            let log = progress
                .log
                .as_ref()
                .map(|l| format!("; see {}", l.display()))
                .unwrap_or_default();
            let count = started.nodes.len();
            drop(started);
            if let Ok(Some(mut file)) = NetworkFile::read(&root) {
                file.nodes.clear();
                let _ = file.write(&root);
            }
            Err(e.context(format!(
                "`twill network up` failed while {}{log} (the {count} node(s) it started were stopped)",
                progress.step
            )))
        }
    }
}

/// Starts orderer `node` detached, in its own process group.
fn start_orderer(bins: &Path, config: &Path, log: &Path) -> anyhow::Result<Child> {
    let bin = bins.join("twill-orderer");
    crate::netkit::node_command(&bin, log)?
        .arg("--config")
        .arg(config)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

fn wait_port(child: &mut Child, name: &str, port: u16, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{name} exited with {status}; see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("{name} did not listen on {addr}; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The orderer leading mychannel, from the operations endpoints.
fn leader(ops: &[String]) -> Option<usize> {
    ops.iter().position(|o| {
        http_get(o, "/metrics").is_some_and(|body| {
            body.lines().any(|l| {
                l.starts_with("raft_is_leader{") && l.contains(CHANNEL) && l.ends_with(" 1")
            })
        })
    })
}

/// Number of steps of `up`, for the progress display.
const UP_STEPS: u64 = 11;

/// Routes the `txid [...] committed` lines of the transactions `up` sends
/// above the progress display (on stderr as is when there is no display).
fn progress_report(bar: &ProgressBar) -> impl Fn(&str) + Send + Sync {
    let bar = bar.clone();
    move |line: &str| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    }
}

fn up_steps(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    bins: &Path,
    peers_per_org: usize,
    with_ca: bool,
    progress: &mut Progress,
    started: &mut Started,
) -> anyhow::Result<String> {
    progress.step("creating crypto material and the genesis block", None);
    let net = OrdererNet::create_with_peers(
        root,
        NetOptions {
            orderers: 3,
            channel: CHANNEL.into(),
            batch_timeout: "250ms".into(),
            max_message_count: 500,
            tick_interval: "100ms".into(),
        },
        peers_per_org,
    )?;
    let mut file = NetworkFile {
        channel: CHANNEL.into(),
        nodes: Vec::new(),
    };

    let mut cas = Vec::new();
    if with_ca {
        progress.step("starting the certificate authorities", None);
        cas = start_cas(root, bins, started, &mut file, progress)?;
        progress.step(
            "enrolling the nodes', admins' and users' identities through the CAs",
            None,
        );
        for ca in &cas {
            progress.log = Some(ca.log.clone());
            rt.block_on(enroll_org_identities(ca, &ca_identities(ca, &net)))?;
        }
    }

    progress.step("starting the orderers", None);
    for node in &net.orderers {
        progress.log = Some(node.log.clone());
        let child = start_orderer(bins, &node.config, &node.log)?;
        let record = NodeRecord {
            name: node.name.clone(),
            kind: "orderer".into(),
            pid: child.id(),
            address: node.client_address(),
            operations: node.operations_address(),
            log: node.log.clone(),
        };
        started.orderers.push(child);
        started.nodes.push(record.clone());
        file.nodes.push(record);
        file.write(root)?;
    }
    for (i, node) in net.orderers.iter().enumerate() {
        progress.log = Some(node.log.clone());
        let child = started
            .orderers
            .get_mut(i)
            .context("orderer process missing")?;
        for port in [node.ports.client, node.ports.admin] {
            wait_port(child, &node.name, port, &node.log)?;
        }
    }

    progress.step(
        "joining the orderers to mychannel",
        Some(&net.orderers[0].log),
    );
    net.join_all()?;
    let ops: Vec<String> = net
        .orderers
        .iter()
        .map(|o| o.operations_address())
        .collect();
    progress.step("waiting for a Raft leader", Some(&net.orderers[0].log));
    wait_leader(&ops, &net.orderers[0].log, SETUP_TIMEOUT)?;

    let peer_count = net.peers.len();
    progress.step(&format!("starting the {peer_count} peers"), None);
    let peer_bin = bins.join("twill-peer");
    for slot in &net.peers {
        let node_dir = root.join("peers").join(&slot.name);
        let files = PeerFiles {
            config: node_dir.join("core.yaml"),
            data: node_dir.join("data"),
            log: root.join("logs").join(format!("{}.log", slot.name)),
        };
        progress.log = Some(files.log.clone());
        progress
            .bar
            .set_message(format!("starting the {peer_count} peers: {}", slot.name));
        let peer = PeerProc::start_at(
            &peer_bin,
            root,
            slot.org,
            slot.index,
            &files,
            true,
            SETUP_TIMEOUT,
            [slot.port, slot.operations],
        )?;
        let record = NodeRecord {
            name: peer.name.clone(),
            kind: "peer".into(),
            pid: peer.child.id(),
            address: peer.address.clone(),
            operations: peer.operations.clone(),
            log: peer.log.clone(),
        };
        started.peers.push(peer);
        started.nodes.push(record.clone());
        file.nodes.push(record);
        file.write(root)?;
    }
    let targets = started
        .peers
        .iter()
        .map(|p| p.target(root))
        .collect::<anyhow::Result<Vec<PeerTarget>>>()?;
    let orgs: Vec<u8> = started.peers.iter().map(|p| p.org).collect();
    let peer_log = started.peers.first().map(|p| p.log.clone());

    progress.step(
        &format!("joining the {peer_count} peers to mychannel"),
        peer_log.as_deref(),
    );
    rt.block_on(join_peers(root, &net.genesis_block, &targets, &orgs))?;

    let leader_at = leader(&ops).unwrap_or(0);
    let orderer = OrdererTarget {
        address: net.orderers[leader_at].client_address(),
        tls: Some(ClientTls::new(vec![net.orderer_tls_ca()?])),
    };
    // peer0 of each org endorses and is watched for commits.
    let mut endorsers = Vec::new();
    for org in [1u8, 2] {
        let i = orgs
            .iter()
            .position(|o| *o == org)
            .with_context(|| format!("no peer of Org{org}"))?;
        endorsers.push(targets[i].clone());
    }

    progress.step(
        &format!("deploying chaincode basic: install on {peer_count} peers, approve, commit"),
        peer_log.as_deref(),
    );
    let report = progress_report(&progress.bar);
    let chaincode = bins.join("asset-transfer");
    let package_id = rt.block_on(deploy_chaincode_reporting(
        root,
        &targets,
        &orgs,
        &endorsers,
        &orderer,
        &chaincode,
        None,
        SETUP_TIMEOUT,
        &report,
    ))?;

    progress.step("running a demo CreateAsset", peer_log.as_deref());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let asset = format!("asset-{nanos}");
    rt.block_on(create_asset_reporting(
        root,
        &endorsers,
        &orderer,
        &asset,
        SETUP_TIMEOUT,
        &report,
    ))?;

    progress.step(
        &format!("waiting for the {peer_count} peers to reach the same height"),
        None,
    );
    let height = wait_same_height(&started.peers, progress)?;

    progress.step("querying ReadAsset", peer_log.as_deref());
    let read = rt.block_on(read_asset(root, &endorsers[0], &asset))?;

    progress.step("writing the connection profiles", None);
    let profiles = write_connection_profiles(root, &started.peers, &cas)?;
    progress.bar.inc(1);

    Ok(summary(
        root,
        &file,
        peers_per_org,
        &package_id,
        &asset,
        &read,
        height,
        &profiles,
        &cas,
    ))
}

/// The height of mychannel on a node, from its `/metrics`.
fn peer_height(operations: &str) -> Option<u64> {
    http_get(operations, "/metrics").and_then(|b| metric_value(&b, "ledger_blockchain_height"))
}

/// Waits until every peer has the height of the highest one (the peers
/// that endorsed the demo transaction have committed it; the others pull
/// the same blocks from the orderers); that height.
fn wait_same_height(peers: &[PeerProc], progress: &mut Progress) -> anyhow::Result<u64> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let heights: Vec<Option<u64>> = peers.iter().map(|p| peer_height(&p.operations)).collect();
        let top = heights.iter().flatten().copied().max().unwrap_or(0);
        let behind = peers
            .iter()
            .zip(&heights)
            .find(|(_, h)| **h != Some(top) || top == 0);
        let Some((peer, height)) = behind else {
            return Ok(top);
        };
        progress.log = Some(peer.log.clone());
        if Instant::now() > deadline {
            bail!(
                "{} is at height {} of {CHANNEL}, the other peers at {top}",
                peer.name,
                height.map_or("unknown".to_string(), |h| h.to_string())
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What `up` prints at the end.
#[allow(clippy::too_many_arguments)]
fn summary(
    root: &Path,
    file: &NetworkFile,
    peers_per_org: usize,
    package_id: &str,
    asset: &str,
    read: &str,
    height: u64,
    profiles: &[PathBuf],
    cas: &[CaProc],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "network up in {} (3 orderers, {peers_per_org} peer(s) per org)",
        root.display()
    );
    let _ = writeln!(
        out,
        "chaincode {CHAINCODE} committed on {CHANNEL} ({package_id}, endorsement policy: channel default /Channel/Application/Endorsement)"
    );
    let _ = writeln!(out, "CreateAsset {asset}: VALID");
    let _ = writeln!(out, "ReadAsset {asset}: {read}");
    let _ = writeln!(out, "every peer at height {height} of {CHANNEL}");
    let _ = writeln!(
        out,
        "\nnodes (also in {}):",
        root.join(STATE_FILE).display()
    );
    for n in &file.nodes {
        if n.kind == "ca" {
            let _ = writeln!(
                out,
                "  {:<24} {:<8} https://{:<22} pid {}",
                n.name, n.kind, n.address, n.pid
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<24} {:<8} grpcs://{:<22} operations http://{}  pid {}",
            n.name, n.kind, n.address, n.operations, n.pid
        );
    }
    let _ = writeln!(out, "\nMSP folders:");
    for org in [1u8, 2] {
        for user in ["Admin", "User1"] {
            let _ = writeln!(
                out,
                "  Org{org}MSP {user:<6} {}",
                msp_dir(root, org, user).display()
            );
        }
        let _ = writeln!(out, "  Org{org}MSP TLS CA {}", tls_ca(root, org).display());
    }
    let _ = writeln!(
        out,
        "  orderer TLS CA   {}",
        root.join(
            "organizations/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem"
        )
        .display()
    );
    if !cas.is_empty() {
        let _ = writeln!(out, "\ncertificate authorities (registrar admin:adminpw):");
        for ca in cas {
            let _ = writeln!(out, "  {} {} (--caname {})", ca.name, ca.url(), ca.ca_name);
            let _ = writeln!(
                out,
                "    TLS certificate  {} (issued by {}, the file to trust)",
                ca.tls_cert.display(),
                ca.tls_root.display()
            );
            let _ = writeln!(
                out,
                "    CA admin         {}",
                ca.user_msp(CA_ADMIN).display()
            );
            if ca.org == 0 {
                let _ = writeln!(
                    out,
                    "    enrolled through it: the orderers' and Admin's signing identities"
                );
            } else {
                let _ = writeln!(
                    out,
                    "    enrolled through it: the peers', Admin's and User1's signing identities, and {APP_USER} {}",
                    ca.user_msp(APP_USER).display()
                );
            }
        }
    }
    let _ = writeln!(out, "\nconnection profiles:");
    for p in profiles {
        let _ = writeln!(out, "  {}", p.display());
    }
    let _ = writeln!(out, "\nlogs: {}", root.join("logs").display());
    let _ = writeln!(
        out,
        "stop with: twill network down --state-dir {}",
        root.display()
    );
    out
}

/// ReadAsset `id` as Org1's User1 on `peer`; the answer's payload.
async fn read_asset(root: &Path, peer: &PeerTarget, id: &str) -> anyhow::Result<String> {
    let user = load_signer(&msp_dir(root, 1, "User1"), "Org1MSP")?;
    let built = build_proposal(
        &user,
        HeaderType::EndorserTransaction,
        CHANNEL,
        CHAINCODE,
        ChaincodeInput {
            args: vec![b"ReadAsset".to_vec(), id.as_bytes().to_vec()],
            ..Default::default()
        },
        BTreeMap::new(),
    )?;
    let reply = process_proposal(&peer.address, peer.tls.as_ref(), built.signed).await?;
    let response = reply.response.unwrap_or_default();
    if response.status != 200 {
        bail!(
            "ReadAsset {id}: status {} - {}",
            response.status,
            response.message
        );
    }
    Ok(String::from_utf8_lossy(&response.payload).into_owned())
}

// ---------------------------------------------------------------------------
// Connection profiles
// ---------------------------------------------------------------------------

/// Writes `connection-org<N>.json` and `.yaml` for each org; their paths.
fn write_connection_profiles(
    root: &Path,
    peers: &[PeerProc],
    cas: &[CaProc],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for org in [1u8, 2] {
        let mut ca_names = Vec::new();
        let mut ca_map = serde_json::Map::new();
        for ca in cas.iter().filter(|c| c.org == org) {
            let tls_pem = std::fs::read_to_string(&ca.tls_root)
                .with_context(|| format!("reading {}", ca.tls_root.display()))?;
            ca_names.push(ca.name.clone());
            ca_map.insert(
                ca.name.clone(),
                serde_json::json!({
                    "url": ca.url(),
                    "caName": ca.ca_name,
                    "tlsCACerts": {"pem": [tls_pem]},
                    "httpOptions": {"verify": false},
                }),
            );
        }
        let ca_path = tls_ca(root, org);
        let pem = std::fs::read_to_string(&ca_path)
            .with_context(|| format!("reading {}", ca_path.display()))?;
        let mut names = Vec::new();
        let mut peer_map = serde_json::Map::new();
        for p in peers.iter().filter(|p| p.org == org) {
            names.push(p.name.clone());
            peer_map.insert(
                p.name.clone(),
                serde_json::json!({
                    "url": format!("grpcs://{}", p.address),
                    "tlsCACerts": {"pem": pem},
                    "grpcOptions": {
                        "ssl-target-name-override": p.name,
                        "hostnameOverride": p.name,
                    },
                }),
            );
        }
        let profile = serde_json::json!({
            "name": format!("test-network-org{org}"),
            "version": "1.0.0",
            "client": {
                "organization": format!("Org{org}"),
                "connection": {"timeout": {"peer": {"endorser": "300"}}},
            },
            "organizations": {
                format!("Org{org}"): {
                    "mspid": format!("Org{org}MSP"),
                    "peers": names,
                    "certificateAuthorities": ca_names,
                },
            },
            "peers": peer_map,
        });
        let mut profile = profile;
        if !ca_map.is_empty() {
            profile["certificateAuthorities"] = serde_json::Value::Object(ca_map);
        }
        let base = org_dir(root, org).join(format!("connection-org{org}"));
        let json = base.with_extension("json");
        std::fs::write(&json, serde_json::to_string_pretty(&profile)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        let yaml = base.with_extension("yaml");
        let mut text = String::from("---\n");
        yaml_value(&profile, 0, &mut text);
        std::fs::write(&yaml, text).with_context(|| format!("writing {}", yaml.display()))?;
        paths.push(json);
        paths.push(yaml);
    }
    Ok(paths)
}

/// A YAML scalar for `s`: JSON's double-quoted form is valid YAML.
fn yaml_scalar(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Appends `v` as block YAML indented by `indent` spaces (the caller wrote
/// the key of a mapping entry or the dash of a sequence item).
fn yaml_value(v: &serde_json::Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, item) in map {
                let _ = write!(out, "{pad}{}:", yaml_scalar(k));
                yaml_child(item, indent, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for item in items {
                let _ = write!(out, "{pad}-");
                yaml_child(item, indent, out);
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", yaml_inline(other));
        }
    }
}

/// Appends the value of a mapping entry or sequence item after its key or
/// dash.
fn yaml_child(v: &serde_json::Value, indent: usize, out: &mut String) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_value(v, indent + 2, out);
        }
        serde_json::Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_value(v, indent + 2, out);
        }
        serde_json::Value::String(s) if s.contains('\n') => {
            // A literal block keeps a PEM readable.
            let _ = writeln!(out, " |");
            let pad = " ".repeat(indent + 2);
            for line in s.lines() {
                let _ = writeln!(out, "{pad}{line}");
            }
        }
        other => {
            let _ = writeln!(out, " {}", yaml_inline(other));
        }
    }
}

fn yaml_inline(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => yaml_scalar(s),
        serde_json::Value::Object(_) => "{}".into(),
        serde_json::Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// down, status
// ---------------------------------------------------------------------------

fn down(args: DownArgs) -> anyhow::Result<()> {
    let dir = &args.state_dir;
    match NetworkFile::read(dir)? {
        None => println!("no {STATE_FILE} in {}: no network to stop", dir.display()),
        Some(file) => {
            let pids: Vec<u32> = file.nodes.iter().map(|n| n.pid).collect();
            let count = stop_groups(&pids);
            let left: Vec<String> = file
                .nodes
                .iter()
                .filter(|n| node_alive(n.pid))
                .map(|n| format!("{} (pid {})", n.name, n.pid))
                .collect();
            if !left.is_empty() {
                bail!("could not stop {}", left.join(", "));
            }
            println!(
                "stopped the network in {} ({} node(s), {count} process(es) signalled)",
                dir.display(),
                file.nodes.len()
            );
        }
    }
    if args.clean && dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        println!("removed {}", dir.display());
    }
    Ok(())
}

/// The value of `metric{channel="mychannel"}` in a Prometheus text body.
fn metric_value(body: &str, metric: &str) -> Option<u64> {
    let prefix = format!("{metric}{{channel=\"{CHANNEL}\"}}");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    let dir = &args.state_dir;
    let file = NetworkFile::read(dir)?.ok_or_else(|| {
        anyhow!(
            "no {STATE_FILE} in {}: start a network with `twill network up --state-dir {}`",
            dir.display(),
            dir.display()
        )
    })?;
    println!(
        "{:<24} {:<8} {:<8} {:<8} {:<7} {:<10} ADDRESS",
        "NAME", "KIND", "PID", "PROCESS", "HEIGHT", "HEALTH"
    );
    let mut running = 0;
    for n in &file.nodes {
        let up = node_alive(n.pid);
        if up {
            running += 1;
        }
        if n.kind == "ca" {
            let health = if !up {
                "-"
            } else if n
                .address
                .parse::<SocketAddr>()
                .ok()
                .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
            {
                "listening"
            } else {
                "unreachable"
            };
            println!(
                "{:<24} {:<8} {:<8} {:<8} {:<7} {:<10} https://{}",
                n.name,
                n.kind,
                n.pid,
                if up { "running" } else { "stopped" },
                "-",
                health,
                n.address
            );
            continue;
        }
        let metric = if n.kind == "peer" {
            "ledger_blockchain_height"
        } else {
            "ledger_height"
        };
        let height = if up {
            http_get(&n.operations, "/metrics")
                .and_then(|b| metric_value(&b, metric))
                .map_or("-".to_string(), |h| h.to_string())
        } else {
            "-".into()
        };
        let health = if up {
            match http_get_status(&n.operations, "/healthz") {
                Some((200, _)) => "OK".to_string(),
                Some((code, _)) => format!("HTTP {code}"),
                None => "unreachable".into(),
            }
        } else {
            "-".into()
        };
        println!(
            "{:<24} {:<8} {:<8} {:<8} {:<7} {:<10} {}",
            n.name,
            n.kind,
            n.pid,
            if up { "running" } else { "stopped" },
            height,
            health,
            n.address
        );
    }
    println!(
        "{running} of {} node(s) running; channel {}",
        file.nodes.len(),
        file.channel
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Certificate authorities (`up --ca`)
// ---------------------------------------------------------------------------

/// The CA registrar's name in the msp folder layout:
/// `users/caadmin@org<N>.example.com/msp`.
const CA_ADMIN: &str = "caadmin";
/// The bootstrap registrar of each CA, as in Fabric's test network.
const CA_BOOTSTRAP: (&str, &str) = ("admin", "adminpw");
/// The client identity registered and enrolled through each CA.
const APP_USER: &str = "appuser1";

/// An org that gets a CA with `--ca`.
struct CaOrg {
    /// Org number (1, 2); 0 for the orderer org.
    org: u8,
    /// `org<N>.example.com`, or `example.com` for the orderer org.
    domain: String,
    /// The org's folder under `organizations/`.
    dir: PathBuf,
    /// The CA's home: `organizations/fabric-ca/org<N>` or
    /// `organizations/fabric-ca/ordererOrg`.
    home: PathBuf,
    /// `ca-org<N>` or `ca-orderer`, the CA name clients pass (`--caname`).
    ca_name: String,
}

/// The orderer org, then Org1 and Org2.
fn ca_orgs(root: &Path) -> Vec<CaOrg> {
    let mut orgs = vec![CaOrg {
        org: 0,
        domain: "example.com".into(),
        dir: root.join("organizations/ordererOrganizations/example.com"),
        home: root.join("organizations/fabric-ca/ordererOrg"),
        ca_name: "ca-orderer".into(),
    }];
    for org in [1u8, 2] {
        orgs.push(CaOrg {
            org,
            domain: format!("org{org}.example.com"),
            dir: org_dir(root, org),
            home: root.join(format!("organizations/fabric-ca/org{org}")),
            ca_name: format!("ca-org{org}"),
        });
    }
    orgs
}

/// A `twill-ca` of one org.
struct CaProc {
    /// Org number (1, 2); 0 for the orderer org.
    org: u8,
    /// `org<N>.example.com`, or `example.com` for the orderer org.
    domain: String,
    /// The org's folder under `organizations/`.
    org_dir: PathBuf,
    /// The CA's home.
    home: PathBuf,
    /// `ca.<domain>`, the key in the connection profile.
    name: String,
    /// `ca-org<N>` or `ca-orderer`, the CA name clients pass (`--caname`).
    ca_name: String,
    /// `127.0.0.1:<port>`.
    address: String,
    /// The CA's TLS server certificate (`<home>/tls-cert.pem`).
    tls_cert: PathBuf,
    /// The org CA certificate cryptogen made, which the CA signs with: what
    /// the org's MSP folders hold in `cacerts/`, and what clients trust for
    /// the CA's TLS (it issued the TLS certificate).
    tls_root: PathBuf,
    /// Its log file.
    log: PathBuf,
}

impl CaProc {
    fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// `users/<user>@<domain>/msp` of the CA's org.
    fn user_msp(&self, user: &str) -> PathBuf {
        self.org_dir
            .join("users")
            .join(format!("{user}@{}", self.domain))
            .join("msp")
    }
}

/// Starts one `twill-ca` for the orderer org and one per peer org, each
/// signing with the org CA key pair cryptogen made (so what it issues
/// belongs to the org's MSP), and serving HTTPS with a TLS certificate of
/// its own for 127.0.0.1 and localhost. Records them in network.json and
/// copies each CA's TLS certificate and URL into the org's `ca/` folder.
fn start_cas(
    root: &Path,
    bins: &Path,
    started: &mut Started,
    file: &mut NetworkFile,
    progress: &mut Progress,
) -> anyhow::Result<Vec<CaProc>> {
    let orgs = ca_orgs(root);
    let ports = crate::netkit::free_ports(orgs.len())?;
    let bin = bins.join("twill-ca");
    let mut cas = Vec::new();
    for (ca_org, port) in orgs.into_iter().zip(ports) {
        let CaOrg {
            org,
            domain,
            dir,
            home,
            ca_name,
        } = ca_org;
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let ca_dir = dir.join("ca");
        let ca_cert = ca_dir.join(format!("ca.{domain}-cert.pem"));
        let name = format!("ca.{domain}");
        let log = root.join("logs").join(format!("{name}.log"));
        progress.log = Some(log.clone());
        let mut child = crate::netkit::node_command(&bin, &log)?
            .arg("--home")
            .arg(&home)
            .arg("--port")
            .arg(port.to_string())
            .arg("--ca-name")
            .arg(&ca_name)
            .arg("-b")
            .arg(format!("{}:{}", CA_BOOTSTRAP.0, CA_BOOTSTRAP.1))
            .arg("--ca-cert")
            .arg(&ca_cert)
            .arg("--ca-key")
            .arg(ca_dir.join("priv_sk"))
            .args(["--tls", "--csr-hosts", "127.0.0.1,localhost"])
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let address = format!("127.0.0.1:{port}");
        let record = NodeRecord {
            name: name.clone(),
            kind: "ca".into(),
            pid: child.id(),
            address: address.clone(),
            operations: String::new(),
            log: log.clone(),
        };
        started.nodes.push(record.clone());
        file.nodes.push(record);
        file.write(root)?;
        let waited = wait_port(&mut child, &name, port, &log);
        started.cas.push(child);
        waited?;
        let tls_cert = home.join("tls-cert.pem");
        if !tls_cert.is_file() {
            bail!(
                "{name} listens but wrote no TLS certificate {}",
                tls_cert.display()
            );
        }
        std::fs::copy(&tls_cert, ca_dir.join("tls-cert.pem"))
            .with_context(|| format!("copying {} to {}", tls_cert.display(), ca_dir.display()))?;
        let url_file = ca_dir.join("ca-url.txt");
        std::fs::write(&url_file, format!("https://{address}\n"))
            .with_context(|| format!("writing {}", url_file.display()))?;
        cas.push(CaProc {
            org,
            domain,
            org_dir: dir,
            home,
            name,
            ca_name,
            address,
            tls_cert,
            tls_root: ca_cert,
            log,
        });
    }
    Ok(cas)
}

/// An identity a CA registers and enrolls in place of cryptogen's.
struct CaIdentity {
    /// Enrollment ID, also the certificate's CN: cryptogen's CN
    /// (`peer0.org1.example.com`, `orderer0.example.com`, `Admin@org1.example.com`).
    id: String,
    /// Registered type, which the CA puts as the first OU (NodeOUs).
    kind: &'static str,
    /// The msp folder whose `signcerts/` and `keystore/` it replaces.
    msp: PathBuf,
}

/// What `ca`'s org enrolls through it: its nodes (peers or orderers), its
/// Admin and, for a peer org, its User1.
fn ca_identities(ca: &CaProc, net: &OrdererNet) -> Vec<CaIdentity> {
    let mut ids = Vec::new();
    if ca.org == 0 {
        for node in &net.orderers {
            let id = format!("{}.{}", node.name, ca.domain);
            ids.push(CaIdentity {
                msp: ca.org_dir.join("orderers").join(&id).join("msp"),
                id,
                kind: "orderer",
            });
        }
    } else {
        for slot in net.peers.iter().filter(|p| p.org == ca.org) {
            ids.push(CaIdentity {
                id: slot.name.clone(),
                kind: "peer",
                msp: ca.org_dir.join("peers").join(&slot.name).join("msp"),
            });
        }
    }
    let mut users = vec![("Admin", "admin")];
    if ca.org != 0 {
        users.push(("User1", "client"));
    }
    for (user, kind) in users {
        ids.push(CaIdentity {
            id: format!("{user}@{}", ca.domain),
            kind,
            msp: ca.user_msp(user),
        });
    }
    ids
}

/// Through `ca`: enrolls the bootstrap registrar into
/// `users/caadmin@<domain>/msp`; for a peer org registers the client
/// identity appuser1 and enrolls it into `users/appuser1@<domain>/msp`;
/// then registers and enrolls each of `ids`, replacing the signing
/// identity (`signcerts/`, `keystore/`) cryptogen put in its msp folder.
async fn enroll_org_identities(ca: &CaProc, ids: &[CaIdentity]) -> anyhow::Result<()> {
    use crate::ca::{
        enroll, register, CaClient, CaTls, CaUrl, EnrollOptions, MspDir, Registration,
    };

    let url = CaUrl::parse(&ca.url())?;
    let tls = CaTls {
        root_files: vec![ca.tls_root.clone()],
        client: None,
    };
    let client = CaClient::new(&url, &tls, Some(ca.ca_name.clone()))?;
    let admin_msp = MspDir::new(ca.user_msp(CA_ADMIN));
    enroll(
        &client,
        CA_BOOTSTRAP.0,
        CA_BOOTSTRAP.1,
        &EnrollOptions::default(),
        &admin_msp,
    )
    .await
    .with_context(|| format!("enrolling {}'s registrar {}", ca.name, CA_BOOTSTRAP.0))?;
    let registrar = admin_msp.signer()?;
    if ca.org != 0 {
        let secret = format!("{APP_USER}pw");
        register(
            &client,
            &registrar,
            &Registration {
                id: APP_USER.into(),
                secret: Some(secret.clone()),
                r#type: "client".into(),
                affiliation: format!("org{}.department1", ca.org),
                attrs: Vec::new(),
                max_enrollments: -1,
            },
        )
        .await
        .with_context(|| format!("registering {APP_USER} with {}", ca.name))?;
        enroll(
            &client,
            APP_USER,
            &secret,
            &EnrollOptions::default(),
            &MspDir::new(ca.user_msp(APP_USER)),
        )
        .await
        .with_context(|| format!("enrolling {APP_USER} with {}", ca.name))?;
    }

    let staging_root = ca.home.join("enrollments");
    for identity in ids {
        // The registrar's affiliation (the root): the certificate's only OU
        // is the type, as cryptogen's.
        let secret = register(
            &client,
            &registrar,
            &Registration {
                id: identity.id.clone(),
                secret: None,
                r#type: identity.kind.into(),
                affiliation: String::new(),
                attrs: Vec::new(),
                max_enrollments: -1,
            },
        )
        .await
        .with_context(|| format!("registering {} with {}", identity.id, ca.name))?;
        let staging = MspDir::new(staging_root.join(&identity.id));
        enroll(
            &client,
            &identity.id,
            &secret,
            &EnrollOptions::default(),
            &staging,
        )
        .await
        .with_context(|| format!("enrolling {} with {}", identity.id, ca.name))?;
        replace_signing_identity(staging.path(), &identity.msp, &ca.tls_root)?;
        MspDir::new(identity.msp.clone()).signer()?;
    }
    if staging_root.exists() {
        std::fs::remove_dir_all(&staging_root)
            .with_context(|| format!("removing {}", staging_root.display()))?;
    }
    Ok(())
}

/// The DER certificates of PEM file `path`.
fn pem_certs(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let blocks = twill_crypto::pem::parse_pem_blocks(&text)
        .map_err(|e| anyhow!("{} is not PEM: {e}", path.display()))?;
    Ok(blocks.into_iter().map(|(_, der)| der).collect())
}

/// Moves the enrollment in msp folder `from` into msp folder `to`:
/// `to`'s `signcerts/` and `keystore/` get exactly `from`'s. `to` keeps its
/// `cacerts/`, `tlscacerts/` and NodeOUs `config.yaml`, which stay right
/// because the CA's root (checked against `org_ca`) is the org CA they name.
fn replace_signing_identity(from: &Path, to: &Path, org_ca: &Path) -> anyhow::Result<()> {
    let expected = pem_certs(org_ca)?;
    let cacerts = from.join("cacerts");
    let mut roots = Vec::new();
    for entry in
        std::fs::read_dir(&cacerts).with_context(|| format!("reading {}", cacerts.display()))?
    {
        roots.extend(pem_certs(&entry?.path())?);
    }
    if roots != expected {
        bail!(
            "the CA's root in {} is not the org CA {}",
            cacerts.display(),
            org_ca.display()
        );
    }
    for sub in ["signcerts", "keystore"] {
        let src = from.join(sub);
        let dst = to.join(sub);
        if dst.exists() {
            std::fs::remove_dir_all(&dst).with_context(|| format!("removing {}", dst.display()))?;
        }
        std::fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
        for entry in
            std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))?
        {
            let path = entry?.path();
            let Some(name) = path.file_name() else {
                continue;
            };
            std::fs::copy(&path, dst.join(name))
                .with_context(|| format!("copying {} to {}", path.display(), dst.display()))?;
        }
    }
    Ok(())
}
