//! The crate's single error type.

use crate::NodeRole;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use time::OffsetDateTime;
use twill_crypto::CryptoError;

/// Result alias used by every fallible function in this crate.
pub type Result<T> = std::result::Result<T, MspError>;

/// Why an identity does not satisfy a principal (carried by
/// [`MspError::PrincipalNotSatisfied`]).
#[derive(Debug, Clone, Error)]
pub enum Unsatisfied {
    /// The principal names another MSP than the identity's.
    #[error("principal is for MSP {principal_mspid:?}")]
    OtherMsp {
        /// The MSP id in the principal.
        principal_mspid: String,
    },
    /// The identity is not valid in its MSP, so it satisfies no principal.
    #[error("identity is not valid: {0}")]
    InvalidIdentity(Box<MspError>),
    /// ADMIN was asked for and the identity is neither listed as an admin nor
    /// carries the admin NodeOU.
    #[error("identity is not an admin")]
    NotAdmin,
    /// CLIENT, PEER or ORDERER was asked for but the MSP does not enable NodeOUs,
    /// so it cannot tell those roles apart.
    #[error("NodeOUs are not enabled, roles cannot be told apart")]
    NodeOusDisabled,
    /// The identity's NodeOU role is not the one asked for.
    #[error("identity role is {actual:?}, principal wants {wanted:?}")]
    WrongRole {
        /// The role the principal asks for.
        wanted: NodeRole,
        /// The identity's role, if it has one.
        actual: Option<NodeRole>,
    },
    /// The identity's certificate does not carry the OU the principal names.
    #[error("identity has no organizational unit {ou:?}")]
    MissingOu {
        /// The OU the principal asks for.
        ou: String,
    },
    /// The OU matches but the identity was certified by a different chain.
    #[error("organizational unit {ou:?} certified by a different chain")]
    CertifiersMismatch {
        /// The OU the principal asks for.
        ou: String,
    },
    /// An IDENTITY principal names a different certificate.
    #[error("identity differs from the one in the principal")]
    DifferentIdentity,
    /// An ANONYMITY principal asks for anonymous identities; X.509 identities are not.
    #[error("X.509 identities are not anonymous")]
    NotAnonymous,
}

