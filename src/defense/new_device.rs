//! New-device step-up: a risky login from a device the account has not used is challenged before it is forwarded.
//!
//! "Risky" is what the defenses before this one found on the same request (`when`: a breached password, a leaked
//! pair, an address or account under suspicion, impossible travel). A device the account logged in from before
//! (a valid device token in the account's known set, not shared) is never challenged. The decision is made before
//! the upstream is asked, so it never depends on whether the password was right: a challenge confirms nothing.
//!
//! After an upstream success the device becomes known for the account and the client gets a device token
//! (`Set-Cookie` for browsers, `X-Stuffgate-Device-Token` for API clients); each success renews it (sliding). A
//! token seen from more networks in a day than `[challenge] shared_after_networks` is treated as shared, not
//! known. A passed challenge is forwarded with `X-Stuffgate-Signals: new_device` so the app can ask for a second
//! factor.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::registry::{self, error, BuildContext, BuildError, DefaultAction, DefenseSpec};
use super::{Defense, Effects, FactNeeds, Fields, Finding, Needs, Outcome, Phase, Reason};
use crate::attempt::{print32, Attempt, Subject};
use crate::challenge::facts::{with_tells, DEVICE_TOKEN_HEADER};
use crate::challenge::token::DeviceClaims;
use crate::challenge::{
    ChallengeConfig, DeviceToken, DEFAULT_BITS, DEVICE_NETWORKS_CELL, KNOWN_DEVICES_CELL, MAX_BITS,
};
use crate::clock::Clock;
use crate::keys::KeyHasher;
use crate::store::{DistinctRule, KeyKind, Reply, Write};
use crate::vocabulary::RouteKind;

pub const SPEC: DefenseSpec = DefenseSpec { name: "new_device", findings: &[], build, default_action: challenge };

/// Challenge unless the policy says otherwise.
fn challenge(_: RouteKind) -> DefaultAction {
    DefaultAction::Challenge
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Findings earlier on the same request that make a login risky.
    when: Vec<String>,
    /// Difficulty for one risky finding (default 16).
    bits: Option<u8>,
    /// Each further risky finding adds a bit, up to this (default bits + 2).
    max_bits: Option<u8>,
    /// While the site-wide attack mode is on, challenge *every* login from an unknown device, at least this hard
    /// (one more bit at the `high` level). Unset: the attack mode changes nothing here.
    attack_bits: Option<u8>,
}

pub struct NewDevice {
    when: Vec<&'static str>,
    bits: u8,
    max_bits: u8,
    attack_bits: Option<u8>,
    config: Arc<ChallengeConfig>,
    keys: KeyHasher,
    clock: Clock,
}

fn build(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    if cx.route_kind != RouteKind::Login {
        return Err(error("type", "`new_device` guards login routes (`kind = \"login\"`)"));
    }
    let findings = || registry::finding_names().collect::<Vec<_>>().join(", ");
    if p.when.is_empty() {
        return Err(error("when", format!("name at least one finding, from: {}", findings())));
    }
    let mut when = Vec::with_capacity(p.when.len());
    for name in &p.when {
        match registry::finding_names().find(|known| known == name) {
            Some(known) => when.push(known),
            None => {
                let hint = crate::spelling::did_you_mean(name, registry::finding_names());
                return Err(error("when", format!("`{name}` is not a finding; the findings are {}{hint}", findings())));
            }
        }
    }
    let bits = p.bits.unwrap_or(DEFAULT_BITS);
    if !(1..=MAX_BITS).contains(&bits) {
        return Err(error(
            "bits",
            format!("must be between 1 and {MAX_BITS} (16 takes well under a second in a browser)"),
        ));
    }
    let max_bits = p.max_bits.unwrap_or(bits.saturating_add(2).min(MAX_BITS));
    if !(bits..=MAX_BITS).contains(&max_bits) {
        return Err(error("max_bits", format!("must be between `bits` ({bits}) and {MAX_BITS}")));
    }
    if let Some(attack_bits) = p.attack_bits {
        if !(1..=MAX_BITS).contains(&attack_bits) {
            return Err(error("attack_bits", format!("must be between 1 and {MAX_BITS}")));
        }
    }
    Ok(Arc::new(NewDevice {
        when,
        bits,
        max_bits,
        attack_bits: p.attack_bits,
        config: cx.env.challenge.clone(),
        keys: cx.env.keys.clone(),
        clock: cx.env.clock.clone(),
    }))
}

