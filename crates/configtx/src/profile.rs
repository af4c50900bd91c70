//! The `configtx.yaml` file, in Fabric's format.
//!
//! Only the `Profiles` section is read as data; the other top-level
//! sections (`Organizations`, `Capabilities`, `Application`, `Orderer`,
//! `Channel`) exist in Fabric files to hold YAML anchors that profiles merge
//! in, and the YAML parser resolves those anchors and `<<:` merge keys
//! before we see the profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{ConfigtxError, Result};

/// A whole `configtx.yaml`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigtxFile {
    /// Named channel profiles.
    #[serde(rename = "Profiles", default, deserialize_with = "null_as_default")]
    pub profiles: BTreeMap<String, Profile>,
    /// Anchor-holding sections, accepted and otherwise ignored.
    #[serde(flatten)]
    _rest: BTreeMap<String, serde::de::IgnoredAny>,
}

/// One channel profile: what a genesis block is built from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Channel-level policies (`Readers`, `Writers`, `Admins`).
    #[serde(rename = "Policies", default, deserialize_with = "null_as_default")]
    pub policies: BTreeMap<String, PolicyDef>,
    /// Channel capabilities, e.g. `V2_0: true`.
    #[serde(rename = "Capabilities", default, deserialize_with = "null_as_default")]
    pub capabilities: BTreeMap<String, bool>,
    /// Consortium name (system-channel era; kept for compatibility).
    #[serde(rename = "Consortium", default)]
    pub consortium: Option<String>,
    /// Ordering service section.
    #[serde(rename = "Orderer", default)]
    pub orderer: Option<OrdererSection>,
    /// Application section.
    #[serde(rename = "Application", default)]
    pub application: Option<ApplicationSection>,
    /// System-channel consortiums (Fabric 1.x/2.x era); accepted, ignored.
    #[serde(rename = "Consortiums", default)]
    _consortiums: Option<serde::de::IgnoredAny>,
}

/// A policy as written in YAML: `Type` is `Signature` or `ImplicitMeta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDef {
    /// `Signature` or `ImplicitMeta`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The rule: a policy expression, or `ANY|ALL|MAJORITY <SubPolicy>`.
    #[serde(rename = "Rule")]
    pub rule: String,
}

/// An organisation definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Name of the org's config group (usually equal to the MSP id).
    #[serde(rename = "Name")]
    pub name: String,
    /// MSP id.
    #[serde(rename = "ID")]
    pub id: String,
    /// MSP folder, relative to the `configtx.yaml` file.
    #[serde(rename = "MSPDir")]
    pub msp_dir: Option<PathBuf>,
    /// MSP type; only `bccsp` (X.509) is supported.
    #[serde(rename = "MSPType", default)]
    pub msp_type: Option<String>,
    /// The org's policies.
    #[serde(rename = "Policies", default, deserialize_with = "null_as_default")]
    pub policies: BTreeMap<String, PolicyDef>,
    /// Anchor peers (application orgs).
    #[serde(rename = "AnchorPeers", default, deserialize_with = "null_as_default")]
    pub anchor_peers: Vec<AnchorPeerDef>,
    /// Orderer endpoints (orderer orgs), `host:port`.
    #[serde(
        rename = "OrdererEndpoints",
        default,
        deserialize_with = "null_as_default"
    )]
    pub orderer_endpoints: Vec<String>,
    /// Leave the org's MSP and policies out (an org defined elsewhere).
    #[serde(rename = "SkipAsForeign", default)]
    pub skip_as_foreign: bool,
    /// Fabric 1.x admin principal setting; accepted, ignored.
    #[serde(rename = "AdminPrincipal", default)]
    _admin_principal: Option<serde::de::IgnoredAny>,
}

/// An anchor peer address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorPeerDef {
    /// Host name or IP.
    #[serde(rename = "Host")]
    pub host: String,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
}

