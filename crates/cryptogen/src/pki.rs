//! Keys and certificates: P-256 keys, self-signed root CAs, and the signing
//! and TLS leaf certificates they issue.
//!
//! What goes into each certificate mirrors what Fabric's cryptogen issues, so
//! that MSP validation behaves the same on material from either tool:
//!
//! - Subjects carry C/ST/L (plus the CA's optional OU, street and postal
//!   code) and a CN; only CA subjects carry O (the organisation's domain).
//! - Subject key identifiers are SHA-256 of the uncompressed public point,
//!   as Fabric's key store computes them; leaves carry the issuer's SKI as
//!   their authority key identifier.
//! - Serial numbers are 127 random bits.
//!
//! We additionally keep every ECDSA signature we make in low-S form: Fabric
//! itself tolerates high-S certificate signatures by rewriting them, but a
//! strict verifier (ours rejects high-S transaction signatures) need not.

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use ring::rand::SecureRandom;
use time::{Duration, OffsetDateTime};

use crate::config::{CaPlan, San};
use crate::{CryptogenError, Result};

/// How long certificates stay valid: ten years (of 365 days), as Fabric.
const VALIDITY_DAYS: i64 = 3650;
/// Certificates become valid slightly in the past to tolerate clock skew.
const BACKDATE_MINUTES: i64 = 5;

const OID_OU: &[u64] = &[2, 5, 4, 11];
const OID_STREET_ADDRESS: &[u64] = &[2, 5, 4, 9];
const OID_POSTAL_CODE: &[u64] = &[2, 5, 4, 17];

/// A P-256 key whose ECDSA signatures are normalised to low-S.
#[derive(Debug)]
pub(crate) struct Key(KeyPair);

impl Key {
    /// Generates a fresh P-256 key; `subject` only labels errors.
    pub(crate) fn generate(subject: &str) -> Result<Self> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(Key)
            .map_err(|source| CryptogenError::KeyGeneration {
                subject: subject.to_string(),
                source,
            })
    }

    /// The private key as a PKCS#8 PEM document (`BEGIN PRIVATE KEY`).
    pub(crate) fn pkcs8_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// SHA-256 of the uncompressed public point.
    fn ski(&self) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, self.0.public_key_raw())
            .as_ref()
            .to_vec()
    }
}

impl PublicKeyData for Key {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for Key {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        let signature = self.0.sign(msg)?;
        Ok(low_s(&signature).unwrap_or(signature))
    }
}

/// A root CA able to issue certificates.
pub(crate) struct Ca {
    /// The CA's common name; also names its certificate file.
    pub common_name: String,
    /// The self-signed CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, Key>,
    subject: SubjectBase,
}

impl Ca {
    /// Creates a self-signed root CA named `common_name` for the organisation
    /// `domain`.
    pub(crate) fn new(plan: &CaPlan, domain: &str, common_name: &str) -> Result<Self> {
        let key = Key::generate(common_name)?;
        let subject = SubjectBase::from(plan);
        let mut params = base_params()?;
        params.distinguished_name = subject.name(Some(domain), None, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.key_identifier_method = KeyIdMethod::PreSpecified(key.ski());
        let cert = params
            .self_signed(&key)
            .map_err(|source| cert_error(common_name, source))?;
        Ok(Ca {
            common_name: common_name.to_string(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            subject,
        })
    }

    /// The CA's private key, PKCS#8 PEM.
    pub(crate) fn key_pem(&self) -> String {
        self.issuer.key().pkcs8_pem()
    }

    /// File name of the CA certificate, as Fabric names it.
    pub(crate) fn cert_file_name(&self) -> String {
        format!("{}-cert.pem", self.common_name)
    }

    /// Issues a fresh key and an identity (MSP signing) certificate for
    /// `common_name`, with `role_ou` added to the subject's OUs.
    pub(crate) fn issue_signing(&self, common_name: &str, role_ou: Option<&str>) -> Result<Issued> {
        let mut params = base_params()?;
        params.distinguished_name = self.subject.name(None, role_ou, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params, common_name)
    }

    /// Issues a fresh key and a TLS certificate (server and client auth) for
    /// `common_name` with the given SANs.
    pub(crate) fn issue_tls(&self, common_name: &str, sans: &[San]) -> Result<Issued> {
        let mut params = base_params()?;
        params.distinguished_name = self.subject.name(None, None, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = sans
            .iter()
            .map(|san| match san {
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                San::Dns(name) => Ia5String::try_from(name.as_str())
                    .map(SanType::DnsName)
                    .map_err(|e| cert_error(common_name, e)),
            })
            .collect::<Result<_>>()?;
        self.issue(params, common_name)
    }

    fn issue(&self, mut params: CertificateParams, common_name: &str) -> Result<Issued> {
        let key = Key::generate(common_name)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::PreSpecified(key.ski());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| cert_error(common_name, source))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.pkcs8_pem(),
        })
    }
}

