//! Integration tests for twill-comm over real loopback sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pki;
mod setup;
mod transport;
