//! Fabric's channel participation API: the admin REST endpoint through which
//! `osnadmin` joins this orderer to channels, lists them and removes them.
//!
//! | request | success | errors |
//! | --- | --- | --- |
//! | `GET /participation/v1/channels` | 200 [`ChannelList`] | 406 |
//! | `GET /participation/v1/channels/{name}` | 200 [`ChannelInfo`] | 400 bad name, 404, 406 |
//! | `POST /participation/v1/channels` (multipart field `config-block`) | 201 [`ChannelInfo`] + `Location` | 400 bad form or block, 403 not a consenter, 405 exists (`Allow: GET, DELETE`), 409 pending removal, 413 too large, 5xx node failures |
//! | `DELETE /participation/v1/channels/{name}` | 204 | 400, 404, 409 |
//! | any other method on those paths | | 405 with `Allow` |
//! | `GET /participation/v1/` | 302 to `/participation/v1/channels` | |
//!
//! Bodies are JSON (`application/json`, one object and a newline, as Go's
//! encoder writes them); errors are `{"error":"..."}` with Fabric's messages.
//! Two deliberate differences from Fabric: a body over the limit is answered
//! 413 rather than 400, and `PUT` (Fabric 3's config update) and block fetch
//! are not offered, so `Allow` does not list them.
//!
//! What the router needs from the node is the [`ChannelParticipation`]
//! seam, implemented by [`Registrar`](crate::registrar::Registrar); tests use
//! a fake. [`serve_admin`] serves the router over HTTPS with mandatory client
//! certificates (Fabric requires `Admin.TLS.ClientAuthRequired`).
//!
//! # Example
//!
//! ```no_run
//! # async fn example(
//! #     registrar: std::sync::Arc<dyn twill_orderer::participation::ChannelParticipation>,
//! #     tls: twill_comm::ServerTls,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use twill_orderer::participation::{router, serve_admin, DEFAULT_MAX_REQUEST_BODY_SIZE};
//!
//! let (listener, _addr) = twill_comm::bind("0.0.0.0:7053").await?;
//! let app = router(registrar, DEFAULT_MAX_REQUEST_BODY_SIZE);
//! serve_admin(listener, &tls, app, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prost::Message;
use serde::{Deserialize, Serialize, Serializer};
use tokio::net::TcpListener;
use twill_comm::{ClientAuth, CommError, ServerTls};
use twill_protos::common::{Block, ChannelHeader, ConfigEnvelope, Envelope, HeaderType, Payload};

/// Base path of version 1 of the API.
pub const URL_BASE_V1: &str = "/participation/v1/";

/// The channel collection; a channel's URL is this plus `/` and its name.
pub const URL_CHANNELS: &str = "/participation/v1/channels";

/// Name of the multipart form field that carries the join block.
pub const FORM_CONFIG_BLOCK_KEY: &str = "config-block";

/// Fabric's default `ChannelParticipation.MaxRequestBodySize`: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 1024 * 1024;

/// How long [`serve_https`] lets open connections finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const LOG: &str = "orderer::participation";

/// How this orderer takes part in a channel's consensus (Fabric's
/// `consensusRelation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsensusRelation {
    /// In the channel's consenter set.
    Consenter,
    /// Not a consenter; replicates blocks from the consenters.
    Follower,
    /// Not a consenter; only watches config blocks for being added.
    ConfigTracker,
    /// A non-cluster consensus type.
    Other,
}

/// How far this orderer has caught up on a channel (Fabric's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelStatus {
    /// Taking part (or following) with height above the join block.
    Active,
    /// Pulling blocks up to the join block.
    Onboarding,
    /// Storing no blocks for the channel.
    Inactive,
    /// The last operation on the channel failed.
    Failed,
}

