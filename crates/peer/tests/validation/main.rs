//! Integration tests of the committer's validation: real signed endorser
//! transactions on the 2-org test network (material from twill-cryptogen in
//! a temp dir), an in-memory state, one test per validation code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod block;
mod codes;
mod committer;
mod keylevel;
mod prepared;

use std::sync::OnceLock;

use prost::Message;
use twill_configtx::channel::ChannelConfig;
use twill_ledger::state::Height;
use twill_msp::SigningIdentity;
use twill_peer::validation::testkit::{
    channel_policy_ref, define_chaincode, signed_block, TestNetwork, TxBuilder, CHANNEL,
};
use twill_peer::validation::{BlockValidator, MemState, MemTxIds, ValidatedBlock};
use twill_protos::common::{Block, Envelope};
use twill_protos::peer::TxValidationCode;

pub const CC: &str = "basic";

pub struct Fixture {
    pub net: TestNetwork,
    pub config: ChannelConfig,
    pub peer1: SigningIdentity,
    pub peer2: SigningIdentity,
    pub client1: SigningIdentity,
    pub client2: SigningIdentity,
    pub orderer: SigningIdentity,
}

/// One network for all tests (key generation is the slow part).
pub fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let net = TestNetwork::new().unwrap();
        Fixture {
            config: net.config().unwrap(),
            peer1: net.peer(1).unwrap(),
            peer2: net.peer(2).unwrap(),
            client1: net.client(1).unwrap(),
            client2: net.client(2).unwrap(),
            orderer: net.orderer(0).unwrap(),
            net,
        }
    })
}

impl Fixture {
    /// An invocation of `basic` by client1 on the channel.
    pub fn tx(&self) -> TxBuilder<'_> {
        TxBuilder::new(&self.client1, CHANNEL, CC)
    }

    /// `tx()` endorsed by both orgs' peers.
    pub fn endorsed(&self) -> TxBuilder<'_> {
        self.tx().endorsed_by(&self.peer1).endorsed_by(&self.peer2)
    }

    /// Block 1 holding the envelopes, signed by orderer0.
    pub fn block(&self, envs: &[Envelope]) -> Block {
        signed_block(
            self.net.genesis().header.as_ref().unwrap(),
            envs,
            &self.orderer,
        )
        .unwrap()
    }
}

/// A state where `basic` is defined with `/Channel/Application/Endorsement`
/// (a majority of Org1 and Org2 = both) and a few keys exist at (1, i).
pub fn state() -> MemState {
    let mut state = MemState::new();
    define_chaincode(
        &mut state,
        CC,
        1,
        &channel_policy_ref("/Channel/Application/Endorsement"),
    );
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        state.put(
            CC,
            k,
            format!("v{k}").into_bytes(),
            Height::new(1, i as u64),
        );
    }
    state
}

pub fn validate_with(envs: &[Envelope], state: &MemState, txids: &MemTxIds) -> ValidatedBlock {
    let f = fx();
    let block = f.block(envs);
    let v = BlockValidator::new(CHANNEL, 2);
    v.verify_block(&block, &f.config).unwrap();
    v.validate(&block, &f.config, state, txids).unwrap()
}

pub fn validate(envs: &[Envelope]) -> ValidatedBlock {
    validate_with(envs, &state(), &MemTxIds::default())
}

pub fn codes(envs: &[Envelope]) -> Vec<TxValidationCode> {
    validate(envs).codes
}

/// Re-signs an envelope's (modified) payload with client1's key.
pub fn resign(payload: Vec<u8>) -> Envelope {
    let signature = fx().client1.sign(&payload).unwrap();
    Envelope { payload, signature }
}

/// Encoded length helper to keep `Message` in use for tests.
pub fn encoded(env: &Envelope) -> Vec<u8> {
    env.encode_to_vec()
}
