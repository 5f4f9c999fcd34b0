//! Failed logins counted from the upstream's answers, per address, per account, or per account and address, with
//! escalating penalties (each repeat offence blocks twice as long, up to a cap).
//!
//! Typical settings follow published defaults: AWS WAF ATP acts on more than 10 failures per address in 10 minutes;
//! Auth0 blocks an account from an address after 10 failures.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::registry::{self, block, error, BuildContext, BuildError, DefenseSpec, Span};
use super::{Defense, FactNeeds, Fields, Finding, Needs, Outcome, Phase};
use crate::attempt::{Attempt, Subject};
use crate::store::{CellId, Escalation, Read, Reads, Reply, StateKey, Write};

pub const SPEC: DefenseSpec = DefenseSpec {
    name: "failed_logins",
    findings: &["ip_failures", "account_failures", "account_ip_failures"],
    build,
    default_action: block,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKey {
    Ip,
    Account,
    AccountIp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    key: FailureKey,
    threshold: u32,
    window: Span,
    penalty: Option<Span>,
    max_penalty: Option<Span>,
    /// Account key only: spare addresses that logged in to the account recently (default true).
    exempt_known_sources: Option<bool>,
}

pub struct FailedLogins {
    key: FailureKey,
    cell: CellId,
    rule: Escalation,
    exempt_known_sources: bool,
}

/// Strikes are remembered at least a day, so a patient attacker still escalates.
pub fn strike_memory(max_penalty: Duration) -> u64 {
    max_penalty.max(Duration::from_secs(86_400)).as_nanos() as u64
}

/// The escalation rule of a counting defense from its parameters: `penalty` and `max_penalty` default to the given
/// durations, the window is at least a second (counts are kept per second).
pub fn escalation(
    threshold: u32,
    window: Span,
    penalty: Option<Span>,
    max_penalty: Option<Span>,
    defaults: (Duration, Duration),
) -> Result<Escalation, BuildError> {
    let penalty = penalty.unwrap_or(Span(defaults.0));
    let max_penalty = max_penalty.unwrap_or(Span(defaults.1));
    if max_penalty.0 < penalty.0 {
        return Err(error("max_penalty", "must not be shorter than `penalty`"));
    }
    if window.0 < Duration::from_secs(1) {
        return Err(error("window", "must be at least 1s (counts are kept per second)"));
    }
    Ok(Escalation {
        threshold: registry::positive("threshold", threshold)?,
        window: window.nanos(),
        penalty: penalty.nanos(),
        max_penalty: max_penalty.nanos(),
        memory: strike_memory(max_penalty.0),
    })
}

fn build(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    let defaults = (Duration::from_secs(300), Duration::from_secs(3600));
    let rule = escalation(p.threshold, p.window, p.penalty, p.max_penalty, defaults)?;
    if p.exempt_known_sources.is_some() && p.key != FailureKey::Account {
        return Err(error("exempt_known_sources", "applies to `key = \"account\"` only"));
    }
    Ok(Arc::new(FailedLogins {
        key: p.key,
        cell: cx.cell,
        rule,
        exempt_known_sources: p.key == FailureKey::Account && p.exempt_known_sources.unwrap_or(true),
    }))
}

impl FailedLogins {
    fn key_of(&self, subject: &Subject) -> Option<StateKey> {
        match self.key {
            FailureKey::Ip => Some(subject.address),
            FailureKey::Account => subject.account,
            FailureKey::AccountIp => subject.account_address,
        }
    }
}

impl Defense for FailedLogins {
    fn name(&self) -> &'static str {
        match self.key {
            FailureKey::Ip => "ip_failures",
            FailureKey::Account => "account_failures",
            FailureKey::AccountIp => "account_ip_failures",
        }
    }

    /// Per address, the block needs only the address; the failures are counted against whatever account was tried.
    fn needs(&self) -> Needs {
        let by_account = self.key != FailureKey::Ip;
        Needs {
            phase: Some(if by_account { Phase::Credentials } else { Phase::Address }),
            fields: Fields { account: by_account, ..Fields::default() },
            facts: FactNeeds { known_source: self.exempt_known_sources, ..FactNeeds::default() },
            session_header: None,
        }
    }

    fn address_level(&self) -> bool {
        self.key == FailureKey::Ip
    }

    fn reads(&self, attempt: &Attempt<'_>, out: &mut Reads) {
        if let Some(key) = self.key_of(&attempt.subject) {
            out.push(Read::Penalty { key, cell: self.cell });
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, replies: &[Reply], _now: u64) -> Finding {
        Finding::standing_penalty("too_many_failures", replies, self.exempt_known_sources, attempt)
    }

    fn record(&self, subject: &Subject, outcome: Outcome, out: &mut Vec<Write>) {
        let Some(key) = self.key_of(subject) else {
            return;
        };
        match outcome {
            Outcome::Failure => out.push(Write::Count { key, cell: self.cell, rule: self.rule }),
            // The owner typed it right: earlier typos from this address should not count against them.
            Outcome::Success if self.key == FailureKey::AccountIp => {
                out.push(Write::ResetCount { key, cell: self.cell })
            }
            Outcome::Success | Outcome::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::testing::Harness;

    fn defense(key: FailureKey) -> FailedLogins {
        FailedLogins {
            key,
            cell: 7,
            rule: Escalation {
                threshold: 3,
                window: 600_000_000_000,
                penalty: 60_000_000_000,
                max_penalty: 3_600_000_000_000,
                memory: strike_memory(Duration::from_secs(3600)),
            },
            exempt_known_sources: key == FailureKey::Account,
        }
    }

    #[test]
    fn failures_from_one_address_block_it_with_escalating_penalties() {
        let h = Harness::new();
        let d = defense(FailureKey::Ip);
        for account in ["a", "b", "c"] {
            let s = h.subject("203.0.113.1", Some(account));
            assert_eq!(h.check(&d, &s), Finding::Clear);
            h.observe(&d, &s, Outcome::Failure);
        }
        let Finding::Hit { retry_after, .. } = h.check(&d, &h.subject("203.0.113.1", Some("z"))) else {
            panic!("third failure must block the address");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(60)));
        assert_eq!(h.check(&d, &h.subject("203.0.113.2", Some("z"))), Finding::Clear);
        h.clock.advance(Duration::from_secs(61));
        assert_eq!(h.check(&d, &h.subject("203.0.113.1", Some("z"))), Finding::Clear);
        for account in ["a", "b", "c"] {
            h.observe(&d, &h.subject("203.0.113.1", Some(account)), Outcome::Failure);
        }
        let Finding::Hit { retry_after, .. } = h.check(&d, &h.subject("203.0.113.1", Some("z"))) else {
            panic!("repeat offence must block again");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(120)), "second penalty doubles");
    }

    #[test]
    fn failures_spread_over_many_addresses_block_the_account_but_not_its_known_owner() {
        let h = Harness::new();
        let d = defense(FailureKey::Account);
        for ip in 1..=3 {
            h.observe(&d, &h.subject(&format!("203.0.113.{ip}"), Some("victim")), Outcome::Failure);
        }
        assert!(matches!(h.check(&d, &h.subject("203.0.113.50", Some("victim"))), Finding::Hit { .. }));
        let mut owner = h.subject("203.0.113.200", Some("victim"));
        owner.facts.known_source = true;
        assert_eq!(h.check(&d, &owner), Finding::Clear);
        assert_eq!(h.check(&d, &h.subject("203.0.113.50", Some("other"))), Finding::Clear);
    }

    #[test]
    fn a_success_clears_account_ip_typos() {
        let h = Harness::new();
        let d = defense(FailureKey::AccountIp);
        let user = h.subject("203.0.113.7", Some("u"));
        for _ in 0..2 {
            h.observe(&d, &user, Outcome::Failure);
        }
        h.observe(&d, &user, Outcome::Success);
        h.observe(&d, &user, Outcome::Failure);
        assert_eq!(h.check(&d, &user), Finding::Clear);
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        let h = Harness::new();
        let d = defense(FailureKey::Ip);
        let s = h.subject("203.0.113.1", Some("a"));
        for _ in 0..2 {
            h.observe(&d, &s, Outcome::Failure);
        }
        h.clock.advance(Duration::from_secs(1300));
        h.observe(&d, &s, Outcome::Failure);
        assert_eq!(h.check(&d, &s), Finding::Clear);
    }
}
