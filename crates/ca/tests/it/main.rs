//! End-to-end tests: start the real `twill-ca` process on a free port with a
//! temporary home and drive it over HTTP/1.1 like Fabric CA clients do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};
use twill_ca::api::{authorization_token, basic_auth, token_message};
use twill_ca::grpc::SignedRequest;
use twill_protos::twill::ca as pb;
use twill_protos::twill::ca::certificate_authority_client::CertificateAuthorityClient;
use x509_parser::prelude::{FromDer as _, X509Certificate};

mod intermediate;

struct Server {
    child: Child,
    addr: String,
    /// Set for HTTPS: the client configuration and the server name.
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, String)>,
    /// The gRPC address, with `--grpc-port`.
    grpc: Option<String>,
}

trait Stream: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> Stream for T {}

impl Server {
    fn start(home: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_twill-ca"))
            .arg("--home")
            .arg(home)
            .args(["--port", "0", "-b", "admin:adminpw"])
            .args(if extra.contains(&"--ca-name") {
                &[][..]
            } else {
                &["--ca-name", "ca-org1"][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start twill-ca");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let grpc = extra.contains(&"--grpc-port").then(|| {
            let mut g = String::new();
            out.read_line(&mut g).unwrap();
            g.trim()
                .strip_prefix("grpc listening on ")
                .unwrap_or_else(|| panic!("unexpected second line: {g:?}"))
                .to_string()
        });
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .or_else(|| line.trim().strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Server {
            child,
            addr,
            tls: None,
            grpc,
        }
    }

    fn stop(mut self) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }

    /// Sends one request (chunked body, no Content-Type, like the Node
    /// client) and returns the status and the JSON body.
    fn call(&self, method: &str, uri: &str, auth: Option<&str>, body: &[u8]) -> (u16, Value) {
        let tcp = TcpStream::connect(&self.addr).unwrap();
        let mut s: Box<dyn Stream> = match &self.tls {
            Some((cfg, name)) => {
                let conn = rustls::ClientConnection::new(
                    cfg.clone(),
                    rustls::pki_types::ServerName::try_from(name.clone()).unwrap(),
                )
                .unwrap();
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
            None => Box::new(tcp),
        };
        let mut req = format!(
            "{method} {uri} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if method == "GET" || method == "DELETE" {
            req.push_str("\r\n");
            s.write_all(req.as_bytes()).unwrap();
        } else {
            req.push_str("Transfer-Encoding: chunked\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            if !body.is_empty() {
                s.write_all(format!("{:x}\r\n", body.len()).as_bytes())
                    .unwrap();
                s.write_all(body).unwrap();
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\n\r\n").unwrap();
        }
        let mut resp = Vec::new();
        if let Err(e) = s.read_to_end(&mut resp) {
            // A TLS peer may close without close_notify after the response.
            assert!(
                e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty(),
                "{e}"
            );
        }
        let text = String::from_utf8(resp).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        (
            status,
            serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}")),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An enrolled identity: key and certificate.
struct Identity {
    key: KeyPair,
    cert_pem: String,
}

impl Identity {
    fn token(&self, method: &str, uri: &str, body: &[u8]) -> String {
        let msg = token_message(method, uri, body, self.cert_pem.as_bytes());
        let rng = ring::rand::SystemRandom::new();
        let k = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.key.serialize_der(),
            &rng,
        )
        .unwrap();
        let sig = k.sign(&rng, msg.as_bytes()).unwrap();
        authorization_token(self.cert_pem.as_bytes(), sig.as_ref())
    }

    fn call(&self, srv: &Server, method: &str, uri: &str, body: &Value) -> (u16, Value) {
        let b = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        };
        srv.call(method, uri, Some(&self.token(method, uri, &b)), &b)
    }
}

fn csr(cn: &str) -> (KeyPair, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, "US");
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "dropped");
    p.distinguished_name.push(DnType::CommonName, cn);
    let pem = p
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
        .replace('\n', "\r\n");
    (key, pem)
}

fn enroll(srv: &Server, id: &str, secret: &str, extra: Value) -> Result<Identity, (u16, Value)> {
    let (key, csr_pem) = csr(id);
    let mut body = json!({"certificate_request": csr_pem, "caname": "ca-org1"});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (st, v) = srv.call(
        "POST",
        "/api/v1/enroll",
        Some(&basic_auth(id, secret)),
        &serde_json::to_vec(&body).unwrap(),
    );
    if !v["success"].as_bool().unwrap() {
        return Err((st, v));
    }
    assert_eq!(st, 201);
    let cert_pem =
        String::from_utf8(B64.decode(v["result"]["Cert"].as_str().unwrap()).unwrap()).unwrap();
    assert!(v["result"]["ServerInfo"]["CAChain"].as_str().unwrap().len() > 100);
    Ok(Identity { key, cert_pem })
}

fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().contents().to_vec()
}

