use std::sync::Arc;

use prost::Message;
use twill_configtx::block::block_header_hash;
use twill_orderer::writer::{
    consenter_metadata, is_config_block, last_config_index, verify_block_signatures, BlockWriter,
    WriterError,
};
use twill_policy::Policy;
use twill_protos::common::{
    Block, BlockMetadataIndex, HeaderType, LastConfig, Metadata, OrdererBlockMetadata,
    SignatureHeader,
};

use crate::{config_of, signed_env, Net, CHANNEL};

const BLOCK_VALIDATION: &str = "/Channel/Orderer/BlockValidation";

fn tx(net: &Net, n: u8) -> Vec<u8> {
    let user = net.user("org1", "Org1MSP", "User1");
    signed_env(&user, HeaderType::EndorserTransaction, CHANNEL, vec![n; 10]).encode_to_vec()
}

fn policy(block0: &Block) -> Arc<dyn Policy> {
    config_of(block0)
        .policies
        .get_policy(BLOCK_VALIDATION)
        .unwrap()
}

fn signatures_value(block: &Block) -> OrdererBlockMetadata {
    let md = Metadata::decode(
        block.metadata.as_ref().unwrap().metadata[BlockMetadataIndex::Signatures as usize]
            .as_slice(),
    )
    .unwrap();
    OrdererBlockMetadata::decode(md.value.as_slice()).unwrap()
}

#[test]
fn chain_of_blocks_is_consistent_and_signed() {
    let net = Net::new();
    let genesis = net.genesis();
    let policy = policy(&genesis);
    let signer = Arc::new(net.orderer("orderer0"));
    let mut w = BlockWriter::new(&genesis, signer.clone()).unwrap();
    assert_eq!(w.height(), 1);
    assert_eq!(w.last_config(), 0);
    assert_eq!(
        w.tip_hash(),
        block_header_hash(genesis.header.as_ref().unwrap())
    );

    let mut chain = vec![genesis];
    for i in 1..=3u8 {
        let mut b = w.create_next(vec![tx(&net, i), tx(&net, i + 10)]);
        assert!(
            verify_block_signatures(&b, policy.as_ref()).is_err(),
            "unsigned"
        );
        w.commit(&mut b, false, vec![i; 3]).unwrap();
        chain.push(b);
    }
    assert_eq!(w.height(), 4);

    for pair in chain.windows(2) {
        let (prev, b) = (&pair[0], &pair[1]);
        let h = b.header.as_ref().unwrap();
        assert_eq!(h.number, prev.header.as_ref().unwrap().number + 1);
        assert_eq!(
            h.previous_hash,
            block_header_hash(prev.header.as_ref().unwrap()).to_vec()
        );
        assert_eq!(
            h.data_hash,
            twill_configtx::block::block_data_hash(b.data.as_ref().unwrap()).to_vec()
        );
        assert_eq!(b.metadata.as_ref().unwrap().metadata.len(), 5);
        verify_block_signatures(b, policy.as_ref()).unwrap();
        assert_eq!(last_config_index(b).unwrap(), 0);
        assert_eq!(consenter_metadata(b).unwrap(), vec![h.number as u8; 3]);
        // Fabric's layout: consenter metadata wrapped in a Metadata message.
        let obm = signatures_value(b);
        assert_eq!(obm.last_config, Some(LastConfig { index: 0 }));
        assert_eq!(
            Metadata::decode(obm.consenter_metadata.as_slice())
                .unwrap()
                .value,
            vec![h.number as u8; 3]
        );
        // The deprecated LAST_CONFIG slot for old readers.
        #[allow(deprecated)]
        let lc_slot = BlockMetadataIndex::LastConfig as usize;
        let lc =
            Metadata::decode(b.metadata.as_ref().unwrap().metadata[lc_slot].as_slice()).unwrap();
        assert_eq!(
            LastConfig::decode(lc.value.as_slice()).unwrap(),
            LastConfig { index: 0 }
        );
        // The signer is the orderer.
        let md = Metadata::decode(
            b.metadata.as_ref().unwrap().metadata[BlockMetadataIndex::Signatures as usize]
                .as_slice(),
        )
        .unwrap();
        assert_eq!(md.signatures.len(), 1);
        let sh = SignatureHeader::decode(md.signatures[0].signature_header.as_slice()).unwrap();
        assert_eq!(sh.creator, signer.serialize());
        assert_eq!(sh.nonce.len(), 24);
    }

    // A writer resumed from the tip continues the same chain.
    let tip = chain.last().unwrap();
    let resumed = BlockWriter::new(tip, Arc::new(net.orderer("orderer1"))).unwrap();
    assert_eq!(resumed.height(), w.height());
    assert_eq!(resumed.tip_hash(), w.tip_hash());
    assert_eq!(resumed.last_config(), 0);
    let next_a = w.create_next(vec![tx(&net, 9)]);
    let next_b = resumed.create_next(next_a.data.clone().unwrap().data);
    assert_eq!(next_a.header, next_b.header);
}

