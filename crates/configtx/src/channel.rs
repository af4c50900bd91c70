//! A typed view of a channel config: what a node needs to act on it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use twill_msp::{Msp, MspManager};
use twill_policy::PolicyManager;
use twill_protos::common::{
    Block, ChannelHeader, Config, ConfigEnvelope, ConfigGroup, Envelope, HeaderType, Payload,
};
use twill_protos::etcdraft;
use twill_protos::msp::MspConfig;
use twill_protos::orderer::{BatchSize, BatchTimeout, ConsensusType};
use twill_protos::peer::AnchorPeers;

use crate::{decode, keys, ConfigtxError, Result};

/// Takes the channel header and config out of a config block (block 0 or
/// any later CONFIG block).
pub fn config_from_block(block: &Block) -> Result<(ChannelHeader, ConfigEnvelope)> {
    let data = block
        .data
        .as_ref()
        .ok_or_else(|| ConfigtxError::NotConfig("block has no data".into()))?;
    if data.data.len() != 1 {
        return Err(ConfigtxError::NotConfig(format!(
            "a config block holds exactly one envelope, this one holds {}",
            data.data.len()
        )));
    }
    let env: Envelope = decode("Envelope", &data.data[0])?;
    let payload: Payload = decode("Payload", &env.payload)?;
    let header = payload
        .header
        .ok_or_else(|| ConfigtxError::NotConfig("payload has no header".into()))?;
    let ch: ChannelHeader = decode("ChannelHeader", &header.channel_header)?;
    if ch.r#type != HeaderType::Config as i32 {
        return Err(ConfigtxError::NotConfig(format!(
            "envelope type is {}, not CONFIG",
            ch.r#type
        )));
    }
    let config_env: ConfigEnvelope = decode("ConfigEnvelope", &payload.data)?;
    if config_env
        .config
        .as_ref()
        .and_then(|c| c.channel_group.as_ref())
        .is_none()
    {
        return Err(ConfigtxError::NotConfig(
            "config has no channel group".into(),
        ));
    }
    Ok((ch, config_env))
}

/// One organisation of the channel.
#[derive(Debug, Clone)]
pub struct OrgInfo {
    /// Group name.
    pub name: String,
    /// MSP id.
    pub msp_id: String,
    /// Anchor peers (`host`, `port`), application orgs only.
    pub anchor_peers: Vec<(String, u16)>,
    /// Orderer endpoints, orderer orgs only.
    pub endpoints: Vec<String>,
}

/// The parts of a channel config that nodes act on.
#[derive(Clone)]
pub struct ChannelConfig {
    /// The raw config.
    pub config: Config,
    /// Every org's MSP, application and orderer alike.
    pub msps: Arc<MspManager>,
    /// Policies by path.
    pub policies: Arc<PolicyManager>,
    /// Application organisations, by group name.
    pub application_orgs: BTreeMap<String, OrgInfo>,
    /// Orderer organisations, by group name.
    pub orderer_orgs: BTreeMap<String, OrgInfo>,
    /// Batch size limits.
    pub batch_size: BatchSize,
    /// Batch timeout.
    pub batch_timeout: Duration,
    /// Raft metadata (consenters and options).
    pub raft: etcdraft::ConfigMetadata,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("sequence", &self.config.sequence)
            .field("application_orgs", &self.application_orgs)
            .field("orderer_orgs", &self.orderer_orgs)
            .field("batch_size", &self.batch_size)
            .field("batch_timeout", &self.batch_timeout)
            .finish_non_exhaustive()
    }
}

impl ChannelConfig {
    /// Builds the typed view; fails on any malformed value.
    pub fn from_config(config: &Config) -> Result<ChannelConfig> {
        let root = config
            .channel_group
            .as_ref()
            .ok_or_else(|| ConfigtxError::NotConfig("config has no channel group".into()))?;
        let msps = Arc::new(msp_manager_from_group(root)?);
        let policies = Arc::new(PolicyManager::from_config_group(
            "Channel",
            root,
            msps.clone(),
        )?);

        let mut application_orgs = BTreeMap::new();
        if let Some(app) = root.groups.get(keys::APPLICATION_GROUP) {
            for (name, g) in &app.groups {
                application_orgs.insert(name.clone(), org_info(name, g)?);
            }
        }
        let orderer = root
            .groups
            .get(keys::ORDERER_GROUP)
            .ok_or_else(|| ConfigtxError::NotConfig("config has no Orderer group".into()))?;
        let mut orderer_orgs = BTreeMap::new();
        for (name, g) in &orderer.groups {
            orderer_orgs.insert(name.clone(), org_info(name, g)?);
        }
        let batch_size: BatchSize = value(orderer, keys::BATCH_SIZE, "BatchSize")?;
        let timeout: BatchTimeout = value(orderer, keys::BATCH_TIMEOUT, "BatchTimeout")?;
        let batch_timeout =
            crate::duration::parse_duration(&timeout.timeout).map_err(|reason| {
                ConfigtxError::Field {
                    field: "/Channel/Orderer/BatchTimeout".into(),
                    reason,
                }
            })?;
        let consensus: ConsensusType = value(orderer, keys::CONSENSUS_TYPE, "ConsensusType")?;
        let raft: etcdraft::ConfigMetadata =
            decode("etcdraft.ConfigMetadata", &consensus.metadata)?;
        Ok(ChannelConfig {
            config: config.clone(),
            msps,
            policies,
            application_orgs,
            orderer_orgs,
            batch_size,
            batch_timeout,
            raft,
        })
    }
}

fn value<M: prost::Message + Default>(
    group: &ConfigGroup,
    key: &str,
    what: &'static str,
) -> Result<M> {
    let v = group
        .values
        .get(key)
        .ok_or_else(|| ConfigtxError::NotConfig(format!("missing value {key}")))?;
    decode(what, &v.value)
}

fn org_info(name: &str, group: &ConfigGroup) -> Result<OrgInfo> {
    let msp_id = match group.values.get(keys::MSP) {
        Some(v) => {
            let cfg: MspConfig = decode("MSPConfig", &v.value)?;
            let fabric: twill_protos::msp::FabricMspConfig =
                decode("FabricMSPConfig", &cfg.config)?;
            fabric.name
        }
        None => name.to_string(),
    };
    let anchor_peers = match group.values.get(keys::ANCHOR_PEERS) {
        Some(v) => {
            let a: AnchorPeers = decode("AnchorPeers", &v.value)?;
            a.anchor_peers
                .into_iter()
                .map(|p| (p.host, u16::try_from(p.port).unwrap_or(0)))
                .collect()
        }
        None => Vec::new(),
    };
    let endpoints = match group.values.get(keys::ENDPOINTS) {
        Some(v) => {
            let a: twill_protos::common::OrdererAddresses = decode("OrdererAddresses", &v.value)?;
            a.addresses
        }
        None => Vec::new(),
    };
    Ok(OrgInfo {
        name: name.to_string(),
        msp_id,
        anchor_peers,
        endpoints,
    })
}

/// Collects the MSPs of every org group under `Application` and `Orderer`.
pub fn msp_manager_from_group(root: &ConfigGroup) -> Result<MspManager> {
    let mut msps = Vec::new();
    for section in [keys::APPLICATION_GROUP, keys::ORDERER_GROUP] {
        if let Some(g) = root.groups.get(section) {
            for org in g.groups.values() {
                if let Some(v) = org.values.get(keys::MSP) {
                    let cfg: MspConfig = decode("MSPConfig", &v.value)?;
                    msps.push(Msp::from_msp_config(&cfg)?);
                }
            }
        }
    }
    Ok(MspManager::try_new(msps)?)
}
