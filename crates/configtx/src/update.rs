//! Config updates: compute the difference between two configs, collect
//! admin signatures over it, and validate it against the current config.
//!
//! An update carries a *read set* (elements it depends on, with the version
//! it saw) and a *write set* (elements it sets). Validation follows Fabric's
//! rules: every read-set version must still be current; each written element
//! is either unchanged (same version), changed (version + 1) or new
//! (version 0, inside a group whose version is bumped); and every changed
//! element's current `mod_policy` must be satisfied by the signatures. A
//! group's `mod_policy` is resolved relative to that group, a value's or
//! policy's relative to the group that holds it; a path starting with `/` is
//! absolute.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use twill_msp::SigningIdentity;
use twill_policy::SignedData;
use twill_protos::common::{
    Config, ConfigGroup, ConfigPolicy, ConfigSignature, ConfigUpdate, ConfigUpdateEnvelope,
    ConfigValue, Envelope, HeaderType, Payload, SignatureHeader,
};

use crate::block::{channel_header, compute_tx_id, envelope};
use crate::channel::ChannelConfig;
use crate::{decode, ConfigtxError, Result};

/// Name of the root group in config paths.
pub const ROOT_GROUP: &str = "Channel";

/// Computes the update that turns `original` into `updated`.
pub fn compute_update(
    channel_id: &str,
    original: &Config,
    updated: &Config,
) -> Result<ConfigUpdate> {
    let (Some(orig), Some(upd)) = (&original.channel_group, &updated.channel_group) else {
        return Err(ConfigtxError::NotConfig(
            "config has no channel group".into(),
        ));
    };
    let (read, write, changed) = compute_group(orig, upd);
    if !changed {
        return Err(ConfigtxError::EmptyUpdate);
    }
    Ok(ConfigUpdate {
        channel_id: channel_id.to_string(),
        read_set: Some(read),
        write_set: Some(write),
        isolated_data: BTreeMap::new(),
    })
}

fn compute_group(orig: &ConfigGroup, upd: &ConfigGroup) -> (ConfigGroup, ConfigGroup, bool) {
    let membership_changed = orig.mod_policy != upd.mod_policy
        || !same_keys(&orig.groups, &upd.groups)
        || !same_keys(&orig.values, &upd.values)
        || !same_keys(&orig.policies, &upd.policies);
    let mut read = ConfigGroup {
        version: orig.version,
        ..Default::default()
    };
    let mut write = ConfigGroup {
        version: orig.version,
        ..Default::default()
    };
    let mut changed = membership_changed;

    for (k, uv) in &upd.values {
        match orig.values.get(k) {
            Some(ov) if ov.value == uv.value && ov.mod_policy == uv.mod_policy => {
                if membership_changed {
                    read.values
                        .insert(k.clone(), version_only_value(ov.version));
                    write.values.insert(k.clone(), ov.clone());
                }
            }
            Some(ov) => {
                changed = true;
                write.values.insert(
                    k.clone(),
                    ConfigValue {
                        version: ov.version + 1,
                        value: uv.value.clone(),
                        mod_policy: uv.mod_policy.clone(),
                    },
                );
            }
            None => {
                write.values.insert(
                    k.clone(),
                    ConfigValue {
                        version: 0,
                        ..uv.clone()
                    },
                );
            }
        }
    }
    for (k, up) in &upd.policies {
        match orig.policies.get(k) {
            Some(op) if op.policy == up.policy && op.mod_policy == up.mod_policy => {
                if membership_changed {
                    read.policies
                        .insert(k.clone(), version_only_policy(op.version));
                    write.policies.insert(k.clone(), op.clone());
                }
            }
            Some(op) => {
                changed = true;
                write.policies.insert(
                    k.clone(),
                    ConfigPolicy {
                        version: op.version + 1,
                        policy: up.policy.clone(),
                        mod_policy: up.mod_policy.clone(),
                    },
                );
            }
            None => {
                write.policies.insert(
                    k.clone(),
                    ConfigPolicy {
                        version: 0,
                        ..up.clone()
                    },
                );
            }
        }
    }
    for (k, ug) in &upd.groups {
        match orig.groups.get(k) {
            Some(og) => {
                let (r, w, c) = compute_group(og, ug);
                if c || membership_changed {
                    read.groups.insert(k.clone(), r);
                    write.groups.insert(k.clone(), w);
                }
                changed |= c;
            }
            None => {
                write.groups.insert(k.clone(), zero_versions(ug));
            }
        }
    }
    if !changed {
        let v = ConfigGroup {
            version: orig.version,
            ..Default::default()
        };
        return (v.clone(), v, false);
    }
    if membership_changed {
        write.version = orig.version + 1;
    }
    write.mod_policy = upd.mod_policy.clone();
    (read, write, true)
}

