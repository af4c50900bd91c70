//! Fabric's common connection profile (JSON or YAML), as written by
//! Fabric's test network and by `twill network up`.
//!
//! Only what a gateway client needs is read: the client's organization,
//! each organization's MSP id and peers, and each peer's URL, TLS CA
//! certificates and TLS host name override. Other keys are ignored.
//!
//! ```
//! use twill_client::ConnectionProfile;
//!
//! let profile = ConnectionProfile::from_yaml(r#"
//! name: test-network-org1
//! client:
//!   organization: Org1
//! organizations:
//!   Org1:
//!     mspid: Org1MSP
//!     peers: [peer0.org1.example.com]
//! peers:
//!   peer0.org1.example.com:
//!     url: grpc://127.0.0.1:7051
//! "#)?;
//! let peer = profile.peer(None, None)?;
//! assert_eq!(peer.msp_id, "Org1MSP");
//! assert_eq!(peer.address, "127.0.0.1:7051");
//! assert!(!peer.tls);
//! # Ok::<(), twill_client::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gateway::Endpoint;

/// A parsed connection profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectionProfile {
    /// The profile's name.
    pub name: String,
    /// The `client` section.
    pub client: ClientSection,
    /// Organizations by name (`Org1`).
    pub organizations: BTreeMap<String, Organization>,
    /// Peers by name (`peer0.org1.example.com`).
    pub peers: BTreeMap<String, Peer>,
    /// The folder relative `tlsCACerts.path` entries are read from: the
    /// profile file's folder, or the working directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    source: Option<PathBuf>,
}

/// The profile's `client` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClientSection {
    /// The organization the client belongs to (a key of `organizations`).
    pub organization: Option<String>,
}

/// An entry of `organizations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Organization {
    /// The MSP id.
    pub mspid: String,
    /// Names of the organization's peers (keys of `peers`).
    pub peers: Vec<String>,
}

/// An entry of `peers`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Peer {
    /// `grpcs://host:port` (TLS) or `grpc://host:port` (plain text).
    pub url: String,
    /// The TLS CA certificates that sign the peer's TLS certificate.
    #[serde(rename = "tlsCACerts")]
    pub tls_ca_certs: Option<TlsCaCerts>,
    /// gRPC options; only the TLS host name override is used.
    pub grpc_options: GrpcOptions,
}

/// `tlsCACerts`: inline PEM or a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsCaCerts {
    /// PEM text.
    pub pem: Option<String>,
    /// A PEM file, relative to the profile's folder.
    pub path: Option<PathBuf>,
}

/// `grpcOptions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcOptions {
    /// The host name to verify the peer's TLS certificate against.
    #[serde(rename = "ssl-target-name-override")]
    pub ssl_target_name_override: Option<String>,
    /// Same meaning; used when `ssl-target-name-override` is absent.
    #[serde(rename = "hostnameOverride")]
    pub hostname_override: Option<String>,
}

/// A peer picked from a profile, resolved to what dialing it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEndpoint {
    /// The peer's name in the profile.
    pub name: String,
    /// The organization's MSP id.
    pub msp_id: String,
    /// `host:port`.
    pub address: String,
    /// Whether the URL asks for TLS (`grpcs://`).
    pub tls: bool,
    /// The TLS CA certificates (PEM), when TLS is used.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// The TLS host name override, if any.
    pub server_name: Option<String>,
}

impl PeerEndpoint {
    /// The [`Endpoint`] to pass to the gateway builder; fails for a TLS
    /// peer without CA certificates.
    pub fn endpoint(&self) -> Result<Endpoint> {
        if !self.tls {
            return Ok(Endpoint::plaintext(&self.address));
        }
        let Some(ca) = &self.tls_ca_pem else {
            return Err(Error::Profile {
                path: None,
                reason: format!("peer {} uses TLS but has no tlsCACerts", self.name),
            });
        };
        let mut endpoint = Endpoint::tls(&self.address, ca.clone());
        if let Some(name) = &self.server_name {
            endpoint = endpoint.server_name(name);
        }
        Ok(endpoint)
    }
}

