//! One organisation's X.509 MSP: trust anchors, validation and principals.

use crate::error::{MspError, Result, Unsatisfied};
use crate::identity::{
    certificate_ous, first_certificate_der, first_pem_block, parse_certificate, Identity,
};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use twill_protos::common::msp_identity_anonymity::MspIdentityAnonymityType;
use twill_protos::common::msp_principal::Classification;
use twill_protos::common::msp_role::MspRoleType;
use twill_protos::common::{
    CombinedPrincipal, MspIdentityAnonymity, MspPrincipal, MspRole, OrganizationUnit,
};
use twill_protos::msp::{FabricMspConfig, FabricOuIdentifier, MspConfig, SerializedIdentity};
use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;

/// `MSPConfig.type` of an X.509 ("FABRIC") MSP.
pub const FABRIC_MSP_TYPE: i32 = 0;

/// Longest chain (CAs above the identity) that validation will follow.
const MAX_CHAIN_DEPTH: usize = 8;

/// Deepest nesting of COMBINED principals that is evaluated.
const MAX_PRINCIPAL_DEPTH: usize = 8;

/// Validation results kept per MSP before the cache is cleared and refilled.
const MAX_CACHE_ENTRIES: usize = 16_384;

/// PEM label of an X.509 CRL.
const CRL_LABEL: &str = "X509 CRL";

/// The role an identity plays in its organisation, told by its NodeOU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// An application user.
    Client,
    /// A peer node.
    Peer,
    /// An organisation administrator.
    Admin,
    /// An ordering node.
    Orderer,
}

impl NodeRole {
    /// The principal role type that names this node role.
    pub fn to_role_type(self) -> MspRoleType {
        match self {
            NodeRole::Client => MspRoleType::Client,
            NodeRole::Peer => MspRoleType::Peer,
            NodeRole::Admin => MspRoleType::Admin,
            NodeRole::Orderer => MspRoleType::Orderer,
        }
    }
}