/// One channel in detail: the body of `GET .../channels/{name}` and of a
/// successful join. Field names as in Fabric's `types.ChannelInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelInfo {
    /// The channel name.
    pub name: String,
    /// Relative URL, e.g. `/participation/v1/channels/mychannel`; the router
    /// fills it in, implementations may leave it empty.
    pub url: String,
    /// Consenter, follower, ...
    pub consensus_relation: ConsensusRelation,
    /// Active, onboarding, ...
    pub status: ChannelStatus,
    /// Number of blocks in the channel's ledger.
    pub height: u64,
}

/// One channel in a [`ChannelList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfoShort {
    /// The channel name.
    pub name: String,
    /// Relative URL of the channel.
    pub url: String,
}

/// Body of `GET /participation/v1/channels`.
///
/// As in Fabric, `systemChannel` is always `null` and an empty `channels`
/// is serialized as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelList {
    /// Always `None`: system channels are not supported.
    pub system_channel: Option<ChannelInfoShort>,
    /// The channels, sorted by name.
    #[serde(serialize_with = "null_if_empty", default)]
    pub channels: Vec<ChannelInfoShort>,
}

fn null_if_empty<S: Serializer>(v: &[ChannelInfoShort], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

/// Body of every error response: `{"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
}

/// Why a join or remove was refused; each maps to Fabric's status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParticipationError {
    /// Joining a channel this orderer already has (405, `Allow: GET, DELETE`).
    #[error("channel already exists")]
    AlreadyExists,
    /// The channel is unknown (404).
    #[error("channel does not exist")]
    NotFound,
    /// The channel is being removed (409).
    #[error("channel pending removal")]
    PendingRemoval,
    /// An earlier removal failed and left state behind (500).
    #[error("channel removal failure")]
    RemovalFailure,
    /// The request cannot be carried out, e.g. the block is not a usable
    /// join block (400).
    #[error("{reason}")]
    Rejected {
        /// Why, for the client.
        reason: String,
    },
    /// Any other failure, with the status an implementation chose for it.
    #[error("{message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The message for the client.
        message: String,
    },
}

impl ParticipationError {
    /// The HTTP status code this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            ParticipationError::AlreadyExists => 405,
            ParticipationError::NotFound => 404,
            ParticipationError::PendingRemoval => 409,
            ParticipationError::RemovalFailure => 500,
            ParticipationError::Rejected { .. } => 400,
            ParticipationError::Status { status, .. } => *status,
        }
    }
}

/// What the participation API needs from the node: its channels.
///
/// Implemented by [`Registrar`](crate::registrar::Registrar); the URL in
/// returned [`ChannelInfo`]s may be left empty, the router sets it.
#[async_trait]
pub trait ChannelParticipation: Send + Sync + 'static {
    /// Creates the channel of `block` (already checked to be a structurally
    /// valid application-channel config block) and joins it.
    async fn join(&self, block: Block) -> Result<ChannelInfo, ParticipationError>;
    /// All channels of this orderer, in any order.
    async fn list(&self) -> Vec<ChannelInfo>;
    /// One channel, if this orderer has it.
    async fn info(&self, name: &str) -> Option<ChannelInfo>;
    /// Stops the channel and deletes its data.
    async fn remove(&self, name: &str) -> Result<(), ParticipationError>;
}

#[async_trait]
impl ChannelParticipation for crate::registrar::Registrar {
    async fn join(&self, block: Block) -> Result<ChannelInfo, ParticipationError> {
        crate::registrar::Registrar::join(self, block)
            .await
            .map(from_registrar)
            .map_err(registrar_error)
    }

    async fn list(&self) -> Vec<ChannelInfo> {
        crate::registrar::Registrar::list(self)
            .into_iter()
            .map(from_registrar)
            .collect()
    }

    async fn info(&self, name: &str) -> Option<ChannelInfo> {
        crate::registrar::Registrar::info(self, name).map(from_registrar)
    }

    async fn remove(&self, name: &str) -> Result<(), ParticipationError> {
        crate::registrar::Registrar::remove(self, name)
            .await
            .map_err(registrar_error)
    }
}

