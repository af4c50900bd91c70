//! ECDSA P-256 keys: signing with `ring`, parsing and validation with `p256`.

use crate::error::{CryptoError, Result};
use crate::pem::{encode_pem, parse_pem_blocks};
use crate::sig::{normalize_low_s, Scalars};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use rayon::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};

/// PEM label of a PKCS#8 private key.
const LABEL_PKCS8: &str = "PRIVATE KEY";
/// PEM label of a SEC1 (RFC 5915) private key, as written by `openssl ecparam`.
const LABEL_SEC1: &str = "EC PRIVATE KEY";

/// Length of an uncompressed SEC1 P-256 point: `0x04 ‖ x ‖ y`.
const UNCOMPRESSED_LEN: usize = 65;

/// DER of `SubjectPublicKeyInfo` up to the point: algorithm id-ecPublicKey
/// with named curve prime256v1, then the BIT STRING header (no unused bits).
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// ECDSA P-256 private key for signing. Hot path uses `ring` (fast).
///
/// The key is held in three forms: `ring`'s key pair for signing, the
/// `p256` key for the [`crate::reference`](mod@crate::reference) implementation, and canonical
/// PKCS#8 bytes (zeroised on drop) for export. `Debug` shows only the public key.
pub struct SigningKey {
    ring: EcdsaKeyPair,
    reference: p256::ecdsa::SigningKey,
    pkcs8: Zeroizing<Vec<u8>>,
    public: VerifyingKey,
    rng: SystemRandom,
}

impl SigningKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate() -> Result<SigningKey> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| CryptoError::Rng)?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// Loads an unencrypted PKCS#8 `PrivateKeyInfo` holding a P-256 key.
    ///
    /// The public key embedded in the input (if any) is ignored and recomputed,
    /// so [`SigningKey::to_pkcs8_der`] returns a canonical encoding.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey> {
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|_| CryptoError::InvalidPrivateKey { encoding: "PKCS#8" })?;
        Self::from_secret(&secret)
    }

    /// Loads a SEC1 / RFC 5915 `ECPrivateKey` (the DER inside `EC PRIVATE KEY` PEM).
    pub fn from_sec1_der(der: &[u8]) -> Result<SigningKey> {
        let secret = p256::SecretKey::from_sec1_der(der)
            .map_err(|_| CryptoError::InvalidPrivateKey { encoding: "SEC1" })?;
        Self::from_secret(&secret)
    }

    /// Loads the first private key block of a PEM document.
    ///
    /// Accepts `PRIVATE KEY` (PKCS#8) and `EC PRIVATE KEY` (SEC1); other blocks,
    /// such as the `EC PARAMETERS` that `openssl ecparam` writes first, are skipped.
    pub fn from_pem(pem: &str) -> Result<SigningKey> {
        let blocks: Vec<(String, Zeroizing<Vec<u8>>)> = parse_pem_blocks(pem)?
            .into_iter()
            .map(|(label, der)| (label, Zeroizing::new(der)))
            .collect();
        for (label, der) in &blocks {
            match label.as_str() {
                LABEL_PKCS8 => return Self::from_pkcs8_der(der),
                LABEL_SEC1 => return Self::from_sec1_der(der),
                _ => {}
            }
        }
        Err(CryptoError::NoPrivateKeyInPem {
            labels: blocks.into_iter().map(|(label, _)| label).collect(),
        })
    }

    fn from_secret(secret: &p256::SecretKey) -> Result<SigningKey> {
        let invalid = CryptoError::InvalidPrivateKey { encoding: "PKCS#8" };
        let doc = secret.to_pkcs8_der().map_err(|_| invalid.clone())?;
        let pkcs8 = Zeroizing::new(doc.as_bytes().to_vec());
        let rng = SystemRandom::new();
        let ring = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
            .map_err(|_| invalid)?;
        let public = VerifyingKey::from_sec1_bytes(ring.public_key().as_ref())?;
        Ok(SigningKey {
            ring,
            reference: p256::ecdsa::SigningKey::from(secret),
            pkcs8,
            public,
            rng,
        })
    }

    /// The key as unencrypted PKCS#8 DER (with the public key included).
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.pkcs8.to_vec()
    }

    /// The key as a `PRIVATE KEY` PEM block.
    pub fn to_pkcs8_pem(&self) -> String {
        encode_pem(LABEL_PKCS8, &self.pkcs8)
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    /// SHA-256(msg) then ECDSA, DER-encoded, S always normalised to low-S.
    ///
    /// Nonces are random (ring's hedged signing), so two signatures of the same
    /// message differ.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .ring
            .sign(&self.rng, msg)
            .map_err(|_| CryptoError::SigningFailed)?;
        let sig = normalize_low_s(sig.as_ref())?;
        crate::own::record(&self.public.point, msg, &sig);
        Ok(sig)
    }

    /// The `p256` form of the key, for the reference implementation.
    pub(crate) fn reference_key(&self) -> &p256::ecdsa::SigningKey {
        &self.reference
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// ECDSA P-256 public key.
///
/// Holds the 65-byte uncompressed SEC1 point, already checked to be on the curve.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifyingKey {
    point: [u8; UNCOMPRESSED_LEN],
}

