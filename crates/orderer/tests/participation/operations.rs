//! `/healthz`, `/metrics` and `/version` of the operations endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;
use twill_orderer::operations::{router, OpsState, OrdererMetrics, PROMETHEUS_CONTENT_TYPE};

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String, String) {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn healthz_ok_when_all_checks_pass() {
    let state = OpsState::new(Arc::new(OrdererMetrics::new()))
        .with_check("ledger", || Ok(()))
        .with_check("raft", || Ok(()));
    let (status, content_type, body) = get(&router(state), "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "OK");
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{body}");
    assert!(v.get("failed_checks").is_none(), "{body}");
}

#[tokio::test]
async fn healthz_lists_failed_checks_with_503() {
    let state = OpsState::new(Arc::new(OrdererMetrics::new()))
        .with_check("ledger", || Ok(()))
        .with_check("raft", || Err("no leader for 30s".to_string()))
        .with_check("disk", || Err("data dir not writable".to_string()));
    let (status, _, body) = get(&router(state), "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "Service Unavailable");
    assert_eq!(
        v["failed_checks"],
        serde_json::json!([
            {"component": "raft", "reason": "no leader for 30s"},
            {"component": "disk", "reason": "data dir not writable"},
        ])
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let metrics = Arc::new(OrdererMetrics::new());
    metrics.inc_broadcast("mychannel", "SUCCESS");
    metrics.inc_broadcast("mychannel", "SUCCESS");
    metrics.inc_broadcast("mychannel", "BAD_REQUEST");
    metrics.inc_blocks_written("mychannel", 2);
    metrics.set_ledger_height("mychannel", 3);
    metrics.inc_raft_leader_changes("mychannel");
    metrics.set_raft_is_leader("mychannel", true);
    metrics.set_raft_is_leader("other", false);
    metrics.observe_broadcast_latency("mychannel", Duration::from_millis(20));
    assert_eq!(metrics.broadcast_count("mychannel", "SUCCESS"), 2);

    let app = router(OpsState::new(metrics.clone()));
    let (status, content_type, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, PROMETHEUS_CONTENT_TYPE);
    for (name, kind) in [
        ("broadcast_processed_total", "counter"),
        ("broadcast_latency_seconds", "histogram"),
        ("blocks_written_total", "counter"),
        ("ledger_height", "gauge"),
        ("raft_leader_changes_total", "counter"),
        ("raft_is_leader", "gauge"),
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}:\n{text}"
        );
    }
    for line in [
        "broadcast_processed_total{channel=\"mychannel\",status=\"SUCCESS\"} 2",
        "broadcast_processed_total{channel=\"mychannel\",status=\"BAD_REQUEST\"} 1",
        "blocks_written_total{channel=\"mychannel\"} 2",
        "ledger_height{channel=\"mychannel\"} 3",
        "raft_leader_changes_total{channel=\"mychannel\"} 1",
        "raft_is_leader{channel=\"mychannel\"} 1",
        "raft_is_leader{channel=\"other\"} 0",
        "broadcast_latency_seconds_bucket{channel=\"mychannel\",le=\"0.01\"} 0",
        "broadcast_latency_seconds_bucket{channel=\"mychannel\",le=\"0.025\"} 1",
        "broadcast_latency_seconds_bucket{channel=\"mychannel\",le=\"+Inf\"} 1",
        "broadcast_latency_seconds_count{channel=\"mychannel\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }

    metrics.remove_channel("mychannel");
    let (_, _, text) = get(&app, "/metrics").await;
    assert!(!text.contains("mychannel"), "{text}");
    assert!(text.contains("# TYPE ledger_height gauge"));
}

#[tokio::test]
async fn version_and_wrong_methods() {
    let app = router(OpsState::new(Arc::new(OrdererMetrics::new())));
    let (status, _, body) = get(&app, "/version").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));

    let resp = app
        .oneshot(Request::post("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()[header::ALLOW], "GET");
}
