//! An in-process mock of a gateway peer (`gateway.Gateway` and
//! `protos.Deliver`) for this crate's unit tests, and the tests that use
//! it.
//!
//! The mock checks what a real peer checks of the client's messages —
//! header shapes, transaction ids, signatures against the creator's
//! certificate — records every request, and answers from a scripted
//! "ledger" of events and blocks.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::{Request, Response, Status, Streaming};
use twill_protos::common::{
    self, Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader,
};
use twill_protos::gateway::gateway_server::{Gateway as GatewayService, GatewayServer};
use twill_protos::gateway::{
    ChaincodeEventsRequest, ChaincodeEventsResponse, CommitStatusRequest, CommitStatusResponse,
    EndorseRequest, EndorseResponse, ErrorDetail, EvaluateRequest, EvaluateResponse,
    SignedChaincodeEventsRequest, SignedCommitStatusRequest, SubmitRequest, SubmitResponse,
};
use twill_protos::google::rpc;
use twill_protos::msp::SerializedIdentity;
use twill_protos::orderer::{seek_position, SeekInfo};
use twill_protos::peer::deliver_server::{Deliver, DeliverServer};
use twill_protos::peer::{
    deliver_response, ChaincodeAction, ChaincodeActionPayload, ChaincodeEndorsedAction,
    ChaincodeEvent, ChaincodeInvocationSpec, ChaincodeProposalPayload, DeliverResponse, Proposal,
    ProposalResponsePayload, Response as ChaincodeResponse, SignedProposal, Transaction,
    TransactionAction,
};

use crate::identity::PrivateKeySigner;
use crate::Identity;

/// A test user: identity and signer from a throwaway certificate.
pub(crate) fn user(msp_id: &str) -> (Identity, PrivateKeySigner, String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "User1");
    let cert = params.self_signed(&key).unwrap();
    let signer = PrivateKeySigner::from_pem(&key.serialize_pem()).unwrap();
    (
        Identity::new(msp_id, cert.pem().into_bytes()),
        signer,
        cert.pem(),
        key.serialize_pem(),
    )
}

/// Verifies `signature` over `message` by the serialized identity
/// `creator`.
fn check_signature(creator: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Status> {
    let sid = SerializedIdentity::decode(creator)
        .map_err(|e| Status::invalid_argument(format!("creator: {e}")))?;
    let id = twill_msp::Identity::from_pem(&sid.mspid, &sid.id_bytes)
        .map_err(|e| Status::invalid_argument(format!("creator: {e}")))?;
    id.verify(message, signature)
        .map_err(|e| Status::permission_denied(format!("bad signature: {e}")))
}

/// What a proposal holds, checked like a peer checks it.
pub(crate) struct Checked {
    pub channel_header: ChannelHeader,
    pub signature_header: SignatureHeader,
    pub payload: ChaincodeProposalPayload,
    pub invocation: ChaincodeInvocationSpec,
    pub header_bytes: Header,
}

pub(crate) fn check_proposal(signed: &SignedProposal) -> Result<Checked, Status> {
    let bad = |m: String| Status::invalid_argument(m);
    let proposal =
        Proposal::decode(signed.proposal_bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
    let header = Header::decode(proposal.header.as_slice()).map_err(|e| bad(e.to_string()))?;
    let ch =
        ChannelHeader::decode(header.channel_header.as_slice()).map_err(|e| bad(e.to_string()))?;
    let sh = SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| bad(e.to_string()))?;
    if ch.r#type != HeaderType::EndorserTransaction as i32 || ch.epoch != 0 {
        return Err(bad("bad header type or epoch".into()));
    }
    if sh.nonce.is_empty() || sh.creator.is_empty() {
        return Err(bad("empty nonce or creator".into()));
    }
    let expected = twill_configtx::block::compute_tx_id(&sh.nonce, &sh.creator);
    if ch.tx_id != expected {
        return Err(bad("incorrectly computed txid".into()));
    }
    check_signature(&sh.creator, &signed.proposal_bytes, &signed.signature)?;
    let payload = ChaincodeProposalPayload::decode(proposal.payload.as_slice())
        .map_err(|e| bad(e.to_string()))?;
    let invocation = ChaincodeInvocationSpec::decode(payload.input.as_slice())
        .map_err(|e| bad(e.to_string()))?;
    Ok(Checked {
        channel_header: ch,
        signature_header: sh,
        payload,
        invocation,
        header_bytes: header,
    })
}

fn function_and_args(c: &Checked) -> Vec<Vec<u8>> {
    c.invocation
        .chaincode_spec
        .as_ref()
        .and_then(|s| s.input.as_ref())
        .map(|i| i.args.clone())
        .unwrap_or_default()
}

