//! Checks run ahead of a block's turn (`BlockValidator::prepare`) give the
//! outcome of checking in turn, and are used only for the block and config
//! they were made for.

use std::sync::Arc;

use twill_msp::MspManager;
use twill_peer::validation::testkit::{read, write, CHANNEL};
use twill_peer::validation::{BlockValidator, MemTxIds};
use twill_protos::peer::TxValidationCode as Code;

use crate::{fx, state, CC};

#[test]
fn prepared_checks_give_the_same_outcome_as_checks_in_turn() {
    let f = fx();
    let (_, valid) = f
        .endorsed()
        .reads(
            CC,
            vec![read("a", Some(twill_ledger::state::Height::new(1, 0)))],
        )
        .writes(CC, vec![write("a", b"new")])
        .build()
        .unwrap();
    let (_, one_org) = f
        .tx()
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("b", b"x")])
        .build()
        .unwrap();
    let (dup_id, dup) = f
        .endorsed()
        .writes(CC, vec![write("c", b"y")])
        .build()
        .unwrap();
    let (_, mut forged) = f.endorsed().build().unwrap();
    forged.signature = f.client2.sign(&forged.payload).unwrap();
    let (_, conflict) = f
        .endorsed()
        .reads(
            CC,
            vec![read("a", Some(twill_ledger::state::Height::new(1, 0)))],
        )
        .build()
        .unwrap();
    let envs = [valid, one_org, dup, forged, conflict];
    let block = f.block(&envs);
    let mut txids = MemTxIds::default();
    txids.ids.insert(dup_id);
    let st = state();

    let v = BlockValidator::new(CHANNEL, 2);
    let in_turn = v.validate(&block, &f.config, &st, &txids).unwrap();
    let prepared = v.prepare(&block, &f.config).unwrap();
    assert_eq!(prepared.number(), 1);
    let ahead = v
        .validate_prepared(&block, &f.config, Some(prepared), &st, &txids)
        .unwrap();
    assert_eq!(
        in_turn.codes,
        [
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::DuplicateTxid,
            Code::BadCreatorSignature,
            Code::MvccReadConflict,
        ]
    );
    assert_eq!(ahead.codes, in_turn.codes);
    assert_eq!(ahead.batch, in_turn.batch);
}

#[test]
fn checks_prepared_for_other_block_data_are_not_used() {
    let f = fx();
    let (_, both) = f
        .endorsed()
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();
    let (_, one_org) = f
        .tx()
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();
    let v = BlockValidator::new(CHANNEL, 1);
    // Same block number, other transactions: the endorsers found for the
    // first block must not vouch for the second.
    let prepared = v.prepare(&f.block(&[both]), &f.config).unwrap();
    let out = v
        .validate_prepared(
            &f.block(&[one_org]),
            &f.config,
            Some(prepared),
            &state(),
            &MemTxIds::default(),
        )
        .unwrap();
    assert_eq!(out.codes, [Code::EndorsementPolicyFailure]);
}

#[test]
fn checks_prepared_under_another_config_sequence_are_redone() {
    let f = fx();
    let (_, env) = f
        .endorsed()
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();
    let block = f.block(&[env]);
    // A later config that knows no MSP: under it the creator is unknown.
    let mut later = f.config.clone();
    later.msps = Arc::new(MspManager::new([]));
    later.config.sequence += 1;
    let v = BlockValidator::new(CHANNEL, 1);

    let stale = v.prepare(&block, &later).unwrap();
    let out = v
        .validate_prepared(
            &block,
            &f.config,
            Some(stale),
            &state(),
            &MemTxIds::default(),
        )
        .unwrap();
    assert_eq!(out.codes, [Code::Valid]);

    // Under the config it was made for, the prepared result is what counts.
    let current = v.prepare(&block, &later).unwrap();
    let out = v
        .validate_prepared(
            &block,
            &later,
            Some(current),
            &state(),
            &MemTxIds::default(),
        )
        .unwrap();
    assert_eq!(out.codes, [Code::BadCreatorSignature]);
}
