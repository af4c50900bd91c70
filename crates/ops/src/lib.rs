//! The HTTP plumbing of a node's operations endpoint, shared by the orderer
//! and the peer (Fabric's `Operations.ListenAddress` /
//! `operations.listenAddress`).
//!
//! What this crate owns:
//!
//! - [`router`]: `GET /healthz`, `GET /metrics` and `GET /version` over an
//!   [`OpsState`]. `/healthz` runs the named checks on the blocking pool and
//!   answers 200 `{"status":"OK","time":...}`, or 503
//!   `{"status":"Service Unavailable","time":...,"failed_checks":[{"component":...,"reason":...}]}`
//!   (Fabric's `healthz.HealthStatus`). `/metrics` answers the node's
//!   [`RenderMetrics::render`] text with [`PROMETHEUS_CONTENT_TYPE`].
//!   `/version` answers `{"Version":...}`.
//! - [`json`]: a JSON response (one object and a newline).
//! - [`rfc3339_utc`]: the timestamp format of `/healthz`.
//! - [`serve_https`]: serving any router over rustls TLS (HTTP/1.1 and
//!   HTTP/2 by ALPN) with graceful shutdown.
//!
//! - [`shutdown_signal`], [`init_logging`], [`write_json_file`]: the
//!   process plumbing both node binaries share (stop on Ctrl-C or SIGTERM,
//!   `RUST_LOG` logging to stderr, the `endpoints.json` they publish).
//! - [`disable_transparent_huge_pages`]: called first by every Twill
//!   binary (huge pages cost a tenth of the machine's CPU under load).
//!
//! The metrics registries themselves (which series, how they render) stay
//! in the node crates; they implement [`RenderMetrics`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use twill_ops::{router, OpsState, RenderMetrics};
//!
//! struct Metrics;
//! impl RenderMetrics for Metrics {
//!     fn render(&self) -> String {
//!         "# TYPE up gauge\nup 1\n".to_string()
//!     }
//! }
//!
//! let state = OpsState::new(Arc::new(Metrics)).with_check("disk", || Ok(()));
//! let _app: axum::Router = router(state);
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use twill_comm::{CommError, ServerTls, TLS_HANDSHAKE_TIMEOUT};

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const LOG: &str = "twill_ops";

/// A metrics registry `/metrics` can serve.
pub trait RenderMetrics: Send + Sync + 'static {
    /// All metrics in the Prometheus text exposition format (0.0.4).
    fn render(&self) -> String;
}

/// A health check: `Ok(())` when healthy, else the reason.
pub type HealthCheckFn = dyn Fn() -> Result<(), String> + Send + Sync;

/// What the operations router serves: a metrics registry and the health
/// checks.
pub struct OpsState<M> {
    metrics: Arc<M>,
    checks: Vec<(String, Arc<HealthCheckFn>)>,
    explain_wrong_method: bool,
}

impl<M> Clone for OpsState<M> {
    fn clone(&self) -> Self {
        OpsState {
            metrics: self.metrics.clone(),
            checks: self.checks.clone(),
            explain_wrong_method: self.explain_wrong_method,
        }
    }
}

impl<M> std::fmt::Debug for OpsState<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field(
                "checks",
                &self.checks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<M: RenderMetrics> OpsState<M> {
    /// Serves `metrics`, with no health checks yet.
    pub fn new(metrics: Arc<M>) -> Self {
        OpsState {
            metrics,
            checks: Vec::new(),
            explain_wrong_method: false,
        }
    }

    /// Adds a named health check (Fabric's `component`). Checks run on a
    /// blocking thread for every `/healthz` request, so they may do I/O but
    /// should finish quickly.
    pub fn with_check(
        mut self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((name.into(), Arc::new(check)));
        self
    }

    /// Answers methods other than `GET` (and `HEAD`) with 405, `Allow: GET`
    /// and the text `invalid request method: <METHOD>` instead of an empty
    /// 405.
    pub fn explain_wrong_method(mut self) -> Self {
        self.explain_wrong_method = true;
        self
    }

    /// The registry `/metrics` renders.
    pub fn metrics(&self) -> &Arc<M> {
        &self.metrics
    }
}

/// A check that failed, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedCheck {
    /// The check's name.
    pub component: String,
    /// What it reported.
    pub reason: String,
}

#[derive(Serialize)]
struct HealthStatus {
    status: &'static str,
    time: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_checks: Vec<FailedCheck>,
}

/// The operations endpoint over `state`: `/healthz`, `/metrics` and
/// `/version`.
pub fn router<M: RenderMetrics>(state: OpsState<M>) -> Router {
    let (healthz, metrics, version) = (get(healthz::<M>), get(metrics::<M>), get(version));
    let (healthz, metrics, version) = if state.explain_wrong_method {
        (
            healthz.fallback(not_allowed),
            metrics.fallback(not_allowed),
            version.fallback(not_allowed),
        )
    } else {
        (healthz, metrics, version)
    };
    Router::new()
        .route("/healthz", healthz)
        .route("/metrics", metrics)
        .route("/version", version)
        .with_state(state)
}

