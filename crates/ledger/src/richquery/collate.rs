//! The total order over JSON values that comparisons and sorting use.
//!
//! Types rank `null < false < true < numbers < strings < arrays < objects`
//! (CouchDB's collation). Within a type: numbers by value (`1 == 1.0`),
//! strings by Unicode code point (CouchDB uses ICU collation here; see
//! `docs/rich-queries.md`), arrays element by element and then by length,
//! objects equal when they hold the same members in any order, otherwise
//! member by member in document order and then by member count.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Rank of a value's type in the collation.
fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// Compares two JSON values in collation order.
pub(crate) fn collate(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_str().cmp(y.as_str()),
        (Value::Array(x), Value::Array(y)) => {
            for (l, r) in x.iter().zip(y.iter()) {
                let o = collate(l, r);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => cmp_objects(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Whether two values are equal under the collation (what `$eq` tests).
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    collate(a, b) == Ordering::Equal
}

fn as_i128(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn cmp_numbers(x: &Number, y: &Number) -> Ordering {
    if let (Some(a), Some(b)) = (as_i128(x), as_i128(y)) {
        return a.cmp(&b);
    }
    // JSON has no NaN, so every pair of finite doubles is ordered.
    let a = x.as_f64().unwrap_or(0.0);
    let b = y.as_f64().unwrap_or(0.0);
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

fn cmp_objects(x: &Map<String, Value>, y: &Map<String, Value>) -> Ordering {
    if x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w))) {
        return Ordering::Equal;
    }
    for ((kx, vx), (ky, vy)) in x.iter().zip(y.iter()) {
        let o = kx.as_str().cmp(ky.as_str()).then_with(|| collate(vx, vy));
        if o != Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

/// The integer value of a JSON number written without a fraction or
/// exponent, for `$mod`.
pub(crate) fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => as_i128(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_ranks_follow_couchdb() {
        let ordered = [
            json!(null),
            json!(false),
            json!(true),
            json!(-5),
            json!(0),
            json!(1.5),
            json!(1e30),
            json!(""),
            json!("A"),
            json!("a"),
            json!("ab"),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"b": 0}),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(collate(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert_eq!(
            collate(&json!(u64::MAX), &json!(i64::MAX)),
            Ordering::Greater
        );
        assert_eq!(collate(&json!(-1), &json!(-0.5)), Ordering::Less);
    }

    #[test]
    fn objects_equal_regardless_of_member_order() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":[1,2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y":[1,2.0],"x":1}"#).unwrap();
        assert!(equal(&a, &b));
        assert!(!equal(&a, &json!({"x": 1})));
    }
}
