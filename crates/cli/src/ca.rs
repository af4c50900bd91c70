//! `twill ca`: a Fabric CA client, like `fabric-ca-client`.
//!
//! `enroll` makes a P-256 key and a CSR, has the CA sign it (HTTP Basic with
//! the enrollment ID and secret from the URL) and writes Fabric's `msp/`
//! folder, with a `config.yaml` that turns NodeOUs on, so peers, orderers,
//! the SDK and Twill's MSP loader take the folder as it is. Every other
//! command authenticates with the token Fabric CA expects, made from the
//! enrollment in `--mspdir` (see [`client::auth_token`]).
//!
//! The pieces are reusable: [`CaClient`] speaks the REST protocol,
//! [`enroll`] and [`reenroll`] go from an enrollment request to a written
//! folder, and [`register`] registers an identity.

mod client;
mod mspdir;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use twill_crypto::SigningKey;
use twill_msp::SigningIdentity;
use x509_parser::prelude::{FromDer, X509Certificate};

use client::{percent_encode, with_query, EnrollResult};
pub(crate) use client::{Auth, CaClient, CaTls, CaUrl};
use mspdir::{ca_file_name, csr_pem, decode_b64_text, CaChain, ChainKind, StoredChain};
pub(crate) use mspdir::{CsrNames, MspDir};

/// Arguments of `twill ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Enroll an identity: get a certificate for a new key and write an msp folder.
    ///
    /// The enrollment ID and secret are the user and password of the URL.
    /// Writes signcerts/cert.pem, keystore/<ski>_sk, cacerts/<host>-<port>[-<caname>].pem,
    /// intermediatecerts/ (if the CA is an intermediate) and config.yaml (NodeOUs on).
    ///
    /// Example:
    ///   twill ca enroll -u https://admin:adminpw@localhost:7054 --caname ca-org1 \
    ///       --tls.certfiles ca-tls.pem --mspdir org1/admin/msp
    #[command(verbatim_doc_comment)]
    Enroll {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        enrollment: EnrollmentFlags,
        #[command(flatten)]
        csr: CsrFlags,
    },
    /// Renew the certificate in --mspdir with a new key (authenticated by the current one).
    ///
    /// Example:
    ///   twill ca reenroll -u https://localhost:7054 --tls.certfiles ca-tls.pem --mspdir org1/user1/msp
    #[command(verbatim_doc_comment)]
    Reenroll {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        enrollment: EnrollmentFlags,
        #[command(flatten)]
        csr: CsrFlags,
    },
    /// Register a new identity; prints its enrollment secret.
    ///
    /// The registrar is the identity enrolled in --mspdir.
    ///
    /// Example:
    ///   twill ca register --mspdir org1/admin/msp -u https://localhost:7054 --tls.certfiles ca-tls.pem \
    ///       --id.name user1 --id.secret user1pw --id.type client --id.affiliation org1.department1 \
    ///       --id.attrs 'app.role=auditor:ecert,email=u1@org1'
    #[command(verbatim_doc_comment)]
    Register {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        id: IdFlags,
    },
    /// Revoke an identity (all its certificates) or one certificate.
    ///
    /// Examples:
    ///   twill ca revoke --mspdir org1/admin/msp -e user1 -r keycompromise --gencrl
    ///   twill ca revoke --mspdir org1/admin/msp -s 3c4a... -a 9f1e...
    #[command(verbatim_doc_comment)]
    Revoke {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        revoke: RevokeFlags,
    },
    /// Fetch the CA's current CRL into <mspdir>/crls/crl.pem.
    ///
    /// Example:
    ///   twill ca gencrl --mspdir org1/admin/msp -u https://localhost:7054 --tls.certfiles ca-tls.pem
    #[command(verbatim_doc_comment)]
    Gencrl {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        window: CrlWindow,
    },
    /// List, show and remove registered identities.
    ///
    /// Example:
    ///   twill ca identity list --mspdir org1/admin/msp
    #[command(verbatim_doc_comment)]
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// List, add and remove affiliations.
    ///
    /// Example:
    ///   twill ca affiliation add org1.department2 --mspdir org1/admin/msp
    #[command(verbatim_doc_comment)]
    Affiliation {
        #[command(subcommand)]
        command: AffiliationCommand,
    },
    /// List the certificates the CA issued.
    ///
    /// Example:
    ///   twill ca certificate list --mspdir org1/admin/msp --id user1 --notrevoked
    #[command(verbatim_doc_comment)]
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand,
    },
    /// Fetch the CA's certificate chain into <mspdir>/cacerts (and intermediatecerts).
    ///
    /// Example:
    ///   twill ca getcainfo -u https://localhost:7054 --tls.certfiles ca-tls.pem --mspdir org1/msp
    #[command(verbatim_doc_comment)]
    Getcainfo {
        #[command(flatten)]
        common: Common,
    },
}

