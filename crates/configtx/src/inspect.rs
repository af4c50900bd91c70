//! Blocks as JSON for people: every nested message that travels as bytes
//! (payloads, headers, config values, policies, MSP configs) is decoded in
//! place. Bytes that are not messages are shown as base64, certificates as
//! PEM text.

use base64::Engine;
use prost::Message;
use serde_json::{json, Map, Value};
use twill_protos::common::{
    policy::PolicyType, Block, BlockDataHashingStructure, Capabilities, ChannelHeader,
    ConfigEnvelope, ConfigGroup, ConfigUpdateEnvelope, Consortium, Envelope, HashingAlgorithm,
    HeaderType, ImplicitMetaPolicy, LastConfig, Metadata, OrdererAddresses, OrdererBlockMetadata,
    Payload, Policy, SignatureHeader, SignaturePolicyEnvelope,
};
use twill_protos::msp::{FabricMspConfig, MspConfig, SerializedIdentity};
use twill_protos::orderer::{BatchSize, BatchTimeout, ChannelRestrictions, ConsensusType};
use twill_protos::peer::{AcLs as Acls, AnchorPeers};
use twill_protos::{common, etcdraft};

use crate::keys;

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn text_or_b64(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.contains("-----BEGIN") => Value::String(s.to_string()),
        _ => b64(bytes),
    }
}

fn decoded<M: Message + Default>(bytes: &[u8], render: impl FnOnce(M) -> Value) -> Value {
    match M::decode(bytes) {
        Ok(m) => render(m),
        Err(e) => json!({ "undecodable": e.to_string(), "raw": b64(bytes) }),
    }
}

/// Renders a block.
pub fn block_to_json(block: &Block) -> Value {
    let header = block.header.clone().unwrap_or_default();
    let data: Vec<Value> = block
        .data
        .as_ref()
        .map(|d| d.data.iter().map(|e| decoded(e, envelope_json)).collect())
        .unwrap_or_default();
    let metadata: Vec<Value> = block
        .metadata
        .as_ref()
        .map(|m| {
            m.metadata
                .iter()
                .enumerate()
                .map(|(i, bytes)| metadata_json(i, bytes))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "header": {
            "number": header.number.to_string(),
            "previous_hash": b64(&header.previous_hash),
            "data_hash": b64(&header.data_hash),
        },
        "data": { "data": data },
        "metadata": { "metadata": metadata },
    })
}

fn metadata_json(slot: usize, bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::String(String::new());
    }
    decoded(bytes, |m: Metadata| {
        let value = match slot {
            0 => decoded(&m.value, |o: OrdererBlockMetadata| {
                json!({
                    "last_config": { "index": o.last_config.unwrap_or_default().index.to_string() },
                    "consenter_metadata": b64(&o.consenter_metadata),
                })
            }),
            1 => decoded(
                &m.value,
                |l: LastConfig| json!({ "index": l.index.to_string() }),
            ),
            _ => b64(&m.value),
        };
        let signatures: Vec<Value> = m
            .signatures
            .iter()
            .map(|s| {
                json!({
                    "signature_header": decoded(&s.signature_header, signature_header_json),
                    "signature": b64(&s.signature),
                })
            })
            .collect();
        json!({ "value": value, "signatures": signatures })
    })
}

/// Renders an envelope, decoding its payload by header type.
pub fn envelope_json(env: Envelope) -> Value {
    envelope_json_at(env, 0)
}

/// How deep CONFIG envelopes may nest through `last_update` before the rest
/// is shown raw; keeps a crafted block from exhausting the stack.
const MAX_ENVELOPE_DEPTH: usize = 4;

