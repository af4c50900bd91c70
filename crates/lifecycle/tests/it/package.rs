//! Building, parsing, launch files and unpacking.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};
use twill_lifecycle::*;

/// A raw tar entry: name bytes, type, data, link target.
struct Raw<'a> {
    name: &'a [u8],
    kind: EntryType,
    data: &'a [u8],
    link: &'a [u8],
    mode: u32,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Regular,
        data,
        link: b"",
        mode: 0o644,
    }
}

fn symlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Symlink,
        data: b"",
        link: target.as_bytes(),
        mode: 0o777,
    }
}

/// Writes a tar.gz with headers filled in by hand, so that paths the tar
/// crate's builder refuses (`..`, absolute) can be produced.
fn raw_tar_gz(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for entry in entries {
        let mut header = Header::new_ustar();
        header.as_old_mut().name[..entry.name.len()].copy_from_slice(entry.name);
        header.as_old_mut().linkname[..entry.link.len()].copy_from_slice(entry.link);
        header.set_entry_type(entry.kind);
        header.set_size(entry.data.len() as u64);
        header.set_mode(entry.mode);
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn package_with(metadata: &str, code: &[u8]) -> Vec<u8> {
    raw_tar_gz(&[
        file("metadata.json", metadata.as_bytes()),
        file("code.tar.gz", code),
    ])
}

fn simple_code() -> Vec<u8> {
    build_code_archive(&[CodeFile::new("hello.txt", b"hi")]).unwrap()
}

const CONNECTION: &str =
    r#"{"address": "cc.example.com:9999", "dial_timeout": "10s", "tls_required": false}"#;

fn ccaas_package(label: &str, connection: &str) -> Vec<u8> {
    build_package(
        label,
        "ccaas",
        &[
            CodeFile::new("connection.json", connection.as_bytes()),
            CodeFile::new("metadata/statedb/couchdb/indexes/index.json", b"{}"),
        ],
    )
    .unwrap()
}

#[test]
fn build_parse_round_trip_with_stable_id() {
    let files = [
        CodeFile::executable("bin/cc", b"\x7fELF..."),
        CodeFile::new(
            "run.json",
            br#"{"command": "bin/cc", "args": ["--port", "7052"], "env": {"RUST_LOG": "info"}}"#,
        ),
    ];
    let bytes = build_package("asset_1.0", "process", &files).unwrap();
    let parsed = parse_package(&bytes).unwrap();
    assert_eq!(
        parsed.metadata,
        PackageMetadata::new("asset_1.0", "process")
    );
    assert_eq!(parsed.label(), "asset_1.0");
    assert_eq!(parsed.package_type(), PackageType::Process);
    assert_eq!(parsed.id, package_id("asset_1.0", &bytes));

    // Same inputs, in any order, give the same bytes and id.
    let reversed = [files[1], files[0]];
    let again = build_package("asset_1.0", "process", &reversed).unwrap();
    assert_eq!(again, bytes);
    assert_eq!(parse_package(&again).unwrap().id, parsed.id);

    // Different content, different id.
    let other = build_package(
        "asset_1.0",
        "process",
        &[
            files[0],
            CodeFile::new("run.json", br#"{"command": "bin/cc"}"#),
        ],
    )
    .unwrap();
    assert_ne!(parse_package(&other).unwrap().id, parsed.id);
}

#[test]
fn package_id_is_label_and_sha256_of_the_file() {
    let bytes = ccaas_package("basic", CONNECTION);
    let parsed = parse_package(&bytes).unwrap();
    let expected = format!("basic:{}", hex::encode(twill_crypto::sha256(&bytes)));
    assert_eq!(parsed.id, expected);
    assert_eq!(parse_package_id(&parsed.id).unwrap().0, "basic");
}

#[test]
fn package_layout_is_fabrics() {
    let bytes = ccaas_package("basic", CONNECTION);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.mode().unwrap(), 0o644);
        let name = entry.path().unwrap().display().to_string();
        if name == "metadata.json" {
            let mut json = String::new();
            entry.read_to_string(&mut json).unwrap();
            assert_eq!(json, r#"{"path":"","type":"ccaas","label":"basic"}"#);
        }
        names.push(name);
    }
    assert_eq!(names, ["metadata.json", "code.tar.gz"]);
}

#[test]
fn metadata_path_is_kept() {
    let mut metadata = PackageMetadata::new("gocc", "golang");
    metadata.path = "github.com/example/cc".to_string();
    let bytes = assemble_package(&metadata, &simple_code()).unwrap();
    let parsed = parse_package(&bytes).unwrap();
    assert_eq!(parsed.metadata, metadata);
    assert_eq!(
        launch_spec(&parsed).unwrap(),
        LaunchSpec::Other("golang".into())
    );
}

#[test]
fn fabric_style_metadata_without_path_parses() {
    let bytes = package_with(r#"{"type":"ccaas","label":"x"}"#, &simple_code());
    let parsed = parse_package(&bytes).unwrap();
    assert_eq!(parsed.metadata.path, "");
}

#[test]
fn bad_labels_are_refused() {
    for label in ["", "-x", "a b", "a:b", "a/b"] {
        let err = build_package(label, "ccaas", &[]).unwrap_err();
        assert_eq!(err.code(), "LABEL_INVALID", "{label:?}");
    }
    let bytes = package_with(
        r#"{"path":"","type":"ccaas","label":"_bad"}"#,
        &simple_code(),
    );
    let err = parse_package(&bytes).unwrap_err();
    assert_eq!(err.code(), "LABEL_INVALID");
    assert!(matches!(err, LifecycleError::InvalidLabel { ref label, .. } if label == "_bad"));
}

#[test]
fn empty_type_is_refused() {
    let bytes = package_with(r#"{"path":"","type":"","label":"x"}"#, &simple_code());
    assert_eq!(parse_package(&bytes).unwrap_err().code(), "TYPE_INVALID");
    assert_eq!(
        build_package("x", "", &[]).unwrap_err().code(),
        "TYPE_INVALID"
    );
}

#[test]
fn missing_entries_are_named() {
    let only_code = raw_tar_gz(&[file("code.tar.gz", &simple_code())]);
    let err = parse_package(&only_code).unwrap_err();
    assert_eq!(err.code(), "PACKAGE_MISSING_ENTRY");
    assert!(err.to_string().contains("metadata.json"), "{err}");

    let only_metadata = raw_tar_gz(&[file("metadata.json", br#"{"type":"x","label":"x"}"#)]);
    let err = parse_package(&only_metadata).unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::MissingEntry {
                entry: "code.tar.gz"
            }
        ),
        "{err}"
    );
}

#[test]
fn extra_and_duplicate_entries_are_named() {
    let code = simple_code();
    let metadata = br#"{"type":"ccaas","label":"x"}"#;
    let extra = raw_tar_gz(&[
        file("metadata.json", metadata),
        file("code.tar.gz", &code),
        file("README.md", b"hello"),
    ]);
    let err = parse_package(&extra).unwrap_err();
    assert_eq!(err.code(), "PACKAGE_UNEXPECTED_ENTRY");
    assert!(err.to_string().contains("README.md"), "{err}");

    let dup = raw_tar_gz(&[
        file("metadata.json", metadata),
        file("code.tar.gz", &code),
        file("metadata.json", metadata),
    ]);
    let err = parse_package(&dup).unwrap_err();
    assert_eq!(err.code(), "PACKAGE_DUPLICATE_ENTRY");
    assert!(err.to_string().contains("metadata.json"), "{err}");

    let dir_entry = raw_tar_gz(&[
        Raw {
            kind: EntryType::Directory,
            ..file("metadata.json", b"")
        },
        file("code.tar.gz", &code),
    ]);
    assert_eq!(
        parse_package(&dir_entry).unwrap_err().code(),
        "PACKAGE_MALFORMED"
    );
}

#[test]
fn garbage_is_malformed() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"this is not a package at all".to_vec()),
        ("gzip of garbage", gzip(&[0x55; 1000])),
        ("truncated", {
            let bytes = ccaas_package("x", CONNECTION);
            bytes[..bytes.len() / 2].to_vec()
        }),
        (
            "metadata not JSON",
            package_with("{not json", &simple_code()),
        ),
        (
            "metadata not an object",
            package_with(r#"["x","ccaas","x"]"#, &simple_code()),
        ),
        (
            "metadata label a number",
            package_with(r#"{"type":"x","label":5}"#, &simple_code()),
        ),
        (
            "code not gzip",
            package_with(r#"{"type":"x","label":"x"}"#, b"plain"),
        ),
        (
            "code gzip of garbage",
            package_with(r#"{"type":"x","label":"x"}"#, &gzip(&[7; 700])),
        ),
    ];
    for (what, bytes) in cases {
        let err = parse_package(&bytes).unwrap_err();
        assert_eq!(err.code(), "PACKAGE_MALFORMED", "{what}: {err}");
    }
}

#[test]
fn oversized_package_is_refused_before_reading() {
    let bytes = vec![0u8; MAX_PACKAGE_BYTES as usize + 1];
    let err = parse_package(&bytes).unwrap_err();
    assert_eq!(err.code(), "PACKAGE_TOO_LARGE");
}

#[test]
fn decompression_bombs_are_cut_off() {
    // A pax global header claiming 300 MiB, followed by gzip members of
    // zeros: small on the wire, far beyond the limit once inflated.
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XGlobalHeader);
    header.set_size(300 * 1024 * 1024);
    header.set_cksum();
    let mut bytes = gzip(header.as_bytes());
    let zeros = gzip(&vec![0u8; 1024 * 1024]);
    for _ in 0..110 {
        bytes.extend_from_slice(&zeros);
    }
    assert!((bytes.len() as u64) < MAX_PACKAGE_BYTES);
    let err = parse_package(&bytes).unwrap_err();
    assert_eq!(err.code(), "PACKAGE_TOO_LARGE", "{err}");
}

#[test]
fn unsafe_code_paths_are_refused_at_parse() {
    let metadata = r#"{"type":"process","label":"x"}"#;
    let cases = [
        raw_tar_gz(&[file("../x", b"evil")]),
        raw_tar_gz(&[file("a/../../x", b"evil")]),
        raw_tar_gz(&[file("/etc/cron.d/x", b"evil")]),
        raw_tar_gz(&[symlink("link", "/etc")]),
        raw_tar_gz(&[symlink("link", "../outside")]),
        raw_tar_gz(&[symlink("link", "."), file("link/x", b"through the link")]),
    ];
    for code in cases {
        let err = parse_package(&package_with(metadata, &code)).unwrap_err();
        assert_eq!(err.code(), "PATH_UNSAFE", "{err}");
    }
    let hard_link = raw_tar_gz(&[
        file("a", b"x"),
        Raw {
            kind: EntryType::Link,
            link: b"a",
            ..file("b", b"")
        },
    ]);
    let err = parse_package(&package_with(metadata, &hard_link)).unwrap_err();
    assert_eq!(err.code(), "ENTRY_UNSUPPORTED");
}

#[test]
fn builder_refuses_bad_file_names() {
    for name in ["../x", "/abs", "", ".", "a/../b"] {
        let err = build_code_archive(&[CodeFile::new(name, b"")]).unwrap_err();
        assert_eq!(err.code(), "PATH_UNSAFE", "{name:?}");
    }
    let err =
        build_code_archive(&[CodeFile::new("a", b""), CodeFile::new("./a", b"")]).unwrap_err();
    assert_eq!(err.code(), "PACKAGE_DUPLICATE_ENTRY");
    let err =
        build_code_archive(&[CodeFile::new("a", b""), CodeFile::new("a/b", b"")]).unwrap_err();
    assert_eq!(err.code(), "PATH_UNSAFE");
}

#[test]
fn ccaas_connection_json() {
    let parsed = parse_package(&ccaas_package("cc", CONNECTION)).unwrap();
    let LaunchSpec::Ccaas(conn) = launch_spec(&parsed).unwrap() else {
        panic!("not ccaas");
    };
    assert_eq!(conn.address, "cc.example.com:9999");
    assert_eq!(conn.dial_timeout, Duration::from_secs(10));
    assert!(!conn.tls_required);
    assert_eq!(conn.root_cert, None);

    let full = parse_connection(
        br#"{
            "address": "[::1]:7052",
            "dial_timeout": "1m30s",
            "tls_required": true,
            "client_auth_required": true,
            "client_key": "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
            "client_cert": "-----BEGIN CERTIFICATE-----\nc\n-----END CERTIFICATE-----\n",
            "root_cert": "-----BEGIN CERTIFICATE-----\nr\n-----END CERTIFICATE-----\n",
            "extra": "ignored"
        }"#,
    )
    .unwrap();
    assert_eq!(full.dial_timeout, Duration::from_secs(90));
    assert!(full.tls_required && full.client_auth_required);
    assert!(full.client_key.is_some() && full.client_cert.is_some() && full.root_cert.is_some());
    assert!(
        !format!("{full:?}").contains("secret"),
        "the key must not be printed"
    );

    for (json, want) in [
        (r#"{"address":"h:1"}"#, DEFAULT_DIAL_TIMEOUT),
        (
            r#"{"address":"h:1","dial_timeout":"0s"}"#,
            DEFAULT_DIAL_TIMEOUT,
        ),
        (
            r#"{"address":"h:1","dial_timeout":null}"#,
            DEFAULT_DIAL_TIMEOUT,
        ),
        (
            r#"{"address":"h:1","dial_timeout":"500ms"}"#,
            Duration::from_millis(500),
        ),
        (
            r#"{"address":"h:1","dial_timeout":"1m"}"#,
            Duration::from_secs(60),
        ),
        (
            r#"{"address":"h:1","dial_timeout":2000000000}"#,
            Duration::from_secs(2),
        ),
    ] {
        assert_eq!(
            parse_connection(json.as_bytes()).unwrap().dial_timeout,
            want,
            "{json}"
        );
    }
    assert_eq!(DEFAULT_DIAL_TIMEOUT, Duration::from_secs(3));
}

#[test]
fn bad_connection_json_names_the_field() {
    let cases = [
        (r#"{"dial_timeout":"10s"}"#, Some("address")),
        (r#"{"address":""}"#, Some("address")),
        (r#"{"address":"no-port"}"#, Some("address")),
        (r#"{"address":7052}"#, Some("address")),
        (
            r#"{"address":"h:1","dial_timeout":"10 seconds"}"#,
            Some("dial_timeout"),
        ),
        (
            r#"{"address":"h:1","dial_timeout":"-1s"}"#,
            Some("dial_timeout"),
        ),
        (
            r#"{"address":"h:1","dial_timeout":true}"#,
            Some("dial_timeout"),
        ),
        (
            r#"{"address":"h:1","tls_required":"yes"}"#,
            Some("tls_required"),
        ),
        (
            r#"{"address":"h:1","tls_required":true}"#,
            Some("root_cert"),
        ),
        (
            r#"{"address":"h:1","tls_required":true,"client_auth_required":true,"root_cert":"R"}"#,
            Some("client_key"),
        ),
        (r#"{"address":"h:1","root_cert":5}"#, Some("root_cert")),
        (r#"{"address": "h:1""#, None),
        (r#"["h:1"]"#, None),
    ];
    for (json, field) in cases {
        let err = parse_connection(json.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "LAUNCH_FILE_INVALID", "{json}");
        let LifecycleError::InvalidLaunchFile {
            file, field: got, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(*file, "connection.json");
        assert_eq!(got.as_deref(), field, "{json}: {err}");
        assert!(err.to_string().contains("connection.json"), "{err}");
    }

    // Through a package, the error is the same. The builder checks the
    // launch file, so assemble this one by hand.
    let empty_connection = [CodeFile::new("connection.json", b"{}")];
    let err = build_package("cc", "ccaas", &empty_connection).unwrap_err();
    assert_eq!(err.code(), "LAUNCH_FILE_INVALID");
    let parsed = parse_package(&package_with(
        r#"{"type":"ccaas","label":"cc"}"#,
        &build_code_archive(&empty_connection).unwrap(),
    ))
    .unwrap();
    let err = launch_spec(&parsed).unwrap_err();
    assert!(err.to_string().contains("\"address\""), "{err}");
}

#[test]
fn ccaas_without_connection_json() {
    let bytes = package_with(r#"{"type":"ccaas","label":"cc"}"#, &simple_code());
    let parsed = parse_package(&bytes).unwrap();
    let err = launch_spec(&parsed).unwrap_err();
    assert_eq!(err.code(), "LAUNCH_FILE_MISSING");
    assert!(err.to_string().contains("connection.json"), "{err}");
    // The builder refuses to make such a package.
    let err = build_package("cc", "ccaas", &[CodeFile::new("other.json", b"{}")]).unwrap_err();
    assert_eq!(err.code(), "LAUNCH_FILE_MISSING");
}

#[test]
fn process_run_json() {
    let bytes = build_package(
        "proc",
        "process",
        &[
            CodeFile::executable("bin/cc", b"#!/bin/sh\necho hi\n"),
            CodeFile::new(
                "run.json",
                br#"{"command": "./bin/cc", "args": ["-v"], "env": {"A": "1", "B": ""}}"#,
            ),
        ],
    )
    .unwrap();
    let parsed = parse_package(&bytes).unwrap();
    let LaunchSpec::Process(run) = launch_spec(&parsed).unwrap() else {
        panic!("not process");
    };
    assert_eq!(run.command, "bin/cc");
    assert_eq!(run.args, ["-v"]);
    assert_eq!(run.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(run.env.get("B").map(String::as_str), Some(""));
    assert!(run.is_packaged());
    assert_eq!(run.program_path(Path::new("/x")), Path::new("/x/bin/cc"));

    let absolute =
        parse_run_spec(br#"{"command": "/usr/bin/env", "args": ["node", "index.js"]}"#).unwrap();
    assert!(!absolute.is_packaged());
    assert_eq!(
        absolute.program_path(Path::new("/x")),
        Path::new("/usr/bin/env")
    );
    assert!(absolute.env.is_empty());
}

#[test]
fn bad_run_json_names_the_field() {
    let cases = [
        (r#"{}"#, Some("command")),
        (r#"{"command": ""}"#, Some("command")),
        (r#"{"command": ["x"]}"#, Some("command")),
        (r#"{"command": "x", "args": "-v"}"#, Some("args")),
        (r#"{"command": "x", "args": ["-v", 3]}"#, Some("args[1]")),
        (r#"{"command": "x", "env": {"A": 1}}"#, Some("env.A")),
        (r#"{"command": "x", "env": {"A=B": "1"}}"#, Some("env.A=B")),
        (r#"{"command": "x", "argv": []}"#, Some("argv")),
        (r#"{"command": "x\u0000"}"#, Some("command")),
        ("not json", None),
    ];
    for (json, field) in cases {
        let err = parse_run_spec(json.as_bytes()).unwrap_err();
        let LifecycleError::InvalidLaunchFile {
            file, field: got, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(*file, "run.json");
        assert_eq!(got.as_deref(), field, "{json}: {err}");
    }
}

#[test]
fn process_command_must_be_in_the_package_and_executable() {
    let metadata = r#"{"type":"process","label":"p"}"#;
    let run = br#"{"command": "bin/cc"}"#;
    let cases = [
        build_code_archive(&[CodeFile::new("run.json", run)]).unwrap(),
        build_code_archive(&[CodeFile::new("run.json", run), CodeFile::new("bin/cc", b"")])
            .unwrap(),
        build_code_archive(&[
            CodeFile::new("run.json", br#"{"command": "../cc"}"#),
            CodeFile::executable("cc", b""),
        ])
        .unwrap(),
    ];
    for code in cases {
        let parsed = parse_package(&package_with(metadata, &code)).unwrap();
        let err = launch_spec(&parsed).unwrap_err();
        let LifecycleError::InvalidLaunchFile { field, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(field.as_deref(), Some("command"), "{err}");
    }
    let parsed = parse_package(&package_with(
        metadata,
        &build_code_archive(&[CodeFile::executable("cc", b"")]).unwrap(),
    ))
    .unwrap();
    assert!(matches!(
        launch_spec(&parsed).unwrap_err(),
        LifecycleError::MissingLaunchFile {
            file: "run.json",
            ..
        }
    ));
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn unpack_keeps_exec_bits_and_symlinks() {
    let code = raw_tar_gz(&[
        Raw {
            mode: 0o755,
            ..file("bin/cc", b"#!/bin/sh\n")
        },
        file("./data/config.yaml", b"a: 1\n"),
        symlink("latest", "bin/cc"),
        symlink("data/up", "../bin"),
    ]);
    let parsed = parse_package(&package_with(r#"{"type":"process","label":"p"}"#, &code)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("unpacked");
    unpack_code(&parsed, &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("bin/cc")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(mode_of(&dest.join("bin/cc")), 0o755);
    assert_eq!(mode_of(&dest.join("data/config.yaml")), 0o644);
    assert_eq!(
        std::fs::read_link(dest.join("latest")).unwrap(),
        Path::new("bin/cc")
    );
    assert_eq!(
        std::fs::read(dest.join("data/up/cc")).unwrap(),
        b"#!/bin/sh\n"
    );

    // A second unpack into the now non-empty directory is refused.
    let err = unpack_code(&parsed, &dest).unwrap_err();
    assert_eq!(err.code(), "DESTINATION_INVALID");
    // So is a file as destination.
    let err = unpack_code(&parsed, &dest.join("bin/cc")).unwrap_err();
    assert_eq!(err.code(), "DESTINATION_INVALID");
    // An existing empty directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    unpack_code(&parsed, &empty).unwrap();
}

#[test]
fn unpack_refuses_traversal() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        raw_tar_gz(&[file("ok", b"1"), file("../x", b"evil")]),
        raw_tar_gz(&[file("/tmp/x", b"evil")]),
        raw_tar_gz(&[symlink("esc", "../../etc")]),
        raw_tar_gz(&[symlink("d", "."), symlink("d2", "d/.."), file("f", b"")]),
        raw_tar_gz(&[symlink("l", "sub"), file("l/x", b"evil")]),
    ];
    for (index, code) in cases.iter().enumerate() {
        let dest = tmp.path().join(format!("case{index}")).join("root");
        let err = unpack_code_archive(code, &dest).unwrap_err();
        assert_eq!(err.code(), "PATH_UNSAFE", "case {index}: {err}");
        assert!(!dest.exists(), "case {index}: nothing may be written");
    }
    assert!(!tmp.path().join("x").exists());
    assert!(!tmp.path().join("case0").join("x").exists());
}

#[cfg(unix)]
#[test]
fn package_from_dir_round_trips() {
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("bin/cc"), b"#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(src.join("bin/cc"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(src.join("run.json"), br#"{"command":"bin/cc"}"#).unwrap();
    std::fs::set_permissions(src.join("run.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("bin/cc", src.join("cc")).unwrap();

    let bytes = build_package_from_dir("fromdir", "process", &src).unwrap();
    assert_eq!(
        build_package_from_dir("fromdir", "process", &src).unwrap(),
        bytes
    );
    let parsed = parse_package(&bytes).unwrap();
    assert!(matches!(
        launch_spec(&parsed).unwrap(),
        LaunchSpec::Process(_)
    ));

    let dest = tmp.path().join("out");
    unpack_code(&parsed, &dest).unwrap();
    assert_eq!(
        mode_of(&dest.join("bin/cc")),
        0o755,
        "normalized executable mode"
    );
    assert_eq!(
        mode_of(&dest.join("run.json")),
        0o644,
        "normalized plain mode"
    );
    assert!(dest.join("empty").is_dir());
    assert_eq!(
        std::fs::read_link(dest.join("cc")).unwrap(),
        Path::new("bin/cc")
    );

    // An escaping symlink in the directory is refused.
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).unwrap();
    let err = build_package_from_dir("fromdir", "process", &src).unwrap_err();
    assert_eq!(err.code(), "PATH_UNSAFE");

    let err =
        build_package_from_dir("fromdir", "process", &tmp.path().join("missing")).unwrap_err();
    assert_eq!(err.code(), "IO");
}
