//! Integration tests for `twill-cryptogen`: generate real material into temp
//! dirs and inspect it the way a Fabric MSP would.

// Helpers outside `#[test]` fns are not covered by clippy.toml's
// allow-unwrap-in-tests; in a test binary a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod certs;
mod errors;
mod layout;
mod test_network;

use std::path::{Path, PathBuf};

use x509_parser::pem::Pem;
use x509_parser::prelude::*;

/// One orderer org with three explicitly named orderers, and two peer orgs
/// with one templated peer and one user each.
pub const THREE_ORGS: &str = r#"
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer0
        SANS: [localhost, 127.0.0.1]
      - Hostname: orderer1
        SANS: [localhost, 127.0.0.1]
      - Hostname: orderer2
        SANS: [localhost, 127.0.0.1]
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    EnableNodeOUs: true
    Template:
      Count: 1
      SANS: [localhost, 127.0.0.1]
    Users:
      Count: 1
  - Name: Org2
    Domain: org2.example.com
    EnableNodeOUs: true
    Template:
      Count: 1
    Users:
      Count: 1
"#;

/// Parses `yaml` and generates into a fresh temp dir.
pub fn generate_from(yaml: &str) -> (tempfile::TempDir, twill_cryptogen::GenerateReport) {
    let config = twill_cryptogen::parse_config(yaml, "test.yaml").expect("config parses");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = twill_cryptogen::generate(&config, dir.path()).expect("generate");
    (dir, report)
}

/// Reads the single PEM block in `path`.
pub fn read_pem(path: &Path) -> Pem {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (rest, pem) = parse_x509_pem(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        rest.iter().all(u8::is_ascii_whitespace),
        "{}: trailing data",
        path.display()
    );
    pem
}

/// Every regular file below `root`, sorted.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Subject attribute values of one type, in order.
pub fn ous(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_organizational_unit()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

pub fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .map(|a| a.as_str().unwrap().to_string())
        .unwrap_or_default()
}
