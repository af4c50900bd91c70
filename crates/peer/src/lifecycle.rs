//! The `_lifecycle` system chaincode: install packages, approve a
//! definition for the peer's org, check commit readiness, commit, query.
//!
//! Proposals name chaincode `_lifecycle`, `args[0]` is the function and
//! `args[1]` its serialized `lifecycle.<Function>Args`; the response
//! payload is the serialized `<Function>Result`, as with Fabric's peer CLI
//! and SDKs.
//!
//! | function | channel | who | effect |
//! | --- | --- | --- | --- |
//! | `InstallChaincode` | none | local MSP admin | stores the package |
//! | `QueryInstalledChaincodes`, `QueryInstalledChaincode`, `GetInstalledChaincodePackage` | none | local MSP admin | reads the store |
//! | `ApproveChaincodeDefinitionForMyOrg` | yes | local MSP admin | writes the org's approval |
//! | `CheckCommitReadiness` | yes | channel member | which orgs approved this definition |
//! | `CommitChaincodeDefinition` | yes | channel member | writes the definition, if enough orgs approved |
//! | `QueryChaincodeDefinition(s)`, `QueryApprovedChaincodeDefinition` | yes | channel member | reads |
//!
//! Approve and commit only *simulate*: their writes become the
//! transaction's read-write set, which orderers order and every peer
//! validates (commit against `/Channel/Application/LifecycleEndorsement`,
//! an approval against its org, see [`approval_org`]).
//!
//! Where this differs from Fabric: an org's approval is a public
//! `_lifecycle` key, `approvals/<MSP id>/<name>`, holding the
//! `ApproveChaincodeDefinitionForMyOrgArgs` (package id included), where
//! Fabric keeps it in the org's implicit private data collection. Other
//! orgs can therefore read which package an org approved.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use prost::Message as _;
use twill_configtx::channel::ChannelConfig;
use twill_ledger::state::StateDb;
use twill_lifecycle::PackageStore;
use twill_protos::lifecycle::{
    chaincode_source, query_installed_chaincodes_result, state_data,
    ApproveChaincodeDefinitionForMyOrgArgs, ApproveChaincodeDefinitionForMyOrgResult,
    ChaincodeEndorsementInfo, ChaincodeSource, ChaincodeValidationInfo, CheckCommitReadinessArgs,
    CheckCommitReadinessResult, CommitChaincodeDefinitionArgs, CommitChaincodeDefinitionResult,
    GetInstalledChaincodePackageArgs, GetInstalledChaincodePackageResult, InstallChaincodeArgs,
    InstallChaincodeResult, QueryApprovedChaincodeDefinitionArgs,
    QueryApprovedChaincodeDefinitionResult, QueryChaincodeDefinitionArgs,
    QueryChaincodeDefinitionResult, QueryChaincodeDefinitionsResult, QueryInstalledChaincodeArgs,
    QueryInstalledChaincodeResult, QueryInstalledChaincodesResult, StateData, StateMetadata,
};
use twill_protos::peer::CollectionConfigPackage;

use crate::validation::lifecycle::{
    definition_entries_with, field_key, metadata_key, CHAINCODE_DEFINITION_TYPE,
};

pub use crate::validation::lifecycle::LIFECYCLE_NAMESPACE;

/// Version recorded for `_lifecycle` in its transactions' chaincode ids.
pub const LIFECYCLE_VERSION: &str = "syscc";

/// Prefix of the approval keys in `_lifecycle`.
pub const APPROVALS_PREFIX: &str = "approvals/";

/// `approvals/<mspid>/<name>`: where org `mspid`'s approval of chaincode
/// `name` is kept.
pub fn approval_key(mspid: &str, name: &str) -> String {
    format!("{APPROVALS_PREFIX}{mspid}/{name}")
}

/// The org whose approval `key` holds, if it is an approval key. Writes to
/// such a key must be endorsed by that org (as Fabric's implicit org
/// collections require), not by the lifecycle policy.
pub fn approval_org(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(APPROVALS_PREFIX)?;
    let (org, name) = rest.split_once('/')?;
    (!org.is_empty() && !name.is_empty()).then_some(org)
}

/// Reads and writes of a `_lifecycle` simulation (the `_lifecycle`
/// namespace of the transaction simulator).
pub trait LifecycleState {
    /// The committed value of `key` (recording the read).
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Writes `key` in the transaction.
    fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), String>;
    /// Names of the chaincodes with a committed definition (the keys under
    /// `namespaces/metadata/`), sorted.
    fn definition_names(&mut self) -> Result<Vec<String>, String>;
}

/// Values read or derived from a channel's committed `_lifecycle` state
/// (chaincode definitions, endorsement plans), each kept until a commit
/// writes to `_lifecycle` again: an entry carries the state's
/// [`namespace_stamp`](StateDb::namespace_stamp) read before the value was
/// made, and a different stamp is a miss. Errors are not kept; past
/// [`LifecycleCache::LIMIT`] entries (keys can come from requests) the
/// cache starts over.
pub(crate) struct LifecycleCache<K, V> {
    map: parking_lot::Mutex<HashMap<K, (u64, V)>>,
}

