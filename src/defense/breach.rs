//! Breached passwords and leaked credential pairs.
//!
//! The engine looks the submitted password (SHA-1, as Have I Been Pwned publishes it) and the account+password pair
//! up once per request on routes that use these defenses, and records the answer in `subject.breach`:
//!
//! * `breached_password` — the password is in a breach corpus. Real users reuse breached passwords too, so on login
//!   the default is to tag (`X-Stuffgate-Breached: password`) and let the app force a reset; on sign-up and on a
//!   reset's new password the default is to block.
//! * `leaked_pair` — this exact account+password pair is in a combo list: the credential is known to attackers.
//! * `breached_source` — an address submitting many breached passwords is replaying a list: blocks the address.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::{Credentials, Defense, Finding, Outcome, Subject};
use crate::breach::{BreachFilter, FilterKind};
use crate::store::{BoundedMap, CountWithPenalty, Escalation};

/// What the breach filters said about one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreachSignal {
    pub password: bool,
    pub pair: bool,
}

/// A filter file that can be replaced while requests read it.
pub struct SharedFilter {
    path: PathBuf,
    kind: FilterKind,
    current: ArcSwap<BreachFilter>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("breach filter {path}: {message}")]
pub struct FilterLoadError {
    pub path: String,
    pub message: String,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl SharedFilter {
    pub fn open(path: &Path, kind: FilterKind) -> Result<SharedFilter, FilterLoadError> {
        let filter = Self::read(path, kind)?;
        Ok(SharedFilter {
            path: path.to_path_buf(),
            kind,
            current: ArcSwap::from_pointee(filter),
            stamp: Mutex::new(stamp(path)),
        })
    }

    fn read(path: &Path, kind: FilterKind) -> Result<BreachFilter, FilterLoadError> {
        let error = |message: String| FilterLoadError {
            path: path.display().to_string(),
            message,
        };
        if !path.exists() {
            return Err(error(format!(
                "not found. Build one with `stuffgate breach build --format {} --input LIST --out {}` \
                 (or use the shipped policies/data/common-passwords.bloom)",
                if kind == FilterKind::Pair { "pairs" } else { "sha1" },
                path.display()
            )));
        }
        let filter = BreachFilter::load(path).map_err(|e| error(e.to_string()))?;
        if filter.kind() != kind {
            return Err(error(format!("is a {} filter where a {kind} filter is needed", filter.kind())));
        }
        Ok(filter)
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<BreachFilter>> {
        self.current.load()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Swap in the file when it changed on disk; a bad file is refused and the current filter keeps serving.
    pub fn reload_if_changed(&self) -> Result<bool, FilterLoadError> {
        let now = stamp(&self.path);
        if *self.stamp.lock() == now {
            return Ok(false);
        }
        let filter = Self::read(&self.path, self.kind);
        *self.stamp.lock() = now;
        self.current.store(Arc::new(filter?));
        Ok(true)
    }
}

/// `breached_password` and `leaked_pair`: read the engine's lookup.
pub struct BreachMatch {
    pub kind: FilterKind,
}

impl Defense for BreachMatch {
    fn name(&self) -> &'static str {
        match self.kind {
            FilterKind::Password => "breached_password",
            FilterKind::Pair => "leaked_pair",
        }
    }

    fn needs_credentials(&self) -> bool {
        true
    }

    fn check(&self, subject: &Subject, _credentials: &Credentials<'_>, _now: u64) -> Finding {
        let hit = match self.kind {
            FilterKind::Password => subject.breach.password,
            FilterKind::Pair => subject.breach.pair,
        };
        if hit {
            Finding::Hit {
                reason: match self.kind {
                    FilterKind::Password => "password_in_breach_corpus",
                    FilterKind::Pair => "credential_pair_leaked",
                },
                retry_after: None,
            }
        } else {
            Finding::Clear
        }
    }

    fn tag_header(&self) -> Option<&'static str> {
        Some("x-stuffgate-breached")
    }

    fn explain(&self, _subject: &Subject, _now: u64) -> Option<String> {
        Some(self.kind.to_string())
    }

    fn default_status(&self) -> u16 {
        match self.kind {
            FilterKind::Password => 422,
            FilterKind::Pair => 403,
        }
    }
}

/// `breached_source`: attempts with breached passwords per address; many of them is a list being replayed.
pub struct BreachedSource {
    rule: Escalation,
    map: BoundedMap<u128, CountWithPenalty>,
}

impl BreachedSource {
    pub fn new(threshold: u32, window: Duration, penalty: Duration, max_penalty: Duration, max_keys: usize) -> Self {
        let nanos = |d: Duration| d.as_nanos() as u64;
        BreachedSource {
            rule: Escalation {
                threshold,
                window: nanos(window),
                penalty: nanos(penalty),
                max_penalty: nanos(max_penalty),
                memory: nanos(max_penalty.max(Duration::from_secs(86_400))),
            },
            map: BoundedMap::new(max_keys),
        }
    }
}

impl Defense for BreachedSource {
    fn name(&self) -> &'static str {
        "breached_source"
    }

