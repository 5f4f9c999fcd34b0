//! Request-rate limits per address, per account, per account and address, or per session (GCRA).
//!
//! The quota is governor's (`Quota`: a replenish interval and a burst); the bucket is one GCRA cell in the key's
//! record (see `store`), so the same limit can be kept in a store several gateways share. A cell whose theoretical
//! arrival time has passed is indistinguishable from none, and the store forgets it then.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::Quota;
use serde::Deserialize;

use super::registry::{self, block, error, BuildContext, BuildError, DefenseSpec, Span};
use super::{Defense, FactNeeds, Fields, Finding, Needs, Phase};
use crate::attempt::{Attempt, Subject};
use crate::store::{CellId, Read, Reads, Reply, StateKey};

pub const IP_RATE: DefenseSpec =
    DefenseSpec { name: "ip_rate", findings: &["ip_rate"], build: build_ip, default_action: block };
pub const ACCOUNT_RATE: DefenseSpec =
    DefenseSpec { name: "account_rate", findings: &["account_rate"], build: build_account, default_action: block };
pub const ACCOUNT_IP_RATE: DefenseSpec = DefenseSpec {
    name: "account_ip_rate",
    findings: &["account_ip_rate"],
    build: build_account_ip,
    default_action: block,
};
pub const SESSION_RATE: DefenseSpec =
    DefenseSpec { name: "session_rate", findings: &["session_rate"], build: build_session, default_action: block };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitParams {
    limit: u32,
    per: Span,
    burst: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountLimitParams {
    limit: u32,
    per: Span,
    burst: Option<u32>,
    /// Spare addresses that logged in to the account recently (the lockout-DoS guard, see `known_sources`).
    exempt_known_sources: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionLimitParams {
    limit: u32,
    per: Span,
    burst: Option<u32>,
    /// The header whose value identifies the session; default `authorization`.
    header: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateKey {
    Ip,
    Account,
    AccountIp,
    /// The route's session header (e.g. a bearer token): paces what one logged-in session does.
    Session,
}

pub struct RateLimit {
    key: RateKey,
    cell: CellId,
    /// GCRA emission interval and burst tolerance, in nanoseconds.
    interval: u64,
    tolerance: u64,
    exempt_known_sources: bool,
    session_header: Option<http::HeaderName>,
}

impl RateLimit {
    /// `limit` requests per `per`, with bursts of up to `burst`; `None` when the rate is finer than a nanosecond.
    pub fn new(key: RateKey, cell: CellId, limit: u32, per: Duration, burst: u32) -> Option<RateLimit> {
        let quota = Quota::with_period(per.checked_div(limit)?)?.allow_burst(NonZeroU32::new(burst)?);
        let interval = quota.replenish_interval().as_nanos() as u64;
        Some(RateLimit {
            key,
            cell,
            interval,
            tolerance: interval.saturating_mul(u64::from(quota.burst_size().get() - 1)),
            exempt_known_sources: false,
            session_header: None,
        })
    }

    fn key_of(&self, subject: &Subject) -> Option<StateKey> {
        match self.key {
            RateKey::Ip => Some(subject.address),
            RateKey::Account => subject.account,
            RateKey::AccountIp => subject.account_address,
            RateKey::Session => subject.session,
        }
    }
}

fn build(
    key: RateKey,
    limit: u32,
    per: Span,
    burst: Option<u32>,
    cx: &BuildContext<'_>,
) -> Result<RateLimit, BuildError> {
    let limit = registry::positive("limit", limit)?;
    let burst = match burst {
        Some(0) => return Err(error("burst", "must be greater than zero")),
        Some(b) => b,
        None => limit,
    };
    RateLimit::new(key, cx.cell, limit, per.0, burst)
        .ok_or_else(|| error("per", format!("{limit} per {:?} is too fine a rate", per.0)))
}

fn build_ip(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: LimitParams = registry::params(table)?;
    Ok(Arc::new(build(RateKey::Ip, p.limit, p.per, p.burst, cx)?))
}

fn build_account(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: AccountLimitParams = registry::params(table)?;
    let mut limit = build(RateKey::Account, p.limit, p.per, p.burst, cx)?;
    limit.exempt_known_sources = p.exempt_known_sources.unwrap_or(true);
    Ok(Arc::new(limit))
}

fn build_account_ip(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: LimitParams = registry::params(table)?;
    Ok(Arc::new(build(RateKey::AccountIp, p.limit, p.per, p.burst, cx)?))
}

fn build_session(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: SessionLimitParams = registry::params(table)?;
    let text = p.header.as_deref().unwrap_or("authorization");
    let name = http::HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes())
        .map_err(|_| error("header", format!("`{text}` is not a header name")))?;
    let mut limit = build(RateKey::Session, p.limit, p.per, p.burst, cx)?;
    limit.session_header = Some(name);
    Ok(Arc::new(limit))
}

impl Defense for RateLimit {
    fn name(&self) -> &'static str {
        match self.key {
            RateKey::Ip => "ip_rate",
            RateKey::Account => "account_rate",
            RateKey::AccountIp => "account_ip_rate",
            RateKey::Session => "session_rate",
        }
    }

    fn needs(&self) -> Needs {
        let by_account = matches!(self.key, RateKey::Account | RateKey::AccountIp);
        Needs {
            phase: Some(if by_account { Phase::Credentials } else { Phase::Address }),
            fields: Fields { account: by_account, ..Fields::default() },
            facts: FactNeeds { known_source: self.exempt_known_sources, ..FactNeeds::default() },
            session_header: self.session_header.clone(),
        }
    }

    fn address_level(&self) -> bool {
        self.key == RateKey::Ip
    }

    fn reads(&self, attempt: &Attempt<'_>, out: &mut Reads) {
        if let Some(key) = self.key_of(&attempt.subject) {
            out.push(Read::Gcra { key, cell: self.cell, interval: self.interval, tolerance: self.tolerance });
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, replies: &[Reply], _now: u64) -> Finding {
        match replies.first() {
            Some(Reply::Wait(wait)) => {
                if self.exempt_known_sources && attempt.subject.facts.known_source {
                    return Finding::Clear;
                }
                // Exact: the answer rounds it up to whole seconds, and the listener refuses the address's new
                // connections for exactly this long (`crate::decisions::AddressBlocks`).
                Finding::Hit { reason: "rate_exceeded", retry_after: Some(Duration::from_nanos(*wait)) }
            }
            _ => Finding::Clear,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::testing::Harness;

    #[test]
    fn ip_limit_blocks_after_burst_and_recovers_with_time() {
        let h = Harness::new();
        let limit = RateLimit::new(RateKey::Ip, 9, 5, Duration::from_secs(60), 5).unwrap();
        for _ in 0..5 {
            assert_eq!(h.check(&limit, &h.subject("198.51.100.1", None)), Finding::Clear);
        }
        let Finding::Hit { retry_after, .. } = h.check(&limit, &h.subject("198.51.100.1", None)) else {
            panic!("sixth request in a minute must be over the limit");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(12)));
        assert_eq!(h.check(&limit, &h.subject("198.51.100.2", None)), Finding::Clear, "another address");
        h.clock.advance(Duration::from_secs(12));
        assert_eq!(h.check(&limit, &h.subject("198.51.100.1", None)), Finding::Clear);
    }

    #[test]
    fn account_limit_spares_a_source_that_logged_in_before() {
        let h = Harness::new();
        let mut limit = RateLimit::new(RateKey::Account, 9, 1, Duration::from_secs(60), 1).unwrap();
        limit.exempt_known_sources = true;
        let mut owner = h.subject("198.51.100.1", Some("alice"));
        owner.facts.known_source = true;
        let attacker = h.subject("198.51.100.9", Some("alice"));
        assert_eq!(h.check(&limit, &attacker), Finding::Clear);
        assert!(matches!(h.check(&limit, &attacker), Finding::Hit { .. }));
        assert_eq!(h.check(&limit, &owner), Finding::Clear);
    }

    #[test]
    fn idle_buckets_are_forgotten() {
        let h = Harness::new();
        let limit = RateLimit::new(RateKey::Ip, 9, 10, Duration::from_secs(10), 10).unwrap();
        for i in 0..200u8 {
            h.check(&limit, &h.subject(&format!("10.0.0.{i}"), None));
        }
        assert_eq!(h.records(), 200);
        h.clock.advance(Duration::from_secs(2));
        h.prune();
        assert_eq!(h.records(), 0);
    }
}
