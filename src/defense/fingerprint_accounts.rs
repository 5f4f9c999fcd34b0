//! Distinct failed accounts per client fingerprint (`fingerprint_accounts`): one client stack failing on many
//! accounts, however many addresses it rotates through.
//!
//! A stuffing tool rotates residential addresses and user agents for pennies but not its TLS and HTTP stack (JA4,
//! a trusted CDN's header, or the plain-HTTP fingerprint; see `crate::fingerprint`). Real browsers share
//! fingerprints too — one Chrome release is millions of users — so volume alone proves nothing: a fingerprint is
//! only penalised when many accounts failed from it *and* almost none of the accounts tried from it got in (the
//! success-ratio gate of `distinct_accounts`). A list succeeds ~1%, a browser population ~90%: the bad minority
//! inside a popular browser's fingerprint never drags the ratio down, a tool's own fingerprint does.
//!
//! The penalty spares devices the account logged in from before (valid device token, known, not shared): a real
//! user whose browser happens to share the tool's fingerprint keeps getting in from their own device. While the
//! site-wide attack mode is on (`crate::attack`), `attack_threshold` applies instead of `threshold`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::failures::strike_memory;
use super::registry::{self, block, error, BuildContext, BuildError, DefenseSpec, Span};
use super::{Defense, FactNeeds, Fields, Finding, Needs, Outcome, Phase};
use crate::attempt::{print32, Attempt, Subject};
use crate::keys::KeyHasher;
use crate::store::{CellId, DistinctRule, KeyKind, Read, Reads, Reply, StateKey, Write};

pub const SPEC: DefenseSpec =
    DefenseSpec { name: "fingerprint_accounts", findings: &["fingerprint_accounts"], build, default_action: block };

/// Members kept per fingerprint: enough to judge a busy browser population's ratio, bounded per key.
const CAP: u16 = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Distinct accounts that failed (and were not then logged in to) from the fingerprint within `window`.
    threshold: u32,
    /// ... while at most this share of the accounts tried from it got in.
    success_ratio: f32,
    window: Span,
    penalty: Option<Span>,
    max_penalty: Option<Span>,
    /// The threshold while the site is under attack (default: `threshold`).
    attack_threshold: Option<u32>,
}

pub struct FingerprintAccounts {
    cell: CellId,
    keys: KeyHasher,
    rule: DistinctRule,
    attack_rule: DistinctRule,
}

fn build(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    let threshold = registry::positive("threshold", p.threshold)?;
    if threshold > u32::from(CAP) / 2 {
        return Err(error("threshold", format!("must be at most {} (members kept per fingerprint / 2)", CAP / 2)));
    }
    let attack_threshold = match p.attack_threshold {
        None => threshold,
        Some(t) if (1..=threshold).contains(&t) => t,
        Some(_) => return Err(error("attack_threshold", format!("must be between 1 and `threshold` ({threshold})"))),
    };
    if !(0.0..1.0).contains(&p.success_ratio) {
        return Err(error("success_ratio", "must be at least 0 and below 1 (e.g. 0.2)"));
    }
    if p.window.0 < Duration::from_secs(1) {
        return Err(error("window", "must be at least 1s (accounts are timed per second)"));
    }
    let penalty = p.penalty.unwrap_or(Span(Duration::from_secs(900)));
    let max_penalty = p.max_penalty.unwrap_or(Span(Duration::from_secs(6 * 3600)));
    if max_penalty.0 < penalty.0 {
        return Err(error("max_penalty", "must not be shorter than `penalty`"));
    }
    let rule = |early: u32| DistinctRule {
        // Never on volume alone: only the gate imposes a penalty.
        threshold: u32::MAX,
        suspect: Some((early, p.success_ratio)),
        window: p.window.nanos(),
        penalty: penalty.nanos(),
        max_penalty: max_penalty.nanos(),
        memory: strike_memory(max_penalty.0),
        cap: CAP,
    };
    Ok(Arc::new(FingerprintAccounts {
        cell: cx.cell,
        keys: cx.env.keys.clone(),
        rule: rule(threshold),
        attack_rule: rule(attack_threshold),
    }))
}

impl FingerprintAccounts {
    fn key_of(&self, subject: &Subject) -> Option<StateKey> {
        subject.facts.client_fingerprint.map(|print| self.keys.key(KeyKind::Fingerprint, print.counting_bytes()))
    }
}

