//! Evaluating `SignaturePolicyEnvelope`s (Fabric's "cauthdsl" semantics).

use crate::dsl::policy_to_string;
use crate::error::{PolicyError, Result};
use crate::principal::describe_principal;
use crate::signed::{describe_signers, valid_identities, Policy, SignedData};
use prost::Message;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tracing::debug;
use twill_msp::{Identity, MspManager};
use twill_protos::common::signature_policy::Type;
use twill_protos::common::{MspPrincipal, SignaturePolicy, SignaturePolicyEnvelope};

/// How deeply an envelope's gates may nest. Anything a protobuf decoder
/// with the usual recursion limit accepts is well within it.
const MAX_COMPILE_DEPTH: usize = 100;

/// A compiled rule: indexes are checked once, at compile time.
#[derive(Debug, Clone)]
enum Rule {
    /// Index into the envelope's identities.
    SignedBy(usize),
    NOutOf {
        n: i32,
        rules: Vec<Rule>,
    },
}

/// A [`SignaturePolicyEnvelope`] compiled for evaluation against the MSPs
/// of a channel.
///
/// Evaluation follows Fabric exactly, so that Twill and Fabric nodes agree
/// on every outcome:
///
/// 1. the signature set is reduced to valid, distinct signers
///    ([`valid_identities`]);
/// 2. each `signed_by` rule takes the first signer, in signature order, that
///    is not yet used and satisfies its principal, and marks it used;
/// 3. an `NOutOf` gate tries every sub-rule in order; a sub-rule that
///    succeeds keeps the signers it used, one that fails gives them back;
///    the gate holds when at least `n` sub-rules succeeded.
///
/// So one signer never satisfies two principals of the same gate:
/// `AND('A.member', 'A.member')` needs two distinct `A` signers. The
/// matching is greedy, as Fabric's is, and so can miss an assignment a
/// cleverer search would find; matching Fabric matters more here.
#[derive(Clone)]
pub struct SignaturePolicyEvaluator {
    envelope: SignaturePolicyEnvelope,
    rule: Rule,
    /// For each identity index, the first index with an equal principal,
    /// so that repeated principals share cached principal checks.
    canonical: Vec<usize>,
    msps: Arc<MspManager>,
}

impl std::fmt::Debug for SignaturePolicyEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignaturePolicyEvaluator")
            .field("policy", &self.describe())
            .finish_non_exhaustive()
    }
}

impl SignaturePolicyEvaluator {
    /// Compiles `envelope`.
    ///
    /// Like Fabric's envelope-based provider (used for chaincode endorsement
    /// policies), the envelope's version is not checked here; use
    /// [`SignaturePolicyEvaluator::from_bytes`] for config policies.
    ///
    /// # Errors
    ///
    /// [`PolicyError::InvalidEnvelope`] when the rule is missing, a rule has
    /// no type, a `signed_by` index is outside `identities`, or gates nest
    /// more than 100 deep.
    pub fn new(envelope: SignaturePolicyEnvelope, msps: Arc<MspManager>) -> Result<Self> {
        let rule = envelope
            .rule
            .as_ref()
            .ok_or_else(|| PolicyError::InvalidEnvelope {
                reason: "the envelope has no rule".to_owned(),
            })?;
        let rule = compile(rule, envelope.identities.len(), 0)?;
        let mut first_index: HashMap<&MspPrincipal, usize> = HashMap::new();
        let canonical = envelope
            .identities
            .iter()
            .enumerate()
            .map(|(i, p)| *first_index.entry(p).or_insert(i))
            .collect();
        Ok(SignaturePolicyEvaluator {
            envelope,
            rule,
            canonical,
            msps,
        })
    }

    /// Decodes and compiles an encoded envelope, as the value of a config
    /// policy of type `SIGNATURE`. Only version 0 is accepted, as in Fabric.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Decode`] for bytes that are not an envelope,
    /// [`PolicyError::InvalidEnvelope`] for another version or for the
    /// reasons [`SignaturePolicyEvaluator::new`] gives.
    pub fn from_bytes(bytes: &[u8], msps: Arc<MspManager>) -> Result<Self> {
        let envelope = SignaturePolicyEnvelope::decode(bytes).map_err(|e| PolicyError::Decode {
            what: "common.SignaturePolicyEnvelope",
            reason: e.to_string(),
        })?;
        if envelope.version != 0 {
            return Err(PolicyError::InvalidEnvelope {
                reason: format!(
                    "only version 0 is understood, but version is {}",
                    envelope.version
                ),
            });
        }
        Self::new(envelope, msps)
    }

    /// The envelope this evaluator was compiled from.
    pub fn envelope(&self) -> &SignaturePolicyEnvelope {
        &self.envelope
    }

    /// The policy in the policy language, or a placeholder if it has no
    /// form there.
    fn describe(&self) -> String {
        policy_to_string(&self.envelope).unwrap_or_else(|_| {
            let mut out = String::new();
            describe_rule(&self.rule, &self.envelope.identities, &mut out);
            out
        })
    }
}

