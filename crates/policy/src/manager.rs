//! Policies of a channel config tree, looked up by path.

use crate::error::{PolicyError, Result};
use crate::implicit_meta::ImplicitMetaEvaluator;
use crate::signature::SignaturePolicyEvaluator;
use crate::signed::{Policy, SignedData};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::debug;
use twill_msp::{Identity, MspManager};
use twill_protos::common::policy::PolicyType;
use twill_protos::common::{ConfigGroup, ImplicitMetaPolicy, SignaturePolicyEnvelope};

/// Separates the parts of a policy path.
pub const PATH_SEPARATOR: char = '/';

/// Every policy of one config group and its descendants, compiled.
///
/// A manager exists for each group of the tree; the root's path is its name
/// (`Channel`), a child's is `Channel/Application`, and so on. A manager
/// answers for its own policies (`Writers`) and for every descendant's,
/// by relative path (`Org1MSP/Admins` from the `Application` manager).
///
/// Policy types `SIGNATURE` and `IMPLICIT_META` are supported. Implicit-meta
/// policies are bound to the child groups' policies when the tree is built,
/// children first, as in Fabric.
pub struct PolicyManager {
    path: String,
    policies: BTreeMap<String, Arc<dyn Policy>>,
    managers: BTreeMap<String, PolicyManager>,
}

