//! Policies for Twill, compatible with Hyperledger Fabric: the policy
//! language, signature policies, implicit-meta policies, and a manager that
//! serves a channel config tree's policies by path.
//!
//! * [`parse_policy`] turns text such as
//!   `AND('Org1MSP.peer', OR('Org2MSP.member', 'Org3MSP.admin'))` into the
//!   `SignaturePolicyEnvelope` Fabric's parser builds for it, byte for byte;
//!   [`policy_to_string`] prints an envelope back. [`builder`] makes common
//!   envelopes in code and parses `configtx.yaml` implicit-meta rules.
//! * [`Policy`] is what every evaluable policy implements: given
//!   [`SignedData`], it says whether the signers satisfy it.
//!   [`SignaturePolicyEvaluator`] evaluates an envelope against a channel's
//!   [`MspManager`](twill_msp::MspManager) with Fabric's exact semantics
//!   (signatures checked once and in parallel, each signer counted once);
//!   [`ImplicitMetaEvaluator`] applies `ANY`/`ALL`/`MAJORITY` over child
//!   groups' policies.
//! * [`PolicyManager`] compiles all policies of a config tree and finds them
//!   by absolute (`/Channel/Application/Writers`) or relative path, including
//!   the `mod_policy` resolution a config-update validator needs.
//!
//! The crate runs no tasks. Evaluation is CPU work (signature checks on a
//! rayon pool, certificate validation in the MSP), so call it from a blocking
//! context on an async runtime.
//!
//! # Example
//!
//! ```
//! use twill_policy::{parse_policy, policy_to_string};
//!
//! let env = parse_policy("OutOf(2, 'Org1MSP.member', 'Org2MSP.member', 'Org3MSP.peer')")?;
//! assert_eq!(env.identities.len(), 3);
//! assert_eq!(
//!     policy_to_string(&env)?,
//!     "OutOf(2, 'Org1MSP.member', 'Org2MSP.member', 'Org3MSP.peer')"
//! );
//!
//! let err = parse_policy("AND('Org1MSP.member',)").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "at position 22: unexpected token ')' (expected a principal or AND/OR/OutOf)"
//! );
//! # Ok::<(), twill_policy::PolicyError>(())
//! ```
//!
//! Evaluating a channel's policies (the MSPs come from the channel config):
//!
//! ```no_run
//! use std::sync::Arc;
//! use twill_msp::MspManager;
//! use twill_policy::{PolicyManager, SignedData};
//! use twill_protos::common::ConfigGroup;
//!
//! # fn run(channel_group: &ConfigGroup, msps: MspManager, signed: Vec<SignedData>)
//! #     -> twill_policy::Result<()> {
//! let manager = PolicyManager::from_config_group("Channel", channel_group, Arc::new(msps))?;
//! if let Some(writers) = manager.get_policy("/Channel/Application/Writers") {
//!     writers.evaluate(&signed)?;
//! }
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]
#![warn(missing_docs)]

pub mod builder;
mod dsl;
mod error;
mod implicit_meta;
mod manager;
mod principal;
mod signature;
mod signed;

pub use dsl::{parse_policy, policy_to_string, MAX_NESTING};
pub use error::{PolicyError, Result};
pub use implicit_meta::ImplicitMetaEvaluator;
pub use manager::{PolicyManager, PATH_SEPARATOR};
pub use principal::{describe_principal, msp_role_principal, role_name};
pub use signature::SignaturePolicyEvaluator;
pub use signed::{valid_identities, AcceptAllPolicy, Policy, RejectPolicy, SignedData};
