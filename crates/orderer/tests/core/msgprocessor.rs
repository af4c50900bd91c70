use std::time::{Duration, SystemTime};

use prost::Message;
use twill_configtx::channel::ChannelConfig;
use twill_configtx::update::{compute_update, config_update_tx, sign_config_update};
use twill_msp::SigningIdentity;
use twill_orderer::msgprocessor::{
    check_config_envelope, check_deliver_seek, check_deliver_seek_at, check_normal,
    check_normal_at, classify, process_config_update, Classification, Reject,
};
use twill_protos::common::{
    ChannelHeader, ConfigEnvelope, ConfigUpdateEnvelope, Envelope, HeaderType, Payload,
    SignatureHeader, Status,
};
use twill_protos::orderer::{seek_position, SeekInfo, SeekNewest, SeekPosition};

use crate::{config_of, signed_env, Net, CHANNEL};

fn normal(env: &Envelope, cfg: &ChannelConfig) -> Result<(), Reject> {
    check_normal(env.encoded_len(), env, cfg)
}

fn assert_reject(r: Result<impl std::fmt::Debug, Reject>, status: Status, needles: &[&str]) {
    let err = r.expect_err("expected a rejection");
    assert_eq!(err.status, status, "{err}");
    for n in needles {
        assert!(err.info.contains(n), "{n:?} not in {:?}", err.info);
    }
}

/// A CONFIG_UPDATE adding policy `/Channel/Application/MyPolicy` (a copy of
/// the Application Readers policy), signed by `signers`, submitted by
/// Org1's admin.
pub fn add_policy_update(net: &Net, cfg: &ChannelConfig, signers: &[&SigningIdentity]) -> Envelope {
    let mut desired = cfg.config.clone();
    let app = desired
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap();
    let readers = app.policies["Readers"].clone();
    app.policies.insert("MyPolicy".into(), readers);
    let update = compute_update(CHANNEL, &cfg.config, &desired).unwrap();
    let bytes = update.encode_to_vec();
    let update_env = ConfigUpdateEnvelope {
        signatures: signers
            .iter()
            .map(|s| sign_config_update(&bytes, s).unwrap())
            .collect(),
        config_update: bytes,
    };
    let submitter = net.user("org1", "Org1MSP", "Admin");
    config_update_tx(CHANNEL, &update_env, &submitter).unwrap()
}

