//! Tokens of the policy language.

use crate::error::{PolicyError, Result};

/// What a token is. Slices borrow from the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// A name: letters, digits and `_`, not starting with a digit.
    Ident(&'a str),
    /// An optionally negative decimal number, possibly with a fraction.
    Number(&'a str),
    /// A quoted string; the slice excludes the quotes.
    Str(&'a str),
    LParen,
    RParen,
    Comma,
    Eof,
}

/// A token and the 1-based byte position where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: Kind<'a>,
    pub(crate) position: usize,
}

impl Token<'_> {
    /// The token described for an error message.
    pub(crate) fn describe(&self) -> String {
        match self.kind {
            Kind::Ident(s) => format!("identifier '{s}'"),
            Kind::Number(s) => format!("number {s}"),
            Kind::Str(s) => format!("string '{s}'"),
            Kind::LParen => "token '('".to_owned(),
            Kind::RParen => "token ')'".to_owned(),
            Kind::Comma => "token ','".to_owned(),
            Kind::Eof => "end of input".to_owned(),
        }
    }
}

/// Splits policy text into tokens, one at a time.
pub(crate) struct Lexer<'a> {
    src: &'a str,
    /// 0-based byte offset of the next unread character.
    at: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer { src, at: 0 }
    }

    fn peek_char(&self) -> Option<char> {
        self.src.get(self.at..).and_then(|rest| rest.chars().next())
    }

    /// Advances while `pred` holds and returns the consumed slice.
    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let start = self.at;
        while let Some(c) = self.peek_char() {
            if !pred(c) {
                break;
            }
            self.at += c.len_utf8();
        }
        self.src.get(start..self.at).unwrap_or_default()
    }

    /// Reads the next token.
    pub(crate) fn next_token(&mut self) -> Result<Token<'a>> {
        self.take_while(char::is_whitespace);
        let position = self.at + 1;
        let Some(c) = self.peek_char() else {
            return Ok(Token {
                kind: Kind::Eof,
                position,
            });
        };
        let kind = match c {
            '(' => {
                self.at += 1;
                Kind::LParen
            }
            ')' => {
                self.at += 1;
                Kind::RParen
            }
            ',' => {
                self.at += 1;
                Kind::Comma
            }
            '\'' | '"' => {
                self.at += 1;
                let body = self.take_while(|ch| ch != c);
                if self.peek_char() != Some(c) {
                    return Err(PolicyError::UnterminatedString { position, quote: c });
                }
                self.at += 1;
                Kind::Str(body)
            }
            c if c.is_ascii_digit() || (c == '-' && self.next_is_digit()) => {
                let start = self.at;
                self.at += 1;
                self.take_while(|ch| ch.is_ascii_digit() || ch == '.');
                Kind::Number(self.src.get(start..self.at).unwrap_or_default())
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                Kind::Ident(self.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
            }
            other => {
                return Err(PolicyError::UnexpectedChar {
                    position,
                    found: other,
                })
            }
        };
        Ok(Token { kind, position })
    }

    fn next_is_digit(&self) -> bool {
        self.src
            .get(self.at + 1..)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Kind<'_>> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().expect("token");
            out.push(t.kind);
            if t.kind == Kind::Eof {
                return out;
            }
        }
    }

    #[test]
    fn tokens_and_positions() {
        assert_eq!(
            kinds(" OutOf(-2, \"A.peer\",'B.admin')"),
            vec![
                Kind::Ident("OutOf"),
                Kind::LParen,
                Kind::Number("-2"),
                Kind::Comma,
                Kind::Str("A.peer"),
                Kind::Comma,
                Kind::Str("B.admin"),
                Kind::RParen,
                Kind::Eof
            ]
        );
        let mut lx = Lexer::new("  (x");
        assert_eq!(lx.next_token().expect("token").position, 3);
        assert_eq!(lx.next_token().expect("token").position, 4);
        assert_eq!(lx.next_token().expect("token").position, 5);
    }

    #[test]
    fn lexer_errors() {
        assert_eq!(
            Lexer::new("  'abc").next_token(),
            Err(PolicyError::UnterminatedString {
                position: 3,
                quote: '\''
            })
        );
        assert_eq!(
            Lexer::new("é").next_token(),
            Err(PolicyError::UnexpectedChar {
                position: 1,
                found: 'é'
            })
        );
    }
}
