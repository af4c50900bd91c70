//! Building policies in code, with the same encodings Fabric's helpers use.

use crate::error::{PolicyError, Result};
use crate::principal::msp_role_principal;
use prost::Message;
use twill_protos::common::implicit_meta_policy::Rule;
use twill_protos::common::msp_role::MspRoleType;
use twill_protos::common::policy::PolicyType;
use twill_protos::common::signature_policy::{NOutOf, Type};
use twill_protos::common::{ImplicitMetaPolicy, SignaturePolicy, SignaturePolicyEnvelope};

/// A rule satisfied by a signature from `identities[index]`.
pub fn signed_by(index: i32) -> SignaturePolicy {
    SignaturePolicy {
        r#type: Some(Type::SignedBy(index)),
    }
}

/// A rule satisfied when at least `n` of `rules` are.
pub fn n_out_of(n: i32, rules: Vec<SignaturePolicy>) -> SignaturePolicy {
    SignaturePolicy {
        r#type: Some(Type::NOutOf(NOutOf { n, rules })),
    }
}

/// A rule satisfied when both `a` and `b` are (`NOutOf(2, [a, b])`).
pub fn and(a: SignaturePolicy, b: SignaturePolicy) -> SignaturePolicy {
    n_out_of(2, vec![a, b])
}

/// A rule satisfied when `a` or `b` is (`NOutOf(1, [a, b])`).
pub fn or(a: SignaturePolicy, b: SignaturePolicy) -> SignaturePolicy {
    n_out_of(1, vec![a, b])
}

/// A policy satisfied by any signature set, even an empty one
/// (`NOutOf(0, [])`, Fabric's "accept all").
pub fn accept_all_policy() -> SignaturePolicyEnvelope {
    SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(0, Vec::new())),
        identities: Vec::new(),
    }
}

/// A policy no signature set satisfies (`NOutOf(1, [])`, Fabric's
/// "reject all").
pub fn reject_all_policy() -> SignaturePolicyEnvelope {
    SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(1, Vec::new())),
        identities: Vec::new(),
    }
}

/// A policy requiring one signature from an identity with `role` in MSP
/// `msp_id`.
pub fn signed_by_msp_role(msp_id: &str, role: MspRoleType) -> SignaturePolicyEnvelope {
    SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(1, vec![signed_by(0)])),
        identities: vec![msp_role_principal(msp_id, role)],
    }
}

/// One signature from a member of `msp_id`.
pub fn signed_by_msp_member(msp_id: &str) -> SignaturePolicyEnvelope {
    signed_by_msp_role(msp_id, MspRoleType::Member)
}

/// One signature from an admin of `msp_id`.
pub fn signed_by_msp_admin(msp_id: &str) -> SignaturePolicyEnvelope {
    signed_by_msp_role(msp_id, MspRoleType::Admin)
}

/// One signature from a peer of `msp_id`.
pub fn signed_by_msp_peer(msp_id: &str) -> SignaturePolicyEnvelope {
    signed_by_msp_role(msp_id, MspRoleType::Peer)
}

/// One signature from a client of `msp_id`.
pub fn signed_by_msp_client(msp_id: &str) -> SignaturePolicyEnvelope {
    signed_by_msp_role(msp_id, MspRoleType::Client)
}

/// Signatures from `role` identities of at least `n` of the MSPs in
/// `msp_ids`. As in Fabric, the MSP IDs are sorted first, so the encoding
/// does not depend on the order they are given in.
pub fn signed_by_n_out_of_role(
    n: i32,
    role: MspRoleType,
    msp_ids: &[&str],
) -> SignaturePolicyEnvelope {
    let mut ids: Vec<&str> = msp_ids.to_vec();
    ids.sort_unstable();
    let identities = ids.iter().map(|id| msp_role_principal(id, role)).collect();
    let rules = (0..ids.len())
        .map(|i| signed_by(i32::try_from(i).unwrap_or(i32::MAX)))
        .collect();
    SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(n, rules)),
        identities,
    }
}

/// One signature from a member of any of `msp_ids`.
pub fn signed_by_any_member(msp_ids: &[&str]) -> SignaturePolicyEnvelope {
    signed_by_n_out_of_role(1, MspRoleType::Member, msp_ids)
}

/// One signature from an admin of any of `msp_ids`.
pub fn signed_by_any_admin(msp_ids: &[&str]) -> SignaturePolicyEnvelope {
    signed_by_n_out_of_role(1, MspRoleType::Admin, msp_ids)
}

/// One signature from a peer of any of `msp_ids`.
pub fn signed_by_any_peer(msp_ids: &[&str]) -> SignaturePolicyEnvelope {
    signed_by_n_out_of_role(1, MspRoleType::Peer, msp_ids)
}

/// One signature from a client of any of `msp_ids`.
pub fn signed_by_any_client(msp_ids: &[&str]) -> SignaturePolicyEnvelope {
    signed_by_n_out_of_role(1, MspRoleType::Client, msp_ids)
}

/// Wraps a signature policy as a config-tree `Policy` of type `SIGNATURE`.
pub fn signature_config_policy(env: &SignaturePolicyEnvelope) -> twill_protos::common::Policy {
    twill_protos::common::Policy {
        r#type: PolicyType::Signature as i32,
        value: env.encode_to_vec(),
    }
}

/// A config-tree `Policy` of type `IMPLICIT_META` applying `rule` to the
/// sub-policies named `sub_policy` of the child groups.
pub fn implicit_meta_config_policy(rule: Rule, sub_policy: &str) -> twill_protos::common::Policy {
    twill_protos::common::Policy {
        r#type: PolicyType::ImplicitMeta as i32,
        value: ImplicitMetaPolicy {
            sub_policy: sub_policy.to_owned(),
            rule: rule as i32,
        }
        .encode_to_vec(),
    }
}

/// Parses an implicit-meta rule as `configtx.yaml` writes it, e.g.
/// `"MAJORITY Admins"`: a rule (`ANY`, `ALL` or `MAJORITY`, uppercase), one
/// space, and the sub-policy name — the same format Fabric accepts.
///
/// # Errors
///
/// [`PolicyError::BadImplicitMeta`] unless the input is exactly two
/// space-separated words with a known rule.
pub fn parse_implicit_meta(input: &str) -> Result<ImplicitMetaPolicy> {
    let bad = |reason| PolicyError::BadImplicitMeta {
        input: input.to_owned(),
        reason,
    };
    let parts: Vec<&str> = input.split(' ').collect();
    let [rule, sub_policy] = parts.as_slice() else {
        return Err(bad(
            "expected two space-separated words, like 'MAJORITY Admins'",
        ));
    };
    let rule =
        Rule::from_str_name(rule).ok_or_else(|| bad("the rule must be ANY, ALL or MAJORITY"))?;
    Ok(ImplicitMetaPolicy {
        sub_policy: (*sub_policy).to_owned(),
        rule: rule as i32,
    })
}
