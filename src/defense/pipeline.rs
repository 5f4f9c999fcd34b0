//! Runs a route's defenses in order and turns their findings into one decision, applying each slot's action and
//! mode. Defenses that need no credentials run before the body is read, so a flood from a blocked address costs
//! no body read and no parse.

use std::sync::Arc;
use std::time::Duration;

use super::{Credentials, Defense, Finding, Subject};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Decide, log and count, but forward anyway: how an operator starts in front of a live login API.
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Block { status: u16 },
    /// Forward with `X-Stuffgate-Signals` naming the defense, for the app to step up.
    Tag,
}

/// One configured defense of a route.
pub struct Slot {
    pub defense: Arc<dyn Defense>,
    pub mode: Mode,
    pub action: Action,
    /// The defense's parameters without mode and action: equal fingerprints on reload keep the defense's state.
    pub fingerprint: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block { status: u16, retry_after: Option<Duration> },
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Block { .. } => "block",
        }
    }
}

/// What one defense concluded, kept for the decision event.
#[derive(Clone, Debug, PartialEq)]
pub struct Reason {
    pub defense: &'static str,
    pub reason: &'static str,
    /// "block", "tag", or "trusted".
    pub action: &'static str,
    pub mode: Mode,
    /// The defense's own tag header and its value, for defenses that have one.
    pub header: Option<(&'static str, String)>,
}

/// The decision for one request, filled in as the phases run.
#[derive(Debug, Default)]
pub struct Decision {
    pub verdict: Option<Verdict>,
    pub decided_by: Option<&'static str>,
    pub reasons: Vec<Reason>,
    pub trusted: bool,
}

impl Decision {
    pub fn verdict(&self) -> Verdict {
        self.verdict.unwrap_or(Verdict::Allow)
    }

    /// The enforced `tag` findings, for the upstream headers.
    pub fn tags(&self) -> impl Iterator<Item = &Reason> + '_ {
        self.reasons
            .iter()
            .filter(|r| r.action == "tag" && r.mode == Mode::Enforce)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Defenses that need only the address.
    BeforeBody,
    /// Defenses that need the account or password.
    AfterBody,
}

/// Run the slots of one phase. Returns true when an enforced block ended the pipeline.
pub fn run(
    slots: &[Slot],
    phase: Phase,
    subject: &Subject,
    credentials: &Credentials<'_>,
    now: u64,
    decision: &mut Decision,
) -> bool {
    if decision.trusted || decision.verdict.is_some() {
        return decision.verdict.is_some();
    }
    for slot in slots {
        let wants_body = slot.defense.needs_credentials();
        if wants_body != (phase == Phase::AfterBody) {
            continue;
        }
        match slot.defense.check(subject, credentials, now) {
            Finding::Clear => {}
            Finding::Trusted => {
                decision.reasons.push(Reason {
                    defense: slot.defense.name(),
                    reason: "trusted_source",
                    action: "trusted",
                    mode: slot.mode,
                    header: None,
                });
                if slot.mode == Mode::Enforce {
                    decision.trusted = true;
                    return false;
                }
            }
            Finding::Hit {
                reason,
                retry_after,
            } => {
                let action = match slot.action {
                    Action::Block { .. } => "block",
                    Action::Tag => "tag",
                };
                let header = slot
                    .defense
                    .tag_header()
                    .and_then(|name| slot.defense.explain(subject, now).map(|value| (name, value)));
                decision.reasons.push(Reason {
                    defense: slot.defense.name(),
                    reason,
                    action,
                    mode: slot.mode,
                    header,
                });
                if let (Action::Block { status }, Mode::Enforce) = (slot.action, slot.mode) {
                    decision.verdict = Some(Verdict::Block {
                        status,
                        retry_after,
                    });
                    decision.decided_by = Some(slot.defense.name());
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::Outcome;
    use std::net::{IpAddr, Ipv4Addr};

    struct Always(Finding, bool);
    impl Defense for Always {
        fn name(&self) -> &'static str {
            "always"
        }
        fn needs_credentials(&self) -> bool {
            self.1
        }
        fn check(&self, _: &Subject, _: &Credentials<'_>, _: u64) -> Finding {
            self.0
        }
        fn observe(&self, _: &Subject, _: Outcome, _: u64) {}
    }

    fn slot(finding: Finding, needs_body: bool, mode: Mode, action: Action) -> Slot {
        Slot {
            defense: Arc::new(Always(finding, needs_body)),
            mode,
            action,
            fingerprint: String::new(),
        }
    }

    const HIT: Finding = Finding::Hit {
        reason: "over_limit",
        retry_after: None,
    };

    fn subject() -> Subject {
        Subject::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 64)
    }

    #[test]
    fn observe_mode_records_but_never_blocks() {
        let slots = [slot(HIT, false, Mode::Observe, Action::Block { status: 429 })];
        let mut decision = Decision::default();
        assert!(!run(&slots, Phase::BeforeBody, &subject(), &Credentials::default(), 0, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Allow);
        assert_eq!(decision.reasons.len(), 1);
        assert_eq!(decision.reasons[0].mode, Mode::Observe);
    }

    #[test]
    fn enforced_block_stops_and_later_defenses_do_not_run() {
        let slots = [
            slot(HIT, false, Mode::Enforce, Action::Tag),
            slot(HIT, false, Mode::Enforce, Action::Block { status: 403 }),
            slot(HIT, false, Mode::Enforce, Action::Block { status: 429 }),
        ];
        let mut decision = Decision::default();
        assert!(run(&slots, Phase::BeforeBody, &subject(), &Credentials::default(), 0, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Block { status: 403, retry_after: None });
        assert_eq!(decision.reasons.len(), 2);
        assert_eq!(decision.tags().map(|r| r.defense).collect::<Vec<_>>(), vec!["always"]);
    }

    #[test]
    fn phases_split_by_need_for_credentials_and_trust_skips_the_rest() {
        let slots = [
            slot(Finding::Trusted, false, Mode::Enforce, Action::Tag),
            slot(HIT, true, Mode::Enforce, Action::Block { status: 429 }),
        ];
        let mut decision = Decision::default();
        assert!(!run(&slots, Phase::BeforeBody, &subject(), &Credentials::default(), 0, &mut decision));
        assert!(decision.trusted);
        assert!(!run(&slots, Phase::AfterBody, &subject(), &Credentials::default(), 0, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Allow);
    }
}
