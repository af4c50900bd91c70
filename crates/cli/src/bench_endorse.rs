//! `twill bench endorse`: endorsement throughput and latency of a peer
//! running the Rust asset-transfer chaincode.
//!
//! The setup is the one of the chaincode end-to-end test, with processes on
//! free loopback ports in a temporary folder: one `twill-orderer`, a
//! `twill-peer` of Org1 and one of Org2 joined to `mychannel`, and the
//! `asset-transfer` binary packaged as a `process` package, installed on
//! both peers, approved by both orgs and committed as `basic` (endorsement
//! policy AND(Org1, Org2)). The lifecycle steps are the library calls of
//! `twill chaincode` made in-process.
//!
//! The load: concurrent tasks send CreateAsset proposals of Org1's User1 to
//! Org1's peer (`protos.Endorser/ProcessProposal` over TLS) and require
//! status 200 and an endorsement. Proposals are endorsed only, never
//! ordered or committed.
//!
//! The peer-side cost of one chaincode call cannot be observed from
//! outside; it is estimated as the mean latency of a ReadAsset proposal
//! (one GetState) minus that of a qscc GetChainInfo proposal (no chaincode
//! call), both sent one at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use tonic::transport::Channel as GrpcChannel;
use twill_comm::ClientTls;
use twill_msp::SigningIdentity;
use twill_protos::common::HeaderType;
use twill_protos::peer::endorser_client::EndorserClient;
use twill_protos::peer::{ChaincodeInput, ProposalResponse, SignedProposal};

use crate::chaincode::{OrdererTarget, PeerTarget};
use crate::netkit::{bin_dir, NetOptions, OrdererNet};
use crate::netstart::{
    create_asset, create_asset_input, deploy_chaincode, join_peers, msp_dir, wait_leader,
    PeerFiles, PeerProc, CHAINCODE, CHANNEL,
};
use crate::peer::{build_proposal, load_signer};

const POLICY: &str = "AND('Org1MSP.peer','Org2MSP.peer')";
/// Key of the asset committed before the load, read by ReadAsset.
const READ_KEY: &str = "bench-read";
/// Time allowed for starting processes, Raft elections and commits.
const SETUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Time allowed for one proposal's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// CreateAsset endorsements before the measurement.
const WARMUP: usize = 50;
/// Sequential calls of each kind for the shim round-trip estimate.
const ROUND_TRIP_CALLS: usize = 200;

/// Arguments of `twill bench endorse`.
#[derive(Debug, Args)]
pub(crate) struct EndorseBench {
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent tasks, each sending one proposal at a time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// gRPC (HTTP/2, TLS) connections to the peer the tasks share.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Worker threads of the client's async runtime (one leaves the most
    /// CPU to the peer on a small machine; the client needs a fraction of
    /// a core).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Sign every proposal before the load starts instead of inline, so the
    /// client's signing does not compete with the peer for the cores. The
    /// pool holds 8,000 proposals per second of --duration (at most
    /// 200,000); the load stops early if it runs out.
    #[arg(long)]
    presign: bool,
    /// Keep the network folder (logs, ledgers) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// Runs the benchmark (see `twill bench endorse --help`).
pub(crate) fn endorse(b: EndorseBench) -> anyhow::Result<()> {
    if b.duration == 0 || b.concurrency == 0 || b.connections == 0 || b.client_threads == 0 {
        bail!(
            "--duration, --concurrency, --connections and --client-threads must be greater than 0"
        );
    }
    let bins = Binaries::find()?;
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let root = if b.keep {
        tmp.keep()
    } else {
        tmp.path().to_path_buf()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(b.client_threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = run(&rt, &b, &bins, &root);
    if b.keep {
        eprintln!("network folder kept: {}", root.display());
    }
    let report = result?;
    println!("{}", report.setup);
    println!("{}", report.details);
    println!("{}", report.round_trip);
    if let Some(cpu) = &report.cpu {
        println!("{cpu}");
    }
    println!(
        "endorse: {:.0} endorsements/s, p99 {:.1} ms, shim round trip {} us",
        report.rate, report.p99_ms, report.shim_us
    );
    Ok(())
}

/// The programs the benchmark starts.
struct Binaries {
    peer: PathBuf,
    chaincode: PathBuf,
}

impl Binaries {
    fn find() -> anyhow::Result<Binaries> {
        let dir = bin_dir()?;
        let missing: Vec<&str> = ["twill-peer", "twill-orderer", "asset-transfer"]
            .into_iter()
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} not found in {}: build them first with \
                 `cargo build --release -p twill-cli -p twill-peer -p twill-orderer -p asset-transfer` \
                 and run target/release/twill",
                missing.join(", "),
                dir.display()
            );
        }
        Ok(Binaries {
            peer: dir.join("twill-peer"),
            chaincode: dir.join("asset-transfer"),
        })
    }
}

