//! [`ChaincodeRuntime`]: what the endorser runs for a user chaincode or
//! `_lifecycle` proposal — simulation, the chaincode call, and starting the
//! chaincode when it is not connected.
//!
//! For a user chaincode `name` on a channel:
//!
//! 1. the committed definition of `name` is read from `_lifecycle` (no
//!    definition → status 500);
//! 2. the package to run is the one this peer's org approved for that
//!    definition's sequence (none → status 500);
//! 3. if no chaincode with that package id is registered, it is started:
//!    a `ccaas` package is dialed at its `connection.json` address; a
//!    `process` package is unpacked under `<fileSystemPath>/lifecycle/run/`
//!    and its `run.json` command is started with Fabric's chaincode
//!    environment (`CORE_CHAINCODE_ID_NAME`, `CORE_PEER_ADDRESS`, TLS
//!    settings) plus `--peer.address <address>`, as the Node shim needs;
//!    the peer then waits for it to register;
//! 4. the chaincode runs the transaction against a fresh [`TxSimulator`];
//!    its requests are served by [`SimulatorRequests`];
//! 5. a response with status ≥ 400 is returned unendorsed; otherwise the
//!    simulation results and the event become the chaincode action.
//!
//! A chaincode process that exits is started again on the next proposal
//! that needs it; processes are killed when the runtime is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message as _;
use twill_ledger::state::StateDb;
use twill_lifecycle::{LaunchSpec, PackageStore};
use twill_protos::peer::{ChaincodeEvent, ChaincodeId, ChaincodeInput, Response, SignedProposal};

use super::{connect_chaincode_server, ChaincodeRegistry, Invocation, SimulatorRequests, LOG};
use crate::channel::Channel;
use crate::lifecycle::{self, Caller, LifecycleContext, LifecycleState, LIFECYCLE_NAMESPACE};
use crate::scc;
use crate::simulator::TxSimulator;

/// How long a started chaincode may take to register.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the peer starts chaincode processes.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// Where `process` packages are unpacked.
    pub run_dir: PathBuf,
    /// The address chaincode processes dial (`CORE_PEER_ADDRESS`).
    pub peer_address: String,
    /// The peer's TLS root certificate file, when the peer serves TLS.
    pub tls_root_cert: Option<PathBuf>,
    /// How long a started chaincode may take to register.
    pub startup_timeout: Duration,
}

/// What a proposal produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulated {
    /// The chaincode's response (status < 400).
    pub response: Response,
    /// Serialized `TxReadWriteSet`.
    pub results: Vec<u8>,
    /// Serialized `ChaincodeEvent`, or empty.
    pub events: Vec<u8>,
    /// The chaincode's name and version.
    pub chaincode_id: ChaincodeId,
}

/// A proposal to run.
pub struct RunRequest<'a> {
    /// The channel (absent for channel-less `_lifecycle` calls).
    pub channel: Option<Arc<Channel>>,
    /// The channel's state database.
    pub state: Option<Arc<StateDb>>,
    /// The client's signed proposal.
    pub signed: &'a SignedProposal,
    /// The chaincode called.
    pub chaincode: &'a str,
    /// The transaction id.
    pub tx_id: &'a str,
    /// The invocation input (args, decorations, is_init).
    pub input: ChaincodeInput,
    /// Whether the creator is an admin of the peer's org.
    pub local_admin: bool,
}

/// Runs chaincodes for the endorser (the steps are described at the top of
/// `chaincode/runtime.rs`).
pub struct ChaincodeRuntime {
    /// This runtime, for the request handlers of nested calls.
    this: std::sync::Weak<ChaincodeRuntime>,
    registry: Arc<ChaincodeRegistry>,
    store: Arc<PackageStore>,
    local_mspid: String,
    launch: LaunchConfig,
    /// Running chaincode processes by package id.
    processes: Mutex<HashMap<String, tokio::process::Child>>,
    /// Serializes starts of one package.
    starting: tokio::sync::Mutex<()>,
    /// Committed definitions and approved packages by (channel, chaincode).
    definitions: lifecycle::LifecycleCache<(String, String), Arc<Runnable>>,
}

/// What running a chaincode needs from `_lifecycle`: its committed
/// definition and the package this org approved for it.
#[derive(Debug)]
struct Runnable {
    definition: lifecycle::Definition,
    package_id: String,
}

