//! The peer's store of installed packages.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::error::{LifecycleError, Result};
use crate::launch::launch_spec;
use crate::metadata::{parse_package_id, validate_label, PackageType};
use crate::parse::{parse_package, ParsedPackage};

/// Suffix of stored package files.
const PACKAGE_SUFFIX: &str = ".tar.gz";
/// Prefix and suffix of temporary files; a label cannot start with `.`,
/// so they never look like packages.
const TEMP_PREFIX: &str = ".install-";
const TEMP_SUFFIX: &str = ".tmp";

/// Distinguishes concurrent temporary files of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A package in the store, as listed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstalledChaincode {
    /// The package id, `<label>:<sha256 hex>`.
    pub package_id: String,
    /// The label part of the id.
    pub label: String,
}

/// Installed chaincode packages, one file per package, in a directory
/// (the peer's `<fileSystemPath>/lifecycle/chaincodes`).
///
/// A package is stored as `<package_id>.tar.gz`, holding the package bytes
/// unchanged. Files that Fabric's peer writes into the same directory,
/// `<label>.<sha256 hex>.tar.gz`, are recognized as well, so a Fabric
/// peer's directory can be used as is.
#[derive(Clone, Debug)]
pub struct PackageStore {
    dir: PathBuf,
}

impl PackageStore {
    /// Opens the store at `dir`, creating the directory if needed and
    /// removing temporary files left by an interrupted install.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| LifecycleError::io(&dir, e))?;
        let store = PackageStore { dir };
        store.remove_stale_temp_files()?;
        debug!(dir = %store.dir.display(), "opened chaincode package store");
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn remove_stale_temp_files(&self) -> Result<()> {
        for child in fs::read_dir(&self.dir).map_err(|e| LifecycleError::io(&self.dir, e))? {
            let child = child.map_err(|e| LifecycleError::io(&self.dir, e))?;
            let name = child.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                let path = child.path();
                match fs::remove_file(&path) {
                    Ok(()) => {
                        debug!(path = %path.display(), "removed stale temporary package file")
                    }
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "could not remove stale temporary package file")
                    }
                }
            }
        }
        Ok(())
    }

    /// The file a package id is written to. Checks the id.
    pub fn package_path(&self, package_id: &str) -> Result<PathBuf> {
        parse_package_id(package_id)?;
        Ok(self.dir.join(format!("{package_id}{PACKAGE_SUFFIX}")))
    }

    /// The files a package may be found in: Twill's name, then Fabric's.
    fn candidate_paths(&self, package_id: &str) -> Result<[PathBuf; 2]> {
        let (label, hash) = parse_package_id(package_id)?;
        Ok([
            self.dir.join(format!("{package_id}{PACKAGE_SUFFIX}")),
            self.dir.join(format!("{label}.{hash}{PACKAGE_SUFFIX}")),
        ])
    }

    /// Installs a package.
    ///
    /// The package is parsed and checked ([`parse_package`]); for `ccaas`
    /// and `process` packages the launch file is checked too
    /// ([`launch_spec`]). The bytes are written to a temporary file, synced,
    /// and renamed into place, so a crash leaves either no package or a
    /// complete one. Installing a package that is already there fails with
    /// [`LifecycleError::AlreadyInstalled`].
    pub fn install(&self, package_bytes: &[u8]) -> Result<InstalledChaincode> {
        let parsed = parse_package(package_bytes)?;
        if matches!(
            parsed.package_type(),
            PackageType::Ccaas | PackageType::Process
        ) {
            launch_spec(&parsed)?;
        }
        if self.contains(&parsed.id)? {
            return Err(LifecycleError::AlreadyInstalled {
                package_id: parsed.id,
            });
        }

        let final_path = self.package_path(&parsed.id)?;
        let temp_path = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}{TEMP_SUFFIX}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = write_synced(&temp_path, package_bytes)
            .and_then(|()| fs::rename(&temp_path, &final_path))
        {
            if let Err(remove) = fs::remove_file(&temp_path) {
                if remove.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %temp_path.display(), error = %remove, "could not remove temporary package file");
                }
            }
            return Err(LifecycleError::io(&final_path, e));
        }
        sync_dir(&self.dir);

        info!(
            package_id = %parsed.id,
            package_type = %parsed.metadata.r#type,
            bytes = package_bytes.len(),
            "installed chaincode package"
        );
        Ok(InstalledChaincode {
            label: parsed.metadata.label,
            package_id: parsed.id,
        })
    }

    /// Whether a package with this id is installed. Checks the id.
    pub fn contains(&self, package_id: &str) -> Result<bool> {
        for path in self.candidate_paths(package_id)? {
            match fs::symlink_metadata(&path) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LifecycleError::io(&path, e)),
            }
        }
        Ok(false)
    }

    /// The installed packages, sorted by package id. Packages are listed
    /// by file name; their contents are not read.
    pub fn list(&self) -> Result<Vec<InstalledChaincode>> {
        let mut found = BTreeMap::new();
        for child in fs::read_dir(&self.dir).map_err(|e| LifecycleError::io(&self.dir, e))? {
            let child = child.map_err(|e| LifecycleError::io(&self.dir, e))?;
            let name = child.file_name();
            let Some(installed) = name.to_str().and_then(installed_from_file_name) else {
                continue;
            };
            found.insert(installed.package_id.clone(), installed);
        }
        Ok(found.into_values().collect())
    }

    /// The bytes of an installed package, checked against the hash in its
    /// id.
    pub fn get(&self, package_id: &str) -> Result<Vec<u8>> {
        for path in self.candidate_paths(package_id)? {
            match fs::read(&path) {
                Ok(bytes) => {
                    let (_, hash) = parse_package_id(package_id)?;
                    if hex::encode(twill_crypto::sha256(&bytes)) != hash {
                        return Err(LifecycleError::StoreCorrupt {
                            package_id: package_id.to_string(),
                            reason: format!(
                                "the SHA-256 of {} does not match the package id",
                                path.display()
                            ),
                        });
                    }
                    return Ok(bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LifecycleError::io(&path, e)),
            }
        }
        Err(LifecycleError::NotInstalled {
            package_id: package_id.to_string(),
        })
    }

    /// An installed package, parsed. A stored file that no longer parses,
    /// or whose label differs from the one in its id, is reported as
    /// [`LifecycleError::StoreCorrupt`].
    pub fn load(&self, package_id: &str) -> Result<ParsedPackage> {
        let bytes = self.get(package_id)?;
        let parsed = parse_package(&bytes).map_err(|e| LifecycleError::StoreCorrupt {
            package_id: package_id.to_string(),
            reason: e.to_string(),
        })?;
        if parsed.id != package_id {
            return Err(LifecycleError::StoreCorrupt {
                package_id: package_id.to_string(),
                reason: format!("the package's own id is {}", parsed.id),
            });
        }
        Ok(parsed)
    }
}

