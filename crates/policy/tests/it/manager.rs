//! Implicit-meta policies and the policy manager over a config tree.

use crate::fixture::{msps, sign_all, Org};
use std::collections::BTreeMap;
use twill_policy::builder::{
    implicit_meta_config_policy, signature_config_policy, signed_by_msp_admin, signed_by_msp_member,
};
use twill_policy::{parse_policy, PolicyError, PolicyManager};
use twill_protos::common::implicit_meta_policy::Rule;
use twill_protos::common::{ConfigGroup, ConfigPolicy, Policy as ProtoPolicy};

const DATA: &[u8] = b"config update";

fn entry(policy: ProtoPolicy) -> ConfigPolicy {
    ConfigPolicy {
        version: 0,
        policy: Some(policy),
        mod_policy: "Admins".to_owned(),
    }
}

fn group(policies: Vec<(&str, ProtoPolicy)>, groups: Vec<(&str, ConfigGroup)>) -> ConfigGroup {
    ConfigGroup {
        version: 0,
        groups: groups.into_iter().map(|(n, g)| (n.to_owned(), g)).collect(),
        values: BTreeMap::new(),
        policies: policies
            .into_iter()
            .map(|(n, p)| (n.to_owned(), entry(p)))
            .collect(),
        mod_policy: "Admins".to_owned(),
    }
}

fn org_group(mspid: &str) -> ConfigGroup {
    group(
        vec![
            (
                "Admins",
                signature_config_policy(&signed_by_msp_admin(mspid)),
            ),
            (
                "Readers",
                signature_config_policy(&signed_by_msp_member(mspid)),
            ),
            (
                "Writers",
                signature_config_policy(
                    &parse_policy(&format!("OR('{mspid}.admin', '{mspid}.client')"))
                        .expect("parse"),
                ),
            ),
        ],
        vec![],
    )
}

/// Channel { Admins: MAJORITY Admins, Readers: ANY Readers,
///   Application { Admins: MAJORITY, Readers: ANY, Writers: ALL,
///     Org1MSP, Org2MSP, Org3MSP } }
fn channel(orgs: &[&Org]) -> ConfigGroup {
    let application = group(
        vec![
            (
                "Admins",
                implicit_meta_config_policy(Rule::Majority, "Admins"),
            ),
            ("Readers", implicit_meta_config_policy(Rule::Any, "Readers")),
            ("Writers", implicit_meta_config_policy(Rule::All, "Writers")),
        ],
        orgs.iter()
            .map(|o| (o.mspid.as_str(), org_group(&o.mspid)))
            .collect(),
    );
    group(
        vec![
            (
                "Admins",
                implicit_meta_config_policy(Rule::Majority, "Admins"),
            ),
            ("Readers", implicit_meta_config_policy(Rule::Any, "Readers")),
        ],
        vec![("Application", application)],
    )
}

struct Net {
    orgs: [Org; 3],
    manager: PolicyManager,
}

fn net() -> Net {
    let orgs = [
        Org::new("Org1MSP"),
        Org::new("Org2MSP"),
        Org::new("Org3MSP"),
    ];
    let refs: Vec<&Org> = orgs.iter().collect();
    let manager =
        PolicyManager::from_config_group("Channel", &channel(&refs), msps(&refs)).expect("manager");
    Net { orgs, manager }
}

#[test]
fn majority_admins() {
    let n = net();
    let admins = n
        .manager
        .get_policy("/Channel/Application/Admins")
        .expect("policy");
    let [o1, o2, o3] = &n.orgs;
    let err = admins
        .evaluate(&sign_all(DATA, &[&o1.admin()]))
        .expect_err("1 of 3");
    let text = err.to_string();
    assert!(text.contains("/Channel/Application/Admins"), "{text}");
    assert!(
        text.contains("1 of the 3 'Admins' sub-policies satisfied, 2 required"),
        "{text}"
    );
    assert!(text.contains("Org2MSP/Admins, Org3MSP/Admins"), "{text}");

    admins
        .evaluate(&sign_all(DATA, &[&o1.admin(), &o3.admin()]))
        .expect("2 of 3");
    admins
        .evaluate(&sign_all(DATA, &[&o1.admin(), &o2.admin(), &o3.admin()]))
        .expect("3 of 3");
    // Members that are not admins do not count.
    assert!(admins
        .evaluate(&sign_all(DATA, &[&o1.admin(), &o2.peer(), &o3.client()]))
        .is_err());

    // /Channel/Admins is MAJORITY over its single child, Application.
    let channel_admins = n.manager.get_policy("/Channel/Admins").expect("policy");
    assert!(channel_admins
        .evaluate(&sign_all(DATA, &[&o2.admin()]))
        .is_err());
    channel_admins
        .evaluate(&sign_all(DATA, &[&o2.admin(), &o1.admin()]))
        .expect("majority of application admins");
}

