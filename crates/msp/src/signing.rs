//! Local identities that can sign.

use crate::config::{sorted_files, KEYSTORE_DIR, SIGNCERTS_DIR};
use crate::error::{MspError, Result};
use crate::identity::Identity;
use std::path::Path;
use twill_crypto::SigningKey;

/// An identity together with its private key.
///
/// `Debug` never prints the key.
pub struct SigningIdentity {
    identity: Identity,
    key: SigningKey,
}

impl SigningIdentity {
    /// Pairs an identity with its key.
    ///
    /// The pairing is not checked; use [`SigningIdentity::try_new`] to reject
    /// a key that does not belong to the certificate.
    pub fn new(identity: Identity, key: SigningKey) -> Self {
        SigningIdentity { identity, key }
    }

    /// Pairs an identity with its key, checking that the key's public half is
    /// the certificate's public key.
    pub fn try_new(identity: Identity, key: SigningKey) -> Result<Self> {
        if &key.verifying_key() != identity.public_key() {
            return Err(MspError::KeyMismatch {
                subject: identity.subject().to_owned(),
            });
        }
        Ok(SigningIdentity { identity, key })
    }

    /// Loads the signing identity of MSP `mspid` from a Fabric `msp/` folder.
    ///
    /// The certificate is the first file of `signcerts/` (in name order) that
    /// holds one; the key is whichever file of `keystore/` holds a private key
    /// (PKCS#8 or SEC1 PEM) matching the certificate's public key, whatever
    /// its name (`priv_sk`, `<ski>_sk`, ...). Files that are not keys are skipped.
    pub fn from_msp_dir(dir: &Path, mspid: &str) -> Result<SigningIdentity> {
        if !dir.is_dir() {
            return Err(MspError::MissingPath {
                path: dir.to_path_buf(),
            });
        }
        let signcerts = dir.join(SIGNCERTS_DIR);
        let mut identity = None;
        for path in sorted_files(&signcerts, true)? {
            let bytes = std::fs::read(&path).map_err(|e| MspError::io(&path, e))?;
            match Identity::from_pem(mspid, &bytes) {
                Ok(id) => {
                    identity = Some(id);
                    break;
                }
                Err(MspError::NoCertificate { .. } | MspError::NotPem { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let identity = identity.ok_or(MspError::NoCertificateIn { path: signcerts })?;

        let keystore = dir.join(KEYSTORE_DIR);
        for path in sorted_files(&keystore, true)? {
            let bytes = std::fs::read(&path).map_err(|e| MspError::io(&path, e))?;
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            let Ok(key) = SigningKey::from_pem(text) else {
                continue;
            };
            if &key.verifying_key() == identity.public_key() {
                return Ok(SigningIdentity { identity, key });
            }
        }
        Err(MspError::NoMatchingKey { path: keystore })
    }

    /// The public identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Signs `msg`: ECDSA P-256 over SHA-256, DER, low-S.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        Ok(self.key.sign(msg)?)
    }

    /// The identity's prost-encoded `SerializedIdentity`.
    pub fn serialize(&self) -> Vec<u8> {
        self.identity.serialize()
    }
}

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}