/// A root or intermediate CA of the MSP.
struct CaCert {
    der: Vec<u8>,
    subject: String,
    subject_raw: Vec<u8>,
    is_root: bool,
    /// Issues other CAs of the MSP, so it may not issue identities.
    internal: bool,
    /// Serials (leading zeros stripped) revoked by CRLs this CA signed.
    revoked: HashSet<Vec<u8>>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// An OU the MSP recognises, optionally tied to one certification chain.
#[derive(Clone, Debug)]
struct OuRule {
    ou: String,
    /// SHA-256 of the chain (CA up to root) whose identities may carry this OU;
    /// `None` (a NodeOU identifier configured without certificate) means any
    /// chain of the MSP.
    certifiers: Option<[u8; 32]>,
}

impl OuRule {
    fn accepts(&self, chain_id: &[u8; 32]) -> bool {
        self.certifiers.is_none_or(|c| &c == chain_id)
    }
}

/// The outcome of the time-independent part of validation for one
/// certificate that passed the chain, issuance-time and revocation checks.
struct ChainCheck {
    /// `(subject, not_before, not_after)` of the identity then each CA up to the root.
    windows: Vec<(String, OffsetDateTime, OffsetDateTime)>,
    /// SHA-256 over the DER of the chain's CAs, issuer first.
    certifiers_id: [u8; 32],
    /// Outcome of the OU rules: the NodeOU role (if NodeOUs are on) or why they fail.
    ous: Result<Option<NodeRole>>,
}

type CachedCheck = Result<Arc<ChainCheck>>;

/// One organisation's MSP of the X.509 ("FABRIC") type.
///
/// Built from a `FabricMSPConfig`: root and intermediate CAs, admin
/// certificates, CRLs, OU identifiers and NodeOUs. It deserializes its
/// members' identities, validates them, classifies them by NodeOU role and
/// checks them against principals.
///
/// Two kinds of validation are offered:
///
/// * [`Msp::validate_ignoring_time`] is Fabric's MSP validation. Its answer
///   for a given MSP and certificate never changes, so it is what principal
///   checks ([`Msp::satisfies_principal`]) and hence policy evaluation use:
///   re-validating an old block gives the same result years later.
/// * [`Msp::validate`] / [`Msp::validate_at`] add the validity periods at the
///   current (or a given) time, for where transactions come in (endorsement,
///   broadcast), as Fabric checks expiry there.
///
/// The time-independent part of validation (chain, revocation, OU rules) is
/// cached per certificate, so repeated checks of the same signer cost a hash
/// and a map lookup.
pub struct Msp {
    config: FabricMspConfig,
    cas: Vec<CaCert>,
    admins: HashSet<Vec<u8>>,
    ou_identifiers: Vec<OuRule>,
    /// `(role, rule)` for each configured role OU when NodeOUs are on.
    node_ous: Option<Vec<(NodeRole, OuRule)>>,
    cache: Mutex<HashMap<[u8; 32], CachedCheck>>,
}

impl Msp {
    /// Builds an MSP from its configuration, with the checks of Fabric's MSP
    /// setup (version 1.4.3 and later):
    ///
    /// * the name is set and there is at least one root;
    /// * only the first PEM block of each `root_certs`, `intermediate_certs`,
    ///   `admins` and OU-identifier certificate entry is used (its label is not
    ///   looked at) and it must be a certificate; roots and intermediates must
    ///   be CA certificates and every intermediate must chain to a root;
    /// * each `revocation_list` entry is one CRL, DER, or PEM when it starts
    ///   with `-----BEGIN X509 CRL` (first block only). It must parse; a CRL
    ///   not signed by any CA of the MSP is ignored, as it cannot revoke
    ///   anything this MSP trusts;
    /// * every `organizational_unit_identifiers` entry names a certificate
    ///   ([`MspError::OuIdentifierWithoutCertificate`] otherwise), and every
    ///   OU certificate, NodeOU ones included (even with NodeOUs disabled), is
    ///   a CA of the MSP;
    /// * NodeOUs are in force when `enable` is set and at least one role OU
    ///   identifier is configured; enabled with none, they are off (as Fabric);
    /// * there is at least one admin certificate, or NodeOUs are in force with
    ///   an admin OU ([`MspError::NoAdmins`]);
    /// * with NodeOUs in force every admin certificate carries the client or
    ///   the admin OU ([`MspError::AdminWithoutRoleOu`]); otherwise every admin
    ///   certificate passes [`Msp::validate_ignoring_time`]
    ///   ([`MspError::InvalidAdmin`]).
    ///
    /// The signing identity and TLS certificates, if any, are not used.
    pub fn from_config(cfg: &FabricMspConfig) -> Result<Msp> {
        if cfg.name.is_empty() {
            return Err(MspError::EmptyMspName);
        }
        check_crypto_config(cfg)?;

        let mut cas = Vec::new();
        for entry in &cfg.root_certs {
            cas.push(ca_cert(first_certificate_der(entry)?, true)?);
        }
        if cas.is_empty() {
            return Err(MspError::NoRootCerts {
                mspid: cfg.name.clone(),
            });
        }
        for entry in &cfg.intermediate_certs {
            cas.push(ca_cert(first_certificate_der(entry)?, false)?);
        }

        let mut msp = Msp {
            config: cfg.clone(),
            cas,
            admins: HashSet::new(),
            ou_identifiers: Vec::new(),
            node_ous: None,
            cache: Mutex::new(HashMap::new()),
        };

        // Every intermediate must reach a root; the CAs on its way are
        // internal nodes of the certification tree.
        for i in 0..msp.cas.len() {
            if msp.cas[i].is_root {
                continue;
            }
            let cert = parse_certificate(&msp.cas[i].der)?;
            let chain = msp.find_chain(&cert, &mut vec![i]).ok_or_else(|| {
                MspError::IntermediateNotChained {
                    subject: msp.cas[i].subject.clone(),
                }
            })?;
            for parent in chain {
                msp.cas[parent].internal = true;
            }
        }

        for entry in &cfg.revocation_list {
            msp.add_crl(entry)?;
        }

        for id in &cfg.organizational_unit_identifiers {
            if id.certificate.is_empty() {
                return Err(MspError::OuIdentifierWithoutCertificate {
                    ou: id.organizational_unit_identifier.clone(),
                });
            }
            let rule = msp.ou_rule(id)?;
            msp.ou_identifiers.push(rule);
        }

        if let Some(node_ous) = &cfg.fabric_node_ous {
            // The role OU certificates are checked even when NodeOUs are
            // disabled, as Fabric does.
            let mut rules = Vec::new();
            for (role, id) in [
                (NodeRole::Client, &node_ous.client_ou_identifier),
                (NodeRole::Peer, &node_ous.peer_ou_identifier),
                (NodeRole::Admin, &node_ous.admin_ou_identifier),
                (NodeRole::Orderer, &node_ous.orderer_ou_identifier),
            ] {
                if let Some(id) = id {
                    rules.push((role, msp.ou_rule(id)?));
                }
            }
            // Enabled with no role OU configured, Fabric turns NodeOUs off.
            if node_ous.enable && !rules.is_empty() {
                msp.node_ous = Some(rules);
            }
        }

        let mut admins = Vec::new();
        for entry in &cfg.admins {
            let der = first_certificate_der(entry)?;
            let cert = parse_certificate(&der)?;
            let ous = certificate_ous(&cert)?;
            admins.push((der, ous));
        }
        if admins.is_empty() && !msp.has_role_ou(NodeRole::Admin) {
            return Err(MspError::NoAdmins {
                mspid: cfg.name.clone(),
            });
        }
        for (index, (der, ous)) in admins.iter().enumerate() {
            if msp.node_ous.is_some() {
                if !msp.carries_role_ou(ous, NodeRole::Client)
                    && !msp.carries_role_ou(ous, NodeRole::Admin)
                {
                    return Err(MspError::AdminWithoutRoleOu {
                        index,
                        ous: ous.clone(),
                    });
                }
            } else {
                msp.check_ignoring_time(der, twill_crypto::sha256(der))
                    .map_err(|e| MspError::InvalidAdmin {
                        index,
                        source: Box::new(e),
                    })?;
            }
        }
        msp.admins = admins.into_iter().map(|(der, _)| der).collect();
        Ok(msp)
    }

