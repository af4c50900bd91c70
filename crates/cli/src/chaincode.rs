//! `twill chaincode ...`: the chaincode lifecycle and chaincode calls, with
//! the verbs and output of Fabric's `peer lifecycle chaincode` and
//! `peer chaincode invoke|query`.
//!
//! Lifecycle verbs are proposals to the peer's `_lifecycle` system
//! chaincode: the arguments are the function name and the serialized
//! `<Function>Args` message (package `lifecycle`), the answer's payload is
//! the serialized `<Function>Result`. Installing and querying installed
//! packages concern one peer and carry no channel; everything else names a
//! channel.
//!
//! Verbs that change the ledger (`approveformyorg`, `commit`, `invoke`)
//! collect endorsements from the given peers, assemble a transaction from
//! them ([`assemble_transaction`]), send it to an orderer's `Broadcast`
//! ([`broadcast`]) and, unless `--wait-for-event=false`, follow each peer's
//! `DeliverFiltered` stream until the transaction is committed
//! ([`CommitWatcher`], opened before broadcasting). A transaction the peers
//! mark invalid fails with `transaction invalidated with status (<CODE>)`.
//! [`Submit`] runs these steps.
//!
//! The helpers are public so tests can drive a network the way the CLI
//! does, e.g.:
//!
//! ```no_run
//! # async fn demo(
//! #     signer: &twill_msp::SigningIdentity,
//! #     peers: &[twill_cli::chaincode::PeerTarget],
//! #     orderer: &twill_cli::chaincode::OrdererTarget,
//! # ) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use twill_cli::chaincode::{parse_ctor, Failure, Submit};
//! use twill_protos::common::HeaderType;
//!
//! let input = parse_ctor(r#"{"Args":["CreateAsset","a1","blue","5","Tom","35"]}"#)?;
//! let proposal = twill_cli::peer::build_proposal(
//!     signer,
//!     HeaderType::EndorserTransaction,
//!     "mychannel",
//!     "basic",
//!     input,
//!     Default::default(),
//! )?;
//! let submit = Submit {
//!     signer,
//!     channel: "mychannel",
//!     peers,
//!     orderer,
//!     wait: Some(Duration::from_secs(30)),
//!     failure: Failure::Invoke,
//! };
//! let response = submit.run(&proposal).await?;
//! assert_eq!(response.status, 200);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use clap::{ArgAction, Args, Subcommand, ValueEnum};
use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use twill_comm::ClientTls;
use twill_msp::SigningIdentity;
use twill_protos::common::{
    BlockchainInfo, Envelope, Header, HeaderType, Payload, SignatureHeader,
    SignaturePolicyEnvelope, Status,
};
use twill_protos::lifecycle::{
    chaincode_source, ApproveChaincodeDefinitionForMyOrgArgs, ChaincodeSource,
    CheckCommitReadinessArgs, CheckCommitReadinessResult, CommitChaincodeDefinitionArgs,
    GetInstalledChaincodePackageArgs, GetInstalledChaincodePackageResult, InstallChaincodeArgs,
    InstallChaincodeResult, QueryApprovedChaincodeDefinitionArgs,
    QueryApprovedChaincodeDefinitionResult, QueryChaincodeDefinitionArgs,
    QueryChaincodeDefinitionResult, QueryChaincodeDefinitionsArgs, QueryChaincodeDefinitionsResult,
    QueryInstalledChaincodesArgs, QueryInstalledChaincodesResult,
};
use twill_protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use twill_protos::orderer::{
    seek_info, seek_position, SeekInfo, SeekNewest, SeekPosition, SeekSpecified,
};
use twill_protos::peer::deliver_client::DeliverClient;
use twill_protos::peer::{
    application_policy, collection_config, collection_policy_config, deliver_response,
    ApplicationPolicy, ChaincodeInput, CollectionConfig, CollectionConfigPackage,
    CollectionPolicyConfig, Proposal, ProposalResponse, Response, SignedProposal,
    StaticCollectionConfig, TxValidationCode,
};

use crate::peer::{build_proposal, load_signer, process_proposal, signed_proposal, BuiltProposal};

/// Name of the lifecycle system chaincode.
pub const LIFECYCLE: &str = "_lifecycle";

/// Endorsement policy of a definition that names none: the channel's
/// `Endorsement` policy of the Application group.
pub const DEFAULT_ENDORSEMENT_POLICY: &str = "/Channel/Application/Endorsement";

/// Chaincode types `package` accepts.
pub const PACKAGE_TYPES: [&str; 5] = ["ccaas", "process", "golang", "node", "java"];

/// How long to wait for the orderer's answer to a broadcast transaction.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `twill chaincode`.
#[derive(Debug, Args)]
pub struct ChaincodeArgs {
    #[command(subcommand)]
    command: ChaincodeCommand,
}

#[derive(Debug, Subcommand)]
enum ChaincodeCommand {
    /// Package a chaincode folder into an install package (a .tar.gz).
    ///
    /// The package holds metadata.json (type and label) and code.tar.gz
    /// (the folder's files). Its package id, which `install` prints and
    /// `approveformyorg --package-id` needs, is `<label>:<sha256 of the
    /// package file>`. Nothing is printed on success.
    ///
    /// Types: `ccaas` (chaincode as a service: the folder holds
    /// connection.json, the chaincode runs on its own), `process` (Twill:
    /// the folder holds run.json telling the peer which program to start),
    /// and Fabric's `golang`, `node`, `java` (packaged like Fabric does;
    /// Twill cannot run them yet).
    ///
    /// Example:
    ///   twill chaincode package basic.tar.gz --path ./asset-transfer \
    ///       --lang process --label basic_1.0
    #[command(verbatim_doc_comment)]
    Package(PackageArgs),
    /// Install a chaincode package on a peer (no channel involved).
    ///
    /// Prints `Chaincode code package identifier: <package id>`.
    ///
    /// Example:
    ///   twill chaincode install basic.tar.gz --peer-address localhost:7051 \
    ///       --tls-ca org1/tlsca.pem --msp-dir org1/users/Admin@org1/msp --msp-id Org1MSP
    #[command(verbatim_doc_comment)]
    Install(InstallArgs),
    /// List the chaincode packages installed on a peer.
    ///
    /// Prints `Installed chaincodes on peer:` then one
    /// `Package ID: <id>, Label: <label>` line per package; `--output json`
    /// prints the whole answer as JSON.
    ///
    /// Example:
    ///   twill chaincode queryinstalled --peer-address localhost:7051 ...
    #[command(verbatim_doc_comment)]
    Queryinstalled(QueryInstalledArgs),
    /// Download an installed chaincode package from a peer.
    ///
    /// Writes `<output directory>/<package id>.tar.gz`.
    ///
    /// Example:
    ///   twill chaincode getinstalledpackage --package-id basic_1.0:0123... \
    ///       --output-directory . --peer-address localhost:7051 ...
    #[command(verbatim_doc_comment)]
    Getinstalledpackage(GetInstalledPackageArgs),
    /// Approve a chaincode definition on a channel for your organization.
    ///
    /// Each org that must agree on a definition approves it once, through a
    /// peer of its own, signed by one of its admins. The approval is a
    /// transaction: it is endorsed by the peer, sent to the orderer, and
    /// this command waits until the peer has committed it.
    ///
    /// `--package-id` (from `install` or `queryinstalled`) tells your peers
    /// which installed package runs this chaincode; without it your org
    /// approves the definition without running the chaincode.
    ///
    /// Example:
    ///   twill chaincode approveformyorg -C mychannel -n basic -v 1.0 --sequence 1 \
    ///       --package-id basic_1.0:0123... -o localhost:7050 --orderer-tls-ca ordererca.pem \
    ///       --peer-address localhost:7051 --tls-ca org1/tlsca.pem \
    ///       --msp-dir org1/users/Admin@org1/msp --msp-id Org1MSP
    #[command(
        name = "approveformyorg",
        verbatim_doc_comment,
        disable_version_flag = true
    )]
    Approveformyorg(ApproveArgs),
    /// Show the definition your organization approved for a chaincode.
    ///
    /// Without `--sequence`, the latest approved one.
    ///
    /// Example:
    ///   twill chaincode queryapproved -C mychannel -n basic --peer-address localhost:7051 ...
    #[command(verbatim_doc_comment)]
    Queryapproved(QueryApprovedArgs),
    /// Show which organizations approved exactly this chaincode definition.
    ///
    /// The definition given must match the approved one in every field
    /// (name, version, sequence, policies, plugins, collections,
    /// --init-required) to count. Prints one `<MSP id>: true|false` line per
    /// org, sorted; `--output json` prints `{"approvals": {...}}`.
    ///
    /// Example:
    ///   twill chaincode checkcommitreadiness -C mychannel -n basic -v 1.0 --sequence 1 \
    ///       --peer-address localhost:7051 ...
    #[command(verbatim_doc_comment, disable_version_flag = true)]
    Checkcommitreadiness(ReadinessArgs),
    /// Commit an approved chaincode definition to a channel.
    ///
    /// Needs enough orgs' approvals (the channel's LifecycleEndorsement
    /// policy, by default a majority), and an endorsement from a peer of
    /// each of those orgs: repeat `--peer-address` once per org (and give
    /// every org's TLS CA with `--tls-ca`). All peers must answer the same;
    /// then the transaction goes to the orderer and the command waits for
    /// each peer to commit it.
    ///
    /// Example:
    ///   twill chaincode commit -C mychannel -n basic -v 1.0 --sequence 1 \
    ///       -o localhost:7050 --orderer-tls-ca ordererca.pem \
    ///       --peer-address localhost:7051 --tls-ca org1/tlsca.pem \
    ///       --peer-address localhost:9051 --tls-ca org2/tlsca.pem ...
    #[command(verbatim_doc_comment, disable_version_flag = true)]
    Commit(CommitArgs),
    /// Show the chaincode definitions committed on a channel.
    ///
    /// With `-n`, one chaincode's definition and which orgs approved it;
    /// without, every chaincode defined on the channel.
    ///
    /// Example:
    ///   twill chaincode querycommitted -C mychannel -n basic --peer-address localhost:7051 ...
    #[command(verbatim_doc_comment)]
    Querycommitted(QueryCommittedArgs),
    /// Call a chaincode function that may change the ledger.
    ///
    /// Sends the call to every `--peer-address` (enough peers to satisfy
    /// the chaincode's endorsement policy), sends the endorsed transaction
    /// to the orderer and waits for each peer to commit it. Prints
    /// `Chaincode invoke successful. result: status:200 payload:"..."`.
    ///
    /// Example:
    ///   twill chaincode invoke -C mychannel -n basic \
    ///       -c '{"Args":["CreateAsset","asset1","blue","5","Tom","35"]}' \
    ///       -o localhost:7050 --orderer-tls-ca ordererca.pem \
    ///       --peer-address localhost:7051 --tls-ca org1/tlsca.pem \
    ///       --peer-address localhost:9051 --tls-ca org2/tlsca.pem ...
    #[command(verbatim_doc_comment)]
    Invoke(InvokeArgs),
    /// Call a chaincode function on one peer and print its answer; nothing
    /// is written to the ledger.
    ///
    /// Example:
    ///   twill chaincode query -C mychannel -n basic -c '{"Args":["ReadAsset","asset1"]}' \
    ///       --peer-address localhost:7051 ...
    #[command(verbatim_doc_comment)]
    Query(QueryArgs),
}

/// Who signs: an identity from an MSP folder.
#[derive(Debug, Args)]
struct IdentityArgs {
    /// MSP folder of the identity that signs proposals and transactions
    /// (for lifecycle verbs, an admin of your org), e.g.
    /// organizations/peerOrganizations/org1.example.com/users/Admin@org1.example.com/msp.
    #[arg(long, env = "CORE_PEER_MSPCONFIGPATH", value_name = "DIR")]
    msp_dir: PathBuf,
    /// MSP id of that identity's organization, e.g. Org1MSP.
    #[arg(long, env = "CORE_PEER_LOCALMSPID", value_name = "ID")]
    msp_id: String,
}

impl IdentityArgs {
    fn load(&self) -> anyhow::Result<SigningIdentity> {
        load_signer(&self.msp_dir, &self.msp_id)
    }
}

/// One peer to call.
#[derive(Debug, Args)]
struct OnePeerArgs {
    /// The peer's address (its peer.address).
    #[arg(
        long,
        alias = "peerAddresses",
        env = "CORE_PEER_ADDRESS",
        value_name = "HOST:PORT"
    )]
    peer_address: String,
    /// PEM file with the TLS CA certificate(s) of the peer (may be
    /// repeated); without it the peer is called in plain text.
    #[arg(
        long,
        alias = "tlsRootCertFiles",
        env = "CORE_PEER_TLS_ROOTCERT_FILE",
        value_name = "FILE",
        action = ArgAction::Append
    )]
    tls_ca: Vec<PathBuf>,
    #[command(flatten)]
    identity: IdentityArgs,
}

