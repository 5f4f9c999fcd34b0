//! The defenses, each one module behind the small [`Defense`] trait, registered in [`registry`], and the pipeline
//! that runs a route's list.
//!
//! A defense only *finds* things (a key over its limit, an address on a deny list). What is done about a finding —
//! block with a status, challenge, tag the request for the app, or merely log it in observe mode — is the route's
//! policy, applied by [`pipeline`], so every defense gets `enforce`/`observe` and every action for free.
//!
//! A defense declares what it [`Needs`] (its phase, body fields, a header, facts); the engine gathers exactly that
//! before asking it. It names the state it reads ([`Defense::reads`]), decides on the replies without touching the
//! store ([`Defense::decide`]: pure and synchronous, the same offline), and names what the upstream's answer changes
//! ([`Defense::record`]).

pub mod breach;
pub mod distinct;
pub mod email_domain;
pub mod failures;
pub mod fingerprint_accounts;
pub mod geo;
pub mod geo_velocity;
pub mod ip_list;
pub mod known_sources;
pub mod new_device;
pub mod pipeline;
pub mod rate;
pub mod registry;
pub mod reset_target;
#[cfg(test)]
pub(crate) mod testing;
pub mod user_agent;

use std::time::Duration;

use crate::attempt::{Attempt, Subject};
use crate::store::{Reads, Reply, Write};

pub use pipeline::{Action, Decision, Mode, Reason, Slot, Verdict};

/// When a defense can decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// From the address (and headers) alone, before the body is read: a blocked flood costs no body read.
    Address,
    /// Once the body's credentials and the facts about them are known.
    Credentials,
}

/// Body fields a defense reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub account: bool,
    pub password: bool,
    pub target: bool,
}

/// Facts a defense reads (computed once per request for all defenses that want them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactNeeds {
    pub geo: bool,
    pub breached_password: bool,
    pub leaked_pair: bool,
    pub known_source: bool,
    /// The device token and whether the device is known for the account (`challenge::facts`).
    pub device: bool,
    /// A challenge solution (`X-Stuffgate-Solution`, or the challenge page's re-submit).
    pub solution: bool,
}

impl FactNeeds {
    pub fn union(self, other: FactNeeds) -> FactNeeds {
        FactNeeds {
            geo: self.geo || other.geo,
            breached_password: self.breached_password || other.breached_password,
            leaked_pair: self.leaked_pair || other.leaked_pair,
            known_source: self.known_source || other.known_source,
            device: self.device || other.device,
            solution: self.solution || other.solution,
        }
    }
}

/// What a defense needs before it can decide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub phase: Option<Phase>,
    pub fields: Fields,
    pub facts: FactNeeds,
    /// A request header whose value is keyed (e.g. `authorization` for session limits).
    pub session_header: Option<http::HeaderName>,
}

impl Needs {
    pub fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::Address)
    }
}

/// What a defense found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Finding {
    /// Nothing to report.
    Clear,
    /// The request is over a limit or matches a bad list; `reason` is a short constant for logs.
    Hit { reason: &'static str, retry_after: Option<Duration> },
    /// The source is explicitly trusted: skip the route's remaining defenses.
    Trusted,
}

impl Finding {
    /// A key under a penalty with `remaining` nanoseconds to go: a hit that tells the client when to come back, or
    /// nothing once the penalty is over.
    pub fn penalty(reason: &'static str, remaining: u64) -> Finding {
        if remaining == 0 {
            return Finding::Clear;
        }
        // Exact: the answer rounds it up to whole seconds, and the listener refuses an address-level penalty's new
        // connections for exactly this long.
        Finding::Hit { reason, retry_after: Some(Duration::from_nanos(remaining)) }
    }

    /// The finding of a penalty-keeping defense from its one reply: the key's standing penalty, unless the
    /// defense spares sources the account logged in from recently and this is one (a typo-prone owner behind a
    /// carrier NAT is not locked out by the strangers sharing the address).
    pub(crate) fn standing_penalty(
        reason: &'static str,
        replies: &[Reply],
        spare_known_source: bool,
        attempt: &Attempt<'_>,
    ) -> Finding {
        let Some(&Reply::Penalty(remaining)) = replies.first() else {
            return Finding::Clear;
        };
        if remaining > 0 && spare_known_source && attempt.subject.facts.known_source {
            return Finding::Clear;
        }
        Finding::penalty(reason, remaining)
    }
}

