//! The state database through its public API: reads, writes, ranges,
//! pagination, history, savepoint, atomicity, state hash, composite keys.

use std::collections::BTreeMap;

use twill_ledger::state::{
    composite_key_range, create_composite_key, split_composite_key, Height, KeyWrite, StateDb,
    StateError, UpdateBatch,
};
use twill_ledger::LedgerError;

fn open() -> (tempfile::TempDir, StateDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state")).unwrap();
    (dir, db)
}

fn put(b: &mut UpdateBatch, ns: &str, key: &str, value: &str, h: Height) {
    b.put(ns, key, KeyWrite::Put(value.as_bytes().to_vec()), h);
}

/// Commits one block that puts each key with value "v:<key>".
fn commit_keys(db: &StateDb, block: u64, ns: &str, keys: &[&str]) {
    let mut b = UpdateBatch::default();
    for (i, k) in keys.iter().enumerate() {
        put(
            &mut b,
            ns,
            k,
            &format!("v:{k}"),
            Height::new(block, i as u64),
        );
    }
    db.commit(&b, block).unwrap();
}

fn range_keys(db: &StateDb, ns: &str, start: &str, end: &str) -> Vec<String> {
    db.range(ns, start, end)
        .map(|r| r.unwrap().0)
        .collect::<Vec<_>>()
}

#[test]
fn put_get_and_versions() {
    let (_d, db) = open();
    assert_eq!(db.get("cc", "a").unwrap(), None);
    assert_eq!(db.get_version("cc", "a").unwrap(), None);
    assert_eq!(db.savepoint().unwrap(), None);

    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "a", "1", Height::new(0, 0));
    put(&mut b, "cc", "b", "2", Height::new(0, 1));
    put(&mut b, "other", "a", "x", Height::new(0, 2));
    db.commit(&b, 0).unwrap();

    let a = db.get("cc", "a").unwrap().unwrap();
    assert_eq!(a.value, b"1");
    assert_eq!(a.version, Height::new(0, 0));
    assert!(a.metadata.is_empty());
    assert_eq!(db.get_version("cc", "b").unwrap(), Some(Height::new(0, 1)));
    assert_eq!(db.get("other", "a").unwrap().unwrap().value, b"x");
    assert_eq!(db.savepoint().unwrap(), Some(0));

    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "a", "1b", Height::new(1, 3));
    db.commit(&b, 1).unwrap();
    let a = db.get("cc", "a").unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.version),
        (&b"1b"[..], Height::new(1, 3))
    );
    // Untouched keys keep their version.
    assert_eq!(db.get_version("cc", "b").unwrap(), Some(Height::new(0, 1)));
}

#[test]
fn delete_removes_value_version_and_metadata() {
    let (_d, db) = open();
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v", Height::new(1, 0));
    b.put_metadata(
        "cc",
        "k",
        BTreeMap::from([("VALIDATION_PARAMETER".into(), vec![1])]),
        Height::new(1, 0),
    );
    db.commit(&b, 1).unwrap();
    assert!(db
        .get_metadata("cc", "k")
        .unwrap()
        .unwrap()
        .contains_key("VALIDATION_PARAMETER"));

    let mut b = UpdateBatch::default();
    b.put("cc", "k", KeyWrite::Delete, Height::new(2, 0));
    db.commit(&b, 2).unwrap();
    assert_eq!(db.get("cc", "k").unwrap(), None);
    assert_eq!(db.get_version("cc", "k").unwrap(), None);
    assert_eq!(db.get_metadata("cc", "k").unwrap(), None);
    assert_eq!(range_keys(&db, "cc", "", ""), Vec::<String>::new());

    // Re-created later, it starts without the old metadata.
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "again", Height::new(3, 0));
    db.commit(&b, 3).unwrap();
    assert_eq!(db.get_metadata("cc", "k").unwrap(), Some(BTreeMap::new()));
}