fn error_of(v: &Value) -> (i64, String) {
    assert_eq!(v["success"], false, "{v}");
    (
        v["errors"][0]["code"].as_i64().unwrap(),
        v["errors"][0]["message"].as_str().unwrap().to_string(),
    )
}

fn identities(admin: &Identity, srv: &Server) -> Value {
    let (st, v) = admin.call(srv, "GET", "/api/v1/identities?ca=ca-org1", &Value::Null);
    assert_eq!(st, 200, "{v}");
    let mut ids: Vec<Value> = v["result"]["identities"].as_array().unwrap().clone();
    ids.sort_by_key(|i| i["id"].as_str().unwrap().to_string());
    Value::Array(ids)
}

#[test]
fn full_flow_and_refusals() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &[]);

    // cainfo, GET and POST, with and without the prefix.
    for (m, uri) in [
        ("GET", "/api/v1/cainfo"),
        ("POST", "/cainfo"),
        ("POST", "/api/v1/cainfo"),
    ] {
        let (st, v) = srv.call(m, uri, None, b"{\"caname\":\"ca-org1\"}");
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["result"]["CAName"], "ca-org1");
        assert_eq!(v["result"]["IssuerPublicKey"], "");
        let chain = B64
            .decode(v["result"]["CAChain"].as_str().unwrap())
            .unwrap();
        assert!(String::from_utf8(chain)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
    }
    let (st, v) = srv.call("GET", "/api/v1/cainfo?ca=nope", None, b"");
    assert_eq!(st, 404);
    assert_eq!(error_of(&v), (19, "CA 'nope' does not exist".into()));

    // Key file mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(home.path().join("ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Bad password, then the admin.
    let (st, v) = enroll(&srv, "admin", "wrong", json!({})).err().unwrap();
    assert_eq!(st, 401);
    assert_eq!(error_of(&v), (20, "Authentication failure".into()));
    let admin = enroll(&srv, "admin", "adminpw", json!({})).unwrap();
    let cert_der = der(&admin.cert_pem);
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    assert_eq!(cert.version().0, 2, "v3");
    assert!(cert.subject().to_string().contains("CN=admin"));

    // Register with attributes.
    let reg = json!({"id": "user1", "type": "client", "affiliation": "org1.department1", "max_enrollments": 2,
        "attrs": [{"name": "role", "value": "auditor", "ecert": true}, {"name": "hidden", "value": "x"}], "caname": "ca-org1"});
    let (st, v) = admin.call(&srv, "POST", "/api/v1/register", &reg);
    assert_eq!(st, 201, "{v}");
    let secret = v["result"]["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 12);
    let before = identities(&admin, &srv);

    // Duplicate registration changes nothing.
    let (st, v) = admin.call(&srv, "POST", "/api/v1/register", &reg);
    assert_eq!(st, 500);
    assert_eq!(
        error_of(&v),
        (
            0,
            "Registration of 'user1' failed: Identity 'user1' is already registered".into()
        )
    );
    assert_eq!(identities(&admin, &srv), before);

    // Enroll user1: OUs, CN, attribute extension as raw JSON.
    let user = enroll(&srv, "user1", &secret, json!({})).unwrap();
    let cert_der = der(&user.cert_pem);
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    assert_eq!(cert.version().0, 2);
    let ous: Vec<&str> = cert
        .subject()
        .iter_organizational_unit()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(ous, ["client", "org1", "department1"]);
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "user1"
    );
    assert_eq!(
        cert.subject()
            .iter_country()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "US"
    );
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.2.3.4.5.6.7.8.1")
        .expect("attribute extension");
    let attrs: Value = serde_json::from_slice(ext.value).expect("raw JSON extension");
    assert_eq!(
        attrs,
        json!({"attrs": {"hf.Affiliation": "org1.department1", "hf.EnrollmentID": "user1", "hf.Type": "client", "role": "auditor"}})
    );
    // Issued by the CA: verify with the CA key.
    let (_, v) = srv.call("GET", "/api/v1/cainfo", None, b"");
    let chain = String::from_utf8(
        B64.decode(v["result"]["CAChain"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let ca_der = der(&chain);
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    assert!(ca_cert.is_ca());

    // attr_reqs: only the requested ones; missing non-optional refused.
    let user_b = enroll(
        &srv,
        "user1",
        &secret,
        json!({"attr_reqs": [{"name": "hidden"}, {"name": "nope", "optional": true}]}),
    )
    .unwrap();
    let cert_b_der = der(&user_b.cert_pem);
    let (_, cert_b) = X509Certificate::from_der(&cert_b_der).unwrap();
    let ext = cert_b
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.2.3.4.5.6.7.8.1")
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(ext.value).unwrap(),
        json!({"attrs": {"hidden": "x"}})
    );

    // Max enrollments (2) reached: refused, count unchanged.
    let (st, v) = enroll(&srv, "user1", &secret, json!({})).err().unwrap();
    assert_eq!(
        (st, error_of(&v)),
        (401, (20, "Authentication failure".into()))
    );
    let (_, certs) = admin.call(&srv, "GET", "/api/v1/certificates?id=user1", &Value::Null);
    assert_eq!(certs["result"]["certs"].as_array().unwrap().len(), 2);

    // Reenroll with token auth.
    let (key2, csr2) = csr("user1");
    let body = json!({"certificate_request": csr2});
    let (st, v) = user.call(&srv, "POST", "/api/v1/reenroll", &body);
    assert_eq!(st, 201, "{v}");
    let re = Identity {
        key: key2,
        cert_pem: String::from_utf8(B64.decode(v["result"]["Cert"].as_str().unwrap()).unwrap())
            .unwrap(),
    };

    // A registrar without hf.Registrar.Roles for the type.
    let (_, v) = admin.call(&srv, "POST", "/api/v1/register", &json!({"id": "reg1", "secret": "reg1pw", "type": "client",
        "attrs": [{"name": "hf.Registrar.Roles", "value": "client"}, {"name": "hf.Registrar.Attributes", "value": "*"}]}));
    assert!(v["success"].as_bool().unwrap(), "{v}");
    let reg1 = enroll(&srv, "reg1", "reg1pw", json!({})).unwrap();
    let before = identities(&admin, &srv);
    let (st, v) = reg1.call(
        &srv,
        "POST",
        "/api/v1/register",
        &json!({"id": "peer9", "type": "peer"}),
    );
    assert_eq!(
        (st, error_of(&v)),
        (403, (71, "Authorization failure".into()))
    );
    // Nor may it grant hf.Revoker it lacks.
    let (st, v) = reg1.call(
        &srv,
        "POST",
        "/api/v1/register",
        &json!({"id": "c9", "type": "client", "attrs": [{"name": "hf.Revoker", "value": "true"}]}),
    );
    assert_eq!((st, error_of(&v).0), (403, 71));
    assert_eq!(identities(&admin, &srv), before);
    // But a client is fine.
    let (st, _) = reg1.call(
        &srv,
        "POST",
        "/api/v1/register",
        &json!({"id": "c10", "type": "client"}),
    );
    assert_eq!(st, 201);
    // reg1 cannot revoke.
    let (st, v) = reg1.call(&srv, "POST", "/api/v1/revoke", &json!({"id": "c10"}));
    assert_eq!((st, error_of(&v).0), (403, 71));

    // Tampered token: body changed after signing.
    let b = serde_json::to_vec(&json!({"id": "x1"})).unwrap();
    let tok = admin.token("POST", "/api/v1/register", &b);
    let before = identities(&admin, &srv);
    let (st, v) = srv.call("POST", "/api/v1/register", Some(&tok), br#"{"id":"x2"}"#);
    assert_eq!(
        (st, error_of(&v)),
        (401, (20, "Authentication failure".into()))
    );
    // Token for another URI.
    let tok = admin.token("POST", "/api/v1/other", &b);
    let (st, _) = srv.call("POST", "/api/v1/register", Some(&tok), &b);
    assert_eq!(st, 401);
    assert_eq!(identities(&admin, &srv), before);

    // Malformed CSR; CSR with a different CN.
    let (_, v) = admin.call(
        &srv,
        "POST",
        "/api/v1/register",
        &json!({"id": "u3", "secret": "u3pw", "max_enrollments": 1}),
    );
    assert!(v["success"].as_bool().unwrap());
    let (st, v) = srv.call("POST", "/api/v1/enroll", Some(&basic_auth("u3", "u3pw")), br#"{"certificate_request":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}"#);
    assert_eq!((st, error_of(&v).0), (400, 31));
    let (_, other_csr) = csr("someone-else");
    let (st, v) = srv.call(
        "POST",
        "/api/v1/enroll",
        Some(&basic_auth("u3", "u3pw")),
        &serde_json::to_vec(&json!({"certificate_request": other_csr})).unwrap(),
    );
    assert_eq!(
        (st, error_of(&v)),
        (
            403,
            (
                31,
                "The CSR subject common name must equal the enrollment ID".into()
            )
        )
    );
    // Those refusals did not use up u3's single enrollment.
    enroll(&srv, "u3", "u3pw", json!({})).unwrap();

    // Revoke the reenrolled cert by serial + AKI, with a CRL.
    let rc_der = der(&re.cert_pem);
    let (_, rc) = X509Certificate::from_der(&rc_der).unwrap();
    let serial = rc.raw_serial_as_string().replace(':', "");
    let aki = rc
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                Some(hex::encode(a.key_identifier.as_ref().unwrap().0))
            }
            _ => None,
        })
        .unwrap();
    let (st, v) = admin.call(&srv, "POST", "/api/v1/revoke", &json!({"serial": serial.to_uppercase(), "aki": aki, "reason": "keycompromise", "gencrl": true}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["RevokedCerts"].as_array().unwrap().len(), 1);
    let crl_pem =
        String::from_utf8(B64.decode(v["result"]["CRL"].as_str().unwrap()).unwrap()).unwrap();
    assert!(crl_pem.contains("BEGIN X509 CRL"));
    // The revoked cert no longer authenticates.
    let (st, _) = re.call(&srv, "GET", "/api/v1/identities", &Value::Null);
    assert_eq!(st, 401);
    // Revoking it again: 66.
    let (_, v) = admin.call(
        &srv,
        "POST",
        "/api/v1/revoke",
        &json!({"serial": serial, "aki": aki}),
    );
    assert_eq!(error_of(&v).0, 66);

    // gencrl lists the serial.
    let (st, v) = admin.call(
        &srv,
        "POST",
        "/api/v1/gencrl",
        &json!({"caname": "ca-org1", "revokedBefore": null}),
    );
    assert_eq!(st, 200, "{v}");
    let crl_pem =
        String::from_utf8(B64.decode(v["result"]["CRL"].as_str().unwrap()).unwrap()).unwrap();
    let crl_der = der(&crl_pem);
    let (_, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&crl_der).unwrap();
    let listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', ""))
        .collect();
    assert_eq!(listed, vec![serial.clone()]);
    crl.verify_signature(ca_cert.public_key()).unwrap();

    // Revoke by name: the identity can no longer enroll or authenticate.
    let (st, v) = admin.call(&srv, "POST", "/api/v1/revoke", &json!({"id": "user1"}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["RevokedCerts"].as_array().unwrap().len(), 2);
    let (st, _) = user.call(&srv, "GET", "/api/v1/affiliations", &Value::Null);
    assert_eq!(st, 401);

    // Identities and affiliations.
    let (st, v) = admin.call(
        &srv,
        "GET",
        "/api/v1/identities/user1?ca=ca-org1",
        &Value::Null,
    );
    assert_eq!(st, 200);
    assert_eq!(v["result"]["affiliation"], "org1.department1");
    let (st, v) = admin.call(
        &srv,
        "PUT",
        "/api/v1/identities/c10",
        &json!({"max_enrollments": 5, "secret": "newpw"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["max_enrollments"], 5);
    enroll(&srv, "c10", "newpw", json!({})).unwrap();
    let (st, _) = admin.call(&srv, "DELETE", "/api/v1/identities/c10", &Value::Null);
    assert_eq!(st, 200);
    let (st, _) = admin.call(&srv, "GET", "/api/v1/identities/c10", &Value::Null);
    assert_eq!(st, 404);
    let (st, v) = admin.call(
        &srv,
        "POST",
        "/api/v1/affiliations",
        &json!({"name": "org3"}),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = admin.call(&srv, "GET", "/api/v1/affiliations", &Value::Null);
    assert_eq!(st, 200);
    let names: Vec<&str> = v["result"]["affiliations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["org1", "org2", "org3"]);
    let (st, _) = admin.call(
        &srv,
        "PUT",
        "/api/v1/affiliations/org3",
        &json!({"name": "org4"}),
    );
    assert_eq!(st, 200);
    let (st, _) = admin.call(&srv, "DELETE", "/api/v1/affiliations/org4", &Value::Null);
    assert_eq!(st, 200);
    let (st, v) = srv.call("PATCH", "/api/v1/enroll", None, b"");
    assert_eq!((st, error_of(&v).0), (405, 1));
    srv.stop();
}

#[test]
fn registry_survives_restart() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &[]);
    let admin = enroll(&srv, "admin", "adminpw", json!({})).unwrap();
    let (_, v) = admin.call(
        &srv,
        "POST",
        "/api/v1/register",
        &json!({"id": "p1", "type": "peer", "secret": "p1pw", "max_enrollments": 1}),
    );
    assert!(v["success"].as_bool().unwrap(), "{v}");
    enroll(&srv, "p1", "p1pw", json!({})).unwrap();
    let ca_pem = std::fs::read_to_string(home.path().join("ca-cert.pem")).unwrap();
    srv.stop();

    // Restart (the -b flag is ignored: the registry already exists).
    let srv = Server::start(home.path(), &[]);
    assert_eq!(
        std::fs::read_to_string(home.path().join("ca-cert.pem")).unwrap(),
        ca_pem
    );
    // The old admin certificate still authenticates.
    let (st, v) = admin.call(&srv, "GET", "/api/v1/identities/p1", &Value::Null);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["type"], "peer");
    // p1's single enrollment is still used up.
    let (st, _) = enroll(&srv, "p1", "p1pw", json!({})).err().unwrap();
    assert_eq!(st, 401);
    srv.stop();
}

/// Makes a cryptogen-like org CA: self-signed, CA:true, SKI = SHA-256 of
/// the public key; returns (cert PEM, key, SKI).
fn org_ca(cn: &str) -> (String, KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ski = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw())
        .as_ref()
        .to_vec();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, "US");
    p.distinguished_name
        .push(DnType::OrganizationName, "org1.example.com");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(ski.clone());
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key, ski)
}