#[test]
fn all_writers_and_any_readers() {
    let n = net();
    let [o1, o2, o3] = &n.orgs;
    let writers = n
        .manager
        .get_policy("Application/Writers")
        .expect("writers");
    assert!(writers
        .evaluate(&sign_all(DATA, &[&o1.client(), &o2.admin()]))
        .is_err());
    writers
        .evaluate(&sign_all(DATA, &[&o1.client(), &o2.admin(), &o3.client()]))
        .expect("all three");

    let readers = n.manager.get_policy("/Channel/Readers").expect("readers");
    readers
        .evaluate(&sign_all(DATA, &[&o3.peer()]))
        .expect("any member");
    assert!(readers.evaluate(&[]).is_err());
    let outsider = Org::new("Org4MSP");
    assert!(readers
        .evaluate(&sign_all(DATA, &[&outsider.peer()]))
        .is_err());
}

#[test]
fn lookups_by_absolute_and_relative_path() {
    let n = net();
    let m = &n.manager;
    assert_eq!(m.path(), "Channel");
    for found in [
        "Admins",
        "/Channel/Admins",
        "Application/Writers",
        "/Channel/Application/Writers",
        "Application/Org2MSP/Admins",
        "/Channel/Application/Org2MSP/Readers",
    ] {
        assert!(m.get_policy(found).is_some(), "{found}");
    }
    for missing in [
        "",
        "/",
        "Writers",
        "/Channel",
        "/Channel/",
        "/ChannelX/Admins",
        "/Chan/Admins",
        "Channel/Admins",
        "/Application/Admins",
        "Application/Org9MSP/Admins",
    ] {
        assert!(m.get_policy(missing).is_none(), "{missing}");
    }

    let app = m.manager_for(&["Application"]).expect("application");
    assert_eq!(app.path(), "Channel/Application");
    assert!(app.get_policy("Writers").is_some());
    assert!(app.get_policy("Org1MSP/Admins").is_some());
    assert!(app
        .get_policy("/Channel/Application/Org1MSP/Admins")
        .is_some());
    assert!(
        app.get_policy("/Channel/Admins").is_none(),
        "outside the group"
    );
    let org1 = m.manager_for(&["Application", "Org1MSP"]).expect("org1");
    assert_eq!(org1.path(), "Channel/Application/Org1MSP");
    assert!(m.manager_for(&[]).is_some_and(|r| r.path() == "Channel"));
    assert!(m.manager_for(&["Orderer"]).is_none());
    assert_eq!(
        app.group_names().collect::<Vec<_>>(),
        ["Org1MSP", "Org2MSP", "Org3MSP"]
    );
    assert!(app.policy_names().any(|p| p == "Org3MSP/Writers"));

    // The same compiled policy is reachable through every path.
    let [o1, o2, _] = &n.orgs;
    let by_abs = m
        .get_policy("/Channel/Application/Org1MSP/Admins")
        .expect("abs");
    let by_rel = org1.get_policy("Admins").expect("rel");
    for p in [by_abs, by_rel] {
        p.evaluate(&sign_all(DATA, &[&o1.admin()]))
            .expect("org1 admin");
        assert!(p.evaluate(&sign_all(DATA, &[&o2.admin()])).is_err());
        assert!(p.signature_envelope().is_some());
    }
}

