//! Runs a route's defenses phase by phase and turns their findings into one decision, applying each slot's action
//! and mode. A phase first *gathers* every read its defenses name (one batch, one store round trip), then *judges*:
//! each defense decides on its own replies, in the policy's order, until an enforced block or challenge ends it.

use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use super::{Defense, Finding, Phase};
use crate::attempt::Attempt;
use crate::body::BodyProblem;
use crate::challenge::Solution;
use crate::store::{Reads, Replies, Reply};

pub use crate::vocabulary::Mode;

/// What an enforced finding does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Block {
        status: u16,
    },
    /// Answer with a challenge the client must pass before the request is forwarded.
    Challenge,
    /// Forward with `X-Stuffgate-Signals` naming the defense, for the app to step up.
    Tag,
    /// Answer 403 `password_reset_required` with the route's reset link: the credential is known to attackers, so
    /// no answer about it (not even a challenge to pay for) is given until the owner resets it.
    ResetRequired,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block { .. } => "block",
            Action::Challenge => "challenge",
            Action::Tag => "tag",
            Action::ResetRequired => "reset_required",
        }
    }
}

/// One configured defense of a route.
pub struct Slot {
    pub defense: Arc<dyn Defense>,
    pub mode: Mode,
    pub action: Action,
    /// The action instead while the site-wide attack mode is on, for logins from devices the account has not used
    /// (`under_attack` in the policy); known devices keep `action`.
    pub under_attack: Option<Action>,
    pub phase: Phase,
    /// The defense's type and parameters without mode and action: equal fingerprints on reload keep the defense.
    pub fingerprint: String,
    /// Its findings counters, resolved at compile time (`None` in unit tests that build slots by hand).
    pub metrics: Option<crate::telemetry::metrics::SlotMetrics>,
}

/// What the gateway does with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Forwarded, with enforced tags for the app.
    Tag,
    Challenge,
    Block {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The request itself was unusable (body too large, unparsable, ambiguous): answered 400/413.
    Invalid(BodyProblem),
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Tag => "tag",
            Verdict::Challenge => "challenge",
            Verdict::Block { .. } => "block",
            Verdict::Invalid(problem) => problem.label(),
        }
    }

    /// Whether the request goes on to the upstream.
    pub fn forwards(&self) -> bool {
        matches!(self, Verdict::Allow | Verdict::Tag)
    }
}

/// What one defense concluded, kept for the decision event.
#[derive(Clone, Debug, PartialEq)]
pub struct Reason {
    /// The slot (index in the route) that found it.
    pub slot: usize,
    pub defense: &'static str,
    pub reason: &'static str,
    /// "block", "challenge", "tag", or "trusted".
    pub action: &'static str,
    pub mode: Mode,
    /// The defense's own tag header and its value, for defenses that have one.
    pub header: Option<(&'static str, String)>,
}

/// The decision for one request, filled in as the phases run.
#[derive(Debug, Default)]
pub struct Decision {
    /// Set when the request is answered by the gateway (block, challenge, invalid).
    pub answered: Option<Verdict>,
    /// The slot (index in the route) whose finding decided the answer.
    pub decided_by: Option<usize>,
    pub reasons: Vec<Reason>,
    pub trusted: bool,
    /// The difficulty of the challenge to answer with (set with `Verdict::Challenge`).
    pub challenge_bits: u8,
    /// The block is a `password_reset_required` answer (a 403 with the route's reset link).
    pub reset_required: bool,
}

impl Decision {
    pub fn verdict(&self) -> Verdict {
        match self.answered {
            Some(verdict) => verdict,
            None if self.tags().next().is_some() => Verdict::Tag,
            None => Verdict::Allow,
        }
    }

    /// The enforced `tag` findings, for the upstream headers.
    pub fn tags(&self) -> impl Iterator<Item = &Reason> + '_ {
        self.reasons.iter().filter(|r| r.action == "tag" && r.mode == Mode::Enforce)
    }

    /// Whether a phase may still change the outcome.
    pub fn open(&self) -> bool {
        !self.trusted && self.answered.is_none()
    }
}

/// A phase's batch: the reads of its defenses, where each defense's reads start, and the store's replies.
#[derive(Default)]
pub struct Batch {
    pub reads: Reads,
    pub replies: Replies,
    starts: SmallVec<[(u16, u16); 16]>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.reads.clear();
        self.replies.clear();
        self.starts.clear();
    }

    /// Collect the reads of the phase's defenses, after `prefix` reads the engine put first.
    pub fn gather(&mut self, slots: &[Slot], phase: Phase, attempt: &Attempt<'_>) {
        for (index, slot) in slots.iter().enumerate().filter(|(_, s)| s.phase == phase) {
            self.starts.push((index as u16, self.reads.len() as u16));
            slot.defense.reads(attempt, &mut self.reads);
        }
    }

    /// The replies to one gathered slot's reads.
    fn replies_of(&self, at: usize) -> &[Reply] {
        let start = self.starts[at].1 as usize;
        let end = self.starts.get(at + 1).map(|s| s.1 as usize).unwrap_or(self.reads.len());
        self.replies.get(start..end).unwrap_or(&[])
    }
}