impl ConnectionProfile {
    /// Reads a profile file: JSON when the name ends in `.json`, YAML
    /// otherwise.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parsed = if json {
            Self::from_json(&text)
        } else {
            Self::from_yaml(&text)
        };
        let mut profile = parsed.map_err(|e| match e {
            Error::Profile { reason, .. } => Error::Profile {
                path: Some(path.to_path_buf()),
                reason,
            },
            other => other,
        })?;
        profile.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        profile.source = Some(path.to_path_buf());
        Ok(profile)
    }

    /// Parses a JSON profile.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Profile {
            path: None,
            reason: e.to_string(),
        })
    }

    /// Parses a YAML profile.
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| Error::Profile {
            path: None,
            reason: e.to_string(),
        })
    }

    fn error(&self, reason: String) -> Error {
        Error::Profile {
            path: self.source.clone(),
            reason,
        }
    }

    /// The organization named `org`, or without a name the client's
    /// organization (`client.organization`), or the only one. Returns its
    /// name too.
    pub fn organization(&self, org: Option<&str>) -> Result<(&str, &Organization)> {
        let name = match org.or(self.client.organization.as_deref()) {
            Some(name) => name,
            None => {
                let mut names = self.organizations.keys();
                match (names.next(), names.next()) {
                    (Some(only), None) => only.as_str(),
                    (None, _) => return Err(self.error("no organizations".into())),
                    (Some(_), Some(_)) => {
                        return Err(self.error(
                            "several organizations and no client.organization; name one".into(),
                        ))
                    }
                }
            }
        };
        self.organizations
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| self.error(format!("no organization {name}")))
    }

    /// A peer of organization `org` (see [`ConnectionProfile::organization`]):
    /// the one named `peer`, or the organization's first.
    pub fn peer(&self, org: Option<&str>, peer: Option<&str>) -> Result<PeerEndpoint> {
        let (org_name, organization) = self.organization(org)?;
        let name = match peer {
            Some(p) => {
                if !organization.peers.iter().any(|n| n == p) {
                    return Err(self.error(format!("organization {org_name} has no peer {p}")));
                }
                p
            }
            None => organization
                .peers
                .first()
                .ok_or_else(|| self.error(format!("organization {org_name} lists no peers")))?,
        };
        let entry = self
            .peers
            .get(name)
            .ok_or_else(|| self.error(format!("peer {name} is not in peers")))?;
        let (tls, address) = if let Some(rest) = entry.url.strip_prefix("grpcs://") {
            (true, rest)
        } else if let Some(rest) = entry.url.strip_prefix("grpc://") {
            (false, rest)
        } else {
            return Err(self.error(format!(
                "peer {name}: url {:?} must start with grpcs:// or grpc://",
                entry.url
            )));
        };
        let tls_ca_pem = match &entry.tls_ca_certs {
            Some(TlsCaCerts { pem: Some(pem), .. }) => Some(pem.clone().into_bytes()),
            Some(TlsCaCerts {
                path: Some(path), ..
            }) => {
                let full = self.base_dir.join(path);
                Some(std::fs::read(&full).map_err(|source| Error::Io { path: full, source })?)
            }
            _ => None,
        };
        let options = &entry.grpc_options;
        Ok(PeerEndpoint {
            name: name.to_owned(),
            msp_id: organization.mspid.clone(),
            address: address.to_owned(),
            tls,
            tls_ca_pem,
            server_name: options
                .ssl_target_name_override
                .clone()
                .or_else(|| options.hostname_override.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
        "name": "test-network-org1",
        "version": "1.0.0",
        "client": {"organization": "Org1", "connection": {"timeout": {"peer": {"endorser": "300"}}}},
        "organizations": {
            "Org1": {"mspid": "Org1MSP", "peers": ["peer0.org1.example.com", "peer1.org1.example.com"], "certificateAuthorities": []}
        },
        "peers": {
            "peer0.org1.example.com": {
                "url": "grpcs://127.0.0.1:7051",
                "tlsCACerts": {"pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
                "grpcOptions": {"ssl-target-name-override": "peer0.org1.example.com", "hostnameOverride": "x"}
            },
            "peer1.org1.example.com": {
                "url": "grpcs://127.0.0.1:8051",
                "tlsCACerts": {"path": "ca.pem"},
                "grpcOptions": {"hostnameOverride": "peer1.org1.example.com", "request-timeout": 120001}
            }
        }
    }"#;

    // As `twill network up` writes it: quoted keys, a literal PEM block.
    const YAML: &str = r#"---
"name": "test-network-org2"
"version": "1.0.0"
"client":
  "organization": "Org2"
  "connection":
    "timeout":
      "peer":
        "endorser": "300"
"organizations":
  "Org2":
    "mspid": "Org2MSP"
    "peers":
      - "peer0.org2.example.com"
    "certificateAuthorities": []
"peers":
  "peer0.org2.example.com":
    "url": "grpcs://127.0.0.1:9051"
    "tlsCACerts":
      "pem": |
        -----BEGIN CERTIFICATE-----
        BBBB
        -----END CERTIFICATE-----
    "grpcOptions":
      "ssl-target-name-override": "peer0.org2.example.com"
      "hostnameOverride": "peer0.org2.example.com"
"#;

    #[test]
    fn json_profile() {
        let p = ConnectionProfile::from_json(JSON).unwrap();
        let peer = p.peer(None, None).unwrap();
        assert_eq!(peer.name, "peer0.org1.example.com");
        assert_eq!(peer.msp_id, "Org1MSP");
        assert_eq!(peer.address, "127.0.0.1:7051");
        assert!(peer.tls);
        assert!(String::from_utf8(peer.tls_ca_pem.clone().unwrap())
            .unwrap()
            .contains("AAAA"));
        assert_eq!(peer.server_name.as_deref(), Some("peer0.org1.example.com"));
        assert!(peer.endpoint().is_ok());
        // A missing CA file is an I/O error naming it.
        let err = p
            .peer(Some("Org1"), Some("peer1.org1.example.com"))
            .unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert!(p.peer(None, Some("peer9")).is_err());
        assert!(p.peer(Some("Org9"), None).is_err());
    }

    #[test]
    fn yaml_profile_as_twill_writes_it() {
        let p = ConnectionProfile::from_yaml(YAML).unwrap();
        let peer = p.peer(None, None).unwrap();
        assert_eq!(peer.msp_id, "Org2MSP");
        assert_eq!(peer.address, "127.0.0.1:9051");
        assert_eq!(
            String::from_utf8(peer.tls_ca_pem.unwrap()).unwrap(),
            "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(peer.server_name.as_deref(), Some("peer0.org2.example.com"));
    }

    #[test]
    fn files_and_relative_ca_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
        let json = dir.path().join("connection-org1.json");
        std::fs::write(&json, JSON).unwrap();
        let p = ConnectionProfile::from_file(&json).unwrap();
        let peer1 = p.peer(None, Some("peer1.org1.example.com")).unwrap();
        assert_eq!(peer1.tls_ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(peer1.server_name.as_deref(), Some("peer1.org1.example.com"));

        let yaml = dir.path().join("connection-org2.yaml");
        std::fs::write(&yaml, YAML).unwrap();
        assert_eq!(
            ConnectionProfile::from_file(&yaml)
                .unwrap()
                .peer(None, None)
                .unwrap()
                .address,
            "127.0.0.1:9051"
        );

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "peers: [1, 2").unwrap();
        let err = ConnectionProfile::from_file(&bad).unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }

    #[test]
    fn organization_choice() {
        let two = r#"{"organizations": {"A": {"mspid": "AMSP", "peers": ["p"]}, "B": {"mspid": "BMSP"}},
                      "peers": {"p": {"url": "grpc://localhost:1"}}}"#;
        let p = ConnectionProfile::from_json(two).unwrap();
        assert!(p.organization(None).is_err());
        assert_eq!(p.organization(Some("B")).unwrap().1.mspid, "BMSP");
        let peer = p.peer(Some("A"), None).unwrap();
        assert!(!peer.tls);
        assert!(p.peer(Some("B"), None).is_err());
        let bad_url = r#"{"organizations": {"A": {"mspid": "AMSP", "peers": ["p"]}},
                          "peers": {"p": {"url": "http://localhost:1"}}}"#;
        assert!(ConnectionProfile::from_json(bad_url)
            .unwrap()
            .peer(None, None)
            .is_err());
    }
}
