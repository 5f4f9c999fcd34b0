//! Request-rate limits per address, per account, or per account and address (GCRA, via governor).
//!
//! governor's keyed limiter forgets nothing by itself: `prune` runs `retain_recent` on a timer. Its memory is
//! naturally bounded by (request rate × emission interval): a key is dropped as soon as its bucket is full again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::known_sources::KnownSources;
use super::{Credentials, Defense, Finding, Subject};
use crate::clock::Clock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateKey {
    Ip,
    Account,
    AccountIp,
    /// The route's session header (e.g. a bearer token): paces what one logged-in session does.
    Session,
}

pub struct RateLimit {
    name: &'static str,
    key: RateKey,
    limiter: RateLimiter<u128, DashMapStateStore<u128>, Clock, NoOpMiddleware<Nanos>>,
    clock: Clock,
    /// Account-keyed limits spare sources that logged in to the account before (see `known_sources`).
    known_sources: Option<Arc<KnownSources>>,
    /// Keys before pruning, decaying by 1/8 per prune: the size the map is likely to regrow to.
    peak_keys: AtomicUsize,
    /// Above this many keys, checks prune inline instead of waiting for the timer (a flood of new addresses).
    key_cap: usize,
    checks: AtomicUsize,
}

impl RateLimit {
    /// `limit` requests per `per`, with bursts of up to `burst`.
    pub fn new(
        key: RateKey,
        limit: u32,
        per: Duration,
        burst: u32,
        clock: Clock,
        known_sources: Option<Arc<KnownSources>>,
    ) -> Option<RateLimit> {
        let period = per.checked_div(limit)?;
        let quota = Quota::with_period(period)?.allow_burst(std::num::NonZeroU32::new(burst)?);
        let name = match key {
            RateKey::Ip => "ip_rate",
            RateKey::Account => "account_rate",
            RateKey::AccountIp => "account_ip_rate",
            RateKey::Session => "session_rate",
        };
        Some(RateLimit {
            name,
            key,
            limiter: RateLimiter::new(quota, DashMapStateStore::default(), clock.clone()),
            clock,
            known_sources,
            peak_keys: AtomicUsize::new(0),
            key_cap: usize::MAX,
            checks: AtomicUsize::new(0),
        })
    }

    /// Prune inline (every 1,024 checks at most) once the map holds more than `cap` keys. governor drops a key only
    /// when its bucket is full again, so what stays is bounded by (new keys per second × emission interval).
    pub fn with_key_cap(mut self, cap: usize) -> RateLimit {
        self.key_cap = cap;
        self
    }

    fn key_of(&self, subject: &Subject) -> Option<u128> {
        match self.key {
            RateKey::Ip => Some(subject.ip_key.0),
            RateKey::Account => subject.account.map(|a| a.0 as u128),
            RateKey::AccountIp => subject
                .account
                .map(|a| ((a.0 as u128) << 64) ^ subject.ip_key.0.rotate_left(17)),
            RateKey::Session => subject.session_key.map(u128::from),
        }
    }
}