    /// Builds an MSP from the channel-config `MSPConfig` value: `type` must be
    /// 0 (FABRIC) and `config` a prost-encoded `FabricMSPConfig`.
    pub fn from_msp_config(cfg: &MspConfig) -> Result<Msp> {
        if cfg.r#type != FABRIC_MSP_TYPE {
            return Err(MspError::UnsupportedMspType {
                msp_type: cfg.r#type,
            });
        }
        let fabric = FabricMspConfig::decode(cfg.config.as_slice())
            .map_err(|e| MspError::decode("msp.FabricMSPConfig", e))?;
        Self::from_config(&fabric)
    }

    /// The MSP id (the configuration's `name`).
    pub fn id(&self) -> &str {
        &self.config.name
    }

    /// The configuration this MSP was built from.
    pub fn config(&self) -> &FabricMspConfig {
        &self.config
    }

    /// Whether NodeOUs are in force (enabled, with at least one role OU configured).
    pub fn node_ous_enabled(&self) -> bool {
        self.node_ous.is_some()
    }

    /// Parses a prost-encoded `SerializedIdentity` of this MSP.
    ///
    /// Fails if the MSP id differs or the certificate does not parse. The
    /// identity is not validated; call [`Msp::validate`] for that.
    pub fn deserialize_identity(&self, serialized: &[u8]) -> Result<Identity> {
        let sid = SerializedIdentity::decode(serialized)
            .map_err(|e| MspError::decode("msp.SerializedIdentity", e))?;
        self.check_mspid(&sid.mspid)?;
        Identity::from_pem(&sid.mspid, &sid.id_bytes)
    }

    /// Validates `id` at the current time; see [`Msp::validate_at`].
    ///
    /// For ingress (endorsement, broadcast). Never use it to decide whether
    /// stored data is valid: use [`Msp::validate_ignoring_time`] or
    /// [`Msp::satisfies_principal`], whose answers do not change with time.
    pub fn validate(&self, id: &Identity) -> Result<()> {
        self.validate_at(id, SystemTime::now())
    }

    /// Validates `id` as a member of this MSP at time `now`:
    /// [`Msp::validate_ignoring_time`], then every certificate of the chain
    /// must be within its validity period at `now` ([`MspError::Expired`],
    /// [`MspError::NotYetValid`]).
    ///
    /// Fabric's MSP leaves expiry to the places where transactions come in;
    /// this is that check for Twill's endorser and broadcast paths.
    pub fn validate_at(&self, id: &Identity, now: SystemTime) -> Result<()> {
        let check = self.valid_check(id)?;
        check_windows(&check.windows, unix_seconds(now))
    }

    /// Validates `id` as a member of this MSP as Fabric's MSP does, without
    /// regard to the current time: the answer for a given MSP and certificate
    /// never changes, which is what evaluating policies over stored blocks
    /// needs.
    ///
    /// In order: the identity claims this MSP; it is not a CA certificate; it
    /// chains (by issuer name and signature) through the intermediates to a
    /// root; its issuer is a leaf of the MSP's certification tree; every
    /// certificate of the chain is within its validity period at the
    /// identity's `not_before` plus one second (the time Fabric verifies
    /// chains at, so a chain that was good when the identity was issued stays
    /// good after it expires); no certificate of the chain is revoked by a CRL
    /// its issuer signed; with NodeOUs in force, the identity carries exactly
    /// one role OU (certified by the configured chain when one is set);
    /// otherwise, if the MSP lists OU identifiers, it carries one of them.
    pub fn validate_ignoring_time(&self, id: &Identity) -> Result<()> {
        self.valid_check(id).map(drop)
    }

