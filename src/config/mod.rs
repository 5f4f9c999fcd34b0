//! Configuration: the file formats (`file`), their compiled forms (`policy`, `gateway`), and errors that name the
//! file, line and key an operator must fix.

mod compile;
pub mod file;
mod gateway;
pub mod policy;

use std::fmt;
use std::path::{Path, PathBuf};

pub use compile::{compile_policies, compile_policy_source, CompileEnv};
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

/// Parse TOML into `T`, turning toml's error into a located [`ConfigError`].
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, source: &str) -> Result<T, ConfigError> {
    toml::from_str(source).map_err(|error| {
        let line = error.span().map(|span| line_of(source, span.start));
        ConfigError::new(file, line, None, error.message().trim().to_string())
    })
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
