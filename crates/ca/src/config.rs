//! Command line and configuration file of `twill-ca`.
//!
//! The file is a subset of Fabric's `fabric-ca-server-config.yaml` (keys
//! matched case-insensitively; other Fabric keys are accepted and
//! reported as ignored): `port`, `tls.enabled/certfile/keyfile`,
//! `ca.name/certfile/keyfile`,
//! `registry.maxenrollments`, `registry.identities[]`, `affiliations`,
//! `signing.default.expiry`, `csr.cn`, `csr.names[0]`, `csr.hosts`,
//! `csr.ca.expiry`. `tls.enabled` without `tls.certfile` makes the CA issue
//! itself a TLS certificate (see [`TlsSetup::SelfIssued`]).
//! Command-line flags override the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::api::Attribute;
use crate::error::{CaError, CaResult};
use crate::service::{BootstrapIdentity, CaSettings};

/// `twill-ca` command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "twill-ca",
    version,
    about = "Twill certificate authority (Fabric CA compatible)"
)]
pub struct CaArgs {
    /// Home directory: CA key and certificate, registry database.
    #[arg(long, env = "TWILL_CA_HOME", default_value = ".")]
    pub home: PathBuf,
    /// Listening port (0 picks a free one).
    #[arg(long, short = 'p')]
    pub port: Option<u16>,
    /// Listening address.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// Bootstrap identity `id:secret`, registered with every registrar
    /// attribute on first start.
    #[arg(long, short = 'b')]
    pub boot: Option<String>,
    /// Name of the CA.
    #[arg(long)]
    pub ca_name: Option<String>,
    /// Serve HTTPS with a TLS server certificate the CA issues itself for
    /// --csr-hosts (written to `<home>/tls-cert.pem`) unless --tls-cert is given.
    #[arg(long)]
    pub tls: bool,
    /// Host names and IP addresses of the self-issued TLS certificate.
    #[arg(long, value_delimiter = ',')]
    pub csr_hosts: Vec<String>,
    /// Also serve the gRPC API (twill.ca.CertificateAuthority) on this
    /// port (0 picks a free one); off when not given.
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// TLS certificate (PEM); with --tls-key turns TLS on.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// An existing CA certificate (PEM) to issue with, e.g. the org CA made
    /// by cryptogen; needs --ca-key.
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (PKCS#8 or SEC1 PEM).
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Intermediate-CA mode: the parent CA, `http[s]://<id>:<secret>@host:port`.
    /// On first start this CA enrolls there (profile `ca`) instead of
    /// self-signing; the identity needs `hf.IntermediateCA=true`.
    #[arg(long)]
    pub parent: Option<String>,
    /// Name of the CA at the parent server (its default CA when absent).
    #[arg(long, requires = "parent")]
    pub parent_caname: Option<String>,
    /// PEM file of the CA that signed the parent's TLS certificate
    /// (needed for an https parent).
    #[arg(long, requires = "parent")]
    pub parent_tls_cert: Option<PathBuf>,
    /// A fabric-ca-server-config.yaml (subset).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    pub config_check: bool,
}

/// How the listeners get their TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetup {
    /// Certificate and key files given by the operator.
    Files {
        /// Certificate chain, PEM.
        cert: PathBuf,
        /// Private key, PEM.
        key: PathBuf,
    },
    /// The CA issues itself a server certificate for these hosts on every
    /// start (`<home>/tls-cert.pem`, `<home>/tls-key.pem`).
    SelfIssued {
        /// DNS names and IP addresses (the first is the CN).
        hosts: Vec<String>,
    },
}

