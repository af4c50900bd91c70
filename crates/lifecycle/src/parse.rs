//! Reading and checking a package.

use std::cell::Cell;
use std::io::Read;

use flate2::read::MultiGzDecoder;
use tar::EntryType;
use tracing::debug;

use crate::archive::{check_gzip_magic, scan_code, LimitedReader};
use crate::error::{LifecycleError, Result};
use crate::metadata::{package_id, PackageMetadata, PackageType};
use crate::{MAX_METADATA_BYTES, MAX_PACKAGE_BYTES};

/// Name of the metadata entry of a package.
pub const METADATA_ENTRY: &str = "metadata.json";
/// Name of the code entry of a package.
pub const CODE_ENTRY: &str = "code.tar.gz";

const PACKAGE_PART: &str = "package";

/// The most the outer tar may decompress to: both entries at their limits
/// plus room for headers and padding.
const MAX_PACKAGE_TAR_BYTES: u64 = MAX_PACKAGE_BYTES + MAX_METADATA_BYTES + 64 * 1024;

/// A package that passed [`parse_package`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedPackage {
    /// The contents of `metadata.json`.
    pub metadata: PackageMetadata,
    /// The `code.tar.gz` entry, as stored in the package.
    pub code_tar_gz: Vec<u8>,
    /// The package id: `<label>:<hex SHA-256 of the package bytes>`.
    pub id: String,
}

impl ParsedPackage {
    /// The label from `metadata.json`.
    pub fn label(&self) -> &str {
        &self.metadata.label
    }

    /// The classified type from `metadata.json`.
    pub fn package_type(&self) -> PackageType {
        self.metadata.package_type()
    }
}

/// Parses and checks a package file.
///
/// The package must be at most [`MAX_PACKAGE_BYTES`](crate::MAX_PACKAGE_BYTES),
/// gzip-compressed, and a tar holding exactly one regular `metadata.json`
/// and one regular `code.tar.gz` (pax global headers aside). The metadata
/// must be a JSON object with a valid label and a non-empty type. The code
/// archive must be readable, within the unpacked-size and entry-count
/// limits, and hold only regular files, directories and symlinks whose
/// paths and targets stay inside the archive root.
pub fn parse_package(bytes: &[u8]) -> Result<ParsedPackage> {
    if bytes.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(LifecycleError::TooLarge {
            part: PACKAGE_PART.to_string(),
            size: bytes.len() as u64,
            limit: MAX_PACKAGE_BYTES,
        });
    }
    check_gzip_magic(PACKAGE_PART, bytes)?;
    let exceeded = Cell::new(false);
    let malformed = |e: std::io::Error| {
        if exceeded.get() {
            LifecycleError::TooLarge {
                part: "decompressed package".to_string(),
                size: MAX_PACKAGE_TAR_BYTES + 1,
                limit: MAX_PACKAGE_TAR_BYTES,
            }
        } else {
            LifecycleError::malformed(PACKAGE_PART, e.to_string())
        }
    };

    let mut metadata_json: Option<Vec<u8>> = None;
    let mut code_tar_gz: Option<Vec<u8>> = None;
    let decoder = LimitedReader::new(MultiGzDecoder::new(bytes), MAX_PACKAGE_TAR_BYTES, &exceeded);
    let mut archive = tar::Archive::new(decoder);
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let entry_type = entry.header().entry_type();
        if entry_type == EntryType::XGlobalHeader {
            continue;
        }
        let (slot, entry_name, limit) = match name.as_str() {
            METADATA_ENTRY => (&mut metadata_json, METADATA_ENTRY, MAX_METADATA_BYTES),
            CODE_ENTRY => (&mut code_tar_gz, CODE_ENTRY, MAX_PACKAGE_BYTES),
            _ => return Err(LifecycleError::UnexpectedEntry { entry: name }),
        };
        if !matches!(entry_type, EntryType::Regular | EntryType::Continuous) {
            return Err(LifecycleError::malformed(
                PACKAGE_PART,
                format!("{entry_name} is not a regular file"),
            ));
        }
        if slot.is_some() {
            return Err(LifecycleError::DuplicateEntry {
                part: PACKAGE_PART,
                entry: name,
            });
        }
        let size = entry.size();
        if size > limit {
            return Err(LifecycleError::TooLarge {
                part: entry_name.to_string(),
                size,
                limit,
            });
        }
        let mut data = Vec::new();
        (&mut entry)
            .take(limit)
            .read_to_end(&mut data)
            .map_err(malformed)?;
        *slot = Some(data);
    }

    let metadata_json = metadata_json.ok_or(LifecycleError::MissingEntry {
        entry: METADATA_ENTRY,
    })?;
    let code_tar_gz = code_tar_gz.ok_or(LifecycleError::MissingEntry { entry: CODE_ENTRY })?;

    let metadata = parse_metadata(&metadata_json)?;
    metadata.validate()?;
    scan_code(&code_tar_gz)?;

    let id = package_id(&metadata.label, bytes);
    debug!(package_id = %id, package_type = %metadata.r#type, "parsed chaincode package");
    Ok(ParsedPackage {
        metadata,
        code_tar_gz,
        id,
    })
}

fn parse_metadata(json: &[u8]) -> Result<PackageMetadata> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| LifecycleError::malformed(METADATA_ENTRY, e.to_string()))?;
    if !value.is_object() {
        return Err(LifecycleError::malformed(
            METADATA_ENTRY,
            "expected a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| LifecycleError::malformed(METADATA_ENTRY, e.to_string()))
}
