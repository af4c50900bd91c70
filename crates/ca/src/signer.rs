//! The CA's key and certificate, issuing certificates from CSRs, and CRLs.
//!
//! The root is made with `rcgen` on first start. Issued certificates are
//! encoded here directly (DER via `yasna`) because Fabric's subjects carry
//! several `OU`s (type and affiliation segments), which rcgen's
//! distinguished names cannot express.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber, SigningKey as _,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, X509Certificate, X509CertificationRequest};

use crate::error::{CaError, CaResult};

/// File name of the CA certificate under the home directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// File name of the CA private key (PKCS#8 PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of an intermediate CA's chain: its certificate, then the
/// parent's chain (root last), as served in `CAChain`.
pub const CA_CHAIN_FILE: &str = "ca-chain.pem";
/// Validity of CA certificates issued with profile `ca` (Fabric CA's
/// default, 43800h), capped at the issuer's own expiry.
pub const CA_PROFILE_VALIDITY: Duration = Duration::from_secs(43_800 * 3600);
/// File name of the TLS server certificate the CA issues itself (`--tls`).
pub const TLS_CERT_FILE: &str = "tls-cert.pem";
/// File name of its key (PKCS#8 PEM, mode 0600).
pub const TLS_KEY_FILE: &str = "tls-key.pem";

const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
const OID_CN: &[u64] = &[2, 5, 4, 3];
const OID_C: &[u64] = &[2, 5, 4, 6];
const OID_L: &[u64] = &[2, 5, 4, 7];
const OID_ST: &[u64] = &[2, 5, 4, 8];
const OID_O: &[u64] = &[2, 5, 4, 10];
const OID_OU: &[u64] = &[2, 5, 4, 11];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_SKI: &[u64] = &[2, 5, 29, 14];
const OID_AKI: &[u64] = &[2, 5, 29, 35];
const OID_SAN: &str = "2.5.29.17";
const OID_EKU: &[u64] = &[2, 5, 29, 37];
const OID_SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
const OID_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

/// Subject fields for the root certificate (`csr` section of the config).
#[derive(Debug, Clone, Default)]
pub struct RootSubject {
    /// Common name.
    pub cn: String,
    /// Country.
    pub c: Option<String>,
    /// State or province.
    pub st: Option<String>,
    /// Locality.
    pub l: Option<String>,
    /// Organization.
    pub o: Option<String>,
    /// Organizational unit.
    pub ou: Option<String>,
}

