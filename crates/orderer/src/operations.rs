//! The operations endpoint: `GET /healthz`, `GET /metrics` (Prometheus text
//! format) and `GET /version`, as Fabric's `Operations.ListenAddress` serves
//! them.
//!
//! [`OrdererMetrics`] is the orderer's one metrics registry: the Broadcast,
//! block writing, ledger and Raft code call its methods (`inc_broadcast`,
//! `inc_blocks_written`, `set_ledger_height`, ...) and `/metrics` renders it.
//! Series are kept under a short `std::sync::Mutex`, never across `.await`.
//!
//! The HTTP side ([`router`], [`OpsState`], `/healthz` with Fabric's
//! `healthz.HealthStatus` JSON) is `twill_ops`'s; this module adds the
//! orderer's registry and answers wrong methods with Fabric's text.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use twill_orderer::operations::{router, OpsState, OrdererMetrics};
//!
//! let metrics = Arc::new(OrdererMetrics::new());
//! metrics.inc_broadcast("mychannel", "SUCCESS");
//! metrics.set_ledger_height("mychannel", 3);
//! let state = OpsState::new(metrics.clone()).with_check("ledger", || Ok(()));
//! let _app: axum::Router = router(state);
//! assert!(metrics.render().contains("ledger_height{channel=\"mychannel\"} 3"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use twill_ops::RenderMetrics;
pub use twill_ops::{FailedCheck, HealthCheckFn, PROMETHEUS_CONTENT_TYPE};

/// Upper bounds of the `broadcast_latency_seconds` buckets (Prometheus's
/// default buckets, as Fabric's histograms use).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One histogram series: per-bucket counts (not cumulative), sum and count.
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
    /// channel → status → count.
    broadcast_processed: BTreeMap<String, BTreeMap<String, u64>>,
    blocks_written: BTreeMap<String, u64>,
    ledger_height: BTreeMap<String, u64>,
    raft_leader_changes: BTreeMap<String, u64>,
    raft_is_leader: BTreeMap<String, bool>,
    broadcast_latency: BTreeMap<String, Histogram>,
}

fn entry<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    // Look up by `&str` first so that the hot path allocates nothing.
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// The orderer's Prometheus metrics; share it as `Arc<OrdererMetrics>`.
///
/// | metric | type | labels | updated by |
/// | --- | --- | --- | --- |
/// | `broadcast_processed_total` | counter | `channel`, `status` | [`inc_broadcast`](Self::inc_broadcast) |
/// | `broadcast_latency_seconds` | histogram | `channel` | [`observe_broadcast_latency`](Self::observe_broadcast_latency) |
/// | `blocks_written_total` | counter | `channel` | [`inc_blocks_written`](Self::inc_blocks_written) |
/// | `ledger_height` | gauge | `channel` | [`set_ledger_height`](Self::set_ledger_height) |
/// | `raft_leader_changes_total` | counter | `channel` | [`inc_raft_leader_changes`](Self::inc_raft_leader_changes) |
/// | `raft_is_leader` | gauge (0/1) | `channel` | [`set_raft_is_leader`](Self::set_raft_is_leader) |
#[derive(Debug, Default)]
pub struct OrdererMetrics {
    series: Mutex<Series>,
}

impl OrdererMetrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Series> {
        // A panic elsewhere while holding the lock leaves plain counters;
        // they are still fit to report.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one Broadcast envelope answered with `status` (the
    /// `common.Status` name, e.g. `SUCCESS`, `BAD_REQUEST`,
    /// `SERVICE_UNAVAILABLE`).
    pub fn inc_broadcast(&self, channel: &str, status: &str) {
        let mut s = self.lock();
        *entry(entry(&mut s.broadcast_processed, channel), status) += 1;
    }

    /// Records how long one Broadcast envelope took from receipt to its
    /// answer.
    pub fn observe_broadcast_latency(&self, channel: &str, latency: Duration) {
        entry(&mut self.lock().broadcast_latency, channel).observe(latency.as_secs_f64());
    }

    /// Counts `n` blocks written to the channel's ledger.
    pub fn inc_blocks_written(&self, channel: &str, n: u64) {
        *entry(&mut self.lock().blocks_written, channel) += n;
    }

    /// Sets the channel's ledger height (number of blocks).
    pub fn set_ledger_height(&self, channel: &str, height: u64) {
        *entry(&mut self.lock().ledger_height, channel) = height;
    }

    /// Counts one change of the channel's Raft leader as seen by this node.
    pub fn inc_raft_leader_changes(&self, channel: &str) {
        *entry(&mut self.lock().raft_leader_changes, channel) += 1;
    }

