//! ECDSA P-256 sign / verify: `ring`, verification with a warm key's
//! precomputed table (the hot path), the pure-Rust `p256` reference, plus a
//! 256-signature batch verified on rayon (8 keys, so tables after warm-up).
//!
//! Run: `cargo bench -p twill-crypto --bench sign_verify -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use twill_crypto::{reference, verify, verify_batch, SigningKey, VerifyingKey};

/// Roughly the size of a small Fabric proposal payload.
const MSG: &[u8] = &[0x5a; 512];
const BATCH: usize = 256;

fn sign(c: &mut Criterion) {
    let key = SigningKey::generate().unwrap();
    let mut group = c.benchmark_group("sign");
    group.bench_function("ring", |b| b.iter(|| key.sign(black_box(MSG)).unwrap()));
    group.bench_function("p256", |b| {
        b.iter(|| reference::sign(&key, black_box(MSG)).unwrap())
    });
    group.finish();
}

fn verify_one(c: &mut Criterion) {
    let key = SigningKey::generate().unwrap();
    let vk = key.verifying_key();
    // Different messages, so that each verification uses other table
    // entries (as in real traffic) rather than a cache-hot few.
    let signed: Vec<(Vec<u8>, Vec<u8>)> = (0..256u32)
        .map(|i| {
            let mut m = MSG.to_vec();
            m[..4].copy_from_slice(&i.to_be_bytes());
            let sig = key.sign(&m).unwrap();
            (m, sig)
        })
        .collect();
    let mut group = c.benchmark_group("verify");
    let mut i = 0;
    group.bench_function("ring", |b| {
        b.iter(|| {
            let (m, sig) = &signed[i % signed.len()];
            i += 1;
            vk.verify_with_ring(black_box(m), black_box(sig)).unwrap()
        })
    });
    // A key seen often enough to have a table of its multiples.
    for _ in 0..twill_crypto::WARM_AFTER {
        verify(&vk, &signed[0].0, &signed[0].1).unwrap();
    }
    group.bench_function("tables", |b| {
        b.iter(|| {
            let (m, sig) = &signed[i % signed.len()];
            i += 1;
            verify(&vk, black_box(m), black_box(sig)).unwrap()
        })
    });
    let sig = key.sign(MSG).unwrap();
    group.bench_function("p256", |b| {
        b.iter(|| reference::verify(&vk, black_box(MSG), black_box(&sig)).unwrap())
    });
    group.finish();
}

fn verify_many(c: &mut Criterion) {
    // Several signers, as in a block with endorsements from a few orgs.
    let keys: Vec<SigningKey> = (0..8).map(|_| SigningKey::generate().unwrap()).collect();
    let vks: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let msgs: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| {
            let mut m = MSG.to_vec();
            m[..8].copy_from_slice(&(i as u64).to_be_bytes());
            m
        })
        .collect();
    let sigs: Vec<Vec<u8>> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % keys.len()].sign(m).unwrap())
        .collect();
    let items: Vec<(&VerifyingKey, &[u8], &[u8])> = (0..BATCH)
        .map(|i| (&vks[i % vks.len()], msgs[i].as_slice(), sigs[i].as_slice()))
        .collect();

    let mut group = c.benchmark_group("verify_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_with_input(BenchmarkId::new("rayon", BATCH), &items, |b, items| {
        b.iter(|| {
            let results = verify_batch(black_box(items));
            assert!(results.iter().all(Result::is_ok));
        })
    });
    group.bench_with_input(BenchmarkId::new("sequential", BATCH), &items, |b, items| {
        b.iter(|| {
            for &(key, msg, sig) in black_box(items) {
                verify(key, msg, sig).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, sign, verify_one, verify_many);
criterion_main!(benches);