/// Where the CA is, how to reach it, and which msp folder to use.
#[derive(Debug, Args)]
struct Common {
    /// URL of the CA, http[s]://[ID:SECRET@]HOST[:PORT] (port 7054 by default).
    /// The ID and secret are used by enroll only.
    #[arg(
        short = 'u',
        long,
        env = "FABRIC_CA_CLIENT_URL",
        hide_env_values = true,
        default_value = "http://localhost:7054",
        value_name = "URL"
    )]
    url: String,
    /// Name of the CA on a server that hosts several; the server's default CA otherwise.
    #[arg(long, env = "FABRIC_CA_CLIENT_CANAME", value_name = "NAME")]
    caname: Option<String>,
    /// Client home folder: the msp folder goes in <home>/msp unless --mspdir says otherwise.
    /// Default: $HOME/.fabric-ca-client.
    #[arg(short = 'H', long, env = "FABRIC_CA_CLIENT_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// The msp folder: written by enroll, reenroll and getcainfo, and the
    /// caller's identity for every other command. A relative path is taken
    /// from --home when that is given, else from the current folder.
    #[arg(short = 'M', long, env = "FABRIC_CA_CLIENT_MSPDIR", value_name = "DIR")]
    mspdir: Option<PathBuf>,
    /// PEM files with the CA's TLS root certificates (comma-separated or
    /// repeated); needed for https URLs.
    #[arg(
        long = "tls.certfiles",
        alias = "tls-certfiles",
        env = "FABRIC_CA_CLIENT_TLS_CERTFILES",
        value_delimiter = ',',
        value_name = "FILES"
    )]
    tls_certfiles: Vec<PathBuf>,
    /// PEM client certificate for CAs that require mutual TLS.
    #[arg(
        long = "tls.client.certfile",
        requires = "tls_client_keyfile",
        value_name = "FILE"
    )]
    tls_client_certfile: Option<PathBuf>,
    /// PEM private key of --tls.client.certfile.
    #[arg(
        long = "tls.client.keyfile",
        requires = "tls_client_certfile",
        value_name = "FILE"
    )]
    tls_client_keyfile: Option<PathBuf>,
}

impl Common {
    fn url(&self) -> anyhow::Result<CaUrl> {
        CaUrl::parse(&self.url).context("-u/--url")
    }

    fn client(&self, url: &CaUrl) -> anyhow::Result<CaClient> {
        let tls = CaTls {
            root_files: self.tls_certfiles.clone(),
            client: self
                .tls_client_certfile
                .clone()
                .zip(self.tls_client_keyfile.clone()),
        };
        CaClient::new(url, &tls, self.caname.clone())
    }

    fn msp(&self) -> MspDir {
        let home = self.home.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".fabric-ca-client")
        });
        let dir = match &self.mspdir {
            None => home.join("msp"),
            Some(dir) if dir.is_absolute() || self.home.is_none() => dir.clone(),
            Some(dir) => home.join(dir),
        };
        MspDir::new(dir)
    }

    fn ca_file(&self, url: &CaUrl) -> String {
        ca_file_name(&url.host, url.port, self.caname.as_deref())
    }
}

/// What to ask of the enrollment.
#[derive(Debug, Args)]
struct EnrollmentFlags {
    /// Signing profile of the CA to use, e.g. `tls` for a TLS certificate
    /// (its chain then goes to tlscacerts/).
    #[arg(long = "enrollment.profile", value_name = "NAME")]
    profile: Option<String>,
    /// Attributes to put in the certificate: NAME or NAME:opt (optional),
    /// comma-separated. Without it the CA puts every attribute registered
    /// with `ecert`.
    #[arg(
        long = "enrollment.attrs",
        value_delimiter = ',',
        value_name = "NAME[:opt],..."
    )]
    attrs: Vec<String>,
}

/// What to put in the certificate request.
#[derive(Debug, Args)]
struct CsrFlags {
    /// Common name of the request; the enrollment ID by default (Fabric CA
    /// requires them equal).
    #[arg(long = "csr.cn", value_name = "CN")]
    cn: Option<String>,
    /// Subject alternative names: host names or IP addresses, comma-separated.
    #[arg(long = "csr.hosts", value_delimiter = ',', value_name = "HOSTS")]
    hosts: Vec<String>,
    /// Other subject fields, e.g. `C=US,ST=North Carolina,O=Hyperledger`
    /// (the CA replaces OUs with the identity's type and affiliation).
    #[arg(long = "csr.names", value_name = "K=V,...")]
    names: Option<String>,
}

/// The identity to register.
#[derive(Debug, Args)]
struct IdFlags {
    /// Enrollment ID of the new identity.
    #[arg(long = "id.name", value_name = "ID")]
    name: String,
    /// Its enrollment secret; the CA makes one up when omitted.
    #[arg(long = "id.secret", value_name = "SECRET")]
    secret: Option<String>,
    /// Its type: client, peer, orderer, admin or user (becomes its
    /// certificate's OU).
    #[arg(long = "id.type", default_value = "client", value_name = "TYPE")]
    r#type: String,
    /// Its affiliation, e.g. org1.department1; the registrar's by default.
    #[arg(long = "id.affiliation", value_name = "AFFILIATION")]
    affiliation: Option<String>,
    /// Attributes NAME=VALUE[:ecert], comma-separated; `:ecert` puts the
    /// attribute in certificates by default. Quote a value holding commas:
    /// 'hf.Registrar.Roles="peer,client"'.
    #[arg(long = "id.attrs", value_name = "ATTRS")]
    attrs: Option<String>,
    /// How many times it may enroll (-1 unlimited, 0 the CA's default).
    #[arg(
        long = "id.maxenrollments",
        default_value_t = 0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    max_enrollments: i64,
}

