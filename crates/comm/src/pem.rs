//! Reading certificates and private keys from PEM, with errors that say where
//! the bad input came from.

use std::fmt;
use std::path::Path;

use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use twill_crypto::pem::{encode_pem, parse_pem_blocks};

use crate::error::{CommError, PemSource, Result};

const CERTIFICATE: &str = "CERTIFICATE";
const PKCS8_KEY: &str = "PRIVATE KEY";
const SEC1_KEY: &str = "EC PRIVATE KEY";
const PKCS1_KEY: &str = "RSA PRIVATE KEY";
const ENCRYPTED_KEY: &str = "ENCRYPTED PRIVATE KEY";

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| CommError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Splits PEM text into blocks. Non-UTF-8 bytes cannot be part of a valid
/// block, so they are replaced rather than rejected: they only matter if they
/// break a block, and then the block parser reports it.
fn blocks(pem: &[u8], input: &PemSource) -> Result<Vec<(String, Vec<u8>)>> {
    parse_pem_blocks(&String::from_utf8_lossy(pem)).map_err(|source| CommError::InvalidPem {
        input: input.clone(),
        source,
    })
}

/// Every `CERTIFICATE` block of `pem`, each checked to be X.509; at least one.
///
/// Blocks with other labels are skipped, so a bundle that also carries a key
/// or parameters still yields its certificates.
pub(crate) fn parse_certificates(
    pem: &[u8],
    input: &PemSource,
) -> Result<Vec<CertificateDer<'static>>> {
    let mut certs = Vec::new();
    for (label, der) in blocks(pem, input)? {
        if label != CERTIFICATE {
            continue;
        }
        check_x509(&der, input, certs.len())?;
        certs.push(CertificateDer::from(der));
    }
    if certs.is_empty() {
        return Err(CommError::NoCertificate {
            input: input.clone(),
        });
    }
    Ok(certs)
}

fn check_x509(der: &[u8], input: &PemSource, index: usize) -> Result<()> {
    let invalid = |reason: String| CommError::InvalidCertificate {
        input: input.clone(),
        index,
        reason,
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err(invalid("trailing bytes after the certificate".to_owned())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// Logs a warning when a certificate is outside its validity period: peers
/// will refuse the handshake, and the log line saves a long hunt.
pub(crate) fn warn_if_not_current(cert: &CertificateDer<'_>, input: &PemSource) {
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) {
        let validity = parsed.validity();
        if !validity.is_valid() {
            tracing::warn!(
                target: "comm::tls",
                input = %input,
                not_before = %validity.not_before,
                not_after = %validity.not_after,
                "TLS certificate is not valid at this time"
            );
        }
    }
}

/// A private key as read from PEM. Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyMaterial {
    label: &'static str,
    der: Vec<u8>,
}

impl KeyMaterial {
    /// The key in the form rustls loads.
    pub(crate) fn to_rustls(&self) -> PrivateKeyDer<'static> {
        let der = self.der.clone();
        match self.label {
            SEC1_KEY => PrivateSec1KeyDer::from(der).into(),
            PKCS1_KEY => PrivatePkcs1KeyDer::from(der).into(),
            _ => PrivatePkcs8KeyDer::from(der).into(),
        }
    }

    /// The key re-encoded as one canonical PEM block.
    pub(crate) fn to_pem(&self) -> String {
        encode_pem(self.label, &self.der)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial({}, <redacted>)", self.label)
    }
}

/// The one private key in `pem` (PKCS#8, SEC1 or PKCS#1).
pub(crate) fn parse_private_key(pem: &[u8], input: &PemSource) -> Result<KeyMaterial> {
    let mut found = None;
    for (label, der) in blocks(pem, input)? {
        let label = match label.as_str() {
            PKCS8_KEY => PKCS8_KEY,
            SEC1_KEY => SEC1_KEY,
            PKCS1_KEY => PKCS1_KEY,
            ENCRYPTED_KEY => {
                return Err(CommError::EncryptedPrivateKey {
                    input: input.clone(),
                })
            }
            _ => continue,
        };
        if found.is_some() {
            return Err(CommError::MultiplePrivateKeys {
                input: input.clone(),
            });
        }
        found = Some(KeyMaterial { label, der });
    }
    found.ok_or_else(|| CommError::NoPrivateKey {
        input: input.clone(),
    })
}

/// Certificates re-encoded as canonical PEM, one block each.
pub(crate) fn certificates_to_pem<'a>(
    certs: impl IntoIterator<Item = &'a CertificateDer<'a>>,
) -> String {
    certs
        .into_iter()
        .map(|c| encode_pem(CERTIFICATE, c.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM: PemSource = PemSource::Memory("test input");

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            parse_certificates(b"hello world", &MEM),
            Err(CommError::NoCertificate { .. })
        ));
        assert!(matches!(
            parse_certificates(
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                &MEM
            ),
            Err(CommError::InvalidPem { .. })
        ));
        let not_x509 = encode_pem(CERTIFICATE, b"\x30\x03\x02\x01\x01");
        assert!(matches!(
            parse_certificates(not_x509.as_bytes(), &MEM),
            Err(CommError::InvalidCertificate { index: 0, .. })
        ));
    }

    #[test]
    fn key_labels() {
        let pkcs8 = encode_pem(PKCS8_KEY, b"k1");
        let key = parse_private_key(pkcs8.as_bytes(), &MEM).unwrap();
        assert!(matches!(key.to_rustls(), PrivateKeyDer::Pkcs8(_)));
        assert_eq!(key.to_pem(), pkcs8);
        assert!(!format!("{key:?}").contains("k1"));

        let sec1 = encode_pem(SEC1_KEY, b"k2");
        let key = parse_private_key(sec1.as_bytes(), &MEM).unwrap();
        assert!(matches!(key.to_rustls(), PrivateKeyDer::Sec1(_)));

        let two = format!("{pkcs8}{sec1}");
        assert!(matches!(
            parse_private_key(two.as_bytes(), &MEM),
            Err(CommError::MultiplePrivateKeys { .. })
        ));
        let encrypted = encode_pem(ENCRYPTED_KEY, b"k3");
        assert!(matches!(
            parse_private_key(encrypted.as_bytes(), &MEM),
            Err(CommError::EncryptedPrivateKey { .. })
        ));
        let cert_only = encode_pem(CERTIFICATE, b"c");
        assert!(matches!(
            parse_private_key(cert_only.as_bytes(), &MEM),
            Err(CommError::NoPrivateKey { .. })
        ));
    }
}
