//! Profile → channel config tree → genesis block, following the layout
//! Fabric's `configtxgen` produces for an application channel (no system
//! channel).

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use twill_protos::common::{
    implicit_meta_policy::Rule, policy::PolicyType, BlockDataHashingStructure, Capabilities,
    Capability, Config, ConfigEnvelope, ConfigGroup, ConfigPolicy, ConfigValue, Consortium,
    HashingAlgorithm, HeaderType, ImplicitMetaPolicy, LastConfig, Metadata, OrdererAddresses,
    OrdererBlockMetadata, Policy, SignatureHeader,
};
use twill_protos::common::{Block, BlockMetadataIndex};
use twill_protos::etcdraft;
use twill_protos::orderer::{
    consensus_type::State, BatchSize, BatchTimeout, ChannelRestrictions, ConsensusType,
};
use twill_protos::peer::{AcLs as Acls, AnchorPeer, AnchorPeers, ApiResource};

use crate::block::{channel_header, compute_tx_id, envelope, new_block};
use crate::keys;
use crate::profile::{
    ApplicationSection, LoadedConfigtx, OrdererSection, Organization, PolicyDef, Profile,
};
use crate::{ConfigtxError, Result};

/// Header version Fabric stamps on genesis CONFIG envelopes.
const GENESIS_MSG_VERSION: i32 = 1;

