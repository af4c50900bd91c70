//! Chaincode packages in Fabric's lifecycle format, package ids, and the
//! peer's store of installed packages.
//!
//! # The package format
//!
//! A package (what `peer lifecycle chaincode package` writes and
//! `install` sends) is a gzip-compressed tar holding exactly two regular
//! files:
//!
//! * `metadata.json`: `{"path": "...", "type": "...", "label": "..."}`;
//!   the label matches `^[[:alnum:]][[:alnum:]_.+-]*$`, the type is
//!   non-empty, and the path may be empty;
//! * `code.tar.gz`: another gzip-compressed tar, the chaincode itself.
//!
//! The package id is `<label>:<hex SHA-256 of the whole package file>`
//! ([`package_id`]).
//!
//! # Package types
//!
//! * `ccaas` (Fabric's chaincode-as-a-service): `code.tar.gz` holds a
//!   `connection.json` naming a chaincode server the peer dials
//!   ([`Connection`]).
//! * `process` (a Twill extension): `code.tar.gz` holds a program and a
//!   `run.json` (`{"command": ..., "args": [...], "env": {...}}`); the peer
//!   unpacks the code ([`unpack_code`]) and runs the command ([`RunSpec`]).
//! * Anything else (`golang`, `node`, `java`...) installs, but Twill cannot
//!   run it yet ([`PackageType::Other`], [`LaunchSpec::Other`]).
//!
//! # What this crate does
//!
//! * builds packages deterministically from memory ([`build_package`]) or
//!   a directory ([`build_package_from_dir`]): same inputs, same bytes,
//!   same id;
//! * parses and checks packages ([`parse_package`]), refusing oversized
//!   packages, missing or extra entries, bad labels, and code archives
//!   whose paths or symlinks could escape the unpack directory;
//! * reads the launch file ([`launch_spec`]) and unpacks code safely
//!   ([`unpack_code`]);
//! * keeps installed packages on disk ([`PackageStore`]).
//!
//! Every error is a [`LifecycleError`] with a stable [`code`](LifecycleError::code).

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod archive;
mod build;
mod error;
mod launch;
mod metadata;
mod parse;
mod store;
mod unpack;

pub use build::{
    assemble_package, build_code_archive, build_code_archive_from_dir, build_package,
    build_package_from_dir, CodeFile,
};
pub use error::{LifecycleError, Result};
pub use launch::{
    launch_spec, parse_connection, parse_go_duration, parse_run_spec, Connection, LaunchSpec,
    RunSpec, CONNECTION_FILE, DEFAULT_DIAL_TIMEOUT, RUN_FILE,
};
pub use metadata::{
    package_id, parse_package_id, validate_label, PackageMetadata, PackageType, TYPE_CCAAS,
    TYPE_PROCESS,
};
pub use parse::{parse_package, ParsedPackage, CODE_ENTRY, METADATA_ENTRY};
pub use store::{InstalledChaincode, PackageStore};
pub use unpack::{unpack_code, unpack_code_archive};

/// The largest package file accepted: 100 MiB.
pub const MAX_PACKAGE_BYTES: u64 = 100 * 1024 * 1024;

/// The largest `metadata.json` accepted: 1 MiB.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;

/// The most a code archive may unpack to, summing the sizes of its
/// entries: 1 GiB.
pub const MAX_CODE_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;

/// The most entries a code archive may hold.
pub const MAX_CODE_ENTRIES: usize = 100_000;

/// The largest `connection.json` or `run.json` accepted: 1 MiB.
pub const MAX_LAUNCH_FILE_BYTES: u64 = 1024 * 1024;
