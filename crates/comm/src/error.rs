//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = CommError> = std::result::Result<T, E>;

/// Where a piece of PEM input came from, so that errors can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file on disk.
    File(PathBuf),
    /// Bytes handed over in memory; the text says what they were meant to be
    /// (for example "server certificate chain").
    Memory(&'static str),
}

impl fmt::Display for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(path) => write!(f, "file {}", path.display()),
            PemSource::Memory(what) => write!(f, "in-memory {what}"),
        }
    }
}

/// Everything that can go wrong while setting up TLS, listening or dialing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommError {
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// The input is not well-formed PEM.
    #[error("malformed PEM in {input}: {source}")]
    InvalidPem {
        /// Where the PEM came from.
        input: PemSource,
        /// What the PEM parser found.
        #[source]
        source: twill_crypto::CryptoError,
    },

    /// The input holds no `CERTIFICATE` block.
    #[error("no CERTIFICATE block in {input}")]
    NoCertificate {
        /// Where the PEM came from.
        input: PemSource,
    },

    /// A `CERTIFICATE` block does not hold a usable X.509 certificate.
    #[error("certificate #{index} in {input} is not valid X.509: {reason}")]
    InvalidCertificate {
        /// Where the PEM came from.
        input: PemSource,
        /// Zero-based position of the certificate among the input's certificates.
        index: usize,
        /// What the parser objected to.
        reason: String,
    },

    /// The input holds no private key block.
    #[error("no private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block) in {input}")]
    NoPrivateKey {
        /// Where the PEM came from.
        input: PemSource,
    },

    /// The input holds more than one private key, so which one to use is ambiguous.
    #[error("more than one private key in {input}")]
    MultiplePrivateKeys {
        /// Where the PEM came from.
        input: PemSource,
    },

    /// The private key is password-protected; Twill only loads plain keys.
    #[error("the private key in {input} is encrypted, which is not supported")]
    EncryptedPrivateKey {
        /// Where the PEM came from.
        input: PemSource,
    },

    /// The private key does not belong to the leaf certificate.
    #[error("the private key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// Where the certificate came from.
        cert: PemSource,
        /// Where the key came from.
        key: PemSource,
    },

    /// The private key's type is not supported by the TLS stack.
    #[error("unsupported private key in {input}: {source}")]
    UnsupportedKey {
        /// Where the PEM came from.
        input: PemSource,
        /// What rustls reported.
        #[source]
        source: rustls::Error,
    },

    /// Client authentication is required but no client root CA was given.
    #[error("client certificates are required but no client root CA certificates were given")]
    NoClientRoots,

    /// A TLS client was configured without any root CA to trust.
    #[error("no root CA certificates to verify the server with")]
    NoServerRoots,

    /// The TLS server name override is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {name:?}")]
    InvalidServerName {
        /// The name given.
        name: String,
    },

    /// rustls refused the configuration.
    #[error("cannot build the TLS {context} configuration: {source}")]
    Tls {
        /// Which configuration was being built.
        context: &'static str,
        /// What rustls reported.
        #[source]
        source: rustls::Error,
    },

    /// rustls refused the client certificate verifier.
    #[error("cannot build the TLS client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),

    /// An address is not of the form `host:port`.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        addr: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Binding a listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// tonic rejected the transport configuration.
    #[error("invalid gRPC transport configuration ({context}): {source}")]
    Transport {
        /// What was being configured.
        context: &'static str,
        /// What tonic reported.
        #[source]
        source: tonic::transport::Error,
    },

    /// Dialing a gRPC endpoint failed (TCP, TLS handshake or HTTP/2 setup).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: String,
        /// What tonic reported.
        #[source]
        source: tonic::transport::Error,
    },

    /// Dialing a gRPC endpoint did not finish in time.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address dialed.
        addr: String,
        /// How long we waited.
        timeout: std::time::Duration,
    },
}
