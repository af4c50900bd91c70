//! JSON rich queries over one namespace of the state database.

use crate::richquery::{self, Query, QueryError, QueryPage};

use super::db::StateDb;

impl StateDb {
    /// Runs a rich query (see [`crate::richquery`]) over every key of
    /// namespace `ns`, in key order, as chaincode's `GetQueryResult` (with
    /// `page_size` `None`) and `GetQueryResultWithPagination` (with
    /// `Some(n)` and a bookmark from the previous page) expect.
    ///
    /// Queries scan the namespace: no index is consulted. A storage error
    /// while scanning ends the query with [`QueryError::Source`].
    pub fn query(
        &self,
        ns: &str,
        query: &Query,
        page_size: Option<u32>,
        bookmark: &str,
    ) -> Result<QueryPage, QueryError> {
        let docs = self
            .range(ns, "", "")
            .map(|item| item.map(|(key, vv)| (key, vv.value)));
        richquery::execute(query, docs, page_size, bookmark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Height, KeyWrite, UpdateBatch};

    #[test]
    fn queries_see_only_their_namespace_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let mut batch = UpdateBatch::default();
        let h = Height::new(1, 0);
        batch.put(
            "cc",
            "b",
            KeyWrite::Put(br#"{"owner":"bob","n":2}"#.to_vec()),
            h,
        );
        batch.put(
            "cc",
            "a",
            KeyWrite::Put(br#"{"owner":"bob","n":1}"#.to_vec()),
            h,
        );
        batch.put(
            "cc",
            "c",
            KeyWrite::Put(br#"{"owner":"eve","n":3}"#.to_vec()),
            h,
        );
        batch.put(
            "other",
            "a",
            KeyWrite::Put(br#"{"owner":"bob"}"#.to_vec()),
            h,
        );
        batch.put("cc", "d", KeyWrite::Put(b"not json".to_vec()), h);
        db.commit(&batch, 1).unwrap();

        let q = Query::parse(r#"{"selector":{"owner":"bob"}}"#).unwrap();
        let page = db.query("cc", &q, None, "").unwrap();
        let keys: Vec<&str> = page.records.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);

        let q = Query::parse(r#"{"selector":{"n":{"$gt":0}},"sort":[{"n":"desc"}]}"#).unwrap();
        let first = db.query("cc", &q, Some(2), "").unwrap();
        let keys: Vec<&str> = first.records.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["c", "b"]);
        let second = db.query("cc", &q, Some(2), &first.bookmark).unwrap();
        let keys: Vec<&str> = second.records.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a"]);
    }

    #[test]
    fn a_bad_namespace_is_a_query_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let q = Query::parse(r#"{"selector":{}}"#).unwrap();
        assert!(db.query("bad\0ns", &q, None, "").is_err());
    }
}