/// A parsed, signature-checked certificate signing request.
#[derive(Debug, Clone)]
pub struct ParsedCsr {
    /// Subject common name.
    pub cn: String,
    /// Subject fields kept in issued certificates (C, ST, L, O), in order.
    pub names: Vec<(&'static [u64], String)>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// The requested subjectAltName extension value, DER, if any.
    pub san_der: Option<Vec<u8>>,
    /// Whether the CSR asks for a CA certificate (basic constraints CA).
    pub is_ca: bool,
}

/// Parses a PEM CSR and checks its self-signature.
pub fn parse_csr(pem_text: &str) -> CaResult<ParsedCsr> {
    let bad = |m: String| CaError::BadCsr {
        status: 400,
        message: m,
    };
    let block = pem::parse(pem_text.trim())
        .map_err(|e| bad(format!("Failed to decode certificate request PEM: {e}")))?;
    if block.tag() != "CERTIFICATE REQUEST" && block.tag() != "NEW CERTIFICATE REQUEST" {
        return Err(bad(format!(
            "Expected a PEM CERTIFICATE REQUEST, got {}",
            block.tag()
        )));
    }
    let (_, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| bad(format!("Failed to parse certificate request: {e}")))?;
    csr.verify_signature()
        .map_err(|_| bad("Certificate request signature is not valid".into()))?;
    let info = &csr.certification_request_info;
    let mut cn = String::new();
    let mut names = Vec::new();
    for rdn in info.subject.iter_rdn() {
        for atv in rdn.iter() {
            let Ok(value) = atv.as_str() else { continue };
            let oid: Vec<u64> = match atv.attr_type().iter() {
                Some(it) => it.collect(),
                None => continue,
            };
            let known: Option<&'static [u64]> = [OID_C, OID_ST, OID_L, OID_O]
                .into_iter()
                .find(|o| *o == oid.as_slice());
            if oid.as_slice() == OID_CN {
                cn = value.to_string();
            } else if let Some(o) = known {
                names.push((o, value.to_string()));
            }
        }
    }
    // Keep Fabric's subject order: C, ST, L, O.
    names.sort_by_key(|(o, _)| [OID_C, OID_ST, OID_L, OID_O].iter().position(|x| x == o));
    let mut san_der = None;
    let mut is_ca = false;
    for attr in info.iter_attributes() {
        if let x509_parser::cri_attributes::ParsedCriAttribute::ExtensionRequest(req) =
            attr.parsed_attribute()
        {
            for ext in &req.extensions {
                if ext.oid.to_id_string() == OID_SAN {
                    san_der = Some(ext.value.to_vec());
                }
                if let x509_parser::extensions::ParsedExtension::BasicConstraints(bc) =
                    ext.parsed_extension()
                {
                    is_ca |= bc.ca;
                }
            }
        }
    }
    Ok(ParsedCsr {
        cn,
        names,
        spki_der: info.subject_pki.raw.to_vec(),
        san_der,
        is_ca,
    })
}

/// The signing profile of intermediate CA certificates.
pub const PROFILE_CA: &str = "ca";

/// What goes into an issued certificate besides the CSR's key.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The checked CSR.
    pub csr: &'a ParsedCsr,
    /// Identity type: the first OU.
    pub id_type: &'a str,
    /// Dotted affiliation: one OU per segment after the type.
    pub affiliation: &'a str,
    /// Raw JSON for the attribute extension, if any attribute is included.
    pub attrs_json: Option<Vec<u8>>,
    /// Validity.
    pub validity: Duration,
    /// Signing profile (`tls` adds server/client auth usages; `ca` makes
    /// a CA certificate: CA:true, pathlen 0, keyCertSign and cRLSign).
    pub profile: &'a str,
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Serial, lowercase hex without leading zeros.
    pub serial: String,
    /// AKI (the CA's SKI), lowercase hex.
    pub aki: String,
    /// The certificate, PEM.
    pub pem: String,
    /// Not-after, Unix seconds.
    pub not_after: u64,
}

/// One revoked certificate for a CRL.
#[derive(Debug, Clone)]
pub struct CrlEntry {
    /// Serial, hex.
    pub serial: String,
    /// Revocation time, Unix seconds.
    pub revoked_at: u64,
    /// RFC 5280 reason code, 0 = unspecified.
    pub reason: u8,
}

