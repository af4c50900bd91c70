//! Recursive-descent parser from policy text to `SignaturePolicyEnvelope`.

use super::lexer::{Kind, Lexer, Token};
use crate::builder::{n_out_of, signed_by};
use crate::error::{PolicyError, Result};
use crate::principal::{is_writable_msp_id, msp_role_principal, role_from_name};
use twill_protos::common::{MspPrincipal, SignaturePolicy, SignaturePolicyEnvelope};

/// How deeply gates may nest in policy text.
///
/// Deep enough for any real policy, shallow enough that the encoded
/// envelope stays within protobuf decoders' recursion limits.
pub const MAX_NESTING: usize = 32;

const EXPECT_RULE: &str = "a principal or AND/OR/OutOf";
const EXPECT_TOP: &str = "AND, OR or OutOf; wrap a single principal, e.g. OR('Org1MSP.member')";
const EXPECT_QUOTED: &str = "a quoted principal such as 'Org1MSP.member', or AND/OR/OutOf";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    And,
    Or,
    OutOf,
}

impl Gate {
    fn from_name(name: &str) -> Option<Gate> {
        match name.to_ascii_lowercase().as_str() {
            "and" => Some(Gate::And),
            "or" => Some(Gate::Or),
            "outof" => Some(Gate::OutOf),
            _ => None,
        }
    }
}

/// One argument of a gate, before principals are given their indexes.
enum Arg {
    Rule(SignaturePolicy),
    Principal(MspPrincipal),
}

/// Parses a policy written in Fabric's policy language into the envelope
/// Fabric's own parser (`policydsl.FromString`) builds for it.
///
/// The language:
///
/// ```text
/// policy    := gate
/// gate      := AND '(' rule {',' rule} ')'
///            | OR '(' rule {',' rule} ')'
///            | OutOf '(' threshold ',' rule {',' rule} ')'
/// rule      := gate | principal
/// principal := 'MSPID.role'  or  "MSPID.role"
/// role      := member | admin | client | peer | orderer
/// ```
///
/// Gate names are matched case-insensitively (Fabric accepts exactly `And`,
/// `and`, `AND` and the like; every one of those is accepted here too). Roles
/// are lowercase, and an MSP ID is ASCII letters, digits, `.` and `-`. The
/// threshold is an integer, optionally quoted as Fabric permits.
///
/// The envelope matches Fabric byte for byte, which matters because
/// organisations compare encoded policies (chaincode definitions, config
/// blocks):
///
/// * `AND` of k rules is `NOutOf(k)`, `OR` is `NOutOf(1)`, `OutOf(t, …)` is
///   `NOutOf(t)`; version is 0.
/// * Every principal occurrence gets its own entry in `identities`; equal
///   principals are *not* merged, as in Fabric.
/// * Entries are numbered as Fabric's evaluator meets them: within a gate,
///   first everything inside its nested gates (left to right), then the
///   gate's own principals. So `OR('A.member', AND('B.member', 'C.member'))`
///   lists B, C, A.
/// * A threshold from 0 to one more than the rule count is accepted (`n + 1`
///   gives a policy that is never satisfied, which Fabric permits on purpose).
///
/// # Errors
///
/// Empty input, syntax errors, unknown gates or roles, malformed principals,
/// bad thresholds and trailing input, each with the 1-based position of the
/// offending token.
pub fn parse_policy(expr: &str) -> Result<SignaturePolicyEnvelope> {
    if expr.trim().is_empty() {
        return Err(PolicyError::EmptyExpression);
    }
    let mut p = Parser {
        lexer: Lexer::new(expr),
        peeked: None,
        identities: Vec::new(),
    };
    let first = p.next()?;
    let rule = match first.kind {
        Kind::Ident(name) => p.gate(first, name, 1)?,
        _ => return Err(unexpected(&first, EXPECT_TOP)),
    };
    let last = p.next()?;
    if last.kind != Kind::Eof {
        return Err(PolicyError::TrailingInput {
            position: last.position,
            found: last.describe(),
        });
    }
    Ok(SignaturePolicyEnvelope {
        version: 0,
        rule: Some(rule),
        identities: p.identities,
    })
}

