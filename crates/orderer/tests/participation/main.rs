//! The admin REST endpoints over a fake node: every status code of the
//! channel participation API, and the operations endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod operations;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use prost::Message;
use tower::ServiceExt;
use twill_orderer::participation::{
    router, validate_join_block, ChannelInfo, ChannelParticipation, ChannelStatus,
    ConsensusRelation, ParticipationError, DEFAULT_MAX_REQUEST_BODY_SIZE,
};
use twill_protos::common::{Block, ConfigGroup};

/// A node whose channels live in a map. `join_error` makes the next join
/// fail; channels in `pending` are "being removed".
#[derive(Default)]
pub struct FakeNode {
    pub channels: Mutex<BTreeMap<String, ChannelInfo>>,
    pub pending: Mutex<BTreeSet<String>>,
    pub join_error: Mutex<Option<ParticipationError>>,
}

#[async_trait]
impl ChannelParticipation for FakeNode {
    async fn join(&self, block: Block) -> Result<ChannelInfo, ParticipationError> {
        if let Some(e) = self.join_error.lock().unwrap().take() {
            return Err(e);
        }
        let name = validate_join_block(&block)
            .map_err(|reason| ParticipationError::Rejected { reason })?;
        if self.pending.lock().unwrap().contains(&name) {
            return Err(ParticipationError::PendingRemoval);
        }
        let mut channels = self.channels.lock().unwrap();
        if channels.contains_key(&name) {
            return Err(ParticipationError::AlreadyExists);
        }
        let info = ChannelInfo {
            name: name.clone(),
            url: String::new(),
            consensus_relation: ConsensusRelation::Consenter,
            status: ChannelStatus::Active,
            height: block.header.map_or(0, |h| h.number + 1),
        };
        channels.insert(name, info.clone());
        Ok(info)
    }

    async fn list(&self) -> Vec<ChannelInfo> {
        self.channels.lock().unwrap().values().cloned().collect()
    }

    async fn info(&self, name: &str) -> Option<ChannelInfo> {
        self.channels.lock().unwrap().get(name).cloned()
    }

    async fn remove(&self, name: &str) -> Result<(), ParticipationError> {
        if self.pending.lock().unwrap().contains(name) {
            return Err(ParticipationError::PendingRemoval);
        }
        self.channels
            .lock()
            .unwrap()
            .remove(name)
            .map(drop)
            .ok_or(ParticipationError::NotFound)
    }
}

/// Block 0 of an application channel (an `Application` group) or, with
/// `system`, of a system channel (a `Consortiums` group).
pub fn config_block(channel: &str, system: bool) -> Block {
    let mut group = ConfigGroup::default();
    group
        .groups
        .insert("Orderer".into(), ConfigGroup::default());
    let kind = if system { "Consortiums" } else { "Application" };
    group.groups.insert(kind.into(), ConfigGroup::default());
    twill_configtx::genesis::genesis_block(channel, group)
}

pub const BOUNDARY: &str = "----twill-test-boundary";

/// A multipart/form-data body with `(name, filename, bytes)` parts.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let filename = filename
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes(),
        );
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn join_body(block: &Block) -> Vec<u8> {
    multipart(&[("config-block", Some("config.block"), &block.encode_to_vec())])
}

struct Api {
    node: Arc<FakeNode>,
    app: axum::Router,
}

impl Api {
    fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_REQUEST_BODY_SIZE)
    }

    fn with_limit(limit: usize) -> Self {
        let node = Arc::new(FakeNode::default());
        let app = router(node.clone(), limit);
        Api { node, app }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Response<Body>, String) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            status,
            Response::from_parts(parts, Body::empty()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Response<Body>, String) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Response<Body>, String) {
        self.send(Request::delete(path).body(Body::empty()).unwrap())
            .await
    }

    async fn post_form(&self, body: Vec<u8>) -> (StatusCode, Response<Body>, String) {
        let req = Request::post("/participation/v1/channels")
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    async fn join(&self, block: &Block) -> (StatusCode, Response<Body>, String) {
        self.post_form(join_body(block)).await
    }
}

fn hdr(resp: &Response<Body>, name: header::HeaderName) -> &str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    v["error"].as_str().expect("error field").to_string()
}

#[tokio::test]
async fn empty_list_is_fabrics_shape() {
    let api = Api::new();
    let (status, resp, body) = api.get("/participation/v1/channels").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "{\"systemChannel\":null,\"channels\":null}\n");
    assert_eq!(hdr(&resp, header::CONTENT_TYPE), "application/json");
    assert_eq!(hdr(&resp, header::CACHE_CONTROL), "no-store");
}

