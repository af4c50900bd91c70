//! Chaincode events (`gateway.Gateway/ChaincodeEvents`) and block events
//! (`protos.Deliver/Deliver`), as async streams.
//!
//! Both streams wait for new blocks forever; dropping a stream cancels
//! the call. To resume after a restart, record progress in a
//! [`Checkpointer`] as events are processed and start
//! the next stream with [`EventsOptions::checkpoint`]: chaincode events
//! resume after the last transaction seen (the peer skips the events of
//! that block up to and including it), block events at the block after
//! the last one processed.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};
use prost::Message;
use twill_protos::common::{
    self, Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader,
};
use twill_protos::gateway::{
    ChaincodeEventsRequest as EventsRequestMessage, SignedChaincodeEventsRequest,
};
use twill_protos::orderer::{seek_position, SeekInfo, SeekNextCommit, SeekPosition, SeekSpecified};
use twill_protos::peer::deliver_response;

use crate::checkpoint::Checkpointer;
use crate::error::{Error, GatewayError, Result};
use crate::gateway::Gateway;

/// The stop block of block event requests: 2^53 − 1, as Fabric's clients
/// send (the largest integer a JavaScript number holds exactly).
pub const SEEK_STOP: u64 = (1 << 53) - 1;

/// Where an event stream starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsOptions {
    start_block: Option<u64>,
    after_transaction_id: Option<String>,
}

impl EventsOptions {
    /// From the next block committed.
    pub fn new() -> Self {
        Self::default()
    }

    /// From block `number` (which may already be committed).
    pub fn start_block(mut self, number: u64) -> Self {
        self.start_block = Some(number);
        self
    }

    /// Resume from a checkpoint: if it holds a position, start there
    /// (after its transaction, for chaincode events); otherwise keep the
    /// start block set, or the next block committed.
    pub fn checkpoint(mut self, checkpointer: &dyn Checkpointer) -> Self {
        if let Some(block) = checkpointer.block_number() {
            self.start_block = Some(block);
            self.after_transaction_id = checkpointer.transaction_id();
        }
        self
    }

    /// The start block, if set.
    pub fn start_block_number(&self) -> Option<u64> {
        self.start_block
    }

    /// The transaction after which chaincode events resume, if set.
    pub fn after_transaction_id(&self) -> Option<&str> {
        self.after_transaction_id.as_deref()
    }

    fn start_position(&self) -> SeekPosition {
        let kind = match self.start_block {
            Some(number) => seek_position::Type::Specified(SeekSpecified { number }),
            None => seek_position::Type::NextCommit(SeekNextCommit {}),
        };
        SeekPosition { r#type: Some(kind) }
    }
}

/// An event a chaincode emitted in a valid transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaincodeEvent {
    /// The block holding the transaction.
    pub block_number: u64,
    /// The chaincode.
    pub chaincode_name: String,
    /// The event name the chaincode gave.
    pub event_name: String,
    /// The transaction that emitted it.
    pub transaction_id: String,
    /// The event payload.
    pub payload: Vec<u8>,
}

/// The serialized `gateway.ChaincodeEventsRequest`.
pub(crate) fn chaincode_events_request(
    channel: &str,
    chaincode: &str,
    gateway: &Gateway,
    options: &EventsOptions,
) -> Vec<u8> {
    EventsRequestMessage {
        channel_id: channel.to_owned(),
        chaincode_id: chaincode.to_owned(),
        identity: gateway.identity().serialize(),
        start_position: Some(options.start_position()),
        after_transaction_id: options.after_transaction_id.clone().unwrap_or_default(),
    }
    .encode_to_vec()
}

/// A chaincode events request, signed or awaiting an offline signature.
#[derive(Clone)]
pub struct ChaincodeEventsRequest {
    gateway: Gateway,
    signed: SignedChaincodeEventsRequest,
}

impl std::fmt::Debug for ChaincodeEventsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeEventsRequest")
            .field("signed", &!self.signed.signature.is_empty())
            .finish_non_exhaustive()
    }
}

impl ChaincodeEventsRequest {
    pub(crate) fn new(gateway: Gateway, signed: SignedChaincodeEventsRequest) -> Self {
        ChaincodeEventsRequest { gateway, signed }
    }

    /// The serialized `gateway.SignedChaincodeEventsRequest`, for offline
    /// signing.
    pub fn bytes(&self) -> Vec<u8> {
        self.signed.encode_to_vec()
    }

    /// SHA-256 of the request: what the client signs.
    pub fn digest(&self) -> Vec<u8> {
        twill_crypto::sha256(&self.signed.request).to_vec()
    }

    /// Opens the stream.
    pub async fn events(&self) -> Result<ChaincodeEvents> {
        let mut signed = self.signed.clone();
        if signed.signature.is_empty() {
            signed.signature = self
                .gateway
                .sign("chaincode events request", &signed.request)?;
        }
        let mut client = self.gateway.inner.client.clone();
        let failed = |s: tonic::Status| Error::ChaincodeEvents {
            source: GatewayError::from_status(&s),
        };
        let stream = client
            .chaincode_events(signed)
            .await
            .map_err(failed)?
            .into_inner();
        let events = stream
            .map(move |item| match item {
                Ok(response) => {
                    let block_number = response.block_number;
                    futures::stream::iter(
                        response
                            .events
                            .into_iter()
                            .map(move |e| {
                                Ok(ChaincodeEvent {
                                    block_number,
                                    chaincode_name: e.chaincode_id,
                                    event_name: e.event_name,
                                    transaction_id: e.tx_id,
                                    payload: e.payload,
                                })
                            })
                            .collect::<Vec<_>>(),
                    )
                }
                Err(s) => futures::stream::iter(vec![Err(failed(s))]),
            })
            .flatten()
            .boxed();
        Ok(ChaincodeEvents { inner: events })
    }
}

