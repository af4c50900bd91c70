//! `twill osnadmin` against an in-process admin endpoint: the real
//! participation router and mTLS server (`participation::serve_admin`) over
//! a fake node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use twill_comm::{ClientAuth, ServerTls};
use twill_orderer::participation::{
    router, serve_admin, validate_join_block, ChannelInfo, ChannelParticipation, ChannelStatus,
    ConsensusRelation, ParticipationError, DEFAULT_MAX_REQUEST_BODY_SIZE,
};
use twill_protos::common::{Block, ConfigGroup};

use super::{assert_one_line_error, p, stderr, twill};

#[derive(Default)]
struct FakeNode {
    channels: Mutex<BTreeMap<String, ChannelInfo>>,
}

#[async_trait]
impl ChannelParticipation for FakeNode {
    async fn join(&self, block: Block) -> Result<ChannelInfo, ParticipationError> {
        let name = validate_join_block(&block)
            .map_err(|reason| ParticipationError::Rejected { reason })?;
        let mut channels = self.channels.lock().unwrap();
        if channels.contains_key(&name) {
            return Err(ParticipationError::AlreadyExists);
        }
        let info = ChannelInfo {
            name: name.clone(),
            url: String::new(),
            consensus_relation: ConsensusRelation::Consenter,
            status: ChannelStatus::Active,
            height: 1,
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
        self.channels
            .lock()
            .unwrap()
            .remove(name)
            .map(drop)
            .ok_or(ParticipationError::NotFound)
    }
}

struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM)
    fn issue(&self, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// An admin endpoint on a free loopback port, its TLS material on disk and
/// a channel block to join with.
struct Admin {
    _rt: tokio::runtime::Runtime,
    node: Arc<FakeNode>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Admin {
    /// Over mTLS: the server trusts the "client CA"; a rogue CA issues a
    /// second client certificate it does not trust.
    fn start() -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = Ca::new("orderer-tls-ca");
        let client_ca = Ca::new("admin-client-ca");
        let rogue_ca = Ca::new("rogue-ca");
        let (server_cert, server_key) = server_ca.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = client_ca.issue(&[], ExtendedKeyUsagePurpose::ClientAuth);
        let (rogue_cert, rogue_key) = rogue_ca.issue(&[], ExtendedKeyUsagePurpose::ClientAuth);
        for (name, pem) in [
            ("ca.crt", &server_ca.cert_pem),
            ("client.crt", &client_cert),
            ("client.key", &client_key),
            ("rogue.crt", &rogue_cert),
            ("rogue.key", &rogue_key),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        let tls = ServerTls::from_pem(
            server_cert,
            server_key,
            vec![client_ca.cert_pem.into_bytes()],
            ClientAuth::Required,
        )
        .unwrap();
        Self::spawn(dir, Some(tls))
    }

    /// Plain HTTP, as an orderer with admin TLS disabled.
    fn start_plaintext() -> Admin {
        Self::spawn(tempfile::tempdir().unwrap(), None)
    }

    fn spawn(dir: tempfile::TempDir, tls: Option<ServerTls>) -> Admin {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let node = Arc::new(FakeNode::default());
        let app = router(node.clone(), DEFAULT_MAX_REQUEST_BODY_SIZE);
        let (listener, addr) = rt.block_on(twill_comm::bind("127.0.0.1:0")).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        match tls {
            Some(tls) => {
                rt.spawn(async move { serve_admin(listener, &tls, app, shutdown).await.unwrap() });
            }
            None => {
                rt.spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                        .unwrap()
                });
            }
        }
        Admin {
            _rt: rt,
            node,
            addr,
            dir,
            stop: Some(stop),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn block_file(&self, channel: &str) -> PathBuf {
        let mut group = ConfigGroup::default();
        group
            .groups
            .insert("Orderer".into(), ConfigGroup::default());
        group
            .groups
            .insert("Application".into(), ConfigGroup::default());
        let block = twill_configtx::genesis::genesis_block(channel, group);
        let path = self.path(&format!("{channel}.block"));
        std::fs::write(&path, block.encode_to_vec()).unwrap();
        path
    }

    /// `--orderer-address` and the mTLS flags with the trusted client cert.
    fn mtls(&self) -> Vec<String> {
        self.tls_with("client")
    }

    fn tls_with(&self, client: &str) -> Vec<String> {
        vec![
            "-o".into(),
            self.addr.to_string(),
            "--ca-file".into(),
            p(&self.path("ca.crt")).into(),
            "--client-cert".into(),
            p(&self.path(&format!("{client}.crt"))).into(),
            "--client-key".into(),
            p(&self.path(&format!("{client}.key"))).into(),
        ]
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn osnadmin(args: &[&str], extra: &[String]) -> std::process::Output {
    let mut all: Vec<&str> = vec!["osnadmin", "channel"];
    all.extend_from_slice(args);
    all.extend(extra.iter().map(String::as_str));
    twill(&all)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    stdout(o)
}

#[test]
fn join_list_remove_over_mutual_tls() {
    let admin = Admin::start();
    let block = admin.block_file("mychannel");
    let tls = admin.mtls();

    let out = assert_ok(&osnadmin(
        &[
            "join",
            "--channel-id",
            "mychannel",
            "--config-block",
            p(&block),
        ],
        &tls,
    ));
    assert_eq!(
        out,
        "Status: 201\n{\n\t\"name\": \"mychannel\",\n\t\"url\": \"/participation/v1/channels/mychannel\",\n\
         \t\"consensusRelation\": \"consenter\",\n\t\"status\": \"active\",\n\t\"height\": 1\n}\n"
    );
    assert!(admin
        .node
        .channels
        .lock()
        .unwrap()
        .contains_key("mychannel"));

    // Fabric's flag spelling works too; joining twice is Fabric's 405.
    let out = assert_ok(&osnadmin(
        &["join", "--channelID", "mychannel", "-b", p(&block)],
        &tls,
    ));
    assert!(out.starts_with("Status: 405\n"), "{out}");
    assert!(out.contains("cannot join: channel already exists"), "{out}");

    let out = assert_ok(&osnadmin(&["list"], &tls));
    assert_eq!(
        out,
        "Status: 200\n{\n\t\"systemChannel\": null,\n\t\"channels\": [\n\t\t{\n\
         \t\t\t\"name\": \"mychannel\",\n\t\t\t\"url\": \"/participation/v1/channels/mychannel\"\n\
         \t\t}\n\t]\n}\n"
    );

    let out = assert_ok(&osnadmin(&["list", "-c", "mychannel"], &tls));
    assert!(out.starts_with("Status: 200\n"), "{out}");
    assert!(out.contains("\"height\": 1"), "{out}");

    let out = assert_ok(&osnadmin(&["remove", "-c", "mychannel"], &tls));
    assert_eq!(out, "Status: 204\n");
    assert!(admin.node.channels.lock().unwrap().is_empty());

    let out = assert_ok(&osnadmin(&["list", "-c", "mychannel"], &tls));
    assert_eq!(
        out,
        "Status: 404\n{\n\t\"error\": \"channel does not exist\"\n}\n"
    );

    let mut quiet = tls.clone();
    quiet.push("--no-status".into());
    let out = assert_ok(&osnadmin(&["list"], &quiet));
    assert_eq!(
        out,
        "{\n\t\"systemChannel\": null,\n\t\"channels\": null\n}\n"
    );
}

#[test]
fn untrusted_client_certificate_is_refused() {
    let admin = Admin::start();
    let out = osnadmin(&["list"], &admin.tls_with("rogue"));
    assert_one_line_error(&out, &[&admin.addr.to_string()]);
    assert!(stdout(&out).is_empty());

    // No client certificate at all is refused as well.
    let out = osnadmin(
        &["list"],
        &[
            "-o".into(),
            admin.addr.to_string(),
            "--ca-file".into(),
            p(&admin.path("ca.crt")).into(),
        ],
    );
    assert_one_line_error(&out, &[&admin.addr.to_string()]);
}

#[test]
fn server_not_trusted_by_the_ca_file_is_refused() {
    let admin = Admin::start();
    let mut tls = admin.mtls();
    // The client CA did not issue the server's certificate.
    let other_ca = Ca::new("other");
    let other = admin.path("other-ca.crt");
    std::fs::write(&other, other_ca.cert_pem).unwrap();
    tls[3] = p(&other).into();
    let out = osnadmin(&["list"], &tls);
    assert_one_line_error(&out, &[&admin.addr.to_string(), "TLS handshake"]);
}

#[test]
fn plaintext_without_ca_file() {
    let admin = Admin::start_plaintext();
    let block = admin.block_file("plainchannel");
    let addr = admin.addr.to_string();
    let out = assert_ok(&osnadmin(
        &["join", "-c", "plainchannel", "-b", p(&block), "-o", &addr],
        &[],
    ));
    assert!(out.starts_with("Status: 201\n"), "{out}");
    let out = assert_ok(&osnadmin(&["list", "-o", &addr], &[]));
    assert!(out.contains("plainchannel"), "{out}");
}

#[test]
fn unreachable_orderer_names_the_address() {
    // Bind and drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = osnadmin(&["list", "-o", &addr], &[]);
    assert_one_line_error(&out, &[&addr, "cannot connect"]);
}

#[test]
fn missing_files_are_named() {
    let admin = Admin::start();
    let tls = admin.mtls();
    let out = osnadmin(
        &[
            "join",
            "-c",
            "mychannel",
            "-b",
            "/nonexistent/mychannel.block",
        ],
        &tls,
    );
    assert_one_line_error(&out, &["/nonexistent/mychannel.block"]);

    let mut bad = tls.clone();
    bad[5] = "/nonexistent/client.crt".into();
    let out = osnadmin(&["list"], &bad);
    assert_one_line_error(&out, &["/nonexistent/client.crt"]);

    let mut bad = tls;
    bad[3] = "/nonexistent/ca.crt".into();
    let out = osnadmin(&["list"], &bad);
    assert_one_line_error(&out, &["/nonexistent/ca.crt"]);
}

#[test]
fn join_checks_the_channel_of_the_block() {
    let admin = Admin::start();
    let block = admin.block_file("mychannel");
    let out = osnadmin(
        &["join", "-c", "otherchannel", "-b", p(&block)],
        &admin.mtls(),
    );
    assert_one_line_error(&out, &["otherchannel", "mychannel", "does not match"]);
    assert!(admin.node.channels.lock().unwrap().is_empty());

    let junk = admin.path("junk.block");
    std::fs::write(&junk, b"\xff\xff\xff not a block").unwrap();
    let out = osnadmin(&["join", "-c", "mychannel", "-b", p(&junk)], &admin.mtls());
    assert_one_line_error(&out, &["junk.block"]);
}

#[test]
fn osnadmin_help_carries_examples() {
    for args in [
        vec!["osnadmin", "--help"],
        vec!["osnadmin", "channel", "--help"],
        vec!["osnadmin", "channel", "join", "--help"],
        vec!["osnadmin", "channel", "list", "--help"],
        vec!["osnadmin", "channel", "remove", "--help"],
    ] {
        let out = twill(&args);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}
