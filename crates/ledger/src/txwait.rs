//! Callers waiting for a transaction id to be stored: the peer's Gateway
//! `CommitStatus` calls, which usually arrive before their block does.
//!
//! Each waiter registers a one-shot channel under its transaction id; an
//! append hands each of its transactions' locations to the waiters of that
//! id and removes them. Compared with watching the height and looking the
//! id up again after every block, a waiter wakes once, for its own block,
//! and costs no index read.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::blockstore::TxLocation;

/// The waiters of one block store, by transaction id.
#[derive(Debug, Default)]
pub(crate) struct TxWaiters {
    by_id: Mutex<HashMap<String, Vec<oneshot::Sender<TxLocation>>>>,
}

impl TxWaiters {
    /// Registers a waiter for `tx_id`.
    pub(crate) fn register(self: &Arc<Self>, tx_id: &str) -> TxWait {
        let (tx, rx) = oneshot::channel();
        self.by_id
            .lock()
            .entry(tx_id.to_owned())
            .or_default()
            .push(tx);
        TxWait {
            waiters: Arc::clone(self),
            tx_id: tx_id.to_owned(),
            rx,
        }
    }

    /// Hands the locations of a block's transactions (as indexed: first
    /// occurrences only) to their waiters.
    pub(crate) fn notify<'a>(&self, stored: impl Iterator<Item = (&'a str, TxLocation)>) {
        let mut by_id = self.by_id.lock();
        if by_id.is_empty() {
            return;
        }
        for (tx_id, location) in stored {
            for waiter in by_id.remove(tx_id).into_iter().flatten() {
                // A waiter that gave up has dropped its receiver.
                let _ = waiter.send(location);
            }
        }
    }

    /// Ends every wait (the store is closing): the waiters resolve to
    /// `None`.
    pub(crate) fn close(&self) {
        self.by_id.lock().clear();
    }

    /// Transaction ids with a waiter (for tests).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.by_id.lock().len()
    }
}

/// A future of where a transaction was stored, from
/// [`BlockStore::tx_location_or_wait`](crate::BlockStore::tx_location_or_wait).
/// Resolves to `None` if the block store is dropped first. Dropping it
/// unregisters the waiter.
#[derive(Debug)]
pub struct TxWait {
    waiters: Arc<TxWaiters>,
    tx_id: String,
    rx: oneshot::Receiver<TxLocation>,
}

impl Future for TxWait {
    type Output = Option<TxLocation>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(Result::ok)
    }
}

impl Drop for TxWait {
    fn drop(&mut self) {
        // Closing first makes this waiter's sender report closed, so the
        // clean-up below removes it along with any other abandoned ones.
        self.rx.close();
        let mut by_id = self.waiters.by_id.lock();
        if let Some(list) = by_id.get_mut(&self.tx_id) {
            list.retain(|s| !s.is_closed());
            if list.is_empty() {
                by_id.remove(&self.tx_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(block_number: u64) -> TxLocation {
        TxLocation {
            block_number,
            tx_index: 0,
            validation_code: 0,
        }
    }

    #[tokio::test]
    async fn waiters_of_an_id_get_its_location_once() {
        let waiters = Arc::new(TxWaiters::default());
        let a = waiters.register("tx1");
        let b = waiters.register("tx1");
        let other = waiters.register("tx2");
        waiters.notify([("tx0", loc(3)), ("tx1", loc(4))].into_iter());
        assert_eq!(a.await, Some(loc(4)));
        assert_eq!(b.await, Some(loc(4)));
        // A later occurrence of the id finds no waiter left.
        waiters.notify([("tx1", loc(5))].into_iter());
        assert_eq!(waiters.pending(), 1);
        drop(other);
        assert_eq!(waiters.pending(), 0);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_others_registered() {
        let waiters = Arc::new(TxWaiters::default());
        let gone = waiters.register("tx1");
        let kept = waiters.register("tx1");
        drop(gone);
        assert_eq!(waiters.pending(), 1);
        waiters.notify([("tx1", loc(7))].into_iter());
        assert_eq!(kept.await, Some(loc(7)));
        assert_eq!(waiters.pending(), 0);
    }

    #[tokio::test]
    async fn dropping_the_store_side_ends_the_wait() {
        let waiters = Arc::new(TxWaiters::default());
        let wait = waiters.register("tx1");
        waiters.close();
        assert_eq!(wait.await, None);
    }
}
