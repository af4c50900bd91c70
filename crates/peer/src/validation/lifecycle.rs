//! The read side of the `_lifecycle` state: committed chaincode definitions
//! and the endorsement policies they name.
//!
//! Fabric's lifecycle stores each committed definition of chaincode `<name>`
//! in the `_lifecycle` namespace as one key per struct field plus a metadata
//! key naming the struct:
//!
//! | key | value |
//! | --- | --- |
//! | `namespaces/metadata/<name>` | `lifecycle.StateMetadata { datatype: "ChaincodeDefinition", fields: [Sequence, EndorsementInfo, ValidationInfo, Collections] }` |
//! | `namespaces/fields/<name>/Sequence` | `lifecycle.StateData { Int64 }` |
//! | `namespaces/fields/<name>/EndorsementInfo` | `StateData { Bytes: lifecycle.ChaincodeEndorsementInfo }` |
//! | `namespaces/fields/<name>/ValidationInfo` | `StateData { Bytes: lifecycle.ChaincodeValidationInfo }` |
//! | `namespaces/fields/<name>/Collections` | `StateData { Bytes: protos.CollectionConfigPackage }` |
//!
//! `ChaincodeValidationInfo.validation_parameter` is a serialized
//! `protos.ApplicationPolicy`: an inline signature policy or a reference to
//! a channel config policy such as `/Channel/Application/Endorsement`.
//! The `_lifecycle` namespace itself has no stored definition; its policy is
//! `/Channel/Application/LifecycleEndorsement` when the channel defines it,
//! else a majority of the application orgs' members.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message;
use twill_configtx::channel::ChannelConfig;
use twill_policy::{Policy, RejectPolicy, SignaturePolicyEvaluator};
use twill_protos::common::msp_role::MspRoleType;
use twill_protos::common::SignaturePolicyEnvelope;
use twill_protos::lifecycle::{
    state_data, ChaincodeEndorsementInfo, ChaincodeValidationInfo, StateData, StateMetadata,
};
use twill_protos::peer::{application_policy, ApplicationPolicy};

use super::{StateAccessError, StateView};

/// The namespace of the lifecycle system chaincode.
pub const LIFECYCLE_NAMESPACE: &str = "_lifecycle";
/// Datatype recorded in the metadata key of a committed definition.
pub const CHAINCODE_DEFINITION_TYPE: &str = "ChaincodeDefinition";
/// Channel policy endorsing `_lifecycle` transactions.
pub const LIFECYCLE_ENDORSEMENT_POLICY: &str = "/Channel/Application/LifecycleEndorsement";
/// Field names of a committed definition, in the order Fabric records them.
pub const DEFINITION_FIELDS: [&str; 4] = [
    "Sequence",
    "EndorsementInfo",
    "ValidationInfo",
    "Collections",
];

/// `namespaces/metadata/<name>`: the key naming the datatype stored for
/// chaincode `name`.
pub fn metadata_key(name: &str) -> String {
    format!("namespaces/metadata/{name}")
}

/// `namespaces/fields/<name>/<field>`: the key of one field of chaincode
/// `name`'s committed definition.
pub fn field_key(name: &str, field: &str) -> String {
    format!("namespaces/fields/{name}/{field}")
}

/// The `_lifecycle` keys and values of a committed definition of `name`
/// with the given sequence and validation info (no collections, endorsement
/// info of `version`), as Fabric's lifecycle writes them. For tests and for
/// seeding a state database.
pub fn definition_entries(
    name: &str,
    sequence: i64,
    version: &str,
    validation: &ChaincodeValidationInfo,
) -> Vec<(String, Vec<u8>)> {
    let endorsement = ChaincodeEndorsementInfo {
        version: version.to_owned(),
        init_required: false,
        endorsement_plugin: "escc".to_owned(),
    };
    definition_entries_with(name, sequence, &endorsement, validation, &[])
}

/// The `_lifecycle` keys and values of a committed definition of `name`:
/// the metadata key and one key per field, as Fabric's lifecycle writes
/// them. `collections` is a serialized `protos.CollectionConfigPackage`
/// (empty for none).
pub fn definition_entries_with(
    name: &str,
    sequence: i64,
    endorsement: &ChaincodeEndorsementInfo,
    validation: &ChaincodeValidationInfo,
    collections: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let bytes = |b: Vec<u8>| {
        StateData {
            r#type: Some(state_data::Type::Bytes(b)),
        }
        .encode_to_vec()
    };
    vec![
        (
            metadata_key(name),
            StateMetadata {
                datatype: CHAINCODE_DEFINITION_TYPE.to_owned(),
                fields: DEFINITION_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            }
            .encode_to_vec(),
        ),
        (
            field_key(name, "Sequence"),
            StateData {
                r#type: Some(state_data::Type::Int64(sequence)),
            }
            .encode_to_vec(),
        ),
        (
            field_key(name, "EndorsementInfo"),
            bytes(endorsement.encode_to_vec()),
        ),
        (
            field_key(name, "ValidationInfo"),
            bytes(validation.encode_to_vec()),
        ),
        (field_key(name, "Collections"), bytes(collections.to_vec())),
    ]
}

