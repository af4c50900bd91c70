//! Crash recovery: torn tails, a lagging index, lost files and corruption.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use prost::Message;
use twill_ledger::format::{encode_record, RECORD_HEADER_LEN};
use twill_ledger::{BlockStore, BlockStoreOptions, CorruptIssue, LedgerError};

use crate::support::{block_file, block_file_count, filled_store, tx_id, Chain};

fn append_raw(path: &std::path::Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

fn flip_byte(path: &std::path::Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 10, 2);
    let hash = store.last_block_hash();
    drop(store);
    let path = block_file(dir.path(), 0);
    let good_len = file_len(&path);

    // Half of the record the next append would have written.
    let mut chain = Chain {
        next: 10,
        prev: hash.unwrap().to_vec(),
    };
    let next = chain.block_with_txs(2);
    let record = encode_record(&next.encode_to_vec()).unwrap();
    append_raw(&path, &record[..record.len() / 2]);

    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 10);
    assert_eq!(store.last_block_hash(), hash);
    assert_eq!(file_len(&path), good_len, "torn bytes not cut");
    // The very block that was torn can now be appended.
    store.append(&next).unwrap();
    assert_eq!(store.height(), 11);
    drop(store);
    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 11);
    assert_eq!(store.block(10).unwrap(), Some(next));
}

#[test]
fn torn_garbage_of_every_shape_is_cut() {
    let shapes: Vec<Vec<u8>> = vec![
        vec![b'T'],                               // 1 byte of header
        b"TWB1\x10\x00".to_vec(),                 // partial header
        vec![0u8; 4096],                          // zero-filled tail
        (0..=255u8).cycle().take(3000).collect(), // random-ish garbage
    ];
    for garbage in shapes {
        let dir = tempfile::tempdir().unwrap();
        drop(filled_store(dir.path(), 3, 1));
        let path = block_file(dir.path(), 0);
        let good_len = file_len(&path);
        append_raw(&path, &garbage);
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(store.height(), 3);
        assert_eq!(file_len(&path), good_len);
        let mut chain = Chain::following(&store);
        store.append(&chain.block_with_txs(1)).unwrap();
    }
}

#[test]
fn last_record_with_bad_checksum_is_treated_as_torn() {
    // A crash can persist the header and the file size but not every page
    // of the body: the record is complete in length, wrong in content.
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 4, 1);
    let mut chain = Chain::following(&store);
    drop(store);
    let path = block_file(dir.path(), 0);
    let before = file_len(&path);
    let record = encode_record(&chain.block_with_txs(1).encode_to_vec()).unwrap();
    append_raw(&path, &record);
    flip_byte(&path, before + RECORD_HEADER_LEN as u64 + 3);

    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 4);
    assert_eq!(file_len(&path), before);
}

#[test]
fn lagging_index_is_caught_up_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 5, 2);
    let mut chain = Chain::following(&store);
    drop(store);

    // Crash after the file write, before the index update: the records are
    // in the file, the index knows nothing of them.
    let path = block_file(dir.path(), 0);
    let extra: Vec<_> = (0..3).map(|_| chain.block_with_txs(2)).collect();
    for block in &extra {
        append_raw(&path, &encode_record(&block.encode_to_vec()).unwrap());
    }

    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 8);
    assert_eq!(store.last_block_hash().unwrap().to_vec(), chain.prev);
    for block in &extra {
        let n = block.header.as_ref().unwrap().number;
        assert_eq!(store.block(n).unwrap().as_ref(), Some(block));
        assert_eq!(
            store
                .tx_location(&tx_id(n, 1))
                .unwrap()
                .unwrap()
                .block_number,
            n
        );
    }
    store.append(&chain.block_with_txs(2)).unwrap();
    assert_eq!(store.height(), 9);
}

