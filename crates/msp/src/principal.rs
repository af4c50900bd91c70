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

/// An ORGANIZATION_UNIT principal for OU `ou` of MSP `mspid`, with an
/// empty certifiers identifier.
///
/// As in Fabric, which compares certifiers identifiers byte for byte, such a
/// principal is never satisfied by an X.509 identity; it is only useful to
/// build principals that must not match. Use [`ou_principal_with_certifiers`]
/// with [`crate::Msp::certifiers_identifier`] for one that can be satisfied.
pub fn ou_principal(mspid: &str, ou: &str) -> MspPrincipal {
    ou_principal_with_certifiers(mspid, ou, &[])
}

/// An ORGANIZATION_UNIT principal for OU `ou` of MSP `mspid`, satisfied by
/// valid identities carrying the OU whose chain has this certifiers
/// identifier (see [`crate::Msp::certifiers_identifier`]).
pub fn ou_principal_with_certifiers(
    mspid: &str,
    ou: &str,
    certifiers_identifier: &[u8],
) -> MspPrincipal {
    MspPrincipal {
        principal_classification: Classification::OrganizationUnit as i32,
        principal: OrganizationUnit {
            msp_identifier: mspid.to_owned(),
            organizational_unit_identifier: ou.to_owned(),
            certifiers_identifier: certifiers_identifier.to_vec(),
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
