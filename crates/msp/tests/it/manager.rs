use crate::pki::Ca;
use crate::{identity, Config, Org, ORG1};
use twill_msp::{role_principal, Identity, MspError, MspManager};
use twill_protos::common::msp_role::MspRoleType;

#[test]
fn manager_routes_by_mspid() {
    let org1 = Org::generate();
    let org2_root = Ca::root("ca.org2.example.com");
    let org2_peer = org2_root.leaf("peer0.org2.example.com", &["peer"]);
    let manager = MspManager::new([
        Config::new("Org2MSP", &org2_root).node_ous(None).build(),
        org1.msp(),
    ]);
    assert_eq!(
        manager.msp_ids(),
        vec![ORG1.to_owned(), "Org2MSP".to_owned()]
    );
    assert_eq!(manager.get(ORG1).map(|m| m.id()), Some(ORG1));
    assert!(manager.get("Org3MSP").is_none());

    let p1 = manager
        .deserialize_identity(&identity(&org1.peer).serialize())
        .unwrap();
    manager.validate(&p1).unwrap();
    manager
        .satisfies_principal(&p1, &role_principal(ORG1, MspRoleType::Peer))
        .unwrap();
    assert!(matches!(
        manager.satisfies_principal(&p1, &role_principal("Org2MSP", MspRoleType::Peer)),
        Err(MspError::PrincipalNotSatisfied { .. })
    ));

    let p2 = Identity::from_pem("Org2MSP", org2_peer.pem.as_bytes()).unwrap();
    let p2 = manager.deserialize_identity(&p2.serialize()).unwrap();
    manager.validate(&p2).unwrap();

    // An Org2 certificate claiming to be Org1 does not validate there.
    let impostor = Identity::from_pem(ORG1, org2_peer.pem.as_bytes()).unwrap();
    assert!(matches!(
        manager.validate(&impostor),
        Err(MspError::UntrustedChain { .. })
    ));
}

#[test]
fn unknown_msp_in_manager() {
    let org = Org::generate();
    let manager = MspManager::new([org.msp()]);
    let stranger = Identity::from_pem("Org9MSP", org.peer.pem.as_bytes()).unwrap();
    assert!(matches!(
        manager.deserialize_identity(&stranger.serialize()),
        Err(MspError::UnknownMsp { ref mspid }) if mspid == "Org9MSP"
    ));
    assert!(matches!(
        manager.validate(&stranger),
        Err(MspError::UnknownMsp { .. })
    ));
    assert!(matches!(
        manager.satisfies_principal(&stranger, &role_principal("Org9MSP", MspRoleType::Member)),
        Err(MspError::UnknownMsp { .. })
    ));
    assert!(matches!(
        MspManager::default().validate(&identity(&org.peer)),
        Err(MspError::UnknownMsp { .. })
    ));
}