#[test]
fn metadata_write_clear_and_kept_on_overwrite() {
    let (_d, db) = open();
    let policy = BTreeMap::from([("VALIDATION_PARAMETER".to_string(), b"policy".to_vec())]);
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v1", Height::new(1, 0));
    b.put_metadata("cc", "k", policy.clone(), Height::new(1, 0));
    db.commit(&b, 1).unwrap();
    assert_eq!(db.get_metadata("cc", "k").unwrap(), Some(policy.clone()));

    // A value overwrite keeps the metadata.
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v2", Height::new(2, 5));
    db.commit(&b, 2).unwrap();
    let vv = db.get("cc", "k").unwrap().unwrap();
    assert_eq!(vv.value, b"v2");
    assert_eq!(vv.version, Height::new(2, 5));
    assert_eq!(vv.metadata, policy);

    // An empty metadata write clears it and moves the version.
    let mut b = UpdateBatch::default();
    b.put_metadata("cc", "k", BTreeMap::new(), Height::new(3, 1));
    db.commit(&b, 3).unwrap();
    let vv = db.get("cc", "k").unwrap().unwrap();
    assert_eq!(vv.value, b"v2");
    assert!(vv.metadata.is_empty());
    assert_eq!(db.get_version("cc", "k").unwrap(), Some(Height::new(3, 1)));
}

#[test]
fn range_order_and_bounds_with_composite_and_non_ascii_keys() {
    let (_d, db) = open();
    let ck1 = create_composite_key("owner", ["alice", "car1"]).unwrap();
    let ck2 = create_composite_key("owner", ["bob", "car2"]).unwrap();
    let keys = ["b", "a", "ä", "日本", "a\u{1}", "z", "\u{1}", &ck1, &ck2];
    commit_keys(&db, 1, "cc", &keys);
    // A neighbouring namespace sharing the prefix must not leak in.
    commit_keys(&db, 2, "cc2", &["a", "zz"]);

    let all = range_keys(&db, "cc", "", "");
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(all, expected);
    // Composite keys sort first (leading U+0000).
    assert_eq!(all[0], ck1);
    assert_eq!(all[1], ck2);

    // What a shim's GetStateByRange("", "") asks for: start U+0001.
    let plain = range_keys(&db, "cc", "\u{1}", "");
    assert_eq!(plain, ["\u{1}", "a", "a\u{1}", "b", "z", "ä", "日本"]);

    // [start, end): start included, end excluded.
    assert_eq!(range_keys(&db, "cc", "a", "b"), ["a", "a\u{1}"]);
    assert_eq!(range_keys(&db, "cc", "a\u{1}", "z"), ["a\u{1}", "b"]);
    assert_eq!(range_keys(&db, "cc", "b", "ä"), ["b", "z"]);
    assert_eq!(range_keys(&db, "cc", "ä", ""), ["ä", "日本"]);
    assert_eq!(
        range_keys(&db, "cc", "", "a"),
        [ck1.as_str(), &ck2, "\u{1}"]
    );

    // Partial composite key range.
    let (start, end) = composite_key_range("owner", ["alice"]).unwrap();
    assert_eq!(range_keys(&db, "cc", &start, &end), [ck1.as_str()]);
    let (start, end) = composite_key_range("owner", Vec::<&str>::new()).unwrap();
    let found = range_keys(&db, "cc", &start, &end);
    assert_eq!(found, [ck1.clone(), ck2.clone()]);
    let (object_type, attrs) = split_composite_key(&found[1]).unwrap();
    assert_eq!(
        (object_type.as_str(), attrs),
        ("owner", vec!["bob".to_string(), "car2".to_string()])
    );

    // Values come back with the keys.
    let (k, vv) = db.range("cc", "日本", "").next().unwrap().unwrap();
    assert_eq!(
        (k.as_str(), vv.value.as_slice()),
        ("日本", "v:日本".as_bytes())
    );
    assert_eq!(range_keys(&db, "cc2", "", ""), ["a", "zz"]);
}

