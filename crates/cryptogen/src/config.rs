//! The `crypto-config.yaml` data model, loading and validation.
//!
//! The file format is Fabric's:
//!
//! ```yaml
//! OrdererOrgs:
//!   - Name: Orderer
//!     Domain: example.com
//!     EnableNodeOUs: true
//!     Specs:
//!       - Hostname: orderer0
//!         SANS: [localhost, 127.0.0.1]
//! PeerOrgs:
//!   - Name: Org1
//!     Domain: org1.example.com
//!     EnableNodeOUs: true
//!     CA:
//!       Country: US
//!     Template:
//!       Count: 2
//!       SANS: ["{{.Hostname}}.internal"]
//!     Users:
//!       Count: 1
//! ```
//!
//! Keys are case-sensitive and unknown keys are rejected. Hostnames, common
//! names and SANs may use `{{.Field}}` placeholders:
//!
//! | where | fields | default |
//! | --- | --- | --- |
//! | `Template.Hostname` | `.Prefix` (`peer` or `orderer`), `.Index`, `.Domain` | `{{.Prefix}}{{.Index}}` |
//! | `CommonName` (CA and `Specs`) | `.Hostname`, `.Domain` | `{{.Hostname}}.{{.Domain}}` |
//! | `SANS` (`Specs` and `Template`) | `.Hostname`, `.Domain`, `.CommonName` | none |
//!
//! Following Fabric, some keys are accepted but have no effect: the subject
//! fields (`Country`, ...) and `SANS` in a `Specs` entry, `SANS` under `CA`,
//! and `Users` in an orderer organisation (orderer organisations get only an
//! `Admin` user).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::template::render;
use crate::{CryptogenError, Result};

/// Most nodes or users one organisation may ask for. Far above any real test
/// network; it exists so that a typo such as `Count: 100000000` fails fast
/// instead of generating keys for hours.
pub const MAX_IDENTITIES_PER_ORG: u32 = 10_000;

/// Default subject country of CA certificates (and hence of the leaves).
pub const DEFAULT_COUNTRY: &str = "US";
/// Default subject state or province.
pub const DEFAULT_PROVINCE: &str = "California";
/// Default subject locality.
pub const DEFAULT_LOCALITY: &str = "San Francisco";

const DEFAULT_CA_HOSTNAME: &str = "ca";
const DEFAULT_COMMON_NAME: &str = "{{.Hostname}}.{{.Domain}}";
const DEFAULT_TEMPLATE_HOSTNAME: &str = "{{.Prefix}}{{.Index}}";

/// A whole `crypto-config.yaml`: the orderer and peer organisations to
/// generate material for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptoConfig {
    /// `OrdererOrgs`: organisations that run ordering nodes.
    pub orderer_orgs: Vec<OrgSpec>,
    /// `PeerOrgs`: organisations that run peers.
    pub peer_orgs: Vec<OrgSpec>,
}

/// One organisation (`OrdererOrgs[i]` or `PeerOrgs[i]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgSpec {
    /// `Name`: a label for humans; the output is keyed by `domain`.
    pub name: String,
    /// `Domain`: the organisation's domain, e.g. `org1.example.com`. Names
    /// its output directory and suffixes every node and user name.
    pub domain: String,
    /// `EnableNodeOUs`: classify identities by an OU in their certificate
    /// (`peer`, `orderer`, `admin`, `client`) and write MSP `config.yaml`
    /// files; when off, admins are listed in `admincerts/` instead.
    pub enable_node_ous: bool,
    /// `CA`: naming and subject of the organisation's CAs.
    pub ca: CaSpec,
    /// `Specs`: explicitly named nodes.
    pub specs: Vec<NodeSpec>,
    /// `Template`: nodes named by a counter (`peer0`, `peer1`, ...).
    pub template: Option<NodeTemplate>,
    /// `Users`: how many client users to create besides `Admin`.
    pub users: UsersSpec,
}

