//! X.509 identities and their `SerializedIdentity` wire form.

use crate::error::{MspError, Result};
use prost::Message;
use std::sync::Arc;
use time::OffsetDateTime;
use twill_crypto::VerifyingKey;
use twill_protos::msp::SerializedIdentity;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// PEM label of an X.509 certificate.
pub(crate) const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// An X.509 identity claimed to belong to some MSP.
///
/// Creating one only parses the certificate; whether it is *valid* is a
/// question for the MSP it claims ([`crate::Msp::validate`]). Cloning is
/// cheap: the parsed fields live behind an `Arc`.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    mspid: String,
    pem: Vec<u8>,
    der: Vec<u8>,
    /// SHA-256 of `der`: the key of the MSP's certificate check cache.
    der_digest: [u8; 32],
    public_key: VerifyingKey,
    ous: Vec<String>,
    common_name: String,
    subject: String,
    serial: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Identity {
    /// Parses the first PEM block of `pem` as the identity of MSP `mspid`.
    ///
    /// As in Fabric, only the first block counts and its label is not
    /// checked: its contents must be a DER certificate.
    ///
    /// The certificate's key must be an ECDSA P-256 key (the only identity
    /// key type Twill signs and verifies with). `pem` is kept verbatim as the
    /// identity's `id_bytes`.
    pub fn from_pem(mspid: &str, pem: &[u8]) -> Result<Identity> {
        let der = first_certificate_der(pem)?;
        Self::from_parts(mspid, pem.to_vec(), der)
    }

    /// Builds an identity from a DER certificate, encoding it as PEM for `id_bytes`.
    pub fn from_der(mspid: &str, der: &[u8]) -> Result<Identity> {
        let pem = twill_crypto::pem::encode_pem(CERTIFICATE_LABEL, der).into_bytes();
        Self::from_parts(mspid, pem, der.to_vec())
    }

    fn from_parts(mspid: &str, pem: Vec<u8>, der: Vec<u8>) -> Result<Identity> {
        let cert = parse_certificate(&der)?;
        let public_key = VerifyingKey::from_spki_der(cert.public_key().raw)?;
        let ous = certificate_ous(&cert)?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|attr| attr.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let inner = Inner {
            mspid: mspid.to_owned(),
            subject: cert.subject().to_string(),
            serial: cert.raw_serial().to_vec(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            pem,
            der_digest: twill_crypto::sha256(&der),
            der,
            public_key,
            ous,
            common_name,
        };
        Ok(Identity {
            inner: Arc::new(inner),
        })
    }

    /// The id of the MSP this identity claims to belong to.
    pub fn mspid(&self) -> &str {
        &self.inner.mspid
    }

    /// The certificate as PEM: the `id_bytes` of its `SerializedIdentity`.
    pub fn cert_pem(&self) -> &[u8] {
        &self.inner.pem
    }

    /// The certificate as DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.inner.der
    }

    /// SHA-256 of the certificate's DER, computed once when parsed.
    pub fn cert_digest(&self) -> &[u8; 32] {
        &self.inner.der_digest
    }

    /// The certificate's public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.inner.public_key
    }

    /// The subject's organizational units (OU attributes), in certificate order.
    pub fn organizational_units(&self) -> &[String] {
        &self.inner.ous
    }

    /// The subject's first common name, or `""` if it has none.
    pub fn common_name(&self) -> &str {
        &self.inner.common_name
    }

    /// The subject distinguished name, for logs and errors.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The certificate serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.inner.serial)
    }

    /// Start of the certificate's validity period.
    pub fn not_before(&self) -> OffsetDateTime {
        self.inner.not_before
    }

    /// End of the certificate's validity period.
    pub fn not_after(&self) -> OffsetDateTime {
        self.inner.not_after
    }

    /// The prost-encoded `msp.SerializedIdentity { mspid, id_bytes = PEM }`.
    pub fn serialize(&self) -> Vec<u8> {
        SerializedIdentity {
            mspid: self.inner.mspid.clone(),
            id_bytes: self.inner.pem.clone(),
        }
        .encode_to_vec()
    }

    /// Checks `sig` (ECDSA P-256 over SHA-256, DER, low-S) over `msg` with
    /// this identity's key.
    ///
    /// This is the one signature-check seam for identities; it delegates to
    /// [`twill_crypto::verify`], which rejects high-S signatures as Fabric does.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        twill_crypto::verify(&self.inner.public_key, msg, sig).map_err(MspError::Signature)
    }
}

