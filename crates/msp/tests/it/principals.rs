use crate::pki::Ca;
use crate::{identity, Config, Org, ORG1};
use prost::Message;
use twill_msp::{
    identity_principal, ou_principal_with_certifiers, role_principal, Identity, Msp, MspError,
    NodeRole, Unsatisfied,
};
use twill_protos::common::msp_principal::Classification;
use twill_protos::common::msp_role::MspRoleType;
use twill_protos::common::{CombinedPrincipal, MspPrincipal, OrganizationUnit};

fn not_satisfied(r: twill_msp::Result<()>) -> Unsatisfied {
    match r {
        Err(MspError::PrincipalNotSatisfied { reason, .. }) => reason,
        other => panic!("expected PrincipalNotSatisfied, got {other:?}"),
    }
}

#[test]
fn peer_is_member_and_peer_but_not_admin() {
    let org = Org::generate();
    let msp = org.msp();
    let peer = identity(&org.peer);
    msp.satisfies_principal(&peer, &role_principal(ORG1, MspRoleType::Peer))
        .unwrap();
    msp.satisfies_principal(&peer, &role_principal(ORG1, MspRoleType::Member))
        .unwrap();
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&peer, &role_principal(ORG1, MspRoleType::Admin))),
        Unsatisfied::NotAdmin
    ));
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&peer, &role_principal(ORG1, MspRoleType::Client))),
        Unsatisfied::WrongRole {
            wanted: NodeRole::Client,
            actual: Some(NodeRole::Peer)
        }
    ));
    // Org2MSP.peer is not satisfied by an Org1 peer.
    assert!(matches!(
        not_satisfied(
            msp.satisfies_principal(&peer, &role_principal("Org2MSP", MspRoleType::Peer))
        ),
        Unsatisfied::OtherMsp { .. }
    ));
}

#[test]
fn admin_satisfies_admin_and_member() {
    let org = Org::generate();
    let msp = org.msp();
    let admin = identity(&org.admin);
    msp.satisfies_principal(&admin, &role_principal(ORG1, MspRoleType::Admin))
        .unwrap();
    msp.satisfies_principal(&admin, &role_principal(ORG1, MspRoleType::Member))
        .unwrap();
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&admin, &role_principal(ORG1, MspRoleType::Peer))),
        Unsatisfied::WrongRole { .. }
    ));
    let orderer = identity(&org.orderer);
    msp.satisfies_principal(&orderer, &role_principal(ORG1, MspRoleType::Orderer))
        .unwrap();
    let client = identity(&org.client);
    msp.satisfies_principal(&client, &role_principal(ORG1, MspRoleType::Client))
        .unwrap();
}

#[test]
fn listed_admin_cert_is_admin() {
    // Pre-NodeOU style: admins listed in admincerts, no OUs at all.
    let root = Ca::root("root");
    let admin = root.leaf("Admin@org1", &[]);
    let user = root.leaf("User1@org1", &[]);
    let msp = Config::new(ORG1, &root).admin(&admin).build();
    let admin_id = identity(&admin);
    assert!(msp.is_admin(&admin_id));
    msp.satisfies_principal(&admin_id, &role_principal(ORG1, MspRoleType::Admin))
        .unwrap();
    let user_id = identity(&user);
    assert!(!msp.is_admin(&user_id));
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&user_id, &role_principal(ORG1, MspRoleType::Admin))),
        Unsatisfied::NotAdmin
    ));
    // Without NodeOUs the node roles cannot be told apart.
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&user_id, &role_principal(ORG1, MspRoleType::Peer))),
        Unsatisfied::NodeOusDisabled
    ));
}

#[test]
fn listed_admins_with_node_ous_need_the_client_or_admin_ou() {
    let root = Ca::root("root");
    // Fabric rejects an admin certificate without the client or admin OU
    // when NodeOUs are on.
    let bare = root.leaf("Admin@org1", &[]);
    let cfg = Config::new(ORG1, &root).node_ous(None).admin(&bare).cfg;
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::AdminWithoutRoleOu { index: 0, .. })
    ));
    let peer_admin = root.leaf("Admin@org1", &["peer"]);
    let cfg = Config::new(ORG1, &root)
        .node_ous(None)
        .admin(&peer_admin)
        .cfg;
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::AdminWithoutRoleOu { .. })
    ));

    // A client listed in admins is an admin.
    let client_admin = root.leaf("Admin@org1", &["client"]);
    let msp = Config::new(ORG1, &root)
        .node_ous(None)
        .admin(&client_admin)
        .build();
    let id = identity(&client_admin);
    msp.validate(&id).unwrap();
    assert!(msp.is_admin(&id));
    assert_eq!(msp.node_role(&id), Some(NodeRole::Client));
    msp.satisfies_principal(&id, &role_principal(ORG1, MspRoleType::Admin))
        .unwrap();
}

#[test]
fn invalid_identity_satisfies_nothing() {
    let org = Org::generate();
    let msp = org.msp();
    let stranger = identity(&Ca::root("x").leaf("p", &["admin"]));
    for role in [MspRoleType::Member, MspRoleType::Admin, MspRoleType::Peer] {
        assert!(matches!(
            not_satisfied(msp.satisfies_principal(&stranger, &role_principal(ORG1, role))),
            Unsatisfied::InvalidIdentity(ref e) if matches!(**e, MspError::UntrustedChain { .. })
        ));
    }
}