    /// The identity's NodeOU role, or `None` if NodeOUs are not in force or
    /// the identity fails [`Msp::validate_ignoring_time`].
    ///
    /// Validity periods at the current time are not considered.
    pub fn node_role(&self, id: &Identity) -> Option<NodeRole> {
        self.node_ous.as_ref()?;
        self.valid_check(id).ok()?.ous.clone().ok().flatten()
    }

    /// Whether the identity satisfies this MSP's ADMIN role: its certificate
    /// is listed among the MSP's admins, or NodeOUs are in force and it
    /// passes [`Msp::validate_ignoring_time`] and carries the admin OU.
    pub fn is_admin(&self, id: &Identity) -> bool {
        id.mspid() == self.id()
            && (self.admins.contains(id.cert_der())
                || (self.validate_ignoring_time(id).is_ok()
                    && self.carries_role_ou(id.organizational_units(), NodeRole::Admin)))
    }

    /// The certifiers identifier of `id`'s chain: SHA-256 over the DER of its
    /// CAs, issuer first and root last, as Fabric puts in the
    /// `certifiers_identifier` of an ORGANIZATION_UNIT principal.
    ///
    /// Fails if the identity claims another MSP or fails the chain,
    /// issuance-time or revocation checks of [`Msp::validate_ignoring_time`].
    pub fn certifiers_identifier(&self, id: &Identity) -> Result<[u8; 32]> {
        self.check_mspid(id.mspid())?;
        Ok(self.identity_check(id)?.certifiers_id)
    }

    /// `Ok(())` if the identity satisfies `p` in this MSP.
    ///
    /// As in Fabric, the answer does not depend on the current time: identity
    /// validity is [`Msp::validate_ignoring_time`] ("valid" below), so an
    /// expired certificate still satisfies the principals it did. Check
    /// expiry separately with [`Msp::validate`] where transactions come in.
    ///
    /// * ROLE MEMBER: any valid identity. ADMIN: listed in the admins (checked
    ///   once, when the MSP was built) or, with NodeOUs in force, a valid
    ///   identity carrying the admin OU. CLIENT / PEER / ORDERER: a valid
    ///   identity carrying that role's OU; requires NodeOUs.
    /// * ORGANIZATION_UNIT: a valid identity carrying the OU, whose chain's
    ///   [`Msp::certifiers_identifier`] equals the principal's
    ///   `certifiers_identifier` byte for byte. An empty
    ///   `certifiers_identifier` therefore never matches (as in Fabric).
    /// * IDENTITY: the principal's `SerializedIdentity` has this MSP id and the
    ///   same certificate (compared as DER), and the identity is valid.
    /// * ANONYMITY: NOMINAL is satisfied by any valid identity, ANONYMOUS never.
    /// * COMBINED: every sub-principal is satisfied.
    ///
    /// A principal naming another MSP is not satisfied, nor is any principal
    /// by an identity claiming another MSP. Every "no" is
    /// [`MspError::PrincipalNotSatisfied`]; malformed principal bytes are
    /// [`MspError::InvalidPrincipal`].
    pub fn satisfies_principal(&self, id: &Identity, p: &MspPrincipal) -> Result<()> {
        self.satisfies(id, p, 0)
    }