impl std::fmt::Debug for ChaincodeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeRuntime")
            .field("local_mspid", &self.local_mspid)
            .field("registered", &self.registry.ids())
            .finish_non_exhaustive()
    }
}

impl ChaincodeRuntime {
    /// A runtime over `registry` and the installed packages in `store`, for
    /// a peer of org `local_mspid`.
    pub fn new(
        registry: Arc<ChaincodeRegistry>,
        store: Arc<PackageStore>,
        local_mspid: impl Into<String>,
        launch: LaunchConfig,
    ) -> Arc<Self> {
        let local_mspid = local_mspid.into();
        Arc::new_cyclic(|this| ChaincodeRuntime {
            this: this.clone(),
            registry,
            store,
            local_mspid,
            launch,
            processes: Mutex::new(HashMap::new()),
            starting: tokio::sync::Mutex::new(()),
            definitions: Default::default(),
        })
    }

    /// The registry of connected chaincodes.
    pub fn registry(&self) -> &Arc<ChaincodeRegistry> {
        &self.registry
    }

    /// Runs a proposal: `Ok` for a response to endorse, `Err` for one to
    /// return unendorsed (status ≥ 400).
    pub async fn run(&self, request: RunRequest<'_>) -> Result<Simulated, Response> {
        if request.chaincode == LIFECYCLE_NAMESPACE {
            return self.run_lifecycle(request).await;
        }
        let (Some(channel), Some(state)) = (request.channel.clone(), request.state.clone()) else {
            return Err(scc::error(format!(
                "chaincode '{}' can only be called on a channel",
                request.chaincode
            )));
        };
        let name = request.chaincode.to_owned();
        let runnable = self.runnable(&state, &name, channel.id())?;
        let (definition, package_id) = (&runnable.definition, &runnable.package_id);
        let simulator = Arc::new(Mutex::new(TxSimulator::new(
            state.clone(),
            channel.id(),
            request.tx_id,
        )));
        if definition.endorsement.init_required {
            check_init(
                &mut simulator.lock(),
                &name,
                &definition.endorsement.version,
                request.input.is_init,
            )?;
        }
        let call = NestedCall {
            channel: channel.clone(),
            state,
            simulator: simulator.clone(),
            tx_id: request.tx_id.to_owned(),
            proposal: request.signed.clone(),
        };
        let done = self
            .execute_in(package_id, &name, request.input, &call)
            .await
            .map_err(|e| scc::error(format!("error in simulation: {e}")))?;
        if done.response.status >= 400 {
            return Err(done.response);
        }
        let events = match done.event {
            Some(event) if !event.event_name.is_empty() => ChaincodeEvent {
                chaincode_id: name.clone(),
                tx_id: request.tx_id.to_owned(),
                event_name: event.event_name,
                payload: event.payload,
            }
            .encode_to_vec(),
            _ => Vec::new(),
        };
        drop(call);
        let simulator = Arc::try_unwrap(simulator)
            .map(Mutex::into_inner)
            .map_err(|_| scc::error("the chaincode still holds the simulation"))?;
        let results = simulator
            .into_results()
            .map_err(|e| scc::error(format!("error in simulation: {e}")))?
            .encode_to_vec();
        Ok(Simulated {
            response: done.response,
            results,
            events,
            chaincode_id: ChaincodeId {
                name,
                version: definition.endorsement.version.clone(),
                ..Default::default()
            },
        })
    }

    /// Starts package `package_id` if needed and runs `input` in it as
    /// chaincode `name`, its requests served by the call's simulator.
    async fn execute_in(
        &self,
        package_id: &str,
        name: &str,
        input: ChaincodeInput,
        call: &NestedCall,
    ) -> Result<super::Completion, String> {
        self.ensure_running(package_id)
            .await
            .map_err(|r| r.message)?;
        let requests = Arc::new(SimulatorRequests::new(
            name.to_owned(),
            call.simulator.clone(),
            call.channel.clone(),
            Some((self.this.clone(), call.clone())),
        ));
        let invocation = Invocation {
            channel_id: call.channel.id().to_owned(),
            tx_id: call.tx_id.clone(),
            is_init: input.is_init,
            input: input.encode_to_vec(),
            proposal: Some(call.proposal.clone()),
            requests,
        };
        self.registry
            .execute(package_id, invocation)
            .await
            .map_err(|e| e.to_string())
    }

