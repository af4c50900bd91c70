//! The crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, LifecycleError>;

/// Everything that can go wrong while building, parsing, unpacking or
/// storing a chaincode package.
///
/// [`LifecycleError::code`] gives each variant a stable string to match on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// Reading or writing a file or directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Writing an archive in memory failed (a tar or gzip encoder error).
    #[error("cannot write {part}: {source}")]
    ArchiveWrite {
        /// Which archive was being written (`package` or `code.tar.gz`).
        part: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The package, or a part of it, is not what the format requires:
    /// not gzip, not a readable tar, not valid JSON, a non-regular entry...
    #[error("malformed {part}: {reason}")]
    Malformed {
        /// Which part is malformed (`package`, `metadata.json` or
        /// `code.tar.gz`).
        part: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The package or one of its parts exceeds a size limit.
    #[error("{part} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// What is too large (`package`, `metadata.json`, `code.tar.gz`,
        /// the unpacked code, or a file inside it).
        part: String,
        /// The size found (or the size at which reading stopped).
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A required entry of the package is absent.
    #[error("package has no {entry} entry")]
    MissingEntry {
        /// The missing entry (`metadata.json` or `code.tar.gz`).
        entry: &'static str,
    },

    /// The package holds an entry other than `metadata.json` and
    /// `code.tar.gz`.
    #[error(
        "package holds unexpected entry {entry:?}; only metadata.json and code.tar.gz are allowed"
    )]
    UnexpectedEntry {
        /// The entry's name as found in the archive.
        entry: String,
    },

    /// The same path appears twice, in the package or in its code archive
    /// (or twice among the files handed to a builder).
    #[error("duplicate entry {entry:?} in {part}")]
    DuplicateEntry {
        /// Where (`package` or `code.tar.gz`).
        part: &'static str,
        /// The duplicated path.
        entry: String,
    },

    /// A label that does not match `^[[:alnum:]][[:alnum:]_.+-]*$`.
    #[error("invalid chaincode label {label:?}: {reason}")]
    InvalidLabel {
        /// The label as given.
        label: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The package type in `metadata.json` (or handed to a builder) is
    /// unusable, for example empty.
    #[error("invalid chaincode package type {package_type:?}: {reason}")]
    InvalidType {
        /// The type as given.
        package_type: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A path in the code archive (or a symlink target, or a file handed to
    /// a builder) that could escape the directory it is unpacked into.
    #[error("unsafe path {path:?} in code archive: {reason}")]
    UnsafePath {
        /// The path (or `path -> target` for a symlink).
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// An entry of the code archive of a kind Twill does not unpack
    /// (hard link, device, FIFO, sparse file...).
    #[error("unsupported {kind} entry {path:?} in code archive")]
    UnsupportedEntry {
        /// The entry's path.
        path: String,
        /// The kind of entry.
        kind: String,
    },

    /// The launch file of a `ccaas` or `process` package is absent from
    /// `code.tar.gz`.
    #[error("code.tar.gz of a {package_type} package has no {file}")]
    MissingLaunchFile {
        /// The package type.
        package_type: &'static str,
        /// The file looked for (`connection.json` or `run.json`).
        file: &'static str,
    },

    /// The launch file (`connection.json` or `run.json`) is invalid.
    #[error("invalid {file}{}: {reason}", field.as_deref().map(|f| format!(" field {f:?}")).unwrap_or_default())]
    InvalidLaunchFile {
        /// The file (`connection.json` or `run.json`).
        file: &'static str,
        /// The offending field, when one is to blame.
        field: Option<String>,
        /// What is wrong.
        reason: String,
    },

    /// A string that is not a package id (`<label>:<64 lowercase hex>`).
    #[error("invalid package id {package_id:?}: {reason}")]
    InvalidPackageId {
        /// The id as given.
        package_id: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The package is already in the store.
    #[error("chaincode already successfully installed (package ID '{package_id}')")]
    AlreadyInstalled {
        /// The package id.
        package_id: String,
    },

    /// No package with this id is in the store.
    #[error("chaincode install package '{package_id}' not found")]
    NotInstalled {
        /// The package id asked for.
        package_id: String,
    },

    /// A stored package whose bytes no longer hash to its id.
    #[error("stored package {package_id} is corrupt: {reason}")]
    StoreCorrupt {
        /// The package id.
        package_id: String,
        /// What is wrong.
        reason: String,
    },

    /// [`unpack_code`](crate::unpack_code) was pointed at something other
    /// than an empty or absent directory.
    #[error("cannot unpack into {}: {reason}", path.display())]
    BadDestination {
        /// The destination.
        path: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl LifecycleError {
    /// A stable, machine-matchable code for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            LifecycleError::Io { .. } => "IO",
            LifecycleError::ArchiveWrite { .. } => "ARCHIVE_WRITE",
            LifecycleError::Malformed { .. } => "PACKAGE_MALFORMED",
            LifecycleError::TooLarge { .. } => "PACKAGE_TOO_LARGE",
            LifecycleError::MissingEntry { .. } => "PACKAGE_MISSING_ENTRY",
            LifecycleError::UnexpectedEntry { .. } => "PACKAGE_UNEXPECTED_ENTRY",
            LifecycleError::DuplicateEntry { .. } => "PACKAGE_DUPLICATE_ENTRY",
            LifecycleError::InvalidLabel { .. } => "LABEL_INVALID",
            LifecycleError::InvalidType { .. } => "TYPE_INVALID",
            LifecycleError::UnsafePath { .. } => "PATH_UNSAFE",
            LifecycleError::UnsupportedEntry { .. } => "ENTRY_UNSUPPORTED",
            LifecycleError::MissingLaunchFile { .. } => "LAUNCH_FILE_MISSING",
            LifecycleError::InvalidLaunchFile { .. } => "LAUNCH_FILE_INVALID",
            LifecycleError::InvalidPackageId { .. } => "PACKAGE_ID_INVALID",
            LifecycleError::AlreadyInstalled { .. } => "ALREADY_INSTALLED",
            LifecycleError::NotInstalled { .. } => "NOT_INSTALLED",
            LifecycleError::StoreCorrupt { .. } => "STORE_CORRUPT",
            LifecycleError::BadDestination { .. } => "DESTINATION_INVALID",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LifecycleError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(part: &'static str, reason: impl Into<String>) -> Self {
        LifecycleError::Malformed {
            part,
            reason: reason.into(),
        }
    }
}
