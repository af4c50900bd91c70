//! How the chaincode reaches its peer, from the process environment the way
//! Fabric launches chaincode (or runs it as a service).

use std::fmt;
use std::path::Path;

use base64::Engine as _;

use crate::error::{Error, Result};

/// Environment variables and arguments [`config_from_env`] reads.
pub mod vars {
    /// The peer's chaincode address, `host:port` (dial mode).
    pub const PEER_ADDRESS: &str = "CORE_PEER_ADDRESS";
    /// The same, as a command-line flag (`--peer.address=host:port`).
    pub const PEER_ADDRESS_FLAG: &str = "peer.address";
    /// The chaincode id (package id) to register as.
    pub const CHAINCODE_ID_NAME: &str = "CORE_CHAINCODE_ID_NAME";
    /// `true` to dial the peer over TLS.
    pub const TLS_ENABLED: &str = "CORE_PEER_TLS_ENABLED";
    /// PEM file of the CA certificates that sign the peer's TLS certificate.
    pub const TLS_ROOTCERT_FILE: &str = "CORE_PEER_TLS_ROOTCERT_FILE";
    /// Optional host name to check the peer's TLS certificate against,
    /// instead of the address's host.
    pub const TLS_SERVER_HOST_OVERRIDE: &str = "CORE_PEER_TLS_SERVERHOSTOVERRIDE";
    /// File holding the client TLS key as base64 of its PEM text.
    pub const TLS_CLIENT_KEY_PATH: &str = "CORE_TLS_CLIENT_KEY_PATH";
    /// File holding the client TLS certificate as base64 of its PEM text.
    pub const TLS_CLIENT_CERT_PATH: &str = "CORE_TLS_CLIENT_CERT_PATH";
    /// PEM file of the client TLS key (preferred over the base64 one).
    pub const TLS_CLIENT_KEY_FILE: &str = "CORE_TLS_CLIENT_KEY_FILE";
    /// PEM file of the client TLS certificate (preferred over the base64 one).
    pub const TLS_CLIENT_CERT_FILE: &str = "CORE_TLS_CLIENT_CERT_FILE";
    /// Listen address; its presence selects server mode.
    pub const SERVER_ADDRESS: &str = "CHAINCODE_SERVER_ADDRESS";
    /// The chaincode id in server mode (falls back to `CORE_CHAINCODE_ID_NAME`).
    pub const CHAINCODE_ID: &str = "CHAINCODE_ID";
    /// PEM file of the server's TLS certificate (server mode).
    pub const SERVER_TLS_CERT_FILE: &str = "CHAINCODE_TLS_CERT_FILE";
    /// PEM file of the server's TLS key (server mode).
    pub const SERVER_TLS_KEY_FILE: &str = "CHAINCODE_TLS_KEY_FILE";
    /// PEM file of the CAs whose client certificates the server requires.
    pub const SERVER_TLS_CLIENT_CA_FILE: &str = "CHAINCODE_TLS_CLIENT_CA_FILE";
}

/// TLS settings for dialing the peer.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM of the CA certificates trusted for the peer's certificate.
    pub root_ca_pem: Vec<u8>,
    /// PEM certificate and key for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify the peer's certificate against, when it is not the
    /// host of the address.
    pub domain_name: Option<String>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field(
                "root_ca_pem",
                &format_args!("{} bytes", self.root_ca_pem.len()),
            )
            .field(
                "identity",
                &self.identity.as_ref().map(|_| "<cert and key>"),
            )
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

/// Dial mode: the chaincode connects to the peer's `ChaincodeSupport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialConfig {
    /// The peer's address: `host:port`, or a URI with `http`/`https`.
    pub peer_address: String,
    /// The chaincode id (package id) to register as.
    pub chaincode_id: String,
    /// TLS settings; plaintext when `None`.
    pub tls: Option<ClientTls>,
}

impl DialConfig {
    /// A plaintext configuration.
    pub fn new(peer_address: impl Into<String>, chaincode_id: impl Into<String>) -> Self {
        Self {
            peer_address: peer_address.into(),
            chaincode_id: chaincode_id.into(),
            tls: None,
        }
    }

    /// The URI to dial: the address as given when it has a scheme, else
    /// `https://` with TLS and `http://` without.
    pub fn uri(&self) -> String {
        if self.peer_address.contains("://") {
            self.peer_address.clone()
        } else if self.tls.is_some() {
            format!("https://{}", self.peer_address)
        } else {
            format!("http://{}", self.peer_address)
        }
    }
}

