//! Reading a Fabric `msp/` folder into the channel-config MSP value.
//!
//! The folder layout is Fabric's (as written by `cryptogen` and Fabric CA):
//!
//! | entry | holds |
//! | --- | --- |
//! | `cacerts/` | root CA certificates (required, non-empty) |
//! | `intermediatecerts/` | intermediate CA certificates |
//! | `admincerts/` | admin certificates (pre-NodeOU style) |
//! | `crls/` | X.509 CRLs, PEM |
//! | `tlscacerts/`, `tlsintermediatecerts/` | TLS CA certificates |
//! | `signcerts/`, `keystore/` | the local signing identity (see [`crate::SigningIdentity`]) |
//! | `config.yaml` | OU identifiers and NodeOUs |

use crate::error::{MspError, Result};
use crate::identity::first_pem_block;
use crate::msp::FABRIC_MSP_TYPE;
use prost::Message;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use twill_protos::msp::{
    FabricCryptoConfig, FabricMspConfig, FabricNodeOUs, FabricOuIdentifier, MspConfig,
};

/// Sub-folder of root CA certificates.
pub const CACERTS_DIR: &str = "cacerts";
/// Sub-folder of intermediate CA certificates.
pub const INTERMEDIATECERTS_DIR: &str = "intermediatecerts";
/// Sub-folder of admin certificates.
pub const ADMINCERTS_DIR: &str = "admincerts";
/// Sub-folder of CRLs.
pub const CRLS_DIR: &str = "crls";
/// Sub-folder of TLS root CA certificates.
pub const TLSCACERTS_DIR: &str = "tlscacerts";
/// Sub-folder of TLS intermediate CA certificates.
pub const TLSINTERMEDIATECERTS_DIR: &str = "tlsintermediatecerts";
/// Sub-folder holding the local signing certificate.
pub const SIGNCERTS_DIR: &str = "signcerts";
/// Sub-folder holding the local private key.
pub const KEYSTORE_DIR: &str = "keystore";
/// The OU / NodeOU configuration file.
pub const CONFIG_FILE: &str = "config.yaml";

