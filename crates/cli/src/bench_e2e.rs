//! `twill bench e2e`: committed transactions per second through the peers'
//! Gateway service, against a network started by `twill network up`.
//!
//! Each load task loops: build and sign a `CreateAsset` proposal with a
//! fresh asset id, `Endorse` (the gateway collects the endorsements the
//! chaincode's policy needs), sign the prepared transaction, `Submit`, then
//! `CommitStatus` until the transaction is in a block. The tasks alternate
//! between the orgs: Org1's User1 talks to Org1's peers, Org2's User1 to
//! Org2's, over a few HTTP/2 connections per peer. Latency is measured from
//! building the proposal to the commit status; a transaction counts as
//! failed on any error or a validation code other than VALID.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message as _;
use std::sync::Mutex;
use tonic::transport::Channel as GrpcChannel;
use twill_comm::ClientTls;
use twill_msp::SigningIdentity;
use twill_protos::common::HeaderType;
use twill_protos::gateway::gateway_client::GatewayClient;
use twill_protos::gateway::{
    CommitStatusRequest, EndorseRequest, SignedCommitStatusRequest, SubmitRequest,
};
use twill_protos::peer::ChaincodeInput;

use crate::bench_endorse::CpuWatch;
use crate::netstart::{msp_dir, tls_ca, CHAINCODE};
use crate::network::{group_members, NetworkFile, DEFAULT_STATE_DIR};
use crate::peer::{build_proposal, load_signer};

/// Arguments of `twill bench e2e`.
#[derive(Debug, Args)]
pub(crate) struct E2eBench {
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// The folder of a network started by `twill network up`.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Transactions in flight at once (each waits for its commit). A
    /// transaction spends up to BatchTimeout waiting for its block, so a
    /// rate R needs about R x latency in flight (Little's law): 768 keeps
    /// 1,500 tx/s supplied at about half a second each.
    #[arg(long, default_value_t = 768)]
    concurrency: usize,
    /// HTTP/2 connections per peer.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Chaincode to call (its CreateAsset(id, color, size, owner, value)).
    #[arg(long, default_value = CHAINCODE)]
    chaincode: String,
}

/// One org's client side: its user and connections to its peers.
struct OrgClient {
    signer: SigningIdentity,
    clients: Vec<GatewayClient<GrpcChannel>>,
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    failed: AtomicU64,
}

pub(crate) fn e2e(b: E2eBench) -> anyhow::Result<()> {
    if b.duration == 0 || b.concurrency == 0 || b.connections == 0 {
        bail!("--duration, --concurrency and --connections must be greater than 0");
    }
    let root = b.state_dir.clone();
    let net = NetworkFile::read(&root)?.with_context(|| {
        format!(
            "{} holds no network.json: start a network with `twill network up --state-dir {}`",
            root.display(),
            root.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let orgs = rt.block_on(connect(&root, &net, b.connections))?;
    let procs: Vec<(String, String)> = net
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.pid.to_string()))
        .chain(net.nodes.iter().flat_map(|n| {
            // The chaincode processes a peer launched join its process group.
            group_members(&std::collections::BTreeSet::from([n.pid]))
                .into_iter()
                .filter(move |&pid| pid != n.pid)
                .map(move |pid| (format!("chaincode of {}", n.name), pid.to_string()))
        }))
        .chain(std::iter::once(("bench".to_owned(), "self".to_owned())))
        .collect();
    eprintln!(
        "e2e: {} CreateAsset transactions in flight for {} s through {} gateway(s) on {} ({})",
        b.concurrency,
        b.duration,
        orgs.iter()
            .map(|o| o.clients.len() / b.connections)
            .sum::<usize>(),
        net.channel,
        root.display()
    );
    if let Some((sign, verify)) = host_speed() {
        eprintln!(
            "host speed on one core: ECDSA P-256 sign {sign:.1} µs, verify {verify:.1} µs \
             (docs/benchmarks.md's figures came with 22 – 24 and 15.5 – 16.5)"
        );
    }
    let cpu = CpuWatch::start(&procs);
    let (elapsed, latencies, counters, first_error) =
        rt.block_on(drive(Arc::new(orgs), &net.channel, &b));
    let committed = counters.committed.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    if let Some(report) = cpu.report(elapsed) {
        eprintln!("{report}");
    }
    if let Some(e) = first_error {
        eprintln!("first failure: {e}");
    }
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if ms.is_empty() {
            0.0
        } else {
            ms[((ms.len() - 1) as f64 * p) as usize]
        }
    };
    let rate = committed as f64 / elapsed.as_secs_f64();
    println!(
        "{committed} transactions committed VALID in {:.1} s ({} in flight)",
        elapsed.as_secs_f64(),
        b.concurrency
    );
    println!(
        "e2e: {rate:.0} tx/s, p50 {:.0} ms, p99 {:.0} ms, failed {failed}",
        pct(0.50),
        pct(0.99)
    );
    if committed == 0 {
        bail!("no transaction committed");
    }
    Ok(())
}