/// Recognizes `<label>:<hash>.tar.gz` and Fabric's `<label>.<hash>.tar.gz`.
fn installed_from_file_name(name: &str) -> Option<InstalledChaincode> {
    let stem = name.strip_suffix(PACKAGE_SUFFIX)?;
    let package_id = if parse_package_id(stem).is_ok() {
        stem.to_string()
    } else {
        let (label, hash) = stem.rsplit_once('.')?;
        validate_label(label).ok()?;
        let id = format!("{label}:{hash}");
        parse_package_id(&id).ok()?;
        id
    };
    let label = package_id.split_once(':')?.0.to_string();
    Some(InstalledChaincode { package_id, label })
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename durable (best effort: not every platform can sync a
/// directory).
fn sync_dir(dir: &Path) {
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        debug!(dir = %dir.display(), error = %e, "could not sync the store directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let hash = "0123456789abcdef".repeat(4);
        let twill = installed_from_file_name(&format!("cc_1.0:{hash}.tar.gz")).unwrap();
        assert_eq!(twill.package_id, format!("cc_1.0:{hash}"));
        assert_eq!(twill.label, "cc_1.0");
        let fabric = installed_from_file_name(&format!("cc_1.0.{hash}.tar.gz")).unwrap();
        assert_eq!(fabric, twill);
        for other in [
            format!("cc:{hash}.tar"),
            ".install-1-2.tmp".to_string(),
            format!("cc:{}.tar.gz", &hash[1..]),
            "README".to_string(),
        ] {
            assert!(installed_from_file_name(&other).is_none(), "{other}");
        }
    }
}
