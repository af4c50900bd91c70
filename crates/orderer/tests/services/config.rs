//! `OrdererConfig`: layering, env overrides, paths and error messages, on
//! files written to a temp dir.

use std::path::{Path, PathBuf};

use twill_orderer::config::{ConfigError, OrdererConfig};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const BASE: &str = "\
General:
  ListenAddress: 0.0.0.0
  ListenPort: 7050
  TLS:
    Enabled: true
    Certificate: tls/server.crt
    PrivateKey: tls/server.key
    RootCAs:
      - tls/ca.crt
  LocalMSPDir: msp
  LocalMSPID: OrdererMSP
FileLedger:
  Location: ../state/orderer0
Admin:
  ListenAddress: 127.0.0.1:7053
";

/// A config dir with the files BASE names.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    std::fs::create_dir_all(cfg.join("tls")).unwrap();
    std::fs::create_dir_all(cfg.join("msp")).unwrap();
    for f in ["server.crt", "server.key", "ca.crt"] {
        std::fs::write(cfg.join("tls").join(f), "x").unwrap();
    }
    dir
}

#[test]
fn file_env_and_relative_paths() {
    let dir = config_dir();
    let cfg_dir = dir.path().join("cfg");
    let path = write(&cfg_dir, "orderer0.yaml", BASE);
    let cfg = OrdererConfig::load_with_env(
        &path,
        env(&[
            ("ORDERER_GENERAL_LISTENPORT", "7150"),
            ("ORDERER_GENERAL_TLS_ENABLED", "false"),
            ("ORDERER_ADMIN_LISTENADDRESS", "127.0.0.1:7153"),
            ("ORDERER_OPERATIONS_LISTENADDRESS", ""),
            (
                "ORDERER_GENERAL_CLUSTER_ROOTCAS",
                "[tls/ca.crt, /etc/other-ca.crt]",
            ),
            ("ORDERER_TWILL_RAFTTICKINTERVAL", "20ms"),
            ("UNRELATED_GENERAL_LISTENPORT", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.general.listen_port, 7150);
    assert!(!cfg.general.tls.enabled);
    assert_eq!(cfg.client_listen_address(), "0.0.0.0:7150");
    assert_eq!(cfg.admin.listen_address, "127.0.0.1:7153");
    assert_eq!(cfg.operations.listen_address, "");
    assert_eq!(cfg.general.local_msp_id, "OrdererMSP");
    // Relative paths resolve against the file's directory, from the file
    // and from the environment alike.
    assert_eq!(cfg.general.tls.certificate, cfg_dir.join("tls/server.crt"));
    assert_eq!(cfg.general.local_msp_dir, cfg_dir.join("msp"));
    assert_eq!(
        cfg.file_ledger.location,
        dir.path().join("state/orderer0"),
        "../ is folded"
    );
    assert_eq!(
        cfg.general.cluster.root_cas,
        vec![
            cfg_dir.join("tls/ca.crt"),
            PathBuf::from("/etc/other-ca.crt")
        ]
    );
    assert_eq!(
        cfg.twill.raft_tick_interval.0,
        Some(std::time::Duration::from_millis(20))
    );
    cfg.validate().unwrap();
    assert_eq!(cfg.file(), path);
}

#[test]
fn unknown_key_names_its_path() {
    let dir = config_dir();
    let text = BASE.replace(
        "    Enabled: true",
        "    Enabled: true\n    ClientAuthRequird: true",
    );
    let path = write(&dir.path().join("cfg"), "orderer0.yaml", &text);
    let err = OrdererConfig::load_with_env(&path, env(&[])).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Field { .. }));
    assert!(
        msg.starts_with(&format!(
            "{}: General.TLS.ClientAuthRequird: unknown key (expected one of: ",
            path.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("ClientAuthRequired"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    // Fabric settings Twill does not implement load, and are reported.
    let text = format!("{BASE}Metrics:\n  Provider: prometheus\nConsensus:\n  WALDir: /var/wal\n");
    let path = write(&dir.path().join("cfg"), "fabric.yaml", &text);
    let cfg = OrdererConfig::load_with_env(&path, env(&[])).unwrap();
    assert_eq!(cfg.ignored_keys(), ["Metrics", "Consensus"]);
}

#[test]
fn missing_tls_file_names_file_and_field() {
    let dir = config_dir();
    let cfg_dir = dir.path().join("cfg");
    std::fs::remove_file(cfg_dir.join("tls/server.crt")).unwrap();
    let path = write(&cfg_dir, "orderer0.yaml", BASE);
    let cfg = OrdererConfig::load_with_env(&path, env(&[])).unwrap();
    let msg = cfg.validate().unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}: General.TLS.Certificate: file {} not found",
            path.display(),
            cfg_dir.join("tls/server.crt").display()
        )
    );

    // A value from the environment names its variable too.
    let cfg = OrdererConfig::load_with_env(
        &path,
        env(&[("ORDERER_GENERAL_TLS_CERTIFICATE", "/nowhere/server.crt")]),
    )
    .unwrap();
    let msg = cfg.validate().unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}: General.TLS.Certificate (from ORDERER_GENERAL_TLS_CERTIFICATE): file /nowhere/server.crt not found",
            path.display()
        )
    );
}

#[test]
fn wrong_types_and_bad_values() {
    let dir = config_dir();
    let cfg_dir = dir.path().join("cfg");
    let path = write(&cfg_dir, "orderer0.yaml", &BASE.replace("7050", "port"));
    let msg = OrdererConfig::load_with_env(&path, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(&format!("{}: General.ListenPort: ", path.display())),
        "{msg}"
    );

    let path = write(&cfg_dir, "syntax.yaml", "General: [\n");
    let msg = OrdererConfig::load_with_env(&path, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with(&format!("{}: ", path.display())), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    let path = write(&cfg_dir, "admin.yaml", &format!("{BASE}  TLS:\n    Enabled: true\n    Certificate: tls/server.crt\n    PrivateKey: tls/server.key\n"));
    let msg = OrdererConfig::load_with_env(&path, env(&[]))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        format!(
            "{}: Admin.TLS.ClientAuthRequired: must be true when Admin.TLS.Enabled is (admin clients are identified by their TLS certificate)",
            path.display()
        )
    );

    let err = OrdererConfig::load_with_env(&cfg_dir.join("absent.yaml"), env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn example_network_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../network-configs/test-network");
    for (i, (client, cluster, admin, ops)) in [
        (7050, 7055, 7053, 8443),
        (8050, 8055, 8053, 8444),
        (9050, 9055, 9053, 8445),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("orderer{i}.yaml"));
        let cfg = OrdererConfig::load_with_env(&path, env(&[])).unwrap();
        assert_eq!(cfg.client_listen_address(), format!("127.0.0.1:{client}"));
        assert_eq!(
            cfg.cluster_listen_address(),
            Some(format!("127.0.0.1:{cluster}"))
        );
        assert_eq!(cfg.admin.listen_address, format!("127.0.0.1:{admin}"));
        assert_eq!(cfg.operations.listen_address, format!("127.0.0.1:{ops}"));
        assert_eq!(cfg.general.local_msp_id, "OrdererMSP");
        assert!(cfg.general.tls.enabled && cfg.admin.tls.client_auth_required);
        assert!(cfg.ignored_keys().is_empty());
        assert!(cfg
            .general
            .tls
            .certificate
            .ends_with(format!("orderers/orderer{i}.example.com/tls/server.crt")));
        assert!(cfg
            .file_ledger
            .location
            .ends_with(format!(".twill-network/orderer{i}")));
    }
}
