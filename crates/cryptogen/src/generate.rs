//! Writing an organisation's material in Fabric's directory layout.
//!
//! For an organisation with domain `D` (under `peerOrganizations/` or
//! `ordererOrganizations/`):
//!
//! ```text
//! D/
//!   ca/ca.D-cert.pem, ca/priv_sk              signing root CA
//!   tlsca/tlsca.D-cert.pem, tlsca/priv_sk     TLS root CA
//!   msp/                                      the organisation's MSP
//!     cacerts/ca.D-cert.pem
//!     tlscacerts/tlsca.D-cert.pem
//!     config.yaml                             (NodeOUs on)
//!     admincerts/Admin@D-cert.pem             (NodeOUs off)
//!   peers/<cn>/ or orderers/<cn>/             one per node
//!     msp/{cacerts,tlscacerts,keystore/priv_sk,signcerts/<cn>-cert.pem,
//!          config.yaml | admincerts/Admin@D-cert.pem}
//!     tls/{ca.crt, server.crt, server.key}
//!   users/Admin@D/, users/User1@D/, ...       one per user
//!     msp/{... as for nodes; admincerts holds the user's own cert}
//!     tls/{ca.crt, client.crt, client.key}
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::OrgPlan;
use crate::pki::{Ca, Issued};
use crate::{CryptoConfig, CryptogenError, Result};

pub use crate::config::OrgKind;

/// File name Fabric's cryptogen gives every private key.
const KEY_FILE: &str = "priv_sk";

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    /// The output directory given to [`generate`].
    pub output: PathBuf,
    /// One entry per organisation, orderer organisations first, each in
    /// config order.
    pub orgs: Vec<OrgReport>,
}

impl GenerateReport {
    /// Every file written, across all organisations.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.orgs
            .iter()
            .flat_map(|org| org.files.iter().map(PathBuf::as_path))
    }
}

/// What was written for one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgReport {
    /// Orderer or peer organisation.
    pub kind: OrgKind,
    /// The organisation's `Name` from the config.
    pub name: String,
    /// The organisation's `Domain`.
    pub domain: String,
    /// The organisation's directory, e.g. `<output>/peerOrganizations/org1.example.com`.
    pub dir: PathBuf,
    /// Common names of the nodes (peers or orderers) created.
    pub nodes: Vec<String>,
    /// Common names of the users created, `Admin@<domain>` first.
    pub users: Vec<String>,
    /// Every file written for this organisation, in writing order.
    pub files: Vec<PathBuf>,
}

/// Generates crypto material for every organisation in `config` under
/// `output`, in Fabric's `cryptogen` layout.
///
/// Each organisation's directory is replaced as a whole: it is built in a
/// scratch directory beside its final place and swapped in at the end, so a
/// re-run never mixes old and new material and a failed run leaves the old
/// material as it was. Organisations already under `output` that the config
/// does not mention are not touched.
///
/// Private keys are written PKCS#8 PEM with mode 0600 (on Unix).
pub fn generate(config: &CryptoConfig, output: &Path) -> Result<GenerateReport> {
    let plans = config
        .plan()
        .map_err(|issue| issue.into_error(None, &Default::default()))?;
    create_dir_all(output)?;
    let orgs = plans
        .iter()
        .map(|plan| generate_org(plan, output))
        .collect::<Result<Vec<_>>>()?;
    Ok(GenerateReport {
        output: output.to_path_buf(),
        orgs,
    })
}

fn generate_org(plan: &OrgPlan, output: &Path) -> Result<OrgReport> {
    let parent = output.join(plan.kind.dir_name());
    create_dir_all(&parent)?;
    let final_dir = parent.join(&plan.domain);
    // Domains never start with '.', so this cannot collide with another
    // organisation's directory.
    let staging = parent.join(format!(".{}.partial", plan.domain));
    remove_any(&staging)?;

    let mut writer = OrgWriter {
        staging: staging.clone(),
        final_dir: final_dir.clone(),
        files: Vec::new(),
    };
    let result = write_org(plan, &mut writer).and_then(|()| {
        remove_any(&final_dir)?;
        fs::rename(&staging, &final_dir).map_err(|source| CryptogenError::Io {
            path: final_dir.clone(),
            source,
        })
    });
    if let Err(err) = result {
        // Best effort: the error being returned matters more than leftovers,
        // and the next run clears the scratch directory anyway.
        let _ = fs::remove_dir_all(&staging);
        return Err(err);
    }

    let mut users = vec![plan.admin.clone()];
    users.extend(plan.users.iter().cloned());
    Ok(OrgReport {
        kind: plan.kind,
        name: plan.name.clone(),
        domain: plan.domain.clone(),
        dir: final_dir,
        nodes: plan.nodes.iter().map(|n| n.common_name.clone()).collect(),
        users,
        files: writer.files,
    })
}

