//! `twill bench`: throughput and latency measurements against real
//! processes on this machine.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use twill_comm::ClientTls;
use twill_protos::common::{Envelope, Status};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;

use crate::netkit::{signed_envelope, NetOptions, OrdererNet};

/// Arguments of `twill bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Broadcast throughput and acknowledgement latency of a 3-orderer Raft network.
    ///
    /// Starts orderers as separate processes on free loopback ports in a
    /// temporary folder (BatchTimeout 250 ms, MaxMessageCount 500), joins
    /// them to a channel, drives signed envelopes from concurrent Broadcast
    /// clients for the given time, stops everything, and ends with the line
    ///   orderer: <N> envelopes/s, p50 <A> ms, p99 <B> ms
    /// where latency is from sending an envelope to its SUCCESS (committed
    /// on a majority of orderers).
    ///
    /// Example:
    ///   twill bench orderer --duration 10 --size 1024
    #[command(verbatim_doc_comment)]
    Orderer(OrdererBench),
    /// Validate + commit throughput of the peer's committer.
    ///
    /// Builds real signed blocks (orderer-signed) of transactions, each
    /// signed by a client with 2 endorsements (AND(Org1, Org2) endorsement
    /// policy), 2 reads and 4 writes; then validates and commits them into
    /// a fresh on-disk ledger (block store, state DB, history) and measures
    /// ECDSA verifications per second on all cores. Ends with the line
    ///   commit: <N> tx/s, verify-bound <M> tx/s, ratio <N/M>
    /// where M is the verify rate divided by 3 (signatures per transaction).
    ///
    /// Example:
    ///   twill bench commit --blocks 20 --txs-per-block 500
    #[command(verbatim_doc_comment)]
    Commit(crate::bench_commit::CommitBench),
    /// Endorsement throughput of a peer running the Rust asset-transfer chaincode.
    ///
    /// Starts an orderer and peers of Org1 and Org2 as separate processes
    /// on free loopback ports in a temporary folder, deploys the
    /// asset-transfer binary (next to `twill`) as chaincode `basic` through
    /// the lifecycle, then for the given time keeps --concurrency CreateAsset
    /// proposals in flight to Org1's peer (endorsed only, not ordered),
    /// requiring status 200 and an endorsement for each. Then estimates the
    /// peer-side cost of one chaincode call as the mean latency of ReadAsset
    /// minus that of qscc GetChainInfo, sent one at a time. Ends with the line
    ///   endorse: <N> endorsements/s, p99 <B> ms, shim round trip <C> us
    ///
    /// Needs the release binaries:
    ///   cargo build --release -p twill-cli -p twill-peer -p twill-orderer -p asset-transfer
    ///
    /// Example:
    ///   target/release/twill bench endorse --duration 10 --concurrency 64
    #[command(verbatim_doc_comment)]
    Endorse(crate::bench_endorse::EndorseBench),
    /// Committed transactions per second through the Gateway of a running network.
    ///
    /// Against a network started by `twill network up` (its --state-dir):
    /// for the given time keeps --concurrency transactions in flight, each
    /// a CreateAsset with a unique id that is endorsed through a peer's
    /// Gateway (as the chaincode's endorsement policy asks: both orgs for
    /// the network's MAJORITY policy), signed, submitted and followed to its
    /// commit status. Org1's and Org2's User1 take turns, each through its
    /// own org's peers. Ends with the line
    ///   e2e: <N> tx/s, p50 <A> ms, p99 <B> ms, failed <F>
    /// where N counts transactions committed VALID and latency runs from
    /// building the proposal to the commit status. Before the load it
    /// prints how long one ECDSA signature and one verification take on a
    /// core right now, and after it the CPU each process used: on a shared
    /// VM the same code can run a quarter slower from one hour to the next.
    ///
    /// Example (release build):
    ///   target/release/twill network up
    ///   target/release/twill bench e2e --duration 30
    #[command(verbatim_doc_comment)]
    E2e(crate::bench_e2e::E2eBench),
}

#[derive(Debug, Args)]
struct OrdererBench {
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Bytes of payload data per envelope (the signed envelope is ~1 KB larger).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Concurrent Broadcast streams, spread over the orderers.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Envelopes each stream keeps unanswered.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Number of orderers.
    #[arg(long, default_value_t = 3)]
    orderers: usize,
    /// Keep the network folder (logs, ledgers) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// Runs `twill bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Orderer(b) => orderer(b),
        BenchCommand::Commit(b) => crate::bench_commit::commit(b),
        BenchCommand::Endorse(b) => crate::bench_endorse::endorse(b),
        BenchCommand::E2e(b) => crate::bench_e2e::e2e(b),
    }
}