async fn not_allowed(method: Method) -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        format!("invalid request method: {method}\n"),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    resp
}

/// `value` as a JSON response with `status`: `application/json`, the object
/// and a newline (as Go's `json.Encoder` writes it).
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
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

async fn healthz<M: RenderMetrics>(State(state): State<OpsState<M>>) -> Response {
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

async fn metrics<M: RenderMetrics>(State(state): State<OpsState<M>>) -> Response {
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

/// `time` as RFC 3339 in UTC with seconds, e.g. `2024-05-01T12:00:00Z`.
/// Instants before the Unix epoch print as the epoch.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days (proleptic Gregorian).
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

/// Serves `router` over HTTPS with `tls` as configured (client certificates
/// required, optional or not asked for; ALPN `h2` and `http/1.1`) on
/// `listener` until `shutdown` completes, then lets open requests finish
/// for up to `grace`. Each connection runs in its own task; the TLS
/// handshake must finish within [`TLS_HANDSHAKE_TIMEOUT`].
///
/// Fails only when `tls` cannot be turned into a rustls configuration.
pub async fn serve_https<F>(
    listener: TcpListener,
    tls: &ServerTls,
    router: Router,
    shutdown: F,
    grace: Duration,
) -> Result<(), CommError>
where
    F: Future<Output = ()> + Send,
{
    let acceptor = TlsAcceptor::from(tls.rustls_config_http()?);
    let graceful = GracefulShutdown::new();
    let addr = listener.local_addr().ok();
    tracing::info!(target: LOG, ?addr, "serving HTTPS");
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
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
            let tls_stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(target: LOG, %remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(target: LOG, %remote, "TLS handshake timed out");
                        return;
                    }
                };
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls_stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(target: LOG, %remote, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(target: LOG, "connections still open after the shutdown grace period");
    }
    Ok(())
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(target: LOG, error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Installs the process's log output on stderr: `RUST_LOG` if set (e.g.
/// `info,orderer::raft=debug`), else `default_filter`. For binaries.
pub fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only on a terminal: log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Turns transparent huge pages off for this process (Linux only; a no-op
/// elsewhere). Every Twill binary calls it first thing in `main`.
///
/// mimalloc asks the kernel for huge pages on its arenas. Under a node's
/// allocation pattern the kernel then kept handing out fresh 2 MiB pages,
/// each zeroed in full on its first touch: about a tenth of the machine's
/// CPU went to `clear_page` during `twill bench e2e`, and turning huge pages
/// off raised it from about 910 to about 1,200 tx/s
/// (`docs/benchmarks.md`). A kernel that refuses is logged as a warning: the
/// process runs as before, only slower.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "could not turn transparent huge pages off");
    }
}

/// Writes `value` as pretty JSON (and a newline) to `path`, creating its
/// folder: written aside and renamed, so readers never see half a file.
pub fn write_json_file<T: Serialize>(path: &std::path::Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    text.push(b'\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt as _;

    struct Fixed;

    impl RenderMetrics for Fixed {
        fn render(&self) -> String {
            "# TYPE up gauge\nup 1\n".to_string()
        }
    }

    async fn call(app: Router, method: Method, path: &str) -> (StatusCode, String, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let resp = app.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(rfc3339_utc(t), "2000-02-29T01:01:01Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339_utc(t), "2024-12-31T23:59:59Z");
    }

    #[tokio::test]
    async fn healthz_ok_and_failing_checks() {
        let ok = router(OpsState::new(Arc::new(Fixed)).with_check("a", || Ok(())));
        let (status, content_type, body) = call(ok, Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], "OK");
        assert!(v.get("failed_checks").is_none());
        assert!(body.ends_with("}\n"));

        let failing = router(
            OpsState::new(Arc::new(Fixed))
                .with_check("a", || Ok(()))
                .with_check("disk", || Err("full".to_string())),
        );
        let (status, _, body) = call(failing, Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], "Service Unavailable");
        assert_eq!(
            v["failed_checks"],
            serde_json::json!([{"component": "disk", "reason": "full"}])
        );
        let time = v["time"].as_str().expect("time");
        assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
    }

    #[tokio::test]
    async fn metrics_and_version() {
        let app = router(OpsState::new(Arc::new(Fixed)));
        let (status, content_type, body) = call(app.clone(), Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, PROMETHEUS_CONTENT_TYPE);
        assert_eq!(body, "# TYPE up gauge\nup 1\n");

        let (status, _, body) = call(app, Method::GET, "/version").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            format!("{{\"Version\":\"{}\"}}\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[tokio::test]
    async fn wrong_method_is_explained_only_when_asked() {
        let plain = router(OpsState::new(Arc::new(Fixed)));
        let (status, _, body) = call(plain, Method::POST, "/healthz").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, "");

        let explained = router(OpsState::new(Arc::new(Fixed)).explain_wrong_method());
        let (status, _, body) = call(explained, Method::POST, "/metrics").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, "invalid request method: POST\n");
    }
}
