//! Helpers that build `MSPPrincipal`s.

use crate::identity::Identity;
use prost::Message;
use twill_protos::common::msp_principal::Classification;
use twill_protos::common::msp_role::MspRoleType;
use twill_protos::common::{MspPrincipal, MspRole, OrganizationUnit};

/// A ROLE principal: `role` of MSP `mspid` (e.g. `Org1MSP.peer`).
pub fn role_principal(mspid: &str, role: MspRoleType) -> MspPrincipal {
    MspPrincipal {
        principal_classification: Classification::Role as i32,
        principal: MspRole {
            msp_identifier: mspid.to_owned(),
            role: role as i32,
        }
        .encode_to_vec(),
    }
}

/// An ORGANIZATION_UNIT principal for OU `ou` of MSP `mspid`, with no
/// certifiers identifier (any chain of the MSP).
pub fn ou_principal(mspid: &str, ou: &str) -> MspPrincipal {
    MspPrincipal {
        principal_classification: Classification::OrganizationUnit as i32,
        principal: OrganizationUnit {
            msp_identifier: mspid.to_owned(),
            organizational_unit_identifier: ou.to_owned(),
            certifiers_identifier: Vec::new(),
        }
        .encode_to_vec(),
    }
}

/// An IDENTITY principal naming exactly this identity.
pub fn identity_principal(id: &Identity) -> MspPrincipal {
    MspPrincipal {
        principal_classification: Classification::Identity as i32,
        principal: id.serialize(),
    }
}
