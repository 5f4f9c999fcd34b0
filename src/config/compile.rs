//! Policy files → [`Policy`]: every value checked, every error located, and the state of unchanged defenses carried
//! over from the previous policy on reload.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::file::{DefenseFile, PolicyFile, RouteFile};
use super::policy::{BadBody, FieldPath, PathMatch, Policy, Route, RouteKind};
use super::{line_of_key, parse_toml, ConfigError};
use crate::clock::{parse_duration, Clock};
use crate::defense::distinct::{DistinctAccounts, DistinctAccountsSettings, DistinctCount, DistinctKey};
use crate::breach::FilterKind;
use crate::defense::breach::{BreachMatch, BreachedSource, SharedFilter};
use crate::defense::geo::{CountryRule, GeoFence, Treat};
use crate::defense::email_domain::EmailDomain;
use crate::defense::geo_velocity::GeoVelocity;
use crate::defense::reset_target::ResetTarget;
use crate::geoip::{CountryCode, SharedGeoDb};
use crate::defense::failures::{FailedLogins, FailedLoginsSettings, FailureKey};
use crate::defense::ip_list::IpList;
use crate::defense::known_sources::KnownSources;
use crate::defense::rate::{RateKey, RateLimit};
use crate::defense::{Action, Defense, Mode, Slot};

/// What compiled defenses share with the running gateway.
#[derive(Clone)]
pub struct CompileEnv {
    pub clock: Clock,
    pub known_sources: Arc<KnownSources>,
    pub max_tracked_keys: usize,
    /// The GeoIP database the engine locates addresses with; geo defenses need one to serve.
    pub geo: Option<Arc<SharedGeoDb>>,
    /// Breached-password and leaked-pair filters, for the breach defenses.
    pub breached_passwords: Option<Arc<SharedFilter>>,
    pub leaked_pairs: Option<Arc<SharedFilter>>,
    /// False for `stuffgate check`: validate defenses that need data files without those files.
    pub require_data: bool,
    /// Keys the hash of session header values (bearer tokens are never held in clear).
    pub session_hasher: ahash::RandomState,
}

impl CompileEnv {
    pub fn new(clock: Clock, max_tracked_keys: usize) -> CompileEnv {
        CompileEnv {
            clock,
            known_sources: Arc::new(KnownSources::new(max_tracked_keys, Duration::from_secs(30 * 86_400))),
            max_tracked_keys,
            geo: None,
            breached_passwords: None,
            leaked_pairs: None,
            require_data: true,
            session_hasher: ahash::RandomState::new(),
        }
    }

    pub fn with_geo(mut self, geo: Option<Arc<SharedGeoDb>>) -> CompileEnv {
        self.geo = geo;
        self
    }

    /// Load the breach filters a gateway file names.
    pub fn open_breach_filters(
        &mut self,
        passwords: Option<&std::path::Path>,
        pairs: Option<&std::path::Path>,
    ) -> Result<(), crate::defense::breach::FilterLoadError> {
        if let Some(path) = passwords {
            self.breached_passwords = Some(Arc::new(SharedFilter::open(path, FilterKind::Password)?));
        }
        if let Some(path) = pairs {
            self.leaked_pairs = Some(Arc::new(SharedFilter::open(path, FilterKind::Pair)?));
        }
        Ok(())
    }
}

/// Compile policy files. With `previous`, a defense whose route name and parameters are unchanged keeps its state
/// (counters, penalties, rate buckets); mode and action may change without losing it.
pub fn compile_policies(
    files: &[PathBuf],
    env: &CompileEnv,
    previous: Option<&Policy>,
) -> Result<Policy, ConfigError> {
    let mut policy = Policy {
        routes: Vec::new(),
        files: files.to_vec(),
    };
    let mut names = HashSet::new();
    for path in files {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        compile_file(path, &source, env, previous, &mut names, &mut policy.routes)?;
    }
    Ok(policy)
}

