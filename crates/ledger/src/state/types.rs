use std::collections::BTreeMap;

/// The version of a key: the block and the position in that block of the
/// transaction that last wrote it (Fabric's `kvrwset.Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Height {
    /// Block number.
    pub block: u64,
    /// Transaction index within the block.
    pub tx: u64,
}

impl Height {
    /// A height from its block number and transaction index.
    pub const fn new(block: u64, tx: u64) -> Height {
        Height { block, tx }
    }

    /// 16 bytes, big-endian block then tx: sorts like the height.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.block.to_be_bytes());
        out[8..].copy_from_slice(&self.tx.to_be_bytes());
        out
    }

    /// The inverse of [`to_bytes`](Self::to_bytes); `None` unless exactly 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Height> {
        let block = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let tx = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some(Height { block, tx })
    }
}

/// Key-level metadata: entry name → bytes (Fabric's `KVMetadataEntry`s).
pub type KeyMetadata = BTreeMap<String, Vec<u8>>;

/// A committed value with its version and key-level metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionedValue {
    /// The value bytes as the chaincode wrote them.
    pub value: Vec<u8>,
    /// Where it was last written.
    pub version: Height,
    /// Key-level metadata by name (Fabric's `KVMetadataWrite` entries), e.g.
    /// `VALIDATION_PARAMETER` → a serialized `SignaturePolicyEnvelope` for
    /// key-level endorsement. Empty for most keys.
    pub metadata: BTreeMap<String, Vec<u8>>,
}

/// What a valid transaction does to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrite {
    /// Set the value (metadata is kept unless also written).
    Put(Vec<u8>),
    /// Delete the key and its metadata.
    Delete,
}

/// The effect of one block's valid transactions on the state database,
/// in the order they must apply (later transactions overwrite earlier ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateBatch {
    /// Value writes: (namespace, key) → (write, height of the writing tx).
    pub writes: BTreeMap<(String, String), (KeyWrite, Height)>,
    /// Metadata writes: (namespace, key) → (entries, height). An empty map
    /// clears the key's metadata. Applied after `writes`; ignored for a key
    /// deleted in this batch or absent from the state.
    pub metadata: BTreeMap<(String, String), (KeyMetadata, Height)>,
    /// History entries, one per key written by a valid transaction, in
    /// block order.
    pub history: Vec<HistoryEntry>,
}

impl UpdateBatch {
    /// Records a value write (or delete) by the transaction at `height`,
    /// with its history entry.
    pub fn put(&mut self, ns: &str, key: &str, write: KeyWrite, height: Height) {
        let (is_delete, value) = match &write {
            KeyWrite::Put(v) => (false, v.clone()),
            KeyWrite::Delete => (true, Vec::new()),
        };
        self.history.push(HistoryEntry {
            namespace: ns.to_owned(),
            key: key.to_owned(),
            height,
            is_delete,
            value,
        });
        self.writes
            .insert((ns.to_owned(), key.to_owned()), (write, height));
    }

    /// Records a metadata write by the transaction at `height`.
    pub fn put_metadata(
        &mut self,
        ns: &str,
        key: &str,
        entries: BTreeMap<String, Vec<u8>>,
        height: Height,
    ) {
        self.metadata
            .insert((ns.to_owned(), key.to_owned()), (entries, height));
    }

    /// True if nothing is written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.metadata.is_empty() && self.history.is_empty()
    }
}

/// One change of a key, for `GetHistoryForKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The chaincode namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The writing transaction.
    pub height: Height,
    /// True if the transaction deleted the key.
    pub is_delete: bool,
    /// The value written (empty for a delete).
    pub value: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn height_bytes_sort_like_heights() {
        let a = Height::new(1, 500);
        let b = Height::new(2, 0);
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(Height::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(Height::from_bytes(&[0; 15]), None);
        assert_eq!(Height::from_bytes(&[0; 17]), None);
    }

    #[test]
    fn later_writes_win_and_history_keeps_all() {
        let mut batch = UpdateBatch::default();
        batch.put("cc", "k", KeyWrite::Put(b"1".to_vec()), Height::new(5, 0));
        batch.put("cc", "k", KeyWrite::Delete, Height::new(5, 3));
        assert_eq!(batch.writes.len(), 1);
        assert_eq!(
            batch.writes[&("cc".into(), "k".into())],
            (KeyWrite::Delete, Height::new(5, 3))
        );
        assert_eq!(batch.history.len(), 2);
        assert!(batch.history[1].is_delete);
    }
}
