//! Reading `code.tar.gz`: path normalization, entry-kind filtering, size
//! limits and the checks that keep unpacking inside its destination.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::error::{LifecycleError, Result};
use crate::{MAX_CODE_ENTRIES, MAX_CODE_UNPACKED_BYTES};

/// The name of the code archive inside a package (used in errors).
pub(crate) const CODE_PART: &str = "code.tar.gz";

/// How many symlink expansions resolving one symlink target may take
/// before the target is deemed a loop.
const SYMLINK_EXPANSION_BUDGET: u32 = 64;

/// One entry of a code archive, with its path normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CodeEntry {
    /// Relative, `/`-separated, without `.` or empty components.
    pub path: String,
    /// What the entry is.
    pub kind: EntryKind,
}

/// The kinds of code-archive entries Twill accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file with its permission bits (`& 0o777`) and size.
    File { mode: u32, size: u64 },
    /// A directory.
    Dir,
    /// A symbolic link and its target as written in the archive.
    Symlink { target: String },
}

/// A reader that fails once more than `limit` bytes have come through it,
/// recording that in `exceeded`. It bounds what a decompressor may produce,
/// tar headers and their extensions included, whatever sizes the headers
/// claim.
pub(crate) struct LimitedReader<'a, R> {
    inner: R,
    remaining: u64,
    exceeded: &'a Cell<bool>,
}

impl<'a, R: Read> LimitedReader<'a, R> {
    pub(crate) fn new(inner: R, limit: u64, exceeded: &'a Cell<bool>) -> Self {
        LimitedReader {
            inner,
            remaining: limit,
            exceeded,
        }
    }
}

impl<R: Read> Read for LimitedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // One byte more tells a stream that ends exactly at the limit
            // from one that goes on.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded.set(true);
            return Err(std::io::Error::other("decompressed data exceeds the limit"));
        }
        let len = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..len])?;
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// The most a code archive may decompress to: the unpacked-size limit plus
/// room for headers, padding and long names.
const MAX_CODE_TAR_BYTES: u64 = MAX_CODE_UNPACKED_BYTES + MAX_CODE_ENTRIES as u64 * 2048;

/// Checks that `bytes` start like a gzip stream.
pub(crate) fn check_gzip_magic(part: &'static str, bytes: &[u8]) -> Result<()> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Ok(())
    } else {
        Err(LifecycleError::malformed(
            part,
            "not gzip-compressed (bad magic bytes)",
        ))
    }
}

/// Normalizes a path from (or for) a code archive: UTF-8, relative, no
/// `..` components; `.` and empty components are dropped. `None` means
/// the path names the archive root itself.
pub(crate) fn normalize_path(raw: &[u8]) -> Result<Option<String>> {
    let unsafe_path = |reason| LifecycleError::UnsafePath {
        path: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    let text = std::str::from_utf8(raw).map_err(|_| unsafe_path("the path is not UTF-8"))?;
    if text.starts_with('/') {
        return Err(unsafe_path("absolute paths are not allowed"));
    }
    let mut parts = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(unsafe_path("`..` components are not allowed")),
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        Ok(None)
    } else {
        Ok(Some(parts.join("/")))
    }
}

fn kind_name(entry_type: EntryType) -> String {
    match entry_type {
        EntryType::Link => "hard link".to_string(),
        EntryType::Char => "character device".to_string(),
        EntryType::Block => "block device".to_string(),
        EntryType::Fifo => "FIFO".to_string(),
        EntryType::GNUSparse => "sparse file".to_string(),
        other => format!("type {:?}", char::from(other.as_byte())),
    }
}