impl OnePeerArgs {
    fn target(&self) -> anyhow::Result<PeerTarget> {
        Ok(PeerTarget {
            address: self.peer_address.clone(),
            tls: client_tls(&self.tls_ca, None)?,
        })
    }
}

/// Peers to collect endorsements from.
#[derive(Debug, Args)]
struct PeersArgs {
    /// Address of a peer to endorse the transaction; repeat the flag for
    /// several peers (e.g. one per org whose endorsement is needed).
    #[arg(
        long,
        alias = "peerAddresses",
        env = "CORE_PEER_ADDRESS",
        value_name = "HOST:PORT",
        required = true,
        action = ArgAction::Append
    )]
    peer_address: Vec<String>,
    /// PEM file with TLS CA certificate(s); repeat the flag for peers of
    /// different orgs. Every file given is trusted for every peer. Without
    /// it the peers are called in plain text.
    #[arg(
        long,
        alias = "tlsRootCertFiles",
        env = "CORE_PEER_TLS_ROOTCERT_FILE",
        value_name = "FILE",
        action = ArgAction::Append
    )]
    tls_ca: Vec<PathBuf>,
    #[command(flatten)]
    identity: IdentityArgs,
}

impl PeersArgs {
    fn targets(&self) -> anyhow::Result<Vec<PeerTarget>> {
        let tls = client_tls(&self.tls_ca, None)?;
        Ok(self
            .peer_address
            .iter()
            .map(|address| PeerTarget {
                address: address.clone(),
                tls: tls.clone(),
            })
            .collect())
    }
}

/// The orderer that receives the transaction.
#[derive(Debug, Args)]
struct OrdererArgs {
    /// The orderer's client address (where Broadcast is served).
    #[arg(short = 'o', long, value_name = "HOST:PORT")]
    orderer: String,
    /// PEM file with the TLS CA certificate(s) of the orderer; without it
    /// the orderer is called in plain text.
    #[arg(long, alias = "cafile", value_name = "FILE")]
    orderer_tls_ca: Option<PathBuf>,
    /// Host name to expect in the orderer's TLS certificate when it differs
    /// from the host in --orderer (e.g. orderer.example.com while dialing
    /// localhost).
    #[arg(
        long,
        alias = "ordererTLSHostnameOverride",
        value_name = "HOST",
        requires = "orderer_tls_ca"
    )]
    orderer_tls_hostname_override: Option<String>,
}

impl OrdererArgs {
    fn target(&self) -> anyhow::Result<OrdererTarget> {
        Ok(OrdererTarget {
            address: self.orderer.clone(),
            tls: client_tls(
                self.orderer_tls_ca.as_slice(),
                self.orderer_tls_hostname_override.as_deref(),
            )?,
        })
    }
}

/// Waiting for the transaction to be committed.
#[derive(Debug, Args)]
struct WaitArgs {
    /// Wait until every given peer has committed the transaction and report
    /// its validation result; `--wait-for-event=false` returns once the
    /// orderer has accepted it.
    #[arg(
        long,
        alias = "waitForEvent",
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set
    )]
    wait_for_event: bool,
    /// How long to wait for the commit, e.g. 30s, 2m.
    #[arg(
        long,
        alias = "waitForEventTimeout",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_timeout
    )]
    wait_timeout: Duration,
}

impl WaitArgs {
    fn timeout(&self) -> Option<Duration> {
        self.wait_for_event.then_some(self.wait_timeout)
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    twill_configtx::duration::parse_duration(text)
}

/// Output format of query verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// The whole answer as JSON (field names as in the protobuf messages).
    Json,
}

/// A chaincode definition, as approved, checked and committed.
#[derive(Debug, Args)]
struct DefinitionArgs {
    /// The channel.
    #[arg(short = 'C', long, alias = "channelID", value_name = "NAME")]
    channel_id: String,
    /// Name of the chaincode.
    #[arg(short = 'n', long, value_name = "NAME")]
    name: String,
    /// Version of the chaincode (any text, e.g. 1.0).
    #[arg(
        short = 'v',
        long = "version",
        id = "cc_version",
        value_name = "VERSION"
    )]
    version: String,
    /// Sequence number of the definition: 1 for the first definition of
    /// the chaincode on the channel, one more for each change.
    #[arg(long, value_name = "N")]
    sequence: i64,
    /// Endorsement plugin of the chaincode.
    #[arg(short = 'E', long, default_value = "escc", value_name = "NAME")]
    endorsement_plugin: String,
    /// Validation plugin of the chaincode.
    #[arg(short = 'V', long, default_value = "vscc", value_name = "NAME")]
    validation_plugin: String,
    /// Endorsement policy of the chaincode as an expression, e.g.
    /// "AND('Org1MSP.peer','Org2MSP.peer')". Default: the channel's
    /// /Channel/Application/Endorsement policy.
    #[arg(long, value_name = "EXPR", conflicts_with = "channel_config_policy")]
    signature_policy: Option<String>,
    /// Endorsement policy of the chaincode as the path of a channel config
    /// policy, e.g. /Channel/Application/Endorsement.
    #[arg(long, value_name = "PATH")]
    channel_config_policy: Option<String>,
    /// JSON file with the chaincode's private data collections (Fabric's
    /// collections_config.json format).
    #[arg(long, value_name = "FILE")]
    collections_config: Option<PathBuf>,
    /// The chaincode's Init function must be invoked (with --isInit) before
    /// any other.
    #[arg(long, alias = "init-required")]
    init_required: bool,
}

/// The fields shared by the approve, check and commit arguments.
struct DefinitionFields {
    sequence: i64,
    name: String,
    version: String,
    endorsement_plugin: String,
    validation_plugin: String,
    validation_parameter: Vec<u8>,
    collections: Option<CollectionConfigPackage>,
    init_required: bool,
}

impl DefinitionArgs {
    fn fields(&self) -> anyhow::Result<DefinitionFields> {
        let policy = application_policy(
            self.signature_policy.as_deref(),
            self.channel_config_policy.as_deref(),
        )?;
        let collections = match &self.collections_config {
            Some(path) => Some(read_collections_config(path)?),
            None => None,
        };
        Ok(DefinitionFields {
            sequence: self.sequence,
            name: self.name.clone(),
            version: self.version.clone(),
            endorsement_plugin: self.endorsement_plugin.clone(),
            validation_plugin: self.validation_plugin.clone(),
            validation_parameter: policy.encode_to_vec(),
            collections,
            init_required: self.init_required,
        })
    }
}

/// `twill chaincode package`.
#[derive(Debug, Args)]
struct PackageArgs {
    /// File to write the package to, e.g. basic.tar.gz.
    #[arg(value_name = "OUTPUT_FILE")]
    output: PathBuf,
    /// Folder with the chaincode (its source, run.json or connection.json).
    #[arg(short = 'p', long, value_name = "DIR")]
    path: PathBuf,
    /// Chaincode type: ccaas (the folder holds connection.json), process
    /// (the folder holds run.json and the program), or golang, node, java
    /// (packaged only: Twill cannot run them yet).
    #[arg(
        short = 'l',
        long = "lang",
        alias = "type",
        value_name = "TYPE",
        value_parser = PACKAGE_TYPES,
        ignore_case = true
    )]
    lang: String,
    /// Label of the package, e.g. basic_1.0; it starts the package id.
    #[arg(long, value_name = "LABEL")]
    label: String,
}

/// `twill chaincode install`.
#[derive(Debug, Args)]
struct InstallArgs {
    /// The package file made by `twill chaincode package`.
    #[arg(value_name = "PACKAGE_FILE")]
    package: PathBuf,
    #[command(flatten)]
    peer: OnePeerArgs,
}

/// `twill chaincode queryinstalled`.
#[derive(Debug, Args)]
struct QueryInstalledArgs {
    /// Print the answer in this format instead of text lines.
    #[arg(short = 'O', long, value_name = "FORMAT")]
    output: Option<OutputFormat>,
    #[command(flatten)]
    peer: OnePeerArgs,
}

/// `twill chaincode getinstalledpackage`.
#[derive(Debug, Args)]
struct GetInstalledPackageArgs {
    /// Id of the installed package.
    #[arg(long, value_name = "ID")]
    package_id: String,
    /// Folder to write `<package id>.tar.gz` into.
    #[arg(long, default_value = ".", value_name = "DIR")]
    output_directory: PathBuf,
    #[command(flatten)]
    peer: OnePeerArgs,
}