fn unexpected(tok: &Token<'_>, expected: &'static str) -> PolicyError {
    PolicyError::UnexpectedToken {
        position: tok.position,
        found: tok.describe(),
        expected,
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
    identities: Vec<MspPrincipal>,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<Token<'a>> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn peek(&mut self) -> Result<Token<'a>> {
        let t = self.next()?;
        self.peeked = Some(t);
        Ok(t)
    }

    fn expect(&mut self, kind: Kind<'static>, expected: &'static str) -> Result<Token<'a>> {
        let t = self.next()?;
        if t.kind == kind {
            Ok(t)
        } else {
            Err(unexpected(&t, expected))
        }
    }

    /// Parses a gate whose name token has just been read.
    fn gate(&mut self, name_tok: Token<'a>, name: &str, depth: usize) -> Result<SignaturePolicy> {
        let Some(gate) = Gate::from_name(name) else {
            return Err(if self.peek()?.kind == Kind::LParen {
                PolicyError::UnknownGate {
                    position: name_tok.position,
                    name: name.to_owned(),
                }
            } else {
                unexpected(&name_tok, EXPECT_QUOTED)
            });
        };
        if depth > MAX_NESTING {
            return Err(PolicyError::TooDeep {
                position: name_tok.position,
                max: MAX_NESTING,
            });
        }
        self.expect(Kind::LParen, "'(' after the gate name")?;

        let threshold = if gate == Gate::OutOf {
            let t = self.threshold()?;
            self.expect(
                Kind::Comma,
                "',' and at least one rule after the OutOf threshold",
            )?;
            Some(t)
        } else {
            None
        };

        let mut args = Vec::new();
        loop {
            args.push(self.arg(depth)?);
            let t = self.next()?;
            match t.kind {
                Kind::Comma => continue,
                Kind::RParen => break,
                _ => return Err(unexpected(&t, "',' or ')'")),
            }
        }

        let n = match (gate, threshold) {
            (Gate::And, _) => count_i32(args.len())?,
            (Gate::Or, _) => 1,
            (Gate::OutOf, Some((value, position))) => {
                let in_range = usize::try_from(value)
                    .ok()
                    .is_some_and(|v| v <= args.len().saturating_add(1));
                if !in_range {
                    return Err(PolicyError::ThresholdOutOfRange {
                        position,
                        threshold: value,
                        rules: args.len(),
                    });
                }
                i32::try_from(value).map_err(|_| PolicyError::ThresholdOutOfRange {
                    position,
                    threshold: value,
                    rules: args.len(),
                })?
            }
            (Gate::OutOf, None) => 0,
        };

        // Nested gates have already numbered their principals; this gate's
        // own principals come after them, as in Fabric.
        let mut rules = Vec::with_capacity(args.len());
        for arg in args {
            match arg {
                Arg::Rule(r) => rules.push(r),
                Arg::Principal(p) => {
                    rules.push(signed_by(count_i32(self.identities.len())?));
                    self.identities.push(p);
                }
            }
        }
        Ok(n_out_of(n, rules))
    }

    /// Reads the threshold of `OutOf`: its value and position.
    fn threshold(&mut self) -> Result<(i64, usize)> {
        let t = self.next()?;
        let text = match t.kind {
            Kind::Number(s) | Kind::Str(s) => s.trim(),
            Kind::Ident(_) | Kind::LParen => {
                return Err(PolicyError::BadThreshold {
                    position: t.position,
                    found: t.describe(),
                })
            }
            Kind::RParen | Kind::Comma | Kind::Eof => {
                return Err(unexpected(&t, "the OutOf threshold (an integer)"))
            }
        };
        text.parse::<i64>()
            .map(|v| (v, t.position))
            .map_err(|_| PolicyError::BadThreshold {
                position: t.position,
                found: t.describe(),
            })
    }

    /// Parses one argument of a gate at nesting `depth`.
    fn arg(&mut self, depth: usize) -> Result<Arg> {
        let t = self.next()?;
        match t.kind {
            Kind::Str(text) => parse_principal(text, t.position).map(Arg::Principal),
            Kind::Ident(name) => self.gate(t, name, depth + 1).map(Arg::Rule),
            _ => Err(unexpected(&t, EXPECT_RULE)),
        }
    }
}

fn count_i32(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| PolicyError::InvalidEnvelope {
        reason: format!("{n} rules or principals do not fit a protobuf int32"),
    })
}

/// Parses `MSPID.role` (already unquoted) found at `position`.
fn parse_principal(text: &str, position: usize) -> Result<MspPrincipal> {
    let bad = |reason| PolicyError::BadPrincipal {
        position,
        principal: text.to_owned(),
        reason,
    };
    let Some((msp, role)) = text.rsplit_once('.') else {
        return Err(bad("expected the form 'MSPID.role'"));
    };
    if msp.is_empty() {
        return Err(bad("the MSP ID is empty"));
    }
    if !is_writable_msp_id(msp) {
        return Err(bad(
            "the MSP ID may contain only ASCII letters, digits, '.' and '-'",
        ));
    }
    let Some(role) = role_from_name(role) else {
        return Err(PolicyError::UnknownRole {
            position,
            principal: text.to_owned(),
            role: role.to_owned(),
        });
    };
    Ok(msp_role_principal(msp, role))
}
