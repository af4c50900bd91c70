//! `twill-ca`: Twill's certificate authority, compatible with Hyperledger
//! Fabric CA clients (the npm `fabric-ca-client`, `fabric-ca-client` CLI
//! flows, and `twill ca`).
//!
//! It serves Fabric CA's REST API (`/api/v1/cainfo`, `enroll`, `reenroll`,
//! `register`, `revoke`, `gencrl`, `identities`, `affiliations`,
//! `certificates`) with Fabric CA's JSON envelope, Basic authentication for
//! `enroll` and Fabric's signed-token authentication for everything else.
//! Issued certificates are X.509 v3 with `CN` = enrollment ID, `OU` = the
//! identity type (Fabric NodeOUs) followed by one `OU` per affiliation
//! segment, and the attributes as raw JSON in extension `1.2.3.4.5.6.7.8.1`.
//!
//! Layout:
//! - [`api`]: request/response JSON types and token helpers (for clients too);
//! - [`service`]: the operations ([`service::Ca`]), independent of HTTP;
//! - [`registry`]: identities, affiliations and certificates in sled;
//! - [`signer`]: the CA key and root certificate, issuing, CRLs;
//! - [`server`]: the axum router and listener (plain HTTP or rustls TLS);
//! - [`grpc`]: the same operations as gRPC service `twill.ca.CertificateAuthority`;
//! - [`config`]: command line and `fabric-ca-server-config.yaml` subset;
//! - [`parent`]: intermediate-CA mode (enrolling with a parent CA).
//!
//! ```no_run
//! # fn main() -> Result<(), twill_ca::CaError> {
//! use twill_ca::service::{BootstrapIdentity, Ca, CaSettings};
//! let settings = CaSettings {
//!     name: "ca-org1".into(),
//!     bootstrap: vec![BootstrapIdentity { id: "admin".into(), secret: "adminpw".into(), ..Default::default() }],
//!     ..CaSettings::default()
//! };
//! let ca = Ca::open(std::path::Path::new("/tmp/ca-home"), settings)?;
//! println!("{}", ca.cainfo().ca_name);
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

// The binary's global allocator (main.rs).
use mimalloc as _;

pub mod api;
pub mod config;
pub mod error;
pub mod grpc;
pub mod parent;
pub mod registry;
pub mod server;
pub mod service;
pub mod signer;

pub use error::{CaError, CaResult};

use std::future::Future;
use std::sync::Arc;

/// Opens the CA described by `config`, binds its listeners, prints
/// `listening on <scheme>://<addr>` (and, with a gRPC port,
/// `grpc listening on <addr>`) on stdout, and serves REST and gRPC until
/// `shutdown`.
pub async fn run<F>(config: config::CaConfig, shutdown: F) -> CaResult<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let home = config.home.clone();
    let settings = config.settings.clone();
    let ca = tokio::task::spawn_blocking(move || service::Ca::open(&home, settings))
        .await
        .map_err(|e| CaError::Config(format!("startup task failed: {e}")))??;
    let tls = match &config.tls {
        Some(config::TlsSetup::Files { cert, key }) => Some(
            twill_comm::ServerTls::from_files(
                &twill_comm::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    root_cas: Vec::new(),
                },
                twill_comm::ClientAuth::None,
            )
            .map_err(|e| CaError::Config(format!("TLS: {e}")))?,
        ),
        Some(config::TlsSetup::SelfIssued { hosts }) => {
            let (cert_pem, key_pem) = ca.issue_own_tls(&config.home, hosts)?;
            Some(
                twill_comm::ServerTls::from_pem(
                    cert_pem,
                    key_pem,
                    Vec::new(),
                    twill_comm::ClientAuth::None,
                )
                .map_err(|e| CaError::Config(format!("TLS: {e}")))?,
            )
        }
        None => None,
    };
    let addr = format!("{}:{}", config.address, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| CaError::Io {
            path: addr.clone().into(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| CaError::Io {
        path: addr.into(),
        source,
    })?;
    let grpc = match config.grpc_port {
        Some(port) => {
            let grpc_addr = format!("{}:{port}", config.address);
            let (l, a) = twill_comm::bind(&grpc_addr)
                .await
                .map_err(|e| CaError::Config(format!("gRPC listener {grpc_addr}: {e}")))?;
            Some((l, a))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ca = Arc::new(ca);
    tracing::info!(target: "ca::server", %local, scheme, ca_name = %ca.name(), "twill-ca listening");
    println!("listening on {scheme}://{local}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone: stop as well.
        let _ = rx.wait_for(|v| *v).await;
    };
    let grpc_task = match grpc {
        Some((listener, grpc_local)) => {
            tracing::info!(target: "ca::grpc", %grpc_local, tls = tls.is_some(), "twill-ca gRPC listening");
            println!("grpc listening on {grpc_local}");
            let builder = twill_comm::server_builder(tls.as_ref())
                .map_err(|e| CaError::Config(format!("gRPC TLS: {e}")))?;
            let service = grpc::GrpcCa::new(ca.clone()).into_server();
            let stop = stopped(stop_rx.clone());
            Some(tokio::spawn(async move {
                let mut builder = builder;
                builder
                    .add_service(service)
                    .serve_with_incoming_shutdown(twill_comm::incoming(listener), stop)
                    .await
                    .map_err(|e| CaError::Config(format!("gRPC server: {e}")))
            }))
        }
        None => None,
    };
    let rest = server::serve(ca, server::Listen { listener, tls }, stopped(stop_rx)).await;
    if let Some(task) = grpc_task {
        if rest.is_err() {
            task.abort();
            return rest;
        }
        task.await
            .map_err(|e| CaError::Config(format!("gRPC task failed: {e}")))??;
    }
    rest
}
