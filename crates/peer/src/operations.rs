//! The operations endpoint: `GET /healthz`, `GET /metrics` (Prometheus text
//! format) and `GET /version`, served on `operations.listenAddress`.
//!
//! [`PeerMetrics`] is the peer's one metrics registry. The block pipeline
//! calls [`PeerMetrics::record_commit`] after every committed block; the
//! node sets heights when channels open. Series live under a short
//! `std::sync::Mutex`, never held across `.await`.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `ledger_blockchain_height` | gauge | `channel` |
//! | `ledger_blocks_committed_total` | counter | `channel` |
//! | `ledger_block_processing_time` | histogram (seconds) | `channel` |
//! | `ledger_transaction_count` | counter | `channel`, `validation_code` |
//! | `deliver_orderer_connected` | gauge (1) | `channel`, `orderer` |
//!
//! The HTTP side ([`router`], [`OpsState`], `/healthz` answering 200
//! `{"status":"OK","time":...}` or 503 with `failed_checks`) is
//! `twill_ops`'s; this module adds the peer's registry.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use twill_peer::operations::PeerMetrics;
//!
//! let m = PeerMetrics::new();
//! m.record_commit("mychannel", 4, Duration::from_millis(3), &[0, 0, 11]);
//! let text = m.render();
//! assert!(text.contains("ledger_blockchain_height{channel=\"mychannel\"} 4"));
//! assert!(text.contains("ledger_transaction_count{channel=\"mychannel\",validation_code=\"VALID\"} 2"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use twill_ops::RenderMetrics;
pub use twill_ops::{HealthCheckFn, PROMETHEUS_CONTENT_TYPE};
use twill_protos::peer::TxValidationCode;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| value <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Series {
    height: BTreeMap<String, u64>,
    committed: BTreeMap<String, u64>,
    commit_time: BTreeMap<String, Histogram>,
    /// channel → validation code name → count.
    tx_count: BTreeMap<String, BTreeMap<String, u64>>,
    /// channel → orderer currently pulled from.
    source: BTreeMap<String, String>,
}

/// The peer's Prometheus metrics; share it as `Arc<PeerMetrics>`.
#[derive(Debug, Default)]
pub struct PeerMetrics {
    series: Mutex<Series>,
}

impl PeerMetrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a channel's ledger height.
    pub fn set_height(&self, channel: &str, height: u64) {
        self.lock().height.insert(channel.to_string(), height);
    }

    /// Records one committed block: the new height, how long validation and
    /// commit took, and the validation code of each transaction.
    pub fn record_commit(&self, channel: &str, height: u64, took: Duration, codes: &[u8]) {
        let mut s = self.lock();
        s.height.insert(channel.to_string(), height);
        *s.committed.entry(channel.to_string()).or_default() += 1;
        s.commit_time
            .entry(channel.to_string())
            .or_default()
            .observe(took.as_secs_f64());
        let per_code = s.tx_count.entry(channel.to_string()).or_default();
        for code in codes {
            *per_code.entry(code_name(*code)).or_default() += 1;
        }
    }

    /// Sets (or clears) the orderer a channel is pulling blocks from.
    pub fn set_source(&self, channel: &str, orderer: Option<&str>) {
        let mut s = self.lock();
        match orderer {
            Some(o) => {
                s.source.insert(channel.to_string(), o.to_string());
            }
            None => {
                s.source.remove(channel);
            }
        }
    }

    /// Blocks committed on `channel` since start (for tests and diagnostics).
    pub fn blocks_committed(&self, channel: &str) -> u64 {
        self.lock().committed.get(channel).copied().unwrap_or(0)
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut out = String::new();
        head(
            &mut out,
            "ledger_blockchain_height",
            "Height of the channel's chain in blocks.",
            "gauge",
        );
        for (ch, v) in &s.height {
            let _ = writeln!(
                out,
                "ledger_blockchain_height{{channel=\"{}\"}} {v}",
                escape(ch)
            );
        }
        head(
            &mut out,
            "ledger_blocks_committed_total",
            "Blocks validated and committed by this peer since it started.",
            "counter",
        );
        for (ch, v) in &s.committed {
            let _ = writeln!(
                out,
                "ledger_blocks_committed_total{{channel=\"{}\"}} {v}",
                escape(ch)
            );
        }
        head(
            &mut out,
            "ledger_block_processing_time",
            "Time to validate and commit a block, in seconds.",
            "histogram",
        );
        for (ch, h) in &s.commit_time {
            let ch = escape(ch);
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "ledger_block_processing_time_bucket{{channel=\"{ch}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "ledger_block_processing_time_bucket{{channel=\"{ch}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "ledger_block_processing_time_sum{{channel=\"{ch}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "ledger_block_processing_time_count{{channel=\"{ch}\"}} {}",
                h.count
            );
        }
        head(
            &mut out,
            "ledger_transaction_count",
            "Transactions committed, by validation code.",
            "counter",
        );
        for (ch, codes) in &s.tx_count {
            for (code, n) in codes {
                let _ = writeln!(
                    out,
                    "ledger_transaction_count{{channel=\"{}\",validation_code=\"{}\"}} {n}",
                    escape(ch),
                    escape(code)
                );
            }
        }
        head(
            &mut out,
            "deliver_orderer_connected",
            "1 for the orderer a channel is currently pulling blocks from.",
            "gauge",
        );
        for (ch, orderer) in &s.source {
            let _ = writeln!(
                out,
                "deliver_orderer_connected{{channel=\"{}\",orderer=\"{}\"}} 1",
                escape(ch),
                escape(orderer)
            );
        }
        out
    }
}

/// The `TxValidationCode` name of a filter byte, or its number.
fn code_name(code: u8) -> String {
    TxValidationCode::try_from(i32::from(code))
        .map(|c| c.as_str_name().to_string())
        .unwrap_or_else(|_| code.to_string())
}

fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl RenderMetrics for PeerMetrics {
    fn render(&self) -> String {
        PeerMetrics::render(self)
    }
}

/// What the operations router serves: the peer's metrics and the health
/// checks.
pub type OpsState = twill_ops::OpsState<PeerMetrics>;

/// The operations endpoint over `state`.
pub fn router(state: OpsState) -> Router {
    twill_ops::router(state)
}

/// Serves `router` over HTTPS (ALPN `h2` and `http/1.1`) on `listener`
/// until `shutdown` completes, then lets open requests finish for up to
/// [`SHUTDOWN_GRACE`](crate::node::SHUTDOWN_GRACE).
pub async fn serve_https<F>(
    listener: tokio::net::TcpListener,
    tls: &twill_comm::ServerTls,
    router: Router,
    shutdown: F,
) -> Result<(), twill_comm::CommError>
where
    F: std::future::Future<Output = ()> + Send,
{
    twill_ops::serve_https(listener, tls, router, shutdown, crate::node::SHUTDOWN_GRACE).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_all_series() {
        let m = PeerMetrics::new();
        m.set_height("a", 1);
        m.record_commit("a", 2, Duration::from_millis(30), &[0, 11, 254]);
        let text = m.render();
        assert!(text.contains("ledger_blockchain_height{channel=\"a\"} 2"));
        assert!(text.contains("ledger_blocks_committed_total{channel=\"a\"} 1"));
        assert!(text.contains("ledger_block_processing_time_bucket{channel=\"a\",le=\"0.05\"} 1"));
        assert!(text.contains("validation_code=\"MVCC_READ_CONFLICT\"} 1"));
        assert!(text.contains("validation_code=\"NOT_VALIDATED\"} 1"));
        assert_eq!(m.blocks_committed("a"), 1);
    }
}