/// `config.yaml` of an MSP folder. Unknown keys are ignored, as Fabric does.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(rename = "OrganizationalUnitIdentifiers", default)]
    organizational_unit_identifiers: Option<Vec<OuIdentifierEntry>>,
    #[serde(rename = "NodeOUs", default)]
    node_ous: Option<NodeOusEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct OuIdentifierEntry {
    #[serde(rename = "Certificate", default)]
    certificate: Option<String>,
    #[serde(rename = "OrganizationalUnitIdentifier", default)]
    organizational_unit_identifier: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NodeOusEntry {
    #[serde(rename = "Enable", default)]
    enable: bool,
    #[serde(rename = "ClientOUIdentifier", default)]
    client: Option<OuIdentifierEntry>,
    #[serde(rename = "PeerOUIdentifier", default)]
    peer: Option<OuIdentifierEntry>,
    #[serde(rename = "AdminOUIdentifier", default)]
    admin: Option<OuIdentifierEntry>,
    #[serde(rename = "OrdererOUIdentifier", default)]
    orderer: Option<OuIdentifierEntry>,
}

/// Builds the channel-config MSP value (`FabricMSPConfig`) of MSP `mspid`
/// from a Fabric `msp/` folder.
///
/// Reads `cacerts/` (required and non-empty), `intermediatecerts/`,
/// `admincerts/`, `crls/`, `tlscacerts/`, `tlsintermediatecerts/` and
/// `config.yaml` (all optional). As Fabric does, files are taken in name
/// order and each file holding PEM becomes one entry, kept byte for byte;
/// files without PEM are skipped. A file holding several blocks is not split:
/// the MSP uses only its first block, as Fabric does, so a `cacerts/` file
/// bundling a root and an intermediate adds the root only. Certificate paths
/// in `config.yaml` are relative to `dir` and must exist; every entry of
/// `OrganizationalUnitIdentifiers` must name one (NodeOU entries may omit
/// it). As Fabric's config builder, `NodeOUs` is only kept when `Enable` is
/// true, and only its role entries with a non-empty OU. No signing identity
/// is included; `crypto_config` is `{SHA2, SHA256}`.
pub fn load_fabric_msp_config(dir: &Path, mspid: &str) -> Result<FabricMspConfig> {
    let meta = std::fs::metadata(dir).map_err(|e| MspError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(MspError::MissingPath {
            path: dir.to_path_buf(),
        });
    }
    let cacerts = dir.join(CACERTS_DIR);
    let root_certs = read_pem_dir(&cacerts, true)?;
    if root_certs.is_empty() {
        return Err(MspError::NoCertificateIn { path: cacerts });
    }

    let mut cfg = FabricMspConfig {
        name: mspid.to_owned(),
        root_certs,
        intermediate_certs: read_pem_dir(&dir.join(INTERMEDIATECERTS_DIR), false)?,
        admins: read_pem_dir(&dir.join(ADMINCERTS_DIR), false)?,
        revocation_list: read_pem_dir(&dir.join(CRLS_DIR), false)?,
        signing_identity: None,
        organizational_unit_identifiers: Vec::new(),
        crypto_config: Some(FabricCryptoConfig {
            signature_hash_family: "SHA2".to_owned(),
            identity_identifier_hash_function: "SHA256".to_owned(),
        }),
        tls_root_certs: read_pem_dir(&dir.join(TLSCACERTS_DIR), false)?,
        tls_intermediate_certs: read_pem_dir(&dir.join(TLSINTERMEDIATECERTS_DIR), false)?,
        fabric_node_ous: None,
    };

    let config_path = dir.join(CONFIG_FILE);
    if config_path.is_file() {
        let file = read_config_file(&config_path)?;
        for entry in file.organizational_unit_identifiers.unwrap_or_default() {
            let ou = entry
                .organizational_unit_identifier
                .clone()
                .unwrap_or_default();
            if entry.certificate.as_deref().is_none_or(str::is_empty) {
                return Err(MspError::OuIdentifierWithoutCertificate { ou });
            }
            cfg.organizational_unit_identifiers
                .push(ou_identifier(dir, &entry)?);
        }
        // As Fabric's config builder: NodeOUs only when enabled, and only the
        // role entries that name an OU.
        if let Some(node_ous) = file.node_ous.filter(|n| n.enable) {
            let load = |entry: &Option<OuIdentifierEntry>| -> Result<Option<FabricOuIdentifier>> {
                entry
                    .as_ref()
                    .filter(|e| {
                        e.organizational_unit_identifier
                            .as_deref()
                            .is_some_and(|ou| !ou.is_empty())
                    })
                    .map(|e| ou_identifier(dir, e))
                    .transpose()
            };
            cfg.fabric_node_ous = Some(FabricNodeOUs {
                enable: true,
                client_ou_identifier: load(&node_ous.client)?,
                peer_ou_identifier: load(&node_ous.peer)?,
                admin_ou_identifier: load(&node_ous.admin)?,
                orderer_ou_identifier: load(&node_ous.orderer)?,
            });
        }
    }
    Ok(cfg)
}

/// Wraps a `FabricMSPConfig` as the `MSPConfig` value stored in a channel
/// config: `type` 0 (FABRIC) and the prost-encoded config.
pub fn fabric_msp_config_to_msp_config(cfg: &FabricMspConfig) -> MspConfig {
    MspConfig {
        r#type: FABRIC_MSP_TYPE,
        config: cfg.encode_to_vec(),
    }
}

fn read_config_file(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|e| MspError::io(path, e))?;
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(ConfigFile::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| MspError::InvalidConfigFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn ou_identifier(dir: &Path, entry: &OuIdentifierEntry) -> Result<FabricOuIdentifier> {
    let certificate = match entry.certificate.as_deref().filter(|c| !c.is_empty()) {
        Some(rel) => {
            let path = dir.join(rel);
            std::fs::read(&path).map_err(|e| MspError::io(path, e))?
        }
        None => Vec::new(),
    };
    Ok(FabricOuIdentifier {
        certificate,
        organizational_unit_identifier: entry
            .organizational_unit_identifier
            .clone()
            .unwrap_or_default(),
    })
}

/// Sorted regular files of `dir`; a missing `dir` is an error only if `required`.
pub(crate) fn sorted_files(dir: &Path, required: bool) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => return Err(MspError::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| MspError::io(dir, e))?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The files of `dir` that hold PEM, each kept whole as one entry.
///
/// As Fabric's `getPemMaterialFromDir`: a file is taken, byte for byte, when
/// it holds a PEM block of any kind; other files are skipped. Whoever uses an
/// entry looks at its first block only, so a bundle file counts as its first
/// certificate (or CRL) and is not split.
fn read_pem_dir(dir: &Path, required: bool) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for path in sorted_files(dir, required)? {
        let bytes = std::fs::read(&path).map_err(|e| MspError::io(&path, e))?;
        if matches!(first_pem_block(&bytes), Ok(Some(_))) {
            out.push(bytes);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_fields_parse() {
        let text = "\
NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/ca.pem
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    OrganizationalUnitIdentifier: peer
OrganizationalUnitIdentifiers:
  - Certificate: cacerts/ca.pem
    OrganizationalUnitIdentifier: COP
Unknown: ignored
";
        let file: ConfigFile = serde_saphyr::from_str(text).unwrap();
        let node = file.node_ous.unwrap();
        assert!(node.enable);
        let client = node.client.unwrap();
        assert_eq!(client.certificate.as_deref(), Some("cacerts/ca.pem"));
        assert_eq!(
            client.organizational_unit_identifier.as_deref(),
            Some("client")
        );
        assert!(node.peer.unwrap().certificate.is_none());
        assert!(node.admin.is_none());
        let ous = file.organizational_unit_identifiers.unwrap();
        assert_eq!(ous.len(), 1);
        assert_eq!(
            ous[0].organizational_unit_identifier.as_deref(),
            Some("COP")
        );
    }

    #[test]
    fn msp_config_wraps_type_zero() {
        let cfg = FabricMspConfig {
            name: "Org1MSP".into(),
            ..Default::default()
        };
        let wrapped = fabric_msp_config_to_msp_config(&cfg);
        assert_eq!(wrapped.r#type, 0);
        assert_eq!(
            FabricMspConfig::decode(wrapped.config.as_slice()).unwrap(),
            cfg
        );
    }
}