impl<K: Hash + Eq, V: Clone> LifecycleCache<K, V> {
    /// Entries kept at most.
    pub(crate) const LIMIT: usize = 1024;

    /// The value for `key` in `state`, made by `make` on a miss.
    pub(crate) fn get_or_try<E>(
        &self,
        state: &StateDb,
        key: K,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        // The stamp is read before the state, so an entry is never newer
        // than its stamp claims.
        let stamp = state.namespace_stamp(LIFECYCLE_NAMESPACE);
        if let Some((at, value)) = self.map.lock().get(&key) {
            if *at == stamp {
                return Ok(value.clone());
            }
        }
        let value = make()?;
        let mut map = self.map.lock();
        if map.len() >= Self::LIMIT {
            map.clear();
        }
        map.insert(key, (stamp, value.clone()));
        Ok(value)
    }
}

impl<K, V> Default for LifecycleCache<K, V> {
    fn default() -> Self {
        LifecycleCache {
            map: parking_lot::Mutex::new(HashMap::new()),
        }
    }
}

/// A committed chaincode definition, as the `_lifecycle` keys hold it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Definition {
    /// Sequence (starts at 1, +1 per upgrade).
    pub sequence: i64,
    /// Version, init-required flag and endorsement plugin.
    pub endorsement: ChaincodeEndorsementInfo,
    /// Validation plugin and parameter (the endorsement policy).
    pub validation: ChaincodeValidationInfo,
    /// Serialized `CollectionConfigPackage` (empty for none).
    pub collections: Vec<u8>,
}

/// What the caller may do, decided by the endorser before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The creator is an admin of the peer's local MSP.
    pub local_admin: bool,
}

/// Everything a `_lifecycle` function can touch.
pub struct LifecycleContext<'a> {
    /// The peer's installed packages.
    pub store: &'a PackageStore,
    /// The peer's MSP id (whose approvals it writes).
    pub local_mspid: &'a str,
    /// The channel's config, for channel functions.
    pub config: Option<&'a ChannelConfig>,
    /// The simulation, for channel functions.
    pub state: Option<&'a mut dyn LifecycleState>,
    /// What the caller may do.
    pub caller: Caller,
}

