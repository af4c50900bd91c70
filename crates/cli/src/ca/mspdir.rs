//! The local side of `twill ca`: keys and CSRs, and Fabric's `msp/` folder
//! as the CA client writes it.
//!
//! Layout written by enroll and reenroll (Fabric CA client's):
//!
//! | entry | holds |
//! | --- | --- |
//! | `signcerts/cert.pem` | the enrollment certificate |
//! | `keystore/<hex SKI>_sk` | its private key, PKCS#8 PEM, mode 0600 |
//! | `cacerts/<host>-<port>[-<caname>].pem` | the CA chain's root(s) |
//! | `intermediatecerts/<same name>.pem` | the chain's intermediates, if any |
//! | `tlscacerts/`, `tlsintermediatecerts/` | instead of the two above, with profile `tls` |
//! | `config.yaml` | NodeOUs on (client, peer, admin, orderer), unless one exists already |
//! | `crls/crl.pem` | written by `revoke --gencrl` and `gencrl` |

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{CertificateParams, DistinguishedName, DnType, PublicKeyData, SignatureAlgorithm};
use twill_crypto::{SigningKey, VerifyingKey};
use twill_msp::{Identity, SigningIdentity};
use x509_parser::prelude::{FromDer, X509Certificate};

/// First line of the `config.yaml` twill writes; a file starting with it
/// may be rewritten, any other is the user's and is left alone.
const CONFIG_HEADER: &str = "# Written by `twill ca`";

/// Subject fields of a CSR besides the CN (`--csr.names`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CsrNames {
    /// `(type, value)` with type one of C, ST, L, O, OU.
    pub fields: Vec<(String, String)>,
}

impl CsrNames {
    /// Parses `C=US,ST=North Carolina,O=Hyperledger,OU=Fabric` (Fabric's
    /// `--csr.names` form).
    pub(crate) fn parse(spec: &str) -> anyhow::Result<CsrNames> {
        let mut fields = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| anyhow!("--csr.names: '{part}' is not KEY=VALUE"))?;
            let key = key.trim().to_ascii_uppercase();
            if !matches!(key.as_str(), "C" | "ST" | "L" | "O" | "OU") {
                bail!("--csr.names: unknown field '{key}' (use C, ST, L, O or OU)");
            }
            fields.push((key, value.trim().to_string()));
        }
        Ok(CsrNames { fields })
    }
}

/// A twill-crypto key seen by rcgen, so the CSR is signed low-S like
/// every other Twill signature.
struct CsrKey<'a> {
    key: &'a SigningKey,
    public: VerifyingKey,
}

impl PublicKeyData for CsrKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.to_sec1_uncompressed()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for CsrKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A PEM `CERTIFICATE REQUEST` for `key`: subject `names` then `CN=cn`,
/// `hosts` as subject alternative names (IP addresses or DNS names).
pub(crate) fn csr_pem(
    key: &SigningKey,
    cn: &str,
    names: &CsrNames,
    hosts: &[String],
) -> anyhow::Result<String> {
    let mut params = CertificateParams::new(hosts.to_vec())
        .map_err(|e| anyhow!("--csr.hosts {}: {e}", hosts.join(",")))?;
    let mut dn = DistinguishedName::new();
    for (key, value) in &names.fields {
        let ty = match key.as_str() {
            "C" => DnType::CountryName,
            "ST" => DnType::StateOrProvinceName,
            "L" => DnType::LocalityName,
            "O" => DnType::OrganizationName,
            _ => DnType::OrganizationalUnitName,
        };
        dn.push(ty, value.as_str());
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let signer = CsrKey {
        key,
        public: key.verifying_key(),
    };
    params
        .serialize_request(&signer)
        .and_then(|csr| csr.pem())
        .map_err(|e| anyhow!("building the certificate request: {e}"))
}

/// The subject key identifier Fabric's key store names keys by: SHA-256 of
/// the uncompressed public point, lowercase hex.
pub(crate) fn ski_hex(key: &VerifyingKey) -> String {
    hex::encode(twill_crypto::sha256(key.to_sec1_uncompressed()))
}

/// Fabric CA client's name for CA certificate files: the CA's `host:port`
/// with `.` and `:` turned into `-`, plus `-<caname>` when one was given.
pub(crate) fn ca_file_name(host: &str, port: u16, caname: Option<&str>) -> String {
    let host: String = host
        .chars()
        .map(|c| if matches!(c, '.' | ':') { '-' } else { c })
        .collect();
    match caname.filter(|c| !c.is_empty()) {
        Some(ca) => format!("{host}-{port}-{ca}.pem"),
        None => format!("{host}-{port}.pem"),
    }
}

/// A CA chain split into self-signed roots and intermediates, each PEM.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CaChain {
    /// Self-signed certificates.
    pub roots: Vec<String>,
    /// Every other certificate, in chain order.
    pub intermediates: Vec<String>,
}

