//! Running a peer from its [`PeerConfig`]: [`run`] / [`run_with_committer`],
//! and the channel registry [`Peer`].
//!
//! On start the node loads the local MSP signing identity
//! (`peer.mspConfigPath`, `peer.localMspId`) and the TLS material, opens
//! every channel found under `<peer.fileSystemPath>/ledgersData`, starts
//! one block puller per channel ([`crate::deliverclient`]) and serves:
//!
//! | listener | config | serves | TLS |
//! | --- | --- | --- | --- |
//! | peer | `peer.listenAddress` | `protos.Endorser`, `gateway.Gateway`, `protos.Deliver`, `protos.ChaincodeSupport` | `peer.tls`, client certificates optional unless `clientAuthRequired` |
//! | operations | `operations.listenAddress` | `/healthz`, `/metrics`, `/version` | `operations.tls` |
//!
//! The bound addresses are logged and written to
//! `<peer.fileSystemPath>/endpoints.json` (`{"peer": ..., "operations": ...}`)
//! so that a peer configured with port 0 can be found.
//!
//! On shutdown the listeners stop, open Deliver streams end with
//! SERVICE_UNAVAILABLE, and the block pullers stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use twill_comm::{ClientAuth, CommError, ServerTls, TlsFiles};
use twill_msp::{Msp, MspError, SigningIdentity};

use crate::chaincode::{
    ChaincodeRegistry, ChaincodeRuntime, ChaincodeSupportService, LaunchConfig,
    DEFAULT_STARTUP_TIMEOUT,
};
use crate::channel::{channel_ids_on_disk, Channel, ChannelError, CommitError, Committer};
use crate::config::{ConfigError, PeerConfig};
use crate::deliver::{ChannelLookup, DeliverService};
use crate::deliverclient::{BlockPuller, OrdererConnection};
use crate::endorser::{EndorserService, EndorserSupport};
use crate::gateway::{GatewayConfig, GatewayService};
use crate::operations::{OpsState, PeerMetrics};
use crate::scc::JoinRequest;

const LOG: &str = "peer::node";

/// Name of the file, under `peer.fileSystemPath`, listing the bound
/// addresses.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// How long listeners may take to finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local MSP could not be loaded.
    #[error("{}: peer.mspConfigPath: cannot load the MSP {mspid} from {}: {source}", file.display(), dir.display())]
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
    #[error("{}: {section}: {source}", file.display())]
    Tls {
        /// The config file.
        file: PathBuf,
        /// The config section.
        section: &'static str,
        /// What is wrong.
        #[source]
        source: Box<CommError>,
    },
    /// A channel found on disk could not be opened.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The committer refused to open a channel.
    #[error(transparent)]
    Commit(#[from] CommitError),
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
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T, E = PeerError> = std::result::Result<T, E>;

/// The addresses the node's listeners are bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    /// Endorser and Deliver.
    pub peer: String,
    /// The operations endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<String>,
}

