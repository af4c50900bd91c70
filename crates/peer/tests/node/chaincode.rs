//! Chaincode end to end: one orderer, a peer of Org1 and one of Org2, the
//! Rust asset-transfer chaincode packaged as a `process` package (the peer
//! starts it and it dials back), deployed with `twill chaincode` through
//! Fabric's lifecycle, then invoked and queried.
//!
//! Needs `cargo build -p twill-orderer -p twill-cli -p asset-transfer`.

use super::*;

/// A peer of org `org` and the files its CLI calls need.
struct OrgPeer {
    proc: PeerProc,
    org: u8,
}

fn org_path(org: u8) -> String {
    format!("organizations/peerOrganizations/org{org}.example.com")
}

fn tls_ca(net: &OrdererNet, org: u8) -> String {
    net.path(&format!(
        "{}/tlsca/tlsca.org{org}.example.com-cert.pem",
        org_path(org)
    ))
    .to_string_lossy()
    .into_owned()
}

fn admin_msp(net: &OrdererNet, org: u8) -> String {
    net.path(&format!(
        "{}/users/Admin@org{org}.example.com/msp",
        org_path(org)
    ))
    .to_string_lossy()
    .into_owned()
}

/// Runs `twill <args>` as org `org`'s admin; returns (success, stdout, stderr).
fn twill(net: &OrdererNet, org: u8, args: &[&str]) -> (bool, String, String) {
    let bin = twill_cli::netkit::bin_dir().unwrap().join("twill");
    let out = Command::new(bin)
        .args(args)
        .env("CORE_PEER_MSPCONFIGPATH", admin_msp(net, org))
        .env("CORE_PEER_LOCALMSPID", format!("Org{org}MSP"))
        .env_remove("CORE_PEER_ADDRESS")
        .env_remove("CORE_PEER_TLS_ROOTCERT_FILE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(result: (bool, String, String), what: &str) -> String {
    let (ok, out, err) = result;
    assert!(ok, "{what} failed:\n{out}\n{err}");
    out
}

/// The flags naming one peer for a lifecycle verb.
fn peer_flags(net: &OrdererNet, peer: &OrgPeer) -> Vec<String> {
    vec![
        "--peer-address".into(),
        peer.proc.address.clone(),
        "--tls-ca".into(),
        tls_ca(net, peer.org),
    ]
}

/// Flags naming every given peer (endorsement from each).
fn peers_flags(net: &OrdererNet, peers: &[&OrgPeer]) -> Vec<String> {
    let mut flags = Vec::new();
    for p in peers {
        flags.extend(peer_flags(net, p));
    }
    flags
}

fn orderer_flags(net: &OrdererNet) -> Vec<String> {
    let ca = net.path("orderer-tls-ca.pem");
    std::fs::write(&ca, net.orderer_tls_ca().unwrap()).unwrap();
    vec![
        "--orderer".into(),
        net.orderers[0].client_address(),
        "--orderer-tls-ca".into(),
        ca.to_string_lossy().into_owned(),
    ]
}

fn args<'a>(fixed: &[&'a str], extra: &'a [String]) -> Vec<&'a str> {
    fixed
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect()
}

/// Packages the code folder `code` as a `kind` package labelled `label`;
/// returns the package file.
fn package(net: &OrdererNet, code: &Path, kind: &str, label: &str) -> String {
    let file = net.root.join(format!("{label}.tar.gz"));
    let file = file.to_string_lossy().into_owned();
    let code = code.to_string_lossy().into_owned();
    ok(
        twill(
            net,
            1,
            &[
                "chaincode",
                "package",
                &file,
                "--path",
                &code,
                "--lang",
                kind,
                "--label",
                label,
            ],
        ),
        "package",
    );
    file
}

/// Installs `package` on `p` as its org's admin; returns the package id.
fn install(net: &OrdererNet, p: &OrgPeer, package: &str) -> String {
    let out = ok(
        twill(
            net,
            p.org,
            &args(&["chaincode", "install", package], &peer_flags(net, p)),
        ),
        "install",
    );
    out.lines()
        .find_map(|l| l.strip_prefix("Chaincode code package identifier: "))
        .unwrap_or_else(|| panic!("no package id in: {out}"))
        .trim()
        .to_owned()
}

