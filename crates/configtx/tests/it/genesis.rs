use prost::Message;
use twill_configtx::block::{block_data_hash, block_header_hash};
use twill_configtx::channel::{config_from_block, ChannelConfig};
use twill_configtx::genesis::genesis_block_from_profile;
use twill_configtx::profile::LoadedConfigtx;
use twill_configtx::ConfigtxError;
use twill_protos::common::{
    implicit_meta_policy::Rule, policy::PolicyType, Block, HeaderType, ImplicitMetaPolicy,
};

use crate::Net;

#[test]
fn test_network_genesis_block_has_orgs_consenters_batch_and_policies() {
    let net = Net::new();
    let cfg = net.configtx();
    let block = genesis_block_from_profile(&cfg, "TwoOrgsApplicationGenesis", "mychannel").unwrap();

    // Survives encoding.
    let block = Block::decode(block.encode_to_vec().as_slice()).unwrap();
    let header = block.header.clone().unwrap();
    assert_eq!(header.number, 0);
    assert!(header.previous_hash.is_empty());
    assert_eq!(
        header.data_hash,
        block_data_hash(block.data.as_ref().unwrap()).to_vec()
    );
    assert_eq!(block_header_hash(&header).len(), 32);
    assert_eq!(block.metadata.as_ref().unwrap().metadata.len(), 5);

    let (ch, env) = config_from_block(&block).unwrap();
    assert_eq!(ch.r#type, HeaderType::Config as i32);
    assert_eq!(ch.channel_id, "mychannel");
    assert_eq!(ch.tx_id.len(), 64);
    let config = env.config.unwrap();
    assert_eq!(config.sequence, 0);

    let view = ChannelConfig::from_config(&config).unwrap();
    let app: Vec<_> = view
        .application_orgs
        .values()
        .map(|o| o.msp_id.as_str())
        .collect();
    assert_eq!(app, ["Org1MSP", "Org2MSP"]);
    assert_eq!(
        view.application_orgs["Org1MSP"].anchor_peers,
        [("127.0.0.1".to_string(), 7051)]
    );
    assert_eq!(
        view.application_orgs["Org2MSP"].anchor_peers,
        [("127.0.0.1".to_string(), 9051)]
    );
    let ord: Vec<_> = view
        .orderer_orgs
        .values()
        .map(|o| o.msp_id.as_str())
        .collect();
    assert_eq!(ord, ["OrdererMSP"]);
    assert_eq!(view.orderer_orgs["OrdererOrg"].endpoints.len(), 3);
    assert_eq!(view.msps.msp_ids().len(), 3);

    let ports: Vec<u32> = view.raft.consenters.iter().map(|c| c.port).collect();
    assert_eq!(ports, [7055, 8055, 9055]);
    for c in &view.raft.consenters {
        assert_eq!(c.host, "127.0.0.1");
        assert!(c
            .server_tls_cert
            .starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert!(!c.client_tls_cert.is_empty());
    }
    let opts = view.raft.options.clone().unwrap();
    assert_eq!(
        (
            opts.tick_interval.as_str(),
            opts.election_tick,
            opts.heartbeat_tick
        ),
        ("500ms", 10, 1)
    );
    assert_eq!(opts.snapshot_interval_size, 16 * 1024 * 1024);

    assert_eq!(view.batch_size.max_message_count, 10);
    assert_eq!(view.batch_size.absolute_max_bytes, 99 * 1024 * 1024);
    assert_eq!(view.batch_size.preferred_max_bytes, 512 * 1024);
    assert_eq!(view.batch_timeout, std::time::Duration::from_secs(2));

    let root = config.channel_group.as_ref().unwrap();
    let app_group = &root.groups["Application"];
    let endorsement = app_group.policies["Endorsement"].policy.as_ref().unwrap();
    assert_eq!(endorsement.r#type, PolicyType::ImplicitMeta as i32);
    let imp = ImplicitMetaPolicy::decode(endorsement.value.as_slice()).unwrap();
    assert_eq!(imp.rule, Rule::Majority as i32);
    assert_eq!(imp.sub_policy, "Endorsement");
    assert_eq!(app_group.mod_policy, "Admins");
    assert!(root.groups["Orderer"]
        .policies
        .contains_key("BlockValidation"));
    // The profile sets no channel-level Addresses, so Fabric adds no OrdererAddresses value.
    assert!(!root.values.contains_key("OrdererAddresses"));
    assert_eq!(root.values["HashingAlgorithm"].mod_policy, "Admins");
    for p in [
        "/Channel/Readers",
        "/Channel/Application/Writers",
        "/Channel/Application/Org1MSP/Admins",
        "/Channel/Orderer/BlockValidation",
    ] {
        assert!(view.policies.get_policy(p).is_some(), "policy {p}");
    }
}

#[test]
fn unknown_profile_is_named() {
    let net = Net::new();
    let err =
        genesis_block_from_profile(&net.configtx(), "NoSuchProfile", "mychannel").unwrap_err();
    assert!(matches!(err, ConfigtxError::UnknownProfile { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("NoSuchProfile") && msg.contains("TwoOrgsApplicationGenesis"),
        "{msg}"
    );
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configtx.yaml");
    std::fs::write(&path, "Profiles:\n  P:\n    Orderer: [unclosed\n").unwrap();
    let err = LoadedConfigtx::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigtxError::Yaml { .. }));
    assert!(
        msg.contains("configtx.yaml") && msg.contains("line"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[test]
fn unknown_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configtx.yaml");
    std::fs::write(&path, "Profiles:\n  P:\n    Orderr: {}\n").unwrap();
    let msg = LoadedConfigtx::load(&path).unwrap_err().to_string();
    assert!(msg.contains("Orderr"), "{msg}");
}

#[test]
fn missing_msp_dir_names_the_field() {
    let net = Net::new();
    let path = net.configtx_path();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "peerOrganizations/org2.example.com/msp",
        "peerOrganizations/nowhere/msp",
    );
    std::fs::write(&path, text).unwrap();
    let err = genesis_block_from_profile(&net.configtx(), "TwoOrgsApplicationGenesis", "mychannel")
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("Application.Organizations[1].MSPDir"), "{msg}");
    assert!(msg.contains("nowhere"), "{msg}");
}

#[test]
fn bad_policy_rule_names_the_field() {
    let net = Net::new();
    let path = net.configtx_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"OR('Org1MSP.admin')\"", "\"OR('Org1MSP.boss')\"");
    std::fs::write(&path, text).unwrap();
    let err = genesis_block_from_profile(&net.configtx(), "TwoOrgsApplicationGenesis", "mychannel")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Organizations[0].Policies.Admins.Rule"),
        "{msg}"
    );
    assert!(msg.contains("boss"), "{msg}");
}

#[test]
fn bad_channel_id_is_refused() {
    let net = Net::new();
    let err =
        genesis_block_from_profile(&net.configtx(), "TwoOrgsApplicationGenesis", "My_Channel")
            .unwrap_err();
    assert!(matches!(err, ConfigtxError::InvalidChannelId { .. }));
}

#[test]
fn profile_without_application_is_refused() {
    let net = Net::new();
    let path = net.configtx_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("  OrdererOnly:\n    <<: *ChannelDefaults\n    Orderer:\n      <<: *OrdererDefaults\n      Organizations:\n        - *OrdererOrg\n");
    std::fs::write(&path, text).unwrap();
    let err = genesis_block_from_profile(&net.configtx(), "OrdererOnly", "mychannel").unwrap_err();
    assert!(err.to_string().contains("OrdererOnly.Application"), "{err}");
}

#[test]
fn raft_options_are_checked() {
    let net = Net::new();
    let path = net.configtx_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("ElectionTick: 10", "ElectionTick: 1");
    std::fs::write(&path, text).unwrap();
    let err = genesis_block_from_profile(&net.configtx(), "TwoOrgsApplicationGenesis", "mychannel")
        .unwrap_err();
    assert!(
        err.to_string().contains("EtcdRaft.Options.ElectionTick"),
        "{err}"
    );
}