/// Runs `_lifecycle` function `args[0]` with `args[1]`: `Ok` is the
/// response payload, `Err` the error message (a status 500 response).
pub fn invoke(ctx: LifecycleContext<'_>, args: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let function = args
        .first()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .ok_or("_lifecycle needs a function name as its first argument")?;
    let input = args.get(1).map(Vec::as_slice).unwrap_or_default();
    if args.len() > 2 {
        return Err(format!(
            "_lifecycle function {function} takes one argument, got {}",
            args.len() - 1
        ));
    }
    match function.as_str() {
        "InstallChaincode" => {
            admin(&ctx, &function)?;
            let a: InstallChaincodeArgs = decode(&function, input)?;
            let installed = ctx
                .store
                .install(&a.chaincode_install_package)
                .map_err(|e| format!("failed to install chaincode: {e}"))?;
            tracing::info!(target: "peer::lifecycle", package_id = %installed.package_id, "chaincode installed");
            Ok(InstallChaincodeResult {
                package_id: installed.package_id,
                label: installed.label,
            }
            .encode_to_vec())
        }
        "QueryInstalledChaincodes" => {
            admin(&ctx, &function)?;
            let installed = ctx
                .store
                .list()
                .map_err(|e| format!("failed to list installed chaincodes: {e}"))?;
            Ok(QueryInstalledChaincodesResult {
                installed_chaincodes: installed
                    .into_iter()
                    .map(|c| query_installed_chaincodes_result::InstalledChaincode {
                        package_id: c.package_id,
                        label: c.label,
                        references: Default::default(),
                    })
                    .collect(),
            }
            .encode_to_vec())
        }
        "QueryInstalledChaincode" => {
            admin(&ctx, &function)?;
            let a: QueryInstalledChaincodeArgs = decode(&function, input)?;
            let found = ctx
                .store
                .list()
                .map_err(|e| format!("failed to list installed chaincodes: {e}"))?
                .into_iter()
                .find(|c| c.package_id == a.package_id)
                .ok_or_else(|| format!("chaincode install package '{}' not found", a.package_id))?;
            Ok(QueryInstalledChaincodeResult {
                package_id: found.package_id,
                label: found.label,
                references: Default::default(),
            }
            .encode_to_vec())
        }
        "GetInstalledChaincodePackage" => {
            admin(&ctx, &function)?;
            let a: GetInstalledChaincodePackageArgs = decode(&function, input)?;
            let bytes = ctx
                .store
                .get(&a.package_id)
                .map_err(|e| format!("failed to get chaincode package: {e}"))?;
            Ok(GetInstalledChaincodePackageResult {
                chaincode_install_package: bytes,
            }
            .encode_to_vec())
        }
        "ApproveChaincodeDefinitionForMyOrg" => {
            admin(&ctx, &function)?;
            let a: ApproveChaincodeDefinitionForMyOrgArgs = decode(&function, input)?;
            let (config, state) = channel_parts(ctx.config, ctx.state, &function)?;
            approve(state, config, ctx.local_mspid, a)
        }
        "CheckCommitReadiness" => {
            let a: CheckCommitReadinessArgs = decode(&function, input)?;
            let (config, state) = channel_parts(ctx.config, ctx.state, &function)?;
            let proposed = proposed_from_readiness(&a);
            check_next_sequence(state, &a.name, a.sequence)?;
            let approvals = approvals(state, config, &a.name, &proposed)?;
            Ok(CheckCommitReadinessResult {
                approvals: approvals.into_iter().collect(),
                mismatches: Default::default(),
            }
            .encode_to_vec())
        }
        "CommitChaincodeDefinition" => {
            let a: CommitChaincodeDefinitionArgs = decode(&function, input)?;
            let (config, state) = channel_parts(ctx.config, ctx.state, &function)?;
            commit(state, config, a)
        }
        "QueryChaincodeDefinition" => {
            let a: QueryChaincodeDefinitionArgs = decode(&function, input)?;
            let (config, state) = channel_parts(ctx.config, ctx.state, &function)?;
            let def = committed_definition(state, &a.name)?
                .ok_or_else(|| format!("namespace {} is not defined", a.name))?;
            let proposed = proposed_from_definition(&def);
            let approvals = approvals(state, config, &a.name, &proposed)?;
            Ok(QueryChaincodeDefinitionResult {
                sequence: def.sequence,
                version: def.endorsement.version,
                endorsement_plugin: def.endorsement.endorsement_plugin,
                validation_plugin: def.validation.validation_plugin,
                validation_parameter: def.validation.validation_parameter,
                collections: decode_collections(&def.collections)?,
                init_required: def.endorsement.init_required,
                approvals: approvals.into_iter().collect(),
            }
            .encode_to_vec())
        }
        "QueryChaincodeDefinitions" => {
            let (_, state) = channel_parts(ctx.config, ctx.state, &function)?;
            let names = state.definition_names()?;
            let mut out = QueryChaincodeDefinitionsResult::default();
            for name in names {
                if let Some(def) = committed_definition(state, &name)? {
                    out.chaincode_definitions.push(
                        twill_protos::lifecycle::query_chaincode_definitions_result::ChaincodeDefinition {
                            name,
                            sequence: def.sequence,
                            version: def.endorsement.version,
                            endorsement_plugin: def.endorsement.endorsement_plugin,
                            validation_plugin: def.validation.validation_plugin,
                            validation_parameter: def.validation.validation_parameter,
                            collections: decode_collections(&def.collections)?,
                            init_required: def.endorsement.init_required,
                        },
                    );
                }
            }
            Ok(out.encode_to_vec())
        }
        "QueryApprovedChaincodeDefinition" => {
            let a: QueryApprovedChaincodeDefinitionArgs = decode(&function, input)?;
            let (_, state) = channel_parts(ctx.config, ctx.state, &function)?;
            let approval = read_approval(state, ctx.local_mspid, &a.name)?
                .filter(|ap| a.sequence == 0 || ap.sequence == a.sequence)
                .ok_or_else(|| {
                    format!(
                        "could not fetch approved chaincode definition (name: '{}', sequence: '{}') on channel",
                        a.name, a.sequence
                    )
                })?;
            Ok(QueryApprovedChaincodeDefinitionResult {
                sequence: approval.sequence,
                version: approval.version,
                endorsement_plugin: approval.endorsement_plugin,
                validation_plugin: approval.validation_plugin,
                validation_parameter: approval.validation_parameter,
                collections: approval.collections,
                init_required: approval.init_required,
                source: approval.source,
            }
            .encode_to_vec())
        }
        other => Err(format!("unknown _lifecycle function: {other}")),
    }
}

/// The package id an org approved for the committed definition of `name`
/// (the package its peers run), if its approval matches the definition.
pub fn approved_package(
    state: &mut dyn LifecycleState,
    mspid: &str,
    name: &str,
    def: &Definition,
) -> Result<Option<String>, String> {
    let Some(approval) = read_approval(state, mspid, name)? else {
        return Ok(None);
    };
    if approval.sequence != def.sequence {
        return Ok(None);
    }
    Ok(match approval.source.and_then(|s| s.r#type) {
        Some(chaincode_source::Type::LocalPackage(local)) if !local.package_id.is_empty() => {
            Some(local.package_id)
        }
        _ => None,
    })
}