fn same_keys<V>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> bool {
    a.len() == b.len() && a.keys().zip(b.keys()).all(|(x, y)| x == y)
}

fn version_only_value(version: u64) -> ConfigValue {
    ConfigValue {
        version,
        ..Default::default()
    }
}

fn version_only_policy(version: u64) -> ConfigPolicy {
    ConfigPolicy {
        version,
        ..Default::default()
    }
}

fn zero_versions(g: &ConfigGroup) -> ConfigGroup {
    ConfigGroup {
        version: 0,
        groups: g
            .groups
            .iter()
            .map(|(k, v)| (k.clone(), zero_versions(v)))
            .collect(),
        values: g
            .values
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ConfigValue {
                        version: 0,
                        ..v.clone()
                    },
                )
            })
            .collect(),
        policies: g
            .policies
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ConfigPolicy {
                        version: 0,
                        ..v.clone()
                    },
                )
            })
            .collect(),
        mod_policy: g.mod_policy.clone(),
    }
}

/// Signs a serialized `ConfigUpdate` as `signer` (an org admin, usually).
/// The signature covers `signature_header ‖ config_update`.
pub fn sign_config_update(
    config_update: &[u8],
    signer: &SigningIdentity,
) -> Result<ConfigSignature> {
    let header = SignatureHeader {
        creator: signer.serialize(),
        nonce: twill_crypto::random_bytes(24),
    }
    .encode_to_vec();
    let mut msg = Vec::with_capacity(header.len() + config_update.len());
    msg.extend_from_slice(&header);
    msg.extend_from_slice(config_update);
    let signature = signer.sign(&msg)?;
    Ok(ConfigSignature {
        signature_header: header,
        signature,
    })
}

/// The signed data a config update's signatures stand for.
pub fn signed_data(env: &ConfigUpdateEnvelope) -> Result<Vec<SignedData>> {
    env.signatures
        .iter()
        .map(|sig| {
            let header: SignatureHeader = decode("SignatureHeader", &sig.signature_header)?;
            let mut data = Vec::with_capacity(sig.signature_header.len() + env.config_update.len());
            data.extend_from_slice(&sig.signature_header);
            data.extend_from_slice(&env.config_update);
            Ok(SignedData {
                data,
                identity: header.creator,
                signature: sig.signature.clone(),
            })
        })
        .collect()
}

/// Wraps a signed config update into a CONFIG_UPDATE envelope signed by
/// `submitter`, ready for `Broadcast`.
pub fn config_update_tx(
    channel_id: &str,
    update_env: &ConfigUpdateEnvelope,
    submitter: &SigningIdentity,
) -> Result<Envelope> {
    let creator = submitter.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = compute_tx_id(&nonce, &creator);
    let ch = channel_header(HeaderType::ConfigUpdate, 0, channel_id, &tx_id);
    let sh = SignatureHeader { creator, nonce };
    let mut env = envelope(&ch, &sh, update_env.encode_to_vec());
    env.signature = submitter.sign(&env.payload)?;
    Ok(env)
}

/// Takes the `ConfigUpdateEnvelope` out of a CONFIG_UPDATE envelope.
pub fn config_update_from_envelope(env: &Envelope) -> Result<(String, ConfigUpdateEnvelope)> {
    let payload: Payload = decode("Payload", &env.payload)?;
    let header = payload
        .header
        .ok_or_else(|| ConfigtxError::NotConfig("payload has no header".into()))?;
    let ch: twill_protos::common::ChannelHeader = decode("ChannelHeader", &header.channel_header)?;
    if ch.r#type != HeaderType::ConfigUpdate as i32 {
        return Err(ConfigtxError::NotConfig(format!(
            "envelope type is {}, not CONFIG_UPDATE",
            ch.r#type
        )));
    }
    Ok((
        ch.channel_id,
        decode("ConfigUpdateEnvelope", &payload.data)?,
    ))
}

