//! One test per transaction validation code.

use prost::Message;
use twill_configtx::block::new_block;
use twill_ledger::state::{Height, KeyWrite};
use twill_peer::validation::testkit::{
    define_chaincode, delete, range_query, read, sign_block, signature_policy, write, TxBuilder,
    CHANNEL,
};
use twill_peer::validation::{merkle_summary, BlockValidator, MemTxIds};
use twill_policy::builder::signed_by_msp_peer;
use twill_protos::common::{Envelope, Payload};
use twill_protos::kvrwset::range_query_info::ReadsInfo;
use twill_protos::peer::{ChaincodeActionPayload, Transaction, TxValidationCode as Code};

use crate::{codes, encoded, fx, resign, state, validate, validate_with, CC};

/// Decodes an envelope's transaction, lets `f` change its action payload,
/// and re-signs the envelope as the client.
fn edit_action(env: &Envelope, f: impl FnOnce(&mut ChaincodeActionPayload)) -> Envelope {
    let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
    let mut tx = Transaction::decode(payload.data.as_slice()).unwrap();
    let mut cap = ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
    f(&mut cap);
    tx.actions[0].payload = cap.encode_to_vec();
    payload.data = tx.encode_to_vec();
    resign(payload.encode_to_vec())
}

#[test]
fn valid_tx_writes_at_its_height() {
    let f = fx();
    let (_, env) = f
        .endorsed()
        .reads(
            CC,
            vec![read("a", Some(Height::new(1, 0))), read("zz", None)],
        )
        .writes(CC, vec![write("a", b"new"), write("d", b"vd"), delete("b")])
        .build()
        .unwrap();
    let out = validate(&[env]);
    assert_eq!(out.codes, vec![Code::Valid]);
    assert!(out.new_config.is_none());
    let h = Height::new(1, 0);
    assert_eq!(
        out.batch.writes[&(CC.into(), "a".into())],
        (KeyWrite::Put(b"new".to_vec()), h)
    );
    assert_eq!(
        out.batch.writes[&(CC.into(), "b".into())],
        (KeyWrite::Delete, h)
    );
    assert_eq!(out.batch.history.len(), 3);
}

#[test]
fn read_only_tx_is_valid_and_writes_nothing() {
    let f = fx();
    let (_, env) = f
        .endorsed()
        .reads(CC, vec![read("c", Some(Height::new(1, 2)))])
        .build()
        .unwrap();
    let out = validate(&[env]);
    assert_eq!(out.codes, vec![Code::Valid]);
    assert!(out.batch.is_empty());
}

#[test]
fn endorsement_policy_failure_missing_endorsement() {
    let f = fx();
    let (_, only_org1) = f
        .tx()
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("a", b"x")])
        .build()
        .unwrap();
    // A client is not a peer: Org2's Endorsement policy wants Org2MSP.peer.
    let (_, client_endorsed) = f
        .tx()
        .endorsed_by(&f.peer1)
        .endorsed_by(&f.client2)
        .writes(CC, vec![write("a", b"x")])
        .build()
        .unwrap();
    // The same peer twice counts once.
    let (_, twice) = f
        .tx()
        .endorsed_by(&f.peer1)
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("a", b"x")])
        .build()
        .unwrap();
    assert_eq!(
        codes(&[only_org1, client_endorsed, twice]),
        vec![Code::EndorsementPolicyFailure; 3]
    );
}

#[test]
fn endorsement_policy_failure_tampered_endorsement() {
    let f = fx();
    let (_, env) = f
        .endorsed()
        .writes(CC, vec![write("a", b"x")])
        .build()
        .unwrap();
    let tampered = edit_action(&env, |cap| {
        let e = &mut cap.action.as_mut().unwrap().endorsements[1];
        let n = e.signature.len();
        e.signature[n - 3] ^= 0x01;
    });
    assert_eq!(codes(&[tampered]), vec![Code::EndorsementPolicyFailure]);
}

#[test]
fn chaincode_signature_policy_from_definition() {
    let f = fx();
    let mut st = state();
    define_chaincode(
        &mut st,
        "org1only",
        3,
        &signature_policy(signed_by_msp_peer("Org1MSP")),
    );
    let (_, ok) = TxBuilder::new(&f.client1, CHANNEL, "org1only")
        .endorsed_by(&f.peer1)
        .writes("org1only", vec![write("k", b"v")])
        .build()
        .unwrap();
    let (_, bad) = TxBuilder::new(&f.client1, CHANNEL, "org1only")
        .endorsed_by(&f.peer2)
        .writes("org1only", vec![write("k2", b"v")])
        .build()
        .unwrap();
    let out = validate_with(&[ok, bad], &st, &MemTxIds::default());
    assert_eq!(out.codes, vec![Code::Valid, Code::EndorsementPolicyFailure]);
}

