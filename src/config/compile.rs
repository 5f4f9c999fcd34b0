//! Policy files → [`Policy`]: every value checked, every error located, and the state of unchanged defenses carried
//! over from the previous policy on reload.
//!
//! The shared settings of a defense (type, mode, action, status) are read here; its own parameters are handed to
//! its module through the registry (`defense::registry`), which deserializes them into the module's own struct.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use super::file::{ActionName, DefenseFile, PolicyFile, RouteFile};
use super::policy::{BadBody, FieldPath, PathMatch, Policy, Route, RouteKind, RouteNeeds};
use super::{line_of_key, parse_toml, ConfigError};
use crate::defense::registry::{self, BuildContext, DefaultAction};
use crate::defense::{Action, Defense, Mode, Slot};
use crate::services::Services;
use crate::store::{CellId, KNOWN_SOURCES_CELL};
use crate::telemetry::metrics::{RouteMetrics, SlotMetrics};

/// Names and cells taken so far in the policy being compiled (across its files).
#[derive(Default)]
pub(crate) struct Taken {
    routes: HashSet<String>,
    cells: HashSet<CellId>,
}

impl Taken {
    /// A cell for a defense: a stable hash of where it is and what it is, so gateways running the same policy, and
    /// a reload that keeps a defense, agree on it. Collisions within the policy move to the next free id, in
    /// compile order, which is the same everywhere.
    fn cell(&mut self, route: &str, fingerprint: &str, nth: usize) -> CellId {
        let digest = sha2::Sha256::digest(format!("{route}\n{fingerprint}\n{nth}").as_bytes());
        let mut id = u16::from_le_bytes([digest[0], digest[1]]);
        while id <= KNOWN_SOURCES_CELL.max(crate::challenge::RESERVED_CELLS) || self.cells.contains(&id) {
            id = id.wrapping_add(1);
        }
        self.cells.insert(id);
        id
    }
}

/// Compile policy files. With `previous`, a defense whose route name and parameters are unchanged keeps its state
/// (counters, penalties, rate buckets); mode and action may change without losing it.
pub fn compile_policies(files: &[PathBuf], env: &Services, previous: Option<&Policy>) -> Result<Policy, ConfigError> {
    let mut policy = Policy { routes: Vec::new(), files: files.to_vec(), warnings: Vec::new() };
    let mut taken = Taken::default();
    let mut allow_no_routes = false;
    for path in files {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        allow_no_routes |= compile_file(path, &source, env, previous, &mut taken, &mut policy)?;
    }
    if policy.routes.is_empty() && !allow_no_routes {
        // An editor's truncating save or a full disk leaves an empty file: serving it would drop every defense.
        let file = files.last().cloned().unwrap_or_default();
        let message = "no [[route]]: every request would pass unchecked; add a route, or set \
                       `allow_no_routes = true` at the top of a policy file to run as a plain proxy on purpose";
        return Err(ConfigError::new(&file, None, Some("route".into()), message));
    }
    Ok(policy)
}

/// Compile one policy file from its text, as [`compile_policies`] compiles `path` when it holds `source`, without
/// reading anything (the fuzzer's way in: errors still name `path`, the line and the key).
pub fn compile_policy_source(
    path: &Path,
    source: &str,
    env: &Services,
    previous: Option<&Policy>,
) -> Result<Policy, ConfigError> {
    let mut policy = Policy { routes: Vec::new(), files: vec![path.to_path_buf()], warnings: Vec::new() };
    compile_file(path, source, env, previous, &mut Taken::default(), &mut policy)?;
    Ok(policy)
}

/// Names login APIs give the account and the password, to tell a likely misspelling (`emial`) from a name of the
/// API's own (`member_no`): the gateway cannot see the API's bodies before it runs.
const USUAL_ACCOUNT_FIELDS: &[&str] =
    &["email", "username", "user", "login", "account", "phone", "mobile", "user_name", "userName", "email_address"];
const USUAL_PASSWORD_FIELDS: &[&str] = &["password", "pass", "passwd", "pwd", "secret", "passcode"];