impl NewDevice {
    fn risky<'a>(&'a self, earlier: &'a [Reason]) -> impl Iterator<Item = &'a Reason> + 'a {
        earlier.iter().filter(|r| r.action != "trusted" && self.when.contains(&r.defense))
    }

    /// The rule that calls a device token shared: more than `shared_after` networks in a day.
    fn shared_rule(&self) -> DistinctRule {
        const DAY: u64 = 86_400_000_000_000;
        DistinctRule {
            threshold: self.config.shared_after.saturating_add(1),
            suspect: None,
            window: DAY,
            penalty: DAY,
            max_penalty: 7 * DAY,
            memory: 7 * DAY,
            cap: 32,
        }
    }
}

/// The network an address belongs to (IPv4 /24, IPv6 /48), keyed: a device moving between home, office and phone
/// stays under the limit, one token replayed from a proxy pool does not.
fn network_print(keys: &KeyHasher, subject: &Subject) -> u32 {
    let mut bytes = [0u8; 17];
    match subject.ip {
        std::net::IpAddr::V4(v4) => bytes[..3].copy_from_slice(&v4.octets()[..3]),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => bytes[..3].copy_from_slice(&v4.octets()[..3]),
            None => {
                bytes[16] = 6;
                bytes[..6].copy_from_slice(&v6.octets()[..6]);
            }
        },
    }
    print32(keys.id(KeyKind::Address, &bytes))
}