/// The committed definition of `name`, if any.
pub fn committed_definition(
    state: &mut dyn LifecycleState,
    name: &str,
) -> Result<Option<Definition>, String> {
    let Some(meta) = state.get(&metadata_key(name))? else {
        return Ok(None);
    };
    let meta = StateMetadata::decode(meta.as_slice())
        .map_err(|e| format!("chaincode '{name}': malformed definition metadata: {e}"))?;
    if meta.datatype != CHAINCODE_DEFINITION_TYPE {
        return Err(format!(
            "chaincode '{name}': state holds a {} rather than a chaincode definition",
            meta.datatype
        ));
    }
    let mut field = |f: &str| -> Result<StateData, String> {
        let raw = state
            .get(&field_key(name, f))?
            .ok_or_else(|| format!("chaincode '{name}': definition field {f} is missing"))?;
        StateData::decode(raw.as_slice())
            .map_err(|e| format!("chaincode '{name}': definition field {f} is malformed: {e}"))
    };
    let sequence = match field("Sequence")?.r#type {
        Some(state_data::Type::Int64(n)) => n,
        _ => return Err(format!("chaincode '{name}': Sequence is not an integer")),
    };
    let bytes = |d: StateData, f: &str| match d.r#type {
        Some(state_data::Type::Bytes(b)) => Ok(b),
        _ => Err(format!("chaincode '{name}': {f} is not bytes")),
    };
    let endorsement = bytes(field("EndorsementInfo")?, "EndorsementInfo")?;
    let validation = bytes(field("ValidationInfo")?, "ValidationInfo")?;
    let collections = bytes(field("Collections")?, "Collections")?;
    Ok(Some(Definition {
        sequence,
        endorsement: ChaincodeEndorsementInfo::decode(endorsement.as_slice())
            .map_err(|e| format!("chaincode '{name}': EndorsementInfo: {e}"))?,
        validation: ChaincodeValidationInfo::decode(validation.as_slice())
            .map_err(|e| format!("chaincode '{name}': ValidationInfo: {e}"))?,
        collections,
    }))
}

/// The definition fields approvals are compared on.
#[derive(Debug, Clone, PartialEq)]
struct Proposed {
    sequence: i64,
    version: String,
    endorsement_plugin: String,
    validation_plugin: String,
    validation_parameter: Vec<u8>,
    collections: Vec<u8>,
    init_required: bool,
}

/// The compared fields of a lifecycle args message that carries a whole
/// definition (readiness, approval and commit args share the field names).
macro_rules! proposed_from_args {
    ($a:expr) => {
        Proposed {
            sequence: $a.sequence,
            version: $a.version.clone(),
            endorsement_plugin: $a.endorsement_plugin.clone(),
            validation_plugin: $a.validation_plugin.clone(),
            validation_parameter: $a.validation_parameter.clone(),
            collections: collections_bytes($a.collections.as_ref()),
            init_required: $a.init_required,
        }
    };
}

fn proposed_from_readiness(a: &CheckCommitReadinessArgs) -> Proposed {
    proposed_from_args!(a)
}

fn proposed_from_approval(a: &ApproveChaincodeDefinitionForMyOrgArgs) -> Proposed {
    proposed_from_args!(a)
}

fn proposed_from_commit(a: &CommitChaincodeDefinitionArgs) -> Proposed {
    proposed_from_args!(a)
}

fn proposed_from_definition(d: &Definition) -> Proposed {
    Proposed {
        sequence: d.sequence,
        version: d.endorsement.version.clone(),
        endorsement_plugin: d.endorsement.endorsement_plugin.clone(),
        validation_plugin: d.validation.validation_plugin.clone(),
        validation_parameter: d.validation.validation_parameter.clone(),
        collections: d.collections.clone(),
        init_required: d.endorsement.init_required,
    }
}

/// Canonical bytes of a collection package (empty when there are none).
fn collections_bytes(c: Option<&CollectionConfigPackage>) -> Vec<u8> {
    match c {
        Some(p) if !p.config.is_empty() => p.encode_to_vec(),
        _ => Vec::new(),
    }
}

fn decode_collections(bytes: &[u8]) -> Result<Option<CollectionConfigPackage>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    CollectionConfigPackage::decode(bytes)
        .map(Some)
        .map_err(|e| format!("malformed collection config: {e}"))
}

fn decode<M: prost::Message + Default>(function: &str, input: &[u8]) -> Result<M, String> {
    M::decode(input).map_err(|e| format!("failed to decode the arguments of {function}: {e}"))
}

fn admin(ctx: &LifecycleContext<'_>, function: &str) -> Result<(), String> {
    if ctx.caller.local_admin {
        Ok(())
    } else {
        Err(format!(
            "access denied: {function} needs an admin of the peer's organization {}",
            ctx.local_mspid
        ))
    }
}

