//! Extracting `code.tar.gz` onto disk.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use tracing::{debug, warn};

use crate::archive::{scan_code, walk_code, EntryKind};
use crate::error::{LifecycleError, Result};
use crate::parse::ParsedPackage;

/// Extracts a package's `code.tar.gz` into `dest`.
///
/// See [`unpack_code_archive`].
pub fn unpack_code(package: &ParsedPackage, dest: &Path) -> Result<()> {
    unpack_code_archive(&package.code_tar_gz, dest)
}

/// Extracts a `code.tar.gz` into `dest`, which must be absent (it is
/// created) or an empty directory.
///
/// The whole archive is checked first, with the same rules as
/// [`parse_package`](crate::parse_package): no absolute or `..` paths, no
/// entries beneath files or symlinks, no symlink leaving the root, only
/// regular files, directories and symlinks. Files keep their permission
/// bits (`& 0o777`, so executables stay executable); directories get the
/// process's default permissions; symlinks are created after everything
/// else, so no file is ever written through one. If extraction fails
/// midway, what was extracted is removed (best effort).
pub fn unpack_code_archive(code_tar_gz: &[u8], dest: &Path) -> Result<()> {
    scan_code(code_tar_gz)?;
    let created = prepare_destination(dest)?;
    let result = extract(code_tar_gz, dest);
    if result.is_err() {
        clean_up(dest, created);
    }
    result
}

/// Makes sure `dest` is an empty directory; returns whether it was created.
fn prepare_destination(dest: &Path) -> Result<bool> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let mut children = fs::read_dir(dest).map_err(|e| LifecycleError::io(dest, e))?;
            if children.next().is_some() {
                return Err(LifecycleError::BadDestination {
                    path: dest.to_path_buf(),
                    reason: "the directory is not empty",
                });
            }
            Ok(false)
        }
        Ok(_) => Err(LifecycleError::BadDestination {
            path: dest.to_path_buf(),
            reason: "it exists and is not a directory",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| LifecycleError::io(dest, e))?;
            Ok(true)
        }
        Err(e) => Err(LifecycleError::io(dest, e)),
    }
}

fn extract(code_tar_gz: &[u8], dest: &Path) -> Result<()> {
    let mut symlinks = Vec::new();
    let mut files = 0usize;
    walk_code(code_tar_gz, |entry, reader| {
        let target_path = dest.join(&entry.path);
        match &entry.kind {
            EntryKind::Dir => {
                fs::create_dir_all(&target_path).map_err(|e| LifecycleError::io(&target_path, e))
            }
            EntryKind::File { mode, size } => {
                if let Some(parent) = target_path.parent() {
                    fs::create_dir_all(parent).map_err(|e| LifecycleError::io(parent, e))?;
                }
                write_file(&target_path, reader, *size, *mode)?;
                files += 1;
                Ok(())
            }
            EntryKind::Symlink { target } => {
                symlinks.push((target_path, target.clone()));
                Ok(())
            }
        }
    })?;
    for (path, target) in &symlinks {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| LifecycleError::io(parent, e))?;
        }
        make_symlink(target, path)?;
    }
    debug!(dest = %dest.display(), files, symlinks = symlinks.len(), "unpacked chaincode code");
    Ok(())
}

fn write_file(path: &Path, reader: &mut dyn Read, size: u64, mode: u32) -> Result<()> {
    let io_err = |e| LifecycleError::io(path, e);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err)?;
    let copied = std::io::copy(&mut reader.take(size), &mut file).map_err(io_err)?;
    if copied != size {
        return Err(LifecycleError::malformed(
            crate::archive::CODE_PART,
            format!("{} is truncated", path.display()),
        ));
    }
    file.flush().map_err(io_err)?;
    set_mode(path, mode)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o777))
        .map_err(|e| LifecycleError::io(path, e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, path).map_err(|e| LifecycleError::io(path, e))
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, path: &Path) -> Result<()> {
    Err(LifecycleError::UnsupportedEntry {
        path: path.display().to_string(),
        kind: "symlink (on this platform)".to_string(),
    })
}

fn clean_up(dest: &Path, created: bool) {
    let result = if created {
        fs::remove_dir_all(dest)
    } else {
        fs::read_dir(dest).and_then(|children| {
            for child in children {
                let child = child?;
                if child.file_type()?.is_dir() {
                    fs::remove_dir_all(child.path())?;
                } else {
                    fs::remove_file(child.path())?;
                }
            }
            Ok(())
        })
    };
    if let Err(e) = result {
        warn!(dest = %dest.display(), error = %e, "could not clean up after a failed unpack");
    }
}