/// `CA`: the organisation's signing and TLS root CAs.
///
/// Empty strings count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaSpec {
    /// `Hostname`, default `ca`.
    pub hostname: Option<String>,
    /// `CommonName`, default `{{.Hostname}}.{{.Domain}}`. The TLS CA's
    /// common name is this prefixed with `tls`.
    pub common_name: Option<String>,
    /// `Country` (C), default `US`.
    pub country: Option<String>,
    /// `Province` (ST), default `California`.
    pub province: Option<String>,
    /// `Locality` (L), default `San Francisco`.
    pub locality: Option<String>,
    /// `OrganizationalUnit` (OU); also copied into every issued certificate.
    pub organizational_unit: Option<String>,
    /// `StreetAddress`; also copied into every issued certificate.
    pub street_address: Option<String>,
    /// `PostalCode`; also copied into every issued certificate.
    pub postal_code: Option<String>,
}

/// One entry of `Specs`: a node with an explicit hostname.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSpec {
    /// `Hostname`, e.g. `orderer0`. Required.
    pub hostname: String,
    /// `CommonName`, default `{{.Hostname}}.{{.Domain}}`.
    pub common_name: Option<String>,
    /// `SANS`: extra TLS subject alternative names; entries that parse as IP
    /// addresses become IP SANs, the rest DNS names.
    pub sans: Vec<String>,
}

/// `Template`: `count` nodes named from a counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTemplate {
    /// `Count`: how many nodes.
    pub count: u32,
    /// `Start`: first index, default 0.
    pub start: u32,
    /// `Hostname`, default `{{.Prefix}}{{.Index}}`.
    pub hostname: Option<String>,
    /// `SANS`: extra TLS subject alternative names for every node.
    pub sans: Vec<String>,
}

/// `Users`: client users besides the always-present `Admin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsersSpec {
    /// `Count`: users `User1` .. `User<count>` are created.
    pub count: u32,
}

/// Whether an organisation runs orderers or peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgKind {
    /// An `OrdererOrgs` entry, written under `ordererOrganizations/`.
    Orderer,
    /// A `PeerOrgs` entry, written under `peerOrganizations/`.
    Peer,
}

impl OrgKind {
    /// The directory holding all organisations of this kind.
    pub fn dir_name(self) -> &'static str {
        match self {
            OrgKind::Orderer => "ordererOrganizations",
            OrgKind::Peer => "peerOrganizations",
        }
    }

    /// The directory holding this kind's nodes inside an organisation.
    pub fn nodes_dir_name(self) -> &'static str {
        match self {
            OrgKind::Orderer => "orderers",
            OrgKind::Peer => "peers",
        }
    }

    /// The default `Template.Hostname` prefix, and the NodeOU of its nodes.
    pub fn node_prefix(self) -> &'static str {
        match self {
            OrgKind::Orderer => "orderer",
            OrgKind::Peer => "peer",
        }
    }

    /// The config key listing organisations of this kind.
    pub fn config_key(self) -> &'static str {
        match self {
            OrgKind::Orderer => "OrdererOrgs",
            OrgKind::Peer => "PeerOrgs",
        }
    }
}

impl CryptoConfig {
    /// Checks that the config can be generated: every required field is
    /// present, names are usable as file names and certificate names, all
    /// placeholders resolve, and no two nodes or organisations collide.
    pub fn validate(&self) -> Result<()> {
        self.plan()
            .map(|_| ())
            .map_err(|issue| issue.into_error(None, &LineMap::default()))
    }

    /// Resolves every default and template into the concrete list of
    /// identities to create.
    pub(crate) fn plan(&self) -> std::result::Result<Vec<OrgPlan>, Issue> {
        if self.orderer_orgs.is_empty() && self.peer_orgs.is_empty() {
            return Err(Issue::new(
                "OrdererOrgs",
                "no organisations defined (neither OrdererOrgs nor PeerOrgs has an entry)",
            ));
        }
        let mut plans = Vec::new();
        for (kind, orgs) in [
            (OrgKind::Orderer, &self.orderer_orgs),
            (OrgKind::Peer, &self.peer_orgs),
        ] {
            let mut seen: HashMap<&str, String> = HashMap::new();
            for (index, org) in orgs.iter().enumerate() {
                let path = format!("{}[{index}]", kind.config_key());
                let plan = plan_org(kind, org, &path)?;
                if let Some(first) = seen.insert(org.domain.as_str(), path.clone()) {
                    return Err(Issue::new(
                        format!("{path}.Domain"),
                        format!("duplicate domain {:?}, also used by {first}", org.domain),
                    ));
                }
                plans.push(plan);
            }
        }
        Ok(plans)
    }
}

