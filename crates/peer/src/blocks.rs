//! What the peer reads out of blocks: the TRANSACTIONS_FILTER, config
//! blocks, orderer signatures, and Fabric's filtered block view.

use prost::Message;
use twill_configtx::block::block_data_hash;
use twill_protos::common::{
    Block, BlockData, BlockMetadataIndex, ChannelHeader, Envelope, HeaderType, Payload,
};
use twill_protos::peer::{
    filtered_transaction, ChaincodeAction, ChaincodeActionPayload, ChaincodeEvent, FilteredBlock,
    FilteredChaincodeAction, FilteredTransaction, FilteredTransactionActions,
    ProposalResponsePayload, Transaction, TxValidationCode,
};

const LOG: &str = "peer::blocks";

/// Index of the TRANSACTIONS_FILTER metadata slot.
pub const TX_FILTER_SLOT: usize = BlockMetadataIndex::TransactionsFilter as usize;
const METADATA_SLOTS: usize = BlockMetadataIndex::CommitHash as usize + 1;

/// A block that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A part every block must have is missing or malformed.
    #[error("block {number}: {reason}")]
    Malformed {
        /// Block number (`u64::MAX` without a header).
        number: u64,
        /// What is wrong.
        reason: String,
    },
    /// The data hash in the header does not match the data.
    #[error("block {number}: data hash does not match the block's data")]
    DataHash {
        /// Block number.
        number: u64,
    },
    /// The orderer signatures do not satisfy `/Channel/Orderer/BlockValidation`.
    #[error(
        "block {number}: orderer signatures do not satisfy the block validation policy: {reason}"
    )]
    Signatures {
        /// Block number.
        number: u64,
        /// Why.
        reason: String,
    },
}

/// The block's number, or `u64::MAX` without a header.
pub fn block_number(block: &Block) -> u64 {
    block.header.as_ref().map_or(u64::MAX, |h| h.number)
}

/// Number of transactions (data entries) in the block.
pub fn tx_count(block: &Block) -> usize {
    block.data.as_ref().map_or(0, |d| d.data.len())
}

/// The TRANSACTIONS_FILTER bytes of a block (empty when unset).
pub fn tx_filter(block: &Block) -> &[u8] {
    block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(TX_FILTER_SLOT))
        .map_or(&[], Vec::as_slice)
}

/// Writes `codes` into the block's TRANSACTIONS_FILTER slot, growing the
/// metadata to Fabric's five slots if needed.
pub fn set_tx_filter(block: &mut Block, codes: Vec<u8>) {
    let md = block.metadata.get_or_insert_with(Default::default);
    if md.metadata.len() < METADATA_SLOTS {
        md.metadata.resize(METADATA_SLOTS, Vec::new());
    }
    md.metadata[TX_FILTER_SLOT] = codes;
}

/// Codes as TRANSACTIONS_FILTER bytes (one per transaction).
pub fn filter_bytes(codes: &[TxValidationCode]) -> Vec<u8> {
    codes
        .iter()
        .map(|c| u8::try_from(*c as i32).unwrap_or(u8::MAX))
        .collect()
}

/// A filter marking all `n` transactions VALID.
pub fn all_valid(n: usize) -> Vec<u8> {
    vec![TxValidationCode::Valid as u8; n]
}

/// The channel header of the envelope at `index`, if it decodes.
pub fn channel_header_at(
    block: &Block,
    index: usize,
) -> Option<(Envelope, Payload, ChannelHeader)> {
    let bytes = block.data.as_ref()?.data.get(index)?;
    let env = Envelope::decode(bytes.as_slice()).ok()?;
    let payload = Payload::decode(env.payload.as_slice()).ok()?;
    let ch = ChannelHeader::decode(payload.header.as_ref()?.channel_header.as_slice()).ok()?;
    Some((env, payload, ch))
}