/// The NodeOU a certificate carries, when NodeOUs are enabled.
#[derive(Debug, Clone, Copy)]
enum Role {
    Client,
    Peer,
    Admin,
    Orderer,
}

impl Role {
    fn ou(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Peer => "peer",
            Role::Admin => "admin",
            Role::Orderer => "orderer",
        }
    }
}

/// Which side of TLS an identity's certificate is named for.
#[derive(Debug, Clone, Copy)]
enum TlsSide {
    Server,
    Client,
}

struct Cas {
    sign: Ca,
    tls: Ca,
}

fn write_org(plan: &OrgPlan, w: &mut OrgWriter) -> Result<()> {
    let cas = Cas {
        sign: Ca::new(&plan.ca, &plan.domain, &plan.ca.common_name)?,
        tls: Ca::new(&plan.ca, &plan.domain, &plan.ca.tls_common_name)?,
    };
    w.write_public(
        &format!("ca/{}", cas.sign.cert_file_name()),
        &cas.sign.cert_pem,
    )?;
    w.write_private(&format!("ca/{KEY_FILE}"), &cas.sign.key_pem())?;
    w.write_public(
        &format!("tlsca/{}", cas.tls.cert_file_name()),
        &cas.tls.cert_pem,
    )?;
    w.write_private(&format!("tlsca/{KEY_FILE}"), &cas.tls.key_pem())?;

    // The admin is issued first because, without NodeOUs, every node's MSP
    // lists the admin's certificate.
    let role_ou = |role: Role| plan.node_ous.then(|| role.ou());
    let admin = Identity {
        common_name: plan.admin.clone(),
        sign: cas.sign.issue_signing(&plan.admin, role_ou(Role::Admin))?,
        tls: cas.tls.issue_tls(&plan.admin, &[])?,
    };
    let admin_cert = AdminCert {
        file_name: format!("{}-cert.pem", admin.common_name),
        pem: admin.sign.cert_pem.clone(),
    };

    write_verifying_msp(w, "msp", &cas, plan.node_ous, &admin_cert)?;

    let node_role = match plan.kind {
        OrgKind::Orderer => Role::Orderer,
        OrgKind::Peer => Role::Peer,
    };
    for node in &plan.nodes {
        let identity = Identity {
            common_name: node.common_name.clone(),
            sign: cas
                .sign
                .issue_signing(&node.common_name, role_ou(node_role))?,
            tls: cas.tls.issue_tls(&node.common_name, &node.sans)?,
        };
        let base = format!("{}/{}", plan.kind.nodes_dir_name(), node.common_name);
        write_local_msp(
            w,
            &base,
            &cas,
            &identity,
            TlsSide::Server,
            plan.node_ous,
            &admin_cert,
        )?;
    }

    let base = format!("users/{}", admin.common_name);
    let own_cert = admin_cert.clone();
    write_local_msp(
        w,
        &base,
        &cas,
        &admin,
        TlsSide::Client,
        plan.node_ous,
        &own_cert,
    )?;
    for user in &plan.users {
        let identity = Identity {
            common_name: user.clone(),
            sign: cas.sign.issue_signing(user, role_ou(Role::Client))?,
            tls: cas.tls.issue_tls(user, &[])?,
        };
        // Without NodeOUs a user's own MSP names the user as its admin, as
        // Fabric's cryptogen does.
        let own_cert = AdminCert {
            file_name: format!("{user}-cert.pem"),
            pem: identity.sign.cert_pem.clone(),
        };
        let base = format!("users/{user}");
        write_local_msp(
            w,
            &base,
            &cas,
            &identity,
            TlsSide::Client,
            plan.node_ous,
            &own_cert,
        )?;
    }
    Ok(())
}

struct Identity {
    common_name: String,
    sign: Issued,
    tls: Issued,
}

#[derive(Clone)]
struct AdminCert {
    file_name: String,
    pem: String,
}

/// The organisation-level MSP: roots only, no signing identity.
fn write_verifying_msp(
    w: &mut OrgWriter,
    msp: &str,
    cas: &Cas,
    node_ous: bool,
    admin: &AdminCert,
) -> Result<()> {
    w.write_public(
        &format!("{msp}/cacerts/{}", cas.sign.cert_file_name()),
        &cas.sign.cert_pem,
    )?;
    w.write_public(
        &format!("{msp}/tlscacerts/{}", cas.tls.cert_file_name()),
        &cas.tls.cert_pem,
    )?;
    if node_ous {
        w.write_public(
            &format!("{msp}/config.yaml"),
            &node_ous_config(&cas.sign.cert_file_name()),
        )?;
    } else {
        w.write_public(&format!("{msp}/admincerts/{}", admin.file_name), &admin.pem)?;
    }
    Ok(())
}

