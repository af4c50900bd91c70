//! The HTTP side: Fabric CA's REST endpoints on axum, under `/api/v1/` and
//! at the root, answering with Fabric CA's JSON envelope.
//!
//! Request bodies are read whole whatever their framing (the Node client
//! sends chunked bodies with no `Content-Type`); JSON keys are matched
//! case-insensitively as Go does. The registry and signing work runs on the
//! blocking pool.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::api::{
    AffiliationRequest, EnrollRequest, Envelope, ErrorInfo, GenCrlRequest, ModifyIdentityRequest,
    RegisterRequest, RevokeRequest,
};
use crate::error::{codes, CaError, CaResult};
use crate::service::Ca;

const LOG: &str = "ca::server";

#[derive(Debug, Clone)]
enum Endpoint {
    CaInfo,
    Enroll,
    Reenroll,
    Register,
    Revoke,
    GenCrl,
    Identities,
    Identity(String),
    Affiliations,
    Affiliation(String),
    Certificates,
}

struct Request {
    method: Method,
    uri: String,
    query: BTreeMap<String, String>,
    auth: Option<String>,
    body: Bytes,
}

/// The router serving every endpoint of `ca`, with and without the
/// `/api/v1` prefix.
pub fn router(ca: Arc<Ca>) -> Router {
    let mut r = Router::new();
    for prefix in ["/api/v1", ""] {
        let simple: [(&str, Endpoint); 9] = [
            ("cainfo", Endpoint::CaInfo),
            ("enroll", Endpoint::Enroll),
            ("reenroll", Endpoint::Reenroll),
            ("register", Endpoint::Register),
            ("revoke", Endpoint::Revoke),
            ("gencrl", Endpoint::GenCrl),
            ("identities", Endpoint::Identities),
            ("affiliations", Endpoint::Affiliations),
            ("certificates", Endpoint::Certificates),
        ];
        for (name, ep) in simple {
            r = r.route(
                &format!("{prefix}/{name}"),
                any(
                    move |State(ca): State<Arc<Ca>>,
                          method: Method,
                          OriginalUri(uri): OriginalUri,
                          headers: HeaderMap,
                          body: Bytes| {
                        let ep = ep.clone();
                        async move { handle(ca, ep, request(method, &uri, &headers, body)).await }
                    },
                ),
            );
        }
        r = r.route(
            &format!("{prefix}/identities/{{id}}"),
            any(
                |State(ca): State<Arc<Ca>>,
                 Path(id): Path<String>,
                 method: Method,
                 OriginalUri(uri): OriginalUri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    handle(
                        ca,
                        Endpoint::Identity(id),
                        request(method, &uri, &headers, body),
                    )
                    .await
                },
            ),
        );
        r = r.route(
            &format!("{prefix}/affiliations/{{name}}"),
            any(
                |State(ca): State<Arc<Ca>>,
                 Path(name): Path<String>,
                 method: Method,
                 OriginalUri(uri): OriginalUri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    handle(
                        ca,
                        Endpoint::Affiliation(name),
                        request(method, &uri, &headers, body),
                    )
                    .await
                },
            ),
        );
    }
    r.fallback(|| async {
        envelope_error(&CaError::NotFound {
            code: codes::UNKNOWN,
            message: "Not found".into(),
        })
    })
    .with_state(ca)
}

fn request(method: Method, uri: &axum::http::Uri, headers: &HeaderMap, body: Bytes) -> Request {
    let uri_text = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    Request {
        method,
        query: parse_query(uri.query().unwrap_or("")),
        uri: uri_text,
        auth: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    }
}

async fn handle(ca: Arc<Ca>, ep: Endpoint, req: Request) -> Response {
    let label = format!("{} {}", req.method, req.uri);
    let joined = tokio::task::spawn_blocking(move || dispatch(&ca, ep, &req)).await;
    match joined {
        Ok(Ok((status, value))) => {
            tracing::debug!(target: LOG, request = %label, status, "ok");
            envelope_ok(status, value)
        }
        Ok(Err(e)) => {
            tracing::info!(target: LOG, request = %label, status = e.status(), code = e.code(), error = %e, "request refused");
            envelope_error(&e)
        }
        Err(e) => {
            tracing::error!(target: LOG, request = %label, error = %e, "handler panicked");
            envelope_error(&CaError::Cert("internal error".into()))
        }
    }
}

