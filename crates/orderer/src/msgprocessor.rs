//! The checks Broadcast and Deliver apply to incoming envelopes, and the
//! processing of config updates into CONFIG transactions.
//!
//! Every check answers with Fabric's `common.Status` and an info text, as a
//! [`Reject`] — this module's error type, which the gRPC edge copies into a
//! `BroadcastResponse` ([`Reject::broadcast_response`]) or a Deliver status.
//! Statuses follow Fabric's Broadcast classification: a permission failure
//! is FORBIDDEN, anything else wrong with the request is BAD_REQUEST.
//!
//! - [`classify`]: decodes the headers and tells a config update from a
//!   normal transaction;
//! - [`check_normal`]: size, header type, creator (known MSP, valid
//!   certificate, not expired), signature, and `/Channel/Writers`;
//! - [`process_config_update`]: the same checks on a CONFIG_UPDATE, then the
//!   update validated against the current config, and the CONFIG envelope
//!   the orderer signs and orders;
//! - [`check_config_envelope`]: the deterministic re-check every node runs
//!   on an ordered CONFIG envelope before applying it;
//! - [`check_deliver_seek`]: a Deliver request's header, signature, creator
//!   and `/Channel/Readers`.
//!
//! Functions ending in `_at` take the time used for certificate expiry and
//! the Deliver time window; the others use the system clock.
//!
//! # Where this differs from Fabric
//!
//! - An expired creator certificate is FORBIDDEN (Fabric's expiration rule
//!   answers BAD_REQUEST "broadcast client identity expired").
//! - A config update whose signatures do not satisfy a `mod_policy` is
//!   FORBIDDEN (Fabric answers BAD_REQUEST for every config validation
//!   failure).
//! - A CONFIG envelope submitted directly is refused; Fabric re-processes
//!   its `last_update` instead.
//! - Creator, signature and policy failures are reported separately, each
//!   naming the MSP, identity or policy, where Fabric reports the policy
//!   evaluation only.

use std::time::{Duration, SystemTime};

use prost::Message;
use twill_configtx::block::{channel_header, compute_tx_id, envelope};
use twill_configtx::channel::ChannelConfig;
use twill_configtx::update::{config_update_from_envelope, validate_update};
use twill_configtx::ConfigtxError;
use twill_msp::{Identity, MspError, SigningIdentity};
use twill_protos::common::{
    ChannelHeader, Config, ConfigEnvelope, Envelope, Header, HeaderType, Payload, SignatureHeader,
    Status,
};
use twill_protos::orderer::{BroadcastResponse, SeekInfo};

/// Policy a Broadcast submitter must satisfy.
pub const CHANNEL_WRITERS: &str = "/Channel/Writers";

/// Policy a Deliver client must satisfy.
pub const CHANNEL_READERS: &str = "/Channel/Readers";

/// How far a Deliver request's timestamp may be from the orderer's clock
/// (Fabric's `General.Authentication.TimeWindow` default).
pub const DELIVER_TIME_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Length of the nonce in envelopes the orderer creates.
const NONCE_LEN: usize = 24;

/// An envelope refused, with the status and text to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {info}", *status as i32, status.as_str_name())]
pub struct Reject {
    /// Fabric's status code for the refusal.
    pub status: Status,
    /// What was wrong, for the client.
    pub info: String,
}

impl Reject {
    /// A BAD_REQUEST refusal.
    pub fn bad_request(info: impl Into<String>) -> Self {
        Reject {
            status: Status::BadRequest,
            info: info.into(),
        }
    }

    /// A FORBIDDEN refusal.
    pub fn forbidden(info: impl Into<String>) -> Self {
        Reject {
            status: Status::Forbidden,
            info: info.into(),
        }
    }

    /// An INTERNAL_SERVER_ERROR refusal (the orderer itself failed).
    pub fn internal(info: impl Into<String>) -> Self {
        Reject {
            status: Status::InternalServerError,
            info: info.into(),
        }
    }

