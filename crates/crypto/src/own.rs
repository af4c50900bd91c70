//! Remembering the signatures this process made, so that verifying one of
//! them later costs a hash instead of an ECDSA verification.
//!
//! A peer verifies its own endorsements again when the transaction comes
//! back in a block. When [`remember_own_signatures`] is switched on,
//! [`SigningKey::sign`](crate::SigningKey::sign) records a digest of (public
//! key, message, signature) and [`verify`](crate::verify) answers `Ok` for
//! exactly such a triple without the curve arithmetic. That is sound: the
//! process produced that signature over that message with that key, so the
//! verification would succeed. Anything else is verified as usual. Off by
//! default; the memory is bounded (the oldest entries are forgotten first).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::hash::Sha256Hasher;

/// Signatures remembered at most.
pub const REMEMBERED: usize = 65_536;

static ENABLED: AtomicBool = AtomicBool::new(false);
static MEMORY: Mutex<Memory> = Mutex::new(Memory {
    set: None,
    order: VecDeque::new(),
});

struct Memory {
    set: Option<HashSet<[u8; 32]>>,
    order: VecDeque<[u8; 32]>,
}

/// Switches remembering on or off for the whole process (switching off
/// forgets everything).
pub fn remember_own_signatures(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
    if !on {
        if let Ok(mut m) = MEMORY.lock() {
            m.set = None;
            m.order.clear();
        }
    }
}

/// Whether remembering is switched on.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The memory's key for a signature: a hash of the key, the SHA-256 of the
/// message (all an ECDSA verification depends on) and the signature. Keyed
/// by the message's digest, a lookup costs a hash of about 170 bytes, not
/// of the whole message again.
fn entry(point: &[u8], msg_digest: &[u8; 32], sig: &[u8]) -> [u8; 32] {
    let mut h = Sha256Hasher::new();
    h.update(&(point.len() as u64).to_be_bytes());
    h.update(point);
    h.update(msg_digest);
    h.update(sig);
    h.finalize()
}

/// Records a signature just made (when switched on).
pub(crate) fn record(point: &[u8], msg: &[u8], sig: &[u8]) {
    if !enabled() {
        return;
    }
    let d = entry(point, &crate::sha256(msg), sig);
    let Ok(mut m) = MEMORY.lock() else { return };
    let Memory { set, order } = &mut *m;
    let set = set.get_or_insert_with(HashSet::new);
    if set.insert(d) {
        order.push_back(d);
        if order.len() > REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }
}

/// True if this process made `sig` with the key `point` over a message
/// whose SHA-256 is `msg_digest` (only when switched on).
pub(crate) fn known(point: &[u8], msg_digest: &[u8; 32], sig: &[u8]) -> bool {
    if !enabled() {
        return false;
    }
    let d = entry(point, msg_digest, sig);
    MEMORY
        .lock()
        .map(|m| m.set.as_ref().is_some_and(|s| s.contains(&d)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::SigningKey;

    #[test]
    fn own_signatures_verify_from_memory_and_others_still_fail() {
        remember_own_signatures(true);
        let key = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let sig = key.sign(b"endorsement").unwrap();
        let digest = |m: &[u8]| crate::sha256(m);
        assert!(known(
            public.to_sec1_uncompressed(),
            &digest(b"endorsement"),
            &sig
        ));
        crate::verify(&public, b"endorsement", &sig).unwrap();
        // Another message, or another key, is not taken from memory.
        assert!(!known(
            public.to_sec1_uncompressed(),
            &digest(b"other"),
            &sig
        ));
        assert!(crate::verify(&public, b"other", &sig).is_err());
        let other = SigningKey::generate().unwrap().verifying_key();
        assert!(!known(
            other.to_sec1_uncompressed(),
            &digest(b"endorsement"),
            &sig
        ));
        assert!(crate::verify(&other, b"endorsement", &sig).is_err());
        // A tampered signature is verified, and fails.
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(crate::verify(&public, b"endorsement", &bad).is_err());
    }
}
