//! The `gateway.Gateway` service end to end, on the wire: a network started
//! by `twill network up` (3 orderers, a peer of Org1 and one of Org2, `basic`
//! with the MAJORITY Endorsement policy), driven with raw gateway messages
//! from a tonic client — endorse across both orgs, submit, commit status,
//! chaincode events with a checkpoint, evaluate — and every class of bad
//! request the gateway refuses.
//!
//! Needs `cargo build -p twill-orderer -p twill-cli -p asset-transfer`.

use super::*;

use twill_cli::peer::build_proposal;
use twill_protos::gateway::gateway_client::GatewayClient;
use twill_protos::gateway::{
    ChaincodeEventsRequest, CommitStatusRequest, EndorseRequest, ErrorDetail, EvaluateRequest,
    SignedChaincodeEventsRequest, SignedCommitStatusRequest, SubmitRequest,
};
use twill_protos::orderer::{seek_position, SeekOldest, SeekPosition, SeekSpecified};
use twill_protos::peer::ChaincodeInput;

/// A network started with `twill network up`, stopped (and its folder
/// removed) on drop.
struct UpNetwork {
    dir: TestDir,
}

impl UpNetwork {
    fn twill(&self, args: &[&str]) -> std::process::Output {
        let bin = twill_cli::netkit::bin_dir().unwrap().join("twill");
        Command::new(bin)
            .args(args)
            .arg("--state-dir")
            .arg(&self.dir.path)
            .output()
            .unwrap()
    }

