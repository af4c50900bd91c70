//! The per-transaction handle a chaincode function works through.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use twill_protos::common::{ChannelHeader, Header, SignatureHeader};
use twill_protos::msp::SerializedIdentity;
use twill_protos::peer::chaincode_message::Type as MsgType;
use twill_protos::peer::{
    ChaincodeEvent, ChaincodeId, ChaincodeInput, ChaincodeMessage, ChaincodeProposalPayload,
    ChaincodeSpec, DelState, GetHistoryForKey, GetQueryResult, GetState, GetStateByRange,
    GetStateMetadata, Proposal, PurgePrivateState, PutState, PutStateMetadata, QueryMetadata,
    QueryResponse, QueryResponseMetadata, QueryStateClose, QueryStateNext, SignedProposal,
    StateMetadata, StateMetadataResult,
};
use twill_protos::prost_types::Timestamp;
use twill_protos::queryresult;

use crate::connection::{type_name, Shared};
use crate::error::{Error, Result};
use crate::keys;

/// Metadata key under which a key's endorsement policy (a serialized
/// `common.SignaturePolicyEnvelope`) is stored.
pub const VALIDATION_PARAMETER: &str = "VALIDATION_PARAMETER";

/// One record of a range or rich query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The chaincode namespace the key lives in.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
}

/// One change of a key, from [`Stub::get_history_for_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyModification {
    /// The transaction that made the change.
    pub tx_id: String,
    /// The value written (empty for a delete).
    pub value: Vec<u8>,
    /// The transaction's timestamp.
    pub timestamp: Option<Timestamp>,
    /// Whether the change deleted the key.
    pub is_delete: bool,
}

/// What a paginated query reports besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageMetadata {
    /// How many records this page holds.
    pub fetched_records_count: i32,
    /// Where the next page starts; pass it to the next call.
    pub bookmark: String,
}

/// A called chaincode's answer, from [`Stub::invoke_chaincode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaincodeResponse {
    /// Status: 200 for success, 400 and up for errors.
    pub status: i32,
    /// The error message, if any.
    pub message: String,
    /// The returned payload.
    pub payload: Vec<u8>,
}

/// The identity that signed the transaction proposal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creator {
    /// The creator's MSP id.
    pub msp_id: String,
    /// The identity itself: a PEM certificate for X.509 identities.
    pub id_bytes: Vec<u8>,
}

/// What the shim learns from the client's signed proposal.
#[derive(Debug, Clone, Default)]
struct ProposalInfo {
    creator: Option<Creator>,
    timestamp: Option<Timestamp>,
    transient: BTreeMap<String, Vec<u8>>,
}

impl ProposalInfo {
    fn parse(signed: &SignedProposal) -> Result<Self> {
        let proposal = Proposal::decode(signed.proposal_bytes.as_slice())
            .map_err(Error::decode("Proposal"))?;
        let header = Header::decode(proposal.header.as_slice()).map_err(Error::decode("Header"))?;
        let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
            .map_err(Error::decode("ChannelHeader"))?;
        let signature_header = SignatureHeader::decode(header.signature_header.as_slice())
            .map_err(Error::decode("SignatureHeader"))?;
        let identity = SerializedIdentity::decode(signature_header.creator.as_slice())
            .map_err(Error::decode("SerializedIdentity"))?;
        let payload = ChaincodeProposalPayload::decode(proposal.payload.as_slice())
            .map_err(Error::decode("ChaincodeProposalPayload"))?;
        Ok(Self {
            creator: Some(Creator {
                msp_id: identity.mspid,
                id_bytes: identity.id_bytes,
            }),
            timestamp: channel_header.timestamp,
            transient: payload.transient_map,
        })
    }
}