    /// A chaincode-to-chaincode call within a running transaction: chaincode
    /// `callee` on the same channel runs `input` against the same simulator
    /// (its reads and writes join the transaction). The callee's event is
    /// dropped, as in Fabric.
    pub(crate) async fn invoke_nested(
        &self,
        call: &NestedCall,
        callee: &str,
        input: ChaincodeInput,
    ) -> Result<Response, String> {
        let runnable = self
            .runnable(&call.state, callee, call.channel.id())
            .map_err(|r| r.message)?;
        let done = self
            .execute_in(&runnable.package_id, callee, input, call)
            .await?;
        Ok(done.response)
    }

    async fn run_lifecycle(&self, request: RunRequest<'_>) -> Result<Simulated, Response> {
        let store = self.store.clone();
        let mspid = self.local_mspid.clone();
        let args = request.input.args.clone();
        let caller = Caller {
            local_admin: request.local_admin,
        };
        let tx_id = request.tx_id.to_owned();
        let channel = request.channel.clone();
        let state = request.state.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let config = channel.as_ref().map(|c| c.config());
            let mut simulator = match (&channel, &state) {
                (Some(ch), Some(db)) => Some(TxSimulator::new(db.clone(), ch.id(), &tx_id)),
                _ => None,
            };
            let mut adapter = match (simulator.as_mut(), &state) {
                (Some(sim), Some(db)) => Some(SimulatorState {
                    sim,
                    db: db.clone(),
                }),
                _ => None,
            };
            let ctx = LifecycleContext {
                store: &store,
                local_mspid: &mspid,
                config: config.as_deref(),
                state: adapter.as_mut().map(|a| a as &mut dyn LifecycleState),
                caller,
            };
            let payload = lifecycle::invoke(ctx, &args)?;
            let results = match simulator {
                Some(s) => s
                    .into_results()
                    .map_err(|e| format!("error in simulation: {e}"))?
                    .encode_to_vec(),
                None => Vec::new(),
            };
            Ok::<_, String>((payload, results))
        })
        .await
        .map_err(|e| scc::error(format!("_lifecycle failed: {e}")))?;
        let (payload, results) = outcome.map_err(scc::error)?;
        Ok(Simulated {
            response: scc::success(payload),
            results,
            events: Vec::new(),
            chaincode_id: ChaincodeId {
                name: LIFECYCLE_NAMESPACE.to_owned(),
                version: lifecycle::LIFECYCLE_VERSION.to_owned(),
                ..Default::default()
            },
        })
    }

    /// Makes sure chaincode `package_id` is connected, starting it if
    /// needed.
    async fn ensure_running(&self, package_id: &str) -> Result<(), Response> {
        if self.registry.is_registered(package_id) {
            return Ok(());
        }
        let _starting = self.starting.lock().await;
        if self.registry.is_registered(package_id) {
            return Ok(());
        }
        let store = self.store.clone();
        let id = package_id.to_owned();
        let spec = tokio::task::spawn_blocking(move || {
            let package = store.load(&id)?;
            twill_lifecycle::launch_spec(&package).map(|spec| (spec, package))
        })
        .await
        .map_err(|e| scc::error(format!("loading chaincode {package_id}: {e}")))?
        .map_err(|e| scc::error(format!("chaincode {package_id} cannot be started: {e}")))?;
        let wait = match spec {
            (LaunchSpec::Ccaas(conn), _) => {
                let tls = if conn.tls_required {
                    let roots: Vec<Vec<u8>> = conn
                        .root_cert
                        .iter()
                        .map(|pem| pem.clone().into_bytes())
                        .collect();
                    let mut tls = twill_comm::ClientTls::new(roots);
                    if let (Some(cert), Some(key)) = (&conn.client_cert, &conn.client_key) {
                        tls = tls.with_identity(cert.clone().into_bytes(), key.clone().into_bytes());
                    }
                    Some(tls)
                } else {
                    None
                };
                let registry = self.registry.clone();
                let address = conn.address.clone();
                let dial = conn.dial_timeout;
                let id = package_id.to_owned();
                let wait = self.launch.startup_timeout;
                tokio::spawn(async move {
                    // A server that is still starting refuses connections:
                    // keep dialing until it answers or the wait is over.
                    let deadline = tokio::time::Instant::now() + wait;
                    loop {
                        let ended =
                            connect_chaincode_server(registry.clone(), &address, tls.as_ref(), dial)
                                .await;
                        let Err(e) = ended else { break };
                        if registry.is_registered(&id) || tokio::time::Instant::now() >= deadline {
                            tracing::warn!(target: LOG, chaincode = %id, address = %address, error = %e, "chaincode server connection ended");
                            break;
                        }
                        tracing::debug!(target: LOG, chaincode = %id, address = %address, error = %e, "chaincode server not reachable yet; dialing again");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                });
                wait
            }
            (LaunchSpec::Process(run), package) => {
                self.start_process(package_id, &run, &package).await?;
                self.launch.startup_timeout
            }
            (LaunchSpec::Other(kind), _) => {
                return Err(scc::error(format!(
                    "chaincode {package_id} is not running, and packages of type '{kind}' cannot be started by this peer: run it as a chaincode server (ccaas) or let it dial the peer"
                )))
            }
        };
        if self.registry.wait_for(package_id, wait).await {
            Ok(())
        } else {
            Err(scc::error(format!(
                "chaincode {package_id} did not register within {wait:?}"
            )))
        }
    }

    async fn start_process(
        &self,
        package_id: &str,
        run: &twill_lifecycle::RunSpec,
        package: &twill_lifecycle::ParsedPackage,
    ) -> Result<(), Response> {
        // A process still alive but not registered is replaced.
        if let Some(mut old) = self.processes.lock().remove(package_id) {
            let _ = old.start_kill();
        }
        let dir = self
            .launch
            .run_dir
            .join(package_id.replace([':', '/'], "_"));
        if run.is_packaged() {
            let package = package.clone();
            let target = dir.clone();
            tokio::task::spawn_blocking(move || {
                if target.exists() {
                    std::fs::remove_dir_all(&target).map_err(|e| e.to_string())?;
                }
                twill_lifecycle::unpack_code(&package, &target).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| scc::error(format!("unpacking chaincode {package_id}: {e}")))?
            .map_err(|e| scc::error(format!("unpacking chaincode {package_id}: {e}")))?;
        }
        std::fs::create_dir_all(&self.launch.run_dir)
            .map_err(|e| scc::error(format!("creating {}: {e}", self.launch.run_dir.display())))?;
        let program = run.program_path(&dir);
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&run.args)
            .arg("--peer.address")
            .arg(&self.launch.peer_address)
            .current_dir(if run.is_packaged() {
                &dir
            } else {
                &self.launch.run_dir
            })
            .envs(&run.env)
            .env("CORE_CHAINCODE_ID_NAME", package_id)
            .env("CORE_PEER_ADDRESS", &self.launch.peer_address)
            .env("CORE_PEER_LOCALMSPID", &self.local_mspid)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        match &self.launch.tls_root_cert {
            Some(root) => {
                command
                    .env("CORE_PEER_TLS_ENABLED", "true")
                    .env("CORE_PEER_TLS_ROOTCERT_FILE", root);
            }
            None => {
                command.env("CORE_PEER_TLS_ENABLED", "false");
            }
        }
        let child = command.spawn().map_err(|e| {
            scc::error(format!(
                "starting chaincode {package_id} ({}): {e}",
                program.display()
            ))
        })?;
        tracing::info!(target: LOG, chaincode = %package_id, program = %program.display(), pid = child.id().unwrap_or_default(), "chaincode process started");
        self.processes.lock().insert(package_id.to_owned(), child);
        Ok(())
    }
}