/// TLS settings for serving the peer.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate (chain) of the server.
    pub cert_pem: Vec<u8>,
    /// PEM private key of the server.
    pub key_pem: Vec<u8>,
    /// PEM of the CAs a client certificate must chain to; when set, clients
    /// must present one.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("client_ca_pem", &self.client_ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

/// Server mode ("chaincode as a service"): the peer connects to the
/// chaincode's `Chaincode` service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Listen address, `host:port`.
    pub address: String,
    /// The chaincode id (package id) to register as on every connection.
    pub chaincode_id: String,
    /// TLS settings; plaintext when `None`.
    pub tls: Option<ServerTls>,
}

impl ServerConfig {
    /// A plaintext configuration.
    pub fn new(address: impl Into<String>, chaincode_id: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            chaincode_id: chaincode_id.into(),
            tls: None,
        }
    }
}

/// Which way the chaincode meets its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Dial the peer ([`start`](crate::start)).
    Dial(DialConfig),
    /// Listen for the peer ([`serve`](crate::serve)).
    Server(ServerConfig),
}

/// Reads the mode from the process environment and `args` (the command
/// line, for `--peer.address`).
///
/// Server mode when `CHAINCODE_SERVER_ADDRESS` is set, dial mode otherwise;
/// see [`vars`] for every variable. Empty variables count as unset. A
/// missing or unusable setting is an [`Error::Config`] naming it.
pub fn config_from_env<I, S>(args: I) -> Result<Mode>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    config_from(args, |name| {
        std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
    })
}

/// [`config_from_env`] with the variables looked up through `lookup`.
pub fn config_from<I, S, F>(args: I, lookup: F) -> Result<Mode>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
    F: Fn(&str) -> Option<String>,
{
    let env = Env(lookup);
    if let Some(address) = env.get(vars::SERVER_ADDRESS) {
        return server_config(&env, address).map(Mode::Server);
    }
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let peer_address = match flag_value(&args, vars::PEER_ADDRESS_FLAG)? {
        Some(address) => address,
        None => env.get(vars::PEER_ADDRESS).ok_or_else(|| {
            Error::config(
                vars::PEER_ADDRESS,
                format!(
                    "not set (nor is --{} given), and {} is not set for server mode",
                    vars::PEER_ADDRESS_FLAG,
                    vars::SERVER_ADDRESS
                ),
            )
        })?,
    };
    let chaincode_id = env.require(vars::CHAINCODE_ID_NAME)?;
    let tls = if env.flag(vars::TLS_ENABLED)? {
        Some(client_tls(&env)?)
    } else {
        None
    };
    Ok(Mode::Dial(DialConfig {
        peer_address,
        chaincode_id,
        tls,
    }))
}

struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    fn require(&self, name: &str) -> Result<String> {
        self.get(name).ok_or_else(|| Error::config(name, "not set"))
    }

    fn flag(&self, name: &str) -> Result<bool> {
        let Some(value) = self.get(name) else {
            return Ok(false);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "yes" => Ok(true),
            "0" | "f" | "false" | "no" => Ok(false),
            _ => Err(Error::config(
                name,
                format!("{value:?} is not a boolean (true or false)"),
            )),
        }
    }

    /// Reads the PEM file the variable names.
    fn pem_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.get(name)
            .map(|path| {
                let bytes = read(name, &path)?;
                check_pem(name, &path, bytes)
            })
            .transpose()
    }

    /// Reads the file the variable names, holding base64 of PEM text.
    fn base64_pem_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.get(name)
            .map(|path| {
                let bytes = read(name, &path)?;
                // Accept plain PEM too; Fabric writes base64.
                let pem = if looks_like_pem(&bytes) {
                    bytes
                } else {
                    let text: Vec<u8> = bytes
                        .into_iter()
                        .filter(|b| !b.is_ascii_whitespace())
                        .collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| {
                            Error::config(name, format!("{path}: not base64-encoded PEM: {e}"))
                        })?
                };
                check_pem(name, &path, pem)
            })
            .transpose()
    }
}

fn read(name: &str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(Path::new(path))
        .map_err(|e| Error::config(name, format!("cannot read {path}: {e}")))
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(10).any(|w| w == b"-----BEGIN")
}

fn check_pem(name: &str, path: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if looks_like_pem(&bytes) {
        Ok(bytes)
    } else {
        Err(Error::config(name, format!("{path} holds no PEM data")))
    }
}