/// A transaction in progress: what the peer sent, and the way to the
/// ledger.
///
/// Requests go to the peer one at a time (methods take `&mut self`); reads
/// see the state as of the transaction's simulation, writes are recorded in
/// its write set and become visible only once the transaction commits.
/// Range and rich queries return all their records at once, fetching the
/// peer's batches one after another.
#[derive(Debug)]
pub struct Stub {
    shared: Arc<Shared>,
    tx_id: String,
    channel_id: String,
    args: Vec<Vec<u8>>,
    function: String,
    decorations: BTreeMap<String, Vec<u8>>,
    is_init: bool,
    signed_proposal: Option<SignedProposal>,
    proposal: ProposalInfo,
    event: Option<ChaincodeEvent>,
}

impl Stub {
    /// Builds the stub for a TRANSACTION or INIT message.
    pub(crate) fn from_message(shared: Arc<Shared>, message: ChaincodeMessage) -> Result<Self> {
        let input = ChaincodeInput::decode(message.payload.as_slice())
            .map_err(Error::decode("ChaincodeInput"))?;
        let proposal = match &message.proposal {
            Some(signed) => ProposalInfo::parse(signed)?,
            None => ProposalInfo::default(),
        };
        let function = input
            .args
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        Ok(Self {
            shared,
            tx_id: message.txid,
            channel_id: message.channel_id,
            args: input.args,
            function,
            decorations: input.decorations,
            is_init: input.is_init,
            signed_proposal: message.proposal,
            proposal,
            event: None,
        })
    }

    /// The transaction id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The channel the transaction runs on.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// All arguments as sent, the function name first.
    pub fn args(&self) -> &[Vec<u8>] {
        &self.args
    }

