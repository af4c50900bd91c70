//! Routes raft-rs's `slog` records to `tracing` (target `orderer::raft::core`).

use std::fmt::{self, Write as _};

use slog::{Drain, Level, OwnedKVList, Record, KV};

const TARGET: &str = "orderer::raft::core";

/// A slog drain that re-emits every record as a tracing event.
struct TracingDrain;

/// Collects slog key-value pairs as ` key=value` text.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        // Writing to a String cannot fail.
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

fn enabled(level: Level) -> bool {
    match level {
        Level::Critical | Level::Error => tracing::enabled!(target: TARGET, tracing::Level::ERROR),
        Level::Warning => tracing::enabled!(target: TARGET, tracing::Level::WARN),
        Level::Info => tracing::enabled!(target: TARGET, tracing::Level::INFO),
        Level::Debug => tracing::enabled!(target: TARGET, tracing::Level::DEBUG),
        Level::Trace => tracing::enabled!(target: TARGET, tracing::Level::TRACE),
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = record.level();
        if !enabled(level) {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        let kv = kv.0;
        match level {
            Level::Critical | Level::Error => tracing::error!(target: TARGET, "{msg}{kv}"),
            Level::Warning => tracing::warn!(target: TARGET, "{msg}{kv}"),
            Level::Info => tracing::info!(target: TARGET, "{msg}{kv}"),
            Level::Debug => tracing::debug!(target: TARGET, "{msg}{kv}"),
            Level::Trace => tracing::trace!(target: TARGET, "{msg}{kv}"),
        }
        Ok(())
    }

    fn is_enabled(&self, level: Level) -> bool {
        enabled(level)
    }
}

/// A root logger for raft-rs that forwards to `tracing`.
pub(crate) fn raft_logger(id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("node" => id))
}