/// What to revoke.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(true).args(["name", "serial"]))]
struct RevokeFlags {
    /// Revoke this identity and every certificate it holds.
    #[arg(short = 'e', long = "revoke.name", value_name = "ID")]
    name: Option<String>,
    /// Revoke the certificate with this serial number (hex); needs --revoke.aki.
    #[arg(
        short = 's',
        long = "revoke.serial",
        requires = "aki",
        value_name = "HEX"
    )]
    serial: Option<String>,
    /// Authority key identifier (hex) of the certificate to revoke.
    #[arg(
        short = 'a',
        long = "revoke.aki",
        requires = "serial",
        value_name = "HEX"
    )]
    aki: Option<String>,
    /// Reason: unspecified, keycompromise, cacompromise, affiliationchanged,
    /// superseded, cessationofoperation, certificatehold, removefromcrl,
    /// privilegewithdrawn, aacompromise.
    #[arg(short = 'r', long = "revoke.reason", value_name = "REASON")]
    reason: Option<String>,
    /// Also fetch the new CRL into <mspdir>/crls/crl.pem.
    #[arg(long)]
    gencrl: bool,
}

impl RevokeFlags {
    /// The JSON body of revoke.
    fn body(&self) -> anyhow::Result<Value> {
        let mut body = json!({ "gencrl": self.gencrl });
        if let Some(name) = &self.name {
            body["id"] = json!(name);
        }
        if let (Some(serial), Some(aki)) = (&self.serial, &self.aki) {
            body["serial"] = json!(normalize_hex("-s/--revoke.serial", serial, true)?);
            body["aki"] = json!(normalize_hex("-a/--revoke.aki", aki, false)?);
        }
        if let Some(reason) = &self.reason {
            body["reason"] = json!(reason);
        }
        Ok(body)
    }
}