/// Judge a gathered phase. Returns true when an enforced block or challenge ended the pipeline.
pub fn judge(slots: &[Slot], batch: &Batch, attempt: &Attempt<'_>, now: u64, decision: &mut Decision) -> bool {
    if !decision.open() {
        return decision.answered.is_some();
    }
    for at in 0..batch.starts.len() {
        let index = batch.starts[at].0 as usize;
        let slot = &slots[index];
        let replies = batch.replies_of(at);
        let device = &attempt.subject.facts.device;
        let action = match slot.under_attack {
            Some(stricter) if attempt.subject.facts.attack.on() && !device.trusted() => stricter,
            _ => slot.action,
        };
        match slot.defense.decide_after(attempt, replies, now, &decision.reasons) {
            Finding::Clear => {}
            Finding::Trusted => {
                decision.reasons.push(Reason {
                    slot: index,
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
            Finding::Hit { reason, retry_after } => {
                let header = slot
                    .defense
                    .tag_header()
                    .and_then(|name| slot.defense.explain(attempt, replies).map(|value| (name, value)));
                decision.reasons.push(Reason {
                    slot: index,
                    defense: slot.defense.name(),
                    reason,
                    action: action.as_str(),
                    mode: slot.mode,
                    header,
                });
                if slot.mode == Mode::Observe {
                    continue;
                }
                let answer = match action {
                    Action::Block { status } => Verdict::Block { status, retry_after },
                    Action::ResetRequired => {
                        decision.reset_required = true;
                        Verdict::Block { status: 403, retry_after: None }
                    }
                    Action::Challenge => {
                        let bits = slot.defense.challenge_bits(attempt, &decision.reasons);
                        if let Solution::Passed { bits: solved, .. } = attempt.subject.facts.challenge {
                            if solved >= bits {
                                // Passed: forwarded, tagged with the defense's name for the app to step up.
                                if let Some(last) = decision.reasons.last_mut() {
                                    (last.reason, last.action) = ("challenge_passed", "tag");
                                }
                                continue;
                            }
                        }
                        decision.challenge_bits = bits;
                        Verdict::Challenge
                    }
                    Action::Tag => continue,
                };
                decision.answered = Some(answer);
                decision.decided_by = Some(index);
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defense::testing::Harness;
    use crate::defense::{Needs, Phase};
    use crate::store::Store;

    struct Always(Finding, Phase);
    impl Defense for Always {
        fn name(&self) -> &'static str {
            "always"
        }
        fn needs(&self) -> Needs {
            Needs { phase: Some(self.1), ..Needs::default() }
        }
        fn decide(&self, _: &Attempt<'_>, _: &[Reply], _: u64) -> Finding {
            self.0
        }
    }

    fn slot(finding: Finding, phase: Phase, mode: Mode, action: Action) -> Slot {
        Slot {
            defense: Arc::new(Always(finding, phase)),
            mode,
            action,
            under_attack: None,
            phase,
            fingerprint: String::new(),
            metrics: None,
        }
    }

    const HIT: Finding = Finding::Hit { reason: "over_limit", retry_after: None };

    fn run(slots: &[Slot], phase: Phase, decision: &mut Decision) -> bool {
        let h = Harness::new();
        let headers = http::HeaderMap::new();
        let attempt =
            Attempt { subject: h.subject("192.0.2.1", None), credentials: Default::default(), headers: &headers };
        let mut batch = Batch::default();
        batch.gather(slots, phase, &attempt);
        let _ = h.store.read(&batch.reads, 0, &mut batch.replies).now_or_never();
        judge(slots, &batch, &attempt, 0, decision)
    }

    #[test]
    fn observe_mode_records_but_never_blocks() {
        let slots = [slot(HIT, Phase::Address, Mode::Observe, Action::Block { status: 429 })];
        let mut decision = Decision::default();
        assert!(!run(&slots, Phase::Address, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Allow);
        assert_eq!(decision.reasons.len(), 1);
        assert_eq!(decision.reasons[0].mode, Mode::Observe);
    }

    #[test]
    fn enforced_block_stops_and_later_defenses_do_not_run() {
        let slots = [
            slot(HIT, Phase::Address, Mode::Enforce, Action::Tag),
            slot(HIT, Phase::Address, Mode::Enforce, Action::Block { status: 403 }),
            slot(HIT, Phase::Address, Mode::Enforce, Action::Block { status: 429 }),
        ];
        let mut decision = Decision::default();
        assert!(run(&slots, Phase::Address, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Block { status: 403, retry_after: None });
        assert_eq!(decision.decided_by, Some(1));
        assert_eq!(decision.reasons.len(), 2);
        assert_eq!(decision.tags().map(|r| r.defense).collect::<Vec<_>>(), vec!["always"]);
    }

    #[test]
    fn a_challenge_ends_the_pipeline_and_tags_alone_forward_tagged() {
        let slots = [
            slot(HIT, Phase::Address, Mode::Enforce, Action::Tag),
            slot(HIT, Phase::Credentials, Mode::Enforce, Action::Challenge),
        ];
        let mut decision = Decision::default();
        assert!(!run(&slots, Phase::Address, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Tag);
        assert!(run(&slots, Phase::Credentials, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Challenge);
    }

    #[test]
    fn a_passed_solution_worth_enough_bits_forwards_tagged_and_a_weaker_one_is_challenged_again() {
        let slots = [slot(HIT, Phase::Credentials, Mode::Enforce, Action::Challenge)];
        let judge_with = |solution: Solution| {
            let h = Harness::new();
            let headers = http::HeaderMap::new();
            let mut subject = h.subject("192.0.2.1", Some("a"));
            subject.facts.challenge = solution;
            let attempt = Attempt { subject, credentials: Default::default(), headers: &headers };
            let mut batch = Batch::default();
            batch.gather(&slots, Phase::Credentials, &attempt);
            let _ = h.store.read(&batch.reads, 0, &mut batch.replies).now_or_never();
            let mut decision = Decision::default();
            judge(&slots, &batch, &attempt, 0, &mut decision);
            decision
        };
        let passed = judge_with(Solution::Passed { bits: 16, solve_ms: 300, noscript: false });
        assert_eq!(passed.verdict(), Verdict::Tag);
        assert_eq!((passed.reasons[0].reason, passed.reasons[0].action), ("challenge_passed", "tag"));
        let weak = judge_with(Solution::Passed { bits: 15, solve_ms: 300, noscript: false });
        assert_eq!((weak.verdict(), weak.challenge_bits), (Verdict::Challenge, 16));
        for failed in [Solution::Absent, Solution::Invalid, Solution::Expired, Solution::Reused] {
            assert_eq!(judge_with(failed).verdict(), Verdict::Challenge, "{failed:?}");
        }
    }

    #[test]
    fn under_attack_an_unknown_device_gets_the_stricter_action_and_a_known_device_never() {
        let mut slots = [slot(HIT, Phase::Credentials, Mode::Enforce, Action::Tag)];
        slots[0].under_attack = Some(Action::ResetRequired);
        let judge_with = |attack: crate::attack::AttackLevel, known: bool| {
            let h = Harness::new();
            let headers = http::HeaderMap::new();
            let mut subject = h.subject("192.0.2.1", Some("a"));
            subject.facts.attack = attack;
            subject.facts.device.known = known;
            let attempt = Attempt { subject, credentials: Default::default(), headers: &headers };
            let mut batch = Batch::default();
            batch.gather(&slots, Phase::Credentials, &attempt);
            let mut decision = Decision::default();
            judge(&slots, &batch, &attempt, 0, &mut decision);
            decision
        };
        use crate::attack::AttackLevel;
        let calm = judge_with(AttackLevel::Off, false);
        assert_eq!((calm.verdict(), calm.reset_required), (Verdict::Tag, false));
        let attacked = judge_with(AttackLevel::Elevated, false);
        assert_eq!(attacked.verdict(), Verdict::Block { status: 403, retry_after: None });
        assert!(attacked.reset_required);
        assert_eq!(attacked.reasons[0].action, "reset_required");
        let known = judge_with(AttackLevel::High, true);
        assert_eq!((known.verdict(), known.reset_required), (Verdict::Tag, false));
    }

    #[test]
    fn phases_split_and_trust_skips_the_rest() {
        let slots = [
            slot(Finding::Trusted, Phase::Address, Mode::Enforce, Action::Tag),
            slot(HIT, Phase::Credentials, Mode::Enforce, Action::Block { status: 429 }),
        ];
        let mut decision = Decision::default();
        assert!(!run(&slots, Phase::Address, &mut decision));
        assert!(decision.trusted);
        assert!(!run(&slots, Phase::Credentials, &mut decision));
        assert_eq!(decision.verdict(), Verdict::Allow);
    }
}
