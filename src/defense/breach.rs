//! Breached passwords and leaked credential pairs.
//!
//! The engine looks the submitted password (SHA-1, as Have I Been Pwned publishes it) and the account+password pair
//! up once per request on routes whose defenses ask for it, and records the answer in the attempt's facts:
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

use serde::Deserialize;

use super::failures::escalation;
use super::registry::{self, block, error, BuildContext, BuildError, DefaultAction, DefenseSpec, Span};
use super::{Defense, FactNeeds, Fields, Finding, Message, Needs, Outcome, Phase};
use crate::attempt::{Attempt, Subject};
use crate::breach::{BreachFilter, FilterKind};
use crate::store::{CellId, Escalation, Read, Reads, Reply, Write};
use crate::vocabulary::RouteKind;

pub const BREACHED_PASSWORD: DefenseSpec = DefenseSpec {
    name: "breached_password",
    findings: &["breached_password"],
    build: build_password_match,
    // Real users reuse breached passwords: on login tag it and let the app force a reset; where a new password is
    // being chosen (sign-up, reset) refuse it.
    default_action: |kind| match kind {
        RouteKind::Login | RouteKind::Generic => DefaultAction::Tag,
        RouteKind::Reset | RouteKind::Signup => DefaultAction::Block,
    },
};
pub const LEAKED_PAIR: DefenseSpec = DefenseSpec {
    name: "leaked_pair",
    findings: &["leaked_pair"],
    build: build_pair_match,
    default_action: |_| DefaultAction::Tag,
};
pub const BREACHED_SOURCE: DefenseSpec =
    DefenseSpec { name: "breached_source", findings: &["breached_source"], build: build_source, default_action: block };

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
        let error = |message: String| FilterLoadError { path: path.display().to_string(), message };
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

fn missing_filter(cx: &BuildContext<'_>, name: &str, setting: &str) -> Result<(), BuildError> {
    let filter = if setting == "pair_filter" { &cx.env.leaked_pairs } else { &cx.env.breached_passwords };
    if filter.is_none() && cx.env.require_data {
        return Err(error(
            "type",
            format!(
                "`{name}` needs a filter: add `[breach] {setting} = \"...\"` to the gateway file (the shipped \
                 policies/data/common-passwords.bloom, or one built with `stuffgate breach build`)"
            ),
        ));
    }
    Ok(())
}

fn build_password_match(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let NoParams {} = registry::params(table)?;
    missing_filter(cx, "breached_password", "password_filter")?;
    Ok(Arc::new(BreachMatch { kind: FilterKind::Password }))
}

fn build_pair_match(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let NoParams {} = registry::params(table)?;
    missing_filter(cx, "leaked_pair", "pair_filter")?;
    Ok(Arc::new(BreachMatch { kind: FilterKind::Pair }))
}

impl Defense for BreachMatch {
    fn name(&self) -> &'static str {
        match self.kind {
            FilterKind::Password => "breached_password",
            FilterKind::Pair => "leaked_pair",
        }
    }

    fn needs(&self) -> Needs {
        let pair = self.kind == FilterKind::Pair;
        Needs {
            phase: Some(Phase::Credentials),
            fields: Fields { account: pair, password: true, target: false },
            facts: FactNeeds { breached_password: !pair, leaked_pair: pair, ..FactNeeds::default() },
            session_header: None,
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, _replies: &[Reply], _now: u64) -> Finding {
        let breach = attempt.subject.facts.breach;
        let (hit, reason) = match self.kind {
            FilterKind::Password => (breach.password, "password_in_breach_corpus"),
            FilterKind::Pair => (breach.pair, "credential_pair_leaked"),
        };
        if hit {
            Finding::Hit { reason, retry_after: None }
        } else {
            Finding::Clear
        }
    }

    fn tag_header(&self) -> Option<&'static str> {
        Some("x-stuffgate-breached")
    }

    fn explain(&self, _attempt: &Attempt<'_>, _replies: &[Reply]) -> Option<String> {
        Some(self.kind.to_string())
    }

    fn default_status(&self) -> u16 {
        match self.kind {
            FilterKind::Password => 422,
            FilterKind::Pair => 403,
        }
    }

    fn message(&self) -> Option<Message> {
        (self.kind == FilterKind::Password).then_some(Message {
            error: "breached_password",
            text: "This password appears in known data breaches. Please choose another.",
        })
    }
}