/// Reads and validates a `crypto-config.yaml` file.
///
/// Errors name the file, and the line and field where possible.
pub fn load_config(path: &Path) -> Result<CryptoConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| CryptogenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_config(&text, &path.display().to_string())
}

/// Parses and validates `crypto-config.yaml` text. `source_name` (usually
/// the file path) prefixes error messages.
pub fn parse_config(yaml: &str, source_name: &str) -> Result<CryptoConfig> {
    let options = serde_saphyr::options! { with_snippet: false };
    let raw: RawConfig = serde_saphyr::from_str_with_options(yaml, options)
        .map_err(|err| yaml_error(&err, source_name))?;
    let mut lines = LineMap::default();
    let config = raw.into_config(&mut lines);
    config
        .plan()
        .map_err(|issue| issue.into_error(Some(source_name), &lines))?;
    Ok(config)
}

fn yaml_error(err: &serde_saphyr::Error, source_name: &str) -> CryptogenError {
    let mut message = err.without_snippet().to_string();
    let location = err.location().filter(|loc| loc.line() > 0);
    if let Some(loc) = location {
        // The parser appends the position in prose; we lead with it instead.
        let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    CryptogenError::Yaml {
        file: source_name.to_string(),
        line: location.map(|loc| loc.line()),
        column: location.map(|loc| loc.column()),
        message,
    }
}

/// A validation problem before it is tied to a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    field: String,
    reason: String,
}

impl Issue {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Issue {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn into_error(self, file: Option<&str>, lines: &LineMap) -> CryptogenError {
        CryptogenError::InvalidConfig {
            file: file.map(str::to_string),
            line: lines.line_for(&self.field),
            field: self.field,
            reason: self.reason,
        }
    }
}

/// Source lines of config nodes, keyed by field path (`PeerOrgs[0].Specs[1]`).
#[derive(Debug, Default)]
pub(crate) struct LineMap(BTreeMap<String, u64>);

impl LineMap {
    fn record(&mut self, path: &str, location: &serde_saphyr::Location) {
        if location.line() > 0 {
            self.0.insert(path.to_string(), location.line());
        }
    }

