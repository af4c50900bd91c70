//! Minimal PEM (RFC 7468) reading and writing.
//!
//! Text outside blocks is ignored, as RFC 7468 allows. Inside a block the
//! parser is strict: matching labels, no legacy RFC 1421 headers (those mark
//! encrypted keys, which Twill does not load), and padded standard base64.

use crate::error::{CryptoError, PemIssue, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";
const LINE_WIDTH: usize = 64;

/// Parses every PEM block in `text`, in order, as `(label, der_bytes)`.
///
/// Text with no blocks yields an empty vector; a block that is started but
/// malformed is an error.
pub fn parse_pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut blocks = Vec::new();
    // The open block: its label, the line it began on, and its base64 body.
    let mut open: Option<(String, usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        let fail = |issue| CryptoError::InvalidPem {
            line: line_no,
            issue,
        };
        if let Some(label) = boundary_label(line, BEGIN) {
            if open.is_some() {
                return Err(fail(PemIssue::NestedBegin));
            }
            open = Some((label.to_owned(), line_no, String::new()));
        } else if let Some(label) = boundary_label(line, END) {
            let Some((begin_label, _, body)) = open.take() else {
                return Err(fail(PemIssue::UnexpectedEnd));
            };
            if begin_label != label {
                return Err(fail(PemIssue::LabelMismatch));
            }
            let der = STANDARD
                .decode(body.as_bytes())
                .map_err(|_| fail(PemIssue::BadBase64))?;
            blocks.push((begin_label, der));
        } else if let Some((_, _, body)) = open.as_mut() {
            if line.contains(':') {
                return Err(fail(PemIssue::HeadersUnsupported));
            }
            body.extend(line.chars().filter(|c| !c.is_ascii_whitespace()));
        }
    }
    if let Some((_, begin_line, _)) = open {
        return Err(CryptoError::InvalidPem {
            line: begin_line,
            issue: PemIssue::MissingEnd,
        });
    }
    Ok(blocks)
}

/// Encodes `der` as one PEM block with `label`, 64-column base64 and `\n` line ends.
pub fn encode_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out =
        String::with_capacity(body.len() + body.len() / LINE_WIDTH + 2 * label.len() + 40);
    out.push_str(BEGIN);
    out.push_str(label);
    out.push_str(DASHES);
    out.push('\n');
    // Base64 output is ASCII, so byte chunks are valid UTF-8 boundaries.
    for chunk in body.as_bytes().chunks(LINE_WIDTH) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(END);
    out.push_str(label);
    out.push_str(DASHES);
    out.push('\n');
    out
}

/// Returns the label of a `-----BEGIN X-----` / `-----END X-----` line.
fn boundary_label<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix(DASHES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_several_blocks_with_surrounding_text() {
        let long: Vec<u8> = (0..=255u8).collect();
        let text = format!(
            "subject=CN=test\n{}\nsome comment\r\n{}",
            encode_pem("CERTIFICATE", &long),
            encode_pem("PRIVATE KEY", b"\x01\x02\x03")
        );
        let blocks = parse_pem_blocks(&text).unwrap();
        assert_eq!(
            blocks,
            vec![
                ("CERTIFICATE".to_owned(), long),
                ("PRIVATE KEY".to_owned(), vec![1, 2, 3]),
            ]
        );
    }

    #[test]
    fn encoding_wraps_at_64_columns() {
        let pem = encode_pem("X", &[0u8; 60]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN X-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END X-----");
    }

    #[test]
    fn no_blocks_is_empty() {
        assert_eq!(parse_pem_blocks("hello\n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_documents() {
        let cases = [
            ("-----BEGIN A-----\nAQID\n", 1, PemIssue::MissingEnd),
            ("-----END A-----\n", 1, PemIssue::UnexpectedEnd),
            (
                "-----BEGIN A-----\n-----BEGIN B-----\n",
                2,
                PemIssue::NestedBegin,
            ),
            (
                "-----BEGIN A-----\nAQID\n-----END B-----\n",
                3,
                PemIssue::LabelMismatch,
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAQID\n-----END EC PRIVATE KEY-----\n",
                2,
                PemIssue::HeadersUnsupported,
            ),
            (
                "-----BEGIN A-----\nAQ*D\n-----END A-----\n",
                3,
                PemIssue::BadBase64,
            ),
        ];
        for (text, line, issue) in cases {
            assert_eq!(
                parse_pem_blocks(text),
                Err(CryptoError::InvalidPem { line, issue }),
                "{text}"
            );
        }
    }
}