    fn nodes(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path.join("network.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn node(&self, prefix: &str) -> serde_json::Value {
        self.nodes()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no node {prefix} in network.json"))
    }

    fn org1(&self, rel: &str) -> PathBuf {
        self.dir.path.join(ORG1).join(rel)
    }

    fn org2(&self, rel: &str) -> PathBuf {
        self.dir
            .path
            .join("organizations/peerOrganizations/org2.example.com")
            .join(rel)
    }
}

impl Drop for UpNetwork {
    fn drop(&mut self) {
        let _ = self.twill(&["network", "down"]);
    }
}

fn err_details(status: &tonic::Status) -> Vec<ErrorDetail> {
    twill_peer::gateway::error::details_of(status)
}

fn proposal(
    signer: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    args: &[&str],
) -> (String, SignedProposal) {
    let input = ChaincodeInput {
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    let built = build_proposal(
        signer,
        HeaderType::EndorserTransaction,
        channel,
        chaincode,
        input,
        Default::default(),
    )
    .unwrap();
    (built.tx_id, built.signed)
}

fn signed_status_request(
    signer: &SigningIdentity,
    tx_id: &str,
    channel: &str,
) -> SignedCommitStatusRequest {
    let request = CommitStatusRequest {
        transaction_id: tx_id.into(),
        channel_id: channel.into(),
        identity: signer.serialize(),
    }
    .encode_to_vec();
    SignedCommitStatusRequest {
        signature: signer.sign(&request).unwrap(),
        request,
    }
}

/// A certificate for Org1MSP signed by `issuer` (cert PEM, key PEM), valid
/// from `not_before` to `not_after` (unix seconds), with its key.
fn issue(issuer: Option<(&str, &str)>, not_before: i64, not_after: i64) -> SigningIdentity {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "intruder");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "client");
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    let cert = match issuer {
        None => params.self_signed(&key).unwrap(),
        Some((ca_pem, ca_key_pem)) => {
            let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).unwrap();
            let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key).unwrap();
            params.signed_by(&key, &issuer).unwrap()
        }
    };
    let identity = twill_msp::Identity::from_pem("Org1MSP", cert.pem().as_bytes()).unwrap();
    let signing = twill_crypto::SigningKey::from_pem(&key.serialize_pem()).unwrap();
    SigningIdentity::new(identity, signing)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn gateway_endorses_across_orgs_submits_reports_status_and_streams_events() {
    require_binaries();
    let _one = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let net = UpNetwork { dir: test_dir() };
    let up = net.twill(&["network", "up"]);
    assert!(
        up.status.success(),
        "network up failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let peer1 = net.node("peer0.org1");
    let address = peer1["address"].as_str().unwrap().to_owned();
    let user =
        twill_cli::peer::load_signer(&net.org1("users/User1@org1.example.com/msp"), "Org1MSP")
            .unwrap();
    let tls = ClientTls::new(vec![std::fs::read(
        net.org1("tlsca/tlsca.org1.example.com-cert.pem"),
    )
    .unwrap()]);
    let rt = runtime();
    rt.block_on(async {
        let channel = twill_comm::connect(&address, Some(&tls)).await.unwrap();
        let mut gw = GatewayClient::new(channel);

        // Endorse: both orgs endorse (MAJORITY of two), the envelope is
        // unsigned and carries the proposal's header.
        let id = format!("gw-{}", std::process::id());
        let (tx_id, signed) = proposal(
            &user,
            CHANNEL,
            "basic",
            &["CreateAsset", &id, "blue", "5", "Tom", "100"],
        );
        let endorsed = gw
            .endorse(EndorseRequest {
                transaction_id: tx_id.clone(),
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(signed),
                endorsing_organizations: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        let mut envelope = endorsed.prepared_transaction.unwrap();
        assert!(envelope.signature.is_empty());
        let payload = twill_protos::common::Payload::decode(envelope.payload.as_slice()).unwrap();
        let tx = Transaction::decode(payload.data.as_slice()).unwrap();
        let cap = ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
        let endorsers: Vec<String> = cap
            .action
            .unwrap()
            .endorsements
            .iter()
            .map(|e| {
                twill_msp::deserialize_serialized_identity(&e.endorser)
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(endorsers, ["Org1MSP", "Org2MSP"]);

        // Submit unsigned: refused. Signed: accepted.
        let unsigned = gw
            .submit(SubmitRequest {
                transaction_id: tx_id.clone(),
                channel_id: CHANNEL.into(),
                prepared_transaction: Some(envelope.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(unsigned.code(), tonic::Code::InvalidArgument);
        assert!(
            unsigned.message().contains("must be signed"),
            "{unsigned:?}"
        );
        envelope.signature = user.sign(&envelope.payload).unwrap();
        gw.submit(SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(envelope),
        })
        .await
        .unwrap();

        // Commit status waits for the block.
        let status = gw
            .commit_status(signed_status_request(&user, &tx_id, CHANNEL))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.result, 0, "VALID");
        let block = status.block_number;
        assert!(block > 0);

        // Org2's peer, which must endorse the next transaction too, commits
        // the same block on its own time: its Gateway's commit status waits
        // for it (Org1's User1 reads the channel as well).
        let peer2 = net.node("peer0.org2")["address"]
            .as_str()
            .unwrap()
            .to_owned();
        let tls2 = ClientTls::new(vec![std::fs::read(
            net.org2("tlsca/tlsca.org2.example.com-cert.pem"),
        )
        .unwrap()]);
        let mut gw2 = GatewayClient::new(twill_comm::connect(&peer2, Some(&tls2)).await.unwrap());
        let status2 = gw2
            .commit_status(signed_status_request(&user, &tx_id, CHANNEL))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (status2.result, status2.block_number),
            (0, block),
            "Org2's peer"
        );

        // A second transaction in a later block, then the events from the
        // first block: CreateAsset then TransferAsset, in order.
        let (tx2, signed2) = proposal(&user, CHANNEL, "basic", &["TransferAsset", &id, "Ann"]);
        let mut env2 = gw
            .endorse(EndorseRequest {
                transaction_id: tx2.clone(),
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(signed2),
                endorsing_organizations: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .prepared_transaction
            .unwrap();
        env2.signature = user.sign(&env2.payload).unwrap();
        gw.submit(SubmitRequest {
            transaction_id: tx2.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(env2),
        })
        .await
        .unwrap();
        let status2 = gw
            .commit_status(signed_status_request(&user, &tx2, CHANNEL))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status2.result, 0);
        assert!(status2.block_number > block);

        let events_request = |start: u64, after: &str| {
            let request = ChaincodeEventsRequest {
                channel_id: CHANNEL.into(),
                chaincode_id: "basic".into(),
                identity: user.serialize(),
                start_position: Some(SeekPosition {
                    r#type: Some(seek_position::Type::Specified(SeekSpecified {
                        number: start,
                    })),
                }),
                after_transaction_id: after.into(),
            }
            .encode_to_vec();
            SignedChaincodeEventsRequest {
                signature: user.sign(&request).unwrap(),
                request,
            }
        };
        let mut stream = gw
            .chaincode_events(events_request(block, ""))
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert_eq!(first.block_number, block);
        let ours: Vec<_> = first.events.iter().filter(|e| e.tx_id == tx_id).collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].event_name, "CreateAsset");
        assert!(String::from_utf8_lossy(&ours[0].payload).contains(&id));
        let mut seen_transfer = false;
        while !seen_transfer {
            let next = stream.message().await.unwrap().unwrap();
            assert!(next.block_number > block);
            seen_transfer = next
                .events
                .iter()
                .any(|e| e.tx_id == tx2 && e.event_name == "TransferAsset");
        }
        drop(stream);
        // Resuming after the first transaction skips it.
        let mut resumed = gw
            .chaincode_events(events_request(0, &tx_id))
            .await
            .unwrap()
            .into_inner();
        let next = resumed.message().await.unwrap().unwrap();
        assert!(
            next.events.iter().all(|e| e.tx_id != tx_id),
            "the checkpointed tx is skipped"
        );
        drop(resumed);

        // Evaluate reads the committed asset on this peer.
        let (eval_id, eval) = proposal(&user, CHANNEL, "basic", &["ReadAsset", &id]);
        let read = gw
            .evaluate(EvaluateRequest {
                transaction_id: eval_id,
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(eval),
                target_organizations: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        let asset: serde_json::Value =
            serde_json::from_slice(&read.result.unwrap().payload).unwrap();
        assert_eq!(asset["Owner"], "Ann");

        // Bad input, one class at a time.
        // A chaincode error: ABORTED with the endorser's detail.
        let (dup_id, dup) = proposal(
            &user,
            CHANNEL,
            "basic",
            &["CreateAsset", &id, "blue", "5", "Tom", "100"],
        );
        let err = gw
            .endorse(EndorseRequest {
                transaction_id: dup_id,
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(dup),
                endorsing_organizations: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
        let details = err_details(&err);
        assert_eq!(details.len(), 1, "{err:?}");
        assert_eq!(details[0].msp_id, "Org1MSP");
        assert_eq!(details[0].address, address);
        assert!(details[0].message.contains("already exists"), "{details:?}");

        // A wrong chaincode name.
        let (nid, nope) = proposal(&user, CHANNEL, "nope", &["ReadAsset", &id]);
        let err = gw
            .evaluate(EvaluateRequest {
                transaction_id: nid,
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(nope),
                target_organizations: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unknown);
        assert!(
            err_details(&err)[0]
                .message
                .contains("chaincode nope not found"),
            "{err:?}"
        );

        // A wrong channel.
        let (cid, wrong) = proposal(&user, "nochannel", "basic", &["ReadAsset", &id]);
        let err = gw
            .endorse(EndorseRequest {
                transaction_id: cid,
                channel_id: "nochannel".into(),
                proposed_transaction: Some(wrong),
                endorsing_organizations: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(
            err.message().contains("channel 'nochannel' not found"),
            "{err:?}"
        );

        // A cert from a CA the channel does not know.
        let now = now_secs();
        let stranger = issue(None, now - 3600, now + 3600);
        let (sid, strange) = proposal(&stranger, CHANNEL, "basic", &["ReadAsset", &id]);
        let err = gw
            .evaluate(EvaluateRequest {
                transaction_id: sid,
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(strange),
                target_organizations: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("Org1MSP"), "{err:?}");

        // An expired cert from Org1's own CA.
        let ca_pem = std::fs::read_to_string(net.org1("ca/ca.org1.example.com-cert.pem")).unwrap();
        let ca_key = std::fs::read_to_string(net.org1("ca/priv_sk")).unwrap();
        // Within the CA's validity (the chain must verify), ended a second ago.
        let ca_from = twill_msp::Identity::from_pem("Org1MSP", ca_pem.as_bytes())
            .unwrap()
            .not_before()
            .unix_timestamp();
        while now_secs() < ca_from + 3 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let expired = issue(Some((&ca_pem, &ca_key)), ca_from + 1, now_secs() - 1);
        let (eid, old) = proposal(&expired, CHANNEL, "basic", &["ReadAsset", &id]);
        let err = gw
            .endorse(EndorseRequest {
                transaction_id: eid,
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(old),
                endorsing_organizations: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("expired"), "{err:?}");

        // A commit-status request whose signature does not match.
        let mut forged = signed_status_request(&user, &tx_id, CHANNEL);
        forged.signature = user.sign(b"something else").unwrap();
        let err = gw.commit_status(forged).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

        // Events from 'oldest' are refused.
        let request = ChaincodeEventsRequest {
            channel_id: CHANNEL.into(),
            chaincode_id: "basic".into(),
            identity: user.serialize(),
            start_position: Some(SeekPosition {
                r#type: Some(seek_position::Type::Oldest(SeekOldest {})),
            }),
            after_transaction_id: String::new(),
        }
        .encode_to_vec();
        let err = gw
            .chaincode_events(SignedChaincodeEventsRequest {
                signature: user.sign(&request).unwrap(),
                request,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        // Org2's only peer down: the endorsement cannot meet the policy and
        // the error names Org2MSP.
        let org2 = net.node("peer0.org2");
        let pid = org2["pid"].as_u64().unwrap();
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        let (did, down) = proposal(
            &user,
            CHANNEL,
            "basic",
            &["CreateAsset", &format!("{id}-b"), "red", "1", "Ann", "1"],
        );
        let err = gw
            .endorse(EndorseRequest {
                transaction_id: did,
                channel_id: CHANNEL.into(),
                proposed_transaction: Some(down),
                endorsing_organizations: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
        let details = err_details(&err);
        assert!(
            details
                .iter()
                .any(|d| d.msp_id == "Org2MSP" && d.address == org2["address"].as_str().unwrap()),
            "{details:?}"
        );
    });
}
