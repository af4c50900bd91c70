#!/usr/bin/env bash
# The whole test suite: format, lints, Rust tests, and the Node interop tests
# against Fabric's own npm packages. Builds once; the interop tests reuse the
# debug `twill` binary that `cargo build` leaves in target/debug.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (broken intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q

step "cargo build (binaries shared with the interop tests)"
cargo build --workspace --bins --locked

step "Node chaincode: fabric-contract-api from npm (the Rust end-to-end tests run it), contract unit tests"
chaincode-examples/asset-transfer-node/install.sh
node --test chaincode-examples/asset-transfer-node/test/

step "cargo test"
# End-to-end tests start the binaries built above rather than building them.
TWILL_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug" cargo test --workspace --locked

step "interop tests with Fabric's npm packages (tests/interop)"
TWILL_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/twill" tests/interop/run.sh
