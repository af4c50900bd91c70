//! The crate's single error type.

use thiserror::Error;

/// Result alias used by every fallible function in this crate.
pub type Result<T> = std::result::Result<T, CryptoError>;

/// What is wrong with the DER encoding of an ECDSA signature.
///
/// Shared by [`CryptoError::MalformedSignature`] (the bytes are not a valid
/// encoding at all) and [`CryptoError::NonCanonicalSignature`] (valid BER, but
/// not the single DER form that Fabric accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DerIssue {
    /// The input ends before a complete element was read.
    Truncated,
    /// Bytes follow the end of the outer SEQUENCE or the second INTEGER.
    TrailingBytes,
    /// The outer element is not a SEQUENCE.
    NotASequence,
    /// An element inside the SEQUENCE is not an INTEGER.
    NotAnInteger,
    /// A length uses the indefinite form or needs more bytes than a signature can.
    UnsupportedLength,
    /// An INTEGER has no content bytes.
    EmptyInteger,
    /// An INTEGER has its sign bit set.
    NegativeInteger,
    /// A length is written in long form (or with extra bytes) where a shorter form fits.
    NonMinimalLength,
    /// An INTEGER carries a leading zero byte it does not need.
    NonMinimalInteger,
}

impl std::fmt::Display for DerIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            DerIssue::Truncated => "truncated",
            DerIssue::TrailingBytes => "trailing bytes",
            DerIssue::NotASequence => "not a SEQUENCE",
            DerIssue::NotAnInteger => "element is not an INTEGER",
            DerIssue::UnsupportedLength => "unsupported length encoding",
            DerIssue::EmptyInteger => "empty INTEGER",
            DerIssue::NegativeInteger => "negative INTEGER",
            DerIssue::NonMinimalLength => "non-minimal length",
            DerIssue::NonMinimalInteger => "non-minimal INTEGER",
        };
        f.write_str(text)
    }
}

/// Which half of an ECDSA signature a check refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureComponent {
    /// The `r` value.
    R,
    /// The `s` value.
    S,
}

impl std::fmt::Display for SignatureComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureComponent::R => "r",
            SignatureComponent::S => "s",
        })
    }
}

/// What is wrong with a PEM document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PemIssue {
    /// A `BEGIN` line has no matching `END` line.
    MissingEnd,
    /// An `END` line appears outside any block.
    UnexpectedEnd,
    /// A `BEGIN` line appears inside another block.
    NestedBegin,
    /// The `END` label differs from the `BEGIN` label.
    LabelMismatch,
    /// A block carries RFC 1421 headers (for example a legacy encrypted key).
    HeadersUnsupported,
    /// The body is not valid padded standard base64.
    BadBase64,
}

impl std::fmt::Display for PemIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemIssue::MissingEnd => "BEGIN without END",
            PemIssue::UnexpectedEnd => "END without BEGIN",
            PemIssue::NestedBegin => "BEGIN inside a block",
            PemIssue::LabelMismatch => "END label differs from BEGIN label",
            PemIssue::HeadersUnsupported => "encapsulated headers are not supported",
            PemIssue::BadBase64 => "invalid base64 body",
        })
    }
}

/// Every failure this crate reports.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The signature bytes are not a DER `SEQUENCE { INTEGER r, INTEGER s }`.
    #[error("malformed signature DER: {issue}")]
    MalformedSignature {
        /// The first problem found.
        issue: DerIssue,
    },
    /// The signature is valid BER but not canonical DER.
    #[error("non-canonical signature DER: {issue}")]
    NonCanonicalSignature {
        /// The first problem found.
        issue: DerIssue,
    },
    /// `r` or `s` is zero or not below the P-256 group order.
    #[error("signature {component} is out of range")]
    SignatureScalarOutOfRange {
        /// Which value is out of range.
        component: SignatureComponent,
    },
    /// `s` is in the upper half of the group order; Fabric only accepts low-S.
    #[error("signature s is not in the lower half of the group order")]
    HighS,
    /// The signature is well formed but does not match the key and message.
    #[error("the signature does not match the message and public key")]
    BadSignature,
    /// The private key bytes could not be parsed as a P-256 key.
    #[error("invalid P-256 private key ({encoding})")]
    InvalidPrivateKey {
        /// The encoding that was being parsed, e.g. `"PKCS#8"` or `"SEC1"`.
        encoding: &'static str,
    },
    /// The public key bytes are not a valid P-256 point or SPKI structure.
    #[error("invalid P-256 public key ({encoding})")]
    InvalidPublicKey {
        /// The encoding that was being parsed, e.g. `"SEC1"` or `"SPKI"`.
        encoding: &'static str,
    },
    /// A PEM document is malformed.
    #[error("invalid PEM at line {line}: {issue}")]
    InvalidPem {
        /// 1-based line where the problem was detected.
        line: usize,
        /// The problem.
        issue: PemIssue,
    },
    /// A PEM document holds no block that can be loaded as a private key.
    #[error("no private key block in PEM (labels found: {labels:?})")]
    NoPrivateKeyInPem {
        /// Labels of the blocks that were present.
        labels: Vec<String>,
    },
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// The signing primitive reported a failure.
    #[error("signing failed")]
    SigningFailed,
}

impl CryptoError {
    /// A stable, machine-matchable code for this error, for logs and RPC statuses.
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::MalformedSignature { .. } => "CRYPTO_SIG_MALFORMED",
            CryptoError::NonCanonicalSignature { .. } => "CRYPTO_SIG_NON_CANONICAL",
            CryptoError::SignatureScalarOutOfRange { .. } => "CRYPTO_SIG_OUT_OF_RANGE",
            CryptoError::HighS => "CRYPTO_SIG_HIGH_S",
            CryptoError::BadSignature => "CRYPTO_SIG_INVALID",
            CryptoError::InvalidPrivateKey { .. } => "CRYPTO_PRIVATE_KEY_INVALID",
            CryptoError::InvalidPublicKey { .. } => "CRYPTO_PUBLIC_KEY_INVALID",
            CryptoError::InvalidPem { .. } => "CRYPTO_PEM_INVALID",
            CryptoError::NoPrivateKeyInPem { .. } => "CRYPTO_PEM_NO_PRIVATE_KEY",
            CryptoError::Rng => "CRYPTO_RNG_FAILED",
            CryptoError::SigningFailed => "CRYPTO_SIGNING_FAILED",
        }
    }
}