#[test]
fn lifecycle_namespace_uses_lifecycle_endorsement() {
    let f = fx();
    let (_, both) = TxBuilder::new(&f.client1, CHANNEL, "_lifecycle")
        .endorsed_by(&f.peer1)
        .endorsed_by(&f.peer2)
        .writes(
            "_lifecycle",
            vec![write("namespaces/fields/x/Sequence", b"1")],
        )
        .build()
        .unwrap();
    let (_, one) = TxBuilder::new(&f.client1, CHANNEL, "_lifecycle")
        .endorsed_by(&f.peer1)
        .writes(
            "_lifecycle",
            vec![write("namespaces/fields/y/Sequence", b"1")],
        )
        .build()
        .unwrap();
    assert_eq!(
        codes(&[both, one]),
        vec![Code::Valid, Code::EndorsementPolicyFailure]
    );
}

#[test]
fn unknown_chaincode_is_invalid_chaincode() {
    let f = fx();
    let (_, invoked) = TxBuilder::new(&f.client1, CHANNEL, "nosuchcc")
        .endorsed_by(&f.peer1)
        .endorsed_by(&f.peer2)
        .writes("nosuchcc", vec![write("k", b"v")])
        .build()
        .unwrap();
    // Invoking a defined chaincode that writes into an undefined namespace.
    let (_, written) = f
        .endorsed()
        .writes("othercc", vec![write("k", b"v")])
        .build()
        .unwrap();
    assert_eq!(codes(&[invoked, written]), vec![Code::InvalidChaincode; 2]);
}

#[test]
fn mvcc_read_conflict_stale_version() {
    let f = fx();
    let (_, stale) = f
        .endorsed()
        .reads(CC, vec![read("a", Some(Height::new(0, 5)))])
        .writes(CC, vec![write("x", b"1")])
        .build()
        .unwrap();
    let (_, absent_but_exists) = f
        .endorsed()
        .reads(CC, vec![read("b", None)])
        .build()
        .unwrap();
    let (_, exists_but_absent) = f
        .endorsed()
        .reads(CC, vec![read("nope", Some(Height::new(1, 0)))])
        .build()
        .unwrap();
    let out = validate(&[stale, absent_but_exists, exists_but_absent]);
    assert_eq!(out.codes, vec![Code::MvccReadConflict; 3]);
    assert!(out.batch.is_empty());
}

#[test]
fn mvcc_read_conflict_in_block() {
    let f = fx();
    let (_, first) = f
        .endorsed()
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();
    let (_, second) = f
        .endorsed()
        .reads(CC, vec![read("a", Some(Height::new(1, 0)))])
        .writes(CC, vec![write("e", b"2")])
        .build()
        .unwrap();
    // An invalid tx's writes do not conflict with later reads.
    let (_, invalid_writer) = f
        .tx()
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("c", b"3")])
        .build()
        .unwrap();
    let (_, reader_of_c) = f
        .endorsed()
        .reads(CC, vec![read("c", Some(Height::new(1, 2)))])
        .build()
        .unwrap();
    let out = validate(&[first, second, invalid_writer, reader_of_c]);
    assert_eq!(
        out.codes,
        vec![
            Code::Valid,
            Code::MvccReadConflict,
            Code::EndorsementPolicyFailure,
            Code::Valid
        ]
    );
    assert_eq!(out.batch.writes.len(), 1);
}

#[test]
fn phantom_read_conflict() {
    let f = fx();
    let h = |t| Height::new(1, t);
    // Committed [a, c) = a, b.
    let (_, good) = f
        .endorsed()
        .range_queries(CC, vec![range_query("a", "c", &[("a", h(0)), ("b", h(1))])])
        .build()
        .unwrap();
    let (_, missing) = f
        .endorsed()
        .range_queries(CC, vec![range_query("a", "c", &[("a", h(0))])])
        .build()
        .unwrap();
    let (_, wrong_version) = f
        .endorsed()
        .range_queries(CC, vec![range_query("a", "c", &[("a", h(0)), ("b", h(7))])])
        .build()
        .unwrap();
    assert_eq!(
        codes(&[good, missing, wrong_version]),
        vec![
            Code::Valid,
            Code::PhantomReadConflict,
            Code::PhantomReadConflict
        ]
    );
}

#[test]
fn phantom_read_conflict_from_earlier_tx_in_block() {
    let f = fx();
    let h = |t| Height::new(1, t);
    let (_, inserter) = f
        .endorsed()
        .writes(CC, vec![write("ab", b"new")])
        .build()
        .unwrap();
    let (_, scanner) = f
        .endorsed()
        .range_queries(CC, vec![range_query("a", "c", &[("a", h(0)), ("b", h(1))])])
        .build()
        .unwrap();
    // Unbounded end, after a delete of "c" by the first... here by a third tx.
    let (_, deleter) = f.endorsed().writes(CC, vec![delete("c")]).build().unwrap();
    let (_, unbounded) = f
        .endorsed()
        .range_queries(CC, vec![range_query("b", "", &[("b", h(1)), ("c", h(2))])])
        .build()
        .unwrap();
    assert_eq!(
        codes(&[inserter, scanner, deleter, unbounded]),
        vec![
            Code::Valid,
            Code::PhantomReadConflict,
            Code::Valid,
            Code::PhantomReadConflict
        ]
    );
}

