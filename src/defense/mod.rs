//! The defenses, each one module behind the small [`Defense`] trait, and the pipeline that runs a route's list.
//!
//! A defense only *finds* things (a key over its limit, an address on a deny list). What is done about a finding —
//! block with a status, tag the request for the app, or merely log it in observe mode — is the route's policy,
//! applied by [`pipeline`], so every defense gets `enforce`/`observe` and `block`/`tag` for free.

pub mod breach;
pub mod distinct;
pub mod email_domain;
pub mod reset_target;
pub mod failures;
pub mod geo;
pub mod geo_velocity;
pub mod ip_list;
pub mod known_sources;
pub mod pipeline;
pub mod rate;

use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

pub use pipeline::{Action, Decision, Mode, Slot, Verdict};

/// Who is asking: the client address (already resolved through trusted proxies) and, once the body is read, the
/// account. Accounts are carried as keyed hashes: the text never reaches a store or a log.
#[derive(Clone, Copy, Debug)]
pub struct Subject {
    pub ip: IpAddr,
    pub ip_key: IpKey,
    pub account: Option<AccountKey>,
    /// Country and network of the address, when a GeoIP database is configured.
    pub geo: crate::geoip::GeoInfo,
    /// The submitted password as a keyed 64-bit hash (never the password), for spray detection.
    pub password_key: Option<u64>,
    /// What the breach filters said about the submitted credentials.
    pub breach: breach::BreachSignal,
    /// The route's session header (e.g. the bearer token) as a keyed hash, for session-keyed limits.
    pub session_key: Option<u64>,
}

impl Subject {
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> Subject {
        Subject {
            ip,
            ip_key: IpKey::new(ip, ipv6_prefix),
            account: None,
            geo: crate::geoip::GeoInfo::default(),
            password_key: None,
            breach: breach::BreachSignal::default(),
            session_key: None,
        }
    }
}

/// An address as a rate-limiting key: IPv4 as is, IPv6 cut to a prefix (a subscriber is handed a whole /64, so
/// keying on the full address would let one client rotate through 2^64 keys).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct IpKey(pub u128);

impl IpKey {
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(u32::from(v4) as u128),
                None => {
                    let bits = u128::from(v6);
                    let prefix = ipv6_prefix.clamp(1, 128) as u32;
                    let mask = u128::MAX << (128 - prefix);
                    // Set a bit outside IPv4's range so a v6 key never equals a v4 one.
                    IpKey((bits & mask) | 1)
                }
            },
        }
    }
}

/// A normalised account identifier as a keyed 64-bit hash.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct AccountKey(pub u64);

impl AccountKey {
    /// Short, stable-for-the-key text form for logs.
    pub fn log_form(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Hashes normalised accounts under a secret key, so logs and memory hold no account names and an outsider cannot
/// link a logged hash to an account without the key.
#[derive(Clone)]
pub struct AccountHasher {
    state: ahash::RandomState,
}

impl AccountHasher {
    pub fn from_secret(secret: &[u8]) -> AccountHasher {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret);
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        AccountHasher {
            state: ahash::RandomState::with_seeds(word(0), word(1), word(2), word(3)),
        }
    }

    pub fn random() -> AccountHasher {
        AccountHasher {
            state: ahash::RandomState::new(),
        }
    }

    /// Hash an account that is already normalised (see [`normalise_account`]).
    pub fn key(&self, normalised: &str) -> AccountKey {
        AccountKey(self.state.hash_one(normalised))
    }

    /// Hash a password for in-memory counting only; domain-separated from account hashes.
    pub fn password_key(&self, password: &[u8]) -> u64 {
        self.state.hash_one((0xA5u8, password))
    }
}

/// Accounts compare trimmed and lower-cased: " Alice@Example.com" and "alice@example.com" are one account.
pub fn normalise_account(raw: &str) -> std::borrow::Cow<'_, str> {
    crate::account::normalise_account(raw)
}

/// What a request carried, available once the body is read. The password is borrowed from the request buffer for
/// the duration of the checks and is never stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    pub account: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// Where a reset asks its link to go (the route's `body.target` field).
    pub target: Option<&'a str>,
}

/// What a defense found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Finding {
    /// Nothing to report.
    Clear,
    /// The request is over a limit or matches a bad list; `reason` is a short constant for logs.
    Hit {
        reason: &'static str,
        retry_after: Option<Duration>,
    },
    /// The source is explicitly trusted: skip the route's remaining defenses.
    Trusted,
}

impl Finding {
    /// A key under a penalty with `remaining` nanoseconds to go: a hit that tells the client when to come back,
    /// or nothing once the penalty is over.
    pub fn penalty(reason: &'static str, remaining: u64) -> Finding {
        if remaining == 0 {
            return Finding::Clear;
        }
        Finding::Hit {
            reason,
            retry_after: Some(Duration::from_nanos(remaining).max(Duration::from_secs(1))),
        }
    }
}

/// How the upstream answered a protected request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Other,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Other => "other",
        }
    }
}

pub trait Defense: Send + Sync {
    /// The defense's kind, a low-cardinality label for logs and metrics.
    fn name(&self) -> &'static str;
    /// False when the defense decides from the address alone and so can run before the body is read.
    fn needs_credentials(&self) -> bool;
    /// Decide before forwarding. `credentials` is `None` when the route reads no body.
    fn check(&self, subject: &Subject, credentials: &Credentials<'_>, now: u64) -> Finding;
    /// Learn from the upstream's answer.
    fn observe(&self, _subject: &Subject, _outcome: Outcome, _now: u64) {}
    /// Drop state that no longer matters; called from a timer.
    fn prune(&self, _now: u64) {}
    /// Keys currently tracked, exported as a gauge.
    fn tracked_keys(&self) -> usize {
        0
    }
    /// The header that carries this defense's `tag` to the app, when it has one of its own (besides
    /// `X-Stuffgate-Signals`), e.g. `x-stuffgate-geo-velocity`.
    fn tag_header(&self) -> Option<&'static str> {
        None
    }
    /// A short explanation of a hit for the tag header and the log (called only on hits), e.g. "JP->BR".
    fn explain(&self, _subject: &Subject, _now: u64) -> Option<String> {
        None
    }
    /// The status a `block` answers with when the policy names none.
    fn default_status(&self) -> u16 {
        429
    }
}
