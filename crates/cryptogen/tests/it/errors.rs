//! Bad input is reported with the file, the position and the field.

use std::path::Path;

use twill_cryptogen::{load_config, CryptogenError};

/// Writes `yaml` to `crypto-config.yaml` in a temp dir and loads it.
fn load(yaml: &str) -> (tempfile::TempDir, CryptogenError) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crypto-config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let err = load_config(&path).expect_err("config must be rejected");
    (dir, err)
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let yaml = "PeerOrgs:\n  - Name: Org1\n    Domain: org1.example.com\n    Users: {Count: 1\n";
    let (dir, err) = load(yaml);
    let file = dir.path().join("crypto-config.yaml").display().to_string();
    match &err {
        CryptogenError::Yaml { file: f, line, .. } => {
            assert_eq!(f, &file);
            assert!(line.is_some_and(|l| l >= 4), "{err}");
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with(&format!("{file}:")), "{text}");
    assert!(text.contains("crypto-config.yaml:"), "{text}");
}

#[test]
fn bad_indentation_reports_its_line() {
    let yaml = "PeerOrgs:\n - Name: a\n   Domain: x\n  Foo: 1\n";
    let (_dir, err) = load(yaml);
    match &err {
        CryptogenError::Yaml { line, column, .. } => {
            assert_eq!(*line, Some(4), "{err}");
            assert!(column.is_some());
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
}

#[test]
fn missing_domain_names_the_field() {
    let yaml = "\
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    Specs:
      - Hostname: orderer0
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
  - Name: Org2
    Template:
      Count: 1
";
    let (_dir, err) = load(yaml);
    match &err {
        CryptogenError::InvalidConfig {
            field,
            reason,
            line,
            ..
        } => {
            assert_eq!(field, "PeerOrgs[1].Domain");
            assert_eq!(reason, "missing field");
            assert_eq!(*line, Some(9));
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.ends_with("crypto-config.yaml:9: PeerOrgs[1].Domain: missing field"),
        "{text}"
    );
}

#[test]
fn missing_spec_hostname_names_the_field() {
    let yaml = "OrdererOrgs:\n  - Domain: example.com\n    Specs:\n      - SANS: [localhost]\n";
    let (_dir, err) = load(yaml);
    assert!(
        err.to_string()
            .ends_with("crypto-config.yaml:4: OrdererOrgs[0].Specs[0].Hostname: missing field"),
        "{err}"
    );
}

#[test]
fn unknown_key_is_rejected_by_name() {
    let yaml = "PeerOrgs:\n  - Name: Org1\n    Domain: org1.example.com\n    EnableNodeOus: true\n";
    let (_dir, err) = load(yaml);
    let text = err.to_string();
    assert!(text.contains("EnableNodeOus"), "{text}");
    assert!(text.contains("crypto-config.yaml:4:"), "{text}");

    // Nested sections reject unknown keys too.
    let yaml = "PeerOrgs:\n  - Domain: org1.example.com\n    Template:\n      Count: 1\n      Prefix: node\n";
    let (_dir, err) = load(yaml);
    let text = err.to_string();
    assert!(text.contains("Prefix"), "{text}");
    assert!(text.contains("crypto-config.yaml:5:"), "{text}");

    // So does the top level.
    let (_dir, err) = load("PeerOrganizations: []\n");
    assert!(err.to_string().contains("PeerOrganizations"), "{err}");
}

#[test]
fn wrong_type_is_reported_with_position() {
    let yaml = "PeerOrgs:\n  - Domain: org1.example.com\n    Users:\n      Count: lots\n";
    let (_dir, err) = load(yaml);
    assert!(err.to_string().contains("crypto-config.yaml:4:"), "{err}");
}

#[test]
fn nonexistent_file_is_an_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope/crypto-config.yaml");
    let err = load_config(&path).unwrap_err();
    match &err {
        CryptogenError::Io { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn unwritable_output_is_an_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the output directory should be.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, "not a directory").unwrap();
    let config = twill_cryptogen::parse_config(crate::THREE_ORGS, "test.yaml").unwrap();
    let err = twill_cryptogen::generate(&config, Path::new(&blocker)).unwrap_err();
    assert!(matches!(err, CryptogenError::Io { .. }), "{err:?}");
}