/// The CA's signing material.
pub struct CaSigner {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    chain_pem: String,
    subject_der: Vec<u8>,
    ski: Vec<u8>,
    not_after: u64,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner")
            .field("ski", &hex::encode(&self.ski))
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(e: impl std::fmt::Display) -> CaError {
    CaError::Cert(e.to_string())
}

/// Unix seconds of `t` (0 before the epoch).
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn odt(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Writes `data` to `path` with mode 0600 (owner read/write only),
/// replacing the file if it exists.
pub fn write_private_replace(path: &Path, data: &[u8]) -> CaResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    write_private(path, data)
}

/// Writes `data` to `path` with mode 0600 (owner read/write only).
fn write_private(path: &Path, data: &[u8]) -> CaResult<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

impl CaSigner {
    /// Loads `ca-cert.pem` and `ca-key.pem` from `home`, or creates a new
    /// P-256 key and self-signed root (valid `validity`) when neither exists.
    pub fn load_or_create(
        home: &Path,
        subject: &RootSubject,
        validity: Duration,
    ) -> CaResult<Self> {
        let cert_path = home.join(CA_CERT_FILE);
        let key_path = home.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load_with_chain(&cert_path, &key_path, &home.join(CA_CHAIN_FILE)),
            (false, false) => {
                std::fs::create_dir_all(home).map_err(io_err(home))?;
                let key =
                    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
                let mut params = CertificateParams::default();
                params.distinguished_name = distinguished_name(subject);
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                ];
                let now = SystemTime::now();
                params.not_before = odt(unix(now).saturating_sub(300));
                params.not_after = odt(unix(now + validity));
                params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
                let cert = params.self_signed(&key).map_err(cert_err)?;
                write_private(&key_path, key.serialize_pem().as_bytes())?;
                std::fs::write(&cert_path, cert.pem()).map_err(io_err(&cert_path))?;
                tracing::info!(target: "ca::signer", path = %cert_path.display(), "created CA key and self-signed certificate");
                Self::load(&cert_path, &key_path)
            }
            (true, false) => Err(missing(&key_path)),
            (false, true) => Err(missing(&cert_path)),
        }
    }

    /// Loads an existing CA certificate and key (`--ca-cert`/`--ca-key`,
    /// `ca.certfile`/`ca.keyfile`), e.g. the org CA made by cryptogen.
    ///
    /// The certificate must be a CA certificate (basic constraints `CA`)
    /// with a P-256 key; the key may be PKCS#8 (`PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`) PEM and must match the certificate. When the
    /// file holds several certificates (a chain), the first is the
    /// issuer and the whole file is the chain served in `CAChain`.
    pub fn load_existing(cert_path: &Path, key_path: &Path) -> CaResult<Self> {
        let signer = Self::load(cert_path, key_path)?;
        tracing::info!(
            target: "ca::signer",
            cert = %cert_path.display(),
            key = %key_path.display(),
            ski = %signer.aki_hex(),
            "using existing CA certificate and key"
        );
        Ok(signer)
    }

    /// Loads the CA certificate and key from `home`, or, when neither
    /// exists, makes a P-256 key and a CSR for `subject` and has `parent`
    /// issue the CA certificate (intermediate-CA mode). Stores
    /// `ca-key.pem`, `ca-cert.pem` (this CA's certificate) and
    /// `ca-chain.pem` (this certificate followed by the parent's chain).
    pub fn load_or_enroll(
        home: &Path,
        subject: &RootSubject,
        parent: &crate::parent::ParentServer,
    ) -> CaResult<Self> {
        let cert_path = home.join(CA_CERT_FILE);
        let key_path = home.join(CA_KEY_FILE);
        let chain_path = home.join(CA_CHAIN_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => return Self::load_with_chain(&cert_path, &key_path, &chain_path),
            (true, false) => return Err(missing(&key_path)),
            (false, true) => return Err(missing(&cert_path)),
            (false, false) => {}
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(subject);
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(cert_err)?;
        tracing::info!(target: "ca::signer", parent = %parent.display_url(), id = %parent.id, "enrolling with the parent CA (profile ca)");
        let got = parent.enroll(&csr_pem)?;
        let blocks = pem::parse_many(got.cert_pem.as_bytes()).map_err(|e| {
            CaError::Config(format!("--parent: the issued certificate is not PEM: {e}"))
        })?;
        let own = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| {
                CaError::Config("--parent: the parent returned no certificate".into())
            })?;
        let own_pem = pem_lf(own.contents());
        let (_, cert) = X509Certificate::from_der(own.contents())
            .map_err(|e| CaError::Config(format!("--parent: the issued certificate: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::Config(
                "--parent: the issued certificate is not for this CA's key".into(),
            ));
        }
        if !cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca)
        {
            return Err(CaError::Config(
                "--parent: the parent issued a certificate that is not a CA certificate".into(),
            ));
        }
        let mut chain = own_pem.clone();
        for b in pem::parse_many(got.chain_pem.as_bytes())
            .map_err(|e| {
                CaError::Config(format!("--parent: the parent's CAChain is not PEM: {e}"))
            })?
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
        {
            chain.push_str(&pem_lf(b.contents()));
        }
        std::fs::create_dir_all(home).map_err(io_err(home))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&chain_path, &chain).map_err(io_err(&chain_path))?;
        std::fs::write(&cert_path, &own_pem).map_err(io_err(&cert_path))?;
        tracing::info!(target: "ca::signer", path = %cert_path.display(), parent = %parent.display_url(), "stored the intermediate CA certificate issued by the parent");
        Self::load_with_chain(&cert_path, &key_path, &chain_path)
    }

    /// [`Self::load`], serving `chain_path` as `CAChain` when it exists.
    fn load_with_chain(cert_path: &Path, key_path: &Path, chain_path: &Path) -> CaResult<Self> {
        let mut signer = Self::load(cert_path, key_path)?;
        if chain_path.exists() {
            let chain = std::fs::read_to_string(chain_path).map_err(io_err(chain_path))?;
            let first = pem::parse(&chain)
                .map_err(|e| CaError::Config(format!("{}: {e}", chain_path.display())))?;
            let own = pem::parse(&signer.cert_pem)
                .map_err(|e| CaError::Config(format!("{}: {e}", cert_path.display())))?;
            if first.contents() != own.contents() {
                return Err(CaError::Config(format!(
                    "{} does not start with the certificate {}",
                    chain_path.display(),
                    cert_path.display()
                )));
            }
            signer.chain_pem = chain;
        }
        Ok(signer)
    }

    fn load(cert_path: &Path, key_path: &Path) -> CaResult<Self> {
        let cert_pem = std::fs::read_to_string(cert_path).map_err(io_err(cert_path))?;
        let key_pem = std::fs::read_to_string(key_path).map_err(io_err(key_path))?;
        let key = parse_key_pem(&key_pem)
            .map_err(|e| CaError::Config(format!("{}: {e}", key_path.display())))?;
        let block = pem::parse(&cert_pem)
            .map_err(|e| CaError::Config(format!("{}: {e}", cert_path.display())))?;
        if block.tag() != "CERTIFICATE" {
            return Err(CaError::Config(format!(
                "{}: expected a PEM CERTIFICATE, found {}",
                cert_path.display(),
                block.tag()
            )));
        }
        let der = block.contents().to_vec();
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| CaError::Config(format!("{}: {e}", cert_path.display())))?;
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CaError::Config(format!(
                "{}: not a CA certificate (basic constraints CA is not set)",
                cert_path.display()
            )));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::Config(format!(
                "{} does not match the certificate {}",
                key_path.display(),
                cert_path.display()
            )));
        }
        let subject_der = cert.subject().as_raw().to_vec();
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
            .unwrap_or_else(|| {
                // No SKI extension: use the method of issued certificates.
                let d = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
                d.as_ref()[..20].to_vec()
            });
        let not_after = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key).map_err(cert_err)?;
        Ok(Self {
            issuer,
            chain_pem: cert_pem.clone(),
            cert_pem,
            subject_der,
            ski,
            not_after,
        })
    }

    /// The CA certificate file, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The chain served as `CAChain`, PEM: this CA's certificate first,
    /// then (for an intermediate) its parent's chain, root last.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA's subject key identifier (AKI of what it issues), hex.
    pub fn aki_hex(&self) -> String {
        hex::encode(&self.ski)
    }

    /// Not-after of the CA certificate, Unix seconds.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// Issues a certificate for `req`; validity is capped at the CA's.
    pub fn issue(&self, req: &IssueRequest<'_>) -> CaResult<Issued> {
        let serial = random_serial();
        let now = unix(SystemTime::now());
        let not_before = now.saturating_sub(300);
        let not_after = (now + req.validity.as_secs()).min(self.not_after);
        let spki_bits = spki_key_bits(&req.csr.spki_der)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki_bits);
        let ski = &digest.as_ref()[..20];
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged(yasna::Tag::context(0), |w| w.write_u8(2));
                w.next().write_bigint_bytes(&serial, true);
                w.next()
                    .write_sequence(|w| w.next().write_oid(&oid(OID_ECDSA_SHA256)));
                w.next().write_der(&self.subject_der);
                w.next().write_sequence(|w| {
                    write_time(w.next(), not_before);
                    write_time(w.next(), not_after);
                });
                w.next().write_sequence(|w| {
                    for (o, v) in &req.csr.names {
                        write_rdn(w.next(), o, v);
                    }
                    if !req.id_type.is_empty() {
                        write_rdn(w.next(), OID_OU, req.id_type);
                    }
                    for seg in req.affiliation.split('.').filter(|s| !s.is_empty()) {
                        write_rdn(w.next(), OID_OU, seg);
                    }
                    write_rdn(w.next(), OID_CN, &req.csr.cn);
                });
                w.next().write_der(&req.csr.spki_der);
                w.next().write_tagged(yasna::Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        // digitalSignature; tls adds keyEncipherment and
                        // keyAgreement; ca is keyCertSign and cRLSign.
                        let (ku, ku_len) = match req.profile {
                            "tls" => (0xA8u8, 5),
                            PROFILE_CA => (0x06u8, 7),
                            _ => (0x80u8, 1),
                        };
                        write_ext(
                            w.next(),
                            OID_KEY_USAGE,
                            true,
                            &yasna::construct_der(|w| w.write_bitvec_bytes(&[ku], ku_len)),
                        );
                        if req.profile == "tls" {
                            write_ext(
                                w.next(),
                                OID_EKU,
                                false,
                                &yasna::construct_der(|w| {
                                    w.write_sequence(|w| {
                                        w.next().write_oid(&oid(OID_SERVER_AUTH));
                                        w.next().write_oid(&oid(OID_CLIENT_AUTH));
                                    })
                                }),
                            );
                        }
                        write_ext(
                            w.next(),
                            OID_BASIC_CONSTRAINTS,
                            true,
                            &yasna::construct_der(|w| {
                                w.write_sequence(|w| {
                                    if req.profile == PROFILE_CA {
                                        // CA:TRUE, pathlen 0.
                                        w.next().write_bool(true);
                                        w.next().write_u8(0);
                                    }
                                })
                            }),
                        );
                        write_ext(
                            w.next(),
                            OID_SKI,
                            false,
                            &yasna::construct_der(|w| w.write_bytes(ski)),
                        );
                        write_ext(
                            w.next(),
                            OID_AKI,
                            false,
                            &yasna::construct_der(|w| {
                                w.write_sequence(|w| {
                                    w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                                        w.write_bytes(&self.ski)
                                    })
                                })
                            }),
                        );
                        if let Some(san) = &req.csr.san_der {
                            let san_oid: Vec<u64> = vec![2, 5, 29, 17];
                            write_ext(w.next(), &san_oid, false, san);
                        }
                        if let Some(json) = &req.attrs_json {
                            write_ext(w.next(), crate::api::ATTRS_OID, false, json);
                        }
                    })
                });
            })
        });
        let sig = self.issuer.key().sign(&tbs).map_err(cert_err)?;
        let der = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                w.next()
                    .write_sequence(|w| w.next().write_oid(&oid(OID_ECDSA_SHA256)));
                w.next().write_bitvec_bytes(&sig, sig.len() * 8);
            })
        });
        let pem = pem::encode_config(
            &pem::Pem::new("CERTIFICATE", der),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        Ok(Issued {
            serial: serial_hex(&serial),
            aki: self.aki_hex(),
            pem,
            not_after,
        })
    }

    /// Issues this CA a TLS server certificate for `hosts` (DNS names or
    /// IP addresses; the first is the CN) with a new P-256 key, through
    /// the same path as enrolled certificates (`tls` profile). Returns the
    /// certificate and the PKCS#8 key, PEM.
    pub fn issue_server_tls(
        &self,
        hosts: &[String],
        validity: Duration,
    ) -> CaResult<(Issued, String)> {
        let first = hosts
            .first()
            .ok_or_else(|| CaError::Config("TLS: no host for the server certificate".into()))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(|e| CaError::Config(format!("TLS host name: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(cert_err)?;
        let csr = parse_csr(&csr_pem)?;
        let issued = self.issue(&IssueRequest {
            csr: &csr,
            id_type: "",
            affiliation: "",
            attrs_json: None,
            validity,
            profile: "tls",
        })?;
        Ok((issued, key.serialize_pem()))
    }

    /// A CRL listing `entries`, valid for `next_update` from now.
    pub fn crl(
        &self,
        entries: &[CrlEntry],
        crl_number: u64,
        next_update: Duration,
    ) -> CaResult<String> {
        let now = SystemTime::now();
        let revoked_certs = entries
            .iter()
            .map(|e| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(&e.serial)?),
                    revocation_time: odt(e.revoked_at),
                    reason_code: reason_from_code(e.reason),
                    invalidity_date: None,
                })
            })
            .collect::<CaResult<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update: odt(unix(now)),
            next_update: odt(unix(now + next_update)),
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::PreSpecified(self.ski.clone()),
        };
        let crl = params.signed_by(&self.issuer).map_err(cert_err)?;
        crl.pem().map_err(cert_err)
    }
}