fn aki_of(cert_der: &[u8]) -> Vec<u8> {
    let (_, c) = X509Certificate::from_der(cert_der).unwrap();
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap()
}

#[test]
fn existing_ca_cert_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, ca_key, ski) = org_ca("ca.org1.example.com");
    let cert_file = dir.path().join("ca.org1.example.com-cert.pem");
    std::fs::write(&cert_file, &ca_pem).unwrap();
    // PKCS#8 (cryptogen's priv_sk) and SEC1 forms of the same key.
    let pkcs8_file = dir.path().join("priv_sk");
    std::fs::write(&pkcs8_file, ca_key.serialize_pem()).unwrap();
    let sec1_file = dir.path().join("sec1-key.pem");
    {
        use p256::pkcs8::DecodePrivateKey as _;
        let sk = p256::SecretKey::from_pkcs8_der(&ca_key.serialize_der()).unwrap();
        std::fs::write(
            &sec1_file,
            sk.to_sec1_pem(p256::pkcs8::LineEnding::LF)
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
    }
    let ca_der = der(&ca_pem);
    let (_, ca_x509) = X509Certificate::from_der(&ca_der).unwrap();
    let ca_subject = ca_x509.subject().as_raw().to_vec();

    for key_file in [&pkcs8_file, &sec1_file] {
        let home = tempfile::tempdir().unwrap();
        let srv = Server::start(
            home.path(),
            &[
                "--ca-cert",
                cert_file.to_str().unwrap(),
                "--ca-key",
                key_file.to_str().unwrap(),
            ],
        );
        // No key or certificate is made in the home.
        assert!(!home.path().join("ca-key.pem").exists());
        let (st, v) = srv.call("GET", "/api/v1/cainfo", None, b"");
        assert_eq!(st, 200, "{v}");
        let chain = B64
            .decode(v["result"]["CAChain"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(chain).unwrap(), ca_pem);

        let admin = enroll(&srv, "admin", "adminpw", json!({})).unwrap();
        let cert_der = der(&admin.cert_pem);
        let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca_subject.as_slice());
        assert_eq!(aki_of(&cert_der), ski);
        cert.verify_signature(Some(ca_x509.public_key())).unwrap();
        // Token authentication works with certificates issued this way.
        let (st, v) = admin.call(&srv, "GET", "/api/v1/identities/admin", &Value::Null);
        assert_eq!(st, 200, "{v}");
        srv.stop();
    }

    // A key that does not match the certificate: refused, naming the file.
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let wrong = dir.path().join("wrong-key.pem");
    std::fs::write(&wrong, other.serialize_pem()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_twill-ca"))
        .arg("--home")
        .arg(home.path())
        .args(["--port", "0", "-b", "admin:adminpw", "--ca-cert"])
        .arg(&cert_file)
        .arg("--ca-key")
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrong-key.pem") && err.contains("does not match"),
        "{err}"
    );

    // The same through the configuration file (paths relative to it).
    let cfg = dir.path().join("fabric-ca-server-config.yaml");
    std::fs::write(
        &cfg,
        "ca:\n  name: ca-org1\n  certfile: ca.org1.example.com-cert.pem\n  keyfile: priv_sk\n",
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--config", cfg.to_str().unwrap()]);
    let admin = enroll(&srv, "admin", "adminpw", json!({})).unwrap();
    assert_eq!(aki_of(&der(&admin.cert_pem)), ski);
    srv.stop();
}

/// An HTTPS client like fabric-ca-client's: trusts only the CA
/// certificate (from `--tls.certfiles`), offers ALPN `http/1.1`.
fn https_client(ca_pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca_pem).into()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(cfg)
}

