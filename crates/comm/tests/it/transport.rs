//! gRPC over loopback: plaintext, TLS, client authentication modes, ALPN,
//! server names and message sizes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use twill_comm::{
    bind, cert_hash, connect, connect_lazy, incoming, peer_cert_der, server_builder,
    with_message_limits, ClientAuth, ClientTls, CommError, ServerTls,
};
use twill_protos::protos::endorser_client::EndorserClient;
use twill_protos::protos::endorser_server::{Endorser, EndorserServer};
use twill_protos::protos::{ProposalResponse, Response, SignedProposal};

use crate::pki::{Ca, Pki};

/// Generous bound on anything that should finish quickly; reaching it means
/// a hang, which is a failure in itself.
const LIMIT: Duration = Duration::from_secs(20);

/// Answers with `message` "cert" or "no cert", the client certificate DER
/// (if any) as `payload`, and echoes the proposal size as `status`.
struct Probe;

#[tonic::async_trait]
impl Endorser for Probe {
    async fn process_proposal(
        &self,
        req: tonic::Request<SignedProposal>,
    ) -> Result<tonic::Response<ProposalResponse>, tonic::Status> {
        let cert = peer_cert_der(&req);
        let size = req.into_inner().proposal_bytes.len();
        let response = Response {
            status: i32::try_from(size).unwrap_or(-1),
            message: if cert.is_some() { "cert" } else { "no cert" }.to_owned(),
            payload: cert.unwrap_or_default(),
        };
        Ok(tonic::Response::new(ProposalResponse {
            response: Some(response),
            ..Default::default()
        }))
    }
}

/// A Probe server on a free loopback port, stopped when dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Running {
    async fn start(tls: Option<&ServerTls>) -> Running {
        let (listener, addr) = bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = server_builder(tls)
            .unwrap()
            .add_service(with_message_limits!(EndorserServer::new(Probe)))
            .serve_with_incoming_shutdown(incoming(listener), async {
                let _ = stopped.await;
            });
        Running {
            addr,
            stop: Some(stop),
            task: Some(tokio::spawn(server)),
        }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the server and checks that it shuts down cleanly.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(LIMIT, task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn server_tls(pki: &Pki, client_auth: ClientAuth) -> ServerTls {
    ServerTls::from_pem(
        &pki.server.cert_pem,
        &pki.server.key_pem,
        vec![pki.ca.cert_pem.clone().into_bytes()],
        client_auth,
    )
    .unwrap()
}

fn client_tls(pki: &Pki) -> ClientTls {
    ClientTls::new(vec![pki.ca.cert_pem.clone().into_bytes()])
}

fn mutual_client_tls(pki: &Pki) -> ClientTls {
    client_tls(pki).with_identity(pki.client.cert_pem.clone(), pki.client.key_pem.clone())
}

/// One ProcessProposal call, with a bound on how long it may take.
async fn call(
    channel: tonic::transport::Channel,
    proposal_bytes: Vec<u8>,
) -> Result<Response, tonic::Status> {
    let mut client = with_message_limits!(EndorserClient::new(channel));
    let request = SignedProposal {
        proposal_bytes,
        signature: vec![],
    };
    let reply = tokio::time::timeout(LIMIT, client.process_proposal(request))
        .await
        .expect("RPC hung")?;
    Ok(reply.into_inner().response.unwrap())
}

/// Dials and calls once; any failure on the way is returned as text.
async fn dial_and_call(addr: &str, tls: Option<&ClientTls>) -> Result<Response, String> {
    let channel = tokio::time::timeout(LIMIT, connect(addr, tls))
        .await
        .expect("connect hung")
        .map_err(|e| e.to_string())?;
    call(channel, b"hi".to_vec())
        .await
        .map_err(|s| s.to_string())
}

#[tokio::test]
async fn plaintext_roundtrip() {
    let server = Running::start(None).await;
    let response = dial_and_call(&server.addr(), None).await.unwrap();
    assert_eq!(response.message, "no cert");
    assert_eq!(response.status, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn tls_without_client_cert_when_not_required() {
    let pki = Pki::new();
    for mode in [ClientAuth::None, ClientAuth::Optional] {
        let server = Running::start(Some(&server_tls(&pki, mode))).await;
        let response = dial_and_call(&server.addr(), Some(&client_tls(&pki)))
            .await
            .unwrap();
        assert_eq!(response.message, "no cert", "{mode:?}");
        assert!(response.payload.is_empty());
        server.shutdown().await;
    }
}

#[tokio::test]
async fn optional_client_auth_reports_the_client_cert() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::Optional))).await;
    let response = dial_and_call(&server.addr(), Some(&mutual_client_tls(&pki)))
        .await
        .unwrap();
    assert_eq!(response.message, "cert");
    assert_eq!(response.payload, pki.client.cert_der);
    assert_eq!(
        cert_hash(&response.payload),
        twill_crypto::sha256(&pki.client.cert_der)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn no_client_auth_ignores_a_client_cert() {
    // As in Fabric with clientAuthRequired: false, the server does not ask,
    // so even a certificate from an unknown CA does not get in the way.
    let pki = Pki::new();
    let stranger = Ca::new("stranger").client("stranger");
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::None))).await;
    let client = client_tls(&pki).with_identity(stranger.cert_pem, stranger.key_pem);
    let response = dial_and_call(&server.addr(), Some(&client)).await.unwrap();
    assert_eq!(response.message, "no cert");
    server.shutdown().await;
}

