//! SHA-256, one-shot and incremental, backed by `ring`.

use ring::digest;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256Hasher::new();
    hasher.update(data);
    hasher.finalize()
}

/// Incremental SHA-256, for hashing data that arrives in pieces
/// (for example a block's data entries, which are hashed as one concatenation).
#[derive(Clone)]
pub struct Sha256Hasher {
    ctx: digest::Context,
}

impl Sha256Hasher {
    /// Starts a new hash.
    pub fn new() -> Self {
        Sha256Hasher {
            ctx: digest::Context::new(&digest::SHA256),
        }
    }

    /// Feeds more bytes into the hash.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// Finishes the hash and returns the 32-byte digest.
    pub fn finalize(self) -> [u8; 32] {
        let digest = self.ctx.finish();
        let mut out = [0u8; 32];
        // SHA-256 output is always 32 bytes, so the lengths match.
        out.copy_from_slice(digest.as_ref());
        out
    }
}

impl Default for Sha256Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha256Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sha256Hasher").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abc_known_vector() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn empty_known_vector() {
        assert_eq!(
            hex::encode(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn incremental_matches_one_shot() {
        let data = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let mut hasher = Sha256Hasher::new();
        for chunk in data.chunks(7) {
            hasher.update(chunk);
        }
        let digest = hasher.finalize();
        assert_eq!(digest, sha256(data));
        assert_eq!(
            hex::encode(digest),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }
}