impl Defense for NewDevice {
    fn name(&self) -> &'static str {
        "new_device"
    }

    fn depends_on(&self) -> &[&'static str] {
        &self.when
    }

    fn needs(&self) -> Needs {
        Needs {
            phase: Some(Phase::Credentials),
            fields: Fields { account: true, ..Fields::default() },
            facts: FactNeeds { device: true, solution: true, ..FactNeeds::default() },
            session_header: None,
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, replies: &[Reply], now: u64) -> Finding {
        self.decide_after(attempt, replies, now, &[])
    }

    fn decide_after(&self, attempt: &Attempt<'_>, _replies: &[Reply], _now: u64, earlier: &[Reason]) -> Finding {
        let device = &attempt.subject.facts.device;
        if attempt.subject.account.is_none() || device.trusted() {
            return Finding::Clear;
        }
        if self.risky(earlier).next().is_none() {
            if self.attack_bits.is_some() && attempt.subject.facts.attack.on() {
                return Finding::Hit { reason: "attack_mode", retry_after: None };
            }
            return Finding::Clear;
        }
        let reason = if device.known { "shared_device" } else { "new_device" };
        Finding::Hit { reason, retry_after: None }
    }

    /// The base difficulty, a bit more per further risky finding up to `max_bits`, then the automation tells.
    fn challenge_bits(&self, attempt: &Attempt<'_>, earlier: &[Reason]) -> u8 {
        let extra = self.risky(earlier).count().saturating_sub(1).min(usize::from(MAX_BITS)) as u8;
        let mut bits = self.bits.saturating_add(extra).min(self.max_bits);
        if let (Some(attack_bits), true) = (self.attack_bits, attempt.subject.facts.attack.on()) {
            let high = u8::from(attempt.subject.facts.attack == crate::attack::AttackLevel::High);
            bits = bits.max(attack_bits.saturating_add(high).min(MAX_BITS));
        }
        with_tells(bits, attempt.subject.facts.device.tells)
    }

    fn record(&self, subject: &Subject, outcome: Outcome, out: &mut Vec<Write>) {
        let device = &subject.facts.device;
        let key = device.key(&self.keys);
        if device.token == DeviceToken::Valid {
            let member = network_print(&self.keys, subject);
            out.push(Write::Distinct {
                key,
                cell: DEVICE_NETWORKS_CELL,
                member,
                failed: true,
                rule: self.shared_rule(),
            });
        }
        if let (Outcome::Success, Some(account)) = (outcome, subject.account) {
            out.push(Write::Remember {
                key: account,
                cell: KNOWN_DEVICES_CELL,
                member: print32(key.id),
                cap: self.config.max_devices,
                keep: self.config.remember.as_nanos() as u64,
            });
        }
    }

    /// After a success: the device token, new or renewed (sliding), as a cookie and a header.
    fn on_answer(&self, subject: &Subject, outcome: Outcome, effects: &mut Effects) {
        if outcome != Outcome::Success || subject.account.is_none() {
            return;
        }
        let now = self.clock.now_nanos() / 1_000_000_000;
        let remember = self.config.remember.min(Duration::from_secs(400 * 86_400)).as_secs();
        let claims = DeviceClaims {
            issued: now as u32,
            expires: now.saturating_add(remember).min(u64::from(u32::MAX)) as u32,
            id: subject.facts.device.id,
        };
        let token = self.config.keys.issue_device(&claims);
        let secure = if subject.facts.device.secure { "; Secure" } else { "" };
        let cookie =
            format!("{}={token}; Path=/; Max-Age={remember}; HttpOnly; SameSite=Lax{secure}", self.config.cookie_name);
        effects.response.push(("set-cookie", cookie));
        effects.response.push((DEVICE_TOKEN_HEADER, token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::testing::Harness;
    use crate::defense::Mode;

    fn defense(h: &Harness) -> NewDevice {
        NewDevice {
            when: vec!["breached_password", "account_failures"],
            bits: 16,
            max_bits: 18,
            attack_bits: Some(18),
            config: Arc::new(ChallengeConfig::default()),
            keys: h.keys.clone(),
            clock: h.clock.clone(),
        }
    }

    fn finding(defense: &'static str) -> Reason {
        Reason { slot: 0, defense, reason: "x", action: "tag", mode: Mode::Enforce, header: None }
    }

    fn check(h: &Harness, d: &NewDevice, subject: &Subject, earlier: &[Reason]) -> Finding {
        let headers = http::HeaderMap::new();
        let attempt = Attempt { subject: *subject, credentials: Default::default(), headers: &headers };
        d.decide_after(&attempt, &[], h.clock.now_nanos(), earlier)
    }

    #[test]
    fn a_risky_login_from_an_unknown_device_is_challenged_and_a_known_device_never() {
        let h = Harness::new();
        let d = defense(&h);
        let mut s = h.subject("203.0.113.1", Some("victim"));
        assert_eq!(check(&h, &d, &s, &[]), Finding::Clear, "nothing risky: no challenge");
        assert_eq!(check(&h, &d, &s, &[finding("geo_velocity")]), Finding::Clear, "not in `when`");
        assert!(matches!(
            check(&h, &d, &s, &[finding("breached_password")]),
            Finding::Hit { reason: "new_device", .. }
        ));
        s.facts.device.known = true;
        assert_eq!(check(&h, &d, &s, &[finding("breached_password"), finding("account_failures")]), Finding::Clear);
        s.facts.device.shared = true;
        assert!(matches!(
            check(&h, &d, &s, &[finding("breached_password")]),
            Finding::Hit { reason: "shared_device", .. }
        ));
    }

    #[test]
    fn under_attack_every_unknown_device_is_challenged_harder_and_a_known_device_never() {
        use crate::attack::AttackLevel;
        let h = Harness::new();
        let d = defense(&h);
        let headers = http::HeaderMap::new();
        let mut s = h.subject("203.0.113.1", Some("victim"));
        s.facts.attack = AttackLevel::Elevated;
        assert_eq!(check(&h, &d, &s, &[]), Finding::Hit { reason: "attack_mode", retry_after: None });
        let bits = |s: &Subject| {
            d.challenge_bits(&Attempt { subject: *s, credentials: Default::default(), headers: &headers }, &[])
        };
        assert_eq!(bits(&s), 18);
        s.facts.attack = AttackLevel::High;
        assert_eq!(bits(&s), 19);
        s.facts.device.known = true;
        assert_eq!(check(&h, &d, &s, &[]), Finding::Clear, "known devices are never affected");
        let mut calm = NewDevice { attack_bits: None, ..defense(&h) };
        calm.when.clear();
        s.facts.device.known = false;
        assert_eq!(check(&h, &calm, &s, &[]), Finding::Clear, "without attack_bits the mode changes nothing");
    }

    #[test]
    fn difficulty_rises_with_risk_and_tells_and_is_capped() {
        let h = Harness::new();
        let d = defense(&h);
        let headers = http::HeaderMap::new();
        let mut s = h.subject("203.0.113.1", Some("victim"));
        let bits = |s: &Subject, earlier: &[Reason]| {
            d.challenge_bits(&Attempt { subject: *s, credentials: Default::default(), headers: &headers }, earlier)
        };
        let one = [finding("breached_password")];
        let three = [finding("breached_password"), finding("account_failures"), finding("account_failures")];
        assert_eq!(bits(&s, &one), 16);
        assert_eq!(bits(&s, &three[..2]), 17);
        assert_eq!(bits(&s, &three), 18);
        s.facts.device.tells = 3;
        assert_eq!(bits(&s, &one), 18, "two bits at most for tells");
    }

    #[test]
    fn a_device_becomes_known_only_after_a_success_and_gets_a_token() {
        let h = Harness::new();
        let d = defense(&h);
        let s = h.subject("203.0.113.1", Some("owner"));
        let mut writes = Vec::new();
        d.record(&s, Outcome::Failure, &mut writes);
        assert!(writes.is_empty(), "a failure teaches nothing");
        let mut effects = Effects::default();
        d.on_answer(&s, Outcome::Failure, &mut effects);
        assert!(effects.response.is_empty());
        d.record(&s, Outcome::Success, &mut writes);
        assert!(matches!(writes[..], [Write::Remember { cell: KNOWN_DEVICES_CELL, cap: 8, .. }]));
        d.on_answer(&s, Outcome::Success, &mut effects);
        let cookie = &effects.response[0].1;
        assert!(
            cookie.starts_with("sg_dev=") && cookie.contains("HttpOnly; SameSite=Lax") && !cookie.contains("Secure")
        );
        let token = &effects.response[1].1;
        let claims = d.config.keys.verify_device(token, h.clock.now_nanos()).unwrap();
        assert_eq!(claims.id, s.facts.device.id);
    }

    #[test]
    fn a_token_from_many_networks_in_a_day_is_shared() {
        let h = Harness::new();
        let d = defense(&h);
        let mut writes = Vec::new();
        for net in 0..=6 {
            let mut s = h.subject(&format!("198.51.{net}.7"), Some("owner"));
            s.facts.device.token = DeviceToken::Valid;
            s.facts.device.id = [5; 16];
            d.record(&s, Outcome::Other, &mut writes);
        }
        // Same /24: counts once.
        let mut s = h.subject("198.51.0.8", Some("owner"));
        s.facts.device = crate::challenge::DeviceFacts { token: DeviceToken::Valid, id: [5; 16], ..Default::default() };
        d.record(&s, Outcome::Other, &mut writes);
        let store = &h.store;
        let key = s.facts.device.key(&h.keys);
        let mut replies = crate::store::Replies::new();
        for (i, write) in writes.iter().enumerate() {
            crate::store::Store::write(store, std::slice::from_ref(write), h.clock.now_nanos());
            replies.clear();
            let read = [crate::store::Read::Penalty { key, cell: DEVICE_NETWORKS_CELL }];
            let _ = crate::store::Store::read(store, &read, h.clock.now_nanos(), &mut replies).now_or_never();
            let shared = matches!(replies[0], Reply::Penalty(p) if p > 0);
            assert_eq!(shared, i >= 6, "after {} networks", i + 1);
        }
    }
}
