//! The decision engine: the same calls decide for the live proxy and for the offline replay, so a what-if run
//! judges exactly the code that will serve.

use std::net::IpAddr;

use crate::config::{BadBody, CompileEnv, Route, RouteKind};
use crate::proxy::body::{self, BodyError};
use crate::defense::pipeline::{self, Phase};
use crate::defense::{normalise_account, AccountHasher, Credentials, Decision, Outcome, Subject};

/// Start deciding on a request to `route` from `ip`: runs the defenses that need no body. The returned decision
/// has a verdict when an enforced block already ended it.
///
/// `session` is the value of the route's session header (e.g. `Authorization`), for session-keyed limits.
pub fn check_address(
    route: &Route,
    env: &CompileEnv,
    ip: IpAddr,
    session: Option<&[u8]>,
    now: u64,
) -> (Subject, Decision) {
    let mut subject = Subject::new(ip, route.ipv6_prefix);
    if route.session_header.is_some() {
        subject.session_key = session.map(|value| env.session_hasher.hash_one(value));
    }
    if let Some(geo) = &env.geo {
        subject.geo = geo.load().lookup(ip);
    }
    let mut decision = Decision::default();
    pipeline::run(&route.slots, Phase::BeforeBody, &subject, &Credentials::default(), now, &mut decision);
    (subject, decision)
}

/// Continue with what the body carried: hashes the account into the subject and runs the remaining defenses.
#[allow(clippy::too_many_arguments)]
pub fn check_credentials(
    route: &Route,
    env: &CompileEnv,
    hasher: &AccountHasher,
    subject: &mut Subject,
    account: Option<&str>,
    password: Option<&[u8]>,
    target: Option<&str>,
    now: u64,
    decision: &mut Decision,
) {
    let account = account.map(normalise_account);
    subject.account = account.as_deref().map(|a| hasher.key(a));
    subject.password_key = password.map(|p| hasher.password_key(p));
    if route.checks_breach {
        if let (Some(filter), Some(password)) = (&env.breached_passwords, password) {
            subject.breach.password = filter.load().contains_password_any_case(password);
        }
        if let (Some(filter), Some(password), Some(account)) = (&env.leaked_pairs, password, account.as_deref()) {
            subject.breach.pair = filter.load().contains_pair(account, password);
        }
    }
    let credentials = Credentials {
        account: account.as_deref(),
        password,
        target,
    };
    pipeline::run(&route.slots, Phase::AfterBody, subject, &credentials, now, decision);
}

/// What became of a protected request's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyGate {
    /// Credentials were read and the account defenses ran (the decision may now hold a block).
    Checked,
    /// The body was unusable and the route forwards such requests unchecked.
    Forward,
    /// The body was unusable and the route refuses it: answer 400 with this message.
    Reject(&'static str),
    /// Larger than the route accepts: answer 413.
    TooLarge,
}

/// Read the credentials out of a body (already read, bounded) and run the account defenses on them.
#[allow(clippy::too_many_arguments)]
pub fn check_body(
    route: &Route,
    env: &CompileEnv,
    hasher: &AccountHasher,
    content_type: Option<&[u8]>,
    bytes: &[u8],
    subject: &mut Subject,
    now: u64,
    decision: &mut Decision,
) -> BodyGate {
    if bytes.len() > route.max_body_bytes {
        return BodyGate::TooLarge;
    }
    let extracted = body::body_type(content_type, bytes)
        .and_then(|kind| body::extract(kind, bytes, route.wanted_fields()));
    let problem = match &extracted {
        Ok(fields) if fields.account().is_some() || route.account_field.is_none() => None,
        Ok(_) => Some("The request has no account field."),
        Err(BodyError::UnsupportedType) => Some("The body must be JSON or a URL-encoded form."),
        Err(BodyError::Malformed(_)) => Some("The body could not be parsed."),
        Err(BodyError::Ambiguous("target")) => Some("The reset must name one address."),
        Err(BodyError::Ambiguous(_)) => Some("A credential field must be a single string."),
    };
    match (problem, route.on_bad_body, extracted) {
        (None, _, Ok(fields)) => {
            check_credentials(
                route,
                env,
                hasher,
                subject,
                fields.account(),
                fields.password().map(str::as_bytes),
                fields.target(),
                now,
                decision,
            );
            BodyGate::Checked
        }
        (_, BadBody::Forward, _) => BodyGate::Forward,
        (problem, BadBody::Reject, _) => BodyGate::Reject(problem.unwrap_or("The body could not be parsed.")),
    }
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
