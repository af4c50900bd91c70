//! The block store's API on a healthy store.

use std::sync::Arc;

use prost::Message;
use twill_configtx::block::{block_header_hash, new_block};
use twill_ledger::{BlockStore, BlockStoreOptions, LedgerError, TxLocation, TxLookup};
use twill_protos::common::{LastConfig, Metadata, OrdererBlockMetadata};

use crate::support::{block_file_count, filled_store, tx_envelope, tx_id, Chain};

#[test]
fn append_and_read_back_1000_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 0);
    assert_eq!(store.last_block_hash(), None);
    assert_eq!(store.block(0).unwrap(), None);

    let mut chain = Chain::new();
    let mut blocks = Vec::new();
    for _ in 0..1000 {
        let block = chain.block_with_txs(3);
        store.append(&block).unwrap();
        blocks.push(block);
    }
    assert_eq!(store.height(), 1000);
    assert_eq!(store.last_block_hash().unwrap().to_vec(), chain.prev);
    for (n, block) in blocks.iter().enumerate() {
        let n = n as u64;
        assert_eq!(store.block(n).unwrap().as_ref(), Some(block));
        assert_eq!(store.block_bytes(n).unwrap(), Some(block.encode_to_vec()));
        let hash = block_header_hash(block.header.as_ref().unwrap());
        assert_eq!(store.block_by_hash(&hash).unwrap().as_ref(), Some(block));
        for i in 0..3 {
            assert_eq!(
                store.tx_location(&tx_id(n, i)).unwrap(),
                Some(TxLocation {
                    block_number: n,
                    tx_index: i as u32,
                    validation_code: 0
                })
            );
        }
    }
    assert_eq!(store.block(1000).unwrap(), None);
    assert_eq!(store.block_bytes(1000).unwrap(), None);
    assert_eq!(store.block_by_hash(&[0; 32]).unwrap(), None);
}

#[test]
fn refuses_blocks_that_do_not_continue_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path()).unwrap();

    // Block 0 must have an empty previous hash.
    let bad_genesis = new_block(0, vec![1; 32], vec![b"x".to_vec()]);
    let err = store.append(&bad_genesis).unwrap_err();
    assert!(
        matches!(err, LedgerError::WrongPreviousHash { number: 0, ref expected, .. } if expected.is_empty()),
        "{err}"
    );

    let mut chain = Chain::new();
    store.append(&chain.block_with_txs(1)).unwrap();
    let good = chain.block_with_txs(1);

    let mut wrong_number = good.clone();
    wrong_number.header.as_mut().unwrap().number = 5;
    let err = store.append(&wrong_number).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::WrongNumber {
                expected: 1,
                got: 5
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), "LEDGER_WRONG_NUMBER");

    let mut wrong_prev = good.clone();
    wrong_prev.header.as_mut().unwrap().previous_hash = vec![9; 32];
    let err = store.append(&wrong_prev).unwrap_err();
    assert!(
        matches!(err, LedgerError::WrongPreviousHash { number: 1, ref got, .. } if got == &vec![9; 32]),
        "{err}"
    );
    assert_eq!(err.code(), "LEDGER_WRONG_PREVIOUS_HASH");

    let mut wrong_data = good.clone();
    wrong_data
        .data
        .as_mut()
        .unwrap()
        .data
        .push(b"smuggled".to_vec());
    let err = store.append(&wrong_data).unwrap_err();
    assert!(
        matches!(err, LedgerError::WrongDataHash { number: 1 }),
        "{err}"
    );
    assert_eq!(err.code(), "LEDGER_WRONG_DATA_HASH");

    let mut no_header = good.clone();
    no_header.header = None;
    assert!(matches!(
        store.append(&no_header).unwrap_err(),
        LedgerError::MissingHeader
    ));

    // Re-appending block 0 is refused too.
    let mut again = Chain::new();
    assert!(matches!(
        store.append(&again.block_with_txs(1)).unwrap_err(),
        LedgerError::WrongNumber {
            expected: 1,
            got: 0
        }
    ));

    // Nothing was stored by the refusals; the good block still goes in.
    assert_eq!(store.height(), 1);
    store.append(&good).unwrap();
    assert_eq!(store.height(), 2);
    drop(store);
    assert_eq!(BlockStore::open(dir.path()).unwrap().height(), 2);
}

