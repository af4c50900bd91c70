//! The orderer's local configuration, read from a Fabric-style
//! `orderer.yaml`.
//!
//! Settings come in layers, the later winning:
//!
//! 1. the [`Default`] impls, which follow Fabric's `sampleconfig/orderer.yaml`
//!    (except that `BootstrapMethod` is `none`, the only method Twill has);
//! 2. the YAML file;
//! 3. environment variables in Fabric's style: `ORDERER_` and the key path
//!    upper-cased and joined by `_`, e.g. `ORDERER_GENERAL_LISTENPORT=7050`,
//!    `ORDERER_GENERAL_TLS_ENABLED=false`,
//!    `ORDERER_GENERAL_TLS_ROOTCAS=[a.crt, b.crt]`;
//! 4. command-line flags, applied by the binary.
//!
//! As in Fabric, keys are matched case-insensitively, a key left empty
//! (`ClientRootCAs:`) keeps its default, and relative paths resolve against
//! the directory of the config file. Unknown keys are refused, naming their
//! path. Keys of Fabric's `orderer.yaml` that Twill does not implement
//! (`General.Keepalive`, `Metrics`, `Consensus`, ...) are accepted and
//! reported by [`OrdererConfig::ignored_keys`] so that a Fabric file loads.
//!
//! Every error is one line naming the file and the field, e.g.
//! `orderer0.yaml: General.TLS.Certificate: file tls/server.crt not found`;
//! a value that came from the environment also names its variable.
//!
//! # Example
//!
//! ```
//! use twill_orderer::config::OrdererConfig;
//!
//! let yaml = "General:\n  ListenPort: 7050\n  LocalMSPID: OrdererMSP\nFileLedger:\n  Location: state\n";
//! let env = [("ORDERER_GENERAL_LISTENPORT".to_string(), "8050".to_string())];
//! let cfg = OrdererConfig::from_yaml_str(yaml, "/etc/orderer/orderer.yaml".as_ref(), env)?;
//! assert_eq!(cfg.general.listen_port, 8050);
//! assert_eq!(cfg.file_ledger.location, std::path::Path::new("/etc/orderer/state"));
//! # Ok::<(), twill_orderer::config::ConfigError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use std::time::Duration;
use twill_nodeconfig::{resolve, Origin};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "ORDERER";

/// The only bootstrap method Twill supports: start with no channels and
/// join them through the channel participation API.
pub const BOOTSTRAP_NONE: &str = "none";

pub use twill_nodeconfig::ConfigError;

/// Result alias of this module.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The whole `orderer.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct OrdererConfig {
    /// Client-facing listener, cluster listener and local identity.
    pub general: GeneralConfig,
    /// Where channel ledgers live.
    pub file_ledger: FileLedgerConfig,
    /// The admin REST listener (channel participation API).
    pub admin: AdminConfig,
    /// The operations HTTP listener (health, metrics, log level).
    pub operations: OperationsConfig,
    /// The channel participation API.
    pub channel_participation: ChannelParticipationConfig,
    /// Twill's own settings, mostly knobs for tests.
    pub twill: TwillConfig,
    /// Where the settings came from; not part of the file.
    #[serde(skip)]
    origin: Origin,
}

/// The `General` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct GeneralConfig {
    /// Address the Broadcast/Deliver listener binds to.
    pub listen_address: String,
    /// Port of that listener; 0 picks a free one (see
    /// [`crate::server`]'s `endpoints.json`).
    pub listen_port: u16,
    /// TLS of the client-facing listener.
    #[serde(rename = "TLS")]
    pub tls: TlsConfig,
    /// The node-to-node (Raft) listener and the TLS identity used to dial
    /// other orderers.
    pub cluster: ClusterConfig,
    /// The local MSP folder holding this orderer's signing identity.
    #[serde(rename = "LocalMSPDir")]
    pub local_msp_dir: PathBuf,
    /// The MSP id of that identity.
    #[serde(rename = "LocalMSPID")]
    pub local_msp_id: String,
    /// Must be `none`: channels are joined through the channel
    /// participation API.
    pub bootstrap_method: String,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: 7050,
            tls: TlsConfig {
                enabled: false,
                private_key: "tls/server.key".into(),
                certificate: "tls/server.crt".into(),
                root_cas: vec!["tls/ca.crt".into()],
                client_auth_required: false,
                client_root_cas: Vec::new(),
            },
            cluster: ClusterConfig::default(),
            local_msp_dir: "msp".into(),
            local_msp_id: "SampleOrg".into(),
            bootstrap_method: BOOTSTRAP_NONE.into(),
        }
    }
}

