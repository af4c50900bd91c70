//! Pieces shared by `twill bench endorse` and `twill network up`: starting
//! `twill-peer` processes on free ports, waiting for a Raft leader, joining
//! peers and deploying the Rust asset-transfer chaincode through
//! `_lifecycle`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prost::Message;
use twill_comm::ClientTls;
use twill_protos::common::{Block, HeaderType};
use twill_protos::lifecycle::{
    chaincode_source, ApproveChaincodeDefinitionForMyOrgArgs, ChaincodeSource,
    CommitChaincodeDefinitionArgs, InstallChaincodeArgs, InstallChaincodeResult,
};
use twill_protos::peer::ChaincodeInput;

use crate::chaincode::{
    application_policy, build_package, lifecycle_call, lifecycle_proposal, Failure, OrdererTarget,
    PeerTarget, Submit,
};
use crate::netkit::free_ports;
use crate::peer::{build_proposal, load_signer, process_proposal, signed_proposal};

/// The channel of the networks.
pub(crate) const CHANNEL: &str = "mychannel";
/// The chaincode name.
pub(crate) const CHAINCODE: &str = "basic";

pub(crate) fn org_dir(root: &Path, org: u8) -> PathBuf {
    root.join(format!(
        "organizations/peerOrganizations/org{org}.example.com"
    ))
}

pub(crate) fn msp_dir(root: &Path, org: u8, user: &str) -> PathBuf {
    org_dir(root, org).join(format!("users/{user}@org{org}.example.com/msp"))
}

/// The TLS CA certificate of org `org`.
pub(crate) fn tls_ca(root: &Path, org: u8) -> PathBuf {
    org_dir(root, org).join(format!("tlsca/tlsca.org{org}.example.com-cert.pem"))
}

/// Where a peer's files go.
pub(crate) struct PeerFiles {
    /// Its core.yaml.
    pub config: PathBuf,
    /// Its ledgers.
    pub data: PathBuf,
    /// Its output.
    pub log: PathBuf,
}

/// A `twill-peer` process, killed on drop together with the chaincode
/// processes it started — unless [`PeerProc::detach`] was called.
pub(crate) struct PeerProc {
    pub org: u8,
    /// `peer0.org1.example.com`, ...
    pub name: String,
    pub child: Child,
    /// `127.0.0.1:<port>` of its gRPC services.
    pub address: String,
    /// `127.0.0.1:<port>` of `/healthz` and `/metrics`.
    pub operations: String,
    pub log: PathBuf,
    detached: bool,
}

impl PeerProc {
    /// Starts peer `index` of org `org` with the crypto material of `root`
    /// (relative paths in the config resolve against `root`, where the
    /// config must lie unless `root` is absolute), and waits until it
    /// listens. With `own_group`, the peer runs in its own process group
    /// (the chaincode processes it starts join it).
    pub fn start(
        program: &Path,
        root: &Path,
        org: u8,
        index: usize,
        files: &PeerFiles,
        own_group: bool,
        timeout: Duration,
    ) -> anyhow::Result<PeerProc> {
        let ports = free_ports(2)?;
        PeerProc::start_at(
            program,
            root,
            org,
            index,
            files,
            own_group,
            timeout,
            [ports[0], ports[1]],
        )
    }