/// Checks a channel name against Fabric's rules: 1–249 characters of
/// lowercase letters, digits, `.` and `-`, starting with a letter.
pub fn validate_channel_id(id: &str) -> Result<()> {
    let bad = |reason: &str| ConfigtxError::InvalidChannelId {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > 249 {
        return Err(bad("it is longer than 249 characters"));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("it must start with a lowercase letter"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(bad(&format!(
            "'{c}' is not allowed (use lowercase letters, digits, '.' and '-')"
        )));
    }
    Ok(())
}

/// Builds the channel config group (`/Channel`) for a profile.
pub fn build_channel_group(cfg: &LoadedConfigtx, profile_name: &str) -> Result<ConfigGroup> {
    let profile = cfg.profile(profile_name)?;
    let ctx = Ctx {
        cfg,
        path: format!("Profiles.{profile_name}"),
    };
    ctx.channel_group(profile)
}

/// Builds the genesis block of `channel_id` from a profile.
pub fn genesis_block_from_profile(
    cfg: &LoadedConfigtx,
    profile_name: &str,
    channel_id: &str,
) -> Result<Block> {
    validate_channel_id(channel_id)?;
    let group = build_channel_group(cfg, profile_name)?;
    Ok(genesis_block(channel_id, group))
}

/// Wraps a channel config group into block 0 of `channel_id`.
pub fn genesis_block(channel_id: &str, channel_group: ConfigGroup) -> Block {
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = compute_tx_id(&nonce, &[]);
    let ch = channel_header(HeaderType::Config, GENESIS_MSG_VERSION, channel_id, &tx_id);
    let sh = SignatureHeader {
        creator: Vec::new(),
        nonce,
    };
    let config_env = ConfigEnvelope {
        config: Some(Config {
            sequence: 0,
            channel_group: Some(channel_group),
        }),
        last_update: None,
    };
    let env = envelope(&ch, &sh, config_env.encode_to_vec());
    let mut block = new_block(0, Vec::new(), vec![env.encode_to_vec()]);
    if let Some(md) = block.metadata.as_mut() {
        // Fabric still fills the deprecated LAST_CONFIG slot in genesis blocks.
        #[allow(deprecated)]
        let last_config_slot = BlockMetadataIndex::LastConfig as usize;
        md.metadata[last_config_slot] = Metadata {
            value: LastConfig { index: 0 }.encode_to_vec(),
            signatures: Vec::new(),
        }
        .encode_to_vec();
        md.metadata[BlockMetadataIndex::Signatures as usize] = Metadata {
            value: OrdererBlockMetadata {
                last_config: Some(LastConfig { index: 0 }),
                consenter_metadata: Vec::new(),
            }
            .encode_to_vec(),
            signatures: Vec::new(),
        }
        .encode_to_vec();
    }
    block
}

struct Ctx<'a> {
    cfg: &'a LoadedConfigtx,
    path: String,
}

impl Ctx<'_> {
    fn field(&self, rest: &str) -> String {
        format!("{}: {}.{}", self.cfg.path.display(), self.path, rest)
    }

    fn err(&self, rest: &str, reason: impl Into<String>) -> ConfigtxError {
        ConfigtxError::Field {
            field: self.field(rest),
            reason: reason.into(),
        }
    }

    fn channel_group(&self, profile: &Profile) -> Result<ConfigGroup> {
        let mut group = ConfigGroup::default();
        self.add_policies(&mut group, &profile.policies, "Policies", &[])?;
        add_value(
            &mut group,
            keys::HASHING_ALGORITHM,
            HashingAlgorithm {
                name: "SHA256".into(),
            },
            keys::ADMINS,
        );
        add_value(
            &mut group,
            keys::BLOCK_DATA_HASHING_STRUCTURE,
            BlockDataHashingStructure { width: u32::MAX },
            keys::ADMINS,
        );
        if let Some(orderer) = &profile.orderer {
            if !orderer.addresses.is_empty() {
                add_value(
                    &mut group,
                    keys::ORDERER_ADDRESSES,
                    OrdererAddresses {
                        addresses: orderer.addresses.clone(),
                    },
                    "/Channel/Orderer/Admins",
                );
            }
        }
        if let Some(name) = &profile.consortium {
            add_value(
                &mut group,
                keys::CONSORTIUM,
                Consortium { name: name.clone() },
                keys::ADMINS,
            );
        }
        add_capabilities(&mut group, &profile.capabilities);
        if let Some(orderer) = &profile.orderer {
            let sub = Ctx {
                cfg: self.cfg,
                path: format!("{}.Orderer", self.path),
            };
            group
                .groups
                .insert(keys::ORDERER_GROUP.into(), sub.orderer_group(orderer)?);
        }
        if let Some(app) = &profile.application {
            let sub = Ctx {
                cfg: self.cfg,
                path: format!("{}.Application", self.path),
            };
            group
                .groups
                .insert(keys::APPLICATION_GROUP.into(), sub.application_group(app)?);
        }
        for (missing, section) in [
            (profile.orderer.is_none(), "Orderer"),
            (profile.application.is_none(), "Application"),
        ] {
            if missing {
                return Err(self.err(
                    section,
                    "missing (a channel profile needs an Orderer and an Application section)",
                ));
            }
        }
        group.mod_policy = keys::ADMINS.into();
        Ok(group)
    }

    fn orderer_group(&self, orderer: &OrdererSection) -> Result<ConfigGroup> {
        let mut group = ConfigGroup::default();
        self.add_policies(
            &mut group,
            &orderer.policies,
            "Policies",
            &[keys::BLOCK_VALIDATION],
        )?;
        let bs = &orderer.batch_size;
        let absolute = bs
            .absolute_max_bytes
            .to_bytes(&self.field("BatchSize.AbsoluteMaxBytes"))?;
        let preferred = bs
            .preferred_max_bytes
            .to_bytes(&self.field("BatchSize.PreferredMaxBytes"))?;
        if bs.max_message_count == 0 {
            return Err(self.err("BatchSize.MaxMessageCount", "must be greater than 0"));
        }
        if absolute == 0 {
            return Err(self.err("BatchSize.AbsoluteMaxBytes", "must be greater than 0"));
        }
        if preferred == 0 || preferred > absolute {
            return Err(self.err(
                "BatchSize.PreferredMaxBytes",
                "must be greater than 0 and not above AbsoluteMaxBytes",
            ));
        }
        add_value(
            &mut group,
            keys::BATCH_SIZE,
            BatchSize {
                max_message_count: bs.max_message_count,
                absolute_max_bytes: absolute,
                preferred_max_bytes: preferred,
            },
            keys::ADMINS,
        );
        let timeout = crate::duration::parse_duration(&orderer.batch_timeout)
            .map_err(|reason| self.err("BatchTimeout", reason))?;
        if timeout.is_zero() {
            return Err(self.err("BatchTimeout", "must be greater than 0"));
        }
        add_value(
            &mut group,
            keys::BATCH_TIMEOUT,
            BatchTimeout {
                // Stored as Go prints durations, as Fabric's configtxgen does.
                timeout: crate::duration::format_go_duration(timeout),
            },
            keys::ADMINS,
        );
        add_value(
            &mut group,
            keys::CHANNEL_RESTRICTIONS,
            ChannelRestrictions {
                max_count: orderer.max_channels,
            },
            keys::ADMINS,
        );
        add_capabilities(&mut group, &orderer.capabilities);

        if orderer.orderer_type != "etcdraft" {
            return Err(self.err(
                "OrdererType",
                format!(
                    "'{}' is not supported (Twill orders with etcdraft)",
                    orderer.orderer_type
                ),
            ));
        }
        let metadata = self.etcdraft_metadata(orderer)?;
        add_value(
            &mut group,
            keys::CONSENSUS_TYPE,
            ConsensusType {
                r#type: "etcdraft".into(),
                metadata: metadata.encode_to_vec(),
                state: State::Normal as i32,
            },
            keys::ADMINS,
        );
        if orderer.organizations.is_empty() {
            return Err(self.err(
                "Organizations",
                "the orderer needs at least one organization",
            ));
        }
        for (i, org) in orderer.organizations.iter().enumerate() {
            let g = self.org_group(org, i, "Organizations", true)?;
            insert_org(&mut group, org, g, &self.field("Organizations"))?;
        }
        group.mod_policy = keys::ADMINS.into();
        Ok(group)
    }

    fn etcdraft_metadata(&self, orderer: &OrdererSection) -> Result<etcdraft::ConfigMetadata> {
        let raft = orderer
            .etcd_raft
            .as_ref()
            .ok_or_else(|| self.err("EtcdRaft", "missing (etcdraft needs its Consenters)"))?;
        if raft.consenters.is_empty() {
            return Err(self.err("EtcdRaft.Consenters", "at least one consenter is required"));
        }
        let mut consenters = Vec::with_capacity(raft.consenters.len());
        for (i, c) in raft.consenters.iter().enumerate() {
            if c.host.trim().is_empty() {
                return Err(self.err(&format!("EtcdRaft.Consenters[{i}].Host"), "is empty"));
            }
            if c.port == 0 || c.port > u32::from(u16::MAX) {
                return Err(self.err(
                    &format!("EtcdRaft.Consenters[{i}].Port"),
                    format!("{} is not a valid port", c.port),
                ));
            }
            let read = |p: &Path, name: &str| -> Result<Vec<u8>> {
                let full = self.cfg.resolve(p);
                std::fs::read(&full).map_err(|e| {
                    self.err(
                        &format!("EtcdRaft.Consenters[{i}].{name}"),
                        format!("cannot read {}: {e}", full.display()),
                    )
                })
            };
            consenters.push(etcdraft::Consenter {
                host: c.host.clone(),
                port: c.port,
                client_tls_cert: read(&c.client_tls_cert, "ClientTLSCert")?,
                server_tls_cert: read(&c.server_tls_cert, "ServerTLSCert")?,
            });
        }
        // As in Fabric, an unset or zero option takes the default.
        let opts = raft.options.clone().unwrap_or_default();
        let nonzero = |v: Option<u32>, default: u32| v.filter(|x| *x != 0).unwrap_or(default);
        let snapshot = match &opts.snapshot_interval_size {
            Some(size) => size.to_bytes(&self.field("EtcdRaft.Options.SnapshotIntervalSize"))?,
            None => 0,
        };
        let snapshot = if snapshot == 0 {
            16 * 1024 * 1024
        } else {
            snapshot
        };
        let tick_text = opts
            .tick_interval
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "500ms".into());
        let tick = crate::duration::parse_duration(&tick_text)
            .map_err(|reason| self.err("EtcdRaft.Options.TickInterval", reason))?;
        if tick.is_zero() {
            return Err(self.err("EtcdRaft.Options.TickInterval", "must be greater than 0"));
        }
        let election_tick = nonzero(opts.election_tick, 10);
        let heartbeat_tick = nonzero(opts.heartbeat_tick, 1);
        if election_tick <= heartbeat_tick {
            return Err(self.err(
                "EtcdRaft.Options.ElectionTick",
                format!("{election_tick} must be greater than HeartbeatTick {heartbeat_tick}"),
            ));
        }
        Ok(etcdraft::ConfigMetadata {
            consenters,
            options: Some(etcdraft::Options {
                tick_interval: crate::duration::format_go_duration(tick),
                election_tick,
                heartbeat_tick,
                max_inflight_blocks: nonzero(opts.max_inflight_blocks, 5),
                snapshot_interval_size: snapshot,
            }),
        })
    }

    fn application_group(&self, app: &ApplicationSection) -> Result<ConfigGroup> {
        let mut group = ConfigGroup::default();
        self.add_policies(&mut group, &app.policies, "Policies", &[])?;
        if !app.acls.is_empty() {
            let acls = Acls {
                acls: app
                    .acls
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            ApiResource {
                                policy_ref: v.clone(),
                            },
                        )
                    })
                    .collect(),
            };
            add_value(&mut group, keys::ACLS, acls, keys::ADMINS);
        }
        add_capabilities(&mut group, &app.capabilities);
        for (i, org) in app.organizations.iter().enumerate() {
            let g = self.org_group(org, i, "Organizations", false)?;
            insert_org(&mut group, org, g, &self.field("Organizations"))?;
        }
        group.mod_policy = keys::ADMINS.into();
        Ok(group)
    }

    fn org_group(
        &self,
        org: &Organization,
        index: usize,
        list: &str,
        orderer_org: bool,
    ) -> Result<ConfigGroup> {
        let at = format!("{list}[{index}]");
        let mut group = ConfigGroup {
            mod_policy: keys::ADMINS.into(),
            ..Default::default()
        };
        if org.skip_as_foreign {
            return Ok(group);
        }
        if let Some(t) = &org.msp_type {
            if t != "bccsp" {
                return Err(self.err(
                    &format!("{at}.MSPType"),
                    format!("'{t}' is not supported (only bccsp X.509 MSPs)"),
                ));
            }
        }
        let msp_dir = org
            .msp_dir
            .as_ref()
            .ok_or_else(|| self.err(&format!("{at}.MSPDir"), "missing"))?;
        let full = self.cfg.resolve(msp_dir);
        if !full.is_dir() {
            return Err(self.err(
                &format!("{at}.MSPDir"),
                format!("folder {} does not exist", full.display()),
            ));
        }
        let fabric = twill_msp::load_fabric_msp_config(&full, &org.id)
            .map_err(|e| self.err(&format!("{at}.MSPDir"), e.to_string()))?;
        let msp_value = twill_msp::fabric_msp_config_to_msp_config(&fabric);
        let sub = Ctx {
            cfg: self.cfg,
            path: format!("{}.{at}", self.path),
        };
        sub.add_policies(&mut group, &org.policies, "Policies", &[])?;
        add_value(&mut group, keys::MSP, msp_value, keys::ADMINS);
        if orderer_org && !org.orderer_endpoints.is_empty() {
            add_value(
                &mut group,
                keys::ENDPOINTS,
                OrdererAddresses {
                    addresses: org.orderer_endpoints.clone(),
                },
                keys::ADMINS,
            );
        }
        if !orderer_org && !org.anchor_peers.is_empty() {
            let anchors = AnchorPeers {
                anchor_peers: org
                    .anchor_peers
                    .iter()
                    .map(|a| AnchorPeer {
                        host: a.host.clone(),
                        port: i32::from(a.port),
                    })
                    .collect(),
            };
            add_value(&mut group, keys::ANCHOR_PEERS, anchors, keys::ADMINS);
        }
        Ok(group)
    }

    fn add_policies(
        &self,
        group: &mut ConfigGroup,
        policies: &BTreeMap<String, PolicyDef>,
        at: &str,
        extra_required: &[&str],
    ) -> Result<()> {
        for required in [keys::ADMINS, keys::READERS, keys::WRITERS]
            .iter()
            .chain(extra_required)
        {
            if !policies.contains_key(*required) {
                return Err(self.err(
                    &format!("{at}.{required}"),
                    "missing (every group needs Readers, Writers and Admins policies)",
                ));
            }
        }
        for (name, def) in policies {
            let policy = policy_from_def(def)
                .map_err(|reason| self.err(&format!("{at}.{name}.Rule"), reason))?;
            group.policies.insert(
                name.clone(),
                ConfigPolicy {
                    version: 0,
                    policy: Some(policy),
                    mod_policy: keys::ADMINS.into(),
                },
            );
        }
        Ok(())
    }
}

