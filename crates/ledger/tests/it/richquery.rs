//! Rich queries: every operator, ordering, paging, projection and errors.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use twill_ledger::richquery::{execute, Query, QueryError, QueryPage, SortDirection, MAX_RESULTS};

fn query(text: &str) -> Query {
    Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Whether `selector` matches `doc`.
fn m(selector: Value, doc: Value) -> bool {
    query(&json!({ "selector": selector }).to_string()).matches(&doc)
}

fn parse_err(text: &str) -> QueryError {
    Query::parse(text).expect_err(text)
}

fn err_msg(text: &str) -> String {
    parse_err(text).to_string()
}

fn docs(list: &[(&str, Value)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), serde_json::to_vec(v).unwrap()))
        .collect()
}

fn run(q: &Query, d: &[(String, Vec<u8>)], page: Option<u32>, bookmark: &str) -> QueryPage {
    execute(q, d.iter().cloned().map(Ok::<_, String>), page, bookmark).unwrap()
}

fn keys(page: &QueryPage) -> Vec<&str> {
    page.records.iter().map(|(k, _)| k.as_str()).collect()
}

/// Walks every page and returns all keys in order, checking no page is
/// larger than `size`.
fn walk(q: &Query, d: &[(String, Vec<u8>)], size: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut bookmark = String::new();
    for _ in 0..1000 {
        let page = run(q, d, Some(size), &bookmark);
        assert!(page.records.len() <= size as usize);
        if page.records.is_empty() {
            assert_eq!(page.bookmark, bookmark, "empty page keeps the bookmark");
            return out;
        }
        out.extend(page.records.iter().map(|(k, _)| k.clone()));
        bookmark = page.bookmark;
    }
    panic!("pagination did not terminate");
}

fn assets() -> Vec<(String, Vec<u8>)> {
    docs(&[
        ("a01", json!({"owner": "bob", "size": 5, "color": "red"})),
        ("a02", json!({"owner": "amy", "size": 15, "color": "blue"})),
        ("a03", json!({"owner": "bob", "size": 10, "color": "blue"})),
        ("a04", json!({"owner": "cat", "size": 10, "color": "green"})),
        ("a05", json!({"owner": "bob", "size": 20})),
        ("a06", json!({"owner": "amy", "size": 5, "color": "red"})),
        ("a07", json!({"owner": "dan", "color": "red"})),
        ("a08", json!({"owner": "bob", "size": 15, "color": "green"})),
        ("a09", json!({"owner": "eve", "size": 1, "color": "blue"})),
        ("a10", json!({"owner": "bob", "size": 10, "color": "red"})),
    ])
}

// ---------------------------------------------------------------- selectors

#[test]
fn implicit_equality_and_several_fields() {
    let doc = json!({"owner": "bob", "size": 10, "tags": ["x", "y"]});
    assert!(m(json!({"owner": "bob"}), doc.clone()));
    assert!(m(json!({"owner": "bob", "size": 10}), doc.clone()));
    assert!(!m(json!({"owner": "bob", "size": 11}), doc.clone()));
    assert!(!m(json!({"owner": "Bob"}), doc.clone()));
    assert!(m(json!({"size": 10.0}), doc.clone()));
    // Equality with an array is whole-value, not membership.
    assert!(m(json!({"tags": ["x", "y"]}), doc.clone()));
    assert!(!m(json!({"tags": "x"}), doc.clone()));
    assert!(m(json!({}), doc));
}

#[test]
fn nested_fields_as_objects_and_dotted_paths() {
    let doc = json!({"a": {"b": {"c": 1}, "d": [10, {"e": "x"}]}, "a.b": 2});
    assert!(m(json!({"a.b.c": 1}), doc.clone()));
    assert!(m(json!({"a": {"b": {"c": 1}}}), doc.clone()));
    assert!(m(json!({"a": {"b.c": {"$gt": 0}}}), doc.clone()));
    assert!(!m(json!({"a.b.c": 2}), doc.clone()));
    assert!(!m(json!({"a.x.c": 1}), doc.clone()));
    // Array elements by index.
    assert!(m(json!({"a.d.0": 10}), doc.clone()));
    assert!(m(json!({"a.d.1.e": "x"}), doc.clone()));
    assert!(!m(json!({"a.d.2": 10}), doc.clone()));
    // An escaped dot names a member containing a dot.
    assert!(m(json!({"a\\.b": 2}), doc.clone()));
    // A field and operators mixed in one object are ANDed.
    assert!(m(json!({"a": {"b.c": 1, "$exists": true}}), doc.clone()));
    // An empty object literal means equality with {}.
    assert!(m(json!({"o": {}}), json!({"o": {}})));
    assert!(!m(json!({"o": {}}), json!({"o": {"k": 1}})));
}

