//! Strict DER handling of ECDSA P-256 signatures and low-S normalisation.
//!
//! Fabric accepts exactly one encoding per signature: canonical DER with `s`
//! in the lower half of the group order. Everything here works on fixed
//! 32-byte big-endian scalars so no big-integer library is needed.

use crate::error::{CryptoError, DerIssue, Result, SignatureComponent};
use std::cmp::Ordering;

/// The P-256 group order `n`, big-endian.
pub(crate) const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `floor(n / 2)`, big-endian: the largest `s` Fabric accepts.
pub(crate) const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;

/// The two scalars of a signature, each left-padded to 32 big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scalars {
    pub(crate) r: [u8; 32],
    pub(crate) s: [u8; 32],
}

impl Scalars {
    /// Whether `s <= n/2`.
    pub(crate) fn is_low_s(&self) -> bool {
        self.s.cmp(&HALF_ORDER) != Ordering::Greater
    }

    /// Parses, range-checks and low-S-checks a signature, as every verifier must.
    pub(crate) fn parse_for_verify(sig_der: &[u8]) -> Result<Self> {
        let scalars = Self::parse_der(sig_der)?;
        if !scalars.is_low_s() {
            return Err(CryptoError::HighS);
        }
        Ok(scalars)
    }

    /// Parses canonical DER and checks `1 <= r, s < n`.
    pub(crate) fn parse_der(sig_der: &[u8]) -> Result<Self> {
        let mut outer = Reader::new(sig_der);
        let body = outer.element(TAG_SEQUENCE, DerIssue::NotASequence)?;
        if !outer.is_empty() {
            return Err(malformed(DerIssue::TrailingBytes));
        }
        let mut inner = Reader::new(body);
        let r = inner.integer()?;
        let s = inner.integer()?;
        if !inner.is_empty() {
            return Err(malformed(DerIssue::TrailingBytes));
        }
        Ok(Scalars {
            r: scalar(r, SignatureComponent::R)?,
            s: scalar(s, SignatureComponent::S)?,
        })
    }

    /// Replaces a high `s` by `n - s`; a low `s` is left alone.
    pub(crate) fn normalized(mut self) -> Self {
        if !self.is_low_s() {
            self.s = sub_from_order(&self.s);
        }
        self
    }

    /// Canonical DER encoding.
    pub(crate) fn to_der(self) -> Vec<u8> {
        let mut body = Vec::with_capacity(70);
        push_integer(&mut body, &self.r);
        push_integer(&mut body, &self.s);
        // Two INTEGERs of at most 33 content bytes each: always short-form.
        let mut out = Vec::with_capacity(body.len() + 2);
        out.push(TAG_SEQUENCE);
        out.push(body.len() as u8);
        out.extend_from_slice(&body);
        out
    }
}

/// Reports whether a DER signature has `s` in the lower half of the group order.
///
/// The signature must be canonical DER with `r` and `s` in `[1, n-1]`;
/// otherwise the parse error is returned.
pub fn is_low_s(sig_der: &[u8]) -> Result<bool> {
    Ok(Scalars::parse_der(sig_der)?.is_low_s())
}

/// Returns the canonical DER signature with `s` replaced by `n - s` when `s > n/2`.
///
/// A signature that is already low-S comes back byte-for-byte unchanged. Both
/// forms verify under plain ECDSA; Fabric accepts only the low one.
pub fn normalize_low_s(sig_der: &[u8]) -> Result<Vec<u8>> {
    Ok(Scalars::parse_der(sig_der)?.normalized().to_der())
}

fn malformed(issue: DerIssue) -> CryptoError {
    CryptoError::MalformedSignature { issue }
}

fn non_canonical(issue: DerIssue) -> CryptoError {
    CryptoError::NonCanonicalSignature { issue }
}

/// Turns the content bytes of a positive minimal INTEGER into a range-checked scalar.
fn scalar(content: &[u8], component: SignatureComponent) -> Result<[u8; 32]> {
    let magnitude = match content {
        [0, rest @ ..] => rest,
        _ => content,
    };
    let out_of_range = CryptoError::SignatureScalarOutOfRange { component };
    if magnitude.len() > 32 {
        return Err(out_of_range);
    }
    let mut value = [0u8; 32];
    value[32 - magnitude.len()..].copy_from_slice(magnitude);
    if value == [0u8; 32] || value.cmp(&ORDER) != Ordering::Less {
        return Err(out_of_range);
    }
    Ok(value)
}

/// `n - s` for `0 < s < n`, big-endian with borrow.
fn sub_from_order(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0u16;
    for i in (0..32).rev() {
        let minuend = u16::from(ORDER[i]);
        let subtrahend = u16::from(s[i]) + borrow;
        if minuend >= subtrahend {
            out[i] = (minuend - subtrahend) as u8;
            borrow = 0;
        } else {
            out[i] = (minuend + 0x100 - subtrahend) as u8;
            borrow = 1;
        }
    }
    out
}

