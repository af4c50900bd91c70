//! Intermediate-CA mode: enrolling this CA with its parent CA.
//!
//! On first start with a parent server (`--parent
//! https://<id>:<secret>@host:port`, `intermediate.parentserver.url`), the
//! CA makes its key and a CSR and enrolls with the parent at
//! `POST /api/v1/enroll` (Basic authentication, `"profile": "ca"`), as a
//! Fabric CA intermediate does. The parent's answer (the CA certificate
//! and the parent's own chain) is stored in the home; later starts only
//! read it. The HTTP client here is deliberately small and blocking: it
//! runs once, on the startup thread.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::{CaError, CaResult};

/// How long connecting to, writing to and reading from the parent may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The parent server of an intermediate CA.
#[derive(Clone)]
pub struct ParentServer {
    /// `https` or `http`.
    pub scheme: String,
    /// Host name or IP address.
    pub host: String,
    /// Port (7054 when the URL has none).
    pub port: u16,
    /// Enrollment ID of this CA's identity at the parent.
    pub id: String,
    /// Its secret.
    secret: String,
    /// The parent CA's name (`--parent-caname`); `None` = its default CA.
    pub caname: Option<String>,
    /// PEM files of the roots trusted for the parent's TLS certificate.
    pub tls_certfiles: Vec<PathBuf>,
}

impl std::fmt::Debug for ParentServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentServer")
            .field("url", &self.display_url())
            .field("id", &self.id)
            .field("caname", &self.caname)
            .field("tls_certfiles", &self.tls_certfiles)
            .finish_non_exhaustive()
    }
}