/// TLS settings of a listener (`General.TLS`, `Admin.TLS`,
/// `Operations.TLS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct TlsConfig {
    /// Serve TLS.
    pub enabled: bool,
    /// The server's private key (PEM).
    pub private_key: PathBuf,
    /// The server's certificate chain (PEM).
    pub certificate: PathBuf,
    /// CA certificates of this node's TLS CA.
    #[serde(rename = "RootCAs")]
    pub root_cas: Vec<PathBuf>,
    /// Refuse clients without a certificate chaining to `ClientRootCAs`.
    pub client_auth_required: bool,
    /// CAs that client certificates must chain to.
    #[serde(rename = "ClientRootCAs")]
    pub client_root_cas: Vec<PathBuf>,
}

/// The `General.Cluster` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct ClusterConfig {
    /// Address of the dedicated cluster listener. Empty: the cluster service
    /// shares the client-facing listener, as in Fabric.
    pub listen_address: String,
    /// Port of the dedicated cluster listener (0 picks a free one).
    pub listen_port: u16,
    /// Certificate of the dedicated cluster listener; defaults to
    /// `General.TLS.Certificate`. It is what the channel config's consenter
    /// `ServerTLSCert` must be for this node to find itself.
    pub server_certificate: PathBuf,
    /// Key of the dedicated cluster listener; defaults to
    /// `General.TLS.PrivateKey`.
    pub server_private_key: PathBuf,
    /// Certificate presented when dialing other orderers; defaults to
    /// `General.TLS.Certificate`.
    pub client_certificate: PathBuf,
    /// Key of that certificate; defaults to `General.TLS.PrivateKey`.
    pub client_private_key: PathBuf,
    /// TLS CAs of the other orderers (for dialing them and for checking
    /// their client certificates); defaults to `General.TLS.RootCAs`.
    #[serde(rename = "RootCAs")]
    pub root_cas: Vec<PathBuf>,
}

/// The `FileLedger` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct FileLedgerConfig {
    /// Root directory of the channel ledgers (one sub-directory each) and of
    /// `endpoints.json`.
    pub location: PathBuf,
}

impl Default for FileLedgerConfig {
    fn default() -> Self {
        FileLedgerConfig {
            location: "/var/hyperledger/production/orderer".into(),
        }
    }
}

/// The `Admin` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct AdminConfig {
    /// `host:port` of the admin listener; empty disables it.
    pub listen_address: String,
    /// TLS of the admin listener; when enabled, client certificates are
    /// required.
    #[serde(rename = "TLS")]
    pub tls: TlsConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen_address: "127.0.0.1:9443".into(),
            tls: TlsConfig::default(),
        }
    }
}

/// The `Operations` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct OperationsConfig {
    /// `host:port` of the operations listener; empty disables it.
    pub listen_address: String,
    /// TLS of the operations listener.
    #[serde(rename = "TLS")]
    pub tls: TlsConfig,
}

impl Default for OperationsConfig {
    fn default() -> Self {
        OperationsConfig {
            listen_address: "127.0.0.1:8443".into(),
            tls: TlsConfig::default(),
        }
    }
}

/// The `ChannelParticipation` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct ChannelParticipationConfig {
    /// Serve the channel participation API on the admin listener.
    pub enabled: bool,
    /// Largest accepted request body (a config block), as bytes or a size
    /// such as `1 MB` (powers of 1024, as Fabric).
    pub max_request_body_size: ByteSize,
}