#[test]
fn lost_index_is_rebuilt_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockStoreOptions {
        max_file_size: 2048,
        ..BlockStoreOptions::default()
    };
    let store = BlockStore::open_with(dir.path(), opts.clone()).unwrap();
    let mut chain = Chain::new();
    for _ in 0..30 {
        store.append(&chain.block_with_txs(3)).unwrap();
    }
    let hash = store.last_block_hash();
    drop(store);
    assert!(block_file_count(dir.path()) > 3);

    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = BlockStore::open_with(dir.path(), opts).unwrap();
    assert_eq!(store.height(), 30);
    assert_eq!(store.last_block_hash(), hash);
    assert_eq!(
        store
            .tx_location(&tx_id(17, 2))
            .unwrap()
            .unwrap()
            .block_number,
        17
    );
    assert_eq!(store.iter_from(0).count(), 30);
}

#[test]
fn lagging_index_then_torn_tail() {
    // Unindexed complete records followed by a torn one: index the complete
    // ones, cut the torn one.
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 2, 1);
    let mut chain = Chain::following(&store);
    drop(store);
    let path = block_file(dir.path(), 0);
    append_raw(
        &path,
        &encode_record(&chain.block_with_txs(1).encode_to_vec()).unwrap(),
    );
    let len = file_len(&path);
    let torn = encode_record(&chain.block_with_txs(1).encode_to_vec()).unwrap();
    append_raw(&path, &torn[..torn.len() - 1]);

    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 3);
    assert_eq!(file_len(&path), len);
}

#[test]
fn corrupt_checksum_in_the_middle_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 10, 2);
    drop(store);
    let path = block_file(dir.path(), 0);
    // Find block 4's record by walking the headers.
    let offset = record_offset(&path, 4);
    flip_byte(&path, offset + RECORD_HEADER_LEN as u64 + 10);

    let err = BlockStore::open(dir.path()).unwrap_err();
    match &err {
        LedgerError::Corrupt {
            file,
            offset: at,
            issue: CorruptIssue::ChecksumMismatch { .. },
        } => {
            assert_eq!(file, &path);
            assert_eq!(*at, offset);
        }
        other => panic!("unexpected error: {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("blockfile_000000"), "{text}");
    assert!(text.contains(&format!("offset {offset}")), "{text}");
    assert_eq!(err.code(), "LEDGER_CORRUPT_BLOCKFILE");
}

#[test]
fn damage_before_unindexed_records_is_corruption_not_a_torn_tail() {
    // Two unindexed records; the first is damaged. The second is intact, so
    // this cannot be an interrupted append: refuse rather than drop both.
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 2, 1);
    let mut chain = Chain::following(&store);
    drop(store);
    let path = block_file(dir.path(), 0);
    let first_at = file_len(&path);
    for _ in 0..2 {
        append_raw(
            &path,
            &encode_record(&chain.block_with_txs(1).encode_to_vec()).unwrap(),
        );
    }
    // Damage the first one's header (its length field).
    flip_byte(&path, first_at + 5);
    let err = BlockStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            LedgerError::Corrupt { offset, issue: CorruptIssue::BadRecordHeader, .. } if *offset == first_at
        ),
        "{err}"
    );
}

#[test]
fn intact_record_that_breaks_the_chain_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 3, 1);
    drop(store);
    let path = block_file(dir.path(), 0);
    let at = file_len(&path);
    // A well-formed record of block 3 from a different chain.
    let mut other = Chain {
        next: 3,
        prev: vec![0xee; 32],
    };
    append_raw(
        &path,
        &encode_record(&other.block_with_txs(1).encode_to_vec()).unwrap(),
    );
    let err = BlockStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            LedgerError::Corrupt { offset, issue: CorruptIssue::BrokenHashChain { number: 3 }, .. } if *offset == at
        ),
        "{err}"
    );

    // A record that is not a block at all, checksum intact.
    let dir = tempfile::tempdir().unwrap();
    drop(filled_store(dir.path(), 1, 1));
    let path = block_file(dir.path(), 0);
    append_raw(&path, &encode_record(&[0xff; 20]).unwrap());
    assert!(matches!(
        BlockStore::open(dir.path()).unwrap_err(),
        LedgerError::Corrupt {
            issue: CorruptIssue::Undecodable(_),
            ..
        }
    ));
}

