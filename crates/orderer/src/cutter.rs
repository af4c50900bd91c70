//! Block cutting: Fabric's rules for grouping ordered envelopes into
//! batches.
//!
//! The cutter is deterministic: it holds no clock and decides only from the
//! envelopes it is given and the channel's `BatchSize`, so every orderer that
//! feeds it the same ordered stream cuts the same batches. The batch timeout
//! lives outside it: when the timer fires, the owner calls
//! [`BlockCutter::cut`].
//!
//! The rules, for each envelope `ordered` in turn:
//!
//! 1. an envelope larger than `preferred_max_bytes` is isolated: the pending
//!    batch (if any) is cut, then the envelope alone forms a batch;
//! 2. otherwise, if adding it would take the pending batch over
//!    `preferred_max_bytes`, the pending batch is cut first;
//! 3. the envelope is appended, and the batch is cut once it holds
//!    `max_message_count` envelopes.
//!
//! An envelope's size is the length of its encoded bytes. (Fabric counts
//! `len(payload) + len(signature)`, which is a few bytes less; what matters
//! for agreement is that every node counts the same way.) Envelopes above
//! `absolute_max_bytes` are refused earlier, by
//! [`check_normal`](crate::msgprocessor::check_normal), not here.

use twill_protos::orderer::BatchSize;

/// Groups ordered envelopes into batches by count and size.
#[derive(Debug, Clone)]
pub struct BlockCutter {
    batch_size: BatchSize,
    pending: Vec<Vec<u8>>,
    pending_bytes: u64,
}