impl PartialEq for Identity {
    /// Two identities are equal when they claim the same MSP and hold the same
    /// certificate (compared as DER, so PEM formatting does not matter).
    fn eq(&self, other: &Self) -> bool {
        self.inner.mspid == other.inner.mspid && self.inner.der == other.inner.der
    }
}

impl Eq for Identity {}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("mspid", &self.inner.mspid)
            .field("subject", &self.inner.subject)
            .field("serial", &self.serial_hex())
            .finish_non_exhaustive()
    }
}

/// Decodes a prost-encoded `msp.SerializedIdentity` into `(mspid, id_bytes)`.
pub fn deserialize_serialized_identity(bytes: &[u8]) -> Result<(String, Vec<u8>)> {
    let sid = SerializedIdentity::decode(bytes)
        .map_err(|e| MspError::decode("msp.SerializedIdentity", e))?;
    Ok((sid.mspid, sid.id_bytes))
}

/// Parses a whole DER certificate; trailing bytes are an error.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>> {
    let invalid = |reason: String| MspError::InvalidDer {
        what: "certificate",
        reason,
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| invalid(e.to_string()))?;
    if !rest.is_empty() {
        return Err(invalid(format!("{} trailing bytes", rest.len())));
    }
    Ok(cert)
}

/// The first PEM block of `bytes`, as `(label, der)`, or `None` if there is
/// no block at all.
///
/// Like Go's `pem.Decode`, which Fabric uses everywhere it reads a PEM
/// certificate or CRL: text before the block is skipped, whatever follows
/// the block (further blocks included, well-formed or not) is ignored, and
/// bytes that are not UTF-8 outside the block do not matter. A first block
/// that is started but malformed is an error.
pub(crate) fn first_pem_block(bytes: &[u8]) -> Result<Option<(String, Vec<u8>)>> {
    let text = String::from_utf8_lossy(bytes);
    let mut start = None;
    let mut end = text.len();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        match start {
            None if trimmed.starts_with("-----BEGIN ") && trimmed.ends_with("-----") => {
                start = Some(offset);
            }
            Some(_) if trimmed.starts_with("-----END ") => {
                end = offset + line.len();
                break;
            }
            _ => {}
        }
        offset += line.len();
    }
    let Some(start) = start else {
        return Ok(None);
    };
    let text = text.get(start..end).unwrap_or_default();
    Ok(twill_crypto::pem::parse_pem_blocks(text)?
        .into_iter()
        .next())
}

/// The certificate (as DER) in the first PEM block of `pem`.
///
/// As Fabric's `getCertFromPem`: only the first block counts, and its label
/// is not looked at; its contents must parse as a certificate (checked by
/// the caller). No block at all is [`MspError::NoCertificate`].
pub(crate) fn first_certificate_der(pem: &[u8]) -> Result<Vec<u8>> {
    match first_pem_block(pem)? {
        Some((_, der)) => Ok(der),
        None => Err(MspError::NoCertificate { labels: Vec::new() }),
    }
}

/// The subject's organizational units (OU attributes), in certificate order.
pub(crate) fn certificate_ous(cert: &X509Certificate<'_>) -> Result<Vec<String>> {
    cert.subject()
        .iter_organizational_unit()
        .map(|attr| attr.as_str().map(str::to_owned))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| MspError::InvalidDer {
            what: "certificate",
            reason: format!("organizational unit is not a string: {e}"),
        })
}