/// A newly issued certificate and its private key.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// Subject attributes every certificate of one organisation shares.
#[derive(Debug, Clone)]
struct SubjectBase {
    country: String,
    province: String,
    locality: String,
    street_address: Option<String>,
    postal_code: Option<String>,
    organizational_unit: Option<String>,
}

impl From<&CaPlan> for SubjectBase {
    fn from(plan: &CaPlan) -> Self {
        SubjectBase {
            country: plan.country.clone(),
            province: plan.province.clone(),
            locality: plan.locality.clone(),
            street_address: plan.street_address.clone(),
            postal_code: plan.postal_code.clone(),
            organizational_unit: plan.organizational_unit.clone(),
        }
    }
}

impl SubjectBase {
    /// Builds a subject in the attribute order Go's x509 package writes:
    /// C, ST, L, street, postal code, O, OU..., CN.
    fn name(
        &self,
        organization: Option<&str>,
        role_ou: Option<&str>,
        common_name: &str,
    ) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, dn_value(&self.country));
        dn.push(DnType::StateOrProvinceName, dn_value(&self.province));
        dn.push(DnType::LocalityName, dn_value(&self.locality));
        if let Some(street) = &self.street_address {
            dn.push(
                DnType::CustomDnType(OID_STREET_ADDRESS.to_vec()),
                dn_value(street),
            );
        }
        if let Some(postal) = &self.postal_code {
            dn.push(
                DnType::CustomDnType(OID_POSTAL_CODE.to_vec()),
                dn_value(postal),
            );
        }
        if let Some(org) = organization {
            dn.push(DnType::OrganizationName, dn_value(org));
        }
        // rcgen keys attributes by type, so a second OU goes in under the
        // same OID spelled as a custom type.
        let ous = self
            .organizational_unit
            .as_deref()
            .into_iter()
            .chain(role_ou);
        let ou_types = [
            DnType::OrganizationalUnitName,
            DnType::CustomDnType(OID_OU.to_vec()),
        ];
        for (ty, ou) in ou_types.into_iter().zip(ous) {
            dn.push(ty, dn_value(ou));
        }
        dn.push(DnType::CommonName, dn_value(common_name));
        dn
    }
}

/// PrintableString where the text allows it, else UTF8String, as Go does.
fn dn_value(text: &str) -> DnValue {
    match PrintableString::try_from(text) {
        Ok(printable) => DnValue::PrintableString(printable),
        Err(_) => DnValue::Utf8String(text.to_string()),
    }
}

/// Parameters common to every certificate: validity and a random serial.
fn base_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let not_before = now
        .checked_sub(Duration::minutes(BACKDATE_MINUTES))
        .unwrap_or(now);
    params.not_before = not_before;
    params.not_after = not_before
        .checked_add(Duration::days(VALIDITY_DAYS))
        .unwrap_or(not_before);
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CryptogenError::Random {
            context: "choosing a certificate serial number",
        })?;
    // Keep the serial positive and non-zero.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from(bytes.to_vec()))
}