#[test]
fn eq_and_ne() {
    let doc = json!({"n": 3, "s": "x", "o": {"p": 1, "q": [1, 2]}});
    assert!(m(json!({"n": {"$eq": 3}}), doc.clone()));
    assert!(!m(json!({"n": {"$eq": 4}}), doc.clone()));
    assert!(m(json!({"o": {"$eq": {"q": [1, 2], "p": 1}}}), doc.clone()));
    assert!(!m(json!({"o": {"$eq": {"p": 1}}}), doc.clone()));
    assert!(m(json!({"n": {"$ne": 4}}), doc.clone()));
    assert!(!m(json!({"n": {"$ne": 3}}), doc.clone()));
    assert!(m(json!({"s": {"$ne": 3}}), doc.clone()));
    // $ne on a missing field does not match (the field must exist).
    assert!(!m(json!({"missing": {"$ne": 3}}), doc));
}

#[test]
fn range_operators() {
    let doc = json!({"n": 10, "s": "mango"});
    for (sel, want) in [
        (json!({"n": {"$gt": 9}}), true),
        (json!({"n": {"$gt": 10}}), false),
        (json!({"n": {"$gte": 10}}), true),
        (json!({"n": {"$gte": 10.5}}), false),
        (json!({"n": {"$lt": 10.5}}), true),
        (json!({"n": {"$lt": 10}}), false),
        (json!({"n": {"$lte": 10}}), true),
        (json!({"n": {"$lte": -1}}), false),
        (json!({"s": {"$gt": "apple"}}), true),
        (json!({"s": {"$gt": "pear"}}), false),
        (json!({"s": {"$lte": "mango"}}), true),
        (json!({"missing": {"$lt": 100}}), false),
    ] {
        assert_eq!(m(sel.clone(), doc.clone()), want, "{sel}");
    }
}

#[test]
fn comparisons_across_types_follow_collation() {
    // null < false < true < numbers < strings < arrays < objects
    let values = [
        json!(null),
        json!(false),
        json!(true),
        json!(-1),
        json!(7),
        json!("7"),
        json!("b"),
        json!([]),
        json!(["a"]),
        json!({}),
        json!({"a": 1}),
    ];
    let above_number = |v: &Value| m(json!({"v": {"$gt": 100}}), json!({ "v": v }));
    let got: Vec<bool> = values.iter().map(above_number).collect();
    assert_eq!(
        got,
        [false, false, false, false, false, true, true, true, true, true, true]
    );
    let below_string = |v: &Value| m(json!({"v": {"$lt": ""}}), json!({ "v": v }));
    let got: Vec<bool> = values.iter().map(below_string).collect();
    assert_eq!(
        got,
        [true, true, true, true, true, false, false, false, false, false, false]
    );
    assert!(m(json!({"v": {"$gt": false}}), json!({"v": true})));
    assert!(m(json!({"v": {"$gt": null}}), json!({"v": false})));
    assert!(m(json!({"v": {"$gt": [1, 2]}}), json!({"v": [1, 3]})));
    assert!(m(json!({"v": {"$gt": [1, 2]}}), json!({"v": [1, 2, 0]})));
    assert!(!m(json!({"v": {"$gt": null}}), json!({"v": null})));
}

#[test]
fn several_conditions_on_one_field_are_anded() {
    let sel = json!({"n": {"$gt": 1, "$lt": 5, "$ne": 3}});
    assert!(m(sel.clone(), json!({"n": 2})));
    assert!(!m(sel.clone(), json!({"n": 3})));
    assert!(!m(sel.clone(), json!({"n": 5})));
    assert!(!m(sel, json!({"n": 1})));
}

#[test]
fn in_and_nin() {
    let sel = json!({"c": {"$in": ["red", "blue", 1]}});
    assert!(m(sel.clone(), json!({"c": "red"})));
    assert!(m(sel.clone(), json!({"c": 1.0})));
    assert!(!m(sel.clone(), json!({"c": "green"})));
    assert!(!m(sel.clone(), json!({"x": "red"})));
    // An array field matches when any element is in the list.
    assert!(m(sel.clone(), json!({"c": ["green", "blue"]})));
    assert!(!m(sel, json!({"c": ["green"]})));
    assert!(!m(json!({"c": {"$in": []}}), json!({"c": 1})));

    let sel = json!({"c": {"$nin": ["red", "blue"]}});
    assert!(m(sel.clone(), json!({"c": "green"})));
    assert!(!m(sel.clone(), json!({"c": "red"})));
    assert!(!m(sel.clone(), json!({"c": ["green", "red"]})));
    assert!(m(sel.clone(), json!({"c": ["green"]})));
    assert!(!m(sel, json!({"other": 1})), "missing field never matches");
    assert!(m(json!({"c": {"$nin": []}}), json!({"c": 1})));
}