    /// Sets whether this node currently leads the channel's Raft group.
    pub fn set_raft_is_leader(&self, channel: &str, is_leader: bool) {
        *entry(&mut self.lock().raft_is_leader, channel) = is_leader;
    }

    /// Drops every series of a channel this node has left.
    pub fn remove_channel(&self, channel: &str) {
        let mut s = self.lock();
        s.broadcast_processed.remove(channel);
        s.blocks_written.remove(channel);
        s.ledger_height.remove(channel);
        s.raft_leader_changes.remove(channel);
        s.raft_is_leader.remove(channel);
        s.broadcast_latency.remove(channel);
    }

    /// The current value of a `broadcast_processed_total` series (for tests
    /// and diagnostics).
    pub fn broadcast_count(&self, channel: &str, status: &str) -> u64 {
        self.lock()
            .broadcast_processed
            .get(channel)
            .and_then(|m| m.get(status))
            .copied()
            .unwrap_or(0)
    }

    /// All metrics in the Prometheus text exposition format (0.0.4), each
    /// with its `# HELP` and `# TYPE` lines.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut out = String::new();

        header_lines(
            &mut out,
            "broadcast_processed_total",
            "Envelopes handled by Broadcast, by channel and response status.",
            "counter",
        );
        for (channel, statuses) in &s.broadcast_processed {
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "broadcast_processed_total{{channel=\"{}\",status=\"{}\"}} {n}",
                    escape(channel),
                    escape(status)
                );
            }
        }

        header_lines(
            &mut out,
            "broadcast_latency_seconds",
            "Time from receiving a Broadcast envelope to answering it.",
            "histogram",
        );
        for (channel, h) in &s.broadcast_latency {
            let channel = escape(channel);
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "broadcast_latency_seconds_bucket{{channel=\"{channel}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "broadcast_latency_seconds_bucket{{channel=\"{channel}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "broadcast_latency_seconds_sum{{channel=\"{channel}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "broadcast_latency_seconds_count{{channel=\"{channel}\"}} {}",
                h.count
            );
        }

        simple(
            &mut out,
            "blocks_written_total",
            "Blocks written to the ledger.",
            "counter",
            &s.blocks_written,
            |n| *n,
        );
        simple(
            &mut out,
            "ledger_height",
            "Number of blocks in the channel's ledger.",
            "gauge",
            &s.ledger_height,
            |n| *n,
        );
        simple(
            &mut out,
            "raft_leader_changes_total",
            "Raft leader changes seen by this node.",
            "counter",
            &s.raft_leader_changes,
            |n| *n,
        );
        simple(
            &mut out,
            "raft_is_leader",
            "1 if this node leads the channel's Raft group, else 0.",
            "gauge",
            &s.raft_is_leader,
            |b| u64::from(*b),
        );
        out
    }
}

fn header_lines(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn simple<V>(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    series: &BTreeMap<String, V>,
    value: impl Fn(&V) -> u64,
) {
    header_lines(out, name, help, kind);
    for (channel, v) in series {
        let _ = writeln!(
            out,
            "{name}{{channel=\"{}\"}} {}",
            escape(channel),
            value(v)
        );
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl RenderMetrics for OrdererMetrics {
    fn render(&self) -> String {
        OrdererMetrics::render(self)
    }
}

/// What the operations router serves: the orderer's metrics and the health
/// checks.
pub type OpsState = twill_ops::OpsState<OrdererMetrics>;

/// The operations endpoint over `state`. Methods other than `GET` get 405
/// with `Allow: GET` and `invalid request method: <METHOD>`.
pub fn router(state: OpsState) -> Router {
    twill_ops::router(state.explain_wrong_method())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = OrdererMetrics::new();
        m.observe_broadcast_latency("c", Duration::from_millis(3));
        m.observe_broadcast_latency("c", Duration::from_millis(30));
        m.observe_broadcast_latency("c", Duration::from_secs(60));
        let text = m.render();
        assert!(text.contains("broadcast_latency_seconds_bucket{channel=\"c\",le=\"0.005\"} 1"));
        assert!(text.contains("broadcast_latency_seconds_bucket{channel=\"c\",le=\"0.05\"} 2"));
        assert!(text.contains("broadcast_latency_seconds_bucket{channel=\"c\",le=\"10\"} 2"));
        assert!(text.contains("broadcast_latency_seconds_bucket{channel=\"c\",le=\"+Inf\"} 3"));
        assert!(text.contains("broadcast_latency_seconds_count{channel=\"c\"} 3"));
    }
}
