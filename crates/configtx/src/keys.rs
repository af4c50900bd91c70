//! Names of the standard groups, values and policies of a channel config.

/// The orderer group under `/Channel`.
pub const ORDERER_GROUP: &str = "Orderer";
/// The application group under `/Channel`.
pub const APPLICATION_GROUP: &str = "Application";

/// `Readers` policy.
pub const READERS: &str = "Readers";
/// `Writers` policy.
pub const WRITERS: &str = "Writers";
/// `Admins` policy (the usual `mod_policy`).
pub const ADMINS: &str = "Admins";
/// Orderer `BlockValidation` policy: who may sign blocks.
pub const BLOCK_VALIDATION: &str = "BlockValidation";
/// Application `Endorsement` policy.
pub const ENDORSEMENT: &str = "Endorsement";
/// Application `LifecycleEndorsement` policy.
pub const LIFECYCLE_ENDORSEMENT: &str = "LifecycleEndorsement";

/// Channel value: `common.HashingAlgorithm`.
pub const HASHING_ALGORITHM: &str = "HashingAlgorithm";
/// Channel value: `common.BlockDataHashingStructure`.
pub const BLOCK_DATA_HASHING_STRUCTURE: &str = "BlockDataHashingStructure";
/// Channel value: `common.OrdererAddresses`.
pub const ORDERER_ADDRESSES: &str = "OrdererAddresses";
/// Channel value: `common.Consortium`.
pub const CONSORTIUM: &str = "Consortium";
/// Any group: `common.Capabilities`.
pub const CAPABILITIES: &str = "Capabilities";
/// Orderer value: `orderer.BatchSize`.
pub const BATCH_SIZE: &str = "BatchSize";
/// Orderer value: `orderer.BatchTimeout`.
pub const BATCH_TIMEOUT: &str = "BatchTimeout";
/// Orderer value: `orderer.ChannelRestrictions`.
pub const CHANNEL_RESTRICTIONS: &str = "ChannelRestrictions";
/// Orderer value: `orderer.ConsensusType`.
pub const CONSENSUS_TYPE: &str = "ConsensusType";
/// Org value: `msp.MSPConfig`.
pub const MSP: &str = "MSP";
/// Orderer org value: `common.OrdererAddresses` of that org's orderers.
pub const ENDPOINTS: &str = "Endpoints";
/// Application org value: `protos.AnchorPeers`.
pub const ANCHOR_PEERS: &str = "AnchorPeers";
/// Application value: `protos.ACLs`.
pub const ACLS: &str = "ACLs";
