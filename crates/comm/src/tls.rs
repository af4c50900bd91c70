//! TLS material for servers and clients, checked when it is loaded.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::{CommError, PemSource, Result};
use crate::pem::{
    certificates_to_pem, parse_certificates, parse_private_key, read_file, warn_if_not_current,
    KeyMaterial,
};
use crate::TLS_HANDSHAKE_TIMEOUT;

/// ALPN list for gRPC: HTTP/2 only. Fabric's Node clients refuse a TLS
/// connection that does not negotiate `h2`.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];

/// ALPN list for HTTP listeners that serve both HTTP/2 and HTTP/1.1 clients
/// (the admin and operations REST endpoints).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Paths of PEM files making up one TLS identity and its trust roots, as they
/// appear in node configuration (`tls.cert.file`, `tls.key.file`,
/// `tls.rootcert.file` / `clientRootCAs.files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf certificate (PKCS#8, SEC1 or PKCS#1; not encrypted).
    pub key: PathBuf,
    /// Root CA certificates: for a server, the CAs its clients' certificates
    /// must chain to; for a client, the CAs the server's certificate must chain to.
    pub root_cas: Vec<PathBuf>,
}

/// Whether a TLS server asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never ask for a client certificate. This is exactly what Fabric does
    /// with `clientAuthRequired: false`, the default for client-facing
    /// endpoints.
    None,
    /// Ask for a certificate and verify it against the client roots if one is
    /// sent, but also accept clients that send none. Unlike Fabric's default,
    /// a client that presents a certificate from an untrusted CA is refused.
    /// With no client roots this behaves as [`ClientAuth::None`].
    Optional,
    /// Refuse clients without a certificate that chains to the client roots
    /// (Fabric's `clientAuthRequired: true`; node-to-node and admin endpoints).
    Required,
}

/// The rustls crypto provider Twill uses: the process default if one has been
/// installed, otherwise `ring`.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Makes `ring` the process-wide rustls provider unless one is already set.
///
/// tonic builds its TLS configurations with the process default; should more
/// than one provider be compiled in, rustls cannot pick one by itself.
pub(crate) fn install_default_provider() {
    // An error only means that some provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn root_store(certs: &[CertificateDer<'static>], context: &'static str) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store
            .add(cert.clone())
            .map_err(|source| CommError::Tls { context, source })?;
    }
    Ok(store)
}

/// Parses root CA PEM inputs and checks that each certificate can serve as a
/// trust anchor.
fn parse_roots<'a>(
    inputs: impl IntoIterator<Item = (&'a [u8], PemSource)>,
) -> Result<Vec<CertificateDer<'static>>> {
    let mut all = Vec::new();
    for (pem, input) in inputs {
        for (index, cert) in parse_certificates(pem, &input)?.into_iter().enumerate() {
            RootCertStore::empty().add(cert.clone()).map_err(|e| {
                CommError::InvalidCertificate {
                    input: input.clone(),
                    index,
                    reason: e.to_string(),
                }
            })?;
            all.push(cert);
        }
    }
    Ok(all)
}

/// Turns rustls's complaint about a certificate and key into an error that
/// names both inputs.
fn identity_error(
    source: rustls::Error,
    cert: &PemSource,
    key: &PemSource,
    context: &'static str,
) -> CommError {
    match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            CommError::KeyMismatch {
                cert: cert.clone(),
                key: key.clone(),
            }
        }
        // The key provider reports keys it cannot load as a general error.
        rustls::Error::General(_) => CommError::UnsupportedKey {
            input: key.clone(),
            source,
        },
        source => CommError::Tls { context, source },
    }
}

fn alpn(protocols: &[&[u8]]) -> Vec<Vec<u8>> {
    protocols.iter().map(|p| p.to_vec()).collect()
}

const SERVER_CERT: PemSource = PemSource::Memory("server certificate chain");
const SERVER_KEY: PemSource = PemSource::Memory("server private key");
const CLIENT_ROOTS: PemSource = PemSource::Memory("client root CA certificates");
const CLIENT_CERT: PemSource = PemSource::Memory("client certificate chain");
const CLIENT_KEY: PemSource = PemSource::Memory("client private key");
const SERVER_ROOTS: PemSource = PemSource::Memory("server root CA certificates");