impl CaChain {
    /// Splits `b64_chain` (base64 of a PEM bundle, as the CA sends it).
    pub(crate) fn from_base64(b64_chain: &str, what: &str) -> anyhow::Result<CaChain> {
        let pem = decode_b64_text(b64_chain, what)?;
        let blocks = twill_crypto::pem::parse_pem_blocks(&pem)
            .map_err(|e| anyhow!("{what} is not PEM: {e}"))?;
        let mut chain = CaChain::default();
        for (label, der) in blocks {
            if label != "CERTIFICATE" {
                continue;
            }
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|e| anyhow!("{what} holds a bad certificate: {e}"))?;
            let pem = twill_crypto::pem::encode_pem("CERTIFICATE", &der);
            if cert.subject().as_raw() == cert.issuer().as_raw() {
                chain.roots.push(pem);
            } else {
                chain.intermediates.push(pem);
            }
        }
        if chain.roots.is_empty() && chain.intermediates.is_empty() {
            bail!("{what} holds no certificate");
        }
        Ok(chain)
    }
}

/// Decodes base64 to UTF-8 text; errors name `what`.
pub(crate) fn decode_b64_text(b64: &str, what: &str) -> anyhow::Result<String> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| anyhow!("{what} is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| anyhow!("{what} is not text"))
}

/// Where the CA's certificates go in the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainKind {
    /// `cacerts/` and `intermediatecerts/` (enrollment certificates).
    Msp,
    /// `tlscacerts/` and `tlsintermediatecerts/` (profile `tls`).
    Tls,
}

impl ChainKind {
    /// For an enrollment with signing profile `profile`.
    pub(crate) fn for_profile(profile: Option<&str>) -> ChainKind {
        if profile == Some("tls") {
            ChainKind::Tls
        } else {
            ChainKind::Msp
        }
    }

    fn dirs(self) -> (&'static str, &'static str) {
        match self {
            ChainKind::Msp => ("cacerts", "intermediatecerts"),
            ChainKind::Tls => ("tlscacerts", "tlsintermediatecerts"),
        }
    }
}

/// Files written by [`MspDir::store_chain`].
#[derive(Debug, Default, Clone)]
pub(crate) struct StoredChain {
    /// The roots file.
    pub root: Option<PathBuf>,
    /// The intermediates file.
    pub intermediate: Option<PathBuf>,
}

/// An `msp/` folder being written.
#[derive(Debug, Clone)]
pub(crate) struct MspDir {
    dir: PathBuf,
}