#[test]
fn tx_index_lookups_validation_codes_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path()).unwrap();
    let mut chain = Chain::new();

    // Block 0: tx "a", garbage, an envelope with empty tx id, tx "a" again, tx "b".
    let data = vec![
        tx_envelope("a", b"first".to_vec()),
        b"not an envelope".to_vec(),
        tx_envelope("", b"config-like".to_vec()),
        tx_envelope("a", b"dup in block".to_vec()),
        tx_envelope("b", b"second".to_vec()),
    ];
    let mut block0 = chain.block(data);
    // TRANSACTIONS_FILTER (slot 2): codes per tx position.
    block0.metadata.as_mut().unwrap().metadata[2] = vec![0, 0, 0, 11, 10];
    store.append(&block0).unwrap();

    // Block 1: tx "b" again (a later duplicate) and "c", no filter.
    let block1 = chain.block(vec![
        tx_envelope("b", b"dup".to_vec()),
        tx_envelope("c", b"third".to_vec()),
    ]);
    store.append(&block1).unwrap();

    let loc = |id| store.tx_location(id).unwrap();
    assert_eq!(
        loc("a"),
        Some(TxLocation {
            block_number: 0,
            tx_index: 0,
            validation_code: 0
        })
    );
    assert_eq!(
        loc("b"),
        Some(TxLocation {
            block_number: 0,
            tx_index: 4,
            validation_code: 10
        })
    );
    assert_eq!(
        loc("c"),
        Some(TxLocation {
            block_number: 1,
            tx_index: 1,
            validation_code: 0
        })
    );
    assert_eq!(loc(""), None);
    assert_eq!(loc("zzz"), None);
    assert!(store.contains_tx("a").unwrap());
    assert!(store.contains_tx("c").unwrap());
    assert!(!store.contains_tx("d").unwrap());
    assert_eq!(store.block_by_tx_id("c").unwrap(), Some(block1));
    assert_eq!(store.block_by_tx_id("b").unwrap(), Some(block0));
    assert_eq!(store.block_by_tx_id("d").unwrap(), None);
}

#[test]
fn reopened_store_filters_unknown_tx_ids_and_keeps_first_locations() {
    let dir = tempfile::tempdir().unwrap();
    drop(filled_store(dir.path(), 40, 5));
    let store = BlockStore::open(dir.path()).unwrap();
    // The ids stored before open are scanned in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !store.tx_filter_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "tx-id filter never ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for n in 0..40 {
        for i in 0..5 {
            let loc = store.tx_location(&tx_id(n, i)).unwrap().unwrap();
            assert_eq!((loc.block_number, loc.tx_index), (n, i as u32));
        }
    }
    for unknown in ["b40-t0", "b0-t5", "", "zzz"] {
        assert_eq!(store.tx_location(unknown).unwrap(), None, "{unknown}");
        assert!(!store.contains_tx(unknown).unwrap(), "{unknown}");
    }

    // A new block repeating an old id and adding a new one: the old id keeps
    // its first location, the new one is found at once.
    let mut chain = Chain::following(&store);
    store
        .append(&chain.block(vec![
            tx_envelope(&tx_id(3, 2), b"again".to_vec()),
            tx_envelope("fresh", b"new".to_vec()),
        ]))
        .unwrap();
    let again = store.tx_location(&tx_id(3, 2)).unwrap().unwrap();
    assert_eq!((again.block_number, again.tx_index), (3, 2));
    let fresh = store.tx_location("fresh").unwrap().unwrap();
    assert_eq!((fresh.block_number, fresh.tx_index), (40, 1));

    // A store without the tx index has no filter and finds nothing.
    drop(store);
    let plain = BlockStore::open_with(
        dir.path(),
        BlockStoreOptions {
            index_transactions: false,
            ..BlockStoreOptions::default()
        },
    )
    .unwrap();
    assert!(!plain.tx_filter_ready());
}