fn from_registrar(info: crate::registrar::ChannelInfo) -> ChannelInfo {
    let consensus_relation = match info.consensus_relation.as_str() {
        "consenter" => ConsensusRelation::Consenter,
        "follower" => ConsensusRelation::Follower,
        "config-tracker" => ConsensusRelation::ConfigTracker,
        _ => ConsensusRelation::Other,
    };
    let status = match info.status.as_str() {
        "active" => ChannelStatus::Active,
        "onboarding" => ChannelStatus::Onboarding,
        "inactive" => ChannelStatus::Inactive,
        _ => ChannelStatus::Failed,
    };
    ChannelInfo {
        name: info.name,
        url: info.url,
        consensus_relation,
        status,
        height: info.height,
    }
}

/// Keeps the registrar's message; an existing channel is Fabric's 405
/// rather than the registrar's 409, which Fabric reserves for a channel
/// pending removal.
fn registrar_error(e: crate::chain::ChainError) -> ParticipationError {
    let status = match e {
        crate::chain::ChainError::AlreadyExists { .. } => 405,
        ref e => e.http_status(),
    };
    ParticipationError::Status {
        status,
        message: e.to_string(),
    }
}

type Shared = Arc<dyn ChannelParticipation>;

/// The channel participation API over `p`; request bodies above `max_body`
/// bytes are refused with 413.
pub fn router(p: Arc<dyn ChannelParticipation>, max_body: usize) -> Router {
    Router::new()
        .route(
            URL_CHANNELS,
            get(list_channels)
                .post(join_channel)
                .fallback(not_allowed_collection),
        )
        .route(
            &format!("{URL_CHANNELS}/{{name}}"),
            get(channel_info)
                .delete(remove_channel)
                .fallback(not_allowed_channel),
        )
        .route(URL_BASE_V1, get(redirect_base).fallback(not_allowed_base))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(p)
}

fn channel_url(name: &str) -> String {
    format!("{URL_CHANNELS}/{name}")
}

/// A JSON response as Go's `json.Encoder` writes it: the value and `\n`.
fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
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
        Err(e) => {
            tracing::error!(target: LOG, error = %e, "cannot encode response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An error answer: `{"error": message}` with `status`, and an `Allow`
/// header for 405.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_allowed(message: impl Into<String>, allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
        }
    }

    /// An implementation's error, prefixed with `context` as Fabric does
    /// ("cannot join: ..."): 405 carries `allow`, and a status that is not
    /// an error at all becomes 400 (Fabric's default).
    fn from_node(e: &ParticipationError, context: &str, allow: &'static str) -> Self {
        let message = format!("{context}: {e}");
        match StatusCode::from_u16(e.http_status()) {
            Ok(StatusCode::METHOD_NOT_ALLOWED) => Self::not_allowed(message, allow),
            Ok(status) if status.is_client_error() || status.is_server_error() => {
                Self::new(status, message)
            }
            _ => Self::bad_request(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = json_response(
            self.status,
            &ErrorResponse {
                error: self.message,
            },
        );
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

type ApiResult = Result<Response, ApiError>;

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Only JSON is produced; a client that accepts none of it gets 406.
fn negotiate(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = accept.to_str().unwrap_or_default();
    if accept.is_empty()
        || accept.split(',').any(|opt| {
            opt.contains("application/json") || opt.contains("application/*") || opt.contains("*/*")
        })
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "response Content-Type is application/json only",
    ))
}

/// Fabric's channel name rules (`configtx.ValidateChannelID`), with its
/// messages: 1–249 characters of `[a-z0-9.-]`, starting with a letter.
pub fn validate_channel_name(name: &str) -> Result<(), String> {
    const MAX_LENGTH: usize = 249;
    if name.is_empty() {
        return Err("channel ID illegal, cannot be empty".into());
    }
    if name.len() > MAX_LENGTH {
        return Err(format!(
            "channel ID illegal, cannot be longer than {MAX_LENGTH}"
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err(format!("'{name}' contains illegal characters"));
    }
    Ok(())
}

fn channel_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) =
        path.map_err(|e| ApiError::bad_request(format!("invalid channel ID: {}", e.body_text())))?;
    validate_channel_name(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid channel ID: {e}")))?;
    Ok(name)
}

async fn list_channels(State(p): State<Shared>, headers: HeaderMap) -> ApiResult {
    negotiate(&headers)?;
    let mut channels: Vec<ChannelInfoShort> = p
        .list()
        .await
        .into_iter()
        .map(|info| ChannelInfoShort {
            url: channel_url(&info.name),
            name: info.name,
        })
        .collect();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    let list = ChannelList {
        system_channel: None,
        channels,
    };
    Ok(no_store(json_response(StatusCode::OK, &list)))
}

async fn channel_info(
    State(p): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    negotiate(&headers)?;
    let name = channel_name(path)?;
    let mut info = p.info(&name).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ParticipationError::NotFound.to_string(),
        )
    })?;
    info.url = channel_url(&info.name);
    Ok(no_store(json_response(StatusCode::OK, &info)))
}