/// Which revoked certificates the CRL lists (RFC 3339 times).
#[derive(Debug, Args)]
struct CrlWindow {
    /// Only certificates revoked after this time.
    #[arg(long = "revokedafter", value_name = "TIME")]
    revoked_after: Option<String>,
    /// Only certificates revoked before this time.
    #[arg(long = "revokedbefore", value_name = "TIME")]
    revoked_before: Option<String>,
    /// Only certificates expiring after this time.
    #[arg(long = "expireafter", value_name = "TIME")]
    expire_after: Option<String>,
    /// Only certificates expiring before this time.
    #[arg(long = "expirebefore", value_name = "TIME")]
    expire_before: Option<String>,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// List the identities the caller may see.
    List {
        #[command(flatten)]
        common: Common,
        /// Print the CA's JSON answer instead of one line per identity.
        #[arg(long)]
        json: bool,
    },
    /// Show one identity.
    Get {
        /// Enrollment ID.
        id: String,
        #[command(flatten)]
        common: Common,
        /// Print the CA's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Remove an identity (the CA must allow removals).
    Remove {
        /// Enrollment ID.
        id: String,
        #[command(flatten)]
        common: Common,
        /// Remove it even if it is the caller.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AffiliationCommand {
    /// Show the affiliation tree (or the subtree of one affiliation).
    List {
        /// Show only this affiliation and those below it.
        #[arg(long, value_name = "NAME")]
        affiliation: Option<String>,
        #[command(flatten)]
        common: Common,
        /// Print the CA's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Add an affiliation, e.g. org1.department2.
    Add {
        /// Dotted affiliation name.
        name: String,
        #[command(flatten)]
        common: Common,
        /// Also create missing parent affiliations.
        #[arg(long)]
        force: bool,
    },
    /// Remove an affiliation (the CA must allow removals).
    Remove {
        /// Dotted affiliation name.
        name: String,
        #[command(flatten)]
        common: Common,
        /// Also remove the affiliations and identities below it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CertificateCommand {
    /// List issued certificates, optionally filtered.
    List {
        /// Only this identity's certificates.
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// Only the certificate with this serial number (hex).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// Only certificates with this authority key identifier (hex).
        #[arg(long, value_name = "HEX")]
        aki: Option<String>,
        /// Leave out revoked certificates.
        #[arg(long)]
        notrevoked: bool,
        /// Leave out expired certificates.
        #[arg(long)]
        notexpired: bool,
        /// Also write each certificate as <DIR>/<CN>-<serial>.pem.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

/// Runs `twill ca`.
pub fn run(args: CaArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dispatch(args.command))
}

async fn dispatch(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Enroll {
            common,
            enrollment,
            csr,
        } => run_enroll(common, enrollment, csr).await,
        CaCommand::Reenroll {
            common,
            enrollment,
            csr,
        } => run_reenroll(common, enrollment, csr).await,
        CaCommand::Register { common, id } => run_register(common, id).await,
        CaCommand::Revoke { common, revoke } => run_revoke(common, revoke).await,
        CaCommand::Gencrl { common, window } => run_gencrl(common, window).await,
        CaCommand::Identity { command } => run_identity(command).await,
        CaCommand::Affiliation { command } => run_affiliation(command).await,
        CaCommand::Certificate { command } => run_certificate(command).await,
        CaCommand::Getcainfo { common } => run_getcainfo(common).await,
    }
}

/// One attribute asked for at enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttrReq {
    /// Attribute name.
    pub name: String,
    /// Skip it, rather than fail, when the identity lacks it.
    pub optional: bool,
}

impl AttrReq {
    /// Parses `NAME` or `NAME:opt`.
    fn parse(spec: &str) -> anyhow::Result<AttrReq> {
        let spec = spec.trim();
        let (name, optional) = match spec.split_once(':') {
            None => (spec, false),
            Some((name, "opt")) => (name, true),
            Some((_, other)) => {
                bail!("--enrollment.attrs: '{spec}': expected NAME or NAME:opt, not ':{other}'")
            }
        };
        if name.is_empty() {
            bail!("--enrollment.attrs: empty attribute name in '{spec}'");
        }
        Ok(AttrReq {
            name: name.to_string(),
            optional,
        })
    }
}

/// An enrollment request: what goes in the CSR and what is asked of the CA.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnrollOptions {
    /// CSR common name; the enrollment ID when `None`.
    pub cn: Option<String>,
    /// Subject alternative names.
    pub hosts: Vec<String>,
    /// Other subject fields.
    pub names: CsrNames,
    /// Signing profile (`tls` stores the chain in tlscacerts/).
    pub profile: Option<String>,
    /// Attributes to request; `None` lets the CA put its defaults.
    pub attr_reqs: Option<Vec<AttrReq>>,
}

impl EnrollOptions {
    fn from_flags(enrollment: EnrollmentFlags, csr: CsrFlags) -> anyhow::Result<Self> {
        let attr_reqs = if enrollment.attrs.is_empty() {
            None
        } else {
            Some(
                enrollment
                    .attrs
                    .iter()
                    .filter(|a| !a.trim().is_empty())
                    .map(|a| AttrReq::parse(a))
                    .collect::<anyhow::Result<_>>()?,
            )
        };
        Ok(EnrollOptions {
            cn: csr.cn,
            hosts: csr.hosts.into_iter().filter(|h| !h.is_empty()).collect(),
            names: csr
                .names
                .as_deref()
                .map(CsrNames::parse)
                .transpose()?
                .unwrap_or_default(),
            profile: enrollment.profile.filter(|p| !p.is_empty()),
            attr_reqs,
        })
    }

    /// The JSON body of enroll / reenroll for this CSR.
    fn body(&self, csr: String) -> Value {
        let mut body = json!({ "certificate_request": csr });
        if let Some(profile) = &self.profile {
            body["profile"] = json!(profile);
        }
        if let Some(reqs) = &self.attr_reqs {
            body["attr_reqs"] = reqs
                .iter()
                .map(|r| json!({ "name": r.name, "optional": r.optional }))
                .collect();
        }
        body
    }
}

/// What an enrollment wrote.
#[derive(Debug, Clone)]
pub(crate) struct Enrolled {
    /// `signcerts/cert.pem`.
    pub cert: PathBuf,
    /// The chain files.
    pub chain: StoredChain,
}

/// Enrolls `id` with `secret` and writes the result into `msp`.
pub(crate) async fn enroll(
    client: &CaClient,
    id: &str,
    secret: &str,
    opts: &EnrollOptions,
    msp: &MspDir,
) -> anyhow::Result<Enrolled> {
    let key = SigningKey::generate().context("generating a key")?;
    let cn = opts.cn.as_deref().unwrap_or(id);
    let csr = csr_pem(&key, cn, &opts.names, &opts.hosts)?;
    let result = client.enroll(id, secret, opts.body(csr)).await?;
    store(client, &key, &result, opts, msp)
}

/// Renews the enrollment in `msp` with a new key, keeping its common name.
pub(crate) async fn reenroll(
    client: &CaClient,
    opts: &EnrollOptions,
    msp: &MspDir,
) -> anyhow::Result<Enrolled> {
    let signer = msp.signer()?;
    let key = SigningKey::generate().context("generating a key")?;
    let cn = opts
        .cn
        .as_deref()
        .unwrap_or(signer.identity().common_name());
    let csr = csr_pem(&key, cn, &opts.names, &opts.hosts)?;
    let result = client.reenroll(&signer, opts.body(csr)).await?;
    store(client, &key, &result, opts, msp)
}

fn store(
    client: &CaClient,
    key: &SigningKey,
    result: &EnrollResult,
    opts: &EnrollOptions,
    msp: &MspDir,
) -> anyhow::Result<Enrolled> {
    let url = client.url();
    let what = format!("the certificate from {url}");
    let cert_pem = decode_b64_text(&result.cert, &what)?;
    let chain = CaChain::from_base64(
        &result.server_info.ca_chain,
        &format!("the CA chain from {url}"),
    )?;
    let ca_file = ca_file_name(&url.host, url.port, client.caname());
    let kind = ChainKind::for_profile(opts.profile.as_deref());
    let (cert, chain) = msp.store_enrollment(key, &cert_pem, &chain, &ca_file, kind)?;
    Ok(Enrolled { cert, chain })
}

/// A registration request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registration {
    /// Enrollment ID.
    pub id: String,
    /// Secret; generated by the CA when `None`.
    pub secret: Option<String>,
    /// client, peer, orderer, admin, user.
    pub r#type: String,
    /// Dotted affiliation; the registrar's when empty.
    pub affiliation: String,
    /// `(name, value, ecert)`.
    pub attrs: Vec<(String, String, bool)>,
    /// -1 unlimited, 0 the CA's default.
    pub max_enrollments: i64,
}

impl Registration {
    /// The JSON body of register.
    fn body(&self) -> Value {
        let attrs: Vec<Value> = self
            .attrs
            .iter()
            .map(|(name, value, ecert)| json!({ "name": name, "value": value, "ecert": ecert }))
            .collect();
        let mut body = json!({
            "id": self.id,
            "type": self.r#type,
            "max_enrollments": self.max_enrollments,
            "attrs": attrs,
        });
        if !self.affiliation.is_empty() {
            body["affiliation"] = json!(self.affiliation);
        }
        if let Some(secret) = &self.secret {
            body["secret"] = json!(secret);
        }
        body
    }
}

/// Registers an identity as `registrar`; returns its enrollment secret.
pub(crate) async fn register(
    client: &CaClient,
    registrar: &SigningIdentity,
    reg: &Registration,
) -> anyhow::Result<String> {
    let body = reg.body();
    let result = client
        .post("register", Auth::Token(registrar), body)
        .await?;
    result
        .get("secret")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{}: register answered without a secret", client.url()))
}

/// Parses `--id.attrs`: `NAME=VALUE[:ecert]`, comma-separated, values
/// optionally in double quotes (which may then hold commas).
fn parse_id_attrs(spec: &str) -> anyhow::Result<Vec<(String, String, bool)>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in spec.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if quoted {
        bail!("--id.attrs: unclosed '\"' in '{spec}'");
    }
    parts.push(current);
    let mut attrs = Vec::new();
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let (name, rest) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("--id.attrs: '{part}' is not NAME=VALUE[:ecert]"))?;
        let name = name.trim();
        if name.is_empty() {
            bail!("--id.attrs: empty attribute name in '{part}'");
        }
        let (value, ecert) = match rest.rsplit_once(':') {
            Some((value, "ecert")) => (value, true),
            _ => (rest, false),
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        attrs.push((name.to_string(), value.to_string(), ecert));
    }
    Ok(attrs)
}

