//! The HTTP side of `twill ca`: the CA's URL, the REST client and the
//! authorization token.
//!
//! The wire format is Fabric CA's (see `PROTOCOL_SURFACE.md` part C):
//! requests go to `/api/v1/<endpoint>`, every answer is the envelope
//! `{success, result, errors, messages}`, `enroll` authenticates with HTTP
//! Basic and everything else with a token made from the caller's enrollment
//! certificate and key ([`auth_token`]).

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::httpbody::FullBody;
use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::body::Body as _;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use twill_comm::{ClientTls, TlsFiles, CONNECT_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
use twill_msp::SigningIdentity;

/// Port of a Fabric CA when the URL names none.
pub(crate) const DEFAULT_PORT: u16 = 7054;

/// Prefix of every endpoint.
const API_PREFIX: &str = "/api/v1/";

/// How long to wait for a whole answer once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A CA's URL: `http[s]://[user:password@]host[:port]`. A path, if any, is
/// ignored, as Fabric's clients do.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CaUrl {
    /// `https`?
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Enrollment ID from the URL's user part, percent-decoded.
    pub user: Option<String>,
    /// Secret from the URL's password part, percent-decoded.
    pub password: Option<String>,
}

impl CaUrl {
    /// Parses `url`; errors say what is wrong with it.
    pub(crate) fn parse(url: &str) -> anyhow::Result<CaUrl> {
        let bad = |why: &str| anyhow!("bad CA URL '{}': {why}", redact(url));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http://host:port or https://host:port"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (u, p) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = percent_decode(u).ok_or_else(|| bad("bad %-escape in the user"))?;
                let password = p
                    .map(|p| percent_decode(p).ok_or_else(|| bad("bad %-escape in the password")))
                    .transpose()?;
                ((!user.is_empty()).then_some(user), password)
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after the IPv6 address")),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number in 1..=65535"))?,
        };
        Ok(CaUrl {
            tls,
            host: host.to_string(),
            port,
            user,
            password,
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The base URL without credentials, for messages.
    pub(crate) fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }
}

impl fmt::Display for CaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base())
    }
}

impl fmt::Debug for CaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("CaUrl")
            .field("base", &self.base())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// `url` with any password replaced by `***`, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((info, host)) => {
            let user = info.split_once(':').map_or(info, |(u, _)| u);
            let masked = if info.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// Decodes `%XX` escapes; `None` if one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes everything but RFC 3986 unreserved characters, for one path
