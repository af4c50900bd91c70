//! Who the client is ([`Identity`]) and how it signs ([`Signer`]).
//!
//! The identity is public: an MSP id and the PEM certificate, sent as the
//! `creator` of every proposal. The signer is kept apart from it so that
//! the private key can live elsewhere — an HSM, a remote service, another
//! process — or nowhere at all when every message is signed offline (see
//! [`Gateway::new_signed_proposal`](crate::Gateway::new_signed_proposal)).
//!
//! Signatures are what Fabric verifies: ECDSA P-256 over the SHA-256 digest
//! of the message, DER-encoded, with S normalised to the lower half of the
//! curve order.

use std::path::Path;
use std::sync::Arc;

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::DecodePrivateKey;
use prost::Message;
use twill_crypto::SigningKey;
use twill_protos::msp::SerializedIdentity;

use crate::error::{Error, Result};

/// The client's public identity: its MSP id and X.509 certificate (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    msp_id: String,
    credentials: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("msp_id", &self.msp_id)
            .field("credentials_len", &self.credentials.len())
            .finish()
    }
}

impl Identity {
    /// An identity of MSP `msp_id` with `credentials`, normally the PEM
    /// certificate bytes, sent verbatim.
    pub fn new(msp_id: impl Into<String>, credentials: impl Into<Vec<u8>>) -> Self {
        Identity {
            msp_id: msp_id.into(),
            credentials: credentials.into(),
        }
    }

    /// Reads a PEM certificate file; fails unless it holds a certificate.
    pub fn from_pem_file(msp_id: impl Into<String>, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let pem = read(path)?;
        let msp_id = msp_id.into();
        twill_msp::Identity::from_pem(&msp_id, &pem).map_err(|e| Error::Identity {
            reason: format!("{}: {e}", path.display()),
        })?;
        Ok(Identity::new(msp_id, pem))
    }

    /// The MSP id.
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// The credentials (the PEM certificate).
    pub fn credentials(&self) -> &[u8] {
        &self.credentials
    }

    /// The encoded `msp.SerializedIdentity` (the proposal's creator).
    pub fn serialize(&self) -> Vec<u8> {
        SerializedIdentity {
            mspid: self.msp_id.clone(),
            id_bytes: self.credentials.clone(),
        }
        .encode_to_vec()
    }
}

/// Signs the SHA-256 digests of the messages the client sends.
///
/// Implement it for an HSM or a remote signer; closures
/// `Fn(&[u8]) -> Result<Vec<u8>>` taking the digest implement it too. The
/// output must be a DER ECDSA signature with low S (Fabric rejects high S).
pub trait Signer: Send + Sync {
    /// Signs `digest`, the SHA-256 of a message.
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>>;

    /// Signs a whole message. The default hashes it and calls
    /// [`Signer::sign_digest`]; a signer with a faster path for whole
    /// messages may override it. The result must be the same kind of
    /// signature over the same SHA-256 digest.
    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.sign_digest(&twill_crypto::sha256(message))
    }
}

impl<F> Signer for F
where
    F: Fn(&[u8]) -> Result<Vec<u8>> + Send + Sync,
{
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        self(digest)
    }
}

impl<S: Signer + ?Sized> Signer for Arc<S> {
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        (**self).sign_digest(digest)
    }

    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>> {
        (**self).sign_message(message)
    }
}

/// A [`Signer`] holding an ECDSA P-256 private key in memory.
///
/// Whole messages are signed with `ring` (the fast path the rest of Twill
/// uses); bare digests, for offline signing, with RustCrypto's `p256`.
/// `Debug` never prints the key.
pub struct PrivateKeySigner {
    key: SigningKey,
    prehash: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for PrivateKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeySigner")
            .field("public", &self.key.verifying_key())
            .finish_non_exhaustive()
    }
}

impl PrivateKeySigner {
    /// Wraps a loaded key.
    pub fn new(key: SigningKey) -> Result<Self> {
        let prehash =
            p256::ecdsa::SigningKey::from_pkcs8_der(&key.to_pkcs8_der()).map_err(|e| {
                Error::Identity {
                    reason: format!("private key: {e}"),
                }
            })?;
        Ok(PrivateKeySigner { key, prehash })
    }

