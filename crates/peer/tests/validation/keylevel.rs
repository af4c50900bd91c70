//! Key-level (state-based) endorsement policies.

use twill_ledger::state::Height;
use twill_peer::validation::testkit::{set_key_policy, write};
use twill_peer::validation::MemTxIds;
use twill_policy::builder::signed_by_msp_peer;
use twill_protos::peer::TxValidationCode as Code;

use crate::{fx, state, validate_with, CC};

/// The base state with key "a" governed by `OR('Org1MSP.peer')`.
fn state_with_key_policy() -> twill_peer::validation::MemState {
    let mut st = state();
    let policy = prost::Message::encode_to_vec(&signed_by_msp_peer("Org1MSP"));
    assert!(st.put_metadata_entry(CC, "a", "VALIDATION_PARAMETER", policy));
    st
}

#[test]
fn key_policy_replaces_chaincode_policy() {
    let f = fx();
    let st = state_with_key_policy();
    // Org1 alone suffices for "a" (the chaincode policy wants both orgs).
    let (_, org1_on_a) = f
        .tx()
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();
    // Org2 alone does not satisfy "a"'s policy.
    let (_, org2_on_a) = f
        .tx()
        .endorsed_by(&f.peer2)
        .writes(CC, vec![write("a", b"2")])
        .build()
        .unwrap();
    // "b" has no key policy: the chaincode policy applies to it.
    let (_, org1_on_ab) = f
        .tx()
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("a", b"3"), write("b", b"3")])
        .build()
        .unwrap();
    let out = validate_with(
        &[org1_on_a, org2_on_a, org1_on_ab],
        &st,
        &MemTxIds::default(),
    );
    assert_eq!(
        out.codes,
        vec![
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure
        ]
    );
}

#[test]
fn metadata_update_earlier_in_block_invalidates_later_writers() {
    let f = fx();
    let st = state();
    let (_, set_policy) = f
        .endorsed()
        .metadata_writes(
            CC,
            vec![set_key_policy("b", &signed_by_msp_peer("Org2MSP"))],
        )
        .build()
        .unwrap();
    let (_, writer) = f
        .endorsed()
        .writes(CC, vec![write("b", b"x")])
        .build()
        .unwrap();
    let (_, other_key) = f
        .endorsed()
        .writes(CC, vec![write("c", b"x")])
        .build()
        .unwrap();
    let out = validate_with(&[set_policy, writer, other_key], &st, &MemTxIds::default());
    assert_eq!(
        out.codes,
        vec![Code::Valid, Code::EndorsementPolicyFailure, Code::Valid]
    );
    let (entries, height) = &out.batch.metadata[&(CC.to_string(), "b".to_string())];
    assert_eq!(*height, Height::new(1, 0));
    assert!(entries.contains_key("VALIDATION_PARAMETER"));
}
