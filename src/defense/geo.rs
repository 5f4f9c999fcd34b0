//! Country and network rules: an allow-list ("JP only during an incident", as 7pay did on day 3) or a deny-list of
//! countries, and allow/deny lists of autonomous systems (hosting networks are where proxies live).
//! The address is located once per request by the engine; this only reads the attempt's geo fact.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use super::registry::{self, block, error, BuildContext, BuildError, DefenseSpec};
use super::{Defense, FactNeeds, Finding, Needs, Phase};
use crate::attempt::Attempt;
use crate::geoip::CountryCode;
use crate::store::Reply;

pub const SPEC: DefenseSpec = DefenseSpec { name: "geo", findings: &["geo"], build, default_action: block };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    allow_countries: Option<Vec<CountryCode>>,
    deny_countries: Option<Vec<CountryCode>>,
    #[serde(default)]
    allow_asns: HashSet<u32>,
    #[serde(default)]
    deny_asns: HashSet<u32>,
    unknown_country: Option<Treat>,
    private_addresses: Option<Treat>,
}

/// Say how to get a GeoIP database when a geo defense has none to read.
pub fn require_geoip(cx: &BuildContext<'_>, kind: &str) -> Result<(), BuildError> {
    if cx.env.geo.is_none() && cx.env.require_data {
        return Err(error(
            "type",
            format!(
                "`{kind}` needs a GeoIP database: add `[geoip] country_db = \"geoip/country.mmdb\"` to the gateway \
                 file (the shipped one; refresh it with geoip/refresh.sh)"
            ),
        ));
    }
    Ok(())
}

fn build(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    require_geoip(cx, "geo")?;
    let countries = match (p.allow_countries, p.deny_countries) {
        (Some(_), Some(_)) => {
            return Err(error("deny_countries", "set `allow_countries` or `deny_countries`, not both"))
        }
        (Some(allow), None) => CountryRule::Only(allow.into_iter().collect()),
        (None, Some(deny)) => CountryRule::Except(deny.into_iter().collect()),
        (None, None) => CountryRule::Any,
    };
    if countries == CountryRule::Any && p.allow_asns.is_empty() && p.deny_asns.is_empty() {
        return Err(error("allow_countries", "`geo` needs countries or ASNs to allow or deny"));
    }
    let unknown_default = if matches!(countries, CountryRule::Only(_)) { Treat::Block } else { Treat::Allow };
    Ok(Arc::new(GeoFence {
        countries,
        allow_asns: p.allow_asns,
        deny_asns: p.deny_asns,
        unknown_country: p.unknown_country.unwrap_or(unknown_default),
        private_addresses: p.private_addresses.unwrap_or(Treat::Allow),
    }))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountryRule {
    Any,
    Only(HashSet<CountryCode>),
    Except(HashSet<CountryCode>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Treat {
    Allow,
    Block,
}

pub struct GeoFence {
    pub countries: CountryRule,
    pub allow_asns: HashSet<u32>,
    pub deny_asns: HashSet<u32>,
    /// Public addresses the database does not place in a country.
    pub unknown_country: Treat,
    /// Private, loopback and carrier-NAT ranges (the gateway sits behind a proxy that did not forward the client).
    pub private_addresses: Treat,
}

impl Defense for GeoFence {
    fn name(&self) -> &'static str {
        "geo"
    }

    fn needs(&self) -> Needs {
        Needs {
            phase: Some(Phase::Address),
            facts: FactNeeds { geo: true, ..FactNeeds::default() },
            ..Needs::default()
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, _replies: &[Reply], _now: u64) -> Finding {
        let geo = &attempt.subject.facts.geo;
        let hit = |reason| Finding::Hit { reason, retry_after: None };
        if geo.is_private {
            return match self.private_addresses {
                Treat::Allow => Finding::Clear,
                Treat::Block => hit("private_address"),
            };
        }
        if let Some(asn) = geo.asn {
            if self.deny_asns.contains(&asn) {
                return hit("denied_network");
            }
            if !self.allow_asns.is_empty() && !self.allow_asns.contains(&asn) {
                return hit("network_not_allowed");
            }
        } else if !self.allow_asns.is_empty() {
            return hit("network_not_allowed");
        }
        match (&self.countries, geo.country) {
            (CountryRule::Any, _) => Finding::Clear,
            (_, None) => match self.unknown_country {
                Treat::Allow => Finding::Clear,
                Treat::Block => hit("unknown_country"),
            },
            (CountryRule::Only(allowed), Some(country)) if !allowed.contains(&country) => hit("country_not_allowed"),
            (CountryRule::Except(denied), Some(country)) if denied.contains(&country) => hit("country_denied"),
            _ => Finding::Clear,
        }
    }

    fn default_status(&self) -> u16 {
        403
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::Subject;
    use crate::defense::testing::Harness;
    use crate::geoip::GeoInfo;

    fn from(country: Option<&str>, asn: Option<u32>, is_private: bool) -> Subject {
        let mut s = Harness::new().subject("198.51.100.1", None);
        s.facts.geo = GeoInfo { country: country.map(|c| c.parse().unwrap()), asn, is_private };
        s
    }

    fn jp_only() -> GeoFence {
        GeoFence {
            countries: CountryRule::Only(["JP".parse().unwrap()].into_iter().collect()),
            allow_asns: HashSet::new(),
            deny_asns: [14061].into_iter().collect(),
            unknown_country: Treat::Block,
            private_addresses: Treat::Allow,
        }
    }

    #[test]
    fn an_allow_list_passes_its_countries_and_refuses_the_rest() {
        let (h, fence) = (Harness::new(), jp_only());
        let check = |s: &Subject| h.check(&fence, s);
        assert_eq!(check(&from(Some("JP"), None, false)), Finding::Clear);
        assert!(matches!(check(&from(Some("CN"), None, false)), Finding::Hit { reason: "country_not_allowed", .. }));
        assert!(matches!(check(&from(None, None, false)), Finding::Hit { reason: "unknown_country", .. }));
        assert_eq!(check(&from(None, None, true)), Finding::Clear);
        assert!(matches!(check(&from(Some("JP"), Some(14061), false)), Finding::Hit { reason: "denied_network", .. }));
    }

    #[test]
    fn a_deny_list_refuses_only_its_countries() {
        let fence =
            GeoFence { countries: CountryRule::Except(["KP".parse().unwrap()].into_iter().collect()), ..jp_only() };
        let h = Harness::new();
        assert_eq!(h.check(&fence, &from(Some("US"), None, false)), Finding::Clear);
        assert!(matches!(h.check(&fence, &from(Some("KP"), None, false)), Finding::Hit { .. }));
    }
}