    /// The same refusal with `context: ` put before its text.
    fn context(self, context: &str) -> Self {
        Reject {
            status: self.status,
            info: format!("{context}: {}", self.info),
        }
    }

    /// The Broadcast answer carrying this refusal.
    pub fn broadcast_response(&self) -> BroadcastResponse {
        BroadcastResponse {
            status: self.status as i32,
            info: self.info.clone(),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Reject>;

/// How an incoming Broadcast envelope is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Ordered as is, after [`check_normal`].
    Normal,
    /// A CONFIG_UPDATE, turned into a CONFIG envelope by
    /// [`process_config_update`].
    ConfigUpdate,
}

/// The decoded headers of an envelope.
struct Parsed {
    payload: Payload,
    channel_header: ChannelHeader,
    signature_header: SignatureHeader,
}

/// Decodes the envelope's headers and classifies it. Every type other than
/// CONFIG_UPDATE is [`Classification::Normal`]; [`check_normal`] then
/// decides whether the type is accepted.
///
/// BAD_REQUEST if the payload, its header or the channel header do not
/// decode.
pub fn classify(env: &Envelope) -> Result<(Classification, ChannelHeader)> {
    let parsed = parse_headers(env)?;
    let class = if parsed.channel_header.r#type == HeaderType::ConfigUpdate as i32 {
        Classification::ConfigUpdate
    } else {
        Classification::Normal
    };
    Ok((class, parsed.channel_header))
}

/// Checks a normal transaction on Broadcast against the channel's current
/// config, at the current time; see [`check_normal_at`].
pub fn check_normal(env_bytes_len: usize, env: &Envelope, cfg: &ChannelConfig) -> Result<()> {
    check_normal_at(env_bytes_len, env, cfg, SystemTime::now())
}

/// Checks a normal transaction on Broadcast, with certificate expiry judged
/// at `now`. `env_bytes_len` is the envelope's encoded size.
///
/// In order: the payload is not empty and the size is within
/// `AbsoluteMaxBytes` (BAD_REQUEST); the headers decode and the type is
/// ENDORSER_TRANSACTION or MESSAGE (BAD_REQUEST); the creator is of a channel
/// MSP, valid and unexpired, its signature over the payload verifies, and it
/// satisfies `/Channel/Writers` (FORBIDDEN).
pub fn check_normal_at(
    env_bytes_len: usize,
    env: &Envelope,
    cfg: &ChannelConfig,
    now: SystemTime,
) -> Result<()> {
    check_size(env_bytes_len, env, cfg)?;
    let parsed = parse_headers(env)?;
    let kind = parsed.channel_header.r#type;
    if kind == HeaderType::Config as i32 {
        return Err(Reject::bad_request(
            "CONFIG envelopes cannot be broadcast directly; submit a CONFIG_UPDATE",
        ));
    }
    if kind != HeaderType::EndorserTransaction as i32 && kind != HeaderType::Message as i32 {
        return Err(Reject::bad_request(format!(
            "envelope of type {} is not accepted for ordering (expected ENDORSER_TRANSACTION or MESSAGE)",
            type_name(kind)
        )));
    }
    authorize(
        &parsed.signature_header,
        env,
        cfg,
        CHANNEL_WRITERS,
        now,
        "creator",
    )?;
    Ok(())
}

/// Processes a CONFIG_UPDATE at the current time; see
/// [`process_config_update_at`].
pub fn process_config_update(
    env: &Envelope,
    cfg: &ChannelConfig,
    channel_id: &str,
    signer: &SigningIdentity,
) -> Result<(Envelope, Config)> {
    process_config_update_at(env, cfg, channel_id, signer, SystemTime::now())
}

/// Turns a CONFIG_UPDATE envelope for `channel_id` into the CONFIG envelope
/// to order, signed by `signer` (this orderer), and the config it installs.
///
/// The update envelope passes the Broadcast checks of [`check_normal_at`]
/// (size, submitter valid, signature, `/Channel/Writers`); then the update
/// is validated against `cfg`: stale read set or bad versions are
/// BAD_REQUEST, unsatisfied `mod_policy` is FORBIDDEN naming the policy, and
/// a resulting config that does not build is BAD_REQUEST. The CONFIG
/// envelope is `Payload { header: CONFIG channel header (tx id from the
/// orderer's nonce and identity) + the orderer's signature header, data:
/// ConfigEnvelope { config: next, last_update: env } }`, and is checked once
/// more for size and for the orderer's own standing in `/Channel/Writers`.
pub fn process_config_update_at(
    env: &Envelope,
    cfg: &ChannelConfig,
    channel_id: &str,
    signer: &SigningIdentity,
    now: SystemTime,
) -> Result<(Envelope, Config)> {
    let initial = "config update did not pass initial checks";
    check_size(env.encoded_len(), env, cfg).map_err(|r| r.context(initial))?;
    let parsed = parse(env).map_err(|r| r.context(initial))?;
    let kind = parsed.channel_header.r#type;
    if kind != HeaderType::ConfigUpdate as i32 {
        return Err(Reject::bad_request(format!(
            "envelope of type {} is not a CONFIG_UPDATE",
            type_name(kind)
        )));
    }
    if parsed.channel_header.channel_id != channel_id {
        return Err(Reject::bad_request(format!(
            "config update envelope is addressed to channel '{}', not '{channel_id}'",
            parsed.channel_header.channel_id
        )));
    }
    authorize(
        &parsed.signature_header,
        env,
        cfg,
        CHANNEL_WRITERS,
        now,
        "creator",
    )
    .map_err(|r| r.context(initial))?;

    let next = propose(env, cfg, channel_id)?;

    let config_env = signed_config_envelope(env, &next, channel_id, signer)?;

    // As Fabric does: the envelope the orderer made must itself be orderable
    // (not too large) and signed by an identity that may write to the channel.
    let final_checks = "config update did not pass final checks";
    check_size(config_env.encoded_len(), &config_env, cfg).map_err(|r| r.context(final_checks))?;
    let made = parse(&config_env).map_err(|r| r.context(final_checks))?;
    authorize(
        &made.signature_header,
        &config_env,
        cfg,
        CHANNEL_WRITERS,
        now,
        "orderer",
    )
    .map_err(|r| r.context(final_checks))?;

    Ok((config_env, next))
}

/// Re-checks an ordered CONFIG envelope against the config in force when it
/// is applied, and returns the config it installs.
///
/// The envelope must decode as CONFIG with a `ConfigEnvelope` whose config
/// sequence is the current one + 1 and whose `last_update` still validates
/// against `cfg` (same versions, `mod_policy` satisfied) to exactly that
/// config. An envelope built from an older config fails, so every node
/// drops the same stale ones. The caller makes sure the envelope's channel
/// header names its channel.
///
/// The result depends only on the envelope and `cfg`, except that the
/// `mod_policy` signers' certificates are judged unexpired at the system
/// time.
pub fn check_config_envelope(env: &Envelope, cfg: &ChannelConfig) -> Result<Config> {
    let parsed = parse(env)?;
    let kind = parsed.channel_header.r#type;
    if kind != HeaderType::Config as i32 {
        return Err(Reject::bad_request(format!(
            "envelope of type {} is not a CONFIG envelope",
            type_name(kind)
        )));
    }
    let config_env = ConfigEnvelope::decode(parsed.payload.data.as_slice())
        .map_err(|e| Reject::bad_request(format!("malformed ConfigEnvelope: {e}")))?;
    let config = config_env
        .config
        .ok_or_else(|| Reject::bad_request("CONFIG envelope holds no config"))?;
    let current = cfg.config.sequence;
    if config.sequence != current.saturating_add(1) {
        return Err(Reject::bad_request(format!(
            "config sequence is {}, expected {} (current config is at sequence {current})",
            config.sequence,
            current.saturating_add(1)
        )));
    }
    let last_update = config_env
        .last_update
        .ok_or_else(|| Reject::bad_request("CONFIG envelope holds no last_update"))?;
    let channel_id = &parsed.channel_header.channel_id;
    let recomputed = propose(&last_update, cfg, channel_id)?;
    if recomputed != config {
        return Err(Reject::bad_request(
            "config in the CONFIG envelope is not the one its last_update produces",
        ));
    }
    Ok(config)
}

/// Checks a Deliver request at the current time; see
/// [`check_deliver_seek_at`].
pub fn check_deliver_seek(env: &Envelope, cfg: &ChannelConfig) -> Result<SeekInfo> {
    check_deliver_seek_at(env, cfg, SystemTime::now())
}

/// Checks a Deliver request, with time judged at `now`, and returns its
/// seek info.
///
/// BAD_REQUEST if the headers do not decode, the type is not
/// DELIVER_SEEK_INFO, the timestamp is missing or more than
/// [`DELIVER_TIME_WINDOW`] from `now`, or the data is not a `SeekInfo` with
/// start and stop; FORBIDDEN if the creator is unknown, invalid or expired,
/// its signature does not verify, or it does not satisfy `/Channel/Readers`.
pub fn check_deliver_seek_at(
    env: &Envelope,
    cfg: &ChannelConfig,
    now: SystemTime,
) -> Result<SeekInfo> {
    let parsed = parse(env)?;
    let ch = &parsed.channel_header;
    if ch.r#type != HeaderType::DeliverSeekInfo as i32 {
        return Err(Reject::bad_request(format!(
            "envelope of type {} is not a DELIVER_SEEK_INFO request",
            type_name(ch.r#type)
        )));
    }
    check_time_window(ch, now)?;
    authorize(
        &parsed.signature_header,
        env,
        cfg,
        CHANNEL_READERS,
        now,
        "creator",
    )?;
    let seek = SeekInfo::decode(parsed.payload.data.as_slice())
        .map_err(|e| Reject::bad_request(format!("malformed SeekInfo: {e}")))?;
    if seek.start.is_none() || seek.stop.is_none() {
        return Err(Reject::bad_request(
            "seek info is missing its start or stop position",
        ));
    }
    Ok(seek)
}

/// Empty-payload and `AbsoluteMaxBytes` checks (Fabric's empty-reject and
/// size filters).
fn check_size(len: usize, env: &Envelope, cfg: &ChannelConfig) -> Result<()> {
    if env.payload.is_empty() {
        return Err(Reject::bad_request("message was empty"));
    }
    let max = cfg.batch_size.absolute_max_bytes;
    if len as u64 > u64::from(max) {
        return Err(Reject::bad_request(format!(
            "message payload is {len} bytes and exceeds maximum allowed {max} bytes"
        )));
    }
    Ok(())
}

/// The decoded headers of an envelope, without its payload data.
struct Headers {
    channel_header: ChannelHeader,
    signature_header: SignatureHeader,
}

/// Decodes only the payload's header: the hot Broadcast path does not need
/// (or copy) the payload data. The payload's own fields are still walked, so
/// a structurally malformed payload is refused as [`parse`] would.
fn parse_headers(env: &Envelope) -> Result<Headers> {
    let header = twill_protos::wire::field(&env.payload, 1)
        .map_err(|e| Reject::bad_request(format!("malformed envelope payload: {e}")))?
        .ok_or_else(|| Reject::bad_request("envelope payload has no header"))?;
    let header = Header::decode(header)
        .map_err(|e| Reject::bad_request(format!("malformed envelope payload: {e}")))?;
    let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| Reject::bad_request(format!("malformed channel header: {e}")))?;
    let signature_header = SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| Reject::bad_request(format!("malformed signature header: {e}")))?;
    Ok(Headers {
        channel_header,
        signature_header,
    })
}

