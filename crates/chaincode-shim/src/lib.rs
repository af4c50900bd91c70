//! Rust chaincode shim: the chaincode's side of Hyperledger Fabric's
//! chaincode protocol, for Twill peers and Fabric peers alike.
//!
//! This crate owns everything between a chaincode's functions and the
//! peer's gRPC stream: opening the stream (dialing the peer's
//! `protos.ChaincodeSupport/Register` with [`start`], or serving
//! `protos.Chaincode/Connect` as a chaincode server with [`serve`]), the
//! REGISTER / REGISTERED / READY handshake, running transactions
//! concurrently, turning each [`Stub`] call into the matching request
//! (GET_STATE, PUT_STATE, GET_STATE_BY_RANGE and its QUERY_STATE_NEXT
//! batches, INVOKE_CHAINCODE, …), and answering every transaction with
//! COMPLETED. It also reads the launch settings Fabric hands a chaincode
//! process ([`config_from_env`]) and builds composite keys.
//!
//! It does not reconnect: when the stream ends, [`start`] returns an error
//! and the process should exit, to be relaunched by its supervisor.
//!
//! ```no_run
//! use twill_chaincode_shim::{config_from_env, serve, start, Error, Mode, Router, Stub};
//!
//! async fn put(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>, Error> {
//!     let [key, value] = args.as_slice() else {
//!         return Err(Error::chaincode("put expects two arguments: key, value"));
//!     };
//!     stub.put_state(key, value.as_bytes()).await?;
//!     stub.set_event("put", key.as_bytes())?;
//!     Ok(Vec::new())
//! }
//!
//! # async fn run() -> Result<(), Error> {
//! let router = Router::new().route("put", put);
//! match config_from_env(std::env::args())? {
//!     Mode::Dial(config) => start(config, router).await,
//!     Mode::Server(config) => serve(config, router).await,
//! }
//! # }
//! ```
//!
//! A handler's `Err` becomes a COMPLETED response with status 500 (or the
//! status of an [`Error::Chaincode`]) and the error's text; the peer then
//! fails the proposal. An unknown function name gets status 500 with
//! `unknown function: <name>`.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

/// The `tracing` target of the shim's logs.
const LOG: &str = "chaincode_shim";

mod config;
mod connection;
mod error;
mod keys;
mod router;
mod stub;
mod transport;

pub use config::{
    config_from, config_from_env, vars, ClientTls, DialConfig, Mode, ServerConfig, ServerTls,
};
pub use error::{Error, Result, ERROR_STATUS, ERROR_THRESHOLD};
pub use keys::{
    create_composite_key, partial_composite_key_range, split_composite_key,
    COMPOSITE_KEY_SEPARATOR, MAX_UNICODE_RUNE,
};
pub use router::{Handler, Router};

/// The boxed future a [`Handler`] returns.
pub use futures::future::BoxFuture;
pub use stub::{
    ChaincodeResponse, Creator, KeyModification, KeyValue, PageMetadata, Stub, VALIDATION_PARAMETER,
};
pub use transport::{serve, serve_with_listener, start};

/// Protobuf timestamp, as in [`Stub::tx_timestamp`] and
/// [`KeyModification::timestamp`].
pub use twill_protos::prost_types::Timestamp;
