//! What a package says about how to start its chaincode: `connection.json`
//! for `ccaas`, `run.json` for `process`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::archive::{normalize_path, scan_code_with_file, EntryKind};
use crate::error::{LifecycleError, Result};
use crate::metadata::{PackageType, TYPE_CCAAS, TYPE_PROCESS};
use crate::parse::ParsedPackage;
use crate::MAX_LAUNCH_FILE_BYTES;

/// The launch file of a `ccaas` package.
pub const CONNECTION_FILE: &str = "connection.json";
/// The launch file of a `process` package.
pub const RUN_FILE: &str = "run.json";

/// The dial timeout used when `connection.json` gives none (or zero), as in
/// Fabric.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// How the peer is to reach or start a package's chaincode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchSpec {
    /// Dial a chaincode server (`ccaas` packages).
    Ccaas(Connection),
    /// Unpack the code and run a program from it (`process` packages).
    Process(RunSpec),
    /// A type Twill cannot launch yet; holds the type name.
    Other(String),
}

/// The contents of a `ccaas` package's `connection.json`.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    /// `host:port` of the chaincode server.
    pub address: String,
    /// How long to wait when dialing; [`DEFAULT_DIAL_TIMEOUT`] when absent
    /// or zero.
    pub dial_timeout: Duration,
    /// Whether to dial with TLS.
    pub tls_required: bool,
    /// Whether the server requires a client certificate (only meaningful
    /// with TLS).
    pub client_auth_required: bool,
    /// PEM private key for client authentication.
    pub client_key: Option<String>,
    /// PEM certificate for client authentication.
    pub client_cert: Option<String>,
    /// PEM CA certificate(s) to verify the server with.
    pub root_cert: Option<String>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("dial_timeout", &self.dial_timeout)
            .field("tls_required", &self.tls_required)
            .field("client_auth_required", &self.client_auth_required)
            .field(
                "client_key",
                &self.client_key.as_ref().map(|_| "<redacted>"),
            )
            .field("client_cert", &self.client_cert)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

/// The contents of a `process` package's `run.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// The program to run. A relative path names a regular file or symlink
    /// inside the code archive (normalized, e.g. `./bin/cc` reads as
    /// `bin/cc`) and is resolved against the unpack directory; an absolute
    /// path names a program on the peer's host. There is no `PATH` lookup.
    pub command: String,
    /// Arguments, not including the program name.
    pub args: Vec<String>,
    /// Environment variables to set.
    pub env: BTreeMap<String, String>,
}

impl RunSpec {
    /// Whether [`command`](Self::command) is inside the package.
    pub fn is_packaged(&self) -> bool {
        !self.command.starts_with('/')
    }

    /// The program's path once the code is unpacked into `unpack_dir`.
    pub fn program_path(&self, unpack_dir: &Path) -> PathBuf {
        if self.is_packaged() {
            unpack_dir.join(&self.command)
        } else {
            PathBuf::from(&self.command)
        }
    }
}

/// Reads the launch file of a package, according to its type.
///
/// `ccaas` packages need a regular `connection.json` at the root of
/// `code.tar.gz` (other content, such as Fabric's `metadata/` directory, is
/// ignored); `process` packages need `run.json`, and a relative `command`
/// must name a file of the archive, executable if it is a regular file.
/// Other types give [`LaunchSpec::Other`].
pub fn launch_spec(package: &ParsedPackage) -> Result<LaunchSpec> {
    match package.package_type() {
        PackageType::Ccaas => {
            let json = read_launch_file(package, TYPE_CCAAS, CONNECTION_FILE)?.1;
            Ok(LaunchSpec::Ccaas(parse_connection(&json)?))
        }
        PackageType::Process => {
            let (entries, json) = read_launch_file(package, TYPE_PROCESS, RUN_FILE)?;
            let mut spec = parse_run_spec(&json)?;
            if spec.is_packaged() {
                let invalid = |reason: &str| LifecycleError::InvalidLaunchFile {
                    file: RUN_FILE,
                    field: Some("command".to_string()),
                    reason: reason.to_string(),
                };
                let path = normalize_path(spec.command.as_bytes())
                    .map_err(|_| invalid("a relative command may not contain `..`"))?
                    .ok_or_else(|| invalid("the command names no file"))?;
                match entries.iter().find(|e| e.path == path).map(|e| &e.kind) {
                    Some(EntryKind::File { mode, .. }) if mode & 0o111 == 0 => {
                        return Err(invalid(&format!(
                            "{path} is not executable in code.tar.gz (mode {mode:o})"
                        )))
                    }
                    Some(EntryKind::File { .. } | EntryKind::Symlink { .. }) => {}
                    Some(EntryKind::Dir) => {
                        return Err(invalid(&format!("{path} is a directory in code.tar.gz")))
                    }
                    None => return Err(invalid(&format!("{path} is not in code.tar.gz"))),
                }
                spec.command = path;
            }
            Ok(LaunchSpec::Process(spec))
        }
        PackageType::Other(name) => Ok(LaunchSpec::Other(name)),
    }
}

