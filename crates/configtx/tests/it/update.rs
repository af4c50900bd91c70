use prost::Message;
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_configtx::genesis::{build_channel_group, genesis_block_from_profile};
use twill_configtx::update::{
    compute_update, config_update_from_envelope, config_update_tx, sign_config_update,
    validate_update,
};
use twill_configtx::ConfigtxError;
use twill_protos::common::{Config, ConfigUpdateEnvelope};
use twill_protos::orderer::BatchSize;

use crate::Net;

fn genesis_config(net: &Net) -> ChannelConfig {
    let block =
        genesis_block_from_profile(&net.configtx(), "TwoOrgsApplicationGenesis", "mychannel")
            .unwrap();
    let (_, env) = config_from_block(&block).unwrap();
    ChannelConfig::from_config(&env.config.unwrap()).unwrap()
}

/// The current config with Org3MSP added to the Application group.
fn with_org3(net: &Net, current: &Config) -> Config {
    let three = build_channel_group(&net.configtx(), "ThreeOrgs").unwrap();
    let org3 = three.groups["Application"].groups["Org3MSP"].clone();
    let mut next = current.clone();
    next.channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap()
        .groups
        .insert("Org3MSP".into(), org3);
    next
}

fn signed(
    update: &twill_protos::common::ConfigUpdate,
    signers: &[&twill_msp::SigningIdentity],
) -> ConfigUpdateEnvelope {
    let bytes = update.encode_to_vec();
    ConfigUpdateEnvelope {
        signatures: signers
            .iter()
            .map(|s| sign_config_update(&bytes, s).unwrap())
            .collect(),
        config_update: bytes,
    }
}

#[test]
fn adding_an_org_needs_a_majority_of_admins() {
    let net = Net::new();
    let current = genesis_config(&net);
    let desired = with_org3(&net, &current.config);
    let update = compute_update("mychannel", &current.config, &desired).unwrap();
    let app_write = &update.write_set.as_ref().unwrap().groups["Application"];
    assert_eq!(app_write.version, 1, "membership change bumps Application");
    assert_eq!(app_write.groups["Org3MSP"].version, 0);

    let org1 = net.signer("org1.example.com", "Org1MSP", "Admin");
    let org2 = net.signer("org2.example.com", "Org2MSP", "Admin");

    // One of two admins: MAJORITY Admins is not met.
    let err = validate_update(&current, "mychannel", &signed(&update, &[&org1])).unwrap_err();
    match &err {
        ConfigtxError::ModPolicyNotSatisfied { path, policy, .. } => {
            assert!(path.contains("/Channel/Application"), "{path}");
            assert_eq!(policy, "/Channel/Application/Admins");
        }
        other => panic!("expected ModPolicyNotSatisfied, got {other}"),
    }

    // The same admin signing twice still counts once.
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &org1])).unwrap_err();
    assert!(
        matches!(err, ConfigtxError::ModPolicyNotSatisfied { .. }),
        "{err}"
    );

    // A client (non-admin) of org2 does not help either.
    let user2 = net.signer("org2.example.com", "Org2MSP", "User1");
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &user2])).unwrap_err();
    assert!(
        matches!(err, ConfigtxError::ModPolicyNotSatisfied { .. }),
        "{err}"
    );

    // Both admins: accepted, and the next config has Org3.
    let env = signed(&update, &[&org1, &org2]);
    let next = validate_update(&current, "mychannel", &env).unwrap();
    assert_eq!(next.sequence, 1);
    let view = ChannelConfig::from_config(&next).unwrap();
    assert!(view.application_orgs.contains_key("Org3MSP"));
    assert!(view.msps.get("Org3MSP").is_some());
    assert_eq!(
        next.channel_group.as_ref().unwrap().groups["Application"].version,
        1
    );
    // Untouched parts stay as they were.
    assert_eq!(
        next.channel_group.as_ref().unwrap().groups["Orderer"],
        current.config.channel_group.as_ref().unwrap().groups["Orderer"]
    );

    // Replaying the same update on the new config: its read set is stale.
    let err = validate_update(&view, "mychannel", &env).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigtxError::StaleReadSet { .. } | ConfigtxError::BadVersion { .. }
        ),
        "{err}"
    );
}

#[test]
fn stale_version_is_rejected() {
    let net = Net::new();
    let current = genesis_config(&net);
    let desired = with_org3(&net, &current.config);
    let mut update = compute_update("mychannel", &current.config, &desired).unwrap();
    // Claim to have read an older Application version than the current one.
    update
        .read_set
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap()
        .version = 7;
    let org1 = net.signer("org1.example.com", "Org1MSP", "Admin");
    let org2 = net.signer("org2.example.com", "Org2MSP", "Admin");
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &org2])).unwrap_err();
    match err {
        ConfigtxError::StaleReadSet { current, read, .. } => assert_eq!((current, read), (0, 7)),
        other => panic!("expected StaleReadSet, got {other}"),
    }

    // A write that skips a version is refused too.
    let mut update = compute_update("mychannel", &current.config, &desired).unwrap();
    update
        .write_set
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap()
        .version = 5;
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &org2])).unwrap_err();
    assert!(
        matches!(err, ConfigtxError::BadVersion { attempted: 5, .. }),
        "{err}"
    );
}