#[tokio::test]
async fn waiting_for_a_transaction_ends_with_the_block_that_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path()).unwrap();
    let mut chain = Chain::new();
    store
        .append(&chain.block(vec![tx_envelope("a", b"first".to_vec())]))
        .unwrap();
    let pending = |id: &str| match store.tx_location_or_wait(id).unwrap() {
        TxLookup::Pending(wait) => wait,
        TxLookup::Stored(loc) => panic!("{id} already stored at {loc:?}"),
    };
    // Already stored: answered at once.
    match store.tx_location_or_wait("a").unwrap() {
        TxLookup::Stored(loc) => assert_eq!(loc.block_number, 0),
        TxLookup::Pending(_) => panic!("a is stored"),
    }
    let b = pending("b");
    let b_again = pending("b");
    let never = pending("never");
    let mut block = chain.block(vec![
        tx_envelope("c", b"other".to_vec()),
        tx_envelope("b", b"second".to_vec()),
        tx_envelope("b", b"repeated".to_vec()),
    ]);
    block.metadata.as_mut().unwrap().metadata[2] = vec![0, 0, 11];
    store.append(&block).unwrap();
    let expected = TxLocation {
        block_number: 1,
        tx_index: 1,
        validation_code: 0,
    };
    assert_eq!(b.await, Some(expected));
    assert_eq!(b_again.await, Some(expected));
    // Closing the store ends the waits that are left.
    drop(store);
    assert_eq!(never.await, None);
}

#[test]
fn a_store_without_the_tx_index_still_serves_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockStoreOptions {
        index_transactions: false,
        ..BlockStoreOptions::default()
    };
    let store = BlockStore::open_with(dir.path(), opts.clone()).unwrap();
    let mut chain = Chain::new();
    let block0 = chain.block(vec![tx_envelope("a", b"first".to_vec())]);
    let block1 = chain.block(vec![tx_envelope("b", b"second".to_vec())]);
    store.append(&block0).unwrap();
    store.append(&block1).unwrap();
    let check = |store: &BlockStore| {
        assert_eq!(store.height(), 2);
        assert_eq!(store.block(1).unwrap().as_ref(), Some(&block1));
        let hash = block_header_hash(block0.header.as_ref().unwrap());
        assert_eq!(store.block_by_hash(&hash).unwrap().as_ref(), Some(&block0));
        assert_eq!(store.tx_location("a").unwrap(), None);
        assert!(!store.contains_tx("b").unwrap());
    };
    check(&store);
    drop(store);
    // Rebuilt from the block files, the index still leaves transactions out.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = BlockStore::open_with(dir.path(), opts).unwrap();
    check(&store);
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 50, 2);
    let hash = store.last_block_hash();
    let blocks: Vec<_> = store.iter_from(0).map(Result::unwrap).collect();
    drop(store);

    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 50);
    assert_eq!(store.last_block_hash(), hash);
    let again: Vec<_> = store.iter_from(0).map(Result::unwrap).collect();
    assert_eq!(again, blocks);
    assert_eq!(
        store
            .tx_location(&tx_id(49, 1))
            .unwrap()
            .unwrap()
            .block_number,
        49
    );

    // And it keeps appending where it left off.
    let mut chain = Chain::following(&store);
    store.append(&chain.block_with_txs(2)).unwrap();
    assert_eq!(store.height(), 51);
}

#[test]
fn iter_from_yields_the_rest_of_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 10, 1);
    let numbers: Vec<u64> = store
        .iter_from(7)
        .map(|b| b.unwrap().header.unwrap().number)
        .collect();
    assert_eq!(numbers, vec![7, 8, 9]);
    assert_eq!(store.iter_from(10).count(), 0);
    assert_eq!(store.iter_from(99).count(), 0);

    // Blocks appended while iterating are included.
    let mut chain = Chain::following(&store);
    let mut iter = store.iter_from(9);
    assert!(iter.next().is_some());
    store.append(&chain.block_with_txs(1)).unwrap();
    assert_eq!(iter.next().unwrap().unwrap().header.unwrap().number, 10);
    assert!(iter.next().is_none());
}