/// Key in a chaincode's namespace recording the version it was initialized
/// for (Fabric's layout: U+0000, U+10FFFF, "initialized").
pub const INITIALIZED_KEY: &str = "\u{0}\u{10FFFF}initialized";

/// For a definition with `init_required`: the first transaction of a
/// version must be an init (which records the version), later ones must
/// not be.
fn check_init(
    simulator: &mut TxSimulator,
    name: &str,
    version: &str,
    is_init: bool,
) -> Result<(), Response> {
    let recorded = simulator
        .get_state(name, INITIALIZED_KEY)
        .map_err(|e| scc::error(format!("error in simulation: {e}")))?;
    let initialized = recorded.as_deref() == Some(version.as_bytes());
    match (initialized, is_init) {
        (true, true) => Err(scc::error(format!(
            "chaincode '{name}' is already initialized but called as init"
        ))),
        (false, false) => Err(scc::error(format!(
            "chaincode '{name}' has not been initialized for this version, must call as init first"
        ))),
        (false, true) => simulator
            .put_state(name, INITIALIZED_KEY, version.as_bytes().to_vec())
            .map_err(|e| scc::error(format!("error in simulation: {e}"))),
        (true, false) => Ok(()),
    }
}

/// What a chaincode call inside a running transaction shares with it.
#[derive(Clone)]
pub(crate) struct NestedCall {
    pub(crate) channel: Arc<Channel>,
    pub(crate) state: Arc<StateDb>,
    pub(crate) simulator: Arc<Mutex<TxSimulator>>,
    pub(crate) tx_id: String,
    pub(crate) proposal: SignedProposal,
}