#[test]
fn exists() {
    let doc = json!({"a": null, "b": {"c": false}});
    assert!(m(json!({"a": {"$exists": true}}), doc.clone()));
    assert!(m(json!({"b.c": {"$exists": true}}), doc.clone()));
    assert!(!m(json!({"z": {"$exists": true}}), doc.clone()));
    assert!(m(json!({"z": {"$exists": false}}), doc.clone()));
    assert!(m(json!({"b.z": {"$exists": false}}), doc.clone()));
    assert!(!m(json!({"a": {"$exists": false}}), doc));
}

#[test]
fn and_or_nor_not() {
    let doc = json!({"owner": "bob", "size": 10});
    assert!(m(
        json!({"$and": [{"owner": "bob"}, {"size": {"$gte": 10}}]}),
        doc.clone()
    ));
    assert!(!m(
        json!({"$and": [{"owner": "bob"}, {"size": 11}]}),
        doc.clone()
    ));
    assert!(m(
        json!({"$or": [{"owner": "amy"}, {"size": 10}]}),
        doc.clone()
    ));
    assert!(!m(
        json!({"$or": [{"owner": "amy"}, {"size": 11}]}),
        doc.clone()
    ));
    assert!(m(
        json!({"$nor": [{"owner": "amy"}, {"size": 11}]}),
        doc.clone()
    ));
    assert!(!m(
        json!({"$nor": [{"owner": "amy"}, {"size": 10}]}),
        doc.clone()
    ));
    assert!(m(json!({"$not": {"owner": "amy"}}), doc.clone()));
    assert!(!m(json!({"$not": {"owner": "bob"}}), doc.clone()));
    assert!(m(json!({"size": {"$not": {"$gt": 10}}}), doc.clone()));
    assert!(!m(json!({"size": {"$not": {"$lte": 10}}}), doc.clone()));
    // As in CouchDB, negation does not make a condition on a missing field
    // true (only $exists: false matches a missing field)...
    assert!(!m(json!({"$not": {"color": "red"}}), doc.clone()));
    assert!(!m(json!({"$nor": [{"color": "red"}]}), doc.clone()));
    // ...but negating $exists does.
    assert!(m(
        json!({"$not": {"color": {"$exists": true}}}),
        doc.clone()
    ));
    // Empty combinations match everything.
    assert!(m(json!({"$and": []}), doc.clone()));
    assert!(m(json!({"$or": []}), doc.clone()));
    assert!(m(json!({"$nor": []}), doc.clone()));
    // Combinations inside a field apply to that field.
    assert!(m(
        json!({"size": {"$or": [{"$lt": 5}, {"$gt": 9}]}}),
        doc.clone()
    ));
    assert!(!m(json!({"size": {"$or": [{"$lt": 5}, {"$gt": 10}]}}), doc));
}

#[test]
fn regex_matches_strings_only() {
    let sel = json!({"name": {"$regex": "^as+et-[0-9]+$"}});
    assert!(m(sel.clone(), json!({"name": "asset-42"})));
    assert!(!m(sel.clone(), json!({"name": "asset-x"})));
    assert!(!m(sel.clone(), json!({"name": 42})));
    assert!(!m(sel, json!({"other": "asset-1"})));
    // Unanchored search, case-sensitive unless (?i).
    assert!(m(json!({"n": {"$regex": "ob"}}), json!({"n": "Bobby"})));
    assert!(!m(json!({"n": {"$regex": "^b"}}), json!({"n": "Bob"})));
    assert!(m(json!({"n": {"$regex": "(?i)^b"}}), json!({"n": "Bob"})));
    assert!(m(
        json!({"n": {"$not": {"$regex": "^b"}}}),
        json!({"n": "Bob"})
    ));
}