/// A status with `gateway.ErrorDetail`s in `grpc-status-details-bin`.
pub(crate) fn status_with_details(
    code: tonic::Code,
    message: &str,
    details: &[ErrorDetail],
) -> Status {
    let packed = rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: details
            .iter()
            .map(|d| twill_protos::prost_types::Any {
                type_url: "type.googleapis.com/gateway.ErrorDetail".into(),
                value: d.encode_to_vec(),
            })
            .collect(),
    };
    Status::with_details(code, message, packed.encode_to_vec().into())
}

/// Everything the mock saw and what it should answer.
#[derive(Default)]
pub(crate) struct State {
    pub evaluates: Vec<EvaluateRequest>,
    pub endorses: Vec<EndorseRequest>,
    pub submits: Vec<SubmitRequest>,
    pub commit_requests: Vec<CommitStatusRequest>,
    pub events_requests: Vec<ChaincodeEventsRequest>,
    pub seeks: Vec<SeekInfo>,
    pub seek_headers: Vec<ChannelHeader>,
    /// Validation code CommitStatus answers.
    pub commit_code: i32,
    /// Endorse fails with this, when set.
    pub endorse_error: Option<(tonic::Code, String, Vec<ErrorDetail>)>,
    /// The ledger's chaincode events: (block, events).
    pub ledger_events: Vec<(u64, Vec<ChaincodeEvent>)>,
    /// Blocks Deliver serves, by number from 0.
    pub blocks: Vec<Block>,
}