/// Approves `definition` with `package_id` for `p`'s org.
fn approve(
    net: &OrdererNet,
    p: &OrgPeer,
    definition: &[&str],
    package_id: &str,
    orderer: &[String],
) {
    let mut flags = peer_flags(net, p);
    flags.extend(orderer.iter().cloned());
    flags.extend(["--package-id".to_owned(), package_id.to_owned()]);
    ok(
        twill(
            net,
            p.org,
            &args(
                &[&["chaincode", "approveformyorg"][..], definition].concat(),
                &flags,
            ),
        ),
        "approveformyorg",
    );
}

/// Commits `definition` endorsed by `peers`, as Org1's admin.
fn commit(
    net: &OrdererNet,
    peers: &[&OrgPeer],
    definition: &[&str],
    orderer: &[String],
) -> (bool, String, String) {
    let mut flags = peers_flags(net, peers);
    flags.extend(orderer.iter().cloned());
    twill(
        net,
        1,
        &args(&[&["chaincode", "commit"][..], definition].concat(), &flags),
    )
}

/// Waits until the single orderer leads the channel's Raft group.
fn wait_leader(net: &OrdererNet) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let leading =
            http_get(&net.orderers[0].operations_address(), "/metrics").is_some_and(|body| {
                body.lines().any(|l| {
                    l.starts_with("raft_is_leader{") && l.contains(CHANNEL) && l.ends_with(" 1")
                })
            });
        if leading {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the orderer did not become leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The definition of `basic` v1.0: endorsement policy AND(Org1, Org2).
const DEFINITION: [&str; 10] = [
    "-C",
    "mychannel",
    "-n",
    "basic",
    "-v",
    "1.0",
    "--sequence",
    "1",
    "--signature-policy",
    "AND('Org1MSP.peer','Org2MSP.peer')",
];

#[test]
fn deploy_with_org_approvals_then_invoke_and_query_rust_chaincode() {
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    require_binaries();
    let bins = twill_cli::netkit::bin_dir().unwrap();
    let chaincode_bin = bins.join("asset-transfer");
    assert!(
        chaincode_bin.is_file(),
        "{} not found: run `cargo build -p asset-transfer` first",
        chaincode_bin.display()
    );
    let dir = test_dir();
    let mut net = OrdererNet::create(
        dir.path.as_path(),
        NetOptions {
            orderers: 1,
            batch_timeout: "100ms".into(),
            max_message_count: 10,
            tick_interval: "100ms".into(),
            ..Default::default()
        },
    )
    .unwrap();
    net.start_all(TIMEOUT).unwrap();
    net.join_all().unwrap();
    wait_leader(&net);
    let p1 = OrgPeer {
        proc: PeerProc::start_org(&net.root, "peer0.org1", 1),
        org: 1,
    };
    let p2 = OrgPeer {
        proc: PeerProc::start_org(&net.root, "peer0.org2", 2),
        org: 2,
    };
    let block = net.genesis_block.to_string_lossy().into_owned();
    for p in [&p1, &p2] {
        let flags = peer_flags(&net, p);
        ok(
            twill(
                &net,
                p.org,
                &args(&["peer", "channel", "join", "-b", &block], &flags),
            ),
            "join",
        );
    }
    let orderer = orderer_flags(&net);

    // Package: a `process` package whose run.json starts the chaincode
    // binary (absolute path on this host).
    let code = net.root.join("cc-code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("run.json"),
        format!(
            r#"{{"command": "{}", "args": [], "env": {{"RUST_LOG": "info"}}}}"#,
            chaincode_bin.display()
        ),
    )
    .unwrap();
    let package_s = package(&net, &code, "process", "basic_1.0");

    // Install on both peers; the id is the same.
    let package_id = install(&net, &p1, &package_s);
    assert!(package_id.starts_with("basic_1.0:"), "{package_id}");
    assert_eq!(install(&net, &p2, &package_s), package_id);
    let out = ok(
        twill(
            &net,
            1,
            &args(&["chaincode", "queryinstalled"], &peer_flags(&net, &p1)),
        ),
        "queryinstalled",
    );
    assert!(
        out.contains(&format!("Package ID: {package_id}, Label: basic_1.0")),
        "{out}"
    );
    // Installing twice is refused.
    let (again, _, err) = twill(
        &net,
        1,
        &args(
            &["chaincode", "install", &package_s],
            &peer_flags(&net, &p1),
        ),
    );
    assert!(!again);
    assert!(err.contains("already successfully installed"), "{err}");

    // Org1 approves; the commit is refused naming Org2's missing approval.
    approve(&net, &p1, &DEFINITION, &package_id, &orderer);
    let out = ok(
        twill(
            &net,
            1,
            &args(
                &[&["chaincode", "checkcommitreadiness"][..], &DEFINITION[..]].concat(),
                &peer_flags(&net, &p1),
            ),
        ),
        "checkcommitreadiness",
    );
    assert!(out.contains("Org1MSP: true"), "{out}");
    assert!(out.contains("Org2MSP: false"), "{out}");
    let (committed, out, err) = commit(&net, &[&p1, &p2], &DEFINITION, &orderer);
    assert!(!committed, "commit with one approval succeeded: {out}");
    assert!(err.contains("missing approvals from [Org2MSP]"), "{err}");

    // Org2 approves; the commit goes through.
    approve(&net, &p2, &DEFINITION, &package_id, &orderer);
    ok(commit(&net, &[&p1, &p2], &DEFINITION, &orderer), "commit");
    let out = ok(
        twill(
            &net,
            2,
            &args(
                &[
                    "chaincode",
                    "querycommitted",
                    "-C",
                    "mychannel",
                    "-n",
                    "basic",
                ],
                &peer_flags(&net, &p2),
            ),
        ),
        "querycommitted",
    );
    assert!(out.contains("Version: 1.0, Sequence: 1"), "{out}");

    // Invoke on both orgs' peers (each starts its chaincode process).
    let mut invoke_flags = peers_flags(&net, &[&p1, &p2]);
    invoke_flags.extend(orderer.clone());
    let create = args(
        &[
            "chaincode",
            "invoke",
            "-C",
            "mychannel",
            "-n",
            "basic",
            "-c",
            r#"{"Args":["CreateAsset","asset1","blue","5","Tomoko","300"]}"#,
        ],
        &invoke_flags,
    );
    let out = ok(twill(&net, 1, &create), "invoke CreateAsset");
    assert!(out.contains("Chaincode invoke successful"), "{out}");

    // Read it back on the other org's peer.
    let query = |p: &OrgPeer, ctor: &str| {
        twill(
            &net,
            p.org,
            &args(
                &[
                    "chaincode",
                    "query",
                    "-C",
                    "mychannel",
                    "-n",
                    "basic",
                    "-c",
                    ctor,
                ],
                &peer_flags(&net, p),
            ),
        )
    };
    let out = ok(
        query(&p2, r#"{"Args":["ReadAsset","asset1"]}"#),
        "query ReadAsset",
    );
    assert!(out.contains(r#""Owner":"Tomoko""#), "{out}");
    assert!(out.contains(r#""ID":"asset1""#), "{out}");

    // Creating it again: the chaincode's own error, status 500.
    let (dup, _, err) = twill(&net, 1, &create);
    assert!(!dup);
    assert!(err.contains("already exists"), "{err}");

    // Endorsed by Org1 alone: ordered, but invalid under AND(Org1, Org2).
    let mut one_flags = peer_flags(&net, &p1);
    one_flags.extend(orderer.clone());
    let (single, out, err) = twill(
        &net,
        1,
        &args(
            &[
                "chaincode",
                "invoke",
                "-C",
                "mychannel",
                "-n",
                "basic",
                "-c",
                r#"{"Args":["TransferAsset","asset1","Mallory"]}"#,
            ],
            &one_flags,
        ),
    );
    assert!(!single, "single-org endorsement was accepted: {out}");
    assert!(err.contains("ENDORSEMENT_POLICY_FAILURE"), "{err}");
    let out = ok(
        query(&p1, r#"{"Args":["ReadAsset","asset1"]}"#),
        "query after EPF",
    );
    assert!(out.contains(r#""Owner":"Tomoko""#), "{out}");

    // Bad input: unknown function, unknown chaincode, malformed args.
    let (bad, _, err) = query(&p1, r#"{"Args":["NoSuchFunction"]}"#);
    assert!(!bad);
    assert!(err.contains("unknown function: NoSuchFunction"), "{err}");
    let (bad, _, err) = twill(
        &net,
        1,
        &args(
            &[
                "chaincode",
                "query",
                "-C",
                "mychannel",
                "-n",
                "nope",
                "-c",
                r#"{"Args":["ReadAsset","a"]}"#,
            ],
            &peer_flags(&net, &p1),
        ),
    );
    assert!(!bad);
    assert!(err.contains("chaincode nope not found"), "{err}");
    let (bad, _, err) = query(&p1, r#"{"Args":["CreateAsset","x","red","big","Bob","1"]}"#);
    assert!(!bad);
    assert!(err.contains("status:500"), "{err}");

    // The peers keep serving.
    let out = ok(
        query(&p2, r#"{"Args":["AssetExists","asset1"]}"#),
        "query AssetExists",
    );
    assert_eq!(out.trim(), "true");

    // Kill Org1's chaincode process while queries run: a query in flight
    // fails with a clear error, later ones start it again.
    let pid = chaincode_pid(&p1.proc.log, &package_id);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (during_kill, after_kill) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let mut results = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                results.push(query(&p1, r#"{"Args":["ReadAsset","asset1"]}"#));
            }
            results
        });
        std::thread::sleep(Duration::from_millis(300));
        let killed = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let during = load.join().unwrap();
        let after: Vec<_> = (0..3)
            .map(|_| query(&p1, r#"{"Args":["ReadAsset","asset1"]}"#))
            .collect();
        (during, after)
    });
    for (ok, out, err) in &during_kill {
        if !ok {
            assert!(
                err.contains("disconnected")
                    || err.contains("not running")
                    || err.contains("register"),
                "unclear error for a query during the kill: {out}{err}"
            );
        }
    }
    for (ok, out, err) in &after_kill {
        assert!(
            ok,
            "query after the chaincode was restarted failed: {out}{err}"
        );
        assert!(out.contains("Tomoko"), "{out}");
    }
    assert_ne!(
        chaincode_pid(&p1.proc.log, &package_id),
        pid,
        "the chaincode was not started again"
    );

    // Upgrade: sequence 2 with a new package; the peers run the new one.
    let package2 = package(&net, &code, "process", "basic_2.0");
    let package2_id = install(&net, &p1, &package2);
    assert_eq!(install(&net, &p2, &package2), package2_id);
    assert_ne!(package2_id, package_id);
    let definition2 = [
        "-C",
        "mychannel",
        "-n",
        "basic",
        "-v",
        "2.0",
        "--sequence",
        "2",
        "--signature-policy",
        "AND('Org1MSP.peer','Org2MSP.peer')",
    ];
    for p in [&p1, &p2] {
        approve(&net, p, &definition2, &package2_id, &orderer);
    }
    ok(
        commit(&net, &[&p1, &p2], &definition2, &orderer),
        "commit 2",
    );
    let out = ok(
        query(&p1, r#"{"Args":["ReadAsset","asset1"]}"#),
        "query after upgrade",
    );
    assert!(out.contains("Tomoko"), "{out}");
    chaincode_pid(&p1.proc.log, &package2_id);

    // Node chaincode (fabric-contract-api from npm) as a chaincode server
    // the peers dial: a `ccaas` package.
    node_chaincode_as_a_service(&net, &[&p1, &p2], &orderer);
}

/// The pid of the latest process the peer started for `package_id`, from
/// its log.
fn chaincode_pid(log: &Path, package_id: &str) -> u32 {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .rev()
        .filter(|l| l.contains("chaincode process started") && l.contains(package_id))
        .find_map(|l| {
            l.split("pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no chaincode process for {package_id} in {}", log.display()))
}

fn node_chaincode_as_a_service(net: &OrdererNet, peers: &[&OrgPeer], orderer: &[String]) {
    let module =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../chaincode-examples/asset-transfer-node");
    let launcher = module.join("node_modules/.bin/fabric-chaincode-node");
    assert!(
        launcher.exists(),
        "{} not found: run chaincode-examples/asset-transfer-node/install.sh first",
        launcher.display()
    );
    let port = free_ports(1).unwrap()[0];
    let code = net.root.join("ccaas-code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("connection.json"),
        format!(
            r#"{{"address": "127.0.0.1:{port}", "dial_timeout": "10s", "tls_required": false}}"#
        ),
    )
    .unwrap();
    let package_s = package(net, &code, "ccaas", "basicjs_1.0");
    let package_id = install(net, peers[0], &package_s);
    assert_eq!(install(net, peers[1], &package_s), package_id);
    let log = std::fs::File::create(net.root.join("logs").join("basicjs.log")).unwrap();
    let _server = KillOnDrop(
        Command::new("node")
            .arg(&launcher)
            .args([
                "server",
                "--chaincode-address",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--chaincode-id", &package_id])
            .current_dir(&module)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let definition = [
        "-C",
        "mychannel",
        "-n",
        "basicjs",
        "-v",
        "1.0",
        "--sequence",
        "1",
        "--init-required",
    ];
    for p in peers {
        approve(net, p, &definition, &package_id, orderer);
    }
    ok(commit(net, peers, &definition, orderer), "commit ccaas");
    let mut flags = peers_flags(net, peers);
    flags.extend(orderer.iter().cloned());
    let invoke = |ctor: &str, init: bool| {
        let mut fixed = vec![
            "chaincode",
            "invoke",
            "-C",
            "mychannel",
            "-n",
            "basicjs",
            "-c",
            ctor,
        ];
        if init {
            fixed.push("--isInit");
        }
        twill(net, 1, &args(&fixed, &flags))
    };
    // The definition requires init: a plain invoke first is refused, the
    // init goes through once, a second init is refused.
    let create = r#"{"Args":["CreateAsset","js1","green","7","Ana","70"]}"#;
    let (early, _, err) = invoke(create, false);
    assert!(!early);
    assert!(err.contains("must call as init first"), "{err}");
    ok(
        invoke(r#"{"Args":["InitLedger"]}"#, true),
        "init Node chaincode",
    );
    let (again, _, err) = invoke(r#"{"Args":["InitLedger"]}"#, true);
    assert!(!again);
    assert!(err.contains("already initialized"), "{err}");
    let out = ok(invoke(create, false), "invoke Node chaincode");
    assert!(out.contains("Chaincode invoke successful"), "{out}");
    let out = ok(
        twill(
            net,
            2,
            &args(
                &[
                    "chaincode",
                    "query",
                    "-C",
                    "mychannel",
                    "-n",
                    "basicjs",
                    "-c",
                    r#"{"Args":["ReadAsset","js1"]}"#,
                ],
                &peer_flags(net, peers[1]),
            ),
        ),
        "query Node chaincode",
    );
    assert!(out.contains(r#""Owner":"Ana""#), "{out}");

    // Chaincode to chaincode: the Rust chaincode reads through the Node one.
    let out = ok(
        twill(
            net,
            1,
            &args(
                &[
                    "chaincode",
                    "query",
                    "-C",
                    "mychannel",
                    "-n",
                    "basic",
                    "-c",
                    r#"{"Args":["ReadAssetFrom","basicjs","js1"]}"#,
                ],
                &peer_flags(net, peers[0]),
            ),
        ),
        "query through a chaincode-to-chaincode call",
    );
    assert!(out.contains(r#""Owner":"Ana""#), "{out}");
}

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