/// `twill chaincode approveformyorg`.
#[derive(Debug, Args)]
struct ApproveArgs {
    #[command(flatten)]
    definition: DefinitionArgs,
    /// Id of the installed package that runs the chaincode on your org's
    /// peers (`install` prints it).
    #[arg(long, value_name = "ID")]
    package_id: Option<String>,
    #[command(flatten)]
    orderer: OrdererArgs,
    #[command(flatten)]
    peers: PeersArgs,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `twill chaincode queryapproved`.
#[derive(Debug, Args)]
struct QueryApprovedArgs {
    /// The channel.
    #[arg(short = 'C', long, alias = "channelID", value_name = "NAME")]
    channel_id: String,
    /// Name of the chaincode.
    #[arg(short = 'n', long, value_name = "NAME")]
    name: String,
    /// Sequence of the approved definition; default: the latest.
    #[arg(long, value_name = "N")]
    sequence: Option<i64>,
    /// Print the answer in this format instead of text lines.
    #[arg(short = 'O', long, value_name = "FORMAT")]
    output: Option<OutputFormat>,
    #[command(flatten)]
    peer: OnePeerArgs,
}

/// `twill chaincode checkcommitreadiness`.
#[derive(Debug, Args)]
struct ReadinessArgs {
    #[command(flatten)]
    definition: DefinitionArgs,
    /// Print the answer in this format instead of text lines.
    #[arg(short = 'O', long, value_name = "FORMAT")]
    output: Option<OutputFormat>,
    #[command(flatten)]
    peer: OnePeerArgs,
}

/// `twill chaincode commit`.
#[derive(Debug, Args)]
struct CommitArgs {
    #[command(flatten)]
    definition: DefinitionArgs,
    #[command(flatten)]
    orderer: OrdererArgs,
    #[command(flatten)]
    peers: PeersArgs,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `twill chaincode querycommitted`.
#[derive(Debug, Args)]
struct QueryCommittedArgs {
    /// The channel.
    #[arg(short = 'C', long, alias = "channelID", value_name = "NAME")]
    channel_id: String,
    /// Name of the chaincode; without it, all committed definitions.
    #[arg(short = 'n', long, value_name = "NAME")]
    name: Option<String>,
    /// Print the answer in this format instead of text lines.
    #[arg(short = 'O', long, value_name = "FORMAT")]
    output: Option<OutputFormat>,
    #[command(flatten)]
    peer: OnePeerArgs,
}

/// What to call: channel, chaincode, function and arguments.
#[derive(Debug, Args)]
struct CallArgs {
    /// The channel.
    #[arg(short = 'C', long, alias = "channelID", value_name = "NAME")]
    channel_id: String,
    /// Name of the chaincode.
    #[arg(short = 'n', long, value_name = "NAME")]
    name: String,
    /// The call as JSON: {"Args":["FunctionName","arg1","arg2"]} or
    /// {"function":"FunctionName","Args":["arg1","arg2"]}; every argument
    /// is a string.
    #[arg(short = 'c', long, alias = "ctor", value_name = "JSON")]
    ctor: String,
    /// Private inputs for the chaincode that are not written into the
    /// transaction, as a JSON object of base64 values, e.g.
    /// '{"asset_properties":"eyJvYmplY3RUeXBlIjoi..."}'.
    #[arg(long, value_name = "JSON")]
    transient: Option<String>,
}

impl CallArgs {
    fn input(&self) -> anyhow::Result<(ChaincodeInput, BTreeMap<String, Vec<u8>>)> {
        let input = parse_ctor(&self.ctor)?;
        let transient = match &self.transient {
            Some(text) => parse_transient(text)?,
            None => BTreeMap::new(),
        };
        Ok((input, transient))
    }
}

/// `twill chaincode invoke`.
#[derive(Debug, Args)]
struct InvokeArgs {
    #[command(flatten)]
    call: CallArgs,
    /// This call is the chaincode's initialization (for definitions
    /// approved with --init-required; it must come first).
    #[arg(short = 'I', long, alias = "isInit")]
    is_init: bool,
    #[command(flatten)]
    orderer: OrdererArgs,
    #[command(flatten)]
    peers: PeersArgs,
    #[command(flatten)]
    wait: WaitArgs,
}

/// `twill chaincode query`.
#[derive(Debug, Args)]
struct QueryArgs {
    #[command(flatten)]
    call: CallArgs,
    #[command(flatten)]
    peer: OnePeerArgs,
}

/// Runs `twill chaincode`.
pub fn run(args: ChaincodeArgs) -> anyhow::Result<()> {
    if let ChaincodeCommand::Package(p) = &args.command {
        return package(p);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = runtime.block_on(dispatch(args.command))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// Runs a verb and returns what to print on stdout.
async fn dispatch(command: ChaincodeCommand) -> anyhow::Result<Vec<u8>> {
    let text = match command {
        ChaincodeCommand::Package(p) => {
            package(&p)?;
            String::new()
        }
        ChaincodeCommand::Install(a) => install(a).await?,
        ChaincodeCommand::Queryinstalled(a) => query_installed(a).await?,
        ChaincodeCommand::Getinstalledpackage(a) => get_installed_package(a).await?,
        ChaincodeCommand::Approveformyorg(a) => approve(a).await?,
        ChaincodeCommand::Queryapproved(a) => query_approved(a).await?,
        ChaincodeCommand::Checkcommitreadiness(a) => check_commit_readiness(a).await?,
        ChaincodeCommand::Commit(a) => commit(a).await?,
        ChaincodeCommand::Querycommitted(a) => query_committed(a).await?,
        ChaincodeCommand::Invoke(a) => invoke(a).await?,
        ChaincodeCommand::Query(a) => return query(a).await,
    };
    Ok(text.into_bytes())
}

fn package(args: &PackageArgs) -> anyhow::Result<()> {
    let bytes = build_package(&args.label, &args.lang, &args.path)?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("writing the package to {}", args.output.display()))
}

/// Builds an install package of type `lang` (ccaas, process, golang, node,
/// java; any letter case) labelled `label` from the folder `dir`. For
/// golang, node and java the metadata records `dir` as the chaincode path,
/// as Fabric does.
pub fn build_package(label: &str, lang: &str, dir: &Path) -> anyhow::Result<Vec<u8>> {
    let lang = lang.to_ascii_lowercase();
    if !PACKAGE_TYPES.contains(&lang.as_str()) {
        bail!(
            "unknown chaincode type {lang}: use one of {}",
            PACKAGE_TYPES.join(", ")
        );
    }
    let mut metadata = twill_lifecycle::PackageMetadata::new(label, lang.as_str());
    if !matches!(
        lang.as_str(),
        twill_lifecycle::TYPE_CCAAS | twill_lifecycle::TYPE_PROCESS
    ) {
        metadata.path = dir.to_string_lossy().into_owned();
    }
    metadata
        .validate()
        .with_context(|| format!("cannot package with label {label:?} and type {lang}"))?;
    let code = twill_lifecycle::build_code_archive_from_dir(dir)
        .with_context(|| format!("packaging the folder {}", dir.display()))?;
    twill_lifecycle::assemble_package(&metadata, &code)
        .with_context(|| format!("packaging the folder {}", dir.display()))
}

async fn install(args: InstallArgs) -> anyhow::Result<String> {
    let bytes = std::fs::read(&args.package)
        .with_context(|| format!("reading the package {}", args.package.display()))?;
    let signer = args.peer.identity.load()?;
    let peer = args.peer.target()?;
    let call = InstallChaincodeArgs {
        chaincode_install_package: bytes,
    };
    let payload = lifecycle_call(
        &peer,
        &signer,
        "",
        "InstallChaincode",
        &call,
        "chaincode install",
    )
    .await?;
    let result = decode::<InstallChaincodeResult>(&payload, "InstallChaincodeResult")?;
    Ok(format!(
        "Chaincode code package identifier: {}\n",
        result.package_id
    ))
}

async fn query_installed(args: QueryInstalledArgs) -> anyhow::Result<String> {
    let signer = args.peer.identity.load()?;
    let peer = args.peer.target()?;
    let payload = lifecycle_call(
        &peer,
        &signer,
        "",
        "QueryInstalledChaincodes",
        &QueryInstalledChaincodesArgs {},
        "query",
    )
    .await?;
    let result =
        decode::<QueryInstalledChaincodesResult>(&payload, "QueryInstalledChaincodesResult")?;
    Ok(match args.output {
        Some(OutputFormat::Json) => json_text(&installed_json(&result)),
        None => format_installed(&result),
    })
}

async fn get_installed_package(args: GetInstalledPackageArgs) -> anyhow::Result<String> {
    let signer = args.peer.identity.load()?;
    let peer = args.peer.target()?;
    let call = GetInstalledChaincodePackageArgs {
        package_id: args.package_id.clone(),
    };
    let payload = lifecycle_call(
        &peer,
        &signer,
        "",
        "GetInstalledChaincodePackage",
        &call,
        "query",
    )
    .await?;
    let result = decode::<GetInstalledChaincodePackageResult>(
        &payload,
        "GetInstalledChaincodePackageResult",
    )?;
    let file = args
        .output_directory
        .join(format!("{}.tar.gz", args.package_id));
    std::fs::write(&file, &result.chaincode_install_package)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(String::new())
}

/// A lifecycle args message (`Approve…`, `CheckCommitReadiness…`,
/// `CommitChaincodeDefinition…`) holding the definition `def`, plus any
/// extra fields given; they share these field names.
macro_rules! definition_args {
    ($ty:ident, $def:expr $(, $field:ident: $value:expr)*) => {{
        let def = $def;
        $ty {
            $($field: $value,)*
            sequence: def.sequence,
            name: def.name,
            version: def.version,
            endorsement_plugin: def.endorsement_plugin,
            validation_plugin: def.validation_plugin,
            validation_parameter: def.validation_parameter,
            collections: def.collections,
            init_required: def.init_required,
        }
    }};
}

/// Endorses `_lifecycle` `function` with `call` on `peers`, submits it to
/// `orderer` and waits as `wait` says; prints nothing on success.
async fn submit_lifecycle<M: Message>(
    peers: &PeersArgs,
    orderer: &OrdererArgs,
    wait: &WaitArgs,
    channel: &str,
    function: &str,
    call: &M,
) -> anyhow::Result<String> {
    let signer = peers.identity.load()?;
    let built = lifecycle_proposal(&signer, channel, function, call)?;
    Submit {
        signer: &signer,
        channel,
        peers: &peers.targets()?,
        orderer: &orderer.target()?,
        wait: wait.timeout(),
        failure: Failure::Lifecycle,
    }
    .run(&built)
    .await?;
    Ok(String::new())
}

async fn approve(args: ApproveArgs) -> anyhow::Result<String> {
    let def = args.definition.fields()?;
    let source = match args.package_id.as_ref().filter(|id| !id.is_empty()) {
        Some(id) => chaincode_source::Type::LocalPackage(chaincode_source::Local {
            package_id: id.clone(),
        }),
        None => chaincode_source::Type::Unavailable(chaincode_source::Unavailable {}),
    };
    let call = definition_args!(
        ApproveChaincodeDefinitionForMyOrgArgs,
        def,
        source: Some(ChaincodeSource {
            r#type: Some(source),
        })
    );
    submit_lifecycle(
        &args.peers,
        &args.orderer,
        &args.wait,
        &args.definition.channel_id,
        "ApproveChaincodeDefinitionForMyOrg",
        &call,
    )
    .await
}

async fn query_approved(args: QueryApprovedArgs) -> anyhow::Result<String> {
    let signer = args.peer.identity.load()?;
    let peer = args.peer.target()?;
    let call = QueryApprovedChaincodeDefinitionArgs {
        name: args.name.clone(),
        sequence: args.sequence.unwrap_or(0),
    };
    let payload = lifecycle_call(
        &peer,
        &signer,
        &args.channel_id,
        "QueryApprovedChaincodeDefinition",
        &call,
        "query",
    )
    .await?;
    let result = decode::<QueryApprovedChaincodeDefinitionResult>(
        &payload,
        "QueryApprovedChaincodeDefinitionResult",
    )?;
    Ok(match args.output {
        Some(OutputFormat::Json) => json_text(&approved_json(&result)),
        None => format_approved(&args.name, &args.channel_id, &result),
    })
}

async fn check_commit_readiness(args: ReadinessArgs) -> anyhow::Result<String> {
    let def = args.definition.fields()?;
    let call = definition_args!(CheckCommitReadinessArgs, def);
    let signer = args.peer.identity.load()?;
    let peer = args.peer.target()?;
    let d = &args.definition;
    let payload = lifecycle_call(
        &peer,
        &signer,
        &d.channel_id,
        "CheckCommitReadiness",
        &call,
        "query",
    )
    .await?;
    let result = decode::<CheckCommitReadinessResult>(&payload, "CheckCommitReadinessResult")?;
    Ok(match args.output {
        Some(OutputFormat::Json) => json_text(&readiness_json(&result)),
        None => format_readiness(&d.name, &d.version, d.sequence, &d.channel_id, &result),
    })
}

async fn commit(args: CommitArgs) -> anyhow::Result<String> {
    let def = args.definition.fields()?;
    let call = definition_args!(CommitChaincodeDefinitionArgs, def);
    submit_lifecycle(
        &args.peers,
        &args.orderer,
        &args.wait,
        &args.definition.channel_id,
        "CommitChaincodeDefinition",
        &call,
    )
    .await
}

async fn query_committed(args: QueryCommittedArgs) -> anyhow::Result<String> {
    let signer = args.peer.identity.load()?;
    let peer = args.peer.target()?;
    let channel = &args.channel_id;
    match &args.name {
        Some(name) => {
            let call = QueryChaincodeDefinitionArgs { name: name.clone() };
            let payload = lifecycle_call(
                &peer,
                &signer,
                channel,
                "QueryChaincodeDefinition",
                &call,
                "query",
            )
            .await?;
            let result = decode::<QueryChaincodeDefinitionResult>(
                &payload,
                "QueryChaincodeDefinitionResult",
            )?;
            Ok(match args.output {
                Some(OutputFormat::Json) => json_text(&committed_json(&result)),
                None => format_committed(name, channel, &result),
            })
        }
        None => {
            let payload = lifecycle_call(
                &peer,
                &signer,
                channel,
                "QueryChaincodeDefinitions",
                &QueryChaincodeDefinitionsArgs {},
                "query",
            )
            .await?;
            let result = decode::<QueryChaincodeDefinitionsResult>(
                &payload,
                "QueryChaincodeDefinitionsResult",
            )?;
            Ok(match args.output {
                Some(OutputFormat::Json) => json_text(&committed_list_json(&result)),
                None => format_committed_list(channel, &result),
            })
        }
    }
}

async fn invoke(args: InvokeArgs) -> anyhow::Result<String> {
    let (mut input, transient) = args.call.input()?;
    input.is_init = args.is_init;
    let signer = args.peers.identity.load()?;
    let channel = &args.call.channel_id;
    let built = build_proposal(
        &signer,
        HeaderType::EndorserTransaction,
        channel,
        &args.call.name,
        input,
        transient,
    )?;
    let submit = Submit {
        signer: &signer,
        channel,
        peers: &args.peers.targets()?,
        orderer: &args.orderer.target()?,
        wait: args.wait.timeout(),
        failure: Failure::Invoke,
    };
    let response = submit.run(&built).await?;
    Ok(format!(
        "Chaincode invoke successful. result: {}\n",
        response_text(&response)
    ))
}

async fn query(args: QueryArgs) -> anyhow::Result<Vec<u8>> {
    let (input, transient) = args.call.input()?;
    let signer = args.peer.identity.load()?;
    let peer = args.peer.target()?;
    let built = build_proposal(
        &signer,
        HeaderType::EndorserTransaction,
        &args.call.channel_id,
        &args.call.name,
        input,
        transient,
    )?;
    let what = format!("chaincode {} query", args.call.name);
    let reply = send_proposal(&peer, &what, built.signed).await?;
    let response = reply.response.unwrap_or_default();
    if !is_success(response.status) {
        bail!(
            "endorsement failure during query. response: {}",
            response_text(&response)
        );
    }
    let mut out = response.payload;
    out.push(b'\n');
    Ok(out)
}

// ---------------------------------------------------------------------------
// Targets and calls
// ---------------------------------------------------------------------------

/// A peer to call: its address and, for TLS, what to trust.
#[derive(Debug, Clone)]
pub struct PeerTarget {
    /// `host:port`.
    pub address: String,
    /// TLS settings; `None` for plain text.
    pub tls: Option<ClientTls>,
}

/// An orderer to broadcast to: its address and, for TLS, what to trust.
#[derive(Debug, Clone)]
pub struct OrdererTarget {
    /// `host:port`.
    pub address: String,
    /// TLS settings; `None` for plain text.
    pub tls: Option<ClientTls>,
}

/// TLS trusting the CA certificates in `cas` (none: plain text), expecting
/// `server_name` in the server's certificate when given.
fn client_tls(cas: &[PathBuf], server_name: Option<&str>) -> anyhow::Result<Option<ClientTls>> {
    if cas.is_empty() {
        return Ok(None);
    }
    let names = cas
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let tls = ClientTls::from_root_files(cas)
        .with_context(|| format!("reading the TLS CA certificates {names}"))?;
    Ok(Some(match server_name {
        Some(name) => tls.with_server_name(name),
        None => tls,
    }))
}

/// Whether a chaincode response status means success (Fabric: 200..400).
fn is_success(status: i32) -> bool {
    (200..400).contains(&status)
}

/// Decodes a result message, naming it in the error.
fn decode<M: Message + Default>(payload: &[u8], what: &str) -> anyhow::Result<M> {
    M::decode(payload).with_context(|| format!("the peer's answer is not a {what}"))
}

/// Sends `proposal` to `peer`; `what` names the call in errors.
pub async fn send_proposal(
    peer: &PeerTarget,
    what: &str,
    proposal: SignedProposal,
) -> anyhow::Result<ProposalResponse> {
    process_proposal(&peer.address, peer.tls.as_ref(), proposal)
        .await
        .with_context(|| {
            format!(
                "{what} on the peer at {}{}",
                peer.address,
                plain_text_hint(peer.tls.as_ref(), "--tls-ca")
            )
        })
}

/// A hint for failures when talking plain text, where a TLS server
/// only answers with a vague transport error.
fn plain_text_hint(tls: Option<&ClientTls>, flag: &str) -> String {
    match tls {
        Some(_) => String::new(),
        None => format!(" (called in plain text; if it uses TLS, give {flag})"),
    }
}

/// A signed proposal calling `_lifecycle` function `function` with `args`
/// on `channel` (empty for install and installed-package queries).
pub fn lifecycle_proposal(
    signer: &SigningIdentity,
    channel: &str,
    function: &str,
    args: &impl Message,
) -> anyhow::Result<BuiltProposal> {
    let input = ChaincodeInput {
        args: vec![function.as_bytes().to_vec(), args.encode_to_vec()],
        ..Default::default()
    };
    build_proposal(
        signer,
        HeaderType::EndorserTransaction,
        channel,
        LIFECYCLE,
        input,
        BTreeMap::new(),
    )
}

/// Calls `_lifecycle` function `function` on one peer without submitting
/// anything and returns the result payload (the serialized
/// `<function>Result`). A failure status becomes
/// `<failure> failed with status: <status> - <message>`.
pub async fn lifecycle_call(
    peer: &PeerTarget,
    signer: &SigningIdentity,
    channel: &str,
    function: &str,
    args: &impl Message,
    failure: &str,
) -> anyhow::Result<Vec<u8>> {
    let built = lifecycle_proposal(signer, channel, function, args)?;
    let what = format!("calling {LIFECYCLE} {function}");
    let reply = send_proposal(peer, &what, built.signed).await?;
    let Some(response) = reply.response else {
        bail!(
            "{what} on the peer at {}: the answer carries no response",
            peer.address
        );
    };
    if !is_success(response.status) {
        bail!(
            "{failure} failed with status: {} - {}",
            response.status,
            response.message
        );
    }
    Ok(response.payload)
}

/// The height of `channel` on `peer` (qscc GetChainInfo): the number of the
/// next block it will commit.
pub async fn chain_height(
    peer: &PeerTarget,
    signer: &SigningIdentity,
    channel: &str,
) -> anyhow::Result<u64> {
    let proposal = signed_proposal(
        signer,
        HeaderType::EndorserTransaction,
        "",
        "qscc",
        vec![b"GetChainInfo".to_vec(), channel.as_bytes().to_vec()],
    )?;
    let what = format!("asking for the height of channel {channel} (qscc GetChainInfo)");
    let reply = send_proposal(peer, &what, proposal).await?;
    let response = reply.response.unwrap_or_default();
    if response.status != 200 {
        bail!(
            "{what} on the peer at {}: status {} - {}",
            peer.address,
            response.status,
            response.message
        );
    }
    let info = decode::<BlockchainInfo>(&response.payload, "BlockchainInfo")?;
    Ok(info.height)
}

/// How a non-success endorsement is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `proposal failed with status: 500 - <message>` (lifecycle verbs).
    Lifecycle,
    /// `endorsement failure during invoke. response: status:500 message:"..."`.
    Invoke,
}

impl Failure {
    fn message(self, response: &Response) -> String {
        match self {
            Failure::Lifecycle => format!(
                "proposal failed with status: {} - {}",
                response.status, response.message
            ),
            Failure::Invoke => format!(
                "endorsement failure during invoke. response: {}",
                response_text(response)
            ),
        }
    }
}

/// Sends `proposal` to every peer and returns their answers in order;
/// fails on the first peer that cannot be reached, answers with a failure
/// status or without an endorsement, or whose result differs from the
/// first peer's.
pub async fn endorse(
    peers: &[PeerTarget],
    proposal: &SignedProposal,
    failure: Failure,
) -> anyhow::Result<Vec<ProposalResponse>> {
    let Some(first) = peers.first() else {
        bail!("no peer to send the proposal to (give --peer-address)");
    };
    let mut responses: Vec<ProposalResponse> = Vec::with_capacity(peers.len());
    for peer in peers {
        let reply = send_proposal(peer, "endorsing the proposal", proposal.clone()).await?;
        let response = reply.response.clone().unwrap_or_default();
        if !is_success(response.status) {
            bail!("{} (peer {})", failure.message(&response), peer.address);
        }
        if reply.endorsement.is_none() {
            bail!(
                "the peer at {} answered without an endorsement",
                peer.address
            );
        }
        if let Some(first_reply) = responses.first() {
            if first_reply.payload != reply.payload {
                bail!(
                    "the peers' answers differ: the peer at {} returned a different result than the peer at {} \
                     (different ledger state or chaincode behaviour)",
                    peer.address,
                    first.address
                );
            }
        }
        responses.push(reply);
    }
    Ok(responses)
}

/// The transaction for `proposal` endorsed by `responses`, signed by
/// `signer` (who must be the proposal's creator), in the form a committing
/// peer validates: the proposal's headers, one action whose payload holds
/// the proposal payload without its transient data and the endorsed result.
pub fn assemble_transaction(
    signer: &SigningIdentity,
    proposal: &Proposal,
    responses: &[ProposalResponse],
) -> anyhow::Result<Envelope> {
    let Some(first) = responses.first() else {
        bail!("cannot assemble a transaction without proposal responses");
    };
    let mut endorsements = Vec::with_capacity(responses.len());
    for (i, r) in responses.iter().enumerate() {
        let status = r.response.as_ref().map_or(0, |r| r.status);
        if !is_success(status) {
            bail!("proposal response {i} has status {status}, not a success");
        }
        if r.payload != first.payload {
            bail!("proposal response {i} differs from proposal response 0");
        }
        let Some(endorsement) = r.endorsement.clone() else {
            bail!("proposal response {i} carries no endorsement");
        };
        endorsements.push(endorsement);
    }
    let payload = twill_configtx::block::endorser_transaction_payload(
        proposal,
        first.payload.clone(),
        endorsements,
    )
    .context("the proposal does not decode")?;
    let signature = signer
        .sign(&payload)
        .context("signing the transaction envelope")?;
    Ok(Envelope { payload, signature })
}

/// Sends `envelope` on a `Broadcast` stream to `orderer` and waits for its
/// answer; fails unless the answer is SUCCESS.
pub async fn broadcast(orderer: &OrdererTarget, envelope: Envelope) -> anyhow::Result<()> {
    let address = &orderer.address;
    let channel = twill_comm::connect(address, orderer.tls.as_ref())
        .await
        .with_context(|| format!("connecting to the orderer at {address}"))?;
    let mut client = twill_comm::with_message_limits!(AtomicBroadcastClient::new(channel));
    let (tx, rx) = mpsc::channel(1);
    tx.send(envelope)
        .await
        .map_err(|_| anyhow!("queueing the transaction for the orderer at {address}"))?;
    let exchange = async {
        let mut answers = client
            .broadcast(ReceiverStream::new(rx))
            .await
            .map_err(|s| {
                anyhow!(
                    "opening Broadcast on the orderer at {address}{}: {:?}: {}",
                    plain_text_hint(orderer.tls.as_ref(), "--orderer-tls-ca"),
                    s.code(),
                    s.message()
                )
            })?
            .into_inner();
        match answers.message().await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(anyhow!(
                "the orderer at {address} closed the Broadcast stream without answering"
            )),
            Err(s) => Err(anyhow!(
                "Broadcast on the orderer at {address} failed: {:?}: {}",
                s.code(),
                s.message()
            )),
        }
    };
    let answer = tokio::time::timeout(BROADCAST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            anyhow!(
                "the orderer at {address} did not answer the broadcast within {}s",
                BROADCAST_TIMEOUT.as_secs()
            )
        })??;
    drop(tx);
    if answer.status != Status::Success as i32 {
        bail!(
            "the orderer at {address} refused the transaction: got unexpected status: {} -- {}",
            status_name(answer.status),
            answer.info
        );
    }
    Ok(())
}