fn seek_info() -> Vec<u8> {
    let newest = SeekPosition {
        r#type: Some(seek_position::Type::Newest(SeekNewest {})),
    };
    SeekInfo {
        start: Some(newest),
        stop: Some(newest),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn valid_transactions_pass() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let user1 = net.user("org1", "Org1MSP", "User1");
    let env = signed_env(
        &user1,
        HeaderType::EndorserTransaction,
        CHANNEL,
        vec![1; 64],
    );
    let (class, ch) = classify(&env).unwrap();
    assert_eq!(class, Classification::Normal);
    assert_eq!(ch.channel_id, CHANNEL);
    normal(&env, &cfg).unwrap();

    let msg = signed_env(&user1, HeaderType::Message, CHANNEL, b"hello".to_vec());
    normal(&msg, &cfg).unwrap();

    let admin2 = net.user("org2", "Org2MSP", "Admin");
    let env = signed_env(
        &admin2,
        HeaderType::EndorserTransaction,
        CHANNEL,
        vec![2; 8],
    );
    normal(&env, &cfg).unwrap();

    // Orderer org members write through /Channel/Orderer/Writers.
    let orderer = net.orderer("orderer1");
    let env = signed_env(&orderer, HeaderType::Message, CHANNEL, vec![3]);
    normal(&env, &cfg).unwrap();
}

#[test]
fn oversized_and_empty_are_bad_requests() {
    let net = Net::new();
    let mut cfg = config_of(&net.genesis());
    let user1 = net.user("org1", "Org1MSP", "User1");
    let env = signed_env(
        &user1,
        HeaderType::EndorserTransaction,
        CHANNEL,
        vec![7; 2000],
    );
    let len = env.encoded_len();
    cfg.batch_size.absolute_max_bytes = 1000;
    let err = normal(&env, &cfg).unwrap_err();
    assert_eq!(
        err,
        Reject {
            status: Status::BadRequest,
            info: format!("message payload is {len} bytes and exceeds maximum allowed 1000 bytes"),
        }
    );
    cfg.batch_size.absolute_max_bytes = len as u32;
    normal(&env, &cfg).unwrap();

    let empty = Envelope::default();
    assert_reject(
        normal(&empty, &cfg),
        Status::BadRequest,
        &["message was empty"],
    );
}

#[test]
fn bad_signatures_are_forbidden() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let user1 = net.user("org1", "Org1MSP", "User1");
    let mut env = signed_env(
        &user1,
        HeaderType::EndorserTransaction,
        CHANNEL,
        vec![1; 32],
    );
    let good_sig = env.signature.clone();

    let last = env.signature.len() - 1;
    env.signature[last] ^= 0x01;
    assert_reject(
        normal(&env, &cfg),
        Status::Forbidden,
        &["signature", "invalid", "Org1MSP"],
    );

    env.signature = Vec::new();
    assert_reject(
        normal(&env, &cfg),
        Status::Forbidden,
        &["signature", "invalid"],
    );

    // A valid signature by someone else over the same payload.
    env.signature = net
        .user("org2", "Org2MSP", "User1")
        .sign(&env.payload)
        .unwrap();
    assert_reject(
        normal(&env, &cfg),
        Status::Forbidden,
        &["signature", "invalid"],
    );

    // The payload changed after signing.
    env.signature = good_sig;
    let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
    payload.data.push(0);
    env.payload = payload.encode_to_vec();
    assert_reject(
        normal(&env, &cfg),
        Status::Forbidden,
        &["signature", "invalid"],
    );
}

#[test]
fn creators_outside_the_channel_are_forbidden() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());

    let org3 = net.user("org3", "Org3MSP", "User1");
    let env = signed_env(&org3, HeaderType::EndorserTransaction, CHANNEL, vec![1]);
    assert_reject(
        normal(&env, &cfg),
        Status::Forbidden,
        &["'Org3MSP'", "not a member"],
    );

    // An Org3 certificate claiming to be of Org1MSP does not chain.
    let mut env = signed_env(&org3, HeaderType::EndorserTransaction, CHANNEL, vec![1]);
    let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
    let header = payload.header.as_mut().unwrap();
    let mut sh = SignatureHeader::decode(header.signature_header.as_slice()).unwrap();
    let mut sid = twill_protos::msp::SerializedIdentity::decode(sh.creator.as_slice()).unwrap();
    sid.mspid = "Org1MSP".into();
    sh.creator = sid.encode_to_vec();
    header.signature_header = sh.encode_to_vec();
    env.payload = payload.encode_to_vec();
    env.signature = org3.sign(&env.payload).unwrap();
    assert_reject(normal(&env, &cfg), Status::Forbidden, &["not valid"]);

    // Garbage creator bytes.
    let mut env = signed_env(&org3, HeaderType::EndorserTransaction, CHANNEL, vec![1]);
    let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
    payload.header.as_mut().unwrap().signature_header = SignatureHeader {
        creator: vec![0xff, 0x00, 0x13],
        nonce: vec![1],
    }
    .encode_to_vec();
    env.payload = payload.encode_to_vec();
    assert_reject(
        normal(&env, &cfg),
        Status::Forbidden,
        &["does not deserialize"],
    );

    // A peer is a channel member but not a writer: Org1 Writers are admin or client.
    let peer = net.peer("org1", "Org1MSP");
    let env = signed_env(&peer, HeaderType::EndorserTransaction, CHANNEL, vec![1]);
    assert_reject(
        normal(&env, &cfg),
        Status::Forbidden,
        &["/Channel/Writers", "Org1MSP"],
    );
}

