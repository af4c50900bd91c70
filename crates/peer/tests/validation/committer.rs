//! The committer on a real on-disk ledger: refused blocks leave nothing
//! behind, valid ones land in the block store, state and history.

use prost::Message;
use twill_configtx::block::block_header_hash;
use twill_ledger::state::Height;
use twill_peer::channel::{Channel, Committer};
use twill_peer::committer::LedgerCommitter;
use twill_peer::validation::lifecycle::{definition_entries, LIFECYCLE_NAMESPACE};
use twill_peer::validation::testkit::{
    channel_policy_ref, range_query, read, sign_block, signed_block, write, TxBuilder, CHANNEL,
};
use twill_peer::validation::tx_filter;
use twill_protos::common::Envelope;
use twill_protos::lifecycle::ChaincodeValidationInfo;
use twill_protos::peer::TxValidationCode as Code;

use crate::{fx, CC};

/// A `_lifecycle` transaction defining `basic` with the channel's
/// Endorsement policy, endorsed by both orgs.
fn definition_tx() -> Envelope {
    let f = fx();
    let info = ChaincodeValidationInfo {
        validation_plugin: "vscc".into(),
        validation_parameter: channel_policy_ref("/Channel/Application/Endorsement")
            .encode_to_vec(),
    };
    let writes = definition_entries(CC, 1, "1.0", &info)
        .into_iter()
        .map(|(k, v)| write(&k, &v))
        .collect();
    TxBuilder::new(&f.client1, CHANNEL, LIFECYCLE_NAMESPACE)
        .writes(LIFECYCLE_NAMESPACE, writes)
        .endorsed_by(&f.peer1)
        .endorsed_by(&f.peer2)
        .build()
        .unwrap()
        .1
}

/// A channel at height 1 (genesis committed) in a temp dir.
fn joined() -> (tempfile::TempDir, Channel, LedgerCommitter) {
    let f = fx();
    let dir = tempfile::tempdir().unwrap();
    let channel = Channel::create(dir.path(), f.net.genesis()).unwrap();
    let committer = LedgerCommitter::new(2);
    committer.open_channel(&channel).unwrap();
    committer.commit(&channel, f.net.genesis().clone()).unwrap();
    assert_eq!(channel.height(), 1);
    (dir, channel, committer)
}

#[test]
fn blocks_with_a_wrong_data_hash_or_orderer_signature_are_refused() {
    let f = fx();
    let (_dir, channel, committer) = joined();
    let (_, env) = f
        .endorsed()
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();

    let mut tampered = f.block(std::slice::from_ref(&env));
    tampered.data.as_mut().unwrap().data.push(vec![1, 2, 3]);
    let err = committer.commit(&channel, tampered).unwrap_err();
    assert!(err.to_string().contains("data hash"), "{err}");
    assert_eq!(channel.height(), 1, "a refused block must not be stored");

    // Signed by a client instead of an orderer.
    let mut forged = f.block(std::slice::from_ref(&env));
    sign_block(&mut forged, &f.client1, 0).unwrap();
    let err = committer.commit(&channel, forged).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("block 1"), "{err}");
    assert_eq!(channel.height(), 1);

    // The genuine block still commits afterwards (its transaction invokes a
    // chaincode this ledger has no definition of).
    let good = f.block(&[env]);
    let outcome = committer.commit(&channel, good).unwrap();
    assert_eq!(outcome.validation_codes, vec![Code::InvalidChaincode as u8]);
    assert_eq!(channel.height(), 2);
}

#[test]
fn committed_blocks_carry_codes_and_update_state_and_history() {
    let f = fx();
    let (_dir, channel, committer) = joined();
    // Without a definition of `basic` in `_lifecycle`, its transactions are
    // INVALID_CHAINCODE; the definition itself is endorsed by both orgs.
    let (_, early) = f
        .endorsed()
        .writes(CC, vec![write("k", b"early")])
        .build()
        .unwrap();
    let define = definition_tx();
    let block1 = f.block(&[early, define]);
    let out = committer.commit(&channel, block1).unwrap();
    assert_eq!(
        out.validation_codes,
        vec![Code::InvalidChaincode as u8, Code::Valid as u8]
    );

    let (_, put) = f
        .endorsed()
        .writes(CC, vec![write("k", b"v1")])
        .build()
        .unwrap();
    let (_, weak) = f
        .tx()
        .endorsed_by(&f.peer1)
        .writes(CC, vec![write("k", b"weak")])
        .build()
        .unwrap();
    let prev = channel.store().block(1).unwrap().unwrap();
    let block2 = signed_block(prev.header.as_ref().unwrap(), &[put, weak], &f.orderer).unwrap();
    let hash2 = block_header_hash(block2.header.as_ref().unwrap());
    let out = committer.commit(&channel, block2).unwrap();
    assert_eq!(
        out.validation_codes,
        vec![Code::Valid as u8, Code::EndorsementPolicyFailure as u8]
    );
    let stored = channel.store().block(2).unwrap().unwrap();
    assert_eq!(
        block_header_hash(stored.header.as_ref().unwrap()),
        hash2,
        "the filter is metadata: the header hash is unchanged"
    );
    assert_eq!(
        tx_filter(&stored),
        vec![Code::Valid, Code::EndorsementPolicyFailure]
    );

    // Block 3 right away, while block 2's state commit may still run in
    // the background: a read of `k` at (2, 0) is current, one at (1, 0)
    // is stale, and a range over the namespace sees `k`.
    let (_, fresh) = f
        .endorsed()
        .reads(CC, vec![read("k", Some(Height::new(2, 0)))])
        .writes(CC, vec![write("k", b"v2")])
        .build()
        .unwrap();
    let (_, stale) = f
        .endorsed()
        .reads(CC, vec![read("k", Some(Height::new(1, 0)))])
        .writes(CC, vec![write("other", b"x")])
        .build()
        .unwrap();
    let (_, ranged) = f
        .endorsed()
        .range_queries(CC, vec![range_query("a", "z", &[("k", Height::new(2, 0))])])
        .writes(CC, vec![write("seen", b"1")])
        .build()
        .unwrap();
    let prev = channel.store().block(2).unwrap().unwrap();
    let block3 = signed_block(
        prev.header.as_ref().unwrap(),
        &[ranged, fresh, stale],
        &f.orderer,
    )
    .unwrap();
    let out = committer.commit(&channel, block3).unwrap();
    assert_eq!(
        out.validation_codes,
        vec![
            Code::Valid as u8,
            Code::Valid as u8,
            Code::MvccReadConflict as u8
        ]
    );

    let ledger = committer.channel(CHANNEL).unwrap();
    let v = ledger.state().get(CC, "k").unwrap().unwrap();
    assert_eq!(v.value, b"v2");
    assert_eq!((v.version.block, v.version.tx), (3, 1));
    assert_eq!(ledger.state().history(CC, "k").unwrap().len(), 2);
    assert!(ledger.state().get(CC, "seen").unwrap().is_some());
    assert!(ledger.state().get(CC, "other").unwrap().is_none());
    assert_eq!(ledger.state().savepoint().unwrap(), Some(3));
}