/// Appends a minimal positive DER INTEGER holding a 32-byte big-endian value.
fn push_integer(out: &mut Vec<u8>, value: &[u8; 32]) {
    let first = value.iter().position(|&b| b != 0).unwrap_or(31);
    let digits = &value[first..];
    let pad = digits[0] & 0x80 != 0;
    out.push(TAG_INTEGER);
    out.push((digits.len() + usize::from(pad)) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

/// A cursor over DER bytes that rejects anything but the canonical form.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(malformed(DerIssue::Truncated))?;
        self.rest = rest;
        Ok(b)
    }

    /// Reads a definite length. One or two long-form bytes are enough for any
    /// input that could still be a P-256 signature.
    fn length(&mut self) -> Result<usize> {
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(usize::from(first));
        }
        let count = first & 0x7f;
        if count == 0 || count > 2 {
            return Err(malformed(DerIssue::UnsupportedLength));
        }
        let mut len = 0usize;
        for _ in 0..count {
            len = (len << 8) | usize::from(self.byte()?);
        }
        // The long form is only canonical when the short form cannot hold the
        // value and no leading zero byte is spent.
        let minimal = if count == 1 { len >= 0x80 } else { len > 0xff };
        if !minimal {
            return Err(non_canonical(DerIssue::NonMinimalLength));
        }
        Ok(len)
    }

    /// Reads one element with the expected tag and returns its content.
    fn element(&mut self, tag: u8, wrong_tag: DerIssue) -> Result<&'a [u8]> {
        if self.byte()? != tag {
            return Err(malformed(wrong_tag));
        }
        let len = self.length()?;
        if len > self.rest.len() {
            return Err(malformed(DerIssue::Truncated));
        }
        let (content, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(content)
    }

    /// Reads a positive, minimally encoded INTEGER and returns its content.
    fn integer(&mut self) -> Result<&'a [u8]> {
        let content = self.element(TAG_INTEGER, DerIssue::NotAnInteger)?;
        match content {
            [] => Err(malformed(DerIssue::EmptyInteger)),
            [first, ..] if first & 0x80 != 0 => Err(malformed(DerIssue::NegativeInteger)),
            [0, second, ..] if second & 0x80 == 0 => {
                Err(non_canonical(DerIssue::NonMinimalInteger))
            }
            _ => Ok(content),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_from_hex(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn half_order_is_order_shifted_right() {
        let mut shifted = [0u8; 32];
        let mut carry = 0u8;
        for (out, &b) in shifted.iter_mut().zip(ORDER.iter()) {
            *out = (carry << 7) | (b >> 1);
            carry = b & 1;
        }
        assert_eq!(shifted, HALF_ORDER);
    }

    #[test]
    fn subtraction_from_order_is_an_involution() {
        let s = scalar_from_hex("f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8");
        let low = sub_from_order(&s);
        assert_eq!(
            low,
            scalar_from_hex("0834e36ad29a83bf2bc9385e491d6099c8fdf9d1ed67aa7ea5f51f93782857a9")
        );
        assert_eq!(sub_from_order(&low), s);
    }

    #[test]
    fn boundary_of_low_s() {
        let at_half = Scalars {
            r: [1; 32],
            s: HALF_ORDER,
        };
        assert!(at_half.is_low_s());
        let mut above = HALF_ORDER;
        above[31] += 1;
        let above_half = Scalars {
            r: [1; 32],
            s: above,
        };
        assert!(!above_half.is_low_s());
        assert!(above_half.normalized().is_low_s());
    }

    #[test]
    fn encoding_pads_high_bit_and_strips_leading_zeros() {
        let mut r = [0u8; 32];
        r[31] = 0x01;
        let mut s = [0u8; 32];
        s[30] = 0x80;
        let der = Scalars { r, s }.to_der();
        assert_eq!(
            der,
            vec![0x30, 0x08, 0x02, 0x01, 0x01, 0x02, 0x03, 0x00, 0x80, 0x00]
        );
        assert_eq!(Scalars::parse_der(&der).unwrap(), Scalars { r, s });
    }

    #[test]
    fn zero_and_order_are_out_of_range() {
        let zero_r = [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01];
        assert_eq!(
            Scalars::parse_der(&zero_r),
            Err(CryptoError::SignatureScalarOutOfRange {
                component: SignatureComponent::R
            })
        );
        let mut n_as_s = vec![0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00];
        n_as_s.extend_from_slice(&ORDER);
        assert_eq!(
            Scalars::parse_der(&n_as_s),
            Err(CryptoError::SignatureScalarOutOfRange {
                component: SignatureComponent::S
            })
        );
    }

    #[test]
    fn long_form_lengths() {
        // 0x81 0x06 spells a length the short form could hold.
        let non_minimal = [0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01];
        assert_eq!(
            Scalars::parse_der(&non_minimal),
            Err(non_canonical(DerIssue::NonMinimalLength))
        );
        let indefinite = [0x30, 0x80, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00, 0x00];
        assert_eq!(
            Scalars::parse_der(&indefinite),
            Err(malformed(DerIssue::UnsupportedLength))
        );
    }
}
