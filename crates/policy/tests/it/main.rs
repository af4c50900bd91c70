//! Integration tests of twill-policy.

mod datafile;
mod eval;
mod fixture;
mod manager;
mod parser;