#[derive(Clone, Default)]
pub(crate) struct MockPeer {
    pub state: Arc<Mutex<State>>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl GatewayService for MockPeer {
    async fn endorse(
        &self,
        request: Request<EndorseRequest>,
    ) -> Result<Response<EndorseResponse>, Status> {
        let req = request.into_inner();
        self.state.lock().unwrap().endorses.push(req.clone());
        if let Some((code, message, details)) = self.state.lock().unwrap().endorse_error.clone() {
            return Err(status_with_details(code, &message, &details));
        }
        let signed = req
            .proposed_transaction
            .ok_or_else(|| Status::invalid_argument("no proposal"))?;
        let checked = check_proposal(&signed)?;
        if checked.channel_header.tx_id != req.transaction_id
            || checked.channel_header.channel_id != req.channel_id
        {
            return Err(Status::invalid_argument("request and proposal differ"));
        }
        let fn_name = function_and_args(&checked)
            .first()
            .cloned()
            .unwrap_or_default();
        let mut result = b"endorsed:".to_vec();
        result.extend_from_slice(&fn_name);
        let action = ChaincodeAction {
            response: Some(ChaincodeResponse {
                status: 200,
                message: String::new(),
                payload: result,
            }),
            ..Default::default()
        };
        let without_transient = ChaincodeProposalPayload {
            input: checked.payload.input.clone(),
            transient_map: Default::default(),
        };
        let tx = Transaction {
            actions: vec![TransactionAction {
                header: checked.header_bytes.signature_header.clone(),
                payload: ChaincodeActionPayload {
                    chaincode_proposal_payload: without_transient.encode_to_vec(),
                    action: Some(ChaincodeEndorsedAction {
                        proposal_response_payload: ProposalResponsePayload {
                            proposal_hash: vec![1; 32],
                            extension: action.encode_to_vec(),
                        }
                        .encode_to_vec(),
                        endorsements: vec![],
                    }),
                }
                .encode_to_vec(),
            }],
        };
        let payload = Payload {
            header: Some(checked.header_bytes),
            data: tx.encode_to_vec(),
        };
        Ok(Response::new(EndorseResponse {
            prepared_transaction: Some(Envelope {
                payload: payload.encode_to_vec(),
                signature: Vec::new(),
            }),
        }))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let req = request.into_inner();
        let env = req
            .prepared_transaction
            .clone()
            .ok_or_else(|| Status::invalid_argument("no envelope"))?;
        if env.signature.is_empty() {
            return Err(Status::invalid_argument(
                "prepared transaction must be signed",
            ));
        }
        let payload = Payload::decode(env.payload.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let header = payload.header.unwrap_or_default();
        let sh = SignatureHeader::decode(header.signature_header.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_signature(&sh.creator, &env.payload, &env.signature)?;
        self.state.lock().unwrap().submits.push(req);
        Ok(Response::new(SubmitResponse {}))
    }

    async fn commit_status(
        &self,
        request: Request<SignedCommitStatusRequest>,
    ) -> Result<Response<CommitStatusResponse>, Status> {
        let signed = request.into_inner();
        let req = CommitStatusRequest::decode(signed.request.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_signature(&req.identity, &signed.request, &signed.signature)?;
        let mut state = self.state.lock().unwrap();
        if !state
            .submits
            .iter()
            .any(|s| s.transaction_id == req.transaction_id)
        {
            return Err(Status::failed_precondition("unknown transaction"));
        }
        state.commit_requests.push(req);
        Ok(Response::new(CommitStatusResponse {
            result: state.commit_code,
            block_number: 5,
        }))
    }

    async fn evaluate(
        &self,
        request: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let req = request.into_inner();
        let signed = req
            .proposed_transaction
            .clone()
            .ok_or_else(|| Status::invalid_argument("no proposal"))?;
        let checked = check_proposal(&signed)?;
        let args = function_and_args(&checked);
        self.state.lock().unwrap().evaluates.push(req);
        Ok(Response::new(EvaluateResponse {
            result: Some(ChaincodeResponse {
                status: 200,
                message: String::new(),
                payload: args.join(&b' '),
            }),
        }))
    }

    type ChaincodeEventsStream = BoxStream<ChaincodeEventsResponse>;

    async fn chaincode_events(
        &self,
        request: Request<SignedChaincodeEventsRequest>,
    ) -> Result<Response<Self::ChaincodeEventsStream>, Status> {
        let signed = request.into_inner();
        let req = ChaincodeEventsRequest::decode(signed.request.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_signature(&req.identity, &signed.request, &signed.signature)?;
        let mut state = self.state.lock().unwrap();
        state.events_requests.push(req.clone());
        // A.6.5: start at the block holding after_transaction_id, else the
        // specified block, else the height; skip up to that transaction.
        let holding = (!req.after_transaction_id.is_empty())
            .then(|| {
                state.ledger_events.iter().find_map(|(b, evs)| {
                    evs.iter()
                        .any(|e| e.tx_id == req.after_transaction_id)
                        .then_some(*b)
                })
            })
            .flatten();
        let start = match (holding, req.start_position.and_then(|p| p.r#type)) {
            (Some(b), _) => b,
            (None, Some(seek_position::Type::Specified(s))) => s.number,
            _ => u64::MAX,
        };
        let mut skipping = holding.is_some();
        let mut out = Vec::new();
        for (block, events) in state.ledger_events.iter().filter(|(b, _)| *b >= start) {
            let mut matched = Vec::new();
            for e in events {
                if skipping {
                    if e.tx_id == req.after_transaction_id {
                        skipping = false;
                    }
                    continue;
                }
                if e.chaincode_id == req.chaincode_id {
                    matched.push(e.clone());
                }
            }
            if !matched.is_empty() {
                out.push(Ok(ChaincodeEventsResponse {
                    events: matched,
                    block_number: *block,
                }));
            }
        }
        let stream = futures::stream::iter(out).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl Deliver for MockPeer {
    type DeliverStream = BoxStream<DeliverResponse>;
    type DeliverFilteredStream = BoxStream<DeliverResponse>;
    type DeliverWithPrivateDataStream = BoxStream<DeliverResponse>;

    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let mut inbound = request.into_inner();
        let env = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no seek"))?;
        let payload = Payload::decode(env.payload.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let header = payload.header.unwrap_or_default();
        let ch = ChannelHeader::decode(header.channel_header.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let sh = SignatureHeader::decode(header.signature_header.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let status = |s: common::Status| {
            Ok(DeliverResponse {
                r#type: Some(deliver_response::Type::Status(s as i32)),
            })
        };
        // A.6.6: no tx id, no nonce; a bad request ends with a status.
        if ch.r#type != HeaderType::DeliverSeekInfo as i32
            || !ch.tx_id.is_empty()
            || !sh.nonce.is_empty()
            || check_signature(&sh.creator, &env.payload, &env.signature).is_err()
        {
            let out = futures::stream::iter(vec![status(common::Status::BadRequest)]);
            return Ok(Response::new(Box::pin(out)));
        }
        let seek = SeekInfo::decode(payload.data.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut state = self.state.lock().unwrap();
        state.seeks.push(seek);
        state.seek_headers.push(ch);
        let start = match seek.start.and_then(|p| p.r#type) {
            Some(seek_position::Type::Specified(s)) => s.number,
            _ => state.blocks.len() as u64,
        };
        let blocks: Vec<_> = state
            .blocks
            .iter()
            .skip(start as usize)
            .cloned()
            .map(|b| {
                Ok(DeliverResponse {
                    r#type: Some(deliver_response::Type::Block(b)),
                })
            })
            .collect();
        // Keep reading the request side: a half-close would be a client bug.
        let stream = futures::stream::iter(blocks).chain(futures::stream::pending());
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn deliver_filtered(
        &self,
        _request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverFilteredStream>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn deliver_with_private_data(
        &self,
        _request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverWithPrivateDataStream>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }
}

/// A running mock; stops when dropped.
pub(crate) struct Running {
    pub addr: SocketAddr,
    pub peer: MockPeer,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub(crate) async fn start(tls: Option<&twill_comm::ServerTls>) -> Running {
    let (listener, addr) = twill_comm::bind("127.0.0.1:0").await.unwrap();
    let peer = MockPeer::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = twill_comm::server_builder(tls)
        .unwrap()
        .add_service(GatewayServer::new(peer.clone()))
        .add_service(DeliverServer::new(peer.clone()));
    tokio::spawn(
        server.serve_with_incoming_shutdown(twill_comm::incoming(listener), async {
            let _ = stopped.await;
        }),
    );
    Running {
        addr,
        peer,
        _stop: stop,
    }
}

/// Throwaway TLS material: a CA, a server certificate for one host name
/// and a client certificate.
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub client_cert_der: Vec<u8>,
}

impl TlsMaterial {
    pub(crate) fn new(server_name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "tlsca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, usage| {
            let key = KeyPair::generate().unwrap();
            let sans = if usage == ExtendedKeyUsagePurpose::ServerAuth {
                vec![name.to_owned()]
            } else {
                vec![]
            };
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem(), cert.der().to_vec())
        };
        let (server_cert_pem, server_key_pem, _) =
            leaf(server_name, ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert_pem, client_key_pem, client_cert_der) =
            leaf("User1", ExtendedKeyUsagePurpose::ClientAuth);
        TlsMaterial {
            ca_pem: ca_cert.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            client_cert_der,
        }
    }

    pub(crate) fn server(&self, client_auth: twill_comm::ClientAuth) -> twill_comm::ServerTls {
        twill_comm::ServerTls::from_pem(
            &self.server_cert_pem,
            &self.server_key_pem,
            vec![self.ca_pem.clone().into_bytes()],
            client_auth,
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checkpointer as _;
    use crate::{
        ChaincodeInvoker, ChaincodeQuerier, ConnectionProfile, Endpoint, Error, EventsOptions,
        Gateway, InMemoryCheckpointer, ProposalOptions, Signer,
    };
    use std::time::Duration;
    use twill_protos::peer::TxValidationCode;

    async fn gateway_for(running: &Running, with_signer: bool) -> (Gateway, PrivateKeySigner) {
        let (identity, signer, _, key_pem) = user("Org1MSP");
        let mut builder = Gateway::builder()
            .identity(identity)
            .endpoint(Endpoint::plaintext(running.addr.to_string()));
        if with_signer {
            builder = builder.signer(signer);
        }
        let gateway = builder.connect().await.unwrap();
        (gateway, PrivateKeySigner::from_pem(&key_pem).unwrap())
    }

    #[tokio::test]
    async fn proposal_is_built_as_fabric_clients_build_it() {
        let running = start(None).await;
        let (gateway, _) = gateway_for(&running, true).await;
        let contract = gateway
            .network("mychannel")
            .contract_with_name("basic", "org.example.Assets");
        let proposal = contract
            .new_proposal(
                "CreateAsset",
                ProposalOptions::new()
                    .arguments(["a1", "blue"])
                    .argument([0u8, 1, 2])
                    .transient("secret", b"s3".to_vec())
                    .endorsing_organizations(["Org1MSP", "Org2MSP"]),
            )
            .unwrap();
        let checked = check_proposal(proposal.signed_proposal()).unwrap();
        let ch = &checked.channel_header;
        assert_eq!(ch.channel_id, "mychannel");
        assert_eq!(ch.version, 0);
        assert!(ch.timestamp.is_some());
        assert!(ch.tls_cert_hash.is_empty());
        assert_eq!(ch.tx_id, proposal.transaction_id());
        assert_eq!(checked.signature_header.nonce.len(), 24);
        assert_eq!(
            checked.signature_header.creator,
            gateway.identity().serialize()
        );
        let mut hasher = twill_crypto::Sha256Hasher::new();
        hasher.update(&checked.signature_header.nonce);
        hasher.update(&checked.signature_header.creator);
        assert_eq!(ch.tx_id, hex_lower(&hasher.finalize()));
        let ext =
            twill_protos::peer::ChaincodeHeaderExtension::decode(ch.extension.as_slice()).unwrap();
        let id = ext.chaincode_id.unwrap();
        assert_eq!(
            (id.name.as_str(), id.version.as_str(), id.path.as_str()),
            ("basic", "", "")
        );
        let spec = checked.invocation.chaincode_spec.unwrap();
        assert_eq!(spec.r#type, 2, "NODE, as Fabric's clients send");
        let input = spec.input.unwrap();
        assert_eq!(
            input.args,
            vec![
                b"org.example.Assets:CreateAsset".to_vec(),
                b"a1".to_vec(),
                b"blue".to_vec(),
                vec![0, 1, 2]
            ]
        );
        assert!(!input.is_init && input.decorations.is_empty());
        assert_eq!(checked.payload.transient_map["secret"], b"s3");
        assert_eq!(proposal.endorsing_organizations(), ["Org1MSP", "Org2MSP"]);

        // Endorse sends the orgs, and the transaction drops the transient data.
        let tx = proposal.endorse().await.unwrap();
        assert_eq!(tx.result(), b"endorsed:org.example.Assets:CreateAsset");
        let endorse = running.peer.state.lock().unwrap().endorses[0].clone();
        assert_eq!(endorse.endorsing_organizations, ["Org1MSP", "Org2MSP"]);
        assert_eq!(endorse.transaction_id, proposal.transaction_id());
        assert_eq!(endorse.channel_id, "mychannel");
    }

    fn hex_lower(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[tokio::test]
    async fn submit_evaluate_and_commit_codes() {
        let running = start(None).await;
        let (gateway, _) = gateway_for(&running, true).await;
        let contract = gateway.network("mychannel").contract("basic");
        assert_eq!(
            contract.evaluate("ReadAsset", &["a1"]).await.unwrap(),
            b"ReadAsset a1"
        );
        let result = contract
            .submit("CreateAsset", &["a1", "blue", "5", "Tom", "100"])
            .await
            .unwrap();
        assert_eq!(result, b"endorsed:CreateAsset");
        {
            let state = running.peer.state.lock().unwrap();
            assert_eq!(state.submits.len(), 1);
            assert_eq!(state.commit_requests.len(), 1);
            assert_eq!(state.commit_requests[0].channel_id, "mychannel");
            assert_eq!(
                state.commit_requests[0].identity,
                gateway.identity().serialize()
            );
        }

        running.peer.state.lock().unwrap().commit_code = TxValidationCode::MvccReadConflict as i32;
        let err = contract.submit("CreateAsset", &["a2"]).await.unwrap_err();
        let Error::Commit(commit) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(commit.code_name(), "MVCC_READ_CONFLICT");
        assert_eq!(commit.block_number, 5);
        assert_eq!(Some(commit.transaction_id.as_str()), err.transaction_id());

        // submit_async returns at once; the status tells the code.
        let submitted = contract.submit_async("CreateAsset", &["a3"]).await.unwrap();
        assert_eq!(submitted.result(), b"endorsed:CreateAsset");
        let status = submitted.status().await.unwrap();
        assert!(!status.successful());
        assert_eq!(
            status.validation_code(),
            Some(TxValidationCode::MvccReadConflict)
        );

        // The helpers.
        running.peer.state.lock().unwrap().commit_code = 0;
        let invoker = ChaincodeInvoker::new(contract.clone());
        assert_eq!(
            invoker.invoke("CreateAsset", &["a4"]).await.unwrap(),
            b"endorsed:CreateAsset"
        );
        let querier = ChaincodeQuerier::new(contract);
        assert_eq!(
            querier.query_string("ReadAsset", &["a4"]).await.unwrap(),
            "ReadAsset a4"
        );
        let err = querier
            .query_json::<serde_json::Value>("ReadAsset", &["a4"])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn endorse_errors_carry_code_tx_id_and_details() {
        let running = start(None).await;
        let (gateway, _) = gateway_for(&running, true).await;
        running.peer.state.lock().unwrap().endorse_error = Some((
            tonic::Code::Aborted,
            "failed to endorse transaction, see attached details for more info".into(),
            vec![ErrorDetail {
                address: "peer0.org2.example.com:9051".into(),
                msp_id: "Org2MSP".into(),
                message: "chaincode response 500, asset a1 already exists".into(),
            }],
        ));
        let contract = gateway.network("mychannel").contract("basic");
        let err = contract.submit("CreateAsset", &["a1"]).await.unwrap_err();
        let Error::Endorse {
            transaction_id,
            source,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(transaction_id.len(), 64);
        assert_eq!(source.code, tonic::Code::Aborted);
        assert_eq!(err.code(), Some(tonic::Code::Aborted));
        assert_eq!(err.details().len(), 1);
        assert_eq!(err.details()[0].msp_id, "Org2MSP");
        assert_eq!(err.details()[0].address, "peer0.org2.example.com:9051");
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[tokio::test]
    async fn offline_signing_round_trip() {
        let running = start(None).await;
        let (gateway, key) = gateway_for(&running, false).await;
        let contract = gateway.network("mychannel").contract("basic");

        // Without a signer, nothing goes out unsigned.
        let err = contract.submit("CreateAsset", &["a1"]).await.unwrap_err();
        assert!(
            matches!(err, Error::Unsigned { what: "proposal" }),
            "{err:?}"
        );

        let unsigned = contract
            .new_proposal("CreateAsset", ProposalOptions::new().arguments(["a1"]))
            .unwrap();
        assert!(unsigned.signed_proposal().signature.is_empty());
        // The bytes travel to the signer; only bytes and a signature come back.
        let bytes = unsigned.bytes();
        let signature = key.sign_digest(&unsigned.digest()).unwrap();
        let proposal = gateway.new_signed_proposal(&bytes, signature).unwrap();
        assert_eq!(proposal.transaction_id(), unsigned.transaction_id());
        assert_eq!(proposal.channel(), "mychannel");
        assert_eq!(
            gateway
                .new_signed_proposal(&bytes, key.sign_digest(&unsigned.digest()).unwrap())
                .unwrap()
                .evaluate()
                .await
                .unwrap(),
            b"CreateAsset a1"
        );

        let unsigned_tx = proposal.endorse().await.unwrap();
        let tx = gateway
            .new_signed_transaction(
                &unsigned_tx.bytes(),
                key.sign_digest(&unsigned_tx.digest()).unwrap(),
            )
            .unwrap();
        assert_eq!(tx.transaction_id(), proposal.transaction_id());
        assert_eq!(tx.result(), b"endorsed:CreateAsset");
        let submitted = tx.submit().await.unwrap();
        let unsigned_commit = submitted.commit();
        assert!(matches!(
            unsigned_commit.status().await.unwrap_err(),
            Error::Unsigned { .. }
        ));
        let commit = gateway
            .new_signed_commit(
                &unsigned_commit.bytes(),
                key.sign_digest(&unsigned_commit.digest()).unwrap(),
            )
            .unwrap();
        let status = commit.status().await.unwrap();
        assert!(status.successful());
        assert_eq!(status.transaction_id, proposal.transaction_id());

        // A wrong signature is refused by the peer.
        let other = user("Org1MSP").1;
        let forged = gateway
            .new_signed_proposal(&bytes, other.sign_digest(&unsigned.digest()).unwrap())
            .unwrap();
        let err = forged.evaluate().await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");

        // Garbage bytes are a typed error.
        assert!(matches!(
            gateway.new_signed_proposal(b"\xff\xff", vec![]),
            Err(Error::Malformed { .. })
        ));
    }

    fn event(tx: &str, name: &str) -> ChaincodeEvent {
        ChaincodeEvent {
            chaincode_id: "basic".into(),
            tx_id: tx.into(),
            event_name: name.into(),
            payload: name.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn chaincode_events_resume_from_checkpoints() {
        let running = start(None).await;
        let (gateway, key) = gateway_for(&running, true).await;
        running.peer.state.lock().unwrap().ledger_events = vec![
            (3, vec![event("t1", "e1"), event("t2", "e2")]),
            (
                4,
                vec![
                    ChaincodeEvent {
                        chaincode_id: "other".into(),
                        ..event("t3", "x")
                    },
                    event("t4", "e4"),
                ],
            ),
            (6, vec![event("t5", "e5")]),
        ];
        let network = gateway.network("mychannel");
        let checkpoint = InMemoryCheckpointer::new();
        let mut events = network
            .chaincode_events(
                "basic",
                EventsOptions::new().start_block(0).checkpoint(&checkpoint),
            )
            .await
            .unwrap();
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(
            (
                first.block_number,
                first.transaction_id.as_str(),
                first.event_name.as_str()
            ),
            (3, "t1", "e1")
        );
        assert_eq!(first.chaincode_name, "basic");
        assert_eq!(first.payload, b"e1");
        checkpoint.checkpoint_chaincode_event(&first).unwrap();
        drop(events);

        // Resumes after t1 in block 3.
        let mut events = network
            .chaincode_events(
                "basic",
                EventsOptions::new().start_block(0).checkpoint(&checkpoint),
            )
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let e = events.next().await.unwrap().unwrap();
            checkpoint.checkpoint_chaincode_event(&e).unwrap();
            seen.push((e.block_number, e.transaction_id));
        }
        assert_eq!(
            seen,
            vec![(3, "t2".into()), (4, "t4".into()), (6, "t5".into())]
        );
        // Nothing more arrives; the stream stays open.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), events.next())
                .await
                .is_err()
        );
        {
            let state = running.peer.state.lock().unwrap();
            let second = &state.events_requests[1];
            assert_eq!(second.after_transaction_id, "t1");
            assert_eq!(second.chaincode_id, "basic");
            assert_eq!(second.channel_id, "mychannel");
            assert!(matches!(
                second.start_position.unwrap().r#type,
                Some(seek_position::Type::Specified(s)) if s.number == 3
            ));
        }

        // Without a start: next commit.
        let _ = network
            .chaincode_events("basic", EventsOptions::new())
            .await
            .unwrap();
        let last = running.peer.state.lock().unwrap().events_requests[2].clone();
        assert!(matches!(
            last.start_position.unwrap().r#type,
            Some(seek_position::Type::NextCommit(_))
        ));

        // Offline-signed request.
        let gw = Gateway::builder()
            .identity(gateway.identity().clone())
            .endpoint(Endpoint::plaintext(running.addr.to_string()))
            .connect()
            .await
            .unwrap();
        let unsigned = gw
            .network("mychannel")
            .new_chaincode_events_request("basic", EventsOptions::new().start_block(6))
            .unwrap();
        let signed = gw
            .new_signed_chaincode_events_request(
                &unsigned.bytes(),
                key.sign_digest(&unsigned.digest()).unwrap(),
            )
            .unwrap();
        let mut events = signed.events().await.unwrap();
        assert_eq!(events.next().await.unwrap().unwrap().transaction_id, "t5");
    }

    fn block(n: u64) -> Block {
        twill_configtx::block::new_block(n, vec![], vec![vec![n as u8]])
    }

    #[tokio::test]
    async fn block_events_send_one_signed_seek() {
        let running = start(None).await;
        let (gateway, key) = gateway_for(&running, true).await;
        running.peer.state.lock().unwrap().blocks = (0..5).map(block).collect();
        let network = gateway.network("mychannel");
        let checkpoint = InMemoryCheckpointer::new();
        checkpoint.checkpoint_block(1).unwrap();
        let mut blocks = network
            .block_events(EventsOptions::new().checkpoint(&checkpoint))
            .await
            .unwrap();
        for expected in 2..5 {
            let b = blocks.next().await.unwrap().unwrap();
            assert_eq!(crate::events::block_number(&b), expected);
            checkpoint.checkpoint_block(expected).unwrap();
        }
        assert_eq!(checkpoint.block_number(), Some(5));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), blocks.next())
                .await
                .is_err()
        );
        let seek = running.peer.state.lock().unwrap().seeks[0];
        assert!(matches!(
            seek.stop.unwrap().r#type,
            Some(seek_position::Type::Specified(s)) if s.number == (1 << 53) - 1
        ));
        assert_eq!(
            (seek.behavior, seek.error_response, seek.content_type),
            (0, 0, 0)
        );

        // Offline signing, and a forged signature ends the stream with a status.
        let gw = Gateway::builder()
            .identity(gateway.identity().clone())
            .endpoint(Endpoint::plaintext(running.addr.to_string()))
            .connect()
            .await
            .unwrap();
        let unsigned = gw
            .network("mychannel")
            .new_block_events_request(EventsOptions::new().start_block(4))
            .unwrap();
        let signed = gw
            .new_signed_block_events_request(
                &unsigned.bytes(),
                key.sign_digest(&unsigned.digest()).unwrap(),
            )
            .unwrap();
        let mut blocks = signed.events().await.unwrap();
        assert_eq!(
            crate::events::block_number(&blocks.next().await.unwrap().unwrap()),
            4
        );
        let forged = gw
            .new_signed_block_events_request(
                &unsigned.bytes(),
                user("Org1MSP").1.sign_digest(&unsigned.digest()).unwrap(),
            )
            .unwrap();
        let mut blocks = forged.events().await.unwrap();
        let err = blocks.next().await.unwrap().unwrap_err();
        assert!(
            matches!(err, Error::DeliverStatus { status: 400 }),
            "{err:?}"
        );
        assert!(blocks.next().await.is_none());
    }

    #[tokio::test]
    async fn tls_with_a_profile_and_a_host_name_override() {
        let material = TlsMaterial::new("peer0.org1.example.com");
        let ca_pem = material.ca_pem.clone();
        let running = start(Some(&material.server(twill_comm::ClientAuth::None))).await;
        let profile = serde_json::json!({
            "client": {"organization": "Org1"},
            "organizations": {"Org1": {"mspid": "Org1MSP", "peers": ["peer0.org1.example.com"]}},
            "peers": {"peer0.org1.example.com": {
                "url": format!("grpcs://{}", running.addr),
                "tlsCACerts": {"pem": ca_pem},
                "grpcOptions": {"ssl-target-name-override": "peer0.org1.example.com"}
            }}
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connection-org1.json");
        std::fs::write(&path, profile.to_string()).unwrap();
        let peer = ConnectionProfile::from_file(&path)
            .unwrap()
            .peer(None, None)
            .unwrap();
        let (identity, signer, _, _) = user(&peer.msp_id);
        let gateway = Gateway::builder()
            .identity(identity)
            .signer(signer)
            .endpoint(peer.endpoint().unwrap())
            .evaluate_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let contract = gateway.network("mychannel").contract("basic");
        assert_eq!(
            contract.evaluate("ReadAsset", &["x"]).await.unwrap(),
            b"ReadAsset x"
        );

        // Without the override the certificate does not match 127.0.0.1.
        let (identity, signer, _, _) = user("Org1MSP");
        let gateway = Gateway::builder()
            .identity(identity)
            .signer(signer)
            .endpoint(Endpoint::tls(running.addr.to_string(), ca_pem))
            .connect()
            .await
            .unwrap();
        let err = gateway
            .network("mychannel")
            .contract("basic")
            .evaluate("ReadAsset", &["x"])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");
    }

    #[tokio::test]
    async fn builder_and_msp_folder() {
        assert!(matches!(
            Gateway::builder().connect().await,
            Err(Error::Builder {
                missing: "identity"
            })
        ));
        let (identity, _, cert_pem, key_pem) = user("Org1MSP");
        assert!(matches!(
            Gateway::builder().identity(identity).connect().await,
            Err(Error::Builder { .. })
        ));

        let dir = tempfile::tempdir().unwrap();
        let msp = dir.path().join("msp");
        std::fs::create_dir_all(msp.join("signcerts")).unwrap();
        std::fs::create_dir_all(msp.join("keystore")).unwrap();
        std::fs::write(msp.join("signcerts/cert.pem"), &cert_pem).unwrap();
        // A key that does not match is skipped.
        std::fs::write(msp.join("keystore/a_sk"), user("x").3).unwrap();
        std::fs::write(msp.join("keystore/priv_sk"), &key_pem).unwrap();
        let (id, signer) = crate::identity::from_msp_dir(&msp, "Org1MSP").unwrap();
        assert_eq!(id.credentials(), cert_pem.as_bytes());
        let sig = signer.sign_message(b"m").unwrap();
        twill_msp::Identity::from_pem("Org1MSP", cert_pem.as_bytes())
            .unwrap()
            .verify(b"m", &sig)
            .unwrap();
        std::fs::remove_file(msp.join("keystore/priv_sk")).unwrap();
        assert!(matches!(
            crate::identity::from_msp_dir(&msp, "Org1MSP"),
            Err(Error::Identity { .. })
        ));

        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, &key_pem).unwrap();
        assert!(crate::identity::from_pem_files("Org1MSP", &cert, &key).is_ok());
        std::fs::write(&key, user("x").3).unwrap();
        assert!(crate::identity::from_pem_files("Org1MSP", &cert, &key).is_err());
    }

    #[tokio::test]
    async fn mutual_tls_and_the_certificate_hash_in_seeks() {
        let material = TlsMaterial::new("peer0.org1.example.com");
        let running = start(Some(&material.server(twill_comm::ClientAuth::Required))).await;
        let endpoint = |with_client: bool| {
            let e = Endpoint::tls(running.addr.to_string(), material.ca_pem.clone())
                .server_name("peer0.org1.example.com");
            if with_client {
                e.client_identity(
                    material.client_cert_pem.clone(),
                    material.client_key_pem.clone(),
                )
            } else {
                e
            }
        };
        let (identity, signer, _, _) = user("Org1MSP");
        let gateway = Gateway::builder()
            .identity(identity)
            .signer(signer)
            .endpoint(endpoint(true))
            .connect()
            .await
            .unwrap();
        let network = gateway.network("mychannel");
        assert_eq!(
            network
                .contract("basic")
                .evaluate("ReadAsset", &["m"])
                .await
                .unwrap(),
            b"ReadAsset m"
        );
        running.peer.state.lock().unwrap().blocks = vec![block(0)];
        let mut blocks = network
            .block_events(EventsOptions::new().start_block(0))
            .await
            .unwrap();
        blocks.next().await.unwrap().unwrap();
        let header = running.peer.state.lock().unwrap().seek_headers[0].clone();
        assert_eq!(
            header.tls_cert_hash,
            twill_crypto::sha256(&material.client_cert_der).to_vec()
        );

        // Without a client certificate the server refuses the connection.
        let (identity, signer, _, _) = user("Org1MSP");
        let gateway = Gateway::builder()
            .identity(identity)
            .signer(signer)
            .endpoint(endpoint(false))
            .connect()
            .await
            .unwrap();
        let err = gateway
            .network("mychannel")
            .contract("basic")
            .evaluate("ReadAsset", &["m"])
            .await
            .unwrap_err();
        assert!(err.code().is_some(), "{err}");
        assert!(running.peer.state.lock().unwrap().evaluates.len() == 1);
    }
}