fn distinguished_name(subject: &RootSubject) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    for (ty, v) in [
        (DnType::CountryName, &subject.c),
        (DnType::StateOrProvinceName, &subject.st),
        (DnType::LocalityName, &subject.l),
        (DnType::OrganizationName, &subject.o),
        (DnType::OrganizationalUnitName, &subject.ou),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            dn.push(ty, v);
        }
    }
    dn.push(DnType::CommonName, subject.cn.as_str());
    dn
}

fn pem_lf(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Parses a P-256 private key from PKCS#8 (`PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`) PEM.
fn parse_key_pem(text: &str) -> Result<KeyPair, String> {
    let block = pem::parse(text).map_err(|e| format!("not a PEM private key: {e}"))?;
    let pkcs8 = match block.tag() {
        "PRIVATE KEY" => block.contents().to_vec(),
        "EC PRIVATE KEY" => {
            use p256::pkcs8::EncodePrivateKey as _;
            let sk = p256::SecretKey::from_sec1_der(block.contents())
                .map_err(|e| format!("not a P-256 SEC1 key: {e}"))?;
            sk.to_pkcs8_der()
                .map_err(|e| format!("cannot convert the SEC1 key: {e}"))?
                .as_bytes()
                .to_vec()
        }
        other => {
            return Err(format!(
                "expected PRIVATE KEY or EC PRIVATE KEY, found {other}"
            ))
        }
    };
    let key = KeyPair::try_from(pkcs8.as_slice()).map_err(|e| format!("invalid key: {e}"))?;
    if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
        return Err("only ECDSA P-256 CA keys are supported".into());
    }
    Ok(key)
}

