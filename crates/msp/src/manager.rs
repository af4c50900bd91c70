//! All MSPs of a channel, by MSP id.

use crate::error::{MspError, Result};
use crate::identity::{deserialize_serialized_identity, Identity};
use crate::msp::Msp;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use twill_protos::common::MspPrincipal;

/// All MSPs of a channel (or of a node's local view), by MSP id.
///
/// Cloning is cheap: the MSPs are shared behind `Arc`s, so clones also share
/// each MSP's validation cache.
#[derive(Clone, Default)]
pub struct MspManager {
    msps: BTreeMap<String, Arc<Msp>>,
    /// Parsed identities by their serialized bytes: the same few creators
    /// sign most transactions, and parsing an X.509 certificate costs more
    /// than verifying the signature it carries. Shared by clones.
    parsed: Arc<Mutex<HashMap<Vec<u8>, Identity>>>,
}

/// Distinct identities kept parsed before the cache starts over.
const PARSED_IDENTITY_CACHE: usize = 4096;

impl MspManager {
    /// A manager over `msps`; a later MSP with the same id silently replaces
    /// an earlier one.
    ///
    /// Kept for compatibility. Fabric rejects a channel configuration that
    /// defines one MSP id twice with different configurations; use
    /// [`MspManager::try_new`] to do the same.
    pub fn new(msps: impl IntoIterator<Item = Msp>) -> MspManager {
        Self::from_shared(msps.into_iter().map(Arc::new))
    }

    /// A manager over `msps`, as Fabric's channel-config MSP handler builds
    /// it: an MSP whose id was already seen is dropped when its configuration
    /// equals the first one's, and is [`MspError::DuplicateMsp`] otherwise.
    pub fn try_new(msps: impl IntoIterator<Item = Msp>) -> Result<MspManager> {
        let mut map: BTreeMap<String, Arc<Msp>> = BTreeMap::new();
        for msp in msps {
            match map.get(msp.id()) {
                Some(first) if first.config() == msp.config() => {}
                Some(_) => {
                    return Err(MspError::DuplicateMsp {
                        mspid: msp.id().to_owned(),
                    })
                }
                None => {
                    map.insert(msp.id().to_owned(), Arc::new(msp));
                }
            }
        }
        Ok(MspManager {
            msps: map,
            parsed: Arc::default(),
        })
    }

    /// A manager over already shared MSPs; a later MSP with the same id
    /// silently replaces an earlier one.
    pub fn from_shared(msps: impl IntoIterator<Item = Arc<Msp>>) -> MspManager {
        MspManager {
            msps: msps
                .into_iter()
                .map(|msp| (msp.id().to_owned(), msp))
                .collect(),
            parsed: Arc::default(),
        }
    }

    /// The MSP with this id.
    pub fn get(&self, mspid: &str) -> Option<&Msp> {
        self.msps.get(mspid).map(Arc::as_ref)
    }

    /// The MSP with this id, as a shared handle.
    pub fn get_shared(&self, mspid: &str) -> Option<Arc<Msp>> {
        self.msps.get(mspid).cloned()
    }

    /// The ids of all MSPs, sorted.
    pub fn msp_ids(&self) -> Vec<String> {
        self.msps.keys().cloned().collect()
    }

    /// Iterates over the MSPs in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Msp> {
        self.msps.values().map(Arc::as_ref)
    }

    /// Parses a prost-encoded `SerializedIdentity` of any MSP of the manager.
    ///
    /// [`MspError::UnknownMsp`] if its MSP id is not known. The identity is
    /// not validated.
    pub fn deserialize_identity(&self, serialized: &[u8]) -> Result<Identity> {
        if let Some(id) = self
            .parsed
            .lock()
            .ok()
            .and_then(|cache| cache.get(serialized).cloned())
        {
            return Ok(id);
        }
        let (mspid, id_bytes) = deserialize_serialized_identity(serialized)?;
        self.msp(&mspid)?;
        let id = Identity::from_pem(&mspid, &id_bytes)?;
        if let Ok(mut cache) = self.parsed.lock() {
            if cache.len() >= PARSED_IDENTITY_CACHE {
                cache.clear();
            }
            cache.insert(serialized.to_vec(), id.clone());
        }
        Ok(id)
    }

    /// Validates the identity in the MSP it claims, including expiry now;
    /// see [`Msp::validate_at`]. For ingress only.
    pub fn validate(&self, id: &Identity) -> Result<()> {
        self.msp(id.mspid())?.validate(id)
    }

    /// Validates the identity in the MSP it claims, including expiry at `now`;
    /// see [`Msp::validate_at`].
    pub fn validate_at(&self, id: &Identity, now: SystemTime) -> Result<()> {
        self.msp(id.mspid())?.validate_at(id, now)
    }

    /// Validates the identity in the MSP it claims, without regard to the
    /// current time; see [`Msp::validate_ignoring_time`].
    pub fn validate_ignoring_time(&self, id: &Identity) -> Result<()> {
        self.msp(id.mspid())?.validate_ignoring_time(id)
    }

    /// Checks the identity against a principal in the MSP it claims; see
    /// [`Msp::satisfies_principal`]. The answer does not depend on the
    /// current time, so policy evaluation over stored blocks is repeatable.
    pub fn satisfies_principal(&self, id: &Identity, p: &MspPrincipal) -> Result<()> {
        self.msp(id.mspid())?.satisfies_principal(id, p)
    }

    /// [`MspManager::satisfies_principal`] plus the validity periods at `now`;
    /// see [`Msp::satisfies_principal_at`].
    #[deprecated(
        note = "principal satisfaction does not depend on time; use validate_at for expiry and satisfies_principal"
    )]
    pub fn satisfies_principal_at(
        &self,
        id: &Identity,
        p: &MspPrincipal,
        now: SystemTime,
    ) -> Result<()> {
        #[allow(deprecated)]
        self.msp(id.mspid())?.satisfies_principal_at(id, p, now)
    }

    fn msp(&self, mspid: &str) -> Result<&Msp> {
        self.get(mspid).ok_or_else(|| MspError::UnknownMsp {
            mspid: mspid.to_owned(),
        })
    }
}

impl std::fmt::Debug for MspManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MspManager")
            .field("msp_ids", &self.msps.keys().collect::<Vec<_>>())
            .finish()
    }
}