async fn run_enroll(
    common: Common,
    enrollment: EnrollmentFlags,
    csr: CsrFlags,
) -> anyhow::Result<()> {
    let url = common.url()?;
    let (Some(id), Some(secret)) = (url.user.clone(), url.password.clone()) else {
        bail!(
            "-u/--url {} carries no enrollment ID and secret: use -u {}://ID:SECRET@{}",
            url.base(),
            if url.tls { "https" } else { "http" },
            url.authority()
        );
    };
    let opts = EnrollOptions::from_flags(enrollment, csr)?;
    let client = common.client(&url)?;
    let msp = common.msp();
    let enrolled = enroll(&client, &id, &secret, &opts, &msp).await?;
    report_enrolled(&msp, &enrolled);
    Ok(())
}

async fn run_reenroll(
    common: Common,
    enrollment: EnrollmentFlags,
    csr: CsrFlags,
) -> anyhow::Result<()> {
    let url = common.url()?;
    let opts = EnrollOptions::from_flags(enrollment, csr)?;
    let client = common.client(&url)?;
    let msp = common.msp();
    let enrolled = reenroll(&client, &opts, &msp).await?;
    report_enrolled(&msp, &enrolled);
    Ok(())
}

fn report_enrolled(msp: &MspDir, enrolled: &Enrolled) {
    println!("Stored the certificate at {}", enrolled.cert.display());
    println!(
        "Stored the private key in {}",
        msp.path().join("keystore").display()
    );
    if let Some(root) = &enrolled.chain.root {
        println!("Stored the root CA certificate at {}", root.display());
    }
    if let Some(inter) = &enrolled.chain.intermediate {
        println!(
            "Stored the intermediate CA certificates at {}",
            inter.display()
        );
    }
}

async fn run_register(common: Common, id: IdFlags) -> anyhow::Result<()> {
    let url = common.url()?;
    let registrar = common.msp().signer()?;
    let client = common.client(&url)?;
    let reg = Registration {
        attrs: id
            .attrs
            .as_deref()
            .map(parse_id_attrs)
            .transpose()?
            .unwrap_or_default(),
        id: id.name,
        secret: id.secret,
        r#type: id.r#type,
        affiliation: id.affiliation.unwrap_or_default(),
        max_enrollments: id.max_enrollments,
    };
    let secret = register(&client, &registrar, &reg).await?;
    println!("Password: {secret}");
    Ok(())
}

/// Lowercase hex without `:` separators or leading zeros, as Fabric CA
/// stores serial numbers and key identifiers.
fn normalize_hex(flag: &str, value: &str, strip_zeros: bool) -> anyhow::Result<String> {
    let hex: String = value
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{flag} '{value}' is not a hex number");
    }
    if strip_zeros {
        let trimmed = hex.trim_start_matches('0');
        return Ok(if trimmed.is_empty() { "0" } else { trimmed }.to_string());
    }
    Ok(hex)
}