    /// [`Msp::satisfies_principal`], and every certificate of the identity's
    /// chain within its validity period at `now`.
    ///
    /// Principal satisfaction no longer depends on time; this is kept for
    /// compatibility. Call [`Msp::validate_at`] and
    /// [`Msp::satisfies_principal`] instead.
    #[deprecated(
        note = "principal satisfaction does not depend on time; use validate_at for expiry and satisfies_principal"
    )]
    pub fn satisfies_principal_at(
        &self,
        id: &Identity,
        p: &MspPrincipal,
        now: SystemTime,
    ) -> Result<()> {
        self.satisfies(id, p, 0)?;
        self.identity_check(id)
            .and_then(|check| check_windows(&check.windows, unix_seconds(now)))
            .map_err(|e| MspError::PrincipalNotSatisfied {
                mspid: id.mspid().to_owned(),
                reason: Unsatisfied::InvalidIdentity(Box::new(e)),
            })
    }

    fn satisfies(&self, id: &Identity, p: &MspPrincipal, depth: usize) -> Result<()> {
        let no = |reason| MspError::PrincipalNotSatisfied {
            mspid: id.mspid().to_owned(),
            reason,
        };
        if let Err(e) = self.check_mspid(id.mspid()) {
            return Err(no(Unsatisfied::InvalidIdentity(Box::new(e))));
        }
        let valid = || {
            self.validate_ignoring_time(id)
                .map_err(|e| no(Unsatisfied::InvalidIdentity(Box::new(e))))
        };
        let classification =
            Classification::try_from(p.principal_classification).map_err(|_| {
                invalid_principal(format!(
                    "unknown classification {}",
                    p.principal_classification
                ))
            })?;
        match classification {
            Classification::Role => {
                let role = MspRole::decode(p.principal.as_slice())
                    .map_err(|e| invalid_principal(format!("MSPRole: {e}")))?;
                if role.msp_identifier != self.id() {
                    return Err(no(Unsatisfied::OtherMsp {
                        principal_mspid: role.msp_identifier,
                    }));
                }
                let role_type = MspRoleType::try_from(role.role)
                    .map_err(|_| invalid_principal(format!("unknown role {}", role.role)))?;
                let wanted = match role_type {
                    MspRoleType::Member => return valid(),
                    MspRoleType::Admin => {
                        // Listed admins were checked when the MSP was built.
                        if self.admins.contains(id.cert_der()) {
                            return Ok(());
                        }
                        if self.node_ous.is_none() {
                            return Err(no(Unsatisfied::NotAdmin));
                        }
                        valid()?;
                        return if self.carries_role_ou(id.organizational_units(), NodeRole::Admin) {
                            Ok(())
                        } else {
                            Err(no(Unsatisfied::NotAdmin))
                        };
                    }
                    MspRoleType::Client => NodeRole::Client,
                    MspRoleType::Peer => NodeRole::Peer,
                    MspRoleType::Orderer => NodeRole::Orderer,
                };
                if self.node_ous.is_none() {
                    return Err(no(Unsatisfied::NodeOusDisabled));
                }
                valid()?;
                if self.carries_role_ou(id.organizational_units(), wanted) {
                    Ok(())
                } else {
                    Err(no(Unsatisfied::WrongRole {
                        wanted,
                        actual: self.node_role(id),
                    }))
                }
            }
            Classification::OrganizationUnit => {
                let ou = OrganizationUnit::decode(p.principal.as_slice())
                    .map_err(|e| invalid_principal(format!("OrganizationUnit: {e}")))?;
                if ou.msp_identifier != self.id() {
                    return Err(no(Unsatisfied::OtherMsp {
                        principal_mspid: ou.msp_identifier,
                    }));
                }
                valid()?;
                let wanted = ou.organizational_unit_identifier;
                if !id.organizational_units().contains(&wanted) {
                    return Err(no(Unsatisfied::MissingOu { ou: wanted }));
                }
                let check = self
                    .identity_check(id)
                    .map_err(|e| no(Unsatisfied::InvalidIdentity(Box::new(e))))?;
                if ou.certifiers_identifier != check.certifiers_id {
                    return Err(no(Unsatisfied::CertifiersMismatch { ou: wanted }));
                }
                Ok(())
            }
            Classification::Identity => {
                let sid = SerializedIdentity::decode(p.principal.as_slice())
                    .map_err(|e| invalid_principal(format!("SerializedIdentity: {e}")))?;
                if sid.mspid != self.id() {
                    return Err(no(Unsatisfied::OtherMsp {
                        principal_mspid: sid.mspid,
                    }));
                }
                let der = first_certificate_der(&sid.id_bytes)
                    .map_err(|e| invalid_principal(format!("identity certificate: {e}")))?;
                if der != id.cert_der() {
                    return Err(no(Unsatisfied::DifferentIdentity));
                }
                valid()
            }
            Classification::Anonymity => {
                let anonymity = MspIdentityAnonymity::decode(p.principal.as_slice())
                    .map_err(|e| invalid_principal(format!("MSPIdentityAnonymity: {e}")))?;
                match MspIdentityAnonymityType::try_from(anonymity.anonymity_type) {
                    Ok(MspIdentityAnonymityType::Nominal) => valid(),
                    Ok(MspIdentityAnonymityType::Anonymous) => Err(no(Unsatisfied::NotAnonymous)),
                    Err(_) => Err(invalid_principal(format!(
                        "unknown anonymity type {}",
                        anonymity.anonymity_type
                    ))),
                }
            }
            Classification::Combined => {
                if depth >= MAX_PRINCIPAL_DEPTH {
                    return Err(invalid_principal(
                        "COMBINED principals nested too deeply".to_owned(),
                    ));
                }
                let combined = CombinedPrincipal::decode(p.principal.as_slice())
                    .map_err(|e| invalid_principal(format!("CombinedPrincipal: {e}")))?;
                if combined.principals.is_empty() {
                    return Err(invalid_principal("empty COMBINED principal".to_owned()));
                }
                for sub in &combined.principals {
                    self.satisfies(id, sub, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    /// Whether a role OU is configured for `role` (NodeOUs in force).
    fn has_role_ou(&self, role: NodeRole) -> bool {
        self.node_ous
            .as_ref()
            .is_some_and(|rules| rules.iter().any(|(r, _)| *r == role))
    }

    /// Whether `ous` include the OU of `role` (NodeOUs in force). As Fabric's
    /// `hasOURole`, only the OU name is compared; the certifiers were checked
    /// by validation.
    fn carries_role_ou(&self, ous: &[String], role: NodeRole) -> bool {
        self.node_ous.as_ref().is_some_and(|rules| {
            rules
                .iter()
                .any(|(r, rule)| *r == role && ous.contains(&rule.ou))
        })
    }

    fn check_mspid(&self, mspid: &str) -> Result<()> {
        if mspid == self.id() {
            Ok(())
        } else {
            Err(MspError::MspIdMismatch {
                expected: self.id().to_owned(),
                actual: mspid.to_owned(),
            })
        }
    }

    /// The MSP id, then the cached time-independent checks including the OU rules.
    fn valid_check(&self, id: &Identity) -> CachedCheck {
        self.check_mspid(id.mspid())?;
        self.check_ignoring_time(id.cert_der(), *id.cert_digest())
    }

    /// The cached time-independent checks of a certificate (`key` is its
    /// SHA-256), OU rules included.
    fn check_ignoring_time(&self, der: &[u8], key: [u8; 32]) -> CachedCheck {
        let check = self.chain_check(der, key)?;
        check.ous.clone()?;
        Ok(check)
    }

    /// [`chain_check`](Self::chain_check) of an identity's certificate, by
    /// the digest it was parsed with.
    fn identity_check(&self, id: &Identity) -> CachedCheck {
        self.chain_check(id.cert_der(), *id.cert_digest())
    }

    /// The cached time-independent check of a certificate (`key` is its
    /// SHA-256), computing it on a miss.
    fn chain_check(&self, der: &[u8], key: [u8; 32]) -> CachedCheck {
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.get(&key) {
                return hit.clone();
            }
        }
        // Computed outside the lock: two threads may race on the same
        // certificate, and both get the same answer.
        let result = self.compute_chain_check(der).map(Arc::new);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, result.clone());
        result
    }

    fn compute_chain_check(&self, der: &[u8]) -> Result<ChainCheck> {
        let cert = parse_certificate(der)?;
        let subject = cert.subject().to_string();
        if cert.is_ca() {
            return Err(MspError::CaCertAsIdentity { subject });
        }
        let untrusted = || MspError::UntrustedChain {
            subject: subject.clone(),
            issuer: cert.issuer().to_string(),
        };
        let chain = self
            .find_chain(&cert, &mut Vec::new())
            .ok_or_else(untrusted)?;
        // find_chain only returns non-empty chains.
        let Some(&issuer) = chain.first() else {
            return Err(untrusted());
        };
        if self.cas[issuer].internal {
            return Err(MspError::IssuerNotLeafCa {
                issuer: self.cas[issuer].subject.clone(),
            });
        }

        // The chain as of the identity's issuance, as Fabric verifies it.
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        let mut windows = vec![(subject.clone(), not_before, not_after)];
        let mut chain_bytes = Vec::new();
        for &i in &chain {
            let ca = &self.cas[i];
            windows.push((ca.subject.clone(), ca.not_before, ca.not_after));
            chain_bytes.extend_from_slice(&ca.der);
        }
        check_windows(&windows, not_before.unix_timestamp().saturating_add(1))?;

        // Each certificate against the CRLs of the CA above it.
        if self.cas[issuer]
            .revoked
            .contains(strip_zeros(cert.raw_serial()))
        {
            return Err(MspError::Revoked {
                subject,
                serial: hex::encode(cert.raw_serial()),
            });
        }
        for pair in chain.windows(2) {
            let (child, parent) = (&self.cas[pair[0]], &self.cas[pair[1]]);
            let child_cert = parse_certificate(&child.der)?;
            if parent
                .revoked
                .contains(strip_zeros(child_cert.raw_serial()))
            {
                return Err(MspError::Revoked {
                    subject: child.subject.clone(),
                    serial: hex::encode(child_cert.raw_serial()),
                });
            }
        }

        let certifiers_id = twill_crypto::sha256(&chain_bytes);
        let ous = certificate_ous(&cert).and_then(|ous| self.check_ous(&ous, &certifiers_id));
        Ok(ChainCheck {
            windows,
            certifiers_id,
            ous,
        })
    }

    /// The OU rules as Fabric 1.4.3+ applies them: with NodeOUs in force,
    /// exactly one role OU (the OU identifiers are then not enforced);
    /// otherwise one of the OU identifiers, if any are configured.
    fn check_ous(&self, ous: &[String], chain_id: &[u8; 32]) -> Result<Option<NodeRole>> {
        let Some(rules) = &self.node_ous else {
            if !self.ou_identifiers.is_empty() {
                let recognised = ous.iter().any(|ou| {
                    self.ou_identifiers
                        .iter()
                        .any(|rule| &rule.ou == ou && rule.accepts(chain_id))
                });
                if !recognised {
                    return Err(MspError::OuNotRecognized { ous: ous.to_vec() });
                }
            }
            return Ok(None);
        };
        let mut found = Vec::new();
        for ou in ous {
            // When two roles share an OU name the later one (client, peer,
            // admin, orderer order) classifies, as in Fabric's lookup map.
            if let Some((role, rule)) = rules.iter().rev().find(|(_, rule)| &rule.ou == ou) {
                if !rule.accepts(chain_id) {
                    return Err(MspError::NodeOuCertifierMismatch { ou: ou.clone() });
                }
                found.push(*role);
            }
        }
        match found.as_slice() {
            [role] => Ok(Some(*role)),
            [] => Err(MspError::MissingNodeOu { ous: ous.to_vec() }),
            _ => Err(MspError::MultipleNodeOus { ous: ous.to_vec() }),
        }
    }

    /// Indices of the CAs from `cert`'s issuer up to a root, matched by name
    /// and verified by signature. `visited` guards against cycles.
    fn find_chain(
        &self,
        cert: &X509Certificate<'_>,
        visited: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        if visited.len() > MAX_CHAIN_DEPTH {
            return None;
        }
        let issuer = cert.issuer().as_raw();
        for (i, ca) in self.cas.iter().enumerate() {
            if ca.subject_raw != issuer || visited.contains(&i) {
                continue;
            }
            let Ok(parent) = parse_certificate(&ca.der) else {
                continue;
            };
            if cert.verify_signature(Some(parent.public_key())).is_err() {
                continue;
            }
            if ca.is_root {
                return Some(vec![i]);
            }
            visited.push(i);
            if let Some(mut rest) = self.find_chain(&parent, visited) {
                rest.insert(0, i);
                return Some(rest);
            }
            visited.pop();
        }
        None
    }

    /// Parses the CRL of one `revocation_list` entry and records its serials
    /// under each CA of the MSP that signed it.
    ///
    /// As Go's `x509.ParseCRL`, which Fabric uses: an entry starting with
    /// `-----BEGIN X509 CRL` is PEM and only its first block counts; anything
    /// else must be a DER CRL.
    fn add_crl(&mut self, entry: &[u8]) -> Result<()> {
        let mut der = None;
        if entry.starts_with(b"-----BEGIN X509 CRL") {
            if let Ok(Some((label, block))) = first_pem_block(entry) {
                if label == CRL_LABEL {
                    der = Some(block);
                }
            }
        }
        let der = der.as_deref().unwrap_or(entry);
        let crl = parse_crl(der)?;
        let issuer = crl.issuer().as_raw();
        let serials: Vec<Vec<u8>> = crl
            .iter_revoked_certificates()
            .map(|rc| strip_zeros(rc.raw_serial()).to_vec())
            .collect();
        for ca in self.cas.iter_mut() {
            if ca.subject_raw != issuer {
                continue;
            }
            let Ok(ca_cert) = parse_certificate(&ca.der) else {
                continue;
            };
            if crl.verify_signature(ca_cert.public_key()).is_ok() {
                ca.revoked.extend(serials.iter().cloned());
            }
        }
        Ok(())
    }

    /// Turns a configured OU identifier into a rule; a certificate, if given,
    /// must be a CA of the MSP and pins the rule to its chain.
    fn ou_rule(&self, id: &FabricOuIdentifier) -> Result<OuRule> {
        let ou = id.organizational_unit_identifier.clone();
        if id.certificate.is_empty() {
            return Ok(OuRule {
                ou,
                certifiers: None,
            });
        }
        let der = first_certificate_der(&id.certificate)?;
        let Some(index) = self.cas.iter().position(|ca| ca.der == der) else {
            return Err(MspError::OuCertificateNotCa { ou });
        };
        let mut chain = vec![index];
        if !self.cas[index].is_root {
            let cert = parse_certificate(&der)?;
            let above = self.find_chain(&cert, &mut vec![index]).ok_or_else(|| {
                MspError::IntermediateNotChained {
                    subject: self.cas[index].subject.clone(),
                }
            })?;
            chain.extend(above);
        }
        let mut bytes = Vec::new();
        for i in chain {
            bytes.extend_from_slice(&self.cas[i].der);
        }
        Ok(OuRule {
            ou,
            certifiers: Some(twill_crypto::sha256(&bytes)),
        })
    }
}

impl std::fmt::Debug for Msp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Msp")
            .field("id", &self.id())
            .field("roots", &self.cas.iter().filter(|c| c.is_root).count())
            .field(
                "intermediates",
                &self.cas.iter().filter(|c| !c.is_root).count(),
            )
            .field("admins", &self.admins.len())
            .field("node_ous", &self.node_ous.is_some())
            .finish_non_exhaustive()
    }
}

