//! The JSON shapes of Fabric CA's REST API (`/api/v1/...`), shared by the
//! server and by clients such as `twill ca`.
//!
//! Field names are the ones Fabric CA puts on the wire (some lower case,
//! some Go-style capitalised). Requests are decoded case-insensitively by
//! the server, as Go's JSON decoder does, so clients may use either.
//!
//! Token authentication ([`token_message`], [`authorization_token`]): every
//! call except `enroll` carries `Authorization: <b64 cert>.<b64 sig>`, where
//! the signature is ECDSA over SHA-256 of
//! `METHOD.b64(request URI).b64(body).b64(cert PEM)`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Base path of every endpoint (Fabric CA also serves them without it).
pub const API_PREFIX: &str = "/api/v1/";

/// OID of the certificate extension that carries enrollment attributes as
/// raw JSON `{"attrs":{...}}`.
pub const ATTRS_OID: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8, 1];

/// Registrar attribute: identity types the holder may register (comma list or `*`).
pub const ATTR_REGISTRAR_ROLES: &str = "hf.Registrar.Roles";
/// Registrar attribute: types the holder may give registrar roles for.
pub const ATTR_REGISTRAR_DELEGATE_ROLES: &str = "hf.Registrar.DelegateRoles";
/// Registrar attribute: attribute names (or `prefix*` patterns) the holder may assign.
pub const ATTR_REGISTRAR_ATTRIBUTES: &str = "hf.Registrar.Attributes";
/// Boolean attribute: may revoke certificates and identities.
pub const ATTR_REVOKER: &str = "hf.Revoker";
/// Boolean attribute: may enroll intermediate CAs.
pub const ATTR_INTERMEDIATE_CA: &str = "hf.IntermediateCA";
/// Boolean attribute: may generate CRLs.
pub const ATTR_GEN_CRL: &str = "hf.GenCRL";
/// Boolean attribute: may manage affiliations.
pub const ATTR_AFFILIATION_MGR: &str = "hf.AffiliationMgr";
/// Attribute every identity has: its enrollment ID.
pub const ATTR_ENROLLMENT_ID: &str = "hf.EnrollmentID";
/// Attribute every identity has: its type.
pub const ATTR_TYPE: &str = "hf.Type";
/// Attribute every identity has: its affiliation.
pub const ATTR_AFFILIATION: &str = "hf.Affiliation";

/// The response envelope of every endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope<T> {
    /// The endpoint's result, or `""` when it has none (failures).
    pub result: T,
    /// What went wrong (empty on success).
    #[serde(default)]
    pub errors: Vec<ErrorInfo>,
    /// Informational messages (always empty here).
    #[serde(default)]
    pub messages: Vec<ErrorInfo>,
    /// Whether the request succeeded.
    pub success: bool,
}

/// One entry of [`Envelope::errors`]: a Fabric CA error code and its text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorInfo {
    /// Fabric CA's numeric error code (e.g. 20 = authentication failure).
    pub code: i64,
    /// The message.
    pub message: String,
}

/// An attribute asked for at enrollment (`attr_reqs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttributeRequest {
    /// The attribute's name.
    pub name: String,
    /// If true, enrollment proceeds when the identity lacks it.
    #[serde(default)]
    pub optional: bool,
}

/// Body of `POST enroll` and `POST reenroll`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollRequest {
    /// The PKCS#10 certificate signing request, PEM.
    pub certificate_request: String,
    /// Signing profile (`""`, `tls` or `ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Attributes to put into the certificate. `None`: every attribute
    /// registered with `ecert: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attr_reqs: Option<Vec<AttributeRequest>>,
    /// The CA to use (`None`: the default CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caname: Option<String>,
}

/// `ServerInfo` part of the enroll response and the `cainfo` result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaInfo {
    /// The CA's name.
    #[serde(rename = "CAName")]
    pub ca_name: String,
    /// Base64 of the PEM chain (this CA's certificate and its parents).
    #[serde(rename = "CAChain")]
    pub ca_chain: String,
    /// Idemix issuer public key (always `""`: Idemix is not supported).
    #[serde(rename = "IssuerPublicKey", default)]
    pub issuer_public_key: String,
    /// Idemix revocation public key (always `""`).
    #[serde(rename = "IssuerRevocationPublicKey", default)]
    pub issuer_revocation_public_key: String,
    /// Server version.
    #[serde(rename = "Version", default)]
    pub version: String,
}

/// Result of `enroll` and `reenroll`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollResponse {
    /// Base64 of the issued certificate's PEM.
    #[serde(rename = "Cert")]
    pub cert: String,
    /// The CA's information.
    #[serde(rename = "ServerInfo")]
    pub server_info: CaInfo,
}

/// An attribute of an identity, as registered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attribute {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
    /// Whether enrollment puts it into certificates by default.
    #[serde(default)]
    pub ecert: bool,
}

/// Body of `POST register` and `POST identities`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The enrollment ID to create.
    pub id: String,
    /// Identity type (`client`, `peer`, `orderer`, `admin`, `user`);
    /// `None` or empty: the registrar's type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    /// Enrollment secret; `None` or empty: the CA generates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// How many times the identity may enroll (-1 unlimited, 0 = CA default).
    #[serde(default)]
    pub max_enrollments: i64,
    /// Dotted affiliation; `None` or empty: the registrar's; `.`: the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliation: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attrs: Vec<Attribute>,
    /// The CA to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caname: Option<String>,
}

/// Result of `register` and `POST identities`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterResponse {
    /// The enrollment secret.
    pub secret: String,
}

