//! Running an orderer node from its [`OrdererConfig`]: [`run`].
//!
//! `run` loads the local MSP signing identity and the TLS material, opens
//! the [`Registrar`] under `FileLedger.Location` (which reopens the channels
//! joined before) with a [`GrpcCluster`] for Raft traffic, and serves until
//! the shutdown future completes:
//!
//! | listener | config | serves | TLS |
//! | --- | --- | --- | --- |
//! | client | `General.ListenAddress/ListenPort` | `AtomicBroadcast` (Broadcast, Deliver); the cluster service too when there is no dedicated cluster listener | `General.TLS`; client certificates only with `ClientAuthRequired` |
//! | cluster | `General.Cluster.ListenAddress/ListenPort` | `twill.cluster.Cluster` | mutual TLS, `Cluster.RootCAs` |
//! | admin | `Admin.ListenAddress` | channel participation API | `Admin.TLS`, client certificates required |
//! | operations | `Operations.ListenAddress` | `/healthz`, `/metrics`, `/version` | `Operations.TLS` |
//!
//! Each bound address is logged (`listen_address`) and all of them are
//! written to `<FileLedger.Location>/endpoints.json`
//! (`{"client": "127.0.0.1:7050", "cluster": ..., "admin": ..., "operations": ...}`,
//! absent listeners omitted), so that a node configured with port 0 can be
//! found by tests and scripts.
//!
//! The operations endpoint's metrics are fed by Broadcast (answers and
//! latencies) and, every [`METRICS_REFRESH`], from each chain's status
//! (ledger height, blocks written, Raft leadership).
//!
//! Without TLS (`General.TLS.Enabled: false`, for tests) nothing is
//! encrypted or authenticated between orderers; the node still reads its
//! certificate from the cluster server certificate file, if present, to
//! find itself among a channel's consenters.
//!
//! On shutdown the listeners stop accepting, the cluster service ends its
//! peers' streams, open Deliver streams are ended
//! with SERVICE_UNAVAILABLE, Broadcast streams are closed, and after at most
//! [`SHUTDOWN_GRACE`] the registrar stops every chain. Should one listener
//! fail, the others are shut down the same way and the failure is
//! returned.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use twill_orderer::config::OrdererConfig;
//! use twill_orderer::server;
//!
//! let config = OrdererConfig::load("orderer.yaml".as_ref())?;
//! server::run(config, server::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use twill_comm::{ClientAuth, ClientTls, CommError, ServerTls, TlsFiles};
use twill_msp::{MspError, SigningIdentity};

use crate::broadcast::BroadcastService;
use crate::chain::{ChainError, ChainOptions};
use crate::cluster::{cluster_server, ClusterService, GrpcCluster};
use crate::config::{ConfigError, OrdererConfig};
use crate::operations::{OpsState, OrdererMetrics};
use crate::participation::{AdminServerError, ChannelParticipation};
use crate::registrar::Registrar;

const LOG: &str = "orderer::server";

/// How often the chains' heights and leaders are copied into the metrics.
pub const METRICS_REFRESH: Duration = Duration::from_secs(1);

/// Name of the file, under `FileLedger.Location`, listing the bound
/// addresses.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// How long listeners may take to finish open requests after shutdown
/// before they are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local MSP signing identity could not be loaded.
    #[error("{file}: General.LocalMSPDir: cannot load the signing identity of {mspid} from {}: {source}", dir.display())]
    Msp {
        /// The config file.
        file: PathBuf,
        /// The MSP folder.
        dir: PathBuf,
        /// The MSP id.
        mspid: String,
        /// What failed.
        #[source]
        source: Box<MspError>,
    },
    /// TLS material named by the config is not usable.
    #[error("{file}: {section}: {source}")]
    Tls {
        /// The config file.
        file: PathBuf,
        /// The config section (`General.TLS`, `General.Cluster`, ...).
        section: &'static str,
        /// What is wrong with it.
        #[source]
        source: Box<CommError>,
    },
    /// The ledger root or the registrar could not be opened.
    #[error("cannot open the channels under {}: {source}", root.display())]
    Registrar {
        /// `FileLedger.Location`.
        root: PathBuf,
        /// What failed.
        #[source]
        source: ChainError,
    },
    /// A listener could not be bound.
    #[error("{listener} listener: {source}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The failure.
        #[source]
        source: CommError,
    },
    /// A listener failed while serving.
    #[error("{listener} listener failed: {message}")]
    Serve {
        /// Which listener.
        listener: &'static str,
        /// The failure.
        message: String,
    },
    /// A file of the node's state directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// The addresses the node's listeners are bound to, as written to