#[test]
fn expired_creator_is_forbidden() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let user1 = net.user("org1", "Org1MSP", "User1");
    let env = signed_env(&user1, HeaderType::EndorserTransaction, CHANNEL, vec![1]);
    let now = SystemTime::now();
    check_normal_at(env.encoded_len(), &env, &cfg, now).unwrap();
    let later = now + Duration::from_secs(200 * 365 * 24 * 3600);
    assert_reject(
        check_normal_at(env.encoded_len(), &env, &cfg, later),
        Status::Forbidden,
        &["expired"],
    );
}

#[test]
fn wrong_header_types_are_bad_requests() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let user1 = net.user("org1", "Org1MSP", "User1");

    let config = signed_env(&user1, HeaderType::Config, CHANNEL, vec![]);
    assert_reject(
        normal(&config, &cfg),
        Status::BadRequest,
        &["CONFIG", "CONFIG_UPDATE"],
    );

    let seek = signed_env(&user1, HeaderType::DeliverSeekInfo, CHANNEL, seek_info());
    assert_reject(
        normal(&seek, &cfg),
        Status::BadRequest,
        &["DELIVER_SEEK_INFO"],
    );

    let unknown = {
        let ch = ChannelHeader {
            r#type: 77,
            channel_id: CHANNEL.into(),
            ..Default::default()
        };
        let creator = user1.serialize();
        let mut env = twill_configtx::block::envelope(
            &ch,
            &SignatureHeader {
                creator,
                nonce: vec![1],
            },
            vec![],
        );
        env.signature = user1.sign(&env.payload).unwrap();
        env
    };
    assert_reject(normal(&unknown, &cfg), Status::BadRequest, &["UNKNOWN(77)"]);

    let update = add_policy_update(&net, &cfg, &[]);
    assert_eq!(classify(&update).unwrap().0, Classification::ConfigUpdate);
    assert_reject(
        normal(&update, &cfg),
        Status::BadRequest,
        &["CONFIG_UPDATE"],
    );
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_never_panics() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let orderer = net.orderer("orderer0");
    let user1 = net.user("org1", "Org1MSP", "User1");
    let valid = signed_env(
        &user1,
        HeaderType::EndorserTransaction,
        CHANNEL,
        vec![1; 16],
    );

    let mut envs = Vec::new();
    for seed in 0..400u64 {
        let len = (seed % 97) as usize;
        let bytes = noise(seed, len);
        // As raw envelope bytes, as a payload, and as a truncated valid payload.
        if let Ok(env) = Envelope::decode(bytes.as_slice()) {
            envs.push(env);
        }
        envs.push(Envelope {
            payload: bytes.clone(),
            signature: noise(seed + 1, 70),
        });
        let cut = (seed as usize * 7) % valid.payload.len();
        envs.push(Envelope {
            payload: valid.payload[..cut].to_vec(),
            signature: valid.signature.clone(),
        });
        // Valid headers, garbage data.
        envs.push(signed_env(
            &user1,
            HeaderType::Config,
            CHANNEL,
            bytes.clone(),
        ));
        envs.push(signed_env(
            &user1,
            HeaderType::ConfigUpdate,
            CHANNEL,
            bytes.clone(),
        ));
        envs.push(signed_env(
            &user1,
            HeaderType::DeliverSeekInfo,
            CHANNEL,
            bytes,
        ));
    }
    for env in &envs {
        let results = [
            classify(env).err(),
            check_normal(env.encoded_len(), env, &cfg).err(),
            process_config_update(env, &cfg, CHANNEL, &orderer).err(),
            check_config_envelope(env, &cfg).err(),
            check_deliver_seek(env, &cfg).err(),
        ];
        for r in results.into_iter().flatten() {
            assert!(
                matches!(r.status, Status::BadRequest | Status::Forbidden),
                "{r}"
            );
            assert!(!r.info.is_empty());
        }
    }
}