/// Writes `rule` like the policy language would, for any envelope: every
/// gate as `OutOf(n, ...)` and every principal as [`describe_principal`] does.
fn describe_rule(rule: &Rule, principals: &[MspPrincipal], out: &mut String) {
    match rule {
        Rule::SignedBy(p) => match principals.get(*p) {
            Some(pr) => out.push_str(&describe_principal(pr)),
            None => out.push_str(&format!("signed_by({p})")),
        },
        Rule::NOutOf { n, rules } => {
            out.push_str(&format!("OutOf({n}"));
            for r in rules {
                out.push_str(", ");
                describe_rule(r, principals, out);
            }
            out.push(')');
        }
    }
}

fn compile(rule: &SignaturePolicy, identities: usize, depth: usize) -> Result<Rule> {
    let invalid = |reason: String| PolicyError::InvalidEnvelope { reason };
    if depth > MAX_COMPILE_DEPTH {
        return Err(invalid(format!(
            "gates nest deeper than {MAX_COMPILE_DEPTH}"
        )));
    }
    match &rule.r#type {
        None => Err(invalid("a rule has no type".to_owned())),
        Some(Type::SignedBy(i)) => usize::try_from(*i)
            .ok()
            .filter(|&i| i < identities)
            .map(Rule::SignedBy)
            .ok_or_else(|| {
                invalid(format!(
                    "signed_by index {i} is outside the {identities} identities"
                ))
            }),
        Some(Type::NOutOf(g)) => Ok(Rule::NOutOf {
            n: g.n,
            rules: g
                .rules
                .iter()
                .map(|r| compile(r, identities, depth + 1))
                .collect::<Result<_>>()?,
        }),
    }
}

/// State of one evaluation.
struct Eval<'a> {
    principals: &'a [MspPrincipal],
    canonical: &'a [usize],
    ids: &'a [Identity],
    msps: &'a MspManager,
    /// Whether `(canonical principal, identity)` match, filled on first use.
    satisfies: HashMap<(usize, usize), bool>,
    /// Principals for which some `signed_by` found no unused signer.
    unmatched: BTreeSet<usize>,
}

impl Eval<'_> {
    fn satisfies(&mut self, principal: usize, id: usize) -> bool {
        let p = self.canonical.get(principal).copied().unwrap_or(principal);
        if let Some(known) = self.satisfies.get(&(p, id)) {
            return *known;
        }
        let (Some(identity), Some(pr)) = (self.ids.get(id), self.principals.get(p)) else {
            return false;
        };
        let ok = match self.msps.satisfies_principal(identity, pr) {
            Ok(()) => true,
            Err(e) => {
                debug!(target: "policy", principal = %describe_principal(pr), mspid = identity.mspid(), error = %e, "identity does not satisfy principal");
                false
            }
        };
        self.satisfies.insert((p, id), ok);
        ok
    }

    fn eval(&mut self, rule: &Rule, used: &mut [bool]) -> bool {
        match rule {
            Rule::SignedBy(p) => {
                for i in 0..self.ids.len() {
                    if used.get(i).copied().unwrap_or(true) {
                        continue;
                    }
                    if self.satisfies(*p, i) {
                        if let Some(u) = used.get_mut(i) {
                            *u = true;
                        }
                        return true;
                    }
                }
                let canonical = self.canonical.get(*p).copied().unwrap_or(*p);
                self.unmatched.insert(canonical);
                false
            }
            Rule::NOutOf { n, rules } => {
                let mut met: i64 = 0;
                let mut trial = used.to_vec();
                for r in rules {
                    trial.copy_from_slice(used);
                    if self.eval(r, &mut trial) {
                        met += 1;
                        used.copy_from_slice(&trial);
                    }
                }
                met >= i64::from(*n)
            }
        }
    }
}

impl Policy for SignaturePolicyEvaluator {
    fn evaluate(&self, signed: &[SignedData]) -> Result<()> {
        let ids = valid_identities(signed, &self.msps);
        self.evaluate_identities(&ids)
    }

    fn evaluate_identities(&self, identities: &[Identity]) -> Result<()> {
        let mut ev = Eval {
            principals: &self.envelope.identities,
            canonical: &self.canonical,
            ids: identities,
            msps: &self.msps,
            satisfies: HashMap::new(),
            unmatched: BTreeSet::new(),
        };
        let mut used = vec![false; identities.len()];
        if ev.eval(&self.rule, &mut used) {
            return Ok(());
        }
        let unmatched: Vec<String> = ev
            .unmatched
            .iter()
            .filter_map(|&p| self.envelope.identities.get(p))
            .map(describe_principal)
            .collect();
        let mut reason = format!(
            "{} is not satisfied by {}",
            self.describe(),
            describe_signers(identities)
        );
        if !unmatched.is_empty() {
            reason.push_str("; no unused signer satisfies ");
            reason.push_str(&unmatched.join(", "));
        }
        debug!(target: "policy", %reason, "signature policy evaluation failed");
        Err(PolicyError::NotSatisfied { reason })
    }

    fn signature_envelope(&self) -> Option<&SignaturePolicyEnvelope> {
        Some(&self.envelope)
    }
}
