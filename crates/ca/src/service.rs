//! The CA's operations, independent of HTTP: each takes the authenticated
//! caller and a request from [`crate::api`] and returns a result or a
//! [`CaError`]. Every operation that changes the registry validates
//! everything first and writes last, so a refused request changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::api::*;
use crate::error::{codes, CaError, CaResult};
use crate::registry::{CertRecord, IdentityRecord, Registry, STATE_ACTIVE, STATE_REVOKED};
use crate::signer::{self, CaSigner, CrlEntry, IssueRequest, RootSubject};

const LOG: &str = "ca::service";

/// An identity created on first start (`registry.identities` / `-b`).
#[derive(Debug, Clone, Default)]
pub struct BootstrapIdentity {
    /// Enrollment ID.
    pub id: String,
    /// Secret.
    pub secret: String,
    /// Type (`client` when empty).
    pub id_type: String,
    /// Affiliation (`""` = root).
    pub affiliation: String,
    /// Max enrollments (0 = CA default).
    pub max_enrollments: i64,
    /// Attributes; `None` gives every registrar attribute (the bootstrap admin).
    pub attrs: Option<Vec<Attribute>>,
}

/// What the CA needs to run.
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// The CA's name (`ca.name`).
    pub name: String,
    /// Default and upper limit of max enrollments (-1 = unlimited).
    pub max_enrollments: i64,
    /// Validity of issued certificates.
    pub cert_validity: Duration,
    /// Validity of the root certificate made on first start.
    pub root_validity: Duration,
    /// How long a CRL is valid.
    pub crl_validity: Duration,
    /// Subject of the root certificate.
    pub root_subject: RootSubject,
    /// Identities registered on first start.
    pub bootstrap: Vec<BootstrapIdentity>,
    /// Affiliations created on first start (dotted names).
    pub affiliations: Vec<String>,
    /// An existing CA certificate and key (PEM files) to issue with,
    /// instead of the `ca-cert.pem`/`ca-key.pem` made in the home.
    pub ca_files: Option<(PathBuf, PathBuf)>,
    /// Intermediate-CA mode: the parent that issues this CA's certificate
    /// on first start (ignored when `ca_files` is set).
    pub parent: Option<crate::parent::ParentServer>,
}

impl Default for CaSettings {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_enrollments: -1,
            cert_validity: Duration::from_secs(365 * 86_400),
            root_validity: Duration::from_secs(15 * 365 * 86_400),
            crl_validity: Duration::from_secs(86_400),
            root_subject: RootSubject {
                cn: "twill-ca".into(),
                ..RootSubject::default()
            },
            bootstrap: Vec::new(),
            affiliations: vec![
                "org1".into(),
                "org1.department1".into(),
                "org1.department2".into(),
                "org2".into(),
                "org2.department1".into(),
            ],
            ca_files: None,
            parent: None,
        }
    }
}

/// The authenticated caller of a token-authenticated request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's identity.
    pub identity: IdentityRecord,
    /// The certificate it authenticated with.
    pub cert: CertRecord,
}

/// The certificate authority: signer plus registry.
#[derive(Debug)]
pub struct Ca {
    settings: CaSettings,
    signer: CaSigner,
    registry: Registry,
    /// Serialises read-modify-write operations on the registry.
    write: Mutex<()>,
}

fn lock(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registrar attributes the bootstrap admin gets.
pub fn admin_attrs() -> Vec<Attribute> {
    [
        (ATTR_REGISTRAR_ROLES, "*"),
        (ATTR_REGISTRAR_DELEGATE_ROLES, "*"),
        (ATTR_REGISTRAR_ATTRIBUTES, "*"),
        (ATTR_REVOKER, "true"),
        (ATTR_INTERMEDIATE_CA, "true"),
        (ATTR_GEN_CRL, "true"),
        (ATTR_AFFILIATION_MGR, "true"),
    ]
    .into_iter()
    .map(|(n, v)| Attribute {
        name: n.into(),
        value: v.into(),
        ecert: false,
    })
    .collect()
}

fn random_secret() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

/// Whether `aff` is `scope` or below it (`""` scope covers everything).
pub fn within(scope: &str, aff: &str) -> bool {
    scope.is_empty() || aff == scope || aff.starts_with(&format!("{scope}."))
}

fn set_attr(attrs: &mut Vec<Attribute>, name: &str, value: &str, ecert: bool) {
    attrs.retain(|a| a.name != name);
    attrs.push(Attribute {
        name: name.into(),
        value: value.into(),
        ecert,
    });
}

fn list(v: &str) -> Vec<&str> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn info(rec: &IdentityRecord) -> IdentityInfo {
    IdentityInfo {
        id: rec.id.clone(),
        id_type: rec.id_type.clone(),
        affiliation: rec.affiliation.clone(),
        attrs: rec.attrs.clone(),
        max_enrollments: rec.max_enrollments,
    }
}

/// RFC 5280 reason code from a name (Fabric's spelling) or number.
fn reason_code(reason: Option<&str>) -> CaResult<u8> {
    let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(0);
    };
    if let Ok(n) = r.parse::<u8>() {
        return Ok(n);
    }
    Ok(match r.to_ascii_lowercase().as_str() {
        "unspecified" => 0,
        "keycompromise" => 1,
        "cacompromise" => 2,
        "affiliationchanged" => 3,
        "superseded" => 4,
        "cessationofoperation" => 5,
        "certificatehold" => 6,
        "removefromcrl" => 8,
        "privilegewithdrawn" => 9,
        "aacompromise" => 10,
        _ => {
            return Err(CaError::bad(
                codes::BAD_REQUEST_BODY,
                format!("Invalid reason: {r}"),
            ))
        }
    })
}