fn ca_cert(der: Vec<u8>, is_root: bool) -> Result<CaCert> {
    let cert = parse_certificate(&der)?;
    let subject = cert.subject().to_string();
    if !cert.is_ca() {
        return Err(MspError::NotCaCertificate { subject });
    }
    let subject_raw = cert.subject().as_raw().to_vec();
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    Ok(CaCert {
        der,
        subject,
        subject_raw,
        is_root,
        internal: false,
        revoked: HashSet::new(),
        not_before,
        not_after,
    })
}

fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>> {
    let invalid = |reason: String| MspError::InvalidDer {
        what: "CRL",
        reason,
    };
    let (rest, crl) = x509_parser::parse_x509_crl(der).map_err(|e| invalid(e.to_string()))?;
    if !rest.is_empty() {
        return Err(invalid(format!("{} trailing bytes", rest.len())));
    }
    Ok(crl)
}

fn check_crypto_config(cfg: &FabricMspConfig) -> Result<()> {
    let Some(crypto) = &cfg.crypto_config else {
        return Ok(());
    };
    let family_ok = matches!(crypto.signature_hash_family.as_str(), "" | "SHA2");
    let hash_ok = matches!(
        crypto.identity_identifier_hash_function.as_str(),
        "" | "SHA256"
    );
    if family_ok && hash_ok {
        Ok(())
    } else {
        Err(MspError::UnsupportedCryptoConfig {
            signature_hash_family: crypto.signature_hash_family.clone(),
            identity_identifier_hash_function: crypto.identity_identifier_hash_function.clone(),
        })
    }
}