/// A stream of [`ChaincodeEvent`]s in ledger order. Use it with
/// [`StreamExt::next`]; drop it to stop.
pub struct ChaincodeEvents {
    inner: BoxStream<'static, Result<ChaincodeEvent>>,
}

impl std::fmt::Debug for ChaincodeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeEvents").finish_non_exhaustive()
    }
}

impl Stream for ChaincodeEvents {
    type Item = Result<ChaincodeEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// The payload of a Deliver seek envelope: a DELIVER_SEEK_INFO header
/// with no transaction id and no nonce (as Fabric's gateway clients send),
/// and a seek from the start position to [`SEEK_STOP`], waiting for blocks
/// not yet committed.
pub(crate) fn seek_payload(channel: &str, gateway: &Gateway, options: &EventsOptions) -> Vec<u8> {
    let channel_header = ChannelHeader {
        r#type: HeaderType::DeliverSeekInfo as i32,
        version: 0,
        timestamp: Some(twill_configtx::block::now_timestamp()),
        channel_id: channel.to_owned(),
        tx_id: String::new(),
        epoch: 0,
        extension: Vec::new(),
        tls_cert_hash: gateway.inner.tls_cert_hash.clone().unwrap_or_default(),
    };
    let seek = SeekInfo {
        start: Some(options.start_position()),
        stop: Some(SeekPosition {
            r#type: Some(seek_position::Type::Specified(SeekSpecified {
                number: SEEK_STOP,
            })),
        }),
        ..Default::default()
    };
    Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: SignatureHeader {
                creator: gateway.identity().serialize(),
                nonce: Vec::new(),
            }
            .encode_to_vec(),
        }),
        data: seek.encode_to_vec(),
    }
    .encode_to_vec()
}

/// A block events request (a seek envelope), signed or awaiting an
/// offline signature.
#[derive(Clone)]
pub struct BlockEventsRequest {
    gateway: Gateway,
    envelope: Envelope,
}

impl std::fmt::Debug for BlockEventsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEventsRequest")
            .field("signed", &!self.envelope.signature.is_empty())
            .finish_non_exhaustive()
    }
}

impl BlockEventsRequest {
    pub(crate) fn new(gateway: Gateway, envelope: Envelope) -> Self {
        BlockEventsRequest { gateway, envelope }
    }

    /// The serialized `common.Envelope`, for offline signing.
    pub fn bytes(&self) -> Vec<u8> {
        self.envelope.encode_to_vec()
    }

    /// SHA-256 of the envelope payload: what the client signs.
    pub fn digest(&self) -> Vec<u8> {
        twill_crypto::sha256(&self.envelope.payload).to_vec()
    }

    /// Opens the stream: sends the seek envelope once and keeps the
    /// request side open (closing it could end the stream).
    pub async fn events(&self) -> Result<BlockEvents> {
        let mut envelope = self.envelope.clone();
        if envelope.signature.is_empty() {
            envelope.signature = self
                .gateway
                .sign("block events request", &envelope.payload)?;
        }
        let outbound =
            futures::stream::once(async move { envelope }).chain(futures::stream::pending());
        let mut client = self.gateway.inner.deliver.clone();
        let stream = client
            .deliver(outbound)
            .await
            .map_err(|s| Error::BlockEvents {
                source: GatewayError::from_status(&s),
            })?
            .into_inner();
        let blocks = futures::stream::unfold(Some(stream), |state| async move {
            let mut stream = state?;
            loop {
                match stream.next().await {
                    None => return None,
                    Some(Err(s)) => {
                        let e = Error::BlockEvents {
                            source: GatewayError::from_status(&s),
                        };
                        return Some((Err(e), None));
                    }
                    Some(Ok(response)) => match response.r#type {
                        Some(deliver_response::Type::Block(block)) => {
                            return Some((Ok(block), Some(stream)))
                        }
                        Some(deliver_response::Type::Status(status))
                            if status == common::Status::Success as i32 =>
                        {
                            return None
                        }
                        Some(deliver_response::Type::Status(status)) => {
                            return Some((Err(Error::DeliverStatus { status }), None))
                        }
                        // Not asked for; skip.
                        Some(_) | None => continue,
                    },
                }
            }
        })
        .boxed();
        Ok(BlockEvents { inner: blocks })
    }
}

/// A stream of full blocks in order. Use it with
/// [`StreamExt::next`]; drop it to stop. It ends
/// after an error.
pub struct BlockEvents {
    inner: BoxStream<'static, Result<Block>>,
}

impl std::fmt::Debug for BlockEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEvents").finish_non_exhaustive()
    }
}

impl Stream for BlockEvents {
    type Item = Result<Block>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// The block number of a block (0 when it has no header).
pub fn block_number(block: &Block) -> u64 {
    block.header.as_ref().map_or(0, |h| h.number)
}
