//! The peer's local configuration, read from a Fabric-style `core.yaml`.
//!
//! Settings come in layers, the later winning:
//!
//! 1. the [`Default`] impls, which follow Fabric's `sampleconfig/core.yaml`;
//! 2. the YAML file;
//! 3. environment variables in Fabric's style: `CORE_` and the key path
//!    upper-cased and joined by `_`, e.g. `CORE_PEER_LISTENADDRESS=0.0.0.0:7051`,
//!    `CORE_PEER_TLS_ENABLED=true`, `CORE_PEER_TLS_CERT_FILE=tls/server.crt`,
//!    `CORE_PEER_TLS_CLIENTROOTCAS_FILES=[a.crt, b.crt]`,
//!    `CORE_OPERATIONS_LISTENADDRESS=127.0.0.1:9443`;
//! 4. command-line flags, applied by the binary.
//!
//! As in Fabric, keys are matched case-insensitively, a key left empty keeps
//! its default, and relative paths resolve against the directory of the
//! config file. Unknown keys are refused, naming their path. Sections of
//! Fabric's `core.yaml` that Twill does not implement (`peer.gossip`,
//! `chaincode`, `vm`, `ledger`, `metrics`, ...) are accepted and reported by
//! [`PeerConfig::ignored_keys`] so that a Fabric file loads.
//!
//! Every error is one line naming the file and the field, e.g.
//! `core.yaml: peer.tls.cert.file: file tls/server.crt not found`; a value
//! that came from the environment also names its variable.
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `peer.id` | `jdoe` | name of this peer in logs |
//! | `peer.listenAddress` | `0.0.0.0:7051` | gRPC listener (Endorser, Deliver) |
//! | `peer.address` | `0.0.0.0:7051` | address other nodes and clients use |
//! | `peer.mspConfigPath` | `msp` | local MSP folder (signing identity) |
//! | `peer.localMspId` | `SampleOrg` | MSP id of that identity |
//! | `peer.fileSystemPath` | `/var/hyperledger/production` | data folder; ledgers under `ledgersData/` |
//! | `peer.chaincodeAddress` | listener address | where chaincode processes the peer starts dial back to |
//! | `peer.tls.enabled` | `false` | serve TLS |
//! | `peer.tls.cert.file`, `peer.tls.key.file` | `tls/server.crt`, `tls/server.key` | server certificate and key |
//! | `peer.tls.rootcert.file` | `tls/ca.crt` | the peer's TLS CA |
//! | `peer.tls.clientAuthRequired` | `false` | require TLS client certificates |
//! | `peer.tls.clientRootCAs.files` | `[]` | CAs client certificates must chain to |
//! | `peer.tls.clientCert.file`, `peer.tls.clientKey.file` | empty | client certificate shown to orderers (none when empty) |
//! | `operations.listenAddress` | `127.0.0.1:9443` | `/healthz`, `/metrics`; empty disables |
//! | `operations.tls.*` | disabled | TLS of the operations listener |
//!
//! # Example
//!
//! ```
//! use twill_peer::config::PeerConfig;
//!
//! let yaml = "peer:\n  listenAddress: 127.0.0.1:7051\n  fileSystemPath: data\n";
//! let env = [("CORE_PEER_LISTENADDRESS".to_string(), "127.0.0.1:8051".to_string())];
//! let cfg = PeerConfig::from_yaml_str(yaml, "/etc/peer/core.yaml".as_ref(), env)?;
//! assert_eq!(cfg.peer.listen_address, "127.0.0.1:8051");
//! assert_eq!(cfg.peer.file_system_path, std::path::Path::new("/etc/peer/data"));
//! # Ok::<(), twill_peer::config::ConfigError>(())
//! ```

use std::path::{Path, PathBuf};

use twill_nodeconfig::{resolve, Origin};

use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "CORE";

/// Environment variable naming the directory of `core.yaml` (Fabric's).
pub const CFG_PATH_ENV: &str = "FABRIC_CFG_PATH";

/// Folder under `peer.fileSystemPath` holding one ledger folder per channel.
pub const LEDGERS_DIR: &str = "ledgersData";

pub use twill_nodeconfig::ConfigError;

/// Result alias of this module.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The part of `core.yaml` Twill reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerConfig {
    /// The `peer` section.
    pub peer: PeerSection,
    /// The `operations` section.
    pub operations: OperationsSection,
    /// Where the settings came from; not part of the file.
    #[serde(skip)]
    origin: Origin,
}