fn insert_org(
    group: &mut ConfigGroup,
    org: &Organization,
    org_group: ConfigGroup,
    field: &str,
) -> Result<()> {
    if group.groups.contains_key(&org.name) {
        return Err(ConfigtxError::Field {
            field: field.to_string(),
            reason: format!("organization '{}' is listed twice", org.name),
        });
    }
    group.groups.insert(org.name.clone(), org_group);
    Ok(())
}

/// Turns a YAML policy definition into a config `Policy`.
pub fn policy_from_def(def: &PolicyDef) -> std::result::Result<Policy, String> {
    match def.kind.as_str() {
        "ImplicitMeta" => {
            let imp = implicit_meta_from_str(&def.rule)?;
            Ok(Policy {
                r#type: PolicyType::ImplicitMeta as i32,
                value: imp.encode_to_vec(),
            })
        }
        "Signature" => {
            let env = twill_policy::parse_policy(&def.rule)
                .map_err(|e| format!("'{}': {e}", def.rule))?;
            Ok(Policy {
                r#type: PolicyType::Signature as i32,
                value: env.encode_to_vec(),
            })
        }
        other => Err(format!(
            "unknown policy Type '{other}' (expected Signature or ImplicitMeta)"
        )),
    }
}

/// Parses `ANY Readers`, `ALL Writers`, `MAJORITY Admins`.
pub fn implicit_meta_from_str(rule: &str) -> std::result::Result<ImplicitMetaPolicy, String> {
    let mut parts = rule.split_whitespace();
    let (Some(kind), Some(sub), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "'{rule}' is not an implicit meta rule (expected e.g. 'MAJORITY Admins')"
        ));
    };
    let rule_kind = match kind.to_ascii_uppercase().as_str() {
        "ANY" => Rule::Any,
        "ALL" => Rule::All,
        "MAJORITY" => Rule::Majority,
        _ => {
            return Err(format!(
                "'{kind}' is not ANY, ALL or MAJORITY in implicit meta rule '{rule}'"
            ))
        }
    };
    Ok(ImplicitMetaPolicy {
        sub_policy: sub.to_string(),
        rule: rule_kind as i32,
    })
}