#[tokio::test]
async fn required_client_auth() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::Required))).await;

    let response = dial_and_call(&server.addr(), Some(&mutual_client_tls(&pki)))
        .await
        .unwrap();
    assert_eq!(response.payload, pki.client.cert_der);

    // Without a certificate: an error, either at connect or on the first
    // RPC (TLS 1.3 lets the client finish its side of the handshake first).
    let err = dial_and_call(&server.addr(), Some(&client_tls(&pki)))
        .await
        .unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");

    // A certificate from a CA the server does not trust fails the same way.
    let stranger = Ca::new("stranger").client("stranger");
    let client = client_tls(&pki).with_identity(stranger.cert_pem, stranger.key_pem);
    dial_and_call(&server.addr(), Some(&client))
        .await
        .unwrap_err();

    // The server keeps serving good clients after refusing bad ones.
    dial_and_call(&server.addr(), Some(&mutual_client_tls(&pki)))
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn optional_client_auth_refuses_untrusted_cert() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::Optional))).await;
    let stranger = Ca::new("stranger").client("stranger");
    let client = client_tls(&pki).with_identity(stranger.cert_pem, stranger.key_pem);
    dial_and_call(&server.addr(), Some(&client))
        .await
        .unwrap_err();
    server.shutdown().await;
}

#[tokio::test]
async fn client_trusting_another_ca_fails() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::None))).await;
    let other = Ca::new("other-ca");
    let client = ClientTls::new(vec![other.cert_pem.into_bytes()]);
    let err = tokio::time::timeout(LIMIT, connect(&server.addr(), Some(&client)))
        .await
        .expect("connect hung")
        .unwrap_err();
    assert!(matches!(err, CommError::Connect { .. }), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn plaintext_client_against_tls_server_fails() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::None))).await;
    dial_and_call(&server.addr(), None).await.unwrap_err();
    server.shutdown().await;
}

#[tokio::test]
async fn server_name_override() {
    let ca = Ca::new("org1-tls-ca");
    let leaf = ca.server(&["peer0.org1.example.com"]);
    let tls = ServerTls::from_pem(&leaf.cert_pem, &leaf.key_pem, vec![], ClientAuth::None).unwrap();
    let server = Running::start(Some(&tls)).await;
    let roots = vec![ca.cert_pem.clone().into_bytes()];

    // Dialing 127.0.0.1 checks the certificate for that IP, which it lacks.
    dial_and_call(&server.addr(), Some(&ClientTls::new(roots.clone())))
        .await
        .unwrap_err();
    let wrong = ClientTls::new(roots.clone()).with_server_name("peer1.org1.example.com");
    dial_and_call(&server.addr(), Some(&wrong))
        .await
        .unwrap_err();

    let right = ClientTls::new(roots).with_server_name("peer0.org1.example.com");
    let response = dial_and_call(&server.addr(), Some(&right)).await.unwrap();
    assert_eq!(response.message, "no cert");
    server.shutdown().await;
}

