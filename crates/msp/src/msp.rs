//! One organisation's X.509 MSP: trust anchors, validation and principals.

use crate::error::{MspError, Result, Unsatisfied};
use crate::identity::{certificates_der, parse_certificate, pem_blocks, Identity};
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
    /// `None` means any chain of the MSP.
    certifiers: Option<[u8; 32]>,
}

impl OuRule {
    fn accepts(&self, chain_id: &[u8; 32]) -> bool {
        self.certifiers.is_none_or(|c| &c == chain_id)
    }
}

/// The outcome of the time-independent part of validation for one certificate.
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
    /// Builds an MSP from its configuration.
    ///
    /// Checks that the name is set, that there is at least one root, that
    /// every root and intermediate is a CA certificate, that every
    /// intermediate chains to a root, that every admin certificate parses and
    /// that OU identifier certificates are CAs of the MSP. CRLs must parse;
    /// a CRL not signed by any CA of the MSP is ignored, as it cannot revoke
    /// anything this MSP trusts. The signing identity, if any, is not used.
    pub fn from_config(cfg: &FabricMspConfig) -> Result<Msp> {
        if cfg.name.is_empty() {
            return Err(MspError::EmptyMspName);
        }
        check_crypto_config(cfg)?;

        let mut cas = Vec::new();
        for entry in &cfg.root_certs {
            for der in certificates_der(entry)? {
                cas.push(ca_cert(der, true)?);
            }
        }
        if cas.is_empty() {
            return Err(MspError::NoRootCerts {
                mspid: cfg.name.clone(),
            });
        }
        for entry in &cfg.intermediate_certs {
            for der in certificates_der(entry)? {
                cas.push(ca_cert(der, false)?);
            }
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

        for entry in &cfg.admins {
            for der in certificates_der(entry)? {
                // Parse to reject garbage early; admins are compared by DER.
                parse_certificate(&der)?;
                msp.admins.insert(der);
            }
        }

        for entry in &cfg.revocation_list {
            msp.add_crls(entry)?;
        }

        for id in &cfg.organizational_unit_identifiers {
            let rule = msp.ou_rule(id)?;
            msp.ou_identifiers.push(rule);
        }

        if let Some(node_ous) = cfg.fabric_node_ous.as_ref().filter(|n| n.enable) {
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
            // With no role OU configured there is nothing to enforce.
            if !rules.is_empty() {
                msp.node_ous = Some(rules);
            }
        }
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

    /// Whether NodeOUs are enabled (with at least one role OU configured).
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
    pub fn validate(&self, id: &Identity) -> Result<()> {
        self.validate_at(id, SystemTime::now())
    }

    /// Validates `id` as a member of this MSP at time `now`.
    ///
    /// In order: the identity claims this MSP; it is not a CA certificate; it
    /// chains (by issuer name and signature) through the intermediates to a
    /// root; its issuer is a leaf of the MSP's certification tree; no
    /// certificate of the chain is revoked by a CRL its issuer signed; if the
    /// MSP lists OU identifiers, the identity carries one of them; if NodeOUs
    /// are on, it carries exactly one role OU (certified by the configured
    /// chain when one is set); and every certificate of the chain is within
    /// its validity period at `now`.
    ///
    /// Unlike Fabric's MSP, which leaves expiry to its callers, expiry is
    /// checked here; pass a block's timestamp to validate historical data.
    pub fn validate_at(&self, id: &Identity, now: SystemTime) -> Result<()> {
        self.check_mspid(id.mspid())?;
        let check = self.chain_check(id)?;
        check.ous.clone()?;
        check_windows(&check.windows, now)
    }

    /// The identity's NodeOU role, or `None` if NodeOUs are off or the
    /// identity does not pass the chain, revocation and OU checks.
    ///
    /// Validity periods are not considered here.
    pub fn node_role(&self, id: &Identity) -> Option<NodeRole> {
        if id.mspid() != self.id() || self.node_ous.is_none() {
            return None;
        }
        let check = self.chain_check(id).ok()?;
        check.ous.clone().ok().flatten()
    }

    /// Whether the identity is an admin: its certificate is listed among the
    /// MSP's admins, or it carries the admin NodeOU.
    ///
    /// Validity periods are not considered; [`Msp::satisfies_principal`]
    /// with an ADMIN role does the full check.
    pub fn is_admin(&self, id: &Identity) -> bool {
        (id.mspid() == self.id() && self.admins.contains(id.cert_der()))
            || self.node_role(id) == Some(NodeRole::Admin)
    }

    /// `Ok(())` if the identity, valid in this MSP now, satisfies `p`; see
    /// [`Msp::satisfies_principal_at`].
    pub fn satisfies_principal(&self, id: &Identity, p: &MspPrincipal) -> Result<()> {
        self.satisfies_principal_at(id, p, SystemTime::now())
    }

    /// `Ok(())` if the identity, valid in this MSP at `now`, satisfies `p`.
    ///
    /// * ROLE MEMBER: any valid identity. ADMIN: listed in the admins (chain,
    ///   revocation and time still checked) or a valid identity with the admin
    ///   NodeOU. CLIENT / PEER / ORDERER: a valid identity with that NodeOU;
    ///   requires NodeOUs.
    /// * ORGANIZATION_UNIT: a valid identity carrying the OU. When the
    ///   principal's `certifiers_identifier` is non-empty it must equal the
    ///   SHA-256 over the identity's CA chain (issuer first, root last); when it
    ///   is empty any chain of the MSP is accepted (Fabric always compares it).
    /// * IDENTITY: the principal's `SerializedIdentity` has this MSP id and the
    ///   same certificate (compared as DER), and the identity is valid.
    /// * ANONYMITY: NOMINAL is satisfied by any valid identity, ANONYMOUS never.
    /// * COMBINED: every sub-principal is satisfied.
    ///
    /// A principal naming another MSP is not satisfied, nor is any principal
    /// by an identity claiming another MSP. Every "no" is
    /// [`MspError::PrincipalNotSatisfied`]; malformed principal bytes are
    /// [`MspError::InvalidPrincipal`].
    pub fn satisfies_principal_at(
        &self,
        id: &Identity,
        p: &MspPrincipal,
        now: SystemTime,
    ) -> Result<()> {
        self.satisfies(id, p, now, 0)
    }

    fn satisfies(
        &self,
        id: &Identity,
        p: &MspPrincipal,
        now: SystemTime,
        depth: usize,
    ) -> Result<()> {
        let no = |reason| MspError::PrincipalNotSatisfied {
            mspid: id.mspid().to_owned(),
            reason,
        };
        if let Err(e) = self.check_mspid(id.mspid()) {
            return Err(no(Unsatisfied::InvalidIdentity(Box::new(e))));
        }
        let valid = |at| {
            self.validate_at(id, at)
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
                    MspRoleType::Member => return valid(now),
                    MspRoleType::Admin => return self.check_admin(id, now),
                    MspRoleType::Client => NodeRole::Client,
                    MspRoleType::Peer => NodeRole::Peer,
                    MspRoleType::Orderer => NodeRole::Orderer,
                };
                if self.node_ous.is_none() {
                    return Err(no(Unsatisfied::NodeOusDisabled));
                }
                valid(now)?;
                let actual = self.node_role(id);
                if actual == Some(wanted) {
                    Ok(())
                } else {
                    Err(no(Unsatisfied::WrongRole { wanted, actual }))
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
                valid(now)?;
                let wanted = ou.organizational_unit_identifier;
                if !id.organizational_units().contains(&wanted) {
                    return Err(no(Unsatisfied::MissingOu { ou: wanted }));
                }
                if !ou.certifiers_identifier.is_empty() {
                    let check = self.chain_check(id)?;
                    if ou.certifiers_identifier != check.certifiers_id {
                        return Err(no(Unsatisfied::CertifiersMismatch { ou: wanted }));
                    }
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
                let der = crate::identity::first_certificate_der(&sid.id_bytes)
                    .map_err(|e| invalid_principal(format!("identity certificate: {e}")))?;
                if der != id.cert_der() {
                    return Err(no(Unsatisfied::DifferentIdentity));
                }
                valid(now)
            }
            Classification::Anonymity => {
                let anonymity = MspIdentityAnonymity::decode(p.principal.as_slice())
                    .map_err(|e| invalid_principal(format!("MSPIdentityAnonymity: {e}")))?;
                match MspIdentityAnonymityType::try_from(anonymity.anonymity_type) {
                    Ok(MspIdentityAnonymityType::Nominal) => valid(now),
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
                    self.satisfies(id, sub, now, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    /// ADMIN: a listed admin needs a good chain and validity period (the OU
    /// rules are waived, as admin certificates often predate NodeOUs); anyone
    /// else must be fully valid and carry the admin NodeOU.
    fn check_admin(&self, id: &Identity, now: SystemTime) -> Result<()> {
        let no = |reason| MspError::PrincipalNotSatisfied {
            mspid: id.mspid().to_owned(),
            reason,
        };
        let invalid = |e| no(Unsatisfied::InvalidIdentity(Box::new(e)));
        if self.admins.contains(id.cert_der()) {
            let check = self.chain_check(id).map_err(invalid)?;
            return check_windows(&check.windows, now).map_err(invalid);
        }
        self.validate_at(id, now).map_err(invalid)?;
        if self.node_role(id) == Some(NodeRole::Admin) {
            Ok(())
        } else {
            Err(no(Unsatisfied::NotAdmin))
        }
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

    /// The cached time-independent check of `id`, computing it on a miss.
    fn chain_check(&self, id: &Identity) -> CachedCheck {
        let key = id.der_hash();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.get(&key) {
                return hit.clone();
            }
        }
        // Computed outside the lock: two threads may race on the same
        // certificate, and both get the same answer.
        let result = self.compute_chain_check(id).map(Arc::new);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, result.clone());
        result
    }

    fn compute_chain_check(&self, id: &Identity) -> Result<ChainCheck> {
        let cert = parse_certificate(id.cert_der())?;
        if cert.is_ca() {
            return Err(MspError::CaCertAsIdentity {
                subject: id.subject().to_owned(),
            });
        }
        let chain =
            self.find_chain(&cert, &mut Vec::new())
                .ok_or_else(|| MspError::UntrustedChain {
                    subject: id.subject().to_owned(),
                    issuer: cert.issuer().to_string(),
                })?;
        // find_chain only returns non-empty chains.
        let Some(&issuer) = chain.first() else {
            return Err(MspError::UntrustedChain {
                subject: id.subject().to_owned(),
                issuer: cert.issuer().to_string(),
            });
        };
        if self.cas[issuer].internal {
            return Err(MspError::IssuerNotLeafCa {
                issuer: self.cas[issuer].subject.clone(),
            });
        }

        // Each certificate against the CRLs of the CA above it.
        if self.cas[issuer]
            .revoked
            .contains(strip_zeros(cert.raw_serial()))
        {
            return Err(MspError::Revoked {
                subject: id.subject().to_owned(),
                serial: id.serial_hex(),
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

        let mut windows = vec![(id.subject().to_owned(), id.not_before(), id.not_after())];
        let mut chain_bytes = Vec::new();
        for &i in &chain {
            let ca = &self.cas[i];
            windows.push((ca.subject.clone(), ca.not_before, ca.not_after));
            chain_bytes.extend_from_slice(&ca.der);
        }
        let certifiers_id = twill_crypto::sha256(&chain_bytes);
        let ous = self.check_ous(id.organizational_units(), &certifiers_id);
        Ok(ChainCheck {
            windows,
            certifiers_id,
            ous,
        })
    }

    /// OU identifiers then NodeOUs, as Fabric 1.4.3+ applies them.
    fn check_ous(&self, ous: &[String], chain_id: &[u8; 32]) -> Result<Option<NodeRole>> {
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
        let Some(rules) = &self.node_ous else {
            return Ok(None);
        };
        let mut found = Vec::new();
        for ou in ous {
            if let Some((role, rule)) = rules.iter().find(|(_, rule)| &rule.ou == ou) {
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

    /// Parses the CRLs of one `revocation_list` entry (PEM, or a single DER
    /// CRL) and records their serials under each CA of the MSP that signed them.
    fn add_crls(&mut self, entry: &[u8]) -> Result<()> {
        // DER starts with a SEQUENCE tag and a long-form length byte (>= 0x81),
        // which PEM text, being ASCII, never has in its second byte.
        let ders = match entry {
            [0x30, len, ..] if *len >= 0x81 => vec![entry.to_vec()],
            _ => pem_blocks(entry, CRL_LABEL, "CRL")?,
        };
        for der in ders {
            let crl = parse_crl(&der)?;
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
        let der = crate::identity::first_certificate_der(&id.certificate)?;
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

/// Each certificate must be within its validity period at `now`.
fn check_windows(
    windows: &[(String, OffsetDateTime, OffsetDateTime)],
    now: SystemTime,
) -> Result<()> {
    let now = unix_seconds(now);
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
