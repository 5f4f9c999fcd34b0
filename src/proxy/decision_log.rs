//! The decision log: one event per protected request (target `stuffgate::decision`), written by the proxy's
//! logging phase from the engine's verdict and the upstream's answer.

/// The one event per protected request. Never a password; the account only as its keyed hash.
pub(crate) fn write(
    route: &crate::config::Route,
    judged: &crate::engine::Judged,
    outcome: Option<crate::defense::Outcome>,
    status: u16,
    decision_micros: u64,
) {
    // Skip the formatting below (a String for the reasons, another for the account hash) when the event is filtered
    // out, e.g. at level "warn".
    if !tracing::enabled!(target: "stuffgate::decision", tracing::Level::INFO) {
        return;
    }
    use std::fmt::Write;
    let decision = &judged.decision;
    let verdict = decision.verdict();
    let mut reasons = String::new();
    for (i, r) in decision.reasons.iter().enumerate() {
        let _ = write!(
            reasons,
            "{}{}:{}:{}:{}",
            if i > 0 { "," } else { "" },
            r.defense,
            r.reason,
            r.action,
            r.mode.as_str()
        );
    }
    if let crate::defense::Verdict::Invalid(problem) = verdict {
        reasons = format!("body:{}", problem.reason());
    } else if let Some(problem) = judged.body_problem {
        // Let through unread (observe mode or `on_bad_body = "forward"`): the route's fields were not found.
        let _ = write!(reasons, "{}body:{}:forward", if reasons.is_empty() { "" } else { "," }, problem.reason());
    }
    let subject = &judged.subject;
    let decided_by = decision.decided_by.and_then(|i| route.slots.get(i)).map(|s| s.defense.name());
    let account = subject.account.map(|a| format!("{:016x}", a.id));
    // Challenge and device: the solution's state, and the page's device signals only as their keyed hash.
    let facts = &subject.facts;
    let solution = (facts.challenge != crate::challenge::Solution::Absent).then(|| facts.challenge.as_str());
    let signals = facts.device.signals.map(|hash| format!("{hash:016x}"));
    let attack_mode = facts.attack.on().then(|| facts.attack.as_str());
    tracing::info!(
        target: "stuffgate::decision",
        route = route.name.as_str(),
        kind = route.kind.as_str(),
        verdict = verdict.as_str(),
        decided_by = decided_by.unwrap_or(""),
        reasons = reasons.as_str(),
        client_ip = %subject.ip,
        country = subject.facts.geo.country.as_ref().map(|c| c.as_str()),
        account = account.as_deref(),
        outcome = outcome.map(|o| o.as_str()),
        status,
        decision_us = decision_micros,
        solution,
        device_signals = signals.as_deref(),
        client_fingerprint = facts.client_fingerprint.as_ref().map(|f| f.as_str()),
        fingerprint_source = facts.client_fingerprint.as_ref().map(|f| f.source().as_str()),
        attack_mode,
        reset_required = decision.reset_required,
    );
}