/// Streams through a code archive, validating each entry on its own
/// (path, kind, count and size limits) and handing it with its data to
/// `visit`. Does not check relations between entries; see [`scan_code`].
pub(crate) fn walk_code<F>(code_tar_gz: &[u8], mut visit: F) -> Result<()>
where
    F: FnMut(&CodeEntry, &mut dyn Read) -> Result<()>,
{
    check_gzip_magic(CODE_PART, code_tar_gz)?;
    let exceeded = Cell::new(false);
    let malformed = |e: std::io::Error| {
        if exceeded.get() {
            LifecycleError::TooLarge {
                part: "decompressed code.tar.gz".to_string(),
                size: MAX_CODE_TAR_BYTES + 1,
                limit: MAX_CODE_TAR_BYTES,
            }
        } else {
            LifecycleError::malformed(CODE_PART, e.to_string())
        }
    };
    let decoder = LimitedReader::new(
        MultiGzDecoder::new(code_tar_gz),
        MAX_CODE_TAR_BYTES,
        &exceeded,
    );
    let mut archive = tar::Archive::new(decoder);
    let mut count = 0usize;
    let mut total = 0u64;
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        count += 1;
        if count > MAX_CODE_ENTRIES {
            return Err(LifecycleError::TooLarge {
                part: "code.tar.gz entry count".to_string(),
                size: count as u64,
                limit: MAX_CODE_ENTRIES as u64,
            });
        }
        let size = entry.size();
        total = total.saturating_add(size);
        if total > MAX_CODE_UNPACKED_BYTES {
            return Err(LifecycleError::TooLarge {
                part: "unpacked code".to_string(),
                size: total,
                limit: MAX_CODE_UNPACKED_BYTES,
            });
        }
        let raw_path = entry.path_bytes().into_owned();
        let entry_type = entry.header().entry_type();
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                let mode = entry.header().mode().map_err(malformed)?;
                EntryKind::File {
                    mode: mode & 0o777,
                    size,
                }
            }
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = std::str::from_utf8(&target)
                    .map_err(|_| LifecycleError::UnsafePath {
                        path: String::from_utf8_lossy(&raw_path).into_owned(),
                        reason: "the symlink target is not UTF-8",
                    })?
                    .to_string();
                EntryKind::Symlink { target }
            }
            // A pax global header (as written by `git archive`) carries no file.
            EntryType::XGlobalHeader => continue,
            other => {
                return Err(LifecycleError::UnsupportedEntry {
                    path: String::from_utf8_lossy(&raw_path).into_owned(),
                    kind: kind_name(other),
                })
            }
        };
        let path = match (normalize_path(&raw_path)?, &kind) {
            (Some(path), _) => path,
            (None, EntryKind::Dir) => continue,
            (None, _) => {
                return Err(LifecycleError::UnsafePath {
                    path: String::from_utf8_lossy(&raw_path).into_owned(),
                    reason: "a file or symlink cannot be the archive root",
                })
            }
        };
        visit(&CodeEntry { path, kind }, &mut entry)?;
    }
    Ok(())
}

/// Reads a whole code archive, validating every entry and the relations
/// between them:
///
/// * no path appears twice (directories excepted);
/// * no entry lies beneath a file or a symlink;
/// * every symlink target is relative and, resolved through the archive's
///   own symlinks, stays inside the archive root.
pub(crate) fn scan_code(code_tar_gz: &[u8]) -> Result<Vec<CodeEntry>> {
    let mut entries = Vec::new();
    walk_code(code_tar_gz, |entry, _| {
        entries.push(entry.clone());
        Ok(())
    })?;
    check_entries(&entries)?;
    Ok(entries)
}

/// Like [`scan_code`], and also returns the contents of the regular file at
/// the archive root named `wanted`, if there is one, refusing it beyond
/// `limit` bytes.
pub(crate) fn scan_code_with_file(
    code_tar_gz: &[u8],
    wanted: &str,
    limit: u64,
) -> Result<(Vec<CodeEntry>, Option<Vec<u8>>)> {
    let mut entries = Vec::new();
    let mut found = None;
    walk_code(code_tar_gz, |entry, reader| {
        if let (true, EntryKind::File { size, .. }) = (entry.path == wanted, &entry.kind) {
            if *size > limit {
                return Err(LifecycleError::TooLarge {
                    part: wanted.to_string(),
                    size: *size,
                    limit,
                });
            }
            let mut data = Vec::new();
            reader
                .take(limit)
                .read_to_end(&mut data)
                .map_err(|e| LifecycleError::malformed(CODE_PART, e.to_string()))?;
            found = Some(data);
        }
        entries.push(entry.clone());
        Ok(())
    })?;
    check_entries(&entries)?;
    Ok((entries, found))
}

