//! Every defense, one line each. A defense's module owns its name, its parameters (a `Deserialize` struct with
//! `deny_unknown_fields`), what it needs, and how it is built; adding one is its file plus a line here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::{
    breach, distinct, email_domain, failures, fingerprint_accounts, geo, geo_velocity, ip_list, new_device, rate,
    reset_target, user_agent, Defense,
};
use crate::services::Services;
use crate::store::CellId;
use crate::vocabulary::RouteKind;

/// Builds a defense from its parameter table.
pub type Builder = fn(&toml::Table, &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError>;

/// How a policy's `type = "..."` becomes a defense.
pub struct DefenseSpec {
    /// The `type` in a policy file.
    pub name: &'static str,
    /// The names its findings carry (its `Defense::name()`, which for some depends on a parameter such as `key`):
    /// what a later defense's `when` may name. Empty for a defense no other one may depend on.
    pub findings: &'static [&'static str],
    pub build: Builder,
    /// The action when the policy names none, by route kind.
    pub default_action: fn(RouteKind) -> DefaultAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    Block,
    Tag,
    Challenge,
}

/// Most defenses block by default.
pub fn block(_: RouteKind) -> DefaultAction {
    DefaultAction::Block
}

pub const REGISTRY: &[DefenseSpec] = &[
    ip_list::SPEC,
    rate::IP_RATE,
    rate::ACCOUNT_RATE,
    rate::ACCOUNT_IP_RATE,
    rate::SESSION_RATE,
    failures::SPEC,
    distinct::DISTINCT_ACCOUNTS,
    distinct::PASSWORD_SPRAY,
    fingerprint_accounts::SPEC,
    breach::BREACHED_PASSWORD,
    breach::LEAKED_PAIR,
    breach::BREACHED_SOURCE,
    geo::SPEC,
    geo_velocity::SPEC,
    email_domain::SPEC,
    reset_target::SPEC,
    new_device::SPEC,
    user_agent::SPEC,
];

pub fn lookup(name: &str) -> Option<&'static DefenseSpec> {
    REGISTRY.iter().find(|spec| spec.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|spec| spec.name)
}

/// Every name a finding may carry, in registry order (what `new_device`'s `when` accepts).
pub fn finding_names() -> impl Iterator<Item = &'static str> + Clone {
    REGISTRY.iter().flat_map(|spec| spec.findings.iter().copied())
}

/// What a builder may use besides its parameters.
pub struct BuildContext<'a> {
    pub env: &'a Services,
    pub route_kind: RouteKind,
    /// The record cell this defense keeps its state in (stable for the route and parameters).
    pub cell: CellId,
    /// The policy file's directory, for files a defense names.
    pub base_dir: &'a Path,
}

impl BuildContext<'_> {
    pub fn max_keys(&self) -> usize {
        self.env.max_tracked_keys
    }
}

/// A parameter problem: the key (relative to the defense's table) and what is wrong with it.
pub type BuildError = (String, String);

pub fn error(key: &str, message: impl Into<String>) -> BuildError {
    (key.to_string(), message.into())
}

/// Deserialize a defense's own parameters, naming the offending key on error.
pub fn params<T: DeserializeOwned>(table: &toml::Table) -> Result<T, BuildError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let message = e.inner().to_string();
        let quoted = |prefix: &str| {
            message.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('`')).and_then(|r| r.split('`').next())
        };
        let key = quoted("unknown field ")
            .or_else(|| quoted("missing field "))
            .map(str::to_string)
            .unwrap_or_else(|| e.path().to_string());
        // toml appends where it was ("\nin `key`"): the key is reported on its own.
        let message = message.split("\nin `").next().unwrap_or(&message).trim().to_string();
        let message = if message.starts_with("unknown field") {
            message
                .replace("unknown field", "unknown parameter")
                .replace(", expected one of", "; the parameters of this type are")
        } else {
            message.replace(", expected one of", "; choose one of")
        };
        (key, message)
    })
}

/// A duration written as "500ms", "30s", "10m", "2h" or "1d"; never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Span, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = crate::clock::parse_duration(&text).map_err(serde::de::Error::custom)?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom("must be longer than zero"));
        }
        Ok(Span(duration))
    }
}

impl Span {
    pub fn nanos(self) -> u64 {
        self.0.as_nanos() as u64
    }
}

/// A count that must be at least one.
pub fn positive(key: &str, value: u32) -> Result<u32, BuildError> {
    if value == 0 {
        return Err(error(key, "must be greater than zero"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defense_is_registered_once() {
        let mut seen = std::collections::HashSet::new();
        for name in names() {
            assert!(seen.insert(name), "{name} registered twice");
        }
        assert!(lookup("ip_rate").is_some() && lookup("nonsense").is_none());
    }
}