/// A TLS server identity, the client roots it trusts and its client
/// authentication mode; checked on construction (the key matches the leaf
/// certificate, every root is a usable trust anchor).
#[derive(Clone)]
pub struct ServerTls {
    cert_chain: Vec<CertificateDer<'static>>,
    key: KeyMaterial,
    client_roots: Vec<CertificateDer<'static>>,
    client_auth: ClientAuth,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_chain_len", &self.cert_chain.len())
            .field("key", &self.key)
            .field("client_roots_len", &self.client_roots.len())
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

impl ServerTls {
    /// Builds a server TLS setup from PEM bytes: the certificate chain (leaf
    /// first), its private key, and any number of PEM inputs holding client
    /// root CA certificates.
    ///
    /// Fails if the PEM is malformed, a certificate is not X.509, the key
    /// does not match the leaf, or `client_auth` is [`ClientAuth::Required`]
    /// without client roots.
    pub fn from_pem(
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
        client_roots_pem: Vec<Vec<u8>>,
        client_auth: ClientAuth,
    ) -> Result<Self> {
        Self::build(
            (cert_chain_pem.as_ref(), SERVER_CERT),
            (key_pem.as_ref(), SERVER_KEY),
            client_roots_pem
                .iter()
                .map(|pem| (pem.as_slice(), CLIENT_ROOTS))
                .collect(),
            client_auth,
        )
    }

    /// Reads the server's certificate, key and client roots from files;
    /// errors name the offending file.
    pub fn from_files(files: &TlsFiles, client_auth: ClientAuth) -> Result<Self> {
        let cert = read_file(&files.cert)?;
        let key = read_file(&files.key)?;
        let roots = files
            .root_cas
            .iter()
            .map(|path| Ok((read_file(path)?, PemSource::File(path.clone()))))
            .collect::<Result<Vec<_>>>()?;
        Self::build(
            (&cert, PemSource::File(files.cert.clone())),
            (&key, PemSource::File(files.key.clone())),
            roots
                .iter()
                .map(|(pem, input)| (pem.as_slice(), input.clone()))
                .collect(),
            client_auth,
        )
    }

    fn build(
        (cert_pem, cert_input): (&[u8], PemSource),
        (key_pem, key_input): (&[u8], PemSource),
        roots: Vec<(&[u8], PemSource)>,
        client_auth: ClientAuth,
    ) -> Result<Self> {
        let cert_chain = parse_certificates(cert_pem, &cert_input)?;
        let key = parse_private_key(key_pem, &key_input)?;
        let client_roots = parse_roots(roots)?;
        if client_auth == ClientAuth::Required && client_roots.is_empty() {
            return Err(CommError::NoClientRoots);
        }
        if let Some(leaf) = cert_chain.first() {
            warn_if_not_current(leaf, &cert_input);
        }
        let tls = ServerTls {
            cert_chain,
            key,
            client_roots,
            client_auth,
        };
        // Building the rustls configuration once is what checks the key
        // against the certificate.
        tls.server_config(ALPN_GRPC, &cert_input, &key_input)?;
        Ok(tls)
    }

    /// The client authentication mode in force: [`ClientAuth::Optional`]
    /// without client roots is [`ClientAuth::None`].
    pub fn client_auth(&self) -> ClientAuth {
        match self.client_auth {
            ClientAuth::Optional if self.client_roots.is_empty() => ClientAuth::None,
            mode => mode,
        }
    }

    /// DER of the server's leaf certificate (a cluster node's TLS identity).
    pub fn cert_der(&self) -> &[u8] {
        self.cert_chain.first().map_or(&[], |c| c.as_ref())
    }