/// Parses an RFC 3339 time into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let year: i32 = d.next()?.parse().ok()?;
    let month: u8 = d.next()?.parse().ok()?;
    let day: u8 = d.next()?.parse().ok()?;
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let pos = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off.get(1..)?.split_once(':')?;
        (
            c,
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60),
        )
    };
    let clock = clock.split('.').next()?;
    let mut t = clock.split(':');
    let h: u8 = t.next()?.parse().ok()?;
    let mi: u8 = t.next()?.parse().ok()?;
    let se: u8 = t.next()?.parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let tm = time::Time::from_hms(h, mi, se).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, tm)
            .assume_utc()
            .unix_timestamp()
            - offset_secs,
    )
}

impl Ca {
    /// Opens the CA in `home`: loads or creates its key and root
    /// certificate, opens the registry and, on first start, registers the
    /// bootstrap identities and affiliations.
    pub fn open(home: &Path, settings: CaSettings) -> CaResult<Self> {
        let signer = match &settings.ca_files {
            Some((cert, key)) => CaSigner::load_existing(cert, key)?,
            None => match &settings.parent {
                Some(parent) => CaSigner::load_or_enroll(home, &settings.root_subject, parent)?,
                None => {
                    CaSigner::load_or_create(home, &settings.root_subject, settings.root_validity)?
                }
            },
        };
        let registry = Registry::open(&home.join("registry"))?;
        let ca = Self {
            settings,
            signer,
            registry,
            write: Mutex::new(()),
        };
        if ca.registry.is_empty() {
            for aff in &ca.settings.affiliations {
                let mut prefix = String::new();
                for seg in aff.split('.') {
                    if !prefix.is_empty() {
                        prefix.push('.');
                    }
                    prefix.push_str(seg);
                    ca.registry.add_affiliation(&prefix)?;
                }
            }
            for b in &ca.settings.bootstrap {
                let id_type = if b.id_type.is_empty() {
                    "client"
                } else {
                    &b.id_type
                };
                let mut attrs = b.attrs.clone().unwrap_or_else(admin_attrs);
                set_attr(&mut attrs, ATTR_ENROLLMENT_ID, &b.id, true);
                set_attr(&mut attrs, ATTR_TYPE, id_type, true);
                set_attr(&mut attrs, ATTR_AFFILIATION, &b.affiliation, true);
                let mut rec = IdentityRecord {
                    id: b.id.clone(),
                    id_type: id_type.into(),
                    affiliation: b.affiliation.clone(),
                    attrs,
                    max_enrollments: if b.max_enrollments == 0 {
                        ca.settings.max_enrollments
                    } else {
                        b.max_enrollments
                    },
                    enrollments: 0,
                    state: STATE_ACTIVE,
                    salt: String::new(),
                    pass_hash: String::new(),
                    iterations: 0,
                };
                rec.set_secret(&b.secret);
                ca.registry.put_identity(&rec)?;
                tracing::info!(target: LOG, id = %b.id, "registered bootstrap identity");
            }
            ca.registry.flush()?;
        }
        Ok(ca)
    }

    /// Issues the CA's own TLS server certificate for `hosts` and writes
    /// it to `<home>/tls-cert.pem` (key `<home>/tls-key.pem`, mode 0600),
    /// replacing earlier ones. Returns the certificate and key, PEM.
    pub fn issue_own_tls(&self, home: &Path, hosts: &[String]) -> CaResult<(String, String)> {
        let (issued, key_pem) = self
            .signer
            .issue_server_tls(hosts, self.settings.cert_validity)?;
        let cert_path = home.join(signer::TLS_CERT_FILE);
        let key_path = home.join(signer::TLS_KEY_FILE);
        signer::write_private_replace(&key_path, key_pem.as_bytes())?;
        std::fs::write(&cert_path, &issued.pem).map_err(|source| CaError::Io {
            path: cert_path.clone(),
            source,
        })?;
        tracing::info!(
            target: LOG,
            path = %cert_path.display(),
            hosts = %hosts.join(","),
            serial = %issued.serial,
            "issued the CA's TLS server certificate"
        );
        Ok((issued.pem, key_pem))
    }

    /// The CA's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The registry (read access for tools and tests).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Checks a CA name from `?ca=` or the body: empty and `undefined`
    /// mean this CA.
    pub fn check_ca_name(&self, name: Option<&str>) -> CaResult<()> {
        match name {
            None | Some("") | Some("undefined") => Ok(()),
            Some(n) if n == self.settings.name => Ok(()),
            Some(n) => Err(CaError::NotFound {
                code: codes::CA_NOT_FOUND,
                message: format!("CA '{n}' does not exist"),
            }),
        }
    }