fn channel_parts<'s, 'c>(
    config: Option<&'c ChannelConfig>,
    state: Option<&'s mut dyn LifecycleState>,
    function: &str,
) -> Result<(&'c ChannelConfig, &'s mut dyn LifecycleState), String> {
    match (config, state) {
        (Some(c), Some(s)) => Ok((c, s)),
        _ => Err(format!("{function} must be called on a channel")),
    }
}

/// Checks a name as Fabric does: letters, digits, `_`, `-`, `.`, `+`,
/// starting with a letter or digit.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok && name != LIFECYCLE_NAMESPACE {
        Ok(())
    } else {
        Err(format!("invalid chaincode name '{name}'"))
    }
}

/// The sequence a new definition of `name` must have.
fn next_sequence(state: &mut dyn LifecycleState, name: &str) -> Result<i64, String> {
    Ok(committed_definition(state, name)?.map_or(0, |d| d.sequence) + 1)
}

fn check_next_sequence(
    state: &mut dyn LifecycleState,
    name: &str,
    sequence: i64,
) -> Result<(), String> {
    check_name(name)?;
    let next = next_sequence(state, name)?;
    if sequence != next {
        return Err(format!(
            "requested sequence is {sequence}, but new definition must be sequence {next}"
        ));
    }
    Ok(())
}

fn approve(
    state: &mut dyn LifecycleState,
    config: &ChannelConfig,
    mspid: &str,
    a: ApproveChaincodeDefinitionForMyOrgArgs,
) -> Result<Vec<u8>, String> {
    check_name(&a.name)?;
    if a.version.is_empty() {
        return Err("the chaincode version must not be empty".into());
    }
    if !config.application_orgs.values().any(|o| o.msp_id == mspid) {
        return Err(format!(
            "organization {mspid} is not an application organization of the channel"
        ));
    }
    let committed = committed_definition(state, &a.name)?;
    let current = committed.as_ref().map_or(0, |d| d.sequence);
    if a.sequence == current && current > 0 {
        // Re-approving the committed definition (for example to name a
        // package): it must be the same definition.
        if let Some(def) = &committed {
            if proposed_from_definition(def) != proposed_from_approval(&a) {
                return Err(format!(
                    "attempted to redefine the current committed sequence ({current}) for namespace {} with different parameters",
                    a.name
                ));
            }
        }
    } else if a.sequence != current + 1 {
        return Err(format!(
            "requested sequence is {}, but new definition must be sequence {}",
            a.sequence,
            current + 1
        ));
    }
    let mut stored = a;
    if stored.source.is_none() {
        stored.source = Some(ChaincodeSource {
            r#type: Some(chaincode_source::Type::Unavailable(
                chaincode_source::Unavailable {},
            )),
        });
    }
    let key = approval_key(mspid, &stored.name);
    state.put(&key, stored.encode_to_vec())?;
    Ok(ApproveChaincodeDefinitionForMyOrgResult {}.encode_to_vec())
}

fn read_approval(
    state: &mut dyn LifecycleState,
    mspid: &str,
    name: &str,
) -> Result<Option<ApproveChaincodeDefinitionForMyOrgArgs>, String> {
    let Some(raw) = state.get(&approval_key(mspid, name))? else {
        return Ok(None);
    };
    ApproveChaincodeDefinitionForMyOrgArgs::decode(raw.as_slice())
        .map(Some)
        .map_err(|e| format!("malformed approval of {mspid} for {name}: {e}"))
}

/// For each application org of the channel: did it approve exactly
/// `proposed`?
fn approvals(
    state: &mut dyn LifecycleState,
    config: &ChannelConfig,
    name: &str,
    proposed: &Proposed,
) -> Result<BTreeMap<String, bool>, String> {
    let mut out = BTreeMap::new();
    for org in config.application_orgs.values() {
        let agreed = read_approval(state, &org.msp_id, name)?
            .is_some_and(|a| proposed_from_approval(&a) == *proposed);
        out.insert(org.msp_id.clone(), agreed);
    }
    Ok(out)
}

/// How many of `total` orgs must approve: the rule of the channel's
/// `LifecycleEndorsement` when it is an implicit-meta policy (ANY, ALL,
/// MAJORITY), else a majority.
fn required_approvals(config: &ChannelConfig, total: usize) -> usize {
    use twill_protos::common::{implicit_meta_policy::Rule, ImplicitMetaPolicy, Policy};
    let rule = config
        .config
        .channel_group
        .as_ref()
        .and_then(|g| g.groups.get("Application"))
        .and_then(|g| g.policies.get("LifecycleEndorsement"))
        .and_then(|p| p.policy.as_ref())
        .filter(|p: &&Policy| {
            p.r#type == twill_protos::common::policy::PolicyType::ImplicitMeta as i32
        })
        .and_then(|p| ImplicitMetaPolicy::decode(p.value.as_slice()).ok())
        .and_then(|m| Rule::try_from(m.rule).ok());
    match rule {
        Some(Rule::Any) => 1.min(total),
        Some(Rule::All) => total,
        _ => total / 2 + 1,
    }
}