/// `breached_source`: attempts with breached passwords per address; many of them is a list being replayed.
pub struct BreachedSource {
    cell: CellId,
    rule: Escalation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceParams {
    threshold: u32,
    window: Span,
    penalty: Option<Span>,
    max_penalty: Option<Span>,
}

fn build_source(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: SourceParams = registry::params(table)?;
    if cx.env.breached_passwords.is_none() && cx.env.require_data {
        return Err(error(
            "type",
            "`breached_source` needs a password filter: add `[breach] password_filter = \"...\"` to the gateway file",
        ));
    }
    let defaults = (Duration::from_secs(900), Duration::from_secs(6 * 3600));
    let rule = escalation(p.threshold, p.window, p.penalty, p.max_penalty, defaults)?;
    Ok(Arc::new(BreachedSource { cell: cx.cell, rule }))
}

impl Defense for BreachedSource {
    fn name(&self) -> &'static str {
        "breached_source"
    }

    /// Blocks on the address alone; learns from the password lookup of the attempts it lets through.
    fn needs(&self) -> Needs {
        Needs {
            phase: Some(Phase::Address),
            fields: Fields { password: true, ..Fields::default() },
            facts: FactNeeds { breached_password: true, ..FactNeeds::default() },
            session_header: None,
        }
    }

    fn reads(&self, attempt: &Attempt<'_>, out: &mut Reads) {
        out.push(Read::Penalty { key: attempt.subject.address, cell: self.cell });
    }

    fn decide(&self, _attempt: &Attempt<'_>, replies: &[Reply], _now: u64) -> Finding {
        match replies.first() {
            Some(&Reply::Penalty(remaining)) => Finding::penalty("breached_passwords_from_source", remaining),
            _ => Finding::Clear,
        }
    }

    /// Counted once the attempt was forwarded (whatever the outcome): a breached password that *works* is the
    /// worst case, not an excuse.
    fn record(&self, subject: &Subject, _outcome: Outcome, out: &mut Vec<Write>) {
        if subject.facts.breach.password {
            out.push(Write::Count { key: subject.address, cell: self.cell, rule: self.rule });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::testing::Harness;

    const S: u64 = 1_000_000_000;

    #[test]
    fn many_breached_passwords_from_one_address_block_it() {
        let h = Harness::new();
        let d = BreachedSource {
            cell: 4,
            rule: Escalation {
                threshold: 3,
                window: 600 * S,
                penalty: 60 * S,
                max_penalty: 600 * S,
                memory: 86_400 * S,
            },
        };
        let with_breached = |password: bool, ip: &str| {
            let mut s = h.subject(ip, None);
            s.facts.breach.password = password;
            s
        };
        h.observe(&d, &with_breached(false, "198.51.100.1"), Outcome::Failure);
        for _ in 0..2 {
            h.observe(&d, &with_breached(true, "198.51.100.1"), Outcome::Failure);
        }
        assert_eq!(h.check(&d, &with_breached(false, "198.51.100.1")), Finding::Clear);
        h.observe(&d, &with_breached(true, "198.51.100.1"), Outcome::Success);
        assert!(matches!(h.check(&d, &with_breached(false, "198.51.100.1")), Finding::Hit { .. }));
        assert_eq!(h.check(&d, &with_breached(true, "198.51.100.2")), Finding::Clear);
    }

    #[test]
    fn a_match_reads_the_engine_signal_and_explains_itself() {
        let h = Harness::new();
        let d = BreachMatch { kind: FilterKind::Pair };
        let mut s = h.subject("198.51.100.1", Some("a"));
        s.facts.breach.password = true;
        assert_eq!(h.check(&d, &s), Finding::Clear, "a breached password is not a leaked pair");
        s.facts.breach.pair = true;
        assert!(matches!(h.check(&d, &s), Finding::Hit { .. }));
        assert_eq!(h.explain(&d, &s).as_deref(), Some("pair"));
    }

    #[test]
    fn a_missing_filter_says_how_to_build_one() {
        let Err(error) = SharedFilter::open(Path::new("/nonexistent/pairs.bloom"), FilterKind::Pair) else {
            panic!("a missing filter must be refused");
        };
        assert!(error.to_string().contains("stuffgate breach build --format pairs"), "{error}");
    }
}