/// Median time of one ECDSA signature and one table-based verification on
/// this thread, in µs: a reference for how fast the machine is right now.
/// A VM's host can slow the same code down by a quarter from one hour to
/// the next, and the network's rate moves with it.
fn host_speed() -> Option<(f64, f64)> {
    const ROUNDS: usize = 25;
    const PER_ROUND: usize = 32;
    let key = twill_crypto::SigningKey::generate().ok()?;
    let vk = key.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..PER_ROUND)
        .map(|i| format!("host speed reference {i}").repeat(16).into_bytes())
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut sigs = Vec::new();
    let mut sign_rounds = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        sigs = msgs
            .iter()
            .map(|m| key.sign(m))
            .collect::<Result<_, _>>()
            .ok()?;
        sign_rounds.push(t.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64);
    }
    // Past the warm-up, the key verifies with its own table, as the
    // network's signers do.
    for _ in 0..twill_crypto::WARM_AFTER {
        twill_crypto::verify(&vk, &msgs[0], &sigs[0]).ok()?;
    }
    let mut verify_rounds = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for (m, sig) in msgs.iter().zip(&sigs) {
            twill_crypto::verify(&vk, m, sig).ok()?;
        }
        verify_rounds.push(t.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64);
    }
    Some((median(sign_rounds), median(verify_rounds)))
}

/// Connects to every peer of the network, grouped by org (org1, org2, ...).
async fn connect(
    root: &Path,
    net: &NetworkFile,
    per_peer: usize,
) -> anyhow::Result<Vec<OrgClient>> {
    let mut orgs = Vec::new();
    for org in 1u8..=9 {
        let suffix = format!(".org{org}.example.com");
        let peers: Vec<_> = net
            .nodes
            .iter()
            .filter(|n| n.kind == "peer" && n.name.ends_with(&suffix))
            .collect();
        if peers.is_empty() {
            continue;
        }
        let signer = load_signer(&msp_dir(root, org, "User1"), &format!("Org{org}MSP"))?;
        let ca_path = tls_ca(root, org);
        let ca = std::fs::read(&ca_path)
            .with_context(|| format!("reading the TLS CA {}", ca_path.display()))?;
        let tls = ClientTls::new(vec![ca]);
        let mut clients = Vec::new();
        for peer in &peers {
            for _ in 0..per_peer {
                let channel = twill_comm::connect(&peer.address, Some(&tls))
                    .await
                    .with_context(|| format!("connecting to {} at {}", peer.name, peer.address))?;
                clients.push(twill_comm::with_message_limits!(GatewayClient::new(
                    channel
                )));
            }
        }
        orgs.push(OrgClient { signer, clients });
    }
    if orgs.is_empty() {
        bail!("network.json lists no peers");
    }
    Ok(orgs)
}

