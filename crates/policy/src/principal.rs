//! MSP role principals as the policy language writes them (`'Org1MSP.peer'`).

use prost::Message;
use twill_protos::common::msp_principal::Classification;
use twill_protos::common::msp_role::MspRoleType;
use twill_protos::common::{MspPrincipal, MspRole};

/// The roles of the policy language, in the spelling the language uses.
const ROLES: [(&str, MspRoleType); 5] = [
    ("member", MspRoleType::Member),
    ("admin", MspRoleType::Admin),
    ("client", MspRoleType::Client),
    ("peer", MspRoleType::Peer),
    ("orderer", MspRoleType::Orderer),
];

/// The role named `name` (lowercase, as Fabric requires), if any.
pub(crate) fn role_from_name(name: &str) -> Option<MspRoleType> {
    ROLES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The policy-language name of `role`.
pub fn role_name(role: MspRoleType) -> &'static str {
    match role {
        MspRoleType::Member => "member",
        MspRoleType::Admin => "admin",
        MspRoleType::Client => "client",
        MspRoleType::Peer => "peer",
        MspRoleType::Orderer => "orderer",
    }
}

/// Whether `id` can be written as the MSP part of a principal: one or more
/// ASCII letters, digits, `.` or `-` (the set Fabric's parser accepts).
pub(crate) fn is_writable_msp_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// A `ROLE` principal for `role` in MSP `msp_id`, encoded as Fabric does.
pub fn msp_role_principal(msp_id: &str, role: MspRoleType) -> MspPrincipal {
    MspPrincipal {
        principal_classification: Classification::Role as i32,
        principal: MspRole {
            msp_identifier: msp_id.to_owned(),
            role: role as i32,
        }
        .encode_to_vec(),
    }
}

/// Describes a principal for humans: `'Org1MSP.peer'` for roles, or its
/// classification otherwise. Never fails; used in error messages and logs.
pub fn describe_principal(p: &MspPrincipal) -> String {
    match as_role(p) {
        Some((msp, role)) => format!("'{msp}.{}'", role_name(role)),
        None => match Classification::try_from(p.principal_classification) {
            Ok(c) => format!("{} principal", c.as_str_name()),
            Err(_) => format!("principal of classification {}", p.principal_classification),
        },
    }
}

/// The MSP ID and role of a `ROLE` principal, if `p` is one and decodes.
pub(crate) fn as_role(p: &MspPrincipal) -> Option<(String, MspRoleType)> {
    if p.principal_classification != Classification::Role as i32 {
        return None;
    }
    let role = MspRole::decode(p.principal.as_slice()).ok()?;
    let r = MspRoleType::try_from(role.role).ok()?;
    Some((role.msp_identifier, r))
}