fn commit(
    state: &mut dyn LifecycleState,
    config: &ChannelConfig,
    a: CommitChaincodeDefinitionArgs,
) -> Result<Vec<u8>, String> {
    check_next_sequence(state, &a.name, a.sequence)?;
    if a.version.is_empty() {
        return Err("the chaincode version must not be empty".into());
    }
    let proposed = proposed_from_commit(&a);
    let approvals = approvals(state, config, &a.name, &proposed)?;
    let required = required_approvals(config, approvals.len());
    let names = |want: bool| -> Vec<&str> {
        approvals
            .iter()
            .filter(|(_, ok)| **ok == want)
            .map(|(name, _)| name.as_str())
            .collect()
    };
    let (agreed, missing) = (names(true), names(false));
    if agreed.len() < required {
        return Err(format!(
            "chaincode definition for '{}' sequence {} is approved by {} of {} organizations, {} needed (LifecycleEndorsement); approved by [{}], missing approvals from [{}]",
            a.name,
            a.sequence,
            agreed.len(),
            approvals.len(),
            required,
            agreed.join(", "),
            missing.join(", "),
        ));
    }
    let endorsement = ChaincodeEndorsementInfo {
        version: a.version,
        init_required: a.init_required,
        endorsement_plugin: a.endorsement_plugin,
    };
    let validation = ChaincodeValidationInfo {
        validation_plugin: a.validation_plugin,
        validation_parameter: a.validation_parameter,
    };
    for (key, value) in definition_entries_with(
        &a.name,
        a.sequence,
        &endorsement,
        &validation,
        &proposed.collections,
    ) {
        state.put(&key, value)?;
    }
    Ok(CommitChaincodeDefinitionResult {}.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::validation::testkit::TestNetwork;

    #[test]
    fn lifecycle_cache_keeps_values_until_lifecycle_is_written() {
        use twill_ledger::state::{Height, KeyWrite, UpdateBatch};
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(dir.path()).unwrap();
        let cache: LifecycleCache<&str, u32> = LifecycleCache::default();
        let mut made = 0;
        let get = |made: &mut u32| {
            cache
                .get_or_try(&state, "basic", || -> Result<u32, ()> {
                    *made += 1;
                    Ok(*made)
                })
                .unwrap()
        };
        assert_eq!(get(&mut made), 1);
        assert_eq!(get(&mut made), 1, "a hit does not make the value again");
        let commit = |ns: &str, block: u64| {
            let mut b = UpdateBatch::default();
            b.put(ns, "k", KeyWrite::Put(b"v".to_vec()), Height::new(block, 0));
            state.commit(&b, block).unwrap();
        };
        commit("basic", 1);
        assert_eq!(get(&mut made), 1, "another namespace's write keeps it");
        commit(LIFECYCLE_NAMESPACE, 2);
        assert_eq!(get(&mut made), 2, "a _lifecycle write makes it again");
        // Failures are not kept.
        assert!(cache.get_or_try(&state, "other", || Err(())).is_err());
        assert_eq!(cache.get_or_try(&state, "other", || Ok::<_, ()>(7)), Ok(7));
    }

    /// `_lifecycle` state in memory; writes go straight in (as if each call
    /// were committed at once).
    #[derive(Default)]
    struct Mem(BTreeMap<String, Vec<u8>>);

    impl LifecycleState for Mem {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.get(key).cloned())
        }
        fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), String> {
            self.0.insert(key.to_owned(), value);
            Ok(())
        }
        fn definition_names(&mut self) -> Result<Vec<String>, String> {
            Ok(self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix("namespaces/metadata/"))
                .map(str::to_owned)
                .collect())
        }
    }

    struct Fx {
        _net: TestNetwork,
        config: ChannelConfig,
        _dir: tempfile::TempDir,
        store: PackageStore,
    }

    fn fx() -> Fx {
        let net = TestNetwork::new().unwrap();
        let config = net.config().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path().join("chaincodes")).unwrap();
        Fx {
            _net: net,
            config,
            _dir: dir,
            store,
        }
    }

    fn call(
        fx: &Fx,
        state: &mut Mem,
        mspid: &str,
        admin: bool,
        function: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        invoke(
            LifecycleContext {
                store: &fx.store,
                local_mspid: mspid,
                config: Some(&fx.config),
                state: Some(state),
                caller: Caller { local_admin: admin },
            },
            &[function.as_bytes().to_vec(), args],
        )
    }

    fn approval(sequence: i64, version: &str, package: &str) -> Vec<u8> {
        ApproveChaincodeDefinitionForMyOrgArgs {
            sequence,
            name: "basic".into(),
            version: version.into(),
            endorsement_plugin: "escc".into(),
            validation_plugin: "vscc".into(),
            validation_parameter: b"policy".to_vec(),
            collections: None,
            init_required: false,
            source: Some(ChaincodeSource {
                r#type: Some(chaincode_source::Type::LocalPackage(
                    chaincode_source::Local {
                        package_id: package.into(),
                    },
                )),
            }),
        }
        .encode_to_vec()
    }

    fn commit_args(sequence: i64, version: &str) -> Vec<u8> {
        CommitChaincodeDefinitionArgs {
            sequence,
            name: "basic".into(),
            version: version.into(),
            endorsement_plugin: "escc".into(),
            validation_plugin: "vscc".into(),
            validation_parameter: b"policy".to_vec(),
            collections: None,
            init_required: false,
        }
        .encode_to_vec()
    }

    fn readiness(fx: &Fx, state: &mut Mem, sequence: i64, version: &str) -> BTreeMap<String, bool> {
        let args = CheckCommitReadinessArgs {
            sequence,
            name: "basic".into(),
            version: version.into(),
            endorsement_plugin: "escc".into(),
            validation_plugin: "vscc".into(),
            validation_parameter: b"policy".to_vec(),
            collections: None,
            init_required: false,
        };
        let out = call(
            fx,
            state,
            "Org1MSP",
            false,
            "CheckCommitReadiness",
            args.encode_to_vec(),
        )
        .unwrap();
        CheckCommitReadinessResult::decode(out.as_slice())
            .unwrap()
            .approvals
            .into_iter()
            .collect()
    }

    #[test]
    fn approve_by_both_orgs_then_commit_then_upgrade() {
        let fx = fx();
        let mut st = Mem::default();
        call(
            &fx,
            &mut st,
            "Org1MSP",
            true,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(1, "1.0", "basic_1:aa"),
        )
        .unwrap();
        assert_eq!(
            readiness(&fx, &mut st, 1, "1.0"),
            BTreeMap::from([("Org1MSP".into(), true), ("Org2MSP".into(), false)])
        );
        // A majority of two orgs is both: the commit names who is missing.
        let err = call(
            &fx,
            &mut st,
            "Org1MSP",
            false,
            "CommitChaincodeDefinition",
            commit_args(1, "1.0"),
        )
        .unwrap_err();
        assert!(err.contains("missing approvals from [Org2MSP]"), "{err}");
        assert!(err.contains("approved by [Org1MSP]"), "{err}");

        call(
            &fx,
            &mut st,
            "Org2MSP",
            true,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(1, "1.0", "basic_1:bb"),
        )
        .unwrap();
        call(
            &fx,
            &mut st,
            "Org1MSP",
            false,
            "CommitChaincodeDefinition",
            commit_args(1, "1.0"),
        )
        .unwrap();
        let def = committed_definition(&mut st, "basic").unwrap().unwrap();
        assert_eq!(def.sequence, 1);
        assert_eq!(def.endorsement.version, "1.0");
        assert_eq!(def.validation.validation_parameter, b"policy");
        // Each org runs the package it approved.
        assert_eq!(
            approved_package(&mut st, "Org2MSP", "basic", &def)
                .unwrap()
                .as_deref(),
            Some("basic_1:bb")
        );
        let q = call(
            &fx,
            &mut st,
            "Org1MSP",
            false,
            "QueryChaincodeDefinition",
            QueryChaincodeDefinitionArgs {
                name: "basic".into(),
            }
            .encode_to_vec(),
        )
        .unwrap();
        let q = QueryChaincodeDefinitionResult::decode(q.as_slice()).unwrap();
        assert_eq!((q.sequence, q.version.as_str()), (1, "1.0"));
        assert_eq!(q.approvals.values().filter(|a| **a).count(), 2);

        // Committing the same sequence again is refused; the next is 2.
        let err = call(
            &fx,
            &mut st,
            "Org1MSP",
            false,
            "CommitChaincodeDefinition",
            commit_args(1, "1.0"),
        )
        .unwrap_err();
        assert!(err.contains("new definition must be sequence 2"), "{err}");
        let err = call(
            &fx,
            &mut st,
            "Org1MSP",
            true,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(3, "2.0", "x:cc"),
        )
        .unwrap_err();
        assert!(err.contains("new definition must be sequence 2"), "{err}");

        // Upgrade: sequence 2 with a new package.
        for org in ["Org1MSP", "Org2MSP"] {
            call(
                &fx,
                &mut st,
                org,
                true,
                "ApproveChaincodeDefinitionForMyOrg",
                approval(2, "2.0", "basic_2:dd"),
            )
            .unwrap();
        }
        call(
            &fx,
            &mut st,
            "Org2MSP",
            false,
            "CommitChaincodeDefinition",
            commit_args(2, "2.0"),
        )
        .unwrap();
        let def = committed_definition(&mut st, "basic").unwrap().unwrap();
        assert_eq!((def.sequence, def.endorsement.version.as_str()), (2, "2.0"));
        assert_eq!(
            approved_package(&mut st, "Org1MSP", "basic", &def)
                .unwrap()
                .as_deref(),
            Some("basic_2:dd")
        );
        let all = call(
            &fx,
            &mut st,
            "Org1MSP",
            false,
            "QueryChaincodeDefinitions",
            Vec::new(),
        )
        .unwrap();
        let all = QueryChaincodeDefinitionsResult::decode(all.as_slice()).unwrap();
        assert_eq!(all.chaincode_definitions.len(), 1);
    }

    #[test]
    fn an_approval_of_another_definition_does_not_count() {
        let fx = fx();
        let mut st = Mem::default();
        call(
            &fx,
            &mut st,
            "Org1MSP",
            true,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(1, "1.0", "p:aa"),
        )
        .unwrap();
        call(
            &fx,
            &mut st,
            "Org2MSP",
            true,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(1, "1.1", "p:aa"),
        )
        .unwrap();
        assert_eq!(
            readiness(&fx, &mut st, 1, "1.0"),
            BTreeMap::from([("Org1MSP".into(), true), ("Org2MSP".into(), false)])
        );
        assert!(call(
            &fx,
            &mut st,
            "Org1MSP",
            false,
            "CommitChaincodeDefinition",
            commit_args(1, "1.0")
        )
        .is_err());
    }

    #[test]
    fn admin_functions_need_an_admin_and_bad_input_is_named() {
        let fx = fx();
        let mut st = Mem::default();
        let err = call(
            &fx,
            &mut st,
            "Org1MSP",
            false,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(1, "1.0", "p:aa"),
        )
        .unwrap_err();
        assert!(err.contains("needs an admin"), "{err}");
        let err = call(
            &fx,
            &mut st,
            "Org1MSP",
            true,
            "ApproveChaincodeDefinitionForMyOrg",
            b"\xff\xff".to_vec(),
        )
        .unwrap_err();
        assert!(
            err.contains("failed to decode the arguments of ApproveChaincodeDefinitionForMyOrg"),
            "{err}"
        );
        let err = call(&fx, &mut st, "Org1MSP", true, "Nope", Vec::new()).unwrap_err();
        assert_eq!(err, "unknown _lifecycle function: Nope");
        let err = call(
            &fx,
            &mut st,
            "Org3MSP",
            true,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(1, "1.0", "p:aa"),
        )
        .unwrap_err();
        assert!(err.contains("not an application organization"), "{err}");
        // Channel functions need a channel.
        let err = invoke(
            LifecycleContext {
                store: &fx.store,
                local_mspid: "Org1MSP",
                config: None,
                state: None,
                caller: Caller { local_admin: true },
            },
            &[b"CommitChaincodeDefinition".to_vec(), commit_args(1, "1.0")],
        )
        .unwrap_err();
        assert!(err.contains("must be called on a channel"), "{err}");
    }

    #[test]
    fn install_and_query_installed_packages() {
        let fx = fx();
        let pkg = twill_lifecycle::build_package(
            "basic_1.0",
            "ccaas",
            &[twill_lifecycle::CodeFile::new(
                "connection.json",
                br#"{"address":"127.0.0.1:9999","dial_timeout":"2s","tls_required":false}"#,
            )],
        )
        .unwrap();
        let ctx = |admin| LifecycleContext {
            store: &fx.store,
            local_mspid: "Org1MSP",
            config: None,
            state: None,
            caller: Caller { local_admin: admin },
        };
        let args = InstallChaincodeArgs {
            chaincode_install_package: pkg.clone(),
        }
        .encode_to_vec();
        let err = invoke(ctx(false), &[b"InstallChaincode".to_vec(), args.clone()]).unwrap_err();
        assert!(err.contains("needs an admin"), "{err}");
        let out = invoke(ctx(true), &[b"InstallChaincode".to_vec(), args.clone()]).unwrap();
        let installed = InstallChaincodeResult::decode(out.as_slice()).unwrap();
        assert_eq!(installed.label, "basic_1.0");
        assert_eq!(
            installed.package_id,
            twill_lifecycle::package_id("basic_1.0", &pkg)
        );
        let err = invoke(ctx(true), &[b"InstallChaincode".to_vec(), args]).unwrap_err();
        assert!(err.contains("failed to install chaincode"), "{err}");
        let out = invoke(ctx(true), &[b"QueryInstalledChaincodes".to_vec()]).unwrap();
        let list = QueryInstalledChaincodesResult::decode(out.as_slice()).unwrap();
        assert_eq!(list.installed_chaincodes.len(), 1);
        assert_eq!(
            list.installed_chaincodes[0].package_id,
            installed.package_id
        );
    }

    #[test]
    fn approval_keys_name_their_org() {
        assert_eq!(
            approval_org(&approval_key("Org1MSP", "basic")),
            Some("Org1MSP")
        );
        assert_eq!(approval_org("approvals/Org1MSP/"), None);
        assert_eq!(approval_org("namespaces/metadata/basic"), None);
    }
}
