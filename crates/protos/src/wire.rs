//! Reading single fields straight from protobuf bytes, without decoding
//! (and copying) the whole message.
//!
//! Hot paths such as indexing a block's transaction ids only need one small
//! field buried three messages deep in each envelope; decoding the envelope
//! with prost would copy its whole payload twice. [`field`] walks one
//! message level and returns a borrowed slice of a length-delimited field.
//!
//! ```
//! use prost::Message;
//! use twill_protos::common::{ChannelHeader, Envelope, Header, Payload};
//!
//! let ch = ChannelHeader { tx_id: "abc".into(), ..Default::default() };
//! let payload = Payload {
//!     header: Some(Header { channel_header: ch.encode_to_vec(), signature_header: vec![] }),
//!     data: vec![0; 4096],
//! };
//! let env = Envelope { payload: payload.encode_to_vec(), signature: vec![1] }.encode_to_vec();
//! assert_eq!(twill_protos::wire::envelope_tx_id(&env).as_deref(), Some("abc"));
//! ```

/// Why a message could not be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The bytes end inside a field.
    Truncated,
    /// A varint longer than ten bytes.
    BadVarint,
    /// A wire type protobuf does not define (or the deprecated groups).
    BadWireType(u8),
    /// Field number zero.
    ZeroField,
    /// The field is not length-delimited.
    NotBytes,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated => write!(f, "message truncated"),
            WireError::BadVarint => write!(f, "varint too long"),
            WireError::BadWireType(t) => write!(f, "unsupported wire type {t}"),
            WireError::ZeroField => write!(f, "field number 0"),
            WireError::NotBytes => write!(f, "field is not length-delimited"),
        }
    }
}

impl std::error::Error for WireError {}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in 0..10 {
        let byte = *buf.get(*pos).ok_or(WireError::Truncated)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::BadVarint)
}

/// The bytes of length-delimited field `number` of the message in `msg`
/// (the last occurrence, as protobuf decoders do for scalar fields), or
/// `None` if absent. Every field of this level is walked, so a malformed
/// message is an error even when the field comes early.
pub fn field(msg: &[u8], number: u32) -> Result<Option<&[u8]>, WireError> {
    let mut pos = 0;
    let mut found = None;
    while pos < msg.len() {
        let key = varint(msg, &mut pos)?;
        let wire_type = (key & 7) as u8;
        let field_no = key >> 3;
        if field_no == 0 {
            return Err(WireError::ZeroField);
        }
        match wire_type {
            0 => {
                varint(msg, &mut pos)?;
                if field_no == u64::from(number) {
                    return Err(WireError::NotBytes);
                }
            }
            1 | 5 => {
                let len = if wire_type == 1 { 8 } else { 4 };
                pos = pos.checked_add(len).ok_or(WireError::Truncated)?;
                if pos > msg.len() {
                    return Err(WireError::Truncated);
                }
                if field_no == u64::from(number) {
                    return Err(WireError::NotBytes);
                }
            }
            2 => {
                let len =
                    usize::try_from(varint(msg, &mut pos)?).map_err(|_| WireError::Truncated)?;
                let end = pos.checked_add(len).ok_or(WireError::Truncated)?;
                let bytes = msg.get(pos..end).ok_or(WireError::Truncated)?;
                if field_no == u64::from(number) {
                    found = Some(bytes);
                }
                pos = end;
            }
            other => return Err(WireError::BadWireType(other)),
        }
    }
    Ok(found)
}

/// The transaction id in an encoded `common.Envelope` (payload → header →
/// channel header → `tx_id`), or `None` if the envelope is malformed on that
/// path or the id is empty or not UTF-8.
pub fn envelope_tx_id(envelope: &[u8]) -> Option<String> {
    let payload = field(envelope, 1).ok()??;
    let header = field(payload, 1).ok()??;
    let channel_header = field(header, 1).ok()??;
    let tx_id = field(channel_header, 5).ok()??;
    let tx_id = std::str::from_utf8(tx_id).ok()?;
    (!tx_id.is_empty()).then(|| tx_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{ChannelHeader, Envelope, Header, Payload};
    use prost::Message;

    fn env_with(tx_id: &str) -> Vec<u8> {
        let ch = ChannelHeader {
            r#type: 3,
            version: 1,
            channel_id: "mychannel".into(),
            tx_id: tx_id.into(),
            epoch: 7,
            ..Default::default()
        };
        let payload = Payload {
            header: Some(Header {
                channel_header: ch.encode_to_vec(),
                signature_header: vec![9; 40],
            }),
            data: vec![5; 300],
        };
        Envelope {
            payload: payload.encode_to_vec(),
            signature: vec![1; 70],
        }
        .encode_to_vec()
    }

    #[test]
    fn finds_the_tx_id() {
        assert_eq!(envelope_tx_id(&env_with("t1")).as_deref(), Some("t1"));
        assert_eq!(envelope_tx_id(&env_with("")), None);
    }

    #[test]
    fn last_occurrence_wins_like_prost() {
        let mut bytes = Envelope {
            payload: vec![1],
            signature: vec![],
        }
        .encode_to_vec();
        bytes.extend(
            Envelope {
                payload: vec![2, 3],
                signature: vec![],
            }
            .encode_to_vec(),
        );
        assert_eq!(field(&bytes, 1), Ok(Some(&[2u8, 3][..])));
        let decoded = Envelope::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.payload, vec![2, 3]);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = env_with("t1");
        for cut in 0..good.len() {
            // Any prefix either walks or fails cleanly.
            let _ = envelope_tx_id(&good[..cut]);
        }
        assert_eq!(field(&[0x0a, 0x05, 1], 1), Err(WireError::Truncated));
        assert_eq!(field(&[0x08, 0x01], 1), Err(WireError::NotBytes));
        assert_eq!(field(&[0x0b], 1), Err(WireError::BadWireType(3)));
        assert_eq!(field(&[0x00], 1), Err(WireError::ZeroField));
        let mut long = vec![0x08];
        long.extend([0xff; 11]);
        assert_eq!(field(&long, 2), Err(WireError::BadVarint));
        assert_eq!(envelope_tx_id(b"garbage bytes"), None);
    }

    #[test]
    fn skips_other_wire_types() {
        // field 2 fixed64, field 3 fixed32, field 4 varint, then field 1 bytes
        let mut msg = vec![0x11];
        msg.extend([0; 8]);
        msg.push(0x1d);
        msg.extend([0; 4]);
        msg.extend([0x20, 0x96, 0x01]);
        msg.extend([0x0a, 0x02, b'h', b'i']);
        assert_eq!(field(&msg, 1), Ok(Some(&b"hi"[..])));
        assert_eq!(field(&msg, 9), Ok(None));
    }
}