async fn run_revoke(common: Common, revoke: RevokeFlags) -> anyhow::Result<()> {
    let url = common.url()?;
    let msp = common.msp();
    let signer = msp.signer()?;
    let client = common.client(&url)?;
    let body = revoke.body()?;
    let result = client.post("revoke", Auth::Token(&signer), body).await?;
    let revoked = result
        .get("RevokedCerts")
        .or_else(|| result.get("revokedCerts"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if revoked.is_empty() {
        println!("No certificate was revoked");
    }
    for cert in &revoked {
        let field = |k: &str| {
            cert.get(k)
                .or_else(|| cert.get(k.to_ascii_lowercase()))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        println!(
            "Revoked certificate: serial {}, AKI {}",
            field("Serial"),
            field("AKI")
        );
    }
    if revoke.gencrl {
        let crl = crl_of(&result, &url)?;
        let path = msp.store_crl(&crl)?;
        println!("Stored the CRL at {}", path.display());
    }
    Ok(())
}

/// The PEM CRL in a revoke or gencrl `result`.
fn crl_of(result: &Value, url: &CaUrl) -> anyhow::Result<String> {
    let b64 = result
        .get("CRL")
        .or_else(|| result.get("crl"))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{url} answered without a CRL"))?;
    decode_b64_text(b64, &format!("the CRL from {url}"))
}

async fn run_gencrl(common: Common, window: CrlWindow) -> anyhow::Result<()> {
    let url = common.url()?;
    let msp = common.msp();
    let signer = msp.signer()?;
    let client = common.client(&url)?;
    let mut body = json!({});
    for (key, value) in [
        ("revokedAfter", &window.revoked_after),
        ("revokedBefore", &window.revoked_before),
        ("expireAfter", &window.expire_after),
        ("expireBefore", &window.expire_before),
    ] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    let result = client.post("gencrl", Auth::Token(&signer), body).await?;
    let crl = crl_of(&result, &url)?;
    let path = msp.store_crl(&crl)?;
    println!("Stored the CRL at {}", path.display());
    Ok(())
}

/// One line per identity, Fabric CA client's way.
fn identity_line(id: &Value) -> String {
    let s = |k: &str| id.get(k).and_then(Value::as_str).unwrap_or_default();
    let attrs: Vec<String> = id
        .get("attrs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            let name = a.get("name").and_then(Value::as_str).unwrap_or_default();
            let value = a.get("value").and_then(Value::as_str).unwrap_or_default();
            let ecert = a.get("ecert").and_then(Value::as_bool).unwrap_or(false);
            format!("{name}={value}{}", if ecert { ":ecert" } else { "" })
        })
        .collect();
    let max = id
        .get("max_enrollments")
        .map(Value::to_string)
        .unwrap_or_default();
    format!(
        "Name: {}, Type: {}, Affiliation: {}, Max Enrollments: {max}, Attributes: [{}]",
        s("id"),
        s("type"),
        s("affiliation"),
        attrs.join(", ")
    )
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("printing JSON")?
    );
    Ok(())
}

async fn run_identity(command: IdentityCommand) -> anyhow::Result<()> {
    match command {
        IdentityCommand::List { common, json } => {
            let (client, signer) = authed(&common)?;
            let result = client.get("identities", Auth::Token(&signer)).await?;
            if json {
                return print_json(&result);
            }
            for id in result
                .get("identities")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{}", identity_line(id));
            }
            Ok(())
        }
        IdentityCommand::Get { id, common, json } => {
            let (client, signer) = authed(&common)?;
            let path = format!("identities/{}", percent_encode(&id));
            let result = client.get(&path, Auth::Token(&signer)).await?;
            if json {
                return print_json(&result);
            }
            println!("{}", identity_line(&result));
            Ok(())
        }
        IdentityCommand::Remove { id, common, force } => {
            let (client, signer) = authed(&common)?;
            let path = with_query(
                &format!("identities/{}", percent_encode(&id)),
                &[("force", force.then_some("true"))],
            );
            client.delete(&path, Auth::Token(&signer)).await?;
            println!("Removed identity {id}");
            Ok(())
        }
    }
}

/// The client and the caller's identity from `--mspdir`.
fn authed(common: &Common) -> anyhow::Result<(CaClient, SigningIdentity)> {
    let url = common.url()?;
    let signer = common.msp().signer()?;
    Ok((common.client(&url)?, signer))
}

/// Prints an affiliation tree, two spaces per level.
fn print_affiliations(node: &Value, depth: usize, out: &mut String) {
    let name = node.get("name").and_then(Value::as_str).unwrap_or_default();
    let depth = if name.is_empty() {
        depth
    } else {
        out.push_str(&format!("{}{name}\n", "  ".repeat(depth)));
        depth + 1
    };
    for child in node
        .get("affiliations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        print_affiliations(child, depth, out);
    }
}