fn orderer(b: OrdererBench) -> anyhow::Result<()> {
    if b.duration == 0 || b.clients == 0 || b.window == 0 {
        bail!("--duration, --clients and --window must be greater than 0");
    }
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let root = if b.keep {
        tmp.keep()
    } else {
        tmp.path().to_path_buf()
    };
    eprintln!("setting up {} orderers in {}", b.orderers, root.display());
    let mut net = OrdererNet::create(
        &root,
        NetOptions {
            orderers: b.orderers,
            batch_timeout: "250ms".into(),
            max_message_count: 500,
            ..Default::default()
        },
    )?;
    net.start_all(Duration::from_secs(60))?;
    net.join_all()?;

    // Sign ahead of time so the clients measure the orderers, not themselves.
    let user = net.signer("org1.example.com", "Org1MSP", "User1")?;
    let per_second_guess = 12_000usize;
    let pool_size = (b.duration as usize * per_second_guess).clamp(10_000, 300_000);
    let bar = ProgressBar::new(pool_size as u64).with_style(
        ProgressStyle::with_template("signing  {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let data = vec![0x5a_u8; b.size];
    let mut pool = Vec::with_capacity(pool_size);
    for _ in 0..pool_size {
        pool.push(signed_envelope(&user, &net.options.channel, data.clone())?.1);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let tls = ClientTls::new(vec![net.orderer_tls_ca()?]);
    let addrs: Vec<String> = net.orderers.iter().map(|o| o.client_address()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(drive(pool, addrs, tls, &b));
    net.kill_all();
    drop(net);
    if b.keep {
        eprintln!("network folder kept: {}", root.display());
    }
    let (acked, elapsed, mut latencies) = result?;
    if latencies.is_empty() {
        bail!("no envelope was acknowledged; see the orderer logs (run with --keep)");
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let rate = acked as f64 / elapsed.as_secs_f64();
    println!(
        "{acked} envelopes of {} bytes acknowledged in {:.1} s by {} orderers ({} streams x window {})",
        b.size,
        elapsed.as_secs_f64(),
        b.orderers,
        b.clients,
        b.window
    );
    println!(
        "orderer: {rate:.0} envelopes/s, p50 {:.1} ms, p99 {:.1} ms",
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

/// Drives the load; returns (acknowledged, elapsed, latencies in µs).
async fn drive(
    pool: Vec<Envelope>,
    addrs: Vec<String>,
    tls: ClientTls,
    b: &OrdererBench,
) -> anyhow::Result<(u64, Duration, Vec<u64>)> {
    let pool = Arc::new(pool);
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(b.duration);
    let bar = ProgressBar::new(b.duration).with_style(
        ProgressStyle::with_template("ordering {bar:40} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = {
        let bar = bar.clone();
        let acked = acked.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let n = acked.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                bar.set_position(secs as u64);
                bar.set_message(format!("{n} acknowledged, {:.0}/s", n as f64 / secs));
            }
        })
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.clients {
        let addr = addrs[c % addrs.len()].clone();
        let (tls, pool, next, acked) = (tls.clone(), pool.clone(), next.clone(), acked.clone());
        let window = b.window;
        tasks.push(tokio::spawn(async move {
            stream(addr, tls, pool, next, acked, window, deadline).await
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("client task")??);
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok((acked.load(Ordering::Relaxed), elapsed, latencies))
}

async fn stream(
    addr: String,
    tls: ClientTls,
    pool: Arc<Vec<Envelope>>,
    next: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    window: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<u64>> {
    let channel = twill_comm::connect(&addr, Some(&tls))
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut client = AtomicBroadcastClient::new(channel);
    let (tx, rx) = mpsc::channel::<Envelope>(window);
    let mut responses = client
        .broadcast(ReceiverStream::new(rx))
        .await
        .with_context(|| format!("opening Broadcast on {addr}"))?
        .into_inner();
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut latencies = Vec::new();
    let mut sending = true;
    loop {
        while sending && sent_at.len() < window {
            if Instant::now() >= deadline {
                sending = false;
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
            let Some(env) = pool.get(i) else {
                sending = false;
                break;
            };
            if tx.send(env.clone()).await.is_err() {
                sending = false;
                break;
            }
            sent_at.push_back(Instant::now());
        }
        let Some(t0) = sent_at.pop_front() else { break };
        match responses.message().await {
            Ok(Some(r)) if r.status == Status::Success as i32 => {
                latencies.push(t0.elapsed().as_micros() as u64);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(r)) => bail!("{addr} refused an envelope: {} {}", r.status, r.info),
            Ok(None) => bail!("{addr} closed the Broadcast stream"),
            Err(e) => bail!("{addr}: {e}"),
        }
    }
    drop(tx);
    Ok(latencies)
}