    /// The line of `field`, or of its nearest recorded ancestor.
    fn line_for(&self, field: &str) -> Option<u64> {
        self.0
            .iter()
            .filter(|(path, _)| {
                field == path.as_str()
                    || field
                        .strip_prefix(path.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .max_by_key(|(path, _)| path.len())
            .map(|(_, line)| *line)
    }
}

/// Identities of one organisation, with every default applied.
#[derive(Debug, Clone)]
pub(crate) struct OrgPlan {
    pub kind: OrgKind,
    pub name: String,
    pub domain: String,
    pub node_ous: bool,
    pub ca: CaPlan,
    pub nodes: Vec<NodePlan>,
    /// Common names of the non-admin users.
    pub users: Vec<String>,
    pub admin: String,
}

/// Resolved CA naming and the subject fields shared by everything it issues.
#[derive(Debug, Clone)]
pub(crate) struct CaPlan {
    pub common_name: String,
    pub tls_common_name: String,
    pub country: String,
    pub province: String,
    pub locality: String,
    pub organizational_unit: Option<String>,
    pub street_address: Option<String>,
    pub postal_code: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct NodePlan {
    pub common_name: String,
    /// TLS SANs in order: common name, hostname, then the configured extras;
    /// duplicates removed.
    pub sans: Vec<San>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn plan_org(kind: OrgKind, org: &OrgSpec, path: &str) -> std::result::Result<OrgPlan, Issue> {
    let domain = org.domain.as_str();
    if domain.is_empty() {
        return Err(Issue::new(format!("{path}.Domain"), "missing field"));
    }
    check_domain(domain).map_err(|reason| Issue::new(format!("{path}.Domain"), reason))?;

    let ca = plan_ca(&org.ca, domain, &format!("{path}.CA"))?;

    let mut nodes: Vec<NodePlan> = Vec::new();
    let mut node_paths: HashMap<String, String> = HashMap::new();
    let mut add_node = |node: NodePlan, node_path: String| {
        if let Some(first) = node_paths.insert(node.common_name.clone(), node_path.clone()) {
            return Err(Issue::new(
                node_path,
                format!(
                    "duplicate node {:?}, also produced by {first}",
                    node.common_name
                ),
            ));
        }
        nodes.push(node);
        Ok(())
    };

    if let Some(template) = &org.template {
        let tpath = format!("{path}.Template");
        if template.count > MAX_IDENTITIES_PER_ORG {
            return Err(Issue::new(
                format!("{tpath}.Count"),
                format!(
                    "{} is more than the limit of {MAX_IDENTITIES_PER_ORG}",
                    template.count
                ),
            ));
        }
        let pattern = template
            .hostname
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(DEFAULT_TEMPLATE_HOSTNAME);
        for i in 0..template.count {
            let index = template
                .start
                .checked_add(i)
                .ok_or_else(|| Issue::new(format!("{tpath}.Start"), "Start + Count overflows"))?;
            let index = index.to_string();
            let hostname = render(
                pattern,
                &[
                    ("Prefix", kind.node_prefix()),
                    ("Index", &index),
                    ("Domain", domain),
                ],
            )
            .map_err(|reason| Issue::new(format!("{tpath}.Hostname"), reason))?;
            let node = plan_node(&hostname, None, &template.sans, domain, &tpath)?;
            add_node(node, tpath.clone())?;
        }
    }

    for (j, spec) in org.specs.iter().enumerate() {
        let spath = format!("{path}.Specs[{j}]");
        if spec.hostname.is_empty() {
            return Err(Issue::new(format!("{spath}.Hostname"), "missing field"));
        }
        let node = plan_node(
            &spec.hostname,
            spec.common_name.as_deref(),
            &spec.sans,
            domain,
            &spath,
        )?;
        add_node(node, spath)?;
    }

    // Fabric gives orderer organisations only an Admin user.
    let user_count = match kind {
        OrgKind::Orderer => 0,
        OrgKind::Peer => org.users.count,
    };
    if user_count > MAX_IDENTITIES_PER_ORG {
        return Err(Issue::new(
            format!("{path}.Users.Count"),
            format!("{user_count} is more than the limit of {MAX_IDENTITIES_PER_ORG}"),
        ));
    }
    let users = (1..=user_count)
        .map(|i| format!("User{i}@{domain}"))
        .collect();

    Ok(OrgPlan {
        kind,
        name: org.name.clone(),
        domain: domain.to_string(),
        node_ous: org.enable_node_ous,
        ca,
        nodes,
        users,
        admin: format!("Admin@{domain}"),
    })
}

fn plan_ca(ca: &CaSpec, domain: &str, path: &str) -> std::result::Result<CaPlan, Issue> {
    let hostname = non_empty(&ca.hostname).unwrap_or(DEFAULT_CA_HOSTNAME);
    let common_name = render(
        non_empty(&ca.common_name).unwrap_or(DEFAULT_COMMON_NAME),
        &[("Hostname", hostname), ("Domain", domain)],
    )
    .map_err(|reason| Issue::new(format!("{path}.CommonName"), reason))?;
    check_file_name(&common_name)
        .map_err(|reason| Issue::new(format!("{path}.CommonName"), reason))?;
    Ok(CaPlan {
        tls_common_name: format!("tls{common_name}"),
        common_name,
        country: non_empty(&ca.country)
            .unwrap_or(DEFAULT_COUNTRY)
            .to_string(),
        province: non_empty(&ca.province)
            .unwrap_or(DEFAULT_PROVINCE)
            .to_string(),
        locality: non_empty(&ca.locality)
            .unwrap_or(DEFAULT_LOCALITY)
            .to_string(),
        organizational_unit: non_empty(&ca.organizational_unit).map(str::to_string),
        street_address: non_empty(&ca.street_address).map(str::to_string),
        postal_code: non_empty(&ca.postal_code).map(str::to_string),
    })
}

fn plan_node(
    hostname: &str,
    common_name: Option<&str>,
    extra_sans: &[String],
    domain: &str,
    path: &str,
) -> std::result::Result<NodePlan, Issue> {
    check_dns_name(hostname).map_err(|reason| Issue::new(format!("{path}.Hostname"), reason))?;
    let cn_pattern = common_name
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_COMMON_NAME);
    let common_name = render(cn_pattern, &[("Hostname", hostname), ("Domain", domain)])
        .map_err(|reason| Issue::new(format!("{path}.CommonName"), reason))?;
    check_file_name(&common_name)
        .and_then(|()| check_dns_name(&common_name))
        .map_err(|reason| Issue::new(format!("{path}.CommonName"), reason))?;

    let mut sans = vec![San::Dns(common_name.clone())];
    let mut push = |san: San| {
        if !sans.contains(&san) {
            sans.push(san);
        }
    };
    push(San::Dns(hostname.to_string()));
    for (k, raw) in extra_sans.iter().enumerate() {
        let field = format!("{path}.SANS[{k}]");
        let value = render(
            raw,
            &[
                ("Hostname", hostname),
                ("Domain", domain),
                ("CommonName", &common_name),
            ],
        )
        .map_err(|reason| Issue::new(field.clone(), reason))?;
        match value.parse::<IpAddr>() {
            Ok(ip) => push(San::Ip(ip)),
            Err(_) => {
                check_dns_name(&value).map_err(|reason| Issue::new(field, reason))?;
                push(San::Dns(value));
            }
        }
    }
    Ok(NodePlan { common_name, sans })
}

/// Domains name directories that are deleted and recreated, so they must be
/// a single, ordinary path component.
fn check_domain(domain: &str) -> std::result::Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !domain.chars().all(allowed) {
        return Err(format!(
            "invalid domain {domain:?}: only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(format!(
            "invalid domain {domain:?}: labels must not be empty"
        ));
    }
    Ok(())
}

/// Common names become file and directory names.
fn check_file_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "{name:?} cannot be used as a file name (no '/', '\\', control characters, '.' or '..')"
        ));
    }
    Ok(())
}

