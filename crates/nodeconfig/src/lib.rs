//! Loading a node's Fabric-style YAML configuration (`orderer.yaml`,
//! `core.yaml`) into a typed struct, the way both Twill nodes do it.
//!
//! The typed config's `Default` value, serialised, is the schema: keys in the
//! file are matched to it case-insensitively (Fabric's viper does the same),
//! empty values keep their defaults, keys of Fabric's own file that Twill
//! does not use are accepted and reported, and any other key is an error
//! naming the file, the field and the keys expected there. Then every leaf
//! named by an environment variable `<PREFIX>_<SECTION>_<KEY>` (for example
//! `ORDERER_GENERAL_LISTENPORT`) is overridden, its text converted to the
//! leaf's type. Errors about a field set from the environment name the
//! variable.
//!
//! ```
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! #[serde(rename_all = "camelCase", default)]
//! struct Cfg { general: General }
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! #[serde(rename_all = "camelCase", default)]
//! struct General { listen_port: u16 }
//!
//! let env = [("NODE_GENERAL_LISTENPORT".to_string(), "7050".to_string())];
//! let (cfg, origin) = twill_nodeconfig::load::<Cfg>(
//!     "General:\n  ListenPort: 1\n", "node.yaml".as_ref(), env, "NODE", &[],
//! ).unwrap();
//! assert_eq!(cfg.general.listen_port, 7050);
//! assert_eq!(origin.field_name("general.listenPort"), "general.listenPort (from NODE_GENERAL_LISTENPORT)");
//! ```

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// A configuration that cannot be read or is not valid. The message is one
/// line naming the file and, where there is one, the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (first line).
        message: String,
    },
    /// A setting is unknown, of the wrong type, or not valid.
    #[error("{}: {field}: {reason}", file.display())]
    Field {
        /// The config file.
        file: PathBuf,
        /// Dotted path of the field, followed by the environment variable
        /// when the value came from one.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where a loaded configuration came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The configuration file.
    pub file: PathBuf,
    /// Field path → the environment variable that set it.
    pub from_env: BTreeMap<String, String>,
    /// Keys of Fabric's file that were present and are not used.
    pub ignored: Vec<String>,
}

impl Origin {
    /// `field` as errors name it: with ` (from VAR)` when the environment
    /// set it.
    pub fn field_name(&self, field: &str) -> String {
        match self.from_env.get(field) {
            Some(var) => format!("{field} (from {var})"),
            None => field.to_string(),
        }
    }

    /// A [`ConfigError::Field`] about `field` of this configuration.
    pub fn field_error(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            file: self.file.clone(),
            field: self.field_name(field),
            reason: reason.into(),
        }
    }
}

/// Parses YAML `text` as if read from `path` into `T`, with `T::default()`
/// as the schema, the environment variables of `env` starting with
/// `prefix` as overrides, and `ignored` (dotted paths, any case) as Fabric
/// keys to accept and report. Relative paths are left to the caller.
pub fn load<T>(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
    ignored: &[&str],
) -> Result<(T, Origin), ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut doc: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: first_line(&e.to_string()),
        })?
    };
    if doc.is_null() {
        doc = Value::Object(Map::new());
    }
    let mut origin = Origin {
        file: path.to_path_buf(),
        ..Origin::default()
    };
    if !doc.is_object() {
        return Err(origin.field_error("(document)", "must be a mapping of sections"));
    }
    let schema = serde_json::to_value(T::default())
        .map_err(|e| origin.field_error("(defaults)", e.to_string()))?;
    normalize(&mut doc, &schema, &mut Vec::new(), ignored, &mut origin)?;
    let prefix_upper = prefix.to_ascii_uppercase();
    let env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.to_ascii_uppercase().starts_with(&prefix_upper))
        .collect();
    overlay_env(
        &mut doc,
        &schema,
        &mut Vec::new(),
        prefix,
        &env,
        &mut origin,
    );
    let cfg: T = serde_path_to_error::deserialize(doc).map_err(|e| {
        let field = e.path().to_string();
        origin.field_error(&field, first_line(&e.into_inner().to_string()))
    })?;
    Ok((cfg, origin))
}

/// Makes a relative, non-empty `p` relative to `base` instead, cleaned.
pub fn resolve(base: &Path, p: &mut PathBuf) {
    if !p.as_os_str().is_empty() && p.is_relative() {
        *p = clean(&base.join(&*p));
    }
}

/// Drops `.` and folds `name/..` lexically.
pub fn clean(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// The first line of an error message, without a leading `error: `.
pub fn first_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or(msg).trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn join_path(path: &[String], key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{}.{key}", path.join("."))
    }
}

