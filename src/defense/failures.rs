//! Failed logins counted from the upstream's answers, per address, per account, or per account and address, with
//! escalating penalties (each repeat offence blocks twice as long, up to a cap).
//!
//! Typical settings follow published defaults: AWS WAF ATP acts on more than 10 failures per address in 10 minutes;
//! Auth0 blocks an account from an address after 10 failures.

use std::sync::Arc;
use std::time::Duration;

use super::known_sources::KnownSources;
use super::{Credentials, Defense, Finding, Outcome, Subject};
use crate::store::{BoundedMap, CountWithPenalty, Escalation};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKey {
    Ip,
    Account,
    AccountIp,
}

pub struct FailedLogins {
    key: FailureKey,
    rule: Escalation,
    map: BoundedMap<u128, CountWithPenalty>,
    known_sources: Option<Arc<KnownSources>>,
}

pub struct FailedLoginsSettings {
    pub key: FailureKey,
    pub threshold: u32,
    pub window: Duration,
    pub penalty: Duration,
    pub max_penalty: Duration,
    pub max_keys: usize,
}

impl FailedLogins {
    pub fn new(settings: FailedLoginsSettings, known_sources: Option<Arc<KnownSources>>) -> FailedLogins {
        let nanos = |d: Duration| d.as_nanos() as u64;
        FailedLogins {
            key: settings.key,
            rule: Escalation {
                threshold: settings.threshold,
                window: nanos(settings.window),
                penalty: nanos(settings.penalty),
                max_penalty: nanos(settings.max_penalty),
                // Strikes are remembered at least a day, so a patient attacker still escalates.
                memory: nanos(settings.max_penalty.max(Duration::from_secs(86_400))),
            },
            map: BoundedMap::new(settings.max_keys),
            known_sources,
        }
    }

    fn key_of(&self, subject: &Subject) -> Option<u128> {
        match self.key {
            FailureKey::Ip => Some(subject.ip_key.0),
            FailureKey::Account => subject.account.map(|a| a.0 as u128),
            FailureKey::AccountIp => subject
                .account
                .map(|a| ((a.0 as u128) << 64) ^ subject.ip_key.0.rotate_left(17)),
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

    fn needs_credentials(&self) -> bool {
        self.key != FailureKey::Ip
    }

    fn check(&self, subject: &Subject, _credentials: &Credentials<'_>, now: u64) -> Finding {
        let Some(key) = self.key_of(subject) else {
            return Finding::Clear;
        };
        let remaining = self.map.read(&key, now, |state| state.penalty.remaining(now)).unwrap_or(0);
        if remaining > 0 && KnownSources::spares(self.known_sources.as_deref(), subject, now) {
            return Finding::Clear;
        }
        Finding::penalty("too_many_failures", remaining)
    }

    fn observe(&self, subject: &Subject, outcome: Outcome, now: u64) {
        let Some(key) = self.key_of(subject) else {
            return;
        };
        match outcome {
            Outcome::Failure => {
                let (rule, keep_for) = (self.rule, self.rule.window.max(self.rule.memory));
                self.map.update(
                    key,
                    now,
                    || CountWithPenalty {
                        keep_for,
                        ..CountWithPenalty::default()
                    },
                    |state| state.record(now, &rule),
                );
            }
            Outcome::Success if self.key == FailureKey::AccountIp => {
                // The owner typed it right: earlier typos from this address should not count against them.
                self.map.modify(&key, |state| state.count.reset());
            }
            Outcome::Success | Outcome::Other => {}
        }
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
    use crate::defense::{AccountKey, IpKey};
    use std::net::{IpAddr, Ipv4Addr};

    fn settings(key: FailureKey) -> FailedLoginsSettings {
        FailedLoginsSettings {
            key,
            threshold: 3,
            window: Duration::from_secs(600),
            penalty: Duration::from_secs(60),
            max_penalty: Duration::from_secs(3600),
            max_keys: 10_000,
        }
    }

    fn from(ip: u8, account: u64) -> Subject {
        let mut s = Subject::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, ip)), 64);
        s.account = Some(AccountKey(account));
        s
    }

    #[test]
    fn failures_from_one_address_block_it_with_escalating_penalties() {
        let clock = Clock::manual();
        let defense = FailedLogins::new(settings(FailureKey::Ip), None);
        let creds = Credentials::default();
        for account in 0..3 {
            assert_eq!(defense.check(&from(1, account), &creds, clock.now_nanos()), Finding::Clear);
            defense.observe(&from(1, account), Outcome::Failure, clock.now_nanos());
        }
        let Finding::Hit { retry_after, .. } = defense.check(&from(1, 9), &creds, clock.now_nanos()) else {
            panic!("third failure must block the address");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(60)));
        assert_eq!(defense.check(&from(2, 9), &creds, clock.now_nanos()), Finding::Clear);
        clock.advance(Duration::from_secs(61));
        assert_eq!(defense.check(&from(1, 9), &creds, clock.now_nanos()), Finding::Clear);
        for account in 0..3 {
            defense.observe(&from(1, account), Outcome::Failure, clock.now_nanos());
        }
        let Finding::Hit { retry_after, .. } = defense.check(&from(1, 9), &creds, clock.now_nanos()) else {
            panic!("repeat offence must block again");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(120)), "second penalty doubles");
    }

    #[test]
    fn failures_spread_over_many_addresses_block_the_account_but_not_its_known_owner() {
        let clock = Clock::manual();
        let known = Arc::new(KnownSources::new(1000, Duration::from_secs(30 * 86_400)));
        let defense = FailedLogins::new(settings(FailureKey::Account), Some(known.clone()));
        let owner = from(200, 5);
        known.record_success(AccountKey(5), IpKey::new(owner.ip, 64), clock.now_nanos());
        for ip in 1..=3 {
            defense.observe(&from(ip, 5), Outcome::Failure, clock.now_nanos());
        }
        let creds = Credentials::default();
        assert!(matches!(defense.check(&from(50, 5), &creds, clock.now_nanos()), Finding::Hit { .. }));
        assert_eq!(defense.check(&owner, &creds, clock.now_nanos()), Finding::Clear);
        assert_eq!(defense.check(&from(50, 6), &creds, clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn a_success_clears_account_ip_typos() {
        let clock = Clock::manual();
        let defense = FailedLogins::new(settings(FailureKey::AccountIp), None);
        let user = from(7, 1);
        for _ in 0..2 {
            defense.observe(&user, Outcome::Failure, clock.now_nanos());
        }
        defense.observe(&user, Outcome::Success, clock.now_nanos());
        defense.observe(&user, Outcome::Failure, clock.now_nanos());
        assert_eq!(defense.check(&user, &Credentials::default(), clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        let clock = Clock::manual();
        let defense = FailedLogins::new(settings(FailureKey::Ip), None);
        for _ in 0..2 {
            defense.observe(&from(1, 1), Outcome::Failure, clock.now_nanos());
        }
        clock.advance(Duration::from_secs(1300));
        defense.observe(&from(1, 1), Outcome::Failure, clock.now_nanos());
        assert_eq!(defense.check(&from(1, 1), &Credentials::default(), clock.now_nanos()), Finding::Clear);
    }
}
