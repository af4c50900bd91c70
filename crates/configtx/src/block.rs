//! Blocks, envelopes and the hashes Fabric defines over them.

use prost::Message;
use twill_policy::{Policy, SignedData};
use twill_protos::common::{
    Block, BlockData, BlockHeader, BlockMetadata, BlockMetadataIndex, ChannelHeader, Envelope,
    Header, HeaderType, Metadata, Payload, SignatureHeader,
};

/// Number of block metadata slots (SIGNATURES .. COMMIT_HASH).
pub const METADATA_SLOTS: usize = 5;

/// Transaction id as Fabric computes it: hex of SHA-256(nonce ‖ creator).
pub fn compute_tx_id(nonce: &[u8], creator: &[u8]) -> String {
    let mut hasher = twill_crypto::Sha256Hasher::new();
    hasher.update(nonce);
    hasher.update(creator);
    hex::encode(hasher.finalize())
}

/// SHA-256 over the block's data entries, concatenated in order.
pub fn block_data_hash(data: &BlockData) -> [u8; 32] {
    let mut hasher = twill_crypto::Sha256Hasher::new();
    for entry in &data.data {
        hasher.update(entry);
    }
    hasher.finalize()
}

/// The DER encoding Fabric hashes for a block header:
/// `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }`.
pub fn block_header_bytes(header: &BlockHeader) -> Vec<u8> {
    let mut body = Vec::with_capacity(header.previous_hash.len() + header.data_hash.len() + 20);
    der_integer_u64(&mut body, header.number);
    der_tlv(&mut body, 0x04, &header.previous_hash);
    der_tlv(&mut body, 0x04, &header.data_hash);
    let mut out = Vec::with_capacity(body.len() + 6);
    der_tlv(&mut out, 0x30, &body);
    out
}

/// SHA-256 of [`block_header_bytes`]: the value a next block's
/// `previous_hash` must hold.
pub fn block_header_hash(header: &BlockHeader) -> [u8; 32] {
    twill_crypto::sha256(&block_header_bytes(header))
}

fn der_integer_u64(out: &mut Vec<u8>, value: u64) {
    let bytes = value.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut content = Vec::with_capacity(9);
    // A set top bit would read as negative; DER prefixes a zero byte.
    if bytes[first] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(&bytes[first..]);
    der_tlv(out, 0x02, &content);
}

fn der_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let len_bytes = (len as u64).to_be_bytes();
        let first = len_bytes.iter().position(|b| *b != 0).unwrap_or(7);
        out.push(0x80 | (8 - first) as u8);
        out.extend_from_slice(&len_bytes[first..]);
    }
    out.extend_from_slice(content);
}

/// A block with the given number, previous hash and data; data hash set,
/// metadata holding [`METADATA_SLOTS`] empty slots.
pub fn new_block(number: u64, previous_hash: Vec<u8>, data: Vec<Vec<u8>>) -> Block {
    let data = BlockData { data };
    let data_hash = block_data_hash(&data).to_vec();
    Block {
        header: Some(BlockHeader {
            number,
            previous_hash,
            data_hash,
        }),
        data: Some(data),
        metadata: Some(BlockMetadata {
            metadata: vec![Vec::new(); METADATA_SLOTS],
        }),
    }
}

/// A channel header of the given type for `channel_id`, stamped now.
pub fn channel_header(
    kind: HeaderType,
    version: i32,
    channel_id: &str,
    tx_id: &str,
) -> ChannelHeader {
    ChannelHeader {
        r#type: kind as i32,
        version,
        timestamp: Some(now_timestamp()),
        channel_id: channel_id.to_string(),
        tx_id: tx_id.to_string(),
        epoch: 0,
        extension: Vec::new(),
        tls_cert_hash: Vec::new(),
    }
}

/// The current time as a protobuf timestamp.
pub fn now_timestamp() -> prost_types::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
    }
}