/// What a namespace's policy lookup found.
#[derive(Clone)]
pub(crate) enum NsPolicy {
    /// The compiled endorsement policy.
    Policy(Arc<dyn Policy>),
    /// No usable definition: the transaction is `INVALID_CHAINCODE`.
    Invalid(String),
}

/// Why a definition is unusable (→ `INVALID_CHAINCODE`).
fn invalid(ns: &str, why: impl std::fmt::Display) -> NsPolicy {
    NsPolicy::Invalid(format!("chaincode '{ns}': {why}"))
}

type CacheKey = (String, u64, String, i64);

/// Compiled chaincode policies across blocks, keyed by channel, config
/// sequence, namespace and definition sequence: a new definition or a new
/// channel config (new MSPs or policies) gets a fresh entry.
#[derive(Default)]
pub(crate) struct PolicyCache {
    map: Mutex<HashMap<CacheKey, NsPolicy>>,
}

/// Entries kept before the cache is emptied (a crude bound; definitions
/// change rarely).
const CACHE_LIMIT: usize = 4096;

impl PolicyCache {
    fn get_or_insert(&self, key: CacheKey, make: impl FnOnce() -> NsPolicy) -> NsPolicy {
        if let Some(p) = self.map.lock().get(&key) {
            return p.clone();
        }
        let made = make();
        let mut map = self.map.lock();
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.entry(key).or_insert(made).clone()
    }
}

/// Policy lookups during one block: namespaces are resolved once per block
/// (their definition read from the committed state), key-level policies once
/// per distinct parameter.
pub(crate) struct BlockPolicies<'a> {
    cache: &'a PolicyCache,
    config: &'a ChannelConfig,
    channel: &'a str,
    state: &'a dyn StateView,
    namespaces: Mutex<HashMap<String, NsPolicy>>,
    key_level: Mutex<HashMap<Vec<u8>, Arc<dyn Policy>>>,
}

impl<'a> BlockPolicies<'a> {
    pub(crate) fn new(
        cache: &'a PolicyCache,
        config: &'a ChannelConfig,
        channel: &'a str,
        state: &'a dyn StateView,
    ) -> Self {
        BlockPolicies {
            cache,
            config,
            channel,
            state,
            namespaces: Mutex::new(HashMap::new()),
            key_level: Mutex::new(HashMap::new()),
        }
    }

    /// The endorsement policy of namespace `ns`.
    pub(crate) fn namespace_policy(&self, ns: &str) -> Result<NsPolicy, StateAccessError> {
        if let Some(p) = self.namespaces.lock().get(ns) {
            return Ok(p.clone());
        }
        let resolved = self.resolve(ns)?;
        self.namespaces
            .lock()
            .insert(ns.to_owned(), resolved.clone());
        Ok(resolved)
    }

    fn resolve(&self, ns: &str) -> Result<NsPolicy, StateAccessError> {
        let config_seq = self.config.config.sequence;
        if ns == LIFECYCLE_NAMESPACE {
            let key = (self.channel.to_owned(), config_seq, ns.to_owned(), 0);
            return Ok(self
                .cache
                .get_or_insert(key, || NsPolicy::Policy(self.lifecycle_policy())));
        }
        let Some(md_bytes) = self.state.get(LIFECYCLE_NAMESPACE, &metadata_key(ns))? else {
            return Ok(invalid(ns, "no committed definition"));
        };
        let md = match StateMetadata::decode(md_bytes.as_slice()) {
            Ok(md) => md,
            Err(e) => return Ok(invalid(ns, format_args!("bad definition metadata: {e}"))),
        };
        if md.datatype != CHAINCODE_DEFINITION_TYPE {
            return Ok(invalid(
                ns,
                format_args!("namespace holds a {}, not a chaincode", md.datatype),
            ));
        }
        let sequence = match self.field(ns, "Sequence")? {
            Ok(None) => 0,
            Ok(Some(state_data::Type::Int64(v))) => v,
            Ok(Some(_)) => return Ok(invalid(ns, "Sequence is not an Int64")),
            Err(e) => return Ok(invalid(ns, e)),
        };
        let key = (self.channel.to_owned(), config_seq, ns.to_owned(), sequence);
        if let Some(p) = self.cache.map.lock().get(&key) {
            return Ok(p.clone());
        }
        let info = match self.field(ns, "ValidationInfo")? {
            Ok(None) => ChaincodeValidationInfo::default(),
            Ok(Some(state_data::Type::Bytes(b))) => {
                match ChaincodeValidationInfo::decode(b.as_slice()) {
                    Ok(i) => i,
                    Err(e) => return Ok(invalid(ns, format_args!("bad ValidationInfo: {e}"))),
                }
            }
            Ok(Some(_)) => return Ok(invalid(ns, "ValidationInfo is not Bytes")),
            Err(e) => return Ok(invalid(ns, e)),
        };
        if info.validation_plugin.is_empty() {
            return Ok(invalid(ns, "definition names no validation plugin"));
        }
        if info.validation_parameter.is_empty() {
            return Ok(invalid(ns, "definition carries no endorsement policy"));
        }
        Ok(self.cache.get_or_insert(key, || {
            NsPolicy::Policy(self.application_policy(&info.validation_parameter))
        }))
    }

