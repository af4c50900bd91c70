//! `metadata.json`, labels and package ids.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{LifecycleError, Result};

/// The `type` of a package whose code is a `connection.json` naming a
/// chaincode server the peer dials (Fabric's chaincode-as-a-service).
pub const TYPE_CCAAS: &str = "ccaas";

/// The `type` of a package whose code is a program the peer starts itself,
/// described by `run.json` (a Twill extension).
pub const TYPE_PROCESS: &str = "process";

/// The contents of a package's `metadata.json`.
///
/// Serializes with the fields in the order `path`, `type`, `label`, the
/// order Fabric's CLI writes. When reading, absent or `null` fields read as
/// empty strings; the values are checked by [`PackageMetadata::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageMetadata {
    /// The chaincode's source path (a Go import path for `golang`); empty
    /// for types that do not use it.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub path: String,
    /// The package type: `ccaas`, `process`, `golang`, `node`, `java`...
    #[serde(default, deserialize_with = "null_as_empty")]
    pub r#type: String,
    /// The label the package id starts with.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub label: String,
}

fn null_as_empty<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

impl PackageMetadata {
    /// Metadata with the given label and type and an empty path.
    pub fn new(label: impl Into<String>, package_type: impl Into<String>) -> Self {
        PackageMetadata {
            path: String::new(),
            r#type: package_type.into(),
            label: label.into(),
        }
    }

    /// Checks the label (see [`validate_label`]) and that the type is
    /// non-empty and free of control characters.
    pub fn validate(&self) -> Result<()> {
        validate_label(&self.label)?;
        validate_type(&self.r#type)
    }

    /// The type, classified.
    pub fn package_type(&self) -> PackageType {
        PackageType::from_name(&self.r#type)
    }
}

/// A package type as Twill understands it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PackageType {
    /// `ccaas`: the peer dials a running chaincode server.
    Ccaas,
    /// `process`: the peer unpacks the code and runs a program from it.
    Process,
    /// Any other type (`golang`, `node`, `java`, custom builder types).
    /// Such packages install, but Twill cannot run them yet.
    Other(String),
}

impl PackageType {
    /// Classifies a `metadata.json` type string. Matching is exact, as
    /// Fabric's external builders match it.
    pub fn from_name(name: &str) -> Self {
        match name {
            TYPE_CCAAS => PackageType::Ccaas,
            TYPE_PROCESS => PackageType::Process,
            other => PackageType::Other(other.to_string()),
        }
    }

    /// The type string as written in `metadata.json`.
    pub fn as_str(&self) -> &str {
        match self {
            PackageType::Ccaas => TYPE_CCAAS,
            PackageType::Process => TYPE_PROCESS,
            PackageType::Other(name) => name,
        }
    }
}

impl fmt::Display for PackageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a chaincode label against Fabric's rule
/// `^[[:alnum:]][[:alnum:]_.+-]*$` (ASCII letters and digits).
pub fn validate_label(label: &str) -> Result<()> {
    let invalid = |reason| {
        Err(LifecycleError::InvalidLabel {
            label: label.to_string(),
            reason,
        })
    };
    let mut chars = label.chars();
    match chars.next() {
        None => return invalid("the label is empty"),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return invalid("the label must start with an ASCII letter or digit")
        }
        Some(_) => {}
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))) {
        return invalid("the label may only hold ASCII letters, digits and _ . + -");
    }
    Ok(())
}

fn validate_type(package_type: &str) -> Result<()> {
    let invalid = |reason| {
        Err(LifecycleError::InvalidType {
            package_type: package_type.to_string(),
            reason,
        })
    };
    if package_type.is_empty() {
        return invalid("the type is empty");
    }
    if package_type.chars().any(char::is_control) {
        return invalid("the type holds control characters");
    }
    Ok(())
}

/// The package id of a package: `<label>:<hex SHA-256 of the package
/// bytes>`, as Fabric computes it.
pub fn package_id(label: &str, package_bytes: &[u8]) -> String {
    format!(
        "{label}:{}",
        hex::encode(twill_crypto::sha256(package_bytes))
    )
}

/// Splits a package id into its label and its 64-hex-digit hash, checking
/// both. The hash must be lowercase, as [`package_id`] writes it.
pub fn parse_package_id(package_id: &str) -> Result<(&str, &str)> {
    let invalid = |reason| LifecycleError::InvalidPackageId {
        package_id: package_id.to_string(),
        reason,
    };
    let (label, hash) = package_id
        .split_once(':')
        .ok_or_else(|| invalid("expected <label>:<sha256 hex>"))?;
    if validate_label(label).is_err() {
        return Err(invalid("the label part is not a valid label"));
    }
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid("the hash part is not 64 lowercase hex digits"));
    }
    Ok((label, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "Z9", "basic_1.0", "my-cc+v2", "0"] {
            assert!(validate_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_a", "-a", ".a", "a b", "a:b", "a/b", "é", "a\n"] {
            let err = validate_label(bad).unwrap_err();
            assert_eq!(err.code(), "LABEL_INVALID", "{bad:?}");
        }
    }

    #[test]
    fn id_is_label_colon_sha256() {
        let id = package_id("basic_1.0", b"abc");
        assert_eq!(
            id,
            "basic_1.0:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (label, hash) = parse_package_id(&id).unwrap();
        assert_eq!(label, "basic_1.0");
        assert_eq!(hash.len(), 64);
    }

    #[test]
    fn bad_package_ids() {
        let hash = "a".repeat(64);
        for bad in [
            "nocolon".to_string(),
            format!(":{hash}"),
            format!("a/b:{hash}"),
            format!("a:{}", "A".repeat(64)),
            format!("a:{}", "a".repeat(63)),
            format!("a:{hash}/x"),
            format!("../a:{hash}"),
        ] {
            let err = parse_package_id(&bad).unwrap_err();
            assert_eq!(err.code(), "PACKAGE_ID_INVALID", "{bad}");
        }
    }

    #[test]
    fn metadata_json_shape() {
        let m = PackageMetadata::new("cc", "ccaas");
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"path":"","type":"ccaas","label":"cc"}"#
        );
        let read: PackageMetadata =
            serde_json::from_str(r#"{"type":"golang","label":"x","path":null}"#).unwrap();
        assert_eq!(read.path, "");
        assert_eq!(read.package_type(), PackageType::Other("golang".into()));
        assert_eq!(PackageType::from_name("process"), PackageType::Process);
        assert!(PackageMetadata::new("cc", "").validate().is_err());
    }
}
