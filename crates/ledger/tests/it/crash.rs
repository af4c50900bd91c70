//! Real `kill -9`: a child process (this test binary, re-run on one ignored
//! test) appends blocks and reports each acknowledged height; the parent
//! kills it mid-stream, reopens the store and checks nothing acknowledged
//! was lost and the chain is intact.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use twill_ledger::BlockStore;

use crate::support::{tx_id, Chain};

const DIR_ENV: &str = "TWILL_LEDGER_CRASH_CHILD_DIR";

/// The child side: appends forever, printing `acked <height>` after each
/// append returns. Does nothing unless started by the parent.
#[test]
#[ignore = "run only as the child of kill_9_during_appends_loses_nothing_acknowledged"]
fn crash_child_appender() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let store = BlockStore::open(std::path::Path::new(&dir)).unwrap();
    let mut chain = Chain::following(&store);
    let mut out = std::io::stdout().lock();
    loop {
        store.append(&chain.block_with_txs(5)).unwrap();
        writeln!(out, "acked {}", store.height()).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_during_appends_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = 0u64;
    for round in 0..4u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child_appender",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a different number of acknowledgements each round.
        let kill_after = 10 + round * 17;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(h) = line.strip_prefix("acked ") {
                acked = h.parse().unwrap();
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = BlockStore::open(dir.path()).unwrap();
        assert!(
            store.height() >= acked,
            "round {round}: height {} < acknowledged {acked}",
            store.height()
        );
        let blocks: Vec<_> = store.iter_from(0).map(Result::unwrap).collect();
        assert_eq!(blocks.len() as u64, store.height());
        let last = store.height() - 1;
        assert_eq!(
            store
                .tx_location(&tx_id(last, 4))
                .unwrap()
                .unwrap()
                .block_number,
            last
        );
    }
    assert!(acked >= 10);
}