/// DNS SANs are IA5 strings: ASCII only, and without spaces in practice.
fn check_dns_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if !name.is_ascii()
        || name
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} is not usable as a DNS name (ASCII without spaces required)"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Wire format. Everything is optional here so that an explicit `null` is
// accepted wherever Fabric accepts an omitted key; required fields are
// checked afterwards so that the error can name the field's full path.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawConfig {
    orderer_orgs: Option<Vec<Spanned<RawOrg>>>,
    peer_orgs: Option<Vec<Spanned<RawOrg>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawOrg {
    name: Option<String>,
    domain: Option<Spanned<String>>,
    #[serde(rename = "EnableNodeOUs")]
    enable_node_ous: Option<bool>,
    #[serde(rename = "CA")]
    ca: Option<Spanned<RawNodeSpec>>,
    specs: Option<Vec<Spanned<RawNodeSpec>>>,
    template: Option<Spanned<RawTemplate>>,
    users: Option<Spanned<RawUsers>>,
}

/// Fabric uses one node-spec shape for both `CA` and `Specs` entries, so
/// both accept the same keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawNodeSpec {
    hostname: Option<String>,
    common_name: Option<String>,
    country: Option<String>,
    province: Option<String>,
    locality: Option<String>,
    organizational_unit: Option<String>,
    street_address: Option<String>,
    postal_code: Option<String>,
    #[serde(rename = "SANS")]
    sans: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawTemplate {
    count: Option<u32>,
    start: Option<u32>,
    hostname: Option<String>,
    #[serde(rename = "SANS")]
    sans: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawUsers {
    count: Option<u32>,
}

impl RawConfig {
    fn into_config(self, lines: &mut LineMap) -> CryptoConfig {
        let mut convert = |kind: OrgKind, orgs: Option<Vec<Spanned<RawOrg>>>| {
            orgs.unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, org)| {
                    let path = format!("{}[{i}]", kind.config_key());
                    lines.record(&path, &org.referenced);
                    org.value.into_org(&path, lines)
                })
                .collect::<Vec<_>>()
        };
        let orderer_orgs = convert(OrgKind::Orderer, self.orderer_orgs);
        let peer_orgs = convert(OrgKind::Peer, self.peer_orgs);
        CryptoConfig {
            orderer_orgs,
            peer_orgs,
        }
    }
}

