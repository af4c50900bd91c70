//! Where an event listener got to, so that it can resume after a restart
//! without missing or repeating events.
//!
//! A checkpoint is a position: the next block to read and, inside it, the
//! last transaction already processed. After processing a chaincode event,
//! record it with [`Checkpointer::checkpoint_chaincode_event`]; after a
//! whole block (block events), with [`Checkpointer::checkpoint_block`].
//! Then start the next stream with
//! [`EventsOptions::checkpoint`](crate::EventsOptions::checkpoint).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::events::ChaincodeEvent;

/// Records and reports a listener's position.
pub trait Checkpointer: Send + Sync {
    /// The next block to read, or `None` before anything was recorded.
    fn block_number(&self) -> Option<u64>;

    /// The last transaction processed in that block, if the block was
    /// only partly processed.
    fn transaction_id(&self) -> Option<String>;

    /// Records that block `block_number` was processed completely: the
    /// next block to read is `block_number + 1`.
    fn checkpoint_block(&self, block_number: u64) -> Result<()>;

    /// Records that transaction `transaction_id` of block `block_number`
    /// was processed.
    fn checkpoint_transaction(&self, block_number: u64, transaction_id: &str) -> Result<()>;

    /// Records that `event` was processed.
    fn checkpoint_chaincode_event(&self, event: &ChaincodeEvent) -> Result<()> {
        self.checkpoint_transaction(event.block_number, &event.transaction_id)
    }
}

/// A position, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The next block to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    /// The last transaction processed in that block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

impl Checkpoint {
    fn after_block(block_number: u64) -> Self {
        Checkpoint {
            block_number: Some(block_number.saturating_add(1)),
            transaction_id: None,
        }
    }

    fn after_transaction(block_number: u64, transaction_id: &str) -> Self {
        Checkpoint {
            block_number: Some(block_number),
            transaction_id: Some(transaction_id.to_owned()),
        }
    }
}

/// A checkpointer in memory: resumes a stream within one process.
#[derive(Debug, Default)]
pub struct InMemoryCheckpointer {
    state: Mutex<Checkpoint>,
}

impl InMemoryCheckpointer {
    /// An empty checkpointer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current position.
    pub fn checkpoint(&self) -> Checkpoint {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, checkpoint: Checkpoint) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = checkpoint;
    }
}

impl Checkpointer for InMemoryCheckpointer {
    fn block_number(&self) -> Option<u64> {
        self.checkpoint().block_number
    }

    fn transaction_id(&self) -> Option<String> {
        self.checkpoint().transaction_id
    }

    fn checkpoint_block(&self, block_number: u64) -> Result<()> {
        self.set(Checkpoint::after_block(block_number));
        Ok(())
    }

    fn checkpoint_transaction(&self, block_number: u64, transaction_id: &str) -> Result<()> {
        self.set(Checkpoint::after_transaction(block_number, transaction_id));
        Ok(())
    }
}

/// A checkpointer kept in a JSON file
/// (`{"blockNumber": N, "transactionId": "…"}`), so a listener resumes
/// across restarts. Each update replaces the file atomically (write to a
/// temporary file, then rename).
#[derive(Debug)]
pub struct FileCheckpointer {
    path: PathBuf,
    memory: InMemoryCheckpointer,
}

impl FileCheckpointer {
    /// Opens the checkpoint file at `path`, or starts empty if there is
    /// none yet (it is created on the first update).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let checkpoint = match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Checkpoint::default(),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
                what: "checkpoint file",
                reason: format!("{}: {e}", path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint::default(),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let memory = InMemoryCheckpointer::new();
        memory.set(checkpoint);
        Ok(FileCheckpointer { path, memory })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current position.
    pub fn checkpoint(&self) -> Checkpoint {
        self.memory.checkpoint()
    }

    fn store(&self, checkpoint: Checkpoint) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec(&checkpoint).map_err(|e| Error::Malformed {
            what: "checkpoint",
            reason: e.to_string(),
        })?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.memory.set(checkpoint);
        Ok(())
    }
}

impl Checkpointer for FileCheckpointer {
    fn block_number(&self) -> Option<u64> {
        self.memory.block_number()
    }

    fn transaction_id(&self) -> Option<String> {
        self.memory.transaction_id()
    }

    fn checkpoint_block(&self, block_number: u64) -> Result<()> {
        self.store(Checkpoint::after_block(block_number))
    }

    fn checkpoint_transaction(&self, block_number: u64, transaction_id: &str) -> Result<()> {
        self.store(Checkpoint::after_transaction(block_number, transaction_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventsOptions;

    fn event(block: u64, tx: &str) -> ChaincodeEvent {
        ChaincodeEvent {
            block_number: block,
            chaincode_name: "basic".into(),
            event_name: "CreateAsset".into(),
            transaction_id: tx.into(),
            payload: Vec::new(),
        }
    }

    #[test]
    fn positions() {
        let cp = InMemoryCheckpointer::new();
        assert_eq!(cp.block_number(), None);
        // Nothing recorded: the options keep their own start.
        assert_eq!(
            EventsOptions::new().start_block(3).checkpoint(&cp),
            EventsOptions::new().start_block(3)
        );
        cp.checkpoint_chaincode_event(&event(5, "tx1")).unwrap();
        assert_eq!(cp.block_number(), Some(5));
        assert_eq!(cp.transaction_id().as_deref(), Some("tx1"));
        let resumed = EventsOptions::new().start_block(3).checkpoint(&cp);
        assert_eq!(resumed.start_block_number(), Some(5));
        assert_eq!(resumed.after_transaction_id(), Some("tx1"));
        cp.checkpoint_block(5).unwrap();
        assert_eq!(cp.block_number(), Some(6));
        assert_eq!(cp.transaction_id(), None);
        let resumed = EventsOptions::new().checkpoint(&cp);
        assert_eq!(resumed.start_block_number(), Some(6));
        assert_eq!(resumed.after_transaction_id(), None);
    }

    #[test]
    fn file_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.checkpoint");
        let cp = FileCheckpointer::open(&path).unwrap();
        assert_eq!(cp.checkpoint(), Checkpoint::default());
        cp.checkpoint_transaction(9, "abc").unwrap();
        let again = FileCheckpointer::open(&path).unwrap();
        assert_eq!(again.block_number(), Some(9));
        assert_eq!(again.transaction_id().as_deref(), Some("abc"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, r#"{"blockNumber":9,"transactionId":"abc"}"#);
        again.checkpoint_block(9).unwrap();
        let third = FileCheckpointer::open(&path).unwrap();
        assert_eq!(third.checkpoint(), Checkpoint::after_block(9));

        std::fs::write(&path, "not json").unwrap();
        assert!(FileCheckpointer::open(&path).is_err());
    }
}
