//! Thin helpers for the common case: call a chaincode function with string
//! arguments and get its result.
//!
//! ```no_run
//! # async fn demo() -> twill_client::Result<()> {
//! use twill_client::{ChaincodeInvoker, ChaincodeQuerier, Gateway};
//!
//! let gateway = Gateway::from_profile("connection-org1.yaml", "users/User1@org1.example.com/msp").await?;
//! let contract = gateway.network("mychannel").contract("basic");
//! ChaincodeInvoker::new(contract.clone())
//!     .invoke("CreateAsset", &["a1", "blue", "5", "Tom", "100"])
//!     .await?;
//! let asset: serde_json::Value = ChaincodeQuerier::new(contract).query_json("ReadAsset", &["a1"]).await?;
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::gateway::Contract;
use crate::proposal::ProposalOptions;

/// Submits transactions and waits for them to commit.
#[derive(Debug, Clone)]
pub struct ChaincodeInvoker {
    contract: Contract,
}

impl ChaincodeInvoker {
    /// Invokes functions of `contract`.
    pub fn new(contract: Contract) -> Self {
        ChaincodeInvoker { contract }
    }

    /// The contract.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// Submits `function(args)` and returns its result once the
    /// transaction is committed as VALID.
    pub async fn invoke(&self, function: &str, args: &[&str]) -> Result<Vec<u8>> {
        self.contract.submit(function, args).await
    }

    /// [`ChaincodeInvoker::invoke`] with transient data (e.g. private
    /// data), which reaches the endorsers but not the ledger.
    pub async fn invoke_with_transient(
        &self,
        function: &str,
        args: &[&str],
        transient: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Vec<u8>> {
        let mut options = ProposalOptions::new().string_arguments(args);
        for (k, v) in transient {
            options = options.transient(k, v);
        }
        self.contract.submit_with(function, options).await
    }
}

/// Evaluates (queries) functions without ordering them.
#[derive(Debug, Clone)]
pub struct ChaincodeQuerier {
    contract: Contract,
}

impl ChaincodeQuerier {
    /// Queries functions of `contract`.
    pub fn new(contract: Contract) -> Self {
        ChaincodeQuerier { contract }
    }

    /// The contract.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// The result of `function(args)` as bytes.
    pub async fn query(&self, function: &str, args: &[&str]) -> Result<Vec<u8>> {
        self.contract.evaluate(function, args).await
    }

    /// The result as UTF-8 text (invalid sequences replaced).
    pub async fn query_string(&self, function: &str, args: &[&str]) -> Result<String> {
        let bytes = self.query(function, args).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The result decoded from JSON.
    pub async fn query_json<T: DeserializeOwned>(
        &self,
        function: &str,
        args: &[&str],
    ) -> Result<T> {
        let bytes = self.query(function, args).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            function: function.to_owned(),
            source,
        })
    }
}
