//! Listening and serving gRPC.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::coalesce::Coalesced;
use crate::error::{CommError, Result};
use crate::tls::{install_default_provider, ServerTls};
use crate::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};

/// A tonic server builder with Twill's transport settings: TLS from `tls`
/// (plaintext when `None`), HTTP/2 keepalive pings every
/// [`KEEPALIVE_INTERVAL`](crate::KEEPALIVE_INTERVAL) and TCP_NODELAY.
///
/// Message size limits are per service in tonic; wrap each service with
/// [`with_message_limits!`](crate::with_message_limits). Serve with
/// `serve_with_incoming_shutdown(incoming(listener), shutdown)` so that the
/// caller owns the socket (see the crate example).
pub fn server_builder(tls: Option<&ServerTls>) -> Result<Server> {
    let builder = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_nodelay(true);
    match tls {
        None => Ok(builder),
        Some(tls) => {
            install_default_provider();
            builder
                .tls_config(tls.tonic_config())
                .map_err(|source| CommError::Transport {
                    context: "server TLS",
                    source,
                })
        }
    }
}

/// Binds a TCP listener on `addr` (`"0.0.0.0:7051"`, `"127.0.0.1:0"`, or a
/// host name) and returns it with the address actually bound, which tells
/// the port chosen for `:0`.
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr)> {
    let bind_error = |source| CommError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    tracing::debug!(target: "comm::server", %local, "listening");
    Ok((listener, local))
}

/// Turns a listener into the connection stream tonic serves: TCP_NODELAY
/// on every accepted socket (tonic only does that itself for sockets it
/// binds), and writes gathered by [`Coalesced`] beneath the TLS layer.
pub fn incoming(
    listener: TcpListener,
) -> impl Stream<Item = std::io::Result<Coalesced>> + Send + 'static {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|accepted| accepted.map(Coalesced::new))
}

/// DER of the TLS client certificate (the leaf) presented on the connection
/// that carried `req`, when the server was built by [`server_builder`] with
/// TLS and the client sent one.
pub fn peer_cert_der<T>(req: &tonic::Request<T>) -> Option<Vec<u8>> {
    req.peer_certs()
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
}

/// SHA-256 of a certificate's DER: Fabric's `tls_cert_hash`, which binds a
/// message to the mutual-TLS session it was sent on.
pub fn cert_hash(der: &[u8]) -> [u8; 32] {
    twill_crypto::sha256(der)
}