/// Body of `POST revoke`: a certificate (`serial` + `aki`) or every
/// certificate of an identity (`id`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokeRequest {
    /// Enrollment ID whose certificates (and the identity) to revoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Authority key identifier of the certificate, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aki: Option<String>,
    /// Serial number of the certificate, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// RFC 5280 reason name (e.g. `keycompromise`) or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Also return a CRL.
    #[serde(default)]
    pub gencrl: bool,
    /// The CA to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caname: Option<String>,
}

/// One revoked certificate in [`RevokeResponse`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokedCert {
    /// Serial, hex.
    #[serde(rename = "Serial")]
    pub serial: String,
    /// AKI, hex.
    #[serde(rename = "AKI")]
    pub aki: String,
}

/// Result of `revoke`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokeResponse {
    /// The certificates revoked by this request.
    #[serde(rename = "RevokedCerts")]
    pub revoked_certs: Vec<RevokedCert>,
    /// Base64 of the PEM CRL when `gencrl` was asked for, else `""`.
    #[serde(rename = "CRL")]
    pub crl: String,
}

/// Body of `POST gencrl`; times are RFC 3339.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenCrlRequest {
    /// Only certificates revoked before this time.
    #[serde(
        default,
        rename = "revokedBefore",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_before: Option<String>,
    /// Only certificates revoked after this time.
    #[serde(
        default,
        rename = "revokedAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_after: Option<String>,
    /// Only certificates expiring before this time.
    #[serde(
        default,
        rename = "expireBefore",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_before: Option<String>,
    /// Only certificates expiring after this time.
    #[serde(
        default,
        rename = "expireAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_after: Option<String>,
    /// The CA to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caname: Option<String>,
}

/// Result of `gencrl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenCrlResponse {
    /// Base64 of the PEM CRL.
    #[serde(rename = "CRL")]
    pub crl: String,
}

/// An identity as `identities` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityInfo {
    /// Enrollment ID.
    pub id: String,
    /// Type.
    #[serde(rename = "type")]
    pub id_type: String,
    /// Affiliation.
    pub affiliation: String,
    /// Attributes.
    pub attrs: Vec<Attribute>,
    /// Max enrollments (-1 unlimited).
    pub max_enrollments: i64,
}

/// Result of `GET identities`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentitiesResponse {
    /// The identities the caller may see.
    pub identities: Vec<IdentityInfo>,
    /// The CA's name.
    pub caname: String,
}

/// Result of `GET/PUT/DELETE identities/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityResponse {
    /// The identity.
    #[serde(flatten)]
    pub identity: IdentityInfo,
    /// New secret (only on a PUT that changed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The CA's name.
    pub caname: String,
}

/// Body of `PUT identities/{id}`: the fields to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModifyIdentityRequest {
    /// New type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    /// New affiliation (`.` = root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliation: Option<String>,
    /// New max enrollments (0 = unchanged).
    #[serde(default)]
    pub max_enrollments: i64,
    /// Attributes to add or replace (an empty value removes one).
    #[serde(default)]
    pub attrs: Vec<Attribute>,
    /// New secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The CA to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caname: Option<String>,
}

/// An affiliation and what is below it (`affiliations` results).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AffiliationInfo {
    /// Dotted name (`""` for the root).
    pub name: String,
    /// Direct children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affiliations: Vec<AffiliationInfo>,
    /// Identities directly in this affiliation (deletes and renames).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityInfo>,
    /// The CA's name (top level only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caname: Option<String>,
}

/// Body of `POST affiliations` and `PUT affiliations/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AffiliationRequest {
    /// The (new) dotted name.
    pub name: String,
    /// The CA to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caname: Option<String>,
}

/// Result of `GET certificates`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificatesResponse {
    /// PEM certificates.
    pub certs: Vec<CertificateEntry>,
    /// The CA's name.
    pub caname: String,
}

/// One entry of [`CertificatesResponse::certs`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateEntry {
    /// The certificate, PEM.
    #[serde(rename = "PEM")]
    pub pem: String,
}

/// The attribute extension's content: `{"attrs":{name: value}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertAttributes {
    /// Attribute name → value.
    pub attrs: std::collections::BTreeMap<String, String>,
}

/// The string a token signs: `METHOD.b64(uri).b64(body).b64(cert_pem)`,
/// where `uri` is the path and query exactly as sent.
pub fn token_message(method: &str, uri: &str, body: &[u8], cert_pem: &[u8]) -> String {
    format!(
        "{method}.{}.{}.{}",
        B64.encode(uri.as_bytes()),
        B64.encode(body),
        B64.encode(cert_pem)
    )
}

/// The `Authorization` header value from the caller's certificate PEM and
/// its DER ECDSA signature over SHA-256 of [`token_message`].
pub fn authorization_token(cert_pem: &[u8], signature_der: &[u8]) -> String {
    format!("{}.{}", B64.encode(cert_pem), B64.encode(signature_der))
}

/// `Authorization` value for `enroll`: `Basic b64(id:secret)`.
pub fn basic_auth(id: &str, secret: &str) -> String {
    format!("Basic {}", B64.encode(format!("{id}:{secret}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_message_shape() {
        let m = token_message("GET", "/api/v1/identities?ca=x", b"", b"PEM");
        assert_eq!(
            m,
            format!(
                "GET.{}..{}",
                B64.encode("/api/v1/identities?ca=x"),
                B64.encode("PEM")
            )
        );
    }

    #[test]
    fn enroll_response_field_names() {
        let r = EnrollResponse {
            cert: "c".into(),
            server_info: CaInfo::default(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["ServerInfo"]["CAChain"].is_string());
        assert!(v["ServerInfo"]["IssuerPublicKey"].is_string());
    }
}