fn json_response(status: u16, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn envelope_ok(status: u16, result: Value) -> Response {
    json_response(
        status,
        &Envelope {
            result,
            errors: Vec::new(),
            messages: Vec::new(),
            success: true,
        },
    )
}

fn envelope_error(e: &CaError) -> Response {
    json_response(
        e.status(),
        &Envelope {
            result: Value::String(String::new()),
            errors: vec![ErrorInfo {
                code: e.code(),
                message: e.client_message(),
            }],
            messages: Vec::new(),
            success: false,
        },
    )
}

fn to_value(v: impl Serialize) -> CaResult<Value> {
    serde_json::to_value(v).map_err(|e| CaError::Cert(e.to_string()))
}

fn not_allowed(m: &Method) -> CaError {
    CaError::MethodNotAllowed {
        method: m.to_string(),
    }
}

/// Decodes a JSON body into `T`, matching top-level keys to `fields`
/// case-insensitively; an empty body is `{}`.
fn body<T: DeserializeOwned>(raw: &[u8], fields: &[&str]) -> CaResult<T> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| CaError::bad(codes::BAD_REQUEST_BODY, "Request body is not UTF-8"))?;
    let mut v: Value = if text.trim().is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(text).map_err(|e| {
            CaError::bad(
                codes::BAD_REQUEST_BODY,
                format!("Invalid request body: {e}"),
            )
        })?
    };
    if let Value::Object(map) = &mut v {
        let entries = std::mem::take(map);
        for (k, val) in entries {
            if val.is_null() {
                continue;
            }
            let key = fields
                .iter()
                .find(|f| f.eq_ignore_ascii_case(&k))
                .map(|f| (*f).to_string())
                .unwrap_or(k);
            map.insert(key, val);
        }
    }
    serde_json::from_value(v).map_err(|e| {
        CaError::bad(
            codes::BAD_REQUEST_BODY,
            format!("Invalid request body: {e}"),
        )
    })
}

fn body_caname(raw: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("caname"))
        .and_then(|(_, v)| v.as_str().map(str::to_string))
}

