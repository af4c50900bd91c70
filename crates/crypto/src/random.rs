//! Randomness from the operating system, via `ring`.

use crate::error::{CryptoError, Result};
use ring::rand::{SecureRandom, SystemRandom};

/// `n` bytes from the operating system's CSPRNG, for nonces.
///
/// # Panics
///
/// Panics if the operating system cannot supply randomness, which leaves no
/// safe way to build a transaction; use [`try_random_bytes`] to handle it.
pub fn random_bytes(n: usize) -> Vec<u8> {
    match try_random_bytes(n) {
        Ok(bytes) => bytes,
        Err(err) => panic!("operating system randomness unavailable: {err}"),
    }
}

/// `n` bytes from the operating system's CSPRNG, reporting failure as [`CryptoError::Rng`].
pub fn try_random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| CryptoError::Rng)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_variation() {
        assert!(random_bytes(0).is_empty());
        let a = random_bytes(24);
        let b = random_bytes(24);
        assert_eq!(a.len(), 24);
        // Equal 192-bit draws would mean a broken RNG.
        assert_ne!(a, b);
        assert_eq!(try_random_bytes(1000).unwrap().len(), 1000);
    }
}