/// A node's or user's MSP (with its signing identity) and TLS material.
fn write_local_msp(
    w: &mut OrgWriter,
    base: &str,
    cas: &Cas,
    identity: &Identity,
    side: TlsSide,
    node_ous: bool,
    admin: &AdminCert,
) -> Result<()> {
    let msp = format!("{base}/msp");
    write_verifying_msp(w, &msp, cas, node_ous, admin)?;
    w.write_private(
        &format!("{msp}/keystore/{KEY_FILE}"),
        &identity.sign.key_pem,
    )?;
    w.write_public(
        &format!("{msp}/signcerts/{}-cert.pem", identity.common_name),
        &identity.sign.cert_pem,
    )?;

    let tls = format!("{base}/tls");
    let stem = match side {
        TlsSide::Server => "server",
        TlsSide::Client => "client",
    };
    w.write_public(&format!("{tls}/ca.crt"), &cas.tls.cert_pem)?;
    w.write_public(&format!("{tls}/{stem}.crt"), &identity.tls.cert_pem)?;
    w.write_private(&format!("{tls}/{stem}.key"), &identity.tls.key_pem)?;
    Ok(())
}

/// The MSP `config.yaml` enabling NodeOU classification against the
/// organisation's signing CA.
fn node_ous_config(ca_cert_file: &str) -> String {
    let certificate = yaml_scalar(&format!("cacerts/{ca_cert_file}"));
    let mut out = String::from("NodeOUs:\n  Enable: true\n");
    for (key, role) in [
        ("ClientOUIdentifier", Role::Client),
        ("PeerOUIdentifier", Role::Peer),
        ("AdminOUIdentifier", Role::Admin),
        ("OrdererOUIdentifier", Role::Orderer),
    ] {
        out.push_str(&format!(
            "  {key}:\n    Certificate: {certificate}\n    OrganizationalUnitIdentifier: {}\n",
            role.ou()
        ));
    }
    out
}

/// Writes `text` plain when that is unambiguous YAML, else double-quoted.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '@'))
        && !text.starts_with(['-', '@']);
    if plain {
        return text.to_string();
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes files below an organisation's scratch directory while recording
/// the paths they will have once it is moved into place.
struct OrgWriter {
    staging: PathBuf,
    final_dir: PathBuf,
    files: Vec<PathBuf>,
}

impl OrgWriter {
    fn write_public(&mut self, rel: &str, contents: &str) -> Result<()> {
        self.write(rel, contents, false)
    }

    fn write_private(&mut self, rel: &str, contents: &str) -> Result<()> {
        self.write(rel, contents, true)
    }

    fn write(&mut self, rel: &str, contents: &str, private: bool) -> Result<()> {
        let path = self.staging.join(rel);
        if let Some(dir) = path.parent() {
            create_dir_all(dir)?;
        }
        write_file(&path, contents.as_bytes(), private)
            .map_err(|source| CryptogenError::Io { path, source })?;
        self.files.push(self.final_dir.join(rel));
        Ok(())
    }
}

#[cfg(unix)]
fn write_file(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // The mode above only applies to new files, and is masked by the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_file(path: &Path, contents: &[u8], _private: bool) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|source| CryptogenError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes whatever is at `path` (directory tree, file or symlink) if
/// anything is; symlinks are removed, never followed.
fn remove_any(path: &Path) -> Result<()> {
    let io_err = |source| CryptogenError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e)),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io_err),
        Ok(_) => fs::remove_file(path).map_err(io_err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ous_config_matches_fabric_shape() {
        let text = node_ous_config("ca.org1.example.com-cert.pem");
        let expected = "\
NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    Certificate: cacerts/ca.org1.example.com-cert.pem
    OrganizationalUnitIdentifier: orderer
";
        assert_eq!(text, expected);
    }

    #[test]
    fn yaml_scalar_quotes_when_needed() {
        assert_eq!(yaml_scalar("cacerts/a.b-cert.pem"), "cacerts/a.b-cert.pem");
        assert_eq!(yaml_scalar("cacerts/a b: c"), "\"cacerts/a b: c\"");
        assert_eq!(yaml_scalar("a\"b"), "\"a\\\"b\"");
    }
}
