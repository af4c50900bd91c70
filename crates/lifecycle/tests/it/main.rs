//! Integration tests for twill-lifecycle: packages built, parsed, launched
//! and unpacked, and the installed-package store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod package;
mod store;