/// Compile one policy text (used by `compile_policies` and by tests).
pub(crate) fn compile_file(
    path: &Path,
    source: &str,
    env: &CompileEnv,
    previous: Option<&Policy>,
    names: &mut HashSet<String>,
    routes: &mut Vec<Route>,
) -> Result<(), ConfigError> {
    let file: PolicyFile = parse_toml(path, source)?;
    let defaults = &file.defaults;
    let default_mode = parse_mode(defaults.mode.as_deref())
        .map_err(|m| ConfigError::new(path, None, Some("defaults.mode".into()), m))?;
    let ipv6_prefix = defaults.ipv6_prefix.unwrap_or(64);
    if !(16..=128).contains(&ipv6_prefix) {
        return Err(ConfigError::new(path, None, Some("defaults.ipv6_prefix".into()), "must be between 16 and 128"));
    }
    let default_bad_body = parse_bad_body(defaults.on_bad_body.as_deref())
        .map_err(|m| ConfigError::new(path, None, Some("defaults.on_bad_body".into()), m))?;
    let max_body_bytes = defaults.max_body_bytes.unwrap_or(64 * 1024);
    if max_body_bytes == 0 || max_body_bytes > 64 * 1024 {
        return Err(ConfigError::new(
            path,
            None,
            Some("defaults.max_body_bytes".into()),
            "must be between 1 and 65536 (pingora replays at most 64 KiB of a body it has read)",
        ));
    }

    for spanned_route in &file.routes {
        let route_span = spanned_route.span();
        let route: &RouteFile = spanned_route.get_ref();
        let key = |k: &str| Some(format!("route[{}].{k}", route.name));
        let err = |k: &str, m: String| {
            let written = k.split('.').next().unwrap_or(k);
            ConfigError::new(path, Some(line_of_key(source, route_span.clone(), written)), key(k), m)
        };

        if route.name.is_empty()
            || !route.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(err("name", format!("`{}` must be lower-case letters, digits, '_' or '-' (it is a metric label)", route.name)));
        }
        if !names.insert(route.name.clone()) {
            return Err(err("name", format!("route `{}` is defined twice; route names must be unique", route.name)));
        }
        let kind = match route.kind.as_str() {
            "login" => RouteKind::Login,
            "reset" => RouteKind::Reset,
            "signup" => RouteKind::Signup,
            "generic" => RouteKind::Generic,
            other => return Err(err("kind", format!("`{other}` is not one of login, reset, signup, generic"))),
        };
        let method = route
            .method
            .to_ascii_uppercase()
            .parse::<http::Method>()
            .map_err(|_| err("method", format!("`{}` is not an HTTP method", route.method)))?;
        let path_match = match (&route.path, &route.path_prefix) {
            (Some(p), None) if p.starts_with('/') => PathMatch::exact(p),
            (None, Some(p)) if p.starts_with('/') => PathMatch::prefix(p),
            (Some(_), Some(_)) => return Err(err("path", "set either `path` or `path_prefix`, not both".into())),
            (None, None) => return Err(err("path", "set `path` (exact) or `path_prefix`".into())),
            _ => return Err(err("path", "must start with '/'".into())),
        };
        let field = |name: &str, text: &Option<String>| -> Result<Option<FieldPath>, ConfigError> {
            match text {
                None => Ok(None),
                Some(t) => FieldPath::parse(t)
                    .map(Some)
                    .ok_or_else(|| err(name, format!("`{t}` is not a field name or dotted path like \"user.email\""))),
            }
        };
        let account_field = field("body.account", &route.body.account)?;
        let password_field = field("body.password", &route.body.password)?;
        let target_field = field("body.target", &route.body.target)?;
        let mut session_header: Option<http::HeaderName> = None;
        let (default_success, default_failure): (Vec<u16>, Vec<u16>) = match kind {
            RouteKind::Login => (vec![200], vec![401, 403]),
            RouteKind::Signup => (vec![200, 201], vec![]),
            RouteKind::Reset | RouteKind::Generic => (vec![200, 202, 204], vec![]),
        };
        let success_status = route.outcome.success.clone().unwrap_or(default_success);
        let failure_status = route.outcome.failure.clone().unwrap_or(default_failure);
        for status in success_status.iter().chain(&failure_status) {
            if !(100..=599).contains(status) {
                return Err(err("outcome", format!("{status} is not an HTTP status")));
            }
        }
        if let Some(both) = success_status.iter().find(|s| failure_status.contains(s)) {
            return Err(err("outcome", format!("status {both} is listed as both success and failure")));
        }
        let on_bad_body = match &route.on_bad_body {
            Some(text) => parse_bad_body(Some(text)).map_err(|m| err("on_bad_body", m))?,
            None => default_bad_body,
        };

        let previous_route = previous.and_then(|p| p.routes.iter().find(|r| r.name == route.name));
        let mut reused = HashSet::new();
        let mut slots = Vec::with_capacity(route.defenses.len());
        for (index, spanned) in route.defenses.iter().enumerate() {
            let span = spanned.span();
            let defense = spanned.get_ref();
            let key = |k: &str| Some(format!("route[{}].defense[{index}].{k}", route.name));
            let derr = |k: &str, m: String| ConfigError::new(path, Some(line_of_key(source, span.clone(), k)), key(k), m);
            let fingerprint = fingerprint(defense, ipv6_prefix);
            let carried = previous_route.and_then(|r| {
                r.slots.iter().enumerate().find(|(i, s)| s.fingerprint == fingerprint && !reused.contains(i))
            });
            let built: Arc<dyn Defense> = match carried {
                Some((i, slot)) => {
                    reused.insert(i);
                    slot.defense.clone()
                }
                None => build_defense(defense, env, path.parent().unwrap_or(Path::new(".")))
                    .map_err(|(k, m)| derr(k, m))?,
            };
            let wants_password = ["password_spray", "breached_password", "leaked_pair"];
            if defense.kind == "reset_target" && target_field.is_none() {
                return Err(derr(
                    "type",
                    format!("`reset_target` needs the destination field: set `body.target` on route `{}`", route.name),
                ));
            }
            if defense.kind == "session_rate" {
                let text = defense.header.as_deref().unwrap_or("authorization");
                let name = http::HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes())
                    .map_err(|_| derr("header", format!("`{text}` is not a header name")))?;
                if session_header.as_ref().is_some_and(|h| *h != name) {
                    return Err(derr("header", "all `session_rate` defenses of a route must read the same header".into()));
                }
                session_header = Some(name);
            }
            if wants_password.contains(&defense.kind.as_str()) && password_field.is_none() {
                return Err(derr(
                    "type",
                    format!("`{}` needs the password: set `body.password` on route `{}`", defense.kind, route.name),
                ));
            }
            if built.needs_credentials() && account_field.is_none() {
                return Err(derr(
                    "type",
                    format!("`{}` needs the account: set `body.account` on route `{}`", defense.kind, route.name),
                ));
            }
            let mode = match &defense.mode {
                Some(m) => parse_mode(Some(m)).map_err(|m| derr("mode", m))?,
                None => default_mode,
            };
            // Breach matches default to `tag` where real users are concerned (logins: users reuse breached
            // passwords, the app should force a reset) and to `block` where a new password is being chosen.
            let default_action = match (defense.kind.as_str(), kind) {
                ("breached_password", RouteKind::Login | RouteKind::Generic) | ("leaked_pair", _) => "tag",
                _ => "block",
            };
            let action = match defense.action.as_deref().or(Some(default_action)) {
                None | Some("block") => {
                    let status = defense.status.unwrap_or_else(|| built.default_status());
                    if !(400..=599).contains(&status) {
                        return Err(derr("status", format!("{status} is not a 4xx or 5xx status")));
                    }
                    Action::Block { status }
                }
                Some("tag") => {
                    if defense.status.is_some() && defense.action.is_some() {
                        return Err(derr("status", "a `tag` action answers nothing; remove `status`".into()));
                    }
                    Action::Tag
                }
                Some("challenge") => {
                    return Err(derr("action", "`challenge` is not available yet: use \"block\" or \"tag\"".into()))
                }
                Some(other) => return Err(derr("action", format!("`{other}` is not \"block\" or \"tag\""))),
            };
            slots.push(Slot {
                defense: built,
                mode,
                action,
                fingerprint,
            });
        }
        let checks_breach = slots
            .iter()
            .any(|s| matches!(s.defense.name(), "breached_password" | "leaked_pair" | "breached_source"));
        routes.push(Route {
            checks_breach,
            name: route.name.clone(),
            kind,
            method,
            path: path_match,
            account_field,
            password_field,
            target_field,
            session_header,
            success_status,
            failure_status,
            on_bad_body,
            max_body_bytes,
            ipv6_prefix,
            slots,
            source: path.to_path_buf(),
        });
    }
    Ok(())
}