/// segment or query value.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `path?k=v&...` from the pairs whose value is present.
pub(crate) fn with_query(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", percent_encode(v))))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// The `Authorization` value Fabric CA expects on every call but `enroll`:
/// `b64(cert PEM) "." b64(signature)`, where the signature is ECDSA P-256
/// (DER, low-S) over SHA-256 of
/// `METHOD "." b64(request URI) "." b64(body) "." b64(cert PEM)`.
/// `uri` is the path plus query exactly as sent, `body` the exact bytes.
pub(crate) fn auth_token(
    signer: &SigningIdentity,
    method: &Method,
    uri: &str,
    body: &[u8],
) -> anyhow::Result<String> {
    let b64cert = STANDARD.encode(signer.identity().cert_pem());
    let signed = token_payload(method, uri, body, &b64cert);
    let sig = signer
        .sign(signed.as_bytes())
        .context("signing the CA authorization token")?;
    Ok(format!("{b64cert}.{}", STANDARD.encode(sig)))
}

/// The string the token signs.
pub(crate) fn token_payload(method: &Method, uri: &str, body: &[u8], b64cert: &str) -> String {
    format!(
        "{}.{}.{}.{b64cert}",
        method.as_str(),
        STANDARD.encode(uri),
        STANDARD.encode(body)
    )
}

/// `Authorization: Basic ...` for enroll.
fn basic_auth(user: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")))
}

/// How a request authenticates.
pub(crate) enum Auth<'a> {
    /// No `Authorization` header.
    None,
    /// HTTP Basic with enrollment ID and secret.
    Basic { user: &'a str, secret: &'a str },
    /// Fabric CA's token, signed by this identity.
    Token(&'a SigningIdentity),
}

/// TLS settings for reaching the CA.
#[derive(Debug, Default, Clone)]
pub(crate) struct CaTls {
    /// PEM files with the CA's TLS root certificates.
    pub root_files: Vec<PathBuf>,
    /// Client certificate and key for mutual TLS, if the server asks.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// A Fabric CA REST client: one CA (optionally one of several the server
/// hosts, by `caname`), reached over HTTP or HTTPS.
///
/// Every request opens a fresh connection: CA calls are few, and this keeps
/// the client free of pooling state.
pub(crate) struct CaClient {
    url: CaUrl,
    caname: Option<String>,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl fmt::Debug for CaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaClient")
            .field("url", &self.url)
            .field("caname", &self.caname)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The `result` of enroll and reenroll, as Fabric CA sends it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EnrollResult {
    /// Base64 of the issued certificate's PEM.
    #[serde(rename = "Cert", alias = "cert")]
    pub cert: String,
    /// The CA's information.
    #[serde(rename = "ServerInfo", alias = "serverInfo", alias = "server_info")]
    pub server_info: CaInfo,
}

/// The `result` of cainfo (and `ServerInfo` of enroll).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct CaInfo {
    /// The CA's name.
    #[serde(rename = "CAName", alias = "caname", alias = "ca_name", default)]
    pub ca_name: String,
    /// Base64 of the PEM chain: the CA's certificate and its issuers.
    #[serde(rename = "CAChain", alias = "cachain", alias = "ca_chain", default)]
    pub ca_chain: String,
    /// The server's version.
    #[serde(rename = "Version", alias = "version", default)]
    pub version: String,
}

/// The envelope around every answer.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    errors: Vec<ServerMessage>,
}

/// One entry of `errors`.
#[derive(Debug, Deserialize)]
struct ServerMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

impl CaClient {
    /// A client for the CA at `url`. HTTPS needs `tls.root_files`; errors
    /// name the flag or file at fault.
    pub(crate) fn new(url: &CaUrl, tls: &CaTls, caname: Option<String>) -> anyhow::Result<Self> {
        let caname = caname.filter(|c| !c.is_empty());
        if !url.tls {
            return Ok(CaClient {
                url: url.clone(),
                caname,
                tls: None,
            });
        }
        if tls.root_files.is_empty() {
            bail!(
                "{} is https: give the CA's TLS root certificate with --tls.certfiles",
                url.base()
            );
        }
        // twill-comm's errors already name the file and their cause.
        let flat = |e: twill_comm::CommError| anyhow!("{e}");
        let client_tls = match &tls.client {
            Some((cert, key)) => ClientTls::from_files(&TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                root_cas: tls.root_files.clone(),
            })
            .map_err(flat)?,
            None => ClientTls::from_root_files(&tls.root_files).map_err(flat)?,
        };
        let mut config = Arc::unwrap_or_clone(client_tls.rustls_config().map_err(flat)?);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(url.host.clone())
            .map_err(|_| anyhow!("bad host '{}' in the CA URL", url.host))?;
        Ok(CaClient {
            url: url.clone(),
            caname,
            tls: Some((Arc::new(config), server_name)),
        })
    }

    /// The CA's URL.
    pub(crate) fn url(&self) -> &CaUrl {
        &self.url
    }

    /// The CA name sent with every request, if any.
    pub(crate) fn caname(&self) -> Option<&str> {
        self.caname.as_deref()
    }

    /// POST `enroll` with Basic auth: `body` is the enrollment request
    /// (`certificate_request`, `profile`, `attr_reqs`).
    pub(crate) async fn enroll(
        &self,
        user: &str,
        secret: &str,
        body: Value,
    ) -> anyhow::Result<EnrollResult> {
        let result = self
            .post("enroll", Auth::Basic { user, secret }, body)
            .await?;
        self.decode("enroll", result)
    }

    /// POST `reenroll`, authenticated as the identity being renewed.
    pub(crate) async fn reenroll(
        &self,
        signer: &SigningIdentity,
        body: Value,
    ) -> anyhow::Result<EnrollResult> {
        let result = self.post("reenroll", Auth::Token(signer), body).await?;
        self.decode("reenroll", result)
    }

    /// POST `cainfo`; `signer` is optional (Fabric CA does not require it).
    pub(crate) async fn cainfo(&self, signer: Option<&SigningIdentity>) -> anyhow::Result<CaInfo> {
        let auth = signer.map_or(Auth::None, Auth::Token);
        let result = self.post("cainfo", auth, serde_json::json!({})).await?;
        self.decode("cainfo", result)
    }

    /// POST `endpoint` with a JSON body (the CA name is added to it).
    pub(crate) async fn post(
        &self,
        endpoint: &str,
        auth: Auth<'_>,
        body: Value,
    ) -> anyhow::Result<Value> {
        self.call(Method::POST, endpoint, auth, Some(body)).await
    }

    /// GET `endpoint` (path and query after `/api/v1/`; `ca=` is added).
    pub(crate) async fn get(&self, endpoint: &str, auth: Auth<'_>) -> anyhow::Result<Value> {
        self.call(Method::GET, endpoint, auth, None).await
    }

    /// DELETE `endpoint` (path and query after `/api/v1/`; `ca=` is added).
    pub(crate) async fn delete(&self, endpoint: &str, auth: Auth<'_>) -> anyhow::Result<Value> {
        self.call(Method::DELETE, endpoint, auth, None).await
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        result: Value,
    ) -> anyhow::Result<T> {
        serde_json::from_value(result).with_context(|| {
            format!(
                "unexpected answer from {}{API_PREFIX}{endpoint}",
                self.url.base()
            )
        })
    }

    /// Sends one request and returns the envelope's `result`, or an error
    /// carrying the server's codes and messages and naming the URL.
    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut uri = format!("{API_PREFIX}{endpoint}");
        let body = match body {
            Some(mut value) => {
                if let (Some(caname), Some(obj)) = (&self.caname, value.as_object_mut()) {
                    obj.insert("caname".into(), Value::String(caname.clone()));
                }
                serde_json::to_vec(&value).context("encoding the request")?
            }
            None => {
                if let Some(caname) = &self.caname {
                    let sep = if uri.contains('?') { '&' } else { '?' };
                    uri = format!("{uri}{sep}ca={}", percent_encode(caname));
                }
                Vec::new()
            }
        };
        let authorization = match auth {
            Auth::None => None,
            Auth::Basic { user, secret } => Some(basic_auth(user, secret)),
            Auth::Token(signer) => Some(auth_token(signer, &method, &uri, &body)?),
        };
        let target = format!("{} {}{uri}", method.as_str(), self.url.base());
        let (status, bytes) = self
            .exchange(method, &uri, authorization, body)
            .await
            .with_context(|| format!("{target} failed"))?;
        interpret(&target, status, &bytes)
    }

    async fn exchange(
        &self,
        method: Method,
        uri: &str,
        authorization: Option<String>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let authority = self.url.authority();
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
            .await
            .map_err(|_| anyhow!("connecting timed out"))
            .and_then(|r| r.map_err(|e| anyhow!("cannot connect: {e}")))?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::ACCEPT, "application/json");
        let request = match authorization {
            Some(value) => request.header(hyper::header::AUTHORIZATION, value),
            None => request,
        };
        let request = if body.is_empty() {
            request
        } else {
            request.header(hyper::header::CONTENT_TYPE, "application/json")
        };
        let request = request
            .body(FullBody::new(body))
            .context("building the request")?;
        match &self.tls {
            None => send(tcp, request).await,
            Some((config, server_name)) => {
                let connector = TlsConnector::from(config.clone());
                let stream = tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    connector.connect(server_name.clone(), tcp),
                )
                .await
                .map_err(|_| anyhow!("TLS handshake timed out"))
                .and_then(|r| r.map_err(|e| anyhow!("TLS handshake failed: {e}")))?;
                send(stream, request).await
            }
        }
    }
}

