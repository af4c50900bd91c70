use crate::pki::Ca;
use crate::{identity, Config, Org, ORG1};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use twill_msp::{Identity, Msp, MspError, NodeRole};

#[test]
fn role_leaves_validate_and_have_roles() {
    let org = Org::generate();
    let msp = org.msp();
    for (leaf, role) in [
        (&org.peer, NodeRole::Peer),
        (&org.admin, NodeRole::Admin),
        (&org.client, NodeRole::Client),
        (&org.orderer, NodeRole::Orderer),
    ] {
        let id = identity(leaf);
        msp.validate(&id).unwrap();
        assert_eq!(msp.node_role(&id), Some(role));
        assert_eq!(msp.is_admin(&id), role == NodeRole::Admin);
    }
}

#[test]
fn untrusted_root_rejected() {
    let org = Org::generate();
    let stranger = Ca::root("ca.org1.example.com"); // same name, different key
    let id = identity(&stranger.leaf("peer0.org1.example.com", &["peer"]));
    let err = org.msp().validate(&id).unwrap_err();
    assert!(matches!(err, MspError::UntrustedChain { .. }), "{err:?}");
    assert_eq!(org.msp().node_role(&id), None);
}

#[test]
fn expired_and_not_yet_valid_rejected() {
    let org = Org::generate();
    let msp = org.msp();
    let now = OffsetDateTime::now_utc();
    let expired = org.root.leaf_valid(
        "old",
        &["peer"],
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    let err = msp.validate(&identity(&expired)).unwrap_err();
    assert!(matches!(err, MspError::Expired { .. }), "{err:?}");

    let future = org.root.leaf_valid(
        "future",
        &["peer"],
        now + time::Duration::days(1),
        now + time::Duration::days(30),
    );
    let err = msp.validate(&identity(&future)).unwrap_err();
    assert!(matches!(err, MspError::NotYetValid { .. }), "{err:?}");

    // The chain check is cached, the time check is not.
    let peer = identity(&org.peer);
    msp.validate(&peer).unwrap();
    let far = SystemTime::now() + Duration::from_secs(20 * 365 * 24 * 3600);
    assert!(matches!(
        msp.validate_at(&peer, far),
        Err(MspError::Expired { .. })
    ));
    msp.validate(&peer).unwrap();
}

#[test]
fn revoked_rejected_only_by_a_crl_of_the_msp() {
    let org = Org::generate();
    let revoked = org.root.leaf("revoked", &["peer"]);
    let msp = Config::new(ORG1, &org.root)
        .node_ous(None)
        .crl(org.root.crl(&[revoked.serial]))
        .build();
    let err = msp.validate(&identity(&revoked)).unwrap_err();
    assert!(matches!(err, MspError::Revoked { .. }), "{err:?}");
    msp.validate(&identity(&org.peer)).unwrap();

    // A CRL naming the same serial but signed by a foreign CA counts for nothing.
    let forger = Ca::root("ca.org1.example.com");
    let msp = Config::new(ORG1, &org.root)
        .node_ous(None)
        .crl(forger.crl(&[revoked.serial]))
        .build();
    msp.validate(&identity(&revoked)).unwrap();
}

#[test]
fn revoked_intermediate_rejects_its_leaves() {
    let root = Ca::root("root");
    let ica = root.intermediate("ica");
    let leaf = ica.leaf("peer0", &["peer"]);
    let msp = Config::new(ORG1, &root)
        .intermediate(&ica)
        .node_ous(None)
        .crl(root.crl(&[ica.serial]))
        .build();
    let err = msp.validate(&identity(&leaf)).unwrap_err();
    assert!(
        matches!(err, MspError::Revoked { ref subject, .. } if subject.contains("ica")),
        "{err:?}"
    );
}

#[test]
fn wrong_node_ou_rejected() {
    let org = Org::generate();
    let msp = org.msp();
    let none = identity(&org.root.leaf("nobody", &["marketing"]));
    let err = msp.validate(&none).unwrap_err();
    assert!(matches!(err, MspError::MissingNodeOu { .. }), "{err:?}");
    assert_eq!(msp.node_role(&none), None);

    let both = identity(&org.root.leaf("both", &["peer", "client"]));
    let err = msp.validate(&both).unwrap_err();
    assert!(matches!(err, MspError::MultipleNodeOus { .. }), "{err:?}");
}

#[test]
fn node_ou_pinned_to_a_chain() {
    let root = Ca::root("root");
    let ica = root.intermediate("ica");
    let other_ica = root.intermediate("other-ica");
    let good = ica.leaf("peer0", &["peer"]);
    let bad = other_ica.leaf("peer1", &["peer"]);
    let msp = Config::new(ORG1, &root)
        .intermediate(&ica)
        .intermediate(&other_ica)
        .node_ous(Some(&ica.pem()))
        .build();
    msp.validate(&identity(&good)).unwrap();
    let err = msp.validate(&identity(&bad)).unwrap_err();
    assert!(
        matches!(err, MspError::NodeOuCertifierMismatch { ref ou } if ou == "peer"),
        "{err:?}"
    );
}

#[test]
fn failure_kinds_are_distinct_variants() {
    let org = Org::generate();
    let now = OffsetDateTime::now_utc();
    let revoked = org.root.leaf("revoked", &["peer"]);
    let msp = Config::new(ORG1, &org.root)
        .node_ous(None)
        .crl(org.root.crl(&[revoked.serial]))
        .build();
    let untrusted = identity(&Ca::root("x").leaf("u", &["peer"]));
    let expired = identity(&org.root.leaf_valid(
        "e",
        &["peer"],
        now - time::Duration::days(3),
        now - time::Duration::days(2),
    ));
    let wrong_ou = identity(&org.root.leaf("w", &["sales"]));
    let errors = [
        msp.validate(&untrusted).unwrap_err(),
        msp.validate(&expired).unwrap_err(),
        msp.validate(&identity(&revoked)).unwrap_err(),
        msp.validate(&wrong_ou).unwrap_err(),
    ];
    assert!(matches!(errors[0], MspError::UntrustedChain { .. }));
    assert!(matches!(errors[1], MspError::Expired { .. }));
    assert!(matches!(errors[2], MspError::Revoked { .. }));
    assert!(matches!(errors[3], MspError::MissingNodeOu { .. }));
    let codes: std::collections::HashSet<_> = errors.iter().map(|e| e.code()).collect();
    assert_eq!(codes.len(), 4);
}

#[test]
fn intermediate_chains() {
    let root = Ca::root("root");
    let ica = root.intermediate("ica");
    let msp = Config::new(ORG1, &root)
        .intermediate(&ica)
        .node_ous(None)
        .build();
    msp.validate(&identity(&ica.leaf("peer0", &["peer"])))
        .unwrap();

    // A CA that issued an intermediate of the MSP may not issue identities.
    let err = msp
        .validate(&identity(&root.leaf("direct", &["peer"])))
        .unwrap_err();
    assert!(matches!(err, MspError::IssuerNotLeafCa { .. }), "{err:?}");

    // An intermediate whose root is missing is a configuration error.
    let stray = Ca::root("elsewhere").intermediate("stray");
    let cfg = Config::new(ORG1, &root).intermediate(&stray).cfg;
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::IntermediateNotChained { .. })
    ));
}