#[derive(Clone, Debug, PartialEq)]
enum Item {
    Group {
        version: u64,
        mod_policy: String,
        groups: Vec<String>,
        values: Vec<String>,
        policies: Vec<String>,
    },
    Value(ConfigValue),
    Policy(ConfigPolicy),
}

impl Item {
    fn version(&self) -> u64 {
        match self {
            Item::Group { version, .. } => *version,
            Item::Value(v) => v.version,
            Item::Policy(p) => p.version,
        }
    }

    fn mod_policy(&self) -> &str {
        match self {
            Item::Group { mod_policy, .. } => mod_policy,
            Item::Value(v) => &v.mod_policy,
            Item::Policy(p) => &p.mod_policy,
        }
    }
}

#[derive(Clone, Debug)]
struct Flat {
    /// Path of the element, root first, ending in its own name.
    path: Vec<String>,
    item: Item,
}

type FlatMap = BTreeMap<String, Flat>;

fn key(kind: &str, path: &[String]) -> String {
    format!("[{kind}] /{}", path.join("/"))
}

fn flatten(group: &ConfigGroup, path: Vec<String>, out: &mut FlatMap) {
    out.insert(
        key("Group", &path),
        Flat {
            path: path.clone(),
            item: Item::Group {
                version: group.version,
                mod_policy: group.mod_policy.clone(),
                groups: group.groups.keys().cloned().collect(),
                values: group.values.keys().cloned().collect(),
                policies: group.policies.keys().cloned().collect(),
            },
        },
    );
    for (name, v) in &group.values {
        let mut p = path.clone();
        p.push(name.clone());
        out.insert(
            key("Value", &p),
            Flat {
                path: p,
                item: Item::Value(v.clone()),
            },
        );
    }
    for (name, pol) in &group.policies {
        let mut p = path.clone();
        p.push(name.clone());
        out.insert(
            key("Policy", &p),
            Flat {
                path: p,
                item: Item::Policy(pol.clone()),
            },
        );
    }
    for (name, g) in &group.groups {
        let mut p = path.clone();
        p.push(name.clone());
        flatten(g, p, out);
    }
}

fn rebuild(map: &FlatMap, path: &[String]) -> Result<ConfigGroup> {
    let missing =
        |k: &str| ConfigtxError::NotConfig(format!("config update leaves {k} without content"));
    let gk = key("Group", path);
    let Some(Flat {
        item:
            Item::Group {
                version,
                mod_policy,
                groups,
                values,
                policies,
            },
        ..
    }) = map.get(&gk)
    else {
        return Err(missing(&gk));
    };
    let mut out = ConfigGroup {
        version: *version,
        mod_policy: mod_policy.clone(),
        ..Default::default()
    };
    for name in values {
        let mut p = path.to_vec();
        p.push(name.clone());
        let k = key("Value", &p);
        match map.get(&k).map(|f| &f.item) {
            Some(Item::Value(v)) => {
                out.values.insert(name.clone(), v.clone());
            }
            _ => return Err(missing(&k)),
        }
    }
    for name in policies {
        let mut p = path.to_vec();
        p.push(name.clone());
        let k = key("Policy", &p);
        match map.get(&k).map(|f| &f.item) {
            Some(Item::Policy(v)) => {
                out.policies.insert(name.clone(), v.clone());
            }
            _ => return Err(missing(&k)),
        }
    }
    for name in groups {
        let mut p = path.to_vec();
        p.push(name.clone());
        out.groups.insert(name.clone(), rebuild(map, &p)?);
    }
    Ok(out)
}