#[tokio::test]
async fn join_then_list_and_info() {
    let api = Api::new();
    let (status, resp, body) = api.join(&config_block("mychannel", false)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        hdr(&resp, header::LOCATION),
        "/participation/v1/channels/mychannel"
    );
    assert_eq!(hdr(&resp, header::CONTENT_TYPE), "application/json");
    assert_eq!(
        body,
        "{\"name\":\"mychannel\",\"url\":\"/participation/v1/channels/mychannel\",\
         \"consensusRelation\":\"consenter\",\"status\":\"active\",\"height\":1}\n"
    );

    api.join(&config_block("another", false)).await;
    let (status, _, body) = api.get("/participation/v1/channels").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "{\"systemChannel\":null,\"channels\":[\
         {\"name\":\"another\",\"url\":\"/participation/v1/channels/another\"},\
         {\"name\":\"mychannel\",\"url\":\"/participation/v1/channels/mychannel\"}]}\n"
    );

    let (status, resp, body) = api.get("/participation/v1/channels/mychannel").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hdr(&resp, header::CACHE_CONTROL), "no-store");
    let info: ChannelInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.url, "/participation/v1/channels/mychannel");
    assert_eq!(info.consensus_relation, ConsensusRelation::Consenter);
    assert_eq!(info.height, 1);
}

#[tokio::test]
async fn join_of_an_existing_channel_is_405_with_allow() {
    let api = Api::new();
    let block = config_block("mychannel", false);
    assert_eq!(api.join(&block).await.0, StatusCode::CREATED);
    let (status, resp, body) = api.join(&block).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(hdr(&resp, header::ALLOW), "GET, DELETE");
    assert_eq!(error_of(&body), "cannot join: channel already exists");
}

