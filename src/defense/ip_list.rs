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

pub const SPEC: DefenseSpec = DefenseSpec { name: "ip_list", findings: &["ip_list"], build, default_action: block };

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

use crate::ip_ranges::IpRanges;

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
    fn deny_beats_allow_and_allow_trusts() {
        let list = IpList::new(&nets(&["198.51.100.0/24"]), &nets(&["198.51.100.66/32"]));
        let h = crate::defense::testing::Harness::new();
        let check = |ip: &str| h.check(&list, &h.subject(ip, None));
        assert_eq!(check("198.51.100.1"), Finding::Trusted);
        assert!(matches!(check("198.51.100.66"), Finding::Hit { .. }));
        assert_eq!(check("203.0.113.1"), Finding::Clear);
    }
}