    /// `cainfo`.
    pub fn cainfo(&self) -> CaInfo {
        CaInfo {
            ca_name: self.settings.name.clone(),
            ca_chain: B64.encode(self.signer.chain_pem()),
            issuer_public_key: String::new(),
            issuer_revocation_public_key: String::new(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// `enroll` with Basic credentials.
    pub fn enroll(&self, id: &str, secret: &str, req: &EnrollRequest) -> CaResult<EnrollResponse> {
        let _g = lock(&self.write);
        let mut rec = self
            .registry
            .identity(id)?
            .ok_or_else(|| CaError::authn(format!("identity '{id}' not found")))?;
        if !rec.check_secret(secret) {
            return Err(CaError::authn(format!("wrong secret for '{id}'")));
        }
        if rec.state != STATE_ACTIVE {
            return Err(CaError::authn(format!("identity '{id}' is revoked")));
        }
        if rec.max_enrollments >= 0 && rec.enrollments >= rec.max_enrollments {
            return Err(CaError::authn(format!(
                "identity '{id}' has reached its maximum of {} enrollments",
                rec.max_enrollments
            )));
        }
        let issued = self.issue_for(&rec, req)?;
        rec.enrollments += 1;
        self.registry.put_identity(&rec)?;
        self.registry.flush()?;
        tracing::info!(target: LOG, %id, serial = %issued.serial, "enrolled");
        Ok(issued.response(self))
    }

    /// `reenroll` by an authenticated caller.
    pub fn reenroll(&self, caller: &Caller, req: &EnrollRequest) -> CaResult<EnrollResponse> {
        let _g = lock(&self.write);
        let issued = self.issue_for(&caller.identity, req)?;
        self.registry.flush()?;
        tracing::info!(target: LOG, id = %caller.identity.id, serial = %issued.serial, "reenrolled");
        Ok(issued.response(self))
    }

    fn issue_for(&self, rec: &IdentityRecord, req: &EnrollRequest) -> CaResult<IssuedCert> {
        let csr = signer::parse_csr(&req.certificate_request)?;
        if csr.cn != rec.id {
            return Err(CaError::BadCsr {
                status: 403,
                message: "The CSR subject common name must equal the enrollment ID".into(),
            });
        }
        let profile = req.profile.as_deref().unwrap_or("");
        match profile {
            "" | "default" | "tls" | signer::PROFILE_CA => {}
            other => {
                return Err(CaError::bad(
                    codes::BAD_REQUEST_BODY,
                    format!("Invalid signing profile: {other}"),
                ))
            }
        }
        // A CA certificate (profile `ca`, or a CSR asking for CA:true)
        // needs hf.IntermediateCA, as in Fabric CA (403, code 71).
        let for_ca = profile == signer::PROFILE_CA || csr.is_ca;
        if for_ca && !rec.attr_true(ATTR_INTERMEDIATE_CA) {
            return Err(CaError::authz(format!(
                "Enrolled failed: '{}' does not have hf.IntermediateCA=true, needed for a CA certificate",
                rec.id
            )));
        }
        let (profile, validity) = if for_ca {
            (signer::PROFILE_CA, signer::CA_PROFILE_VALIDITY)
        } else {
            (profile, self.settings.cert_validity)
        };
        let mut attrs = BTreeMap::new();
        match &req.attr_reqs {
            None => {
                for a in rec.attrs.iter().filter(|a| a.ecert) {
                    attrs.insert(a.name.clone(), a.value.clone());
                }
            }
            Some(reqs) => {
                for r in reqs {
                    match rec.attrs.iter().find(|a| a.name == r.name) {
                        Some(a) => {
                            attrs.insert(a.name.clone(), a.value.clone());
                        }
                        None if r.optional => {}
                        None => {
                            return Err(CaError::bad(
                                codes::BAD_REQUEST_BODY,
                                format!(
                                    "Attribute '{}' was requested but the identity '{}' does not have it",
                                    r.name, rec.id
                                ),
                            ))
                        }
                    }
                }
            }
        }
        let attrs_json = if attrs.is_empty() {
            None
        } else {
            Some(
                serde_json::to_vec(&CertAttributes { attrs })
                    .map_err(|e| CaError::Cert(e.to_string()))?,
            )
        };
        let issued = self.signer.issue(&IssueRequest {
            csr: &csr,
            id_type: &rec.id_type,
            affiliation: &rec.affiliation,
            attrs_json,
            validity,
            profile,
        })?;
        self.registry.put_cert(&CertRecord {
            serial: issued.serial.clone(),
            aki: issued.aki.clone(),
            id: rec.id.clone(),
            pem: issued.pem.clone(),
            not_after: issued.not_after,
            revoked_at: None,
            reason: 0,
        })?;
        Ok(IssuedCert {
            serial: issued.serial,
            pem: issued.pem,
        })
    }

    /// Verifies a token (`<b64 cert>.<b64 sig>`) over `method`, `uri` and
    /// `body`, and returns the caller.
    pub fn authenticate(
        &self,
        method: &str,
        uri: &str,
        body: &[u8],
        header: Option<&str>,
    ) -> CaResult<Caller> {
        let header = header.ok_or_else(|| CaError::authn("no authorization header"))?;
        if header.starts_with("Basic ") {
            return Err(CaError::authn("token authentication required, got Basic"));
        }
        let (b64cert, b64sig) = header
            .trim()
            .split_once('.')
            .ok_or_else(|| CaError::authn("malformed token"))?;
        let cert_pem = B64
            .decode(b64cert)
            .map_err(|_| CaError::authn("token certificate is not base64"))?;
        let sig = B64
            .decode(b64sig)
            .map_err(|_| CaError::authn("token signature is not base64"))?;
        let block =
            pem::parse(&cert_pem).map_err(|_| CaError::authn("token certificate is not PEM"))?;
        let (_, cert) = X509Certificate::from_der(block.contents())
            .map_err(|_| CaError::authn("token certificate is not X.509"))?;
        let serial = signer::serial_hex(cert.raw_serial());
        let aki = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| hex::encode(k.0))
                }
                _ => None,
            })
            .unwrap_or_default();
        let rec = self.registry.cert(&serial, &aki)?.ok_or_else(|| {
            CaError::authn(format!("certificate {serial} was not issued by this CA"))
        })?;
        if rec.pem.trim()
            != String::from_utf8_lossy(&cert_pem)
                .replace("\r\n", "\n")
                .trim()
        {
            return Err(CaError::authn("certificate does not match the issued one"));
        }
        if rec.revoked_at.is_some() {
            return Err(CaError::authn(format!("certificate {serial} is revoked")));
        }
        if rec.not_after < signer::unix(SystemTime::now()) {
            return Err(CaError::authn(format!("certificate {serial} has expired")));
        }
        let message = format!(
            "{method}.{}.{}.{b64cert}",
            B64.encode(uri.as_bytes()),
            B64.encode(body)
        );
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            cert.public_key().subject_public_key.data.as_ref(),
        );
        key.verify(message.as_bytes(), &sig)
            .map_err(|_| CaError::authn("token signature is not valid"))?;
        let identity = self
            .registry
            .identity(&rec.id)?
            .ok_or_else(|| CaError::authn(format!("identity '{}' no longer exists", rec.id)))?;
        if identity.state != STATE_ACTIVE {
            return Err(CaError::authn(format!("identity '{}' is revoked", rec.id)));
        }
        Ok(Caller {
            identity,
            cert: rec,
        })
    }

    /// Checks that `caller` may register and manage identities of `id_type`.
    fn can_act_on_type(caller: &IdentityRecord, id_type: &str) -> CaResult<()> {
        let roles = caller.attr(ATTR_REGISTRAR_ROLES).ok_or_else(|| {
            CaError::authz(format!(
                "'{}' is not a registrar (no hf.Registrar.Roles)",
                caller.id
            ))
        })?;
        let roles = list(roles);
        if roles.contains(&"*") || roles.contains(&id_type) {
            Ok(())
        } else {
            Err(CaError::authz(format!(
                "'{}' may not act on type '{id_type}' (hf.Registrar.Roles: {})",
                caller.id,
                roles.join(",")
            )))
        }
    }

    fn can_act_on_affiliation(caller: &IdentityRecord, aff: &str) -> CaResult<()> {
        if within(&caller.affiliation, aff) {
            Ok(())
        } else {
            Err(CaError::authz(format!(
                "'{}' (affiliation '{}') may not act on affiliation '{aff}'",
                caller.id, caller.affiliation
            )))
        }
    }

    fn attr_name_allowed(caller: &IdentityRecord, name: &str) -> bool {
        caller.attr(ATTR_REGISTRAR_ATTRIBUTES).is_some_and(|v| {
            list(v).iter().any(|p| {
                *p == "*"
                    || *p == name
                    || p.strip_suffix('*').is_some_and(|pre| name.starts_with(pre))
            })
        })
    }

    /// Checks that `caller` may give `attr` to an identity.
    fn can_register_attr(caller: &IdentityRecord, attr: &Attribute) -> CaResult<()> {
        let deny = |why: String| Err(CaError::authz(format!("attribute '{}': {why}", attr.name)));
        if [ATTR_ENROLLMENT_ID, ATTR_TYPE, ATTR_AFFILIATION].contains(&attr.name.as_str()) {
            return deny("reserved, set by the CA".into());
        }
        if !Self::attr_name_allowed(caller, &attr.name) {
            return deny(format!(
                "'{}' lacks it in hf.Registrar.Attributes",
                caller.id
            ));
        }
        match attr.name.as_str() {
            ATTR_REGISTRAR_ROLES | ATTR_REGISTRAR_DELEGATE_ROLES => {
                let own = caller.attr(&attr.name).map(list).unwrap_or_default();
                for v in list(&attr.value) {
                    if !own.contains(&"*") && !own.contains(&v) {
                        return deny(format!("'{}' may not grant '{v}'", caller.id));
                    }
                }
            }
            ATTR_REGISTRAR_ATTRIBUTES => {
                for v in list(&attr.value) {
                    if !Self::attr_name_allowed(caller, v.trim_end_matches('*')) && v != "*" {
                        return deny(format!("'{}' may not grant '{v}'", caller.id));
                    }
                    if v == "*" && !Self::attr_name_allowed(caller, "*") {
                        return deny(format!("'{}' may not grant '*'", caller.id));
                    }
                }
            }
            ATTR_REVOKER | ATTR_GEN_CRL | ATTR_INTERMEDIATE_CA | ATTR_AFFILIATION_MGR => {
                let v = attr.value.to_ascii_lowercase();
                if v != "true" && v != "false" {
                    return Err(CaError::bad(
                        codes::BAD_REQUEST_BODY,
                        format!("Attribute '{}' must be 'true' or 'false'", attr.name),
                    ));
                }
                if v == "true" && !caller.attr_true(&attr.name) {
                    return deny(format!("'{}' does not have it", caller.id));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn resolve_max(&self, requested: i64) -> CaResult<i64> {
        let limit = self.settings.max_enrollments;
        let max = if requested == 0 { limit } else { requested };
        if max < -1 {
            return Err(CaError::bad(
                codes::BAD_REQUEST_BODY,
                format!("Invalid max enrollments: {max}"),
            ));
        }
        if limit >= 0 && (max == -1 || max > limit) {
            return Err(CaError::bad(
                codes::BAD_REQUEST_BODY,
                format!("Requested max enrollments ({max}) exceeds the CA's limit ({limit})"),
            ));
        }
        Ok(max)
    }

    /// `register`: creates an identity and returns its secret.
    pub fn register(&self, caller: &Caller, req: &RegisterRequest) -> CaResult<RegisterResponse> {
        let _g = lock(&self.write);
        let registrar = &caller.identity;
        if req.id.trim().is_empty() {
            return Err(CaError::bad(
                codes::BAD_REQUEST_BODY,
                "Registration request has no 'id'",
            ));
        }
        let id_type = match req.id_type.as_deref() {
            None | Some("") => registrar.id_type.clone(),
            Some(t) => t.to_string(),
        };
        let affiliation = match req.affiliation.as_deref() {
            None | Some("") => registrar.affiliation.clone(),
            Some(".") => String::new(),
            Some(a) => a.to_string(),
        };
        Self::can_act_on_type(registrar, &id_type)?;
        Self::can_act_on_affiliation(registrar, &affiliation)?;
        if !self.registry.has_affiliation(&affiliation)? {
            return Err(CaError::bad(
                codes::BAD_REQUEST_BODY,
                format!("Registration of '{}' failed in affiliation validation: affiliation '{affiliation}' does not exist", req.id),
            ));
        }
        for a in &req.attrs {
            Self::can_register_attr(registrar, a)?;
        }
        let max = self.resolve_max(req.max_enrollments)?;
        if self.registry.identity(&req.id)?.is_some() {
            return Err(CaError::Conflict {
                code: codes::UNKNOWN,
                message: format!(
                    "Registration of '{0}' failed: Identity '{0}' is already registered",
                    req.id
                ),
            });
        }
        let secret = match req.secret.as_deref() {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => random_secret(),
        };
        let mut attrs = req.attrs.clone();
        set_attr(&mut attrs, ATTR_ENROLLMENT_ID, &req.id, true);
        set_attr(&mut attrs, ATTR_TYPE, &id_type, true);
        set_attr(&mut attrs, ATTR_AFFILIATION, &affiliation, true);
        let mut rec = IdentityRecord {
            id: req.id.clone(),
            id_type,
            affiliation,
            attrs,
            max_enrollments: max,
            enrollments: 0,
            state: STATE_ACTIVE,
            salt: String::new(),
            pass_hash: String::new(),
            iterations: 0,
        };
        rec.set_secret(&secret);
        self.registry.put_identity(&rec)?;
        self.registry.flush()?;
        tracing::info!(target: LOG, registrar = %registrar.id, id = %rec.id, id_type = %rec.id_type, "registered");
        Ok(RegisterResponse { secret })
    }

    /// `revoke`: one certificate or every certificate of an identity.
    pub fn revoke(&self, caller: &Caller, req: &RevokeRequest) -> CaResult<RevokeResponse> {
        let _g = lock(&self.write);
        if !caller.identity.attr_true(ATTR_REVOKER) {
            return Err(CaError::authz(format!(
                "'{}' lacks hf.Revoker",
                caller.identity.id
            )));
        }
        let reason = reason_code(req.reason.as_deref())?;
        let now = signer::unix(SystemTime::now());
        let serial = req.serial.as_deref().filter(|s| !s.is_empty());
        let aki = req.aki.as_deref().filter(|s| !s.is_empty());
        let id = req.id.as_deref().filter(|s| !s.is_empty());
        let mut to_revoke = Vec::new();
        let mut identity_update = None;
        if let (Some(serial), Some(aki)) = (serial, aki) {
            let serial = signer::normalize_hex(serial, true);
            let aki = signer::normalize_hex(aki, false);
            let cert = self
                .registry
                .cert(&serial, &aki)?
                .ok_or_else(|| CaError::NotFound {
                    code: codes::REVOKE_CERT_NOT_FOUND,
                    message: format!(
                        "Certificate with serial {serial} and AKI {aki} was not found"
                    ),
                })?;
            if let Some(id) = id {
                if id != cert.id {
                    return Err(CaError::bad(
                        codes::CERT_WRONG_OWNER,
                        format!("Certificate with serial {serial} is not owned by '{id}'"),
                    ));
                }
            }
            if let Some(owner) = self.registry.identity(&cert.id)? {
                Self::can_act_on_affiliation(&caller.identity, &owner.affiliation)?;
            }
            if cert.revoked_at.is_some() {
                return Err(CaError::Conflict {
                    code: codes::CERT_ALREADY_REVOKED,
                    message: format!(
                        "Certificate with serial {serial} and AKI {aki} was already revoked"
                    ),
                });
            }
            to_revoke.push(cert);
        } else if let Some(id) = id {
            let mut owner = self
                .registry
                .identity(id)?
                .ok_or_else(|| CaError::NotFound {
                    code: codes::REVOKE_ID_NOT_FOUND,
                    message: format!("Identity '{id}' was not found"),
                })?;
            Self::can_act_on_affiliation(&caller.identity, &owner.affiliation)?;
            Self::can_act_on_type(&caller.identity, &owner.id_type)?;
            to_revoke = self
                .registry
                .certs()?
                .into_iter()
                .filter(|c| c.id == id && c.revoked_at.is_none())
                .collect();
            owner.state = STATE_REVOKED;
            identity_update = Some(owner);
        } else {
            return Err(CaError::bad(
                codes::MISSING_REVOKE_ARGS,
                "Either Name or Serial and AKI are required for a revoke request",
            ));
        }
        let mut revoked = Vec::new();
        for mut c in to_revoke {
            c.revoked_at = Some(now);
            c.reason = reason;
            self.registry.put_cert(&c)?;
            revoked.push(RevokedCert {
                serial: c.serial,
                aki: c.aki,
            });
        }
        if let Some(owner) = identity_update {
            self.registry.put_identity(&owner)?;
        }
        self.registry.flush()?;
        tracing::info!(target: LOG, revoker = %caller.identity.id, count = revoked.len(), "revoked");
        let crl = if req.gencrl {
            B64.encode(self.make_crl(&GenCrlRequest::default())?)
        } else {
            String::new()
        };
        Ok(RevokeResponse {
            revoked_certs: revoked,
            crl,
        })
    }

    /// `gencrl`: a CRL of the revoked certificates matching the filters.
    pub fn gencrl(&self, caller: &Caller, req: &GenCrlRequest) -> CaResult<GenCrlResponse> {
        if !caller.identity.attr_true(ATTR_GEN_CRL) {
            return Err(CaError::authz(format!(
                "'{}' lacks hf.GenCRL",
                caller.identity.id
            )));
        }
        Ok(GenCrlResponse {
            crl: B64.encode(self.make_crl(req)?),
        })
    }

    fn make_crl(&self, req: &GenCrlRequest) -> CaResult<String> {
        let t = |v: &Option<String>, what: &str| -> CaResult<Option<i64>> {
            match v.as_deref().filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => parse_rfc3339(s).map(Some).ok_or_else(|| {
                    CaError::bad(codes::INVALID_TIME, format!("Invalid '{what}' value: {s}"))
                }),
            }
        };
        let rb = t(&req.revoked_before, "revokedBefore")?;
        let ra = t(&req.revoked_after, "revokedAfter")?;
        let eb = t(&req.expire_before, "expireBefore")?;
        let ea = t(&req.expire_after, "expireAfter")?;
        let entries: Vec<CrlEntry> = self
            .registry
            .certs()?
            .into_iter()
            .filter_map(|c| {
                let at = i64::try_from(c.revoked_at?).ok()?;
                let na = i64::try_from(c.not_after).ok()?;
                let ok = rb.is_none_or(|b| at < b)
                    && ra.is_none_or(|a| at > a)
                    && eb.is_none_or(|b| na < b)
                    && ea.is_none_or(|a| na > a);
                ok.then(|| CrlEntry {
                    serial: c.serial,
                    revoked_at: u64::try_from(at).unwrap_or(0),
                    reason: c.reason,
                })
            })
            .collect();
        let number = self.registry.next_crl_number()?;
        self.signer
            .crl(&entries, number, self.settings.crl_validity)
    }

    fn visible(caller: &IdentityRecord, rec: &IdentityRecord) -> bool {
        within(&caller.affiliation, &rec.affiliation)
            && Self::can_act_on_type(caller, &rec.id_type).is_ok()
    }

    /// `GET identities`.
    pub fn list_identities(&self, caller: &Caller) -> CaResult<IdentitiesResponse> {
        Self::can_act_on_type(&caller.identity, "").or_else(|e| {
            if caller.identity.attr(ATTR_REGISTRAR_ROLES).is_some() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let identities = self
            .registry
            .identities()?
            .iter()
            .filter(|r| Self::visible(&caller.identity, r))
            .map(info)
            .collect();
        Ok(IdentitiesResponse {
            identities,
            caname: self.settings.name.clone(),
        })
    }

    fn visible_identity(&self, caller: &Caller, id: &str) -> CaResult<IdentityRecord> {
        let rec = self
            .registry
            .identity(id)?
            .ok_or_else(|| CaError::NotFound {
                code: codes::GETTING_USER,
                message: format!("Failed to get user: Identity '{id}' does not exist"),
            })?;
        Self::can_act_on_type(&caller.identity, &rec.id_type)?;
        Self::can_act_on_affiliation(&caller.identity, &rec.affiliation)?;
        Ok(rec)
    }

    /// `GET identities/{id}`.
    pub fn get_identity(&self, caller: &Caller, id: &str) -> CaResult<IdentityResponse> {
        let rec = self.visible_identity(caller, id)?;
        Ok(IdentityResponse {
            identity: info(&rec),
            secret: None,
            caname: self.settings.name.clone(),
        })
    }

    /// `PUT identities/{id}`.
    pub fn modify_identity(
        &self,
        caller: &Caller,
        id: &str,
        req: &ModifyIdentityRequest,
    ) -> CaResult<IdentityResponse> {
        let _g = lock(&self.write);
        let mut rec = self.visible_identity(caller, id)?;
        if let Some(t) = req.id_type.as_deref().filter(|t| !t.is_empty()) {
            Self::can_act_on_type(&caller.identity, t)?;
            rec.id_type = t.to_string();
        }
        if let Some(a) = req.affiliation.as_deref().filter(|a| !a.is_empty()) {
            let a = if a == "." { "" } else { a };
            Self::can_act_on_affiliation(&caller.identity, a)?;
            if !self.registry.has_affiliation(a)? {
                return Err(CaError::bad(
                    codes::BAD_REQUEST_BODY,
                    format!("Affiliation '{a}' does not exist"),
                ));
            }
            rec.affiliation = a.to_string();
        }
        for a in &req.attrs {
            Self::can_register_attr(&caller.identity, a)?;
            if a.value.is_empty() {
                rec.attrs.retain(|x| x.name != a.name);
            } else {
                set_attr(&mut rec.attrs, &a.name, &a.value, a.ecert);
            }
        }
        if req.max_enrollments != 0 {
            rec.max_enrollments = self.resolve_max(req.max_enrollments)?;
        }
        let (id_type, aff) = (rec.id_type.clone(), rec.affiliation.clone());
        set_attr(&mut rec.attrs, ATTR_TYPE, &id_type, true);
        set_attr(&mut rec.attrs, ATTR_AFFILIATION, &aff, true);
        let secret = req.secret.clone().filter(|s| !s.is_empty());
        if let Some(s) = &secret {
            rec.set_secret(s);
            rec.enrollments = 0;
        }
        self.registry.put_identity(&rec)?;
        self.registry.flush()?;
        Ok(IdentityResponse {
            identity: info(&rec),
            secret,
            caname: self.settings.name.clone(),
        })
    }

    /// `DELETE identities/{id}`: removes it and revokes its certificates.
    pub fn delete_identity(&self, caller: &Caller, id: &str) -> CaResult<IdentityResponse> {
        let _g = lock(&self.write);
        if id == caller.identity.id {
            return Err(CaError::authz("an identity may not delete itself"));
        }
        let rec = self.visible_identity(caller, id)?;
        self.remove_identity_locked(&rec)?;
        self.registry.flush()?;
        Ok(IdentityResponse {
            identity: info(&rec),
            secret: None,
            caname: self.settings.name.clone(),
        })
    }

    fn remove_identity_locked(&self, rec: &IdentityRecord) -> CaResult<()> {
        let now = signer::unix(SystemTime::now());
        for mut c in self.registry.certs()? {
            if c.id == rec.id && c.revoked_at.is_none() {
                c.revoked_at = Some(now);
                c.reason = 9;
                self.registry.put_cert(&c)?;
            }
        }
        self.registry.remove_identity(&rec.id)
    }

    fn affiliation_tree(
        &self,
        name: &str,
        all: &[String],
        ids: &[IdentityRecord],
        with_ids: bool,
    ) -> AffiliationInfo {
        let children = all
            .iter()
            .filter(|a| match name {
                "" => !a.contains('.'),
                n => a
                    .strip_prefix(n)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|r| !r.contains('.')),
            })
            .map(|c| self.affiliation_tree(c, all, ids, with_ids))
            .collect();
        AffiliationInfo {
            name: name.to_string(),
            affiliations: children,
            identities: if with_ids {
                ids.iter()
                    .filter(|i| i.affiliation == name)
                    .map(info)
                    .collect()
            } else {
                Vec::new()
            },
            caname: None,
        }
    }

    /// `GET affiliations` (`name` = `None`) or `GET affiliations/{name}`.
    pub fn get_affiliations(
        &self,
        caller: &Caller,
        name: Option<&str>,
    ) -> CaResult<AffiliationInfo> {
        let root = name.unwrap_or(&caller.identity.affiliation);
        Self::can_act_on_affiliation(&caller.identity, root)?;
        if !self.registry.has_affiliation(root)? {
            return Err(CaError::NotFound {
                code: codes::AFFILIATION,
                message: format!("Failed to get affiliation '{root}': not found"),
            });
        }
        let all = self.registry.affiliations()?;
        let mut tree = self.affiliation_tree(root, &all, &[], false);
        tree.caname = Some(self.settings.name.clone());
        Ok(tree)
    }

    fn check_aff_mgr(caller: &Caller) -> CaResult<()> {
        if caller.identity.attr_true(ATTR_AFFILIATION_MGR) {
            Ok(())
        } else {
            Err(CaError::authz(format!(
                "'{}' lacks hf.AffiliationMgr",
                caller.identity.id
            )))
        }
    }

    /// `POST affiliations[?force=true]`.
    pub fn add_affiliation(
        &self,
        caller: &Caller,
        name: &str,
        force: bool,
    ) -> CaResult<AffiliationInfo> {
        let _g = lock(&self.write);
        Self::check_aff_mgr(caller)?;
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(CaError::bad(
                codes::AFFILIATION,
                format!("Invalid affiliation name '{name}'"),
            ));
        }
        Self::can_act_on_affiliation(&caller.identity, name)?;
        if self.registry.has_affiliation(name)? {
            return Err(CaError::Conflict {
                code: codes::AFFILIATION,
                message: format!("Affiliation '{name}' already exists"),
            });
        }
        let mut missing = Vec::new();
        let mut prefix = String::new();
        for seg in name.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(seg);
            if !self.registry.has_affiliation(&prefix)? {
                missing.push(prefix.clone());
            }
        }
        if missing.len() > 1 && !force {
            return Err(CaError::bad(
                codes::AFFILIATION,
                format!("Parent affiliation of '{name}' does not exist; use force to create it"),
            ));
        }
        for m in &missing {
            self.registry.add_affiliation(m)?;
        }
        self.registry.flush()?;
        Ok(AffiliationInfo {
            name: name.into(),
            affiliations: Vec::new(),
            identities: Vec::new(),
            caname: Some(self.settings.name.clone()),
        })
    }

    /// `PUT affiliations/{name}[?force=true]`: renames it and its subtree.
    pub fn rename_affiliation(
        &self,
        caller: &Caller,
        name: &str,
        new_name: &str,
        force: bool,
    ) -> CaResult<AffiliationInfo> {
        let _g = lock(&self.write);
        Self::check_aff_mgr(caller)?;
        Self::can_act_on_affiliation(&caller.identity, name)?;
        Self::can_act_on_affiliation(&caller.identity, new_name)?;
        if name.is_empty() || !self.registry.has_affiliation(name)? {
            return Err(CaError::NotFound {
                code: codes::AFFILIATION,
                message: format!("Affiliation '{name}' does not exist"),
            });
        }
        if new_name.is_empty()
            || new_name.split('.').any(str::is_empty)
            || self.registry.has_affiliation(new_name)?
        {
            return Err(CaError::bad(
                codes::AFFILIATION,
                format!("Cannot rename '{name}' to '{new_name}'"),
            ));
        }
        let moved = |a: &str| -> Option<String> {
            if a == name {
                Some(new_name.to_string())
            } else {
                a.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('.'))
                    .map(|r| format!("{new_name}.{r}"))
            }
        };
        let ids: Vec<IdentityRecord> = self
            .registry
            .identities()?
            .into_iter()
            .filter(|i| moved(&i.affiliation).is_some())
            .collect();
        if !ids.is_empty() && !force {
            return Err(CaError::authz(format!(
                "renaming '{name}' affects {} identities; force required",
                ids.len()
            )));
        }
        for a in self.registry.affiliations()? {
            if let Some(n) = moved(&a) {
                self.registry.remove_affiliation(&a)?;
                self.registry.add_affiliation(&n)?;
            }
        }
        let mut changed = Vec::new();
        for mut i in ids {
            if let Some(n) = moved(&i.affiliation) {
                i.affiliation = n.clone();
                set_attr(&mut i.attrs, ATTR_AFFILIATION, &n, true);
                self.registry.put_identity(&i)?;
                changed.push(info(&i));
            }
        }
        self.registry.flush()?;
        Ok(AffiliationInfo {
            name: new_name.into(),
            affiliations: Vec::new(),
            identities: changed,
            caname: Some(self.settings.name.clone()),
        })
    }

    /// `DELETE affiliations/{name}[?force=true]`: with force also removes the
    /// subtree and its identities.
    pub fn delete_affiliation(
        &self,
        caller: &Caller,
        name: &str,
        force: bool,
    ) -> CaResult<AffiliationInfo> {
        let _g = lock(&self.write);
        Self::check_aff_mgr(caller)?;
        Self::can_act_on_affiliation(&caller.identity, name)?;
        if name.is_empty() || !self.registry.has_affiliation(name)? {
            return Err(CaError::NotFound {
                code: codes::AFFILIATION,
                message: format!("Affiliation '{name}' does not exist"),
            });
        }
        if within(name, &caller.identity.affiliation) {
            return Err(CaError::authz(
                "may not delete the caller's own affiliation",
            ));
        }
        let all = self.registry.affiliations()?;
        let subtree: Vec<&String> = all.iter().filter(|a| within(name, a)).collect();
        let ids: Vec<IdentityRecord> = self
            .registry
            .identities()?
            .into_iter()
            .filter(|i| within(name, &i.affiliation))
            .collect();
        if (subtree.len() > 1 || !ids.is_empty()) && !force {
            return Err(CaError::authz(format!(
                "'{name}' has sub-affiliations or identities; force required"
            )));
        }
        let tree = self.affiliation_tree(name, &all, &ids, true);
        for i in &ids {
            self.remove_identity_locked(i)?;
        }
        for a in subtree {
            self.registry.remove_affiliation(a)?;
        }
        self.registry.flush()?;
        Ok(AffiliationInfo {
            caname: Some(self.settings.name.clone()),
            ..tree
        })
    }

    /// `GET certificates` with Fabric's query filters.
    pub fn certificates(
        &self,
        caller: &Caller,
        query: &BTreeMap<String, String>,
    ) -> CaResult<CertificatesResponse> {
        let q = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let time_q = |k: &str| -> CaResult<Option<i64>> {
            q(k).map(|v| {
                parse_rfc3339(v).ok_or_else(|| {
                    CaError::bad(codes::INVALID_TIME, format!("Invalid '{k}' value: {v}"))
                })
            })
            .transpose()
        };
        let (rs, re, es, ee) = (
            time_q("revoked_start")?,
            time_q("revoked_end")?,
            time_q("expired_start")?,
            time_q("expired_end")?,
        );
        let serial = q("serial").map(|s| signer::normalize_hex(s, true));
        let aki = q("aki").map(|s| signer::normalize_hex(s, false));
        let notrevoked = q("notrevoked") == Some("true");
        let notexpired = q("notexpired") == Some("true");
        let now = i64::try_from(signer::unix(SystemTime::now())).unwrap_or(i64::MAX);
        let ids: BTreeMap<String, IdentityRecord> = self
            .registry
            .identities()?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        let certs = self
            .registry
            .certs()?
            .into_iter()
            .filter(|c| {
                let na = i64::try_from(c.not_after).unwrap_or(i64::MAX);
                let ra = c.revoked_at.and_then(|r| i64::try_from(r).ok());
                let owner_ok = c.id == caller.identity.id
                    || ids
                        .get(&c.id)
                        .is_some_and(|o| within(&caller.identity.affiliation, &o.affiliation));
                owner_ok
                    && q("id").is_none_or(|id| id == c.id)
                    && serial.as_deref().is_none_or(|s| s == c.serial)
                    && aki.as_deref().is_none_or(|a| a == c.aki)
                    && (!notrevoked || ra.is_none())
                    && (!notexpired || na > now)
                    && rs.is_none_or(|t| ra.is_some_and(|r| r >= t))
                    && re.is_none_or(|t| ra.is_some_and(|r| r <= t))
                    && es.is_none_or(|t| na >= t)
                    && ee.is_none_or(|t| na <= t)
            })
            .map(|c| CertificateEntry { pem: c.pem })
            .collect();
        Ok(CertificatesResponse {
            certs,
            caname: self.settings.name.clone(),
        })
    }
}

struct IssuedCert {
    serial: String,
    pem: String,
}

impl IssuedCert {
    fn response(self, ca: &Ca) -> EnrollResponse {
        let _ = self.serial;
        EnrollResponse {
            cert: B64.encode(self.pem.as_bytes()),
            server_info: ca.cainfo(),
        }
    }
}
