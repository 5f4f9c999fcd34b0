//! Test support: a defense against a real local store and a manual clock, through the same read → decide and
//! record → write steps the engine takes.

use crate::attempt::{Attempt, Credentials, Facts, IpKey, Subject};
use crate::clock::Clock;
use crate::keys::{pair_id, KeyHasher};
use crate::store::{KeyKind, LocalStore, Reads, Replies, StateKey, Store};

use super::{Defense, Finding, Outcome};

pub struct Harness {
    pub clock: Clock,
    pub store: LocalStore,
    pub keys: KeyHasher,
    headers: http::HeaderMap,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            clock: Clock::manual(),
            store: LocalStore::new(100_000),
            keys: KeyHasher::from_secret(b"test secret"),
            headers: http::HeaderMap::new(),
        }
    }

    /// A subject from `ip`, with an account when given (the password key is the account's, for spray tests).
    pub fn subject(&self, ip: &str, account: Option<&str>) -> Subject {
        let ip = ip.parse().expect("test address");
        let ip_key = IpKey::new(ip, 64);
        let address = self.keys.key(KeyKind::Address, &ip_key.0.to_le_bytes());
        let account = account.map(|a| self.keys.key(KeyKind::Account, a.as_bytes()));
        Subject {
            ip,
            ip_key,
            address,
            account,
            account_address: account.map(|a| StateKey { kind: KeyKind::AccountAddress, id: pair_id(a.id, address.id) }),
            password: None,
            session: None,
            facts: Facts::default(),
        }
    }

    pub fn with_password(&self, mut subject: Subject, password: &str) -> Subject {
        subject.password = Some(self.keys.key(KeyKind::Password, password.as_bytes()));
        subject
    }

    pub fn check(&self, defense: &dyn Defense, subject: &Subject) -> Finding {
        self.check_with(defense, subject, Credentials::default())
    }

    pub fn check_with(&self, defense: &dyn Defense, subject: &Subject, credentials: Credentials<'_>) -> Finding {
        let attempt = Attempt { subject: *subject, credentials, headers: &self.headers };
        let (mut reads, mut replies) = (Reads::new(), Replies::new());
        defense.reads(&attempt, &mut reads);
        let now = self.clock.now_nanos();
        let done = self.store.read(&reads, now, &mut replies).now_or_never();
        assert!(matches!(done, Some(Ok(()))), "the local store answers at once");
        defense.decide(&attempt, &replies, now)
    }

    pub fn explain(&self, defense: &dyn Defense, subject: &Subject) -> Option<String> {
        let attempt = Attempt { subject: *subject, credentials: Credentials::default(), headers: &self.headers };
        let (mut reads, mut replies) = (Reads::new(), Replies::new());
        defense.reads(&attempt, &mut reads);
        let _ = self.store.read(&reads, self.clock.now_nanos(), &mut replies).now_or_never();
        defense.explain(&attempt, &replies)
    }

    pub fn observe(&self, defense: &dyn Defense, subject: &Subject, outcome: Outcome) {
        let mut writes = Vec::new();
        defense.record(subject, outcome, &mut writes);
        self.store.write(&writes, self.clock.now_nanos());
    }

    pub fn prune(&self) {
        self.store.prune(self.clock.now_nanos());
    }

    pub fn records(&self) -> usize {
        self.store.tracked_keys().iter().map(|(_, n)| n).sum()
    }
}