fn missing(path: &Path) -> CaError {
    CaError::Config(format!(
        "{} is missing (the CA key and certificate must both exist or both be absent)",
        path.display()
    ))
}

fn reason_from_code(code: u8) -> Option<RevocationReason> {
    Some(match code {
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

fn oid(parts: &[u64]) -> yasna::models::ObjectIdentifier {
    yasna::models::ObjectIdentifier::from_slice(parts)
}

fn write_time(w: yasna::DERWriter<'_>, secs: u64) {
    let t = odt(secs);
    if t.year() < 2050 {
        w.write_utctime(&yasna::models::UTCTime::from_datetime(t));
    } else {
        w.write_generalized_time(&yasna::models::GeneralizedTime::from_datetime(t));
    }
}

fn write_rdn(w: yasna::DERWriter<'_>, o: &[u64], value: &str) {
    w.write_set(|w| {
        w.next().write_sequence(|w| {
            w.next().write_oid(&oid(o));
            if o == OID_C && value.is_ascii() {
                w.next().write_printable_string(value);
            } else {
                w.next().write_utf8_string(value);
            }
        })
    });
}

fn write_ext(w: yasna::DERWriter<'_>, o: &[u64], critical: bool, value: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&oid(o));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(value);
    });
}

/// The public key bits of a SubjectPublicKeyInfo (what key identifiers hash).
fn spki_key_bits(spki_der: &[u8]) -> CaResult<Vec<u8>> {
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
        CaError::BadCsr {
            status: 400,
            message: format!("Invalid public key in certificate request: {e}"),
        }
    })?;
    Ok(spki.subject_public_key.data.to_vec())
}