#[test]
fn tampered_or_foreign_blocks_fail_verification() {
    let net = Net::new();
    let genesis = net.genesis();
    let policy = policy(&genesis);
    let mut w = BlockWriter::new(&genesis, Arc::new(net.orderer("orderer0"))).unwrap();
    let mut b = w.create_next(vec![tx(&net, 1)]);
    w.commit(&mut b, false, vec![]).unwrap();
    verify_block_signatures(&b, policy.as_ref()).unwrap();

    let mut tampered = b.clone();
    tampered.header.as_mut().unwrap().data_hash[0] ^= 1;
    let err = verify_block_signatures(&tampered, policy.as_ref()).unwrap_err();
    assert!(
        matches!(err, WriterError::PolicyNotSatisfied { number: 1, .. }),
        "{err}"
    );

    let mut renumbered = b.clone();
    renumbered.header.as_mut().unwrap().number = 2;
    assert!(verify_block_signatures(&renumbered, policy.as_ref()).is_err());

    // Changing the signed metadata value (e.g. the last config index) breaks it too.
    let mut relabelled = b.clone();
    let slot = BlockMetadataIndex::Signatures as usize;
    let mut md =
        Metadata::decode(relabelled.metadata.as_ref().unwrap().metadata[slot].as_slice()).unwrap();
    md.value = OrdererBlockMetadata {
        last_config: Some(LastConfig { index: 7 }),
        consenter_metadata: vec![],
    }
    .encode_to_vec();
    relabelled.metadata.as_mut().unwrap().metadata[slot] = md.encode_to_vec();
    assert!(verify_block_signatures(&relabelled, policy.as_ref()).is_err());

    // No signatures at all.
    let mut bare = b.clone();
    bare.metadata.as_mut().unwrap().metadata[slot].clear();
    assert!(matches!(
        verify_block_signatures(&bare, policy.as_ref()),
        Err(WriterError::NoSignatures { number: 1 })
    ));

    // Garbage in the slot is an error, not a panic.
    let mut garbage = b.clone();
    garbage.metadata.as_mut().unwrap().metadata[slot] = vec![0xff, 0xff, 0x01];
    assert!(verify_block_signatures(&garbage, policy.as_ref()).is_err());

    // A block signed by a client of Org1 is well formed but not an orderer's.
    let genesis2 = net.genesis();
    let mut w2 =
        BlockWriter::new(&genesis2, Arc::new(net.user("org1", "Org1MSP", "User1"))).unwrap();
    let mut foreign = w2.create_next(vec![tx(&net, 1)]);
    w2.commit(&mut foreign, false, vec![]).unwrap();
    let err = verify_block_signatures(&foreign, policy.as_ref()).unwrap_err();
    assert!(
        matches!(err, WriterError::PolicyNotSatisfied { .. }),
        "{err}"
    );
}