/// The `peer` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerSection {
    /// Name of this peer, for logs.
    pub id: String,
    /// `host:port` the gRPC listener binds to (port 0 picks a free one).
    pub listen_address: String,
    /// `host:port` others reach this peer at.
    pub address: String,
    /// The local MSP folder (signing identity and the org's CAs).
    pub msp_config_path: PathBuf,
    /// The MSP id of the local identity.
    pub local_msp_id: String,
    /// Data folder: channel ledgers live under `ledgersData/`, installed
    /// chaincode packages under `lifecycle/chaincodes/`.
    pub file_system_path: PathBuf,
    /// `host:port` chaincode processes the peer starts dial back to; empty
    /// means the listener's own address (127.0.0.1 when it listens on all
    /// interfaces).
    pub chaincode_address: String,
    /// TLS of the gRPC listener, and of connections to orderers.
    pub tls: PeerTls,
}

impl Default for PeerSection {
    fn default() -> Self {
        PeerSection {
            id: "jdoe".into(),
            listen_address: "0.0.0.0:7051".into(),
            address: "0.0.0.0:7051".into(),
            msp_config_path: "msp".into(),
            local_msp_id: "SampleOrg".into(),
            file_system_path: "/var/hyperledger/production".into(),
            chaincode_address: String::new(),
            tls: PeerTls::default(),
        }
    }
}

/// `{ file: <path> }`, Fabric's shape for one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileRef {
    /// The file.
    pub file: PathBuf,
}

impl FileRef {
    fn new(p: &str) -> Self {
        FileRef { file: p.into() }
    }
}

/// `{ files: [<path>, ...] }`, Fabric's shape for a list of files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesRef {
    /// The files.
    pub files: Vec<PathBuf>,
}

/// `peer.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerTls {
    /// Serve TLS.
    pub enabled: bool,
    /// Require client certificates chaining to `clientRootCAs`.
    pub client_auth_required: bool,
    /// The server certificate (PEM).
    pub cert: FileRef,
    /// The server key (PEM).
    pub key: FileRef,
    /// The peer's TLS CA certificate.
    pub rootcert: FileRef,
    /// CAs client certificates must chain to.
    #[serde(rename = "clientRootCAs")]
    pub client_root_cas: FilesRef,
    /// Client certificate presented to orderers; none when empty.
    pub client_cert: FileRef,
    /// Key of `clientCert`.
    pub client_key: FileRef,
}

impl Default for PeerTls {
    fn default() -> Self {
        PeerTls {
            enabled: false,
            client_auth_required: false,
            cert: FileRef::new("tls/server.crt"),
            key: FileRef::new("tls/server.key"),
            rootcert: FileRef::new("tls/ca.crt"),
            client_root_cas: FilesRef::default(),
            client_cert: FileRef::default(),
            client_key: FileRef::default(),
        }
    }
}

/// `operations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationsSection {
    /// `host:port` of the operations listener; empty disables it.
    pub listen_address: String,
    /// TLS of the operations listener.
    pub tls: OperationsTls,
}

impl Default for OperationsSection {
    fn default() -> Self {
        OperationsSection {
            listen_address: "127.0.0.1:9443".into(),
            tls: OperationsTls::default(),
        }
    }
}

/// `operations.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationsTls {
    /// Serve HTTPS.
    pub enabled: bool,
    /// The server certificate.
    pub cert: FileRef,
    /// The server key.
    pub key: FileRef,
    /// Require client certificates.
    pub client_auth_required: bool,
    /// CAs client certificates must chain to.
    #[serde(rename = "clientRootCAs")]
    pub client_root_cas: FilesRef,
}

/// Keys of Fabric's `core.yaml` that Twill accepts and ignores.
const FABRIC_IGNORED: &[&str] = &[
    "peer.networkId",
    "peer.keepalive",
    "peer.gossip",
    "peer.authentication",
    "peer.BCCSP",
    "peer.client",
    "peer.deliveryclient",
    "peer.discovery",
    "peer.handlers",
    "peer.validatorPoolSize",
    "peer.limits",
    "peer.gateway",
    "peer.maxRecvMsgSize",
    "peer.maxSendMsgSize",
    "peer.profile",
    "peer.adminService",
    "peer.chaincodeListenAddress",
    "peer.mspConfigPathOverride",
    "peer.tls.serverhostoverride",
    "vm",
    "chaincode",
    "ledger",
    "metrics",
];

