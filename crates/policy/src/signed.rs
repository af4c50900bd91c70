//! Signed data, the `Policy` trait, and turning signatures into identities.

use crate::error::{PolicyError, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use tracing::debug;
use twill_msp::{Identity, MspManager};
use twill_protos::common::SignaturePolicyEnvelope;

/// One signature to be checked against a policy: `signature` by the
/// identity serialized in `identity` over `data`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignedData {
    /// The signed bytes.
    pub data: Vec<u8>,
    /// A prost-encoded `msp.SerializedIdentity`.
    pub identity: Vec<u8>,
    /// DER-encoded ECDSA signature over `data`.
    pub signature: Vec<u8>,
}

impl SignedData {
    /// Bundles the three parts.
    pub fn new(data: Vec<u8>, identity: Vec<u8>, signature: Vec<u8>) -> Self {
        SignedData {
            data,
            identity,
            signature,
        }
    }
}

/// A policy that a set of signatures either satisfies or not.
pub trait Policy: Send + Sync {
    /// Checks the signatures and whether their signers satisfy the policy.
    ///
    /// Signatures that do not verify, identities that do not deserialize and
    /// repeated identities are ignored rather than failing the evaluation:
    /// only the outcome over the remaining signers counts, as in Fabric.
    ///
    /// # Errors
    ///
    /// [`PolicyError::NotSatisfied`] naming what was missing.
    fn evaluate(&self, signed: &[SignedData]) -> Result<()>;

    /// Evaluates identities whose signatures were already checked and which
    /// were deduplicated, such as the output of [`valid_identities`].
    ///
    /// # Errors
    ///
    /// [`PolicyError::NotSatisfied`] naming what was missing.
    fn evaluate_identities(&self, identities: &[Identity]) -> Result<()>;

    /// The signature policy behind this policy, if it is one.
    fn signature_envelope(&self) -> Option<&SignaturePolicyEnvelope> {
        None
    }
}

/// Turns a signature set into the identities it proves, in Fabric's way.
///
/// Each entry's identity is deserialized through `msps` (entries that fail
/// are skipped and logged at debug level). Entries claiming the same
/// identity (same MSP and certificate) count once: the earliest one whose
/// signature verifies is kept, and later duplicates are never verified.
/// Entries whose signature does not verify are skipped. The result is in
/// the order of the kept entries.
///
/// Deserialization and signature checks run on the rayon pool when there is
/// more than one entry.
pub fn valid_identities(signed: &[SignedData], msps: &MspManager) -> Vec<Identity> {
    let parsed: Vec<Option<Identity>> = map_maybe_parallel(signed, |i, sd| {
        match msps.deserialize_identity(&sd.identity) {
            Ok(id) => Some(id),
            Err(e) => {
                debug!(target: "policy", index = i, error = %e, "skipping signature: identity does not deserialize");
                None
            }
        }
    });

    // Entries grouped by claimed identity, groups in order of first appearance.
    let mut group_of: HashMap<(&str, &[u8]), usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, id) in parsed.iter().enumerate() {
        let Some(id) = id else { continue };
        let g = *group_of
            .entry((id.mspid(), id.cert_der()))
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        if let Some(members) = groups.get_mut(g) {
            members.push(i);
        }
    }

    // Verify one candidate per identity at a time, moving on to the next
    // duplicate only when the earlier one's signature was bad.
    let mut cursor = vec![0usize; groups.len()];
    let mut pending: Vec<usize> = (0..groups.len()).collect();
    let mut kept: Vec<usize> = Vec::with_capacity(groups.len());
    while !pending.is_empty() {
        let candidates: Vec<(usize, usize)> = pending
            .iter()
            .filter_map(|&g| Some((g, *groups.get(g)?.get(*cursor.get(g)?)?)))
            .collect();
        let ok = map_maybe_parallel(&candidates, |_, &(_, i)| {
            let (Some(Some(id)), Some(sd)) = (parsed.get(i), signed.get(i)) else {
                return false;
            };
            match id.verify(&sd.data, &sd.signature) {
                Ok(()) => true,
                Err(e) => {
                    debug!(target: "policy", index = i, mspid = id.mspid(), error = %e, "skipping signature: does not verify");
                    false
                }
            }
        });
        let mut next = Vec::new();
        for (&(g, i), good) in candidates.iter().zip(ok) {
            if good {
                kept.push(i);
                continue;
            }
            if let Some(c) = cursor.get_mut(g) {
                *c += 1;
                if groups.get(g).is_some_and(|m| *c < m.len()) {
                    next.push(g);
                }
            }
        }
        pending = next;
    }
    kept.sort_unstable();
    let ids: Vec<Identity> = kept
        .into_iter()
        .filter_map(|i| parsed.get(i).cloned().flatten())
        .collect();
    let dropped = signed.len().saturating_sub(ids.len());
    if dropped > 0 {
        debug!(target: "policy", kept = ids.len(), dropped, "signature set reduced to valid, distinct signers");
    }
    ids
}

/// `items.map(f)`, on the rayon pool when there is more than one item.
fn map_maybe_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    if items.len() > 1 {
        items.par_iter().enumerate().map(|(i, t)| f(i, t)).collect()
    } else {
        items.iter().enumerate().map(|(i, t)| f(i, t)).collect()
    }
}

/// Describes signers for an error message, e.g. `Org1MSP 'peer0'`.
pub(crate) fn describe_signers(ids: &[Identity]) -> String {
    if ids.is_empty() {
        return "no valid signatures".to_owned();
    }
    let names: Vec<String> = ids
        .iter()
        .map(|id| format!("{} '{}'", id.mspid(), id.common_name()))
        .collect();
    format!("{} valid signer(s): {}", ids.len(), names.join(", "))
}

/// A policy no signature set satisfies; stands in for a policy that does
/// not exist, as Fabric does.
#[derive(Clone, Debug)]
pub struct RejectPolicy {
    name: String,
}

impl RejectPolicy {
    /// A reject-all policy standing for the missing policy `name`.
    pub fn new(name: impl Into<String>) -> Self {
        RejectPolicy { name: name.into() }
    }
}

impl Policy for RejectPolicy {
    fn evaluate(&self, _signed: &[SignedData]) -> Result<()> {
        self.evaluate_identities(&[])
    }

    fn evaluate_identities(&self, _identities: &[Identity]) -> Result<()> {
        Err(PolicyError::NotSatisfied {
            reason: format!("no such policy: '{}'", self.name),
        })
    }
}

/// A policy every signature set satisfies, even an empty one. For tests and
/// for places where a policy is required but nothing should be checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAllPolicy;

impl Policy for AcceptAllPolicy {
    fn evaluate(&self, _signed: &[SignedData]) -> Result<()> {
        Ok(())
    }

    fn evaluate_identities(&self, _identities: &[Identity]) -> Result<()> {
        Ok(())
    }
}