/// Whether the block holds exactly one envelope and it is a CONFIG one.
pub fn is_config_block(block: &Block) -> bool {
    tx_count(block) == 1
        && channel_header_at(block, 0)
            .is_some_and(|(_, _, ch)| ch.r#type == HeaderType::Config as i32)
}

/// Checks that the header's data hash matches the data.
pub fn check_data_hash(block: &Block) -> Result<(), BlockError> {
    let number = block_number(block);
    let header = block.header.as_ref().ok_or_else(|| BlockError::Malformed {
        number,
        reason: "block has no header".into(),
    })?;
    let empty = BlockData::default();
    if header.data_hash != block_data_hash(block.data.as_ref().unwrap_or(&empty)) {
        return Err(BlockError::DataHash { number });
    }
    Ok(())
}

/// Fabric's filtered view of a block: per transaction its id, header type
/// and validation code and, for endorser transactions, the chaincode events
/// without their payloads.
///
/// Where this differs from Fabric: a transaction whose actions do not
/// decode is listed with no actions (Fabric fails the whole block with
/// BAD_REQUEST); such a transaction is never VALID anyway.
pub fn to_filtered_block(block: &Block) -> FilteredBlock {
    let number = block_number(block);
    let filter = tx_filter(block);
    let mut out = FilteredBlock {
        channel_id: String::new(),
        number,
        filtered_transactions: Vec::new(),
    };
    for index in 0..tx_count(block) {
        let Some((_, payload, ch)) = channel_header_at(block, index) else {
            tracing::debug!(target: LOG, number, index, "skipping an envelope that does not decode");
            continue;
        };
        out.channel_id.clone_from(&ch.channel_id);
        let code = filter
            .get(index)
            .copied()
            .unwrap_or(TxValidationCode::NotValidated as u8);
        let mut tx = FilteredTransaction {
            txid: ch.tx_id.clone(),
            r#type: ch.r#type,
            tx_validation_code: i32::from(code),
            data: None,
        };
        if ch.r#type == HeaderType::EndorserTransaction as i32 {
            let actions = filtered_actions(&payload.data).unwrap_or_else(|reason| {
                tracing::debug!(target: LOG, number, index, %reason, "transaction actions do not decode");
                FilteredTransactionActions::default()
            });
            tx.data = Some(filtered_transaction::Data::TransactionActions(actions));
        }
        out.filtered_transactions.push(tx);
    }
    out
}

fn filtered_actions(tx_bytes: &[u8]) -> Result<FilteredTransactionActions, String> {
    let mut out = FilteredTransactionActions::default();
    for event in tx_events(tx_bytes)? {
        out.chaincode_actions.push(FilteredChaincodeAction {
            chaincode_event: Some(ChaincodeEvent {
                payload: Vec::new(),
                ..event
            }),
        });
    }
    Ok(out)
}

/// The chaincode events of an endorser transaction's actions (`tx_bytes`
/// is the payload data, a `Transaction`), with their payloads; actions
/// without an event (empty chaincode id) are skipped.
fn tx_events(tx_bytes: &[u8]) -> Result<Vec<ChaincodeEvent>, String> {
    let tx = Transaction::decode(tx_bytes).map_err(|e| format!("Transaction: {e}"))?;
    let mut out = Vec::new();
    for action in &tx.actions {
        let cap = ChaincodeActionPayload::decode(action.payload.as_slice())
            .map_err(|e| format!("ChaincodeActionPayload: {e}"))?;
        let Some(endorsed) = cap.action else {
            continue;
        };
        let prp = ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
            .map_err(|e| format!("ProposalResponsePayload: {e}"))?;
        let cca = ChaincodeAction::decode(prp.extension.as_slice())
            .map_err(|e| format!("ChaincodeAction: {e}"))?;
        let event = ChaincodeEvent::decode(cca.events.as_slice())
            .map_err(|e| format!("ChaincodeEvent: {e}"))?;
        if !event.chaincode_id.is_empty() {
            out.push(event);
        }
    }
    Ok(out)
}

