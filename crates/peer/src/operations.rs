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
//! `/healthz` answers 200 `{"status":"OK","time":...}` or 503 with
//! `failed_checks`, the shape of Fabric's health status.
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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use twill_protos::peer::TxValidationCode;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const LOG: &str = "peer::operations";

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

/// A health check: `Ok(())` when healthy, else the reason.
pub type HealthCheckFn = dyn Fn() -> Result<(), String> + Send + Sync;

/// What the operations router serves.
#[derive(Clone)]
pub struct OpsState {
    metrics: Arc<PeerMetrics>,
    checks: Vec<(String, Arc<HealthCheckFn>)>,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field(
                "checks",
                &self.checks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl OpsState {
    /// Serves `metrics`, with no health checks yet.
    pub fn new(metrics: Arc<PeerMetrics>) -> Self {
        OpsState {
            metrics,
            checks: Vec::new(),
        }
    }

    /// Adds a named health check; checks run on a blocking thread.
    pub fn with_check(
        mut self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((name.into(), Arc::new(check)));
        self
    }
}

#[derive(Debug, Clone, Serialize)]
struct FailedCheck {
    component: String,
    reason: String,
}

#[derive(Serialize)]
struct HealthStatus {
    status: &'static str,
    time: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_checks: Vec<FailedCheck>,
}

/// The operations endpoint over `state`.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .with_state(state)
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn healthz(State(state): State<OpsState>) -> Response {
    let checks = state.checks.clone();
    let failed = tokio::task::spawn_blocking(move || {
        checks
            .iter()
            .filter_map(|(name, check)| {
                check().err().map(|reason| FailedCheck {
                    component: name.clone(),
                    reason,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|e| {
        vec![FailedCheck {
            component: "healthz".into(),
            reason: format!("health check panicked: {e}"),
        }]
    });
    let time = rfc3339_utc(SystemTime::now());
    if failed.is_empty() {
        json(
            StatusCode::OK,
            &HealthStatus {
                status: "OK",
                time,
                failed_checks: failed,
            },
        )
    } else {
        tracing::warn!(target: LOG, ?failed, "health check failed");
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &HealthStatus {
                status: "Service Unavailable",
                time,
                failed_checks: failed,
            },
        )
    }
}

async fn metrics(State(state): State<OpsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Serialize)]
struct VersionInfo {
    #[serde(rename = "Version")]
    version: &'static str,
}

async fn version() -> Response {
    json(
        StatusCode::OK,
        &VersionInfo {
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}

/// Serves `router` over HTTPS (ALPN `h2` and `http/1.1`) on `listener`
/// until `shutdown` completes.
pub async fn serve_https<F>(
    listener: tokio::net::TcpListener,
    tls: &twill_comm::ServerTls,
    router: Router,
    shutdown: F,
) -> Result<(), twill_comm::CommError>
where
    F: std::future::Future<Output = ()> + Send,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls_config_http()?);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(target: LOG, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(twill_comm::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                    .await;
            let Ok(Ok(tls_stream)) = handshake else {
                tracing::debug!(target: LOG, %remote, "TLS handshake failed or timed out");
                return;
            };
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls_stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(target: LOG, %remote, error = %e, "connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// `time` as RFC 3339 in UTC with seconds.
fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days since the epoch to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
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

    #[test]
    fn time_format() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