fn basic(auth: Option<&str>) -> CaResult<(String, String)> {
    let v = auth.ok_or_else(|| CaError::authn("no authorization header"))?;
    let b64 = v
        .strip_prefix("Basic ")
        .ok_or_else(|| CaError::authn("enroll needs Basic authorization"))?;
    let raw = B64
        .decode(b64.trim())
        .map_err(|_| CaError::authn("Basic credentials are not base64"))?;
    let text =
        String::from_utf8(raw).map_err(|_| CaError::authn("Basic credentials are not UTF-8"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| CaError::authn("Basic credentials have no ':'"))?;
    Ok((id.to_string(), secret.to_string()))
}

fn dispatch(ca: &Ca, ep: Endpoint, req: &Request) -> CaResult<(u16, Value)> {
    ca.check_ca_name(req.query.get("ca").map(String::as_str))?;
    ca.check_ca_name(body_caname(&req.body).as_deref())?;
    let m = &req.method;
    let token = || ca.authenticate(m.as_str(), &req.uri, &req.body, req.auth.as_deref());
    let force = req.query.get("force").is_some_and(|v| v == "true");
    const ENROLL: &[&str] = &["certificate_request", "profile", "attr_reqs", "caname"];
    const REGISTER: &[&str] = &[
        "id",
        "type",
        "secret",
        "max_enrollments",
        "affiliation",
        "attrs",
        "caname",
    ];
    match ep {
        Endpoint::CaInfo => match *m {
            Method::GET | Method::POST => Ok((200, to_value(ca.cainfo())?)),
            _ => Err(not_allowed(m)),
        },
        Endpoint::Enroll => {
            if *m != Method::POST {
                return Err(not_allowed(m));
            }
            let (id, secret) = basic(req.auth.as_deref())?;
            let r: EnrollRequest = body(&req.body, ENROLL)?;
            Ok((201, to_value(ca.enroll(&id, &secret, &r)?)?))
        }
        Endpoint::Reenroll => {
            if *m != Method::POST {
                return Err(not_allowed(m));
            }
            let caller = token()?;
            let r: EnrollRequest = body(&req.body, ENROLL)?;
            Ok((201, to_value(ca.reenroll(&caller, &r)?)?))
        }
        Endpoint::Register => {
            if *m != Method::POST {
                return Err(not_allowed(m));
            }
            let caller = token()?;
            let r: RegisterRequest = body(&req.body, REGISTER)?;
            Ok((201, to_value(ca.register(&caller, &r)?)?))
        }
        Endpoint::Revoke => {
            if *m != Method::POST {
                return Err(not_allowed(m));
            }
            let caller = token()?;
            let r: RevokeRequest = body(
                &req.body,
                &["id", "aki", "serial", "reason", "gencrl", "caname"],
            )?;
            Ok((200, to_value(ca.revoke(&caller, &r)?)?))
        }
        Endpoint::GenCrl => {
            if *m != Method::POST {
                return Err(not_allowed(m));
            }
            let caller = token()?;
            let r: GenCrlRequest = body(
                &req.body,
                &[
                    "revokedBefore",
                    "revokedAfter",
                    "expireBefore",
                    "expireAfter",
                    "caname",
                ],
            )?;
            Ok((200, to_value(ca.gencrl(&caller, &r)?)?))
        }
        Endpoint::Identities => match *m {
            Method::GET => {
                let caller = token()?;
                Ok((200, to_value(ca.list_identities(&caller)?)?))
            }
            Method::POST => {
                let caller = token()?;
                let r: RegisterRequest = body(&req.body, REGISTER)?;
                Ok((201, to_value(ca.register(&caller, &r)?)?))
            }
            _ => Err(not_allowed(m)),
        },
        Endpoint::Identity(id) => match *m {
            Method::GET => {
                let caller = token()?;
                Ok((200, to_value(ca.get_identity(&caller, &id)?)?))
            }
            Method::PUT => {
                let caller = token()?;
                let r: ModifyIdentityRequest = body(
                    &req.body,
                    &[
                        "type",
                        "affiliation",
                        "max_enrollments",
                        "attrs",
                        "secret",
                        "caname",
                    ],
                )?;
                Ok((200, to_value(ca.modify_identity(&caller, &id, &r)?)?))
            }
            Method::DELETE => {
                let caller = token()?;
                Ok((200, to_value(ca.delete_identity(&caller, &id)?)?))
            }
            _ => Err(not_allowed(m)),
        },
        Endpoint::Affiliations => match *m {
            Method::GET => {
                let caller = token()?;
                Ok((200, to_value(ca.get_affiliations(&caller, None)?)?))
            }
            Method::POST => {
                let caller = token()?;
                let r: AffiliationRequest = body(&req.body, &["name", "caname"])?;
                Ok((201, to_value(ca.add_affiliation(&caller, &r.name, force)?)?))
            }
            _ => Err(not_allowed(m)),
        },
        Endpoint::Affiliation(name) => match *m {
            Method::GET => {
                let caller = token()?;
                Ok((200, to_value(ca.get_affiliations(&caller, Some(&name))?)?))
            }
            Method::PUT => {
                let caller = token()?;
                let r: AffiliationRequest = body(&req.body, &["name", "caname"])?;
                Ok((
                    200,
                    to_value(ca.rename_affiliation(&caller, &name, &r.name, force)?)?,
                ))
            }
            Method::DELETE => {
                let caller = token()?;
                Ok((
                    200,
                    to_value(ca.delete_affiliation(&caller, &name, force)?)?,
                ))
            }
            _ => Err(not_allowed(m)),
        },
        Endpoint::Certificates => match *m {
            Method::GET => {
                let caller = token()?;
                Ok((200, to_value(ca.certificates(&caller, &req.query)?)?))
            }
            _ => Err(not_allowed(m)),
        },
    }
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hexval(c: u8) -> Option<u8> {
        (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hexval),
                b.get(i + 2).copied().and_then(hexval),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where and how to listen.
#[derive(Debug)]
pub struct Listen {
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// TLS identity, if TLS is on.
    pub tls: Option<twill_comm::ServerTls>,
}

/// Serves `ca` on `listen` until `shutdown` completes.
pub async fn serve<F>(ca: Arc<Ca>, listen: Listen, shutdown: F) -> CaResult<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(ca);
    match listen.tls {
        Some(tls) => {
            twill_ops::serve_https(listen.listener, &tls, app, shutdown, Duration::from_secs(5))
                .await
                .map_err(|e| CaError::Config(format!("TLS: {e}")))
        }
        None => axum::serve(listen.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| CaError::Io {
                path: "listener".into(),
                source: e,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("ca=ca%2Dorg1&force=true&x");
        assert_eq!(q["ca"], "ca-org1");
        assert_eq!(q["force"], "true");
        assert_eq!(q["x"], "");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
