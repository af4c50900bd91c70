//! MSP setup rules that Fabric (MSP 1.4.3+) enforces.

use crate::pki::Ca;
use crate::{identity, node_ous, Config, ORG1};
use twill_msp::{role_principal, Msp, MspError, MspManager, Unsatisfied};
use twill_protos::common::msp_role::MspRoleType;
use twill_protos::msp::{FabricNodeOUs, FabricOuIdentifier};

fn not_satisfied(r: twill_msp::Result<()>) -> Unsatisfied {
    match r {
        Err(MspError::PrincipalNotSatisfied { reason, .. }) => reason,
        other => panic!("expected PrincipalNotSatisfied, got {other:?}"),
    }
}

#[test]
fn node_ous_enabled_without_role_ous_are_off() {
    let root = Ca::root("root");
    let empty = FabricNodeOUs {
        enable: true,
        ..Default::default()
    };
    // Fabric turns NodeOUs off, and then requires admin certificates.
    let mut cfg = Config::new(ORG1, &root).cfg;
    cfg.fabric_node_ous = Some(empty);
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::NoAdmins { ref mspid }) if mspid == ORG1
    ));

    let admin = root.leaf("Admin@org1", &[]);
    cfg.admins = vec![admin.pem.clone().into_bytes()];
    let msp = Msp::from_config(&cfg).unwrap();
    assert!(!msp.node_ous_enabled());
    let peer = identity(&root.leaf("peer0", &["peer"]));
    msp.validate(&peer).unwrap();
    assert_eq!(msp.node_role(&peer), None);
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&peer, &role_principal(ORG1, MspRoleType::Peer))),
        Unsatisfied::NodeOusDisabled
    ));
    msp.satisfies_principal(&identity(&admin), &role_principal(ORG1, MspRoleType::Admin))
        .unwrap();
}

#[test]
fn admins_must_be_declared_somehow() {
    let root = Ca::root("root");
    // No NodeOUs, no admin certificates.
    assert!(matches!(
        Msp::from_config(&Config::new(ORG1, &root).cfg),
        Err(MspError::NoAdmins { .. })
    ));
    // NodeOUs without an admin OU and no admin certificates.
    let mut cfg = Config::new(ORG1, &root).node_ous(None).cfg;
    if let Some(n) = cfg.fabric_node_ous.as_mut() {
        n.admin_ou_identifier = None;
    }
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::NoAdmins { .. })
    ));
    // NodeOUs disabled, even with an admin OU configured.
    let mut cfg = Config::new(ORG1, &root).node_ous(None).cfg;
    if let Some(n) = cfg.fabric_node_ous.as_mut() {
        n.enable = false;
    }
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::NoAdmins { .. })
    ));
    // An admin OU in force is enough.
    Config::new(ORG1, &root).node_ous(None).build();
}

#[test]
fn listed_admins_must_be_valid_without_node_ous() {
    let root = Ca::root("root");
    let stranger = Ca::root("root").leaf("Admin@org1", &[]);
    let revoked = root.leaf("Admin@org1", &[]);
    let cfg = Config::new(ORG1, &root)
        .admin(&root.leaf("Admin2@org1", &[]))
        .admin(&stranger)
        .cfg;
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::InvalidAdmin { index: 1, ref source })
            if matches!(**source, MspError::UntrustedChain { .. })
    ));
    let cfg = Config::new(ORG1, &root)
        .admin(&revoked)
        .crl(root.crl(&[revoked.serial]))
        .cfg;
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::InvalidAdmin { index: 0, ref source })
            if matches!(**source, MspError::Revoked { .. })
    ));
}

#[test]
fn ou_identifier_without_certificate_is_a_setup_error() {
    let root = Ca::root("root");
    let mut cfg = Config::new(ORG1, &root)
        .admin(&root.leaf("Admin", &["COP"]))
        .cfg;
    cfg.organizational_unit_identifiers
        .push(FabricOuIdentifier {
            certificate: Vec::new(),
            organizational_unit_identifier: "COP".into(),
        });
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::OuIdentifierWithoutCertificate { ref ou }) if ou == "COP"
    ));
}

#[test]
fn disabled_node_ou_certificates_are_still_checked() {
    let root = Ca::root("root");
    let mut cfg = Config::new(ORG1, &root).admin(&root.leaf("Admin", &[])).cfg;
    let mut n = node_ous(Some(&Ca::root("elsewhere").pem()));
    n.enable = false;
    cfg.fabric_node_ous = Some(n);
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::OuCertificateNotCa { .. })
    ));
}

#[test]
fn ou_identifiers_are_not_enforced_with_node_ous() {
    // Fabric 1.4.3+: with NodeOUs in force only the role OU counts.
    let root = Ca::root("root");
    let mut cfg = Config::new(ORG1, &root).node_ous(None).cfg;
    cfg.organizational_unit_identifiers
        .push(FabricOuIdentifier {
            certificate: root.pem().into_bytes(),
            organizational_unit_identifier: "COP".into(),
        });
    let msp = Msp::from_config(&cfg).unwrap();
    msp.validate(&identity(&root.leaf("peer0", &["peer"])))
        .unwrap();

    cfg.fabric_node_ous = None;
    cfg.admins = vec![root.leaf("Admin", &["COP"]).pem.into_bytes()];
    let msp = Msp::from_config(&cfg).unwrap();
    assert!(matches!(
        msp.validate(&identity(&root.leaf("peer0", &["peer"]))),
        Err(MspError::OuNotRecognized { .. })
    ));
}

#[test]
fn duplicate_msp_ids() {
    let root = Ca::root("root");
    let other = Ca::root("other");
    let a = || Config::new(ORG1, &root).node_ous(None).build();
    let b = || Config::new(ORG1, &other).node_ous(None).build();

    // The same configuration twice is one MSP.
    let manager = MspManager::try_new([a(), a()]).unwrap();
    assert_eq!(manager.msp_ids(), vec![ORG1.to_owned()]);

    // Two different configurations under one id are refused, as Fabric's
    // channel config does.
    let err = MspManager::try_new([a(), b()]).unwrap_err();
    assert!(
        matches!(err, MspError::DuplicateMsp { ref mspid } if mspid == ORG1),
        "{err:?}"
    );
    assert_eq!(err.code(), "MSP_DUPLICATE_ID");

    // `new` keeps its documented behaviour: the later one wins.
    let manager = MspManager::new([a(), b()]);
    let peer = identity(&other.leaf("peer0", &["peer"]));
    manager.validate(&peer).unwrap();
}