/// [`ENDPOINTS_FILE`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    /// Broadcast and Deliver.
    pub client: String,
    /// The cluster service (the client address when shared).
    pub cluster: String,
    /// The admin REST endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The operations endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<String>,
}

impl Endpoints {
    /// Reads `<ledger_root>/endpoints.json`.
    pub fn read(ledger_root: &Path) -> std::io::Result<Endpoints> {
        let bytes = std::fs::read(ledger_root.join(ENDPOINTS_FILE))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// The identity and TLS material a configuration names, loaded and
/// checked; what `--config-check` verifies beyond [`OrdererConfig::validate`].
#[derive(Debug)]
pub struct NodeMaterial {
    /// The local MSP signing identity.
    pub signer: Arc<SigningIdentity>,
    /// TLS of the client-facing listener.
    pub client_tls: Option<ServerTls>,
    /// TLS of the dedicated cluster listener.
    pub cluster_server_tls: Option<ServerTls>,
    /// TLS for dialing other orderers.
    pub cluster_client_tls: Option<ClientTls>,
    /// DER of the certificate this node is known by in consenter sets.
    pub self_cert_der: Vec<u8>,
    /// TLS of the admin listener.
    pub admin_tls: Option<ServerTls>,
    /// TLS of the operations listener.
    pub operations_tls: Option<ServerTls>,
}

impl NodeMaterial {
    /// Validates `config` and loads everything it names.
    pub fn load(config: &OrdererConfig) -> Result<NodeMaterial> {
        config.validate()?;
        let g = &config.general;
        let file = config.file().to_path_buf();
        let signer =
            SigningIdentity::from_msp_dir(&g.local_msp_dir, &g.local_msp_id).map_err(|source| {
                ServerError::Msp {
                    file: file.clone(),
                    dir: g.local_msp_dir.clone(),
                    mspid: g.local_msp_id.clone(),
                    source: Box::new(source),
                }
            })?;
        let tls_err = |section: &'static str| {
            let file = file.clone();
            move |source| ServerError::Tls {
                file,
                section,
                source: Box::new(source),
            }
        };
        let dedicated_cluster = config.cluster_listen_address().is_some();

        let mut material = NodeMaterial {
            signer: Arc::new(signer),
            client_tls: None,
            cluster_server_tls: None,
            cluster_client_tls: None,
            self_cert_der: Vec::new(),
            admin_tls: None,
            operations_tls: None,
        };
        if g.tls.enabled {
            // Without a dedicated cluster listener, other orderers reach the
            // cluster service on this one, so it also asks for (and checks)
            // their certificates; the cluster service itself then admits
            // only consenters.
            let mut client_roots = g.tls.client_root_cas.clone();
            let mode = if g.tls.client_auth_required {
                ClientAuth::Required
            } else if dedicated_cluster {
                ClientAuth::None
            } else {
                ClientAuth::Optional
            };
            if !dedicated_cluster {
                client_roots.extend(config.cluster_root_cas());
            }
            let files = TlsFiles {
                cert: g.tls.certificate.clone(),
                key: g.tls.private_key.clone(),
                root_cas: client_roots,
            };
            let client_tls = ServerTls::from_files(&files, mode).map_err(tls_err("General.TLS"))?;

            let (cert, key) = config.cluster_server_cert_key();
            if dedicated_cluster {
                let files = TlsFiles {
                    cert,
                    key,
                    root_cas: config.cluster_root_cas(),
                };
                let tls = ServerTls::from_files(&files, ClientAuth::Required)
                    .map_err(tls_err("General.Cluster"))?;
                material.self_cert_der = tls.cert_der().to_vec();
                material.cluster_server_tls = Some(tls);
            } else {
                material.self_cert_der = client_tls.cert_der().to_vec();
            }
            let (cert, key) = config.cluster_client_cert_key();
            let files = TlsFiles {
                cert,
                key,
                root_cas: config.cluster_root_cas(),
            };
            material.cluster_client_tls =
                Some(ClientTls::from_files(&files).map_err(tls_err("General.Cluster"))?);
            material.client_tls = Some(client_tls);
        } else {
            // Plaintext: the node still needs its certificate to find itself
            // among a channel's consenters, if the files are there.
            let (cert, key) = config.cluster_server_cert_key();
            if cert.is_file() && key.is_file() {
                let files = TlsFiles {
                    cert,
                    key,
                    root_cas: Vec::new(),
                };
                if let Ok(tls) = ServerTls::from_files(&files, ClientAuth::None) {
                    material.self_cert_der = tls.cert_der().to_vec();
                }
            }
        }

        if !config.admin.listen_address.is_empty() && config.admin.tls.enabled {
            let t = &config.admin.tls;
            let files = TlsFiles {
                cert: t.certificate.clone(),
                key: t.private_key.clone(),
                root_cas: t.client_root_cas.clone(),
            };
            material.admin_tls = Some(
                ServerTls::from_files(&files, ClientAuth::Required)
                    .map_err(tls_err("Admin.TLS"))?,
            );
        }
        if !config.operations.listen_address.is_empty() && config.operations.tls.enabled {
            let t = &config.operations.tls;
            let mode = if t.client_auth_required {
                ClientAuth::Required
            } else {
                ClientAuth::None
            };
            let files = TlsFiles {
                cert: t.certificate.clone(),
                key: t.private_key.clone(),
                root_cas: t.client_root_cas.clone(),
            };
            material.operations_tls =
                Some(ServerTls::from_files(&files, mode).map_err(tls_err("Operations.TLS"))?);
        }
        Ok(material)
    }
}

/// The chain options `config` asks for (`Twill.RaftTickInterval`).
pub fn chain_options(config: &OrdererConfig) -> ChainOptions {
    ChainOptions {
        tick_interval: config.twill.raft_tick_interval.0,
        ..ChainOptions::default()
    }
}

/// Test fault injection: while the file at `path` exists, this node drops
/// all cluster traffic ([`crate::cluster::set_isolated`]), which simulates a
/// network partition around it. Only active when the
/// `TWILL_TEST_ISOLATE_FILE` environment variable names such a file, and
/// only in debug builds.
#[cfg(debug_assertions)]
fn spawn_isolation_watch(path: std::path::PathBuf) {
    tracing::warn!(target: LOG, file = %path.display(), "test fault injection enabled: the node isolates itself while this file exists");
    tokio::spawn(async move {
        loop {
            crate::cluster::set_isolated(path.exists());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}

/// Runs the orderer described by `config` until `shutdown` completes. See
/// the [module docs](self).
pub async fn run<F>(config: OrdererConfig, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    for key in config.ignored_keys() {
        tracing::warn!(target: LOG, key = %key, file = %config.file().display(), "ignoring a Fabric setting Twill does not implement");
    }
    let material = NodeMaterial::load(&config)?;
    let root = config.file_ledger.location.clone();
    std::fs::create_dir_all(&root).map_err(|source| ServerError::Io {
        path: root.clone(),
        source,
    })?;

    if let Some(path) = std::env::var_os("TWILL_TEST_ISOLATE_FILE") {
        // Fault injection exists only in debug builds (the test suite's);
        // a release binary never cuts itself off because of the environment.
        #[cfg(debug_assertions)]
        spawn_isolation_watch(std::path::PathBuf::from(path));
        #[cfg(not(debug_assertions))]
        tracing::warn!(target: LOG, file = ?path, "TWILL_TEST_ISOLATE_FILE is ignored by release builds");
    }
    let cluster = GrpcCluster::new(material.cluster_client_tls.clone());
    let registrar = Registrar::open(
        &root,
        material.signer.clone(),
        material.self_cert_der.clone(),
        cluster.clone(),
        chain_options(&config),
    )
    .map_err(|source| ServerError::Registrar {
        root: root.clone(),
        source,
    })?;
    tracing::info!(
        target: LOG,
        mspid = %config.general.local_msp_id,
        ledger = %root.display(),
        channels = registrar.list().len(),
        "orderer started"
    );

    let served = serve(&config, &material, registrar.clone(), cluster, shutdown).await;
    registrar.shutdown().await;
    tracing::info!(target: LOG, "orderer stopped");
    served
}

/// Binds and serves every listener until `shutdown` or a listener failure.
async fn serve<F>(
    config: &OrdererConfig,
    material: &NodeMaterial,
    registrar: Arc<Registrar>,
    cluster: Arc<GrpcCluster>,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(OrdererMetrics::new());
    let mut endpoints = Endpoints::default();
    let mut tasks: JoinSet<TaskOutput> = JoinSet::new();

    // Client-facing gRPC, with the cluster service when it has no listener
    // of its own.
    let (listener, addr) = bind("client", &config.client_listen_address()).await?;
    endpoints.client = addr.to_string();
    let broadcast = BroadcastService::new(registrar.clone())
        .with_metrics(metrics.clone())
        .with_mutual_tls(
            material
                .client_tls
                .as_ref()
                .is_some_and(|t| t.client_auth() == ClientAuth::Required),
        )
        .with_shutdown(stop_rx.clone());
    let mut builder =
        twill_comm::server_builder(material.client_tls.as_ref()).map_err(|source| {
            ServerError::Tls {
                file: config.file().to_path_buf(),
                section: "General.TLS",
                source: Box::new(source),
            }
        })?;
    let mut router = builder.add_service(broadcast.into_server());
    let cluster_address = config.cluster_listen_address();
    // Peers keep their Raft streams open; closing the cluster service ends
    // them, so that the listeners can finish at shutdown.
    let mut cluster_closers = Vec::new();
    if cluster_address.is_none() {
        let service = ClusterService::new(registrar.clone()).with_directory(cluster.clone());
        cluster_closers.push(service.closer());
        router = router.add_service(cluster_server(service));
        endpoints.cluster = endpoints.client.clone();
    }
    tracing::info!(target: LOG, listen_address = %addr, tls = material.client_tls.is_some(), "serving Broadcast and Deliver");
    let stop = stopped(stop_rx.clone());
    tasks.spawn(async move {
        let r = router
            .serve_with_incoming_shutdown(twill_comm::incoming(listener), stop)
            .await;
        ("client", r.map_err(|e| e.to_string()))
    });

    // Dedicated cluster listener.
    if let Some(address) = cluster_address {
        let (listener, addr) = bind("cluster", &address).await?;
        endpoints.cluster = addr.to_string();
        let mut builder = twill_comm::server_builder(material.cluster_server_tls.as_ref())
            .map_err(|source| ServerError::Tls {
                file: config.file().to_path_buf(),
                section: "General.Cluster",
                source: Box::new(source),
            })?;
        let service = ClusterService::new(registrar.clone()).with_directory(cluster.clone());
        cluster_closers.push(service.closer());
        let router = builder.add_service(cluster_server(service));
        tracing::info!(target: LOG, listen_address = %addr, "serving the cluster service");
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            let r = router
                .serve_with_incoming_shutdown(twill_comm::incoming(listener), stop)
                .await;
            ("cluster", r.map_err(|e| e.to_string()))
        });
    }

    // Admin: the channel participation API.
    if !config.admin.listen_address.is_empty() {
        let (listener, addr) = bind("admin", &config.admin.listen_address).await?;
        endpoints.admin = Some(addr.to_string());
        let app = if config.channel_participation.enabled {
            let participation: Arc<dyn ChannelParticipation> = registrar.clone();
            let max_body = usize::try_from(config.channel_participation.max_request_body_size.0)
                .unwrap_or(usize::MAX);
            crate::participation::router(participation, max_body)
        } else {
            tracing::warn!(target: LOG, "ChannelParticipation.Enabled is false: the admin listener serves nothing, and channels can only be reopened, not joined");
            axum::Router::new()
        };
        let stop = stopped(stop_rx.clone());
        match material.admin_tls.clone() {
            Some(tls) => {
                tracing::info!(target: LOG, listen_address = %addr, "serving the admin endpoint (HTTPS, client certificates required)");
                tasks.spawn(async move {
                    let r = crate::participation::serve_admin(listener, &tls, app, stop).await;
                    ("admin", r.map_err(|e: AdminServerError| e.to_string()))
                });
            }
            None => {
                tracing::warn!(target: LOG, listen_address = %addr, "serving the admin endpoint over plain HTTP: anyone who reaches it can join and remove channels");
                tasks.spawn(async move {
                    let r = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await;
                    ("admin", r.map_err(|e| e.to_string()))
                });
            }
        }
    }

    // Operations: health, metrics, version.
    if !config.operations.listen_address.is_empty() {
        let (listener, addr) = bind("operations", &config.operations.listen_address).await?;
        endpoints.operations = Some(addr.to_string());
        let app = crate::operations::router(ops_state(metrics.clone(), registrar.clone()));
        let stop = stopped(stop_rx.clone());
        tracing::info!(target: LOG, listen_address = %addr, tls = material.operations_tls.is_some(), "serving the operations endpoint");
        match material.operations_tls.clone() {
            Some(tls) => {
                tasks.spawn(async move {
                    let r = crate::participation::serve_https(listener, &tls, app, stop).await;
                    ("operations", r.map_err(|e| e.to_string()))
                });
            }
            None => {
                tasks.spawn(async move {
                    let r = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await;
                    ("operations", r.map_err(|e| e.to_string()))
                });
            }
        }
    }

    write_endpoints(&config.file_ledger.location, &endpoints)?;
    let refresher = tokio::spawn(refresh_metrics(metrics, registrar.clone(), stop_rx.clone()));

    // Run until asked to stop or a listener gives up.
    let mut failure = Ok(());
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => tracing::info!(target: LOG, "shutting down"),
        Some(done) = tasks.join_next() => {
            // A listener returning at all, even without an error, is a
            // failure: they only stop when told to.
            let (listener, result) = task_result(done);
            let message = result.err().unwrap_or_else(|| "stopped unexpectedly".into());
            tracing::error!(target: LOG, listener, error = %message, "listener failed; shutting down");
            failure = Err(ServerError::Serve { listener, message });
        }
    }
    let _ = stop_tx.send(true);
    for closer in &cluster_closers {
        closer.close();
    }
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            if let (listener, Err(error)) = task_result(done) {
                tracing::warn!(target: LOG, listener, %error, "listener failed while stopping");
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(target: LOG, "listeners still busy after the shutdown grace period; dropping them");
        tasks.abort_all();
    }
    refresher.abort();
    failure
}

/// Keeps the per-channel series of `metrics` current: every
/// [`METRICS_REFRESH`] it reads each chain's height and Raft leader, sets
/// `ledger_height` and `raft_is_leader`, and counts the blocks and leader
/// changes seen since the last look.
async fn refresh_metrics(
    metrics: Arc<OrdererMetrics>,
    registrar: Arc<Registrar>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen: BTreeMap<String, (u64, Option<u64>)> = BTreeMap::new();
    let mut tick = tokio::time::interval(METRICS_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let mut current = BTreeMap::new();
        for info in registrar.list() {
            let Some(chain) = registrar.get(&info.name) else {
                continue;
            };
            let status = chain.status();
            metrics.set_ledger_height(&info.name, status.height);
            metrics.set_raft_is_leader(&info.name, status.is_leader);
            if let Some((height, leader)) = seen.get(&info.name) {
                if status.height > *height {
                    metrics.inc_blocks_written(&info.name, status.height - height);
                }
                if status.leader.is_some() && status.leader != *leader {
                    metrics.inc_raft_leader_changes(&info.name);
                }
            }
            current.insert(info.name, (status.height, status.leader));
        }
        for gone in seen.keys().filter(|name| !current.contains_key(*name)) {
            metrics.remove_channel(gone);
        }
        seen = current;
    }
}

type TaskOutput = (&'static str, std::result::Result<(), String>);

fn task_result(done: std::result::Result<TaskOutput, tokio::task::JoinError>) -> TaskOutput {
    done.unwrap_or_else(|e| ("a", Err(format!("listener task ended: {e}"))))
}

/// The operations router's state: the metrics and a health check per
/// channel ledger.
fn ops_state(metrics: Arc<OrdererMetrics>, registrar: Arc<Registrar>) -> OpsState {
    OpsState::new(metrics).with_check("registrar", move || {
        // Every channel's ledger must be readable at its height.
        for info in registrar.list() {
            if let Some(chain) = registrar.get(&info.name) {
                let store = chain.block_store();
                let height = store.height();
                if height > 0 {
                    store
                        .block_bytes(height - 1)
                        .map_err(|e| format!("channel {}: {e}", info.name))?;
                }
            }
        }
        Ok(())
    })
}

async fn bind(listener: &'static str, address: &str) -> Result<(TcpListener, SocketAddr)> {
    twill_comm::bind(address)
        .await
        .map_err(|source| ServerError::Bind { listener, source })
}

/// Completes once `rx` has seen `true` (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn write_endpoints(root: &Path, endpoints: &Endpoints) -> Result<()> {
    let path = root.join(ENDPOINTS_FILE);
    twill_ops::write_json_file(&path, endpoints).map_err(|source| ServerError::Io {
        path: path.clone(),
        source,
    })?;
    tracing::debug!(target: LOG, file = %path.display(), "endpoints written");
    Ok(())
}

pub use twill_ops::{init_logging, shutdown_signal};