fn cert_error(subject: &str, source: rcgen::Error) -> CryptogenError {
    CryptogenError::Certificate {
        subject: subject.to_string(),
        source,
    }
}

/// Order of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Rewrites a DER ECDSA P-256 signature with `s > n/2` to use `n - s`, which
/// verifies equally. Returns `None` when the signature is already low-S or
/// is not a well-formed DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn low_s(der: &[u8]) -> Option<Vec<u8>> {
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || len >= 0x80 || usize::from(len) != body.len() {
        return None;
    }
    let (r, rest) = der_integer(body)?;
    let (s, rest) = der_integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let s = to_32_bytes(s)?;
    let mut half_n = P256_N;
    shift_right_one(&mut half_n);
    if s <= half_n {
        return None;
    }
    let s = encode_unsigned(&sub_mod_n(&P256_N, &s));
    let r = r.to_vec();
    let body_len = 2 + r.len() + 2 + s.len();
    let mut out = Vec::with_capacity(2 + body_len);
    out.extend_from_slice(&[0x30, u8::try_from(body_len).ok()?]);
    out.extend_from_slice(&[0x02, u8::try_from(r.len()).ok()?]);
    out.extend_from_slice(&r);
    out.extend_from_slice(&[0x02, u8::try_from(s.len()).ok()?]);
    out.extend_from_slice(&s);
    Some(out)
}

/// Splits one short-form DER INTEGER off the front of `input`.
fn der_integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if tag != 0x02 || len >= 0x80 {
        return None;
    }
    let len = usize::from(len);
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Left-pads a non-negative big-endian integer to 32 bytes.
fn to_32_bytes(value: &[u8]) -> Option<[u8; 32]> {
    let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let digits = &value[start..];
    if digits.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - digits.len()..].copy_from_slice(digits);
    Some(out)
}

fn shift_right_one(value: &mut [u8; 32]) {
    let mut carry = 0u8;
    for byte in value.iter_mut() {
        let next_carry = *byte & 1;
        *byte = (*byte >> 1) | (carry << 7);
        carry = next_carry;
    }
}

/// `a - b` for `b <= a`, 32-byte big-endian.
fn sub_mod_n(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut diff = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if diff < 0 {
            diff += 256;
            borrow = 1;
        }
        out[i] = diff as u8;
    }
    out
}

/// Minimal DER INTEGER content for a non-negative big-endian value.
fn encode_unsigned(value: &[u8]) -> Vec<u8> {
    let start = value
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(value.len().saturating_sub(1));
    let digits = &value[start..];
    let mut out = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_some_and(|&b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

    #[test]
    fn signatures_are_low_s_and_verify() {
        let key = Key::generate("test").unwrap();
        let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.0.public_key_raw());
        let mut half_n = P256_N;
        shift_right_one(&mut half_n);
        let mut rewritten = 0;
        for i in 0..64u32 {
            let msg = i.to_be_bytes();
            let raw = key.0.sign(&msg).unwrap();
            if low_s(&raw).is_some() {
                rewritten += 1;
            }
            let sig = key.sign(&msg).unwrap();
            verifier.verify(&msg, &sig).unwrap();
            let (_, rest) = der_integer(&sig[2..]).unwrap();
            let (s, _) = der_integer(rest).unwrap();
            assert!(to_32_bytes(s).unwrap() <= half_n);
        }
        // With 64 random signatures, some are high-S before normalising.
        assert!(rewritten > 0);
    }

    #[test]
    fn low_s_rejects_garbage() {
        assert_eq!(low_s(&[]), None);
        assert_eq!(low_s(&[0x30, 0x02, 0x02, 0x00]), None);
        assert_eq!(low_s(&[0x31, 0x00]), None);
    }

    #[test]
    fn encode_unsigned_is_minimal() {
        assert_eq!(encode_unsigned(&[0, 0, 0x7f]), vec![0x7f]);
        assert_eq!(encode_unsigned(&[0, 0x80]), vec![0, 0x80]);
        assert_eq!(encode_unsigned(&[0, 0]), vec![0]);
    }
}
