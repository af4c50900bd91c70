//! The sequential stage: in block order, key-level policy dependencies,
//! duplicate tx ids within the block, MVCC and phantom checks, and the
//! update batch of the valid transactions.

use std::collections::{BTreeMap, HashSet};

use prost::Message;
use tracing::debug;
use twill_ledger::state::{Height, KeyWrite, UpdateBatch};
use twill_protos::kvrwset::{
    range_query_info::ReadsInfo, KvRead, QueryReads, QueryReadsMerkleSummary, RangeQueryInfo,
    Version,
};
use twill_protos::peer::TxValidationCode as Code;

use super::tx::{NsRw, TxCheck};
use super::{StateAccessError, StateView};

type NsKey = (String, String);

/// The state as seen by a transaction: committed state plus the writes of
/// the earlier valid transactions of the block.
struct BlockState<'a> {
    state: &'a dyn StateView,
    /// Value version after the earlier valid txs; `None` = deleted.
    versions: BTreeMap<NsKey, Option<Height>>,
}

impl BlockState<'_> {
    fn current_version(&self, ns: &str, key: &str) -> Result<Option<Height>, StateAccessError> {
        match self.versions.get(&(ns.to_owned(), key.to_owned())) {
            Some(v) => Ok(*v),
            None => self.state.version(ns, key),
        }
    }

    /// Keys and versions in `[start, end)` (or `[start, end]` when
    /// `include_end`; `end` empty = unbounded), in key order.
    fn range(
        &self,
        ns: &str,
        start: &str,
        end: &str,
        include_end: bool,
    ) -> Result<Vec<(String, Height)>, StateAccessError> {
        let mut merged: BTreeMap<String, Height> = self
            .state
            .range_versions(ns, start, end)?
            .into_iter()
            .collect();
        if include_end && !end.is_empty() {
            if let Some(v) = self.state.version(ns, end)? {
                merged.insert(end.to_owned(), v);
            }
        }
        let from = (ns.to_owned(), start.to_owned());
        for ((wns, key), v) in self.versions.range(from..) {
            if wns != ns {
                break;
            }
            let in_range =
                end.is_empty() || key.as_str() < end || (include_end && key.as_str() == end);
            if !in_range {
                break;
            }
            match v {
                Some(h) => merged.insert(key.clone(), *h),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

/// Runs the sequential stage over the parallel stage's results, updating
/// their codes, and returns the update batch of the valid transactions.
pub(crate) fn sequential_stage(
    block: u64,
    checks: &mut [TxCheck],
    state: &dyn StateView,
) -> Result<UpdateBatch, StateAccessError> {
    let mut batch = UpdateBatch::default();
    let mut block_state = BlockState {
        state,
        versions: BTreeMap::new(),
    };
    // Keys written (value or metadata) by earlier valid transactions.
    let mut touched: HashSet<NsKey> = HashSet::new();
    // Keys whose metadata an earlier transaction that passed endorsement
    // validation updated.
    let mut metadata_updated: HashSet<NsKey> = HashSet::new();
    let mut seen_txids: HashSet<String> = HashSet::new();

    for (index, check) in checks.iter_mut().enumerate() {
        if check.code != Code::Valid || check.is_config {
            continue;
        }
        // Fabric's state-based validator refuses a tx writing a key whose
        // validation parameter an earlier endorsement-valid tx of the block
        // changed: the policy it was endorsed under may be stale.
        if written_keys(&check.rwset).any(|k| metadata_updated.contains(&k)) {
            invalidate(check, index, Code::EndorsementPolicyFailure);
            continue;
        }
        for r in &check.rwset {
            for m in &r.kv.metadata_writes {
                metadata_updated.insert((r.ns.clone(), m.key.clone()));
            }
        }
        if !seen_txids.insert(check.tx_id.clone()) {
            invalidate(check, index, Code::DuplicateTxid);
            continue;
        }
        let code = mvcc(&check.rwset, &block_state, &touched)?;
        if code != Code::Valid {
            invalidate(check, index, code);
            continue;
        }
        let height = Height::new(block, index as u64);
        apply(
            &check.rwset,
            height,
            &mut batch,
            &mut block_state,
            &mut touched,
        )?;
    }
    Ok(batch)
}

fn invalidate(check: &mut TxCheck, index: usize, code: Code) {
    debug!(target: "peer::validation", tx = index, tx_id = %check.tx_id, code = code.as_str_name(), "transaction invalid");
    check.code = code;
}

fn written_keys(rwset: &[NsRw]) -> impl Iterator<Item = NsKey> + '_ {
    rwset.iter().flat_map(|r| {
        r.kv.writes
            .iter()
            .map(|w| (r.ns.clone(), w.key.clone()))
            .chain(
                r.kv.metadata_writes
                    .iter()
                    .map(|m| (r.ns.clone(), m.key.clone())),
            )
    })
}

fn mvcc(
    rwset: &[NsRw],
    block_state: &BlockState<'_>,
    touched: &HashSet<NsKey>,
) -> Result<Code, StateAccessError> {
    for r in rwset {
        for read in &r.kv.reads {
            if touched.contains(&(r.ns.clone(), read.key.clone())) {
                return Ok(Code::MvccReadConflict);
            }
            let committed = block_state.state.version(&r.ns, &read.key)?;
            if committed != read.version.as_ref().map(height_of) {
                return Ok(Code::MvccReadConflict);
            }
        }
        for rq in &r.kv.range_queries_info {
            if !range_still_valid(&r.ns, rq, block_state)? {
                return Ok(Code::PhantomReadConflict);
            }
        }
    }
    Ok(Code::Valid)
}

fn height_of(v: &Version) -> Height {
    Height::new(v.block_num, v.tx_num)
}

fn range_still_valid(
    ns: &str,
    rq: &RangeQueryInfo,
    block_state: &BlockState<'_>,
) -> Result<bool, StateAccessError> {
    // A query that stopped early recorded its last key as the end key.
    let results = block_state.range(ns, &rq.start_key, &rq.end_key, !rq.itr_exhausted)?;
    Ok(match &rq.reads_info {
        None => results.is_empty(),
        Some(ReadsInfo::RawReads(raw)) => {
            raw.kv_reads.len() == results.len()
                && raw.kv_reads.iter().zip(&results).all(|(read, (key, h))| {
                    read.key == *key && read.version.as_ref().map(height_of) == Some(*h)
                })
        }
        Some(ReadsInfo::ReadsMerkleHashes(summary)) => {
            merkle_summary(&results, summary.max_degree).as_ref() == Some(summary)
        }
    })
}

/// Fabric's merkle summary of range query results: results are cut into
/// chunks of `max_degree + 1` reads, each chunk's serialized `QueryReads`
/// hashed into a leaf, and every `max_degree + 1` hashes of a level combined
/// (SHA-256 of their concatenation) into one of the next level. `None` when
/// too few results to fill a leaf (the simulator then records raw reads).
pub fn merkle_summary(
    results: &[(String, Height)],
    max_degree: u32,
) -> Option<QueryReadsMerkleSummary> {
    if max_degree < 2 {
        return None;
    }
    let degree = max_degree as usize;
    let mut levels: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut max_level = 1u32;
    let mut pending: Vec<KvRead> = Vec::new();
    let leaf = |pending: &mut Vec<KvRead>| {
        let bytes = QueryReads {
            kv_reads: std::mem::take(pending),
        }
        .encode_to_vec();
        twill_crypto::sha256(&bytes).to_vec()
    };
    let update = |levels: &mut BTreeMap<u32, Vec<Vec<u8>>>, max_level: &mut u32, hash: Vec<u8>| {
        levels.entry(1).or_default().push(hash);
        let mut level = 1u32;
        loop {
            let full = levels.get(&level).is_some_and(|h| h.len() > degree);
            if !full {
                return;
            }
            let hashes = levels.remove(&level).unwrap_or_default();
            let combined = combine(&hashes);
            level += 1;
            levels.entry(level).or_default().push(combined);
            *max_level = (*max_level).max(level);
        }
    };
    for (key, h) in results {
        pending.push(KvRead {
            key: key.clone(),
            version: Some(Version {
                block_num: h.block,
                tx_num: h.tx,
            }),
        });
        if pending.len() > degree {
            let hash = leaf(&mut pending);
            update(&mut levels, &mut max_level, hash);
        }
    }
    let empty = max_level == 1 && levels.get(&1).is_none_or(|h| h.is_empty());
    if empty {
        return None;
    }
    if !pending.is_empty() {
        let hash = leaf(&mut pending);
        update(&mut levels, &mut max_level, hash);
    }
    // Fold the lower levels up into the top one.
    let mut level = 1u32;
    while level < max_level {
        let hashes = levels.remove(&level).unwrap_or_default();
        let carried = match hashes.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(combine(many)),
        };
        level += 1;
        if let Some(h) = carried {
            levels.entry(level).or_default().push(h);
        }
    }
    let mut top = levels.remove(&max_level).unwrap_or_default();
    if top.len() > degree {
        top = vec![combine(&top)];
        max_level += 1;
    }
    Some(QueryReadsMerkleSummary {
        max_degree,
        max_level,
        max_level_hashes: top,
    })
}

fn combine(hashes: &[Vec<u8>]) -> Vec<u8> {
    let mut hasher = twill_crypto::Sha256Hasher::new();
    for h in hashes {
        hasher.update(h);
    }
    hasher.finalize().to_vec()
}

fn apply(
    rwset: &[NsRw],
    height: Height,
    batch: &mut UpdateBatch,
    block_state: &mut BlockState<'_>,
    touched: &mut HashSet<NsKey>,
) -> Result<(), StateAccessError> {
    for r in rwset {
        for w in &r.kv.writes {
            let (write, version) = if w.is_delete {
                (KeyWrite::Delete, None)
            } else {
                (KeyWrite::Put(w.value.clone()), Some(height))
            };
            batch.put(&r.ns, &w.key, write, height);
            block_state
                .versions
                .insert((r.ns.clone(), w.key.clone()), version);
            touched.insert((r.ns.clone(), w.key.clone()));
        }
        for m in &r.kv.metadata_writes {
            let entries: BTreeMap<String, Vec<u8>> = m
                .entries
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect();
            batch.put_metadata(&r.ns, &m.key, entries, height);
            // A metadata update gives an existing key a new version.
            if block_state.current_version(&r.ns, &m.key)?.is_some() {
                block_state
                    .versions
                    .insert((r.ns.clone(), m.key.clone()), Some(height));
            }
            touched.insert((r.ns.clone(), m.key.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(n: u64) -> Vec<(String, Height)> {
        (0..n)
            .map(|i| (format!("k{i:03}"), Height::new(1, i)))
            .collect()
    }

    #[test]
    fn too_few_results_give_no_summary() {
        assert!(merkle_summary(&results(0), 2).is_none());
        assert!(merkle_summary(&results(2), 2).is_none());
        assert!(merkle_summary(&results(3), 1).is_none());
    }

    #[test]
    fn one_leaf_is_the_hash_of_the_chunk() {
        let r = results(3);
        let s = merkle_summary(&r, 2).unwrap();
        let chunk = QueryReads {
            kv_reads: r
                .iter()
                .map(|(k, h)| KvRead {
                    key: k.clone(),
                    version: Some(Version {
                        block_num: h.block,
                        tx_num: h.tx,
                    }),
                })
                .collect(),
        };
        assert_eq!(s.max_level, 1);
        assert_eq!(
            s.max_level_hashes,
            vec![twill_crypto::sha256(&chunk.encode_to_vec()).to_vec()]
        );
    }

    #[test]
    fn levels_grow_and_differ_on_change() {
        // 3 per leaf; 10 results → 4 leaves → level 1 overflows (> 2) and
        // combines into level 2.
        let s = merkle_summary(&results(10), 2).unwrap();
        assert_eq!(s.max_level, 2);
        let mut r = results(10);
        r[5].1 = Height::new(9, 9);
        assert_ne!(merkle_summary(&r, 2), Some(s));
    }
}