fn parse_mode(text: Option<&str>) -> Result<Mode, String> {
    match text {
        None | Some("enforce") => Ok(Mode::Enforce),
        Some("observe") => Ok(Mode::Observe),
        Some(other) => Err(format!("`{other}` is not \"enforce\" or \"observe\"")),
    }
}

fn parse_bad_body(text: Option<&str>) -> Result<BadBody, String> {
    match text {
        None | Some("reject") => Ok(BadBody::Reject),
        Some("forward") => Ok(BadBody::Forward),
        Some(other) => Err(format!("`{other}` is not \"reject\" or \"forward\"")),
    }
}

/// The parameters that define a defense's state, without mode and action.
fn fingerprint(defense: &DefenseFile, ipv6_prefix: u8) -> String {
    let mut essential = defense.clone();
    essential.mode = None;
    essential.action = None;
    essential.status = None;
    format!("{essential:?}/v6={ipv6_prefix}")
}

type BuildError = (&'static str, String);

fn build_defense(file: &DefenseFile, env: &CompileEnv, base_dir: &Path) -> Result<Arc<dyn Defense>, BuildError> {
    let kind = file.kind.as_str();
    let allowed: &[&str] = match kind {
        "ip_rate" | "account_ip_rate" => &["limit", "per", "burst"],
        "session_rate" => &["limit", "per", "burst", "header"],
        "email_domain" => &["deny_domains", "deny_domains_file", "deny_disposable"],
        "reset_target" => &[],
        "account_rate" => &["limit", "per", "burst", "exempt_known_sources"],
        "failed_logins" => &["key", "threshold", "window", "penalty", "max_penalty", "exempt_known_sources"],
        "distinct_accounts" | "password_spray" => &[
            "threshold",
            "window",
            "count",
            "penalty",
            "max_penalty",
            "suspect_threshold",
            "suspect_success_ratio",
        ],
        "ip_list" => &["allow", "deny"],
        "geo" => &["allow_countries", "deny_countries", "allow_asns", "deny_asns", "unknown_country", "private_addresses"],
        "geo_velocity" => &["window"],
        "breached_password" | "leaked_pair" => &[],
        "breached_source" => &["threshold", "window", "penalty", "max_penalty"],
        other => {
            return Err((
                "type",
                format!(
                    "`{other}` is not a defense; known: ip_rate, account_rate, account_ip_rate, failed_logins, \
                     distinct_accounts, password_spray, ip_list, geo, geo_velocity, breached_password, leaked_pair, \
                     breached_source, session_rate, email_domain, reset_target"
                ),
            ))
        }
    };
    if let Some(stray) = file.set_parameters().into_iter().find(|p| !allowed.contains(p)) {
        return Err((stray, format!("does not apply to `{kind}` (it takes: {})", allowed.join(", "))));
    }
    let duration = |name: &'static str, value: &Option<String>, default: Option<&str>| -> Result<Duration, BuildError> {
        let text = value.as_deref().or(default).ok_or((name, format!("`{kind}` needs `{name}`, e.g. \"10m\"")))?;
        let d = parse_duration(text).map_err(|m| (name, m))?;
        if d.is_zero() {
            return Err((name, "must be longer than zero".into()));
        }
        Ok(d)
    };
    let positive = |name: &'static str, value: Option<u32>| -> Result<u32, BuildError> {
        match value {
            None => Err((name, format!("`{kind}` needs `{name}`"))),
            Some(0) => Err((name, "must be greater than zero".into())),
            Some(n) => Ok(n),
        }
    };
    let known = |default: bool| file.exempt_known_sources.unwrap_or(default).then(|| env.known_sources.clone());
    let max_keys = env.max_tracked_keys;

    let defense: Arc<dyn Defense> = match kind {
        "ip_rate" | "account_rate" | "account_ip_rate" | "session_rate" => {
            let limit = positive("limit", file.limit)?;
            let per = duration("per", &file.per, None)?;
            let burst = match file.burst {
                Some(0) => return Err(("burst", "must be greater than zero".into())),
                Some(b) => b,
                None => limit,
            };
            let (key, known_sources) = match kind {
                "ip_rate" => (RateKey::Ip, None),
                "account_rate" => (RateKey::Account, known(true)),
                "session_rate" => (RateKey::Session, None),
                _ => (RateKey::AccountIp, None),
            };
            let limiter = RateLimit::new(key, limit, per, burst, env.clock.clone(), known_sources)
                .ok_or(("per", format!("{limit} per {per:?} is too fine a rate")))?
                .with_key_cap(max_keys);
            Arc::new(limiter)
        }
        "failed_logins" => {
            let key = match file.key.as_deref() {
                Some("ip") => FailureKey::Ip,
                Some("account") => FailureKey::Account,
                Some("account_ip") => FailureKey::AccountIp,
                Some(other) => return Err(("key", format!("`{other}` is not ip, account or account_ip"))),
                None => return Err(("key", "`failed_logins` needs `key`: ip, account or account_ip".into())),
            };
            let settings = FailedLoginsSettings {
                key,
                threshold: positive("threshold", file.threshold)?,
                window: duration("window", &file.window, None)?,
                penalty: duration("penalty", &file.penalty, Some("5m"))?,
                max_penalty: duration("max_penalty", &file.max_penalty, Some("1h"))?,
                max_keys,
            };
            if settings.max_penalty < settings.penalty {
                return Err(("max_penalty", "must not be shorter than `penalty`".into()));
            }
            let known_sources = if key == FailureKey::Account { known(true) } else { None };
            Arc::new(FailedLogins::new(settings, known_sources))
        }
        "distinct_accounts" | "password_spray" => {
            let key = if kind == "password_spray" { DistinctKey::Password } else { DistinctKey::Ip };
            let count = match file.count.as_deref() {
                None | Some("failed") => DistinctCount::Failed,
                Some("attempted") => DistinctCount::Attempted,
                Some(other) => return Err(("count", format!("`{other}` is not \"failed\" or \"attempted\""))),
            };
            let threshold = positive("threshold", file.threshold)?;
            let suspect = match (file.suspect_threshold, file.suspect_success_ratio) {
                (None, None) => None,
                (Some(early), Some(ratio)) => {
                    if early == 0 || early > threshold {
                        return Err(("suspect_threshold", format!("must be between 1 and `threshold` ({threshold})")));
                    }
                    if !(0.0..1.0).contains(&ratio) {
                        return Err(("suspect_success_ratio", "must be at least 0 and below 1".into()));
                    }
                    Some((early, ratio))
                }
                (Some(_), None) => return Err(("suspect_success_ratio", "goes with `suspect_threshold`".into())),
                (None, Some(_)) => return Err(("suspect_threshold", "goes with `suspect_success_ratio`".into())),
            };
            let settings = DistinctAccountsSettings {
                key,
                count,
                suspect,
                threshold,
                window: duration("window", &file.window, None)?,
                penalty: duration("penalty", &file.penalty, Some("15m"))?,
                max_penalty: duration("max_penalty", &file.max_penalty, Some("6h"))?,
                max_keys,
            };
            if settings.max_penalty < settings.penalty {
                return Err(("max_penalty", "must not be shorter than `penalty`".into()));
            }
            let known_sources = (key == DistinctKey::Password).then(|| env.known_sources.clone());
            Arc::new(DistinctAccounts::new(settings, known_sources))
        }
        "ip_list" => {
            let parse = |name: &'static str, list: &Option<Vec<String>>| -> Result<Vec<IpNet>, BuildError> {
                list.iter()
                    .flatten()
                    .map(|text| {
                        text.parse::<IpNet>()
                            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                            .map_err(|_| (name, format!("`{text}` is not an address or CIDR block")))
                    })
                    .collect()
            };
            let allow = parse("allow", &file.allow)?;
            let deny = parse("deny", &file.deny)?;
            if allow.is_empty() && deny.is_empty() {
                return Err(("allow", "`ip_list` needs a non-empty `allow` or `deny`".into()));
            }
            Arc::new(IpList::new(&allow, &deny))
        }
        "geo" | "geo_velocity" => {
            if env.geo.is_none() && env.require_data {
                return Err((
                    "type",
                    format!(
                        "`{kind}` needs a GeoIP database: add `[geoip] country_db = \"geoip/country.mmdb\"` to the \
                         gateway file (the shipped one; refresh it with geoip/refresh.sh)"
                    ),
                ));
            }
            if kind == "geo_velocity" {
                Arc::new(GeoVelocity::new(duration("window", &file.window, None)?, max_keys))
            } else {
                build_geo_fence(file)?
            }
        }
        "breached_password" | "leaked_pair" => {
            let name = kind;
            let (filter, kind, setting) = if kind == "leaked_pair" {
                (&env.leaked_pairs, FilterKind::Pair, "pair_filter")
            } else {
                (&env.breached_passwords, FilterKind::Password, "password_filter")
            };
            if filter.is_none() && env.require_data {
                return Err((
                    "type",
                    format!(
                        "`{name}` needs a filter: add `[breach] {setting} = \"...\"` to the gateway file (the shipped \
                         policies/data/common-passwords.bloom, or one built with `stuffgate breach build`)"
                    ),
                ));
            }
            Arc::new(BreachMatch { kind })
        }
        "breached_source" => {
            if env.breached_passwords.is_none() && env.require_data {
                return Err((
                    "type",
                    "`breached_source` needs a password filter: add `[breach] password_filter = \"...\"` to the \
                     gateway file"
                        .into(),
                ));
            }
            let (penalty, max_penalty) = (
                duration("penalty", &file.penalty, Some("15m"))?,
                duration("max_penalty", &file.max_penalty, Some("6h"))?,
            );
            if max_penalty < penalty {
                return Err(("max_penalty", "must not be shorter than `penalty`".into()));
            }
            Arc::new(BreachedSource::new(
                positive("threshold", file.threshold)?,
                duration("window", &file.window, None)?,
                penalty,
                max_penalty,
                max_keys,
            ))
        }
        "email_domain" => {
            let mut domains: Vec<String> = file.deny_domains.clone().unwrap_or_default();
            if let Some(list) = &file.deny_domains_file {
                let path = base_dir.join(list);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ("deny_domains_file", format!("cannot read {}: {e}", path.display()))
                })?;
                domains.extend(EmailDomain::parse_list(&text));
            }
            if file.deny_disposable == Some(true) {
                domains.extend(EmailDomain::parse_list(crate::defense::email_domain::DISPOSABLE_DOMAINS));
            }
            if domains.is_empty() {
                return Err((
                    "deny_domains",
                    "`email_domain` needs `deny_disposable = true`, `deny_domains` or a non-empty `deny_domains_file`".into(),
                ));
            }
            Arc::new(EmailDomain::new(domains))
        }
        "reset_target" => Arc::new(ResetTarget),
        _ => unreachable!("kinds are checked above"),
    };
    Ok(defense)
}