    /// [`PeerProc::start`] on given ports: `[gRPC, operations]`.
    #[allow(clippy::too_many_arguments)]
    pub fn start_at(
        program: &Path,
        root: &Path,
        org: u8,
        index: usize,
        files: &PeerFiles,
        own_group: bool,
        timeout: Duration,
        ports: [u16; 2],
    ) -> anyhow::Result<PeerProc> {
        let name = format!("peer{index}.org{org}.example.com");
        let node = root.join(format!(
            "organizations/peerOrganizations/org{org}.example.com/peers/{name}"
        ));
        let node = node.display();
        let yaml = format!(
            "peer:
  id: {name}
  listenAddress: 127.0.0.1:{p}
  address: 127.0.0.1:{p}
  mspConfigPath: {node}/msp
  localMspId: Org{org}MSP
  fileSystemPath: {data}
  tls:
    enabled: true
    cert:
      file: {node}/tls/server.crt
    key:
      file: {node}/tls/server.key
    rootcert:
      file: {node}/tls/ca.crt
operations:
  listenAddress: 127.0.0.1:{o}
",
            p = ports[0],
            o = ports[1],
            data = files.data.display(),
        );
        let config = &files.config;
        if let Some(dir) = config.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(config, yaml).with_context(|| format!("writing {}", config.display()))?;
        let log = files.log.clone();
        let mut command = crate::netkit::node_command(program, &log)?;
        command.arg("--config").arg(config);
        if own_group {
            command.process_group(0);
        }
        // The peer reads CORE_* settings from its environment: only its
        // config file counts here.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CORE_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut peer = PeerProc {
            org,
            name,
            child,
            address: format!("127.0.0.1:{}", ports[0]),
            operations: format!("127.0.0.1:{}", ports[1]),
            log,
            detached: false,
        };
        peer.wait_listening(timeout)?;
        Ok(peer)
    }

    fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let addr: SocketAddr = self.address.parse()?;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "twill-peer {} exited with {status}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "twill-peer {} did not listen on {addr}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Leaves the process running when this value is dropped.
    pub fn detach(&mut self) {
        self.detached = true;
    }

    pub fn target(&self, root: &Path) -> anyhow::Result<PeerTarget> {
        let ca = tls_ca(root, self.org);
        Ok(PeerTarget {
            address: self.address.clone(),
            tls: Some(
                ClientTls::from_root_files(std::slice::from_ref(&ca))
                    .with_context(|| format!("reading {}", ca.display()))?,
            ),
        })
    }

    /// Pids of the chaincode processes this peer started, from its log.
    pub fn chaincode_pids(&self) -> Vec<u32> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("chaincode process started"))
            .filter_map(|l| {
                l.split("pid=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// The latest chaincode process this peer started.
    pub fn chaincode_pid(&self) -> Option<u32> {
        self.chaincode_pids().last().copied()
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let chaincodes = self.chaincode_pids();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The chaincode exits when its stream to the peer ends; make sure,
        // checking the pid still runs asset-transfer.
        for pid in chaincodes {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("asset-transfer") {
                let _ = Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// `GET path` on a plain HTTP listener; the body.
pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    http_get_status(addr, path).map(|(_, body)| body)
}

/// `GET path` on a plain HTTP listener; the status code and the body.
pub(crate) fn http_get_status(addr: &str, path: &str) -> Option<(u16, String)> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Waits until one of the orderers whose operations endpoints are `ops`
/// leads the channel's Raft group (their `/metrics`); `log` is named on
/// failure.
pub(crate) fn wait_leader(ops: &[String], log: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let leading = ops.iter().any(|ops| {
            http_get(ops, "/metrics").is_some_and(|body| {
                body.lines().any(|l| {
                    l.starts_with("raft_is_leader{") && l.contains(CHANNEL) && l.ends_with(" 1")
                })
            })
        });
        if leading {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no orderer became Raft leader of {CHANNEL}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Joins every peer (`peers[i]` of org `orgs[i]`) to the channel from the
/// genesis block, with its org's Admin.
pub(crate) async fn join_peers(
    root: &Path,
    genesis_block: &Path,
    peers: &[PeerTarget],
    orgs: &[u8],
) -> anyhow::Result<()> {
    let block = std::fs::read(genesis_block)
        .with_context(|| format!("reading {}", genesis_block.display()))?;
    Block::decode(block.as_slice()).context("the genesis block does not decode")?;
    for (peer, org) in peers.iter().zip(orgs) {
        let admin = load_signer(&msp_dir(root, *org, "Admin"), &format!("Org{org}MSP"))?;
        let proposal = signed_proposal(
            &admin,
            HeaderType::Config,
            "",
            "cscc",
            vec![b"JoinChain".to_vec(), block.clone()],
        )?;
        let reply = process_proposal(&peer.address, peer.tls.as_ref(), proposal).await?;
        let r = reply.response.unwrap_or_default();
        if r.status != 200 {
            bail!(
                "joining the peer at {} to {CHANNEL}: status {} - {}",
                peer.address,
                r.status,
                r.message
            );
        }
    }
    Ok(())
}

/// Where the `txid [...] committed ...` lines of the transactions go.
pub(crate) type Report<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Prints a line on stderr.
fn to_stderr(line: &str) {
    eprintln!("{line}");
}

/// Packages `chaincode` as a `process` package (in `root/cc-code`),
/// installs it on every peer (`peers[i]` of org `orgs[i]`), approves `basic`
/// once for each org (as its Admin, on its first peer) and commits it,
/// endorsed by `commit_peers`. `policy` is the endorsement policy, `None`
/// for the channel's default (`/Channel/Application/Endorsement`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deploy_chaincode(
    root: &Path,
    peers: &[PeerTarget],
    orgs: &[u8],
    commit_peers: &[PeerTarget],
    orderer: &OrdererTarget,
    chaincode: &Path,
    policy: Option<&str>,
    wait: Duration,
) -> anyhow::Result<String> {
    deploy_chaincode_reporting(
        root,
        peers,
        orgs,
        commit_peers,
        orderer,
        chaincode,
        policy,
        wait,
        &to_stderr,
    )
    .await
}

/// [`deploy_chaincode`], handing the commit lines to `report`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deploy_chaincode_reporting(
    root: &Path,
    peers: &[PeerTarget],
    orgs: &[u8],
    commit_peers: &[PeerTarget],
    orderer: &OrdererTarget,
    chaincode: &Path,
    policy: Option<&str>,
    wait: Duration,
    report: Report<'_>,
) -> anyhow::Result<String> {
    let code = root.join("cc-code");
    std::fs::create_dir_all(&code).with_context(|| format!("creating {}", code.display()))?;
    let run_json = serde_json::json!({
        "command": chaincode.to_string_lossy(),
        "args": [],
        "env": {"RUST_LOG": "warn"},
    });
    std::fs::write(code.join("run.json"), run_json.to_string())
        .with_context(|| format!("writing {}", code.join("run.json").display()))?;
    let package = build_package("basic_1.0", "process", &code)?;
    let mut package_id = String::new();
    for (peer, org) in peers.iter().zip(orgs) {
        let admin = load_signer(&msp_dir(root, *org, "Admin"), &format!("Org{org}MSP"))?;
        let payload = lifecycle_call(
            peer,
            &admin,
            "",
            "InstallChaincode",
            &InstallChaincodeArgs {
                chaincode_install_package: package.clone(),
            },
            "chaincode install",
        )
        .await
        .with_context(|| format!("installing {CHAINCODE} on the peer at {}", peer.address))?;
        package_id = InstallChaincodeResult::decode(payload.as_slice())
            .context("the peer's answer is not an InstallChaincodeResult")?
            .package_id;
    }

    let validation_parameter = application_policy(policy, None)?.encode_to_vec();
    let timeout = wait;
    let wait = Some(wait);
    let mut approved = Vec::new();
    for (peer, org) in peers.iter().zip(orgs) {
        if approved.contains(org) {
            continue;
        }
        approved.push(*org);
        let admin = load_signer(&msp_dir(root, *org, "Admin"), &format!("Org{org}MSP"))?;
        let approve = ApproveChaincodeDefinitionForMyOrgArgs {
            sequence: 1,
            name: CHAINCODE.into(),
            version: "1.0".into(),
            endorsement_plugin: "escc".into(),
            validation_plugin: "vscc".into(),
            validation_parameter: validation_parameter.clone(),
            collections: None,
            init_required: false,
            source: Some(ChaincodeSource {
                r#type: Some(chaincode_source::Type::LocalPackage(
                    chaincode_source::Local {
                        package_id: package_id.clone(),
                    },
                )),
            }),
        };
        let built = lifecycle_proposal(
            &admin,
            CHANNEL,
            "ApproveChaincodeDefinitionForMyOrg",
            &approve,
        )?;
        Submit {
            signer: &admin,
            channel: CHANNEL,
            peers: std::slice::from_ref(peer),
            orderer,
            wait,
            failure: Failure::Lifecycle,
        }
        .run_reporting(&built, report)
        .await
        .with_context(|| {
            format!(
                "approving {CHAINCODE} for Org{org} on the peer at {}",
                peer.address
            )
        })?;
    }
    let commit = CommitChaincodeDefinitionArgs {
        sequence: 1,
        name: CHAINCODE.into(),
        version: "1.0".into(),
        endorsement_plugin: "escc".into(),
        validation_plugin: "vscc".into(),
        validation_parameter,
        collections: None,
        init_required: false,
    };
    let first = orgs.first().copied().unwrap_or(1);
    let admin = load_signer(&msp_dir(root, first, "Admin"), &format!("Org{first}MSP"))?;
    // Each approval was waited for on its own org's peer only: a commit
    // peer of another org may not have committed the last block of
    // approvals yet, and then refuses to endorse the commit. Nothing was
    // ordered then, so ask again (a new proposal) until `wait` runs out.
    let deadline = Instant::now() + timeout;
    loop {
        let built = lifecycle_proposal(&admin, CHANNEL, "CommitChaincodeDefinition", &commit)?;
        let result = Submit {
            signer: &admin,
            channel: CHANNEL,
            peers: commit_peers,
            orderer,
            wait,
            failure: Failure::Lifecycle,
        }
        .run_reporting(&built, report)
        .await;
        match result {
            Ok(_) => break,
            Err(e)
                if format!("{e:#}").contains("missing approvals") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.context(format!("committing {CHAINCODE}"))),
        }
    }
    Ok(package_id)
}

/// Submits CreateAsset `id` as Org1's User1, endorsed by `peers`, and
/// waits until it commits VALID.
pub(crate) async fn create_asset(
    root: &Path,
    peers: &[PeerTarget],
    orderer: &OrdererTarget,
    id: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    create_asset_reporting(root, peers, orderer, id, wait, &to_stderr).await
}

/// [`create_asset`], handing the commit lines to `report`.
pub(crate) async fn create_asset_reporting(
    root: &Path,
    peers: &[PeerTarget],
    orderer: &OrdererTarget,
    id: &str,
    wait: Duration,
    report: Report<'_>,
) -> anyhow::Result<()> {
    let user = load_signer(&msp_dir(root, 1, "User1"), "Org1MSP")?;
    let built = build_proposal(
        &user,
        HeaderType::EndorserTransaction,
        CHANNEL,
        CHAINCODE,
        create_asset_input(id),
        BTreeMap::new(),
    )?;
    Submit {
        signer: &user,
        channel: CHANNEL,
        peers,
        orderer,
        wait: Some(wait),
        failure: Failure::Invoke,
    }
    .run_reporting(&built, report)
    .await
    .with_context(|| format!("invoking CreateAsset {id}"))?;
    Ok(())
}

pub(crate) fn create_asset_input(id: &str) -> ChaincodeInput {
    ChaincodeInput {
        args: ["CreateAsset", id, "blue", "5", "Tomoko", "300"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        ..Default::default()
    }
}
