//! `twill bench commit`: validate + commit throughput of the peer's
//! committer against the machine's ECDSA verification rate.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use rayon::prelude::*;
use twill_ledger::state::Height;
use twill_peer::channel::{Channel, Committer};
use twill_peer::committer::LedgerCommitter;
use twill_peer::validation::lifecycle::{definition_entries, LIFECYCLE_NAMESPACE};
use twill_peer::validation::testkit::{
    read, signature_policy, signed_block, write, TestNetwork, TxBuilder, CHANNEL,
};
use twill_protos::common::{Block, Envelope};
use twill_protos::lifecycle::ChaincodeValidationInfo;
use twill_protos::peer::TxValidationCode;

/// Chaincode the benchmark's transactions invoke.
const CHAINCODE: &str = "basic";
/// Its endorsement policy.
const POLICY: &str = "AND('Org1MSP.peer','Org2MSP.peer')";

/// Arguments of `twill bench commit`.
#[derive(Debug, Args)]
pub(crate) struct CommitBench {
    /// Blocks of transactions to commit (after one block defining the chaincode).
    #[arg(long, default_value_t = 20)]
    blocks: u64,
    /// Transactions per block.
    #[arg(long, default_value_t = 500)]
    txs_per_block: usize,
    /// Validation threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn bar(len: u64, template: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// Runs the benchmark (see `twill bench commit --help`).
pub(crate) fn commit(b: CommitBench) -> anyhow::Result<()> {
    if b.blocks == 0 || b.txs_per_block == 0 {
        bail!("--blocks and --txs-per-block must be at least 1");
    }
    let net = TestNetwork::new().context("generating the test network")?;
    let client = net.client(1)?;
    let peer1 = net.peer(1)?;
    let peer2 = net.peer(2)?;
    let orderer = net.orderer(0)?;

    // Block 1 defines the chaincode in `_lifecycle`, endorsed by both orgs
    // (the channel's LifecycleEndorsement is a majority of the two).
    let policy = twill_policy::parse_policy(POLICY).context("endorsement policy")?;
    let info = ChaincodeValidationInfo {
        validation_plugin: "vscc".into(),
        validation_parameter: signature_policy(policy).encode_to_vec(),
    };
    let writes = definition_entries(CHAINCODE, 1, "1.0", &info)
        .into_iter()
        .map(|(k, v)| write(&k, &v))
        .collect();
    let (_, define) = TxBuilder::new(&client, CHANNEL, LIFECYCLE_NAMESPACE)
        .writes(LIFECYCLE_NAMESPACE, writes)
        .endorsed_by(&peer1)
        .endorsed_by(&peer2)
        .build()?;
    let genesis = net.genesis().clone();
    let genesis_header = genesis.header.clone().unwrap_or_default();
    let mut blocks = vec![signed_block(&genesis_header, &[define], &orderer)?];

    // Blocks 2..: each tx reads the two keys its predecessor in the previous
    // block wrote (at their committed versions) and writes four keys.
    let total = b.blocks * b.txs_per_block as u64;
    let signing = bar(total, "building {bar:40} {pos}/{len} transactions");
    for n in 2..b.blocks + 2 {
        let mut envs: Vec<Envelope> = Vec::with_capacity(b.txs_per_block);
        for j in 0..b.txs_per_block {
            let reads = (0..2)
                .map(|r| {
                    let version = (n > 2).then(|| Height::new(n - 1, j as u64));
                    read(&format!("k{}_{j}_{r}", n - 1), version)
                })
                .collect();
            let writes = (0..4)
                .map(|w| {
                    write(
                        &format!("k{n}_{j}_{w}"),
                        format!("value {n} {j} {w}").as_bytes(),
                    )
                })
                .collect();
            let (_, env) = TxBuilder::new(&client, CHANNEL, CHAINCODE)
                .reads(CHAINCODE, reads)
                .writes(CHAINCODE, writes)
                .endorsed_by(&peer1)
                .endorsed_by(&peer2)
                .build()?;
            envs.push(env);
            signing.inc(1);
        }
        let prev = blocks
            .last()
            .and_then(|b: &Block| b.header.clone())
            .unwrap_or_default();
        blocks.push(signed_block(&prev, &envs, &orderer)?);
    }
    signing.finish_and_clear();

    let dir = tempfile::tempdir().context("temp dir")?;
    let channel = Channel::create(dir.path(), &genesis)?;
    let committer = LedgerCommitter::new(b.threads);
    committer.open_channel(&channel)?;
    committer.commit(&channel, genesis)?;
    let mut iter = blocks.into_iter();
    if let Some(define) = iter.next() {
        let outcome = committer.commit(&channel, define)?;
        if outcome.validation_codes.first() != Some(&(TxValidationCode::Valid as u8)) {
            bail!(
                "the chaincode definition was not valid: {:?}",
                outcome.validation_codes
            );
        }
    }

    // The verify rate first, on an idle machine (before any commit threads).
    let verifies = verify_rate(&peer1, Duration::from_secs(2))?;

    let progress = bar(b.blocks, "commit   {bar:40} {pos}/{len} blocks");
    let cpu_start = process_cpu_seconds();
    let start = Instant::now();
    let mut valid = 0u64;
    let mut pending: Vec<Block> = iter.collect();
    for i in 0..pending.len() {
        // As the peer's block puller does with blocks it has received:
        // the next blocks' signature checks start while this one commits
        // (blocks already started are skipped).
        for ahead in pending
            .iter()
            .skip(i)
            .take(twill_peer::committer::LOOKAHEAD + 1)
        {
            committer.prepare(&channel, ahead);
        }
        let block = pending.get_mut(i).map(std::mem::take).unwrap_or_default();
        let outcome = committer.commit(&channel, block)?;
        valid += outcome
            .validation_codes
            .iter()
            .filter(|c| **c == TxValidationCode::Valid as u8)
            .count() as u64;
        progress.inc(1);
    }
    // The last block's state commit runs in the background: wait for it.
    let ledger = committer
        .channel(CHANNEL)
        .context("the channel's ledger is not open")?;
    ledger.state();
    let elapsed = start.elapsed();
    let cpu = process_cpu_seconds()
        .zip(cpu_start)
        .map(|(end, begin)| end - begin);
    progress.finish_and_clear();
    if valid != total {
        bail!("only {valid} of {total} transactions were valid; the benchmark's transactions are broken");
    }
    let commit_rate = total as f64 / elapsed.as_secs_f64();

    let bound = verifies / 3.0;
    println!(
        "{total} transactions in {} blocks of {} (2 endorsements, 2 reads, 4 writes each) validated and committed in {:.2} s; {:.0} ECDSA verifies/s on {} threads",
        b.blocks,
        b.txs_per_block,
        elapsed.as_secs_f64(),
        verifies,
        rayon::current_num_threads()
    );
    if let Some(cpu) = cpu {
        println!(
            "CPU during validate + commit: {:.2} s ({:.2} cores busy on average)",
            cpu,
            cpu / elapsed.as_secs_f64()
        );
    }
    println!(
        "commit: {commit_rate:.0} tx/s, verify-bound {bound:.0} tx/s, ratio {:.2}",
        commit_rate / bound
    );
    Ok(())
}

/// P-256 signature verifications per second on all cores (rayon), over
/// distinct 1 KiB messages.
fn verify_rate(signer: &twill_msp::SigningIdentity, time: Duration) -> anyhow::Result<f64> {
    let samples: Vec<(Vec<u8>, Vec<u8>)> = (0..256u32)
        .map(|i| {
            let msg = vec![(i % 251) as u8; 1024];
            let sig = signer.sign(&msg)?;
            Ok((msg, sig))
        })
        .collect::<anyhow::Result<_>>()?;
    let identity = signer.identity();
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < time {
        let ok = samples
            .par_iter()
            .filter(|(m, s)| identity.verify(m, s).is_ok())
            .count();
        if ok != samples.len() {
            bail!("a benchmark signature did not verify");
        }
        done += samples.len() as u64;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// User + system CPU time of this process so far, from `/proc/self/stat`
/// (Linux only; `None` elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line, in clock ticks (100 per second
    // on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
