//! Distinct accounts per key in a window. Per address (`distinct_accounts`): one source, many accounts — stuffing
//! and spraying from few addresses. Per password (`password_spray`): one password failing on many accounts —
//! spraying however widely it is distributed, since the password is the one thing the attacker cannot rotate.
//!
//! A carrier-NAT address carries hundreds of real users, so counting every account tried would block them. The
//! default counts only accounts whose *latest* outcome from the address is a failure: a user who mistypes and then
//! gets in is resolved and stops counting, while a stuffing list (mostly failures) accumulates fast. `attempted`
//! counting exists for routes without a usable outcome.
//!
//! An optional early trigger (`suspect_threshold`, `suspect_success_ratio`) blocks much sooner when almost nothing
//! from the key succeeds: stuffing lists succeed ~1% of the time, real users behind a shared address ~90%. Five
//! failed accounts with no success is a list; five failed accounts among fifty that got in is a busy NAT.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::failures::strike_memory;
use super::registry::{self, block, error, BuildContext, BuildError, DefenseSpec, Span};
use super::{Defense, FactNeeds, Fields, Finding, Needs, Outcome, Phase};
use crate::attempt::{print32, Attempt, Subject};
use crate::store::{CellId, DistinctRule, Read, Reads, Reply, StateKey, Write};