#[test]
fn array_operators() {
    let doc = json!({"tags": ["a", "b", "c"], "scores": [3, 8, 12], "items": [{"k": 1}, {"k": 5}], "e": []});
    assert!(m(json!({"tags": {"$all": ["c", "a"]}}), doc.clone()));
    assert!(!m(json!({"tags": {"$all": ["a", "z"]}}), doc.clone()));
    assert!(!m(json!({"tags": {"$all": []}}), doc.clone()));
    assert!(!m(json!({"missing": {"$all": ["a"]}}), doc.clone()));
    assert!(m(json!({"tags": {"$size": 3}}), doc.clone()));
    assert!(!m(json!({"tags": {"$size": 2}}), doc.clone()));
    assert!(m(json!({"e": {"$size": 0}}), doc.clone()));
    assert!(m(
        json!({"scores": {"$elemMatch": {"$gt": 10}}}),
        doc.clone()
    ));
    assert!(m(
        json!({"scores": {"$elemMatch": {"$gt": 5, "$lt": 10}}}),
        doc.clone()
    ));
    assert!(!m(
        json!({"scores": {"$elemMatch": {"$gt": 8, "$lt": 12}}}),
        doc.clone()
    ));
    assert!(m(json!({"items": {"$elemMatch": {"k": 5}}}), doc.clone()));
    assert!(!m(json!({"items": {"$elemMatch": {"k": 2}}}), doc.clone()));
    assert!(m(json!({"scores": {"$allMatch": {"$gt": 2}}}), doc.clone()));
    assert!(!m(
        json!({"scores": {"$allMatch": {"$gt": 3}}}),
        doc.clone()
    ));
    assert!(!m(json!({"e": {"$allMatch": {"$gt": 3}}}), doc.clone()));
    assert!(!m(json!({"tags": {"$elemMatch": {"$eq": "z"}}}), doc));
}

#[test]
fn type_mod_and_key_map_match() {
    let doc =
        json!({"n": 7, "f": 7.5, "s": "x", "z": null, "b": true, "a": [], "o": {"k1": 1, "k2": 2}});
    for (field, ty) in [
        ("n", "number"),
        ("f", "number"),
        ("s", "string"),
        ("z", "null"),
        ("b", "boolean"),
        ("a", "array"),
        ("o", "object"),
    ] {
        assert!(m(json!({ field: {"$type": ty} }), doc.clone()), "{field}");
        assert!(!m(
            json!({ field: {"$type": if ty == "string" { "number" } else { "string" }} }),
            doc.clone()
        ));
    }
    assert!(m(json!({"n": {"$mod": [3, 1]}}), doc.clone()));
    assert!(!m(json!({"n": {"$mod": [3, 2]}}), doc.clone()));
    assert!(m(json!({"m": {"$mod": [3, -1]}}), json!({"m": -7})));
    assert!(
        !m(json!({"f": {"$mod": [2, 1]}}), doc.clone()),
        "non-integers never match"
    );
    assert!(m(
        json!({"o": {"$keyMapMatch": {"$eq": "k2"}}}),
        doc.clone()
    ));
    assert!(!m(json!({"o": {"$keyMapMatch": {"$eq": "k3"}}}), doc));
}