/// A warning when a body field (its last path segment) is not a usual name but nearly is one.
fn unusual_field(text: &str, usual: &[&'static str]) -> Option<String> {
    let leaf = text.rsplit('.').next().unwrap_or(text);
    if usual.contains(&leaf) {
        return None;
    }
    let near = crate::spelling::nearest(leaf, usual.iter().copied())?;
    Some(format!(
        "`{leaf}` looks like a misspelling of `{near}`: a body without `{leaf}` is refused with 400 (`on_bad_body = \
         \"reject\"`), or forwarded and counted in stuffgate_body_problems_total in observe mode"
    ))
}

/// Compile one policy text (used by `compile_policies` and by tests). Returns whether the file allows a policy
/// without routes (`allow_no_routes`).
pub(crate) fn compile_file(
    path: &Path,
    source: &str,
    env: &Services,
    previous: Option<&Policy>,
    taken: &mut Taken,
    policy: &mut Policy,
) -> Result<bool, ConfigError> {
    let file: PolicyFile = parse_toml(path, source)?;
    let defaults = &file.defaults;
    let default_mode = defaults.mode.unwrap_or(Mode::Enforce);
    let ipv6_prefix = defaults.ipv6_prefix.unwrap_or(64);
    if !(16..=128).contains(&ipv6_prefix) {
        return Err(ConfigError::new(path, None, Some("defaults.ipv6_prefix".into()), "must be between 16 and 128"));
    }
    if let Some(attack) = &file.attack_mode {
        env.attack.configure(attack_settings(path, source, attack)?);
    }
    let default_bad_body = defaults.on_bad_body.unwrap_or_default();
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
            let message =
                format!("`{}` must be lower-case letters, digits, '_' or '-' (it is a metric label)", route.name);
            return Err(err("name", message));
        }
        if !taken.routes.insert(route.name.clone()) {
            return Err(err("name", format!("route `{}` is defined twice; route names must be unique", route.name)));
        }
        let kind = route.kind;
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
        for (name, written, usual) in [
            ("body.account", &route.body.account, USUAL_ACCOUNT_FIELDS),
            ("body.password", &route.body.password, USUAL_PASSWORD_FIELDS),
        ] {
            if let Some(warning) = written.as_deref().and_then(|text| unusual_field(text, usual)) {
                policy.warnings.push(err(name, warning));
            }
        }
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
        let on_bad_body: BadBody = route.on_bad_body.unwrap_or(default_bad_body);
        if let Some(url) = &route.reset_url {
            let shaped = url.starts_with('/') || url.starts_with("https://") || url.starts_with("http://");
            if !shaped || url.len() > 512 || url.bytes().any(|b| !b.is_ascii_graphic() || b"\"'<>\\".contains(&b)) {
                return Err(err(
                    "reset_url",
                    format!("`{url}` must be a path (\"/account/reset\") or an http(s) URL, without quotes or spaces"),
                ));
            }
        }

        let previous_route = previous.and_then(|p| p.routes.iter().find(|r| r.name == route.name));
        let mut reused = HashSet::new();
        let mut seen_fingerprints: Vec<String> = Vec::new();
        let mut needs = RouteNeeds::default();
        let mut slots = Vec::with_capacity(route.defenses.len());
        for (index, spanned) in route.defenses.iter().enumerate() {
            let span = spanned.span();
            let defense: &DefenseFile = spanned.get_ref();
            let key = |k: &str| Some(format!("route[{}].defense[{index}].{k}", route.name));
            let derr =
                |k: &str, m: String| ConfigError::new(path, Some(line_of_key(source, span.clone(), k)), key(k), m);
            let Some(spec) = registry::lookup(&defense.kind) else {
                let known: Vec<&str> = registry::names().collect();
                return Err(derr(
                    "type",
                    format!(
                        "`{}` is not a defense; the defenses are {}{}",
                        defense.kind,
                        known.join(", "),
                        crate::spelling::did_you_mean(&defense.kind, known.iter().copied())
                    ),
                ));
            };
            let fingerprint = format!("{}/{:?}/v6={ipv6_prefix}", defense.kind, defense.params);
            let nth = seen_fingerprints.iter().filter(|f| **f == fingerprint).count();
            seen_fingerprints.push(fingerprint.clone());
            let cell = taken.cell(&route.name, &fingerprint, nth);
            let carried = previous_route.and_then(|r| {
                r.slots.iter().enumerate().find(|(i, s)| s.fingerprint == fingerprint && !reused.contains(i))
            });
            let built: Arc<dyn Defense> = match carried {
                Some((i, slot)) => {
                    reused.insert(i);
                    slot.defense.clone()
                }
                None => {
                    let cx =
                        BuildContext { env, route_kind: kind, cell, base_dir: path.parent().unwrap_or(Path::new(".")) };
                    (spec.build)(&defense.params, &cx).map_err(|(k, m)| derr(&k, m))?
                }
            };
            for found in built.depends_on() {
                if slots.iter().any(|slot: &Slot| slot.defense.name() == *found) {
                    continue;
                }
                let finder =
                    registry::REGISTRY.iter().find(|spec| spec.findings.contains(found)).map_or("", |s| s.name);
                let later = route.defenses[index + 1..].iter().any(|d| d.get_ref().kind == finder);
                let message = if later {
                    format!(
                        "`{found}` is found by a `{finder}` after this `{}` on route `{}`: move this defense below it \
                         (a defense sees only what earlier ones found, so this one could never fire on it)",
                        defense.kind, route.name
                    )
                } else {
                    format!(
                        "no defense before this `{}` on route `{}` finds `{found}`: add a `type = \"{finder}\"` \
                         defense above it, or remove `{found}` from `when` (as it is, it could never fire on it)",
                        defense.kind, route.name
                    )
                };
                return Err(derr("when", message));
            }
            let wants = built.needs();
            let missing = |field: &str, have: bool| -> Result<(), ConfigError> {
                if have {
                    return Ok(());
                }
                Err(derr(
                    "type",
                    format!("`{}` needs the {field}: set `body.{field}` on route `{}`", defense.kind, route.name),
                ))
            };
            missing("target", !wants.fields.target || target_field.is_some())?;
            missing("password", !wants.fields.password || password_field.is_some())?;
            missing("account", !wants.fields.account || account_field.is_some())?;
            if let Some(header) = &wants.session_header {
                if needs.session_header.as_ref().is_some_and(|h| h != header) {
                    return Err(derr(
                        "header",
                        "all session-keyed defenses of a route must read the same header".into(),
                    ));
                }
                needs.session_header = Some(header.clone());
            }
            needs.fields.account |= wants.fields.account;
            needs.fields.password |= wants.fields.password;
            needs.fields.target |= wants.fields.target;
            needs.facts = needs.facts.union(wants.facts);
            needs.geo_before_body |= wants.facts.geo && wants.phase() == crate::defense::Phase::Address;
            let mode = defense.mode.unwrap_or(default_mode);
            let default_action = match (spec.default_action)(kind) {
                DefaultAction::Block => ActionName::Block,
                DefaultAction::Tag => ActionName::Tag,
                DefaultAction::Challenge => ActionName::Challenge,
            };
            let resolve = |name: ActionName, setting: &str| -> Result<Action, ConfigError> {
                Ok(match name {
                    ActionName::Block => {
                        let status = defense.status.unwrap_or_else(|| built.default_status());
                        if !(400..=599).contains(&status) {
                            return Err(derr("status", format!("{status} is not a 4xx or 5xx status")));
                        }
                        Action::Block { status }
                    }
                    ActionName::Tag => {
                        if defense.status.is_some() && defense.action.is_some() && setting == "action" {
                            return Err(derr("status", "a `tag` action answers nothing; remove `status`".into()));
                        }
                        Action::Tag
                    }
                    ActionName::Challenge | ActionName::ResetRequired => {
                        let challenge = name == ActionName::Challenge;
                        if defense.status.is_some() && setting == "action" {
                            let answer =
                                if challenge { "a `challenge` answers 428" } else { "`reset_required` answers 403" };
                            return Err(derr("status", format!("{answer}; remove `status`")));
                        }
                        // A challenge token is bound to the account, and a reset concerns one: only defenses that
                        // decide on the body can ask.
                        if wants.phase() != crate::defense::Phase::Credentials || account_field.is_none() {
                            return Err(derr(
                                setting,
                                format!(
                                    "`{}` decides before the body is read, and a {} is bound to the account: use \"block\" or \"tag\" here, and `new_device` (or a body-reading defense) to challenge",
                                    defense.kind,
                                    if challenge { "challenge" } else { "reset" },
                                ),
                            ));
                        }
                        if challenge {
                            Action::Challenge
                        } else {
                            if route.reset_url.is_none() {
                                return Err(derr(
                                    setting,
                                    format!(
                                        "`reset_required` sends the user to reset their password: set `reset_url` on route `{}`",
                                        route.name
                                    ),
                                ));
                            }
                            Action::ResetRequired
                        }
                    }
                })
            };
            let action = resolve(defense.action.unwrap_or(default_action), "action")?;
            if action == Action::Challenge {
                needs.facts.solution = true;
            }
            let under_attack = match defense.under_attack {
                None => None,
                Some(name) => {
                    if kind != RouteKind::Login {
                        return Err(derr("under_attack", "applies to login routes (`kind = \"login\"`)".into()));
                    }
                    let stricter = resolve(name, "under_attack")?;
                    if stricter == Action::Challenge {
                        needs.facts.solution = true;
                    }
                    // Known devices keep `action`: the device fact tells them apart.
                    needs.facts.device = true;
                    Some(stricter)
                }
            };
            let metrics = SlotMetrics::new(&route.name, built.name(), action.as_str(), mode.as_str());
            slots.push(Slot {
                phase: wants.phase(),
                defense: built,
                mode,
                action,
                under_attack,
                fingerprint,
                metrics: Some(metrics),
            });
        }
        // A route whose every defense observes (or that has none, under `defaults.mode = "observe"`) refuses
        // nothing: not even a body it cannot read (see `engine`).
        let observes_only = if slots.is_empty() {
            default_mode == Mode::Observe
        } else {
            slots.iter().all(|slot| slot.mode == Mode::Observe)
        };
        policy.routes.push(Route {
            name: route.name.clone(),
            kind,
            method,
            path: path_match,
            account_field,
            password_field,
            target_field,
            needs,
            success_status,
            failure_status,
            on_bad_body,
            observes_only,
            case_insensitive_keys: route.body.case_insensitive_keys,
            max_body_bytes,
            ipv6_prefix,
            slots,
            reset_url: route.reset_url.as_deref().map(Arc::from),
            source: path.to_path_buf(),
            metrics: RouteMetrics::new(&route.name),
        });
    }
    Ok(file.allow_no_routes)
}