/// 20 random bytes, positive, non-zero first byte.
fn random_serial() -> Vec<u8> {
    let mut s = [0u8; 20];
    rand::Rng::fill(&mut rand::thread_rng(), &mut s[..]);
    s[0] = (s[0] & 0x7f) | 0x01;
    s.to_vec()
}

/// Lowercase hex of a serial without leading zeros (Fabric CA's form).
pub fn serial_hex(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// Normalises a serial or AKI given by a client: lowercase, no `:`,
/// no leading zeros for serials.
pub fn normalize_hex(s: &str, strip_zeros: bool) -> String {
    let h: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if strip_zeros {
        let t = h.trim_start_matches('0');
        if t.is_empty() {
            "0".into()
        } else {
            t.to_string()
        }
    } else {
        h
    }
}

fn serial_bytes(hex_serial: &str) -> CaResult<Vec<u8>> {
    let mut h = hex_serial.to_string();
    if h.len() % 2 == 1 {
        h.insert(0, '0');
    }
    hex::decode(&h).map_err(|e| CaError::Corrupt {
        key: hex_serial.into(),
        reason: e.to_string(),
    })
}

/// Where the CA key lives (for docs and tests).
pub fn key_path(home: &Path) -> PathBuf {
    home.join(CA_KEY_FILE)
}