#[tokio::test]
async fn join_errors_from_the_node_keep_their_status() {
    let api = Api::new();
    api.node.pending.lock().unwrap().insert("mychannel".into());
    let (status, _, body) = api.join(&config_block("mychannel", false)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_of(&body), "cannot join: channel pending removal");

    *api.node.join_error.lock().unwrap() = Some(ParticipationError::RemovalFailure);
    let (status, _, _) = api.join(&config_block("other", false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    *api.node.join_error.lock().unwrap() = Some(ParticipationError::Rejected {
        reason: "this orderer's TLS certificate is not among the consenters".into(),
    });
    let (status, _, body) = api.join(&config_block("other", false)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "cannot join: this orderer's TLS certificate is not among the consenters"
    );

    *api.node.join_error.lock().unwrap() = Some(ParticipationError::Status {
        status: 503,
        message: "shutting down".into(),
    });
    let (status, _, body) = api.join(&config_block("other", false)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_of(&body), "cannot join: shutting down");
}

#[tokio::test]
async fn bad_forms_are_400() {
    let api = Api::new();
    let block = config_block("mychannel", false).encode_to_vec();

    let (status, _, body) = api
        .post_form(multipart(&[("genesis", Some("g.block"), &block)]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "form does not contains part key: config-block"
    );

    // A value (no filename) is not a file part, as in Go's ReadForm.
    let (status, _, body) = api
        .post_form(multipart(&[("config-block", None, &block)]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "form does not contains part key: config-block"
    );

    let (status, _, body) = api
        .post_form(multipart(&[
            ("config-block", Some("config.block"), &block),
            ("extra", None, b"x"),
        ]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "form contains too many parts");

    let (status, _, body) = api.post_form(b"no multipart here".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_of(&body).starts_with("cannot read form from request body"),
        "{body}"
    );

    let (status, _, body) = api
        .post_form(multipart(&[(
            "config-block",
            Some("config.block"),
            b"\xff\xff\xff\xff",
        )]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_of(&body).starts_with("cannot unmarshal file part config-block into a block"),
        "{body}"
    );
    assert!(api.node.channels.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unusable_join_blocks_are_400() {
    let api = Api::new();

    let (status, _, body) = api.join(&config_block("sys", true)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "invalid join block: invalid config: contains consortiums: system channel not supported"
    );

    let mut group = ConfigGroup::default();
    group
        .groups
        .insert("Orderer".into(), ConfigGroup::default());
    let no_app = twill_configtx::genesis::genesis_block("mychannel", group);
    let (status, _, body) = api.join(&no_app).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "invalid join block: invalid config: must contain application config"
    );

    let mut tampered = config_block("mychannel", false);
    tampered.header.as_mut().unwrap().data_hash[0] ^= 1;
    let (status, _, body) = api.join(&tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "invalid join block: invalid block: Header.DataHash is different from Hash(block.Data)"
    );

    let mut no_metadata = config_block("mychannel", false);
    no_metadata.metadata = None;
    let (status, _, body) = api.join(&no_metadata).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "invalid join block: invalid block: does not have metadata"
    );

    let not_config = twill_configtx::block::new_block(0, Vec::new(), vec![b"tx".to_vec()]);
    let (status, _, body) = api.join(&not_config).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "invalid join block: block is not a config block"
    );
    assert!(api.node.channels.lock().unwrap().is_empty());
}

#[tokio::test]
async fn join_needs_multipart() {
    let api = Api::new();
    let req = Request::post("/participation/v1/channels")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = api.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body),
        "unsupported Content-Type: [application/json]"
    );

    let req = Request::post("/participation/v1/channels")
        .body(Body::from("x"))
        .unwrap();
    let (status, _, body) = api.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "unsupported Content-Type: []");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let api = Api::with_limit(4096);
    let big = vec![7u8; 8192];
    let (status, _, body) = api
        .post_form(multipart(&[("config-block", Some("config.block"), &big)]))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&body).contains("too large"), "{body}");

    // A real block under the limit still joins.
    let (status, _, body) = api.join(&config_block("mychannel", false)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn unknown_channel_is_404() {
    let api = Api::new();
    let (status, resp, body) = api.get("/participation/v1/channels/nochannel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(hdr(&resp, header::CONTENT_TYPE), "application/json");
    assert_eq!(body, "{\"error\":\"channel does not exist\"}\n");

    let (status, _, body) = api.delete("/participation/v1/channels/nochannel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&body), "cannot remove: channel does not exist");
}

#[tokio::test]
async fn bad_channel_names_are_400() {
    let api = Api::new();
    for (path_name, message) in [
        (
            "Bad_Name".to_string(),
            "invalid channel ID: 'Bad_Name' contains illegal characters".to_string(),
        ),
        (
            "9lives".to_string(),
            "invalid channel ID: '9lives' contains illegal characters".to_string(),
        ),
        (
            "a".repeat(250),
            "invalid channel ID: channel ID illegal, cannot be longer than 249".to_string(),
        ),
    ] {
        let path = format!("/participation/v1/channels/{path_name}");
        let (status, _, body) = api.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path_name}");
        assert_eq!(error_of(&body), message);
        let (status, _, body) = api.delete(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path_name}");
        assert_eq!(error_of(&body), message);
    }
}

#[tokio::test]
async fn remove_is_204_then_404_and_409_while_pending() {
    let api = Api::new();
    api.join(&config_block("mychannel", false)).await;
    let (status, _, body) = api.delete("/participation/v1/channels/mychannel").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, "");
    let (status, _, _) = api.get("/participation/v1/channels/mychannel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = api.delete("/participation/v1/channels/mychannel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    api.node.pending.lock().unwrap().insert("going".into());
    let (status, _, body) = api.delete("/participation/v1/channels/going").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_of(&body), "cannot remove: channel pending removal");
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let api = Api::new();
    for (method, path, allow) in [
        (Method::PUT, "/participation/v1/channels", "GET, POST"),
        (Method::DELETE, "/participation/v1/channels", "GET, POST"),
        (
            Method::POST,
            "/participation/v1/channels/mychannel",
            "GET, DELETE",
        ),
        (
            Method::PATCH,
            "/participation/v1/channels/mychannel",
            "GET, DELETE",
        ),
        (Method::POST, "/participation/v1/", "GET"),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let (status, resp, body) = api.send(req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(hdr(&resp, header::ALLOW), allow, "{method} {path}");
        assert_eq!(error_of(&body), format!("invalid request method: {method}"));
    }
}

#[tokio::test]
async fn only_json_is_offered() {
    let api = Api::new();
    let req = Request::get("/participation/v1/channels")
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = api.send(req).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        error_of(&body),
        "response Content-Type is application/json only"
    );
    let req = Request::get("/participation/v1/channels")
        .header(header::ACCEPT, "text/html, */*;q=0.8")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn base_redirects_and_unknown_paths_are_404() {
    let api = Api::new();
    let (status, resp, _) = api.get("/participation/v1/").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(hdr(&resp, header::LOCATION), "/participation/v1/channels");
    let (status, _, body) = api.get("/participation/v2/channels").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("not found"));
}

#[tokio::test]
async fn admin_server_insists_on_client_certificates() {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let tls = twill_comm::ServerTls::from_pem(
        cert.pem(),
        key.serialize_pem(),
        vec![cert.pem().into_bytes()],
        twill_comm::ClientAuth::Optional,
    )
    .unwrap();
    let (listener, _) = twill_comm::bind("127.0.0.1:0").await.unwrap();
    let app = router(Arc::new(FakeNode::default()), DEFAULT_MAX_REQUEST_BODY_SIZE);
    let err = twill_orderer::participation::serve_admin(listener, &tls, app, async {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("requires client certificates"),
        "{err}"
    );
}