/// Every failure this crate reports.
///
/// The enum is `Clone` because validation results (errors included) are
/// cached per certificate inside an [`crate::Msp`].
#[derive(Debug, Clone, Error)]
pub enum MspError {
    /// A lower-level cryptographic operation failed (PEM syntax, key parsing, signing).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A signature did not verify against an identity's public key.
    #[error("signature verification failed: {0}")]
    Signature(#[source] CryptoError),
    /// Bytes expected to hold PEM are not text.
    #[error("{what} is not PEM text")]
    NotPem {
        /// What was being read.
        what: &'static str,
    },
    /// Bytes expected to hold a PEM certificate hold no PEM block at all.
    /// (Only the first block of such bytes is ever used, whatever its label.)
    #[error("no PEM block where a certificate was expected (labels found: {labels:?})")]
    NoCertificate {
        /// Labels of the blocks that were present (always empty now that only
        /// the first block is looked at; kept for compatibility).
        labels: Vec<String>,
    },
    /// The DER of a certificate or CRL could not be parsed.
    #[error("invalid {what}: {reason}")]
    InvalidDer {
        /// `"certificate"` or `"CRL"`.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// A protobuf message could not be decoded.
    #[error("cannot decode {message}: {reason}")]
    Decode {
        /// The protobuf message name.
        message: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// An identity was presented to an MSP other than its own.
    #[error("identity belongs to MSP {actual:?}, expected {expected:?}")]
    MspIdMismatch {
        /// This MSP's id.
        expected: String,
        /// The identity's MSP id.
        actual: String,
    },
    /// No MSP with this id is known to the manager.
    #[error("MSP {mspid:?} is unknown")]
    UnknownMsp {
        /// The MSP id that was looked up.
        mspid: String,
    },
    /// `MSPConfig.type` is not 0 (FABRIC); Idemix and others are not supported.
    #[error("unsupported MSP type {msp_type} (only 0, FABRIC, is supported)")]
    UnsupportedMspType {
        /// The type found.
        msp_type: i32,
    },
    /// The MSP configuration has an empty name.
    #[error("MSP configuration has an empty name")]
    EmptyMspName,
    /// The MSP configuration has no root CA certificate.
    #[error("MSP {mspid:?} has no root CA certificate")]
    NoRootCerts {
        /// The MSP id.
        mspid: String,
    },
    /// A root or intermediate certificate lacks the CA basic constraint.
    #[error("CA certificate {subject:?} is not marked as a CA")]
    NotCaCertificate {
        /// Subject of the certificate.
        subject: String,
    },
    /// An intermediate certificate does not chain to any root of the MSP.
    #[error("intermediate certificate {subject:?} does not chain to a root of the MSP")]
    IntermediateNotChained {
        /// Subject of the intermediate.
        subject: String,
    },
    /// An OU identifier names a certificate that is not a root or intermediate of the MSP.
    #[error("certificate for organizational unit {ou:?} is not a CA of the MSP")]
    OuCertificateNotCa {
        /// The OU identifier it was configured for.
        ou: String,
    },
    /// An entry of `OrganizationalUnitIdentifiers` has no certificate. Fabric
    /// requires one there (NodeOU identifiers may omit it).
    #[error("organizational unit identifier {ou:?} has no certificate")]
    OuIdentifierWithoutCertificate {
        /// The OU identifier.
        ou: String,
    },
    /// The MSP lists no admin certificate and has no admin NodeOU in force, so
    /// nobody could ever satisfy its ADMIN role (Fabric rejects this setup).
    #[error("MSP {mspid:?} declares no administrators and no admin OU classification")]
    NoAdmins {
        /// The MSP id.
        mspid: String,
    },
    /// With NodeOUs off, every listed admin certificate must be a valid
    /// identity of the MSP (validity periods aside).
    #[error("admin certificate {index} is not a valid identity of the MSP: {source}")]
    InvalidAdmin {
        /// Position of the certificate in `admins`.
        index: usize,
        /// Why it is not valid.
        #[source]
        source: Box<MspError>,
    },
    /// With NodeOUs on, every listed admin certificate must carry the client
    /// or the admin OU.
    #[error(
        "admin certificate {index} carries neither the client nor the admin OU (OUs: {ous:?})"
    )]
    AdminWithoutRoleOu {
        /// Position of the certificate in `admins`.
        index: usize,
        /// The certificate's OUs.
        ous: Vec<String>,
    },
    /// Two MSPs with the same id but different configurations were given to
    /// [`crate::MspManager::try_new`].
    #[error("MSP {mspid:?} is defined twice with different configurations")]
    DuplicateMsp {
        /// The MSP id.
        mspid: String,
    },
    /// The crypto config asks for hash functions this implementation does not provide.
    #[error(
        "unsupported crypto config: signature hash family {signature_hash_family:?}, \
         identifier hash {identity_identifier_hash_function:?}"
    )]
    UnsupportedCryptoConfig {
        /// The configured signature hash family.
        signature_hash_family: String,
        /// The configured identity identifier hash function.
        identity_identifier_hash_function: String,
    },
    /// The identity's certificate is a CA certificate; CAs cannot act as identities.
    #[error("CA certificate {subject:?} cannot be used as an identity")]
    CaCertAsIdentity {
        /// Subject of the certificate.
        subject: String,
    },
    /// No chain from the certificate to a root of the MSP could be built.
    #[error("certificate {subject:?} (issuer {issuer:?}) does not chain to a root of the MSP")]
    UntrustedChain {
        /// Subject of the certificate.
        subject: String,
        /// Its issuer's name.
        issuer: String,
    },
    /// The certificate was issued by a CA that itself certifies other CAs of
    /// the MSP; identities must come from leaf CAs of the certification tree.
    #[error("issuer {issuer:?} is not a leaf CA of the MSP's certification tree")]
    IssuerNotLeafCa {
        /// Subject of the issuing CA.
        issuer: String,
    },
    /// A certificate of the chain has expired.
    #[error("certificate {subject:?} expired at {not_after}")]
    Expired {
        /// Subject of the expired certificate (the identity or one of its CAs).
        subject: String,
        /// End of its validity period.
        not_after: OffsetDateTime,
    },
    /// A certificate of the chain is not valid yet.
    #[error("certificate {subject:?} is not valid before {not_before}")]
    NotYetValid {
        /// Subject of the certificate (the identity or one of its CAs).
        subject: String,
        /// Start of its validity period.
        not_before: OffsetDateTime,
    },
    /// A certificate of the chain is listed in a CRL of its issuer.
    #[error("certificate {subject:?} (serial {serial}) has been revoked")]
    Revoked {
        /// Subject of the revoked certificate.
        subject: String,
        /// Its serial number, hex.
        serial: String,
    },
    /// The MSP restricts OUs and none of the identity's OUs is recognised.
    #[error("none of the organizational units {ous:?} is recognised by the MSP")]
    OuNotRecognized {
        /// The identity's OUs.
        ous: Vec<String>,
    },
    /// NodeOUs are enabled and the identity carries none of the role OUs.
    #[error("identity has no client, peer, admin or orderer OU (OUs: {ous:?})")]
    MissingNodeOu {
        /// The identity's OUs.
        ous: Vec<String>,
    },
    /// NodeOUs are enabled and the identity carries more than one role OU.
    #[error("identity has more than one of the client, peer, admin, orderer OUs (OUs: {ous:?})")]
    MultipleNodeOus {
        /// The identity's OUs.
        ous: Vec<String>,
    },
    /// A role OU is configured with a certificate and the identity was
    /// certified through a different chain.
    #[error("role OU {ou:?} was certified by a chain other than the configured one")]
    NodeOuCertifierMismatch {
        /// The role OU.
        ou: String,
    },
    /// A principal's bytes are malformed or of an unknown classification.
    #[error("invalid principal: {reason}")]
    InvalidPrincipal {
        /// What is wrong.
        reason: String,
    },
    /// The identity does not satisfy the principal.
    #[error("identity of MSP {mspid:?} does not satisfy the principal: {reason}")]
    PrincipalNotSatisfied {
        /// The identity's MSP id.
        mspid: String,
        /// Why not.
        reason: Unsatisfied,
    },
    /// A file or folder that must exist does not.
    #[error("{path} does not exist")]
    MissingPath {
        /// The missing path.
        path: PathBuf,
    },
    /// A folder that must hold certificates holds none.
    #[error("no certificate found in {path}")]
    NoCertificateIn {
        /// The folder.
        path: PathBuf,
    },
    /// No private key in the keystore folder matches the signing certificate.
    #[error("no private key in {path} matches the signing certificate")]
    NoMatchingKey {
        /// The keystore folder.
        path: PathBuf,
    },
    /// A private key does not belong to the certificate it was paired with.
    #[error("private key does not match the certificate of {subject:?}")]
    KeyMismatch {
        /// Subject of the certificate.
        subject: String,
    },
    /// `config.yaml` of an MSP folder is malformed.
    #[error("invalid MSP config file {path}: {reason}")]
    InvalidConfigFile {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// Reading a file or folder failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl MspError {
    /// A stable, machine-matchable code for this error, for logs and RPC statuses.
    pub fn code(&self) -> &'static str {
        match self {
            MspError::Crypto(_) => "MSP_CRYPTO",
            MspError::Signature(_) => "MSP_SIGNATURE_INVALID",
            MspError::NotPem { .. } => "MSP_NOT_PEM",
            MspError::NoCertificate { .. } => "MSP_NO_CERTIFICATE",
            MspError::InvalidDer { .. } => "MSP_INVALID_DER",
            MspError::Decode { .. } => "MSP_DECODE",
            MspError::MspIdMismatch { .. } => "MSP_ID_MISMATCH",
            MspError::UnknownMsp { .. } => "MSP_UNKNOWN",
            MspError::UnsupportedMspType { .. } => "MSP_UNSUPPORTED_TYPE",
            MspError::EmptyMspName => "MSP_EMPTY_NAME",
            MspError::NoRootCerts { .. } => "MSP_NO_ROOT_CERTS",
            MspError::NotCaCertificate { .. } => "MSP_NOT_CA",
            MspError::IntermediateNotChained { .. } => "MSP_INTERMEDIATE_NOT_CHAINED",
            MspError::OuCertificateNotCa { .. } => "MSP_OU_CERT_NOT_CA",
            MspError::OuIdentifierWithoutCertificate { .. } => "MSP_OU_IDENTIFIER_WITHOUT_CERT",
            MspError::NoAdmins { .. } => "MSP_NO_ADMINS",
            MspError::InvalidAdmin { .. } => "MSP_INVALID_ADMIN",
            MspError::AdminWithoutRoleOu { .. } => "MSP_ADMIN_WITHOUT_ROLE_OU",
            MspError::DuplicateMsp { .. } => "MSP_DUPLICATE_ID",
            MspError::UnsupportedCryptoConfig { .. } => "MSP_UNSUPPORTED_CRYPTO_CONFIG",
            MspError::CaCertAsIdentity { .. } => "MSP_CA_AS_IDENTITY",
            MspError::UntrustedChain { .. } => "MSP_UNTRUSTED_CHAIN",
            MspError::IssuerNotLeafCa { .. } => "MSP_ISSUER_NOT_LEAF_CA",
            MspError::Expired { .. } => "MSP_EXPIRED",
            MspError::NotYetValid { .. } => "MSP_NOT_YET_VALID",
            MspError::Revoked { .. } => "MSP_REVOKED",
            MspError::OuNotRecognized { .. } => "MSP_OU_NOT_RECOGNIZED",
            MspError::MissingNodeOu { .. } => "MSP_MISSING_NODE_OU",
            MspError::MultipleNodeOus { .. } => "MSP_MULTIPLE_NODE_OUS",
            MspError::NodeOuCertifierMismatch { .. } => "MSP_NODE_OU_CERTIFIER_MISMATCH",
            MspError::InvalidPrincipal { .. } => "MSP_INVALID_PRINCIPAL",
            MspError::PrincipalNotSatisfied { .. } => "MSP_PRINCIPAL_NOT_SATISFIED",
            MspError::MissingPath { .. } => "MSP_MISSING_PATH",
            MspError::NoCertificateIn { .. } => "MSP_NO_CERTIFICATE_IN_DIR",
            MspError::NoMatchingKey { .. } => "MSP_NO_MATCHING_KEY",
            MspError::KeyMismatch { .. } => "MSP_KEY_MISMATCH",
            MspError::InvalidConfigFile { .. } => "MSP_INVALID_CONFIG_FILE",
            MspError::Io { .. } => "MSP_IO",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> MspError {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            MspError::MissingPath { path }
        } else {
            MspError::Io {
                path,
                source: Arc::new(source),
            }
        }
    }

    pub(crate) fn decode(message: &'static str, err: prost::DecodeError) -> MspError {
        MspError::Decode {
            message,
            reason: err.to_string(),
        }
    }
}