#[tokio::test]
async fn grpc_server_negotiates_h2() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::None))).await;
    let base = client_tls(&pki).rustls_config().unwrap();

    let negotiated = raw_handshake(server.addr, &base, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));

    // A client that cannot speak HTTP/2 is refused during the handshake.
    raw_handshake(server.addr, &base, &[b"http/1.1"])
        .await
        .unwrap_err();
    server.shutdown().await;
}

#[tokio::test]
async fn http_config_offers_h2_and_http11() {
    let pki = Pki::new();
    let tls = server_tls(&pki, ClientAuth::None);
    let base = client_tls(&pki).rustls_config().unwrap();
    for (offer, expect) in [
        (&[&b"h2"[..], b"http/1.1"][..], &b"h2"[..]),
        (&[&b"http/1.1"[..]][..], &b"http/1.1"[..]),
    ] {
        let (listener, addr) = bind("127.0.0.1:0").await.unwrap();
        let acceptor = TlsAcceptor::from(tls.rustls_config_http().unwrap());
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let stream = acceptor.accept(tcp).await.unwrap();
            stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
        });
        let negotiated = raw_handshake(addr, &base, offer).await.unwrap();
        assert_eq!(negotiated.as_deref(), Some(expect));
        let server_side = tokio::time::timeout(LIMIT, accept).await.unwrap().unwrap();
        assert_eq!(server_side.as_deref(), Some(expect));
    }
}

/// A bare TLS handshake offering `alpn`; returns the negotiated protocol.
async fn raw_handshake(
    addr: SocketAddr,
    base: &Arc<tokio_rustls::rustls::ClientConfig>,
    alpn: &[&[u8]],
) -> std::io::Result<Option<Vec<u8>>> {
    let mut config = (**base).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        let stream = connector.connect(name, tcp).await?;
        Ok(stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    };
    tokio::time::timeout(LIMIT, handshake)
        .await
        .expect("handshake hung")
}

#[tokio::test]
async fn large_messages_within_limits() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::None))).await;
    let channel = connect(&server.addr(), Some(&client_tls(&pki)))
        .await
        .unwrap();
    // Above tonic's 4 MiB default, well below the 100 MiB limit.
    let size = 6 * 1024 * 1024;
    let response = call(channel, vec![7; size]).await.unwrap();
    assert_eq!(response.status, i32::try_from(size).unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn lazy_channel_connects_on_first_use() {
    let pki = Pki::new();
    let server = Running::start(Some(&server_tls(&pki, ClientAuth::Required))).await;
    let channel = connect_lazy(&server.addr(), Some(&mutual_client_tls(&pki))).unwrap();
    let response = call(channel.clone(), b"x".to_vec()).await.unwrap();
    assert_eq!(response.payload, pki.client.cert_der);
    // The same channel serves further calls.
    call(channel, b"y".to_vec()).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn dialing_a_closed_port_fails_promptly() {
    // Bind, note the port, then free it: nothing listens there any more.
    let (listener, addr) = bind("127.0.0.1:0").await.unwrap();
    drop(listener);
    let err = tokio::time::timeout(LIMIT, connect(&addr.to_string(), None))
        .await
        .expect("connect hung")
        .unwrap_err();
    assert!(matches!(err, CommError::Connect { .. }), "{err}");

    let channel = connect_lazy(&addr.to_string(), None).unwrap();
    call(channel, vec![]).await.unwrap_err();
}

#[tokio::test]
async fn bind_reports_bad_addresses() {
    let err = bind("not an address").await.unwrap_err();
    assert!(matches!(err, CommError::Bind { .. }), "{err}");
}