    /// DER of the whole certificate chain, leaf first.
    pub fn cert_chain_der(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    /// DER of the client root CA certificates.
    pub fn client_roots_der(&self) -> &[CertificateDer<'static>] {
        &self.client_roots
    }

    /// A rustls server configuration for gRPC (ALPN `h2` only), for servers
    /// that accept TLS themselves instead of through [`server_builder`](crate::server_builder).
    pub fn rustls_config(&self) -> Result<Arc<ServerConfig>> {
        self.server_config(ALPN_GRPC, &SERVER_CERT, &SERVER_KEY)
    }

    /// A rustls server configuration for HTTP listeners (ALPN `h2` and
    /// `http/1.1`), such as the admin and operations REST endpoints.
    pub fn rustls_config_http(&self) -> Result<Arc<ServerConfig>> {
        self.server_config(ALPN_HTTP, &SERVER_CERT, &SERVER_KEY)
    }

    fn server_config(
        &self,
        protocols: &[&[u8]],
        cert_input: &PemSource,
        key_input: &PemSource,
    ) -> Result<Arc<ServerConfig>> {
        const CONTEXT: &str = "server";
        let provider = crypto_provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| CommError::Tls {
                context: CONTEXT,
                source,
            })?;
        let builder = match self.client_auth() {
            ClientAuth::None => builder.with_no_client_auth(),
            mode => {
                let roots = Arc::new(root_store(&self.client_roots, CONTEXT)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if mode == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build()?)
            }
        };
        let mut config = builder
            .with_single_cert(self.cert_chain.clone(), self.key.to_rustls())
            .map_err(|e| identity_error(e, cert_input, key_input, CONTEXT))?;
        config.alpn_protocols = alpn(protocols);
        Ok(Arc::new(config))
    }

    /// The same setup in tonic's terms; tonic adds ALPN `h2` itself.
    pub(crate) fn tonic_config(&self) -> ServerTlsConfig {
        let identity = Identity::from_pem(certificates_to_pem(&self.cert_chain), self.key.to_pem());
        let config = ServerTlsConfig::new()
            .identity(identity)
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        match self.client_auth() {
            ClientAuth::None => config,
            mode => config
                .client_ca_root(Certificate::from_pem(certificates_to_pem(
                    &self.client_roots,
                )))
                .client_auth_optional(mode == ClientAuth::Optional),
        }
    }
}

/// What a TLS client trusts and, for mutual TLS, who it is.
///
/// Construction does not check anything; the material is checked when it is
/// used ([`connect`](crate::connect), [`connect_lazy`](crate::connect_lazy),
/// [`ClientTls::rustls_config`]) or right away by [`ClientTls::validate`] and
/// the `from_*files` constructors.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    root_cas_pem: Vec<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("root_cas", &self.root_cas_pem.len())
            .field("has_identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Checked client TLS material.
struct ResolvedClient {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, KeyMaterial)>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Trusts the root CA certificates in `root_cas_pem` (each element is one
    /// PEM input and may hold several certificates).
    pub fn new(root_cas_pem: Vec<Vec<u8>>) -> Self {
        ClientTls {
            root_cas_pem,
            identity: None,
            server_name: None,
        }
    }

    /// Presents this certificate chain (leaf first) and key to servers that
    /// ask for a client certificate (mutual TLS).
    pub fn with_identity(self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        ClientTls {
            identity: Some((cert_pem.into(), key_pem.into())),
            ..self
        }
    }

    /// Verifies the server's certificate against `name` instead of the host
    /// dialed (Fabric's `ssl_target_name_override` / `serverhostoverride`).
    pub fn with_server_name(self, name: impl Into<String>) -> Self {
        ClientTls {
            server_name: Some(name.into()),
            ..self
        }
    }

    /// Reads root CA files only (server authentication, no client
    /// certificate); errors name the offending file.
    pub fn from_root_files<P: AsRef<Path>>(root_cas: &[P]) -> Result<Self> {
        let roots = root_cas
            .iter()
            .map(|path| Ok((read_file(path.as_ref())?, path.as_ref().to_owned())))
            .collect::<Result<Vec<_>>>()?;
        parse_roots(
            roots
                .iter()
                .map(|(pem, path)| (pem.as_slice(), PemSource::File(path.clone()))),
        )?;
        Ok(ClientTls::new(
            roots.into_iter().map(|(pem, _)| pem).collect(),
        ))
    }

    /// Reads a mutual-TLS client setup: `files.cert` and `files.key` are the
    /// client identity, `files.root_cas` the CAs trusted for the server.
    /// Errors name the offending file.
    pub fn from_files(files: &TlsFiles) -> Result<Self> {
        let tls = ClientTls::from_root_files(&files.root_cas)?;
        let cert = read_file(&files.cert)?;
        let key = read_file(&files.key)?;
        let cert_input = PemSource::File(files.cert.clone());
        let key_input = PemSource::File(files.key.clone());
        let chain = parse_certificates(&cert, &cert_input)?;
        let key_material = parse_private_key(&key, &key_input)?;
        check_client_identity(chain, &key_material, &cert_input, &key_input)?;
        Ok(tls.with_identity(cert, key))
    }

    /// The server name override, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Whether a client certificate will be presented.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// Checks all material now: roots parse and are usable trust anchors, the
    /// identity's key matches its certificate, the server name is valid.
    pub fn validate(&self) -> Result<()> {
        self.resolve().map(drop)
    }

    fn resolve(&self) -> Result<ResolvedClient> {
        let roots = parse_roots(
            self.root_cas_pem
                .iter()
                .map(|pem| (pem.as_slice(), SERVER_ROOTS)),
        )?;
        if roots.is_empty() {
            return Err(CommError::NoServerRoots);
        }
        let identity = match &self.identity {
            None => None,
            Some((cert, key)) => {
                let chain = parse_certificates(cert, &CLIENT_CERT)?;
                let key = parse_private_key(key, &CLIENT_KEY)?;
                check_client_identity(chain.clone(), &key, &CLIENT_CERT, &CLIENT_KEY)?;
                Some((chain, key))
            }
        };
        let server_name = match &self.server_name {
            None => None,
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| CommError::InvalidServerName { name: name.clone() })?,
            ),
        };
        Ok(ResolvedClient {
            roots,
            identity,
            server_name,
        })
    }