#[test]
fn rolls_block_files_at_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockStoreOptions {
        max_file_size: 2048,
        ..BlockStoreOptions::default()
    };
    let store = BlockStore::open_with(dir.path(), opts.clone()).unwrap();
    let mut chain = Chain::new();
    let mut blocks = Vec::new();
    for _ in 0..40 {
        let block = chain.block_with_txs(3);
        store.append(&block).unwrap();
        blocks.push(block);
    }
    let files = block_file_count(dir.path());
    assert!(files >= 5, "only {files} block files");
    for (n, block) in blocks.iter().enumerate() {
        assert_eq!(store.block(n as u64).unwrap().as_ref(), Some(block));
    }
    // No file grows past the limit (each block is far smaller than it).
    for entry in std::fs::read_dir(dir.path().join("blocks")).unwrap() {
        assert!(entry.unwrap().metadata().unwrap().len() <= 2048);
    }
    drop(store);

    // A block bigger than the limit gets a file of its own.
    let store = BlockStore::open_with(dir.path(), opts).unwrap();
    assert_eq!(store.height(), 40);
    let mut chain = Chain::following(&store);
    let big = chain.block(vec![vec![7u8; 10_000]]);
    store.append(&big).unwrap();
    store.append(&chain.block_with_txs(1)).unwrap();
    assert_eq!(block_file_count(dir.path()), files + 2);
    assert_eq!(store.block(40).unwrap(), Some(big));
    drop(store);
    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 42);
    assert_eq!(store.iter_from(0).count(), 42);
}

#[test]
fn zero_file_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockStoreOptions {
        max_file_size: 0,
        ..BlockStoreOptions::default()
    };
    assert!(matches!(
        BlockStore::open_with(dir.path(), opts).unwrap_err(),
        LedgerError::InvalidOptions { .. }
    ));
}

#[tokio::test]
async fn subscribe_receives_height_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlockStore::open(dir.path()).unwrap());
    let mut rx = store.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);

    let writer = Arc::clone(&store);
    let appends = tokio::task::spawn_blocking(move || {
        let mut chain = Chain::new();
        for _ in 0..5 {
            writer.append(&chain.block_with_txs(1)).unwrap();
        }
    });
    // Heights only go up, and the last one seen is 5.
    let mut last = 0;
    while last < 5 {
        rx.changed().await.unwrap();
        let h = *rx.borrow_and_update();
        assert!(h > last && h <= 5);
        assert!(store.height() >= h, "notified before the block was visible");
        assert!(store.block(h - 1).unwrap().is_some());
        last = h;
    }
    appends.await.unwrap();

    // A late subscriber sees the current height at once.
    assert_eq!(*store.subscribe().borrow(), 5);
}

#[test]
fn concurrent_readers_while_appending() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        BlockStore::open_with(
            dir.path(),
            BlockStoreOptions {
                max_file_size: 16 * 1024,
                ..BlockStoreOptions::default()
            },
        )
        .unwrap(),
    );
    const BLOCKS: u64 = 200;
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let mut chain = Chain::new();
            for _ in 0..BLOCKS {
                store.append(&chain.block_with_txs(4)).unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut checked = 0u64;
                loop {
                    let height = store.height();
                    if height > 0 {
                        // Everything below the height is readable and consistent.
                        let n = (checked * 7 + r) % height;
                        let block = store.block(n).unwrap().expect("below height");
                        assert_eq!(block.header.unwrap().number, n);
                        let loc = store.tx_location(&tx_id(n, 3)).unwrap().unwrap();
                        assert_eq!(loc.block_number, n);
                        checked += 1;
                    }
                    if height == BLOCKS {
                        break;
                    }
                }
                checked
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(store.height(), BLOCKS);
    assert_eq!(store.iter_from(0).count() as u64, BLOCKS);
}

