//! In-memory [`StateView`] and [`TxIdIndex`], for tests, benchmarks and
//! examples.

use std::collections::{BTreeMap, HashSet};

use twill_ledger::state::{Height, KeyWrite, UpdateBatch, VersionedValue};

use super::{StateAccessError, StateView, TxIdIndex};

/// A committed state held in a map: (namespace, key) → value.
#[derive(Debug, Clone, Default)]
pub struct MemState {
    /// The committed values.
    pub entries: BTreeMap<(String, String), VersionedValue>,
}

impl MemState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a key's value and version, keeping its metadata.
    pub fn put(&mut self, ns: &str, key: &str, value: Vec<u8>, version: Height) {
        let entry = self
            .entries
            .entry((ns.to_owned(), key.to_owned()))
            .or_default();
        entry.value = value;
        entry.version = version;
    }

    /// Sets one metadata entry of an existing key; false if the key is absent.
    pub fn put_metadata_entry(&mut self, ns: &str, key: &str, name: &str, value: Vec<u8>) -> bool {
        match self.entries.get_mut(&(ns.to_owned(), key.to_owned())) {
            Some(v) => {
                v.metadata.insert(name.to_owned(), value);
                true
            }
            None => false,
        }
    }

    /// Applies a validated block's batch, as a state database would.
    pub fn apply(&mut self, batch: &UpdateBatch) {
        for ((ns, key), (write, height)) in &batch.writes {
            match write {
                KeyWrite::Put(v) => self.put(ns, key, v.clone(), *height),
                KeyWrite::Delete => {
                    self.entries.remove(&(ns.clone(), key.clone()));
                }
            }
        }
        for (nk, (entries, height)) in &batch.metadata {
            let deleted = matches!(batch.writes.get(nk), Some((KeyWrite::Delete, _)));
            if let (false, Some(v)) = (deleted, self.entries.get_mut(nk)) {
                v.metadata = entries.clone();
                v.version = v.version.max(*height);
            }
        }
    }
}

impl StateView for MemState {
    fn version(&self, ns: &str, key: &str) -> Result<Option<Height>, StateAccessError> {
        Ok(self
            .entries
            .get(&(ns.to_owned(), key.to_owned()))
            .map(|v| v.version))
    }

    fn metadata(
        &self,
        ns: &str,
        key: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, StateAccessError> {
        Ok(self
            .entries
            .get(&(ns.to_owned(), key.to_owned()))
            .map(|v| v.metadata.clone()))
    }

    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateAccessError> {
        Ok(self
            .entries
            .get(&(ns.to_owned(), key.to_owned()))
            .map(|v| v.value.clone()))
    }

    fn range_versions(
        &self,
        ns: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Height)>, StateAccessError> {
        Ok(self
            .entries
            .range((ns.to_owned(), start.to_owned())..)
            .take_while(|((n, k), _)| n == ns && (end.is_empty() || k.as_str() < end))
            .map(|((_, k), v)| (k.clone(), v.version))
            .collect())
    }
}

/// A set of committed transaction ids.
#[derive(Debug, Clone, Default)]
pub struct MemTxIds {
    /// The ids.
    pub ids: HashSet<String>,
}

impl TxIdIndex for MemTxIds {
    fn contains(&self, tx_id: &str) -> Result<bool, StateAccessError> {
        Ok(self.ids.contains(tx_id))
    }
}