fn envelope_json_at(env: Envelope, depth: usize) -> Value {
    if depth > MAX_ENVELOPE_DEPTH {
        return json!({ "payload": b64(&env.payload), "signature": b64(&env.signature) });
    }
    let payload = decoded(&env.payload, |p: Payload| {
        let header = p.header.unwrap_or_default();
        let ch = ChannelHeader::decode(header.channel_header.as_slice()).ok();
        let kind = ch.as_ref().map(|c| c.r#type).unwrap_or(-1);
        let data = if kind == HeaderType::Config as i32 {
            decoded(&p.data, |c: ConfigEnvelope| {
                json!({
                    "config": {
                        "sequence": c.config.as_ref().map(|c| c.sequence).unwrap_or(0).to_string(),
                        "channel_group": c.config.and_then(|c| c.channel_group).map(|g| group_json(&g)).unwrap_or(Value::Null),
                    },
                    "last_update": c.last_update.map(|e| envelope_json_at(e, depth + 1)).unwrap_or(Value::Null),
                })
            })
        } else if kind == HeaderType::ConfigUpdate as i32 {
            decoded(&p.data, |c: ConfigUpdateEnvelope| {
                json!({
                    "config_update": decoded(&c.config_update, |u: common::ConfigUpdate| json!({
                        "channel_id": u.channel_id,
                        "read_set": u.read_set.map(|g| group_json(&g)).unwrap_or(Value::Null),
                        "write_set": u.write_set.map(|g| group_json(&g)).unwrap_or(Value::Null),
                    })),
                    "signatures": c.signatures.iter().map(|s| json!({
                        "signature_header": decoded(&s.signature_header, signature_header_json),
                        "signature": b64(&s.signature),
                    })).collect::<Vec<_>>(),
                })
            })
        } else {
            b64(&p.data)
        };
        json!({
            "header": {
                "channel_header": ch.map(channel_header_json).unwrap_or(Value::Null),
                "signature_header": decoded(&header.signature_header, signature_header_json),
            },
            "data": data,
        })
    });
    json!({ "payload": payload, "signature": b64(&env.signature) })
}

fn header_type_name(t: i32) -> String {
    HeaderType::try_from(t)
        .map(|h| h.as_str_name().to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn channel_header_json(ch: ChannelHeader) -> Value {
    json!({
        "type": header_type_name(ch.r#type),
        "version": ch.version,
        "timestamp": ch.timestamp.map(|t| format!("{}.{:09}", t.seconds, t.nanos)),
        "channel_id": ch.channel_id,
        "tx_id": ch.tx_id,
        "epoch": ch.epoch.to_string(),
        "extension": b64(&ch.extension),
        "tls_cert_hash": b64(&ch.tls_cert_hash),
    })
}

fn signature_header_json(sh: SignatureHeader) -> Value {
    let creator = if sh.creator.is_empty() {
        Value::Null
    } else {
        decoded(&sh.creator, identity_json)
    };
    json!({ "creator": creator, "nonce": b64(&sh.nonce) })
}

fn identity_json(id: SerializedIdentity) -> Value {
    json!({ "mspid": id.mspid, "id_bytes": text_or_b64(&id.id_bytes) })
}

/// Renders a config group recursively, decoding known values by key.
pub fn group_json(g: &ConfigGroup) -> Value {
    let groups: Map<String, Value> = g
        .groups
        .iter()
        .map(|(k, v)| (k.clone(), group_json(v)))
        .collect();
    let values: Map<String, Value> = g
        .values
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({
                    "version": v.version.to_string(),
                    "mod_policy": v.mod_policy,
                    "value": value_json(k, &v.value),
                }),
            )
        })
        .collect();
    let policies: Map<String, Value> = g
        .policies
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                json!({
                    "version": p.version.to_string(),
                    "mod_policy": p.mod_policy,
                    "policy": p.policy.as_ref().map(policy_json).unwrap_or(Value::Null),
                }),
            )
        })
        .collect();
    json!({
        "version": g.version.to_string(),
        "mod_policy": g.mod_policy,
        "groups": groups,
        "values": values,
        "policies": policies,
    })
}

fn policy_json(p: &Policy) -> Value {
    let value = if p.r#type == PolicyType::Signature as i32 {
        decoded(&p.value, |s: SignaturePolicyEnvelope| {
            let rule = twill_policy::policy_to_string(&s).unwrap_or_else(|e| format!("<{e}>"));
            json!({
                "rule": rule,
                "identities": s.identities.iter().map(|i| json!({
                    "principal_classification": i.principal_classification,
                    "principal": decoded(&i.principal, |r: common::MspRole| json!({
                        "msp_identifier": r.msp_identifier,
                        "role": common::msp_role::MspRoleType::try_from(r.role).map(|x| x.as_str_name().to_string()).unwrap_or_else(|_| r.role.to_string()),
                    })),
                })).collect::<Vec<_>>(),
            })
        })
    } else if p.r#type == PolicyType::ImplicitMeta as i32 {
        decoded(&p.value, |m: ImplicitMetaPolicy| {
            json!({
                "rule": common::implicit_meta_policy::Rule::try_from(m.rule).map(|r| r.as_str_name().to_string()).unwrap_or_else(|_| m.rule.to_string()),
                "sub_policy": m.sub_policy,
            })
        })
    } else {
        b64(&p.value)
    };
    let type_name = PolicyType::try_from(p.r#type)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| p.r#type.to_string());
    json!({ "type": type_name, "value": value })
}

fn pems(certs: &[Vec<u8>]) -> Vec<Value> {
    certs.iter().map(|c| text_or_b64(c)).collect()
}

