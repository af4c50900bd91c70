//! The per-transaction checks that need no knowledge of the other
//! transactions of the block: they run in parallel.

use std::collections::BTreeSet;

use prost::Message;
use tracing::debug;
use twill_configtx::block::compute_tx_id;
use twill_msp::{Identity, MspManager};
use twill_policy::{valid_identities, SignedData};
use twill_protos::common::{ChannelHeader, Envelope, HeaderType, Payload, SignatureHeader};
use twill_protos::kvrwset::{HashedRwSet, KvrwSet};
use twill_protos::peer::{
    ChaincodeAction, ChaincodeActionPayload, ChaincodeEvent, ChaincodeHeaderExtension, Endorsement,
    MetaDataKeys, ProposalResponsePayload, Transaction, TxValidationCode as Code,
};
use twill_protos::rwset::TxReadWriteSet;

use super::lifecycle::{BlockPolicies, NsPolicy, LIFECYCLE_NAMESPACE};
use super::{StateAccessError, StateView, TxIdIndex};

/// The public read-write set of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct NsRw {
    pub(crate) ns: String,
    pub(crate) kv: KvrwSet,
}

/// What the parallel stage found out about one transaction.
#[derive(Debug)]
pub(crate) struct TxCheck {
    pub(crate) code: Code,
    /// The tx id of an endorser transaction that passed (for in-block
    /// duplicate detection), else empty.
    pub(crate) tx_id: String,
    /// Its read-write sets, by namespace.
    pub(crate) rwset: Vec<NsRw>,
    /// True for a CONFIG transaction that passed.
    pub(crate) is_config: bool,
}

impl TxCheck {
    fn invalid(code: Code, reason: impl std::fmt::Display) -> TxCheck {
        debug!(target: "peer::validation", code = code.as_str_name(), %reason, "transaction invalid");
        TxCheck {
            code,
            tx_id: String::new(),
            rwset: Vec::new(),
            is_config: false,
        }
    }
}

/// What the state-dependent checks need.
pub(crate) struct TxContext<'a> {
    pub(crate) policies: &'a BlockPolicies<'a>,
    pub(crate) state: &'a dyn StateView,
    pub(crate) txids: &'a dyn TxIdIndex,
}

/// What the state-independent checks of one block entry found; see
/// [`precheck_tx`].
#[derive(Debug)]
pub(crate) enum Prechecked {
    /// Settled without the state: a check before the duplicate tx id check
    /// failed, or a config transaction passed.
    Done(TxCheck),
    /// An endorser transaction whose signatures and structure passed.
    Endorser(Box<EndorserTx>),
}

/// An endorser transaction after the state-independent checks.
#[derive(Debug)]
pub(crate) struct EndorserTx {
    tx_id: String,
    /// The parts the policy checks use, or the verdict of a check that
    /// comes after the duplicate tx id check in Fabric's order.
    rest: Result<Invoked, TxCheck>,
}

/// The decoded invocation of an endorser transaction.
#[derive(Debug)]
pub(crate) struct Invoked {
    rwset: Vec<NsRw>,
    /// Namespaces whose endorsement policy applies: the invoked chaincode
    /// and every namespace written.
    written: BTreeSet<String>,
    /// The endorsers whose signatures verified, valid in the channel MSPs.
    endorsers: Vec<Identity>,
}

macro_rules! decode_or {
    ($ty:ty, $bytes:expr, $code:expr, $what:literal) => {
        match <$ty>::decode($bytes) {
            Ok(v) => v,
            Err(e) => return Err(TxCheck::invalid($code, format_args!("{}: {e}", $what))),
        }
    };
}

/// The checks of one block entry that depend only on the channel's MSPs, in
/// Fabric's order: format, creator signature, tx id, structure, and the
/// verification of every endorsement signature. They are the expensive part
/// (three or more ECDSA verifications per transaction) and may run ahead of
/// the block's turn; [`finish_tx`] completes them against the state.
pub(crate) fn precheck_tx(channel: &str, msps: &MspManager, data: &[u8]) -> Prechecked {
    match precheck(channel, msps, data) {
        Ok(p) => p,
        Err(check) => Prechecked::Done(check),
    }
}

