//! Protobuf encoding of raft-rs types (rust-protobuf 2, raft-rs's default
//! codec). The cluster transport carries each raft `Message` as opaque bytes
//! produced here.

use ::raft::eraftpb::Message;
use protobuf::Message as _;

use super::RaftResult;

/// Encodes a raft message for the wire.
pub fn encode_message(msg: &Message) -> RaftResult<Vec<u8>> {
    Ok(msg.write_to_bytes()?)
}

/// Decodes a raft message received from the wire.
pub fn decode_message(bytes: &[u8]) -> RaftResult<Message> {
    Ok(Message::parse_from_bytes(bytes)?)
}

/// Decodes any raft-rs protobuf type.
pub(crate) fn decode<M: protobuf::Message>(bytes: &[u8]) -> RaftResult<M> {
    Ok(M::parse_from_bytes(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::raft::eraftpb::{Entry, MessageType};

    #[test]
    fn message_round_trip() {
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgAppend);
        msg.to = 2;
        msg.from = 1;
        msg.term = 7;
        msg.mut_entries().push(Entry {
            index: 9,
            term: 7,
            data: b"payload".to_vec().into(),
            ..Entry::default()
        });
        let bytes = encode_message(&msg).expect("encode");
        let back = decode_message(&bytes).expect("decode");
        assert_eq!(back, msg);
        assert!(decode_message(b"\xff\xff\xff").is_err());
    }
}