fn parse(env: &Envelope) -> Result<Parsed> {
    let payload = Payload::decode(env.payload.as_slice())
        .map_err(|e| Reject::bad_request(format!("malformed envelope payload: {e}")))?;
    let header = payload
        .header
        .as_ref()
        .ok_or_else(|| Reject::bad_request("envelope payload has no header"))?;
    let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| Reject::bad_request(format!("malformed channel header: {e}")))?;
    let signature_header = SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| Reject::bad_request(format!("malformed signature header: {e}")))?;
    Ok(Parsed {
        payload,
        channel_header,
        signature_header,
    })
}

/// The creator of `env` must be a valid, unexpired identity of a channel
/// MSP, must have signed the payload, and must satisfy `policy_path`.
/// `who` names the creator in messages ("creator", "orderer").
fn authorize(
    sh: &SignatureHeader,
    env: &Envelope,
    cfg: &ChannelConfig,
    policy_path: &str,
    now: SystemTime,
    who: &str,
) -> Result<Identity> {
    let id = match cfg.msps.deserialize_identity(&sh.creator) {
        Ok(id) => id,
        Err(MspError::UnknownMsp { mspid }) => {
            return Err(Reject::forbidden(format!(
            "{who} is of MSP '{mspid}', which is not a member of this channel (channel MSPs: {})",
            cfg.msps.msp_ids().join(", ")
        )))
        }
        Err(e) => {
            return Err(Reject::forbidden(format!(
                "{who} identity does not deserialize: {e}"
            )))
        }
    };
    let name = || format!("{} '{}'", id.mspid(), id.common_name());
    match cfg.msps.validate_at(&id, now) {
        Ok(()) => {}
        Err(e @ MspError::Expired { .. }) => {
            return Err(Reject::forbidden(format!(
                "{who} identity {} expired: {e}",
                name()
            )))
        }
        Err(e) => {
            return Err(Reject::forbidden(format!(
                "{who} identity {} is not valid: {e}",
                name()
            )))
        }
    }
    if let Err(e) = id.verify(&env.payload, &env.signature) {
        return Err(Reject::forbidden(format!(
            "signature of {who} {} over the envelope payload is invalid: {e}",
            name()
        )));
    }
    let policy = cfg
        .policies
        .get_policy(policy_path)
        .ok_or_else(|| Reject::forbidden(format!("policy {policy_path} does not exist")))?;
    policy
        .evaluate_identities(std::slice::from_ref(&id))
        .map_err(|e| {
            Reject::forbidden(format!(
                "{who} {} does not satisfy policy {policy_path}: {e}",
                name()
            ))
        })?;
    Ok(id)
}