fn add_value<M: Message>(group: &mut ConfigGroup, key: &str, value: M, mod_policy: &str) {
    group.values.insert(
        key.to_string(),
        ConfigValue {
            version: 0,
            value: value.encode_to_vec(),
            mod_policy: mod_policy.to_string(),
        },
    );
}

fn add_capabilities(group: &mut ConfigGroup, caps: &BTreeMap<String, bool>) {
    let enabled: BTreeMap<String, Capability> = caps
        .iter()
        .filter(|(_, on)| **on)
        .map(|(k, _)| (k.clone(), Capability {}))
        .collect();
    // Like configtxgen: a listed Capabilities section yields a value even
    // when every flag in it is off.
    if !caps.is_empty() {
        add_value(
            group,
            keys::CAPABILITIES,
            Capabilities {
                capabilities: enabled,
            },
            keys::ADMINS,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids() {
        assert!(validate_channel_id("mychannel").is_ok());
        assert!(validate_channel_id("a.b-c9").is_ok());
        assert!(validate_channel_id("MyChannel").is_err());
        assert!(validate_channel_id("").is_err());
        assert!(validate_channel_id("9abc").is_err());
        assert!(validate_channel_id("my_channel").is_err());
    }

    #[test]
    fn implicit_meta_rules() {
        let p = implicit_meta_from_str("MAJORITY Admins").unwrap();
        assert_eq!(p.rule, Rule::Majority as i32);
        assert_eq!(p.sub_policy, "Admins");
        assert!(implicit_meta_from_str("SOME Admins").is_err());
        assert!(implicit_meta_from_str("ANY").is_err());
        assert!(implicit_meta_from_str("ANY a b").is_err());
    }
}
