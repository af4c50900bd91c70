//! `twill ca` against the real `twill-ca` server (HTTPS, a TLS certificate
//! made here), one server per test on a free port with a temporary home:
//! enroll the bootstrap admin, register and enroll a peer and a user with
//! attributes, reenroll, list, revoke with a CRL, and bad input.
//!
//! Needs `twill-ca` next to `twill` (or in `TWILL_BIN_DIR`):
//! `cargo build -p twill-cli -p twill-ca`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use twill_msp::{Identity, SigningIdentity};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::{assert_one_line_error, p, stderr, twill};

/// OID of Fabric CA's attribute extension.
const ATTRS_OID: &str = "1.2.3.4.5.6.7.8.1";

/// A running `twill-ca`, killed on drop.
struct CaServer {
    child: Child,
    /// `127.0.0.1:<port>`.
    addr: String,
    /// The PEM file clients trust for TLS.
    tls_ca: PathBuf,
    log: PathBuf,
}

impl CaServer {
    /// Starts `twill-ca` over TLS with home `dir/home`, CA name `ca-org1`
    /// and bootstrap identity admin:adminpw.
    fn start(dir: &Path) -> CaServer {
        let bin = bin_dir().join("twill-ca");
        assert!(
            bin.is_file(),
            "{} is missing: cargo build -p twill-ca",
            bin.display()
        );
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.self_signed(&key).unwrap();
        let tls_ca = dir.join("tls-cert.pem");
        let tls_key = dir.join("tls-key.pem");
        std::fs::write(&tls_ca, cert.pem()).unwrap();
        std::fs::write(&tls_key, key.serialize_pem()).unwrap();
        let log = dir.join("twill-ca.log");
        let mut child = Command::new(&bin)
            .arg("--home")
            .arg(dir.join("home"))
            .args(["--port", "0", "--ca-name", "ca-org1", "-b", "admin:adminpw"])
            .arg("--tls-cert")
            .arg(&tls_ca)
            .arg("--tls-key")
            .arg(&tls_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start twill-ca");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on https://") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "twill-ca did not start: {line:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        CaServer {
            addr: addr.to_string(),
            child,
            tls_ca,
            log,
        }
    }

    /// The URL with credentials.
    fn url_as(&self, id: &str, secret: &str) -> String {
        format!("https://{id}:{secret}@{}", self.addr)
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Runs `twill ca <args>` with this CA's URL, TLS root and CA name
    /// (`url` overrides the URL).
    fn ca(&self, url: Option<&str>, args: &[&str]) -> Output {
        let url = url.map_or_else(|| self.url(), str::to_string);
        let mut all = vec!["ca"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            "-u",
            &url,
            "--caname",
            "ca-org1",
            "--tls.certfiles",
            p(&self.tls_ca),
        ]);
        twill(&all)
    }

    /// Like [`CaServer::ca`], asserting success; returns stdout.
    fn ok(&self, url: Option<&str>, args: &[&str]) -> String {
        let out = self.ca(url, args);
        assert!(
            out.status.success(),
            "twill ca {args:?} failed: {}\nserver log: {}",
            stderr(&out),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for CaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the Twill binaries are: `TWILL_BIN_DIR`, else next to `twill`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TWILL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_BIN_EXE_twill"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The enrollment certificate of an msp folder.
fn cert_of(msp: &Path) -> Identity {
    let pem = std::fs::read(msp.join("signcerts/cert.pem")).unwrap();
    Identity::from_pem("Org1MSP", &pem).unwrap()
}

/// The raw JSON of the attribute extension, if any.
fn attrs_of(msp: &Path) -> Option<serde_json::Value> {
    let id = cert_of(msp);
    let (_, cert) = X509Certificate::from_der(id.cert_der()).unwrap();
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ATTRS_OID)
        .map(|e| serde_json::from_slice(e.value).unwrap())
}

fn password(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Password: "))
        .unwrap_or_else(|| panic!("no password in {stdout:?}"))
        .to_string()
}

/// The msp folder loads as a signing identity and as an MSP that accepts
/// its own certificate.
fn assert_msp_loads(msp: &Path) -> Identity {
    let signer = SigningIdentity::from_msp_dir(msp, "Org1MSP").unwrap();
    let config = twill_msp::load_fabric_msp_config(msp, "Org1MSP").unwrap();
    assert!(config.fabric_node_ous.is_some(), "NodeOUs on");
    let mspobj = twill_msp::Msp::from_config(&config).unwrap();
    mspobj.validate(signer.identity()).unwrap();
    signer.identity().clone()
}

#[test]
fn enroll_register_reenroll_revoke_against_twill_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaServer::start(dir.path());
    let port = ca.addr.rsplit_once(':').unwrap().1.to_string();
    let admin = dir.path().join("admin/msp");

    // Enroll the bootstrap admin.
    let out = ca.ok(
        Some(&ca.url_as("admin", "adminpw")),
        &["enroll", "--mspdir", p(&admin)],
    );
    assert!(out.contains("signcerts/cert.pem"), "{out}");
    let cafile = format!("127-0-0-1-{port}-ca-org1.pem");
    assert!(admin.join("cacerts").join(&cafile).is_file());
    let config = std::fs::read_to_string(admin.join("config.yaml")).unwrap();
    assert!(
        config.contains(&format!("Certificate: cacerts/{cafile}")),
        "{config}"
    );
    let keys: Vec<_> = std::fs::read_dir(admin.join("keystore"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1);
    assert!(p(&keys[0]).ends_with("_sk"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let admin_id = assert_msp_loads(&admin);
    assert_eq!(admin_id.common_name(), "admin");
    let ous = admin_id.organizational_units();
    assert!(
        ous.iter().any(|o| o == "admin" || o == "client"),
        "admin OUs: {ous:?}"
    );

    // getcainfo writes the same CA certificate.
    let info = dir.path().join("info/msp");
    ca.ok(None, &["getcainfo", "--mspdir", p(&info)]);
    assert_eq!(
        std::fs::read(info.join("cacerts").join(&cafile)).unwrap(),
        std::fs::read(admin.join("cacerts").join(&cafile)).unwrap()
    );

    // Register a peer (secret given) and a user with attributes (secret
    // made up by the CA).
    let out = ca.ok(
        None,
        &[
            "register",
            "--mspdir",
            p(&admin),
            "--id.name",
            "peer1",
            "--id.secret",
            "peer1pw",
            "--id.type",
            "peer",
        ],
    );
    assert_eq!(password(&out), "peer1pw");
    let out = ca.ok(
        None,
        &[
            "register",
            "--mspdir",
            p(&admin),
            "--id.name",
            "user1",
            "--id.type",
            "client",
            "--id.affiliation",
            "org1.department1",
            "--id.attrs",
            "app.role=auditor:ecert,email=u1@org1",
            "--id.maxenrollments",
            "-1",
        ],
    );
    let user_secret = password(&out);
    assert!(!user_secret.is_empty());

    // Enroll the peer with host names; its certificate carries OU=peer.
    let peer = dir.path().join("peer1/msp");
    ca.ok(
        Some(&ca.url_as("peer1", "peer1pw")),
        &[
            "enroll",
            "--mspdir",
            p(&peer),
            "--csr.hosts",
            "peer1.org1.example.com,127.0.0.1",
        ],
    );
    let peer_id = assert_msp_loads(&peer);
    assert!(peer_id.organizational_units().iter().any(|o| o == "peer"));
    let (_, peer_cert) = X509Certificate::from_der(peer_id.cert_der()).unwrap();
    let sans = format!("{:?}", peer_cert.subject_alternative_name().unwrap());
    assert!(sans.contains("peer1.org1.example.com"), "{sans}");

    // A TLS certificate for the peer: profile tls, chain in tlscacerts/.
    let peer_tls = dir.path().join("peer1/tls");
    ca.ok(
        Some(&ca.url_as("peer1", "peer1pw")),
        &[
            "enroll",
            "--mspdir",
            p(&peer_tls),
            "--enrollment.profile",
            "tls",
            "--csr.hosts",
            "peer1.org1.example.com",
        ],
    );
    assert!(peer_tls.join("tlscacerts").join(&cafile).is_file());
    assert!(!peer_tls.join("cacerts").exists());
    SigningIdentity::from_msp_dir(&peer_tls, "Org1MSP").unwrap();

    // Enroll the user: the ecert attribute is in the certificate, the
    // other one is not.
    let user = dir.path().join("user1/msp");
    ca.ok(
        Some(&ca.url_as("user1", &user_secret)),
        &["enroll", "--mspdir", p(&user)],
    );
    let user_id = assert_msp_loads(&user);
    assert_eq!(user_id.common_name(), "user1");
    let ous = user_id.organizational_units();
    for ou in ["client", "org1", "department1"] {
        assert!(ous.iter().any(|o| o == ou), "user OUs: {ous:?}");
    }
    let attrs = attrs_of(&user).expect("attribute extension");
    assert_eq!(attrs["attrs"]["app.role"], "auditor", "{attrs}");
    assert_eq!(attrs["attrs"]["hf.EnrollmentID"], "user1", "{attrs}");
    assert!(attrs["attrs"].get("email").is_none(), "{attrs}");

    // Asking for attributes explicitly: only those.
    let user_b = dir.path().join("user1b/msp");
    ca.ok(
        Some(&ca.url_as("user1", &user_secret)),
        &[
            "enroll",
            "--mspdir",
            p(&user_b),
            "--enrollment.attrs",
            "email,missing:opt",
        ],
    );
    let attrs = attrs_of(&user_b).expect("attribute extension");
    assert_eq!(attrs["attrs"]["email"], "u1@org1", "{attrs}");
    assert!(attrs["attrs"].get("app.role").is_none(), "{attrs}");

    // Reenroll: a new certificate and key for the same name.
    let first_serial = user_id.serial_hex();
    ca.ok(None, &["reenroll", "--mspdir", p(&user)]);
    let renewed = assert_msp_loads(&user);
    assert_eq!(renewed.common_name(), "user1");
    assert_ne!(renewed.serial_hex(), first_serial);

    // Listings.
    let out = ca.ok(None, &["identity", "list", "--mspdir", p(&admin)]);
    assert!(out.contains("Name: user1, Type: client"), "{out}");
    assert!(out.contains("Name: peer1, Type: peer"), "{out}");
    let out = ca.ok(None, &["identity", "get", "user1", "--mspdir", p(&admin)]);
    assert!(out.contains("Affiliation: org1.department1"), "{out}");
    assert!(out.contains("app.role=auditor:ecert"), "{out}");
    let out = ca.ok(None, &["affiliation", "list", "--mspdir", p(&admin)]);
    assert!(out.contains("org1.department1"), "{out}");
    let out = ca.ok(
        None,
        &[
            "certificate",
            "list",
            "--id",
            "user1",
            "--mspdir",
            p(&admin),
        ],
    );
    assert!(out.contains(&renewed.serial_hex()), "{out}");

    // Revoke the user with a CRL: it lists the current certificate.
    let out = ca.ok(
        None,
        &[
            "revoke",
            "--mspdir",
            p(&admin),
            "-e",
            "user1",
            "-r",
            "keycompromise",
            "--gencrl",
        ],
    );
    assert!(out.contains("Revoked certificate"), "{out}");
    let crl_path = admin.join("crls/crl.pem");
    let revoked = crl_serials(&crl_path);
    assert!(
        revoked.contains(&renewed.serial_hex()),
        "{revoked:?} lacks {}",
        renewed.serial_hex()
    );
    // The user can no longer act, e.g. reenroll.
    let out = ca.ca(None, &["reenroll", "--mspdir", p(&user)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // gencrl writes the same list again.
    std::fs::remove_file(&crl_path).unwrap();
    ca.ok(None, &["gencrl", "--mspdir", p(&admin)]);
    assert!(crl_serials(&crl_path).contains(&renewed.serial_hex()));
    // The folder, CRL included, still loads as an MSP.
    assert_msp_loads(&admin);
}

/// Serial numbers (lowercase hex, as [`Identity::serial_hex`]) in a PEM CRL.
fn crl_serials(path: &Path) -> Vec<String> {
    let pem = std::fs::read_to_string(path).unwrap();
    let blocks = twill_crypto::pem::parse_pem_blocks(&pem).unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&blocks[0].1).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect()
}

#[test]
fn bad_input_is_one_line_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CaServer::start(dir.path());
    let msp = dir.path().join("msp");

    // Wrong password: the server's code and message, and the URL.
    let out = ca.ca(
        Some(&ca.url_as("admin", "wrong")),
        &["enroll", "--mspdir", p(&msp)],
    );
    assert_one_line_error(&out, &["/api/v1/enroll", &ca.addr, "code "]);
    assert!(!stderr(&out).contains("wrong"), "{}", stderr(&out));
    assert!(!msp.exists());

    // No secret in the URL.
    let out = ca.ca(
        Some(&format!("https://admin@{}", ca.addr)),
        &["enroll", "--mspdir", p(&msp)],
    );
    assert_one_line_error(&out, &["-u/--url", "ID:SECRET"]);

    // A URL that is not one.
    let out = ca.ca(Some("localhost:7054"), &["enroll", "--mspdir", p(&msp)]);
    assert_one_line_error(&out, &["-u/--url", "bad CA URL"]);

    // No enrollment in the msp folder.
    let missing = dir.path().join("no-such-msp");
    let out = ca.ca(
        None,
        &["register", "--mspdir", p(&missing), "--id.name", "x"],
    );
    assert_one_line_error(&out, &["no-such-msp", "enroll first"]);

    // https without a TLS root.
    let out = twill(&["ca", "getcainfo", "-u", &ca.url(), "--mspdir", p(&msp)]);
    assert_one_line_error(&out, &["--tls.certfiles"]);

    // An unreadable TLS root file is named.
    let out = twill(&[
        "ca",
        "getcainfo",
        "-u",
        &ca.url(),
        "--tls.certfiles",
        p(&dir.path().join("nope.pem")),
        "--mspdir",
        p(&msp),
    ]);
    assert_one_line_error(&out, &["nope.pem"]);

    // Bad attribute syntax names the flag.
    let out = ca.ca(
        Some(&ca.url_as("admin", "adminpw")),
        &[
            "enroll",
            "--mspdir",
            p(&msp),
            "--enrollment.attrs",
            "a:maybe",
        ],
    );
    assert_one_line_error(&out, &["--enrollment.attrs"]);
}
