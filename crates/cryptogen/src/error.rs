//! The crate's single error type.

use std::path::PathBuf;

/// Result alias used throughout this crate.
pub type Result<T, E = CryptogenError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading a crypto config or generating
/// material from it.
#[derive(Debug, thiserror::Error)]
pub enum CryptogenError {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The config is not valid YAML, or does not have the expected shape
    /// (unknown key, wrong type, ...).
    #[error("{}{message}", location_prefix(Some(file), *line, *column))]
    Yaml {
        /// Name of the config source, usually the file path.
        file: String,
        /// 1-based line of the problem, when known.
        line: Option<u64>,
        /// 1-based column of the problem, when known.
        column: Option<u64>,
        /// What the YAML parser reported.
        message: String,
    },

    /// The config parsed, but a value is missing or unusable.
    #[error("{}{field}: {reason}", location_prefix(file.as_deref(), *line, None))]
    InvalidConfig {
        /// Name of the config source, when the config came from one.
        file: Option<String>,
        /// 1-based line nearest to the problem, when known.
        line: Option<u64>,
        /// Path of the offending field, e.g. `PeerOrgs[0].Domain`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Generating a key pair failed.
    #[error("generating a key for {subject}: {source}")]
    KeyGeneration {
        /// Common name of the identity the key was for.
        subject: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },

    /// Building or signing a certificate failed.
    #[error("issuing the certificate for {subject}: {source}")]
    Certificate {
        /// Common name of the certificate's subject.
        subject: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },

    /// The system random number generator failed.
    #[error("system random number generator failed while {context}")]
    Random {
        /// What the randomness was needed for.
        context: &'static str,
    },
}

/// Formats `file:line:column: ` with whichever parts are known.
fn location_prefix(file: Option<&str>, line: Option<u64>, column: Option<u64>) -> String {
    let mut out = String::new();
    if let Some(file) = file {
        out.push_str(file);
        if let Some(line) = line {
            out.push_str(&format!(":{line}"));
            if let Some(column) = column {
                out.push_str(&format!(":{column}"));
            }
        }
        out.push_str(": ");
    } else if let Some(line) = line {
        out.push_str(&format!("line {line}: "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_config_display_names_file_line_and_field() {
        let err = CryptogenError::InvalidConfig {
            file: Some("crypto-config.yaml".into()),
            line: Some(7),
            field: "PeerOrgs[0].Domain".into(),
            reason: "missing field".into(),
        };
        assert_eq!(
            err.to_string(),
            "crypto-config.yaml:7: PeerOrgs[0].Domain: missing field"
        );
    }

    #[test]
    fn invalid_config_display_without_source() {
        let err = CryptogenError::InvalidConfig {
            file: None,
            line: None,
            field: "PeerOrgs[0].Domain".into(),
            reason: "missing field".into(),
        };
        assert_eq!(err.to_string(), "PeerOrgs[0].Domain: missing field");
    }

    #[test]
    fn yaml_display_has_line_and_column() {
        let err = CryptogenError::Yaml {
            file: "c.yaml".into(),
            line: Some(3),
            column: Some(9),
            message: "bad".into(),
        };
        assert_eq!(err.to_string(), "c.yaml:3:9: bad");
    }
}