/// The value of `--name=value`, `-name=value`, `--name value` or
/// `-name value` in `args`; the last one wins.
fn flag_value(args: &[String], name: &str) -> Result<Option<String>> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        if body == name {
            let value = iter
                .next()
                .filter(|v| !v.starts_with('-'))
                .ok_or_else(|| Error::config(format!("--{name}"), "needs a value"))?;
            found = Some(value.clone());
        } else if let Some(value) = body
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
        {
            if value.is_empty() {
                return Err(Error::config(format!("--{name}"), "needs a value"));
            }
            found = Some(value.to_owned());
        }
    }
    Ok(found)
}

fn client_tls<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<ClientTls> {
    let root_ca_pem = env.pem_file(vars::TLS_ROOTCERT_FILE)?.ok_or_else(|| {
        Error::config(
            vars::TLS_ROOTCERT_FILE,
            format!("not set, but {} is true", vars::TLS_ENABLED),
        )
    })?;
    let (cert, cert_var) = match env.pem_file(vars::TLS_CLIENT_CERT_FILE)? {
        Some(pem) => (Some(pem), vars::TLS_CLIENT_CERT_FILE),
        None => (
            env.base64_pem_file(vars::TLS_CLIENT_CERT_PATH)?,
            vars::TLS_CLIENT_CERT_PATH,
        ),
    };
    let (key, key_var) = match env.pem_file(vars::TLS_CLIENT_KEY_FILE)? {
        Some(pem) => (Some(pem), vars::TLS_CLIENT_KEY_FILE),
        None => (
            env.base64_pem_file(vars::TLS_CLIENT_KEY_PATH)?,
            vars::TLS_CLIENT_KEY_PATH,
        ),
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Error::config(
                vars::TLS_CLIENT_KEY_FILE,
                format!(
                    "neither it nor {} is set, but {cert_var} is",
                    vars::TLS_CLIENT_KEY_PATH
                ),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::config(
                vars::TLS_CLIENT_CERT_FILE,
                format!(
                    "neither it nor {} is set, but {key_var} is",
                    vars::TLS_CLIENT_CERT_PATH
                ),
            ))
        }
    };
    Ok(ClientTls {
        root_ca_pem,
        identity,
        domain_name: env.get(vars::TLS_SERVER_HOST_OVERRIDE),
    })
}

