//! Intermediate-CA mode: a second `twill-ca` enrolls with a root
//! `twill-ca` (`--parent`, profile `ca`) and issues certificates that chain
//! user → intermediate → root.

use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::json;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::{der, enroll, error_of, Server, B64};

/// Splits base64 of a PEM bundle into DER certificates, in order.
fn chain_ders(b64: &str) -> Vec<Vec<u8>> {
    let text = B64.decode(b64).unwrap();
    pem::parse_many(&text)
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.tag(), "CERTIFICATE");
            p.contents().to_vec()
        })
        .collect()
}

fn cainfo_chain(srv: &Server, caname: &str) -> Vec<Vec<u8>> {
    let (st, v) = srv.call(
        "POST",
        "/api/v1/cainfo",
        None,
        &serde_json::to_vec(&json!({ "caname": caname })).unwrap(),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["CAName"], caname);
    chain_ders(v["result"]["CAChain"].as_str().unwrap())
}

/// Runs `twill-ca` expecting a startup failure; returns its stderr.
fn start_fails(home: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_twill-ca"))
        .arg("--home")
        .arg(home)
        .args([
            "--port",
            "0",
            "-b",
            "admin:adminpw",
            "--ca-name",
            "ica-org1",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "started anyway"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn intermediate_ca_enrolls_with_its_parent() {
    let root_home = tempfile::tempdir().unwrap();
    let root = Server::start(root_home.path(), &[]);
    let admin = enroll(&root, "admin", "adminpw", json!({})).unwrap();

    // The intermediate's identity at the root, with hf.IntermediateCA.
    let (st, v) = admin.call(
        &root,
        "POST",
        "/api/v1/register",
        &json!({"id": "ica", "secret": "icapw", "type": "client", "max_enrollments": -1,
            "attrs": [{"name": "hf.IntermediateCA", "value": "true"}], "caname": "ca-org1"}),
    );
    assert_eq!(st, 201, "{v}");
    // And one without it.
    let (st, v) = admin.call(
        &root,
        "POST",
        "/api/v1/register",
        &json!({"id": "plain", "secret": "plainpw", "type": "client", "max_enrollments": -1, "caname": "ca-org1"}),
    );
    assert_eq!(st, 201, "{v}");

    // Profile ca without hf.IntermediateCA: Fabric's authorization failure.
    let (st, v) = enroll(&root, "plain", "plainpw", json!({"profile": "ca"}))
        .err()
        .unwrap();
    assert_eq!(
        (st, error_of(&v)),
        (403, (71, "Authorization failure".into()))
    );
    // An unknown profile is still refused.
    let (st, v) = enroll(&root, "ica", "icapw", json!({"profile": "nope"}))
        .err()
        .unwrap();
    assert_eq!((st, error_of(&v).0), (400, 5));

    // Startup failures name --parent: refused (the parent's code and
    // message), the identity lacking hf.IntermediateCA, unreachable.
    let bad_home = tempfile::tempdir().unwrap();
    let url = |cred: &str| format!("http://{cred}@{}", root.addr);
    let err = start_fails(bad_home.path(), &["--parent", &url("ica:wrong")]);
    assert!(err.contains("--parent"), "{err}");
    assert!(err.contains("code 20: Authentication failure"), "{err}");
    let err = start_fails(bad_home.path(), &["--parent", &url("plain:plainpw")]);
    assert!(err.contains("code 71: Authorization failure"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let err = start_fails(
        bad_home.path(),
        &["--parent", &format!("http://ica:icapw@{closed_addr}")],
    );
    assert!(
        err.contains("--parent") && err.contains("cannot connect"),
        "{err}"
    );
    let err = start_fails(
        bad_home.path(),
        &["--parent", &url("ica:icapw"), "--parent-caname", "other"],
    );
    assert!(err.contains("code 19: CA 'other' does not exist"), "{err}");
    // Nothing was stored by the failed attempts.
    assert!(!bad_home.path().join("ca-key.pem").exists());
    assert!(!bad_home.path().join("registry").exists());

    // The intermediate.
    let ica_home = tempfile::tempdir().unwrap();
    let parent = url("ica:icapw");
    let ica_args = [
        "--ca-name",
        "ica-org1",
        "--parent",
        parent.as_str(),
        "--parent-caname",
        "ca-org1",
    ];
    let ica = Server::start(ica_home.path(), &ica_args);

    let root_der = cainfo_chain(&root, "ca-org1");
    assert_eq!(root_der.len(), 1);
    let (_, root_cert) = X509Certificate::from_der(&root_der[0]).unwrap();
    let chain = cainfo_chain(&ica, "ica-org1");
    assert_eq!(chain.len(), 2, "intermediate first, root last");
    assert_eq!(chain[1], root_der[0]);
    let (_, ica_cert) = X509Certificate::from_der(&chain[0]).unwrap();
    ica_cert
        .verify_signature(Some(root_cert.public_key()))
        .unwrap();
    assert_eq!(ica_cert.issuer(), root_cert.subject());
    assert_eq!(
        ica_cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "ica"
    );
    let bc = ica_cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = ica_cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(ica_cert.validity().not_after <= root_cert.validity().not_after);
    // The files Fabric operators expect.
    assert_eq!(
        der(&std::fs::read_to_string(ica_home.path().join("ca-cert.pem")).unwrap()),
        chain[0]
    );
    assert!(ica_home.path().join("ca-chain.pem").exists());

    // A user of the intermediate.
    let ica_admin = enroll(&ica, "admin", "adminpw", json!({"caname": "ica-org1"})).unwrap();
    let (st, v) = ica_admin.call(
        &ica,
        "POST",
        "/api/v1/register",
        &json!({"id": "user1", "secret": "user1pw", "type": "client", "affiliation": "org1",
            "max_enrollments": -1, "caname": "ica-org1"}),
    );
    assert_eq!(st, 201, "{v}");
    let body = json!({"certificate_request": super::csr("user1").1, "caname": "ica-org1"});
    let (st, v) = ica.call(
        "POST",
        "/api/v1/enroll",
        Some(&twill_ca::api::basic_auth("user1", "user1pw")),
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(st, 201, "{v}");
    let enroll_chain = chain_ders(v["result"]["ServerInfo"]["CAChain"].as_str().unwrap());
    assert_eq!(enroll_chain, chain, "CAChain: intermediate, then root");
    let user_der = der(&String::from_utf8(
        B64.decode(v["result"]["Cert"].as_str().unwrap()).unwrap(),
    )
    .unwrap());
    let (_, user_cert) = X509Certificate::from_der(&user_der).unwrap();
    user_cert
        .verify_signature(Some(ica_cert.public_key()))
        .unwrap();
    assert!(user_cert
        .verify_signature(Some(root_cert.public_key()))
        .is_err());
    assert_eq!(user_cert.issuer(), ica_cert.subject());
    assert!(!user_cert.basic_constraints().unwrap().unwrap().value.ca);
    // The root is self-signed: the end of the chain.
    root_cert.verify_signature(None).unwrap();

    // The intermediate applies the same hf.IntermediateCA rule.
    let (st, v) = enroll(
        &ica,
        "user1",
        "user1pw",
        json!({"caname": "ica-org1", "profile": "ca"}),
    )
    .err()
    .unwrap();
    assert_eq!((st, error_of(&v).0), (403, 71));

    // Restart of the intermediate without the parent running.
    root.stop();
    ica.stop();
    let ica = Server::start(ica_home.path(), &ica_args);
    assert_eq!(cainfo_chain(&ica, "ica-org1"), chain);
    let again = enroll(&ica, "user1", "user1pw", json!({"caname": "ica-org1"})).unwrap();
    let again_der = der(&again.cert_pem);
    let (_, c) = X509Certificate::from_der(&again_der).unwrap();
    c.verify_signature(Some(ica_cert.public_key())).unwrap();
    ica.stop();
}

#[test]
fn intermediate_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fabric-ca-server-config.yaml");
    std::fs::write(
        &cfg,
        "intermediate:\n  parentserver:\n    url: https://ica:pw@ca.example.com:7055\n    caname: ca-root\n  tls:\n    certfiles:\n      - root-tls.pem\n",
    )
    .unwrap();
    let args = <twill_ca::config::CaArgs as clap::Parser>::try_parse_from([
        "twill-ca",
        "--config",
        cfg.to_str().unwrap(),
    ])
    .unwrap();
    let c = twill_ca::config::CaConfig::load(&args).unwrap();
    let p = c.settings.parent.unwrap();
    assert_eq!(p.display_url(), "https://ca.example.com:7055");
    assert_eq!(p.id, "ica");
    assert_eq!(p.caname.as_deref(), Some("ca-root"));
    assert_eq!(p.tls_certfiles, vec![dir.path().join("root-tls.pem")]);
    assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    assert_eq!(c.settings.root_subject.cn, "ica");
    // The flags override the file.
    let args = <twill_ca::config::CaArgs as clap::Parser>::try_parse_from([
        "twill-ca",
        "--config",
        cfg.to_str().unwrap(),
        "--parent",
        "http://other:pw2@127.0.0.1:9",
        "--parent-caname",
        "x",
    ])
    .unwrap();
    let p = twill_ca::config::CaConfig::load(&args)
        .unwrap()
        .settings
        .parent
        .unwrap();
    assert_eq!((p.id.as_str(), p.caname.as_deref()), ("other", Some("x")));
    assert_eq!(p.display_url(), "http://127.0.0.1:9");
}