#[test]
fn mod_policy_resolution() {
    let n = net();
    let m = &n.manager;
    let [o1, o2, _] = &n.orgs;
    // Relative: resolved in the element's group.
    let org1_admins = m
        .mod_policy_for(&["Application", "Org1MSP"], "Admins")
        .expect("org1");
    org1_admins
        .evaluate(&sign_all(DATA, &[&o1.admin()]))
        .expect("org1 admin");
    assert!(org1_admins
        .evaluate(&sign_all(DATA, &[&o2.admin()]))
        .is_err());
    // Relative at the root.
    assert!(m.mod_policy_for(&[], "Admins").is_some());
    // Absolute: resolved from the root whatever the group.
    let abs = m
        .mod_policy_for(&["Application", "Org1MSP"], "/Channel/Application/Admins")
        .expect("absolute");
    assert!(abs.evaluate(&sign_all(DATA, &[&o1.admin()])).is_err());
    // Nothing to resolve.
    assert!(m.mod_policy_for(&["Application"], "").is_none());
    assert!(m.mod_policy_for(&["Nope"], "Admins").is_none());
    assert!(m.mod_policy_for(&["Application"], "Nope").is_none());
}

#[test]
fn implicit_meta_edge_cases() {
    let org = Org::new("Org1MSP");
    // No child groups: satisfied by anything, as in Fabric.
    let lonely = group(
        vec![
            ("Any", implicit_meta_config_policy(Rule::Any, "Admins")),
            ("All", implicit_meta_config_policy(Rule::All, "Admins")),
            (
                "Majority",
                implicit_meta_config_policy(Rule::Majority, "Admins"),
            ),
        ],
        vec![],
    );
    let m = PolicyManager::from_config_group("Channel", &lonely, msps(&[&org])).expect("manager");
    for name in ["Any", "All", "Majority"] {
        m.get_policy(name).expect(name).evaluate(&[]).expect(name);
    }

    // A child lacking the sub-policy counts, and never satisfies.
    let tree = group(
        vec![
            ("AnyFoo", implicit_meta_config_policy(Rule::Any, "Foo")),
            (
                "AllAdmins",
                implicit_meta_config_policy(Rule::All, "Admins"),
            ),
        ],
        vec![
            ("Org1MSP", org_group("Org1MSP")),
            ("Empty", group(vec![], vec![])),
        ],
    );
    let m = PolicyManager::from_config_group("Channel", &tree, msps(&[&org])).expect("manager");
    let signed = sign_all(DATA, &[&org.admin()]);
    assert!(m
        .get_policy("AnyFoo")
        .expect("AnyFoo")
        .evaluate(&signed)
        .is_err());
    let err = m
        .get_policy("AllAdmins")
        .expect("AllAdmins")
        .evaluate(&signed)
        .expect_err("Empty has no Admins");
    assert!(err.to_string().contains("Empty/Admins"), "{err}");
}

#[test]
fn bad_config_policies_are_rejected_with_their_path() {
    let org = Org::new("Org1MSP");
    let build = |g: &ConfigGroup| PolicyManager::from_config_group("Channel", g, msps(&[&org]));

    let msp_type = ProtoPolicy {
        r#type: 2,
        value: vec![],
    };
    let tree = group(
        vec![],
        vec![("Application", group(vec![("Odd", msp_type)], vec![]))],
    );
    match build(&tree) {
        Err(PolicyError::UnsupportedPolicyType { path, policy_type }) => {
            assert_eq!(path, "/Channel/Application/Odd");
            assert_eq!(policy_type, 2);
        }
        other => panic!("{other:?}"),
    }

    let mut tree = group(vec![], vec![]);
    tree.policies
        .insert("Empty".to_owned(), ConfigPolicy::default());
    assert!(
        matches!(build(&tree), Err(PolicyError::MissingPolicy { path }) if path == "/Channel/Empty")
    );

    let garbage = ProtoPolicy {
        r#type: 1,
        value: vec![0xff, 0xff, 0xff],
    };
    let err = build(&group(vec![("Bad", garbage)], vec![])).expect_err("garbage");
    assert!(
        err.to_string()
            .starts_with("policy /Channel/Bad did not compile"),
        "{err}"
    );

    let bad_meta = ProtoPolicy {
        r#type: 3,
        value: vec![0xff, 0xff, 0xff],
    };
    assert!(build(&group(vec![("Bad", bad_meta)], vec![])).is_err());
}