#[test]
fn range_query_merkle_summary() {
    let f = fx();
    let h = |t| Height::new(1, t);
    let with_summary = |results: &[(String, Height)]| {
        let mut rq = range_query("a", "", &[]);
        rq.reads_info = Some(ReadsInfo::ReadsMerkleHashes(
            merkle_summary(results, 2).unwrap(),
        ));
        rq
    };
    let current: Vec<(String, Height)> =
        vec![("a".into(), h(0)), ("b".into(), h(1)), ("c".into(), h(2))];
    let mut stale = current.clone();
    stale[2].1 = h(9);
    let (_, good) = f
        .endorsed()
        .range_queries(CC, vec![with_summary(&current)])
        .build()
        .unwrap();
    let (_, bad) = f
        .endorsed()
        .range_queries(CC, vec![with_summary(&stale)])
        .build()
        .unwrap();
    assert_eq!(
        codes(&[good, bad]),
        vec![Code::Valid, Code::PhantomReadConflict]
    );
}

#[test]
fn duplicate_txid_in_ledger_and_in_block() {
    let f = fx();
    let (known_id, known) = f
        .endorsed()
        .writes(CC, vec![write("x", b"1")])
        .build()
        .unwrap();
    let (_, first) = f
        .endorsed()
        .nonce(b"fixed-nonce")
        .writes(CC, vec![write("y", b"1")])
        .build()
        .unwrap();
    let (_, again) = f
        .endorsed()
        .nonce(b"fixed-nonce")
        .writes(CC, vec![write("z", b"1")])
        .build()
        .unwrap();
    let mut txids = MemTxIds::default();
    txids.ids.insert(known_id);
    let out = validate_with(&[known, first, again], &state(), &txids);
    assert_eq!(
        out.codes,
        vec![Code::DuplicateTxid, Code::Valid, Code::DuplicateTxid]
    );
    assert_eq!(out.batch.writes.len(), 1);
}

#[test]
fn bad_creator_signature() {
    let f = fx();
    let (_, mut env) = f
        .endorsed()
        .writes(CC, vec![write("x", b"1")])
        .build()
        .unwrap();
    let n = env.signature.len();
    env.signature[n - 2] ^= 0x01;
    // Signed by someone other than the creator.
    let (_, mut other) = f.endorsed().build().unwrap();
    other.signature = f.client2.sign(&other.payload).unwrap();
    assert_eq!(codes(&[env, other]), vec![Code::BadCreatorSignature; 2]);
}

#[test]
fn bad_payload_nil_envelope_and_garbage() {
    let f = fx();
    let garbage = Envelope {
        payload: vec![0xff, 0xff, 0xff, 0x07],
        signature: vec![1, 2, 3],
    };
    let (_, good) = f.endorsed().build().unwrap();
    let prev = f.net.genesis().header.clone().unwrap();
    let mut block = new_block(
        1,
        twill_configtx::block::block_header_hash(&prev).to_vec(),
        vec![
            encoded(&garbage),
            Vec::new(),
            vec![0xff, 0x01],
            encoded(&good),
        ],
    );
    sign_block(&mut block, &f.orderer, 0).unwrap();
    let v = BlockValidator::new(CHANNEL, 2);
    v.verify_block(&block, &f.config).unwrap();
    let out = v
        .validate(&block, &f.config, &state(), &MemTxIds::default())
        .unwrap();
    assert_eq!(
        out.codes,
        vec![
            Code::BadPayload,
            Code::NilEnvelope,
            Code::InvalidOtherReason,
            Code::Valid
        ]
    );
}

#[test]
fn bad_proposal_txid() {
    let f = fx();
    let (_, env) = f.endorsed().tx_id("deadbeef").build().unwrap();
    assert_eq!(codes(&[env]), vec![Code::BadProposalTxid]);
}

#[test]
fn target_chain_not_found() {
    let f = fx();
    let (_, env) = TxBuilder::new(&f.client1, "otherchannel", CC)
        .endorsed_by(&f.peer1)
        .endorsed_by(&f.peer2)
        .build()
        .unwrap();
    assert_eq!(codes(&[env]), vec![Code::TargetChainNotFound]);
}

#[test]
fn proposal_hash_mismatch_is_invalid_endorser_transaction() {
    let f = fx();
    let (_, env) = f.endorsed().build().unwrap();
    let edited = edit_action(&env, |cap| cap.chaincode_proposal_payload.push(0));
    assert_eq!(codes(&[edited]), vec![Code::InvalidEndorserTransaction]);
}