#[test]
fn block_store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BlockStore>();
}

fn orderer_metadata(last_config: u64) -> Vec<u8> {
    let value = OrdererBlockMetadata {
        last_config: Some(LastConfig { index: last_config }),
        consenter_metadata: Vec::new(),
    }
    .encode_to_vec();
    Metadata {
        value,
        signatures: Vec::new(),
    }
    .encode_to_vec()
}

#[test]
fn last_config_block_follows_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.last_config_block().unwrap(), None);

    let mut chain = Chain::new();
    let genesis = chain.block_with_txs(1);
    store.append(&genesis).unwrap();
    // No metadata: falls back to block 0.
    assert_eq!(store.last_config_block().unwrap().as_ref(), Some(&genesis));

    let mut config = chain.block_with_txs(1);
    config.metadata.as_mut().unwrap().metadata[0] = orderer_metadata(1);
    store.append(&config).unwrap();
    let mut normal = chain.block_with_txs(1);
    normal.metadata.as_mut().unwrap().metadata[0] = orderer_metadata(1);
    store.append(&normal).unwrap();
    assert_eq!(store.last_config_block().unwrap().as_ref(), Some(&config));

    // The deprecated LAST_CONFIG slot is read when SIGNATURES has none.
    let mut old_style = chain.block_with_txs(1);
    old_style.metadata.as_mut().unwrap().metadata[1] = Metadata {
        value: LastConfig { index: 2 }.encode_to_vec(),
        signatures: Vec::new(),
    }
    .encode_to_vec();
    store.append(&old_style).unwrap();
    assert_eq!(store.last_config_block().unwrap(), store.block(2).unwrap());

    // An index past the height is an error, not a silent fallback.
    let mut bad = chain.block_with_txs(1);
    bad.metadata.as_mut().unwrap().metadata[0] = orderer_metadata(100);
    store.append(&bad).unwrap();
    assert!(matches!(
        store.last_config_block().unwrap_err(),
        LedgerError::BadLastConfig { number: 4, .. }
    ));

    // Undecodable metadata is an error too.
    let mut garbage = chain.block_with_txs(1);
    garbage.metadata.as_mut().unwrap().metadata[0] = vec![0xff, 0xff, 0xff];
    store.append(&garbage).unwrap();
    assert!(matches!(
        store.last_config_block().unwrap_err(),
        LedgerError::BadLastConfig { number: 5, .. }
    ));
}

#[test]
fn racing_appenders_store_each_block_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlockStore::open(dir.path()).unwrap());
    let mut chain = Chain::new();
    let blocks: Arc<Vec<_>> = Arc::new((0..50).map(|_| chain.block_with_txs(2)).collect());
    let mut rx = store.subscribe();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let blocks = Arc::clone(&blocks);
            std::thread::spawn(move || {
                let mut won = 0;
                for block in blocks.iter() {
                    // Spin until this block is next or already stored.
                    loop {
                        match store.append(block) {
                            Ok(()) => {
                                won += 1;
                                break;
                            }
                            Err(LedgerError::WrongNumber { expected, got }) if expected > got => {
                                break
                            }
                            Err(LedgerError::WrongNumber { .. }) => std::thread::yield_now(),
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                }
                won
            })
        })
        .collect();
    let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 50);
    assert_eq!(store.height(), 50);
    assert_eq!(*rx.borrow_and_update(), 50);
    for (n, block) in blocks.iter().enumerate() {
        assert_eq!(store.block(n as u64).unwrap().as_ref(), Some(block));
    }
}

#[test]
fn a_directory_is_open_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::open(dir.path()).unwrap();
    let err = BlockStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, LedgerError::Locked { .. }), "{err}");
    assert_eq!(err.code(), "LEDGER_LOCKED");
    drop(store);
    // Reopening right after a close works (many times over).
    for _ in 0..20 {
        drop(BlockStore::open(dir.path()).unwrap());
    }
}