impl VerifyingKey {
    /// Parses a compressed (33-byte) or uncompressed (65-byte) SEC1 point and
    /// checks that it lies on P-256 and is not the identity.
    pub fn from_sec1_bytes(b: &[u8]) -> Result<Self> {
        let invalid = CryptoError::InvalidPublicKey { encoding: "SEC1" };
        let key = p256::PublicKey::from_sec1_bytes(b).map_err(|_| invalid.clone())?;
        Self::from_p256(&key).ok_or(invalid)
    }

    /// Parses a DER `SubjectPublicKeyInfo` for an id-ecPublicKey / prime256v1 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let invalid = CryptoError::InvalidPublicKey { encoding: "SPKI" };
        let key = p256::PublicKey::from_public_key_der(der).map_err(|_| invalid.clone())?;
        Self::from_p256(&key).ok_or(invalid)
    }

    fn from_p256(key: &p256::PublicKey) -> Option<Self> {
        let encoded = key.to_encoded_point(false);
        let point = encoded.as_bytes().try_into().ok()?;
        Some(VerifyingKey { point })
    }

    /// The uncompressed SEC1 point, `0x04 ‖ x ‖ y` (65 bytes).
    pub fn to_sec1_uncompressed(&self) -> &[u8] {
        &self.point
    }

    /// The key as DER `SubjectPublicKeyInfo`, the form found in X.509 certificates.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(SPKI_PREFIX.len() + UNCOMPRESSED_LEN);
        der.extend_from_slice(&SPKI_PREFIX);
        der.extend_from_slice(&self.point);
        der
    }

    /// Verify DER signature over SHA-256(msg).
    ///
    /// Rejects, each with its own error: malformed DER
    /// ([`CryptoError::MalformedSignature`]), non-canonical DER
    /// ([`CryptoError::NonCanonicalSignature`]), `r`/`s` outside `[1, n-1]`
    /// ([`CryptoError::SignatureScalarOutOfRange`]), high-S
    /// ([`CryptoError::HighS`], as Fabric does), and a signature that does not
    /// match ([`CryptoError::BadSignature`]).
    pub fn verify(&self, msg: &[u8], sig_der: &[u8]) -> Result<()> {
        let table = crate::tables::table_for(&self.point);
        if table.is_none() && !crate::own::enabled() {
            Scalars::parse_for_verify(sig_der)?;
            return self.ring_verify(msg, sig_der);
        }
        // The message is hashed once, for the memory and the table both.
        let digest = crate::sha256(msg);
        if crate::own::known(&self.point, &digest, sig_der) {
            return Ok(());
        }
        let scalars = Scalars::parse_for_verify(sig_der)?;
        match table {
            Some(table) if crate::tables::verify_prehash(&table, &digest, &scalars) => Ok(()),
            Some(_) => Err(CryptoError::BadSignature),
            None => self.ring_verify(msg, sig_der),
        }
    }

    /// [`verify`](Self::verify) always done by `ring`: no remembered
    /// signatures, no precomputed table. For benchmarks and cross-checks.
    pub fn verify_with_ring(&self, msg: &[u8], sig_der: &[u8]) -> Result<()> {
        Scalars::parse_for_verify(sig_der)?;
        self.ring_verify(msg, sig_der)
    }

    /// `ring`'s verification of a signature whose DER was already checked.
    fn ring_verify(&self, msg: &[u8], sig_der: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(msg, sig_der)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyingKey(")?;
        for b in &self.point {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The single verification seam the rest of the system calls (later it may be batched/cached).
///
/// Same checks as [`VerifyingKey::verify`].
pub fn verify(key: &VerifyingKey, msg: &[u8], sig_der: &[u8]) -> Result<()> {
    key.verify(msg, sig_der)
}

/// Verifies many `(key, msg, sig_der)` triples in parallel on the rayon pool.
///
/// Returns one result per item, in input order. Call it from a blocking
/// context (a rayon task or `spawn_blocking`), never on an async reactor.
pub fn verify_batch(items: &[(&VerifyingKey, &[u8], &[u8])]) -> Vec<Result<()>> {
    items
        .par_iter()
        .map(|&(key, msg, sig)| verify(key, msg, sig))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::{DerIssue, SignatureComponent};
    use crate::sig::ORDER;

    /// A key made with `openssl ecparam -name prime256v1 -genkey` (both blocks kept).
    pub(crate) const OPENSSL_SEC1_PEM: &str = "\
-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIP1cQKsxG9kyxsbJPO9tx9kTqe2S9iow8tMtmqdoycFfoAoGCCqGSM49
AwEHoUQDQgAEAXSdYbh99GBnzcKmGZQp+81zkaVQ5IhK/lBJCan4l0J7HVtSbffX
RTrUL2X1erUFA/+zuB2+UX3v8eA1X5BH5w==
-----END EC PRIVATE KEY-----
";

    /// The same key after `openssl pkcs8 -topk8 -nocrypt`.
    const OPENSSL_PKCS8_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/VxAqzEb2TLGxsk8
723H2ROp7ZL2KjDy0y2ap2jJwV+hRANCAAQBdJ1huH30YGfNwqYZlCn7zXORpVDk
iEr+UEkJqfiXQnsdW1Jt99dFOtQvZfV6tQUD/7O4Hb5Rfe/x4DVfkEfn
-----END PRIVATE KEY-----
";

    /// Its public key from `openssl ec -pubout`.
    const OPENSSL_SPKI_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAXSdYbh99GBnzcKmGZQp+81zkaVQ
5IhK/lBJCan4l0J7HVtSbffXRTrUL2X1erUFA/+zuB2+UX3v8eA1X5BH5w==
-----END PUBLIC KEY-----
";

    pub(crate) const OPENSSL_MSG: &[u8] = b"twill fixed vector";

    /// `openssl dgst -sha256 -sign` over `OPENSSL_MSG`; this one came out low-S.
    pub(crate) const OPENSSL_SIG_LOW_S: &str = "3045022100eb6a6543c1d1025274d4e3a49c1063c2bd6fd3c47fcc2edc9b330ea0453fe1930220714f0d867e44d42ab4a2f640cbf59944dfbbc39bd3ff2bb3dc466fed401b302d";

    /// Another openssl signature over `OPENSSL_MSG`; this one came out high-S.
    pub(crate) const OPENSSL_SIG_HIGH_S: &str = "304502200bc9bf11ab9d981ad371091223bb08d5b46251156c6e8f00247f819146e81915022100ad5b53c23a4ebeb7a38ac4803f11d9e44d5c88c6bf02cab68be91d7846a66b93";

    /// The uncompressed point of the openssl key.
    const OPENSSL_POINT: &str = "0401749d61b87df46067cdc2a6199429fbcd7391a550e4884afe504909a9f897427b1d5b526df7d7453ad42f65f57ab50503ffb3b81dbe517deff1e0355f9047e7";

    pub(crate) fn openssl_key() -> SigningKey {
        SigningKey::from_pem(OPENSSL_SEC1_PEM).unwrap()
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Builds `SEQUENCE { r, n - s }` from a low-S signature by hand, so the
    /// test does not lean on the code under test to make its high-S input.
    fn flip_s_by_hand(sig: &[u8]) -> Vec<u8> {
        let scalars = Scalars::parse_der(sig).unwrap();
        let n = u128_pair(&ORDER);
        let s = u128_pair(&scalars.s);
        // 256-bit subtraction on two u128 halves.
        let (lo, borrow) = n.1.overflowing_sub(s.1);
        let hi = n.0 - s.0 - u128::from(borrow);
        let mut high_s = [0u8; 32];
        high_s[..16].copy_from_slice(&hi.to_be_bytes());
        high_s[16..].copy_from_slice(&lo.to_be_bytes());
        let mut der = vec![0x02, 0x21, 0x00];
        der.extend_from_slice(&high_s);
        let r = &sig[2..4 + usize::from(sig[3])];
        let mut out = vec![0x30, (r.len() + der.len()) as u8];
        out.extend_from_slice(r);
        out.extend_from_slice(&der);
        out
    }

    fn u128_pair(v: &[u8; 32]) -> (u128, u128) {
        (
            u128::from_be_bytes(v[..16].try_into().unwrap()),
            u128::from_be_bytes(v[16..].try_into().unwrap()),
        )
    }

    #[test]
    fn signing_key_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SigningKey>();
        assert_send_sync::<VerifyingKey>();
    }

    #[test]
    fn sign_verify_roundtrip() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        for msg in [&b""[..], b"hello", &[7u8; 10_000]] {
            let sig = key.sign(msg).unwrap();
            assert!(crate::is_low_s(&sig).unwrap());
            vk.verify(msg, &sig).unwrap();
            verify(&vk, msg, &sig).unwrap();
        }
    }

    #[test]
    fn wrong_message_and_wrong_key_rejected() {
        let key = SigningKey::generate().unwrap();
        let sig = key.sign(b"transfer 10").unwrap();
        assert_eq!(
            key.verifying_key().verify(b"transfer 11", &sig),
            Err(CryptoError::BadSignature)
        );
        let other = SigningKey::generate().unwrap().verifying_key();
        assert_eq!(
            other.verify(b"transfer 10", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn openssl_signatures_fixed_vectors() {
        let vk = openssl_key().verifying_key();
        assert_eq!(hex::encode(vk.to_sec1_uncompressed()), OPENSSL_POINT);

        let low = h(OPENSSL_SIG_LOW_S);
        vk.verify(OPENSSL_MSG, &low).unwrap();
        assert_eq!(normalize_low_s(&low).unwrap(), low);

        let high = h(OPENSSL_SIG_HIGH_S);
        assert_eq!(crate::is_low_s(&high), Ok(false));
        assert_eq!(vk.verify(OPENSSL_MSG, &high), Err(CryptoError::HighS));
        let normalized = normalize_low_s(&high).unwrap();
        assert_eq!(crate::is_low_s(&normalized), Ok(true));
        vk.verify(OPENSSL_MSG, &normalized).unwrap();
        assert_eq!(
            vk.verify(b"another message", &normalized),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn high_s_form_of_valid_signature() {
        let vk = openssl_key().verifying_key();
        let low = h(OPENSSL_SIG_LOW_S);
        let high = flip_s_by_hand(&low);
        assert_eq!(
            hex::encode(&high),
            "3046022100eb6a6543c1d1025274d4e3a49c1063c2bd6fd3c47fcc2edc9b330ea0453fe193\
             0221008eb0f27881bb2bd64b5d09bf340a66badd2b3711d31872d117735ad5bc47f524"
        );
        assert_eq!(vk.verify(OPENSSL_MSG, &high), Err(CryptoError::HighS));
        assert_eq!(
            crate::reference::verify(&vk, OPENSSL_MSG, &high),
            Err(CryptoError::HighS)
        );
        assert_eq!(normalize_low_s(&high).unwrap(), low);
    }

    #[test]
    fn ring_signs_high_s_half_the_time_and_we_normalise() {
        // Ring does not normalise, so across 32 signatures both halves show up
        // (failure probability 2^-31); every output must still be low-S.
        let key = openssl_key();
        let vk = key.verifying_key();
        let rng = SystemRandom::new();
        let mut raw_high = 0;
        for _ in 0..32 {
            let raw = key.ring.sign(&rng, OPENSSL_MSG).unwrap();
            if !crate::is_low_s(raw.as_ref()).unwrap() {
                raw_high += 1;
                assert_eq!(
                    vk.verify(OPENSSL_MSG, raw.as_ref()),
                    Err(CryptoError::HighS)
                );
            }
            let ours = key.sign(OPENSSL_MSG).unwrap();
            assert!(crate::is_low_s(&ours).unwrap());
        }
        assert!(raw_high > 0 && raw_high < 32, "high-S count {raw_high}");
    }

    #[test]
    fn malformed_der_rejected() {
        let vk = openssl_key().verifying_key();
        let good = h(OPENSSL_SIG_LOW_S);
        let malformed = |issue| Err(CryptoError::MalformedSignature { issue });
        let non_canonical = |issue| Err(CryptoError::NonCanonicalSignature { issue });

        // Truncated anywhere.
        for cut in [0, 1, 2, 10, good.len() - 1] {
            assert_eq!(
                vk.verify(OPENSSL_MSG, &good[..cut]),
                malformed(DerIssue::Truncated),
                "cut at {cut}"
            );
        }

        // Trailing bytes after the SEQUENCE.
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            vk.verify(OPENSSL_MSG, &trailing),
            malformed(DerIssue::TrailingBytes)
        );

        // Trailing bytes inside the SEQUENCE, after s.
        let mut inner = good.clone();
        inner[1] += 2;
        inner.extend_from_slice(&[0x05, 0x00]);
        assert_eq!(
            vk.verify(OPENSSL_MSG, &inner),
            malformed(DerIssue::TrailingBytes)
        );

        // s (0x71.., high bit clear) given a needless leading zero.
        let s_at = 4 + usize::from(good[3]);
        let mut padded = good[..s_at].to_vec();
        padded.extend_from_slice(&[0x02, 0x21, 0x00]);
        padded.extend_from_slice(&good[s_at + 2..]);
        padded[1] += 1;
        assert_eq!(
            vk.verify(OPENSSL_MSG, &padded),
            non_canonical(DerIssue::NonMinimalInteger)
        );

        // r (0xeb..) without its sign-guard zero byte reads as negative.
        let mut negative = vec![0x30, good[1] - 1, 0x02, 0x20];
        negative.extend_from_slice(&good[5..]);
        assert_eq!(
            vk.verify(OPENSSL_MSG, &negative),
            malformed(DerIssue::NegativeInteger)
        );

        // Long-form outer length where the short form fits.
        let mut long_len = vec![0x30, 0x81];
        long_len.extend_from_slice(&good[1..]);
        assert_eq!(
            vk.verify(OPENSSL_MSG, &long_len),
            non_canonical(DerIssue::NonMinimalLength)
        );

        // Wrong tags and empty integers.
        let mut not_seq = good.clone();
        not_seq[0] = 0x31;
        assert_eq!(
            vk.verify(OPENSSL_MSG, &not_seq),
            malformed(DerIssue::NotASequence)
        );
        let mut not_int = good.clone();
        not_int[2] = 0x04;
        assert_eq!(
            vk.verify(OPENSSL_MSG, &not_int),
            malformed(DerIssue::NotAnInteger)
        );
        assert_eq!(
            vk.verify(OPENSSL_MSG, &[0x30, 0x04, 0x02, 0x00, 0x02, 0x00]),
            malformed(DerIssue::EmptyInteger)
        );

        // Zero s.
        assert_eq!(
            vk.verify(
                OPENSSL_MSG,
                &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00]
            ),
            Err(CryptoError::SignatureScalarOutOfRange {
                component: SignatureComponent::S
            })
        );

        // The untouched signature still verifies, so the failures above are
        // due to the edits alone.
        vk.verify(OPENSSL_MSG, &good).unwrap();
    }

    #[test]
    fn pem_pkcs8_and_sec1_load_the_same_key() {
        let from_sec1 = SigningKey::from_pem(OPENSSL_SEC1_PEM).unwrap();
        let from_pkcs8 = SigningKey::from_pem(OPENSSL_PKCS8_PEM).unwrap();
        assert_eq!(from_sec1.verifying_key(), from_pkcs8.verifying_key());
        // openssl's PKCS#8 already carries the public key, so ours is identical.
        assert_eq!(
            from_sec1.to_pkcs8_der(),
            parse_pem_blocks(OPENSSL_PKCS8_PEM).unwrap()[0].1
        );
        assert_eq!(from_sec1.to_pkcs8_pem(), OPENSSL_PKCS8_PEM);

        let sig = from_pkcs8.sign(b"m").unwrap();
        from_sec1.verifying_key().verify(b"m", &sig).unwrap();
    }

    #[test]
    fn pkcs8_export_roundtrip() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8_der(&key.to_pkcs8_der()).unwrap();
        assert_eq!(key.verifying_key(), again.verifying_key());
        let again = SigningKey::from_pem(&key.to_pkcs8_pem()).unwrap();
        assert_eq!(key.verifying_key(), again.verifying_key());
    }

    #[test]
    fn bad_private_keys_rejected() {
        assert_eq!(
            SigningKey::from_pkcs8_der(b"\x30\x03\x02\x01\x00").unwrap_err(),
            CryptoError::InvalidPrivateKey { encoding: "PKCS#8" }
        );
        // A SEC1 body under a PKCS#8 label is not silently accepted.
        let sec1_der = parse_pem_blocks(OPENSSL_SEC1_PEM).unwrap()[1].1.clone();
        assert!(SigningKey::from_pkcs8_der(&sec1_der).is_err());
        assert_eq!(
            SigningKey::from_pem(OPENSSL_SPKI_PEM).unwrap_err(),
            CryptoError::NoPrivateKeyInPem {
                labels: vec!["PUBLIC KEY".to_owned()]
            }
        );
        assert_eq!(
            SigningKey::from_pem("").unwrap_err(),
            CryptoError::NoPrivateKeyInPem { labels: vec![] }
        );
    }

    #[test]
    fn debug_does_not_print_secret() {
        let key = openssl_key();
        let shown = format!("{key:?}");
        assert!(shown.contains(OPENSSL_POINT), "{shown}");
        let secret_hex = "fd5c40ab311bd932c6c6c93cef6dc7d913a9ed92f62a30f2d32d9aa768c9c15f";
        assert!(!shown.contains(secret_hex));
    }

    #[test]
    fn spki_roundtrip_and_openssl_fixed_vector() {
        let openssl_spki = parse_pem_blocks(OPENSSL_SPKI_PEM).unwrap()[0].1.clone();
        let vk = VerifyingKey::from_spki_der(&openssl_spki).unwrap();
        assert_eq!(vk, openssl_key().verifying_key());
        assert_eq!(vk.to_spki_der(), openssl_spki);

        let fresh = SigningKey::generate().unwrap().verifying_key();
        assert_eq!(
            VerifyingKey::from_spki_der(&fresh.to_spki_der()).unwrap(),
            fresh
        );
        // Our hand-built SPKI matches p256's encoder.
        let p256_spki = p256::PublicKey::from_sec1_bytes(fresh.to_sec1_uncompressed())
            .unwrap()
            .to_public_key_der()
            .unwrap();
        assert_eq!(fresh.to_spki_der(), p256_spki.as_bytes());

        let mut trailing = openssl_spki.clone();
        trailing.push(0);
        assert!(VerifyingKey::from_spki_der(&trailing).is_err());
        assert!(VerifyingKey::from_spki_der(&openssl_spki[..40]).is_err());
    }

    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn sec1_compressed_and_invalid_points() {
        let vk = openssl_key().verifying_key();
        let point = vk.to_sec1_uncompressed();
        let mut compressed = vec![0x02 | (point[64] & 1)];
        compressed.extend_from_slice(&point[1..33]);
        assert_eq!(VerifyingKey::from_sec1_bytes(&compressed).unwrap(), vk);

        let mut off_curve = point.to_vec();
        off_curve[64] ^= 1;
        let invalid = Err(CryptoError::InvalidPublicKey { encoding: "SEC1" });
        assert_eq!(VerifyingKey::from_sec1_bytes(&off_curve), invalid);
        assert_eq!(VerifyingKey::from_sec1_bytes(&point[..64]), invalid);
        assert_eq!(VerifyingKey::from_sec1_bytes(&[0x00]), invalid);
        assert_eq!(VerifyingKey::from_sec1_bytes(&[]), invalid);
    }

    #[test]
    fn batch_results_in_order() {
        let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
        let vks: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 16]).collect();
        let sigs: Vec<Vec<u8>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 3].sign(m).unwrap())
            .collect();
        let high = flip_s_by_hand(&sigs[7]);
        let items: Vec<(&VerifyingKey, &[u8], &[u8])> = (0..40)
            .map(|i| {
                let key = &vks[i % 3];
                match i {
                    // Wrong key for this signature.
                    5 => (&vks[0], msgs[i].as_slice(), sigs[i].as_slice()),
                    7 => (key, msgs[i].as_slice(), high.as_slice()),
                    11 => (key, msgs[i].as_slice(), &sigs[i][..10]),
                    _ => (key, msgs[i].as_slice(), sigs[i].as_slice()),
                }
            })
            .collect();
        let results = verify_batch(&items);
        assert_eq!(results.len(), 40);
        for (i, result) in results.iter().enumerate() {
            let expected = match i {
                5 => Err(CryptoError::BadSignature),
                7 => Err(CryptoError::HighS),
                11 => Err(CryptoError::MalformedSignature {
                    issue: DerIssue::Truncated,
                }),
                _ => Ok(()),
            };
            assert_eq!(result, &expected, "item {i}");
        }
        assert!(verify_batch(&[]).is_empty());
    }
}
