//! Impossible travel: per account, the country of the last successful login. A new attempt from another country
//! within `window` of it is flagged — by default tagged (`X-Stuffgate-Geo-Velocity: JP->BR`) so the app can ask for
//! a second factor, because real travellers exist and a VPN switch looks the same.

use std::time::Duration;

use super::{AccountKey, Credentials, Defense, Finding, Outcome, Subject};
use crate::geoip::CountryCode;
use crate::store::{BoundedMap, Expiring};

#[derive(Clone, Copy)]
struct LastLogin {
    country: CountryCode,
    at: u64,
    window: u64,
}

impl Expiring for LastLogin {
    fn is_expired(&self, now: u64) -> bool {
        now >= self.at + self.window
    }
}

pub struct GeoVelocity {
    window: u64,
    map: BoundedMap<AccountKey, LastLogin>,
}

impl GeoVelocity {
    pub fn new(window: Duration, max_keys: usize) -> GeoVelocity {
        GeoVelocity {
            window: window.as_nanos() as u64,
            map: BoundedMap::new(max_keys),
        }
    }

    /// The previous country when the subject's differs from it within the window.
    fn moved_from(&self, subject: &Subject, now: u64) -> Option<CountryCode> {
        let (account, country) = (subject.account?, subject.geo.country?);
        let previous = self.map.read(&account, now, |last| last.country)?;
        (previous != country).then_some(previous)
    }
}

impl Defense for GeoVelocity {
    fn name(&self) -> &'static str {
        "geo_velocity"
    }

    fn needs_credentials(&self) -> bool {
        true
    }

    fn check(&self, subject: &Subject, _credentials: &Credentials<'_>, now: u64) -> Finding {
        match self.moved_from(subject, now) {
            Some(_) => Finding::Hit {
                reason: "impossible_travel",
                retry_after: None,
            },
            None => Finding::Clear,
        }
    }

    fn observe(&self, subject: &Subject, outcome: Outcome, now: u64) {
        let (Outcome::Success, Some(account), Some(country)) = (outcome, subject.account, subject.geo.country) else {
            return;
        };
        let window = self.window;
        self.map.update(
            account,
            now,
            || LastLogin { country, at: now, window },
            |last| {
                last.country = country;
                last.at = now;
            },
        );
    }

    fn prune(&self, now: u64) {
        self.map.prune(now);
    }

    fn tracked_keys(&self) -> usize {
        self.map.len()
    }

    fn tag_header(&self) -> Option<&'static str> {
        Some("x-stuffgate-geo-velocity")
    }

    fn explain(&self, subject: &Subject, now: u64) -> Option<String> {
        let previous = self.moved_from(subject, now)?;
        Some(format!("{previous}->{}", subject.geo.country?))
    }

    fn default_status(&self) -> u16 {
        403
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use std::net::IpAddr;

    fn user_in(country: &str) -> Subject {
        let mut s = Subject::new("198.51.100.1".parse::<IpAddr>().unwrap(), 64);
        s.account = Some(AccountKey(1));
        s.geo.country = Some(country.parse().unwrap());
        s
    }

    #[test]
    fn another_country_soon_after_a_login_is_flagged_and_not_after_the_window() {
        let clock = Clock::manual();
        let velocity = GeoVelocity::new(Duration::from_secs(3600), 1000);
        let creds = Credentials::default();
        velocity.observe(&user_in("JP"), Outcome::Success, clock.now_nanos());
        clock.advance(Duration::from_secs(600));
        assert_eq!(velocity.check(&user_in("JP"), &creds, clock.now_nanos()), Finding::Clear);
        assert!(matches!(velocity.check(&user_in("BR"), &creds, clock.now_nanos()), Finding::Hit { .. }));
        assert_eq!(velocity.explain(&user_in("BR"), clock.now_nanos()).as_deref(), Some("JP->BR"));
        clock.advance(Duration::from_secs(3001));
        assert_eq!(velocity.check(&user_in("BR"), &creds, clock.now_nanos()), Finding::Clear);
    }

    #[test]
    fn failed_logins_do_not_move_the_account() {
        let clock = Clock::manual();
        let velocity = GeoVelocity::new(Duration::from_secs(3600), 1000);
        velocity.observe(&user_in("JP"), Outcome::Success, clock.now_nanos());
        velocity.observe(&user_in("BR"), Outcome::Failure, clock.now_nanos());
        assert_eq!(velocity.check(&user_in("JP"), &Credentials::default(), clock.now_nanos()), Finding::Clear);
    }
}