fn read_launch_file(
    package: &ParsedPackage,
    package_type: &'static str,
    file: &'static str,
) -> Result<(Vec<crate::archive::CodeEntry>, Vec<u8>)> {
    let (entries, data) = scan_code_with_file(&package.code_tar_gz, file, MAX_LAUNCH_FILE_BYTES)?;
    match data {
        Some(data) => Ok((entries, data)),
        None if entries.iter().any(|e| e.path == file) => Err(LifecycleError::InvalidLaunchFile {
            file,
            field: None,
            reason: "not a regular file".to_string(),
        }),
        None => Err(LifecycleError::MissingLaunchFile { package_type, file }),
    }
}

fn launch_error(
    file: &'static str,
    field: Option<&str>,
    reason: impl Into<String>,
) -> LifecycleError {
    LifecycleError::InvalidLaunchFile {
        file,
        field: field.map(str::to_string),
        reason: reason.into(),
    }
}

fn parse_object(file: &'static str, json: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(launch_error(file, None, "expected a JSON object")),
        Err(e) => Err(launch_error(file, None, e.to_string())),
    }
}

/// A string field; `null` and absent read as `None`.
fn opt_string(file: &'static str, map: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(launch_error(
            file,
            Some(field),
            format!("expected a string, found {}", json_kind(other)),
        )),
    }
}

/// A boolean field; `null` and absent read as false.
fn opt_bool(file: &'static str, map: &Map<String, Value>, field: &str) -> Result<bool> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(launch_error(
            file,
            Some(field),
            format!("expected a boolean, found {}", json_kind(other)),
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses the contents of a `connection.json`.
///
/// `address` is required and must be `host:port`. `dial_timeout` is a Go
/// duration string (`"10s"`, `"500ms"`, `"1m30s"`) or a number of
/// nanoseconds. With `tls_required`, `root_cert` is required, and with
/// `client_auth_required` too, `client_key` and `client_cert`. Unknown
/// fields are ignored; empty PEM strings read as absent.
pub fn parse_connection(json: &[u8]) -> Result<Connection> {
    const FILE: &str = CONNECTION_FILE;
    let map = parse_object(FILE, json)?;

    let address = opt_string(FILE, &map, "address")?
        .filter(|a| !a.is_empty())
        .ok_or_else(|| launch_error(FILE, Some("address"), "the chaincode address is required"))?;
    check_address(&address).map_err(|reason| launch_error(FILE, Some("address"), reason))?;

    let dial_timeout = match map.get("dial_timeout") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(Value::String(s)) => parse_go_duration(s).map_err(|reason| {
            launch_error(FILE, Some("dial_timeout"), format!("{s:?}: {reason}"))
        })?,
        Some(Value::Number(n)) => {
            let nanos = n.as_u64().ok_or_else(|| {
                launch_error(
                    FILE,
                    Some("dial_timeout"),
                    format!("{n} is not a non-negative whole number of nanoseconds"),
                )
            })?;
            Duration::from_nanos(nanos)
        }
        Some(other) => {
            return Err(launch_error(
                FILE,
                Some("dial_timeout"),
                format!("expected a duration string, found {}", json_kind(other)),
            ))
        }
    };
    let dial_timeout = if dial_timeout.is_zero() {
        DEFAULT_DIAL_TIMEOUT
    } else {
        dial_timeout
    };

    let tls_required = opt_bool(FILE, &map, "tls_required")?;
    let client_auth_required = opt_bool(FILE, &map, "client_auth_required")?;
    let pem = |field| -> Result<Option<String>> {
        Ok(opt_string(FILE, &map, field)?.filter(|s| !s.is_empty()))
    };
    let client_key = pem("client_key")?;
    let client_cert = pem("client_cert")?;
    let root_cert = pem("root_cert")?;

    if tls_required {
        if client_auth_required && client_key.is_none() {
            return Err(launch_error(
                FILE,
                Some("client_key"),
                "required when tls_required and client_auth_required are true",
            ));
        }
        if client_auth_required && client_cert.is_none() {
            return Err(launch_error(
                FILE,
                Some("client_cert"),
                "required when tls_required and client_auth_required are true",
            ));
        }
        if root_cert.is_none() {
            return Err(launch_error(
                FILE,
                Some("root_cert"),
                "required when tls_required is true",
            ));
        }
    }

    Ok(Connection {
        address,
        dial_timeout,
        tls_required,
        client_auth_required,
        client_key,
        client_cert,
        root_cert,
    })
}

fn check_address(address: &str) -> std::result::Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    if host.is_empty() || host == "[]" {
        return Err(format!("{address:?} has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("{address:?}: an IPv6 host must be in brackets"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{address:?} has no valid port")),
    }
}