impl Default for ChannelParticipationConfig {
    fn default() -> Self {
        ChannelParticipationConfig {
            enabled: true,
            max_request_body_size: ByteSize(1024 * 1024),
        }
    }
}

/// The `Twill` section: settings Fabric's file has no place for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct TwillConfig {
    /// Overrides the channel config's etcdraft `TickInterval` for every
    /// channel of this node (e.g. `50ms` in tests); empty keeps the
    /// channel's.
    pub raft_tick_interval: OptionalDuration,
}

/// A size in bytes, written as a number or as `<n> KB|MB|GB` (powers of
/// 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => parse_byte_size(&t).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "'{t}' is not a size (expected bytes or e.g. '1 MB', '512 KB')"
                ))
            }),
        }
    }
}

fn parse_byte_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let factor: u64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// A duration written Go-style (`500ms`, `1.5s`); empty means unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalDuration(pub Option<Duration>);

impl Serialize for OptionalDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => s.serialize_str(&twill_configtx::duration::format_go_duration(d)),
            None => s.serialize_str(""),
        }
    }
}

impl<'de> Deserialize<'de> for OptionalDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(OptionalDuration(None));
        }
        twill_configtx::duration::parse_duration(text.trim())
            .map(|d| OptionalDuration(Some(d)))
            .map_err(|e| serde::de::Error::custom(format!("'{text}' is not a duration: {e}")))
    }
}

/// Keys of Fabric's `orderer.yaml` that Twill accepts and ignores.
const FABRIC_IGNORED: &[&str] = &[
    "General.LedgerType",
    "General.Keepalive",
    "General.Backoff",
    "General.Throttling",
    "General.MaxRecvMsgSize",
    "General.MaxSendMsgSize",
    "General.Profile",
    "General.BCCSP",
    "General.Authentication",
    "General.BootstrapFile",
    "General.ConnectionTimeout",
    "General.Cluster.SendBufferSize",
    "General.Cluster.DialTimeout",
    "General.Cluster.RPCTimeout",
    "General.Cluster.ReplicationBufferSize",
    "General.Cluster.ReplicationPullTimeout",
    "General.Cluster.ReplicationRetryTimeout",
    "General.Cluster.ReplicationBackgroundRefreshInterval",
    "General.Cluster.ReplicationMaxRetries",
    "General.Cluster.ReplicationPolicy",
    "General.Cluster.CertExpirationWarningThreshold",
    "General.Cluster.TLSHandshakeTimeShift",
    "General.Cluster.ClientAuthRequired",
    "FileLedger.Prefix",
    "Kafka",
    "Debug",
    "Metrics",
    "Consensus",
    "BCCSP",
];

impl OrdererConfig {
    /// Reads `path` and applies the process's `ORDERER_*` environment.
    pub fn load(path: &Path) -> Result<OrdererConfig> {
        OrdererConfig::load_with_env(path, std::env::vars())
    }

