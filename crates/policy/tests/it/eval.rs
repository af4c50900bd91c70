//! Signature-policy evaluation with real certificates and signatures.

use crate::fixture::{msps, sign_all, Org};
use prost::Message;
use twill_policy::builder::{accept_all_policy, n_out_of, reject_all_policy, signed_by};
use twill_policy::{
    parse_policy, valid_identities, Policy, PolicyError, SignaturePolicyEvaluator, SignedData,
};
use twill_protos::common::SignaturePolicyEnvelope;

const DATA: &[u8] = b"proposal bytes";

fn evaluator(policy: &str, orgs: &[&Org]) -> SignaturePolicyEvaluator {
    SignaturePolicyEvaluator::new(parse_policy(policy).expect("parse"), msps(orgs))
        .expect("compile")
}

fn reason(r: twill_policy::Result<()>) -> String {
    match r {
        Err(PolicyError::NotSatisfied { reason }) => reason,
        other => panic!("expected NotSatisfied, got {other:?}"),
    }
}

#[test]
fn two_out_of_three_orgs() {
    let (a, b, c) = (Org::new("A"), Org::new("B"), Org::new("C"));
    let policy = evaluator(
        "OutOf(2, 'A.member', 'B.member', 'C.member')",
        &[&a, &b, &c],
    );
    let (pa, pb, pc) = (a.peer(), b.admin(), c.client());

    let why = reason(policy.evaluate(&sign_all(DATA, &[&pa])));
    assert!(
        why.contains("OutOf(2, 'A.member', 'B.member', 'C.member')"),
        "{why}"
    );
    assert!(why.contains("1 valid signer(s): A 'peer0.A'"), "{why}");
    assert!(
        why.contains("no unused signer satisfies 'B.member', 'C.member'"),
        "{why}"
    );

    policy
        .evaluate(&sign_all(DATA, &[&pa, &pb]))
        .expect("2 of 3");
    policy
        .evaluate(&sign_all(DATA, &[&pa, &pb, &pc]))
        .expect("3 of 3");
    policy
        .evaluate(&sign_all(DATA, &[&pc, &pa]))
        .expect("order does not matter");
    assert!(policy.evaluate(&[]).is_err());
}

#[test]
fn same_identity_signing_twice_counts_once() {
    let a = Org::new("A");
    let policy = evaluator("AND('A.member', 'A.member')", &[&a]);
    let p1 = a.peer();
    let err = policy
        .evaluate(&sign_all(DATA, &[&p1, &p1]))
        .expect_err("one signer twice");
    assert_eq!(err.code(), "POLICY_NOT_SATISFIED");
    // Even over different data, the same identity is one signer.
    let twice = vec![p1.sign(DATA), p1.sign(b"other data")];
    assert!(policy.evaluate(&twice).is_err());
    let ids = valid_identities(&twice, &msps(&[&a]));
    assert_eq!(ids.len(), 1);

    let p2 = a.signer("peer1.A", "peer");
    policy
        .evaluate(&sign_all(DATA, &[&p1, &p2]))
        .expect("two distinct A signers");
}

#[test]
fn bad_signatures_are_not_counted() {
    let (a, b, c) = (Org::new("A"), Org::new("B"), Org::new("C"));
    let policy = evaluator(
        "OutOf(2, 'A.member', 'B.member', 'C.member')",
        &[&a, &b, &c],
    );
    let (pa, pb, pc) = (a.peer(), b.peer(), c.peer());

    let mut forged = pb.sign(DATA);
    forged.data = b"something else".to_vec();
    let mut garbage = pc.sign(DATA);
    garbage.signature = vec![0x30, 0x00];
    let set = vec![pa.sign(DATA), forged.clone(), garbage];
    assert!(
        policy.evaluate(&set).is_err(),
        "only A's signature is valid"
    );

    // A bad signature does not block a later good one by the same identity.
    let set = vec![pa.sign(DATA), forged, pb.sign(DATA)];
    policy.evaluate(&set).expect("B's second signature is good");
    assert_eq!(valid_identities(&set, &msps(&[&a, &b, &c])).len(), 2);
}

#[test]
fn undeserializable_and_foreign_identities_are_skipped() {
    let (a, b, outsider) = (Org::new("A"), Org::new("B"), Org::new("Z"));
    let policy = evaluator("OR('A.member', 'B.member')", &[&a, &b]);
    let junk = SignedData::new(DATA.to_vec(), b"not an identity".to_vec(), vec![1, 2, 3]);
    let foreign = outsider.peer().sign(DATA);
    assert!(policy.evaluate(&[junk.clone(), foreign.clone()]).is_err());
    policy
        .evaluate(&[junk, foreign, b.peer().sign(DATA)])
        .expect("B still counts");

    // A certificate from another CA claiming MSP A does not satisfy A.member.
    let impostor = Org::new("A").peer();
    assert!(policy.evaluate(&[impostor.sign(DATA)]).is_err());
}