#[test]
fn pagination_walks_all_pages_with_bookmarks() {
    let (_d, db) = open();
    let keys: Vec<String> = (0..10).map(|i| format!("key{i:02}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    commit_keys(&db, 1, "cc", &refs);
    commit_keys(&db, 2, "cc", &["zzz"]); // outside the range below

    let mut seen = Vec::new();
    let mut bookmark = String::new();
    let mut pages = Vec::new();
    loop {
        let page = db.range_page("cc", "key00", "key99", 4, &bookmark).unwrap();
        pages.push(page.items.len());
        seen.extend(page.items.into_iter().map(|(k, _)| k));
        if page.bookmark.is_empty() {
            break;
        }
        // The bookmark is the first key of the next page.
        assert_eq!(page.bookmark, keys[seen.len()]);
        bookmark = page.bookmark;
    }
    assert_eq!(pages, [4, 4, 2]);
    assert_eq!(seen, keys);

    // A page that ends exactly on the last key: bookmark is empty.
    let page = db.range_page("cc", "key05", "key99", 5, "").unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.bookmark, "");

    // page_size 0 means no limit, as in Fabric's LevelDB state DB.
    let page = db.range_page("cc", "", "", 0, "").unwrap();
    assert_eq!(page.items.len(), 11);
    assert_eq!(page.bookmark, "");

    // With an open end the next page can reach the last key of the namespace.
    let page = db.range_page("cc", "key08", "", 2, "").unwrap();
    assert_eq!(page.bookmark, "zzz");
    let page = db.range_page("cc", "key08", "", 2, &page.bookmark).unwrap();
    assert_eq!(page.items[0].0, "zzz");
    assert_eq!(page.bookmark, "");
}

#[test]
fn history_is_newest_first_with_deletes() {
    let (_d, db) = open();
    let ck = create_composite_key("t", ["a"]).unwrap();
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v1", Height::new(1, 0));
    put(&mut b, "cc", &ck, "c1", Height::new(1, 1));
    db.commit(&b, 1).unwrap();
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v2", Height::new(2, 0));
    b.put("cc", "k", KeyWrite::Delete, Height::new(2, 3));
    // A key whose bytes extend "k": its history must stay separate.
    put(&mut b, "cc", "k\0x", "other", Height::new(2, 4));
    db.commit(&b, 2).unwrap();
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v3", Height::new(12, 1));
    db.commit(&b, 12).unwrap();

    let h = db.history("cc", "k").unwrap();
    let summary: Vec<(Height, bool, &[u8])> = h
        .iter()
        .map(|e| (e.height, e.is_delete, e.value.as_slice()))
        .collect();
    assert_eq!(
        summary,
        [
            (Height::new(12, 1), false, &b"v3"[..]),
            (Height::new(2, 3), true, &b""[..]),
            (Height::new(2, 0), false, &b"v2"[..]),
            (Height::new(1, 0), false, &b"v1"[..]),
        ]
    );
    assert!(h.iter().all(|e| e.namespace == "cc" && e.key == "k"));
    assert_eq!(db.history("cc", "k\0x").unwrap().len(), 1);
    assert_eq!(db.history("cc", &ck).unwrap()[0].value, b"c1");
    assert!(db.history("cc", "missing").unwrap().is_empty());
    assert!(db.history("cc2", "k").unwrap().is_empty());
}

#[test]
fn savepoint_and_state_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let hash = {
        let db = StateDb::open(&path).unwrap();
        commit_keys(&db, 0, "cc", &["a", "b"]);
        commit_keys(&db, 1, "cc", &["c"]);
        db.flush().unwrap();
        db.state_hash().unwrap()
    };
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.savepoint().unwrap(), Some(1));
    assert_eq!(db.get_version("cc", "c").unwrap(), Some(Height::new(1, 0)));
    assert_eq!(db.history("cc", "a").unwrap().len(), 1);
    assert_eq!(db.state_hash().unwrap(), hash);
    drop(db);

    // Without an explicit flush, dropping the last handle still persists.
    {
        let db = StateDb::open(&path).unwrap();
        commit_keys(&db, 2, "cc", &["d"]);
    }
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.savepoint().unwrap(), Some(2));
    assert!(db.get("cc", "d").unwrap().is_some());
}

