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

use super::known_sources::KnownSources;
use super::{Credentials, Defense, Finding, Outcome, Subject};
use crate::store::{BoundedMap, Expiring, Penalty};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistinctCount {
    /// Accounts whose latest outcome from this address failed.
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

#[derive(Clone, Copy)]
struct Seen {
    account_print: u32,
    at: u64,
    failed: bool,
}

struct AddressAccounts {
    seen: Vec<Seen>,
    penalty: Penalty,
    last_seen: u64,
    keep_for: u64,
}

impl Expiring for AddressAccounts {
    fn is_expired(&self, now: u64) -> bool {
        now >= self.last_seen + self.keep_for && !self.penalty.is_blocked(now)
    }
}

pub struct DistinctAccounts {
    key: DistinctKey,
    /// Password-keyed blocks spare the account's known sources: a sprayed password that is some real user's own
    /// must not lock that user out at home.
    known_sources: Option<Arc<KnownSources>>,
    count: DistinctCount,
    threshold: u32,
    /// Block at this many failed accounts already, when the share of accounts that got in is at most the ratio.
    suspect: Option<(u32, f64)>,
    window: u64,
    penalty: u64,
    max_penalty: u64,
    memory: u64,
    per_address_cap: usize,
    map: BoundedMap<u128, AddressAccounts>,
}

pub struct DistinctAccountsSettings {
    pub key: DistinctKey,
    pub count: DistinctCount,
    pub threshold: u32,
    pub suspect: Option<(u32, f64)>,
    pub window: Duration,
    pub penalty: Duration,
    pub max_penalty: Duration,
    pub max_keys: usize,
}

impl DistinctAccounts {
    pub fn new(settings: DistinctAccountsSettings, known_sources: Option<Arc<KnownSources>>) -> DistinctAccounts {
        let nanos = |d: Duration| d.as_nanos() as u64;
        DistinctAccounts {
            key: settings.key,
            known_sources,
            count: settings.count,
            threshold: settings.threshold,
            suspect: settings.suspect,
            window: nanos(settings.window),
            penalty: nanos(settings.penalty),
            max_penalty: nanos(settings.max_penalty),
            memory: nanos(settings.max_penalty.max(Duration::from_secs(86_400))),
            per_address_cap: (settings.threshold as usize * 2).clamp(16, 1024),
            map: BoundedMap::new(settings.max_keys),
        }
    }
}

impl DistinctAccounts {
    fn key_of(&self, subject: &Subject) -> Option<u128> {
        match self.key {
            DistinctKey::Ip => Some(subject.ip_key.0),
            DistinctKey::Password => subject.password_key.map(u128::from),
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

    /// Per address, the block needs only the address (accounts are learned in `observe`); per password, the body.
    fn needs_credentials(&self) -> bool {
        self.key == DistinctKey::Password
    }

    fn check(&self, subject: &Subject, _credentials: &Credentials<'_>, now: u64) -> Finding {
        let Some(key) = self.key_of(subject) else {
            return Finding::Clear;
        };
        let remaining = self.map.read(&key, now, |state| state.penalty.remaining(now)).unwrap_or(0);
        if remaining > 0 && KnownSources::spares(self.known_sources.as_deref(), subject, now) {
            return Finding::Clear;
        }
        let reason = match self.key {
            DistinctKey::Ip => "many_accounts_from_source",
            DistinctKey::Password => "password_sprayed",
        };
        Finding::penalty(reason, remaining)
    }

    fn observe(&self, subject: &Subject, outcome: Outcome, now: u64) {
        let (Some(account), Some(key)) = (subject.account, self.key_of(subject)) else {
            return;
        };
        let counts = match (self.count, outcome) {
            (DistinctCount::Attempted, _) => true,
            (DistinctCount::Failed, Outcome::Failure | Outcome::Success) => true,
            (DistinctCount::Failed, Outcome::Other) => false,
        };
        if !counts {
            return;
        }
        let account_print = ((account.0 >> 32) as u32) ^ (account.0 as u32);
        let failed = outcome == Outcome::Failure || self.count == DistinctCount::Attempted;
        let (window, cap, threshold, suspect) = (self.window, self.per_address_cap, self.threshold, self.suspect);
        let (penalty, max_penalty, memory) = (self.penalty, self.max_penalty, self.memory);
        self.map.update(
            key,
            now,
            || AddressAccounts {
                seen: Vec::new(),
                penalty: Penalty::default(),
                last_seen: now,
                keep_for: window.max(memory),
            },
            |state| {
                state.last_seen = now;
                if state.penalty.is_blocked(now) {
                    return;
                }
                let horizon = now.saturating_sub(window);
                match state.seen.iter_mut().find(|s| s.account_print == account_print) {
                    Some(seen) => {
                        seen.at = now;
                        seen.failed = failed;
                    }
                    None => {
                        if state.seen.len() >= cap {
                            state.seen.retain(|s| s.at >= horizon);
                        }
                        if state.seen.len() >= cap {
                            if let Some(oldest) = (0..state.seen.len()).min_by_key(|&i| state.seen[i].at) {
                                state.seen.swap_remove(oldest);
                            }
                        }
                        state.seen.push(Seen {
                            account_print,
                            at: now,
                            failed,
                        });
                    }
                }
                let recent = || state.seen.iter().filter(|s| s.at >= horizon);
                let failed = recent().filter(|s| s.failed).count() as u32;
                let succeeded = recent().filter(|s| !s.failed).count() as u32;
                let suspicious = suspect.is_some_and(|(early, ratio)| {
                    failed >= early && f64::from(succeeded) <= ratio * f64::from(failed + succeeded)
                });
                if failed >= threshold || suspicious {
                    state.penalty.strike(now, penalty, max_penalty, memory);
                    state.seen.clear();
                    state.seen.shrink_to_fit();
                }
            },
        );
    }

    fn prune(&self, now: u64) {
        self.map.prune(now);
    }

    fn tracked_keys(&self) -> usize {
        self.map.len()
    }

    fn default_status(&self) -> u16 {
        429
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::defense::AccountKey;
    use std::net::{IpAddr, Ipv4Addr};

    fn settings(key: DistinctKey, count: DistinctCount) -> DistinctAccountsSettings {
        DistinctAccountsSettings {
            key,
            count,
            threshold: 10,
            suspect: None,
            window: Duration::from_secs(600),
            penalty: Duration::from_secs(300),
            max_penalty: Duration::from_secs(3600),
            max_keys: 10_000,
        }
    }

    fn defense(count: DistinctCount) -> DistinctAccounts {
        DistinctAccounts::new(settings(DistinctKey::Ip, count), None)
    }

    fn from(ip: u8, account: u64) -> Subject {
        let mut s = Subject::new(IpAddr::V4(Ipv4Addr::new(100, 64, 0, ip)), 64);
        s.account = Some(AccountKey(account.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        s
    }

    #[test]
    fn many_failing_accounts_from_one_address_block_it() {
        let clock = Clock::manual();
        let d = defense(DistinctCount::Failed);
        for account in 0..9 {
            d.observe(&from(1, account), Outcome::Failure, clock.now_nanos());
        }
        assert_eq!(d.check(&from(1, 100), &Credentials::default(), clock.now_nanos()), Finding::Clear);
        d.observe(&from(1, 9), Outcome::Failure, clock.now_nanos());
        assert!(matches!(
            d.check(&from(1, 100), &Credentials::default(), clock.now_nanos()),
            Finding::Hit { .. }
        ));
        assert_eq!(d.check(&from(2, 100), &Credentials::default(), clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn a_carrier_nat_full_of_real_users_who_mostly_succeed_is_not_blocked() {
        let clock = Clock::manual();
        let d = defense(DistinctCount::Failed);
        // 2,000 users over an hour behind one address; every tenth mistypes once and then gets in.
        for user in 0..2000u64 {
            if user % 10 == 0 {
                d.observe(&from(1, user), Outcome::Failure, clock.now_nanos());
                clock.advance(Duration::from_secs(1));
            }
            d.observe(&from(1, user), Outcome::Success, clock.now_nanos());
            assert_eq!(d.check(&from(1, user), &Credentials::default(), clock.now_nanos()), Finding::Clear);
            clock.advance(Duration::from_millis(1800));
        }
    }

    #[test]
    fn the_same_account_failing_repeatedly_counts_once() {
        let clock = Clock::manual();
        let d = defense(DistinctCount::Failed);
        for _ in 0..50 {
            d.observe(&from(1, 1), Outcome::Failure, clock.now_nanos());
        }
        assert_eq!(d.check(&from(1, 1), &Credentials::default(), clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn attempted_counting_blocks_without_outcomes() {
        let clock = Clock::manual();
        let d = defense(DistinctCount::Attempted);
        for account in 0..10 {
            d.observe(&from(3, account), Outcome::Other, clock.now_nanos());
        }
        assert!(matches!(
            d.check(&from(3, 0), &Credentials::default(), clock.now_nanos()),
            Finding::Hit { .. }
        ));
    }

    #[test]
    fn one_password_failing_on_many_accounts_from_many_addresses_is_blocked_but_not_for_known_owners() {
        let clock = Clock::manual();
        let known = Arc::new(KnownSources::new(1000, Duration::from_secs(86_400)));
        let d = DistinctAccounts::new(settings(DistinctKey::Password, DistinctCount::Failed), Some(known.clone()));
        let sprayed = |ip: u8, account: u64| {
            let mut s = from(ip, account);
            s.password_key = Some(0xDEAD);
            s
        };
        let owner = sprayed(250, 99);
        known.record_success(owner.account.unwrap(), owner.ip_key, clock.now_nanos());
        for i in 0..10u8 {
            // Each attempt from a different address: per-address counters see one attempt each.
            d.observe(&sprayed(i, i as u64), Outcome::Failure, clock.now_nanos());
        }
        assert!(matches!(d.check(&sprayed(77, 500), &Credentials::default(), clock.now_nanos()), Finding::Hit { .. }));
        assert_eq!(d.check(&owner, &Credentials::default(), clock.now_nanos()), Finding::Clear);
        let mut other_password = sprayed(77, 500);
        other_password.password_key = Some(0xBEEF);
        assert_eq!(d.check(&other_password, &Credentials::default(), clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn a_source_where_nothing_succeeds_is_blocked_early_but_a_busy_nat_is_not() {
        let clock = Clock::manual();
        let d = DistinctAccounts::new(
            DistinctAccountsSettings {
                threshold: 30,
                suspect: Some((5, 0.25)),
                ..settings(DistinctKey::Ip, DistinctCount::Failed)
            },
            None,
        );
        let creds = Credentials::default();
        // A list: five failures, nothing gets in.
        for account in 0..5 {
            d.observe(&from(1, account), Outcome::Failure, clock.now_nanos());
        }
        assert!(matches!(d.check(&from(1, 99), &creds, clock.now_nanos()), Finding::Hit { .. }));
        // A carrier NAT: the same five failures among twenty users who got in.
        for account in 100..120 {
            d.observe(&from(2, account), Outcome::Success, clock.now_nanos());
        }
        for account in 0..5 {
            d.observe(&from(2, account), Outcome::Failure, clock.now_nanos());
        }
        assert_eq!(d.check(&from(2, 99), &creds, clock.now_nanos()), Finding::Clear);
    }
}