impl Defense for RateLimit {
    fn name(&self) -> &'static str {
        self.name
    }

    fn needs_credentials(&self) -> bool {
        matches!(self.key, RateKey::Account | RateKey::AccountIp)
    }

    fn check(&self, subject: &Subject, _credentials: &Credentials<'_>, now: u64) -> Finding {
        let Some(key) = self.key_of(subject) else {
            return Finding::Clear;
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 0 && self.limiter.len() > self.key_cap {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&key) {
            Ok(()) => Finding::Clear,
            Err(not_until) => {
                if KnownSources::spares(self.known_sources.as_deref(), subject, now) {
                    return Finding::Clear;
                }
                let wait = not_until.wait_time_from(self.clock.now());
                Finding::Hit {
                    reason: "rate_exceeded",
                    retry_after: Some(wait.max(Duration::from_secs(1))),
                }
            }
        }
    }

    fn prune(&self, _now: u64) {
        let before = self.limiter.len();
        self.limiter.retain_recent();
        // Under steady traffic the map refills to `before` keys by the next prune: shrinking it every time would
        // rehash it and fault its memory in again. Shrink only once traffic fell well below the recent peak.
        let peak = self.peak_keys.load(Ordering::Relaxed);
        let peak = before.max(peak - peak / 8);
        if before.saturating_mul(4) < peak {
            self.limiter.shrink_to_fit();
            self.peak_keys.store(before, Ordering::Relaxed);
        } else {
            self.peak_keys.store(peak, Ordering::Relaxed);
        }
    }

    fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::{AccountKey, IpKey};
    use std::net::{IpAddr, Ipv4Addr};

    fn subject(last_octet: u8) -> Subject {
        Subject::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last_octet)), 64)
    }

    #[test]
    fn ip_limit_blocks_after_burst_and_recovers_with_time() {
        let clock = Clock::manual();
        let limit = RateLimit::new(RateKey::Ip, 5, Duration::from_secs(60), 5, clock.clone(), None).unwrap();
        let creds = Credentials::default();
        for _ in 0..5 {
            assert_eq!(limit.check(&subject(1), &creds, clock.now_nanos()), Finding::Clear);
        }
        let Finding::Hit { retry_after, .. } = limit.check(&subject(1), &creds, clock.now_nanos()) else {
            panic!("sixth request in a minute must be over the limit");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(12)));
        // Another address is unaffected.
        assert_eq!(limit.check(&subject(2), &creds, clock.now_nanos()), Finding::Clear);
        clock.advance(Duration::from_secs(12));
        assert_eq!(limit.check(&subject(1), &creds, clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn pruning_forgets_recovered_keys() {
        let clock = Clock::manual();
        let limit = RateLimit::new(RateKey::Ip, 10, Duration::from_secs(10), 10, clock.clone(), None).unwrap();
        for i in 0..200u8 {
            limit.check(&subject(i), &Credentials::default(), clock.now_nanos());
        }
        assert_eq!(limit.tracked_keys(), 200);
        clock.advance(Duration::from_secs(2));
        limit.prune(clock.now_nanos());
        assert_eq!(limit.tracked_keys(), 0);
    }

    #[test]
    fn account_limit_spares_a_source_that_logged_in_before() {
        let clock = Clock::manual();
        let known = Arc::new(KnownSources::new(100, Duration::from_secs(86_400)));
        let limit = RateLimit::new(
            RateKey::Account,
            1,
            Duration::from_secs(60),
            1,
            clock.clone(),
            Some(known.clone()),
        )
        .unwrap();
        let mut owner = subject(1);
        owner.account = Some(AccountKey(42));
        let mut attacker = subject(9);
        attacker.account = Some(AccountKey(42));
        known.record_success(AccountKey(42), IpKey::new(owner.ip, 64), clock.now_nanos());
        let creds = Credentials::default();
        assert_eq!(limit.check(&attacker, &creds, clock.now_nanos()), Finding::Clear);
        assert!(matches!(limit.check(&attacker, &creds, clock.now_nanos()), Finding::Hit { .. }));
        assert_eq!(limit.check(&owner, &creds, clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn a_flood_of_new_addresses_is_pruned_inline_once_over_the_cap() {
        let clock = Clock::manual();
        let limit = RateLimit::new(RateKey::Ip, 10, Duration::from_secs(1), 10, clock.clone(), None)
            .unwrap()
            .with_key_cap(1000);
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
            limit.check(&Subject::new(ip, 64), &Credentials::default(), clock.now_nanos());
            clock.advance(Duration::from_micros(500)); // 2,000 new addresses a second
        }
        // Keys live 0.1 s (one emission interval): ~200 at a time, never far above the cap.
        assert!(limit.tracked_keys() <= 1000 + 1024, "{}", limit.tracked_keys());
    }
}