#[test]
fn tls_with_self_issued_certificate() {
    let home = tempfile::tempdir().unwrap();
    let mut srv = Server::start(home.path(), &["--tls"]);
    let ca_pem = std::fs::read_to_string(home.path().join("ca-cert.pem")).unwrap();
    let tls_pem = std::fs::read_to_string(home.path().join("tls-cert.pem")).unwrap();

    // The TLS certificate: issued by the CA, for localhost and 127.0.0.1.
    let ca_der = der(&ca_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let tls_der = der(&tls_pem);
    let (_, tls) = X509Certificate::from_der(&tls_der).unwrap();
    tls.verify_signature(Some(ca.public_key())).unwrap();
    let san = tls.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| format!("{n}"))
        .collect();
    assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(home.path().join("tls-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Plain HTTP is not served.
    let mut plain = TcpStream::connect(&srv.addr).unwrap();
    plain
        .write_all(b"GET /api/v1/cainfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("CAChain"));

    // HTTPS trusting the CA certificate, by name and by IP address.
    for name in ["localhost", "127.0.0.1"] {
        srv.tls = Some((https_client(&ca_pem), name.to_string()));
        let (st, v) = srv.call("GET", "/api/v1/cainfo", None, b"");
        assert_eq!(st, 200, "{v}");
        let chain = B64
            .decode(v["result"]["CAChain"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(chain).unwrap(), ca_pem);
    }
    let admin = enroll(&srv, "admin", "adminpw", json!({})).unwrap();
    let (st, v) = admin.call(&srv, "GET", "/api/v1/identities/admin", &Value::Null);
    assert_eq!(st, 200, "{v}");

    // A client trusting another CA is refused.
    let (other_pem, _, _) = org_ca("other");
    srv.tls = Some((https_client(&other_pem), "localhost".into()));
    let tcp = TcpStream::connect(&srv.addr).unwrap();
    let conn = rustls::ClientConnection::new(
        srv.tls.as_ref().unwrap().0.clone(),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut b = Vec::new();
    let r = s
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .and_then(|()| s.read_to_end(&mut b));
    assert!(r.is_err(), "handshake with an untrusted CA succeeded");
    srv.stop();

    // A restart issues a fresh certificate, still for the same CA.
    let mut srv = Server::start(
        home.path(),
        &["--tls", "--csr-hosts", "ca.example.com,localhost"],
    );
    srv.tls = Some((https_client(&ca_pem), "ca.example.com".into()));
    let (st, _) = srv.call("GET", "/api/v1/cainfo", None, b"");
    assert_eq!(st, 200);
    srv.stop();
}

impl Identity {
    /// A gRPC signed request for `rpc` over `request`.
    fn signed(&self, rpc: &str, request: &impl prost::Message) -> SignedRequest {
        let body = request.encode_to_vec();
        let msg = twill_ca::grpc::signed_message(rpc, &body, self.cert_pem.as_bytes());
        let rng = ring::rand::SystemRandom::new();
        let k = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.key.serialize_der(),
            &rng,
        )
        .unwrap();
        let sig = k.sign(&rng, msg.as_bytes()).unwrap();
        SignedRequest {
            request: body,
            certificate: self.cert_pem.clone().into_bytes(),
            signature: sig.as_ref().to_vec(),
        }
    }
}

fn grpc_error(r: Result<impl std::fmt::Debug, tonic::Status>) -> (tonic::Code, String) {
    let s = r.expect_err("expected an error");
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--tls", "--grpc-port", "0"]);
    let ca_pem = std::fs::read_to_string(home.path().join("ca-cert.pem")).unwrap();
    let tls = twill_comm::ClientTls::new(vec![ca_pem.clone().into_bytes()]);
    let channel = twill_comm::connect(srv.grpc.as_deref().unwrap(), Some(&tls))
        .await
        .unwrap();
    let mut c = CertificateAuthorityClient::new(channel);

    let info = c
        .get_ca_info(pb::GetCaInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.ca_name, "ca-org1");
    assert_eq!(info.ca_chain, ca_pem.as_bytes());
    assert_eq!(
        grpc_error(
            c.get_ca_info(pb::GetCaInfoRequest {
                ca_name: "nope".into()
            })
            .await
        ),
        (
            tonic::Code::NotFound,
            "code 19: CA 'nope' does not exist".into()
        )
    );

    // Enroll: wrong secret, then the admin.
    let (key, csr_pem) = csr("admin");
    let mut enroll_req = pb::EnrollRequest {
        enrollment_id: "admin".into(),
        secret: "wrong".into(),
        csr: csr_pem,
        ..Default::default()
    };
    assert_eq!(
        grpc_error(c.enroll(enroll_req.clone()).await),
        (
            tonic::Code::Unauthenticated,
            "code 20: Authentication failure".into()
        )
    );
    enroll_req.secret = "adminpw".into();
    let out = c.enroll(enroll_req).await.unwrap().into_inner();
    assert_eq!(out.ca_info.unwrap().ca_chain, ca_pem.as_bytes());
    let admin = Identity {
        key,
        cert_pem: String::from_utf8(out.certificate).unwrap(),
    };

    // Register a user, enroll it, look at it.
    let reg = pb::RegisterRequest {
        id: "user1".into(),
        affiliation: "org1.department1".into(),
        attrs: vec![pb::Attribute {
            name: "app.role".into(),
            value: "auditor".into(),
            ecert: true,
        }],
        ..Default::default()
    };
    let secret = c
        .register(admin.signed("Register", &reg))
        .await
        .unwrap()
        .into_inner()
        .secret;
    assert!(!secret.is_empty());
    // Registering again conflicts, as over REST.
    let (code, msg) = grpc_error(c.register(admin.signed("Register", &reg)).await);
    assert_ne!(code, tonic::Code::Ok);
    assert!(msg.starts_with("code "), "{msg}");
    let (ukey, ucsr) = csr("user1");
    let out = c
        .enroll(pb::EnrollRequest {
            enrollment_id: "user1".into(),
            secret,
            csr: ucsr,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let user = Identity {
        key: ukey,
        cert_pem: String::from_utf8(out.certificate).unwrap(),
    };
    let ident = c
        .get_identity(admin.signed(
            "GetIdentity",
            &pb::GetIdentityRequest {
                id: "user1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ident.r#type.as_str(), ident.affiliation.as_str()),
        ("client", "org1.department1")
    );
    let ids = c
        .list_identities(admin.signed("ListIdentities", &pb::ListIdentitiesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids.identities.len(), 2);
    let certs = c
        .list_certificates(admin.signed(
            "ListCertificates",
            &pb::ListCertificatesRequest {
                id: "user1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(certs.certificates, vec![user.cert_pem.clone().into_bytes()]);

    // Reenroll over gRPC with the user's own certificate.
    let (_, rcsr) = csr("user1");
    let re = c
        .reenroll(user.signed(
            "Reenroll",
            &pb::ReenrollRequest {
                csr: rcsr,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(String::from_utf8(re.certificate)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    // Bad signatures: signed for another method, tampered body, wrong key.
    let revoke = pb::RevokeRequest {
        id: "user1".into(),
        gen_crl: true,
        ..Default::default()
    };
    let mut wrong_rpc = admin.signed("Register", &revoke);
    let refused = (
        tonic::Code::Unauthenticated,
        "code 20: Authentication failure".to_string(),
    );
    assert_eq!(grpc_error(c.revoke(wrong_rpc.clone()).await), refused);
    wrong_rpc = admin.signed("Revoke", &revoke);
    wrong_rpc.request.push(0);
    assert_eq!(grpc_error(c.revoke(wrong_rpc).await), refused);
    let impostor = Identity {
        key: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        cert_pem: admin.cert_pem.clone(),
    };
    assert_eq!(
        grpc_error(c.revoke(impostor.signed("Revoke", &revoke)).await),
        refused
    );
    // A non-registrar may not register (authorization, code 71).
    let (code, msg) = grpc_error(
        c.register(user.signed(
            "Register",
            &pb::RegisterRequest {
                id: "user2".into(),
                ..Default::default()
            },
        ))
        .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            tonic::Code::PermissionDenied,
            "code 71: Authorization failure"
        )
    );

    // Revoke the user (with a CRL); its certificate no longer authenticates.
    let out = c
        .revoke(admin.signed("Revoke", &revoke))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.revoked.len(), 2);
    assert!(String::from_utf8(out.crl.clone())
        .unwrap()
        .contains("BEGIN X509 CRL"));
    assert_eq!(
        grpc_error(
            c.list_identities(user.signed("ListIdentities", &pb::ListIdentitiesRequest::default()))
                .await
        ),
        refused
    );
    let crl = c
        .gen_crl(admin.signed("GenCRL", &pb::GenCrlRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(String::from_utf8(crl.crl).unwrap().contains("X509 CRL"));
    let removed = c
        .remove_identity(admin.signed(
            "RemoveIdentity",
            &pb::RemoveIdentityRequest {
                id: "user1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.id, "user1");
    srv.stop();
}

/// Enrollment throughput over HTTP (run with `--ignored --nocapture`,
/// release build for meaningful figures).
#[test]
#[ignore = "benchmark"]
fn bench_enroll_http() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &[]);
    let admin = enroll(&srv, "admin", "adminpw", json!({})).unwrap();
    let n = 500;
    let (_, v) = admin.call(
        &srv,
        "POST",
        "/api/v1/register",
        &json!({"id": "bench", "secret": "benchpw", "max_enrollments": -1}),
    );
    assert!(v["success"].as_bool().unwrap());
    let csrs: Vec<String> = (0..n).map(|_| csr("bench").1).collect();
    let t = Instant::now();
    for c in &csrs {
        let (st, _) = srv.call(
            "POST",
            "/api/v1/enroll",
            Some(&basic_auth("bench", "benchpw")),
            &serde_json::to_vec(&json!({"certificate_request": c})).unwrap(),
        );
        assert_eq!(st, 201);
    }
    let el = t.elapsed();
    println!(
        "HTTP enroll, sequential: {n} in {el:?} = {:.0}/s",
        f64::from(n) / el.as_secs_f64()
    );
    srv.stop();
}

/// The signing path without HTTP: `Ca::enroll` (secret check, CSR parse and
/// signature check, certificate, registry write and flush) and the bare
/// `CaSigner::issue` (run with `--ignored --nocapture`, release build).
#[test]
#[ignore = "benchmark"]
fn bench_enroll_direct() {
    use twill_ca::api::EnrollRequest;
    use twill_ca::service::{BootstrapIdentity, Ca, CaSettings};
    let home = tempfile::tempdir().unwrap();
    let ca = Ca::open(
        home.path(),
        CaSettings {
            name: "bench".into(),
            bootstrap: vec![BootstrapIdentity {
                id: "bench".into(),
                secret: "benchpw".into(),
                max_enrollments: -1,
                ..BootstrapIdentity::default()
            }],
            ..CaSettings::default()
        },
    )
    .unwrap();
    let n = 2000u32;
    let csrs: Vec<String> = (0..n).map(|_| csr("bench").1).collect();
    let t = Instant::now();
    for c in &csrs {
        let req = EnrollRequest {
            certificate_request: c.clone(),
            ..EnrollRequest::default()
        };
        ca.enroll("bench", "benchpw", &req).unwrap();
    }
    let el = t.elapsed();
    println!(
        "Ca::enroll (PBKDF2 + CSR + sign + sled flush): {n} in {el:?} = {:.0}/s",
        f64::from(n) / el.as_secs_f64()
    );

    let signer = twill_ca::signer::CaSigner::load_or_create(
        home.path(),
        &Default::default(),
        std::time::Duration::from_secs(86_400),
    )
    .unwrap();
    let parsed: Vec<_> = csrs
        .iter()
        .map(|c| twill_ca::signer::parse_csr(c).unwrap())
        .collect();
    let t = Instant::now();
    for c in &csrs {
        twill_ca::signer::parse_csr(c).unwrap();
    }
    let el_parse = t.elapsed();
    let t = Instant::now();
    for p in &parsed {
        signer
            .issue(&twill_ca::signer::IssueRequest {
                csr: p,
                id_type: "client",
                affiliation: "org1.department1",
                attrs_json: Some(br#"{"attrs":{"hf.EnrollmentID":"bench"}}"#.to_vec()),
                validity: std::time::Duration::from_secs(86_400),
                profile: "",
            })
            .unwrap();
    }
    let el = t.elapsed();
    println!(
        "parse_csr: {:.0}/s; CaSigner::issue: {n} in {el:?} = {:.0}/s",
        f64::from(n) / el_parse.as_secs_f64(),
        f64::from(n) / el.as_secs_f64()
    );
}