#[test]
fn deliver_seek_checks() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let user1 = net.user("org1", "Org1MSP", "User1");

    let env = signed_env(&user1, HeaderType::DeliverSeekInfo, CHANNEL, seek_info());
    let seek = check_deliver_seek(&env, &cfg).unwrap();
    assert!(matches!(
        seek.start.unwrap().r#type,
        Some(seek_position::Type::Newest(_))
    ));

    // Peers read blocks.
    let peer = net.peer("org2", "Org2MSP");
    let env = signed_env(&peer, HeaderType::DeliverSeekInfo, CHANNEL, seek_info());
    check_deliver_seek(&env, &cfg).unwrap();

    // Org3 is outside the channel, hence outside /Channel/Readers.
    let org3 = net.user("org3", "Org3MSP", "User1");
    let env = signed_env(&org3, HeaderType::DeliverSeekInfo, CHANNEL, seek_info());
    assert_reject(
        check_deliver_seek(&env, &cfg),
        Status::Forbidden,
        &["Org3MSP"],
    );

    // Tampered signature.
    let mut env = signed_env(&user1, HeaderType::DeliverSeekInfo, CHANNEL, seek_info());
    env.signature[10] ^= 0x40;
    assert_reject(
        check_deliver_seek(&env, &cfg),
        Status::Forbidden,
        &["signature"],
    );

    // Wrong type, bad seek info, missing stop.
    let env = signed_env(
        &user1,
        HeaderType::EndorserTransaction,
        CHANNEL,
        seek_info(),
    );
    assert_reject(
        check_deliver_seek(&env, &cfg),
        Status::BadRequest,
        &["DELIVER_SEEK_INFO"],
    );
    let env = signed_env(
        &user1,
        HeaderType::DeliverSeekInfo,
        CHANNEL,
        vec![0xff, 0xff],
    );
    assert_reject(
        check_deliver_seek(&env, &cfg),
        Status::BadRequest,
        &["SeekInfo"],
    );
    let no_stop = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(seek_position::Type::Newest(SeekNewest {})),
        }),
        ..Default::default()
    };
    let env = signed_env(
        &user1,
        HeaderType::DeliverSeekInfo,
        CHANNEL,
        no_stop.encode_to_vec(),
    );
    assert_reject(
        check_deliver_seek(&env, &cfg),
        Status::BadRequest,
        &["start or stop"],
    );

    // A request stamped long ago (a replay) is refused.
    let env = signed_env(&user1, HeaderType::DeliverSeekInfo, CHANNEL, seek_info());
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_reject(
        check_deliver_seek_at(&env, &cfg, later),
        Status::BadRequest,
        &["timestamp"],
    );
}