fn status_name(status: i32) -> String {
    Status::try_from(status).map_or_else(|_| status.to_string(), |s| s.as_str_name().to_owned())
}

/// The name of a transaction validation code, e.g. `MVCC_READ_CONFLICT`.
pub fn validation_code_name(code: i32) -> String {
    TxValidationCode::try_from(code)
        .map_or_else(|_| format!("code {code}"), |c| c.as_str_name().to_owned())
}

/// A signed Deliver request for blocks from `start` on, without end.
fn seek_request(
    signer: &SigningIdentity,
    channel: &str,
    start: seek_position::Type,
) -> anyhow::Result<Envelope> {
    let seek = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(start),
        }),
        stop: Some(SeekPosition {
            r#type: Some(seek_position::Type::Specified(SeekSpecified {
                number: u64::MAX,
            })),
        }),
        behavior: seek_info::SeekBehavior::BlockUntilReady as i32,
        error_response: seek_info::SeekErrorResponse::Strict as i32,
        content_type: seek_info::SeekContentType::Block as i32,
    };
    let creator = signer.serialize();
    let nonce = twill_crypto::random_bytes(24);
    let tx_id = twill_configtx::block::compute_tx_id(&nonce, &creator);
    let header =
        twill_configtx::block::channel_header(HeaderType::DeliverSeekInfo, 0, channel, &tx_id);
    let payload = Payload {
        header: Some(Header {
            channel_header: header.encode_to_vec(),
            signature_header: SignatureHeader { creator, nonce }.encode_to_vec(),
        }),
        data: seek.encode_to_vec(),
    }
    .encode_to_vec();
    let signature = signer
        .sign(&payload)
        .context("signing the DeliverFiltered request")?;
    Ok(Envelope { payload, signature })
}

/// A `DeliverFiltered` stream on one peer, to learn when transactions are
/// committed and with which validation code.
pub struct CommitWatcher {
    address: String,
    channel: String,
    stream: tonic::Streaming<twill_protos::peer::DeliverResponse>,
    /// Kept open: closing the request side could end the stream.
    _requests: mpsc::Sender<Envelope>,
}