/// The `Orderer` section of a profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererSection {
    /// Consensus type; Twill supports `etcdraft`.
    #[serde(rename = "OrdererType", default = "default_orderer_type")]
    pub orderer_type: String,
    /// Legacy channel-level orderer addresses.
    #[serde(rename = "Addresses", default, deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    /// Block cutting timeout, e.g. `2s` or `250ms`.
    #[serde(rename = "BatchTimeout", default = "default_batch_timeout")]
    pub batch_timeout: String,
    /// Block size limits.
    #[serde(rename = "BatchSize", default)]
    pub batch_size: BatchSizeDef,
    /// Max channels (system channel era; 0 = unlimited).
    #[serde(rename = "MaxChannels", default)]
    pub max_channels: u64,
    /// Raft settings.
    #[serde(rename = "EtcdRaft", default)]
    pub etcd_raft: Option<EtcdRaftDef>,
    /// Orderer organisations.
    #[serde(
        rename = "Organizations",
        default,
        deserialize_with = "null_as_default"
    )]
    pub organizations: Vec<Organization>,
    /// Orderer group policies (`Readers`, `Writers`, `Admins`, `BlockValidation`).
    #[serde(rename = "Policies", default, deserialize_with = "null_as_default")]
    pub policies: BTreeMap<String, PolicyDef>,
    /// Orderer capabilities.
    #[serde(rename = "Capabilities", default, deserialize_with = "null_as_default")]
    pub capabilities: BTreeMap<String, bool>,
    /// Kafka settings (removed from Fabric 2.x ordering); accepted, ignored.
    #[serde(rename = "Kafka", default)]
    _kafka: Option<serde::de::IgnoredAny>,
    /// BFT settings; accepted, ignored (Twill orders with etcdraft).
    #[serde(rename = "SmartBFT", default)]
    _smart_bft: Option<serde::de::IgnoredAny>,
    /// BFT consenter mapping; accepted, ignored.
    #[serde(rename = "ConsenterMapping", default)]
    _consenter_mapping: Option<serde::de::IgnoredAny>,
}

fn default_orderer_type() -> String {
    "etcdraft".to_string()
}

fn default_batch_timeout() -> String {
    "2s".to_string()
}

/// `BatchSize` as written in YAML; sizes accept `KB`/`MB`/`GB` suffixes
/// (powers of 1024, as Fabric reads them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSizeDef {
    /// Max transactions per block.
    #[serde(rename = "MaxMessageCount", default = "default_max_message_count")]
    pub max_message_count: u32,
    /// Hard cap on a block's serialized transactions.
    #[serde(rename = "AbsoluteMaxBytes", default = "default_absolute_max_bytes")]
    pub absolute_max_bytes: ByteSize,
    /// Preferred block size.
    #[serde(rename = "PreferredMaxBytes", default = "default_preferred_max_bytes")]
    pub preferred_max_bytes: ByteSize,
}

impl Default for BatchSizeDef {
    fn default() -> Self {
        BatchSizeDef {
            max_message_count: default_max_message_count(),
            absolute_max_bytes: default_absolute_max_bytes(),
            preferred_max_bytes: default_preferred_max_bytes(),
        }
    }
}

fn default_max_message_count() -> u32 {
    500
}

fn default_absolute_max_bytes() -> ByteSize {
    ByteSize::Text("10 MB".into())
}

fn default_preferred_max_bytes() -> ByteSize {
    ByteSize::Text("2 MB".into())
}

/// A byte count given as a number or as text like `99 MB`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// A plain number of bytes.
    Bytes(u64),
    /// Text with an optional `KB`, `MB` or `GB` suffix.
    Text(String),
}

impl ByteSize {
    /// The size in bytes; `field` names the setting in errors.
    pub fn to_bytes(&self, field: &str) -> Result<u32> {
        let value = match self {
            ByteSize::Bytes(n) => *n,
            ByteSize::Text(text) => parse_byte_size(text).ok_or_else(|| ConfigtxError::Field {
                field: field.to_string(),
                reason: format!("'{text}' is not a size (use e.g. 512 KB, 99 MB)"),
            })?,
        };
        u32::try_from(value).map_err(|_| ConfigtxError::Field {
            field: field.to_string(),
            reason: format!("{value} bytes does not fit in 32 bits"),
        })
    }
}

fn parse_byte_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The `EtcdRaft` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdRaftDef {
    /// The Raft consenters.
    #[serde(rename = "Consenters", default, deserialize_with = "null_as_default")]
    pub consenters: Vec<ConsenterDef>,
    /// Raft tuning options.
    #[serde(rename = "Options", default)]
    pub options: Option<EtcdRaftOptionsDef>,
}

/// One Raft consenter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsenterDef {
    /// Host name or IP of the orderer's cluster endpoint.
    #[serde(rename = "Host")]
    pub host: String,
    /// Cluster port.
    #[serde(rename = "Port")]
    pub port: u32,
    /// PEM file of the orderer's client TLS cert, relative to `configtx.yaml`.
    #[serde(rename = "ClientTLSCert")]
    pub client_tls_cert: PathBuf,
    /// PEM file of the orderer's server TLS cert, relative to `configtx.yaml`.
    #[serde(rename = "ServerTLSCert")]
    pub server_tls_cert: PathBuf,
}