#[test]
fn orderer_values_are_governed_by_orderer_admins() {
    let net = Net::new();
    let current = genesis_config(&net);
    let mut desired = current.config.clone();
    let orderer = desired
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Orderer")
        .unwrap();
    let bs = orderer.values.get_mut("BatchSize").unwrap();
    let mut size = BatchSize::decode(bs.value.as_slice()).unwrap();
    size.max_message_count = 100;
    bs.value = size.encode_to_vec();
    let update = compute_update("mychannel", &current.config, &desired).unwrap();
    assert_eq!(
        update.write_set.as_ref().unwrap().groups["Orderer"].values["BatchSize"].version,
        1
    );

    let org1 = net.signer("org1.example.com", "Org1MSP", "Admin");
    let org2 = net.signer("org2.example.com", "Org2MSP", "Admin");
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &org2])).unwrap_err();
    assert!(
        matches!(err, ConfigtxError::ModPolicyNotSatisfied { .. }),
        "{err}"
    );

    let ord = net.signer("example.com", "OrdererMSP", "Admin");
    let next = validate_update(&current, "mychannel", &signed(&update, &[&ord])).unwrap();
    let view = ChannelConfig::from_config(&next).unwrap();
    assert_eq!(view.batch_size.max_message_count, 100);
}

#[test]
fn update_travels_in_a_signed_config_update_envelope() {
    let net = Net::new();
    let current = genesis_config(&net);
    let desired = with_org3(&net, &current.config);
    let update = compute_update("mychannel", &current.config, &desired).unwrap();
    let org1 = net.signer("org1.example.com", "Org1MSP", "Admin");
    let org2 = net.signer("org2.example.com", "Org2MSP", "Admin");
    let env = signed(&update, &[&org1, &org2]);
    let tx = config_update_tx("mychannel", &env, &org1).unwrap();
    let (channel, back) = config_update_from_envelope(&tx).unwrap();
    assert_eq!(channel, "mychannel");
    assert_eq!(back, env);
    assert!(!tx.signature.is_empty());
    // Wrong channel is refused.
    let err = validate_update(&current, "otherchannel", &back).unwrap_err();
    assert!(matches!(err, ConfigtxError::WrongChannel { .. }));
    // Garbage is a decode error, not a panic.
    let bad = ConfigUpdateEnvelope {
        config_update: vec![0xff, 0xff, 0xff],
        signatures: vec![],
    };
    assert!(matches!(
        validate_update(&current, "mychannel", &bad).unwrap_err(),
        ConfigtxError::Decode { .. }
    ));
}

#[test]
fn no_change_is_an_empty_update() {
    let net = Net::new();
    let current = genesis_config(&net);
    assert!(matches!(
        compute_update("mychannel", &current.config, &current.config).unwrap_err(),
        ConfigtxError::EmptyUpdate
    ));
}

#[test]
fn bad_names_and_mod_policies_are_refused() {
    let net = Net::new();
    let current = genesis_config(&net);
    let org1 = net.signer("org1.example.com", "Org1MSP", "Admin");
    let org2 = net.signer("org2.example.com", "Org2MSP", "Admin");

    // A name with '/' could alias another element's path.
    let mut desired = current.config.clone();
    let app = desired
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap();
    let msp = app.groups["Org1MSP"].values["MSP"].clone();
    app.values.insert("Org1MSP/MSP".into(), msp);
    let update = compute_update("mychannel", &current.config, &desired).unwrap();
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &org2])).unwrap_err();
    assert!(matches!(err, ConfigtxError::InvalidElement { .. }), "{err}");
    assert!(err.to_string().contains("contains '/'"), "{err}");

    // An empty mod_policy would lock the element forever.
    let mut desired = current.config.clone();
    desired
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap()
        .mod_policy = String::new();
    let update = compute_update("mychannel", &current.config, &desired).unwrap();
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &org2])).unwrap_err();
    assert!(err.to_string().contains("mod_policy is empty"), "{err}");
}

#[test]
fn unread_write_at_current_version_is_refused() {
    // Fabric: writing an element at its current version without reading it
    // is an attempt to set it to a version it already has.
    let net = Net::new();
    let current = genesis_config(&net);
    let desired = with_org3(&net, &current.config);
    let mut update = compute_update("mychannel", &current.config, &desired).unwrap();
    let app_read = update
        .read_set
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap();
    app_read.values.clear();
    app_read.policies.clear();
    let org1 = net.signer("org1.example.com", "Org1MSP", "Admin");
    let org2 = net.signer("org2.example.com", "Org2MSP", "Admin");
    let err =
        validate_update(&current, "mychannel", &signed(&update, &[&org1, &org2])).unwrap_err();
    assert!(matches!(err, ConfigtxError::BadVersion { .. }), "{err}");
}