impl std::fmt::Debug for CommitWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitWatcher")
            .field("address", &self.address)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl CommitWatcher {
    /// Starts following `channel` on `peer` from its newest block, and
    /// returns once the peer has sent that block: every transaction
    /// ordered afterwards is seen. Needs only read access to the channel,
    /// so it works with peers of other orgs. Gives up after `timeout`.
    pub async fn from_newest(
        peer: &PeerTarget,
        signer: &SigningIdentity,
        channel: &str,
        timeout: Duration,
    ) -> anyhow::Result<CommitWatcher> {
        let request = seek_request(signer, channel, seek_position::Type::Newest(SeekNewest {}))?;
        let opening = async {
            let mut watcher = CommitWatcher::open(peer, channel, request).await?;
            watcher.next_block().await?;
            Ok::<_, anyhow::Error>(watcher)
        };
        tokio::time::timeout(timeout, opening).await.map_err(|_| {
            anyhow!(
                "the peer at {} sent no block of channel {channel} on DeliverFiltered within {timeout:?}",
                peer.address
            )
        })?
    }

    /// Starts following `channel` on `peer` from block `start` (e.g. the
    /// height from [`chain_height`] taken before broadcasting).
    pub async fn from_block(
        peer: &PeerTarget,
        signer: &SigningIdentity,
        channel: &str,
        start: u64,
    ) -> anyhow::Result<CommitWatcher> {
        let request = seek_request(
            signer,
            channel,
            seek_position::Type::Specified(SeekSpecified { number: start }),
        )?;
        CommitWatcher::open(peer, channel, request).await
    }

    async fn open(
        peer: &PeerTarget,
        channel: &str,
        request: Envelope,
    ) -> anyhow::Result<CommitWatcher> {
        let address = &peer.address;
        let conn = twill_comm::connect(address, peer.tls.as_ref())
            .await
            .with_context(|| format!("connecting to the peer at {address} for DeliverFiltered"))?;
        let mut client = twill_comm::with_message_limits!(DeliverClient::new(conn));
        let (tx, rx) = mpsc::channel(1);
        tx.send(request)
            .await
            .map_err(|_| anyhow!("queueing the DeliverFiltered request for {address}"))?;
        let stream = client
            .deliver_filtered(ReceiverStream::new(rx))
            .await
            .map_err(|s| {
                anyhow!(
                    "opening DeliverFiltered on the peer at {address}{}: {:?}: {}",
                    plain_text_hint(peer.tls.as_ref(), "--tls-ca"),
                    s.code(),
                    s.message()
                )
            })?
            .into_inner();
        Ok(CommitWatcher {
            address: address.clone(),
            channel: channel.to_owned(),
            stream,
            _requests: tx,
        })
    }

    /// The next filtered block; a status or the end of the stream is an
    /// error.
    async fn next_block(&mut self) -> anyhow::Result<twill_protos::peer::FilteredBlock> {
        let (address, channel) = (&self.address, &self.channel);
        loop {
            let message = self.stream.message().await.map_err(|s| {
                anyhow!(
                    "DeliverFiltered on the peer at {address} failed: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?;
            let Some(message) = message else {
                bail!("the peer at {address} closed DeliverFiltered on channel {channel}");
            };
            match message.r#type {
                Some(deliver_response::Type::FilteredBlock(block)) => return Ok(block),
                Some(deliver_response::Type::Status(status)) => bail!(
                    "the peer at {address} ended DeliverFiltered on channel {channel} with status {}",
                    status_name(status)
                ),
                _ => {}
            }
        }
    }

    /// Reads blocks until one holds transaction `tx_id` and returns its
    /// validation code (see [`validation_code_name`]); fails when
    /// `deadline` passes first.
    pub async fn wait_for(&mut self, tx_id: &str, deadline: Instant) -> anyhow::Result<i32> {
        let left = deadline.saturating_duration_since(Instant::now());
        let address = self.address.clone();
        let waiting = async {
            loop {
                let block = self
                    .next_block()
                    .await
                    .with_context(|| format!("waiting for transaction {tx_id} to be committed"))?;
                if let Some(t) = block.filtered_transactions.iter().find(|t| t.txid == tx_id) {
                    return Ok(t.tx_validation_code);
                }
            }
        };
        tokio::time::timeout(left, waiting).await.map_err(|_| {
            anyhow!(
                "timed out waiting for transaction {tx_id} to be committed on the peer at {address}"
            )
        })?
    }
}

/// Follows `channel` on `peer` from block `start` until a block holds
/// transaction `tx_id` or `deadline` passes; returns the transaction's
/// validation code (see [`validation_code_name`]).
pub async fn wait_for_commit(
    peer: &PeerTarget,
    signer: &SigningIdentity,
    channel: &str,
    tx_id: &str,
    start: u64,
    deadline: Instant,
) -> anyhow::Result<i32> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut watcher = tokio::time::timeout(
        left,
        CommitWatcher::from_block(peer, signer, channel, start),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "timed out opening DeliverFiltered on the peer at {}",
            peer.address
        )
    })??;
    watcher.wait_for(tx_id, deadline).await
}

/// Submitting a transaction: endorse, order, wait for commit.
#[derive(Debug)]
pub struct Submit<'a> {
    /// Signs the transaction; must have signed the proposal.
    pub signer: &'a SigningIdentity,
    /// The channel.
    pub channel: &'a str,
    /// Peers that endorse (all of them) and that are watched for the commit.
    pub peers: &'a [PeerTarget],
    /// Where the transaction is broadcast.
    pub orderer: &'a OrdererTarget,
    /// How long to wait for the commit on every peer; `None`: do not wait.
    pub wait: Option<Duration>,
    /// How a failed endorsement is reported.
    pub failure: Failure,
}

impl Submit<'_> {
    /// Endorses `proposal` on every peer, broadcasts the transaction and,
    /// if asked, waits until every peer has committed it; returns the first
    /// peer's chaincode response. Fails with `transaction invalidated with
    /// status (<CODE>)` if a peer marks the transaction invalid.
    ///
    /// As Fabric's CLI does, each peer's `DeliverFiltered` stream is opened
    /// (from its newest block) before the transaction is broadcast, so the
    /// commit cannot be missed.
    pub async fn run(&self, proposal: &BuiltProposal) -> anyhow::Result<Response> {
        self.run_reporting(proposal, &|line| eprintln!("{line}"))
            .await
    }

    /// [`Submit::run`], handing each `txid [...] committed ...` line to
    /// `report` instead of printing it on stderr.
    pub async fn run_reporting(
        &self,
        proposal: &BuiltProposal,
        report: &(dyn Fn(&str) + Send + Sync),
    ) -> anyhow::Result<Response> {
        let responses = endorse(self.peers, &proposal.signed, self.failure).await?;
        let envelope = assemble_transaction(self.signer, &proposal.proposal, &responses)?;
        let mut watchers = Vec::new();
        if let Some(timeout) = self.wait {
            for peer in self.peers {
                watchers.push(
                    CommitWatcher::from_newest(peer, self.signer, self.channel, timeout).await?,
                );
            }
        }
        broadcast(self.orderer, envelope).await?;
        if let Some(timeout) = self.wait {
            let deadline = Instant::now() + timeout;
            for watcher in &mut watchers {
                let code = watcher.wait_for(&proposal.tx_id, deadline).await?;
                let name = validation_code_name(code);
                if code != TxValidationCode::Valid as i32 {
                    bail!("transaction invalidated with status ({name})");
                }
                report(&format!(
                    "txid [{}] committed with status ({name}) at {}",
                    proposal.tx_id, watcher.address
                ));
            }
        }
        Ok(responses
            .into_iter()
            .next()
            .and_then(|r| r.response)
            .unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// Parses `-c`: `{"Args":["fn","a1",...]}` or
/// `{"function":"fn","Args":["a1",...]}` (keys in any letter case) into the
/// chaincode input (function name first).
pub fn parse_ctor(text: &str) -> anyhow::Result<ChaincodeInput> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("-c is not valid JSON: {text}"))?;
    let Value::Object(map) = value else {
        bail!("-c must be a JSON object such as {{\"Args\":[\"Function\",\"arg1\"]}}, not {text}");
    };
    let mut function = None;
    let mut args = Vec::new();
    for (key, v) in map {
        match key.to_ascii_lowercase().as_str() {
            "args" => {
                let Value::Array(items) = v else {
                    bail!("-c: \"{key}\" must be a list of strings");
                };
                for item in items {
                    let Value::String(s) = item else {
                        bail!("-c: every argument must be a JSON string, and {item} is not");
                    };
                    args.push(s.into_bytes());
                }
            }
            "function" => {
                let Value::String(s) = v else {
                    bail!("-c: \"{key}\" must be a string");
                };
                function = Some(s);
            }
            _ => bail!("-c: unknown key \"{key}\" (expected \"Args\" and optionally \"function\")"),
        }
    }
    if let Some(f) = function.filter(|f| !f.is_empty()) {
        args.insert(0, f.into_bytes());
    }
    Ok(ChaincodeInput {
        args,
        ..Default::default()
    })
}

/// Parses `--transient`: a JSON object whose values are base64 text.
pub fn parse_transient(text: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let map: BTreeMap<String, String> = serde_json::from_str(text).with_context(|| {
        format!("--transient must be a JSON object of base64 strings, not {text}")
    })?;
    map.into_iter()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .with_context(|| format!("--transient: the value of \"{k}\" is not base64"))?;
            Ok((k, bytes))
        })
        .collect()
}

/// The endorsement policy of a definition from `--signature-policy` (an
/// expression) or `--channel-config-policy` (a policy path); with neither,
/// a reference to [`DEFAULT_ENDORSEMENT_POLICY`].
pub fn application_policy(
    signature_policy: Option<&str>,
    channel_config_policy: Option<&str>,
) -> anyhow::Result<ApplicationPolicy> {
    let policy = match (signature_policy, channel_config_policy) {
        (Some(_), Some(_)) => {
            bail!("give either --signature-policy or --channel-config-policy, not both")
        }
        (Some(expr), None) => application_policy::Type::SignaturePolicy(parse_signature_policy(
            expr,
            "--signature-policy",
        )?),
        (None, Some(path)) => {
            if path.trim().is_empty() {
                bail!("--channel-config-policy is empty");
            }
            application_policy::Type::ChannelConfigPolicyReference(path.to_owned())
        }
        (None, None) => application_policy::Type::ChannelConfigPolicyReference(
            DEFAULT_ENDORSEMENT_POLICY.to_owned(),
        ),
    };
    Ok(ApplicationPolicy {
        r#type: Some(policy),
    })
}

fn parse_signature_policy(expr: &str, flag: &str) -> anyhow::Result<SignaturePolicyEnvelope> {
    twill_policy::parse_policy(expr).with_context(|| format!("{flag}: invalid policy {expr}"))
}

/// One entry of Fabric's collections_config.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CollectionJson {
    name: String,
    policy: String,
    #[serde(default)]
    required_peer_count: i32,
    #[serde(default)]
    max_peer_count: i32,
    #[serde(default)]
    block_to_live: u64,
    #[serde(default)]
    member_only_read: bool,
    #[serde(default)]
    member_only_write: bool,
    #[serde(default)]
    endorsement_policy: Option<CollectionEndorsementJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CollectionEndorsementJson {
    #[serde(default)]
    signature_policy: Option<String>,
    #[serde(default)]
    channel_config_policy: Option<String>,
}

/// Reads a collections config file (see [`parse_collections_config`]).
fn read_collections_config(path: &Path) -> anyhow::Result<CollectionConfigPackage> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the collections config {}", path.display()))?;
    parse_collections_config(&text)
        .with_context(|| format!("in the collections config {}", path.display()))
}