    /// Parses a PEM private key (PKCS#8 `PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let key = SigningKey::from_pem(pem).map_err(|e| Error::Identity {
            reason: format!("private key: {e}"),
        })?;
        Self::new(key)
    }

    /// Reads a PEM private key file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read(path)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::Identity {
            reason: format!("{} is not a PEM file", path.display()),
        })?;
        Self::from_pem(text).map_err(|e| Error::Identity {
            reason: format!("{}: {e}", path.display()),
        })
    }

    /// The public key.
    pub fn verifying_key(&self) -> twill_crypto::VerifyingKey {
        self.key.verifying_key()
    }
}

impl Signer for PrivateKeySigner {
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        let sig: p256::ecdsa::Signature =
            self.prehash.sign_prehash(digest).map_err(|e| Error::Sign {
                reason: e.to_string(),
            })?;
        twill_crypto::normalize_low_s(sig.to_der().as_bytes()).map_err(|e| Error::Sign {
            reason: e.to_string(),
        })
    }

    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.key.sign(message).map_err(|e| Error::Sign {
            reason: e.to_string(),
        })
    }
}

/// Loads an identity and its signer from a Fabric `msp/` folder: the first
/// certificate of `signcerts/` and the `keystore/` key that matches it.
pub fn from_msp_dir(
    msp_dir: impl AsRef<Path>,
    msp_id: &str,
) -> Result<(Identity, PrivateKeySigner)> {
    let dir = msp_dir.as_ref();
    let fail = |reason: String| Error::Identity {
        reason: format!("{}: {reason}", dir.display()),
    };
    let signcerts = dir.join("signcerts");
    let mut cert = None;
    for path in sorted_files(&signcerts)? {
        let pem = read(&path)?;
        if let Ok(id) = twill_msp::Identity::from_pem(msp_id, &pem) {
            cert = Some((id, pem));
            break;
        }
    }
    let Some((parsed, pem)) = cert else {
        return Err(fail("no certificate in signcerts/".into()));
    };
    for path in sorted_files(&dir.join("keystore"))? {
        let bytes = read(&path)?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let Ok(key) = SigningKey::from_pem(text) else {
            continue;
        };
        if &key.verifying_key() == parsed.public_key() {
            return Ok((Identity::new(msp_id, pem), PrivateKeySigner::new(key)?));
        }
    }
    Err(fail(
        "no private key in keystore/ matches the certificate".into(),
    ))
}

/// Loads an identity from a PEM certificate file and its signer from a PEM
/// key file, checking that they belong together.
pub fn from_pem_files(
    msp_id: &str,
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<(Identity, PrivateKeySigner)> {
    let identity = Identity::from_pem_file(msp_id, cert.as_ref())?;
    let signer = PrivateKeySigner::from_pem_file(key.as_ref())?;
    let parsed = twill_msp::Identity::from_pem(msp_id, identity.credentials()).map_err(|e| {
        Error::Identity {
            reason: e.to_string(),
        }
    })?;
    if &signer.verifying_key() != parsed.public_key() {
        return Err(Error::Identity {
            reason: format!(
                "the key in {} does not belong to the certificate in {}",
                key.as_ref().display(),
                cert.as_ref().display()
            ),
        });
    }
    Ok((identity, signer))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn sorted_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_and_message_signatures_verify_and_are_low_s() {
        let signer = PrivateKeySigner::new(SigningKey::generate().unwrap()).unwrap();
        let vk = signer.verifying_key();
        let msg = b"proposal bytes";
        for _ in 0..20 {
            let a = signer.sign_digest(&twill_crypto::sha256(msg)).unwrap();
            let b = signer.sign_message(msg).unwrap();
            for sig in [&a, &b] {
                assert!(twill_crypto::is_low_s(sig).unwrap());
                twill_crypto::verify(&vk, msg, sig).unwrap();
            }
        }
    }

    #[test]
    fn closures_are_signers() {
        let key = Arc::new(PrivateKeySigner::new(SigningKey::generate().unwrap()).unwrap());
        let vk = key.verifying_key();
        let remote = move |digest: &[u8]| key.sign_digest(digest);
        let sig = remote.sign_message(b"hello").unwrap();
        twill_crypto::verify(&vk, b"hello", &sig).unwrap();
    }

    #[test]
    fn serialized_identity_holds_the_pem_verbatim() {
        let id = Identity::new("Org1MSP", b"-----BEGIN CERTIFICATE-----\n".to_vec());
        let sid = SerializedIdentity::decode(id.serialize().as_slice()).unwrap();
        assert_eq!(sid.mspid, "Org1MSP");
        assert_eq!(sid.id_bytes, id.credentials());
    }
}