#[test]
fn ca_certificate_is_not_an_identity() {
    let root = Ca::root("root");
    let msp = Config::new(ORG1, &root)
        .admin(&root.leaf("Admin", &[]))
        .build();
    let id = Identity::from_pem(ORG1, root.pem().as_bytes()).unwrap();
    assert!(matches!(
        msp.validate(&id),
        Err(MspError::CaCertAsIdentity { .. })
    ));
}

#[test]
fn leaf_as_root_rejected_in_config() {
    let root = Ca::root("root");
    let leaf = root.leaf("peer", &[]);
    let mut cfg = Config::new(ORG1, &root).cfg;
    cfg.root_certs = vec![leaf.pem.into_bytes()];
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::NotCaCertificate { .. })
    ));
}

#[test]
fn identity_of_other_msp_rejected() {
    let org = Org::generate();
    let id = Identity::from_pem("Org2MSP", org.peer.pem.as_bytes()).unwrap();
    assert!(matches!(
        org.msp().validate(&id),
        Err(MspError::MspIdMismatch { .. })
    ));
}

#[test]
fn without_node_ous_any_ou_is_a_member() {
    let root = Ca::root("root");
    let msp = Config::new(ORG1, &root)
        .admin(&root.leaf("Admin", &[]))
        .build();
    let id = identity(&root.leaf("anyone", &["sales", "peer"]));
    msp.validate(&id).unwrap();
    assert_eq!(msp.node_role(&id), None);
    assert!(!msp.node_ous_enabled());
}

#[test]
fn ou_identifiers_restrict_membership() {
    let root = Ca::root("root");
    let mut cfg = Config::new(ORG1, &root)
        .admin(&root.leaf("Admin", &["COP"]))
        .cfg;
    cfg.organizational_unit_identifiers
        .push(twill_protos::msp::FabricOuIdentifier {
            certificate: root.pem().into_bytes(),
            organizational_unit_identifier: "COP".into(),
        });
    let msp = Msp::from_config(&cfg).unwrap();
    msp.validate(&identity(&root.leaf("a", &["COP"]))).unwrap();
    assert!(matches!(
        msp.validate(&identity(&root.leaf("b", &["other"]))),
        Err(MspError::OuNotRecognized { .. })
    ));

    // Listed admins must pass the OU rules too when NodeOUs are off.
    let mut outsider = cfg.clone();
    outsider.admins = vec![root.leaf("Admin", &["other"]).pem.into_bytes()];
    assert!(matches!(
        Msp::from_config(&outsider),
        Err(MspError::InvalidAdmin { index: 0, ref source })
            if matches!(**source, MspError::OuNotRecognized { .. })
    ));

    // The OU certificate must be a CA of the MSP.
    cfg.organizational_unit_identifiers[0].certificate = Ca::root("x").pem().into_bytes();
    assert!(matches!(
        Msp::from_config(&cfg),
        Err(MspError::OuCertificateNotCa { .. })
    ));
}

#[test]
fn msp_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Msp>();
    assert_send_sync::<twill_msp::MspManager>();
    assert_send_sync::<Identity>();
    assert_send_sync::<twill_msp::SigningIdentity>();

    let org = Org::generate();
    let msp = std::sync::Arc::new(org.msp());
    let id = identity(&org.peer);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (msp, id) = (msp.clone(), id.clone());
            std::thread::spawn(move || msp.validate(&id).is_ok())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}