    fn needs_credentials(&self) -> bool {
        false
    }

    fn check(&self, subject: &Subject, _credentials: &Credentials<'_>, now: u64) -> Finding {
        let remaining = self.map.read(&subject.ip_key.0, now, |s| s.penalty.remaining(now)).unwrap_or(0);
        Finding::penalty("breached_passwords_from_source", remaining)
    }

    /// Counted once the attempt was forwarded (whatever the outcome): a breached password that *works* is the
    /// worst case, not an excuse.
    fn observe(&self, subject: &Subject, _outcome: Outcome, now: u64) {
        if !subject.breach.password {
            return;
        }
        let (rule, keep_for) = (self.rule, self.rule.window.max(self.rule.memory));
        self.map.update(
            subject.ip_key.0,
            now,
            || CountWithPenalty {
                keep_for,
                ..CountWithPenalty::default()
            },
            |state| state.record(now, &rule),
        );
    }

    fn prune(&self, now: u64) {
        self.map.prune(now);
    }

    fn tracked_keys(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use std::net::IpAddr;

    fn with_breached(password: bool, ip: &str) -> Subject {
        let mut s = Subject::new(ip.parse::<IpAddr>().unwrap(), 64);
        s.breach.password = password;
        s
    }

    #[test]
    fn many_breached_passwords_from_one_address_block_it() {
        let clock = Clock::manual();
        let d = BreachedSource::new(3, Duration::from_secs(600), Duration::from_secs(60), Duration::from_secs(600), 1000);
        let creds = Credentials::default();
        d.observe(&with_breached(false, "198.51.100.1"), Outcome::Failure, clock.now_nanos());
        for _ in 0..2 {
            d.observe(&with_breached(true, "198.51.100.1"), Outcome::Failure, clock.now_nanos());
        }
        assert_eq!(d.check(&with_breached(false, "198.51.100.1"), &creds, clock.now_nanos()), Finding::Clear);
        d.observe(&with_breached(true, "198.51.100.1"), Outcome::Success, clock.now_nanos());
        assert!(matches!(d.check(&with_breached(false, "198.51.100.1"), &creds, clock.now_nanos()), Finding::Hit { .. }));
        assert_eq!(d.check(&with_breached(true, "198.51.100.2"), &creds, clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn a_match_reads_the_engine_signal_and_explains_itself() {
        let d = BreachMatch { kind: FilterKind::Pair };
        let mut s = with_breached(true, "198.51.100.1");
        assert_eq!(d.check(&s, &Credentials::default(), 0), Finding::Clear, "a breached password is not a leaked pair");
        s.breach.pair = true;
        assert!(matches!(d.check(&s, &Credentials::default(), 0), Finding::Hit { .. }));
        assert_eq!(d.explain(&s, 0).as_deref(), Some("pair"));
    }

    #[test]
    fn a_missing_filter_says_how_to_build_one() {
        let Err(error) = SharedFilter::open(Path::new("/nonexistent/pairs.bloom"), FilterKind::Pair) else {
            panic!("a missing filter must be refused");
        };
        assert!(error.to_string().contains("stuffgate breach build --format pairs"), "{error}");
    }
}
