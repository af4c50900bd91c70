//! Implicit-meta policies: ANY / ALL / MAJORITY of the child groups' policies.

use crate::error::{PolicyError, Result};
use crate::signed::{valid_identities, Policy, SignedData};
use std::sync::Arc;
use tracing::{debug, warn};
use twill_msp::{Identity, MspManager};
use twill_protos::common::implicit_meta_policy::Rule;
use twill_protos::common::ImplicitMetaPolicy;

/// An [`ImplicitMetaPolicy`] bound to the sub-policies it ranges over: the
/// policy named `sub_policy` in each child group of the group that holds it.
///
/// The threshold is computed as Fabric computes it, from the number `k` of
/// child groups (a child lacking the sub-policy still counts, and never
/// satisfies):
///
/// | rule | threshold |
/// | --- | --- |
/// | `ANY` | 1 |
/// | `ALL` | k |
/// | `MAJORITY` | k / 2 + 1 (strictly more than half) |
///
/// With no child groups at all the threshold is 0 and **every rule is
/// satisfied**, even by an empty signature set (Fabric: "consider 0 to be a
/// majority or any"). An unknown rule value also gets threshold 0; Fabric
/// then counts down past zero, so such a policy holds only when *no*
/// sub-policy is satisfied. That oddity is kept so that Twill and Fabric
/// nodes agree on every config.
#[derive(Clone)]
pub struct ImplicitMetaEvaluator {
    rule: i32,
    sub_policy: String,
    threshold: i64,
    subs: Vec<(String, Option<Arc<dyn Policy>>)>,
    msps: Arc<MspManager>,
}

impl std::fmt::Debug for ImplicitMetaEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImplicitMetaEvaluator")
            .field("rule", &self.rule_name())
            .field("sub_policy", &self.sub_policy)
            .field("threshold", &self.threshold)
            .field(
                "groups",
                &self
                    .subs
                    .iter()
                    .map(|(g, _)| g.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ImplicitMetaEvaluator {
    /// Binds `definition` to its sub-policies: one `(group name, policy)`
    /// pair per child group, `None` where the child has no such policy.
    pub fn new(
        definition: &ImplicitMetaPolicy,
        subs: Vec<(String, Option<Arc<dyn Policy>>)>,
        msps: Arc<MspManager>,
    ) -> Self {
        let k = i64::try_from(subs.len()).unwrap_or(i64::MAX);
        let threshold = if k == 0 {
            0
        } else {
            match Rule::try_from(definition.rule) {
                Ok(Rule::Any) => 1,
                Ok(Rule::All) => k,
                Ok(Rule::Majority) => k / 2 + 1,
                Err(_) => {
                    warn!(target: "policy", rule = definition.rule, sub_policy = %definition.sub_policy, "implicit-meta policy has an unknown rule; using threshold 0 as Fabric does");
                    0
                }
            }
        };
        ImplicitMetaEvaluator {
            rule: definition.rule,
            sub_policy: definition.sub_policy.clone(),
            threshold,
            subs,
            msps,
        }
    }

    /// How many sub-policies must be satisfied.
    pub fn threshold(&self) -> usize {
        usize::try_from(self.threshold).unwrap_or(usize::MAX)
    }

    /// The name of the sub-policy looked up in each child group.
    pub fn sub_policy(&self) -> &str {
        &self.sub_policy
    }

    fn rule_name(&self) -> String {
        Rule::try_from(self.rule)
            .map(|r| r.as_str_name().to_owned())
            .unwrap_or_else(|_| format!("rule {}", self.rule))
    }
}

impl Policy for ImplicitMetaEvaluator {
    fn evaluate(&self, signed: &[SignedData]) -> Result<()> {
        // Checking signatures once here gives every sub-policy the same
        // signers it would find by checking them itself.
        let ids = valid_identities(signed, &self.msps);
        self.evaluate_identities(&ids)
    }

    fn evaluate_identities(&self, identities: &[Identity]) -> Result<()> {
        let mut remaining = self.threshold;
        let mut failed = Vec::new();
        for (group, sub) in &self.subs {
            let ok = match sub {
                Some(p) => p.evaluate_identities(identities).is_ok(),
                None => false,
            };
            if ok {
                remaining -= 1;
                if remaining == 0 {
                    return Ok(());
                }
            } else {
                failed.push(format!("{group}/{}", self.sub_policy));
            }
        }
        if remaining == 0 {
            return Ok(());
        }
        let satisfied = self.threshold - remaining;
        let reason = format!(
            "{} {}: {satisfied} of the {} '{}' sub-policies satisfied, {} required; not satisfied: {}",
            self.rule_name(),
            self.sub_policy,
            self.subs.len(),
            self.sub_policy,
            self.threshold,
            if failed.is_empty() {
                "none".to_owned()
            } else {
                failed.join(", ")
            }
        );
        debug!(target: "policy", %reason, "implicit-meta policy evaluation failed");
        Err(PolicyError::NotSatisfied { reason })
    }
}