impl PeerConfig {
    /// Reads `path` and applies the process's `CORE_*` environment.
    pub fn load(path: &Path) -> Result<PeerConfig> {
        PeerConfig::load_with_env(path, std::env::vars())
    }

    /// Reads `path` and applies the given environment (name, value) pairs
    /// instead of the process's.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<PeerConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PeerConfig::from_yaml_str(&text, path, env)
    }

    /// Parses YAML text as if read from `path` (which names the file in
    /// errors and anchors relative paths), then applies `env`.
    pub fn from_yaml_str(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<PeerConfig> {
        let (mut cfg, origin) =
            twill_nodeconfig::load::<PeerConfig>(text, path, env, ENV_PREFIX, FABRIC_IGNORED)?;
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

    /// Keys of Fabric's `core.yaml` found in the file that Twill does not
    /// use, for the caller to warn about.
    pub fn ignored_keys(&self) -> &[String] {
        &self.origin.ignored
    }

    /// An error about `field`, in this module's one-line format.
    pub fn field_error(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        self.origin.field_error(field, reason)
    }

    /// Root folder of the channel ledgers: `<peer.fileSystemPath>/ledgersData`.
    pub fn ledger_root(&self) -> PathBuf {
        self.peer.file_system_path.join(LEDGERS_DIR)
    }

    /// Checks what can be checked without starting: addresses, ids, and
    /// that the MSP folder and every TLS file in use exist.
    pub fn validate(&self) -> Result<()> {
        let p = &self.peer;
        check_host_port(self, "peer.listenAddress", &p.listen_address)?;
        if p.local_msp_id.trim().is_empty() {
            return Err(self.field_error("peer.localMspId", "must not be empty"));
        }
        if p.id.trim().is_empty() {
            return Err(self.field_error("peer.id", "must not be empty"));
        }
        self.check_dir("peer.mspConfigPath", &p.msp_config_path)?;
        if p.file_system_path.as_os_str().is_empty() {
            return Err(self.field_error("peer.fileSystemPath", "must not be empty"));
        }
        if p.file_system_path.exists() && !p.file_system_path.is_dir() {
            return Err(self.field_error(
                "peer.fileSystemPath",
                format!(
                    "{} exists and is not a directory",
                    p.file_system_path.display()
                ),
            ));
        }
        let t = &p.tls;
        if t.enabled {
            self.check_file("peer.tls.cert.file", &t.cert.file)?;
            self.check_file("peer.tls.key.file", &t.key.file)?;
            if t.client_auth_required && t.client_root_cas.files.is_empty() {
                return Err(self.field_error(
                    "peer.tls.clientRootCAs.files",
                    "must list at least one CA when peer.tls.clientAuthRequired is true",
                ));
            }
            self.check_files("peer.tls.clientRootCAs.files", &t.client_root_cas.files)?;
        } else if t.client_auth_required {
            return Err(self.field_error(
                "peer.tls.clientAuthRequired",
                "needs peer.tls.enabled: true",
            ));
        }
        let (cert, key) = (&t.client_cert.file, &t.client_key.file);
        match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
            (true, true) => {}
            (false, false) => {
                self.check_file("peer.tls.clientCert.file", cert)?;
                self.check_file("peer.tls.clientKey.file", key)?;
            }
            (true, false) => {
                return Err(self.field_error(
                    "peer.tls.clientCert.file",
                    "must be set when peer.tls.clientKey.file is",
                ))
            }
            (false, true) => {
                return Err(self.field_error(
                    "peer.tls.clientKey.file",
                    "must be set when peer.tls.clientCert.file is",
                ))
            }
        }
        let o = &self.operations;
        if !o.listen_address.is_empty() {
            check_host_port(self, "operations.listenAddress", &o.listen_address)?;
            if o.tls.enabled {
                self.check_file("operations.tls.cert.file", &o.tls.cert.file)?;
                self.check_file("operations.tls.key.file", &o.tls.key.file)?;
                if o.tls.client_auth_required && o.tls.client_root_cas.files.is_empty() {
                    return Err(self.field_error(
                        "operations.tls.clientRootCAs.files",
                        "must list at least one CA when operations.tls.clientAuthRequired is true",
                    ));
                }
                self.check_files(
                    "operations.tls.clientRootCAs.files",
                    &o.tls.client_root_cas.files,
                )?;
            }
        }
        Ok(())
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
        let p = &mut self.peer;
        resolve(base, &mut p.msp_config_path);
        resolve(base, &mut p.file_system_path);
        let t = &mut p.tls;
        for f in [
            &mut t.cert.file,
            &mut t.key.file,
            &mut t.rootcert.file,
            &mut t.client_cert.file,
            &mut t.client_key.file,
        ] {
            resolve(base, f);
        }
        t.client_root_cas
            .files
            .iter_mut()
            .for_each(|f| resolve(base, f));
        let o = &mut self.operations.tls;
        resolve(base, &mut o.cert.file);
        resolve(base, &mut o.key.file);
        o.client_root_cas
            .files
            .iter_mut()
            .for_each(|f| resolve(base, f));
    }
}

