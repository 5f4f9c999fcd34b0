//! The decision engine: the same calls decide for the live proxy and for the offline replay, so a what-if run
//! judges exactly the code that will serve.

use std::net::IpAddr;

use crate::config::{CompileEnv, Route, RouteKind};
use crate::defense::pipeline::{self, Phase};
use crate::defense::{normalise_account, AccountHasher, Credentials, Decision, Outcome, Subject};

/// Start deciding on a request to `route` from `ip`: runs the defenses that need no body. The returned decision
/// has a verdict when an enforced block already ended it.
pub fn check_address(route: &Route, env: &CompileEnv, ip: IpAddr, now: u64) -> (Subject, Decision) {
    let mut subject = Subject::new(ip, route.ipv6_prefix);
    if let Some(geo) = &env.geo {
        subject.geo = geo.load().lookup(ip);
    }
    let mut decision = Decision::default();
    pipeline::run(&route.slots, Phase::BeforeBody, &subject, &Credentials::default(), now, &mut decision);
    (subject, decision)
}

/// Continue with what the body carried: hashes the account into the subject and runs the remaining defenses.
pub fn check_credentials(
    route: &Route,
    hasher: &AccountHasher,
    subject: &mut Subject,
    account: Option<&str>,
    password: Option<&[u8]>,
    now: u64,
    decision: &mut Decision,
) {
    let account = account.map(normalise_account);
    subject.account = account.as_deref().map(|a| hasher.key(a));
    subject.password_key = password.map(|p| hasher.password_key(p));
    let credentials = Credentials {
        account: account.as_deref(),
        password,
    };
    pipeline::run(&route.slots, Phase::AfterBody, subject, &credentials, now, decision);
}

/// Feed the upstream's answer back into the route's defenses.
pub fn observe(route: &Route, env: &CompileEnv, subject: &Subject, status: u16, now: u64) -> Outcome {
    let outcome = route.outcome_of(status);
    for slot in &route.slots {
        slot.defense.observe(subject, outcome, now);
    }
    if let (Outcome::Success, RouteKind::Login, Some(account)) = (outcome, route.kind, subject.account) {
        env.known_sources.record_success(account, subject.ip_key, now);
    }
    outcome
}