    /// One field's `StateData` value; the inner `Err` is a malformed value.
    fn field(
        &self,
        ns: &str,
        field: &str,
    ) -> Result<Result<Option<state_data::Type>, String>, StateAccessError> {
        let Some(bytes) = self.state.get(LIFECYCLE_NAMESPACE, &field_key(ns, field))? else {
            return Ok(Ok(None));
        };
        Ok(StateData::decode(bytes.as_slice())
            .map(|d| d.r#type)
            .map_err(|e| format!("bad {field} value: {e}")))
    }

    fn application_policy(&self, bytes: &[u8]) -> Arc<dyn Policy> {
        application_policy(self.config, bytes)
    }

    fn signature_policy(&self, env: SignaturePolicyEnvelope) -> Arc<dyn Policy> {
        signature_policy(self.config, env)
    }

    fn lifecycle_policy(&self) -> Arc<dyn Policy> {
        lifecycle_policy(self.config)
    }

    /// The policy for writes to org `mspid`'s `_lifecycle` approval key:
    /// one endorsement by a member of that org (as Fabric requires for an
    /// org's implicit collection).
    pub(crate) fn org_member_policy(&self, mspid: &str) -> Arc<dyn Policy> {
        let env = twill_policy::builder::signed_by_n_out_of_role(1, MspRoleType::Member, &[mspid]);
        self.signature_policy(env)
    }

    /// The key-level policy of a `VALIDATION_PARAMETER` value (a serialized
    /// `SignaturePolicyEnvelope`).
    pub(crate) fn key_policy(&self, parameter: &[u8]) -> Arc<dyn Policy> {
        if let Some(p) = self.key_level.lock().get(parameter) {
            return p.clone();
        }
        let compiled = match SignaturePolicyEnvelope::decode(parameter) {
            Ok(env) => self.signature_policy(env),
            Err(e) => reject(format!("undecodable key-level policy: {e}")),
        };
        self.key_level
            .lock()
            .insert(parameter.to_vec(), compiled.clone());
        compiled
    }
}

/// Compiles a serialized `ApplicationPolicy` against `config`; anything
/// unusable becomes a policy nothing satisfies (→
/// `ENDORSEMENT_POLICY_FAILURE`).
pub(crate) fn application_policy(config: &ChannelConfig, bytes: &[u8]) -> Arc<dyn Policy> {
    let app = match ApplicationPolicy::decode(bytes) {
        Ok(a) => a,
        Err(e) => return reject(format!("undecodable ApplicationPolicy: {e}")),
    };
    match app.r#type {
        Some(application_policy::Type::SignaturePolicy(env)) => signature_policy(config, env),
        Some(application_policy::Type::ChannelConfigPolicyReference(path)) => config
            .policies
            .get_policy(&path)
            .unwrap_or_else(|| reject(format!("no channel policy {path}"))),
        None => reject("ApplicationPolicy names no policy".to_owned()),
    }
}

fn signature_policy(config: &ChannelConfig, env: SignaturePolicyEnvelope) -> Arc<dyn Policy> {
    match SignaturePolicyEvaluator::new(env, config.msps.clone()) {
        Ok(p) => Arc::new(p),
        Err(e) => reject(format!("invalid signature policy: {e}")),
    }
}

/// The endorsement policy of `_lifecycle`: the channel's
/// `LifecycleEndorsement`, else a majority of the application orgs'
/// members.
pub(crate) fn lifecycle_policy(config: &ChannelConfig) -> Arc<dyn Policy> {
    if let Some(p) = config.policies.get_policy(LIFECYCLE_ENDORSEMENT_POLICY) {
        return p;
    }
    let ids: Vec<&str> = config
        .application_orgs
        .values()
        .map(|o| o.msp_id.as_str())
        .collect();
    let n = i32::try_from(ids.len() / 2 + 1).unwrap_or(i32::MAX);
    let env = twill_policy::builder::signed_by_n_out_of_role(n, MspRoleType::Member, &ids);
    signature_policy(config, env)
}

fn reject(reason: String) -> Arc<dyn Policy> {
    Arc::new(RejectPolicy::new(reason))
}