/// Validates a config update against the current channel config and, if it
/// is authorised, returns the next config (sequence + 1).
pub fn validate_update(
    current: &ChannelConfig,
    channel_id: &str,
    update_env: &ConfigUpdateEnvelope,
) -> Result<Config> {
    let update: ConfigUpdate = decode("ConfigUpdate", &update_env.config_update)?;
    if update.channel_id != channel_id {
        return Err(ConfigtxError::WrongChannel {
            expected: channel_id.to_string(),
            got: update.channel_id,
        });
    }
    let root = current
        .config
        .channel_group
        .as_ref()
        .ok_or_else(|| ConfigtxError::NotConfig("config has no channel group".into()))?;
    let mut existing = FlatMap::new();
    flatten(root, vec![ROOT_GROUP.to_string()], &mut existing);

    // 1. Everything read must still be at the version read.
    let mut read = FlatMap::new();
    if let Some(read_set) = &update.read_set {
        flatten(read_set, vec![ROOT_GROUP.to_string()], &mut read);
        for (k, r) in &read {
            let cur = existing
                .get(k)
                .ok_or_else(|| ConfigtxError::ReadSetMissing { path: k.clone() })?;
            if cur.item.version() != r.item.version() {
                return Err(ConfigtxError::StaleReadSet {
                    path: k.clone(),
                    current: cur.item.version(),
                    read: r.item.version(),
                });
            }
        }
    }

    // 2. What changes: written elements not read at the same version. Each
    //    must carry a valid name and mod_policy, and advance its version by
    //    exactly one (or start at 0 when new).
    let write_set = update
        .write_set
        .as_ref()
        .ok_or(ConfigtxError::EmptyUpdate)?;
    let mut written = FlatMap::new();
    flatten(write_set, vec![ROOT_GROUP.to_string()], &mut written);
    let mut delta: Vec<(&String, &Flat)> = Vec::new();
    for (k, w) in &written {
        if read
            .get(k)
            .is_some_and(|r| r.item.version() == w.item.version())
        {
            continue;
        }
        for name in &w.path {
            validate_config_id(name).map_err(|reason| ConfigtxError::InvalidElement {
                path: k.clone(),
                reason,
            })?;
        }
        validate_mod_policy(w.item.mod_policy()).map_err(|reason| {
            ConfigtxError::InvalidElement {
                path: k.clone(),
                reason,
            }
        })?;
        match existing.get(k) {
            None if w.item.version() == 0 => delta.push((k, w)),
            None => {
                return Err(ConfigtxError::BadVersion {
                    path: k.clone(),
                    attempted: w.item.version(),
                    current: "none (new elements start at 0)".into(),
                })
            }
            Some(cur) if w.item.version() == cur.item.version() + 1 => delta.push((k, w)),
            Some(cur) => {
                return Err(ConfigtxError::BadVersion {
                    path: k.clone(),
                    attempted: w.item.version(),
                    current: cur.item.version().to_string(),
                })
            }
        }
    }
    if delta.is_empty() {
        return Err(ConfigtxError::EmptyUpdate);
    }
    let bumped: BTreeSet<String> = delta
        .iter()
        .filter(|(k, _)| existing.contains_key(*k) && k.starts_with("[Group]"))
        .map(|(_, f)| f.path.join("/"))
        .collect();

    // 3. Every change must satisfy the current element's mod_policy.
    let signed = signed_data(update_env)?;
    for (k, w) in &delta {
        match existing.get(*k) {
            None => {
                // A new element is authorised through its parent group, whose
                // membership change bumps its version.
                let parent = w.path[..w.path.len() - 1].join("/");
                let parent_is_new =
                    !existing.contains_key(&key("Group", &w.path[..w.path.len() - 1]));
                if !parent_is_new && !bumped.contains(&parent) {
                    return Err(ConfigtxError::BadVersion {
                        path: k.to_string(),
                        attempted: 0,
                        current: format!(
                            "none, and its group /{parent} is not version-bumped to admit it"
                        ),
                    });
                }
            }
            Some(cur) => {
                let is_group = matches!(cur.item, Item::Group { .. });
                let policy_path = resolve_mod_policy(&cur.path, is_group, cur.item.mod_policy());
                authorize(current, k, &policy_path, &signed)?;
            }
        }
    }

    // 4. The next config: current elements overlaid by the changed ones.
    let mut next = existing;
    for (k, w) in delta {
        next.insert(k.clone(), w.clone());
    }
    let group = rebuild(&next, &[ROOT_GROUP.to_string()])?;
    let config = Config {
        sequence: current.config.sequence + 1,
        channel_group: Some(group),
    };
    // The result must itself be a usable channel config (MSPs, policies,
    // orderer values), or no node could act on it.
    ChannelConfig::from_config(&config).map_err(|e| ConfigtxError::InvalidElement {
        path: "/Channel".into(),
        reason: format!("the updated config is not usable: {e}"),
    })?;
    Ok(config)
}