/// The multipart boundary, if the request is `multipart/form-data`.
fn form_boundary(headers: &HeaderMap) -> Result<String, ApiError> {
    let content_types: Vec<&str> = headers
        .get_all(header::CONTENT_TYPE)
        .iter()
        .map(|v| v.to_str().unwrap_or_default())
        .collect();
    let content_type = content_types
        .iter()
        .find(|ct| ct.to_ascii_lowercase().contains("multipart/form-data"))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unsupported Content-Type: [{}]",
                content_types.join(" ")
            ))
        })?;
    let (_, params) = parse_header_params(content_type)
        .map_err(|e| ApiError::bad_request(format!("cannot parse Mime media type: {e}")))?;
    Ok(param(&params, "boundary").unwrap_or_default().to_string())
}

async fn join_channel(
    State(p): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    negotiate(&headers)?;
    let boundary = form_boundary(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "cannot read form from request body: http: request body too large",
            )
        } else {
            ApiError::bad_request(format!(
                "cannot read form from request body: {}",
                e.body_text()
            ))
        }
    })?;
    let block_bytes = config_block_part(&body, &boundary).map_err(ApiError::bad_request)?;
    let block = Block::decode(block_bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "cannot unmarshal file part {FORM_CONFIG_BLOCK_KEY} into a block: {e}"
        ))
    })?;
    let channel = validate_join_block(&block)
        .map_err(|e| ApiError::bad_request(format!("invalid join block: {e}")))?;
    let mut info = p.join(block).await.map_err(|e| {
        tracing::debug!(target: LOG, %channel, error = %e, "join refused");
        ApiError::from_node(&e, "cannot join", "GET, DELETE")
    })?;
    info.url = channel_url(&info.name);
    tracing::info!(target: LOG, channel = %info.name, "joined channel");
    let mut resp = json_response(StatusCode::CREATED, &info);
    if let Ok(location) = HeaderValue::from_str(&info.url) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

async fn remove_channel(
    State(p): State<Shared>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    negotiate(&headers)?;
    let name = channel_name(path)?;
    p.remove(&name).await.map_err(|e| {
        tracing::debug!(target: LOG, channel = %name, error = %e, "remove refused");
        ApiError::from_node(&e, "cannot remove", "GET")
    })?;
    tracing::info!(target: LOG, channel = %name, "removed channel");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn method_message(method: &Method) -> String {
    format!("invalid request method: {method}")
}

async fn not_allowed_collection(method: Method) -> ApiError {
    ApiError::not_allowed(method_message(&method), "GET, POST")
}

async fn not_allowed_channel(method: Method) -> ApiError {
    ApiError::not_allowed(method_message(&method), "GET, DELETE")
}

async fn not_allowed_base(method: Method) -> ApiError {
    ApiError::not_allowed(method_message(&method), "GET")
}

async fn redirect_base() -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, HeaderValue::from_static(URL_CHANNELS))],
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "404 page not found")
}

