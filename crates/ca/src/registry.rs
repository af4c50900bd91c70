//! The CA's persistent state in sled: identities (with salted PBKDF2
//! password hashes), affiliations, issued certificates, counters.
//!
//! Trees: `identities` (id → JSON [`IdentityRecord`]), `affiliations`
//! (dotted name → empty), `certs` (`serial/aki` → JSON [`CertRecord`]),
//! `meta` (counters).

use std::num::NonZeroU32;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::api::Attribute;
use crate::error::{CaError, CaResult};

const PBKDF2_ITERATIONS: u32 = 10_000;

/// Identity state: may enroll and authenticate.
pub const STATE_ACTIVE: i32 = 0;
/// Identity state: revoked (every request refused).
pub const STATE_REVOKED: i32 = -1;

/// A registered identity as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityRecord {
    /// Enrollment ID.
    pub id: String,
    /// Type (`client`, `peer`, ...).
    pub id_type: String,
    /// Dotted affiliation (`""` = root).
    pub affiliation: String,
    /// Attributes, including `hf.EnrollmentID`, `hf.Type`, `hf.Affiliation`.
    pub attrs: Vec<Attribute>,
    /// Allowed enrollments (-1 unlimited).
    pub max_enrollments: i64,
    /// Enrollments so far.
    pub enrollments: i64,
    /// [`STATE_ACTIVE`] or [`STATE_REVOKED`].
    pub state: i32,
    /// PBKDF2 salt, hex.
    pub salt: String,
    /// PBKDF2-HMAC-SHA256 of the secret, hex.
    pub pass_hash: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl IdentityRecord {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    /// Whether boolean attribute `name` is `true`.
    pub fn attr_true(&self, name: &str) -> bool {
        self.attr(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    /// Sets the secret (new random salt).
    pub fn set_secret(&mut self, secret: &str) {
        let mut salt = [0u8; 16];
        rand::Rng::fill(&mut rand::thread_rng(), &mut salt[..]);
        self.salt = hex::encode(salt);
        self.iterations = PBKDF2_ITERATIONS;
        self.pass_hash = hex::encode(hash(secret, &salt, self.iterations));
    }

    /// Whether `secret` is this identity's secret.
    pub fn check_secret(&self, secret: &str) -> bool {
        let (Ok(salt), Ok(expected), Some(iter)) = (
            hex::decode(&self.salt),
            hex::decode(&self.pass_hash),
            NonZeroU32::new(self.iterations),
        ) else {
            return false;
        };
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iter,
            &salt,
            secret.as_bytes(),
            &expected,
        )
        .is_ok()
    }
}

fn hash(secret: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let iter = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iter,
        salt,
        secret.as_bytes(),
        &mut out,
    );
    out
}

/// An issued certificate as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertRecord {
    /// Serial, lowercase hex without leading zeros.
    pub serial: String,
    /// AKI, lowercase hex.
    pub aki: String,
    /// Enrollment ID it was issued to.
    pub id: String,
    /// The certificate, PEM.
    pub pem: String,
    /// Not-after, Unix seconds.
    pub not_after: u64,
    /// Revocation time, Unix seconds.
    pub revoked_at: Option<u64>,
    /// RFC 5280 reason code.
    pub reason: u8,
}

/// The sled-backed registry.
#[derive(Debug, Clone)]
pub struct Registry {
    db: sled::Db,
    identities: sled::Tree,
    affiliations: sled::Tree,
    certs: sled::Tree,
    meta: sled::Tree,
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], v: &[u8]) -> CaResult<T> {
    serde_json::from_slice(v).map_err(|e| CaError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> CaResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| CaError::Cert(e.to_string()))
}

fn cert_key(serial: &str, aki: &str) -> String {
    format!("{serial}/{aki}")
}

impl Registry {
    /// Opens (or creates) the registry in directory `path`.
    pub fn open(path: &Path) -> CaResult<Self> {
        let db = sled::open(path)?;
        Ok(Self {
            identities: db.open_tree("identities")?,
            affiliations: db.open_tree("affiliations")?,
            certs: db.open_tree("certs")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Whether no identity is registered yet (first start).
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Flushes to disk.
    pub fn flush(&self) -> CaResult<()> {
        self.db.flush()?;
        Ok(())
    }

    /// The identity `id`.
    pub fn identity(&self, id: &str) -> CaResult<Option<IdentityRecord>> {
        self.identities
            .get(id.as_bytes())?
            .map(|v| decode(id.as_bytes(), &v))
            .transpose()
    }

    /// Stores `rec` (insert or replace).
    pub fn put_identity(&self, rec: &IdentityRecord) -> CaResult<()> {
        self.identities.insert(rec.id.as_bytes(), encode(rec)?)?;
        Ok(())
    }

    /// Removes identity `id`.
    pub fn remove_identity(&self, id: &str) -> CaResult<()> {
        self.identities.remove(id.as_bytes())?;
        Ok(())
    }

    /// Every identity, by id.
    pub fn identities(&self) -> CaResult<Vec<IdentityRecord>> {
        self.identities
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Whether affiliation `name` exists (`""` always does).
    pub fn has_affiliation(&self, name: &str) -> CaResult<bool> {
        Ok(name.is_empty() || self.affiliations.contains_key(name.as_bytes())?)
    }

    /// Adds affiliation `name`.
    pub fn add_affiliation(&self, name: &str) -> CaResult<()> {
        self.affiliations.insert(name.as_bytes(), &[] as &[u8])?;
        Ok(())
    }

    /// Removes affiliation `name`.
    pub fn remove_affiliation(&self, name: &str) -> CaResult<()> {
        self.affiliations.remove(name.as_bytes())?;
        Ok(())
    }

    /// Every affiliation, sorted.
    pub fn affiliations(&self) -> CaResult<Vec<String>> {
        self.affiliations
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Stores a certificate record.
    pub fn put_cert(&self, rec: &CertRecord) -> CaResult<()> {
        self.certs
            .insert(cert_key(&rec.serial, &rec.aki).as_bytes(), encode(rec)?)?;
        Ok(())
    }

    /// The certificate with `serial` and `aki` (normalised hex).
    pub fn cert(&self, serial: &str, aki: &str) -> CaResult<Option<CertRecord>> {
        let key = cert_key(serial, aki);
        self.certs
            .get(key.as_bytes())?
            .map(|v| decode(key.as_bytes(), &v))
            .transpose()
    }

    /// Every certificate record.
    pub fn certs(&self) -> CaResult<Vec<CertRecord>> {
        self.certs
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The next CRL number (starts at 1).
    pub fn next_crl_number(&self) -> CaResult<u64> {
        let next = self.meta.update_and_fetch("crl_number", |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        Ok(next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1))
    }
}
