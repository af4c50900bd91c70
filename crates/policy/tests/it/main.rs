//! Integration tests of twill-policy.

mod parser;
