//! The installed-package store.

use twill_lifecycle::*;

fn ccaas(label: &str, address: &str) -> Vec<u8> {
    let connection = format!(r#"{{"address":"{address}","dial_timeout":"10s"}}"#);
    build_package(
        label,
        "ccaas",
        &[CodeFile::new("connection.json", connection.as_bytes())],
    )
    .unwrap()
}

#[test]
fn install_list_get_load() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PackageStore::open(tmp.path().join("lifecycle/chaincodes")).unwrap();
    assert!(store.list().unwrap().is_empty());

    let a = ccaas("zeta", "a:1");
    let b = ccaas("alpha", "b:2");
    let installed_a = store.install(&a).unwrap();
    assert_eq!(installed_a.label, "zeta");
    assert_eq!(installed_a.package_id, package_id("zeta", &a));
    let installed_b = store.install(&b).unwrap();

    let listed = store.list().unwrap();
    assert_eq!(
        listed,
        [installed_b.clone(), installed_a.clone()],
        "sorted by id"
    );
    assert!(store.contains(&installed_a.package_id).unwrap());

    assert_eq!(store.get(&installed_a.package_id).unwrap(), a);
    let loaded = store.load(&installed_b.package_id).unwrap();
    assert_eq!(loaded.id, installed_b.package_id);
    let LaunchSpec::Ccaas(conn) = launch_spec(&loaded).unwrap() else {
        panic!("not ccaas")
    };
    assert_eq!(conn.address, "b:2");

    let path = store.package_path(&installed_a.package_id).unwrap();
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("{}.tar.gz", installed_a.package_id)
    );
    assert_eq!(std::fs::read(path).unwrap(), a);
}

#[test]
fn duplicate_install_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PackageStore::open(tmp.path()).unwrap();
    let bytes = ccaas("dup", "h:1");
    let first = store.install(&bytes).unwrap();
    let err = store.install(&bytes).unwrap_err();
    assert_eq!(err.code(), "ALREADY_INSTALLED");
    assert!(
        matches!(&err, LifecycleError::AlreadyInstalled { package_id } if *package_id == first.package_id)
    );
    assert!(
        err.to_string().contains("already successfully installed"),
        "{err}"
    );
    // Same label, different content: a different package.
    store.install(&ccaas("dup", "h:2")).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn unknown_and_invalid_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PackageStore::open(tmp.path()).unwrap();
    let missing = format!("nope:{}", "0".repeat(64));
    let err = store.get(&missing).unwrap_err();
    assert_eq!(err.code(), "NOT_INSTALLED");
    assert!(matches!(&err, LifecycleError::NotInstalled { package_id } if *package_id == missing));
    assert_eq!(store.load(&missing).unwrap_err().code(), "NOT_INSTALLED");
    assert!(!store.contains(&missing).unwrap());

    for bad in [
        "nope".to_string(),
        format!("../x:{}", "0".repeat(64)),
        format!("a/b:{}", "0".repeat(64)),
        format!("x:{}/../y", "0".repeat(64)),
        "x:abc".to_string(),
    ] {
        assert_eq!(
            store.get(&bad).unwrap_err().code(),
            "PACKAGE_ID_INVALID",
            "{bad}"
        );
        assert_eq!(
            store.load(&bad).unwrap_err().code(),
            "PACKAGE_ID_INVALID",
            "{bad}"
        );
    }
}

#[test]
fn invalid_packages_are_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PackageStore::open(tmp.path()).unwrap();
    assert_eq!(
        store.install(b"garbage").unwrap_err().code(),
        "PACKAGE_MALFORMED"
    );

    // A ccaas package whose connection.json is unusable is refused at install.
    let metadata = PackageMetadata::new("bad", "ccaas");
    let code =
        build_code_archive(&[CodeFile::new("connection.json", br#"{"address":"nope"}"#)]).unwrap();
    assert!(assemble_package(&metadata, &code).is_err());
    assert!(store.list().unwrap().is_empty());

    // Types Twill cannot run are still installable.
    let golang = build_package(
        "gocc",
        "golang",
        &[CodeFile::new("src/main.go", b"package main")],
    )
    .unwrap();
    let installed = store.install(&golang).unwrap();
    let loaded = store.load(&installed.package_id).unwrap();
    assert_eq!(
        launch_spec(&loaded).unwrap(),
        LaunchSpec::Other("golang".to_string())
    );
}

#[test]
fn reopen_sees_installed_packages_and_drops_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = ccaas("persist", "h:1");
    let id = {
        let store = PackageStore::open(tmp.path()).unwrap();
        store.install(&bytes).unwrap().package_id
    };
    std::fs::write(tmp.path().join(".install-999-0.tmp"), b"half written").unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"not a package").unwrap();

    let store = PackageStore::open(tmp.path()).unwrap();
    assert!(!tmp.path().join(".install-999-0.tmp").exists());
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].package_id, id);
    assert_eq!(store.get(&id).unwrap(), bytes);
    assert_eq!(
        store.install(&bytes).unwrap_err().code(),
        "ALREADY_INSTALLED"
    );
}

#[test]
fn fabric_file_names_are_recognized() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = ccaas("fab", "h:1");
    let id = package_id("fab", &bytes);
    let hash = id.split_once(':').unwrap().1;
    std::fs::write(tmp.path().join(format!("fab.{hash}.tar.gz")), &bytes).unwrap();

    let store = PackageStore::open(tmp.path()).unwrap();
    assert_eq!(
        store.list().unwrap(),
        [InstalledChaincode {
            package_id: id.clone(),
            label: "fab".to_string()
        }]
    );
    assert_eq!(store.get(&id).unwrap(), bytes);
    assert_eq!(store.load(&id).unwrap().id, id);
    assert_eq!(
        store.install(&bytes).unwrap_err().code(),
        "ALREADY_INSTALLED"
    );
}

#[test]
fn corrupt_stored_files_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PackageStore::open(tmp.path()).unwrap();
    let bytes = ccaas("c", "h:1");
    let id = store.install(&bytes).unwrap().package_id;
    let path = store.package_path(&id).unwrap();
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&path, &damaged).unwrap();
    assert_eq!(store.get(&id).unwrap_err().code(), "STORE_CORRUPT");
    assert_eq!(store.load(&id).unwrap_err().code(), "STORE_CORRUPT");

    // A file named with a label other than the one inside.
    let other = ccaas("inner", "h:2");
    let hash = package_id("inner", &other)
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    let renamed = format!("outer:{hash}");
    std::fs::write(store.package_path(&renamed).unwrap(), &other).unwrap();
    assert_eq!(store.get(&renamed).unwrap(), other);
    assert_eq!(store.load(&renamed).unwrap_err().code(), "STORE_CORRUPT");
}