    /// Reads `path` and applies the given environment (name, value) pairs
    /// instead of the process's.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<OrdererConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        OrdererConfig::from_yaml_str(&text, path, env)
    }

    /// Parses YAML text as if read from `path` (which names the file in
    /// errors and anchors relative paths), then applies `env`.
    pub fn from_yaml_str(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<OrdererConfig> {
        let (mut cfg, origin) =
            twill_nodeconfig::load::<OrdererConfig>(text, path, env, ENV_PREFIX, FABRIC_IGNORED)?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        cfg.resolve_paths(base);
        cfg.origin = origin;
        Ok(cfg)
    }

    /// The config file this configuration was read from (empty for
    /// [`Default`]).
    pub fn file(&self) -> &Path {
        &self.origin.file
    }

    /// Keys of Fabric's `orderer.yaml` found in the file that Twill does not
    /// use, for the caller to warn about.
    pub fn ignored_keys(&self) -> &[String] {
        &self.origin.ignored
    }

    /// An error about `field` of this configuration, in the module's
    /// one-line format (for checks made outside this module).
    pub fn field_error(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        self.origin.field_error(field, reason)
    }

    /// `host:port` of the client-facing listener.
    pub fn client_listen_address(&self) -> String {
        join_host_port(&self.general.listen_address, self.general.listen_port)
    }

    /// `host:port` of the dedicated cluster listener, or `None` when the
    /// cluster service shares the client-facing listener.
    pub fn cluster_listen_address(&self) -> Option<String> {
        let c = &self.general.cluster;
        (!c.listen_address.is_empty()).then(|| join_host_port(&c.listen_address, c.listen_port))
    }

    /// Certificate and key of the cluster listener: `Cluster.Server*`, else
    /// `General.TLS`'s.
    pub fn cluster_server_cert_key(&self) -> (PathBuf, PathBuf) {
        let c = &self.general.cluster;
        let t = &self.general.tls;
        (
            or_path(&c.server_certificate, &t.certificate),
            or_path(&c.server_private_key, &t.private_key),
        )
    }

    /// Certificate and key for dialing other orderers: `Cluster.Client*`,
    /// else `General.TLS`'s.
    pub fn cluster_client_cert_key(&self) -> (PathBuf, PathBuf) {
        let c = &self.general.cluster;
        let t = &self.general.tls;
        (
            or_path(&c.client_certificate, &t.certificate),
            or_path(&c.client_private_key, &t.private_key),
        )
    }

    /// CAs trusted for other orderers: `Cluster.RootCAs`, else
    /// `General.TLS.RootCAs`.
    pub fn cluster_root_cas(&self) -> Vec<PathBuf> {
        if self.general.cluster.root_cas.is_empty() {
            self.general.tls.root_cas.clone()
        } else {
            self.general.cluster.root_cas.clone()
        }
    }

    /// Checks what can be checked without starting: addresses, the
    /// bootstrap method, that the MSP folder and every TLS file in use
    /// exist, and the admin listener's client authentication.
    pub fn validate(&self) -> Result<()> {
        let g = &self.general;
        if g.listen_address.trim().is_empty() {
            return Err(self.field_error("General.ListenAddress", "must not be empty"));
        }
        if g.bootstrap_method != BOOTSTRAP_NONE {
            return Err(self.field_error(
                "General.BootstrapMethod",
                format!(
                    "'{}' is not supported; only '{BOOTSTRAP_NONE}' is (channels are joined \
                     through the channel participation API)",
                    g.bootstrap_method
                ),
            ));
        }
        if g.local_msp_id.trim().is_empty() {
            return Err(self.field_error("General.LocalMSPID", "must not be empty"));
        }
        self.check_dir("General.LocalMSPDir", &g.local_msp_dir)?;
        if self.file_ledger.location.as_os_str().is_empty() {
            return Err(self.field_error("FileLedger.Location", "must not be empty"));
        }
        if self.file_ledger.location.exists() && !self.file_ledger.location.is_dir() {
            return Err(self.field_error(
                "FileLedger.Location",
                format!(
                    "{} exists and is not a directory",
                    self.file_ledger.location.display()
                ),
            ));
        }

        self.check_tls("General.TLS", &g.tls)?;
        let c = &g.cluster;
        if c.listen_address.is_empty() && c.listen_port != 0 {
            return Err(self.field_error(
                "General.Cluster.ListenAddress",
                "must be set when General.Cluster.ListenPort is",
            ));
        }
        if g.tls.enabled {
            // Each cluster file falls back to its General.TLS counterpart;
            // an error names the field the path actually came from.
            let field = |own: &Path, name: &str, fallback: &str| {
                if own.as_os_str().is_empty() {
                    format!("General.TLS.{fallback}")
                } else {
                    format!("General.Cluster.{name}")
                }
            };
            let (cert, key) = self.cluster_server_cert_key();
            self.check_file(
                &field(&c.server_certificate, "ServerCertificate", "Certificate"),
                &cert,
            )?;
            self.check_file(
                &field(&c.server_private_key, "ServerPrivateKey", "PrivateKey"),
                &key,
            )?;
            let (cert, key) = self.cluster_client_cert_key();
            self.check_file(
                &field(&c.client_certificate, "ClientCertificate", "Certificate"),
                &cert,
            )?;
            self.check_file(
                &field(&c.client_private_key, "ClientPrivateKey", "PrivateKey"),
                &key,
            )?;
            let roots_field = if c.root_cas.is_empty() {
                "General.TLS.RootCAs"
            } else {
                "General.Cluster.RootCAs"
            };
            let roots = self.cluster_root_cas();
            if roots.is_empty() {
                return Err(self.field_error(
                    "General.Cluster.RootCAs",
                    "must list the TLS CAs of the other orderers (mutual TLS between orderers)",
                ));
            }
            self.check_files(roots_field, &roots)?;
        } else if self.cluster_listen_address().is_some() {
            return Err(self.field_error(
                "General.Cluster.ListenAddress",
                "a dedicated cluster listener needs General.TLS.Enabled (orderers authenticate \
                 each other by mutual TLS)",
            ));
        }

        if !self.admin.listen_address.is_empty() {
            check_host_port(self, "Admin.ListenAddress", &self.admin.listen_address)?;
            let t = &self.admin.tls;
            if t.enabled && !t.client_auth_required {
                return Err(self.field_error(
                    "Admin.TLS.ClientAuthRequired",
                    "must be true when Admin.TLS.Enabled is (admin clients are identified by \
                     their TLS certificate)",
                ));
            }
            if !t.enabled && !is_loopback_address(&self.admin.listen_address) {
                return Err(self.field_error(
                    "Admin.TLS.Enabled",
                    "the admin endpoint can join and remove channels, so without TLS it may \
                     only listen on a loopback address (127.0.0.1, ::1, localhost)",
                ));
            }
            self.check_tls("Admin.TLS", t)?;
        }
        if !self.operations.listen_address.is_empty() {
            check_host_port(
                self,
                "Operations.ListenAddress",
                &self.operations.listen_address,
            )?;
            self.check_tls("Operations.TLS", &self.operations.tls)?;
        }
        if self.channel_participation.max_request_body_size.0 == 0 {
            return Err(self.field_error(
                "ChannelParticipation.MaxRequestBodySize",
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    fn check_tls(&self, section: &str, t: &TlsConfig) -> Result<()> {
        if !t.enabled {
            return Ok(());
        }
        self.check_file(&format!("{section}.Certificate"), &t.certificate)?;
        self.check_file(&format!("{section}.PrivateKey"), &t.private_key)?;
        self.check_files(&format!("{section}.RootCAs"), &t.root_cas)?;
        if t.client_auth_required && t.client_root_cas.is_empty() {
            return Err(self.field_error(
                &format!("{section}.ClientRootCAs"),
                format!("must list at least one CA when {section}.ClientAuthRequired is true"),
            ));
        }
        self.check_files(&format!("{section}.ClientRootCAs"), &t.client_root_cas)
    }

    fn check_files(&self, field: &str, paths: &[PathBuf]) -> Result<()> {
        for (i, p) in paths.iter().enumerate() {
            self.check_file(&format!("{field}[{i}]"), p)?;
        }
        Ok(())
    }

    fn check_file(&self, field: &str, path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() {
            return Err(self.field_error(field, "must be set"));
        }
        if !path.is_file() {
            let what = if path.exists() {
                "is not a file"
            } else {
                "not found"
            };
            return Err(self.field_error(field, format!("file {} {what}", path.display())));
        }
        Ok(())
    }

    fn check_dir(&self, field: &str, path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() {
            return Err(self.field_error(field, "must be set"));
        }
        if !path.is_dir() {
            return Err(self.field_error(field, format!("directory {} not found", path.display())));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let g = &mut self.general;
        resolve(base, &mut g.local_msp_dir);
        resolve_tls(base, &mut g.tls);
        let c = &mut g.cluster;
        for p in [
            &mut c.server_certificate,
            &mut c.server_private_key,
            &mut c.client_certificate,
            &mut c.client_private_key,
        ] {
            resolve(base, p);
        }
        c.root_cas.iter_mut().for_each(|p| resolve(base, p));
        resolve(base, &mut self.file_ledger.location);
        resolve_tls(base, &mut self.admin.tls);
        resolve_tls(base, &mut self.operations.tls);
    }
}

fn check_host_port(cfg: &OrdererConfig, field: &str, addr: &str) -> Result<()> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(cfg.field_error(
            field,
            format!("'{addr}' is not host:port (e.g. 127.0.0.1:9443)"),
        ))
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn or_path(own: &Path, fallback: &Path) -> PathBuf {
    if own.as_os_str().is_empty() {
        fallback.to_path_buf()
    } else {
        own.to_path_buf()
    }
}

fn resolve_tls(base: &Path, t: &mut TlsConfig) {
    resolve(base, &mut t.private_key);
    resolve(base, &mut t.certificate);
    t.root_cas.iter_mut().for_each(|p| resolve(base, p));
    t.client_root_cas.iter_mut().for_each(|p| resolve(base, p));
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// Environment variable naming the directory of `orderer.yaml` (Fabric's).
pub const CFG_PATH_ENV: &str = "ORDERER_CFG_PATH";

const CLI_EXAMPLES: &str = "\
Examples:
  # Run the first orderer of the local test network
  twill-orderer --config network-configs/test-network/orderer0.yaml

  # Check a configuration and the certificates and keys it names, then exit
  twill-orderer --config orderer.yaml --config-check

  # Override settings from the environment, Fabric style
  ORDERER_GENERAL_LISTENPORT=7150 ORDERER_FILELEDGER_LOCATION=/tmp/o0 \\
      twill-orderer --config orderer.yaml

Log filter: RUST_LOG (default: info), e.g. RUST_LOG=info,orderer::raft=debug";

/// Command-line flags of `twill-orderer`: the last configuration layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
#[command(
    name = "twill-orderer",
    version,
    about = "Twill ordering node: Broadcast/Deliver, Raft per channel, channel participation API",
    after_help = CLI_EXAMPLES
)]
pub struct OrdererArgs {
    /// The orderer.yaml to read [default: $ORDERER_CFG_PATH/orderer.yaml,
    /// else ./orderer.yaml]. Relative paths inside it resolve against its
    /// directory; ORDERER_* environment variables override its settings.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Load and check the configuration, the MSP signing identity and the
    /// TLS material, print the outcome and exit.
    #[arg(long)]
    pub config_check: bool,
}

impl OrdererArgs {
    /// The config file to read: `--config`, else `orderer.yaml` in
    /// `$ORDERER_CFG_PATH`, else in the current directory.
    pub fn config_path(&self) -> PathBuf {
        if let Some(p) = &self.config {
            return p.clone();
        }
        match std::env::var_os(CFG_PATH_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("orderer.yaml"),
            _ => PathBuf::from("orderer.yaml"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, env: &[(&str, &str)]) -> Result<OrdererConfig> {
        OrdererConfig::from_yaml_str(
            yaml,
            Path::new("/cfg/orderer0.yaml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_follow_fabric() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.client_listen_address(), "127.0.0.1:7050");
        assert_eq!(
            cfg.general.tls.certificate,
            Path::new("/cfg/tls/server.crt")
        );
        assert_eq!(cfg.general.local_msp_dir, Path::new("/cfg/msp"));
        assert_eq!(cfg.general.bootstrap_method, "none");
        assert_eq!(cfg.admin.listen_address, "127.0.0.1:9443");
        assert_eq!(cfg.cluster_listen_address(), None);
        assert!(cfg.channel_participation.enabled);
    }

    #[test]
    fn keys_are_case_insensitive_and_nulls_keep_defaults() {
        let cfg = parse(
            "general:\n  listenport: 8050\n  tls:\n    clientrootcas:\n    Enabled: true\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.general.listen_port, 8050);
        assert!(cfg.general.tls.enabled);
        assert!(cfg.general.tls.client_root_cas.is_empty());
    }

    #[test]
    fn env_overrides_typed_and_created() {
        let cfg = parse(
            "General:\n  TLS:\n    Enabled: true\n",
            &[
                ("ORDERER_GENERAL_TLS_ENABLED", "false"),
                ("orderer_general_listenport", "9050"),
                ("ORDERER_GENERAL_CLUSTER_ROOTCAS", "[a.crt, /b.crt]"),
                ("ORDERER_CHANNELPARTICIPATION_MAXREQUESTBODYSIZE", "2 MB"),
                ("ORDERER_TWILL_RAFTTICKINTERVAL", "50ms"),
                ("ORDERER_GENERAL_KEEPALIVE_SERVERMININTERVAL", "60s"),
            ],
        )
        .unwrap();
        assert!(!cfg.general.tls.enabled);
        assert_eq!(cfg.general.listen_port, 9050);
        assert_eq!(
            cfg.general.cluster.root_cas,
            vec![PathBuf::from("/cfg/a.crt"), PathBuf::from("/b.crt")]
        );
        assert_eq!(cfg.channel_participation.max_request_body_size.0, 2 << 20);
        assert_eq!(
            cfg.twill.raft_tick_interval.0,
            Some(Duration::from_millis(50))
        );
    }

    #[test]
    fn bad_env_value_names_field_and_variable() {
        let err = parse("", &[("ORDERER_GENERAL_LISTENPORT", "seventy")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "/cfg/orderer0.yaml: General.ListenPort (from ORDERER_GENERAL_LISTENPORT): "
            ),
            "{msg}"
        );
    }

    #[test]
    fn unknown_and_ignored_keys() {
        let err = parse("General:\n  TLS:\n    Enable: true\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/cfg/orderer0.yaml: General.TLS.Enable: unknown key"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        let cfg = parse(
            "General:\n  Keepalive:\n    ServerMinInterval: 60s\nMetrics:\n  Provider: prometheus\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.ignored_keys(), ["General.Keepalive", "Metrics"]);
    }

    #[test]
    fn type_errors_name_the_path() {
        let err = parse("General:\n  TLS:\n    Enabled: maybe\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/cfg/orderer0.yaml: General.TLS.Enabled: "),
            "{msg}"
        );
        let err = parse("ChannelParticipation:\n  MaxRequestBodySize: lots\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("ChannelParticipation.MaxRequestBodySize: "),
            "{err}"
        );
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(
            twill_nodeconfig::clean(Path::new("/a/b/../../c/./d")),
            Path::new("/c/d")
        );
        assert_eq!(
            twill_nodeconfig::clean(Path::new("a/../../b")),
            Path::new("../b")
        );
        assert_eq!(twill_nodeconfig::clean(Path::new("/..")), Path::new("/"));
        let cfg = parse("FileLedger:\n  Location: ../state/./o0\n", &[]).unwrap();
        assert_eq!(cfg.file_ledger.location, Path::new("/state/o0"));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1 MB"), Some(1 << 20));
        assert_eq!(parse_byte_size("512KB"), Some(512 << 10));
        assert_eq!(parse_byte_size("10"), Some(10));
        assert_eq!(parse_byte_size("1 XB"), None);
        assert_eq!(parse_byte_size("MB"), None);
    }

    #[test]
    fn validation_messages() {
        let err = parse("General:\n  BootstrapMethod: file\n", &[])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("General.BootstrapMethod: 'file' is not supported"));
        let err = parse("General:\n  LocalMSPDir: /nonexistent-msp\n", &[])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/cfg/orderer0.yaml: General.LocalMSPDir: directory /nonexistent-msp not found"
        );
    }
}

/// Whether `host:port` names a loopback host.
fn is_loopback_address(address: &str) -> bool {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod loopback_tests {
    use super::is_loopback_address;

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback_address("127.0.0.1:7053"));
        assert!(is_loopback_address("[::1]:7053"));
        assert!(is_loopback_address("localhost:7053"));
        assert!(!is_loopback_address("0.0.0.0:7053"));
        assert!(!is_loopback_address("10.1.2.3:7053"));
        assert!(!is_loopback_address("orderer.example.com:7053"));
    }
}