/// Wraps data into an unsigned envelope with the given headers.
pub fn envelope(
    channel_header: &ChannelHeader,
    signature_header: &SignatureHeader,
    data: Vec<u8>,
) -> Envelope {
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: signature_header.encode_to_vec(),
        }),
        data,
    };
    Envelope {
        payload: payload.encode_to_vec(),
        signature: Vec::new(),
    }
}

/// Why a block's orderer signatures were refused by
/// [`verify_block_signatures`].
#[derive(Debug, thiserror::Error)]
pub enum BlockVerifyError {
    /// The block has no header.
    #[error("block has no header")]
    NoHeader,
    /// A message in the SIGNATURES slot does not decode.
    #[error("block {number}: cannot decode {what}: {source}")]
    Decode {
        /// The block number.
        number: u64,
        /// Which message.
        what: &'static str,
        /// The decoder's error.
        source: prost::DecodeError,
    },
    /// The SIGNATURES slot is absent or empty.
    #[error("block {number} carries no orderer signatures")]
    NoSignatures {
        /// The block number.
        number: u64,
    },
    /// The signatures do not satisfy the block validation policy.
    #[error("block {number}: signatures do not satisfy the block validation policy: {source}")]
    PolicyNotSatisfied {
        /// The block number.
        number: u64,
        /// Why the policy failed.
        source: twill_policy::PolicyError,
    },
}

/// The payload of the endorser transaction for `proposal`, carrying the
/// endorsed result `proposal_response_payload` and its `endorsements`: the
/// proposal's header, and one action whose payload holds the proposal
/// payload without its transient data and the endorsed action. This is
/// the exact byte string the creator signs and the committers verify (the
/// gateway returns it unsigned; `twill chaincode invoke` signs it itself).
pub fn endorser_transaction_payload(
    proposal: &twill_protos::peer::Proposal,
    proposal_response_payload: Vec<u8>,
    endorsements: Vec<twill_protos::peer::Endorsement>,
) -> Result<Vec<u8>, prost::DecodeError> {
    use twill_protos::peer::{
        ChaincodeActionPayload, ChaincodeEndorsedAction, ChaincodeProposalPayload, Transaction,
        TransactionAction,
    };
    let header = twill_protos::common::Header::decode(proposal.header.as_slice())?;
    let mut proposal_payload = ChaincodeProposalPayload::decode(proposal.payload.as_slice())?;
    proposal_payload.transient_map.clear();
    let action_payload = ChaincodeActionPayload {
        chaincode_proposal_payload: proposal_payload.encode_to_vec(),
        action: Some(ChaincodeEndorsedAction {
            proposal_response_payload,
            endorsements,
        }),
    };
    let tx = Transaction {
        actions: vec![TransactionAction {
            header: header.signature_header.clone(),
            payload: action_payload.encode_to_vec(),
        }],
    };
    Ok(twill_protos::common::Payload {
        header: Some(header),
        data: tx.encode_to_vec(),
    }
    .encode_to_vec())
}

