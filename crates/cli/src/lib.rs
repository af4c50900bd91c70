//! The `twill` command line: crypto material (`cryptogen`), channel genesis
//! blocks (`configtxgen`) and policy checking (`policy check`).
//!
//! The binary in `main.rs` only calls [`main_with_args`]; each subcommand
//! lives in its own module and returns `anyhow::Result`, and errors are
//! printed as one line on stderr with exit code 1.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

// The binary's global allocator (main.rs).
use mimalloc as _;
// main.rs turns transparent huge pages off with it first.
use twill_ops as _;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

mod bench;
mod bench_commit;
mod bench_e2e;
mod bench_endorse;
mod ca;
pub mod chaincode;
mod channel;
mod configtxgen;
mod cryptogen;
mod httpbody;
pub mod netkit;
mod netstart;
mod network;
mod osnadmin;
pub mod peer;
mod policy;

/// Twill — a permissioned ledger that speaks Hyperledger Fabric's protocols.
#[derive(Debug, Parser)]
#[command(
    name = "twill",
    version,
    propagate_version = true,
    after_help = "Example: make the test network's crypto material and the genesis block of mychannel\n  \
twill cryptogen generate --config network-configs/test-network/crypto-config.yaml \\\n      \
--output network-configs/test-network/organizations\n  \
twill configtxgen --config network-configs/test-network/configtx.yaml \\\n      \
--profile TwoOrgsApplicationGenesis --channel-id mychannel --output-block mychannel.block"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate keys and certificates for orgs, nodes and users (Fabric's cryptogen layout).
    ///
    /// Example:
    ///   twill cryptogen generate --config network-configs/test-network/crypto-config.yaml \
    ///       --output network-configs/test-network/organizations
    #[command(verbatim_doc_comment)]
    Cryptogen(cryptogen::CryptogenArgs),
    /// Build a channel genesis block from a configtx.yaml profile, or inspect a block.
    ///
    /// Paths inside configtx.yaml (MSPDir, consenter TLS certs) are relative
    /// to the configtx.yaml file itself, as in Fabric.
    ///
    /// Examples:
    ///   twill configtxgen --config network-configs/test-network/configtx.yaml \
    ///       --profile TwoOrgsApplicationGenesis --channel-id mychannel --output-block mychannel.block
    ///   twill configtxgen --inspect-block mychannel.block
    #[command(verbatim_doc_comment)]
    Configtxgen(configtxgen::ConfigtxgenArgs),
    /// Work with endorsement / signature policy expressions.
    ///
    /// Example:
    ///   twill policy check "OutOf(2, 'Org1MSP.peer', 'Org2MSP.peer', 'Org3MSP.peer')"
    #[command(verbatim_doc_comment)]
    Policy(policy::PolicyArgs),
    /// Join an orderer to channels, list them and remove them over its admin endpoint (Fabric's osnadmin).
    ///
    /// Example:
    ///   twill osnadmin channel join --channel-id mychannel --config-block mychannel.block \
    ///       -o localhost:7053 --ca-file tls/ca.crt \
    ///       --client-cert admin/tls/client.crt --client-key admin/tls/client.key
    #[command(verbatim_doc_comment)]
    Osnadmin(osnadmin::OsnadminArgs),
    /// Join a peer to channels, list them and query their height (Fabric's peer channel).
    ///
    /// Example:
    ///   twill peer channel join -b mychannel.block --peer-address localhost:7051 \
    ///       --tls-ca tlsca.pem --msp-dir users/Admin@org1.example.com/msp --msp-id Org1MSP
    #[command(verbatim_doc_comment)]
    Peer(peer::PeerArgs),
    /// Package, install, approve and commit chaincodes; invoke and query them (Fabric's peer lifecycle chaincode and peer chaincode).
    ///
    /// Example:
    ///   twill chaincode queryinstalled --peer-address localhost:7051 --tls-ca tlsca.pem \
    ///       --msp-dir users/Admin@org1.example.com/msp --msp-id Org1MSP
    #[command(verbatim_doc_comment)]
    Chaincode(Box<chaincode::ChaincodeArgs>),
    /// Measure Twill on this machine with real processes.
    ///
    /// Example:
    ///   twill bench orderer --duration 10 --size 1024
    #[command(verbatim_doc_comment)]
    Bench(bench::BenchArgs),
    /// Start, inspect and stop a local test network (3 Raft orderers, Org1 and Org2 peers,
    /// channel mychannel, chaincode basic), like Fabric's test-network/network.sh.
    ///
    /// Example:
    ///   twill network up --state-dir ./.twill-network
    ///   twill network status
    ///   twill network down --clean
    #[command(verbatim_doc_comment)]
    Network(network::NetworkArgs),
    /// Enroll, register and revoke identities with a Fabric CA, writing Fabric msp folders
    /// (Fabric's fabric-ca-client).
    ///
    /// Example:
    ///   twill ca enroll -u https://admin:adminpw@localhost:7054 --caname ca-org1 \
    ///       --tls.certfiles ca-tls.pem --mspdir org1/admin/msp
    #[command(verbatim_doc_comment)]
    Ca(ca::CaArgs),
    /// Update a channel's config: add a CRL to an org's MSP (signed by the org's admin).
    ///
    /// Example:
    ///   twill channel add-crl --channel mychannel --org Org1MSP --crl crl.pem \
    ///       --orderer localhost:7050 --orderer-tls-ca tlsca.example.com-cert.pem \
    ///       --msp-dir users/Admin@org1.example.com/msp --msp-id Org1MSP
    #[command(verbatim_doc_comment)]
    Channel(channel::ChannelArgs),
}

/// Runs the CLI with the given arguments; returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Cryptogen(args) => cryptogen::run(args),
        Command::Configtxgen(args) => configtxgen::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Osnadmin(args) => osnadmin::run(args),
        Command::Peer(args) => peer::run(args),
        Command::Chaincode(args) => chaincode::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Network(args) => network::run(args),
        Command::Ca(args) => ca::run(args),
        Command::Channel(args) => channel::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // One line: the causes joined, as users grep logs for them.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ")
                .replace('\n', " ");
            eprintln!("error: {msg}");
            1
        }
    }
}