// ---------------------------------------------------------------------------
// Join block checks

/// Fabric's `ValidateJoinBlock` up to what needs no MSP setup: a config
/// block with metadata and a matching data hash, of an application channel
/// (an `Application` group and no `Consortiums`). Returns the channel name.
/// Whether the config itself is usable is for the registrar to decide.
pub fn validate_join_block(block: &Block) -> Result<String, String> {
    if !crate::writer::is_config_block(block) {
        return Err("block is not a config block".into());
    }
    if block
        .metadata
        .as_ref()
        .is_none_or(|m| m.metadata.is_empty())
    {
        return Err("invalid block: does not have metadata".into());
    }
    let header = block
        .header
        .as_ref()
        .ok_or("invalid block: does not have a header")?;
    let data = block.data.clone().unwrap_or_default();
    if twill_configtx::block::block_data_hash(&data).as_slice() != header.data_hash.as_slice() {
        return Err("invalid block: Header.DataHash is different from Hash(block.Data)".into());
    }
    let envelope = data
        .data
        .first()
        .and_then(|bytes| Envelope::decode(bytes.as_slice()).ok())
        .ok_or("cannot unmarshal envelope of block")?;
    let payload =
        Payload::decode(envelope.payload.as_slice()).map_err(|e| format!("bad payload: {e}"))?;
    let channel_header = payload
        .header
        .as_ref()
        .map(|h| ChannelHeader::decode(h.channel_header.as_slice()))
        .transpose()
        .map_err(|e| format!("bad channel header: {e}"))?
        .ok_or("missing header in payload")?;
    debug_assert_eq!(channel_header.r#type, HeaderType::Config as i32);
    let channel = channel_header.channel_id;
    validate_channel_name(&channel).map_err(|e| format!("bad channel ID: {e}"))?;
    let config_envelope = ConfigEnvelope::decode(payload.data.as_slice())
        .map_err(|e| format!("cannot unmarshal config envelope: {e}"))?;
    let groups = config_envelope
        .config
        .and_then(|c| c.channel_group)
        .map(|g| g.groups)
        .unwrap_or_default();
    if groups.contains_key("Consortiums") {
        return Err("invalid config: contains consortiums: system channel not supported".into());
    }
    if !groups.contains_key("Application") {
        return Err("invalid config: must contain application config".into());
    }
    Ok(channel)
}

// ---------------------------------------------------------------------------
// multipart/form-data

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// Splits `value; k=v; k2="v 2"` (a Content-Type or Content-Disposition
/// value) into the lowercased first token and its parameters.
fn parse_header_params(value: &str) -> Result<(String, Vec<(String, String)>), String> {
    let (first, mut rest) = value.split_once(';').unwrap_or((value, ""));
    let first = first.trim().to_ascii_lowercase();
    if first.is_empty() {
        return Err("mime: no media type".into());
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| "mime: invalid media parameter".to_string())?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, c)) => val.push(c),
                        None => break,
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => val.push(c),
                }
            }
            let end = end.ok_or_else(|| "mime: invalid media parameter".to_string())?;
            (val, &quoted[end..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if key.is_empty() {
            return Err("mime: invalid media parameter".into());
        }
        params.push((key, val));
        rest = remaining;
    }
    Ok((first, params))
}