/// The chaincode events of `block`'s VALID endorser transactions emitted by
/// chaincode `chaincode`, in transaction order, each with the index of its
/// transaction in the block and its payload (what the gateway's
/// ChaincodeEvents service streams). Events missing a name or tx id are
/// left out, as Fabric does.
pub fn chaincode_events(block: &Block, chaincode: &str) -> Vec<(usize, ChaincodeEvent)> {
    let filter = tx_filter(block);
    let mut out = Vec::new();
    for index in 0..tx_count(block) {
        if filter.get(index).copied() != Some(TxValidationCode::Valid as u8) {
            continue;
        }
        let Some((_, payload, ch)) = channel_header_at(block, index) else {
            continue;
        };
        if ch.r#type != HeaderType::EndorserTransaction as i32 {
            continue;
        }
        let Ok(events) = tx_events(&payload.data) else {
            continue;
        };
        out.extend(
            events
                .into_iter()
                .filter(|e| {
                    e.chaincode_id == chaincode && !e.event_name.is_empty() && !e.tx_id.is_empty()
                })
                .map(|e| (index, e)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use twill_configtx::block::{channel_header, envelope, new_block};
    use twill_protos::common::SignatureHeader;
    use twill_protos::peer::{ChaincodeEndorsedAction, TransactionAction};

    fn endorser_tx(tx_id: &str, event: Option<ChaincodeEvent>) -> Vec<u8> {
        let cca = ChaincodeAction {
            events: event.map(|e| e.encode_to_vec()).unwrap_or_default(),
            ..Default::default()
        };
        let prp = ProposalResponsePayload {
            proposal_hash: vec![1],
            extension: cca.encode_to_vec(),
        };
        let cap = ChaincodeActionPayload {
            chaincode_proposal_payload: vec![],
            action: Some(ChaincodeEndorsedAction {
                proposal_response_payload: prp.encode_to_vec(),
                endorsements: vec![],
            }),
        };
        let tx = Transaction {
            actions: vec![TransactionAction {
                header: vec![],
                payload: cap.encode_to_vec(),
            }],
        };
        let ch = channel_header(HeaderType::EndorserTransaction, 0, "ch", tx_id);
        envelope(&ch, &SignatureHeader::default(), tx.encode_to_vec()).encode_to_vec()
    }

    #[test]
    fn filtered_block_strips_event_payloads() {
        let ev = ChaincodeEvent {
            chaincode_id: "cc".into(),
            tx_id: "t1".into(),
            event_name: "E".into(),
            payload: b"secret".to_vec(),
        };
        let mut block = new_block(
            3,
            vec![],
            vec![
                endorser_tx("t1", Some(ev)),
                endorser_tx("t2", None),
                vec![0xff],
            ],
        );
        set_tx_filter(&mut block, vec![0, 11, 0]);
        let fb = to_filtered_block(&block);
        assert_eq!(fb.number, 3);
        assert_eq!(fb.channel_id, "ch");
        assert_eq!(fb.filtered_transactions.len(), 2);
        let t1 = &fb.filtered_transactions[0];
        assert_eq!(t1.txid, "t1");
        assert_eq!(t1.tx_validation_code, 0);
        let Some(filtered_transaction::Data::TransactionActions(a)) = &t1.data else {
            panic!("no actions");
        };
        let ev = a.chaincode_actions[0].chaincode_event.as_ref().unwrap();
        assert_eq!(ev.event_name, "E");
        assert!(ev.payload.is_empty());
        assert_eq!(fb.filtered_transactions[1].tx_validation_code, 11);
    }

    #[test]
    fn filters_and_config_detection() {
        let mut block = new_block(1, vec![], vec![vec![1], vec![2]]);
        assert!(tx_filter(&block).is_empty());
        set_tx_filter(&mut block, all_valid(2));
        assert_eq!(tx_filter(&block), &[0, 0]);
        assert!(!is_config_block(&block));
        check_data_hash(&block).unwrap();
        block.header.as_mut().unwrap().data_hash = vec![0];
        assert!(matches!(
            check_data_hash(&block),
            Err(BlockError::DataHash { number: 1 })
        ));
        let mut empty = Block::default();
        set_tx_filter(&mut empty, vec![]);
        assert_eq!(empty.metadata.unwrap().metadata.len(), METADATA_SLOTS);
    }
}