/// Hosts of the self-issued TLS certificate when none are configured.
pub const DEFAULT_CSR_HOSTS: &[&str] = &["localhost", "127.0.0.1"];

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// Home directory.
    pub home: PathBuf,
    /// Address to bind.
    pub address: String,
    /// Port.
    pub port: u16,
    /// TLS, if on (REST and gRPC alike).
    pub tls: Option<TlsSetup>,
    /// gRPC port (`None` = no gRPC listener, 0 = a free port).
    pub grpc_port: Option<u16>,
    /// CA settings.
    pub settings: CaSettings,
    /// Hosts for the self-issued TLS certificate (`--csr-hosts`, `csr.hosts`).
    pub csr_hosts: Vec<String>,
    /// Fabric keys present in the file that Twill ignores.
    pub ignored: Vec<String>,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn int(v: &Value, field: &str) -> CaResult<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| CaError::Config(format!("{field}: expected an integer")))
}

/// Parses a Go-style duration (`8760h`, `30m`, `1h30m`, `90s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: u64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                'h' => 3600,
                'm' => 60,
                's' => 1,
                'd' => 86_400,
                'y' => 365 * 86_400,
                _ => return None,
            };
        }
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

const KNOWN: &[&str] = &[
    "port",
    "tls",
    "ca",
    "registry",
    "affiliations",
    "signing",
    "csr",
    "intermediate",
];

