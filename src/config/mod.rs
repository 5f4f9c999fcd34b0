//! Configuration: the file formats (`file`), their compiled forms (`policy`, `gateway`), and errors that name the
//! file, line and key an operator must fix.

mod compile;
pub mod connections;
pub mod file;
mod gateway;
pub mod policy;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::spelling;

pub use crate::services::Services;
pub use compile::{compile_policies, compile_policy_source};
pub use gateway::{gateway_from_str, load_gateway, GatewayConfig, Hardening, LogFormat, TlsListener, Upstream};
pub use policy::{BadBody, FieldPath, PathMatch, Policy, Route, RouteKind, RouteNeeds};

/// A configuration problem, located.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted path of the offending key, e.g. `route[login].defense[2].limit`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(file: &Path, line: Option<usize>, key: Option<String>, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_path_buf(), line, key, message: message.into() }
    }

    pub(crate) fn io(file: &Path, error: std::io::Error) -> Self {
        ConfigError::new(file, None, None, format!("cannot read the file: {error}"))
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset.min(source.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line of `key = ...` in a table, or the table's header line when the key is not written there. (toml spans an
/// array-of-tables entry by its header only, so the table's body is scanned up to the next header.)
pub(crate) fn line_of_key(source: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let start = span.start.min(source.len());
    let mut offset = start;
    for (i, text) in source[start..].split_inclusive('\n').enumerate() {
        let trimmed = text.trim_start();
        if i > 0 && trimmed.starts_with('[') {
            break;
        }
        if let Some(rest) = trimmed.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return line_of(source, offset);
            }
        }
        offset += text.len();
    }
    line_of(source, start)
}

/// The line a dotted key is written on: `a.b = …` at the top level, `b = …` under `[a]`, or `a = { b = … }`. A key
/// not written (a default that failed, a missing one) gives the line of its nearest written parent; `None` when
/// nothing of it is written.
pub(crate) fn line_of_dotted(source: &str, dotted: &str) -> Option<usize> {
    let parts: Vec<&str> = dotted.split('.').collect();
    (1..=parts.len()).rev().find_map(|depth| {
        let target = parts[..depth].join(".");
        let parent = parts[..depth - 1].join(".");
        let leaf = parts[depth - 1];
        let mut table = String::new();
        for (index, line) in source.lines().enumerate() {
            let text = line.trim_start();
            if text.starts_with('[') {
                table = text.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string();
                if table == target {
                    return Some(index + 1);
                }
                continue;
            }
            let Some((key, value)) = text.split_once('=') else { continue };
            let key: String = key.split('.').map(|k| k.trim().trim_matches('"')).collect::<Vec<_>>().join(".");
            let full = if table.is_empty() { key } else { format!("{table}.{key}") };
            if full == target || (depth > 1 && full == parent && inline_has_key(value, leaf)) {
                return Some(index + 1);
            }
        }
        None
    })
}

/// Whether an inline table's text (`{ a = 1, b = 2 }`) writes `key`.
fn inline_has_key(value: &str, key: &str) -> bool {
    let Some(body) = value.trim_start().strip_prefix('{') else { return false };
    body.split(',').any(|entry| entry.split_once('=').is_some_and(|(k, _)| k.trim().trim_matches('"') == key))
}

/// The dotted name of the table that byte `offset` of a TOML file lies in: the last `[header]` before it, and the
/// key of an inline table (`a = { … }`) on its line.
fn table_at(source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut table = source[..line_start]
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let before = &source[line_start..offset];
    if let Some((key, rest)) = before.split_once('=') {
        if rest.contains('{') {
            let key = key.trim().trim_matches('"');
            table = if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
        }
    }
    table
}

/// Parse TOML into `T`, turning toml's error into a located [`ConfigError`]: the line, the dotted key where it can
/// be told (`upstream.adress`), and for an unknown key or value the nearest valid one.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, source: &str) -> Result<T, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(source).map_err(|error| located_toml_error(file, source, &error, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        // The dotted key of a value of the wrong type or range (e.g. `connections.refuse_blocked_at_accept`).
        let path = dotted(error.path());
        located_toml_error(file, source, &error.into_inner(), path)
    })
}

/// toml's error, located: the line, the dotted key where it can be told (`upstream.adress`), and for an unknown key
/// or value the nearest valid one. `path` is the deserialiser's path to a value of the wrong type or range.
fn located_toml_error(file: &Path, source: &str, error: &toml::de::Error, path: Option<String>) -> ConfigError {
    let message = error.message().trim().to_string();
    let Some(span) = error.span() else { return ConfigError::new(file, None, path, message) };
    let line = line_of(source, span.start);
    let table = table_at(source, span.start);
    let join = |key: &str| if table.is_empty() { key.to_string() } else { format!("{table}.{key}") };
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let key = if message.starts_with("unknown field") {
        quoted.first().map(|field| join(field))
    } else {
        let written = source.lines().nth(line - 1).unwrap_or("");
        path.or_else(|| {
            written.split_once('=').map(|(k, _)| k.trim().trim_matches('"')).filter(|k| !k.is_empty()).map(join)
        })
    };
    let hint = match quoted.split_first() {
        Some((word, known)) if message.starts_with("unknown ") => spelling::did_you_mean(word, known.iter().copied()),
        _ => String::new(),
    };
    ConfigError::new(file, Some(line), key, format!("{message}{hint}"))
}

/// A deserialisation path as the file spells it (`route[0].defense[1].limit`), without the private names of
/// `toml::Spanned` wrappers; `None` at the top level.
fn dotted(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// What kind of file `stuffgate check` was given, told from its top-level keys.
pub enum FileKind {
    Gateway,
    Policy,
}

pub fn sniff_kind(source: &str) -> FileKind {
    let gateway = source.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("[upstream]") || line.starts_with("upstream") || line.starts_with("policies")
    });
    if gateway {
        FileKind::Gateway
    } else {
        FileKind::Policy
    }
}