impl std::fmt::Debug for PolicyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyManager")
            .field("path", &self.path)
            .field("policies", &self.policies.keys().collect::<Vec<_>>())
            .field("groups", &self.managers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PolicyManager {
    /// Compiles every policy in the tree under `root`, whose name is
    /// `root_name` (`"Channel"` for a channel config).
    ///
    /// # Errors
    ///
    /// [`PolicyError::MissingPolicy`] for a config policy with no value,
    /// [`PolicyError::UnsupportedPolicyType`] for types other than
    /// `SIGNATURE` and `IMPLICIT_META`, and [`PolicyError::BadConfigPolicy`]
    /// for a value that does not decode or compile; each names the policy's
    /// full path.
    pub fn from_config_group(
        root_name: &str,
        root: &ConfigGroup,
        msps: Arc<MspManager>,
    ) -> Result<Self> {
        Self::build(root_name.to_owned(), root, &msps)
    }

    fn build(path: String, group: &ConfigGroup, msps: &Arc<MspManager>) -> Result<Self> {
        let mut managers = BTreeMap::new();
        for (name, child) in &group.groups {
            let child_path = format!("{path}{PATH_SEPARATOR}{name}");
            managers.insert(name.clone(), Self::build(child_path, child, msps)?);
        }

        let mut policies: BTreeMap<String, Arc<dyn Policy>> = BTreeMap::new();
        for (name, config_policy) in &group.policies {
            let full = format!("{PATH_SEPARATOR}{path}{PATH_SEPARATOR}{name}");
            let policy = config_policy
                .policy
                .as_ref()
                .ok_or_else(|| PolicyError::MissingPolicy { path: full.clone() })?;
            let bad = |source: PolicyError| PolicyError::BadConfigPolicy {
                path: full.clone(),
                source: Box::new(source),
            };
            let compiled: Arc<dyn Policy> = match PolicyType::try_from(policy.r#type) {
                Ok(PolicyType::Signature) => Arc::new(
                    SignaturePolicyEvaluator::from_bytes(&policy.value, Arc::clone(msps))
                        .map_err(bad)?,
                ),
                Ok(PolicyType::ImplicitMeta) => {
                    let definition =
                        ImplicitMetaPolicy::decode(policy.value.as_slice()).map_err(|e| {
                            bad(PolicyError::Decode {
                                what: "common.ImplicitMetaPolicy",
                                reason: e.to_string(),
                            })
                        })?;
                    let subs = managers
                        .iter()
                        .map(|(g, m)| (g.clone(), m.get_policy(&definition.sub_policy)))
                        .collect();
                    Arc::new(ImplicitMetaEvaluator::new(
                        &definition,
                        subs,
                        Arc::clone(msps),
                    ))
                }
                _ => {
                    return Err(PolicyError::UnsupportedPolicyType {
                        path: full,
                        policy_type: policy.r#type,
                    })
                }
            };
            policies.insert(
                name.clone(),
                Arc::new(Named {
                    name: full,
                    inner: compiled,
                }),
            );
        }

        for (group_name, manager) in &managers {
            for (name, policy) in &manager.policies {
                policies.insert(
                    format!("{group_name}{PATH_SEPARATOR}{name}"),
                    Arc::clone(policy),
                );
            }
        }

        Ok(PolicyManager {
            path,
            policies,
            managers,
        })
    }

    /// This manager's group path without a leading `/`, e.g.
    /// `Channel/Application`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Looks a policy up by path.
    ///
    /// An absolute path starts with `/` and this manager's path, e.g.
    /// `/Channel/Application/Writers`; anything else is relative to this
    /// manager's group, e.g. `Writers` or `Org1MSP/Admins`. Returns `None`
    /// for an empty path, an absolute path outside this group, or a policy
    /// that does not exist (Fabric substitutes a policy that rejects
    /// everything; use [`RejectPolicy`](crate::RejectPolicy) for that).
    pub fn get_policy(&self, path: &str) -> Option<Arc<dyn Policy>> {
        if path.is_empty() {
            return None;
        }
        let relative = match path.strip_prefix(PATH_SEPARATOR) {
            Some(absolute) => absolute
                .strip_prefix(self.path.as_str())?
                .strip_prefix(PATH_SEPARATOR)?,
            None => path,
        };
        let found = self.policies.get(relative).cloned();
        if found.is_none() {
            debug!(target: "policy", manager = %self.path, path, "no such policy");
        }
        found
    }

    /// The manager of a descendant group, by the names of the groups below
    /// this one: `&["Application", "Org1MSP"]` from the `Channel` manager.
    /// An empty path gives this manager.
    pub fn manager_for(&self, group_path: &[&str]) -> Option<&PolicyManager> {
        let mut m = self;
        for name in group_path {
            m = m.managers.get(*name)?;
        }
        Some(m)
    }

    /// The policy a config element's `mod_policy` names, resolved as
    /// Fabric's config-update validator resolves it.
    ///
    /// `group_path` is the group the element belongs to, below this (root)
    /// manager: for a group element it is the group itself (e.g.
    /// `&["Application", "Org1MSP"]` for the `Org1MSP` group), for a value or
    /// policy the group holding it, and empty for the root group. A
    /// `mod_policy` starting with `/` is absolute and resolved from this
    /// manager; any other is relative to `group_path`'s manager. An empty
    /// `mod_policy` names no policy.
    pub fn mod_policy_for(&self, group_path: &[&str], mod_policy: &str) -> Option<Arc<dyn Policy>> {
        if mod_policy.starts_with(PATH_SEPARATOR) {
            return self.get_policy(mod_policy);
        }
        self.manager_for(group_path)?.get_policy(mod_policy)
    }

    /// Names of the policies this manager answers for by relative path,
    /// its own and its descendants', in sorted order.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// Names of the child groups, in sorted order.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.managers.keys().map(String::as_str)
    }
}

/// A config policy with its full path, for logs and error messages.
struct Named {
    name: String,
    inner: Arc<dyn Policy>,
}

impl Named {
    fn outcome(&self, result: Result<()>) -> Result<()> {
        match result {
            Ok(()) => {
                debug!(target: "policy", policy = %self.name, "signature set satisfies policy");
                Ok(())
            }
            Err(PolicyError::NotSatisfied { reason }) => {
                debug!(target: "policy", policy = %self.name, %reason, "signature set does not satisfy policy");
                Err(PolicyError::NotSatisfied {
                    reason: format!("{}: {reason}", self.name),
                })
            }
            Err(e) => Err(e),
        }
    }
}

impl Policy for Named {
    fn evaluate(&self, signed: &[SignedData]) -> Result<()> {
        self.outcome(self.inner.evaluate(signed))
    }

    fn evaluate_identities(&self, identities: &[Identity]) -> Result<()> {
        self.outcome(self.inner.evaluate_identities(identities))
    }

    fn signature_envelope(&self) -> Option<&SignaturePolicyEnvelope> {
        self.inner.signature_envelope()
    }
}