/// Parses the contents of a `run.json`, without looking at the package.
///
/// `command` is required; `args` (array of strings) and `env` (object of
/// strings) are optional. No string may contain NUL, environment names may
/// not be empty or contain `=`, and unknown fields are refused, so that a
/// misspelt field is not silently ignored.
pub fn parse_run_spec(json: &[u8]) -> Result<RunSpec> {
    const FILE: &str = RUN_FILE;
    let map = parse_object(FILE, json)?;
    if let Some(unknown) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "command" | "args" | "env"))
    {
        return Err(launch_error(FILE, Some(unknown), "unknown field"));
    }
    let no_nul = |field: &str, s: &str| -> Result<()> {
        if s.contains('\0') {
            Err(launch_error(FILE, Some(field), "contains a NUL character"))
        } else {
            Ok(())
        }
    };

    let command = opt_string(FILE, &map, "command")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| launch_error(FILE, Some("command"), "the command is required"))?;
    no_nul("command", &command)?;

    let args = match map.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut args = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let field = format!("args[{index}]");
                let Value::String(arg) = item else {
                    return Err(launch_error(
                        FILE,
                        Some(&field),
                        format!("expected a string, found {}", json_kind(item)),
                    ));
                };
                no_nul(&field, arg)?;
                args.push(arg.clone());
            }
            args
        }
        Some(other) => {
            return Err(launch_error(
                FILE,
                Some("args"),
                format!("expected an array of strings, found {}", json_kind(other)),
            ))
        }
    };

    let env = match map.get("env") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(vars)) => {
            let mut env = BTreeMap::new();
            for (name, value) in vars {
                let field = format!("env.{name}");
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(launch_error(
                        FILE,
                        Some(&field),
                        "a variable name must be non-empty and free of `=` and NUL",
                    ));
                }
                let Value::String(value) = value else {
                    return Err(launch_error(
                        FILE,
                        Some(&field),
                        format!("expected a string, found {}", json_kind(value)),
                    ));
                };
                no_nul(&field, value)?;
                env.insert(name.clone(), value.clone());
            }
            env
        }
        Some(other) => {
            return Err(launch_error(
                FILE,
                Some("env"),
                format!("expected an object of strings, found {}", json_kind(other)),
            ))
        }
    };

    Ok(RunSpec { command, args, env })
}

/// Parses a duration written the way Go's `time.ParseDuration` accepts it:
/// a sequence of decimal numbers, each with an optional fraction and a
/// unit among `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, as in `"10s"`,
/// `"1.5h"`, `"2m30s"`; `"0"` needs no unit. Negative durations and ones
/// beyond Go's limit (about 292 years) are refused.
pub fn parse_go_duration(text: &str) -> std::result::Result<Duration, String> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(stripped) => (true, stripped),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration".to_string());
    }
    let max = u128::from(i64::MAX.unsigned_abs());
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        rest = after;
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            (frac_part, rest) = after_dot.split_at(frac_len);
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("expected a number".to_string());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "" => return Err("missing unit".to_string()),
            other => return Err(format!("unknown unit {other:?}")),
        };
        let overflow = || "duration out of range".to_string();
        if int_part.len() > 20 {
            return Err(overflow());
        }
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Go keeps fractions to nanosecond precision; 20 digits are plenty.
        let (mut numerator, mut denominator) = (0u128, 1u128);
        for digit in frac_part.bytes().take(20) {
            numerator = numerator * 10 + u128::from(digit - b'0');
            denominator *= 10;
        }
        value += numerator * scale / denominator;
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > max {
            return Err(overflow());
        }
    }
    if negative && total != 0 {
        return Err("negative durations are not allowed".to_string());
    }
    let secs =
        u64::try_from(total / NANOS_PER_SEC).map_err(|_| "duration out of range".to_string())?;
    let nanos =
        u32::try_from(total % NANOS_PER_SEC).map_err(|_| "duration out of range".to_string())?;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("1m", Duration::from_secs(60)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("2us", Duration::from_micros(2)),
            ("2\u{b5}s", Duration::from_micros(2)),
            ("3ns", Duration::from_nanos(3)),
            ("0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("-0", Duration::ZERO),
            ("-0s", Duration::ZERO),
            ("1m0.25s", Duration::from_millis(60_250)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_go_duration(text).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "10",
            "s",
            "1x",
            "-1s",
            "1.5",
            ".s",
            "99999999999999999999h",
            "3000000h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "localhost:7052",
            "cc.example.com:9999",
            "[::1]:7052",
            "10.0.0.1:1",
        ] {
            check_address(ok).unwrap();
        }
        for bad in [
            "localhost",
            ":7052",
            "host:0",
            "host:70000",
            "host:x",
            "::1:7052",
            "[]:1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
