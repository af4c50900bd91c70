//! Routing a transaction's function name to the chaincode's handler.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;
use futures::TryFutureExt;

use crate::error::{Error, Result};
use crate::stub::Stub;

/// A chaincode function: called with the transaction's stub and the
/// arguments that follow the function name, it returns the response
/// payload or an error.
///
/// Every `async fn name(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>, E>`
/// with `E: Into<Error>` is a handler through the blanket implementation,
/// so routes are usually plain async functions. Implement the trait by hand
/// for handlers that carry state; the returned future may borrow the stub
/// but not the handler, so clone what it needs:
///
/// ```
/// use std::sync::Arc;
/// use twill_chaincode_shim::{BoxFuture, Handler, Result, Router, Stub};
///
/// struct Greeter {
///     greeting: Arc<str>,
/// }
///
/// impl<'a> Handler<'a> for Greeter {
///     fn call(&self, stub: &'a mut Stub, args: Vec<String>) -> BoxFuture<'a, Result<Vec<u8>>> {
///         let greeting = Arc::clone(&self.greeting);
///         Box::pin(async move {
///             let name = args.first().cloned().unwrap_or_default();
///             stub.put_state("last-greeted", name.as_bytes()).await?;
///             Ok(format!("{greeting}, {name}").into_bytes())
///         })
///     }
/// }
///
/// let router = Router::new().route("Greet", Greeter { greeting: "hello".into() });
/// assert!(router.has_function("Greet"));
/// ```
pub trait Handler<'a>: Send + Sync + 'static {
    /// Runs the function for one transaction.
    fn call(&self, stub: &'a mut Stub, args: Vec<String>) -> BoxFuture<'a, Result<Vec<u8>>>;
}

impl<'a, F, Fut, E> Handler<'a> for F
where
    F: Fn(&'a mut Stub, Vec<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Vec<u8>, E>> + Send + 'a,
    E: Into<Error> + 'a,
{
    fn call(&self, stub: &'a mut Stub, args: Vec<String>) -> BoxFuture<'a, Result<Vec<u8>>> {
        Box::pin(self(stub, args).map_err(Into::into))
    }
}

type BoxedHandler = Box<dyn for<'a> Handler<'a>>;

/// Maps function names to [`Handler`]s; the chaincode's whole behaviour.
///
/// The first transaction argument names the function; the rest, as UTF-8
/// text (invalid sequences replaced), are the handler's `args`. Raw
/// argument bytes stay available through [`Stub::args`].
///
/// ```
/// use twill_chaincode_shim::{Error, Router, Stub};
///
/// async fn get(stub: &mut Stub, args: Vec<String>) -> Result<Vec<u8>, Error> {
///     let [key] = args.as_slice() else {
///         return Err(Error::chaincode("get expects one argument: key"));
///     };
///     stub.get_state(key)
///         .await?
///         .ok_or_else(|| Error::chaincode(format!("{key} not found")))
/// }
///
/// let router = Router::new().route("get", get);
/// assert!(router.has_function("get"));
/// ```
#[derive(Default)]
pub struct Router {
    routes: BTreeMap<String, BoxedHandler>,
    init: Option<BoxedHandler>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("functions", &self.routes.keys().collect::<Vec<_>>())
            .field("init", &self.init.is_some())
            .finish()
    }
}

impl Router {
    /// A router with no functions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes transactions naming `function` to `handler`; a later route
    /// for the same name replaces the earlier one.
    #[must_use]
    pub fn route<H>(mut self, function: impl Into<String>, handler: H) -> Self
    where
        H: for<'a> Handler<'a>,
    {
        self.routes.insert(function.into(), Box::new(handler));
        self
    }

    /// Handles INIT messages (sent when the chaincode definition requires
    /// initialisation) with `handler`, whatever function they name. Without
    /// it, INIT is routed by function name like any transaction.
    #[must_use]
    pub fn init<H>(mut self, handler: H) -> Self
    where
        H: for<'a> Handler<'a>,
    {
        self.init = Some(Box::new(handler));
        self
    }

    /// Whether `function` has a route.
    pub fn has_function(&self, function: &str) -> bool {
        self.routes.contains_key(function)
    }

    /// The routed function names, sorted.
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Runs the handler the stub's transaction asks for.
    pub(crate) async fn dispatch(&self, stub: &mut Stub, is_init: bool) -> Result<Vec<u8>> {
        let args = stub.params();
        if is_init {
            if let Some(init) = &self.init {
                return init.call(stub, args).await;
            }
        }
        let function = stub.function().to_owned();
        if function.is_empty() {
            return Err(Error::chaincode("no function name given"));
        }
        match self.routes.get(&function) {
            Some(handler) => handler.call(stub, args).await,
            None => Err(Error::chaincode(format!("unknown function: {function}"))),
        }
    }
}