fn check_host_port(cfg: &PeerConfig, field: &str, addr: &str) -> Result<()> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(cfg.field_error(
            field,
            format!("'{addr}' is not host:port (e.g. 0.0.0.0:7051)"),
        ))
    }
}

const CLI_EXAMPLES: &str = "\
Examples:
  # Run the first peer of the local test network
  twill-peer --config network-configs/test-network/peer0.org1.yaml

  # Check a configuration and the files it names, then exit
  twill-peer --config core.yaml --config-check

  # Override settings from the environment, Fabric style
  CORE_PEER_LISTENADDRESS=127.0.0.1:7151 CORE_PEER_FILESYSTEMPATH=/tmp/p0 \\
      twill-peer --config core.yaml

Log filter: RUST_LOG (default: info), e.g. RUST_LOG=info,peer::blocks=debug";

/// Command-line flags of `twill-peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
#[command(
    name = "twill-peer",
    version,
    about = "Twill peer node: ledger, block pulling, Deliver, system chaincodes",
    after_help = CLI_EXAMPLES
)]
pub struct PeerArgs {
    /// The core.yaml to read [default: $FABRIC_CFG_PATH/core.yaml, else
    /// ./core.yaml]. Relative paths inside it resolve against its
    /// directory; CORE_* environment variables override its settings.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Load and check the configuration, the MSP signing identity and the
    /// TLS material, print the outcome and exit.
    #[arg(long)]
    pub config_check: bool,
}