fn build_geo_fence(file: &DefenseFile) -> Result<Arc<dyn Defense>, BuildError> {
    let countries = |name: &'static str, list: &Option<Vec<String>>| -> Result<HashSet<CountryCode>, BuildError> {
        list.iter()
            .flatten()
            .map(|c| c.parse::<CountryCode>().map_err(|_| (name, format!("`{c}` is not a two-letter country code"))))
            .collect()
    };
    let treat = |name: &'static str, value: &Option<String>, default: Treat| -> Result<Treat, BuildError> {
        match value.as_deref() {
            None => Ok(default),
            Some("allow") => Ok(Treat::Allow),
            Some("block") => Ok(Treat::Block),
            Some(other) => Err((name, format!("`{other}` is not \"allow\" or \"block\""))),
        }
    };
    let rule = match (&file.allow_countries, &file.deny_countries) {
        (Some(_), Some(_)) => {
            return Err(("deny_countries", "set `allow_countries` or `deny_countries`, not both".into()))
        }
        (Some(_), None) => CountryRule::Only(countries("allow_countries", &file.allow_countries)?),
        (None, Some(_)) => CountryRule::Except(countries("deny_countries", &file.deny_countries)?),
        (None, None) => CountryRule::Any,
    };
    let allow_asns: HashSet<u32> = file.allow_asns.iter().flatten().copied().collect();
    let deny_asns: HashSet<u32> = file.deny_asns.iter().flatten().copied().collect();
    if rule == CountryRule::Any && allow_asns.is_empty() && deny_asns.is_empty() {
        return Err(("allow_countries", "`geo` needs countries or ASNs to allow or deny".into()));
    }
    let unknown_default = if matches!(rule, CountryRule::Only(_)) { Treat::Block } else { Treat::Allow };
    Ok(Arc::new(GeoFence {
        countries: rule,
        allow_asns,
        deny_asns,
        unknown_country: treat("unknown_country", &file.unknown_country, unknown_default)?,
        private_addresses: treat("private_addresses", &file.private_addresses, Treat::Allow)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(source: &str) -> Result<Policy, ConfigError> {
        compile_with(source, None)
    }

    fn compile_with(source: &str, previous: Option<&Policy>) -> Result<Policy, ConfigError> {
        let env = CompileEnv::new(Clock::manual(), 10_000);
        let mut policy = Policy::default();
        compile_file(Path::new("p.toml"), source, &env, previous, &mut HashSet::new(), &mut policy.routes)?;
        Ok(policy)
    }

    const GOOD: &str = r#"
[[route]]
name = "login"
kind = "login"
path = "/api/login"
body = { account = "email", password = "password" }

  [[route.defense]]
  type = "ip_rate"
  limit = 10
  per = "1m"

  [[route.defense]]
  type = "failed_logins"
  key = "account"
  threshold = 10
  window = "10m"
"#;

    #[test]
    fn a_good_policy_compiles_into_routes_and_slots() {
        let policy = compile(GOOD).unwrap();
        assert_eq!(policy.routes.len(), 1);
        let route = &policy.routes[0];
        assert_eq!(route.slots.len(), 2);
        assert_eq!(route.failure_status, vec![401, 403]);
        assert_eq!(policy.match_route(&http::Method::POST, "/api/login"), Some(0));
        assert_eq!(policy.match_route(&http::Method::GET, "/api/login"), None);
    }

    #[test]
    fn a_bad_value_names_line_and_key() {
        let source = GOOD.replace("limit = 10", "limit = 0");
        let error = compile(&source).unwrap_err();
        assert_eq!(error.line, Some(10), "{error}");
        assert_eq!(error.key.as_deref(), Some("route[login].defense[0].limit"));
        assert!(error.to_string().contains("greater than zero"), "{error}");
    }

    #[test]
    fn a_parameter_the_kind_ignores_is_refused() {
        let source = GOOD.replace("per = \"1m\"", "per = \"1m\"\n  threshold = 3");
        let error = compile(&source).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("route[login].defense[0].threshold"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_a_parse_error_with_a_line() {
        let source = GOOD.replace("window = \"10m\"", "window = \"10m\"\n  treshold = 4");
        let error = compile(&source).unwrap_err();
        assert!(error.message.contains("treshold"), "{error}");
        assert!(error.line.is_some());
    }

    #[test]
    fn account_defenses_need_an_account_field() {
        let source = GOOD.replace("body = { account = \"email\", password = \"password\" }", "");
        let error = compile(&source).unwrap_err();
        assert!(error.to_string().contains("body.account"), "{error}");
    }

    #[test]
    fn unchanged_defenses_keep_their_state_across_a_reload_and_changed_ones_do_not() {
        let first = compile(GOOD).unwrap();
        let observe = GOOD.replace("limit = 10", "limit = 10\n  mode = \"observe\"");
        let second = compile_with(&observe, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&first.routes[0].slots[0].defense, &second.routes[0].slots[0].defense));
        assert_eq!(second.routes[0].slots[0].mode, Mode::Observe);
        let changed = GOOD.replace("limit = 10", "limit = 11");
        let third = compile_with(&changed, Some(&second)).unwrap();
        assert!(!Arc::ptr_eq(&second.routes[0].slots[0].defense, &third.routes[0].slots[0].defense));
        assert!(Arc::ptr_eq(&second.routes[0].slots[1].defense, &third.routes[0].slots[1].defense));
    }
}
