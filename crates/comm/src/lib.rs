//! gRPC transport for every Twill node and client: tonic servers and
//! channels over rustls TLS, with the settings Fabric's peers, orderers and
//! SDKs expect.
//!
//! What this crate owns:
//!
//! - TLS material: [`ServerTls`] and [`ClientTls`], loaded from PEM bytes or
//!   files ([`TlsFiles`]) and checked up front (well-formed PEM, X.509
//!   certificates, key matching the certificate), with errors that name the
//!   file at fault.
//! - Client authentication modes ([`ClientAuth`]): client-facing endpoints
//!   (gateway, endorser, deliver) accept clients without certificates as
//!   Fabric does by default; node-to-node (cluster) and admin endpoints use
//!   [`ClientAuth::Required`].
//! - ALPN: TLS for gRPC always negotiates `h2`; Fabric's Node SDK refuses
//!   connections that do not. [`ServerTls::rustls_config_http`] offers `h2`
//!   and `http/1.1` for REST listeners.
//! - Servers: [`bind`], [`incoming`], [`server_builder`]; clients:
//!   [`connect`], [`connect_lazy`], [`endpoint`]. Both ends write through
//!   [`Coalesced`], which gathers a connection's frames into fewer socket
//!   writes under load.
//! - Limits and timers: messages up to [`DEFAULT_MAX_MESSAGE_SIZE`] (100 MiB)
//!   both ways ([`with_message_limits!`]); HTTP/2 keepalive pings every
//!   [`KEEPALIVE_INTERVAL`], [`CONNECT_TIMEOUT`] to dial, and
//!   [`TLS_HANDSHAKE_TIMEOUT`].
//! - Identities from the TLS session: [`peer_cert_der`] and [`cert_hash`]
//!   (Fabric's `tls_cert_hash`).
//!
//! Nothing here spawns tasks of its own: tonic runs one task per accepted
//! connection (and one per TLS handshake) inside the future the caller
//! awaits, and stops accepting when the shutdown future completes.
//!
//! # Example
//!
//! A plaintext Endorser service on a free loopback port, and a client that
//! calls it; with TLS, pass `Some(&server_tls)` and `Some(&client_tls)`.
//!
//! ```
//! use twill_comm::{bind, connect, incoming, server_builder, with_message_limits};
//! use twill_protos::protos::endorser_client::EndorserClient;
//! use twill_protos::protos::endorser_server::{Endorser, EndorserServer};
//! use twill_protos::protos::{ProposalResponse, Response, SignedProposal};
//!
//! struct Echo;
//!
//! #[tonic::async_trait]
//! impl Endorser for Echo {
//!     async fn process_proposal(
//!         &self,
//!         req: tonic::Request<SignedProposal>,
//!     ) -> Result<tonic::Response<ProposalResponse>, tonic::Status> {
//!         let response = Response {
//!             status: 200,
//!             payload: req.into_inner().proposal_bytes,
//!             ..Default::default()
//!         };
//!         Ok(tonic::Response::new(ProposalResponse {
//!             response: Some(response),
//!             ..Default::default()
//!         }))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (listener, addr) = bind("127.0.0.1:0").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = server_builder(None)?
//!     .add_service(with_message_limits!(EndorserServer::new(Echo)))
//!     .serve_with_incoming_shutdown(incoming(listener), async {
//!         let _ = stopped.await;
//!     });
//! let server = tokio::spawn(server);
//!
//! let channel = connect(&addr.to_string(), None).await?;
//! let mut client = with_message_limits!(EndorserClient::new(channel));
//! let proposal = SignedProposal { proposal_bytes: b"hello".to_vec(), signature: vec![] };
//! let reply = client.process_proposal(proposal).await?.into_inner();
//! assert_eq!(reply.response.map(|r| r.payload), Some(b"hello".to_vec()));
//!
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::time::Duration;

mod client;
mod coalesce;
mod error;
mod pem;
mod server;
mod tls;

pub use client::{connect, connect_lazy, endpoint};
pub use coalesce::Coalesced;
pub use error::{CommError, PemSource, Result};
pub use server::{bind, cert_hash, incoming, peer_cert_der, server_builder};
pub use tls::{ClientAuth, ClientTls, ServerTls, TlsFiles, ALPN_GRPC, ALPN_HTTP};

/// Largest gRPC message sent or received: 100 MiB, Fabric's default for
/// both directions (tonic's own default for receiving is 4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 100 * 1024 * 1024;

/// How long a client waits for the TCP connection. Fabric dials with 3 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long either side waits for a TLS handshake to finish, so that a
/// silent peer cannot hold a connection slot.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval between HTTP/2 keepalive pings, on clients and servers alike.
///
/// One minute is Fabric's client interval and also the shortest interval
/// Fabric's servers tolerate (`ServerMinInterval`): pinging a Go server more
/// often gets the connection closed with `too_many_pings`. Fabric's servers
/// ping every two hours; Twill's servers use the one-minute interval too, so
/// that streams to vanished clients (Deliver) are noticed promptly.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// How long to wait for a keepalive ping's acknowledgement before closing
/// the connection (Fabric: 20 s).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Applies [`DEFAULT_MAX_MESSAGE_SIZE`] as both the decoding and encoding
/// limit of a tonic-generated server or client, e.g.
/// `with_message_limits!(EndorserServer::new(svc))` or
/// `with_message_limits!(DeliverClient::new(channel))`.
///
/// tonic sets these limits per service, not per server, hence a macro over
/// the generated types' methods rather than a function.
#[macro_export]
macro_rules! with_message_limits {
    ($service:expr) => {
        $service
            .max_decoding_message_size($crate::DEFAULT_MAX_MESSAGE_SIZE)
            .max_encoding_message_size($crate::DEFAULT_MAX_MESSAGE_SIZE)
    };
}