impl PeerArgs {
    /// The config file to read: `--config`, else `core.yaml` in
    /// `$FABRIC_CFG_PATH`, else in the current directory.
    pub fn config_path(&self) -> PathBuf {
        if let Some(p) = &self.config {
            return p.clone();
        }
        match std::env::var_os(CFG_PATH_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("core.yaml"),
            _ => PathBuf::from("core.yaml"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(yaml: &str, env: &[(&str, &str)]) -> Result<PeerConfig> {
        PeerConfig::from_yaml_str(
            yaml,
            Path::new("/cfg/core.yaml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_follow_fabric() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.peer.listen_address, "0.0.0.0:7051");
        assert_eq!(cfg.peer.msp_config_path, Path::new("/cfg/msp"));
        assert_eq!(cfg.peer.tls.cert.file, Path::new("/cfg/tls/server.crt"));
        assert_eq!(cfg.peer.local_msp_id, "SampleOrg");
        assert!(!cfg.peer.tls.enabled);
        assert_eq!(cfg.operations.listen_address, "127.0.0.1:9443");
        assert_eq!(
            cfg.ledger_root(),
            Path::new("/var/hyperledger/production/ledgersData")
        );
    }

    #[test]
    fn fabric_spelling_and_case_insensitive_keys() {
        let yaml = "peer:\n  id: peer0\n  listenAddress: 127.0.0.1:7051\n  mspConfigPath: ../msp\n  \
                    localMspId: Org1MSP\n  fileSystemPath: data\n  tls:\n    enabled: true\n    \
                    cert:\n      file: tls/s.crt\n    rootcert:\n      file: tls/ca.crt\n    \
                    CLIENTROOTCAS:\n      files: [a.crt]\noperations:\n  listenaddress: 127.0.0.1:9444\n";
        let cfg = parse(yaml, &[]).unwrap();
        assert_eq!(cfg.peer.id, "peer0");
        assert_eq!(cfg.peer.msp_config_path, Path::new("/msp"));
        assert_eq!(cfg.peer.local_msp_id, "Org1MSP");
        assert_eq!(cfg.peer.file_system_path, Path::new("/cfg/data"));
        assert!(cfg.peer.tls.enabled);
        assert_eq!(cfg.peer.tls.cert.file, Path::new("/cfg/tls/s.crt"));
        assert_eq!(
            cfg.peer.tls.client_root_cas.files,
            vec![PathBuf::from("/cfg/a.crt")]
        );
        assert_eq!(cfg.operations.listen_address, "127.0.0.1:9444");
    }

    #[test]
    fn env_overrides_typed_and_created() {
        let cfg = parse(
            "peer:\n  tls:\n    enabled: true\n",
            &[
                ("CORE_PEER_TLS_ENABLED", "false"),
                ("CORE_PEER_LISTENADDRESS", "127.0.0.1:8051"),
                ("core_peer_localmspid", "Org2MSP"),
                ("CORE_PEER_TLS_CERT_FILE", "/x/server.crt"),
                ("CORE_PEER_TLS_ROOTCERT_FILE", "ca.crt"),
                ("CORE_PEER_TLS_CLIENTROOTCAS_FILES", "[a.crt, /b.crt]"),
                ("CORE_OPERATIONS_LISTENADDRESS", "127.0.0.1:9999"),
                ("CORE_PEER_GOSSIP_BOOTSTRAP", "127.0.0.1:7051"),
                ("ORDERER_GENERAL_LISTENPORT", "1"),
            ],
        )
        .unwrap();
        assert!(!cfg.peer.tls.enabled);
        assert_eq!(cfg.peer.listen_address, "127.0.0.1:8051");
        assert_eq!(cfg.peer.local_msp_id, "Org2MSP");
        assert_eq!(cfg.peer.tls.cert.file, Path::new("/x/server.crt"));
        assert_eq!(cfg.peer.tls.rootcert.file, Path::new("/cfg/ca.crt"));
        assert_eq!(
            cfg.peer.tls.client_root_cas.files,
            vec![PathBuf::from("/cfg/a.crt"), PathBuf::from("/b.crt")]
        );
        assert_eq!(cfg.operations.listen_address, "127.0.0.1:9999");
    }

    #[test]
    fn bad_env_value_names_field_and_variable() {
        let err = parse("", &[("CORE_PEER_TLS_ENABLED", "maybe")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/cfg/core.yaml: peer.tls.enabled (from CORE_PEER_TLS_ENABLED): "),
            "{msg}"
        );
    }

    #[test]
    fn unknown_and_ignored_keys() {
        let err = parse("peer:\n  listenAdress: 1.2.3.4:1\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/cfg/core.yaml: peer.listenAdress: unknown key"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        let cfg = parse(
            "peer:\n  gossip:\n    bootstrap: 127.0.0.1:7051\nchaincode:\n  mode: net\nvm:\n  endpoint: x\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.ignored_keys(), ["peer.gossip", "chaincode", "vm"]);
    }

    #[test]
    fn type_and_syntax_errors_name_the_file() {
        let err = parse("peer:\n  tls:\n    enabled: [1]\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/cfg/core.yaml: peer.tls.enabled: "),
            "{err}"
        );
        let err = parse("peer: [unclosed\n", &[]).unwrap_err();
        assert!(err.to_string().starts_with("/cfg/core.yaml: "), "{err}");
        let err = parse("- a\n- b\n", &[]).unwrap_err();
        assert!(err.to_string().starts_with("/cfg/core.yaml: "), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("msp")).unwrap();
        let path = dir.path().join("core.yaml");
        let check = |yaml: &str| {
            PeerConfig::from_yaml_str(yaml, &path, Vec::new())
                .unwrap()
                .validate()
                .map_err(|e| e.to_string())
        };
        check("peer:\n  fileSystemPath: data\n").unwrap();
        let err = check("peer:\n  listenAddress: nowhere\n").unwrap_err();
        assert!(
            err.contains("core.yaml: peer.listenAddress: 'nowhere' is not host:port"),
            "{err}"
        );
        let err = check("peer:\n  mspConfigPath: nope\n").unwrap_err();
        assert!(err.contains("peer.mspConfigPath: directory "), "{err}");
        let err = check("peer:\n  tls:\n    enabled: true\n").unwrap_err();
        assert!(err.contains("peer.tls.cert.file: file "), "{err}");
        assert!(err.contains("not found"), "{err}");
        let err = check("peer:\n  tls:\n    clientAuthRequired: true\n").unwrap_err();
        assert!(err.contains("peer.tls.clientAuthRequired"), "{err}");
        let err = check("peer:\n  tls:\n    clientCert:\n      file: c.crt\n").unwrap_err();
        assert!(
            err.contains("peer.tls.clientKey.file: must be set"),
            "{err}"
        );
        let err = check("operations:\n  listenAddress: x\n").unwrap_err();
        assert!(err.contains("operations.listenAddress"), "{err}");
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
    }
}