/// `[attack_mode]` → the detector's settings, each value checked.
fn attack_settings(
    path: &Path,
    source: &str,
    file: &super::file::AttackModeFile,
) -> Result<crate::attack::AttackSettings, ConfigError> {
    let fail = |key: &str, message: String| {
        let line = source.lines().position(|l| l.trim_start().starts_with(key)).map(|i| i + 1);
        ConfigError::new(path, line, Some(format!("attack_mode.{key}")), message)
    };
    let span = |key: &str, text: &Option<String>| -> Result<Option<std::time::Duration>, ConfigError> {
        match text {
            None => Ok(None),
            Some(t) => match crate::clock::parse_duration(t) {
                Ok(d) if !d.is_zero() => Ok(Some(d)),
                Ok(_) => Err(fail(key, "must be longer than zero".into())),
                Err(m) => Err(fail(key, m)),
            },
        }
    };
    let mut s = crate::attack::AttackSettings::default();
    if let Some(bucket) = span("bucket", &file.bucket)? {
        if bucket < std::time::Duration::from_secs(1) {
            return Err(fail("bucket", "must be at least 1s".into()));
        }
        s.bucket = bucket;
    }
    let buckets = |key: &str, d: std::time::Duration, max: u32| -> Result<u32, ConfigError> {
        let n = (d.as_nanos() / s.bucket.as_nanos().max(1)) as u32;
        if n == 0 || n > max {
            return Err(fail(key, format!("must be between one bucket and {max} buckets ({:?} each)", s.bucket)));
        }
        Ok(n)
    };
    if let Some(window) = span("window", &file.window)? {
        s.window_buckets = buckets("window", window, 32)?;
    }
    if let Some(enter) = span("enter_after", &file.enter_after)? {
        s.enter_after = buckets("enter_after", enter, 10_000)?;
    }
    if let Some(leave) = span("leave_after", &file.leave_after)? {
        s.leave_after = buckets("leave_after", leave, 100_000)?;
    }
    if let Some(floor) = file.floor {
        if floor == 0 {
            return Err(fail("floor", "must be greater than zero (a quiet site must not flap)".into()));
        }
        s.floor = floor;
    }
    if let Some(rise) = file.rise {
        if !(rise.is_finite() && rise >= 1.0) {
            return Err(fail("rise", "must be at least 1 (times the baseline)".into()));
        }
        s.rise = rise;
    }
    if let Some(ratio) = file.min_ratio {
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(fail("min_ratio", "must be above 0 and below 1 (e.g. 0.3)".into()));
        }
        s.min_ratio = ratio;
    }
    if let Some(high) = file.high_factor {
        if !(high.is_finite() && high >= 1.0) {
            return Err(fail("high_factor", "must be at least 1".into()));
        }
        s.high_factor = high;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn compile(source: &str) -> Result<Policy, ConfigError> {
        compile_with(source, None)
    }

    fn compile_with(source: &str, previous: Option<&Policy>) -> Result<Policy, ConfigError> {
        let env = Services::new(Clock::manual(), 10_000);
        let mut policy = Policy::default();
        compile_file(Path::new("p.toml"), source, &env, previous, &mut Taken::default(), &mut policy)?;
        Ok(policy)
    }

    #[test]
    fn every_finding_the_shipped_policies_report_is_listed_by_its_registry_entry() {
        let mut env = Services::new(Clock::manual(), 10_000);
        env.require_data = false;
        for file in ["policies/default.toml", "policies/jp-incident.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let policy = compile_policies(&[path], &env, None).unwrap();
            for slot in policy.routes.iter().flat_map(|r| &r.slots) {
                let name = slot.defense.name();
                let listed = registry::REGISTRY.iter().any(|spec| spec.findings.contains(&name));
                assert!(listed || name == "new_device", "{name} is reported but no registry entry lists it");
            }
        }
        let findings: Vec<&str> = registry::finding_names().collect();
        assert!(findings.contains(&"user_agent") && findings.contains(&"account_ip_failures"), "{findings:?}");
        let unique: HashSet<&str> = findings.iter().copied().collect();
        assert_eq!(unique.len(), findings.len(), "a finding name belongs to one defense");
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
    fn a_policy_text_compiles_as_its_file_does() {
        let env = Services::new(Clock::manual(), 10_000);
        let path = std::env::temp_dir().join(format!("stuffgate-compile-source-{}.toml", std::process::id()));
        for source in [GOOD.to_string(), GOOD.replace("limit = 10", "limit = 0")] {
            std::fs::write(&path, &source).unwrap();
            let from_file = compile_policies(std::slice::from_ref(&path), &env, None);
            let from_text = compile_policy_source(&path, &source, &env, None);
            match (from_file, from_text) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.files, b.files);
                    assert_eq!(a.routes.len(), b.routes.len());
                    assert_eq!(a.match_route(&http::Method::POST, "/api/login"), Some(0));
                    assert_eq!(b.match_route(&http::Method::POST, "/api/login"), Some(0));
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a, b, "the same file, line, key and message");
                    assert_eq!((b.file.as_path(), b.line), (path.as_path(), Some(10)));
                }
                (a, b) => panic!("file and text disagree: {:?} / {:?}", a.err(), b.err()),
            }
        }
        let _ = std::fs::remove_file(&path);
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
    fn every_defense_refuses_an_unknown_parameter_with_its_line_and_key() {
        for name in registry::names() {
            let source = format!(
                "[[route]]\nname = \"r\"\nkind = \"login\"\npath = \"/x\"\n\
                 body = {{ account = \"a\", password = \"p\", target = \"t\" }}\n\n  [[route.defense]]\n  \
                 type = \"{name}\"\n  mode = \"observe\"\n  bogus_setting = 1\n"
            );
            let error = compile(&source).unwrap_err();
            assert_eq!(error.key.as_deref(), Some("route[r].defense[0].bogus_setting"), "{name}: {error}");
            assert_eq!(error.line, Some(10), "{name}: {error}");
            assert!(error.message.contains("unknown parameter `bogus_setting`"), "{name}: {error}");
        }
    }

    #[test]
    fn a_closed_vocabulary_names_its_choices() {
        let error = compile(&GOOD.replace("key = \"account\"", "key = \"acount\"")).unwrap_err();
        assert!(error.message.contains("acount") && error.message.contains("account_ip"), "{error}");
        assert_eq!(error.key.as_deref(), Some("route[login].defense[1].key"), "{error}");
        let error = compile(&GOOD.replace("kind = \"login\"", "kind = \"logon\"")).unwrap_err();
        assert!(error.message.contains("logon") && error.line == Some(4), "{error}");
        let error = compile(&GOOD.replace("per = \"1m\"", "per = \"1m\"\n  action = \"blok\"")).unwrap_err();
        assert!(error.message.contains("blok") && error.line == Some(12), "{error}");
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
