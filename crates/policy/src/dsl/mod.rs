//! Fabric's policy language: parsing and printing.

mod lexer;
mod parser;
mod printer;

pub use parser::{parse_policy, MAX_NESTING};
pub use printer::policy_to_string;
