//! Membership service providers (MSPs) for Twill, compatible with Hyperledger
//! Fabric's X.509 ("FABRIC") MSP.
//!
//! An MSP is one organisation's trust anchor: its root and intermediate CAs,
//! admin certificates, CRLs, recognised organizational units and NodeOU
//! roles. This crate provides:
//!
//! * [`Identity`]: an X.509 certificate claimed by some MSP, with its
//!   `SerializedIdentity` wire form and the one signature-check seam,
//!   [`Identity::verify`];
//! * [`Msp`]: builds from a `FabricMSPConfig`, validates identities (chain,
//!   CRLs, OU and NodeOU rules; validity periods only where asked), tells
//!   their [`NodeRole`] and checks them against `MSPPrincipal`s;
//! * [`MspManager`]: the MSPs of a channel, by id;
//! * [`SigningIdentity`]: a local identity with its key, loaded from a Fabric
//!   `msp/` folder;
//! * [`load_fabric_msp_config`]: a Fabric `msp/` folder to the channel-config
//!   MSP value, and [`fabric_msp_config_to_msp_config`] to wrap it.
//!
//! The crate runs no tasks. Validation is CPU work (signature checks on the
//! certificate chain); its time-independent part is cached per certificate
//! inside each [`Msp`], so call it from a blocking context when checking many
//! identities.
//!
//! # Time
//!
//! Whether an identity satisfies a principal, and so every policy outcome,
//! never depends on the current time, as in Fabric:
//! [`Msp::validate_ignoring_time`] (used by [`Msp::satisfies_principal`])
//! checks the certificate chain as of the identity's `not_before` plus one
//! second, the time Fabric verifies chains at, so re-validating an old block
//! after its signer's certificate expired gives the same answer. Expiry is
//! checked only where transactions come in, with [`Msp::validate`] /
//! [`Msp::validate_at`] (endorsement, broadcast).
//!
//! # Where this differs from Fabric
//!
//! * [`Msp::validate`] / [`Msp::validate_at`] check every certificate of the
//!   chain against the given time; Fabric's ingress expiry check looks at the
//!   identity's own `not_after` only.
//! * A CRL revokes a certificate when its issuer's signature on the CRL
//!   verifies (Fabric matches the CRL's authority key id to the issuer's
//!   subject key id, then checks the signature); CRLs signed by no CA of the
//!   MSP are ignored.
//! * Chains are built by issuer name and signature and then checked against
//!   the issuance time; Go's verifier also weighs key usages, name
//!   constraints and alternative parents valid at that time.
//! * Certificates are used exactly as given. Fabric rewrites ECDSA signatures
//!   inside certificates to low-S in places, so hashes over a certificate
//!   whose signature is high-S (certifiers identifiers) may differ from
//!   Fabric's.
//! * Identity keys must be ECDSA P-256; CA certificates may use any algorithm
//!   `ring` verifies.
//! * TLS root and intermediate certificates are carried in the configuration
//!   but not checked when an [`Msp`] is built (Fabric requires them to be
//!   CA certificates that chain), and CA certificates need no subject key
//!   identifier extension (Fabric requires one).
//! * An ANONYMITY NOMINAL principal needs a valid identity (Fabric accepts
//!   any identity), and COMBINED principals nested more than eight deep are
//!   rejected as malformed (Fabric has no limit).
//!
//! As in Fabric, only the first PEM block of a certificate entry
//! (`root_certs`, `intermediate_certs`, `admins`, OU certificates,
//! `id_bytes`) is used, and [`load_fabric_msp_config`] keeps each file whole
//! as one entry; an ORGANIZATION_UNIT principal with an empty
//! `certifiers_identifier` matches nothing; listed admin certificates are
//! checked once, when the [`Msp`] is built (valid identities with NodeOUs
//! off, carrying the client or admin OU with NodeOUs on).
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use twill_msp::{
//!     load_fabric_msp_config, role_principal, Msp, MspManager, SigningIdentity,
//! };
//! use twill_protos::common::msp_role::MspRoleType;
//!
//! # fn main() -> twill_msp::Result<()> {
//! let dir = Path::new("organizations/peerOrganizations/org1.example.com/peers/peer0/msp");
//! let msp = Msp::from_config(&load_fabric_msp_config(dir, "Org1MSP")?)?;
//! let manager = MspManager::try_new([msp])?;
//!
//! let me = SigningIdentity::from_msp_dir(dir, "Org1MSP")?;
//! let sig = me.sign(b"proposal bytes")?;
//!
//! // What a receiver does with the creator bytes and signature: expiry is
//! // checked on the way in, the principal check does not depend on time.
//! let creator = manager.deserialize_identity(&me.serialize())?;
//! manager.validate(&creator)?;
//! creator.verify(b"proposal bytes", &sig)?;
//! manager.satisfies_principal(&creator, &role_principal("Org1MSP", MspRoleType::Peer))?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![warn(missing_docs)]

mod config;
mod error;
mod identity;
mod manager;
mod msp;
mod principal;
mod signing;

pub use config::{
    fabric_msp_config_to_msp_config, load_fabric_msp_config, ADMINCERTS_DIR, CACERTS_DIR,
    CONFIG_FILE, CRLS_DIR, INTERMEDIATECERTS_DIR, KEYSTORE_DIR, SIGNCERTS_DIR, TLSCACERTS_DIR,
    TLSINTERMEDIATECERTS_DIR,
};
pub use error::{MspError, Result, Unsatisfied};
pub use identity::{deserialize_serialized_identity, Identity};
pub use manager::MspManager;
pub use msp::{Msp, NodeRole, FABRIC_MSP_TYPE};
pub use principal::{
    identity_principal, ou_principal, ou_principal_with_certifiers, role_principal,
};
pub use signing::SigningIdentity;
