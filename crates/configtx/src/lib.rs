//! Channel configuration for Twill.
//!
//! This crate owns the channel config tree (`Config` → `ConfigGroup`s of
//! values and policies) and everything done with it:
//!
//! - [`profile`]: reading Fabric's `configtx.yaml` (profiles, orgs with
//!   `MSPDir`, etcdraft consenters, batch settings, policies, capabilities);
//! - [`genesis`]: building the channel group of a profile and the genesis
//!   block of an application channel (no system channel), hashed exactly as
//!   Fabric does ([`block`]);
//! - [`update`]: computing a `ConfigUpdate` between two configs, signing it
//!   as an org admin, and validating an update against the current config —
//!   read-set versions, write-set versions, and the `mod_policy` of every
//!   changed element evaluated over the collected signatures;
//! - [`channel`]: the typed view of a config (MSPs, policies, orgs,
//!   consenters, batch settings) that nodes act on;
//! - [`inspect`]: a block rendered as JSON for people.
//!
//! ```no_run
//! use std::path::Path;
//! use twill_configtx::{genesis, profile::LoadedConfigtx};
//!
//! let cfg = LoadedConfigtx::load(Path::new("network-configs/test-network/configtx.yaml"))?;
//! let block = genesis::genesis_block_from_profile(&cfg, "TwoOrgsApplicationGenesis", "mychannel")?;
//! assert_eq!(block.header.unwrap().number, 0);
//! # Ok::<(), twill_configtx::ConfigtxError>(())
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod block;
pub mod channel;
pub mod duration;
pub mod genesis;
pub mod inspect;
pub mod keys;
pub mod profile;
pub mod update;

use std::path::PathBuf;

/// Errors of configuration handling. Messages name the file and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigtxError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML did not parse or did not fit the expected shape.
    #[error("{}: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A field holds a bad value.
    #[error("{field}: {reason}")]
    Field {
        /// `file: Profiles.X.Section.Field`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The profile is not in the file.
    #[error("{}: no profile named '{profile}' (profiles: {})", file.display(), known.join(", "))]
    UnknownProfile {
        /// The file.
        file: PathBuf,
        /// The requested name.
        profile: String,
        /// The names the file defines.
        known: Vec<String>,
    },
    /// The channel id breaks Fabric's naming rules.
    #[error("invalid channel id '{id}': {reason}")]
    InvalidChannelId {
        /// The id.
        id: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// Bytes that should hold a message did not decode.
    #[error("malformed {what}: {source}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// Decoder error.
        source: prost::DecodeError,
    },
    /// The block is not a config block or is incomplete.
    #[error("not a config block: {0}")]
    NotConfig(String),
    /// A config update is for another channel.
    #[error("config update is for channel '{got}', not '{expected}'")]
    WrongChannel {
        /// The channel being updated.
        expected: String,
        /// The channel named in the update.
        got: String,
    },
    /// The read set names a version that is no longer current.
    #[error("stale read set: {path} is at version {current}, the update read version {read}")]
    StaleReadSet {
        /// Config path of the element.
        path: String,
        /// Current version.
        current: u64,
        /// Version in the read set.
        read: u64,
    },
    /// The read set names an element that does not exist.
    #[error("read set names {path}, which does not exist")]
    ReadSetMissing {
        /// Config path of the element.
        path: String,
    },
    /// A written element does not bump its version by exactly one.
    #[error("bad version for {path}: attempted to set version {attempted}, current is {current}")]
    BadVersion {
        /// Config path of the element.
        path: String,
        /// Version in the write set.
        attempted: u64,
        /// Current version (absent = element is new and must be 0).
        current: String,
    },
    /// A written element has a bad name or `mod_policy`, or the result is unusable.
    #[error("{path}: {reason}")]
    InvalidElement {
        /// Config path of the element.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The update changes nothing.
    #[error("config update changes nothing")]
    EmptyUpdate,
    /// The signatures do not satisfy an element's `mod_policy`.
    #[error("{path}: mod_policy '{policy}' not satisfied: {reason}")]
    ModPolicyNotSatisfied {
        /// Config path of the element.
        path: String,
        /// The policy path evaluated.
        policy: String,
        /// Why it failed.
        reason: String,
    },
    /// A policy referenced by the config does not exist.
    #[error("{path}: mod_policy '{policy}' does not exist")]
    UnknownPolicy {
        /// Config path of the element.
        path: String,
        /// The policy path.
        policy: String,
    },
    /// An MSP in the config is invalid.
    #[error("MSP error: {0}")]
    Msp(#[from] twill_msp::MspError),
    /// A policy in the config is invalid.
    #[error("policy error: {0}")]
    Policy(#[from] twill_policy::PolicyError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ConfigtxError>;

pub(crate) fn decode<M: prost::Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|source| ConfigtxError::Decode { what, source })
}