fn value_json(key: &str, bytes: &[u8]) -> Value {
    match key {
        keys::HASHING_ALGORITHM => decoded(bytes, |m: HashingAlgorithm| json!({ "name": m.name })),
        keys::BLOCK_DATA_HASHING_STRUCTURE => decoded(
            bytes,
            |m: BlockDataHashingStructure| json!({ "width": m.width }),
        ),
        keys::ORDERER_ADDRESSES | keys::ENDPOINTS => decoded(
            bytes,
            |m: OrdererAddresses| json!({ "addresses": m.addresses }),
        ),
        keys::CONSORTIUM => decoded(bytes, |m: Consortium| json!({ "name": m.name })),
        keys::CAPABILITIES => decoded(bytes, |m: Capabilities| {
            let caps: Map<String, Value> = m
                .capabilities
                .keys()
                .map(|k| (k.clone(), json!({})))
                .collect();
            json!({ "capabilities": caps })
        }),
        keys::BATCH_SIZE => decoded(bytes, |m: BatchSize| {
            json!({
                "max_message_count": m.max_message_count,
                "absolute_max_bytes": m.absolute_max_bytes,
                "preferred_max_bytes": m.preferred_max_bytes,
            })
        }),
        keys::BATCH_TIMEOUT => decoded(bytes, |m: BatchTimeout| json!({ "timeout": m.timeout })),
        keys::CHANNEL_RESTRICTIONS => decoded(
            bytes,
            |m: ChannelRestrictions| json!({ "max_count": m.max_count.to_string() }),
        ),
        keys::CONSENSUS_TYPE => decoded(bytes, |m: ConsensusType| {
            let metadata = if m.r#type == "etcdraft" {
                decoded(&m.metadata, |r: etcdraft::ConfigMetadata| {
                    json!({
                        "consenters": r.consenters.iter().map(|c| json!({
                            "host": c.host,
                            "port": c.port,
                            "client_tls_cert": text_or_b64(&c.client_tls_cert),
                            "server_tls_cert": text_or_b64(&c.server_tls_cert),
                        })).collect::<Vec<_>>(),
                        "options": r.options.map(|o| json!({
                            "tick_interval": o.tick_interval,
                            "election_tick": o.election_tick,
                            "heartbeat_tick": o.heartbeat_tick,
                            "max_inflight_blocks": o.max_inflight_blocks,
                            "snapshot_interval_size": o.snapshot_interval_size,
                        })),
                    })
                })
            } else {
                b64(&m.metadata)
            };
            json!({ "type": m.r#type, "metadata": metadata, "state": m.state })
        }),
        keys::MSP => decoded(bytes, |m: MspConfig| {
            let config = if m.r#type == 0 {
                decoded(&m.config, |f: FabricMspConfig| {
                    json!({
                        "name": f.name,
                        "root_certs": pems(&f.root_certs),
                        "intermediate_certs": pems(&f.intermediate_certs),
                        "admins": pems(&f.admins),
                        "revocation_list": pems(&f.revocation_list),
                        "tls_root_certs": pems(&f.tls_root_certs),
                        "tls_intermediate_certs": pems(&f.tls_intermediate_certs),
                        "crypto_config": f.crypto_config.map(|c| json!({
                            "signature_hash_family": c.signature_hash_family,
                            "identity_identifier_hash_function": c.identity_identifier_hash_function,
                        })),
                        "fabric_node_ous": f.fabric_node_ous.map(|n| json!({
                            "enable": n.enable,
                            "client_ou_identifier": n.client_ou_identifier.map(|o| o.organizational_unit_identifier),
                            "peer_ou_identifier": n.peer_ou_identifier.map(|o| o.organizational_unit_identifier),
                            "admin_ou_identifier": n.admin_ou_identifier.map(|o| o.organizational_unit_identifier),
                            "orderer_ou_identifier": n.orderer_ou_identifier.map(|o| o.organizational_unit_identifier),
                        })),
                    })
                })
            } else {
                b64(&m.config)
            };
            json!({ "type": m.r#type, "config": config })
        }),
        keys::ANCHOR_PEERS => decoded(bytes, |m: AnchorPeers| {
            json!({
                "anchor_peers": m.anchor_peers.iter().map(|a| json!({ "host": a.host, "port": a.port })).collect::<Vec<_>>()
            })
        }),
        keys::ACLS => decoded(bytes, |m: Acls| {
            let acls: Map<String, Value> = m
                .acls
                .iter()
                .map(|(k, v)| (k.clone(), json!({ "policy_ref": v.policy_ref })))
                .collect();
            json!({ "acls": acls })
        }),
        _ => b64(bytes),
    }
}