/// Parses Fabric's collections_config.json: a list of
/// `{"name", "policy", "requiredPeerCount", "maxPeerCount", "blockToLive",
/// "memberOnlyRead", "memberOnlyWrite", "endorsementPolicy"}`.
pub fn parse_collections_config(text: &str) -> anyhow::Result<CollectionConfigPackage> {
    let entries: Vec<CollectionJson> =
        serde_json::from_str(text).context("not a JSON list of collections")?;
    let mut config = Vec::with_capacity(entries.len());
    for c in entries {
        let member_policy = parse_signature_policy(&c.policy, &format!("collection {}", c.name))?;
        let endorsement_policy = match c.endorsement_policy {
            Some(e) => Some(
                application_policy(
                    e.signature_policy.as_deref(),
                    e.channel_config_policy.as_deref(),
                )
                .with_context(|| format!("endorsementPolicy of collection {}", c.name))?,
            ),
            None => None,
        };
        config.push(CollectionConfig {
            payload: Some(collection_config::Payload::StaticCollectionConfig(
                StaticCollectionConfig {
                    name: c.name,
                    member_orgs_policy: Some(CollectionPolicyConfig {
                        payload: Some(collection_policy_config::Payload::SignaturePolicy(
                            member_policy,
                        )),
                    }),
                    required_peer_count: c.required_peer_count,
                    maximum_peer_count: c.max_peer_count,
                    block_to_live: c.block_to_live,
                    member_only_read: c.member_only_read,
                    member_only_write: c.member_only_write,
                    endorsement_policy,
                },
            )),
        });
    }
    Ok(CollectionConfigPackage { config })
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// A chaincode response as Go prints a protobuf message in text form:
/// `status:200 payload:"..."`, with `message:"..."` when there is one.
pub fn response_text(response: &Response) -> String {
    let mut parts = Vec::new();
    if response.status != 0 {
        parts.push(format!("status:{}", response.status));
    }
    if !response.message.is_empty() {
        parts.push(format!(
            "message:{}",
            quote_text(response.message.as_bytes())
        ));
    }
    if !response.payload.is_empty() {
        parts.push(format!("payload:{}", quote_text(&response.payload)));
    }
    parts.join(" ")
}

/// Bytes as a quoted protobuf text-format string: printable UTF-8 as is,
/// quotes, backslashes and control bytes escaped, invalid UTF-8 as `\xNN`.
fn quote_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if (0x80..=0x9f).contains(&(c as u32)) => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// `queryinstalled` as text.
pub fn format_installed(result: &QueryInstalledChaincodesResult) -> String {
    let mut out = String::from("Installed chaincodes on peer:\n");
    for cc in &result.installed_chaincodes {
        out.push_str(&format!(
            "Package ID: {}, Label: {}\n",
            cc.package_id, cc.label
        ));
    }
    out
}

/// `checkcommitreadiness` as text.
pub fn format_readiness(
    name: &str,
    version: &str,
    sequence: i64,
    channel: &str,
    result: &CheckCommitReadinessResult,
) -> String {
    let mut out = format!(
        "Chaincode definition for chaincode '{name}', version '{version}', sequence '{sequence}' \
         on channel '{channel}' approval status by org:\n"
    );
    for (org, approved) in &result.approvals {
        out.push_str(&format!("{org}: {approved}\n"));
    }
    out
}

fn approvals_text(approvals: &BTreeMap<String, bool>) -> String {
    approvals
        .iter()
        .map(|(org, ok)| format!("{org}: {ok}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `querycommitted -n <name>` as text.
pub fn format_committed(
    name: &str,
    channel: &str,
    result: &QueryChaincodeDefinitionResult,
) -> String {
    format!(
        "Committed chaincode definition for chaincode '{name}' on channel '{channel}':\n\
         Version: {}, Sequence: {}, Endorsement Plugin: {}, Validation Plugin: {}, Approvals: [{}]\n",
        result.version,
        result.sequence,
        result.endorsement_plugin,
        result.validation_plugin,
        approvals_text(&result.approvals)
    )
}

/// `querycommitted` (all chaincodes) as text.
pub fn format_committed_list(channel: &str, result: &QueryChaincodeDefinitionsResult) -> String {
    let mut out = format!("Committed chaincode definitions on channel '{channel}':\n");
    for d in &result.chaincode_definitions {
        out.push_str(&format!(
            "Name: {}, Version: {}, Sequence: {}, Endorsement Plugin: {}, Validation Plugin: {}\n",
            d.name, d.version, d.sequence, d.endorsement_plugin, d.validation_plugin
        ));
    }
    out
}

/// `queryapproved` as text.
pub fn format_approved(
    name: &str,
    channel: &str,
    result: &QueryApprovedChaincodeDefinitionResult,
) -> String {
    let package_id = match result.source.as_ref().and_then(|s| s.r#type.as_ref()) {
        Some(chaincode_source::Type::LocalPackage(local)) => local.package_id.as_str(),
        _ => "",
    };
    format!(
        "Approved chaincode definition for chaincode '{name}' on channel '{channel}':\n\
         sequence: {}, version: {}, init-required: {}, package-id: {package_id}, \
         endorsement plugin: {}, validation plugin: {}\n",
        result.sequence,
        result.version,
        result.init_required,
        result.endorsement_plugin,
        result.validation_plugin
    )
}

/// JSON as Fabric's CLI prints it: tab-indented, with a final newline.
fn json_text(value: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    // Serializing a `Value` into memory cannot fail.
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return format!("{value}\n");
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push('\n');
    text
}

/// Builds a JSON object leaving out empty values, as Go's `omitempty` does.
#[derive(Default)]
struct JsonObject(Map<String, Value>);

impl JsonObject {
    fn str(mut self, key: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(key.into(), v.into());
        }
        self
    }
    fn int(mut self, key: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(key.into(), v.into());
        }
        self
    }
    fn bool(mut self, key: &str, v: bool) -> Self {
        if v {
            self.0.insert(key.into(), v.into());
        }
        self
    }
    fn bytes(self, key: &str, v: &[u8]) -> Self {
        let text = base64::engine::general_purpose::STANDARD.encode(v);
        self.str(key, &text)
    }
    fn value(mut self, key: &str, v: Option<Value>) -> Self {
        let empty = match &v {
            None => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if let (false, Some(v)) = (empty, v) {
            self.0.insert(key.into(), v);
        }
        self
    }
    /// Like [`JsonObject::value`] but keeps an empty object (a message
    /// that is present though empty).
    fn message(mut self, key: &str, v: Option<Value>) -> Self {
        if let Some(v) = v {
            self.0.insert(key.into(), v);
        }
        self
    }
    fn build(self) -> Value {
        Value::Object(self.0)
    }
}

fn approvals_json(approvals: &BTreeMap<String, bool>) -> Option<Value> {
    Some(Value::Object(
        approvals
            .iter()
            .map(|(k, v)| (k.clone(), Value::Bool(*v)))
            .collect(),
    ))
}

fn collections_json(c: &Option<CollectionConfigPackage>) -> Option<Value> {
    let c = c.as_ref()?;
    let config = c
        .config
        .iter()
        .map(|entry| {
            let payload = entry.payload.as_ref().map(|p| match p {
                collection_config::Payload::StaticCollectionConfig(s) => JsonObject::default()
                    .message(
                        "static_collection_config",
                        Some(
                            JsonObject::default()
                                .str("name", &s.name)
                                .int("required_peer_count", i64::from(s.required_peer_count))
                                .int("maximum_peer_count", i64::from(s.maximum_peer_count))
                                .int(
                                    "block_to_live",
                                    i64::try_from(s.block_to_live).unwrap_or(i64::MAX),
                                )
                                .bool("member_only_read", s.member_only_read)
                                .bool("member_only_write", s.member_only_write)
                                .build(),
                        ),
                    )
                    .build(),
            });
            JsonObject::default().message("Payload", payload).build()
        })
        .collect::<Vec<_>>();
    Some(
        JsonObject::default()
            .value("config", Some(Value::Array(config)))
            .build(),
    )
}

/// `queryinstalled --output json`.
pub fn installed_json(result: &QueryInstalledChaincodesResult) -> Value {
    let list = result
        .installed_chaincodes
        .iter()
        .map(|cc| {
            let references = cc
                .references
                .iter()
                .map(|(channel, refs)| {
                    let chaincodes = refs
                        .chaincodes
                        .iter()
                        .map(|c| {
                            JsonObject::default()
                                .str("name", &c.name)
                                .str("version", &c.version)
                                .build()
                        })
                        .collect::<Vec<_>>();
                    (
                        channel.clone(),
                        JsonObject::default()
                            .value("chaincodes", Some(Value::Array(chaincodes)))
                            .build(),
                    )
                })
                .collect::<Map<_, _>>();
            JsonObject::default()
                .str("package_id", &cc.package_id)
                .str("label", &cc.label)
                .value("references", Some(Value::Object(references)))
                .build()
        })
        .collect::<Vec<_>>();
    JsonObject::default()
        .value("installed_chaincodes", Some(Value::Array(list)))
        .build()
}

/// `checkcommitreadiness --output json`.
pub fn readiness_json(result: &CheckCommitReadinessResult) -> Value {
    let mismatches = result
        .mismatches
        .iter()
        .map(|(org, m)| {
            let items = m.items.iter().map(|i| Value::String(i.clone())).collect();
            (
                org.clone(),
                JsonObject::default()
                    .value("items", Some(Value::Array(items)))
                    .build(),
            )
        })
        .collect::<Map<_, _>>();
    JsonObject::default()
        .value("approvals", approvals_json(&result.approvals))
        .value("mismatches", Some(Value::Object(mismatches)))
        .build()
}

/// `querycommitted -n <name> --output json`.
pub fn committed_json(r: &QueryChaincodeDefinitionResult) -> Value {
    JsonObject::default()
        .int("sequence", r.sequence)
        .str("version", &r.version)
        .str("endorsement_plugin", &r.endorsement_plugin)
        .str("validation_plugin", &r.validation_plugin)
        .bytes("validation_parameter", &r.validation_parameter)
        .message("collections", collections_json(&r.collections))
        .bool("init_required", r.init_required)
        .value("approvals", approvals_json(&r.approvals))
        .build()
}

/// `querycommitted --output json` (all chaincodes).
pub fn committed_list_json(r: &QueryChaincodeDefinitionsResult) -> Value {
    let list = r
        .chaincode_definitions
        .iter()
        .map(|d| {
            JsonObject::default()
                .str("name", &d.name)
                .int("sequence", d.sequence)
                .str("version", &d.version)
                .str("endorsement_plugin", &d.endorsement_plugin)
                .str("validation_plugin", &d.validation_plugin)
                .bytes("validation_parameter", &d.validation_parameter)
                .message("collections", collections_json(&d.collections))
                .bool("init_required", d.init_required)
                .build()
        })
        .collect::<Vec<_>>();
    JsonObject::default()
        .value("chaincode_definitions", Some(Value::Array(list)))
        .build()
}

/// `queryapproved --output json`.
pub fn approved_json(r: &QueryApprovedChaincodeDefinitionResult) -> Value {
    let source = r.source.as_ref().map(|s| match &s.r#type {
        Some(chaincode_source::Type::LocalPackage(local)) => JsonObject::default()
            .message(
                "Type",
                Some(
                    JsonObject::default()
                        .message(
                            "local_package",
                            Some(
                                JsonObject::default()
                                    .str("package_id", &local.package_id)
                                    .build(),
                            ),
                        )
                        .build(),
                ),
            )
            .build(),
        Some(chaincode_source::Type::Unavailable(_)) => JsonObject::default()
            .message(
                "Type",
                Some(
                    JsonObject::default()
                        .message("unavailable", Some(JsonObject::default().build()))
                        .build(),
                ),
            )
            .build(),
        None => JsonObject::default().build(),
    });
    JsonObject::default()
        .int("sequence", r.sequence)
        .str("version", &r.version)
        .str("endorsement_plugin", &r.endorsement_plugin)
        .str("validation_plugin", &r.validation_plugin)
        .bytes("validation_parameter", &r.validation_parameter)
        .message("collections", collections_json(&r.collections))
        .bool("init_required", r.init_required)
        .message("source", source)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser as _};
    use twill_peer::validation::lifecycle::{definition_entries, LIFECYCLE_NAMESPACE};
    use twill_peer::validation::testkit::{
        signature_policy, signed_block, write, TestNetwork, TxBuilder, CHANNEL,
    };
    use twill_protos::kvrwset::KvrwSet;
    use twill_protos::lifecycle::check_commit_readiness_result::Mismatches;
    use twill_protos::lifecycle::query_chaincode_definitions_result::ChaincodeDefinition;
    use twill_protos::lifecycle::query_installed_chaincodes_result::{
        Chaincode, InstalledChaincode, References,
    };
    use twill_protos::lifecycle::ChaincodeValidationInfo;
    use twill_protos::peer::{
        ChaincodeAction, ChaincodeId, ChaincodeInvocationSpec, Endorsement, ProposalResponsePayload,
    };
    use twill_protos::peer::{ChaincodeActionPayload, ChaincodeProposalPayload, Transaction};
    use twill_protos::rwset::{tx_read_write_set::DataModel, NsReadWriteSet, TxReadWriteSet};

    fn parse(args: &[&str]) -> Result<crate::Cli, clap::Error> {
        crate::Cli::try_parse_from(std::iter::once("twill").chain(args.iter().copied()))
    }

    fn chaincode_command(args: &[&str]) -> ChaincodeCommand {
        match parse(args) {
            Ok(crate::Cli {
                command: crate::Command::Chaincode(c),
            }) => c.command,
            Ok(other) => panic!("parsed as another command: {other:?}"),
            Err(e) => panic!("{e}"),
        }
    }

    const ID: [&str; 4] = ["--msp-dir", "msp", "--msp-id", "Org1MSP"];

    #[test]
    fn cli_definition_is_consistent() {
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn ctor_args_form() {
        let input = parse_ctor(r#"{"Args":["CreateAsset","a1","blue"]}"#).unwrap();
        assert_eq!(
            input.args,
            vec![b"CreateAsset".to_vec(), b"a1".to_vec(), b"blue".to_vec()]
        );
        assert!(!input.is_init);
    }

    #[test]
    fn ctor_function_form() {
        let input = parse_ctor(r#"{"function":"ReadAsset","Args":["a1"]}"#).unwrap();
        assert_eq!(input.args, vec![b"ReadAsset".to_vec(), b"a1".to_vec()]);
        // Keys in any case, as Go's JSON decoding matches them.
        let input = parse_ctor(r#"{"Function":"f","args":[]}"#).unwrap();
        assert_eq!(input.args, vec![b"f".to_vec()]);
        let input = parse_ctor(r#"{"Args":[]}"#).unwrap();
        assert!(input.args.is_empty());
    }

    #[test]
    fn ctor_errors() {
        for bad in [
            "",
            "[]",
            r#"{"Args":"x"}"#,
            r#"{"Args":[1]}"#,
            r#"{"Arg":["x"]}"#,
            r#"{"function":3}"#,
            "{Args:[]}",
        ] {
            assert!(parse_ctor(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn transient_values_are_base64() {
        let map = parse_transient(r#"{"secret":"aGVsbG8=","empty":""}"#).unwrap();
        assert_eq!(map.get("secret").map(Vec::as_slice), Some(&b"hello"[..]));
        assert_eq!(map.get("empty").map(Vec::as_slice), Some(&b""[..]));
        assert!(parse_transient(r#"{"secret":"not base64!"}"#).is_err());
        assert!(parse_transient(r#"{"secret":1}"#).is_err());
    }

    #[test]
    fn policy_flags() {
        let reference = |p: &ApplicationPolicy| match &p.r#type {
            Some(application_policy::Type::ChannelConfigPolicyReference(r)) => r.clone(),
            other => panic!("not a reference: {other:?}"),
        };
        assert_eq!(
            reference(&application_policy(None, None).unwrap()),
            "/Channel/Application/Endorsement"
        );
        assert_eq!(
            reference(&application_policy(None, Some("/Channel/Application/Writers")).unwrap()),
            "/Channel/Application/Writers"
        );
        let expr = "AND('Org1MSP.peer','Org2MSP.peer')";
        let p = application_policy(Some(expr), None).unwrap();
        let Some(application_policy::Type::SignaturePolicy(env)) = p.r#type else {
            panic!("not a signature policy");
        };
        assert_eq!(env, twill_policy::parse_policy(expr).unwrap());
        assert!(application_policy(Some(expr), Some("/Channel/Application/Writers")).is_err());
        assert!(application_policy(Some("AND("), None).is_err());
        assert!(application_policy(None, Some(" ")).is_err());
    }

    #[test]
    fn policy_flags_conflict_on_the_command_line() {
        let mut args = vec![
            "chaincode",
            "checkcommitreadiness",
            "-C",
            "ch",
            "-n",
            "cc",
            "-v",
            "1",
            "--sequence",
            "1",
            "--peer-address",
            "p:1",
            "--signature-policy",
            "OR('A.member')",
            "--channel-config-policy",
            "/Channel/Application/Endorsement",
        ];
        args.extend(ID);
        assert!(parse(&args).is_err());
    }

    #[test]
    fn definition_fields_from_flags() {
        let mut args = vec![
            "chaincode",
            "approveformyorg",
            "-C",
            "mychannel",
            "-n",
            "basic",
            "-v",
            "1.0",
            "--sequence",
            "2",
            "--package-id",
            "basic_1.0:abcd",
            "--init-required",
            "-o",
            "localhost:7050",
            "--peer-address",
            "localhost:7051",
        ];
        args.extend(ID);
        let ChaincodeCommand::Approveformyorg(a) = chaincode_command(&args) else {
            panic!("not approveformyorg");
        };
        assert_eq!(a.package_id.as_deref(), Some("basic_1.0:abcd"));
        assert!(a.wait.wait_for_event);
        assert_eq!(a.wait.wait_timeout, Duration::from_secs(30));
        let f = a.definition.fields().unwrap();
        assert_eq!(
            (f.sequence, f.name.as_str(), f.version.as_str()),
            (2, "basic", "1.0")
        );
        assert_eq!(
            (f.endorsement_plugin.as_str(), f.validation_plugin.as_str()),
            ("escc", "vscc")
        );
        assert!(f.init_required);
        assert!(f.collections.is_none());
        assert_eq!(
            ApplicationPolicy::decode(f.validation_parameter.as_slice()).unwrap(),
            application_policy(None, None).unwrap()
        );
    }

    #[test]
    fn repeated_peers_and_wait_flags() {
        let mut args = vec![
            "chaincode",
            "invoke",
            "-C",
            "mychannel",
            "-n",
            "basic",
            "-c",
            r#"{"Args":["InitLedger"]}"#,
            "--isInit",
            "-o",
            "localhost:7050",
            "--peer-address",
            "localhost:7051",
            "--peerAddresses",
            "localhost:9051",
            "--wait-for-event=false",
            "--wait-timeout",
            "1m",
        ];
        args.extend(ID);
        let ChaincodeCommand::Invoke(a) = chaincode_command(&args) else {
            panic!("not invoke");
        };
        assert_eq!(
            a.peers.peer_address,
            vec!["localhost:7051".to_owned(), "localhost:9051".to_owned()]
        );
        assert!(a.is_init);
        assert_eq!(a.wait.timeout(), None);
        assert_eq!(a.wait.wait_timeout, Duration::from_secs(60));
        let last = args.len() - ID.len();
        args[last - 3] = "--wait-for-event";
        let ChaincodeCommand::Invoke(a) = chaincode_command(&args) else {
            panic!("not invoke");
        };
        assert_eq!(a.wait.timeout(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn collections_config() {
        let text = r#"[
            {"name":"assetCollection","policy":"OR('Org1MSP.member','Org2MSP.member')",
             "requiredPeerCount":1,"maxPeerCount":2,"blockToLive":1000000,
             "memberOnlyRead":true,"memberOnlyWrite":true},
            {"name":"Org1MSPPrivateCollection","policy":"OR('Org1MSP.member')",
             "endorsementPolicy":{"signaturePolicy":"OR('Org1MSP.member')"}}
        ]"#;
        let pkg = parse_collections_config(text).unwrap();
        assert_eq!(pkg.config.len(), 2);
        let Some(collection_config::Payload::StaticCollectionConfig(first)) =
            &pkg.config[0].payload
        else {
            panic!("not static");
        };
        assert_eq!(first.name, "assetCollection");
        assert_eq!(
            (first.required_peer_count, first.maximum_peer_count),
            (1, 2)
        );
        assert_eq!(first.block_to_live, 1_000_000);
        assert!(first.member_only_read && first.member_only_write);
        assert!(first.endorsement_policy.is_none());
        let Some(collection_config::Payload::StaticCollectionConfig(second)) =
            &pkg.config[1].payload
        else {
            panic!("not static");
        };
        assert!(matches!(
            second
                .endorsement_policy
                .as_ref()
                .and_then(|p| p.r#type.as_ref()),
            Some(application_policy::Type::SignaturePolicy(_))
        ));
        assert!(parse_collections_config(r#"[{"name":"x","policy":"OR("}]"#).is_err());
        assert!(parse_collections_config(r#"[{"name":"x"}]"#).is_err());
        assert!(parse_collections_config(r#"{"name":"x"}"#).is_err());
    }

    #[test]
    fn response_text_like_go() {
        let ok = Response {
            status: 200,
            message: String::new(),
            payload: br#"{"ID":"a1"}"#.to_vec(),
        };
        assert_eq!(
            response_text(&ok),
            r#"status:200 payload:"{\"ID\":\"a1\"}""#
        );
        let failed = Response {
            status: 500,
            message: "asset a1 does not exist".into(),
            payload: Vec::new(),
        };
        assert_eq!(
            response_text(&failed),
            r#"status:500 message:"asset a1 does not exist""#
        );
        let odd = Response {
            status: 200,
            message: String::new(),
            payload: vec![b'a', b'\n', 0x01, 0xff, b'\\', 0xc3, 0xa9],
        };
        assert_eq!(
            response_text(&odd),
            r#"status:200 payload:"a\n\x01\xff\\é""#
        );
        assert_eq!(response_text(&Response::default()), "");
    }

    fn installed() -> QueryInstalledChaincodesResult {
        let mut references = BTreeMap::new();
        references.insert(
            "mychannel".to_owned(),
            References {
                chaincodes: vec![Chaincode {
                    name: "basic".into(),
                    version: "1.0".into(),
                }],
            },
        );
        QueryInstalledChaincodesResult {
            installed_chaincodes: vec![
                InstalledChaincode {
                    package_id: "basic_1.0:aa11".into(),
                    label: "basic_1.0".into(),
                    references,
                },
                InstalledChaincode {
                    package_id: "other_2:bb22".into(),
                    label: "other_2".into(),
                    references: BTreeMap::new(),
                },
            ],
        }
    }

    #[test]
    fn queryinstalled_output() {
        assert_eq!(
            format_installed(&installed()),
            "Installed chaincodes on peer:\n\
             Package ID: basic_1.0:aa11, Label: basic_1.0\n\
             Package ID: other_2:bb22, Label: other_2\n"
        );
        assert_eq!(
            format_installed(&QueryInstalledChaincodesResult::default()),
            "Installed chaincodes on peer:\n"
        );
        let json = json_text(&installed_json(&installed()));
        let expected = "{\n\t\"installed_chaincodes\": [\n\t\t{\n\t\t\t\"package_id\": \"basic_1.0:aa11\",\n\t\t\t\"label\": \"basic_1.0\",\n\t\t\t\"references\": {\n\t\t\t\t\"mychannel\": {\n\t\t\t\t\t\"chaincodes\": [\n\t\t\t\t\t\t{\n\t\t\t\t\t\t\t\"name\": \"basic\",\n\t\t\t\t\t\t\t\"version\": \"1.0\"\n\t\t\t\t\t\t}\n\t\t\t\t\t]\n\t\t\t\t}\n\t\t\t}\n\t\t},\n\t\t{\n\t\t\t\"package_id\": \"other_2:bb22\",\n\t\t\t\"label\": \"other_2\"\n\t\t}\n\t]\n}\n";
        assert_eq!(json, expected);
        assert_eq!(
            json_text(&installed_json(&QueryInstalledChaincodesResult::default())),
            "{}\n"
        );
    }

    fn readiness() -> CheckCommitReadinessResult {
        let mut approvals = BTreeMap::new();
        approvals.insert("Org2MSP".to_owned(), false);
        approvals.insert("Org1MSP".to_owned(), true);
        CheckCommitReadinessResult {
            approvals,
            mismatches: BTreeMap::new(),
        }
    }

    #[test]
    fn checkcommitreadiness_output() {
        assert_eq!(
            format_readiness("basic", "1.0", 1, "mychannel", &readiness()),
            "Chaincode definition for chaincode 'basic', version '1.0', sequence '1' on channel 'mychannel' approval status by org:\n\
             Org1MSP: true\n\
             Org2MSP: false\n"
        );
        let json = json_text(&readiness_json(&readiness()));
        assert_eq!(
            json,
            "{\n\t\"approvals\": {\n\t\t\"Org1MSP\": true,\n\t\t\"Org2MSP\": false\n\t}\n}\n"
        );
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["approvals"]["Org1MSP"], Value::Bool(true));
        let mut with_mismatch = readiness();
        with_mismatch.mismatches.insert(
            "Org2MSP".into(),
            Mismatches {
                items: vec!["Version".into()],
            },
        );
        let value = readiness_json(&with_mismatch);
        assert_eq!(value["mismatches"]["Org2MSP"]["items"][0], "Version");
    }

    #[test]
    fn querycommitted_output() {
        let mut approvals = BTreeMap::new();
        approvals.insert("Org2MSP".to_owned(), true);
        approvals.insert("Org1MSP".to_owned(), true);
        let policy = application_policy(None, None).unwrap().encode_to_vec();
        let one = QueryChaincodeDefinitionResult {
            sequence: 1,
            version: "1.0".into(),
            endorsement_plugin: "escc".into(),
            validation_plugin: "vscc".into(),
            validation_parameter: policy.clone(),
            collections: Some(CollectionConfigPackage::default()),
            init_required: false,
            approvals,
        };
        assert_eq!(
            format_committed("basic", "mychannel", &one),
            "Committed chaincode definition for chaincode 'basic' on channel 'mychannel':\n\
             Version: 1.0, Sequence: 1, Endorsement Plugin: escc, Validation Plugin: vscc, Approvals: [Org1MSP: true, Org2MSP: true]\n"
        );
        let json = committed_json(&one);
        assert_eq!(json["sequence"], 1);
        assert_eq!(json["collections"], Value::Object(Map::new()));
        assert_eq!(json["approvals"]["Org2MSP"], true);
        assert!(json.get("init_required").is_none());
        let b64 = json["validation_parameter"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            policy
        );

        let all = QueryChaincodeDefinitionsResult {
            chaincode_definitions: vec![ChaincodeDefinition {
                name: "basic".into(),
                sequence: 2,
                version: "1.1".into(),
                endorsement_plugin: "escc".into(),
                validation_plugin: "vscc".into(),
                validation_parameter: policy,
                collections: None,
                init_required: true,
            }],
        };
        assert_eq!(
            format_committed_list("mychannel", &all),
            "Committed chaincode definitions on channel 'mychannel':\n\
             Name: basic, Version: 1.1, Sequence: 2, Endorsement Plugin: escc, Validation Plugin: vscc\n"
        );
        let json = committed_list_json(&all);
        assert_eq!(json["chaincode_definitions"][0]["name"], "basic");
        assert_eq!(json["chaincode_definitions"][0]["init_required"], true);
    }

    #[test]
    fn queryapproved_output() {
        let r = QueryApprovedChaincodeDefinitionResult {
            sequence: 1,
            version: "1.0".into(),
            endorsement_plugin: "escc".into(),
            validation_plugin: "vscc".into(),
            validation_parameter: Vec::new(),
            collections: None,
            init_required: true,
            source: Some(ChaincodeSource {
                r#type: Some(chaincode_source::Type::LocalPackage(
                    chaincode_source::Local {
                        package_id: "basic_1.0:aa11".into(),
                    },
                )),
            }),
        };
        assert_eq!(
            format_approved("basic", "mychannel", &r),
            "Approved chaincode definition for chaincode 'basic' on channel 'mychannel':\n\
             sequence: 1, version: 1.0, init-required: true, package-id: basic_1.0:aa11, endorsement plugin: escc, validation plugin: vscc\n"
        );
        let json = approved_json(&r);
        assert_eq!(
            json["source"]["Type"]["local_package"]["package_id"],
            "basic_1.0:aa11"
        );
    }

    #[test]
    fn package_process_and_ccaas() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("code");
        std::fs::create_dir(&code).unwrap();
        std::fs::write(
            code.join("run.json"),
            r#"{"command":"bin/cc","args":["--serve"]}"#,
        )
        .unwrap();
        std::fs::create_dir(code.join("bin")).unwrap();
        std::fs::write(code.join("bin/cc"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(code.join("bin/cc"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let out = dir.path().join("basic.tar.gz");
        let mut args = vec!["chaincode", "package", "--path"];
        let code_str = code.to_str().unwrap();
        let out_str = out.to_str().unwrap();
        args.extend([
            code_str,
            "--lang",
            "PROCESS",
            "--label",
            "basic_1.0",
            out_str,
        ]);
        let ChaincodeCommand::Package(p) = chaincode_command(&args) else {
            panic!("not package");
        };
        package(&p).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let parsed = twill_lifecycle::parse_package(&bytes).unwrap();
        assert_eq!(parsed.metadata.r#type, "process");
        assert_eq!(parsed.metadata.label, "basic_1.0");
        assert_eq!(parsed.metadata.path, "");
        assert_eq!(parsed.id, twill_lifecycle::package_id("basic_1.0", &bytes));
        // Same folder, same bytes: the package id is stable.
        assert_eq!(build_package("basic_1.0", "process", &code).unwrap(), bytes);

        // A process package needs run.json; ccaas needs connection.json.
        let ccaas = dir.path().join("ccaas");
        std::fs::create_dir(&ccaas).unwrap();
        assert!(build_package("basic_1.0", "process", &ccaas).is_err());
        assert!(build_package("basic_1.0", "ccaas", &ccaas).is_err());
        std::fs::write(
            ccaas.join("connection.json"),
            r#"{"address":"basic.example.com:9999","dial_timeout":"10s","tls_required":false}"#,
        )
        .unwrap();
        let bytes = build_package("basic_ccaas", "ccaas", &ccaas).unwrap();
        let parsed = twill_lifecycle::parse_package(&bytes).unwrap();
        assert_eq!(parsed.metadata.r#type, "ccaas");
    }

    #[test]
    fn package_other_languages_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.go"), b"package main\n").unwrap();
        let bytes = build_package("go_1", "golang", dir.path()).unwrap();
        let parsed = twill_lifecycle::parse_package(&bytes).unwrap();
        assert_eq!(parsed.metadata.r#type, "golang");
        assert_eq!(parsed.metadata.path, dir.path().to_string_lossy());
        assert!(build_package("bad label!", "golang", dir.path()).is_err());
        assert!(build_package("x", "cobol", dir.path()).is_err());
        assert!(build_package("x", "golang", &dir.path().join("missing")).is_err());
        assert!(parse(&[
            "chaincode",
            "package",
            "o",
            "-p",
            ".",
            "-l",
            "cobol",
            "--label",
            "x"
        ])
        .is_err());
    }

    /// What an endorsing peer answers: a proposal response payload whose
    /// proposal hash covers the headers and the payload without transient
    /// data, signed by `peer`.
    fn endorse_as(
        peer: &SigningIdentity,
        built: &BuiltProposal,
        chaincode: &str,
        results: &TxReadWriteSet,
    ) -> ProposalResponse {
        let header = Header::decode(built.proposal.header.as_slice()).unwrap();
        let mut cpp = ChaincodeProposalPayload::decode(built.proposal.payload.as_slice()).unwrap();
        cpp.transient_map.clear();
        let mut hasher = twill_crypto::Sha256Hasher::new();
        hasher.update(&header.channel_header);
        hasher.update(&header.signature_header);
        hasher.update(&cpp.encode_to_vec());
        let response = Response {
            status: 200,
            message: String::new(),
            payload: b"done".to_vec(),
        };
        let prp = ProposalResponsePayload {
            proposal_hash: hasher.finalize().to_vec(),
            extension: ChaincodeAction {
                results: results.encode_to_vec(),
                events: Vec::new(),
                response: Some(response.clone()),
                chaincode_id: Some(ChaincodeId {
                    path: String::new(),
                    name: chaincode.into(),
                    version: "1.0".into(),
                }),
            }
            .encode_to_vec(),
        }
        .encode_to_vec();
        let endorser = peer.serialize();
        let mut signed = prp.clone();
        signed.extend_from_slice(&endorser);
        let signature = peer.sign(&signed).unwrap();
        ProposalResponse {
            version: 1,
            timestamp: None,
            response: Some(response),
            payload: prp,
            endorsement: Some(Endorsement {
                endorser,
                signature,
            }),
            interest: None,
        }
    }

    fn writes(ns: &str, key: &str, value: &[u8]) -> TxReadWriteSet {
        TxReadWriteSet {
            data_model: DataModel::Kv as i32,
            ns_rwset: vec![NsReadWriteSet {
                namespace: ns.into(),
                rwset: KvrwSet {
                    writes: vec![write(key, value)],
                    ..Default::default()
                }
                .encode_to_vec(),
                collection_hashed_rwset: Vec::new(),
            }],
        }
    }

    fn invoke_proposal(client: &SigningIdentity) -> BuiltProposal {
        let mut input = parse_ctor(r#"{"Args":["CreateAsset","a1"]}"#).unwrap();
        input.is_init = true;
        let mut transient = BTreeMap::new();
        transient.insert("secret".to_owned(), b"do not leak".to_vec());
        build_proposal(
            client,
            HeaderType::EndorserTransaction,
            CHANNEL,
            "basic",
            input,
            transient,
        )
        .unwrap()
    }

    #[test]
    fn assembled_transaction_round_trip() {
        let net = TestNetwork::new().unwrap();
        let client = net.client(1).unwrap();
        let (peer1, peer2) = (net.peer(1).unwrap(), net.peer(2).unwrap());
        let built = invoke_proposal(&client);
        let rw = writes("basic", "a1", b"v");
        let responses = vec![
            endorse_as(&peer1, &built, "basic", &rw),
            endorse_as(&peer2, &built, "basic", &rw),
        ];
        let env = assemble_transaction(&client, &built.proposal, &responses).unwrap();

        client
            .identity()
            .verify(&env.payload, &env.signature)
            .unwrap();
        let payload = Payload::decode(env.payload.as_slice()).unwrap();
        let proposal_header = Header::decode(built.proposal.header.as_slice()).unwrap();
        assert_eq!(payload.header.as_ref(), Some(&proposal_header));
        let tx = Transaction::decode(payload.data.as_slice()).unwrap();
        let [action] = tx.actions.as_slice() else {
            panic!("{} actions", tx.actions.len());
        };
        assert_eq!(action.header, proposal_header.signature_header);
        let cap = ChaincodeActionPayload::decode(action.payload.as_slice()).unwrap();
        let cpp =
            ChaincodeProposalPayload::decode(cap.chaincode_proposal_payload.as_slice()).unwrap();
        assert!(cpp.transient_map.is_empty(), "transient data leaked");
        let original = ChaincodeProposalPayload::decode(built.proposal.payload.as_slice()).unwrap();
        assert_eq!(original.transient_map.len(), 1);
        assert_eq!(cpp.input, original.input);
        let spec = ChaincodeInvocationSpec::decode(cpp.input.as_slice())
            .unwrap()
            .chaincode_spec
            .unwrap();
        let input = spec.input.unwrap();
        assert!(input.is_init);
        assert_eq!(input.args[0], b"CreateAsset");
        let action = cap.action.unwrap();
        assert_eq!(action.proposal_response_payload, responses[0].payload);
        let endorsers: Vec<_> = action
            .endorsements
            .iter()
            .map(|e| e.endorser.clone())
            .collect();
        assert_eq!(endorsers, vec![peer1.serialize(), peer2.serialize()]);
    }

    #[test]
    fn assembly_refuses_bad_responses() {
        let net = TestNetwork::new().unwrap();
        let client = net.client(1).unwrap();
        let peer1 = net.peer(1).unwrap();
        let built = invoke_proposal(&client);
        let good = endorse_as(&peer1, &built, "basic", &writes("basic", "a1", b"v"));
        assert!(assemble_transaction(&client, &built.proposal, &[]).is_err());
        let other = endorse_as(&peer1, &built, "basic", &writes("basic", "a1", b"w"));
        assert!(assemble_transaction(&client, &built.proposal, &[good.clone(), other]).is_err());
        let mut failed = good.clone();
        failed.response = Some(Response {
            status: 500,
            ..Default::default()
        });
        assert!(assemble_transaction(&client, &built.proposal, &[failed]).is_err());
        let mut unendorsed = good;
        unendorsed.endorsement = None;
        assert!(assemble_transaction(&client, &built.proposal, &[unendorsed]).is_err());
    }

    /// The assembled transaction passes the peer's committer.
    #[test]
    fn assembled_transaction_is_valid_for_the_committer() {
        use twill_peer::channel::{Channel, Committer as _};
        use twill_peer::committer::LedgerCommitter;

        let net = TestNetwork::new().unwrap();
        let client = net.client(1).unwrap();
        let (peer1, peer2) = (net.peer(1).unwrap(), net.peer(2).unwrap());
        let orderer = net.orderer(0).unwrap();

        let policy = twill_policy::parse_policy("AND('Org1MSP.peer','Org2MSP.peer')").unwrap();
        let info = ChaincodeValidationInfo {
            validation_plugin: "vscc".into(),
            validation_parameter: signature_policy(policy).encode_to_vec(),
        };
        let define_writes = definition_entries("basic", 1, "1.0", &info)
            .into_iter()
            .map(|(k, v)| write(&k, &v))
            .collect();
        let (_, define) = TxBuilder::new(&client, CHANNEL, LIFECYCLE_NAMESPACE)
            .writes(LIFECYCLE_NAMESPACE, define_writes)
            .endorsed_by(&peer1)
            .endorsed_by(&peer2)
            .build()
            .unwrap();
        let genesis = net.genesis().clone();
        let block1 = signed_block(
            &genesis.header.clone().unwrap_or_default(),
            &[define],
            &orderer,
        )
        .unwrap();

        let built = invoke_proposal(&client);
        let rw = writes("basic", "a1", b"v");
        let both = vec![
            endorse_as(&peer1, &built, "basic", &rw),
            endorse_as(&peer2, &built, "basic", &rw),
        ];
        let valid = assemble_transaction(&client, &built.proposal, &both).unwrap();
        let built2 = invoke_proposal(&client);
        let one = vec![endorse_as(&peer1, &built2, "basic", &rw)];
        let too_few = assemble_transaction(&client, &built2.proposal, &one).unwrap();
        let block2 = signed_block(
            &block1.header.clone().unwrap_or_default(),
            &[valid, too_few],
            &orderer,
        )
        .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let channel = Channel::create(dir.path(), &genesis).unwrap();
        let committer = LedgerCommitter::new(1);
        committer.open_channel(&channel).unwrap();
        committer.commit(&channel, genesis).unwrap();
        let outcome = committer.commit(&channel, block1).unwrap();
        assert_eq!(
            outcome.validation_codes,
            vec![TxValidationCode::Valid as u8]
        );
        let outcome = committer.commit(&channel, block2).unwrap();
        assert_eq!(
            outcome.validation_codes,
            vec![
                TxValidationCode::Valid as u8,
                TxValidationCode::EndorsementPolicyFailure as u8
            ]
        );
        assert_eq!(
            validation_code_name(TxValidationCode::EndorsementPolicyFailure as i32),
            "ENDORSEMENT_POLICY_FAILURE"
        );
    }
}