impl CaConfig {
    /// Resolves `args` (and the file they name) into a configuration.
    pub fn load(args: &CaArgs) -> CaResult<Self> {
        let mut cfg = CaConfig {
            home: args.home.clone(),
            address: args.address.clone(),
            port: 7054,
            tls: None,
            grpc_port: None,
            settings: CaSettings::default(),
            csr_hosts: Vec::new(),
            ignored: Vec::new(),
        };
        if let Some(path) = &args.config {
            cfg.apply_file(path)?;
        }
        let cn_configured = cfg.settings.root_subject.cn != "twill-ca";
        if let Some(url) = &args.parent {
            let mut p = crate::parent::ParentServer::parse(url)?;
            if let Some(old) = cfg.settings.parent.take() {
                p.caname = old.caname;
                p.tls_certfiles = old.tls_certfiles;
            }
            cfg.settings.parent = Some(p);
        }
        if let Some(p) = &mut cfg.settings.parent {
            if let Some(n) = &args.parent_caname {
                p.caname = Some(n.clone()).filter(|n| !n.is_empty());
            }
            if let Some(f) = &args.parent_tls_cert {
                p.tls_certfiles = vec![f.clone()];
            }
            // The parent requires CN = the enrollment ID (as Fabric CA
            // does), so that is the default CN of an intermediate.
            if !cn_configured {
                cfg.settings.root_subject.cn = p.id.clone();
            }
        }
        if let Some(p) = args.port {
            cfg.port = p;
        }
        if let Some(n) = &args.ca_name {
            cfg.settings.name = n.clone();
        }
        if !args.csr_hosts.is_empty() {
            cfg.csr_hosts = args
                .csr_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect();
        }
        if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
            cfg.tls = Some(TlsSetup::Files {
                cert: c.clone(),
                key: k.clone(),
            });
        } else if args.tls && cfg.tls.is_none() {
            cfg.tls = Some(TlsSetup::SelfIssued { hosts: Vec::new() });
        }
        if let Some(TlsSetup::SelfIssued { hosts }) = &mut cfg.tls {
            *hosts = if cfg.csr_hosts.is_empty() {
                DEFAULT_CSR_HOSTS.iter().map(|h| h.to_string()).collect()
            } else {
                cfg.csr_hosts.clone()
            };
        }
        if args.grpc_port.is_some() {
            cfg.grpc_port = args.grpc_port;
        }
        if let (Some(c), Some(k)) = (&args.ca_cert, &args.ca_key) {
            cfg.settings.ca_files = Some((c.clone(), k.clone()));
        }
        if let Some(b) = &args.boot {
            let (id, secret) = b
                .split_once(':')
                .ok_or_else(|| CaError::Config("-b must be <id>:<secret>".into()))?;
            if id.is_empty() || secret.is_empty() {
                return Err(CaError::Config("-b must be <id>:<secret>".into()));
            }
            cfg.settings.bootstrap.retain(|i| i.id != id);
            cfg.settings.bootstrap.insert(
                0,
                BootstrapIdentity {
                    id: id.into(),
                    secret: secret.into(),
                    ..BootstrapIdentity::default()
                },
            );
        }
        if cfg.settings.root_subject.cn == "twill-ca" && !cfg.settings.name.is_empty() {
            cfg.settings.root_subject.cn = cfg.settings.name.clone();
        }
        Ok(cfg)
    }

    fn apply_file(&mut self, path: &Path) -> CaResult<()> {
        let text_in = std::fs::read_to_string(path).map_err(|source| CaError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let doc: Value = serde_saphyr::from_str(&text_in)
            .map_err(|e| CaError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let field = |f: &str| format!("{}: {f}", path.display());
        if let Some(obj) = doc.as_object() {
            for k in obj.keys() {
                if !KNOWN.iter().any(|n| n.eq_ignore_ascii_case(k)) {
                    self.ignored.push(k.clone());
                }
            }
        }
        if let Some(p) = get(&doc, "port") {
            self.port = u16::try_from(int(p, &field("port"))?)
                .map_err(|_| CaError::Config(field("port: out of range")))?;
        }
        if let Some(tls) = get(&doc, "tls") {
            let enabled =
                get(tls, "enabled").is_some_and(|v| v.as_bool() == Some(true) || text(v) == "true");
            if enabled {
                let file = |k: &str| get(tls, k).map(text).filter(|s| !s.is_empty());
                self.tls = match (file("certfile"), file("keyfile")) {
                    (Some(c), Some(k)) => Some(TlsSetup::Files {
                        cert: base.join(c),
                        key: base.join(k),
                    }),
                    // No certificate: the CA issues itself one, as
                    // Fabric CA does on init.
                    (None, _) => Some(TlsSetup::SelfIssued { hosts: Vec::new() }),
                    (Some(_), None) => {
                        return Err(CaError::Config(field(
                            "tls.keyfile: required with tls.certfile",
                        )))
                    }
                };
            }
        }
        if let Some(ca) = get(&doc, "ca") {
            if let Some(name) = get(ca, "name") {
                self.settings.name = text(name);
            }
            let file = |k: &str| get(ca, k).map(text).filter(|s| !s.is_empty());
            match (file("certfile"), file("keyfile")) {
                (Some(c), Some(k)) => self.settings.ca_files = Some((base.join(c), base.join(k))),
                (None, None) => {}
                _ => {
                    return Err(CaError::Config(field(
                        "ca.certfile and ca.keyfile must be given together",
                    )))
                }
            }
        }
        if let Some(reg) = get(&doc, "registry") {
            if let Some(m) = get(reg, "maxenrollments") {
                self.settings.max_enrollments = int(m, &field("registry.maxenrollments"))?;
            }
            if let Some(ids) = get(reg, "identities").and_then(Value::as_array) {
                for (i, idv) in ids.iter().enumerate() {
                    let f = |k: &str| get(idv, k).map(text).unwrap_or_default();
                    let id = f("name");
                    if id.is_empty() {
                        return Err(CaError::Config(field(&format!(
                            "registry.identities[{i}].name: required"
                        ))));
                    }
                    let attrs = get(idv, "attrs").and_then(Value::as_object).map(|m| {
                        m.iter()
                            .map(|(k, v)| Attribute {
                                name: k.clone(),
                                value: text(v),
                                ecert: false,
                            })
                            .collect()
                    });
                    self.settings.bootstrap.push(BootstrapIdentity {
                        id,
                        secret: f("pass"),
                        id_type: f("type"),
                        affiliation: f("affiliation"),
                        max_enrollments: match get(idv, "maxenrollments") {
                            Some(v) => int(v, &field("registry.identities.maxenrollments"))?,
                            None => 0,
                        },
                        attrs,
                    });
                }
            }
        }
        if let Some(affs) = get(&doc, "affiliations") {
            let mut out = Vec::new();
            flatten_affiliations(affs, "", &mut out);
            self.settings.affiliations = out;
        }
        if let Some(exp) = get(&doc, "signing")
            .and_then(|s| get(s, "default"))
            .and_then(|d| get(d, "expiry"))
        {
            self.settings.cert_validity = parse_duration(&text(exp))
                .ok_or_else(|| CaError::Config(field("signing.default.expiry: not a duration")))?;
        }
        if let Some(inter) = get(&doc, "intermediate") {
            let url = get(inter, "parentserver")
                .and_then(|p| get(p, "url"))
                .map(text)
                .filter(|u| !u.trim().is_empty());
            let caname = get(inter, "parentserver")
                .and_then(|p| get(p, "caname"))
                .map(text)
                .filter(|n| !n.is_empty());
            let certfiles: Vec<PathBuf> = match get(inter, "tls").and_then(|t| get(t, "certfiles"))
            {
                Some(Value::Array(items)) => items.iter().map(text).collect(),
                Some(other) => text(other).split(',').map(str::to_string).collect(),
                None => Vec::new(),
            }
            .into_iter()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .map(|f| base.join(f))
            .collect();
            if let Some(url) = url {
                let mut p = crate::parent::ParentServer::parse(&url).map_err(|e| {
                    CaError::Config(field(&format!("intermediate.parentserver.url: {e}")))
                })?;
                p.caname = caname;
                p.tls_certfiles = certfiles;
                self.settings.parent = Some(p);
            }
        }
        if let Some(csr) = get(&doc, "csr") {
            if let Some(hosts) = get(csr, "hosts") {
                self.csr_hosts = match hosts {
                    Value::Array(items) => items.iter().map(text).collect(),
                    other => text(other).split(',').map(str::to_string).collect(),
                };
                self.csr_hosts.retain(|h| !h.trim().is_empty());
            }
            if let Some(cn) = get(csr, "cn") {
                self.settings.root_subject.cn = text(cn);
            }
            if let Some(n) = get(csr, "names")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                let f = |k: &str| get(n, k).map(text).filter(|s| !s.is_empty());
                let s = &mut self.settings.root_subject;
                s.c = f("C");
                s.st = f("ST");
                s.l = f("L");
                s.o = f("O");
                s.ou = f("OU");
            }
            if let Some(exp) = get(csr, "ca").and_then(|c| get(c, "expiry")) {
                self.settings.root_validity = parse_duration(&text(exp))
                    .ok_or_else(|| CaError::Config(field("csr.ca.expiry: not a duration")))?;
            }
        }
        Ok(())
    }
}

fn flatten_affiliations(v: &Value, prefix: &str, out: &mut Vec<String>) {
    let join = |n: &str| {
        if prefix.is_empty() {
            n.to_string()
        } else {
            format!("{prefix}.{n}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let name = join(k);
                out.push(name.clone());
                flatten_affiliations(child, &name, out);
            }
        }
        Value::Array(items) => {
            for i in items {
                match i {
                    Value::Object(_) => flatten_affiliations(i, prefix, out),
                    other => out.push(join(&text(other))),
                }
            }
        }
        Value::Null => {}
        other => out.push(join(&text(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("8760h"),
            Some(Duration::from_secs(8760 * 3600))
        );
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10"), None);
    }

    #[test]
    fn affiliations_flatten() {
        let v: Value =
            serde_json::json!({"org1": ["department1", "department2"], "org2": ["department1"]});
        let mut out = Vec::new();
        flatten_affiliations(&v, "", &mut out);
        assert_eq!(
            out,
            [
                "org1",
                "org1.department1",
                "org1.department2",
                "org2",
                "org2.department1"
            ]
        );
    }
}
