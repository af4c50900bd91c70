//! Building packages, deterministically.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};
use tracing::debug;

use crate::archive::{normalize_path, scan_code, CODE_PART};
use crate::error::{LifecycleError, Result};
use crate::launch::launch_spec;
use crate::metadata::{PackageMetadata, PackageType};
use crate::parse::{parse_package, CODE_ENTRY, METADATA_ENTRY};
use crate::{MAX_CODE_UNPACKED_BYTES, MAX_PACKAGE_BYTES};

/// A file to put into `code.tar.gz`, held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeFile<'a> {
    /// Path inside the code archive, `/`-separated and relative; `.` and
    /// empty components are dropped, `..` and absolute paths are refused.
    pub path: &'a str,
    /// The file's contents.
    pub data: &'a [u8],
    /// Unix permission bits; only `0o777` is kept.
    pub mode: u32,
}

impl<'a> CodeFile<'a> {
    /// A non-executable file (mode `0o644`).
    pub fn new(path: &'a str, data: &'a [u8]) -> Self {
        CodeFile {
            path,
            data,
            mode: 0o644,
        }
    }

    /// An executable file (mode `0o755`).
    pub fn executable(path: &'a str, data: &'a [u8]) -> Self {
        CodeFile {
            path,
            data,
            mode: 0o755,
        }
    }
}

/// An entry about to be written, keyed by its normalized path.
enum Item<'a> {
    File { data: Cow<'a, [u8]>, mode: u32 },
    Dir,
    Symlink { target: String },
}

