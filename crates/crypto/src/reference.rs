//! Pure-Rust ECDSA P-256 on the RustCrypto `p256` crate.
//!
//! Not on any hot path: it exists so benchmarks can compare it with `ring`,
//! and so tests can check that two independent implementations agree.
//! Signing is deterministic (RFC 6979); the same DER and low-S rules apply
//! as in the `ring` path.

use crate::error::CryptoError;
use crate::sig::{normalize_low_s, Scalars};
use p256::ecdsa::signature::{Signer, Verifier};

/// Signs SHA-256(msg) with `p256`; DER-encoded, S normalised to low-S.
pub fn sign(key: &super::SigningKey, msg: &[u8]) -> super::Result<Vec<u8>> {
    let sig: p256::ecdsa::Signature = key
        .reference_key()
        .try_sign(msg)
        .map_err(|_| CryptoError::SigningFailed)?;
    normalize_low_s(sig.to_der().as_bytes())
}

/// Verifies a DER signature over SHA-256(msg) with `p256`, with the same
/// strict-DER, range and low-S checks as [`crate::verify`].
pub fn verify(key: &super::VerifyingKey, msg: &[u8], sig_der: &[u8]) -> super::Result<()> {
    let Scalars { r, s } = Scalars::parse_for_verify(sig_der)?;
    // `parse_for_verify` already enforced 1 <= r, s < n, so this cannot fail
    // in practice; map it anyway rather than unwrap.
    let sig = p256::ecdsa::Signature::from_scalars(r, s).map_err(|_| CryptoError::BadSignature)?;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(key.to_sec1_uncompressed())
        .map_err(|_| CryptoError::InvalidPublicKey { encoding: "SEC1" })?;
    vk.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{openssl_key, OPENSSL_MSG, OPENSSL_SIG_HIGH_S, OPENSSL_SIG_LOW_S};
    use crate::SigningKey;
    use p256::pkcs8::EncodePrivateKey;

    /// RFC 6979 appendix A.2.5: the P-256 test key.
    const RFC6979_X: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
    const RFC6979_UX: &str = "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6";
    const RFC6979_UY: &str = "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";

    fn rfc6979_key() -> SigningKey {
        let secret = p256::SecretKey::from_slice(&hex::decode(RFC6979_X).unwrap()).unwrap();
        SigningKey::from_pkcs8_der(secret.to_pkcs8_der().unwrap().as_bytes()).unwrap()
    }

    fn der_of(r: &str, s: &str) -> Vec<u8> {
        let r: [u8; 32] = hex::decode(r).unwrap().try_into().unwrap();
        let s: [u8; 32] = hex::decode(s).unwrap().try_into().unwrap();
        Scalars { r, s }.to_der()
    }

    #[test]
    fn rfc6979_sha256_vectors() {
        let key = rfc6979_key();
        let vk = key.verifying_key();
        assert_eq!(
            hex::encode(vk.to_sec1_uncompressed()),
            format!("04{RFC6979_UX}{RFC6979_UY}")
        );

        // "sample": the RFC's s is high, so we must emit n - s.
        let rfc_sample = der_of(
            "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
            "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
        );
        let ours_sample = sign(&key, b"sample").unwrap();
        assert_eq!(
            ours_sample,
            der_of(
                "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
                "0834e36ad29a83bf2bc9385e491d6099c8fdf9d1ed67aa7ea5f51f93782857a9",
            )
        );
        assert_eq!(normalize_low_s(&rfc_sample).unwrap(), ours_sample);
        assert_eq!(verify(&vk, b"sample", &rfc_sample), Err(CryptoError::HighS));
        assert_eq!(
            crate::verify(&vk, b"sample", &rfc_sample),
            Err(CryptoError::HighS)
        );
        verify(&vk, b"sample", &ours_sample).unwrap();
        crate::verify(&vk, b"sample", &ours_sample).unwrap();

        // "test": the RFC's s is already low and comes out unchanged.
        let rfc_test = der_of(
            "f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367",
            "019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083",
        );
        assert_eq!(sign(&key, b"test").unwrap(), rfc_test);
        crate::verify(&vk, b"test", &rfc_test).unwrap();
    }

    #[test]
    fn ring_and_p256_cross_verify() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        for msg in [&b""[..], b"cross-check", &[0xa5u8; 4096]] {
            let by_ring = key.sign(msg).unwrap();
            verify(&vk, msg, &by_ring).unwrap();
            let by_p256 = sign(&key, msg).unwrap();
            crate::verify(&vk, msg, &by_p256).unwrap();
            assert_eq!(
                verify(&vk, b"other", &by_ring),
                Err(CryptoError::BadSignature)
            );
            assert_eq!(
                crate::verify(&vk, b"other", &by_p256),
                Err(CryptoError::BadSignature)
            );
        }
    }

    #[test]
    fn openssl_vectors_agree_with_ring() {
        let vk = openssl_key().verifying_key();
        let low = hex::decode(OPENSSL_SIG_LOW_S).unwrap();
        let high = hex::decode(OPENSSL_SIG_HIGH_S).unwrap();
        verify(&vk, OPENSSL_MSG, &low).unwrap();
        assert_eq!(verify(&vk, OPENSSL_MSG, &high), Err(CryptoError::HighS));
        verify(&vk, OPENSSL_MSG, &normalize_low_s(&high).unwrap()).unwrap();
    }
}