/// What the benchmark prints.
struct Report {
    setup: String,
    details: String,
    round_trip: String,
    cpu: Option<String>,
    rate: f64,
    p99_ms: f64,
    shim_us: i64,
}

/// Sets up the network, measures, and stops every process (also on error:
/// the guards' `Drop`).
fn run(
    rt: &tokio::runtime::Runtime,
    b: &EndorseBench,
    bins: &Binaries,
    root: &Path,
) -> anyhow::Result<Report> {
    eprintln!("setting up an orderer and two peers in {}", root.display());
    let mut net = OrdererNet::create(
        root,
        NetOptions {
            orderers: 1,
            channel: CHANNEL.into(),
            batch_timeout: "100ms".into(),
            max_message_count: 10,
            tick_interval: "100ms".into(),
        },
    )?;
    net.start_all(SETUP_TIMEOUT)?;
    net.join_all()?;
    wait_leader(
        &[net.orderers[0].operations_address()],
        &net.orderers[0].log,
        SETUP_TIMEOUT,
    )?;
    // Killed on drop, also when a later step fails.
    let mut peers = Vec::new();
    for org in [1u8, 2] {
        let name = format!("peer0.org{org}");
        let files = PeerFiles {
            config: root.join(format!("{name}.yaml")),
            data: root.join("data").join(&name),
            log: root.join("logs").join(format!("{name}.log")),
        };
        peers.push(PeerProc::start(
            &bins.peer,
            root,
            org,
            0,
            &files,
            false,
            SETUP_TIMEOUT,
        )?);
    }
    let orderer = OrdererTarget {
        address: net.orderers[0].client_address(),
        tls: Some(ClientTls::new(vec![net.orderer_tls_ca()?])),
    };
    let targets = peers
        .iter()
        .map(|p| p.target(root))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let user = Arc::new(load_signer(&msp_dir(root, 1, "User1"), "Org1MSP")?);

    rt.block_on(deploy(&net, root, &targets, &orderer, &bins.chaincode))?;
    let mut watch = vec![("peer".to_string(), peers[0].child.id().to_string())];
    if let Some(pid) = peers[0].chaincode_pid() {
        watch.push(("chaincode".into(), pid.to_string()));
    }
    watch.push(("client".into(), "self".into()));
    eprintln!(
        "pids: {}",
        watch
            .iter()
            .map(|(n, p)| format!("{n} {p}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let result = rt.block_on(measure(b, &targets[0], user, &watch))?;

    let setup = format!(
        "setup: 1 orderer (Raft), peers of Org1 and Org2 (TLS), chaincode {CHAINCODE} = asset-transfer \
         as a process package ({POLICY}); load: {} tasks over {} connection(s) to Org1's peer for {} s, \
         client runtime threads: {}, CreateAsset as User1, endorsed only (not ordered); proposals {}",
        b.concurrency,
        b.connections,
        b.duration,
        b.client_threads,
        if b.presign {
            "signed before the load"
        } else {
            "signed inline by the client (signing not in the latency)"
        }
    );
    drop(peers);
    net.kill_all();
    Ok(Report {
        setup,
        details: result.details,
        round_trip: result.round_trip,
        cpu: result.cpu,
        rate: result.rate,
        p99_ms: result.p99_ms,
        shim_us: result.shim_us,
    })
}

/// Joins both peers, deploys `basic` and commits the asset [`READ_KEY`].
async fn deploy(
    net: &OrdererNet,
    root: &Path,
    peers: &[PeerTarget],
    orderer: &OrdererTarget,
    chaincode: &Path,
) -> anyhow::Result<()> {
    eprintln!("joining the peers to {CHANNEL}");
    join_peers(root, &net.genesis_block, peers, &[1, 2]).await?;
    eprintln!(
        "packaging, installing, approving and committing {}",
        chaincode.display()
    );
    deploy_chaincode(
        root,
        peers,
        &[1, 2],
        peers,
        orderer,
        chaincode,
        Some(POLICY),
        SETUP_TIMEOUT,
    )
    .await?;
    // One committed asset for ReadAsset; this starts the chaincode on both
    // peers.
    eprintln!("committing the asset {READ_KEY}");
    create_asset(root, peers, orderer, READ_KEY, SETUP_TIMEOUT).await
}

// ---------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------

/// The measurement's results.
struct Measured {
    details: String,
    round_trip: String,
    cpu: Option<String>,
    rate: f64,
    p99_ms: f64,
    shim_us: i64,
}

fn signed(
    signer: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    input: ChaincodeInput,
) -> anyhow::Result<SignedProposal> {
    Ok(build_proposal(
        signer,
        HeaderType::EndorserTransaction,
        channel,
        chaincode,
        input,
        BTreeMap::new(),
    )?
    .signed)
}

/// Sends one proposal; fails unless the answer has status 200 and an
/// endorsement.
async fn endorse_once(
    client: &mut EndorserClient<GrpcChannel>,
    proposal: SignedProposal,
) -> anyhow::Result<ProposalResponse> {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, client.process_proposal(proposal))
        .await
        .map_err(|_| anyhow!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))?
        .map_err(|s| anyhow!("gRPC error {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let status = reply.response.as_ref().map_or(0, |r| r.status);
    if status != 200 {
        let message = reply
            .response
            .as_ref()
            .map(|r| r.message.as_str())
            .unwrap_or("no response");
        bail!("status {status}: {message}");
    }
    if reply.endorsement.is_none() {
        bail!("status 200 but no endorsement");
    }
    Ok(reply)
}

/// Proposals signed before the load, handed out once each.
struct Pool {
    proposals: Vec<Mutex<Option<SignedProposal>>>,
    next: AtomicU64,
}

impl Pool {
    fn take(&self) -> Option<SignedProposal> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        self.proposals.get(i)?.lock().ok()?.take()
    }
}

/// Where a task's proposals come from.
#[derive(Clone)]
enum Source {
    Inline(Arc<SigningIdentity>),
    Pool(Arc<Pool>),
}

impl Source {
    /// The next proposal; `None` when the pool is exhausted.
    fn next(&self, task: usize, n: u64) -> anyhow::Result<Option<SignedProposal>> {
        match self {
            Source::Inline(user) => {
                let id = format!("bench{task}_{n}");
                signed(user, CHANNEL, CHAINCODE, create_asset_input(&id)).map(Some)
            }
            Source::Pool(pool) => Ok(pool.take()),
        }
    }
}

/// Shared state of the load tasks.
struct LoadState {
    deadline: Instant,
    stop: AtomicBool,
    failures: AtomicU64,
    first_error: Mutex<Option<String>>,
    exhausted: AtomicBool,
}

impl LoadState {
    fn fail(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
    }
}

/// One task: proposals one after the other until the deadline; the
/// latency of each successful one.
async fn load_task(
    task: usize,
    mut client: EndorserClient<GrpcChannel>,
    source: Source,
    state: Arc<LoadState>,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let mut n = 0u64;
    while !state.stop.load(Ordering::Relaxed) && Instant::now() < state.deadline {
        let proposal = match source.next(task, n) {
            Ok(Some(p)) => p,
            Ok(None) => {
                state.exhausted.store(true, Ordering::Relaxed);
                break;
            }
            Err(e) => {
                state.fail(format!("building a proposal: {e:#}"));
                break;
            }
        };
        n += 1;
        let t0 = Instant::now();
        match endorse_once(&mut client, proposal).await {
            Ok(_) => latencies.push(t0.elapsed()),
            Err(e) => {
                state.fail(format!("{e:#}"));
                break;
            }
        }
    }
    latencies
}

/// Warms up, runs the load and the round-trip estimate; `watch` names the
/// processes whose CPU use is reported (name, pid or `self`).
async fn measure(
    b: &EndorseBench,
    peer: &PeerTarget,
    user: Arc<SigningIdentity>,
    watch: &[(String, String)],
) -> anyhow::Result<Measured> {
    let mut clients = Vec::with_capacity(b.connections);
    for _ in 0..b.connections {
        let channel = twill_comm::connect(&peer.address, peer.tls.as_ref())
            .await
            .with_context(|| format!("connecting to the peer at {}", peer.address))?;
        clients.push(twill_comm::with_message_limits!(EndorserClient::new(
            channel
        )));
    }

    eprintln!("warming up ({WARMUP} CreateAsset endorsements)");
    for (i, client) in (0..WARMUP).zip(clients.iter().cycle()) {
        let proposal = signed(
            &user,
            CHANNEL,
            CHAINCODE,
            create_asset_input(&format!("warmup{i}")),
        )?;
        endorse_once(&mut client.clone(), proposal)
            .await
            .context("warm-up CreateAsset endorsement")?;
    }

    let source = if b.presign {
        let count = (b.duration as usize).saturating_mul(8_000).min(200_000);
        eprintln!("signing {count} proposals");
        let user2 = user.clone();
        let proposals = tokio::task::spawn_blocking(move || {
            (0..count)
                .map(|i| {
                    signed(
                        &user2,
                        CHANNEL,
                        CHAINCODE,
                        create_asset_input(&format!("bench{i}")),
                    )
                    .map(|p| Mutex::new(Some(p)))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await
        .context("signing task")??;
        Source::Pool(Arc::new(Pool {
            proposals,
            next: AtomicU64::new(0),
        }))
    } else {
        Source::Inline(user.clone())
    };

    eprintln!(
        "endorsing for {} s with {} tasks",
        b.duration, b.concurrency
    );
    let cpu_watch = CpuWatch::start(watch);
    let start = Instant::now();
    let state = Arc::new(LoadState {
        deadline: start + Duration::from_secs(b.duration),
        stop: AtomicBool::new(false),
        failures: AtomicU64::new(0),
        first_error: Mutex::new(None),
        exhausted: AtomicBool::new(false),
    });
    let tasks: Vec<_> = (0..b.concurrency)
        .map(|t| {
            let client = clients[t % clients.len()].clone();
            tokio::spawn(load_task(t, client, source.clone(), state.clone()))
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("load task")?);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_watch.report(elapsed);
    drop(source);

    let failures = state.failures.load(Ordering::Relaxed);
    if failures > 0 {
        let first = state
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        bail!(
            "{failures} proposal(s) failed ({} succeeded before the load stopped); first error: {first}",
            latencies.len()
        );
    }
    if latencies.is_empty() {
        bail!("no proposal was endorsed");
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let p99_ms = pct(0.99);
    let mut details = format!(
        "{} endorsements in {:.2} s: {rate:.0}/s; latency p50 {:.1} ms, p99 {p99_ms:.1} ms, max {:.1} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        pct(0.50),
        pct(1.0),
    );
    if state.exhausted.load(Ordering::Relaxed) {
        details.push_str(" (the pre-signed pool ran out before --duration)");
    }

    eprintln!("estimating the shim round trip ({ROUND_TRIP_CALLS} sequential calls each)");
    let client = clients
        .first()
        .context("no connection to the peer")?
        .clone();
    let (read, info) = round_trip(client, &user).await?;
    let shim = read.mean - info.mean;
    let round_trip = format!(
        "shim round trip (estimate of one chaincode call including the simulation): \
         ReadAsset mean {:.0} us - qscc GetChainInfo mean {:.0} us = {shim:.0} us \
         ({ROUND_TRIP_CALLS} sequential calls each, interleaved, on channel {CHANNEL}; \
         medians {:.0} us and {:.0} us)",
        read.mean, info.mean, read.median, info.median
    );
    Ok(Measured {
        details,
        round_trip,
        cpu,
        rate,
        p99_ms,
        shim_us: shim.round() as i64,
    })
}

/// Mean and median of latencies, in µs.
struct Stats {
    mean: f64,
    median: f64,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let n = samples.len().max(1) as f64;
        Stats {
            mean: samples.iter().copied().map(us).sum::<f64>() / n,
            median: samples.get(samples.len() / 2).copied().map_or(0.0, us),
        }
    }
}

/// Latencies of ReadAsset and of qscc GetChainInfo proposals, sent one at
/// a time, alternating, all signed beforehand.
async fn round_trip(
    mut client: EndorserClient<GrpcChannel>,
    user: &SigningIdentity,
) -> anyhow::Result<(Stats, Stats)> {
    let read = || {
        signed(
            user,
            CHANNEL,
            CHAINCODE,
            ChaincodeInput {
                args: vec![b"ReadAsset".to_vec(), READ_KEY.as_bytes().to_vec()],
                ..Default::default()
            },
        )
    };
    let info = || {
        signed(
            user,
            CHANNEL,
            "qscc",
            ChaincodeInput {
                args: vec![b"GetChainInfo".to_vec(), CHANNEL.as_bytes().to_vec()],
                ..Default::default()
            },
        )
    };
    let warm = 10;
    let mut pairs = Vec::with_capacity(ROUND_TRIP_CALLS + warm);
    for _ in 0..ROUND_TRIP_CALLS + warm {
        pairs.push((read()?, info()?));
    }
    let mut reads = Vec::with_capacity(ROUND_TRIP_CALLS);
    let mut infos = Vec::with_capacity(ROUND_TRIP_CALLS);
    for (i, (r, q)) in pairs.into_iter().enumerate() {
        let t0 = Instant::now();
        let reply = endorse_once(&mut client, r)
            .await
            .context("ReadAsset proposal")?;
        let t1 = Instant::now();
        endorse_once(&mut client, q)
            .await
            .context("qscc GetChainInfo proposal")?;
        let t2 = Instant::now();
        let payload = reply.response.map(|r| r.payload).unwrap_or_default();
        if !String::from_utf8_lossy(&payload).contains(READ_KEY) {
            bail!("ReadAsset {READ_KEY} answered without the asset");
        }
        if i >= warm {
            reads.push(t1 - t0);
            infos.push(t2 - t1);
        }
    }
    Ok((Stats::of(reads), Stats::of(infos)))
}

// ---------------------------------------------------------------------------
// CPU accounting (Linux /proc; none elsewhere)
// ---------------------------------------------------------------------------

/// Clock ticks per second of /proc's counters.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t: &f64| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU ticks (user + system, all threads) of a process so far.
fn process_ticks(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses): utime and stime
    // are the 14th and 15th of the line, the 12th and 13th of these.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) ticks of the whole machine, from /proc/stat.
fn machine_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest counted in user).
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0.0);
    Some((total - idle, total))
}

/// CPU counters of the processes of interest and of the machine.
pub(crate) struct CpuWatch {
    ticks: f64,
    /// (name, pid, ticks at the start).
    procs: Vec<(String, String, Option<f64>)>,
    machine: Option<(f64, f64)>,
}

impl CpuWatch {
    /// Starts counting for `procs`: (name, pid or `self`).
    pub(crate) fn start(procs: &[(String, String)]) -> CpuWatch {
        let procs = procs
            .iter()
            .map(|(name, pid)| (name.clone(), pid.clone(), process_ticks(pid)))
            .collect();
        CpuWatch {
            ticks: clock_ticks(),
            procs,
            machine: machine_ticks(),
        }
    }

    /// `cpu during the load ...`, or `None` without /proc.
    pub(crate) fn report(&self, elapsed: Duration) -> Option<String> {
        let (busy0, total0) = self.machine?;
        let (busy1, total1) = machine_ticks()?;
        let secs = elapsed.as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut parts = Vec::new();
        let mut ours = 0.0;
        for (name, pid, before) in &self.procs {
            let used = before
                .zip(process_ticks(pid))
                .map(|(b, a)| (a - b) / self.ticks);
            match used {
                Some(u) => {
                    ours += u;
                    parts.push(format!("{name} {:.0}%", 100.0 * u / secs));
                }
                None => parts.push(format!("{name} n/a")),
            }
        }
        let machine = (busy1 - busy0) / (total1 - total0).max(1.0) * cores as f64;
        let machine_secs = machine * secs;
        Some(format!(
            "cpu during the load (100% = one core of {cores}): {}; whole machine {:.0}%, \
             of which other processes {:.0}%",
            parts.join(", "),
            100.0 * machine,
            (100.0 * (machine_secs - ours) / secs).max(0.0),
        ))
    }
}
