//! Block store append throughput: blocks of 100 envelopes of about 1 KB
//! each (about 100 KB per block), every append `fdatasync`ed and indexed
//! (100 tx ids per block). Also reads of stored block bytes.
//!
//! Run: `cargo bench -p twill-ledger --bench blockstore -- --warm-up-time 1 --measurement-time 3`
//!
//! Criterion reports time per block and MB/s (the throughput is the
//! serialized block size); blocks/s is 1 / time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use twill_configtx::block::{block_header_hash, channel_header, envelope, new_block};
use twill_ledger::BlockStore;
use twill_protos::common::{Block, HeaderType, SignatureHeader};

const TXS_PER_BLOCK: usize = 100;
const ENVELOPE_BODY: usize = 1024;

/// Builds the next `count` blocks following `store`'s tip.
fn next_blocks(store: &BlockStore, count: u64, seq: &mut u64) -> Vec<Block> {
    let mut number = store.height();
    let mut prev = store
        .last_block_hash()
        .map(|h| h.to_vec())
        .unwrap_or_default();
    (0..count)
        .map(|_| {
            let data = (0..TXS_PER_BLOCK)
                .map(|_| {
                    *seq += 1;
                    let tx_id = format!("{:064x}", *seq);
                    let ch = channel_header(HeaderType::EndorserTransaction, 0, "bench", &tx_id);
                    let sh = SignatureHeader {
                        creator: vec![0x11; 64],
                        nonce: seq.to_be_bytes().to_vec(),
                    };
                    envelope(&ch, &sh, vec![0x5a; ENVELOPE_BODY]).encode_to_vec()
                })
                .collect();
            let block = new_block(number, prev.clone(), data);
            prev = block_header_hash(block.header.as_ref().unwrap()).to_vec();
            number += 1;
            block
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path()).unwrap();
    let mut seq = 0u64;
    let block_bytes = next_blocks(&store, 1, &mut 0)[0].encoded_len() as u64;
    eprintln!("block size: {block_bytes} bytes ({TXS_PER_BLOCK} envelopes)");

    let mut group = c.benchmark_group("blockstore");
    group.throughput(Throughput::Bytes(block_bytes));
    group.bench_function("append_100x1KB", |b| {
        b.iter_custom(|iters| {
            let blocks = next_blocks(&store, iters, &mut seq);
            let start = Instant::now();
            for block in &blocks {
                store.append(block).unwrap();
            }
            start.elapsed()
        })
    });

    let height = store.height();
    let mut n = 0u64;
    group.bench_function("block_bytes_100x1KB", |b| {
        b.iter(|| {
            n = (n + 1) % height;
            black_box(store.block_bytes(n).unwrap())
        })
    });
    group.bench_function("block_decode_100x1KB", |b| {
        b.iter(|| {
            n = (n + 1) % height;
            black_box(store.block(n).unwrap())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = append
}
criterion_main!(benches);
