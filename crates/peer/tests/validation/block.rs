//! Block-level checks: data hash, orderer signatures, config blocks and the
//! transactions filter.

use prost::Message;
use twill_configtx::block::{block_header_hash, channel_header, envelope, new_block};
use twill_configtx::channel::config_from_block;
use twill_peer::validation::testkit::{sign_block, write, CHANNEL};
use twill_peer::validation::{set_tx_filter, tx_filter, BlockValidator, MemTxIds, ValidationError};
use twill_protos::common::{ConfigEnvelope, HeaderType, SignatureHeader};
use twill_protos::peer::TxValidationCode as Code;

use crate::{fx, state, CC};

#[test]
fn verify_block_accepts_orderer_signed_block() {
    let f = fx();
    let (_, env) = f
        .endorsed()
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();
    let block = f.block(&[env]);
    BlockValidator::new(CHANNEL, 1)
        .verify_block(&block, &f.config)
        .unwrap();
}

#[test]
fn verify_block_refuses_wrong_data_hash() {
    let f = fx();
    let (_, env) = f.endorsed().build().unwrap();
    let mut block = f.block(&[env]);
    block.data.as_mut().unwrap().data.push(vec![1, 2, 3]);
    let err = BlockValidator::new(CHANNEL, 1)
        .verify_block(&block, &f.config)
        .unwrap_err();
    assert!(
        matches!(err, ValidationError::DataHash { number: 1, .. }),
        "{err}"
    );
}

#[test]
fn verify_block_refuses_bad_orderer_signature() {
    let f = fx();
    let v = BlockValidator::new(CHANNEL, 1);
    let (_, env) = f.endorsed().build().unwrap();
    let block = f.block(&[env]);

    // A flipped bit in the signature.
    let mut tampered = block.clone();
    let slot = &mut tampered.metadata.as_mut().unwrap().metadata[0];
    let mut md = twill_protos::common::Metadata::decode(slot.as_slice()).unwrap();
    let n = md.signatures[0].signature.len();
    md.signatures[0].signature[n - 2] ^= 1;
    *slot = md.encode_to_vec();
    let err = v.verify_block(&tampered, &f.config).unwrap_err();
    assert!(matches!(err, ValidationError::Signatures(_)), "{err}");

    // Signed by a peer: not an orderer org writer.
    let mut by_peer = block.clone();
    sign_block(&mut by_peer, &f.peer1, 0).unwrap();
    assert!(v.verify_block(&by_peer, &f.config).is_err());

    // No signatures at all.
    let mut bare = block;
    bare.metadata.as_mut().unwrap().metadata[0].clear();
    assert!(matches!(
        v.verify_block(&bare, &f.config),
        Err(ValidationError::Signatures(_))
    ));
}

#[test]
fn tx_filter_written_from_codes() {
    let f = fx();
    let (_, good) = f
        .endorsed()
        .writes(CC, vec![write("a", b"1")])
        .build()
        .unwrap();
    let (_, bad) = f.tx().endorsed_by(&f.peer1).build().unwrap();
    let mut block = f.block(&[good, bad]);
    let v = BlockValidator::new(CHANNEL, 2);
    let out = v
        .validate(&block, &f.config, &state(), &MemTxIds::default())
        .unwrap();
    set_tx_filter(&mut block, &out.codes);
    assert_eq!(block.metadata.as_ref().unwrap().metadata[2], vec![0, 10]);
    assert_eq!(
        tx_filter(&block),
        vec![Code::Valid, Code::EndorsementPolicyFailure]
    );
    // The filter is not covered by the orderer signatures.
    v.verify_block(&block, &f.config).unwrap();
}

/// Block 1 holding a CONFIG envelope (by orderer0) with the genesis config
/// at `sequence`.
fn config_block(sequence: u64) -> twill_protos::common::Block {
    let f = fx();
    let (_, genesis_env) = config_from_block(f.net.genesis()).unwrap();
    let mut config = genesis_env.config.unwrap();
    config.sequence = sequence;
    let data = ConfigEnvelope {
        config: Some(config),
        last_update: None,
    }
    .encode_to_vec();
    let creator = f.orderer.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = twill_configtx::block::compute_tx_id(&nonce, &creator);
    let ch = channel_header(HeaderType::Config, 0, CHANNEL, &tx_id);
    let mut env = envelope(&ch, &SignatureHeader { creator, nonce }, data);
    env.signature = f.orderer.sign(&env.payload).unwrap();
    let prev = f.net.genesis().header.clone().unwrap();
    let mut block = new_block(
        1,
        block_header_hash(&prev).to_vec(),
        vec![env.encode_to_vec()],
    );
    sign_block(&mut block, &f.orderer, 1).unwrap();
    block
}

#[test]
fn config_block_yields_new_config() {
    let f = fx();
    let block = config_block(f.config.config.sequence + 1);
    let v = BlockValidator::new(CHANNEL, 1);
    v.verify_block(&block, &f.config).unwrap();
    let out = v
        .validate(&block, &f.config, &state(), &MemTxIds::default())
        .unwrap();
    assert_eq!(out.codes, vec![Code::Valid]);
    assert!(out.batch.is_empty());
    let next = out.new_config.expect("new config");
    assert_eq!(next.config.sequence, f.config.config.sequence + 1);
}

#[test]
fn config_block_with_wrong_sequence_is_refused() {
    let f = fx();
    let block = config_block(f.config.config.sequence + 5);
    let err = BlockValidator::new(CHANNEL, 1)
        .validate(&block, &f.config, &state(), &MemTxIds::default())
        .unwrap_err();
    assert!(
        matches!(err, ValidationError::ConfigSequence { .. }),
        "{err}"
    );
}
