//! Printing an envelope back in the policy language.

use crate::error::{PolicyError, Result};
use crate::principal::{as_role, describe_principal, is_writable_msp_id, role_name};
use twill_protos::common::signature_policy::Type;
use twill_protos::common::{SignaturePolicy, SignaturePolicyEnvelope};

/// Prints `env` in the policy language, e.g.
/// `AND('Org1MSP.peer', OR('Org2MSP.member', 'Org3MSP.admin'))`.
///
/// A gate with threshold 1 prints as `OR`, a gate needing all its rules as
/// `AND`, anything else as `OutOf(n, …)`. Parsing the output gives an
/// envelope with the same meaning; it is byte-identical to `env` whenever
/// `env` is numbered the way [`parse_policy`](crate::parse_policy) numbers
/// principals (true of everything the parser and this crate's builders make).
///
/// # Errors
///
/// [`PolicyError::NotExpressible`] when the envelope uses something the
/// language cannot say: a principal that is not an MSP role, an MSP ID the
/// language cannot spell, a gate with no rules, a threshold outside
/// `0..=rules + 1`, a missing rule, or an index outside `identities`.
pub fn policy_to_string(env: &SignaturePolicyEnvelope) -> Result<String> {
    let rule = env
        .rule
        .as_ref()
        .ok_or_else(|| not_expressible("the envelope has no rule"))?;
    let mut out = String::new();
    match &rule.r#type {
        Some(Type::NOutOf(_)) => write_rule(env, rule, &mut out, 0)?,
        // The language has no bare principal at top level; OR of one rule
        // means the same and encodes differently, so refuse rather than
        // print something that parses to another envelope.
        Some(Type::SignedBy(_)) => {
            return Err(not_expressible(
                "the top-level rule is a bare principal, not a gate",
            ))
        }
        None => return Err(not_expressible("a rule has no type")),
    }
    Ok(out)
}

fn not_expressible(reason: impl Into<String>) -> PolicyError {
    PolicyError::NotExpressible {
        reason: reason.into(),
    }
}

fn write_rule(
    env: &SignaturePolicyEnvelope,
    rule: &SignaturePolicy,
    out: &mut String,
    depth: usize,
) -> Result<()> {
    if depth > super::parser::MAX_NESTING {
        return Err(not_expressible("the rule nests too deeply"));
    }
    match &rule.r#type {
        None => Err(not_expressible("a rule has no type")),
        Some(Type::SignedBy(i)) => {
            let p = usize::try_from(*i)
                .ok()
                .and_then(|i| env.identities.get(i))
                .ok_or_else(|| {
                    not_expressible(format!(
                        "signed_by index {i} is outside the {} identities",
                        env.identities.len()
                    ))
                })?;
            let (msp, role) = as_role(p).ok_or_else(|| {
                not_expressible(format!(
                    "identity {i} is a {}, not an MSP role",
                    describe_principal(p)
                ))
            })?;
            if !is_writable_msp_id(&msp) {
                return Err(not_expressible(format!(
                    "MSP ID {msp:?} cannot be written in the policy language"
                )));
            }
            out.push('\'');
            out.push_str(&msp);
            out.push('.');
            out.push_str(role_name(role));
            out.push('\'');
            Ok(())
        }
        Some(Type::NOutOf(g)) => {
            let count = g.rules.len();
            if count == 0 {
                return Err(not_expressible("a gate has no rules"));
            }
            let n_fits = usize::try_from(g.n).is_ok_and(|n| n <= count + 1);
            if !n_fits {
                return Err(not_expressible(format!(
                    "threshold {} is outside 0 to {} for {count} rule(s)",
                    g.n,
                    count + 1
                )));
            }
            if g.n == 1 {
                out.push_str("OR(");
            } else if usize::try_from(g.n).is_ok_and(|n| n == count) {
                out.push_str("AND(");
            } else {
                out.push_str(&format!("OutOf({}, ", g.n));
            }
            for (k, r) in g.rules.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                write_rule(env, r, out, depth + 1)?;
            }
            out.push(')');
            Ok(())
        }
    }
}
