//! Dialing gRPC endpoints.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tower::util::MapResponse;
use tower::ServiceExt;

use crate::coalesce::Coalesced;
use crate::error::{CommError, Result};
use crate::tls::{install_default_provider, ClientTls};
use crate::{CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};

/// Schemes found in front of addresses in connection profiles and configs.
/// They are dropped: whether to use TLS is the `tls` argument's call.
const SCHEMES: [&str; 4] = ["grpcs://", "grpc://", "https://", "http://"];

/// Checks that `addr` is `host:port` (an optional scheme is dropped) and
/// returns the `host:port` part.
fn authority(addr: &str) -> Result<&str> {
    let invalid = |reason| CommError::InvalidAddress {
        addr: addr.to_owned(),
        reason,
    };
    let rest = SCHEMES
        .iter()
        .find_map(|scheme| addr.strip_prefix(scheme))
        .unwrap_or(addr);
    if rest.contains('/') {
        return Err(invalid("expected host:port without a path"));
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(invalid("expected host:port"));
    };
    if host.is_empty() {
        return Err(invalid("empty host"));
    }
    if port.parse::<u16>().is_err() {
        return Err(invalid("port is not a number from 0 to 65535"));
    }
    Ok(rest)
}

/// A tonic endpoint for `addr` (`host:port`) with Twill's client settings:
/// TLS from `tls` (plaintext when `None`), a TCP connect timeout of
/// [`CONNECT_TIMEOUT`](crate::CONNECT_TIMEOUT), HTTP/2 keepalive pings every
/// [`KEEPALIVE_INTERVAL`](crate::KEEPALIVE_INTERVAL) even when idle, and
/// TCP_NODELAY. Use it to adjust settings before connecting.
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint> {
    let host_port = authority(addr)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}"))
        .map_err(|_| CommError::InvalidAddress {
            addr: addr.to_owned(),
            reason: "not a valid URI authority",
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    match tls {
        None => Ok(endpoint),
        Some(tls) => {
            install_default_provider();
            endpoint
                .tls_config(tls.tonic_config()?)
                .map_err(|source| CommError::Transport {
                    context: "client TLS",
                    source,
                })
        }
    }
}

/// Dials `addr` (`host:port`) now and returns the connected channel; fails
/// if the TCP connection, the TLS handshake or the HTTP/2 setup fails or
/// takes longer than the connect and handshake timeouts together.
///
/// With TLS 1.3 a server's refusal of the client certificate arrives after
/// the client considers the handshake done, so it can surface on the first
/// RPC rather than here.
pub async fn connect(addr: &str, tls: Option<&ClientTls>) -> Result<Channel> {
    let endpoint = endpoint(addr, tls)?;
    let limit = CONNECT_TIMEOUT + TLS_HANDSHAKE_TIMEOUT;
    match tokio::time::timeout(limit, endpoint.connect_with_connector(dialer())).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(CommError::Connect {
            addr: addr.to_owned(),
            source,
        }),
        Err(_) => Err(CommError::ConnectTimeout {
            addr: addr.to_owned(),
            timeout: limit,
        }),
    }
}

/// A channel to `addr` (`host:port`) that connects on first use and
/// reconnects after failures, as Fabric's clients do. Only the address and
/// the TLS material are checked here. Call it within a tokio runtime: the
/// channel spawns its worker task right away.
pub fn connect_lazy(addr: &str, tls: Option<&ClientTls>) -> Result<Channel> {
    Ok(endpoint(addr, tls)?.connect_with_connector_lazy(dialer()))
}

/// Opens the TCP connections of [`connect`] and [`connect_lazy`]: tonic's
/// own connector (`HttpConnector`, with TCP_NODELAY), its socket wrapped
/// in [`Coalesced`]; tonic puts TLS on top when configured.
type Dialer = MapResponse<HttpConnector, fn(TokioIo<TcpStream>) -> TokioIo<Coalesced>>;

fn dialer() -> Dialer {
    let mut http = HttpConnector::new();
    // The scheme says whether tonic adds TLS; the TCP part is the same.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.map_response(|io| TokioIo::new(Coalesced::new(io.into_inner())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(authority("peer0.org1:7051").unwrap(), "peer0.org1:7051");
        assert_eq!(
            authority("grpcs://localhost:7051").unwrap(),
            "localhost:7051"
        );
        assert_eq!(authority("[::1]:7050").unwrap(), "[::1]:7050");
        for bad in [
            "localhost",
            ":7051",
            "host:http",
            "host:70000",
            "http://h:1/x",
        ] {
            assert!(
                matches!(authority(bad), Err(CommError::InvalidAddress { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn lazy_plaintext_needs_no_server() {
        assert!(connect_lazy("127.0.0.1:1", None).is_ok());
        assert!(matches!(
            connect_lazy("nohost", None),
            Err(CommError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn tls_without_roots_is_refused() {
        assert!(matches!(
            endpoint("127.0.0.1:1", Some(&ClientTls::new(vec![]))),
            Err(CommError::NoServerRoots)
        ));
    }
}