impl BlockCutter {
    /// A cutter with nothing pending, cutting by `batch_size`.
    pub fn new(batch_size: BatchSize) -> Self {
        BlockCutter {
            batch_size,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Adds the next ordered envelope.
    ///
    /// Returns the batches cut because of it (zero, one or two, oldest
    /// first) and whether envelopes remain pending afterwards, in which case
    /// the owner should have a batch timer running.
    pub fn ordered(&mut self, env: Vec<u8>) -> (Vec<Vec<Vec<u8>>>, bool) {
        let size = env.len() as u64;
        let preferred = u64::from(self.batch_size.preferred_max_bytes);
        let mut batches = Vec::new();

        if size > preferred {
            if !self.pending.is_empty() {
                batches.push(self.cut());
            }
            batches.push(vec![env]);
            return (batches, false);
        }

        if self.pending_bytes + size > preferred && !self.pending.is_empty() {
            batches.push(self.cut());
        }

        self.pending.push(env);
        self.pending_bytes += size;

        if self.pending.len() as u64 >= self.max_message_count() {
            batches.push(self.cut());
        }
        let pending = !self.pending.is_empty();
        (batches, pending)
    }

    /// Cuts whatever is pending (possibly nothing) and starts a new batch.
    pub fn cut(&mut self) -> Vec<Vec<u8>> {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }

    /// How many envelopes are pending.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Total size in bytes of the pending envelopes.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// The limits in force.
    pub fn batch_size(&self) -> &BatchSize {
        &self.batch_size
    }

    /// Switches to new limits after a config change. The pending batch is
    /// kept; the new limits apply from the next [`BlockCutter::ordered`].
    pub fn set_batch_size(&mut self, batch_size: BatchSize) {
        self.batch_size = batch_size;
    }

    /// `max_message_count`, with 0 read as 1 so every batch ends somewhere.
    fn max_message_count(&self) -> u64 {
        u64::from(self.batch_size.max_message_count.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cutter(max_count: u32, preferred: u32) -> BlockCutter {
        BlockCutter::new(BatchSize {
            max_message_count: max_count,
            absolute_max_bytes: 1_000_000,
            preferred_max_bytes: preferred,
        })
    }

    /// An envelope of `n` bytes, all `tag`.
    fn env(tag: u8, n: usize) -> Vec<u8> {
        vec![tag; n]
    }

    #[test]
    fn small_messages_stay_pending_until_count() {
        let mut c = cutter(3, 100);
        assert_eq!(c.ordered(env(1, 10)), (vec![], true));
        assert_eq!(c.ordered(env(2, 10)), (vec![], true));
        assert_eq!(c.pending_len(), 2);
        assert_eq!(c.pending_bytes(), 20);
        let (batches, pending) = c.ordered(env(3, 10));
        assert_eq!(batches, vec![vec![env(1, 10), env(2, 10), env(3, 10)]]);
        assert!(!pending);
        assert_eq!(c.pending_len(), 0);
        assert_eq!(c.pending_bytes(), 0);
    }

    #[test]
    fn oversized_message_is_isolated_after_pending() {
        let mut c = cutter(10, 100);
        c.ordered(env(1, 10));
        c.ordered(env(2, 10));
        let (batches, pending) = c.ordered(env(9, 101));
        assert_eq!(
            batches,
            vec![vec![env(1, 10), env(2, 10)], vec![env(9, 101)]]
        );
        assert!(!pending);
        assert_eq!(c.pending_len(), 0);
    }

    #[test]
    fn oversized_message_alone_when_nothing_pending() {
        let mut c = cutter(10, 100);
        let (batches, pending) = c.ordered(env(9, 500));
        assert_eq!(batches, vec![vec![env(9, 500)]]);
        assert!(!pending);
    }

    #[test]
    fn exactly_preferred_size_is_not_isolated() {
        let mut c = cutter(10, 100);
        assert_eq!(c.ordered(env(1, 100)), (vec![], true));
        assert_eq!(c.pending_bytes(), 100);
    }

    #[test]
    fn overflow_cuts_pending_first() {
        let mut c = cutter(10, 100);
        c.ordered(env(1, 40));
        c.ordered(env(2, 40));
        // 80 + 30 > 100: cut [1, 2], then 3 starts the new batch.
        let (batches, pending) = c.ordered(env(3, 30));
        assert_eq!(batches, vec![vec![env(1, 40), env(2, 40)]]);
        assert!(pending);
        assert_eq!(c.pending_len(), 1);
        assert_eq!(c.pending_bytes(), 30);
        // 30 + 70 = 100 fits exactly.
        assert_eq!(c.ordered(env(4, 70)), (vec![], true));
        assert_eq!(c.pending_bytes(), 100);
    }

    #[test]
    fn overflow_and_count_cut_two_batches() {
        // Overflow cut, then the count cut on a later message.
        let mut c = cutter(2, 100);
        c.ordered(env(1, 90));
        let (batches, pending) = c.ordered(env(2, 20));
        assert_eq!(batches, vec![vec![env(1, 90)]]);
        assert!(pending);
        let (batches, pending) = c.ordered(env(3, 20));
        assert_eq!(batches, vec![vec![env(2, 20), env(3, 20)]]);
        assert!(!pending);

        // Both in one call: the overflow cut, then the count cut.
        let mut c = cutter(1, 100);
        c.set_batch_size(BatchSize {
            max_message_count: 3,
            absolute_max_bytes: 1000,
            preferred_max_bytes: 100,
        });
        c.ordered(env(1, 60));
        c.set_batch_size(BatchSize {
            max_message_count: 1,
            absolute_max_bytes: 1000,
            preferred_max_bytes: 100,
        });
        // 60 + 50 > 100 cuts [1]; then [2] meets the count of 1.
        let (batches, pending) = c.ordered(env(2, 50));
        assert_eq!(batches, vec![vec![env(1, 60)], vec![env(2, 50)]]);
        assert!(!pending);
    }

    #[test]
    fn count_of_one_cuts_every_message() {
        let mut c = cutter(1, 100);
        assert_eq!(c.ordered(env(1, 5)), (vec![vec![env(1, 5)]], false));
        assert_eq!(c.ordered(env(2, 5)), (vec![vec![env(2, 5)]], false));
    }

    #[test]
    fn zero_count_reads_as_one() {
        let mut c = cutter(0, 100);
        assert_eq!(c.ordered(env(1, 5)), (vec![vec![env(1, 5)]], false));
    }

    #[test]
    fn empty_envelope_counts() {
        let mut c = cutter(2, 0);
        // 0 bytes is not larger than a preferred size of 0.
        assert_eq!(c.ordered(Vec::new()), (vec![], true));
        assert_eq!(
            c.ordered(Vec::new()),
            (vec![vec![Vec::new(), Vec::new()]], false)
        );
    }

    #[test]
    fn manual_cut() {
        let mut c = cutter(10, 100);
        assert!(c.cut().is_empty());
        c.ordered(env(1, 10));
        c.ordered(env(2, 10));
        assert_eq!(c.cut(), vec![env(1, 10), env(2, 10)]);
        assert_eq!(c.pending_len(), 0);
        assert_eq!(c.pending_bytes(), 0);
        assert!(c.cut().is_empty());
    }

    #[test]
    fn config_change_applies_to_next_message() {
        let mut c = cutter(10, 100);
        c.ordered(env(1, 10));
        c.ordered(env(2, 10));
        c.set_batch_size(BatchSize {
            max_message_count: 3,
            absolute_max_bytes: 1000,
            preferred_max_bytes: 100,
        });
        assert_eq!(c.batch_size().max_message_count, 3);
        assert_eq!(c.pending_len(), 2, "pending batch survives the change");
        let (batches, pending) = c.ordered(env(3, 10));
        assert_eq!(batches, vec![vec![env(1, 10), env(2, 10), env(3, 10)]]);
        assert!(!pending);

        // Lower the preferred size: a message that used to fit is now isolated.
        c.set_batch_size(BatchSize {
            max_message_count: 3,
            absolute_max_bytes: 1000,
            preferred_max_bytes: 5,
        });
        c.ordered(env(4, 5));
        let (batches, _) = c.ordered(env(5, 10));
        assert_eq!(batches, vec![vec![env(4, 5)], vec![env(5, 10)]]);
    }

    #[test]
    fn deterministic_across_instances() {
        let sizes = [10usize, 50, 95, 3, 101, 40, 40, 40, 1, 1, 1, 1, 200, 7];
        let run = || {
            let mut c = cutter(4, 100);
            let mut out = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                out.extend(c.ordered(env(i as u8, *n)).0);
            }
            out.push(c.cut());
            out
        };
        let a = run();
        assert_eq!(a, run());
        // Every message comes out exactly once, in order.
        let flat: Vec<Vec<u8>> = a.into_iter().flatten().collect();
        assert_eq!(flat.len(), sizes.len());
        for (i, e) in flat.iter().enumerate() {
            assert_eq!(e.len(), sizes[i]);
        }
    }
}
