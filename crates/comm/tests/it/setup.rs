//! Loading TLS material: what is accepted and how bad input is reported.

use std::path::{Path, PathBuf};

use twill_comm::{ClientAuth, ClientTls, CommError, PemSource, ServerTls, TlsFiles};

use crate::pki::{Ca, Pki};

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn files(dir: &Path, pki: &Pki) -> TlsFiles {
    TlsFiles {
        cert: write(dir, "server.crt", &pki.server.cert_pem),
        key: write(dir, "server.key", &pki.server.key_pem),
        root_cas: vec![write(dir, "ca.crt", &pki.ca.cert_pem)],
    }
}

#[test]
fn server_from_files() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path(), &pki);
    let tls = ServerTls::from_files(&files, ClientAuth::Required).unwrap();
    assert_eq!(tls.client_auth(), ClientAuth::Required);
    assert_eq!(tls.cert_der(), pki.server.cert_der.as_slice());
    assert_eq!(tls.client_roots_der().len(), 1);
    assert_eq!(
        tls.rustls_config().unwrap().alpn_protocols,
        vec![b"h2".to_vec()]
    );
    assert_eq!(
        tls.rustls_config_http().unwrap().alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    // The key must never show up in debug output.
    let debug = format!("{tls:?}");
    let key_line = pki.server.key_pem.lines().nth(1).unwrap();
    assert!(
        debug.contains("redacted") && !debug.contains(key_line),
        "{debug}"
    );
}

#[test]
fn missing_file_is_named() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut files = files(dir.path(), &pki);
    files.cert = dir.path().join("nope.crt");
    let err = ServerTls::from_files(&files, ClientAuth::None).unwrap_err();
    assert!(matches!(&err, CommError::ReadFile { path, .. } if *path == files.cert));
    assert!(err.to_string().contains("nope.crt"), "{err}");

    let mut files = self::files(dir.path(), &pki);
    files.root_cas.push(dir.path().join("missing-ca.crt"));
    let err = ServerTls::from_files(&files, ClientAuth::Optional).unwrap_err();
    assert!(err.to_string().contains("missing-ca.crt"), "{err}");

    let err = ClientTls::from_root_files(&[dir.path().join("absent.pem")]).unwrap_err();
    assert!(err.to_string().contains("absent.pem"), "{err}");
}

#[test]
fn garbage_pem_is_named() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut files = files(dir.path(), &pki);
    files.cert = write(dir.path(), "garbage.crt", "this is not a certificate\n");
    let err = ServerTls::from_files(&files, ClientAuth::None).unwrap_err();
    assert!(
        matches!(&err, CommError::NoCertificate { input: PemSource::File(p) } if *p == files.cert),
        "{err}"
    );
    assert!(err.to_string().contains("garbage.crt"), "{err}");

    files.cert = write(
        dir.path(),
        "broken.crt",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    let err = ServerTls::from_files(&files, ClientAuth::None).unwrap_err();
    assert!(matches!(err, CommError::InvalidPem { .. }), "{err}");
    assert!(err.to_string().contains("broken.crt"), "{err}");

    let mut files = self::files(dir.path(), &pki);
    files.key = write(dir.path(), "cert-as-key.pem", &pki.server.cert_pem);
    let err = ServerTls::from_files(&files, ClientAuth::None).unwrap_err();
    assert!(matches!(err, CommError::NoPrivateKey { .. }), "{err}");
    assert!(err.to_string().contains("cert-as-key.pem"), "{err}");

    let bad_root = write(dir.path(), "bad-root.pem", "junk");
    let err = ClientTls::from_root_files(&[bad_root]).unwrap_err();
    assert!(err.to_string().contains("bad-root.pem"), "{err}");

    let err =
        ServerTls::from_pem("garbage", &pki.server.key_pem, vec![], ClientAuth::None).unwrap_err();
    assert!(matches!(err, CommError::NoCertificate { .. }), "{err}");
}

