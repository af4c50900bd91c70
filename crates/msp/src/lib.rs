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
//!   validity period, CRLs, OU and NodeOU rules), tells their
//!   [`NodeRole`] and checks them against `MSPPrincipal`s;
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
//! # Where this differs from Fabric
//!
//! * [`Msp::validate`] checks every certificate's validity period (Fabric's
//!   MSP leaves expiry to its callers); [`Msp::validate_at`] takes the time
//!   to check at.
//! * A CRL revokes a certificate when its issuer's signature on the CRL
//!   verifies (Fabric matches the CRL's authority key id to the issuer's
//!   subject key id, then checks the signature); CRLs signed by no CA of the
//!   MSP are ignored.
//! * An ORGANIZATION_UNIT principal with an empty `certifiers_identifier`
//!   matches the OU under any chain of the MSP; Fabric requires the
//!   identifier to match.
//! * A certificate listed in `admins` satisfies ADMIN without the NodeOU rules
//!   but still needs a trusted chain, no revocation and a current validity
//!   period.
//! * Certificates are used exactly as given. Fabric rewrites ECDSA signatures
//!   inside certificates to low-S in places, so hashes over a certificate
//!   whose signature is high-S (certifiers identifiers) may differ from
//!   Fabric's.
//! * Identity keys must be ECDSA P-256; CA certificates may use any algorithm
//!   `ring` verifies.
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
//! let manager = MspManager::new([msp]);
//!
//! let me = SigningIdentity::from_msp_dir(dir, "Org1MSP")?;
//! let sig = me.sign(b"proposal bytes")?;
//!
//! // What a receiver does with the creator bytes and signature:
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
pub use principal::{identity_principal, ou_principal, role_principal};
pub use signing::SigningIdentity;