/// Sends `request` over `stream` and reads the whole answer.
async fn send<S>(stream: S, request: Request<FullBody>) -> anyhow::Result<(u16, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let work = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut incoming = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await
        {
            if let Ok(data) = frame?.into_data() {
                out.extend_from_slice(&data);
            }
        }
        driver.abort();
        anyhow::Ok((status, out))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| anyhow!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))
        .and_then(|r| r)
}

/// Reads Fabric CA's envelope: `result` when `success`, else an error with
/// every `errors[]` entry as `code N: message`, naming `target`.
fn interpret(target: &str, status: u16, body: &[u8]) -> anyhow::Result<Value> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let shown: String = text.chars().take(200).collect();
            if text.is_empty() {
                bail!("{target}: HTTP {status} with an empty body (is this a Fabric CA?)");
            }
            bail!("{target}: HTTP {status}, not a Fabric CA answer: {shown}");
        }
    };
    if envelope.success {
        return Ok(envelope.result);
    }
    if envelope.errors.is_empty() {
        bail!("{target}: HTTP {status}, the CA reports failure without a message");
    }
    let errors: Vec<String> = envelope
        .errors
        .iter()
        .map(|e| format!("code {}: {}", e.code, e.message))
        .collect();
    bail!("{target}: HTTP {status}: {}", errors.join("; "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_like_fabric() {
        let u = CaUrl::parse("https://admin:adminpw@127.0.0.1:7054").unwrap();
        assert!(u.tls);
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 7054);
        assert_eq!(u.user.as_deref(), Some("admin"));
        assert_eq!(u.password.as_deref(), Some("adminpw"));
        assert_eq!(u.base(), "https://127.0.0.1:7054");

        let u = CaUrl::parse("http://localhost/some/path").unwrap();
        assert!(!u.tls);
        assert_eq!(u.port, DEFAULT_PORT);
        assert_eq!(u.user, None);

        let u = CaUrl::parse("http://u%40x:p%3Aw@[::1]:8054").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:8054");
        assert_eq!(u.user.as_deref(), Some("u@x"));
        assert_eq!(u.password.as_deref(), Some("p:w"));

        // The password may itself hold '@': the last one ends the user info.
        let u = CaUrl::parse("http://admin:a@b@h:1").unwrap();
        assert_eq!(u.password.as_deref(), Some("a@b"));
        assert_eq!(u.host, "h");
    }

    #[test]
    fn bad_urls_are_explained_without_the_password() {
        for (url, why) in [
            ("localhost:7054", "expected http"),
            ("ftp://h:1", "scheme"),
            ("http://admin:secret@:7054", "no host"),
            ("http://admin:secret@h:99999", "port"),
            ("http://h:0", "port"),
        ] {
            let e = CaUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn queries_are_escaped() {
        assert_eq!(
            with_query("certificates", &[("id", Some("a b")), ("serial", None)]),
            "certificates?id=a%20b"
        );
        assert_eq!(with_query("identities", &[]), "identities");
        assert_eq!(percent_encode("org1.dept-1_x~"), "org1.dept-1_x~");
        assert_eq!(percent_encode("u@x/y"), "u%40x%2Fy");
    }

    #[test]
    fn server_errors_carry_code_message_and_url() {
        let body = br#"{"success":false,"result":null,"errors":[{"code":20,"message":"Authentication failure"}],"messages":[]}"#;
        let e = interpret("POST http://h:1/api/v1/enroll", 401, body)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "POST http://h:1/api/v1/enroll: HTTP 401: code 20: Authentication failure"
        );
        let ok = interpret(
            "x",
            201,
            br#"{"success":true,"result":{"secret":"s"},"errors":[],"messages":[]}"#,
        )
        .unwrap();
        assert_eq!(ok["secret"], "s");
        let e = interpret("x", 404, b"404 page not found")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a Fabric CA answer"), "{e}");
    }

    #[test]
    fn basic_auth_is_user_colon_secret() {
        assert_eq!(basic_auth("admin", "adminpw"), "Basic YWRtaW46YWRtaW5wdw==");
    }
}