    /// A rustls client configuration with ALPN `h2`, for callers that dial
    /// TLS themselves. The server name override, if any, is for the caller to
    /// pass to the connector (see [`ClientTls::server_name`]).
    pub fn rustls_config(&self) -> Result<Arc<ClientConfig>> {
        let resolved = self.resolve()?;
        client_config(
            &resolved.roots,
            resolved.identity.as_ref(),
            &CLIENT_CERT,
            &CLIENT_KEY,
        )
    }

    /// The same setup in tonic's terms; tonic adds ALPN `h2` itself and
    /// refuses servers that do not select it.
    pub(crate) fn tonic_config(&self) -> Result<ClientTlsConfig> {
        let resolved = self.resolve()?;
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(certificates_to_pem(&resolved.roots)))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some((chain, key)) = &resolved.identity {
            config = config.identity(Identity::from_pem(certificates_to_pem(chain), key.to_pem()));
        }
        if let Some(name) = &resolved.server_name {
            config = config.domain_name(name.to_str().into_owned());
        }
        Ok(config)
    }
}

fn check_client_identity(
    chain: Vec<CertificateDer<'static>>,
    key: &KeyMaterial,
    cert_input: &PemSource,
    key_input: &PemSource,
) -> Result<()> {
    if let Some(leaf) = chain.first() {
        warn_if_not_current(leaf, cert_input);
    }
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| CommError::Tls {
            context: "client",
            source,
        })?
        .with_root_certificates(RootCertStore::empty());
    builder
        .with_client_auth_cert(chain, key.to_rustls())
        .map_err(|e| identity_error(e, cert_input, key_input, "client"))?;
    Ok(())
}

fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<&(Vec<CertificateDer<'static>>, KeyMaterial)>,
    cert_input: &PemSource,
    key_input: &PemSource,
) -> Result<Arc<ClientConfig>> {
    const CONTEXT: &str = "client";
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| CommError::Tls {
            context: CONTEXT,
            source,
        })?
        .with_root_certificates(root_store(roots, CONTEXT)?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.to_rustls())
            .map_err(|e| identity_error(e, cert_input, key_input, CONTEXT))?,
    };
    config.alpn_protocols = alpn(ALPN_GRPC);
    Ok(Arc::new(config))
}