#[test]
fn matches_only_objects() {
    let q = query(r#"{"selector": {}}"#);
    assert!(q.matches(&json!({})));
    assert!(!q.matches(&json!([1])));
    assert!(!q.matches(&json!("s")));
    assert!(!q.matches(&json!(null)));
}

#[test]
fn id_means_the_key_in_execute() {
    let d = assets();
    let q = query(r#"{"selector": {"_id": {"$gte": "a08"}}}"#);
    assert_eq!(keys(&run(&q, &d, None, "")), ["a08", "a09", "a10"]);
    let q = query(r#"{"selector": {"owner": "bob"}, "sort": [{"_id": "desc"}], "limit": 2}"#);
    assert_eq!(keys(&run(&q, &d, None, "")), ["a10", "a08"]);
}

// --------------------------------------------------------------- execution

#[test]
fn values_that_are_not_json_objects_are_skipped() {
    let d = vec![
        ("k1".to_string(), b"not json".to_vec()),
        ("k2".to_string(), b"[1,2]".to_vec()),
        ("k3".to_string(), b"\"str\"".to_vec()),
        ("k4".to_string(), br#"{"x":1}"#.to_vec()),
        ("k5".to_string(), Vec::new()),
        ("k6".to_string(), b"42".to_vec()),
    ];
    let page = run(&query(r#"{"selector": {}}"#), &d, None, "");
    assert_eq!(keys(&page), ["k4"]);
    // Without fields, the stored bytes come back untouched.
    assert_eq!(page.records[0].1, br#"{"x":1}"#.to_vec());
}

#[test]
fn selector_filters_in_key_order() {
    let d = assets();
    let page = run(&query(r#"{"selector": {"owner": "bob"}}"#), &d, None, "");
    assert_eq!(keys(&page), ["a01", "a03", "a05", "a08", "a10"]);
}

#[test]
fn sort_ascending_descending_and_multi_field() {
    let d = assets();
    let q = query(r#"{"selector": {"owner": "bob"}, "sort": ["size"]}"#);
    assert_eq!(
        keys(&run(&q, &d, None, "")),
        ["a01", "a03", "a10", "a08", "a05"]
    );
    let q = query(r#"{"selector": {"owner": "bob"}, "sort": [{"size": "desc"}]}"#);
    // Ties (a03/a10 at 10) stay in key order.
    assert_eq!(
        keys(&run(&q, &d, None, "")),
        ["a05", "a08", "a03", "a10", "a01"]
    );
    let q = query(
        r#"{"selector": {"size": {"$gt": 0}}, "sort": [{"color": "asc"}, {"size": "desc"}]}"#,
    );
    // a05 has no color and is left out.
    assert_eq!(
        keys(&run(&q, &d, None, "")),
        ["a02", "a03", "a09", "a08", "a04", "a10", "a01", "a06"]
    );
    assert_eq!(q.sort()[1].direction, SortDirection::Desc);
}

#[test]
fn sort_leaves_out_documents_missing_a_sort_field() {
    let d = assets();
    let q = query(r#"{"selector": {}, "sort": ["size"]}"#);
    let page = run(&q, &d, None, "");
    assert_eq!(page.records.len(), 9);
    assert!(!keys(&page).contains(&"a07"));
}

#[test]
fn sort_orders_mixed_types_by_collation() {
    let d = docs(&[
        ("k1", json!({"v": "b"})),
        ("k2", json!({"v": 2})),
        ("k3", json!({"v": null})),
        ("k4", json!({"v": [0]})),
        ("k5", json!({"v": true})),
        ("k6", json!({"v": {"a": 1}})),
        ("k7", json!({"v": "A"})),
        ("k8", json!({"v": -3.5})),
    ]);
    let q = query(r#"{"selector": {}, "sort": ["v"]}"#);
    assert_eq!(
        keys(&run(&q, &d, None, "")),
        ["k3", "k5", "k8", "k2", "k7", "k1", "k4", "k6"]
    );
}

#[test]
fn limit_and_skip() {
    let d = assets();
    let q = query(r#"{"selector": {"owner": "bob"}, "limit": 2}"#);
    assert_eq!(keys(&run(&q, &d, None, "")), ["a01", "a03"]);
    let q = query(r#"{"selector": {"owner": "bob"}, "skip": 3}"#);
    assert_eq!(keys(&run(&q, &d, None, "")), ["a08", "a10"]);
    let q = query(
        r#"{"selector": {"owner": "bob"}, "skip": 1, "limit": 2, "sort": [{"size": "desc"}]}"#,
    );
    assert_eq!(keys(&run(&q, &d, None, "")), ["a08", "a03"]);
    let q = query(r#"{"selector": {}, "limit": 0}"#);
    assert!(run(&q, &d, None, "").records.is_empty());
    let q = query(r#"{"selector": {}, "skip": 100}"#);
    assert!(run(&q, &d, None, "").records.is_empty());
}

#[test]
fn pagination_without_sort_returns_every_match_once_in_key_order() {
    let d: Vec<(String, Vec<u8>)> = (0..47)
        .map(|i| {
            (
                format!("k{i:03}"),
                serde_json::to_vec(&json!({"i": i, "even": i % 2 == 0})).unwrap(),
            )
        })
        .collect();
    let q = query(r#"{"selector": {"even": true}}"#);
    let expected: Vec<String> = (0..47).step_by(2).map(|i| format!("k{i:03}")).collect();
    for size in [1, 3, 7, 24, 100] {
        assert_eq!(walk(&q, &d, size), expected, "page size {size}");
    }
}

#[test]
fn pagination_with_sort_returns_every_match_once_in_sort_order() {
    // Many ties on "g" so that paging has to break them by key.
    let d: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| {
            (
                format!("k{i:03}"),
                serde_json::to_vec(&json!({"g": (i * 7) % 5, "i": i})).unwrap(),
            )
        })
        .collect();
    let q = query(r#"{"selector": {"i": {"$gte": 5}}, "sort": [{"g": "desc"}, "i"]}"#);
    let all = keys(&run(&q, &d, None, ""))
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    assert_eq!(all.len(), 55);
    for size in [1, 4, 10, 55, 56] {
        let walked = walk(&q, &d, size);
        assert_eq!(walked, all, "page size {size}");
        let unique: BTreeSet<&String> = walked.iter().collect();
        assert_eq!(unique.len(), 55);
    }
}

#[test]
fn bookmark_resumes_after_the_last_record_even_if_data_changed() {
    let mut d = assets();
    let q = query(r#"{"selector": {"owner": "bob"}, "sort": ["size"]}"#);
    let first = run(&q, &d, Some(2), "");
    assert_eq!(keys(&first), ["a01", "a03"]);
    // A new record sorting before the bookmark is not returned; one after is.
    d.push((
        "a00".to_string(),
        serde_json::to_vec(&json!({"owner": "bob", "size": 1})).unwrap(),
    ));
    d.push((
        "a11".to_string(),
        serde_json::to_vec(&json!({"owner": "bob", "size": 11})).unwrap(),
    ));
    d.sort();
    let second = run(&q, &d, Some(2), &first.bookmark);
    assert_eq!(keys(&second), ["a10", "a11"]);
    // Bookmarks are stable: the same page gives the same bookmark.
    assert_eq!(
        run(&q, &d, Some(2), &first.bookmark).bookmark,
        second.bookmark
    );
    assert!(!second.bookmark.contains('='));
}

#[test]
fn paging_ignores_limit_and_skips_only_on_the_first_page() {
    let d = assets();
    let q = query(r#"{"selector": {"owner": "bob"}, "limit": 1, "skip": 1}"#);
    let first = run(&q, &d, Some(2), "");
    assert_eq!(keys(&first), ["a03", "a05"]);
    let second = run(&q, &d, Some(2), &first.bookmark);
    assert_eq!(keys(&second), ["a08", "a10"]);
    let third = run(&q, &d, Some(2), &second.bookmark);
    assert!(third.records.is_empty());
    assert_eq!(third.bookmark, second.bookmark);
}

#[test]
fn bookmark_member_in_the_query_is_used_when_none_is_passed() {
    let d = assets();
    let q = query(r#"{"selector": {"owner": "bob"}}"#);
    let first = run(&q, &d, Some(3), "");
    let text = json!({"selector": {"owner": "bob"}, "bookmark": first.bookmark}).to_string();
    let q2 = query(&text);
    assert_eq!(q2.bookmark(), Some(first.bookmark.as_str()));
    assert_eq!(keys(&run(&q2, &d, Some(3), "")), ["a08", "a10"]);
}

#[test]
fn results_are_capped_at_max_results() {
    let d: Vec<(String, Vec<u8>)> = (0..MAX_RESULTS + 5)
        .map(|i| (format!("k{i:07}"), b"{}".to_vec()))
        .collect();
    let q = query(r#"{"selector": {}}"#);
    assert_eq!(run(&q, &d, None, "").records.len(), MAX_RESULTS);
    assert_eq!(run(&q, &d, Some(u32::MAX), "").records.len(), MAX_RESULTS);
}

#[test]
fn fields_project_nested_paths() {
    let d = docs(&[(
        "k1",
        json!({"owner": "bob", "size": 3, "meta": {"made": 2020, "by": "x"}, "tags": ["t"]}),
    )]);
    let q =
        query(r#"{"selector": {}, "fields": ["size", "meta.made", "nope", "meta.nope.deeper"]}"#);
    assert_eq!(
        q.fields(),
        ["size", "meta.made", "nope", "meta.nope.deeper"]
    );
    let page = run(&q, &d, None, "");
    let got: Value = serde_json::from_slice(&page.records[0].1).unwrap();
    assert_eq!(got, json!({"size": 3, "meta": {"made": 2020}}));
    // Projection applies after matching on unprojected fields.
    let q = query(r#"{"selector": {"owner": "bob"}, "fields": ["tags"]}"#);
    let got: Value = serde_json::from_slice(&run(&q, &d, None, "").records[0].1).unwrap();
    assert_eq!(got, json!({"tags": ["t"]}));
}

#[test]
fn use_index_and_ignored_members_are_accepted() {
    let q = query(
        r#"{"selector": {"a": 1}, "use_index": ["_design/idx", "byA"], "execution_stats": true}"#,
    );
    assert_eq!(q.use_index(), ["_design/idx", "byA"]);
    let q = query(r#"{"selector": {"a": 1}, "use_index": "_design/idx"}"#);
    assert_eq!(q.use_index(), ["_design/idx"]);
    assert_eq!(q.limit(), None);
    assert_eq!(q.skip(), 0);
}

#[test]
fn source_errors_end_the_query() {
    let q = query(r#"{"selector": {}}"#);
    let items = vec![Ok(("k1".to_string(), b"{}".to_vec())), Err("disk on fire")];
    let err = execute(&q, items, None, "").unwrap_err();
    assert_eq!(err, QueryError::Source("disk on fire".to_string()));
    assert_eq!(err.to_string(), "reading documents failed: disk on fire");
}

// ------------------------------------------------------------------ errors

#[test]
fn unknown_and_unsupported_operators_are_named() {
    assert_eq!(
        err_msg(r#"{"selector": {"owner": {"$foo": 1}}}"#),
        r#"unknown operator "$foo" at selector.owner"#
    );
    assert_eq!(
        err_msg(r#"{"selector": {"$or": [{"a": 1}, {"b": {"$bar": 2}}]}}"#),
        r#"unknown operator "$bar" at selector.$or[1].b"#
    );
    let e = parse_err(r#"{"selector": {"$text": "x"}}"#);
    assert_eq!(e.code(), "QUERY_UNSUPPORTED_OPERATOR");
    assert_eq!(
        e.to_string(),
        r#"operator "$text" is not supported at selector"#
    );
}

#[test]
fn wrong_operand_types_are_named() {
    for (sel, msg) in [
        (
            r#"{"color": {"$in": "red"}}"#,
            "$in expects an array at selector.color",
        ),
        (
            r#"{"color": {"$nin": {}}}"#,
            "$nin expects an array at selector.color",
        ),
        (
            r#"{"t": {"$all": 1}}"#,
            "$all expects an array at selector.t",
        ),
        (
            r#"{"a": {"$exists": "yes"}}"#,
            "$exists expects true or false at selector.a",
        ),
        (
            r#"{"a": {"$size": -1}}"#,
            "$size expects a non-negative integer at selector.a",
        ),
        (
            r#"{"a": {"$size": 1.5}}"#,
            "$size expects a non-negative integer at selector.a",
        ),
        (
            r#"{"a": {"$mod": [0, 1]}}"#,
            "$mod expects [divisor, remainder] integers with a non-zero divisor at selector.a",
        ),
        (
            r#"{"a": {"$mod": [2]}}"#,
            "$mod expects [divisor, remainder] integers with a non-zero divisor at selector.a",
        ),
        (
            r#"{"a": {"$type": "int"}}"#,
            r#"$type expects one of "null", "boolean", "number", "string", "array", "object" at selector.a"#,
        ),
        (
            r#"{"a": {"$regex": 5}}"#,
            "$regex expects a string at selector.a",
        ),
        (
            r#"{"$and": {"a": 1}}"#,
            "$and expects an array of selectors at selector",
        ),
        (
            r#"{"$or": "x"}"#,
            "$or expects an array of selectors at selector",
        ),
        (
            r#"{"a": {"$not": 3}}"#,
            "$not expects a selector object at selector.a",
        ),
        (
            r#"{"a": {"$elemMatch": [1]}}"#,
            "$elemMatch expects a selector object at selector.a",
        ),
        (
            r#"{"$and": [1]}"#,
            "expected a selector object at selector.$and[0]",
        ),
    ] {
        let text = format!(r#"{{"selector": {sel}}}"#);
        assert_eq!(err_msg(&text), msg, "{sel}");
    }
}

#[test]
fn bad_regexes_are_refused() {
    let e = parse_err(r#"{"selector": {"name": {"$regex": "a(b"}}}"#);
    assert_eq!(e.code(), "QUERY_INVALID_REGEX");
    assert!(
        e.to_string()
            .starts_with("invalid regex at selector.name: "),
        "{e}"
    );
    // Backreferences are not supported by the linear-time engine.
    assert!(Query::parse(r#"{"selector": {"name": {"$regex": "(a)\\1"}}}"#).is_err());
    let long = "a".repeat(twill_ledger::richquery::MAX_REGEX_LEN + 1);
    let e = parse_err(&json!({"selector": {"n": {"$regex": long}}}).to_string());
    assert!(e.to_string().contains("the limit is 1024"), "{e}");
    // A pattern whose compiled program would be huge.
    let e = parse_err(r#"{"selector": {"n": {"$regex": "(\\w{100}){100}"}}}"#);
    assert_eq!(e.code(), "QUERY_INVALID_REGEX");
}

#[test]
fn bad_sorts_are_refused() {
    assert_eq!(
        err_msg(r#"{"selector": {}, "sort": [{"x": "up"}]}"#),
        r#"sort field "x": direction must be "asc" or "desc""#
    );
    assert_eq!(
        err_msg(r#"{"selector": {}, "sort": ["a", 3]}"#),
        r#"sort entry 1 must be a field name or a {"field": "asc"|"desc"} object"#
    );
    assert_eq!(
        err_msg(r#"{"selector": {}, "sort": [{"a": "asc", "b": "asc"}]}"#),
        r#"sort entry 0 must be a field name or a {"field": "asc"|"desc"} object"#
    );
    assert_eq!(
        parse_err(r#"{"selector": {}, "sort": "a"}"#),
        QueryError::SortNotArray
    );
    assert_eq!(
        err_msg(r#"{"selector": {}, "sort": ["a..b"]}"#),
        r#"empty field name in "sort" entry 0"#
    );
}

#[test]
fn malformed_queries_are_refused() {
    assert_eq!(parse_err("[1]"), QueryError::NotAnObject);
    assert_eq!(parse_err(r#""selector""#), QueryError::NotAnObject);
    let e = parse_err(r#"{"selector": "#);
    assert_eq!(e.code(), "QUERY_INVALID_JSON");
    assert!(e.to_string().starts_with("invalid query JSON: "), "{e}");
    assert_eq!(
        err_msg("x"),
        "invalid query JSON: expected value at line 1 column 1"
    );
    assert_eq!(parse_err(r#"{"limit": 5}"#), QueryError::MissingSelector);
    assert_eq!(
        err_msg(r#"{"selector": {}, "selecter": {}}"#),
        r#"unknown query member "selecter""#
    );
    assert_eq!(
        err_msg(r#"{"selector": []}"#),
        "expected a selector object at selector"
    );
    assert_eq!(
        err_msg(r#"{"selector": {}, "limit": -1}"#),
        r#"query option "limit" expects a non-negative integer"#
    );
    assert_eq!(
        err_msg(r#"{"selector": {}, "skip": "2"}"#),
        r#"query option "skip" expects a non-negative integer"#
    );
    assert_eq!(
        err_msg(r#"{"selector": {}, "fields": ["a", 1]}"#),
        r#"query option "fields" expects an array of field names"#
    );
    assert_eq!(
        err_msg(r#"{"selector": {}, "bookmark": 7}"#),
        r#"query option "bookmark" expects a string"#
    );
    assert_eq!(
        parse_err(r#"{"selector": {}, "use_index": 1}"#).code(),
        "QUERY_BAD_OPTION"
    );
    assert_eq!(
        err_msg(r#"{"selector": {"a..b": 1}}"#),
        "empty field name at selector.a..b"
    );
    assert_eq!(
        err_msg(r#"{"selector": {"": 1}}"#),
        "empty field name at selector."
    );
}

#[test]
fn deep_selectors_are_refused() {
    let mut sel = json!({"leaf": 1});
    for _ in 0..70 {
        sel = json!({ "a": sel });
    }
    let e = parse_err(&json!({ "selector": sel }).to_string());
    assert_eq!(e.code(), "QUERY_TOO_DEEP");
    assert!(
        e.to_string()
            .starts_with("selector nested deeper than 64 levels at selector.a.a."),
        "{e}"
    );
    let mut ok = json!({"leaf": 1});
    for _ in 0..40 {
        ok = json!({ "a": ok });
    }
    assert!(Query::parse(&json!({ "selector": ok }).to_string()).is_ok());
}

#[test]
fn bad_bookmarks_are_refused() {
    let d = assets();
    let q = query(r#"{"selector": {}}"#);
    for bad in ["not a bookmark!", "e30", "abc", "eyJ2IjoxfQ"] {
        let err = execute(&q, d.iter().cloned().map(Ok::<_, String>), Some(2), bad).unwrap_err();
        assert_eq!(err.code(), "QUERY_BAD_BOOKMARK", "{bad}");
        assert!(err.to_string().starts_with("invalid bookmark: "), "{err}");
    }
    // A bookmark from an unsorted query does not fit a sorted one.
    let unsorted = run(&q, &d, Some(2), "");
    let sorted = query(r#"{"selector": {}, "sort": ["size"]}"#);
    let err = execute(
        &sorted,
        d.iter().cloned().map(Ok::<_, String>),
        Some(2),
        &unsorted.bookmark,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid bookmark: made for a query with 0 sort field(s), this one has 1"
    );
    let err = execute(&q, d.iter().cloned().map(Ok::<_, String>), Some(0), "").unwrap_err();
    assert_eq!(err, QueryError::ZeroPageSize);
}