#[test]
fn roles_follow_node_ous() {
    let (a, b) = (Org::new("A"), Org::new("B"));
    let policy = evaluator("AND('A.peer', OR('B.admin', 'B.orderer'))", &[&a, &b]);
    policy
        .evaluate(&sign_all(DATA, &[&a.peer(), &b.admin()]))
        .expect("peer and admin");
    let why = reason(policy.evaluate(&sign_all(DATA, &[&a.client(), &b.admin()])));
    assert!(why.contains("'A.peer'"), "{why}");
    assert!(policy
        .evaluate(&sign_all(DATA, &[&a.peer(), &b.peer()]))
        .is_err());
    policy
        .evaluate(&sign_all(
            DATA,
            &[&a.peer(), &b.signer("orderer0", "orderer")],
        ))
        .expect("orderer");

    let members = evaluator("AND('A.member', 'B.member')", &[&a, &b]);
    members
        .evaluate(&sign_all(DATA, &[&a.client(), &b.admin()]))
        .expect("any role is a member");
}

#[test]
fn greedy_marking_matches_fabric() {
    // Fabric's gates try every sub-rule even once satisfied, and each
    // success keeps the signer it used: the inner OR takes both A signers,
    // leaving none for the outer principal.
    let a = Org::new("A");
    let policy = evaluator("AND(OR('A.member', 'A.member'), 'A.member')", &[&a]);
    let s: Vec<_> = (0..3)
        .map(|i| a.signer(&format!("peer{i}.A"), "peer"))
        .collect();
    assert!(policy.evaluate(&sign_all(DATA, &[&s[0], &s[1]])).is_err());
    policy
        .evaluate(&sign_all(DATA, &[&s[0], &s[1], &s[2]]))
        .expect("three signers");
}

#[test]
fn many_signers_verify_in_parallel() {
    let orgs: Vec<Org> = (1..=4).map(|i| Org::new(&format!("Org{i}MSP"))).collect();
    let refs: Vec<&Org> = orgs.iter().collect();
    let policy = evaluator(
        "AND('Org1MSP.peer', 'Org2MSP.peer', 'Org3MSP.peer', 'Org4MSP.peer')",
        &refs,
    );
    let signers: Vec<_> = orgs.iter().flat_map(|o| [o.client(), o.peer()]).collect();
    let signer_refs: Vec<_> = signers.iter().collect();
    policy
        .evaluate(&sign_all(DATA, &signer_refs))
        .expect("all four peers");
    let ids = valid_identities(&sign_all(DATA, &signer_refs), &msps(&refs));
    assert_eq!(ids.len(), 8);
    let order: Vec<&str> = ids.iter().map(|i| i.common_name()).collect();
    assert_eq!(
        order.first(),
        Some(&"User1@Org1MSP"),
        "signature order is kept"
    );
}

#[test]
fn accept_and_reject_all() {
    let a = Org::new("A");
    let m = msps(&[&a]);
    let accept = SignaturePolicyEvaluator::new(accept_all_policy(), m.clone()).expect("accept");
    accept.evaluate(&[]).expect("accept all");
    let reject = SignaturePolicyEvaluator::new(reject_all_policy(), m).expect("reject");
    assert!(reject.evaluate(&sign_all(DATA, &[&a.admin()])).is_err());
}

#[test]
fn invalid_envelopes_do_not_compile() {
    let m = msps(&[]);
    let out_of_range = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(1, vec![signed_by(1)])),
        identities: vec![twill_policy::msp_role_principal("A", Default::default())],
    };
    let err = SignaturePolicyEvaluator::new(out_of_range, m.clone()).expect_err("index");
    assert!(err.to_string().contains("signed_by index 1"), "{err}");

    let negative = SignaturePolicyEnvelope {
        rule: Some(signed_by(-1)),
        ..Default::default()
    };
    assert!(SignaturePolicyEvaluator::new(negative, m.clone()).is_err());

    let err = SignaturePolicyEvaluator::new(SignaturePolicyEnvelope::default(), m.clone())
        .expect_err("no rule");
    assert!(err.to_string().contains("no rule"), "{err}");

    let mut v1 = parse_policy("OR('A.member')").expect("parse");
    v1.version = 1;
    let err = SignaturePolicyEvaluator::from_bytes(&v1.encode_to_vec(), m.clone()).expect_err("v1");
    assert!(err.to_string().contains("version"), "{err}");
    assert!(SignaturePolicyEvaluator::from_bytes(b"\xff\xff", m.clone()).is_err());

    let mut deep = signed_by(0);
    for _ in 0..200 {
        deep = n_out_of(1, vec![deep]);
    }
    let deep = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(deep),
        identities: vec![twill_policy::msp_role_principal("A", Default::default())],
    };
    assert!(SignaturePolicyEvaluator::new(deep, m).is_err());
}

#[test]
fn envelope_is_exposed() {
    let a = Org::new("A");
    let env = parse_policy("OR('A.member')").expect("parse");
    let policy = SignaturePolicyEvaluator::new(env.clone(), msps(&[&a])).expect("compile");
    assert_eq!(policy.signature_envelope(), Some(&env));
    assert_eq!(policy.envelope(), &env);
}