#[test]
fn recommitting_a_block_is_refused_and_changes_nothing() {
    let (_d, db) = open();
    commit_keys(&db, 5, "cc", &["a"]);
    let before = db.state_hash().unwrap();
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "a", "changed", Height::new(5, 0));
    for block in [5, 4, 0] {
        match db.commit(&b, block) {
            Err(StateError::AlreadyCommitted {
                block: got,
                savepoint,
            }) => {
                assert_eq!((got, savepoint), (block, 5));
            }
            other => panic!("expected AlreadyCommitted, got {other:?}"),
        }
    }
    assert_eq!(db.state_hash().unwrap(), before);
    assert_eq!(db.get("cc", "a").unwrap().unwrap().value, b"v:a");
    // Converts into the crate error with a stable code.
    let err: LedgerError = db.commit(&b, 5).unwrap_err().into();
    assert_eq!(err.code(), "STATE_ALREADY_COMMITTED");
    db.commit(&b, 6).unwrap();
}

#[test]
fn failed_commit_leaves_nothing() {
    let (_d, db) = open();
    commit_keys(&db, 1, "cc", &["a"]);
    let before = db.state_hash().unwrap();

    // Valid writes, history and metadata alongside one bad namespace.
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "a", "new", Height::new(2, 0));
    put(&mut b, "cc", "b", "new", Height::new(2, 1));
    b.put_metadata(
        "cc",
        "a",
        BTreeMap::from([("m".into(), vec![1])]),
        Height::new(2, 1),
    );
    put(&mut b, "bad\0ns", "x", "y", Height::new(2, 2));
    let err = db.commit(&b, 2).unwrap_err();
    assert_eq!(err.code(), "STATE_INVALID_NAMESPACE");

    assert_eq!(db.state_hash().unwrap(), before);
    assert_eq!(db.savepoint().unwrap(), Some(1));
    assert_eq!(db.get("cc", "b").unwrap(), None);
    assert_eq!(db.get("cc", "a").unwrap().unwrap().value, b"v:a");
    assert_eq!(db.history("cc", "a").unwrap().len(), 1);
    assert!(db.history("cc", "b").unwrap().is_empty());

    // A bad namespace that appears only in a metadata write is caught too.
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "c", "new", Height::new(2, 0));
    b.put_metadata("x\0y", "k", BTreeMap::new(), Height::new(2, 0));
    assert!(db.commit(&b, 2).is_err());
    assert_eq!(db.get("cc", "c").unwrap(), None);
    assert_eq!(db.state_hash().unwrap(), before);
}

#[test]
fn state_hash_agrees_on_equal_state_and_differs_otherwise() {
    let (_d1, db1) = open();
    let (_d2, db2) = open();
    let empty = db1.state_hash().unwrap();
    assert_eq!(empty, db2.state_hash().unwrap());

    let mut blocks = Vec::new();
    for n in 0..5u64 {
        let mut b = UpdateBatch::default();
        for i in 0..20u64 {
            let key = format!("k{}", (n * 7 + i) % 30);
            if i % 9 == 8 {
                b.put("cc", &key, KeyWrite::Delete, Height::new(n, i));
            } else {
                put(&mut b, "cc", &key, &format!("{n}-{i}"), Height::new(n, i));
            }
        }
        b.put_metadata(
            "cc",
            "k1",
            BTreeMap::from([("p".into(), vec![n as u8])]),
            Height::new(n, 20),
        );
        blocks.push(b);
    }
    for (n, b) in blocks.iter().enumerate() {
        db1.commit(b, n as u64).unwrap();
        db2.commit(b, n as u64).unwrap();
    }
    let h1 = db1.state_hash().unwrap();
    assert_eq!(h1, db2.state_hash().unwrap());
    assert_ne!(h1, empty);

    let mut extra = UpdateBatch::default();
    put(&mut extra, "cc", "k1", "extra", Height::new(5, 0));
    db2.commit(&extra, 5).unwrap();
    assert_ne!(db2.state_hash().unwrap(), h1);

    // Same write, but a different savepoint: still different.
    db1.commit(&extra, 6).unwrap();
    assert_ne!(db1.state_hash().unwrap(), db2.state_hash().unwrap());
}