impl Endpoints {
    /// Reads `<file_system_path>/endpoints.json`.
    pub fn read(file_system_path: &Path) -> std::io::Result<Endpoints> {
        let bytes = std::fs::read(file_system_path.join(ENDPOINTS_FILE))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// The identity and TLS material a configuration names, loaded and checked.
#[derive(Debug)]
pub struct NodeMaterial {
    /// The local signing identity.
    pub signer: Arc<SigningIdentity>,
    /// The local MSP (authorizes channel-less proposals).
    pub local_msp: Arc<Msp>,
    /// TLS of the peer listener.
    pub server_tls: Option<ServerTls>,
    /// TLS of the operations listener.
    pub operations_tls: Option<ServerTls>,
    /// How to reach orderers.
    pub orderer_connection: OrdererConnection,
}

impl NodeMaterial {
    /// Validates `config` and loads everything it names.
    pub fn load(config: &PeerConfig) -> Result<NodeMaterial> {
        config.validate()?;
        let p = &config.peer;
        let file = config.file().to_path_buf();
        let msp_err = |source| PeerError::Msp {
            file: file.clone(),
            dir: p.msp_config_path.clone(),
            mspid: p.local_msp_id.clone(),
            source: Box::new(source),
        };
        let signer =
            SigningIdentity::from_msp_dir(&p.msp_config_path, &p.local_msp_id).map_err(msp_err)?;
        let msp_config = twill_msp::load_fabric_msp_config(&p.msp_config_path, &p.local_msp_id)
            .map_err(msp_err)?;
        let local_msp = Msp::from_config(&msp_config).map_err(msp_err)?;
        let tls_err = |section: &'static str| {
            let file = file.clone();
            move |source| PeerError::Tls {
                file,
                section,
                source: Box::new(source),
            }
        };
        let server_tls = if p.tls.enabled {
            let mode = if p.tls.client_auth_required {
                ClientAuth::Required
            } else if p.tls.client_root_cas.files.is_empty() {
                ClientAuth::None
            } else {
                ClientAuth::Optional
            };
            let files = TlsFiles {
                cert: p.tls.cert.file.clone(),
                key: p.tls.key.file.clone(),
                root_cas: p.tls.client_root_cas.files.clone(),
            };
            Some(ServerTls::from_files(&files, mode).map_err(tls_err("peer.tls"))?)
        } else {
            None
        };
        let operations_tls =
            if !config.operations.listen_address.is_empty() && config.operations.tls.enabled {
                let t = &config.operations.tls;
                let mode = if t.client_auth_required {
                    ClientAuth::Required
                } else {
                    ClientAuth::None
                };
                let files = TlsFiles {
                    cert: t.cert.file.clone(),
                    key: t.key.file.clone(),
                    root_cas: t.client_root_cas.files.clone(),
                };
                Some(ServerTls::from_files(&files, mode).map_err(tls_err("operations.tls"))?)
            } else {
                None
            };
        let client_identity = if p.tls.client_cert.file.as_os_str().is_empty() {
            None
        } else {
            let read = |path: &Path| {
                std::fs::read(path).map_err(|source| PeerError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            };
            Some((
                read(&p.tls.client_cert.file)?,
                read(&p.tls.client_key.file)?,
            ))
        };
        Ok(NodeMaterial {
            signer: Arc::new(signer),
            local_msp: Arc::new(local_msp),
            server_tls,
            operations_tls,
            orderer_connection: OrdererConnection {
                tls: p.tls.enabled,
                client_identity,
            },
        })
    }
}

/// The peer's joined channels and the tasks that feed them.
pub struct Peer {
    ledger_root: PathBuf,
    signer: Arc<SigningIdentity>,
    committer: Arc<dyn Committer>,
    metrics: Arc<PeerMetrics>,
    connection: OrdererConnection,
    channels: RwLock<BTreeMap<String, Arc<Channel>>>,
    joining: tokio::sync::Mutex<()>,
    shutdown: watch::Receiver<bool>,
    pullers: Mutex<Vec<JoinHandle<()>>>,
    /// Set once the listener is bound (chaincodes need its address).
    runtime: std::sync::OnceLock<Arc<ChaincodeRuntime>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("ledger_root", &self.ledger_root)
            .field("channels", &self.channel_ids())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Opens every channel under `ledger_root` (creating the folder if
    /// needed) and tells `committer` about each. Blocking. Pullers start
    /// with [`Peer::start`].
    pub fn open(
        ledger_root: &Path,
        signer: Arc<SigningIdentity>,
        committer: Arc<dyn Committer>,
        metrics: Arc<PeerMetrics>,
        connection: OrdererConnection,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Peer>> {
        std::fs::create_dir_all(ledger_root).map_err(|source| PeerError::Io {
            path: ledger_root.to_path_buf(),
            source,
        })?;
        let ids = channel_ids_on_disk(ledger_root).map_err(|source| PeerError::Io {
            path: ledger_root.to_path_buf(),
            source,
        })?;
        let mut channels = BTreeMap::new();
        for id in ids {
            let channel = match Channel::open(ledger_root, &id) {
                Ok(c) => c,
                Err(ChannelError::Empty { dir, .. }) => {
                    // A join that crashed before committing the genesis
                    // block: forget it so that the join can be retried.
                    tracing::warn!(target: LOG, channel = %id, dir = %dir.display(), "removing an empty channel ledger left by an interrupted join");
                    std::fs::remove_dir_all(&dir)
                        .map_err(|source| PeerError::Io { path: dir, source })?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            committer.open_channel(&channel)?;
            metrics.set_height(&id, channel.height());
            tracing::info!(target: LOG, channel = %id, height = channel.height(), "channel opened");
            channels.insert(id, Arc::new(channel));
        }
        Ok(Arc::new(Peer {
            ledger_root: ledger_root.to_path_buf(),
            signer,
            committer,
            metrics,
            connection,
            channels: RwLock::new(channels),
            joining: tokio::sync::Mutex::new(()),
            shutdown,
            pullers: Mutex::new(Vec::new()),
            runtime: std::sync::OnceLock::new(),
        }))
    }

    /// Starts a block puller for every open channel. Call from within a
    /// tokio runtime.
    pub fn start(&self) {
        let channels: Vec<Arc<Channel>> = self.channels.read().values().cloned().collect();
        for channel in channels {
            self.start_puller(channel);
        }
    }

    fn start_puller(&self, channel: Arc<Channel>) {
        let puller = BlockPuller::new(
            channel,
            self.signer.clone(),
            self.committer.clone(),
            self.metrics.clone(),
            self.connection.clone(),
            self.shutdown.clone(),
        );
        self.pullers.lock().push(tokio::spawn(puller.run()));
    }

    /// Waits for every block puller to stop (after shutdown).
    pub async fn stopped(&self) {
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.pullers.lock());
        for h in handles {
            let _ = h.await;
        }
    }

    /// The joined channel ids, sorted.
    pub fn channel_ids(&self) -> Vec<String> {
        self.channels.read().keys().cloned().collect()
    }

    /// Joins the channel of `request`: creates its ledger, commits the
    /// genesis block and starts pulling. The error is a message for the
    /// client.
    pub async fn join_channel(&self, request: JoinRequest) -> Result<Arc<Channel>, String> {
        let _guard = self.joining.lock().await;
        let cid = request.channel_id.clone();
        if self.channels.read().contains_key(&cid) {
            return Err(format!(
                "cannot create ledger from genesis block: ledger [{cid}] already exists with state [ACTIVE]"
            ));
        }
        let root = self.ledger_root.clone();
        let committer = self.committer.clone();
        let block = request.block;
        let created = tokio::task::spawn_blocking(move || -> Result<Channel, String> {
            let channel = Channel::create(&root, &block).map_err(|e| e.to_string())?;
            let dir = channel.store().dir().to_path_buf();
            let result = committer
                .open_channel(&channel)
                .and_then(|()| committer.commit(&channel, block));
            if let Err(e) = result {
                drop(channel);
                if let Err(rm) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(target: LOG, dir = %dir.display(), error = %rm, "cannot remove the ledger of a failed join");
                }
                return Err(format!("cannot commit the genesis block: {e}"));
            }
            Ok(channel)
        })
        .await
        .map_err(|e| format!("join failed: {e}"))??;
        let channel = Arc::new(created);
        self.metrics.set_height(&cid, channel.height());
        self.channels.write().insert(cid.clone(), channel.clone());
        self.start_puller(channel.clone());
        Ok(channel)
    }
}

impl ChannelLookup for Peer {
    fn channel(&self, id: &str) -> Option<Arc<Channel>> {
        self.channels.read().get(id).cloned()
    }
}

#[tonic::async_trait]
impl EndorserSupport for Peer {
    fn channel_ids(&self) -> Vec<String> {
        Peer::channel_ids(self)
    }

    async fn join(&self, request: JoinRequest) -> Result<(), String> {
        self.join_channel(request).await.map(drop)
    }

    fn runtime(&self) -> Option<Arc<ChaincodeRuntime>> {
        self.runtime.get().cloned()
    }

    fn state(&self, channel: &str) -> Option<Arc<twill_ledger::state::StateDb>> {
        self.committer.state(channel)
    }
}

/// Runs the peer with the [`LedgerCommitter`](crate::committer::LedgerCommitter)
/// (validation, state DB, history) until `shutdown` completes.
pub async fn run<F>(config: PeerConfig, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    let committer = crate::committer::LedgerCommitter::default();
    run_with_committer(config, Arc::new(committer), shutdown).await
}

/// Runs the peer with `committer` until `shutdown` completes. See the
/// [module docs](self).
pub async fn run_with_committer<F>(
    config: PeerConfig,
    committer: Arc<dyn Committer>,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    for key in config.ignored_keys() {
        tracing::warn!(target: LOG, key = %key, file = %config.file().display(), "ignoring a Fabric setting Twill does not implement");
    }
    let material = NodeMaterial::load(&config)?;
    // The committer verifies this peer's own endorsements again; those
    // checks become lookups.
    twill_crypto::remember_own_signatures(true);
    let root = config.ledger_root();
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(PeerMetrics::new());
    let open_root = root.clone();
    let (signer, conn, m, rx) = (
        material.signer.clone(),
        material.orderer_connection.clone(),
        metrics.clone(),
        stop_rx.clone(),
    );
    let peer =
        tokio::task::spawn_blocking(move || Peer::open(&open_root, signer, committer, m, conn, rx))
            .await
            .map_err(|e| PeerError::Serve {
                listener: "startup",
                message: e.to_string(),
            })??;
    tracing::info!(
        target: LOG,
        id = %config.peer.id,
        mspid = %config.peer.local_msp_id,
        ledger = %root.display(),
        channels = peer.channel_ids().len(),
        "peer started"
    );
    peer.start();
    let served = serve(
        &config,
        &material,
        peer.clone(),
        metrics,
        stop_tx,
        stop_rx,
        shutdown,
    )
    .await;
    peer.stopped().await;
    tracing::info!(target: LOG, "peer stopped");
    served
}

type TaskOutput = (&'static str, std::result::Result<(), String>);

async fn serve<F>(
    config: &PeerConfig,
    material: &NodeMaterial,
    peer: Arc<Peer>,
    metrics: Arc<PeerMetrics>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    let mut endpoints = Endpoints::default();
    let mut tasks: JoinSet<TaskOutput> = JoinSet::new();

    let (listener, addr) = bind("peer", &config.peer.listen_address).await?;
    endpoints.peer = addr.to_string();
    let mutual_tls = material
        .server_tls
        .as_ref()
        .is_some_and(|t| t.client_auth() == ClientAuth::Required);
    let endorser = Arc::new(EndorserService::new(
        peer.clone(),
        material.signer.clone(),
        material.local_msp.clone(),
    ));
    let gateway = GatewayService::new(
        peer.clone(),
        endorser.clone(),
        gateway_config(config, addr, &material.orderer_connection),
        stop_rx.clone(),
    );
    let deliver = DeliverService::new(peer.clone(), mutual_tls, stop_rx.clone());
    let registry = ChaincodeRegistry::new();
    let lifecycle_dir = config.peer.file_system_path.join("lifecycle");
    let store =
        twill_lifecycle::PackageStore::open(lifecycle_dir.join("chaincodes")).map_err(|e| {
            PeerError::Serve {
                listener: "chaincode",
                message: format!("opening the chaincode package store: {e}"),
            }
        })?;
    let chaincode_address = if config.peer.chaincode_address.is_empty() {
        if addr.ip().is_unspecified() {
            format!("127.0.0.1:{}", addr.port())
        } else {
            addr.to_string()
        }
    } else {
        config.peer.chaincode_address.clone()
    };
    let runtime = ChaincodeRuntime::new(
        registry.clone(),
        Arc::new(store),
        config.peer.local_msp_id.clone(),
        LaunchConfig {
            run_dir: lifecycle_dir.join("run"),
            peer_address: chaincode_address,
            tls_root_cert: config
                .peer
                .tls
                .enabled
                .then(|| config.peer.tls.rootcert.file.clone()),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        },
    );
    let _ = peer.runtime.set(runtime);
    let chaincode_support = ChaincodeSupportService::new(registry);
    let mut builder =
        twill_comm::server_builder(material.server_tls.as_ref()).map_err(|source| {
            PeerError::Tls {
                file: config.file().to_path_buf(),
                section: "peer.tls",
                source: Box::new(source),
            }
        })?;
    let router = builder
        .add_service(EndorserService::server_for(endorser))
        .add_service(gateway.into_server())
        .add_service(deliver.into_server())
        .add_service(chaincode_support.into_server());
    tracing::info!(target: LOG, listen_address = %addr, tls = material.server_tls.is_some(), "serving Endorser, Gateway, Deliver and ChaincodeSupport");
    let stop = stopped(stop_rx.clone());
    tasks.spawn(async move {
        let r = router
            .serve_with_incoming_shutdown(twill_comm::incoming(listener), stop)
            .await;
        ("peer", r.map_err(|e| e.to_string()))
    });

    if !config.operations.listen_address.is_empty() {
        let (listener, addr) = bind("operations", &config.operations.listen_address).await?;
        endpoints.operations = Some(addr.to_string());
        let health_peer = peer.clone();
        let state = OpsState::new(metrics).with_check("ledger", move || {
            for id in health_peer.channel_ids() {
                if let Some(ch) = ChannelLookup::channel(health_peer.as_ref(), &id) {
                    let h = ch.height();
                    if h > 0 {
                        ch.store()
                            .block_bytes(h - 1)
                            .map_err(|e| format!("channel {id}: {e}"))?;
                    }
                }
            }
            Ok(())
        });
        let app = crate::operations::router(state);
        let stop = stopped(stop_rx.clone());
        tracing::info!(target: LOG, listen_address = %addr, tls = material.operations_tls.is_some(), "serving the operations endpoint");
        match material.operations_tls.clone() {
            Some(tls) => {
                tasks.spawn(async move {
                    let r = crate::operations::serve_https(listener, &tls, app, stop).await;
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
    write_endpoints(&config.peer.file_system_path, &endpoints)?;

    let mut failure = Ok(());
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => tracing::info!(target: LOG, "shutting down"),
        Some(done) = tasks.join_next() => {
            let (listener, result) = done.unwrap_or_else(|e| ("a", Err(format!("listener task ended: {e}"))));
            let message = result.err().unwrap_or_else(|| "stopped unexpectedly".into());
            tracing::error!(target: LOG, listener, error = %message, "listener failed; shutting down");
            failure = Err(PeerError::Serve { listener, message });
        }
    }
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(target: LOG, "listeners still busy after the shutdown grace period; dropping them");
        tasks.abort_all();
    }
    failure
}

/// Where the gateway is: `peer.address` (an unspecified or empty host
/// becomes 127.0.0.1, a port 0 the bound one) and every address naming
/// this peer.
fn gateway_config(
    config: &PeerConfig,
    bound: SocketAddr,
    connection: &OrdererConnection,
) -> GatewayConfig {
    let port = bound.port();
    let configured = config.peer.address.trim();
    let local_address = match configured.rsplit_once(':') {
        Some((host, p)) => {
            let host = if host.is_empty() || host == "0.0.0.0" || host == "[::]" {
                "127.0.0.1"
            } else {
                host
            };
            let p = if p == "0" {
                port.to_string()
            } else {
                p.to_owned()
            };
            format!("{host}:{p}")
        }
        None => format!("127.0.0.1:{port}"),
    };
    let mut self_addresses = vec![
        local_address.clone(),
        bound.to_string(),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
    ];
    if !configured.is_empty() {
        self_addresses.push(configured.to_owned());
    }
    GatewayConfig {
        local_msp_id: config.peer.local_msp_id.clone(),
        local_address,
        self_addresses,
        connection: connection.clone(),
    }
}

async fn bind(listener: &'static str, address: &str) -> Result<(TcpListener, SocketAddr)> {
    twill_comm::bind(address)
        .await
        .map_err(|source| PeerError::Bind { listener, source })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn write_endpoints(dir: &Path, endpoints: &Endpoints) -> Result<()> {
    let path = dir.join(ENDPOINTS_FILE);
    twill_ops::write_json_file(&path, endpoints).map_err(|source| PeerError::Io { path, source })
}

pub use twill_ops::{init_logging, shutdown_signal};
