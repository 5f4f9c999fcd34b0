//! Scenario files (`examples/attacks/*.toml`): the file format as an operator writes it, validated into a
//! [`Scenario`] with located errors (file, line, key), like policy files. The format is documented in
//! `examples/attacks/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::clock::parse_duration;
use crate::config::{line_of_key, parse_toml, ConfigError};
use crate::geoip::CountryCode;

/// The scenarios shipped in `examples/attacks/`, built into the binary so `stuffgate replay 7pay-burst` works from
/// any directory.
pub const BUNDLED: &[(&str, &str)] = &[
    ("7pay-burst", include_str!("../../examples/attacks/7pay-burst.toml")),
    ("distributed", include_str!("../../examples/attacks/distributed.toml")),
    ("spray", include_str!("../../examples/attacks/spray.toml")),
    ("reset-hijack", include_str!("../../examples/attacks/reset-hijack.toml")),
    ("signup-farm", include_str!("../../examples/attacks/signup-farm.toml")),
    ("distributed-solvers", include_str!("../../examples/attacks/distributed-solvers.toml")),
    ("quiet-day", include_str!("../../examples/attacks/quiet-day.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    scenario: HeaderFile,
    #[serde(default, rename = "actor")]
    actors: Vec<Spanned<ActorFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderFile {
    name: String,
    #[serde(default)]
    description: String,
    duration: String,
    #[serde(default)]
    seed: u64,
    /// Accounts that exist at the target (`user00000@example.com` …); default: as many as the actors need.
    accounts: Option<u32>,
    /// Replay speed when the command line gives none (virtual seconds per real second).
    speed: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CountFile {
    One(u32),
    Range([u32; 2]),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CountriesFile {
    List(Vec<String>),
    Weighted(BTreeMap<String, u32>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CashoutFile {
    topups: u32,
    amount: u64,
    within: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorFile {
    kind: String,
    name: Option<String>,
    start: Option<String>,
    span: Option<String>,
    addresses: Option<u32>,
    countries: Option<CountriesFile>,
    pace: Option<String>,
    attempts_per_address: Option<CountFile>,
    valid_ratio: Option<f64>,
    known_account_ratio: Option<f64>,
    cashout: Option<CashoutFile>,
    passwords: Option<Vec<String>>,
    accounts: Option<u32>,
    methods: Option<Vec<String>>,
    attacker_domain: Option<String>,
    domains: Option<Vec<String>>,
    users: Option<u32>,
    mistype_ratio: Option<f64>,
    retries: Option<u8>,
    retry_after: Option<String>,
    home: Option<String>,
    abroad: Option<Vec<String>>,
    gap: Option<String>,
    solver_share: Option<f64>,
}

impl ActorFile {
    fn set_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |set: bool, name: &'static str| {
            if set {
                keys.push(name);
            }
        };
        note(self.pace.is_some(), "pace");
        note(self.attempts_per_address.is_some(), "attempts_per_address");
        note(self.valid_ratio.is_some(), "valid_ratio");
        note(self.known_account_ratio.is_some(), "known_account_ratio");
        note(self.cashout.is_some(), "cashout");
        note(self.passwords.is_some(), "passwords");
        note(self.accounts.is_some(), "accounts");
        note(self.methods.is_some(), "methods");
        note(self.attacker_domain.is_some(), "attacker_domain");
        note(self.domains.is_some(), "domains");
        note(self.users.is_some(), "users");
        note(self.mistype_ratio.is_some(), "mistype_ratio");
        note(self.retries.is_some(), "retries");
        note(self.retry_after.is_some(), "retry_after");
        note(self.home.is_some(), "home");
        note(self.abroad.is_some(), "abroad");
        note(self.gap.is_some(), "gap");
        note(self.addresses.is_some(), "addresses");
        note(self.countries.is_some(), "countries");
        note(self.solver_share.is_some(), "solver_share");
        keys
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Stuffer,
    Sprayer,
    ResetHijacker,
    SignupFarmer,
    Legit,
    Nat,
    Traveller,
    /// Requests a schedule adds to set the scene (e.g. spray victims signing up with a common password); never
    /// written in a file.
    Setup,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Stuffer => "stuffer",
            ActorKind::Sprayer => "sprayer",
            ActorKind::ResetHijacker => "reset_hijacker",
            ActorKind::SignupFarmer => "signup_farmer",
            ActorKind::Legit => "legit",
            ActorKind::Nat => "nat",
            ActorKind::Traveller => "traveller",
            ActorKind::Setup => "setup",
        }
    }

    /// Legitimate users, whose getting in is the cost side of a policy.
    pub fn is_legitimate(self) -> bool {
        matches!(self, ActorKind::Legit | ActorKind::Nat | ActorKind::Traveller)
    }

    /// Requests that count towards attack outcomes (takeovers, fraud).
    pub fn is_attacker(self) -> bool {
        !matches!(self, ActorKind::Legit | ActorKind::Nat | ActorKind::Traveller | ActorKind::Setup)
    }
}

/// Where an actor's addresses come from: countries with weights (drawn from the GeoIP database), or any public
/// address when no country is named.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressPool {
    pub count: u32,
    pub countries: Vec<(CountryCode, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cashout {
    pub topups: u32,
    /// Yen per top-up.
    pub amount: u64,
    /// The top-ups are spread over this span after the takeover (nanoseconds).
    pub within: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetMethod {
    /// `{"email": victim, "send_to": attacker}` (7pay, 2019).
    SendTo,
    /// `{"email": [victim, attacker]}` (GitLab CVE-2023-7028).
    EmailList,
}

/// A legitimate user's habits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Habits {
    pub mistype_ratio: f64,
    /// Times a user tries again after the gateway turned them away.
    pub retries: u8,
    pub retry_after: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Params {
    Stuffer {
        attempts: (u32, u32),
        valid_ratio: f64,
        known_account_ratio: f64,
        cashout: Option<Cashout>,
    },
    Sprayer {
        passwords: Vec<String>,
        accounts: u32,
        valid_ratio: f64,
        cashout: Option<Cashout>,
    },
    ResetHijacker {
        attempts: (u32, u32),
        methods: Vec<ResetMethod>,
        attacker_domain: String,
        known_account_ratio: f64,
    },
    SignupFarmer {
        attempts: (u32, u32),
        domains: Vec<String>,
    },
    /// Ordinary users (`legit`, each on an address of their own unless `addresses` says fewer) and users behind
    /// carrier-grade NAT (`nat`, many users on a few addresses).
    Users {
        users: u32,
        habits: Habits,
    },
    Traveller {
        users: u32,
        home: AddressPool,
        gap: u64,
        habits: Habits,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Actor {
    pub name: String,
    pub kind: ActorKind,
    /// Active from `start` for `span` nanoseconds of virtual time.
    pub start: u64,
    pub span: u64,
    pub pool: AddressPool,
    /// Time between two requests from one address; none: spread at random over the span.
    pub pace: Option<u64>,
    pub params: Params,
    /// Attackers: the share of their bots (by address) that solve challenges with a native solver, paying the
    /// proof-of-work; the rest never run them. Users' browsers always solve.
    pub solver_share: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub duration: u64,
    pub seed: u64,
    pub accounts: Option<u32>,
    pub speed: Option<f64>,
    pub actors: Vec<Actor>,
    pub source: PathBuf,
}

impl Scenario {
    /// Load a scenario by path, or by the name of a bundled one (`7pay-burst`, `spray`, …).
    pub fn load(name_or_path: &str) -> Result<Scenario, ConfigError> {
        let path = Path::new(name_or_path);
        if path.exists() {
            let source = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(path, None, None, format!("cannot read the file: {e}")))?;
            return Scenario::parse(path, &source);
        }
        let stem = name_or_path.trim_end_matches(".toml");
        let local = Path::new("examples/attacks").join(format!("{stem}.toml"));
        if local.exists() {
            let source = std::fs::read_to_string(&local)
                .map_err(|e| ConfigError::new(&local, None, None, format!("cannot read the file: {e}")))?;
            return Scenario::parse(&local, &source);
        }
        match BUNDLED.iter().find(|(name, _)| *name == stem) {
            Some((name, source)) => Scenario::parse(Path::new(&format!("(bundled) {name}.toml")), source),
            None => {
                let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
                Err(ConfigError::new(
                    path,
                    None,
                    None,
                    format!("no such file, and not a bundled scenario; bundled: {}", names.join(", ")),
                ))
            }
        }
    }

    pub fn parse(path: &Path, source: &str) -> Result<Scenario, ConfigError> {
        let file: ScenarioFile = parse_toml(path, source)?;
        let header = &file.scenario;
        let top = |key: &str, message: String| {
            let line = source.lines().position(|l| l.trim_start().starts_with(key)).map(|i| i + 1);
            ConfigError::new(path, line, Some(format!("scenario.{key}")), message)
        };
        if header.name.trim().is_empty() {
            return Err(top("name", "must not be empty".into()));
        }
        let duration = nanos(parse_duration(&header.duration).map_err(|m| top("duration", m))?);
        if duration == 0 || duration > nanos(Duration::from_secs(30 * 86_400)) {
            return Err(top("duration", "must be longer than zero and at most 30 days (\"30d\")".into()));
        }
        if let Some(speed) = header.speed {
            if !(speed.is_finite() && speed >= 0.0) {
                return Err(top("speed", "must be a number ≥ 0 (0: as fast as possible)".into()));
            }
        }
        if file.actors.is_empty() {
            return Err(top("name", "the scenario has no [[actor]]; add at least one".into()));
        }
        let mut actors = Vec::with_capacity(file.actors.len());
        for (index, spanned) in file.actors.iter().enumerate() {
            let span = spanned.span();
            let actor = compile_actor(spanned.get_ref(), index, duration).map_err(|(key, message)| {
                let line = line_of_key(source, span.clone(), key);
                ConfigError::new(path, Some(line), Some(format!("actor[{index}].{key}")), message)
            })?;
            actors.push(actor);
        }
        Ok(Scenario {
            name: header.name.clone(),
            description: header.description.clone(),
            duration,
            seed: header.seed,
            accounts: header.accounts,
            speed: header.speed,
            actors,
            source: path.to_path_buf(),
        })
    }

    /// The same scenario with every population (addresses, users, targeted accounts) multiplied by `factor`;
    /// per-address behaviour and the time span stay. For quick runs and tests.
    pub fn scaled(&self, factor: f64) -> Scenario {
        let scale = |n: u32| ((n as f64 * factor).round() as u32).max(1);
        let mut scenario = self.clone();
        scenario.accounts = scenario.accounts.map(scale);
        for actor in &mut scenario.actors {
            let own_addresses = matches!(actor.params, Params::Users { users, .. } if users == actor.pool.count);
            match &mut actor.params {
                Params::Users { users, .. } => *users = scale(*users),
                Params::Traveller { users, home, .. } => {
                    *users = scale(*users);
                    home.count = *users;
                }
                Params::Sprayer { accounts, .. } => *accounts = scale(*accounts),
                _ => {}
            }
            actor.pool.count = match (&actor.params, own_addresses) {
                (Params::Users { users, .. }, true) => *users,
                (Params::Traveller { users, .. }, _) => *users,
                _ => scale(actor.pool.count),
            };
        }
        scenario
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

type ActorError = (&'static str, String);

fn allowed_keys(kind: ActorKind) -> &'static [&'static str] {
    match kind {
        ActorKind::Stuffer => &[
            "addresses",
            "countries",
            "pace",
            "attempts_per_address",
            "valid_ratio",
            "known_account_ratio",
            "cashout",
            "solver_share",
        ],
        ActorKind::Sprayer => {
            &["addresses", "countries", "passwords", "accounts", "valid_ratio", "cashout", "solver_share"]
        }
        ActorKind::ResetHijacker => &[
            "addresses",
            "countries",
            "pace",
            "attempts_per_address",
            "methods",
            "attacker_domain",
            "known_account_ratio",
        ],
        ActorKind::SignupFarmer => &["addresses", "countries", "pace", "attempts_per_address", "domains"],
        ActorKind::Legit | ActorKind::Nat => {
            &["addresses", "countries", "users", "mistype_ratio", "retries", "retry_after"]
        }
        ActorKind::Traveller => {
            &["countries", "users", "home", "abroad", "gap", "mistype_ratio", "retries", "retry_after"]
        }
        ActorKind::Setup => &[],
    }
}

fn compile_actor(file: &ActorFile, index: usize, scenario_duration: u64) -> Result<Actor, ActorError> {
    let kind = match file.kind.as_str() {
        "stuffer" => ActorKind::Stuffer,
        "sprayer" => ActorKind::Sprayer,
        "reset_hijacker" => ActorKind::ResetHijacker,
        "signup_farmer" => ActorKind::SignupFarmer,
        "legit" => ActorKind::Legit,
        "nat" => ActorKind::Nat,
        "traveller" => ActorKind::Traveller,
        other => {
            return Err((
                "kind",
                format!("`{other}` is not an actor kind; known: stuffer, sprayer, reset_hijacker, signup_farmer, legit, nat, traveller"),
            ))
        }
    };
    let allowed = allowed_keys(kind);
    if let Some(stray) = file.set_keys().into_iter().find(|k| !allowed.contains(k)) {
        return Err((stray, format!("does not apply to a `{}` (it takes: {})", kind.as_str(), allowed.join(", "))));
    }
    let duration = |key: &'static str, text: &Option<String>, default: u64| -> Result<u64, ActorError> {
        match text {
            None => Ok(default),
            Some(t) => parse_duration(t).map(nanos).map_err(|m| (key, m)),
        }
    };
    let ratio = |key: &'static str, value: Option<f64>, default: f64| -> Result<f64, ActorError> {
        let v = value.unwrap_or(default);
        if !(0.0..=1.0).contains(&v) {
            return Err((key, format!("{v} is not a share between 0 and 1 (e.g. 0.01 for 1%)")));
        }
        Ok(v)
    };
    let positive = |key: &'static str, value: Option<u32>| -> Result<u32, ActorError> {
        match value {
            None => Err((key, format!("a `{}` needs `{key}`", kind.as_str()))),
            Some(0) => Err((key, "must be greater than zero".into())),
            Some(n) if n > 10_000_000 => Err((key, "at most 10,000,000".into())),
            Some(n) => Ok(n),
        }
    };
    let attempts = |file: &ActorFile| -> Result<(u32, u32), ActorError> {
        let (lo, hi) = match file.attempts_per_address {
            None => {
                return Err((
                    "attempts_per_address",
                    format!("a `{}` needs `attempts_per_address`, e.g. 100 or [1, 2]", kind.as_str()),
                ))
            }
            Some(CountFile::One(n)) => (n, n),
            Some(CountFile::Range([lo, hi])) => (lo, hi),
        };
        if lo == 0 || hi < lo || hi > 100_000 {
            return Err((
                "attempts_per_address",
                "must be a count 1..=100000 or a range [low, high] with low ≤ high".into(),
            ));
        }
        Ok((lo, hi))
    };
    let countries = |key: &'static str, list: &Option<CountriesFile>| -> Result<Vec<(CountryCode, u32)>, ActorError> {
        let entries: Vec<(String, u32)> = match list {
            None => Vec::new(),
            Some(CountriesFile::List(l)) => l.iter().map(|c| (c.clone(), 1)).collect(),
            Some(CountriesFile::Weighted(m)) => m.iter().map(|(c, w)| (c.clone(), *w)).collect(),
        };
        entries
            .into_iter()
            .map(|(c, w)| {
                let code = c.parse::<CountryCode>().map_err(|e| (key, e.to_string()))?;
                if w == 0 {
                    return Err((key, format!("the weight of {code} must be greater than zero")));
                }
                Ok((code, w))
            })
            .collect()
    };
    let habits = |file: &ActorFile| -> Result<Habits, ActorError> {
        Ok(Habits {
            mistype_ratio: ratio("mistype_ratio", file.mistype_ratio, 0.1)?,
            retries: file.retries.unwrap_or(1).min(10),
            retry_after: duration("retry_after", &file.retry_after, nanos(Duration::from_secs(30)))?,
        })
    };
    let cashout = |file: &ActorFile| -> Result<Option<Cashout>, ActorError> {
        let Some(c) = &file.cashout else { return Ok(None) };
        if c.topups == 0 || c.topups > 100 {
            return Err(("cashout", "`topups` must be 1..=100".into()));
        }
        if c.amount == 0 {
            return Err(("cashout", "`amount` must be greater than zero (yen)".into()));
        }
        let within = parse_duration(&c.within).map_err(|m| ("cashout", m))?;
        Ok(Some(Cashout { topups: c.topups, amount: c.amount, within: nanos(within) }))
    };

    let start = duration("start", &file.start, 0)?;
    if start >= scenario_duration {
        return Err(("start", "begins after the scenario ends".into()));
    }
    let span = duration("span", &file.span, scenario_duration - start)?;
    if span == 0 || start + span > scenario_duration {
        return Err(("span", "must be longer than zero and end within the scenario's duration".into()));
    }
    let pace = match &file.pace {
        None => None,
        Some(t) => match parse_duration(t).map(nanos) {
            Ok(0) => return Err(("pace", "must be longer than zero".into())),
            Ok(p) => Some(p),
            Err(m) => return Err(("pace", m)),
        },
    };
    let pool_countries = countries("countries", &file.countries)?;

    let (params, addresses) = match kind {
        ActorKind::Setup => return Err(("kind", "`setup` actors are added by the schedule, not written".into())),
        ActorKind::Stuffer => (
            Params::Stuffer {
                attempts: attempts(file)?,
                valid_ratio: ratio("valid_ratio", file.valid_ratio, 0.01)?,
                known_account_ratio: ratio("known_account_ratio", file.known_account_ratio, 0.5)?,
                cashout: cashout(file)?,
            },
            positive("addresses", file.addresses)?,
        ),
        ActorKind::Sprayer => {
            let passwords = file.passwords.clone().unwrap_or_default();
            if passwords.is_empty() || passwords.len() > 1000 || passwords.iter().any(|p| p.is_empty()) {
                return Err(("passwords", "a `sprayer` needs 1..=1000 non-empty `passwords`".into()));
            }
            (
                Params::Sprayer {
                    passwords,
                    accounts: positive("accounts", file.accounts)?,
                    valid_ratio: ratio("valid_ratio", file.valid_ratio, 0.001)?,
                    cashout: cashout(file)?,
                },
                positive("addresses", file.addresses)?,
            )
        }
        ActorKind::ResetHijacker => {
            let methods = match &file.methods {
                None => vec![ResetMethod::SendTo],
                Some(list) if list.is_empty() => {
                    return Err(("methods", "name at least one: send_to, email_list".into()))
                }
                Some(list) => list
                    .iter()
                    .map(|m| match m.as_str() {
                        "send_to" => Ok(ResetMethod::SendTo),
                        "email_list" => Ok(ResetMethod::EmailList),
                        other => Err(("methods", format!("`{other}` is not send_to or email_list"))),
                    })
                    .collect::<Result<_, _>>()?,
            };
            let attacker_domain = file.attacker_domain.clone().unwrap_or_else(|| "attacker.example".into());
            if attacker_domain.is_empty() || attacker_domain.contains(['@', ' ', '"']) {
                return Err(("attacker_domain", "must be a bare domain such as \"attacker.example\"".into()));
            }
            (
                Params::ResetHijacker {
                    attempts: attempts(file)?,
                    methods,
                    attacker_domain,
                    known_account_ratio: ratio("known_account_ratio", file.known_account_ratio, 0.8)?,
                },
                positive("addresses", file.addresses)?,
            )
        }
        ActorKind::SignupFarmer => {
            let domains = file.domains.clone().unwrap_or_default();
            if domains.is_empty() || domains.iter().any(|d| d.is_empty() || d.contains(['@', ' ', '"'])) {
                return Err((
                    "domains",
                    "a `signup_farmer` needs `domains`, bare domains such as \"mailinator.com\"".into(),
                ));
            }
            (Params::SignupFarmer { attempts: attempts(file)?, domains }, positive("addresses", file.addresses)?)
        }
        ActorKind::Legit | ActorKind::Nat => {
            let users = positive("users", file.users)?;
            let addresses = match (kind, file.addresses) {
                (ActorKind::Nat, None) => {
                    return Err((
                        "addresses",
                        "a `nat` needs `addresses`: how many shared addresses carry its users".into(),
                    ))
                }
                (_, Some(0)) => return Err(("addresses", "must be greater than zero".into())),
                (_, Some(n)) => n.min(users),
                (_, None) => users,
            };
            (Params::Users { users, habits: habits(file)? }, addresses)
        }
        ActorKind::Traveller => {
            let users = positive("users", file.users)?;
            let home = match &file.home {
                None => {
                    return Err((
                        "home",
                        "a `traveller` needs `home`, the country of the first login, e.g. \"JP\"".into(),
                    ))
                }
                Some(h) => h.parse::<CountryCode>().map_err(|e| ("home", e.to_string()))?,
            };
            if file.countries.is_some() {
                return Err(("countries", "a `traveller` takes `home` and `abroad` instead of `countries`".into()));
            }
            let abroad = countries("abroad", &file.abroad.as_ref().map(|l| CountriesFile::List(l.clone())))?;
            if abroad.is_empty() {
                return Err(("abroad", "a `traveller` needs `abroad`, the countries of the second login".into()));
            }
            let gap = duration("gap", &file.gap, nanos(Duration::from_secs(600)))?;
            if gap >= span {
                return Err(("gap", "must be shorter than the actor's span".into()));
            }
            return Ok(Actor {
                name: file.name.clone().unwrap_or_else(|| format!("traveller-{index}")),
                kind,
                start,
                span,
                pool: AddressPool { count: users, countries: abroad },
                pace: None,
                solver_share: 0.0,
                params: Params::Traveller {
                    users,
                    home: AddressPool { count: users, countries: vec![(home, 1)] },
                    gap,
                    habits: habits(file)?,
                },
            });
        }
    };
    let name = file.name.clone().unwrap_or_else(|| format!("{}-{index}", kind.as_str()));
    if name.is_empty() || name.len() > 64 {
        return Err(("name", "must be 1..=64 characters".into()));
    }
    Ok(Actor {
        name,
        kind,
        start,
        span,
        pool: AddressPool { count: addresses, countries: pool_countries },
        pace,
        params,
        solver_share: ratio("solver_share", file.solver_share, 0.0)?,
    })
}