#[test]
fn commit_refuses_blocks_that_do_not_extend_the_tip() {
    let net = Net::new();
    let genesis = net.genesis();
    let mut w = BlockWriter::new(&genesis, Arc::new(net.orderer("orderer0"))).unwrap();
    let good = w.create_next(vec![tx(&net, 1)]);

    let mut wrong_number = good.clone();
    wrong_number.header.as_mut().unwrap().number = 5;
    assert!(matches!(
        w.commit(&mut wrong_number, false, vec![]),
        Err(WriterError::NotNext {
            number: 5,
            expected: 1
        })
    ));

    let mut wrong_prev = good.clone();
    wrong_prev.header.as_mut().unwrap().previous_hash = vec![0; 32];
    assert!(matches!(
        w.commit(&mut wrong_prev, false, vec![]),
        Err(WriterError::WrongPreviousHash { number: 1, .. })
    ));

    let mut wrong_data = good.clone();
    wrong_data
        .data
        .as_mut()
        .unwrap()
        .data
        .push(b"extra".to_vec());
    assert!(matches!(
        w.commit(&mut wrong_data, false, vec![]),
        Err(WriterError::WrongDataHash { number: 1 })
    ));

    // Claiming a normal block is a config block is refused.
    let mut not_config = good.clone();
    assert!(matches!(
        w.commit(&mut not_config, true, vec![]),
        Err(WriterError::Malformed { number: 1, .. })
    ));

    // None of this moved the tip.
    assert_eq!(w.height(), 1);
    let mut good = good;
    w.commit(&mut good, false, vec![]).unwrap();
    assert_eq!(w.height(), 2);
}

#[test]
fn last_config_follows_config_blocks() {
    use twill_orderer::msgprocessor::process_config_update;

    let net = Net::new();
    let genesis = net.genesis();
    let cfg = config_of(&genesis);
    let policy = policy(&genesis);
    let orderer = Arc::new(net.orderer("orderer0"));
    let mut w = BlockWriter::new(&genesis, orderer.clone()).unwrap();
    assert!(is_config_block(&genesis));

    // Block 1: normal.
    let mut b1 = w.create_next(vec![tx(&net, 1)]);
    w.commit(&mut b1, false, vec![]).unwrap();
    assert!(!is_config_block(&b1));

    // Block 2: a config update, processed into a CONFIG envelope.
    let update = crate::msgprocessor::add_policy_update(
        &net,
        &cfg,
        &[
            &net.user("org1", "Org1MSP", "Admin"),
            &net.user("org2", "Org2MSP", "Admin"),
        ],
    );
    let (config_env, next) = process_config_update(&update, &cfg, CHANNEL, &orderer).unwrap();
    assert_eq!(next.sequence, 1);
    let mut b2 = w.create_next(vec![config_env.encode_to_vec()]);
    assert!(is_config_block(&b2));
    w.commit(&mut b2, true, vec![]).unwrap();
    assert_eq!(w.last_config(), 2);
    assert_eq!(last_config_index(&b2).unwrap(), 2);

    // Block 3: normal, points back at block 2.
    let mut b3 = w.create_next(vec![tx(&net, 3)]);
    w.commit(&mut b3, false, vec![]).unwrap();
    assert_eq!(last_config_index(&b3).unwrap(), 2);
    assert_eq!(last_config_index(&b1).unwrap(), 0);

    for b in [&b1, &b2, &b3] {
        verify_block_signatures(b, policy.as_ref()).unwrap();
    }

    // Resuming from either tip recovers the index.
    let from_b3 = BlockWriter::new(&b3, orderer.clone()).unwrap();
    assert_eq!((from_b3.height(), from_b3.last_config()), (4, 2));
    let from_b2 = BlockWriter::new(&b2, orderer.clone()).unwrap();
    assert_eq!((from_b2.height(), from_b2.last_config()), (3, 2));
    let from_b1 = BlockWriter::new(&b1, orderer).unwrap();
    assert_eq!((from_b1.height(), from_b1.last_config()), (2, 0));
}