/// Fabric's rule for config element names: 1–249 characters of
/// `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn validate_config_id(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("name '{name}' must be 1 to 249 characters long"));
    }
    if name == "." || name == ".." {
        return Err(format!("name '{name}' is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "name '{name}' contains '{c}' (allowed: letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// A `mod_policy` must be non-empty and name a policy path whose parts are
/// valid element names (a leading `/` makes it absolute).
pub fn validate_mod_policy(mod_policy: &str) -> std::result::Result<(), String> {
    if mod_policy.is_empty() {
        return Err("mod_policy is empty".into());
    }
    let rel = mod_policy.strip_prefix('/').unwrap_or(mod_policy);
    for part in rel.split('/') {
        validate_config_id(part).map_err(|e| format!("mod_policy '{mod_policy}': {e}"))?;
    }
    Ok(())
}

fn authorize(
    current: &ChannelConfig,
    path: &str,
    policy_path: &str,
    signed: &[SignedData],
) -> Result<()> {
    let policy =
        current
            .policies
            .get_policy(policy_path)
            .ok_or_else(|| ConfigtxError::UnknownPolicy {
                path: path.to_string(),
                policy: policy_path.to_string(),
            })?;
    policy
        .evaluate(signed)
        .map_err(|e| ConfigtxError::ModPolicyNotSatisfied {
            path: path.to_string(),
            policy: policy_path.to_string(),
            reason: e.to_string(),
        })
}

/// Turns an element's `mod_policy` into an absolute policy path.
fn resolve_mod_policy(elem_path: &[String], is_group: bool, mod_policy: &str) -> String {
    if mod_policy.starts_with('/') {
        return mod_policy.to_string();
    }
    let context = if is_group {
        elem_path
    } else {
        &elem_path[..elem_path.len().saturating_sub(1)]
    };
    format!("/{}/{}", context.join("/"), mod_policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mod_policy_paths() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolve_mod_policy(&p(&["Channel", "Application"]), true, "Admins"),
            "/Channel/Application/Admins"
        );
        assert_eq!(
            resolve_mod_policy(&p(&["Channel", "Application", "ACLs"]), false, "Admins"),
            "/Channel/Application/Admins"
        );
        assert_eq!(
            resolve_mod_policy(
                &p(&["Channel", "OrdererAddresses"]),
                false,
                "/Channel/Orderer/Admins"
            ),
            "/Channel/Orderer/Admins"
        );
    }

    fn value(v: u64, bytes: &[u8]) -> ConfigValue {
        ConfigValue {
            version: v,
            value: bytes.to_vec(),
            mod_policy: "Admins".into(),
        }
    }

    #[test]
    fn compute_marks_versions() {
        let mut orig = ConfigGroup {
            mod_policy: "Admins".into(),
            ..Default::default()
        };
        orig.values.insert("A".into(), value(3, b"a"));
        orig.values.insert("B".into(), value(1, b"b"));
        let mut upd = orig.clone();
        upd.values.insert("A".into(), value(3, b"a2"));
        let (_, w, changed) = compute_group(&orig, &upd);
        assert!(changed);
        assert_eq!(w.version, 0, "no membership change: group version kept");
        assert_eq!(w.values["A"].version, 4);
        assert!(!w.values.contains_key("B"));

        let mut upd2 = orig.clone();
        upd2.values.insert("C".into(), value(7, b"c"));
        let (r, w, _) = compute_group(&orig, &upd2);
        assert_eq!(w.version, 1, "membership change bumps the group");
        assert_eq!(w.values["C"].version, 0);
        assert_eq!(w.values["B"].version, 1);
        assert_eq!(r.values["B"].version, 1);

        let (_, _, changed) = compute_group(&orig, &orig.clone());
        assert!(!changed);
    }

    #[test]
    fn flatten_rebuild_roundtrip() {
        let mut inner = ConfigGroup::default();
        inner.values.insert("X".into(), value(2, b"x"));
        let mut root = ConfigGroup {
            version: 5,
            mod_policy: "Admins".into(),
            ..Default::default()
        };
        root.groups.insert("G".into(), inner);
        root.policies
            .insert("Admins".into(), ConfigPolicy::default());
        let mut map = FlatMap::new();
        flatten(&root, vec![ROOT_GROUP.into()], &mut map);
        assert_eq!(rebuild(&map, &[ROOT_GROUP.into()]).unwrap(), root);
    }
}