impl ChaincodeRuntime {
    /// The committed definition of `name` on `channel_id` and the package
    /// this org approved for it, read from `_lifecycle` once per change of
    /// `_lifecycle` (a handful of state reads and decodes otherwise).
    fn runnable(
        &self,
        state: &Arc<StateDb>,
        name: &str,
        channel_id: &str,
    ) -> Result<Arc<Runnable>, Response> {
        let key = (channel_id.to_owned(), name.to_owned());
        self.definitions.get_or_try(state, key, || {
            // A few point reads of `_lifecycle`: done on the async worker.
            let (definition, package_id) = lookup(state, &self.local_mspid, name, channel_id)?;
            Ok(Arc::new(Runnable {
                definition,
                package_id,
            }))
        })
    }
}

/// The committed definition of `name` and the package this org approved
/// for it.
fn lookup(
    state: &Arc<StateDb>,
    mspid: &str,
    name: &str,
    channel_id: &str,
) -> Result<(lifecycle::Definition, String), Response> {
    let mut reader = CommittedState { db: state };
    let definition = lifecycle::committed_definition(&mut reader, name)
        .map_err(scc::error)?
        .ok_or_else(|| {
            scc::error(format!(
                "make sure the chaincode {name} has been successfully defined on channel {channel_id} and try again: chaincode {name} not found"
            ))
        })?;
    let package_id = lifecycle::approved_package(&mut reader, mspid, name, &definition)
        .map_err(scc::error)?
        .ok_or_else(|| {
            scc::error(format!(
                "chaincode definition for '{name}' exists, but chaincode is not installed and approved by {mspid} for sequence {}",
                definition.sequence
            ))
        })?;
    Ok((definition, package_id))
}

/// `_lifecycle` reads straight from the committed state (not recorded):
/// which definition and package to run is the peer's business, not part of
/// the transaction.
struct CommittedState<'a> {
    db: &'a StateDb,
}

impl LifecycleState for CommittedState<'_> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.db
            .get(LIFECYCLE_NAMESPACE, key)
            .map(|v| v.map(|v| v.value))
            .map_err(|e| e.to_string())
    }

    fn put(&mut self, _key: &str, _value: Vec<u8>) -> Result<(), String> {
        Err("the committed state is read-only".into())
    }

    fn definition_names(&mut self) -> Result<Vec<String>, String> {
        definition_names(self.db)
    }
}

/// `_lifecycle` reads and writes through a transaction's simulator.
struct SimulatorState<'a> {
    sim: &'a mut TxSimulator,
    /// The committed state, for listings that are not part of the
    /// transaction.
    db: Arc<StateDb>,
}

impl LifecycleState for SimulatorState<'_> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.sim
            .get_state(LIFECYCLE_NAMESPACE, key)
            .map_err(|e| e.to_string())
    }

    fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), String> {
        self.sim
            .put_state(LIFECYCLE_NAMESPACE, key, value)
            .map_err(|e| e.to_string())
    }

    fn definition_names(&mut self) -> Result<Vec<String>, String> {
        definition_names(&self.db)
    }
}

/// Names of the committed definitions in `_lifecycle`.
fn definition_names(db: &StateDb) -> Result<Vec<String>, String> {
    const PREFIX: &str = "namespaces/metadata/";
    let mut names = Vec::new();
    for item in db.range(LIFECYCLE_NAMESPACE, PREFIX, "namespaces/metadata0") {
        let (key, _) = item.map_err(|e| e.to_string())?;
        if let Some(name) = key.strip_prefix(PREFIX) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}