#[test]
fn composite_keys_round_trip_and_refuse_bad_parts() {
    let key = create_composite_key("asset", ["ü", "", "x y"]).unwrap();
    assert_eq!(key, "\0asset\0ü\0\0x y\0");
    let (object_type, attrs) = split_composite_key(&key).unwrap();
    assert_eq!(object_type, "asset");
    assert_eq!(attrs, ["ü", "", "x y"]);

    for (object_type, attr) in [("ok", "a\0b"), ("a\0", "ok"), ("ok", "\u{10FFFF}")] {
        let err = create_composite_key(object_type, [attr]).unwrap_err();
        assert_eq!(
            err.code(),
            "STATE_INVALID_COMPOSITE_KEY_PART",
            "{object_type:?} {attr:?}"
        );
    }
    assert_eq!(
        split_composite_key("plain").unwrap_err().code(),
        "STATE_NOT_COMPOSITE_KEY"
    );
}

#[test]
fn history_keeps_retired_values_and_ignores_metadata_writes() {
    let (_d, db) = open();
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v1", Height::new(1, 0));
    db.commit(&b, 1).unwrap();

    // A metadata-only write moves the version, not the history.
    let mut b = UpdateBatch::default();
    b.put_metadata(
        "cc",
        "k",
        BTreeMap::from([("A".to_owned(), b"x".to_vec())]),
        Height::new(2, 0),
    );
    db.commit(&b, 2).unwrap();
    assert_eq!(db.get_version("cc", "k").unwrap(), Some(Height::new(2, 0)));
    let h = db.history("cc", "k").unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].height, h[0].value.as_slice()),
        (Height::new(1, 0), &b"v1"[..])
    );

    // Each later write retires the value it replaces into history.
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v2", Height::new(3, 0));
    db.commit(&b, 3).unwrap();
    let mut b = UpdateBatch::default();
    put(&mut b, "cc", "k", "v3", Height::new(4, 1));
    put(&mut b, "cc", "k", "v4", Height::new(4, 2));
    db.commit(&b, 4).unwrap();
    let summary: Vec<(Height, Vec<u8>)> = db
        .history("cc", "k")
        .unwrap()
        .into_iter()
        .map(|e| (e.height, e.value))
        .collect();
    assert_eq!(
        summary,
        [
            (Height::new(4, 2), b"v4".to_vec()),
            (Height::new(4, 1), b"v3".to_vec()),
            (Height::new(3, 0), b"v2".to_vec()),
            (Height::new(1, 0), b"v1".to_vec()),
        ]
    );
    // The metadata outlived the value writes.
    assert_eq!(
        db.get_metadata("cc", "k").unwrap().unwrap().get("A"),
        Some(&b"x".to_vec())
    );
}

#[test]
fn a_database_in_the_earlier_layout_starts_empty_for_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let db = StateDb::open(&path).unwrap();
        commit_keys(&db, 1, "cc", &["a"]);
        db.flush().unwrap();
    }
    {
        // Mark the database as written by the first layout.
        let raw = twill_ledger::open_sled_waiting(
            &sled::Config::new().path(&path),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let tree = raw.open_tree(b"state").unwrap();
        tree.insert(b"mformat", &b"twill-state-1"[..]).unwrap();
        raw.flush().unwrap();
    }
    let db = StateDb::open(&path).unwrap();
    assert_eq!(db.savepoint().unwrap(), None);
    assert_eq!(db.get("cc", "a").unwrap(), None);
    commit_keys(&db, 1, "cc", &["a"]);
    assert!(db.get("cc", "a").unwrap().is_some());
}