fn precheck(channel: &str, msps: &MspManager, data: &[u8]) -> Result<Prechecked, TxCheck> {
    if data.is_empty() {
        return Err(TxCheck::invalid(Code::NilEnvelope, "empty block entry"));
    }
    let env = decode_or!(Envelope, data, Code::InvalidOtherReason, "envelope");
    let payload = decode_or!(Payload, env.payload.as_slice(), Code::BadPayload, "payload");
    let Some(header) = &payload.header else {
        return Err(TxCheck::invalid(
            Code::BadCommonHeader,
            "payload has no header",
        ));
    };
    let chdr = decode_or!(
        ChannelHeader,
        header.channel_header.as_slice(),
        Code::BadCommonHeader,
        "channel header"
    );
    let shdr = decode_or!(
        SignatureHeader,
        header.signature_header.as_slice(),
        Code::BadCommonHeader,
        "signature header"
    );
    let kind = HeaderType::try_from(chdr.r#type).ok();
    if !matches!(
        kind,
        Some(HeaderType::EndorserTransaction | HeaderType::Config | HeaderType::ConfigUpdate)
    ) {
        return Err(TxCheck::invalid(
            Code::BadCommonHeader,
            format_args!("header type {} is not allowed in a block", chdr.r#type),
        ));
    }
    if chdr.epoch != 0 {
        return Err(TxCheck::invalid(
            Code::BadCommonHeader,
            format_args!("epoch {} is not 0", chdr.epoch),
        ));
    }
    if shdr.nonce.is_empty() || shdr.creator.is_empty() {
        return Err(TxCheck::invalid(
            Code::BadCommonHeader,
            "signature header lacks nonce or creator",
        ));
    }
    // Only this channel's MSPs are known here, so a foreign channel is
    // reported before the creator check (Fabric fails such a creator check).
    if chdr.channel_id != channel {
        return Err(TxCheck::invalid(
            Code::TargetChainNotFound,
            format_args!("transaction is for channel '{}'", chdr.channel_id),
        ));
    }
    if let Err(reason) = check_creator(msps, &shdr.creator, &env.payload, &env.signature) {
        return Err(TxCheck::invalid(Code::BadCreatorSignature, reason));
    }
    match kind {
        Some(HeaderType::EndorserTransaction) => {}
        Some(HeaderType::Config) => {
            if payload.data.is_empty() {
                return Err(TxCheck::invalid(
                    Code::InvalidConfigTransaction,
                    "config transaction carries no data",
                ));
            }
            return Ok(Prechecked::Done(TxCheck {
                code: Code::Valid,
                tx_id: String::new(),
                rwset: Vec::new(),
                is_config: true,
            }));
        }
        _ => {
            return Err(TxCheck::invalid(
                Code::UnsupportedTxPayload,
                "config updates are not block transactions",
            ))
        }
    }
    if compute_tx_id(&shdr.nonce, &shdr.creator) != chdr.tx_id {
        return Err(TxCheck::invalid(
            Code::BadProposalTxid,
            "tx id is not hex(SHA-256(nonce ‖ creator))",
        ));
    }
    let endorsed = match endorser_tx_structure(&payload, &header.channel_header) {
        Ok(a) => a,
        Err(reason) => return Err(TxCheck::invalid(Code::InvalidEndorserTransaction, reason)),
    };
    let rest = invocation(msps, &chdr, endorsed);
    Ok(Prechecked::Endorser(Box::new(EndorserTx {
        tx_id: chdr.tx_id,
        rest,
    })))
}

/// The checks of one block entry that read the ledger: duplicate tx id,
/// chaincode definitions and endorsement policies (with key-level policies
/// of written keys).
pub(crate) fn finish_tx(ctx: &TxContext<'_>, pre: Prechecked) -> Result<TxCheck, StateAccessError> {
    let tx = match pre {
        Prechecked::Done(check) => return Ok(check),
        Prechecked::Endorser(tx) => *tx,
    };
    if ctx.txids.contains(&tx.tx_id)? {
        return Ok(TxCheck::invalid(
            Code::DuplicateTxid,
            format_args!("tx id {} is already in the ledger", tx.tx_id),
        ));
    }
    let invoked = match tx.rest {
        Ok(invoked) => invoked,
        Err(check) => return Ok(check),
    };
    for ns in &invoked.written {
        let policy = match ctx.policies.namespace_policy(ns)? {
            NsPolicy::Policy(p) => p,
            NsPolicy::Invalid(reason) => {
                return Ok(TxCheck::invalid(Code::InvalidChaincode, reason))
            }
        };
        if let Err(reason) =
            check_namespace(ctx, ns, &invoked.rwset, policy.as_ref(), &invoked.endorsers)?
        {
            return Ok(TxCheck::invalid(Code::EndorsementPolicyFailure, reason));
        }
    }
    Ok(TxCheck {
        code: Code::Valid,
        tx_id: tx.tx_id,
        rwset: invoked.rwset,
        is_config: false,
    })
}

fn check_creator(
    msps: &MspManager,
    creator: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let id: Identity = msps
        .deserialize_identity(creator)
        .map_err(|e| format!("creator does not deserialize: {e}"))?;
    msps.validate_ignoring_time(&id)
        .map_err(|e| format!("creator is not valid: {e}"))?;
    id.verify(payload, signature)
        .map_err(|e| format!("envelope signature does not verify: {e}"))
}

/// The parts of an endorser transaction the later checks use.
struct Endorsed {
    prp_bytes: Vec<u8>,
    prp: ProposalResponsePayload,
    endorsements: Vec<Endorsement>,
}

/// Fabric's structural checks of an endorser transaction: one action, a
/// valid action signature header, and a proposal hash that matches the
/// channel header, the action's signature header and the proposal payload.
fn endorser_tx_structure(payload: &Payload, channel_header: &[u8]) -> Result<Endorsed, String> {
    let tx = Transaction::decode(payload.data.as_slice())
        .map_err(|e| format!("transaction does not decode: {e}"))?;
    let [action] = tx.actions.as_slice() else {
        return Err(format!(
            "a transaction holds exactly one action, this one holds {}",
            tx.actions.len()
        ));
    };
    let act_shdr = SignatureHeader::decode(action.header.as_slice())
        .map_err(|e| format!("action signature header does not decode: {e}"))?;
    if act_shdr.nonce.is_empty() || act_shdr.creator.is_empty() {
        return Err("action signature header lacks nonce or creator".to_owned());
    }
    let cap = ChaincodeActionPayload::decode(action.payload.as_slice())
        .map_err(|e| format!("chaincode action payload does not decode: {e}"))?;
    let endorsed = cap
        .action
        .ok_or_else(|| "chaincode action payload has no endorsed action".to_owned())?;
    let prp = ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
        .map_err(|e| format!("proposal response payload does not decode: {e}"))?;
    let mut hasher = twill_crypto::Sha256Hasher::new();
    hasher.update(channel_header);
    hasher.update(&action.header);
    hasher.update(&cap.chaincode_proposal_payload);
    if hasher.finalize().as_slice() != prp.proposal_hash.as_slice() {
        return Err("proposal hash does not match the transaction".to_owned());
    }
    Ok(Endorsed {
        prp_bytes: endorsed.proposal_response_payload,
        prp,
        endorsements: endorsed.endorsements,
    })
}

/// The state-independent part of Fabric's dispatcher and built-in
/// validation plugin: chaincode ids, read-write set, the namespaces whose
/// policy applies, and the endorsers whose signatures verify.
fn invocation(
    msps: &MspManager,
    chdr: &ChannelHeader,
    endorsed: Endorsed,
) -> Result<Invoked, TxCheck> {
    let ext = decode_or!(
        ChaincodeHeaderExtension,
        chdr.extension.as_slice(),
        Code::BadHeaderExtension,
        "chaincode header extension"
    );
    let action = decode_or!(
        ChaincodeAction,
        endorsed.prp.extension.as_slice(),
        Code::BadResponsePayload,
        "chaincode action"
    );
    let txrw = decode_or!(
        TxReadWriteSet,
        action.results.as_slice(),
        Code::BadRwset,
        "read-write set"
    );
    let mut rwset = Vec::with_capacity(txrw.ns_rwset.len());
    let mut hashed_writers = BTreeSet::new();
    for ns in &txrw.ns_rwset {
        let kv = decode_or!(
            KvrwSet,
            ns.rwset.as_slice(),
            Code::BadRwset,
            "namespace rwset"
        );
        for coll in &ns.collection_hashed_rwset {
            let h = decode_or!(
                HashedRwSet,
                coll.hashed_rwset.as_slice(),
                Code::BadRwset,
                "hashed rwset"
            );
            if !h.hashed_writes.is_empty() || !h.metadata_writes.is_empty() {
                hashed_writers.insert(ns.namespace.clone());
            }
        }
        rwset.push(NsRw {
            ns: ns.namespace.clone(),
            kv,
        });
    }
    let Some(header_cc) = &ext.chaincode_id else {
        return Err(TxCheck::invalid(
            Code::InvalidOtherReason,
            "no chaincode id in the header extension",
        ));
    };
    let Some(action_cc) = &action.chaincode_id else {
        return Err(TxCheck::invalid(
            Code::InvalidOtherReason,
            "no chaincode id in the chaincode action",
        ));
    };
    let cc = header_cc.name.as_str();
    if cc.is_empty() {
        return Err(TxCheck::invalid(
            Code::InvalidChaincode,
            "empty chaincode name",
        ));
    }
    if cc != action_cc.name {
        return Err(TxCheck::invalid(
            Code::InvalidChaincode,
            format_args!("header names chaincode '{cc}', action '{}'", action_cc.name),
        ));
    }
    if action_cc.version.is_empty() {
        return Err(TxCheck::invalid(
            Code::InvalidChaincode,
            "empty chaincode version",
        ));
    }
    if !action.events.is_empty() {
        let event = decode_or!(
            ChaincodeEvent,
            action.events.as_slice(),
            Code::InvalidOtherReason,
            "chaincode event"
        );
        if event.chaincode_id != cc {
            return Err(TxCheck::invalid(
                Code::InvalidOtherReason,
                "chaincode event names another chaincode",
            ));
        }
    }
    let mut written = BTreeSet::new();
    written.insert(cc.to_owned());
    let mut seen = BTreeSet::new();
    for ns in &rwset {
        if !seen.insert(ns.ns.as_str()) {
            return Err(TxCheck::invalid(
                Code::IllegalWriteset,
                format_args!("namespace '{}' appears twice", ns.ns),
            ));
        }
        if !ns.kv.writes.is_empty() || !ns.kv.metadata_writes.is_empty() {
            written.insert(ns.ns.clone());
        }
    }
    written.extend(hashed_writers);

    let signed: Vec<SignedData> = endorsed
        .endorsements
        .iter()
        .map(|e| {
            let mut data = Vec::with_capacity(endorsed.prp_bytes.len() + e.endorser.len());
            data.extend_from_slice(&endorsed.prp_bytes);
            data.extend_from_slice(&e.endorser);
            SignedData::new(data, e.endorser.clone(), e.signature.clone())
        })
        .collect();
    Ok(Invoked {
        rwset,
        written,
        endorsers: valid_identities(&signed, msps),
    })
}

/// Key-level endorsement as Fabric's state-based validator does it: a written
/// key (value or metadata) whose committed metadata holds a
/// `VALIDATION_PARAMETER` must satisfy that policy instead of the chaincode
/// policy; the chaincode policy is checked once if any written key has no
/// key-level policy, or if no policy was checked at all.
fn check_namespace(
    ctx: &TxContext<'_>,
    ns: &str,
    rwset: &[NsRw],
    cc_policy: &dyn twill_policy::Policy,
    ids: &[Identity],
) -> Result<Result<(), String>, StateAccessError> {
    let vp_name = MetaDataKeys::ValidationParameter.as_str_name();
    let mut cc_checked = false;
    let mut key_checked = false;
    let keys = rwset.iter().filter(|r| r.ns == ns).flat_map(|r| {
        r.kv.writes
            .iter()
            .map(|w| w.key.as_str())
            .chain(r.kv.metadata_writes.iter().map(|m| m.key.as_str()))
    });
    for key in keys {
        // An org's lifecycle approval is endorsed by that org alone.
        if ns == LIFECYCLE_NAMESPACE {
            if let Some(org) = crate::lifecycle::approval_org(key) {
                if let Err(e) = ctx.policies.org_member_policy(org).evaluate_identities(ids) {
                    return Ok(Err(format!(
                        "key '{key}' of '{ns}': approval not endorsed by {org}: {e}"
                    )));
                }
                key_checked = true;
                continue;
            }
        }
        let parameter = ctx
            .state
            .metadata(ns, key)?
            .and_then(|mut md| md.remove(vp_name))
            .filter(|p| !p.is_empty());
        match parameter {
            Some(p) => {
                if let Err(e) = ctx.policies.key_policy(&p).evaluate_identities(ids) {
                    return Ok(Err(format!(
                        "key '{key}' of '{ns}': key-level policy not satisfied: {e}"
                    )));
                }
                key_checked = true;
            }
            None if !cc_checked => {
                if let Err(e) = cc_policy.evaluate_identities(ids) {
                    return Ok(Err(format!(
                        "chaincode '{ns}': endorsement policy not satisfied: {e}"
                    )));
                }
                cc_checked = true;
            }
            None => {}
        }
    }
    if !cc_checked && !key_checked {
        if let Err(e) = cc_policy.evaluate_identities(ids) {
            return Ok(Err(format!(
                "chaincode '{ns}': endorsement policy not satisfied: {e}"
            )));
        }
    }
    Ok(Ok(()))
}