/// Validates a CONFIG_UPDATE envelope against `cfg` and returns the next
/// config, which must build.
fn propose(update: &Envelope, cfg: &ChannelConfig, channel_id: &str) -> Result<Config> {
    let context = format!("error applying config update to existing channel '{channel_id}'");
    let (_, update_env) =
        config_update_from_envelope(update).map_err(|e| config_reject(&context, e))?;
    let next =
        validate_update(cfg, channel_id, &update_env).map_err(|e| config_reject(&context, e))?;
    ChannelConfig::from_config(&next).map_err(|e| {
        Reject::bad_request(format!("{context}: the updated config is not valid: {e}"))
    })?;
    Ok(next)
}

fn config_reject(context: &str, e: ConfigtxError) -> Reject {
    let info = format!("{context}: {e}");
    match e {
        ConfigtxError::ModPolicyNotSatisfied { .. } | ConfigtxError::UnknownPolicy { .. } => {
            Reject::forbidden(info)
        }
        _ => Reject::bad_request(info),
    }
}

/// The CONFIG envelope carrying `next`, signed by `signer`.
fn signed_config_envelope(
    last_update: &Envelope,
    next: &Config,
    channel_id: &str,
    signer: &SigningIdentity,
) -> Result<Envelope> {
    let creator = signer.serialize();
    let nonce = twill_crypto::try_random_bytes(NONCE_LEN)
        .map_err(|e| Reject::internal(format!("cannot draw a nonce: {e}")))?;
    let tx_id = compute_tx_id(&nonce, &creator);
    let ch = channel_header(HeaderType::Config, 0, channel_id, &tx_id);
    let sh = SignatureHeader { creator, nonce };
    let data = ConfigEnvelope {
        config: Some(next.clone()),
        last_update: Some(last_update.clone()),
    }
    .encode_to_vec();
    let mut env = envelope(&ch, &sh, data);
    env.signature = signer
        .sign(&env.payload)
        .map_err(|e| Reject::internal(format!("orderer cannot sign the CONFIG envelope: {e}")))?;
    Ok(env)
}

