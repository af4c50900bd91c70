//! Policy answers must not depend on the wall clock: expiry is an ingress
//! check only (`validate`), never part of principal satisfaction.

use crate::pki::Ca;
use crate::{identity, Config, ORG1};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use twill_msp::{role_principal, MspError, MspManager, NodeRole, Unsatisfied};
use twill_protos::common::msp_role::MspRoleType;

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

#[test]
fn expired_node_ou_admin_still_satisfies_admin() {
    let root = Ca::root("ca.org1.example.com");
    let now = OffsetDateTime::now_utc();
    let admin = root.leaf_valid("Admin@org1", &["admin"], now - days(30), now - days(1));
    let msp = Config::new(ORG1, &root).node_ous(None).build();
    let id = identity(&admin);

    // Ingress rejects it as expired...
    assert!(matches!(msp.validate(&id), Err(MspError::Expired { .. })));
    // ...but membership and roles do not depend on the current time.
    msp.validate_ignoring_time(&id).unwrap();
    msp.satisfies_principal(&id, &role_principal(ORG1, MspRoleType::Admin))
        .unwrap();
    msp.satisfies_principal(&id, &role_principal(ORG1, MspRoleType::Member))
        .unwrap();
    assert!(msp.is_admin(&id));
    assert_eq!(msp.node_role(&id), Some(NodeRole::Admin));

    // The same through the manager, which policy evaluation uses.
    let manager = MspManager::try_new([msp]).unwrap();
    manager
        .satisfies_principal(&id, &role_principal(ORG1, MspRoleType::Admin))
        .unwrap();
    manager.validate_ignoring_time(&id).unwrap();
    assert!(matches!(
        manager.validate(&id),
        Err(MspError::Expired { .. })
    ));
    // Validating "as of" a time inside its validity period succeeds.
    let then = SystemTime::now() - Duration::from_secs(10 * 24 * 3600);
    manager.validate_at(&id, then).unwrap();
}

#[test]
fn expired_listed_admin_still_satisfies_admin() {
    let root = Ca::root("ca.org1.example.com");
    let now = OffsetDateTime::now_utc();
    let admin = root.leaf_valid("Admin@org1", &[], now - days(30), now - days(1));
    // Fabric validates listed admins at setup without looking at the clock.
    let msp = Config::new(ORG1, &root).admin(&admin).build();
    let id = identity(&admin);
    assert!(matches!(msp.validate(&id), Err(MspError::Expired { .. })));
    msp.satisfies_principal(&id, &role_principal(ORG1, MspRoleType::Admin))
        .unwrap();
    assert!(msp.is_admin(&id));
}

#[test]
fn chain_is_judged_at_the_identity_issuance() {
    let now = OffsetDateTime::now_utc();
    // A root that has expired since it issued the identity: still trusted for
    // principals, rejected at ingress.
    let old_root = Ca::root_valid("old-root", now - days(400), now - days(10));
    let peer = old_root.leaf_valid("peer0", &["peer"], now - days(100), now - days(20));
    let msp = Config::new(ORG1, &old_root).node_ous(None).build();
    let id = identity(&peer);
    msp.satisfies_principal(&id, &role_principal(ORG1, MspRoleType::Peer))
        .unwrap();
    assert!(matches!(msp.validate(&id), Err(MspError::Expired { .. })));

    // An identity issued before its CA was valid never validates, whatever
    // the time (Fabric verifies the chain at the identity's not_before + 1s).
    let young_root = Ca::root_valid("young-root", now - days(10), now + days(3650));
    let early = young_root.leaf_valid("early", &["peer"], now - days(30), now + days(365));
    let msp = Config::new(ORG1, &young_root).node_ous(None).build();
    let id = identity(&early);
    let err = msp.validate_ignoring_time(&id).unwrap_err();
    assert!(
        matches!(err, MspError::NotYetValid { ref subject, .. } if subject.contains("young-root")),
        "{err:?}"
    );
    match msp.satisfies_principal(&id, &role_principal(ORG1, MspRoleType::Member)) {
        Err(MspError::PrincipalNotSatisfied {
            reason: Unsatisfied::InvalidIdentity(e),
            ..
        }) => assert!(matches!(*e, MspError::NotYetValid { .. })),
        other => panic!("expected InvalidIdentity, got {other:?}"),
    }
    assert!(msp.validate(&id).is_err());
    assert_eq!(msp.node_role(&id), None);
}

#[test]
#[allow(deprecated)]
fn deprecated_satisfies_principal_at_still_checks_the_time() {
    let root = Ca::root("ca.org1.example.com");
    let now = OffsetDateTime::now_utc();
    let admin = root.leaf_valid("Admin@org1", &["admin"], now - days(30), now - days(1));
    let msp = Config::new(ORG1, &root).node_ous(None).build();
    let id = identity(&admin);
    let p = role_principal(ORG1, MspRoleType::Admin);
    assert!(matches!(
        msp.satisfies_principal_at(&id, &p, SystemTime::now()),
        Err(MspError::PrincipalNotSatisfied {
            reason: Unsatisfied::InvalidIdentity(_),
            ..
        })
    ));
    let then = SystemTime::now() - Duration::from_secs(10 * 24 * 3600);
    msp.satisfies_principal_at(&id, &p, then).unwrap();
    let manager = MspManager::new([msp]);
    manager.satisfies_principal_at(&id, &p, then).unwrap();
    assert!(manager
        .satisfies_principal_at(&id, &p, SystemTime::now())
        .is_err());
}