pub const DISTINCT_ACCOUNTS: DefenseSpec = DefenseSpec {
    name: "distinct_accounts",
    findings: &["distinct_accounts"],
    build: build_per_address,
    default_action: block,
};
pub const PASSWORD_SPRAY: DefenseSpec = DefenseSpec {
    name: "password_spray",
    findings: &["password_spray"],
    build: build_per_password,
    default_action: block,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistinctCount {
    /// Accounts whose latest outcome from this key failed.
    #[default]
    Failed,
    /// Every account tried, whatever the outcome.
    Attempted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistinctKey {
    Ip,
    /// The keyed hash of the submitted password.
    Password,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    threshold: u32,
    window: Span,
    penalty: Option<Span>,
    max_penalty: Option<Span>,
    #[serde(default)]
    count: DistinctCount,
    suspect_threshold: Option<u32>,
    suspect_success_ratio: Option<f32>,
}

pub struct DistinctAccounts {
    key: DistinctKey,
    cell: CellId,
    count: DistinctCount,
    rule: DistinctRule,
}

fn build_per_address(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    build(DistinctKey::Ip, table, cx)
}

fn build_per_password(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    build(DistinctKey::Password, table, cx)
}

fn build(key: DistinctKey, table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    let threshold = registry::positive("threshold", p.threshold)?;
    let suspect = match (p.suspect_threshold, p.suspect_success_ratio) {
        (None, None) => None,
        (Some(early), Some(ratio)) => {
            if early == 0 || early > threshold {
                return Err(error("suspect_threshold", format!("must be between 1 and `threshold` ({threshold})")));
            }
            if !(0.0..1.0).contains(&ratio) {
                return Err(error("suspect_success_ratio", "must be at least 0 and below 1"));
            }
            Some((early, ratio))
        }
        (Some(_), None) => return Err(error("suspect_success_ratio", "goes with `suspect_threshold`")),
        (None, Some(_)) => return Err(error("suspect_threshold", "goes with `suspect_success_ratio`")),
    };
    let penalty = p.penalty.unwrap_or(Span(Duration::from_secs(900)));
    let max_penalty = p.max_penalty.unwrap_or(Span(Duration::from_secs(6 * 3600)));
    if max_penalty.0 < penalty.0 {
        return Err(error("max_penalty", "must not be shorter than `penalty`"));
    }
    if p.window.0 < Duration::from_secs(1) {
        return Err(error("window", "must be at least 1s (accounts are timed per second)"));
    }
    Ok(Arc::new(DistinctAccounts {
        key,
        cell: cx.cell,
        count: p.count,
        rule: DistinctRule {
            threshold,
            suspect,
            window: p.window.nanos(),
            penalty: penalty.nanos(),
            max_penalty: max_penalty.nanos(),
            memory: strike_memory(max_penalty.0),
            cap: (threshold * 2).clamp(16, 1024) as u16,
        },
    }))
}

impl DistinctAccounts {
    fn key_of(&self, subject: &Subject) -> Option<StateKey> {
        match self.key {
            DistinctKey::Ip => Some(subject.address),
            DistinctKey::Password => subject.password,
        }
    }
}

impl Defense for DistinctAccounts {
    fn name(&self) -> &'static str {
        match self.key {
            DistinctKey::Ip => "distinct_accounts",
            DistinctKey::Password => "password_spray",
        }
    }

    /// Per address, the block needs only the address (accounts are learned from answers); per password, the body.
    /// Password-keyed blocks spare the account's known sources: a sprayed password that is some real user's own
    /// must not lock that user out at home.
    fn needs(&self) -> Needs {
        let by_password = self.key == DistinctKey::Password;
        Needs {
            phase: Some(if by_password { Phase::Credentials } else { Phase::Address }),
            fields: Fields { account: true, password: by_password, target: false },
            facts: FactNeeds { known_source: by_password, ..FactNeeds::default() },
            session_header: None,
        }
    }

    fn address_level(&self) -> bool {
        self.key == DistinctKey::Ip
    }

    fn reads(&self, attempt: &Attempt<'_>, out: &mut Reads) {
        if let Some(key) = self.key_of(&attempt.subject) {
            out.push(Read::Penalty { key, cell: self.cell });
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, replies: &[Reply], _now: u64) -> Finding {
        let reason = match self.key {
            DistinctKey::Ip => "many_accounts_from_source",
            DistinctKey::Password => "password_sprayed",
        };
        // A sprayed password is spared for its owner's known sources; a source's many accounts never are.
        Finding::standing_penalty(reason, replies, self.key == DistinctKey::Password, attempt)
    }

    fn record(&self, subject: &Subject, outcome: Outcome, out: &mut Vec<Write>) {
        let (Some(account), Some(key)) = (subject.account, self.key_of(subject)) else {
            return;
        };
        let counts = match (self.count, outcome) {
            (DistinctCount::Attempted, _) => true,
            (DistinctCount::Failed, Outcome::Failure | Outcome::Success) => true,
            (DistinctCount::Failed, Outcome::Other) => false,
        };
        if counts {
            let failed = outcome == Outcome::Failure || self.count == DistinctCount::Attempted;
            out.push(Write::Distinct { key, cell: self.cell, member: print32(account.id), failed, rule: self.rule });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::testing::Harness;

    const S: u64 = 1_000_000_000;

    fn defense(key: DistinctKey, count: DistinctCount) -> DistinctAccounts {
        DistinctAccounts {
            key,
            cell: 5,
            count,
            rule: DistinctRule {
                threshold: 10,
                suspect: None,
                window: 600 * S,
                penalty: 300 * S,
                max_penalty: 3600 * S,
                memory: 86_400 * S,
                cap: 20,
            },
        }
    }

    fn from(h: &Harness, ip: u8, account: u64) -> Subject {
        h.subject(&format!("100.64.0.{ip}"), Some(&format!("user{account}@example.com")))
    }

    #[test]
    fn many_failing_accounts_from_one_address_block_it() {
        let h = Harness::new();
        let d = defense(DistinctKey::Ip, DistinctCount::Failed);
        for account in 0..9 {
            h.observe(&d, &from(&h, 1, account), Outcome::Failure);
        }
        assert_eq!(h.check(&d, &from(&h, 1, 100)), Finding::Clear);
        h.observe(&d, &from(&h, 1, 9), Outcome::Failure);
        assert!(matches!(h.check(&d, &from(&h, 1, 100)), Finding::Hit { .. }));
        assert_eq!(h.check(&d, &from(&h, 2, 100)), Finding::Clear);
    }

    #[test]
    fn a_carrier_nat_full_of_real_users_who_mostly_succeed_is_not_blocked() {
        let h = Harness::new();
        let d = defense(DistinctKey::Ip, DistinctCount::Failed);
        // 2,000 users over an hour behind one address; every tenth mistypes once and then gets in.
        for user in 0..2000u64 {
            if user % 10 == 0 {
                h.observe(&d, &from(&h, 1, user), Outcome::Failure);
                h.clock.advance(Duration::from_secs(1));
            }
            h.observe(&d, &from(&h, 1, user), Outcome::Success);
            assert_eq!(h.check(&d, &from(&h, 1, user)), Finding::Clear);
            h.clock.advance(Duration::from_millis(1800));
        }
    }

    #[test]
    fn the_same_account_failing_repeatedly_counts_once() {
        let h = Harness::new();
        let d = defense(DistinctKey::Ip, DistinctCount::Failed);
        for _ in 0..50 {
            h.observe(&d, &from(&h, 1, 1), Outcome::Failure);
        }
        assert_eq!(h.check(&d, &from(&h, 1, 1)), Finding::Clear);
    }

    #[test]
    fn attempted_counting_blocks_without_outcomes() {
        let h = Harness::new();
        let d = defense(DistinctKey::Ip, DistinctCount::Attempted);
        for account in 0..10 {
            h.observe(&d, &from(&h, 3, account), Outcome::Other);
        }
        assert!(matches!(h.check(&d, &from(&h, 3, 0)), Finding::Hit { .. }));
    }

    #[test]
    fn one_password_failing_on_many_accounts_from_many_addresses_is_blocked_but_not_for_known_owners() {
        let h = Harness::new();
        let d = defense(DistinctKey::Password, DistinctCount::Failed);
        let sprayed = |ip: u8, account: u64| h.with_password(from(&h, ip, account), "Summer2026!");
        for i in 0..10u8 {
            // Each attempt from a different address: per-address counters see one attempt each.
            h.observe(&d, &sprayed(i, i as u64), Outcome::Failure);
        }
        assert!(matches!(h.check(&d, &sprayed(77, 500)), Finding::Hit { .. }));
        let mut owner = sprayed(250, 99);
        owner.facts.known_source = true;
        assert_eq!(h.check(&d, &owner), Finding::Clear);
        let other_password = h.with_password(from(&h, 77, 500), "another one");
        assert_eq!(h.check(&d, &other_password), Finding::Clear);
    }

    #[test]
    fn a_source_where_nothing_succeeds_is_blocked_early_but_a_busy_nat_is_not() {
        let h = Harness::new();
        let mut d = defense(DistinctKey::Ip, DistinctCount::Failed);
        d.rule.threshold = 30;
        d.rule.suspect = Some((5, 0.25));
        d.rule.cap = 60;
        // A list: five failures, nothing gets in.
        for account in 0..5 {
            h.observe(&d, &from(&h, 1, account), Outcome::Failure);
        }
        assert!(matches!(h.check(&d, &from(&h, 1, 99)), Finding::Hit { .. }));
        // A carrier NAT: the same five failures among twenty users who got in.
        for account in 100..120 {
            h.observe(&d, &from(&h, 2, account), Outcome::Success);
        }
        for account in 0..5 {
            h.observe(&d, &from(&h, 2, account), Outcome::Failure);
        }
        assert_eq!(h.check(&d, &from(&h, 2, 99)), Finding::Clear);
    }
}
