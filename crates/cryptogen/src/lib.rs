//! Fabric-compatible crypto material generator: Twill's `cryptogen generate`.
//!
//! A test or development network needs, for every organisation, a signing CA
//! and a TLS CA, plus certificates and keys for each orderer, peer, admin and
//! client user, laid out in the MSP folder structure that Fabric's tools and
//! nodes expect. This crate reads the same `crypto-config.yaml` format that
//! Hyperledger Fabric's `cryptogen` reads and writes the same directory tree,
//! so material generated here can be used by Fabric nodes and SDKs and the
//! other way round.
//!
//! # Layout
//!
//! - [`config`]: the `crypto-config.yaml` data model ([`CryptoConfig`]),
//!   loading with file/line-aware errors, and validation.
//! - `template`: the small `{{.Field}}` substitution language used by
//!   hostnames, common names and SANs.
//! - `pki`: key generation and certificate issuance (P-256, ECDSA-SHA256).
//! - `generate`: the output layout, MSP `config.yaml` files and the
//!   [`GenerateReport`].
//!
//! The crate runs no background tasks; [`generate`] is a plain blocking call
//! that does file I/O.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//!
//! let config = twill_cryptogen::load_config(Path::new("crypto-config.yaml"))?;
//! let report = twill_cryptogen::generate(&config, Path::new("organizations"))?;
//! for org in &report.orgs {
//!     println!("{} ({} files)", org.domain, org.files.len());
//! }
//! # Ok::<(), twill_cryptogen::CryptogenError>(())
//! ```
//!
//! # Regeneration
//!
//! Each organisation is built in a scratch directory next to its final
//! location and swapped in only once complete, replacing whatever was there.
//! Re-running therefore regenerates an organisation cleanly (no stale keys
//! from an earlier run survive), and a failed run leaves the previous
//! material untouched. Organisation directories that are not named in the
//! config are left alone.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod config;
mod error;
mod generate;
mod pki;
mod template;

pub use config::{
    load_config, parse_config, CaSpec, CryptoConfig, NodeSpec, NodeTemplate, OrgSpec, UsersSpec,
};
pub use error::{CryptogenError, Result};
pub use generate::{generate, GenerateReport, OrgKind, OrgReport};