#[test]
fn identity_principal_matches_same_certificate() {
    let org = Org::generate();
    let msp = org.msp();
    let peer = identity(&org.peer);
    msp.satisfies_principal(&peer, &identity_principal(&peer))
        .unwrap();

    // Same certificate, different PEM formatting: still the same identity.
    let reformatted = format!("subject=peer0\n{}", org.peer.pem.replace('\n', "\r\n"));
    let reencoded = Identity::from_pem(ORG1, reformatted.as_bytes()).unwrap();
    assert_eq!(Identity::from_der(ORG1, &org.peer.der).unwrap(), peer);
    assert_ne!(reencoded.cert_pem(), peer.cert_pem());
    msp.satisfies_principal(&peer, &identity_principal(&reencoded))
        .unwrap();

    let client = identity(&org.client);
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&client, &identity_principal(&peer))),
        Unsatisfied::DifferentIdentity
    ));
    let other_msp = Identity::from_pem("Org2MSP", org.peer.pem.as_bytes()).unwrap();
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&peer, &identity_principal(&other_msp))),
        Unsatisfied::OtherMsp { .. }
    ));
}

#[test]
fn organization_unit_principal() {
    let root = Ca::root("root");
    let ica = root.intermediate("ica");
    let leaf = ica.leaf("peer0", &["peer", "department1"]);
    let msp = Config::new(ORG1, &root)
        .intermediate(&ica)
        .admin(&ica.leaf("Admin", &[]))
        .build();
    let id = identity(&leaf);
    let certifiers = msp.certifiers_identifier(&id).unwrap();
    msp.satisfies_principal(
        &id,
        &ou_principal_with_certifiers(ORG1, "department1", &certifiers),
    )
    .unwrap();
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(
            &id,
            &ou_principal_with_certifiers(ORG1, "department2", &certifiers)
        )),
        Unsatisfied::MissingOu { .. }
    ));
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(
            &id,
            &ou_principal_with_certifiers("Org2MSP", "department1", &certifiers)
        )),
        Unsatisfied::OtherMsp { .. }
    ));

    // Certifiers identifier: SHA-256 over the CA chain, issuer first.
    let chain: Vec<u8> = [ica.der(), root.der()].concat();
    assert_eq!(certifiers, twill_crypto::sha256(&chain));
    let with_certifiers = |certifiers: Vec<u8>| MspPrincipal {
        principal_classification: Classification::OrganizationUnit as i32,
        principal: OrganizationUnit {
            msp_identifier: ORG1.into(),
            organizational_unit_identifier: "department1".into(),
            certifiers_identifier: certifiers,
        }
        .encode_to_vec(),
    };
    msp.satisfies_principal(&id, &with_certifiers(twill_crypto::sha256(&chain).to_vec()))
        .unwrap();
    assert!(matches!(
        not_satisfied(msp.satisfies_principal(&id, &with_certifiers(vec![0; 32]))),
        Unsatisfied::CertifiersMismatch { .. }
    ));
}

#[test]
fn combined_and_malformed_principals() {
    let org = Org::generate();
    let msp = org.msp();
    let peer = identity(&org.peer);
    let combined = |ps: Vec<MspPrincipal>| MspPrincipal {
        principal_classification: Classification::Combined as i32,
        principal: CombinedPrincipal { principals: ps }.encode_to_vec(),
    };
    msp.satisfies_principal(
        &peer,
        &combined(vec![
            role_principal(ORG1, MspRoleType::Member),
            role_principal(ORG1, MspRoleType::Peer),
        ]),
    )
    .unwrap();
    assert!(msp
        .satisfies_principal(
            &peer,
            &combined(vec![
                role_principal(ORG1, MspRoleType::Peer),
                role_principal(ORG1, MspRoleType::Admin),
            ]),
        )
        .is_err());

    // Deep nesting is cut off rather than recursing without bound.
    let mut deep = role_principal(ORG1, MspRoleType::Member);
    for _ in 0..20 {
        deep = combined(vec![deep]);
    }
    assert!(matches!(
        msp.satisfies_principal(&peer, &deep),
        Err(MspError::InvalidPrincipal { .. })
    ));

    for bad in [
        MspPrincipal {
            principal_classification: 99,
            principal: Vec::new(),
        },
        MspPrincipal {
            principal_classification: Classification::Role as i32,
            principal: vec![0xff, 0xff],
        },
        MspPrincipal {
            principal_classification: Classification::Identity as i32,
            principal: b"\x0a\x07Org1MSP\x12\x03abc".to_vec(),
        },
    ] {
        assert!(matches!(
            msp.satisfies_principal(&peer, &bad),
            Err(MspError::InvalidPrincipal { .. })
        ));
    }
}

#[test]
fn empty_certifiers_identifier_never_matches() {
    // Fabric compares certifiers identifiers with bytes.Equal, so an
    // ORGANIZATION_UNIT principal without one matches no X.509 identity.
    let root = Ca::root("root");
    let leaf = root.leaf("peer0", &["department1"]);
    let msp = Config::new(ORG1, &root)
        .admin(&root.leaf("Admin", &[]))
        .build();
    let id = identity(&leaf);
    msp.validate(&id).unwrap();
    for p in [
        twill_msp::ou_principal(ORG1, "department1"),
        ou_principal_with_certifiers(ORG1, "department1", &[]),
    ] {
        assert!(matches!(
            not_satisfied(msp.satisfies_principal(&id, &p)),
            Unsatisfied::CertifiersMismatch { .. }
        ));
    }
    let certifiers = msp.certifiers_identifier(&id).unwrap();
    msp.satisfies_principal(
        &id,
        &ou_principal_with_certifiers(ORG1, "department1", &certifiers),
    )
    .unwrap();
    assert_eq!(certifiers, twill_crypto::sha256(&root.der()));
}
