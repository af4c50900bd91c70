//! Integration tests of twill-policy.

mod eval;
mod fixture;
mod manager;
mod parser;