type Outcome = (Duration, Vec<Duration>, Arc<Counters>, Option<String>);

async fn drive(orgs: Arc<Vec<OrgClient>>, channel: &str, b: &E2eBench) -> Outcome {
    let counters = Arc::new(Counters::default());
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(b.duration);
    let bar = ProgressBar::new(b.duration).with_style(
        ProgressStyle::with_template("e2e {bar:40} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let ticker = {
        let (bar, counters) = (bar.clone(), counters.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let n = counters.committed.load(Ordering::Relaxed);
                let f = counters.failed.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                bar.set_position(secs as u64);
                bar.set_message(format!(
                    "{n} committed, {:.0}/s, {f} failed",
                    n as f64 / secs
                ));
            }
        })
    };
    let run_id = format!(
        "{:x}",
        std::process::id() as u64 ^ start.elapsed().as_nanos() as u64 ^ now_nanos()
    );
    let mut tasks = Vec::new();
    for task in 0..b.concurrency {
        let orgs = orgs.clone();
        let counters = counters.clone();
        let first_error = first_error.clone();
        let channel = channel.to_owned();
        let chaincode = b.chaincode.clone();
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            let org = &orgs[task % orgs.len()];
            let mut client = org.clients[(task / orgs.len()) % org.clients.len()].clone();
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let id = format!("e2e-{run_id}-{task}-{n}");
                n += 1;
                let t0 = Instant::now();
                match one(&mut client, &org.signer, &channel, &chaincode, &id).await {
                    Ok(()) => {
                        latencies.push(t0.elapsed());
                        counters.committed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies.extend(l);
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    let first = first_error.lock().ok().and_then(|mut s| s.take());
    (elapsed, latencies, counters, first)
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One transaction: endorse, sign, submit, wait for its commit status.
async fn one(
    client: &mut GatewayClient<GrpcChannel>,
    signer: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    id: &str,
) -> Result<(), String> {
    let input = ChaincodeInput {
        args: ["CreateAsset", id, "blue", "5", "bench", "100"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        ..Default::default()
    };
    let built = build_proposal(
        signer,
        HeaderType::EndorserTransaction,
        channel,
        chaincode,
        input,
        Default::default(),
    )
    .map_err(|e| format!("building the proposal: {e:#}"))?;
    let tx_id = built.tx_id;
    let endorsed = client
        .endorse(EndorseRequest {
            transaction_id: tx_id.clone(),
            channel_id: channel.to_owned(),
            proposed_transaction: Some(built.signed),
            endorsing_organizations: Vec::new(),
        })
        .await
        .map_err(|s| format!("endorse: {:?} {}", s.code(), s.message()))?
        .into_inner();
    let mut envelope = endorsed
        .prepared_transaction
        .ok_or("endorse returned no prepared transaction")?;
    envelope.signature = signer
        .sign(&envelope.payload)
        .map_err(|e| format!("signing the transaction: {e}"))?;
    client
        .submit(SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: channel.to_owned(),
            prepared_transaction: Some(envelope),
        })
        .await
        .map_err(|s| format!("submit: {:?} {}", s.code(), s.message()))?;
    let request = CommitStatusRequest {
        transaction_id: tx_id.clone(),
        channel_id: channel.to_owned(),
        identity: signer.serialize(),
    }
    .encode_to_vec();
    let signature = signer
        .sign(&request)
        .map_err(|e| format!("signing the status request: {e}"))?;
    let status = client
        .commit_status(SignedCommitStatusRequest { request, signature })
        .await
        .map_err(|s| format!("commit status: {:?} {}", s.code(), s.message()))?
        .into_inner();
    if status.result != 0 {
        let code = twill_protos::peer::TxValidationCode::try_from(status.result).map_or_else(
            |_| status.result.to_string(),
            |c| c.as_str_name().to_owned(),
        );
        return Err(format!(
            "transaction {tx_id} committed as {code} in block {}",
            status.block_number
        ));
    }
    Ok(())
}