/// Builds a `code.tar.gz` from in-memory files.
///
/// The output depends only on the paths, contents and modes: entries are
/// sorted by path, and every header has mtime 0, uid/gid 0 and no owner
/// names. The archive is checked as [`parse_package`] would check it.
pub fn build_code_archive(files: &[CodeFile<'_>]) -> Result<Vec<u8>> {
    let mut items = BTreeMap::new();
    for file in files {
        let path =
            normalize_path(file.path.as_bytes())?.ok_or_else(|| LifecycleError::UnsafePath {
                path: file.path.to_string(),
                reason: "a file needs a non-empty path",
            })?;
        let item = Item::File {
            data: Cow::Borrowed(file.data),
            mode: file.mode & 0o777,
        };
        if items.insert(path.clone(), item).is_some() {
            return Err(LifecycleError::DuplicateEntry {
                part: CODE_PART,
                entry: path,
            });
        }
    }
    write_code_archive(&items)
}

/// Builds a `code.tar.gz` from a directory tree, recursively. The
/// directory itself is the archive root.
///
/// Files keep an executable mode (`0o755`) if any execute bit is set on
/// disk and get `0o644` otherwise, so the result does not depend on the
/// umask; directories are written with `0o755`; symlinks are stored as
/// symlinks and must stay inside the tree. Sockets, FIFOs and devices are
/// refused. Entries are sorted and timestamps and owners zeroed, as in
/// [`build_code_archive`].
pub fn build_code_archive_from_dir(dir: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(dir).map_err(|e| LifecycleError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(LifecycleError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut items = BTreeMap::new();
    let mut total = 0u64;
    collect_dir(dir, "", &mut items, &mut total)?;
    debug!(dir = %dir.display(), entries = items.len(), bytes = total, "collected code directory");
    write_code_archive(&items)
}

fn collect_dir(
    dir: &Path,
    prefix: &str,
    items: &mut BTreeMap<String, Item<'static>>,
    total: &mut u64,
) -> Result<()> {
    let read_dir = std::fs::read_dir(dir).map_err(|e| LifecycleError::io(dir, e))?;
    for child in read_dir {
        let child = child.map_err(|e| LifecycleError::io(dir, e))?;
        let child_path = child.path();
        let name = child.file_name();
        let name = name.to_str().ok_or_else(|| LifecycleError::UnsafePath {
            path: child_path.display().to_string(),
            reason: "the path is not UTF-8",
        })?;
        let archive_path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let file_type = child
            .file_type()
            .map_err(|e| LifecycleError::io(&child_path, e))?;
        let item = if file_type.is_dir() {
            collect_dir(&child_path, &archive_path, items, total)?;
            Item::Dir
        } else if file_type.is_symlink() {
            let target =
                std::fs::read_link(&child_path).map_err(|e| LifecycleError::io(&child_path, e))?;
            let target = target
                .to_str()
                .ok_or_else(|| LifecycleError::UnsafePath {
                    path: archive_path.clone(),
                    reason: "the symlink target is not UTF-8",
                })?
                .to_string();
            Item::Symlink { target }
        } else if file_type.is_file() {
            let data =
                std::fs::read(&child_path).map_err(|e| LifecycleError::io(&child_path, e))?;
            *total = total.saturating_add(data.len() as u64);
            if *total > MAX_CODE_UNPACKED_BYTES {
                return Err(LifecycleError::TooLarge {
                    part: format!("code directory {}", dir.display()),
                    size: *total,
                    limit: MAX_CODE_UNPACKED_BYTES,
                });
            }
            let meta = child
                .metadata()
                .map_err(|e| LifecycleError::io(&child_path, e))?;
            Item::File {
                data: Cow::Owned(data),
                mode: if is_executable(&meta) { 0o755 } else { 0o644 },
            }
        } else {
            return Err(LifecycleError::UnsupportedEntry {
                path: archive_path,
                kind: "special file".to_string(),
            });
        };
        items.insert(archive_path, item);
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

fn base_header(entry_type: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_ustar();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn write_code_archive(items: &BTreeMap<String, Item<'_>>) -> Result<Vec<u8>> {
    let write_err = |source| LifecycleError::ArchiveWrite {
        part: CODE_PART,
        source,
    };
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (path, item) in items {
        match item {
            Item::File { data, mode } => {
                let mut header = base_header(EntryType::Regular, *mode, data.len() as u64);
                builder
                    .append_data(&mut header, path, data.as_ref())
                    .map_err(write_err)?;
            }
            Item::Dir => {
                let mut header = base_header(EntryType::Directory, 0o755, 0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .map_err(write_err)?;
            }
            Item::Symlink { target } => {
                let mut header = base_header(EntryType::Symlink, 0o777, 0);
                builder
                    .append_link(&mut header, path, target)
                    .map_err(write_err)?;
            }
        }
    }
    let bytes = builder
        .into_inner()
        .and_then(GzEncoder::finish)
        .map_err(write_err)?;
    scan_code(&bytes)?;
    Ok(bytes)
}

/// Wraps a `code.tar.gz` and metadata into a package: a gzip-compressed tar
/// holding `metadata.json` then `code.tar.gz`, both mode `0o644`, mtime 0,
/// owner 0.
///
/// Checks the metadata, the code archive and the size limit. For `ccaas`
/// and `process` packages it also checks the launch file
/// (`connection.json` or `run.json`), so that a package that could never
/// start is refused when it is built rather than when it is launched.
pub fn assemble_package(metadata: &PackageMetadata, code_tar_gz: &[u8]) -> Result<Vec<u8>> {
    metadata.validate()?;
    let metadata_json = serde_json::to_vec(metadata)
        .map_err(|e| LifecycleError::malformed(METADATA_ENTRY, e.to_string()))?;
    let write_err = |source| LifecycleError::ArchiveWrite {
        part: "package",
        source,
    };
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, data) in [
        (METADATA_ENTRY, metadata_json.as_slice()),
        (CODE_ENTRY, code_tar_gz),
    ] {
        let mut header = base_header(EntryType::Regular, 0o644, data.len() as u64);
        builder
            .append_data(&mut header, name, data)
            .map_err(write_err)?;
    }
    let mut encoder = builder.into_inner().map_err(write_err)?;
    encoder.flush().map_err(write_err)?;
    let bytes = encoder.finish().map_err(write_err)?;
    if bytes.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(LifecycleError::TooLarge {
            part: "package".to_string(),
            size: bytes.len() as u64,
            limit: MAX_PACKAGE_BYTES,
        });
    }
    let parsed = parse_package(&bytes)?;
    if matches!(
        parsed.metadata.package_type(),
        PackageType::Ccaas | PackageType::Process
    ) {
        launch_spec(&parsed)?;
    }
    debug!(package_id = %parsed.id, bytes = bytes.len(), "assembled chaincode package");
    Ok(bytes)
}

/// Builds a package of the given label and type from in-memory code files
/// (see [`build_code_archive`] and [`assemble_package`]). The same inputs
/// always give the same bytes, hence the same package id.
pub fn build_package(label: &str, package_type: &str, files: &[CodeFile<'_>]) -> Result<Vec<u8>> {
    let metadata = PackageMetadata::new(label, package_type);
    metadata.validate()?;
    assemble_package(&metadata, &build_code_archive(files)?)
}

/// Builds a package of the given label and type whose code is the directory
/// tree at `dir` (see [`build_code_archive_from_dir`] and
/// [`assemble_package`]).
pub fn build_package_from_dir(label: &str, package_type: &str, dir: &Path) -> Result<Vec<u8>> {
    let metadata = PackageMetadata::new(label, package_type);
    metadata.validate()?;
    assemble_package(&metadata, &build_code_archive_from_dir(dir)?)
}