    /// All arguments as text (invalid UTF-8 replaced), the function name
    /// first.
    pub fn string_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// The function name: the first argument, empty when there is none.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The arguments after the function name, as text.
    pub fn params(&self) -> Vec<String> {
        self.args
            .iter()
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// Decorations the peer attached to the input.
    pub fn decorations(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.decorations
    }

    /// Whether the client asked for the chaincode's initialisation.
    pub fn is_init(&self) -> bool {
        self.is_init
    }

    /// The client's signed proposal, when the peer sent it.
    pub fn signed_proposal(&self) -> Option<&SignedProposal> {
        self.signed_proposal.as_ref()
    }

    /// The identity that signed the proposal, when the peer sent it.
    pub fn creator(&self) -> Option<&Creator> {
        self.proposal.creator.as_ref()
    }

    /// The transient data the client passed with the proposal (never
    /// written to the ledger); empty without a proposal.
    pub fn get_transient(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.proposal.transient
    }

    /// The timestamp the client put into the proposal's channel header.
    pub fn tx_timestamp(&self) -> Option<Timestamp> {
        self.proposal.timestamp
    }

    /// Sets the event the transaction emits when it commits; a later call
    /// replaces an earlier one.
    pub fn set_event(
        &mut self,
        name: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<()> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::EmptyEventName);
        }
        self.event = Some(ChaincodeEvent {
            event_name: name,
            payload: payload.into(),
            ..ChaincodeEvent::default()
        });
        Ok(())
    }

    pub(crate) fn take_event(&mut self) -> Option<ChaincodeEvent> {
        self.event.take()
    }

    async fn request(&mut self, kind: MsgType, payload: impl Message) -> Result<Vec<u8>> {
        self.shared
            .request(&self.channel_id, &self.tx_id, kind, payload.encode_to_vec())
            .await
    }

    // ---- world state -------------------------------------------------

    /// The value of `key`, `None` when it does not exist.
    pub async fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_in(key, "").await
    }

    /// Writes `value` under `key`.
    pub async fn put_state(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        self.put_in(key, value.into(), "").await
    }

    /// Deletes `key`.
    pub async fn del_state(&mut self, key: &str) -> Result<()> {
        self.del_in(key, "").await
    }

    /// Every key in `[start, end)` with its value, in key order. An empty
    /// `start` means from the first key, an empty `end` means to the last.
    pub async fn get_state_by_range(&mut self, start: &str, end: &str) -> Result<Vec<KeyValue>> {
        self.range_in(start, end, "", None)
            .await
            .map(|(kvs, _)| kvs)
    }

    /// One page of `[start, end)`: at most `page_size` records from
    /// `bookmark` on (empty for the first page).
    pub async fn get_state_by_range_with_pagination(
        &mut self,
        start: &str,
        end: &str,
        page_size: i32,
        bookmark: &str,
    ) -> Result<(Vec<KeyValue>, PageMetadata)> {
        self.range_in(start, end, "", Some((page_size, bookmark)))
            .await
    }

    /// Every composite key of `object_type` whose attributes begin with
    /// `attributes`, with its value.
    pub async fn get_state_by_partial_composite_key<S: AsRef<str>>(
        &mut self,
        object_type: &str,
        attributes: &[S],
    ) -> Result<Vec<KeyValue>> {
        let (start, end) = keys::partial_composite_key_range(object_type, attributes)?;
        self.range_raw(start, end, "", None)
            .await
            .map(|(kvs, _)| kvs)
    }

    /// One page of [`Stub::get_state_by_partial_composite_key`].
    pub async fn get_state_by_partial_composite_key_with_pagination<S: AsRef<str>>(
        &mut self,
        object_type: &str,
        attributes: &[S],
        page_size: i32,
        bookmark: &str,
    ) -> Result<(Vec<KeyValue>, PageMetadata)> {
        let (start, end) = keys::partial_composite_key_range(object_type, attributes)?;
        self.range_raw(start, end, "", Some((page_size, bookmark)))
            .await
    }

    /// The records a rich query (a CouchDB selector, for instance) matches.
    pub async fn get_query_result(&mut self, query: &str) -> Result<Vec<KeyValue>> {
        self.rich_query_in(query, "", None)
            .await
            .map(|(kvs, _)| kvs)
    }

    /// One page of a rich query's records.
    pub async fn get_query_result_with_pagination(
        &mut self,
        query: &str,
        page_size: i32,
        bookmark: &str,
    ) -> Result<(Vec<KeyValue>, PageMetadata)> {
        self.rich_query_in(query, "", Some((page_size, bookmark)))
            .await
    }

    /// Every committed change of `key`, as the peer's history index holds
    /// them.
    pub async fn get_history_for_key(&mut self, key: &str) -> Result<Vec<KeyModification>> {
        let request = GetHistoryForKey {
            key: key.to_owned(),
        };
        let (records, _) = self
            .query_all(MsgType::GetHistoryForKey, request.encode_to_vec())
            .await?;
        records
            .iter()
            .map(|bytes| {
                let m = queryresult::KeyModification::decode(bytes.as_slice())
                    .map_err(Error::decode("KeyModification"))?;
                Ok(KeyModification {
                    tx_id: m.tx_id,
                    value: m.value,
                    timestamp: m.timestamp,
                    is_delete: m.is_delete,
                })
            })
            .collect()
    }

    /// All metadata entries of `key`, by metadata key.
    pub async fn get_state_metadata(&mut self, key: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        self.metadata_in(key, "").await
    }

    /// Sets one metadata entry of `key`.
    pub async fn set_state_metadata(
        &mut self,
        key: &str,
        metakey: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.put_metadata_in(key, "", metakey, value.into()).await
    }

    /// The key-level endorsement policy of `key`, if one is set.
    pub async fn get_state_validation_parameter(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .metadata_in(key, "")
            .await?
            .remove(VALIDATION_PARAMETER))
    }

    /// Sets the key-level endorsement policy of `key` (a serialized
    /// `common.SignaturePolicyEnvelope`).
    pub async fn set_state_validation_parameter(
        &mut self,
        key: &str,
        policy: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.put_metadata_in(key, "", VALIDATION_PARAMETER, policy.into())
            .await
    }

    // ---- private data ------------------------------------------------

    /// The value of `key` in private data `collection`.
    pub async fn get_private_data(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        check_collection(collection)?;
        self.get_in(key, collection).await
    }

    /// The hash of `key`'s value in `collection`, readable also by peers
    /// that are not members of the collection.
    pub async fn get_private_data_hash(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        check_collection(collection)?;
        let request = GetState {
            key: key.to_owned(),
            collection: collection.to_owned(),
        };
        let value = self.request(MsgType::GetPrivateDataHash, request).await?;
        Ok((!value.is_empty()).then_some(value))
    }

    /// Writes `value` under `key` in `collection`.
    pub async fn put_private_data(
        &mut self,
        collection: &str,
        key: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<()> {
        check_collection(collection)?;
        self.put_in(key, value.into(), collection).await
    }

    /// Deletes `key` from `collection`.
    pub async fn del_private_data(&mut self, collection: &str, key: &str) -> Result<()> {
        check_collection(collection)?;
        self.del_in(key, collection).await
    }

    /// Deletes `key` from `collection` and purges its history from the
    /// private data store.
    pub async fn purge_private_data(&mut self, collection: &str, key: &str) -> Result<()> {
        check_collection(collection)?;
        check_key(key)?;
        let request = PurgePrivateState {
            key: key.to_owned(),
            collection: collection.to_owned(),
        };
        self.request(MsgType::PurgePrivateData, request).await?;
        Ok(())
    }

    /// Every key of `collection` in `[start, end)`.
    pub async fn get_private_data_by_range(
        &mut self,
        collection: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<KeyValue>> {
        check_collection(collection)?;
        self.range_in(start, end, collection, None)
            .await
            .map(|(kvs, _)| kvs)
    }

    /// Composite keys of `collection` under a partial key.
    pub async fn get_private_data_by_partial_composite_key<S: AsRef<str>>(
        &mut self,
        collection: &str,
        object_type: &str,
        attributes: &[S],
    ) -> Result<Vec<KeyValue>> {
        check_collection(collection)?;
        let (start, end) = keys::partial_composite_key_range(object_type, attributes)?;
        self.range_raw(start, end, collection, None)
            .await
            .map(|(kvs, _)| kvs)
    }

    /// The records of `collection` a rich query matches.
    pub async fn get_private_data_query_result(
        &mut self,
        collection: &str,
        query: &str,
    ) -> Result<Vec<KeyValue>> {
        check_collection(collection)?;
        self.rich_query_in(query, collection, None)
            .await
            .map(|(kvs, _)| kvs)
    }

    /// The key-level endorsement policy of a private `key`.
    pub async fn get_private_data_validation_parameter(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        check_collection(collection)?;
        Ok(self
            .metadata_in(key, collection)
            .await?
            .remove(VALIDATION_PARAMETER))
    }

    /// Sets the key-level endorsement policy of a private `key`.
    pub async fn set_private_data_validation_parameter(
        &mut self,
        collection: &str,
        key: &str,
        policy: impl Into<Vec<u8>>,
    ) -> Result<()> {
        check_collection(collection)?;
        self.put_metadata_in(key, collection, VALIDATION_PARAMETER, policy.into())
            .await
    }

    // ---- other chaincodes and keys --------------------------------------

    /// Calls `function`-first `args` on chaincode `name` within this
    /// transaction; on `channel` when it is not empty (reads only, for
    /// another channel). A called chaincode's error comes back as a
    /// response with its status, not as `Err`.
    pub async fn invoke_chaincode<S: AsRef<[u8]>>(
        &mut self,
        name: &str,
        args: &[S],
        channel: &str,
    ) -> Result<ChaincodeResponse> {
        let target = if channel.is_empty() {
            name.to_owned()
        } else {
            format!("{name}/{channel}")
        };
        let spec = ChaincodeSpec {
            chaincode_id: Some(ChaincodeId {
                name: target,
                ..ChaincodeId::default()
            }),
            input: Some(ChaincodeInput {
                args: args.iter().map(|a| a.as_ref().to_vec()).collect(),
                ..ChaincodeInput::default()
            }),
            ..ChaincodeSpec::default()
        };
        let reply = self.request(MsgType::InvokeChaincode, spec).await?;
        let inner = ChaincodeMessage::decode(reply.as_slice())
            .map_err(Error::decode("ChaincodeMessage"))?;
        match MsgType::try_from(inner.r#type) {
            Ok(MsgType::Completed) => {
                let response = twill_protos::peer::Response::decode(inner.payload.as_slice())
                    .map_err(Error::decode("Response"))?;
                Ok(ChaincodeResponse {
                    status: response.status,
                    message: response.message,
                    payload: response.payload,
                })
            }
            Ok(MsgType::Error) => Err(Error::Peer(
                String::from_utf8_lossy(&inner.payload).into_owned(),
            )),
            _ => Err(Error::Protocol(format!(
                "chaincode invocation answered with {}",
                type_name(inner.r#type)
            ))),
        }
    }

    /// See [`create_composite_key`](crate::create_composite_key).
    pub fn create_composite_key<S: AsRef<str>>(
        &self,
        object_type: &str,
        attributes: &[S],
    ) -> Result<String> {
        keys::create_composite_key(object_type, attributes)
    }

    /// See [`split_composite_key`](crate::split_composite_key).
    pub fn split_composite_key(&self, key: &str) -> Result<(String, Vec<String>)> {
        keys::split_composite_key(key)
    }

    // ---- helpers -------------------------------------------------------

    async fn get_in(&mut self, key: &str, collection: &str) -> Result<Option<Vec<u8>>> {
        let request = GetState {
            key: key.to_owned(),
            collection: collection.to_owned(),
        };
        let value = self.request(MsgType::GetState, request).await?;
        Ok((!value.is_empty()).then_some(value))
    }

    async fn put_in(&mut self, key: &str, value: Vec<u8>, collection: &str) -> Result<()> {
        check_key(key)?;
        let request = PutState {
            key: key.to_owned(),
            value,
            collection: collection.to_owned(),
        };
        self.request(MsgType::PutState, request).await?;
        Ok(())
    }

    async fn del_in(&mut self, key: &str, collection: &str) -> Result<()> {
        check_key(key)?;
        let request = DelState {
            key: key.to_owned(),
            collection: collection.to_owned(),
        };
        self.request(MsgType::DelState, request).await?;
        Ok(())
    }

    async fn metadata_in(
        &mut self,
        key: &str,
        collection: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        let request = GetStateMetadata {
            key: key.to_owned(),
            collection: collection.to_owned(),
        };
        let reply = self.request(MsgType::GetStateMetadata, request).await?;
        let result = StateMetadataResult::decode(reply.as_slice())
            .map_err(Error::decode("StateMetadataResult"))?;
        Ok(result
            .entries
            .into_iter()
            .map(|entry| (entry.metakey, entry.value))
            .collect())
    }

    async fn put_metadata_in(
        &mut self,
        key: &str,
        collection: &str,
        metakey: &str,
        value: Vec<u8>,
    ) -> Result<()> {
        check_key(key)?;
        let request = PutStateMetadata {
            key: key.to_owned(),
            collection: collection.to_owned(),
            metadata: Some(StateMetadata {
                metakey: metakey.to_owned(),
                value,
            }),
        };
        self.request(MsgType::PutStateMetadata, request).await?;
        Ok(())
    }

    async fn range_in(
        &mut self,
        start: &str,
        end: &str,
        collection: &str,
        page: Option<(i32, &str)>,
    ) -> Result<(Vec<KeyValue>, PageMetadata)> {
        keys::check_simple_key(start)?;
        keys::check_simple_key(end)?;
        self.range_raw(start.to_owned(), end.to_owned(), collection, page)
            .await
    }

    async fn range_raw(
        &mut self,
        start: String,
        end: String,
        collection: &str,
        page: Option<(i32, &str)>,
    ) -> Result<(Vec<KeyValue>, PageMetadata)> {
        let request = GetStateByRange {
            start_key: start,
            end_key: end,
            collection: collection.to_owned(),
            metadata: query_metadata(page),
        };
        let (records, metadata) = self
            .query_all(MsgType::GetStateByRange, request.encode_to_vec())
            .await?;
        Ok((decode_kvs(&records)?, decode_page(&metadata)?))
    }

    async fn rich_query_in(
        &mut self,
        query: &str,
        collection: &str,
        page: Option<(i32, &str)>,
    ) -> Result<(Vec<KeyValue>, PageMetadata)> {
        let request = GetQueryResult {
            query: query.to_owned(),
            collection: collection.to_owned(),
            metadata: query_metadata(page),
        };
        let (records, metadata) = self
            .query_all(MsgType::GetQueryResult, request.encode_to_vec())
            .await?;
        Ok((decode_kvs(&records)?, decode_page(&metadata)?))
    }

    async fn query_response(&mut self, kind: MsgType, payload: Vec<u8>) -> Result<QueryResponse> {
        let reply = self
            .shared
            .request(&self.channel_id, &self.tx_id, kind, payload)
            .await?;
        QueryResponse::decode(reply.as_slice()).map_err(Error::decode("QueryResponse"))
    }

    /// Runs a query and follows its iterator to the end; returns the raw
    /// records and the first response's metadata.
    async fn query_all(
        &mut self,
        kind: MsgType,
        payload: Vec<u8>,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>)> {
        let first = self.query_response(kind, payload).await?;
        let mut records: Vec<Vec<u8>> = first.results.into_iter().map(|r| r.result_bytes).collect();
        let mut has_more = first.has_more;
        let id = first.id;
        while has_more {
            let next = QueryStateNext { id: id.clone() };
            let batch = match self
                .query_response(MsgType::QueryStateNext, next.encode_to_vec())
                .await
            {
                Ok(batch) if batch.results.is_empty() && batch.has_more => Err(Error::Protocol(
                    format!("query {id} claims more records but sent none"),
                )),
                other => other,
            };
            match batch {
                Ok(batch) => {
                    has_more = batch.has_more;
                    records.extend(batch.results.into_iter().map(|r| r.result_bytes));
                }
                Err(error) => {
                    self.close_query(&id).await;
                    return Err(error);
                }
            }
        }
        Ok((records, first.metadata))
    }

    /// Tells the peer to drop an unfinished query iterator; failures only
    /// logged, the transaction's own error matters more.
    async fn close_query(&mut self, id: &str) {
        let close = QueryStateClose { id: id.to_owned() };
        if let Err(error) = self
            .query_response(MsgType::QueryStateClose, close.encode_to_vec())
            .await
        {
            tracing::debug!(target: crate::LOG, query = id, %error, "closing query failed");
        }
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("key must not be empty".into()));
    }
    Ok(())
}

fn check_collection(collection: &str) -> Result<()> {
    if collection.is_empty() {
        return Err(Error::InvalidKey("collection must not be empty".into()));
    }
    Ok(())
}

fn query_metadata(page: Option<(i32, &str)>) -> Vec<u8> {
    page.map(|(page_size, bookmark)| {
        QueryMetadata {
            page_size,
            bookmark: bookmark.to_owned(),
        }
        .encode_to_vec()
    })
    .unwrap_or_default()
}

fn decode_kvs(records: &[Vec<u8>]) -> Result<Vec<KeyValue>> {
    records
        .iter()
        .map(|bytes| {
            let kv = queryresult::Kv::decode(bytes.as_slice()).map_err(Error::decode("KV"))?;
            Ok(KeyValue {
                namespace: kv.namespace,
                key: kv.key,
                value: kv.value,
            })
        })
        .collect()
}

fn decode_page(metadata: &[u8]) -> Result<PageMetadata> {
    let decoded =
        QueryResponseMetadata::decode(metadata).map_err(Error::decode("QueryResponseMetadata"))?;
    Ok(PageMetadata {
        fetched_records_count: decoded.fetched_records_count,
        bookmark: decoded.bookmark,
    })
}