fn check_entries(entries: &[CodeEntry]) -> Result<()> {
    let mut by_path: HashMap<&str, &EntryKind> = HashMap::with_capacity(entries.len());
    for entry in entries {
        if let Some(previous) = by_path.insert(&entry.path, &entry.kind) {
            if !(matches!(previous, EntryKind::Dir) && matches!(entry.kind, EntryKind::Dir)) {
                return Err(LifecycleError::DuplicateEntry {
                    part: CODE_PART,
                    entry: entry.path.clone(),
                });
            }
        }
    }
    for entry in entries {
        for (index, _) in entry.path.match_indices('/') {
            let ancestor = &entry.path[..index];
            if let Some(kind) = by_path.get(ancestor) {
                if !matches!(kind, EntryKind::Dir) {
                    return Err(LifecycleError::UnsafePath {
                        path: entry.path.clone(),
                        reason: "a parent of this path is a file or a symlink",
                    });
                }
            }
        }
    }
    let links: HashMap<&str, &str> = entries
        .iter()
        .filter_map(|entry| match &entry.kind {
            EntryKind::Symlink { target } => Some((entry.path.as_str(), target.as_str())),
            _ => None,
        })
        .collect();
    for (&path, &target) in &links {
        let unsafe_link = |reason| LifecycleError::UnsafePath {
            path: format!("{path} -> {target}"),
            reason,
        };
        if target.is_empty() {
            return Err(unsafe_link("the symlink target is empty"));
        }
        if target.starts_with('/') {
            return Err(unsafe_link("absolute symlink targets are not allowed"));
        }
        let mut location: Vec<&str> = path.split('/').collect();
        location.pop();
        let mut budget = SYMLINK_EXPANSION_BUDGET;
        if !resolves_inside(&links, &mut location, target, &mut budget) {
            return Err(unsafe_link(
                "the symlink target leaves the archive root or loops",
            ));
        }
    }
    Ok(())
}

/// Follows `target` from the directory `location` (archive-relative
/// components), expanding the archive's own symlinks on the way. Returns
/// false when the walk climbs above the root, meets an absolute target, or
/// exhausts `budget` (a loop or an absurdly deep chain).
fn resolves_inside<'a>(
    links: &HashMap<&str, &'a str>,
    location: &mut Vec<&'a str>,
    target: &'a str,
    budget: &mut u32,
) -> bool {
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if location.pop().is_none() {
                    return false;
                }
            }
            name => {
                location.push(name);
                let here = location.join("/");
                if let Some(&next) = links.get(here.as_str()) {
                    if *budget == 0 || next.starts_with('/') {
                        return false;
                    }
                    *budget -= 1;
                    location.pop();
                    if !resolves_inside(links, location, next, budget) {
                        return false;
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_path(b"./a//b/./c").unwrap().as_deref(),
            Some("a/b/c")
        );
        assert_eq!(normalize_path(b"./").unwrap(), None);
        for bad in [&b"../x"[..], b"a/../../x", b"/etc/passwd", b"a/..", b"\xff"] {
            assert_eq!(normalize_path(bad).unwrap_err().code(), "PATH_UNSAFE");
        }
    }

    fn link(path: &str, target: &str) -> CodeEntry {
        CodeEntry {
            path: path.to_string(),
            kind: EntryKind::Symlink {
                target: target.to_string(),
            },
        }
    }

    fn dir(path: &str) -> CodeEntry {
        CodeEntry {
            path: path.to_string(),
            kind: EntryKind::Dir,
        }
    }

    fn file(path: &str) -> CodeEntry {
        CodeEntry {
            path: path.to_string(),
            kind: EntryKind::File {
                mode: 0o644,
                size: 0,
            },
        }
    }

    #[test]
    fn symlinks_inside_are_accepted() {
        let entries = vec![
            dir("a"),
            dir("a/b"),
            file("a/b/real"),
            link("a/b/up", "../b/real"),
            link("top", "a/b"),
            link("via", "top/../b/real"),
            link("dangling", "nowhere"),
        ];
        check_entries(&entries).unwrap();
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        let cases: Vec<Vec<CodeEntry>> = vec![
            vec![link("x", "../y")],
            vec![link("x", "/etc")],
            vec![dir("d"), link("d/x", "../../y")],
            // `d/b` is the root, so `d/b/..` is above it.
            vec![dir("d"), link("d/b", ".."), link("a", "d/b/..")],
            vec![link("a", "b"), link("b", "a")],
            vec![link("x", "")],
        ];
        for entries in cases {
            let err = check_entries(&entries).unwrap_err();
            assert_eq!(err.code(), "PATH_UNSAFE", "{entries:?}");
        }
    }

    #[test]
    fn entries_beneath_files_or_symlinks_are_refused() {
        let err = check_entries(&[link("l", "d"), dir("d"), file("l/f")]).unwrap_err();
        assert_eq!(err.code(), "PATH_UNSAFE");
        let err = check_entries(&[file("f"), file("f/g")]).unwrap_err();
        assert_eq!(err.code(), "PATH_UNSAFE");
    }

    #[test]
    fn duplicates_are_refused_except_directories() {
        check_entries(&[dir("d"), dir("d")]).unwrap();
        let err = check_entries(&[file("f"), file("f")]).unwrap_err();
        assert_eq!(err.code(), "PACKAGE_DUPLICATE_ENTRY");
    }
}