impl RawOrg {
    fn into_org(self, path: &str, lines: &mut LineMap) -> OrgSpec {
        let domain = match self.domain {
            Some(domain) => {
                lines.record(&format!("{path}.Domain"), &domain.referenced);
                domain.value
            }
            None => String::new(),
        };
        let ca = match self.ca {
            Some(ca) => {
                lines.record(&format!("{path}.CA"), &ca.referenced);
                let ca = ca.value;
                CaSpec {
                    hostname: ca.hostname,
                    common_name: ca.common_name,
                    country: ca.country,
                    province: ca.province,
                    locality: ca.locality,
                    organizational_unit: ca.organizational_unit,
                    street_address: ca.street_address,
                    postal_code: ca.postal_code,
                }
            }
            None => CaSpec::default(),
        };
        let specs = self
            .specs
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(j, spec)| {
                lines.record(&format!("{path}.Specs[{j}]"), &spec.referenced);
                let spec = spec.value;
                NodeSpec {
                    hostname: spec.hostname.unwrap_or_default(),
                    common_name: spec.common_name,
                    sans: spec.sans.unwrap_or_default(),
                }
            })
            .collect();
        let template = self.template.map(|template| {
            lines.record(&format!("{path}.Template"), &template.referenced);
            let template = template.value;
            NodeTemplate {
                count: template.count.unwrap_or(0),
                start: template.start.unwrap_or(0),
                hostname: template.hostname,
                sans: template.sans.unwrap_or_default(),
            }
        });
        let users = match self.users {
            Some(users) => {
                lines.record(&format!("{path}.Users"), &users.referenced);
                UsersSpec {
                    count: users.value.count.unwrap_or(0),
                }
            }
            None => UsersSpec::default(),
        };
        OrgSpec {
            name: self.name.unwrap_or_default(),
            domain,
            enable_node_ous: self.enable_node_ous.unwrap_or(false),
            ca,
            specs,
            template,
            users,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer0
        SANS: [localhost, 127.0.0.1, "{{.Hostname}}.internal"]
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    CA:
      Hostname: myca
      Country: NL
      OrganizationalUnit: Research
    Template:
      Count: 2
      Start: 5
      SANS: ["{{.CommonName}}.alt"]
    Users:
      Count: 3
"#;

    #[test]
    fn parses_fabric_format() {
        let config = parse_config(SAMPLE, "sample.yaml").unwrap();
        assert_eq!(config.orderer_orgs.len(), 1);
        let orderer = &config.orderer_orgs[0];
        assert_eq!(orderer.name, "Orderer");
        assert_eq!(orderer.domain, "example.com");
        assert!(orderer.enable_node_ous);
        assert_eq!(orderer.specs[0].hostname, "orderer0");
        assert_eq!(orderer.specs[0].sans.len(), 3);
        let org1 = &config.peer_orgs[0];
        assert!(!org1.enable_node_ous);
        assert_eq!(org1.ca.hostname.as_deref(), Some("myca"));
        assert_eq!(org1.ca.country.as_deref(), Some("NL"));
        assert_eq!(org1.template.as_ref().map(|t| t.count), Some(2));
        assert_eq!(org1.users.count, 3);
    }

    #[test]
    fn plan_applies_defaults_and_templates() {
        let config = parse_config(SAMPLE, "sample.yaml").unwrap();
        let plans = config.plan().unwrap();
        let orderer = &plans[0];
        assert_eq!(orderer.kind, OrgKind::Orderer);
        assert_eq!(orderer.ca.common_name, "ca.example.com");
        assert_eq!(orderer.ca.tls_common_name, "tlsca.example.com");
        assert_eq!(orderer.ca.country, "US");
        assert_eq!(orderer.nodes[0].common_name, "orderer0.example.com");
        assert_eq!(
            orderer.nodes[0].sans,
            vec![
                San::Dns("orderer0.example.com".into()),
                San::Dns("orderer0".into()),
                San::Dns("localhost".into()),
                San::Ip("127.0.0.1".parse().unwrap()),
                San::Dns("orderer0.internal".into()),
            ]
        );
        assert!(orderer.users.is_empty());
        assert_eq!(orderer.admin, "Admin@example.com");

        let org1 = &plans[1];
        assert_eq!(org1.ca.common_name, "myca.org1.example.com");
        assert_eq!(org1.ca.tls_common_name, "tlsmyca.org1.example.com");
        assert_eq!(org1.ca.country, "NL");
        assert_eq!(org1.ca.organizational_unit.as_deref(), Some("Research"));
        let names: Vec<_> = org1.nodes.iter().map(|n| n.common_name.as_str()).collect();
        assert_eq!(names, ["peer5.org1.example.com", "peer6.org1.example.com"]);
        assert!(org1.nodes[0]
            .sans
            .contains(&San::Dns("peer5.org1.example.com.alt".into())));
        assert_eq!(
            org1.users,
            [
                "User1@org1.example.com",
                "User2@org1.example.com",
                "User3@org1.example.com"
            ]
        );
    }

    #[test]
    fn missing_domain_names_field_and_line() {
        let yaml = "PeerOrgs:\n  - Name: Org1\n    EnableNodeOUs: true\n";
        let err = parse_config(yaml, "crypto-config.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "crypto-config.yaml:2: PeerOrgs[0].Domain: missing field"
        );
    }

    #[test]
    fn rejects_unsafe_domains() {
        for domain in ["../evil", "a/b", ".hidden", "a..b", "x y"] {
            let yaml = format!("PeerOrgs:\n  - Domain: {domain:?}\n");
            let err = parse_config(&yaml, "c.yaml").unwrap_err();
            assert!(
                err.to_string().contains("PeerOrgs[0].Domain"),
                "{domain}: {err}"
            );
        }
    }

    #[test]
    fn rejects_duplicates() {
        let yaml = "PeerOrgs:\n  - Domain: a.com\n  - Domain: a.com\n";
        let err = parse_config(yaml, "c.yaml").unwrap_err().to_string();
        assert!(
            err.contains("PeerOrgs[1].Domain: duplicate domain"),
            "{err}"
        );
        assert!(err.starts_with("c.yaml:3:"), "{err}");

        let yaml = "PeerOrgs:\n  - Domain: a.com\n    Template: {Count: 1}\n    Specs:\n      - Hostname: peer0\n";
        let err = parse_config(yaml, "c.yaml").unwrap_err().to_string();
        assert!(
            err.contains("PeerOrgs[0].Specs[0]: duplicate node"),
            "{err}"
        );
        assert!(err.starts_with("c.yaml:5:"), "{err}");
    }

    #[test]
    fn unknown_placeholder_names_field() {
        let yaml = "PeerOrgs:\n  - Domain: a.com\n    Specs:\n      - Hostname: p\n        SANS: [\"{{.Nope}}\"]\n";
        let err = parse_config(yaml, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("PeerOrgs[0].Specs[0].SANS[0]"), "{err}");
        assert!(err.contains("{{.Nope}}"), "{err}");
    }

    #[test]
    fn empty_config_is_rejected() {
        let err = parse_config("", "c.yaml").unwrap_err().to_string();
        assert!(err.contains("no organisations"), "{err}");
    }

    #[test]
    fn explicit_nulls_are_accepted() {
        let yaml =
            "OrdererOrgs:\nPeerOrgs:\n  - Domain: a.com\n    Specs:\n    Template:\n    Users:\n";
        let config = parse_config(yaml, "c.yaml").unwrap();
        assert_eq!(config.peer_orgs[0].domain, "a.com");
    }

    #[test]
    fn validate_works_without_source() {
        let config = CryptoConfig {
            peer_orgs: vec![OrgSpec::default()],
            ..CryptoConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert_eq!(err, "PeerOrgs[0].Domain: missing field");
    }

    #[test]
    fn count_limit() {
        let yaml = "PeerOrgs:\n  - Domain: a.com\n    Users: {Count: 4000000000}\n";
        let err = parse_config(yaml, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("PeerOrgs[0].Users.Count"), "{err}");
    }
}