/// What the parent issued.
#[derive(Debug, Clone)]
pub struct ParentEnrollment {
    /// This CA's certificate, PEM.
    pub cert_pem: String,
    /// The parent's chain (`ServerInfo.CAChain`), PEM.
    pub chain_pem: String,
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl ParentServer {
    /// Parses `http[s]://<id>:<secret>@host[:port]` (the user and secret
    /// may be percent-encoded; a path is ignored).
    pub fn parse(url: &str) -> CaResult<Self> {
        let bad = |m: &str| CaError::Config(format!("--parent: {m}"));
        let (scheme, rest) = url
            .trim()
            .split_once("://")
            .ok_or_else(|| bad("expected http[s]://<id>:<secret>@host:port"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = authority.rsplit_once('@').ok_or_else(|| {
            bad("the URL must carry this CA's enrollment ID and secret (<id>:<secret>@host)")
        })?;
        let (id, secret) = userinfo
            .split_once(':')
            .ok_or_else(|| bad("the credentials must be <id>:<secret>"))?;
        let id = percent_decode(id).ok_or_else(|| bad("invalid percent-encoding in the ID"))?;
        let secret =
            percent_decode(secret).ok_or_else(|| bad("invalid percent-encoding in the secret"))?;
        if id.is_empty() || secret.is_empty() {
            return Err(bad("the enrollment ID and secret must not be empty"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unterminated IPv6 address"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
            None => 7054,
        };
        Ok(Self {
            scheme,
            host,
            port,
            id,
            secret,
            caname: None,
            tls_certfiles: Vec::new(),
        })
    }

    /// The URL without the credentials (for messages and logs).
    pub fn display_url(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> CaError {
        CaError::Config(format!(
            "intermediate CA enrollment with the parent server {} (--parent) failed: {what}",
            self.display_url()
        ))
    }

    /// Enrolls `csr_pem` with profile `ca` and returns the certificate
    /// and the parent's chain.
    pub fn enroll(&self, csr_pem: &str) -> CaResult<ParentEnrollment> {
        let mut body = json!({"certificate_request": csr_pem, "profile": "ca"});
        if let (Some(name), Some(obj)) = (&self.caname, body.as_object_mut()) {
            obj.insert("caname".into(), Value::String(name.clone()));
        }
        let body = serde_json::to_vec(&body).map_err(|e| self.err(e))?;
        let auth = crate::api::basic_auth(&self.id, &self.secret);
        let (status, text) = self.post("/api/v1/enroll", &auth, &body)?;
        let v: Value = serde_json::from_slice(&text).map_err(|_| {
            self.err(format!(
                "HTTP {status}, the answer is not Fabric CA JSON: {}",
                String::from_utf8_lossy(&text)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        if v.get("success").and_then(Value::as_bool) != Some(true) {
            let errors = v
                .get("errors")
                .and_then(Value::as_array)
                .map(|errs| {
                    errs.iter()
                        .map(|e| {
                            format!(
                                "code {}: {}",
                                e.get("code").and_then(Value::as_i64).unwrap_or(0),
                                e.get("message").and_then(Value::as_str).unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(self.err(format!("refused (HTTP {status}) {errors}")));
        }
        let field = |v: Option<&Value>, name: &str| -> CaResult<String> {
            let b64 = v
                .and_then(Value::as_str)
                .ok_or_else(|| self.err(format!("the answer has no {name}")))?;
            let raw = B64
                .decode(b64)
                .map_err(|_| self.err(format!("{name} is not base64")))?;
            String::from_utf8(raw).map_err(|_| self.err(format!("{name} is not PEM text")))
        };
        let result = v.get("result");
        let cert_pem = field(result.and_then(|r| r.get("Cert")), "result.Cert")?;
        let chain_pem = field(
            result
                .and_then(|r| r.get("ServerInfo"))
                .and_then(|s| s.get("CAChain")),
            "result.ServerInfo.CAChain",
        )?;
        Ok(ParentEnrollment {
            cert_pem,
            chain_pem,
        })
    }

    fn tls_config(&self) -> CaResult<Arc<rustls::ClientConfig>> {
        if self.tls_certfiles.is_empty() {
            return Err(self.err(
                "an https parent needs its TLS CA certificate (--parent-tls-cert or intermediate.tls.certfiles)",
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for path in &self.tls_certfiles {
            let text = std::fs::read(path).map_err(|source| CaError::Io {
                path: path.clone(),
                source,
            })?;
            let blocks = pem::parse_many(&text).map_err(|e| {
                CaError::Config(format!("--parent-tls-cert {}: {e}", path.display()))
            })?;
            let mut n = 0;
            for b in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
                roots
                    .add(rustls::pki_types::CertificateDer::from(
                        b.contents().to_vec(),
                    ))
                    .map_err(|e| {
                        CaError::Config(format!("--parent-tls-cert {}: {e}", path.display()))
                    })?;
                n += 1;
            }
            if n == 0 {
                return Err(CaError::Config(format!(
                    "--parent-tls-cert {}: no PEM certificate",
                    path.display()
                )));
            }
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| self.err(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(cfg))
    }

    /// One HTTP/1.1 POST; returns the status and the (de-chunked) body.
    fn post(&self, path: &str, auth: &str, body: &[u8]) -> CaResult<(u16, Vec<u8>)> {
        use std::net::ToSocketAddrs as _;
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.err(format!("cannot resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| self.err(format!("cannot resolve {}", self.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
            .map_err(|e| self.err(format!("cannot connect: {e}")))?;
        let _ = tcp.set_read_timeout(Some(TIMEOUT));
        let _ = tcp.set_write_timeout(Some(TIMEOUT));
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let mut resp = Vec::new();
        let io = |e: std::io::Error| self.err(format!("I/O: {e}"));
        if self.scheme == "https" {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| self.err(format!("server name {}: {e}", self.host)))?;
            let conn = rustls::ClientConnection::new(self.tls_config()?, name)
                .map_err(|e| self.err(format!("TLS: {e}")))?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(&req).map_err(io)?;
            if let Err(e) = s.read_to_end(&mut resp) {
                // A peer may close without close_notify after the answer.
                if e.kind() != std::io::ErrorKind::UnexpectedEof || resp.is_empty() {
                    return Err(io(e));
                }
            }
        } else {
            let mut s = tcp;
            s.write_all(&req).map_err(io)?;
            s.read_to_end(&mut resp).map_err(io)?;
        }
        parse_response(&resp).ok_or_else(|| self.err("the answer is not HTTP/1.1"))
    }
}

/// Splits an HTTP/1.1 response into status and body (chunked or not).
fn parse_response(resp: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(resp.get(..end)?).ok()?;
    let body = resp.get(end + 4..)?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(rest.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = rest.get(line_end + 2..)?;
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parent_urls() {
        let p = ParentServer::parse("https://ica%40org:p%3Aw@ca.example.com:7054/x").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str(), p.port),
            ("https", "ca.example.com", 7054)
        );
        assert_eq!((p.id.as_str(), p.secret.as_str()), ("ica@org", "p:w"));
        assert_eq!(p.display_url(), "https://ca.example.com:7054");
        assert!(!format!("{p:?}").contains("p:w"));
        let p = ParentServer::parse("http://a:b@[::1]").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 7054));
        for bad in [
            "ca:7054",
            "ftp://a:b@h:1",
            "http://h:1",
            "http://a@h:1",
            "http://:b@h:1",
            "http://a:b@h:x",
        ] {
            assert!(ParentServer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_chunked_responses() {
        let r = b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r), Some((201, b"abcde".to_vec())));
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(r), Some((200, b"{}".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