/// Raft options; unset fields take Fabric's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdRaftOptionsDef {
    /// Tick interval, e.g. `500ms`.
    #[serde(rename = "TickInterval", default)]
    pub tick_interval: Option<String>,
    /// Ticks without a heartbeat before an election.
    #[serde(rename = "ElectionTick", default)]
    pub election_tick: Option<u32>,
    /// Ticks between heartbeats.
    #[serde(rename = "HeartbeatTick", default)]
    pub heartbeat_tick: Option<u32>,
    /// Max in-flight append messages.
    #[serde(rename = "MaxInflightBlocks", default)]
    pub max_inflight_blocks: Option<u32>,
    /// Bytes of log between snapshots.
    #[serde(rename = "SnapshotIntervalSize", default)]
    pub snapshot_interval_size: Option<ByteSize>,
}

/// The `Application` section of a profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSection {
    /// Member organisations.
    #[serde(
        rename = "Organizations",
        default,
        deserialize_with = "null_as_default"
    )]
    pub organizations: Vec<Organization>,
    /// Application policies (`Readers`, `Writers`, `Admins`,
    /// `LifecycleEndorsement`, `Endorsement`).
    #[serde(rename = "Policies", default, deserialize_with = "null_as_default")]
    pub policies: BTreeMap<String, PolicyDef>,
    /// Application capabilities, e.g. `V2_5: true`.
    #[serde(rename = "Capabilities", default, deserialize_with = "null_as_default")]
    pub capabilities: BTreeMap<String, bool>,
    /// API name → policy path.
    #[serde(rename = "ACLs", default, deserialize_with = "null_as_default")]
    pub acls: BTreeMap<String, String>,
}

/// Reads a list or map field, taking an explicit YAML null (`Organizations:`
/// with nothing after it, as Fabric's sample files write) as empty.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A loaded `configtx.yaml`: the parsed file plus where it lives, since
/// every path inside is relative to it.
#[derive(Debug, Clone)]
pub struct LoadedConfigtx {
    /// The file that was read.
    pub path: PathBuf,
    /// Its parsed content.
    pub file: ConfigtxFile,
}

impl LoadedConfigtx {
    /// Reads and parses a `configtx.yaml`.
    pub fn load(path: &Path) -> Result<LoadedConfigtx> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigtxError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file = parse_yaml(path, &text)?;
        Ok(LoadedConfigtx {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Looks up a profile by name.
    pub fn profile(&self, name: &str) -> Result<&Profile> {
        self.file
            .profiles
            .get(name)
            .ok_or_else(|| ConfigtxError::UnknownProfile {
                file: self.path.clone(),
                profile: name.to_string(),
                known: self.file.profiles.keys().cloned().collect(),
            })
    }

    /// Resolves a path written in the file against the file's folder.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        if relative.is_absolute() {
            return relative.to_path_buf();
        }
        self.path
            .parent()
            .map(|dir| dir.join(relative))
            .unwrap_or_else(|| relative.to_path_buf())
    }
}

/// Parses YAML text, turning parser errors into one line that names the
/// file, line and column.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_saphyr::from_str(text).map_err(|e| ConfigtxError::Yaml {
        path: path.to_path_buf(),
        message: first_line(&e.to_string()),
    })
}

fn first_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or(msg).trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_use_powers_of_1024() {
        assert_eq!(parse_byte_size("99 MB"), Some(99 * 1024 * 1024));
        assert_eq!(parse_byte_size("512 KB"), Some(512 * 1024));
        assert_eq!(parse_byte_size("1024"), Some(1024));
        assert_eq!(parse_byte_size("3 parsecs"), None);
        assert!(ByteSize::Text("5000 GB".into()).to_bytes("X").is_err());
    }

    #[test]
    fn fabric_only_keys_and_null_lists_are_accepted() {
        let yaml = "Profiles:\n  P:\n    Consortiums: {}\n    Orderer:\n      OrdererType: etcdraft\n      Kafka:\n        Brokers: [a:9092]\n      Addresses:\n      Organizations:\n    Application:\n      Organizations:\n      ACLs:\n";
        let f: ConfigtxFile = parse_yaml(Path::new("c.yaml"), yaml).unwrap();
        let p = &f.profiles["P"];
        assert!(p.orderer.as_ref().unwrap().organizations.is_empty());
        assert!(p.application.as_ref().unwrap().acls.is_empty());
    }

    #[test]
    fn yaml_errors_are_one_line_with_position() {
        let err = parse_yaml::<ConfigtxFile>(Path::new("c.yaml"), "Profiles: [\n").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.starts_with("c.yaml: line 1 column"), "{msg}");
    }
}