#[test]
fn checkpoint_past_the_files_is_corruption() {
    // Block file cut short behind the index's back.
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 6, 1);
    store.flush_index().unwrap();
    drop(store);
    let path = block_file(dir.path(), 0);
    let cut = record_offset(&path, 3);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let err = BlockStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            LedgerError::Corrupt {
                issue: CorruptIssue::IndexedRecordMissing { number: 5, .. },
                ..
            }
        ),
        "{err}"
    );

    // Block files gone entirely.
    let dir = tempfile::tempdir().unwrap();
    drop(filled_store(dir.path(), 2, 1));
    std::fs::remove_file(block_file(dir.path(), 0)).unwrap();
    let err = BlockStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            LedgerError::Corrupt {
                issue: CorruptIssue::IndexedRecordMissing {
                    number: 1,
                    file_len: 0
                },
                ..
            }
        ),
        "{err}"
    );
    // Refusing did not create a fresh empty file that would hide the loss.
    assert_eq!(block_file_count(dir.path()), 0);
}

#[test]
fn missing_middle_file_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockStoreOptions {
        max_file_size: 1024,
        ..BlockStoreOptions::default()
    };
    let store = BlockStore::open_with(dir.path(), opts.clone()).unwrap();
    let mut chain = Chain::new();
    for _ in 0..20 {
        store.append(&chain.block_with_txs(2)).unwrap();
    }
    drop(store);
    std::fs::remove_file(block_file(dir.path(), 1)).unwrap();
    let err = BlockStore::open_with(dir.path(), opts).unwrap_err();
    assert!(
        matches!(&err, LedgerError::Corrupt { file, issue: CorruptIssue::MissingFile, .. } if file == &block_file(dir.path(), 1)),
        "{err}"
    );
}

#[test]
fn damage_in_an_earlier_file_is_found_on_read_or_full_verify() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockStoreOptions {
        max_file_size: 1024,
        ..BlockStoreOptions::default()
    };
    let store = BlockStore::open_with(dir.path(), opts.clone()).unwrap();
    let mut chain = Chain::new();
    for _ in 0..20 {
        store.append(&chain.block_with_txs(2)).unwrap();
    }
    drop(store);
    let path = block_file(dir.path(), 0);
    flip_byte(&path, RECORD_HEADER_LEN as u64 + 2); // block 0's bytes

    // A default open only checks the last file; the read catches it.
    let store = BlockStore::open_with(dir.path(), opts.clone()).unwrap();
    assert!(matches!(
        store.block(0).unwrap_err(),
        LedgerError::Corrupt {
            offset: 0,
            issue: CorruptIssue::ChecksumMismatch { .. },
            ..
        }
    ));
    assert!(store.block_bytes(0).is_err());
    assert!(store.block(1).unwrap().is_some());
    // The iterator reports the error and stops.
    let mut iter = store.iter_from(0);
    assert!(iter.next().unwrap().is_err());
    assert!(iter.next().is_none());
    drop(store);

    // A full verification refuses to open.
    let full = BlockStoreOptions {
        verify_all_on_open: true,
        ..opts
    };
    let err = BlockStore::open_with(dir.path(), full).unwrap_err();
    assert!(
        matches!(&err, LedgerError::Corrupt { file, offset: 0, .. } if file == &path),
        "{err}"
    );
}

#[test]
fn crash_just_after_rolling_leaves_an_empty_last_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path(), 3, 1);
    let mut chain = Chain::following(&store);
    drop(store);
    std::fs::File::create(block_file(dir.path(), 1)).unwrap();
    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 3);
    store.append(&chain.block_with_txs(1)).unwrap();
    drop(store);
    let store = BlockStore::open(dir.path()).unwrap();
    assert_eq!(store.height(), 4);
    assert_eq!(store.block(3).unwrap().unwrap().header.unwrap().number, 3);
}

/// Offset of the `n`th record of a block file, found by walking headers.
fn record_offset(path: &std::path::Path, n: usize) -> u64 {
    let mut f = std::fs::File::open(path).unwrap();
    let mut offset = 0u64;
    for _ in 0..n {
        let mut head = [0u8; RECORD_HEADER_LEN];
        f.seek(SeekFrom::Start(offset)).unwrap();
        std::io::Read::read_exact(&mut f, &mut head).unwrap();
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        offset += RECORD_HEADER_LEN as u64 + u64::from(len);
    }
    offset
}