#[test]
fn config_update_needs_the_admins() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let orderer = net.orderer("orderer0");
    let admin1 = net.user("org1", "Org1MSP", "Admin");
    let admin2 = net.user("org2", "Org2MSP", "Admin");

    // Only Org1's admin: MAJORITY of Application Admins is not met.
    let update = add_policy_update(&net, &cfg, &[&admin1]);
    assert_eq!(classify(&update).unwrap().0, Classification::ConfigUpdate);
    assert_reject(
        process_config_update(&update, &cfg, CHANNEL, &orderer),
        Status::Forbidden,
        &["/Channel/Application/Admins", "mychannel"],
    );

    // Both admins: a CONFIG envelope, signed by the orderer.
    let update = add_policy_update(&net, &cfg, &[&admin1, &admin2]);
    let (config_env, next) = process_config_update(&update, &cfg, CHANNEL, &orderer).unwrap();
    assert_eq!(next.sequence, 1);
    assert!(next.channel_group.as_ref().unwrap().groups["Application"]
        .policies
        .contains_key("MyPolicy"));

    let payload = Payload::decode(config_env.payload.as_slice()).unwrap();
    let header = payload.header.as_ref().unwrap();
    let ch = ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
    assert_eq!(ch.r#type, HeaderType::Config as i32);
    assert_eq!(ch.channel_id, CHANNEL);
    let sh = SignatureHeader::decode(header.signature_header.as_slice()).unwrap();
    assert_eq!(sh.creator, orderer.serialize());
    assert_eq!(
        ch.tx_id,
        twill_configtx::block::compute_tx_id(&sh.nonce, &sh.creator)
    );
    orderer
        .identity()
        .verify(&config_env.payload, &config_env.signature)
        .unwrap();
    let ce = ConfigEnvelope::decode(payload.data.as_slice()).unwrap();
    assert_eq!(ce.config.as_ref(), Some(&next));
    assert_eq!(ce.last_update.as_ref(), Some(&update));

    // Applying: accepted against the config it was built on...
    assert_eq!(check_config_envelope(&config_env, &cfg).unwrap(), next);
    // ...and refused once that config has moved on.
    let new_cfg = ChannelConfig::from_config(&next).unwrap();
    assert_reject(
        check_config_envelope(&config_env, &new_cfg),
        Status::BadRequest,
        &["sequence"],
    );
    // The same update submitted again is stale.
    assert_reject(
        process_config_update(&update, &new_cfg, CHANNEL, &orderer),
        Status::BadRequest,
        &["mychannel"],
    );

    // A CONFIG envelope whose config differs from what its last_update makes.
    let mut forged_ce = ce.clone();
    forged_ce
        .config
        .as_mut()
        .unwrap()
        .channel_group
        .as_mut()
        .unwrap()
        .mod_policy = "Readers".into();
    let forged = signed_env(
        &orderer,
        HeaderType::Config,
        CHANNEL,
        forged_ce.encode_to_vec(),
    );
    assert_reject(
        check_config_envelope(&forged, &cfg),
        Status::BadRequest,
        &["last_update"],
    );
    // A CONFIG envelope carrying an under-signed update.
    let weak = add_policy_update(&net, &cfg, &[&admin1]);
    let weak_ce = ConfigEnvelope {
        config: Some(next.clone()),
        last_update: Some(weak),
    };
    let weak_env = signed_env(
        &orderer,
        HeaderType::Config,
        CHANNEL,
        weak_ce.encode_to_vec(),
    );
    assert_reject(
        check_config_envelope(&weak_env, &cfg),
        Status::Forbidden,
        &["/Channel/Application/Admins"],
    );
}

#[test]
fn config_update_submitter_must_be_a_writer() {
    let net = Net::new();
    let cfg = config_of(&net.genesis());
    let orderer = net.orderer("orderer0");
    let admin1 = net.user("org1", "Org1MSP", "Admin");
    let admin2 = net.user("org2", "Org2MSP", "Admin");
    let update = add_policy_update(&net, &cfg, &[&admin1, &admin2]);

    // Re-wrap the same signed update, submitted by a peer (not a writer).
    let (_, update_env) = twill_configtx::update::config_update_from_envelope(&update).unwrap();
    let peer = net.peer("org1", "Org1MSP");
    let by_peer = config_update_tx(CHANNEL, &update_env, &peer).unwrap();
    assert_reject(
        process_config_update(&by_peer, &cfg, CHANNEL, &orderer),
        Status::Forbidden,
        &["/Channel/Writers", "initial checks"],
    );

    // Addressed to another channel.
    assert_reject(
        process_config_update(&update, &cfg, "otherchannel", &orderer),
        Status::BadRequest,
        &["otherchannel"],
    );

    // The orderer signing the CONFIG envelope must itself be a writer.
    let user_as_orderer = net.user("org3", "Org3MSP", "User1");
    assert_reject(
        process_config_update(&update, &cfg, CHANNEL, &user_as_orderer),
        Status::Forbidden,
        &["final checks", "Org3MSP"],
    );
}