fn server_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    address: String,
) -> Result<ServerConfig> {
    let chaincode_id = env
        .get(vars::CHAINCODE_ID)
        .or_else(|| env.get(vars::CHAINCODE_ID_NAME))
        .ok_or_else(|| {
            Error::config(
                vars::CHAINCODE_ID,
                format!(
                    "not set (nor is {}), but {} is",
                    vars::CHAINCODE_ID_NAME,
                    vars::SERVER_ADDRESS
                ),
            )
        })?;
    let cert = env.pem_file(vars::SERVER_TLS_CERT_FILE)?;
    let key = env.pem_file(vars::SERVER_TLS_KEY_FILE)?;
    let client_ca = env.pem_file(vars::SERVER_TLS_CLIENT_CA_FILE)?;
    let tls = match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Some(ServerTls {
            cert_pem,
            key_pem,
            client_ca_pem: client_ca,
        }),
        (None, None) if client_ca.is_some() => {
            return Err(Error::config(
                vars::SERVER_TLS_CERT_FILE,
                format!("not set, but {} is", vars::SERVER_TLS_CLIENT_CA_FILE),
            ))
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(Error::config(
                vars::SERVER_TLS_KEY_FILE,
                format!("not set, but {} is", vars::SERVER_TLS_CERT_FILE),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::config(
                vars::SERVER_TLS_CERT_FILE,
                format!("not set, but {} is", vars::SERVER_TLS_KEY_FILE),
            ))
        }
    };
    Ok(ServerConfig {
        address,
        chaincode_id,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn file(dir: &tempfile::TempDir, name: &str, contents: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn config_variable(result: Result<Mode>) -> String {
        match result {
            Err(Error::Config { variable, .. }) => variable,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn dial_mode_plaintext() {
        let mode = config_from(
            ["cc"],
            lookup(&[
                ("CORE_PEER_ADDRESS", "peer0:7052"),
                ("CORE_CHAINCODE_ID_NAME", "basic_1.0:ab12"),
                ("CORE_PEER_TLS_ENABLED", "false"),
            ]),
        )
        .unwrap();
        let Mode::Dial(dial) = mode else {
            panic!("expected dial mode")
        };
        assert_eq!(dial.peer_address, "peer0:7052");
        assert_eq!(dial.chaincode_id, "basic_1.0:ab12");
        assert!(dial.tls.is_none());
        assert_eq!(dial.uri(), "http://peer0:7052");
    }

    #[test]
    fn peer_address_flag_wins_over_the_variable() {
        let vars = lookup(&[
            ("CORE_PEER_ADDRESS", "env:1"),
            ("CORE_CHAINCODE_ID_NAME", "cc:1"),
        ]);
        for args in [
            vec!["cc", "-peer.address=flag:2"],
            vec!["cc", "--peer.address=flag:2"],
            vec!["cc", "--peer.address", "flag:2"],
            vec!["cc", "-peer.address", "flag:2"],
        ] {
            let Mode::Dial(dial) = config_from(args, &vars).unwrap() else {
                panic!("expected dial mode")
            };
            assert_eq!(dial.peer_address, "flag:2");
        }
        let no_env = lookup(&[("CORE_CHAINCODE_ID_NAME", "cc:1")]);
        let Mode::Dial(dial) = config_from(["cc", "--peer.address=p:3"], &no_env).unwrap() else {
            panic!("expected dial mode")
        };
        assert_eq!(dial.peer_address, "p:3");
        assert_eq!(
            config_variable(config_from(["cc", "--peer.address"], &no_env)),
            "--peer.address"
        );
    }

    #[test]
    fn missing_settings_are_named() {
        assert_eq!(
            config_variable(config_from(Vec::<String>::new(), lookup(&[]))),
            "CORE_PEER_ADDRESS"
        );
        assert_eq!(
            config_variable(config_from(
                Vec::<String>::new(),
                lookup(&[("CORE_PEER_ADDRESS", "p:1"), ("CORE_CHAINCODE_ID_NAME", "")])
            )),
            "CORE_CHAINCODE_ID_NAME"
        );
        assert_eq!(
            config_variable(config_from(
                Vec::<String>::new(),
                lookup(&[
                    ("CORE_PEER_ADDRESS", "p:1"),
                    ("CORE_CHAINCODE_ID_NAME", "cc:1"),
                    ("CORE_PEER_TLS_ENABLED", "maybe"),
                ])
            )),
            "CORE_PEER_TLS_ENABLED"
        );
        assert_eq!(
            config_variable(config_from(
                Vec::<String>::new(),
                lookup(&[
                    ("CORE_PEER_ADDRESS", "p:1"),
                    ("CORE_CHAINCODE_ID_NAME", "cc:1"),
                    ("CORE_PEER_TLS_ENABLED", "true"),
                ])
            )),
            "CORE_PEER_TLS_ROOTCERT_FILE"
        );
        assert_eq!(
            config_variable(config_from(
                Vec::<String>::new(),
                lookup(&[("CHAINCODE_SERVER_ADDRESS", "0.0.0.0:9999")])
            )),
            "CHAINCODE_ID"
        );
    }

    #[test]
    fn dial_tls_reads_base64_and_plain_pem() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let root = file(&dir, "root.pem", CERT);
        let cert_b64 = file(&dir, "client.crt", &format!("{}\n", b64(CERT)));
        let key_b64 = file(&dir, "client.key", &b64(KEY));
        let vars = [
            ("CORE_PEER_ADDRESS", "peer0:7052"),
            ("CORE_CHAINCODE_ID_NAME", "cc:1"),
            ("CORE_PEER_TLS_ENABLED", "TRUE"),
            ("CORE_PEER_TLS_ROOTCERT_FILE", root.as_str()),
            ("CORE_TLS_CLIENT_CERT_PATH", cert_b64.as_str()),
            ("CORE_TLS_CLIENT_KEY_PATH", key_b64.as_str()),
        ];
        let Mode::Dial(dial) = config_from(["cc"], lookup(&vars)).unwrap() else {
            panic!("expected dial mode")
        };
        assert_eq!(dial.uri(), "https://peer0:7052");
        let tls = dial.tls.unwrap();
        assert_eq!(tls.root_ca_pem, CERT.as_bytes());
        assert_eq!(
            tls.identity,
            Some((CERT.as_bytes().to_vec(), KEY.as_bytes().to_vec()))
        );

        // The plain PEM files win over the base64 ones.
        let other_cert = CERT.replace("MIIB", "MIIC");
        let cert_pem = file(&dir, "client_pem.crt", &other_cert);
        let key_pem = file(&dir, "client_pem.key", KEY);
        let mut with_files = vars.to_vec();
        with_files.push(("CORE_TLS_CLIENT_CERT_FILE", cert_pem.as_str()));
        with_files.push(("CORE_TLS_CLIENT_KEY_FILE", key_pem.as_str()));
        let Mode::Dial(dial) = config_from(["cc"], lookup(&with_files)).unwrap() else {
            panic!("expected dial mode")
        };
        let (cert, _) = dial.tls.unwrap().identity.unwrap();
        assert_eq!(cert, other_cert.as_bytes());

        // A certificate without a key is refused.
        let half = [
            ("CORE_PEER_ADDRESS", "peer0:7052"),
            ("CORE_CHAINCODE_ID_NAME", "cc:1"),
            ("CORE_PEER_TLS_ENABLED", "true"),
            ("CORE_PEER_TLS_ROOTCERT_FILE", root.as_str()),
            ("CORE_TLS_CLIENT_CERT_FILE", cert_pem.as_str()),
        ];
        assert_eq!(
            config_variable(config_from(["cc"], lookup(&half))),
            "CORE_TLS_CLIENT_KEY_FILE"
        );

        // Garbage instead of base64 names the variable.
        let junk = file(&dir, "junk", "not base64 at all!");
        let bad = [
            ("CORE_PEER_ADDRESS", "peer0:7052"),
            ("CORE_CHAINCODE_ID_NAME", "cc:1"),
            ("CORE_PEER_TLS_ENABLED", "true"),
            ("CORE_PEER_TLS_ROOTCERT_FILE", root.as_str()),
            ("CORE_TLS_CLIENT_CERT_PATH", junk.as_str()),
        ];
        assert_eq!(
            config_variable(config_from(["cc"], lookup(&bad))),
            "CORE_TLS_CLIENT_CERT_PATH"
        );
    }

    #[test]
    fn server_mode() {
        let dir = tempfile::tempdir().unwrap();
        let cert = file(&dir, "server.crt", CERT);
        let key = file(&dir, "server.key", KEY);
        let Mode::Server(server) = config_from(
            ["cc", "--peer.address=ignored:1"],
            lookup(&[
                ("CHAINCODE_SERVER_ADDRESS", "0.0.0.0:9999"),
                ("CORE_CHAINCODE_ID_NAME", "basic:1"),
                ("CHAINCODE_TLS_CERT_FILE", cert.as_str()),
                ("CHAINCODE_TLS_KEY_FILE", key.as_str()),
            ]),
        )
        .unwrap() else {
            panic!("expected server mode")
        };
        assert_eq!(server.address, "0.0.0.0:9999");
        assert_eq!(server.chaincode_id, "basic:1");
        let tls = server.tls.unwrap();
        assert_eq!(tls.key_pem, KEY.as_bytes());
        assert!(tls.client_ca_pem.is_none());
        assert!(!format!("{tls:?}").contains("PRIVATE"));

        let Mode::Server(server) = config_from(
            Vec::<String>::new(),
            lookup(&[
                ("CHAINCODE_SERVER_ADDRESS", "127.0.0.1:9999"),
                ("CHAINCODE_ID", "basic:2"),
                ("CORE_CHAINCODE_ID_NAME", "basic:1"),
            ]),
        )
        .unwrap() else {
            panic!("expected server mode")
        };
        assert_eq!(server.chaincode_id, "basic:2");
        assert!(server.tls.is_none());

        assert_eq!(
            config_variable(config_from(
                Vec::<String>::new(),
                lookup(&[
                    ("CHAINCODE_SERVER_ADDRESS", "127.0.0.1:9999"),
                    ("CHAINCODE_ID", "basic:2"),
                    ("CHAINCODE_TLS_CERT_FILE", cert.as_str()),
                ]),
            )),
            "CHAINCODE_TLS_KEY_FILE"
        );
        let missing = dir.path().join("missing.pem");
        assert_eq!(
            config_variable(config_from(
                Vec::<String>::new(),
                lookup(&[
                    ("CHAINCODE_SERVER_ADDRESS", "127.0.0.1:9999"),
                    ("CHAINCODE_ID", "basic:2"),
                    ("CHAINCODE_TLS_CERT_FILE", cert.as_str()),
                    ("CHAINCODE_TLS_KEY_FILE", &missing.to_string_lossy()),
                ]),
            )),
            "CHAINCODE_TLS_KEY_FILE"
        );
    }
}