/// Each certificate must be within its validity period at `now` (Unix seconds).
fn check_windows(windows: &[(String, OffsetDateTime, OffsetDateTime)], now: i64) -> Result<()> {
    for (subject, not_before, not_after) in windows {
        if now < not_before.unix_timestamp() {
            return Err(MspError::NotYetValid {
                subject: subject.clone(),
                not_before: *not_before,
            });
        }
        if now > not_after.unix_timestamp() {
            return Err(MspError::Expired {
                subject: subject.clone(),
                not_after: *not_after,
            });
        }
    }
    Ok(())
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Serial bytes without DER's sign-padding zeros, so CRL and certificate
/// serials compare equal however they were padded.
fn strip_zeros(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    &serial[start..]
}

fn invalid_principal(reason: String) -> MspError {
    MspError::InvalidPrincipal { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_zeros_normalises_padding() {
        assert_eq!(strip_zeros(&[0, 0, 0x81]), &[0x81]);
        assert_eq!(strip_zeros(&[0x01, 0x00]), &[0x01, 0x00]);
        assert_eq!(strip_zeros(&[0, 0]), &[] as &[u8]);
    }

    #[test]
    fn unix_seconds_handles_pre_epoch() {
        let before = UNIX_EPOCH - std::time::Duration::from_secs(10);
        assert_eq!(unix_seconds(before), -10);
        assert_eq!(unix_seconds(UNIX_EPOCH), 0);
    }

    #[test]
    fn msp_type_must_be_fabric() {
        let cfg = MspConfig {
            r#type: 1,
            config: Vec::new(),
        };
        assert!(matches!(
            Msp::from_msp_config(&cfg),
            Err(MspError::UnsupportedMspType { msp_type: 1 })
        ));
    }

    #[test]
    fn empty_name_and_no_roots_rejected() {
        let cfg = FabricMspConfig::default();
        assert!(matches!(
            Msp::from_config(&cfg),
            Err(MspError::EmptyMspName)
        ));
        let cfg = FabricMspConfig {
            name: "Org1MSP".into(),
            ..Default::default()
        };
        assert!(matches!(
            Msp::from_config(&cfg),
            Err(MspError::NoRootCerts { .. })
        ));
    }

    #[test]
    fn sha3_crypto_config_rejected() {
        let cfg = FabricMspConfig {
            name: "Org1MSP".into(),
            crypto_config: Some(twill_protos::msp::FabricCryptoConfig {
                signature_hash_family: "SHA3".into(),
                identity_identifier_hash_function: "SHA3_256".into(),
            }),
            ..Default::default()
        };
        assert!(matches!(
            Msp::from_config(&cfg),
            Err(MspError::UnsupportedCryptoConfig { .. })
        ));
    }
}