impl MspDir {
    /// The folder at `dir` (created on first write).
    pub(crate) fn new(dir: impl Into<PathBuf>) -> MspDir {
        MspDir { dir: dir.into() }
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Loads the identity enrolled here (`signcerts/` and its key in
    /// `keystore/`); errors name the folder and say how to get one.
    pub(crate) fn signer(&self) -> anyhow::Result<SigningIdentity> {
        SigningIdentity::from_msp_dir(&self.dir, "").map_err(|e| {
            anyhow!(
                "cannot use the enrollment in msp folder {} (enroll first, or pass --mspdir): {e}",
                self.dir.display()
            )
        })
    }

    /// Writes an enrollment: the certificate, the key, the CA chain and,
    /// for the MSP kind, `config.yaml`. Returns the certificate's path.
    pub(crate) fn store_enrollment(
        &self,
        key: &SigningKey,
        cert_pem: &str,
        chain: &CaChain,
        ca_file: &str,
        kind: ChainKind,
    ) -> anyhow::Result<(PathBuf, StoredChain)> {
        let identity = Identity::from_pem("", cert_pem.as_bytes())
            .map_err(|e| anyhow!("the CA returned a certificate Twill cannot use: {e}"))?;
        if identity.public_key() != &key.verifying_key() {
            bail!("the CA returned a certificate for another key than the one in the request");
        }
        let cert_path = self.dir.join("signcerts").join("cert.pem");
        write_file(&cert_path, cert_pem.as_bytes(), false)?;
        let key_name = format!("{}_sk", ski_hex(&key.verifying_key()));
        let key_path = self.dir.join("keystore").join(key_name);
        write_file(&key_path, key.to_pkcs8_pem().as_bytes(), true)?;
        let stored = self.store_chain(chain, ca_file, kind)?;
        if kind == ChainKind::Msp {
            if let Some(certifier) = stored.intermediate.as_ref().or(stored.root.as_ref()) {
                self.write_config_yaml(certifier)?;
            }
        }
        Ok((cert_path, stored))
    }

    /// Writes the CA chain: roots in one file of `cacerts/` (or
    /// `tlscacerts/`), intermediates in one file of `intermediatecerts/`
    /// (or `tlsintermediatecerts/`), both named `ca_file`.
    pub(crate) fn store_chain(
        &self,
        chain: &CaChain,
        ca_file: &str,
        kind: ChainKind,
    ) -> anyhow::Result<StoredChain> {
        let (roots_dir, inter_dir) = kind.dirs();
        let mut stored = StoredChain::default();
        if !chain.roots.is_empty() {
            let path = self.dir.join(roots_dir).join(ca_file);
            write_file(&path, chain.roots.concat().as_bytes(), false)?;
            stored.root = Some(path);
        }
        if !chain.intermediates.is_empty() {
            let path = self.dir.join(inter_dir).join(ca_file);
            write_file(&path, chain.intermediates.concat().as_bytes(), false)?;
            stored.intermediate = Some(path);
        }
        Ok(stored)
    }

    /// Writes `crls/crl.pem`.
    pub(crate) fn store_crl(&self, crl_pem: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("crls").join("crl.pem");
        write_file(&path, crl_pem.as_bytes(), false)?;
        Ok(path)
    }

    /// Writes `config.yaml` with NodeOUs enabled, each role's OU certified
    /// by `certifier`, unless the folder has a `config.yaml` of the user's.
    fn write_config_yaml(&self, certifier: &Path) -> anyhow::Result<()> {
        let path = self.dir.join("config.yaml");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            if !existing.starts_with(CONFIG_HEADER) {
                return Ok(());
            }
        }
        let rel = certifier
            .strip_prefix(&self.dir)
            .unwrap_or(certifier)
            .to_string_lossy()
            .replace('\\', "/");
        write_file(&path, node_ous_yaml(&rel).as_bytes(), false)
    }
}

/// `config.yaml` turning NodeOUs on, certified by the CA file `rel`.
pub(crate) fn node_ous_yaml(rel: &str) -> String {
    let mut s = format!(
        "{CONFIG_HEADER}: identities are told apart by the OU the CA\n\
         # puts in their certificates (client, peer, admin, orderer).\n\
         NodeOUs:\n  Enable: true\n"
    );
    for (key, ou) in [
        ("ClientOUIdentifier", "client"),
        ("PeerOUIdentifier", "peer"),
        ("AdminOUIdentifier", "admin"),
        ("OrdererOUIdentifier", "orderer"),
    ] {
        s.push_str(&format!(
            "  {key}:\n    Certificate: {rel}\n    OrganizationalUnitIdentifier: {ou}\n"
        ));
    }
    s
}

/// Writes `path` through a temporary file and a rename, creating folders;
/// `secret` files are created with mode 0600 (on Unix).
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent folder", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating folder {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let result = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("writing {}: {e}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, IsCa, Issuer, KeyPair};
    use x509_parser::prelude::{GeneralName, ParsedExtension, X509CertificationRequest};

    /// A root CA (rcgen) issuing a leaf for `key` with `ous` and CN `cn`.
    pub(crate) fn issue(key: &SigningKey, cn: &str, ous: &[&str]) -> (String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(DnType::CommonName, "ca");
        let ca_cert = ca.clone().self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name = DistinguishedName::new();
        for ou in ous {
            leaf.distinguished_name
                .push(DnType::OrganizationalUnitName, *ou);
        }
        leaf.distinguished_name.push(DnType::CommonName, cn);
        let signer = CsrKey {
            key,
            public: key.verifying_key(),
        };
        let cert = leaf.signed_by(&signer, &issuer).unwrap();
        (cert.pem(), ca_cert.pem())
    }

    #[test]
    fn csr_has_cn_names_hosts_and_a_low_s_signature() {
        let key = SigningKey::generate().unwrap();
        let names = CsrNames::parse("C=US, O=Org1,OU=Fabric").unwrap();
        let hosts = vec!["peer0.org1.example.com".to_string(), "127.0.0.1".into()];
        let pem = csr_pem(&key, "peer0", &names, &hosts).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let blocks = twill_crypto::pem::parse_pem_blocks(&pem).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(&blocks[0].1).unwrap();
        csr.verify_signature().unwrap();
        let info = &csr.certification_request_info;
        assert_eq!(
            info.subject.to_string(),
            "C=US, O=Org1, OU=Fabric, CN=peer0"
        );
        assert_eq!(
            info.subject_pki.subject_public_key.data.as_ref(),
            key.verifying_key().to_sec1_uncompressed()
        );
        let sans: Vec<String> = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                ParsedExtension::SubjectAlternativeName(san) => Some(san),
                _ => None,
            })
            .flat_map(|san| san.general_names.iter())
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["peer0.org1.example.com", "[127, 0, 0, 1]"]);
        assert!(twill_crypto::is_low_s(csr.signature_value.data.as_ref()).unwrap());
    }

    #[test]
    fn csr_names_are_checked() {
        assert!(CsrNames::parse("").unwrap().fields.is_empty());
        let e = CsrNames::parse("X=1").unwrap_err().to_string();
        assert!(e.contains("--csr.names"), "{e}");
        assert!(CsrNames::parse("C").is_err());
    }

    #[test]
    fn ca_files_are_named_like_fabric_ca_client() {
        assert_eq!(ca_file_name("127.0.0.1", 7054, None), "127-0-0-1-7054.pem");
        assert_eq!(
            ca_file_name("localhost", 7054, Some("ca-org1")),
            "localhost-7054-ca-org1.pem"
        );
        assert_eq!(ca_file_name("::1", 7054, Some("")), "--1-7054.pem");
    }

    #[test]
    fn enrollment_folder_loads_as_signing_identity_and_msp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MspDir::new(tmp.path().join("msp"));
        let key = SigningKey::generate().unwrap();
        let (cert, ca) = issue(&key, "admin", &["admin"]);
        let chain = CaChain::from_base64(&STANDARD.encode(&ca), "CAChain").unwrap();
        assert_eq!(chain.roots.len(), 1);
        assert!(chain.intermediates.is_empty());
        let file = ca_file_name("127.0.0.1", 7054, Some("ca-org1"));
        let (cert_path, stored) = dir
            .store_enrollment(&key, &cert, &chain, &file, ChainKind::Msp)
            .unwrap();
        assert_eq!(cert_path, dir.path().join("signcerts/cert.pem"));
        assert_eq!(
            stored.root.unwrap(),
            dir.path().join("cacerts/127-0-0-1-7054-ca-org1.pem")
        );
        let key_path = dir
            .path()
            .join("keystore")
            .join(format!("{}_sk", ski_hex(&key.verifying_key())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let config = std::fs::read_to_string(dir.path().join("config.yaml")).unwrap();
        assert!(config.contains("Certificate: cacerts/127-0-0-1-7054-ca-org1.pem"));

        let signer = dir.signer().unwrap();
        assert_eq!(signer.identity().common_name(), "admin");
        let config = twill_msp::load_fabric_msp_config(dir.path(), "Org1MSP").unwrap();
        let msp = twill_msp::Msp::from_config(&config).unwrap();
        let id = Identity::from_pem("Org1MSP", cert.as_bytes()).unwrap();
        msp.validate(&id).unwrap();
        assert_eq!(msp.node_role(&id), Some(twill_msp::NodeRole::Admin));

        // A config.yaml of the user's is left alone on the next enrollment.
        std::fs::write(
            dir.path().join("config.yaml"),
            "NodeOUs:\n  Enable: false\n",
        )
        .unwrap();
        dir.store_enrollment(&key, &cert, &chain, &file, ChainKind::Msp)
            .unwrap();
        let config = std::fs::read_to_string(dir.path().join("config.yaml")).unwrap();
        assert_eq!(config, "NodeOUs:\n  Enable: false\n");
    }

    #[test]
    fn intermediates_are_split_out_and_certify_the_node_ous() {
        let root_key = KeyPair::generate().unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name = DistinguishedName::new();
        root.distinguished_name.push(DnType::CommonName, "root");
        let root_cert = root.clone().self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);
        let inter_key = KeyPair::generate().unwrap();
        let mut inter = CertificateParams::new(Vec::<String>::new()).unwrap();
        inter.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        inter.distinguished_name = DistinguishedName::new();
        inter.distinguished_name.push(DnType::CommonName, "inter");
        let inter_cert = inter.signed_by(&inter_key, &root_issuer).unwrap();
        let b64 = STANDARD.encode(format!("{}{}", inter_cert.pem(), root_cert.pem()));
        let chain = CaChain::from_base64(&b64, "CAChain").unwrap();
        assert_eq!(chain.roots, vec![root_cert.pem()]);
        assert_eq!(chain.intermediates, vec![inter_cert.pem()]);

        let tmp = tempfile::tempdir().unwrap();
        let dir = MspDir::new(tmp.path());
        let stored = dir.store_chain(&chain, "h-1.pem", ChainKind::Msp).unwrap();
        assert_eq!(
            stored.intermediate.unwrap(),
            tmp.path().join("intermediatecerts/h-1.pem")
        );
        let yaml = node_ous_yaml("intermediatecerts/h-1.pem");
        assert_eq!(
            yaml.matches("Certificate: intermediatecerts/h-1.pem")
                .count(),
            4
        );
        assert!(CaChain::from_base64("!!", "CAChain").is_err());
        assert!(CaChain::from_base64(&STANDARD.encode("x"), "CAChain").is_err());
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MspDir::new(tmp.path());
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let (cert, ca) = issue(&other, "u", &["client"]);
        let chain = CaChain::from_base64(&STANDARD.encode(&ca), "CAChain").unwrap();
        let e = dir
            .store_enrollment(&key, &cert, &chain, "x.pem", ChainKind::Msp)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another key"), "{e}");
    }

    #[test]
    fn tls_profile_chain_goes_to_tlscacerts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MspDir::new(tmp.path());
        let key = SigningKey::generate().unwrap();
        let (cert, ca) = issue(&key, "peer0", &["peer"]);
        let chain = CaChain::from_base64(&STANDARD.encode(&ca), "CAChain").unwrap();
        dir.store_enrollment(&key, &cert, &chain, "h-1.pem", ChainKind::Tls)
            .unwrap();
        assert!(tmp.path().join("tlscacerts/h-1.pem").is_file());
        assert!(!tmp.path().join("cacerts").exists());
        assert!(!tmp.path().join("config.yaml").exists());
    }

    #[test]
    fn an_empty_folder_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = MspDir::new(tmp.path().join("nowhere"));
        let e = dir.signer().unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
    }
}