/// How the upstream answered a protected request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Other,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Other => "other",
        }
    }
}

/// Headers a decision adds: to the request the app receives, and to the response the client receives (e.g. a
/// `Set-Cookie`). Names are lower case.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    pub upstream: Vec<(&'static str, String)>,
    pub response: Vec<(&'static str, String)>,
}

/// Words for a client: a short machine-readable error and a sentence a person can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub error: &'static str,
    pub text: &'static str,
}

pub trait Defense: Send + Sync {
    /// The defense's kind, a low-cardinality label for logs and metrics.
    fn name(&self) -> &'static str;
    fn needs(&self) -> Needs;
    /// The state the decision reads, appended to the phase's batch (one round trip per phase for a remote store).
    fn reads(&self, _attempt: &Attempt<'_>, _out: &mut Reads) {}
    /// Decide on the replies to this defense's own reads, in order. Pure: no store access, no clock but `now`.
    fn decide(&self, attempt: &Attempt<'_>, replies: &[Reply], now: u64) -> Finding;
    /// The findings of other defenses this one acts on (`new_device`'s `when`): the policy compiler checks that each
    /// comes from a defense earlier on the same route, since a later or missing one could never fire it.
    fn depends_on(&self) -> &[&'static str] {
        &[]
    }
    /// Decide knowing what the defenses before it on this request found (`new_device` fires on risky findings).
    /// Most defenses ignore them.
    fn decide_after(&self, attempt: &Attempt<'_>, replies: &[Reply], now: u64, _earlier: &[Reason]) -> Finding {
        self.decide(attempt, replies, now)
    }
    /// The difficulty this defense's `challenge` action asks for; a solution worth at least this passes it.
    fn challenge_bits(&self, attempt: &Attempt<'_>, _earlier: &[Reason]) -> u8 {
        crate::challenge::facts::with_tells(crate::challenge::DEFAULT_BITS, attempt.subject.facts.device.tells)
    }
    /// The writes the upstream's answer calls for.
    fn record(&self, _subject: &Subject, _outcome: Outcome, _out: &mut Vec<Write>) {}
    /// Headers for the client's response once the upstream answered (e.g. a device cookie).
    fn on_answer(&self, _subject: &Subject, _outcome: Outcome, _effects: &mut Effects) {}
    /// The header that carries this defense's `tag` to the app, when it has one of its own (besides
    /// `X-Stuffgate-Signals`), e.g. `x-stuffgate-geo-velocity`.
    fn tag_header(&self) -> Option<&'static str> {
        None
    }
    /// A short explanation of a hit for the tag header and the log (called only on hits), e.g. "JP->BR".
    fn explain(&self, _attempt: &Attempt<'_>, _replies: &[Reply]) -> Option<String> {
        None
    }
    /// Whether a finding depends on the client address alone (no header, body or account): an enforced block from
    /// it then holds for every request the address sends while it lasts, so the listener may refuse the address's
    /// new connections until then (`[connections] refuse_blocked_at_accept`, see `crate::decisions`).
    fn address_level(&self) -> bool {
        false
    }
    /// The networks this defense refuses whatever the request carries (an `ip_list`'s deny list).
    fn denied_networks(&self) -> Option<&crate::ip_ranges::IpRanges> {
        None
    }
    /// The status a `block` answers with when the policy names none.
    fn default_status(&self) -> u16 {
        429
    }
    /// This defense's own words for a block (otherwise the status's generic wording).
    fn message(&self) -> Option<Message> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn outcomes_index_the_metric_labels() {
        for outcome in [Outcome::Success, Outcome::Failure, Outcome::Other] {
            assert_eq!(crate::telemetry::metrics::OUTCOME_LABELS[outcome as usize], outcome.as_str());
        }
    }
}