impl Defense for FingerprintAccounts {
    fn name(&self) -> &'static str {
        "fingerprint_accounts"
    }

    /// The credential phase: the penalty spares the account's known devices, which only the body tells.
    fn needs(&self) -> Needs {
        Needs {
            phase: Some(Phase::Credentials),
            fields: Fields { account: true, ..Fields::default() },
            facts: FactNeeds { device: true, ..FactNeeds::default() },
            session_header: None,
        }
    }

    fn reads(&self, attempt: &Attempt<'_>, out: &mut Reads) {
        if let Some(key) = self.key_of(&attempt.subject) {
            out.push(Read::Penalty { key, cell: self.cell });
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, replies: &[Reply], _now: u64) -> Finding {
        let Some(&Reply::Penalty(remaining)) = replies.first() else {
            return Finding::Clear;
        };
        let device = &attempt.subject.facts.device;
        if device.trusted() {
            return Finding::Clear;
        }
        Finding::penalty("many_accounts_from_fingerprint", remaining)
    }

    fn record(&self, subject: &Subject, outcome: Outcome, out: &mut Vec<Write>) {
        let (Some(account), Some(key)) = (subject.account, self.key_of(subject)) else {
            return;
        };
        if outcome == Outcome::Other {
            return;
        }
        let rule = if subject.facts.attack.on() { self.attack_rule } else { self.rule };
        out.push(Write::Distinct {
            key,
            cell: self.cell,
            member: print32(account.id),
            failed: outcome == Outcome::Failure,
            rule,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::AttackLevel;
    use crate::defense::testing::Harness;
    use crate::fingerprint::{ClientFingerprint, FingerprintSource};

    const S: u64 = 1_000_000_000;

    fn defense(h: &Harness) -> FingerprintAccounts {
        let rule = |early| DistinctRule {
            threshold: u32::MAX,
            suspect: Some((early, 0.2)),
            window: 600 * S,
            penalty: 900 * S,
            max_penalty: 6 * 3600 * S,
            memory: 86_400 * S,
            cap: CAP,
        };
        FingerprintAccounts { cell: 9, keys: h.keys.clone(), rule: rule(20), attack_rule: rule(5) }
    }

    fn from(h: &Harness, print: &str, ip: u32, account: u64) -> Subject {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + ip);
        let mut s = h.subject(&ip.to_string(), Some(&format!("user{account}@example.com")));
        s.facts.client_fingerprint = ClientFingerprint::new(FingerprintSource::Http, print.as_bytes());
        s
    }

    #[test]
    fn a_tool_failing_on_many_accounts_from_many_addresses_is_penalised_but_known_devices_are_spared() {
        let h = Harness::new();
        let d = defense(&h);
        // One attempt per address, 1% valid: the per-address counters see nothing.
        for i in 0..19u32 {
            h.observe(&d, &from(&h, "http_chrome_tool", i, u64::from(i)), Outcome::Failure);
        }
        assert_eq!(h.check(&d, &from(&h, "http_chrome_tool", 500, 500)), Finding::Clear);
        h.observe(&d, &from(&h, "http_chrome_tool", 19, 19), Outcome::Failure);
        assert!(matches!(
            h.check(&d, &from(&h, "http_chrome_tool", 501, 501)),
            Finding::Hit { reason: "many_accounts_from_fingerprint", .. }
        ));
        let mut owner = from(&h, "http_chrome_tool", 502, 502);
        owner.facts.device.known = true;
        assert_eq!(h.check(&d, &owner), Finding::Clear, "a known device is never affected");
        assert_eq!(h.check(&d, &from(&h, "http_firefox_other", 503, 503)), Finding::Clear);
    }

    #[test]
    fn a_browser_population_with_a_bad_minority_is_not_penalised() {
        let h = Harness::new();
        let d = defense(&h);
        // 2,000 real users of one browser, every tenth mistyping once first, and 100 failing bot attempts among
        // them: 100 failed accounts, but most accounts tried got in.
        for user in 0..2000u64 {
            let s = from(&h, "http_chrome_real", user as u32, user);
            if user % 10 == 0 {
                h.observe(&d, &s, Outcome::Failure);
            }
            h.observe(&d, &s, Outcome::Success);
            if user % 20 == 0 {
                h.observe(&d, &from(&h, "http_chrome_real", 90_000 + user as u32, 50_000 + user), Outcome::Failure);
            }
            h.clock.advance(std::time::Duration::from_millis(200));
        }
        assert_eq!(h.check(&d, &from(&h, "http_chrome_real", 99_999, 99_999)), Finding::Clear);
    }

    #[test]
    fn under_attack_the_tighter_threshold_applies() {
        let h = Harness::new();
        let d = defense(&h);
        for i in 0..5u32 {
            let mut s = from(&h, "http_tool", i, u64::from(i));
            s.facts.attack = AttackLevel::Elevated;
            h.observe(&d, &s, Outcome::Failure);
        }
        assert!(matches!(h.check(&d, &from(&h, "http_tool", 100, 100)), Finding::Hit { .. }));
        let plain = Harness::new();
        for i in 0..5u32 {
            plain.observe(&d, &from(&plain, "http_tool", i, u64::from(i)), Outcome::Failure);
        }
        assert_eq!(plain.check(&d, &from(&plain, "http_tool", 100, 100)), Finding::Clear);
    }

    #[test]
    fn requests_without_a_fingerprint_are_not_counted() {
        let h = Harness::new();
        let d = defense(&h);
        let mut writes = Vec::new();
        let mut s = from(&h, "x", 1, 1);
        s.facts.client_fingerprint = None;
        d.record(&s, Outcome::Failure, &mut writes);
        assert!(writes.is_empty());
    }
}
