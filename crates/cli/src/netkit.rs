//! A local network of Twill processes for tests, benchmarks and demos.
//!
//! [`OrdererNet::create`] lays out everything a set of orderers needs in one
//! folder — crypto material (cryptogen), a `configtx.yaml` whose consenters
//! listen on free loopback ports, the channel's genesis block, and one
//! `ordererN.yaml` per node — and then starts, kills and restarts
//! `twill-orderer` processes, joins them to the channel through the channel
//! participation API, and builds signed envelopes for Broadcast and Deliver.
//!
//! ```text
//! <root>/
//!   crypto-config.yaml, configtx.yaml, <channel>.block
//!   organizations/...        cryptogen output
//!   orderer0.yaml ...        node configs
//!   data/orderer0/ ...       ledgers
//!   logs/orderer0.log ...    process output
//! ```

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prost::Message;
use twill_msp::SigningIdentity;
use twill_protos::common::{ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader};
use twill_protos::orderer::{seek_info, seek_position, SeekInfo, SeekPosition, SeekSpecified};

/// Knobs of a network.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Number of orderers (all consenters).
    pub orderers: usize,
    /// Channel to create.
    pub channel: String,
    /// Channel BatchTimeout, Go duration text.
    pub batch_timeout: String,
    /// Channel MaxMessageCount.
    pub max_message_count: u32,
    /// Raft tick interval written into the channel config.
    pub tick_interval: String,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            orderers: 3,
            channel: "mychannel".into(),
            batch_timeout: "250ms".into(),
            max_message_count: 500,
            tick_interval: "100ms".into(),
        }
    }
}

/// Ports of one orderer.
#[derive(Debug, Clone, Copy)]
pub struct OrdererPorts {
    /// Broadcast / Deliver.
    pub client: u16,
    /// Raft traffic between orderers.
    pub cluster: u16,
    /// Channel participation REST (mTLS).
    pub admin: u16,
    /// `/healthz` and `/metrics`.
    pub operations: u16,
}

/// A peer the network's crypto material and channel config were made for
/// (see [`OrdererNet::create_with_peers`]); nothing runs it yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSlot {
    /// Org number: 1 for Org1, 2 for Org2.
    pub org: u8,
    /// Index in its org: `peer<index>.org<org>.example.com`.
    pub index: usize,
    /// `peer0.org1.example.com`, ...
    pub name: String,
    /// Its gRPC port on 127.0.0.1, as written in the org's `AnchorPeers`.
    pub port: u16,
    /// Its operations port (`/healthz`, `/metrics`) on 127.0.0.1.
    pub operations: u16,
}

/// The two peer orgs' names and domains.
const PEER_ORGS: [(&str, &str); 2] = [("Org1", "org1.example.com"), ("Org2", "org2.example.com")];

/// One orderer of the network.
#[derive(Debug)]
pub struct OrdererNode {
    /// `orderer0`, `orderer1`, ...
    pub name: String,
    /// Its ports on 127.0.0.1.
    pub ports: OrdererPorts,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    child: Option<Child>,
}

impl OrdererNode {
    /// `127.0.0.1:<client port>`.
    pub fn client_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.client)
    }

    /// `127.0.0.1:<admin port>`.
    pub fn admin_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.admin)
    }

    /// `127.0.0.1:<operations port>`.
    pub fn operations_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.operations)
    }

    /// Whether the process was started and has not been killed.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// A folder holding a whole orderer network, and its processes.
#[derive(Debug)]
pub struct OrdererNet {
    /// The folder.
    pub root: PathBuf,
    /// The options it was made with.
    pub options: NetOptions,
    /// The orderers, in consenter order.
    pub orderers: Vec<OrdererNode>,
    /// The channel's genesis block file.
    pub genesis_block: PathBuf,
    /// The peers planned by [`OrdererNet::create_with_peers`], Org1's
    /// first, each org's in index order; empty after [`OrdererNet::create`].
    pub peers: Vec<PeerSlot>,
    bin_dir: PathBuf,
}

