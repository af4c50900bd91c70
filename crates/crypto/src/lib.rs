//! Cryptographic primitives for Twill, matching what Hyperledger Fabric expects
//! on the wire.
//!
//! This crate owns:
//!
//! - SHA-256 ([`sha256`], [`Sha256Hasher`]), used for transaction ids, block
//!   hashes and chaincode package ids;
//! - ECDSA P-256 over SHA-256 with DER signatures: [`SigningKey::sign`] always
//!   emits low-S, and [`verify`] (the one seam the rest of the system calls)
//!   rejects malformed or non-canonical DER and high-S, as Fabric does;
//! - parallel verification of many signatures ([`verify_batch`], on rayon);
//! - key encodings: PKCS#8 and SEC1 private keys, SEC1 points and
//!   SubjectPublicKeyInfo public keys, PEM ([`pem`]);
//! - nonces from the OS ([`random_bytes`]);
//! - optionally, remembering the signatures the process made so that
//!   verifying them again is a hash lookup ([`remember_own_signatures`]);
//! - for keys seen often (a network's clients and peers), verification with
//!   a precomputed table of the key's multiples: additions only, several
//!   times faster than a general verification (after [`WARM_AFTER`] uses,
//!   for at most [`MAX_TABLES`] keys), with `1/s` computed by a
//!   variable-time Bernstein–Yang inversion (2 µs against `p256`'s 9.6).
//!
//! Signing, and verification with keys that have no table, run on `ring`;
//! the tables use the field arithmetic of RustCrypto's `p256`. The pure-Rust
//! [`reference`](mod@reference) module (RustCrypto `p256`) does the same
//! operations for benchmarks and cross-checks; `p256` also parses and
//! validates keys.
//!
//! Nothing here spawns tasks. Signature checks are CPU-bound: callers run
//! them on a rayon pool or in `spawn_blocking`, never on an async reactor.
//!
//! # Example
//!
//! ```
//! use twill_crypto::{sha256, verify, SigningKey, VerifyingKey};
//!
//! let key = SigningKey::generate()?;
//! let sig = key.sign(b"proposal bytes")?;
//! assert!(twill_crypto::is_low_s(&sig)?);
//!
//! // A peer only has the public key, e.g. from an X.509 certificate's SPKI.
//! let public = VerifyingKey::from_spki_der(&key.verifying_key().to_spki_der())?;
//! verify(&public, b"proposal bytes", &sig)?;
//! assert!(verify(&public, b"tampered", &sig).is_err());
//!
//! let tx_id_digest = sha256(b"nonce and creator");
//! assert_eq!(tx_id_digest.len(), 32);
//! # Ok::<(), twill_crypto::CryptoError>(())
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod error;
mod hash;
mod inverse;
mod keys;
mod own;
pub mod pem;
mod random;
pub mod reference;
mod sig;
mod tables;

pub use error::{CryptoError, DerIssue, PemIssue, Result, SignatureComponent};
pub use hash::{sha256, Sha256Hasher};
pub use keys::{verify, verify_batch, SigningKey, VerifyingKey};
pub use own::{remember_own_signatures, REMEMBERED};
pub use random::{random_bytes, try_random_bytes};
pub use sig::{is_low_s, normalize_low_s};
pub use tables::{MAX_TABLES, WARM_AFTER};