struct FormPart<'a> {
    name: String,
    filename: Option<String>,
    data: &'a [u8],
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Parses a multipart body (RFC 7578) into its named parts.
fn parse_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<FormPart<'a>>, String> {
    if boundary.is_empty() {
        return Err("multipart: boundary is empty".into());
    }
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The first delimiter is at the start or after a preamble line.
    let mut pos = if body.starts_with(delimiter) {
        0
    } else {
        find(body, &[b"\r\n", delimiter].concat(), 0)
            .map(|i| i + 2)
            .ok_or("multipart: NextPart: EOF")?
    };
    let mut parts = Vec::new();
    loop {
        pos += delimiter.len();
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        while matches!(body.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("multipart: expecting a new Part".into());
        }
        pos += 2;
        let (headers, content_start) = if body[pos..].starts_with(b"\r\n") {
            ("", pos + 2)
        } else {
            let end = find(body, b"\r\n\r\n", pos).ok_or("multipart: NextPart: EOF")?;
            let headers = std::str::from_utf8(&body[pos..end])
                .map_err(|_| "multipart: part headers are not UTF-8".to_string())?;
            (headers, end + 4)
        };
        let content_end = find(body, &[b"\r\n", delimiter].concat(), content_start)
            .ok_or("multipart: NextPart: EOF")?;
        let mut name = String::new();
        let mut filename = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                let (kind, params) = parse_header_params(value)?;
                if kind == "form-data" {
                    name = param(&params, "name").unwrap_or_default().to_string();
                    filename = param(&params, "filename")
                        .filter(|f| !f.is_empty())
                        .map(str::to_string);
                }
            }
        }
        if !name.is_empty() {
            parts.push(FormPart {
                name,
                filename,
                data: &body[content_start..content_end],
            });
        }
        pos = content_end + 2;
    }
}

/// The bytes of the single file part `config-block`, with Fabric's checks:
/// the part must be there, as a file, and be the form's only part.
fn config_block_part<'a>(body: &'a [u8], boundary: &str) -> Result<&'a [u8], String> {
    let parts = parse_multipart(body, boundary)
        .map_err(|e| format!("cannot read form from request body: {e}"))?;
    let Some(block) = parts
        .iter()
        .find(|p| p.name == FORM_CONFIG_BLOCK_KEY && p.filename.is_some())
    else {
        return Err(format!(
            "form does not contains part key: {FORM_CONFIG_BLOCK_KEY}"
        ));
    };
    if parts.len() != 1 {
        return Err("form contains too many parts".into());
    }
    Ok(block.data)
}

// ---------------------------------------------------------------------------
// HTTPS server

/// Why an HTTPS listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminServerError {
    /// The admin endpoint must require client certificates (Fabric:
    /// "Admin.TLS.ClientAuthRequired must be set to true").
    #[error("the admin endpoint requires client certificates; client authentication is {mode:?}")]
    ClientAuthNotRequired {
        /// The mode configured.
        mode: ClientAuth,
    },
    /// The TLS material could not be turned into a server configuration.
    #[error("admin endpoint TLS: {0}")]
    Tls(#[from] CommError),
}

/// Serves the channel participation `router` over HTTPS (HTTP/1.1 and
/// HTTP/2 by ALPN) until `shutdown` completes; `tls` must require client
/// certificates. Then lets open requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve_admin<F>(
    listener: TcpListener,
    tls: &ServerTls,
    router: Router,
    shutdown: F,
) -> Result<(), AdminServerError>
where
    F: Future<Output = ()> + Send,
{
    let mode = tls.client_auth();
    if mode != ClientAuth::Required {
        return Err(AdminServerError::ClientAuthNotRequired { mode });
    }
    serve_https(listener, tls, router, shutdown).await
}

/// Serves any router over HTTPS with `tls` as configured (client
/// certificates required, optional or not asked for), e.g. the operations
/// endpoint with `Operations.TLS` enabled. Each connection runs in its own
/// task; the TLS handshake must finish within
/// [`TLS_HANDSHAKE_TIMEOUT`](twill_comm::TLS_HANDSHAKE_TIMEOUT).
pub async fn serve_https<F>(
    listener: TcpListener,
    tls: &ServerTls,
    router: Router,
    shutdown: F,
) -> Result<(), AdminServerError>
where
    F: Future<Output = ()> + Send,
{
    Ok(twill_ops::serve_https(listener, tls, router, shutdown, SHUTDOWN_GRACE).await?)
}