async fn run_affiliation(command: AffiliationCommand) -> anyhow::Result<()> {
    match command {
        AffiliationCommand::List {
            affiliation,
            common,
            json,
        } => {
            let (client, signer) = authed(&common)?;
            let path = match &affiliation {
                Some(name) => format!("affiliations/{}", percent_encode(name)),
                None => "affiliations".to_string(),
            };
            let result = client.get(&path, Auth::Token(&signer)).await?;
            if json {
                return print_json(&result);
            }
            let mut out = String::new();
            print_affiliations(&result, 0, &mut out);
            print!("{out}");
            Ok(())
        }
        AffiliationCommand::Add {
            name,
            common,
            force,
        } => {
            let (client, signer) = authed(&common)?;
            let path = with_query("affiliations", &[("force", force.then_some("true"))]);
            client
                .post(&path, Auth::Token(&signer), json!({ "name": name }))
                .await?;
            println!("Added affiliation {name}");
            Ok(())
        }
        AffiliationCommand::Remove {
            name,
            common,
            force,
        } => {
            let (client, signer) = authed(&common)?;
            let path = with_query(
                &format!("affiliations/{}", percent_encode(&name)),
                &[("force", force.then_some("true"))],
            );
            client.delete(&path, Auth::Token(&signer)).await?;
            println!("Removed affiliation {name}");
            Ok(())
        }
    }
}