fn check_time_window(ch: &ChannelHeader, now: SystemTime) -> Result<()> {
    let ts = ch
        .timestamp
        .as_ref()
        .ok_or_else(|| Reject::bad_request("channel header in envelope must contain timestamp"))?;
    let env_nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    let now_nanos = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let window = DELIVER_TIME_WINDOW.as_nanos() as i128;
    if (now_nanos - env_nanos).abs() > window {
        return Err(Reject::bad_request(format!(
            "envelope timestamp {}s is more than {}s apart from the orderer's time {}s",
            ts.seconds,
            DELIVER_TIME_WINDOW.as_secs(),
            now_nanos.div_euclid(1_000_000_000)
        )));
    }
    Ok(())
}

fn type_name(kind: i32) -> String {
    match HeaderType::try_from(kind) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("UNKNOWN({kind})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_display_and_response() {
        let r = Reject::forbidden("no");
        assert_eq!(r.to_string(), "403 FORBIDDEN: no");
        let resp = r.broadcast_response();
        assert_eq!(resp.status, 403);
        assert_eq!(resp.info, "no");
        assert_eq!(Reject::bad_request("x").context("ctx").info, "ctx: x");
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in [
            vec![],
            vec![0xff],
            vec![0x0a, 0x05, 1, 2],
            vec![0x0a, 0x02, 0x0a, 0x00],
            b"\x0a\x04\x0a\x02\x0a\x00".to_vec(),
        ] {
            let env = Envelope {
                payload: bytes.clone(),
                signature: bytes,
            };
            if let Err(r) = classify(&env) {
                assert_eq!(r.status, Status::BadRequest, "{r}");
            }
        }
    }

    #[test]
    fn classification_by_type() {
        let mk = |t: HeaderType| {
            let ch = ChannelHeader {
                r#type: t as i32,
                ..Default::default()
            };
            envelope(&ch, &SignatureHeader::default(), vec![])
        };
        assert_eq!(
            classify(&mk(HeaderType::ConfigUpdate)).unwrap().0,
            Classification::ConfigUpdate
        );
        assert_eq!(
            classify(&mk(HeaderType::EndorserTransaction)).unwrap().0,
            Classification::Normal
        );
        assert_eq!(
            classify(&mk(HeaderType::Config)).unwrap().0,
            Classification::Normal
        );
        let no_header = Envelope {
            payload: Payload::default().encode_to_vec(),
            signature: vec![],
        };
        let r = classify(&no_header).unwrap_err();
        assert_eq!(r.status, Status::BadRequest);
        assert_eq!(r.info, "envelope payload has no header");
    }

    #[test]
    fn time_window() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ch = |secs: i64| ChannelHeader {
            timestamp: Some(prost_types_ts(secs)),
            ..Default::default()
        };
        assert!(check_time_window(&ch(1_000_000), now).is_ok());
        assert!(check_time_window(&ch(1_000_000 - 900), now).is_ok());
        assert!(check_time_window(&ch(1_000_000 + 900), now).is_ok());
        assert!(check_time_window(&ch(1_000_000 - 901), now).is_err());
        assert!(check_time_window(&ch(1_000_000 + 901), now).is_err());
        assert!(check_time_window(&ChannelHeader::default(), now).is_err());
    }

    fn prost_types_ts(seconds: i64) -> twill_protos::prost_types::Timestamp {
        twill_protos::prost_types::Timestamp { seconds, nanos: 0 }
    }
}