#[test]
fn key_not_matching_cert_fails_at_setup() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut files = files(dir.path(), &pki);
    files.key = write(dir.path(), "client.key", &pki.client.key_pem);
    let err = ServerTls::from_files(&files, ClientAuth::None).unwrap_err();
    assert!(matches!(err, CommError::KeyMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("client.key") && text.contains("server.crt"),
        "{text}"
    );

    let err = ServerTls::from_pem(
        &pki.server.cert_pem,
        &pki.client.key_pem,
        vec![],
        ClientAuth::None,
    )
    .unwrap_err();
    assert!(matches!(err, CommError::KeyMismatch { .. }), "{err}");

    let client = ClientTls::new(vec![pki.ca.cert_pem.clone().into_bytes()])
        .with_identity(pki.client.cert_pem.clone(), pki.server.key_pem.clone());
    assert!(matches!(
        client.validate(),
        Err(CommError::KeyMismatch { .. })
    ));
    assert!(matches!(
        twill_comm::connect_lazy("127.0.0.1:1", Some(&client)),
        Err(CommError::KeyMismatch { .. })
    ));

    let files = TlsFiles {
        cert: write(dir.path(), "c.crt", &pki.client.cert_pem),
        key: write(dir.path(), "s.key", &pki.server.key_pem),
        root_cas: vec![write(dir.path(), "root.crt", &pki.ca.cert_pem)],
    };
    let err = ClientTls::from_files(&files).unwrap_err();
    assert!(err.to_string().contains("s.key"), "{err}");
}

#[test]
fn client_auth_modes_and_roots() {
    let pki = Pki::new();
    let cert = &pki.server.cert_pem;
    let key = &pki.server.key_pem;
    let err = ServerTls::from_pem(cert, key, vec![], ClientAuth::Required).unwrap_err();
    assert!(matches!(err, CommError::NoClientRoots), "{err}");

    let optional = ServerTls::from_pem(cert, key, vec![], ClientAuth::Optional).unwrap();
    assert_eq!(optional.client_auth(), ClientAuth::None);

    let roots = vec![pki.ca.cert_pem.clone().into_bytes()];
    let optional = ServerTls::from_pem(cert, key, roots.clone(), ClientAuth::Optional).unwrap();
    assert_eq!(optional.client_auth(), ClientAuth::Optional);

    // Several roots in one PEM input, and several inputs.
    let other = Ca::new("other-ca");
    let bundle = format!("{}{}", pki.ca.cert_pem, other.cert_pem).into_bytes();
    let tls = ServerTls::from_pem(
        cert,
        key,
        vec![bundle, other.cert_pem.clone().into_bytes()],
        ClientAuth::Required,
    )
    .unwrap();
    assert_eq!(tls.client_roots_der().len(), 3);
}

#[test]
fn client_material_checks() {
    let pki = Pki::new();
    assert!(matches!(
        ClientTls::new(vec![]).validate(),
        Err(CommError::NoServerRoots)
    ));
    let roots = vec![pki.ca.cert_pem.clone().into_bytes()];
    let good = ClientTls::new(roots.clone())
        .with_identity(pki.client.cert_pem.clone(), pki.client.key_pem.clone())
        .with_server_name("peer0.org1.example.com");
    good.validate().unwrap();
    assert!(good.has_identity());
    assert_eq!(good.server_name(), Some("peer0.org1.example.com"));
    assert_eq!(
        good.rustls_config().unwrap().alpn_protocols,
        vec![b"h2".to_vec()]
    );

    let bad_name = ClientTls::new(roots).with_server_name("not a host name!");
    assert!(matches!(
        bad_name.validate(),
        Err(CommError::InvalidServerName { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: write(dir.path(), "client.crt", &pki.client.cert_pem),
        key: write(dir.path(), "client.key", &pki.client.key_pem),
        root_cas: vec![write(dir.path(), "ca.crt", &pki.ca.cert_pem)],
    };
    let from_files = ClientTls::from_files(&files).unwrap();
    assert!(from_files.has_identity());
    from_files.validate().unwrap();
}
