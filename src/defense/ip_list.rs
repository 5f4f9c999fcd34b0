//! CIDR allow- and deny-lists. An allowed source skips the route's remaining defenses (an office, a partner's
//! servers, a monitoring probe); a denied one is refused. Lists compile to sorted, merged ranges and are searched
//! in O(log n), so thousands of entries cost what ten do.

use std::net::IpAddr;

use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

use super::registry::{self, block, error, BuildContext, BuildError, DefenseSpec};
use super::{Defense, Finding, Needs, Phase};
use crate::attempt::Attempt;
use crate::store::Reply;

pub const SPEC: DefenseSpec = DefenseSpec { name: "ip_list", build, default_action: block };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Addresses or CIDR blocks, each checked with its text in the error.
pub fn parse_nets(key: &str, list: &[String]) -> Result<Vec<IpNet>, BuildError> {
    list.iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| error(key, format!("`{text}` is not an address or CIDR block")))
        })
        .collect()
}

fn build(table: &toml::Table, _cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    let (allow, deny) = (parse_nets("allow", &p.allow)?, parse_nets("deny", &p.deny)?);
    if allow.is_empty() && deny.is_empty() {
        return Err(error("allow", "`ip_list` needs a non-empty `allow` or `deny`"));
    }
    Ok(Arc::new(IpList::new(&allow, &deny)))
}

/// Sorted, non-overlapping inclusive ranges over one 128-bit space (IPv4 mapped into ::ffff:0:0/96).
#[derive(Debug, Default, Clone)]
pub struct IpRanges {
    ranges: Vec<(u128, u128)>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl IpRanges {
    pub fn new(nets: &[IpNet]) -> IpRanges {
        IpRanges::from_spans(nets.iter().map(|net| (to_u128(net.network()), to_u128(net.broadcast()))).collect())
    }

    /// The ranges as inclusive spans of the 128-bit space, sorted and merged.
    pub fn spans(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    /// Ranges from inclusive spans (as [`IpRanges::spans`] gives them), in any order, overlapping or not.
    pub fn from_spans(mut ranges: Vec<(u128, u128)>) -> IpRanges {
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        IpRanges { ranges: merged }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let point = to_u128(ip);
        let after = self.ranges.partition_point(|&(start, _)| start <= point);
        after > 0 && self.ranges[after - 1].1 >= point
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

pub struct IpList {
    allow: IpRanges,
    deny: IpRanges,
}

impl IpList {
    pub fn new(allow: &[IpNet], deny: &[IpNet]) -> IpList {
        IpList { allow: IpRanges::new(allow), deny: IpRanges::new(deny) }
    }
}

impl Defense for IpList {
    fn name(&self) -> &'static str {
        "ip_list"
    }

    fn needs(&self) -> Needs {
        Needs { phase: Some(Phase::Address), ..Needs::default() }
    }

    /// Deny wins over allow, so a narrow deny inside a broad allow still refuses.
    fn decide(&self, attempt: &Attempt<'_>, _replies: &[Reply], _now: u64) -> Finding {
        let ip = attempt.subject.ip;
        if self.deny.contains(ip) {
            Finding::Hit { reason: "denied_network", retry_after: None }
        } else if self.allow.contains(ip) {
            Finding::Trusted
        } else {
            Finding::Clear
        }
    }

    fn default_status(&self) -> u16 {
        403
    }

    fn address_level(&self) -> bool {
        true
    }

    fn denied_networks(&self) -> Option<&IpRanges> {
        (!self.deny.is_empty()).then_some(&self.deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn ranges_match_v4_v6_and_mapped_addresses() {
        let ranges = IpRanges::new(&nets(&["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "2001:db8::/32"]));
        assert!(ranges.contains("10.200.3.4".parse().unwrap()));
        assert!(ranges.contains("192.0.2.255".parse().unwrap()));
        assert!(!ranges.contains("192.0.3.0".parse().unwrap()));
        assert!(!ranges.contains("9.255.255.255".parse().unwrap()));
        assert!(ranges.contains("2001:db8::1".parse().unwrap()));
        assert!(ranges.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!ranges.contains("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn deny_beats_allow_and_allow_trusts() {
        let list = IpList::new(&nets(&["198.51.100.0/24"]), &nets(&["198.51.100.66/32"]));
        let h = crate::defense::testing::Harness::new();
        let check = |ip: &str| h.check(&list, &h.subject(ip, None));
        assert_eq!(check("198.51.100.1"), Finding::Trusted);
        assert!(matches!(check("198.51.100.66"), Finding::Hit { .. }));
        assert_eq!(check("203.0.113.1"), Finding::Clear);
    }
}
