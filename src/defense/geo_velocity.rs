//! Impossible travel: per account, the country of the last successful login. A new attempt from another country
//! within `window` of it is flagged — by default tagged (`X-Stuffgate-Geo-Velocity: JP->BR`) so the app can ask for
//! a second factor, because real travellers exist and a VPN switch looks the same.

use std::sync::Arc;

use serde::Deserialize;

use super::registry::{self, block, BuildContext, BuildError, DefenseSpec, Span};
use super::{Defense, FactNeeds, Fields, Finding, Needs, Outcome, Phase};
use crate::attempt::{Attempt, Subject};
use crate::geoip::CountryCode;
use crate::store::{CellId, Read, Reads, Reply, Write};

pub const SPEC: DefenseSpec =
    DefenseSpec { name: "geo_velocity", findings: &["geo_velocity"], build, default_action: block };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    window: Span,
}

fn build(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    super::geo::require_geoip(cx, "geo_velocity")?;
    Ok(Arc::new(GeoVelocity { cell: cx.cell, window: p.window.nanos() }))
}

pub struct GeoVelocity {
    cell: CellId,
    window: u64,
}

fn code(country: CountryCode) -> u32 {
    let [a, b] = country.as_str().as_bytes().try_into().unwrap_or([b'?', b'?']);
    u32::from(a) << 8 | u32::from(b)
}

fn country(code: u32) -> Option<CountryCode> {
    let letters = [(code >> 8) as u8, code as u8];
    std::str::from_utf8(&letters).ok()?.parse().ok()
}

impl GeoVelocity {
    /// The previous country when the attempt's differs from it within the window.
    fn moved_from(&self, attempt: &Attempt<'_>, replies: &[Reply]) -> Option<CountryCode> {
        let current = attempt.subject.facts.geo.country?;
        let Some(&Reply::Last(Some(previous))) = replies.first() else {
            return None;
        };
        (previous != code(current)).then(|| country(previous)).flatten()
    }
}

impl Defense for GeoVelocity {
    fn name(&self) -> &'static str {
        "geo_velocity"
    }

    fn needs(&self) -> Needs {
        Needs {
            phase: Some(Phase::Credentials),
            fields: Fields { account: true, ..Fields::default() },
            facts: FactNeeds { geo: true, ..FactNeeds::default() },
            session_header: None,
        }
    }

    fn reads(&self, attempt: &Attempt<'_>, out: &mut Reads) {
        if let (Some(account), Some(_)) = (attempt.subject.account, attempt.subject.facts.geo.country) {
            out.push(Read::Last { key: account, cell: self.cell });
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, replies: &[Reply], _now: u64) -> Finding {
        match self.moved_from(attempt, replies) {
            Some(_) => Finding::Hit { reason: "impossible_travel", retry_after: None },
            None => Finding::Clear,
        }
    }

    fn record(&self, subject: &Subject, outcome: Outcome, out: &mut Vec<Write>) {
        if let (Outcome::Success, Some(account), Some(country)) = (outcome, subject.account, subject.facts.geo.country)
        {
            out.push(Write::SetLast { key: account, cell: self.cell, value: code(country), keep: self.window });
        }
    }

    fn tag_header(&self) -> Option<&'static str> {
        Some("x-stuffgate-geo-velocity")
    }

    fn explain(&self, attempt: &Attempt<'_>, replies: &[Reply]) -> Option<String> {
        let previous = self.moved_from(attempt, replies)?;
        Some(format!("{previous}->{}", attempt.subject.facts.geo.country?))
    }

    fn default_status(&self) -> u16 {
        403
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::testing::Harness;
    use std::time::Duration;

    fn user_in(h: &Harness, country: &str) -> Subject {
        let mut s = h.subject("198.51.100.1", Some("traveller"));
        s.facts.geo.country = Some(country.parse().unwrap());
        s
    }

    fn velocity() -> GeoVelocity {
        GeoVelocity { cell: 3, window: Duration::from_secs(3600).as_nanos() as u64 }
    }

    #[test]
    fn another_country_soon_after_a_login_is_flagged_and_not_after_the_window() {
        let (h, v) = (Harness::new(), velocity());
        h.observe(&v, &user_in(&h, "JP"), Outcome::Success);
        h.clock.advance(Duration::from_secs(600));
        assert_eq!(h.check(&v, &user_in(&h, "JP")), Finding::Clear);
        assert!(matches!(h.check(&v, &user_in(&h, "BR")), Finding::Hit { .. }));
        assert_eq!(h.explain(&v, &user_in(&h, "BR")).as_deref(), Some("JP->BR"));
        h.clock.advance(Duration::from_secs(3001));
        assert_eq!(h.check(&v, &user_in(&h, "BR")), Finding::Clear);
    }

    #[test]
    fn failed_logins_do_not_move_the_account() {
        let (h, v) = (Harness::new(), velocity());
        h.observe(&v, &user_in(&h, "JP"), Outcome::Success);
        h.observe(&v, &user_in(&h, "BR"), Outcome::Failure);
        assert_eq!(h.check(&v, &user_in(&h, "JP")), Finding::Clear);
    }
}