/// Reserves `n` distinct free ports on 127.0.0.1 (bound together, then
/// released, so they are distinct; another process could still take one
/// before the orderer binds it, which is unlikely on a test machine).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("reserving free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A command for node binary `bin` with its output appended to `log` (the
/// log's folder is created), no stdin, and `RUST_LOG` from `TWILL_NET_LOG`
/// (default `info`). Callers add the arguments and spawn it.
pub(crate) fn node_command(bin: &Path, log: &Path) -> anyhow::Result<Command> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut command = Command::new(bin);
    command
        .env(
            "RUST_LOG",
            std::env::var("TWILL_NET_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    Ok(command)
}

/// Where the Twill binaries are: `TWILL_BIN_DIR`, else the folder of the
/// running executable (or its parent, for test binaries in `target/*/deps`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TWILL_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .context("executable has no folder")?;
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

fn crypto_config(orderers: usize, peers_per_org: usize) -> String {
    let mut s = String::from(
        "OrdererOrgs:\n  - Name: Orderer\n    Domain: example.com\n    EnableNodeOUs: true\n    Specs:\n",
    );
    for i in 0..orderers {
        s.push_str(&format!(
            "      - Hostname: orderer{i}\n        SANS: [localhost, 127.0.0.1]\n"
        ));
    }
    s.push_str("PeerOrgs:\n");
    for (org, domain) in PEER_ORGS {
        s.push_str(&format!(
            "  - Name: {org}\n    Domain: {domain}\n    EnableNodeOUs: true\n    Template:\n      Count: {peers_per_org}\n      SANS: [localhost, 127.0.0.1]\n    Users:\n      Count: 1\n"
        ));
    }
    s
}

fn org_policies(msp: &str) -> String {
    format!(
        "    Policies:\n      Readers:\n        Type: Signature\n        Rule: \"OR('{msp}.member')\"\n      Writers:\n        Type: Signature\n        Rule: \"OR('{msp}.member')\"\n      Admins:\n        Type: Signature\n        Rule: \"OR('{msp}.admin')\"\n      Endorsement:\n        Type: Signature\n        Rule: \"OR('{msp}.peer')\"\n"
    )
}

fn implicit(rules: &[(&str, &str)]) -> String {
    let mut s = String::from("    Policies:\n");
    for (name, rule) in rules {
        s.push_str(&format!(
            "      {name}:\n        Type: ImplicitMeta\n        Rule: \"{rule}\"\n"
        ));
    }
    s
}

/// The channel's configtx.yaml; `anchors[i]` are the AnchorPeers ports of
/// `PEER_ORGS[i]` (all on 127.0.0.1).
fn configtx(opts: &NetOptions, ports: &[OrdererPorts], anchors: &[Vec<u16>; 2]) -> String {
    let mut s = String::from("Profiles:\n  Net:\n");
    s.push_str(&implicit(&[
        ("Readers", "ANY Readers"),
        ("Writers", "ANY Writers"),
        ("Admins", "MAJORITY Admins"),
    ]));
    s.push_str("    Capabilities:\n      V2_0: true\n");
    s.push_str("    Orderer:\n      OrdererType: etcdraft\n");
    s.push_str(&format!(
        "      BatchTimeout: {}\n      BatchSize:\n        MaxMessageCount: {}\n        AbsoluteMaxBytes: 10 MB\n        PreferredMaxBytes: 2 MB\n",
        opts.batch_timeout, opts.max_message_count
    ));
    s.push_str("      EtcdRaft:\n        Consenters:\n");
    for (i, p) in ports.iter().enumerate() {
        let tls = format!(
            "organizations/ordererOrganizations/example.com/orderers/orderer{i}.example.com/tls/server.crt"
        );
        s.push_str(&format!(
            "          - Host: 127.0.0.1\n            Port: {}\n            ClientTLSCert: {tls}\n            ServerTLSCert: {tls}\n",
            p.cluster
        ));
    }
    s.push_str(&format!(
        "        Options:\n          TickInterval: {}\n          ElectionTick: 10\n          HeartbeatTick: 1\n",
        opts.tick_interval
    ));
    s.push_str("      Organizations:\n        - Name: OrdererOrg\n          ID: OrdererMSP\n          MSPDir: organizations/ordererOrganizations/example.com/msp\n          OrdererEndpoints:\n");
    for p in ports {
        s.push_str(&format!("            - 127.0.0.1:{}\n", p.client));
    }
    s.push_str(&indent(&org_policies("OrdererMSP"), 6));
    s.push_str(&indent(
        &implicit(&[
            ("Readers", "ANY Readers"),
            ("Writers", "ANY Writers"),
            ("Admins", "MAJORITY Admins"),
            ("BlockValidation", "ANY Writers"),
        ]),
        2,
    ));
    s.push_str("      Capabilities:\n        V2_0: true\n");
    s.push_str("    Application:\n      Organizations:\n");
    for ((org, domain), ports) in PEER_ORGS.iter().zip(anchors) {
        let msp = format!("{org}MSP");
        s.push_str(&format!(
            "        - Name: {msp}\n          ID: {msp}\n          MSPDir: organizations/peerOrganizations/{domain}/msp\n          AnchorPeers:\n"
        ));
        for port in ports {
            s.push_str(&format!(
                "            - Host: 127.0.0.1\n              Port: {port}\n"
            ));
        }
        s.push_str(&indent(&org_policies(&msp), 6));
    }
    s.push_str(&indent(
        &implicit(&[
            ("Readers", "ANY Readers"),
            ("Writers", "ANY Writers"),
            ("Admins", "MAJORITY Admins"),
            ("LifecycleEndorsement", "MAJORITY Endorsement"),
            ("Endorsement", "MAJORITY Endorsement"),
        ]),
        2,
    ));
    s.push_str("      Capabilities:\n        V2_5: true\n");
    s
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

fn orderer_yaml(i: usize, p: &OrdererPorts, data: &Path) -> String {
    let node =
        format!("organizations/ordererOrganizations/example.com/orderers/orderer{i}.example.com");
    let ca = "organizations/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem";
    format!(
        "General:
  ListenAddress: 127.0.0.1
  ListenPort: {client}
  TLS:
    Enabled: true
    PrivateKey: {node}/tls/server.key
    Certificate: {node}/tls/server.crt
    RootCAs: [{ca}]
    ClientAuthRequired: false
  Cluster:
    ListenAddress: 127.0.0.1
    ListenPort: {cluster}
    ServerCertificate: {node}/tls/server.crt
    ServerPrivateKey: {node}/tls/server.key
    ClientCertificate: {node}/tls/server.crt
    ClientPrivateKey: {node}/tls/server.key
    RootCAs: [{ca}]
  LocalMSPDir: {node}/msp
  LocalMSPID: OrdererMSP
  BootstrapMethod: none
FileLedger:
  Location: {data}
Admin:
  ListenAddress: 127.0.0.1:{admin}
  TLS:
    Enabled: true
    PrivateKey: {node}/tls/server.key
    Certificate: {node}/tls/server.crt
    RootCAs: [{ca}]
    ClientAuthRequired: true
    ClientRootCAs: [{ca}]
Operations:
  ListenAddress: 127.0.0.1:{ops}
ChannelParticipation:
  Enabled: true
",
        client = p.client,
        cluster = p.cluster,
        admin = p.admin,
        ops = p.operations,
        data = data.display(),
    )
}

impl OrdererNet {
    /// Lays out a new network under `root` (which should be empty), with
    /// crypto material for one peer per org and the anchor peers of Org1 and
    /// Org2 at 127.0.0.1:7051 and 127.0.0.1:9051.
    pub fn create(root: &Path, options: NetOptions) -> anyhow::Result<OrdererNet> {
        OrdererNet::create_inner(root, options, None)
    }

    /// Like [`OrdererNet::create`], for `peers_per_org` peers in each of Org1
    /// and Org2: cryptogen makes `peer0..peer<N-1>` of each org (as Fabric's
    /// `Template: Count: N`), each peer gets two free ports (gRPC and
    /// operations, in [`OrdererNet::peers`]) and every peer is an anchor peer
    /// of its org in the channel config, at `127.0.0.1:<port>`.
    pub fn create_with_peers(
        root: &Path,
        options: NetOptions,
        peers_per_org: usize,
    ) -> anyhow::Result<OrdererNet> {
        if peers_per_org == 0 {
            bail!("a network needs at least one peer per org");
        }
        OrdererNet::create_inner(root, options, Some(peers_per_org))
    }

    fn create_inner(
        root: &Path,
        options: NetOptions,
        peers_per_org: Option<usize>,
    ) -> anyhow::Result<OrdererNet> {
        if options.orderers == 0 {
            bail!("a network needs at least one orderer");
        }
        std::fs::create_dir_all(root.join("logs"))
            .with_context(|| format!("creating {}", root.display()))?;
        let cc = root.join("crypto-config.yaml");
        std::fs::write(
            &cc,
            crypto_config(options.orderers, peers_per_org.unwrap_or(1)),
        )
        .with_context(|| format!("writing {}", cc.display()))?;
        let crypto = twill_cryptogen::load_config(&cc)?;
        twill_cryptogen::generate(&crypto, &root.join("organizations"))?;

        // All ports in one reservation, so that they are distinct.
        let peer_count = 2 * peers_per_org.unwrap_or(0);
        let flat = free_ports(options.orderers * 4 + peer_count * 2)?;
        let (orderer_flat, peer_flat) = flat.split_at(options.orderers * 4);
        let mut peers = Vec::new();
        for (i, pair) in peer_flat.chunks(2).enumerate() {
            let per_org = peers_per_org.unwrap_or(1);
            let org = u8::try_from(i / per_org + 1).context("too many peer orgs")?;
            let index = i % per_org;
            peers.push(PeerSlot {
                org,
                index,
                name: format!("peer{index}.org{org}.example.com"),
                port: pair[0],
                operations: pair[1],
            });
        }
        let anchors: [Vec<u16>; 2] = if peers.is_empty() {
            [vec![7051], vec![9051]]
        } else {
            [1u8, 2].map(|org| {
                peers
                    .iter()
                    .filter(|p| p.org == org)
                    .map(|p| p.port)
                    .collect()
            })
        };
        let ports: Vec<OrdererPorts> = orderer_flat
            .chunks(4)
            .map(|c| OrdererPorts {
                client: c[0],
                cluster: c[1],
                admin: c[2],
                operations: c[3],
            })
            .collect();
        let configtx_path = root.join("configtx.yaml");
        std::fs::write(&configtx_path, configtx(&options, &ports, &anchors))
            .with_context(|| format!("writing {}", configtx_path.display()))?;
        let loaded = twill_configtx::profile::LoadedConfigtx::load(&configtx_path)?;
        let block =
            twill_configtx::genesis::genesis_block_from_profile(&loaded, "Net", &options.channel)?;
        let genesis_block = root.join(format!("{}.block", options.channel));
        std::fs::write(&genesis_block, block.encode_to_vec())?;

        let mut orderers = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let name = format!("orderer{i}");
            let config = root.join(format!("{name}.yaml"));
            let data = root.join("data").join(&name);
            std::fs::write(&config, orderer_yaml(i, p, &data))?;
            orderers.push(OrdererNode {
                log: root.join("logs").join(format!("{name}.log")),
                name,
                ports: *p,
                config,
                child: None,
            });
        }
        Ok(OrdererNet {
            root: root.to_path_buf(),
            options,
            orderers,
            genesis_block,
            peers,
            bin_dir: bin_dir()?,
        })
    }

    /// Starts orderer `i` (output appended to its log file).
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let bin = self.bin_dir.join("twill-orderer");
        let isolate = isolate_file(&self.root, i);
        let node = self
            .orderers
            .get_mut(i)
            .with_context(|| format!("no orderer {i}"))?;
        let child = node_command(&bin, &node.log)?
            .arg("--config")
            .arg(&node.config)
            .env("TWILL_TEST_ISOLATE_FILE", &isolate)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Starts every orderer and waits until each accepts connections.
    pub fn start_all(&mut self, timeout: Duration) -> anyhow::Result<()> {
        for i in 0..self.orderers.len() {
            self.start(i)?;
        }
        for i in 0..self.orderers.len() {
            self.wait_listening(i, timeout)?;
        }
        Ok(())
    }

    /// Waits until orderer `i` accepts TCP connections on its client and
    /// admin ports.
    pub fn wait_listening(&mut self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let node = &mut self.orderers[i];
        for port in [node.ports.client, node.ports.admin] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if !node.is_running() {
                    bail!(
                        "{} exited while starting; see {}",
                        node.name,
                        node.log.display()
                    );
                }
                if Instant::now() > deadline {
                    bail!("{} did not listen on {addr} in time", node.name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Cuts orderer `i` off from the other orderers (all cluster traffic
    /// dropped both ways, as in a network partition) or heals it. Clients
    /// can still reach it. Takes effect within ~50 ms.
    pub fn isolate(&self, i: usize, isolated: bool) -> anyhow::Result<()> {
        let file = isolate_file(&self.root, i);
        if isolated {
            std::fs::write(&file, b"isolated\n")
                .with_context(|| format!("writing {}", file.display()))?;
        } else if file.exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
        std::thread::sleep(Duration::from_millis(150));
        Ok(())
    }

    /// Process id of orderer `i`, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.orderers.get(i)?.child.as_ref().map(Child::id)
    }

    /// Kills orderer `i` with SIGKILL (no chance to flush anything).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.orderers[i].child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        Ok(())
    }

    /// Kills every running orderer.
    pub fn kill_all(&mut self) {
        for i in 0..self.orderers.len() {
            self.kill(i).ok();
        }
    }

    /// Joins orderer `i` to the channel from the genesis block, with
    /// `twill osnadmin channel join` as an admin would. Returns its output
    /// (`Status: 201` and the channel info JSON on success).
    pub fn join(&self, i: usize) -> anyhow::Result<String> {
        let node = self
            .orderers
            .get(i)
            .with_context(|| format!("no orderer {i}"))?;
        let (cert, key) = self.orderer_admin_tls();
        let ca = self.path(
            "organizations/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem",
        );
        let out = Command::new(self.bin_dir.join("twill"))
            .args(["osnadmin", "channel", "join"])
            .arg("--channel-id")
            .arg(&self.options.channel)
            .arg("--config-block")
            .arg(&self.genesis_block)
            .arg("-o")
            .arg(node.admin_address())
            .arg("--ca-file")
            .arg(&ca)
            .arg("--client-cert")
            .arg(&cert)
            .arg("--client-key")
            .arg(&key)
            .output()
            .context("running twill osnadmin")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || !stdout.contains("Status: 201") {
            bail!(
                "joining {} failed: {}{}",
                node.name,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(stdout)
    }

    /// Joins every orderer to the channel.
    pub fn join_all(&self) -> anyhow::Result<()> {
        for i in 0..self.orderers.len() {
            self.join(i)?;
        }
        Ok(())
    }

    /// Path under the network root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// PEM of the orderer org's TLS CA (what clients trust).
    pub fn orderer_tls_ca(&self) -> anyhow::Result<Vec<u8>> {
        let p = self.path(
            "organizations/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem",
        );
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// The orderer org admin's TLS client certificate and key files
    /// (for the admin API).
    pub fn orderer_admin_tls(&self) -> (PathBuf, PathBuf) {
        let dir =
            self.path("organizations/ordererOrganizations/example.com/users/Admin@example.com/tls");
        (dir.join("client.crt"), dir.join("client.key"))
    }

    /// A user's signing identity, e.g. `("org1.example.com", "Org1MSP", "User1")`.
    pub fn signer(&self, domain: &str, mspid: &str, user: &str) -> anyhow::Result<SigningIdentity> {
        let kind = if domain == "example.com" {
            "ordererOrganizations"
        } else {
            "peerOrganizations"
        };
        let dir = self
            .path("organizations")
            .join(kind)
            .join(domain)
            .join("users")
            .join(format!("{user}@{domain}"))
            .join("msp");
        Ok(SigningIdentity::from_msp_dir(&dir, mspid)?)
    }
}

fn isolate_file(root: &Path, i: usize) -> PathBuf {
    root.join(format!("orderer{i}.isolate"))
}

impl Drop for OrdererNet {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A signed ENDORSER_TRANSACTION-typed envelope carrying `data`, with a
/// fresh nonce and tx id. Enough for the ordering service, which checks the
/// header, creator and signature but not the transaction's content.
pub fn signed_envelope(
    signer: &SigningIdentity,
    channel: &str,
    data: Vec<u8>,
) -> anyhow::Result<(String, Envelope)> {
    let creator = signer.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = twill_configtx::block::compute_tx_id(&nonce, &creator);
    let ch =
        twill_configtx::block::channel_header(HeaderType::EndorserTransaction, 0, channel, &tx_id);
    let payload = Payload {
        header: Some(Header {
            channel_header: ch.encode_to_vec(),
            signature_header: SignatureHeader { creator, nonce }.encode_to_vec(),
        }),
        data,
    }
    .encode_to_vec();
    let signature = signer.sign(&payload)?;
    Ok((tx_id, Envelope { payload, signature }))
}

/// A signed Deliver seek request for blocks `start..=stop` (`stop = None`:
/// to the newest and keep waiting).
pub fn seek_envelope(
    signer: &SigningIdentity,
    channel: &str,
    start: u64,
    stop: Option<u64>,
) -> anyhow::Result<Envelope> {
    let position = |n: u64| SeekPosition {
        r#type: Some(seek_position::Type::Specified(SeekSpecified { number: n })),
    };
    seek_envelope_between(
        signer,
        channel,
        position(start),
        position(stop.unwrap_or(u64::MAX)),
    )
}

/// A signed Deliver seek request (`BLOCK_UNTIL_READY`, strict, whole
/// blocks) from `start` to `stop`.
pub fn seek_envelope_between(
    signer: &SigningIdentity,
    channel: &str,
    start: SeekPosition,
    stop: SeekPosition,
) -> anyhow::Result<Envelope> {
    let seek = SeekInfo {
        start: Some(start),
        stop: Some(stop),
        behavior: seek_info::SeekBehavior::BlockUntilReady as i32,
        error_response: seek_info::SeekErrorResponse::Strict as i32,
        content_type: seek_info::SeekContentType::Block as i32,
    };
    let creator = signer.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = twill_configtx::block::compute_tx_id(&nonce, &creator);
    let ch: ChannelHeader =
        twill_configtx::block::channel_header(HeaderType::DeliverSeekInfo, 0, channel, &tx_id);
    let payload = Payload {
        header: Some(Header {
            channel_header: ch.encode_to_vec(),
            signature_header: SignatureHeader { creator, nonce }.encode_to_vec(),
        }),
        data: seek.encode_to_vec(),
    }
    .encode_to_vec();
    let signature = signer.sign(&payload)?;
    Ok(Envelope { payload, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lays_out_a_network_with_free_ports() {
        let dir = tempfile::tempdir().unwrap();
        let net = OrdererNet::create(
            dir.path(),
            NetOptions {
                orderers: 3,
                ..Default::default()
            },
        )
        .unwrap();
        let bytes = std::fs::read(&net.genesis_block).unwrap();
        let block = twill_protos::common::Block::decode(bytes.as_slice()).unwrap();
        let (_, env) = twill_configtx::channel::config_from_block(&block).unwrap();
        let cfg =
            twill_configtx::channel::ChannelConfig::from_config(&env.config.unwrap()).unwrap();
        let ports: Vec<u32> = cfg.raft.consenters.iter().map(|c| c.port).collect();
        let expected: Vec<u32> = net
            .orderers
            .iter()
            .map(|o| u32::from(o.ports.cluster))
            .collect();
        assert_eq!(ports, expected);
        assert_eq!(cfg.batch_size.max_message_count, 500);
        assert_eq!(cfg.batch_timeout, Duration::from_millis(250));
        assert_eq!(cfg.application_orgs.len(), 2);
        for o in &net.orderers {
            assert!(o.config.is_file());
        }
        let user = net.signer("org1.example.com", "Org1MSP", "User1").unwrap();
        let (tx_id, env) = signed_envelope(&user, "mychannel", b"hello".to_vec()).unwrap();
        assert_eq!(tx_id.len(), 64);
        user.identity()
            .verify(&env.payload, &env.signature)
            .unwrap();
        seek_envelope(&user, "mychannel", 0, None).unwrap();
    }

    #[test]
    fn create_with_peers_makes_every_peer_an_anchor_peer() {
        let dir = tempfile::tempdir().unwrap();
        let net = OrdererNet::create_with_peers(dir.path(), NetOptions::default(), 3).unwrap();
        let names: Vec<&str> = net.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "peer0.org1.example.com",
                "peer1.org1.example.com",
                "peer2.org1.example.com",
                "peer0.org2.example.com",
                "peer1.org2.example.com",
                "peer2.org2.example.com",
            ]
        );
        for p in &net.peers {
            let node = dir.path().join(format!(
                "organizations/peerOrganizations/org{}.example.com/peers/{}",
                p.org, p.name
            ));
            assert!(node.join("msp/signcerts").is_dir(), "{}", node.display());
            assert!(node.join("tls/server.crt").is_file(), "{}", node.display());
        }
        let mut ports: Vec<u16> = net
            .peers
            .iter()
            .flat_map(|p| [p.port, p.operations])
            .collect();
        ports.extend(net.orderers.iter().flat_map(|o| {
            [
                o.ports.client,
                o.ports.cluster,
                o.ports.admin,
                o.ports.operations,
            ]
        }));
        let count = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), count, "ports are distinct");

        let bytes = std::fs::read(&net.genesis_block).unwrap();
        let block = twill_protos::common::Block::decode(bytes.as_slice()).unwrap();
        let (_, env) = twill_configtx::channel::config_from_block(&block).unwrap();
        let cfg =
            twill_configtx::channel::ChannelConfig::from_config(&env.config.unwrap()).unwrap();
        for org in [1u8, 2] {
            let info = &cfg.application_orgs[&format!("Org{org}MSP")];
            let expected: Vec<(String, u16)> = net
                .peers
                .iter()
                .filter(|p| p.org == org)
                .map(|p| ("127.0.0.1".to_string(), p.port))
                .collect();
            assert_eq!(info.anchor_peers, expected);
        }
        assert_eq!(cfg.batch_size.max_message_count, 500);
        assert_eq!(cfg.batch_timeout, Duration::from_millis(250));
        let json = twill_configtx::inspect::block_to_json(&block);
        let text = json.to_string();
        let app = &json["data"]["data"][0]["payload"]["data"]["config"]["channel_group"]["groups"]
            ["Application"]["policies"];
        for name in ["Endorsement", "LifecycleEndorsement"] {
            let policy = &app[name]["policy"]["value"];
            assert_eq!(policy["rule"], "MAJORITY", "{name}: {text}");
            assert_eq!(policy["sub_policy"], "Endorsement", "{name}: {text}");
        }
    }

    #[test]
    fn create_keeps_one_peer_per_org_and_fixed_anchor_peers() {
        let dir = tempfile::tempdir().unwrap();
        let net = OrdererNet::create(
            dir.path(),
            NetOptions {
                orderers: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(net.peers.is_empty());
        let org1 = dir
            .path()
            .join("organizations/peerOrganizations/org1.example.com/peers");
        assert!(org1.join("peer0.org1.example.com").is_dir());
        assert!(!org1.join("peer1.org1.example.com").exists());
        let bytes = std::fs::read(&net.genesis_block).unwrap();
        let block = twill_protos::common::Block::decode(bytes.as_slice()).unwrap();
        let (_, env) = twill_configtx::channel::config_from_block(&block).unwrap();
        let cfg =
            twill_configtx::channel::ChannelConfig::from_config(&env.config.unwrap()).unwrap();
        assert_eq!(
            cfg.application_orgs["Org2MSP"].anchor_peers,
            [("127.0.0.1".to_string(), 9051)]
        );
    }
}