/// Gives the document's keys the schema's spelling, drops empty values (so
/// that they keep their defaults), drops the `ignored` Fabric keys, and
/// refuses any other key.
fn normalize(
    doc: &mut Value,
    schema: &Value,
    path: &mut Vec<String>,
    ignored: &[&str],
    origin: &mut Origin,
) -> Result<(), ConfigError> {
    let (Value::Object(map), Value::Object(known)) = (&mut *doc, schema) else {
        return Ok(());
    };
    let entries = std::mem::take(map);
    for (key, value) in entries {
        let here = join_path(path, &key);
        if value.is_null() {
            continue;
        }
        let Some(canonical) = known.keys().find(|k| k.eq_ignore_ascii_case(&key)) else {
            if ignored.iter().any(|k| k.eq_ignore_ascii_case(&here)) {
                origin.ignored.push(here);
                continue;
            }
            let mut expected: Vec<&str> = known.keys().map(String::as_str).collect();
            expected.sort_unstable();
            return Err(origin.field_error(
                &here,
                format!("unknown key (expected one of: {})", expected.join(", ")),
            ));
        };
        if map.contains_key(canonical) {
            return Err(origin.field_error(
                &join_path(path, canonical),
                format!("set twice (as '{key}' and with another spelling)"),
            ));
        }
        let mut value = value;
        if let Some(sub) = known.get(canonical) {
            path.push(canonical.clone());
            normalize(&mut value, sub, path, ignored, origin)?;
            path.pop();
        }
        map.insert(canonical.clone(), value);
    }
    Ok(())
}

/// Sets every schema leaf named by a `<prefix>_*` variable, converting the
/// text to the leaf's type (bool, number, list) where it parses; values
/// that do not are left as text for deserialization to report.
fn overlay_env(
    doc: &mut Value,
    schema: &Value,
    path: &mut Vec<String>,
    prefix: &str,
    env: &[(String, String)],
    origin: &mut Origin,
) {
    let Value::Object(known) = schema else {
        return;
    };
    if !doc.is_object() {
        // A scalar where a section belongs: deserialization reports it.
        return;
    }
    for (key, leaf) in known {
        path.push(key.clone());
        if leaf.is_object() {
            let existing = doc.get(key).cloned();
            let child_exists = existing.is_some();
            let mut child = existing.unwrap_or_else(|| Value::Object(Map::new()));
            let before = origin.from_env.len();
            overlay_env(&mut child, leaf, path, prefix, env, origin);
            if child_exists || origin.from_env.len() > before {
                if let Value::Object(m) = doc {
                    m.insert(key.clone(), child);
                }
            }
        } else {
            let var = format!(
                "{prefix}_{}",
                path.iter()
                    .map(|s| s.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join("_")
            );
            if let Some((name, text)) = env.iter().find(|(k, _)| k.eq_ignore_ascii_case(&var)) {
                if let Value::Object(m) = doc {
                    m.insert(key.clone(), env_value(text, leaf));
                }
                origin.from_env.insert(path.join("."), name.clone());
            }
        }
        path.pop();
    }
}

/// Converts an environment value to the type of the schema's leaf.
fn env_value(text: &str, schema_leaf: &Value) -> Value {
    match schema_leaf {
        Value::Bool(_) => match text.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Value::Bool(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        Value::Number(_) => {
            let t = text.trim();
            if let Ok(n) = t.parse::<u64>() {
                Value::from(n)
            } else if let Ok(n) = t.parse::<i64>() {
                Value::from(n)
            } else {
                Value::String(text.to_string())
            }
        }
        Value::Array(_) => {
            let t = text.trim();
            // Fabric's form is `[a, b]`; a bare value is split on
            // whitespace as viper does.
            let items: Vec<Value> = match t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some(inner) => inner
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
                None => t
                    .split_whitespace()
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            };
            Value::Array(items)
        }
        _ => Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", default)]
    struct Cfg {
        general: General,
    }

    #[derive(Debug, Default, Serialize, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", default)]
    struct General {
        listen_port: u16,
        enabled: bool,
        roots: Vec<String>,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_match_any_case_and_env_overrides_typed() {
        let (cfg, origin) = load::<Cfg>(
            "GENERAL:\n  listenport: 1\n",
            Path::new("n.yaml"),
            env(&[
                ("N_GENERAL_ENABLED", "true"),
                ("N_GENERAL_ROOTS", "[a, b]"),
                ("OTHER_GENERAL_LISTENPORT", "9"),
            ]),
            "N",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.general.listen_port, 1);
        assert!(cfg.general.enabled);
        assert_eq!(cfg.general.roots, ["a", "b"]);
        assert_eq!(origin.from_env.len(), 2);
    }

    #[test]
    fn unknown_ignored_and_bad_fields() {
        let err = load::<Cfg>(
            "general:\n  nope: 1\n",
            Path::new("n.yaml"),
            env(&[]),
            "N",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("n.yaml: general.nope: unknown key"),
            "{err}"
        );

        let (_, origin) =
            load::<Cfg>("vm:\n  x: 1\n", Path::new("n.yaml"), env(&[]), "N", &["VM"]).unwrap();
        assert_eq!(origin.ignored, ["vm"]);

        let err = load::<Cfg>(
            "",
            Path::new("n.yaml"),
            env(&[("N_GENERAL_LISTENPORT", "x")]),
            "N",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("n.yaml: general.listenPort (from N_GENERAL_LISTENPORT):"),
            "{err}"
        );
        let err = load::<Cfg>("- a\n", Path::new("n.yaml"), env(&[]), "N", &[]).unwrap_err();
        assert!(err.to_string().contains("(document)"), "{err}");
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean(Path::new("/a/b/../../c/./d")), Path::new("/c/d"));
        assert_eq!(clean(Path::new("a/../../b")), Path::new("../b"));
        assert_eq!(clean(Path::new("/..")), Path::new("/"));
        let mut p = PathBuf::from("x/../y");
        resolve(Path::new("/base"), &mut p);
        assert_eq!(p, Path::new("/base/y"));
    }
}