/// Checks a block's orderer signatures against `policy` (normally
/// `/Channel/Orderer/BlockValidation`), as peers and following orderers do.
///
/// Each entry of the SIGNATURES slot's `Metadata` stands for the signed data
/// `value ‖ signature_header ‖ DER(header)` (see [`block_header_bytes`]) by
/// the header's creator; the policy decides whether the entries that verify
/// are enough. Entries with only an identifier header (BFT orderers) are
/// skipped. The data hash is not checked here: the header commits to it, so
/// compare it with [`block_data_hash`] separately.
pub fn verify_block_signatures(block: &Block, policy: &dyn Policy) -> Result<(), BlockVerifyError> {
    let header = block.header.as_ref().ok_or(BlockVerifyError::NoHeader)?;
    let number = header.number;
    let slot = block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(BlockMetadataIndex::Signatures as usize))
        .filter(|bytes| !bytes.is_empty())
        .ok_or(BlockVerifyError::NoSignatures { number })?;
    let md = Metadata::decode(slot.as_slice()).map_err(|source| BlockVerifyError::Decode {
        number,
        what: "block Metadata",
        source,
    })?;
    let header_bytes = block_header_bytes(header);
    let mut signed = Vec::with_capacity(md.signatures.len());
    for sig in &md.signatures {
        if sig.signature_header.is_empty() && !sig.identifier_header.is_empty() {
            continue;
        }
        let sh = SignatureHeader::decode(sig.signature_header.as_slice()).map_err(|source| {
            BlockVerifyError::Decode {
                number,
                what: "SignatureHeader",
                source,
            }
        })?;
        let mut data =
            Vec::with_capacity(md.value.len() + sig.signature_header.len() + header_bytes.len());
        data.extend_from_slice(&md.value);
        data.extend_from_slice(&sig.signature_header);
        data.extend_from_slice(&header_bytes);
        signed.push(SignedData {
            data,
            identity: sh.creator,
            signature: sig.signature.clone(),
        });
    }
    policy
        .evaluate(&signed)
        .map_err(|source| BlockVerifyError::PolicyNotSatisfied { number, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_id_fixed_vector() {
        // SHA-256("nonce-1" || "creator-A")
        let id = compute_tx_id(b"nonce-1", b"creator-A");
        assert_eq!(
            id,
            "6dec4c4767ed7e728c0c14c61b88c006f29ec2f359f865e982294946a67a94bf"
        );
        assert_eq!(id.len(), 64);
        assert_eq!(
            compute_tx_id(b"", b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn header_der_fixed_vectors() {
        let h = BlockHeader {
            number: 0,
            previous_hash: vec![],
            data_hash: vec![0xAB; 2],
        };
        assert_eq!(
            block_header_bytes(&h),
            vec![0x30, 0x09, 0x02, 0x01, 0x00, 0x04, 0x00, 0x04, 0x02, 0xAB, 0xAB]
        );
        // 128 needs a leading zero to stay positive.
        let h = BlockHeader {
            number: 128,
            previous_hash: vec![1],
            data_hash: vec![2],
        };
        assert_eq!(
            block_header_bytes(&h),
            vec![0x30, 0x0A, 0x02, 0x02, 0x00, 0x80, 0x04, 0x01, 0x01, 0x04, 0x01, 0x02]
        );
        // Two 32-byte hashes: body = 3 + 34 + 34 = 71 bytes, still short-form length.
        let h = BlockHeader {
            number: 1,
            previous_hash: vec![0x11; 32],
            data_hash: vec![0x22; 32],
        };
        let der = block_header_bytes(&h);
        assert_eq!(&der[..5], &[0x30, 71, 0x02, 0x01, 0x01]);
        // Independently computed: SHA-256 over the DER above.
        assert_eq!(
            hex::encode(block_header_hash(&h)),
            "2a44e23703a89329b8e1050c1fc8855c2b2e1fd990091e145a5cada75d513896"
        );
    }

    #[test]
    fn long_form_lengths() {
        let h = BlockHeader {
            number: u64::MAX,
            previous_hash: vec![0; 200],
            data_hash: vec![],
        };
        let der = block_header_bytes(&h);
        // INTEGER u64::MAX = 02 09 00 FF*8 (11 bytes), OCTET STRING 04 81 C8 + 200, 04 00
        assert_eq!(&der[..3], &[0x30, 0x81, (11 + 203 + 2) as u8]);
        assert_eq!(&der[3..6], &[0x02, 0x09, 0x00]);
    }

    #[test]
    fn data_hash_is_hash_of_concatenation() {
        let b = new_block(3, vec![9], vec![b"ab".to_vec(), b"c".to_vec()]);
        assert_eq!(
            b.header.unwrap().data_hash,
            twill_crypto::sha256(b"abc").to_vec()
        );
        assert_eq!(b.metadata.unwrap().metadata.len(), METADATA_SLOTS);
    }
}
