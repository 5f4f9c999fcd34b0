//! Country and network rules: an allow-list ("JP only during an incident", as 7pay did on day 3) or a deny-list of
//! countries, and allow/deny lists of autonomous systems (hosting networks are where proxies live).
//! The address is located once per request by the engine; this only reads `subject.geo`.

use std::collections::HashSet;

use super::{Credentials, Defense, Finding, Subject};
use crate::geoip::CountryCode;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountryRule {
    Any,
    Only(HashSet<CountryCode>),
    Except(HashSet<CountryCode>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    fn needs_credentials(&self) -> bool {
        false
    }

    fn check(&self, subject: &Subject, _credentials: &Credentials<'_>, _now: u64) -> Finding {
        let geo = &subject.geo;
        let hit = |reason| Finding::Hit {
            reason,
            retry_after: None,
        };
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
    use crate::geoip::GeoInfo;
    use std::net::IpAddr;

    fn from(country: Option<&str>, asn: Option<u32>, is_private: bool) -> Subject {
        let mut s = Subject::new("198.51.100.1".parse::<IpAddr>().unwrap(), 64);
        s.geo = GeoInfo {
            country: country.map(|c| c.parse().unwrap()),
            asn,
            is_private,
        };
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
        let fence = jp_only();
        let check = |s: &Subject| fence.check(s, &Credentials::default(), 0);
        assert_eq!(check(&from(Some("JP"), None, false)), Finding::Clear);
        assert!(matches!(check(&from(Some("CN"), None, false)), Finding::Hit { reason: "country_not_allowed", .. }));
        assert!(matches!(check(&from(None, None, false)), Finding::Hit { reason: "unknown_country", .. }));
        assert_eq!(check(&from(None, None, true)), Finding::Clear);
        assert!(matches!(check(&from(Some("JP"), Some(14061), false)), Finding::Hit { reason: "denied_network", .. }));
    }

    #[test]
    fn a_deny_list_refuses_only_its_countries() {
        let fence = GeoFence {
            countries: CountryRule::Except(["KP".parse().unwrap()].into_iter().collect()),
            ..jp_only()
        };
        assert_eq!(fence.check(&from(Some("US"), None, false), &Credentials::default(), 0), Finding::Clear);
        assert!(matches!(
            fence.check(&from(Some("KP"), None, false), &Credentials::default(), 0),
            Finding::Hit { .. }
        ));
    }
}