async fn run_certificate(command: CertificateCommand) -> anyhow::Result<()> {
    let CertificateCommand::List {
        id,
        serial,
        aki,
        notrevoked,
        notexpired,
        store,
        common,
    } = command;
    let (client, signer) = authed(&common)?;
    let serial = serial
        .map(|s| normalize_hex("--serial", &s, true))
        .transpose()?;
    let aki = aki.map(|a| normalize_hex("--aki", &a, false)).transpose()?;
    let path = with_query(
        "certificates",
        &[
            ("id", id.as_deref()),
            ("serial", serial.as_deref()),
            ("aki", aki.as_deref()),
            ("notrevoked", notrevoked.then_some("true")),
            ("notexpired", notexpired.then_some("true")),
        ],
    );
    let result = client.get(&path, Auth::Token(&signer)).await?;
    let certs: Vec<String> = result
        .get("certs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        // Fabric CA sends `{"PEM": ...}` objects; bare strings are taken too.
        .filter_map(|c| {
            c.as_str()
                .or_else(|| c.get("PEM").and_then(Value::as_str))
                .map(str::to_string)
        })
        .collect();
    if certs.is_empty() {
        println!("No certificates");
    }
    for pem in &certs {
        let summary = summarize(pem)?;
        println!(
            "Serial: {}, Subject: {}, Not after: {}",
            summary.serial, summary.subject, summary.not_after
        );
        if let Some(dir) = &store {
            let file = dir.join(format!("{}-{}.pem", summary.cn, summary.serial));
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&file, pem))
                .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(())
}

struct CertSummary {
    serial: String,
    subject: String,
    cn: String,
    not_after: String,
}

fn summarize(pem: &str) -> anyhow::Result<CertSummary> {
    let blocks = twill_crypto::pem::parse_pem_blocks(pem)
        .map_err(|e| anyhow!("the CA listed a certificate that is not PEM: {e}"))?;
    let der = blocks
        .into_iter()
        .map(|(_, der)| der)
        .next()
        .ok_or_else(|| anyhow!("the CA listed an empty certificate"))?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| anyhow!("the CA listed a bad certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("cert")
        .replace(['/', '\\'], "_");
    Ok(CertSummary {
        serial: hex::encode(cert.raw_serial()),
        subject: cert.subject().to_string(),
        cn,
        not_after: cert.validity().not_after.to_string(),
    })
}

async fn run_getcainfo(common: Common) -> anyhow::Result<()> {
    let url = common.url()?;
    let client = common.client(&url)?;
    let msp = common.msp();
    let info = client.cainfo(None).await?;
    let chain = CaChain::from_base64(&info.ca_chain, &format!("the CA chain from {url}"))?;
    let stored = msp.store_chain(&chain, &common.ca_file(&url), ChainKind::Msp)?;
    let name = if info.ca_name.is_empty() {
        "(default)"
    } else {
        info.ca_name.as_str()
    };
    println!("CA {name} at {url}, version {}", info.version);
    for path in [&stored.root, &stored.intermediate].into_iter().flatten() {
        println!("Stored {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use hyper::Method;

    #[test]
    fn token_signs_method_uri_body_and_cert() {
        let key = SigningKey::generate().unwrap();
        let (cert, _) = mspdir::tests::issue(&key, "admin", &["client"]);
        let identity = twill_msp::Identity::from_pem("", cert.as_bytes()).unwrap();
        let signer = SigningIdentity::try_new(identity, key).unwrap();
        let uri = "/api/v1/identities?ca=ca-org1";
        let token = client::auth_token(&signer, &Method::GET, uri, b"").unwrap();
        let (b64cert, b64sig) = token.split_once('.').unwrap();
        assert_eq!(STANDARD.decode(b64cert).unwrap(), cert.as_bytes());
        // A known vector: the string for GET with no body.
        let payload = client::token_payload(&Method::GET, uri, b"", b64cert);
        assert_eq!(
            payload,
            format!("GET.L2FwaS92MS9pZGVudGl0aWVzP2NhPWNhLW9yZzE=..{b64cert}")
        );
        let sig = STANDARD.decode(b64sig).unwrap();
        assert!(twill_crypto::is_low_s(&sig).unwrap());
        signer.identity().verify(payload.as_bytes(), &sig).unwrap();
        let post = client::token_payload(&Method::POST, "/api/v1/register", b"{}", "Yw==");
        assert_eq!(post, "POST.L2FwaS92MS9yZWdpc3Rlcg==.e30=.Yw==");
    }

    #[test]
    fn id_attrs_parse_with_ecert_and_quotes() {
        let attrs =
            parse_id_attrs(r#"a=b:ecert, c=d,hf.Registrar.Roles="peer,client",e=x:y"#).unwrap();
        assert_eq!(
            attrs,
            vec![
                ("a".into(), "b".into(), true),
                ("c".into(), "d".into(), false),
                ("hf.Registrar.Roles".into(), "peer,client".into(), false),
                ("e".into(), "x:y".into(), false),
            ]
        );
        assert!(parse_id_attrs("novalue").is_err());
        assert!(parse_id_attrs("a=\"b").is_err());
        assert!(parse_id_attrs("").unwrap().is_empty());
    }

    #[test]
    fn enrollment_attrs_parse() {
        assert_eq!(
            AttrReq::parse("email:opt").unwrap(),
            AttrReq {
                name: "email".into(),
                optional: true
            }
        );
        assert!(!AttrReq::parse("role").unwrap().optional);
        assert!(AttrReq::parse("role:maybe").is_err());
        let opts = EnrollOptions {
            attr_reqs: Some(vec![AttrReq::parse("a:opt").unwrap()]),
            profile: Some("tls".into()),
            ..EnrollOptions::default()
        };
        assert_eq!(
            opts.body("CSR".into()),
            json!({"certificate_request": "CSR", "profile": "tls",
                   "attr_reqs": [{"name": "a", "optional": true}]})
        );
    }

    /// The bodies deserialize into the server's own request types, and the
    /// token string is the one the server rebuilds.
    #[test]
    fn requests_match_twill_ca_api() {
        use twill_ca::api;
        let opts = EnrollOptions {
            attr_reqs: Some(vec![AttrReq::parse("a:opt").unwrap()]),
            profile: Some("tls".into()),
            ..EnrollOptions::default()
        };
        let enroll: api::EnrollRequest = serde_json::from_value(opts.body("CSR".into())).unwrap();
        assert_eq!(enroll.certificate_request, "CSR");
        assert_eq!(enroll.profile.as_deref(), Some("tls"));
        let reqs = enroll.attr_reqs.unwrap();
        assert_eq!((reqs[0].name.as_str(), reqs[0].optional), ("a", true));

        let reg = Registration {
            id: "u1".into(),
            secret: Some("pw".into()),
            r#type: "peer".into(),
            affiliation: "org1.department1".into(),
            attrs: parse_id_attrs("x=y:ecert").unwrap(),
            max_enrollments: -1,
        };
        let parsed: api::RegisterRequest = serde_json::from_value(reg.body()).unwrap();
        assert_eq!(parsed.id, "u1");
        assert_eq!(parsed.id_type.as_deref(), Some("peer"));
        assert_eq!(parsed.secret.as_deref(), Some("pw"));
        assert_eq!(parsed.affiliation.as_deref(), Some("org1.department1"));
        assert_eq!(parsed.max_enrollments, -1);
        assert_eq!(
            (
                parsed.attrs[0].name.as_str(),
                parsed.attrs[0].value.as_str(),
                parsed.attrs[0].ecert
            ),
            ("x", "y", true)
        );

        let revoke = RevokeFlags {
            name: None,
            serial: Some("00AB".into()),
            aki: Some("CD".into()),
            reason: Some("keycompromise".into()),
            gencrl: true,
        };
        let parsed: api::RevokeRequest = serde_json::from_value(revoke.body().unwrap()).unwrap();
        assert_eq!(parsed.id, None);
        assert_eq!(parsed.serial.as_deref(), Some("ab"));
        assert_eq!(parsed.aki.as_deref(), Some("cd"));
        assert!(parsed.gencrl);

        let cert = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let b64cert = STANDARD.encode(cert);
        for (method, uri, body) in [
            (Method::GET, "/api/v1/identities?ca=ca-org1", &b""[..]),
            (Method::POST, "/api/v1/register", &b"{\"id\":\"u\"}"[..]),
        ] {
            assert_eq!(
                client::token_payload(&method, uri, body, &b64cert),
                api::token_message(method.as_str(), uri, body, cert)
            );
        }
    }

    #[test]
    fn hex_is_normalized() {
        assert_eq!(normalize_hex("-s", "0x00AB:cd", true).unwrap(), "abcd");
        assert_eq!(normalize_hex("-a", "00AB", false).unwrap(), "00ab");
        let e = normalize_hex("-s/--revoke.serial", "zz", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("-s/--revoke.serial"), "{e}");
    }

    #[test]
    fn affiliation_tree_prints_nested() {
        let tree = json!({"name": "", "affiliations": [
            {"name": "org1", "affiliations": [{"name": "org1.department1"}]},
            {"name": "org2"}]});
        let mut out = String::new();
        print_affiliations(&tree, 0, &mut out);
        assert_eq!(out, "org1\n  org1.department1\norg2\n");
    }
}
