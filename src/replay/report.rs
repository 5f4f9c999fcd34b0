//! What a replay found, per scenario and per actor: counted the same way online (answers from a real gateway) and
//! offline (answers from the engine and a simulated upstream), rendered as a terminal table or JSON. The HTML
//! page is in `html.rs`.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::Histogram;
use super::scenario::ActorKind;
use super::schedule::{secs, ActorInfo, Answer, Endpoint, Event, Schedule, Verdict, NO_ACCOUNT, NO_VISIT};

/// Timeline buckets across the scenario's virtual duration.
pub const TIMELINE_BUCKETS: usize = 60;

const GOT_IN: u8 = 1;
const TURNED_AWAY: u8 = 2;
/// The visit met a challenge (solved by the user's browser or not).
const CHALLENGED: u8 = 4;
/// No time recorded for a visit yet.
const NEVER: u64 = u64::MAX;

#[derive(Clone, Debug, Default)]
pub struct ActorTally {
    pub sent: u64,
    pub verdicts: [u64; 4],
    /// Of the turned-away requests, those answered with a challenge (428) rather than a block.
    pub challenged: u64,
    pub flagged: u64,
    pub logins_ok: u64,
    pub logins_failed: u64,
    pub valid_pairs: u64,
    pub taken_over: HashSet<u32>,
    pub resets_elsewhere: u64,
    pub topups: u64,
    pub fraud_yen: u64,
    pub signups: u64,
    /// Challenges answered to this actor's requests, solved or not.
    pub challenges_issued: u64,
    /// Challenges it paid (solved natively), and the CPU time that took.
    pub pow_solved: u64,
    pub pow_cpu_nanos: u64,
}

/// Counters filled in while a replay runs; one per sender, merged at the end.
#[derive(Clone, Debug)]
pub struct Tally {
    pub actors: Vec<ActorTally>,
    pub visits: Vec<u8>,
    /// Per visit: when its first request was sent, and when it got in (virtual nanoseconds; `NEVER` if not).
    pub visit_started: Vec<u64>,
    pub visit_in: Vec<u64>,
    pub timeline: Vec<[u64; 4]>,
    pub bucket: u64,
    pub latency: Histogram,
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

impl Tally {
    pub fn new(schedule: &Schedule) -> Tally {
        Tally {
            actors: vec![ActorTally::default(); schedule.actors.len()],
            visits: vec![0; schedule.visit_actor.len()],
            visit_started: vec![NEVER; schedule.visit_actor.len()],
            visit_in: vec![NEVER; schedule.visit_actor.len()],
            timeline: vec![[0; 4]; TIMELINE_BUCKETS],
            bucket: (schedule.duration / TIMELINE_BUCKETS as u64).max(1),
            latency: Histogram::default(),
            statuses: Default::default(),
        }
    }

    /// Count one answered event. `kind` is the event's actor kind; `latency` in microseconds when measured.
    pub fn record(&mut self, event: &Event, kind: ActorKind, answer: &Answer, latency: Option<u64>, flagged: bool) {
        let Some(actor) = self.actors.get_mut(event.actor as usize) else { return };
        actor.sent += 1;
        actor.verdicts[answer.verdict.index()] += 1;
        if answer.verdict == Verdict::Blocked && answer.status == 428 {
            actor.challenged += 1;
        }
        if flagged {
            actor.flagged += 1;
        }
        *self.statuses.entry(answer.status).or_default() += 1;
        let slot = ((event.at / self.bucket) as usize).min(TIMELINE_BUCKETS - 1);
        self.timeline[slot][answer.verdict.index()] += 1;
        if let Some(micros) = latency {
            self.latency.record(micros);
        }
        let attacker = kind.is_attacker();
        match answer.verdict {
            Verdict::Forwarded => match (event.endpoint, answer.status) {
                (Endpoint::Login, 200) => {
                    actor.logins_ok += 1;
                    if attacker {
                        actor.valid_pairs += 1;
                        if event.account != NO_ACCOUNT {
                            actor.taken_over.insert(event.account);
                        }
                    }
                }
                (Endpoint::Login, 401 | 403) => actor.logins_failed += 1,
                (Endpoint::Reset, 200 | 202) if attacker && event.valid => {
                    actor.resets_elsewhere += 1;
                    actor.taken_over.insert(event.account);
                }
                (Endpoint::Signup, 200 | 201) => actor.signups += 1,
                (Endpoint::Topup, 200) => {
                    actor.topups += 1;
                    if attacker {
                        actor.fraud_yen += event.amount;
                    }
                }
                _ => {}
            },
            Verdict::Blocked => {}
            Verdict::Invalid | Verdict::Error => {}
        }
        if event.visit != NO_VISIT {
            let at = event.visit as usize;
            if let Some(v) = self.visits.get_mut(at) {
                match (answer.verdict, answer.status) {
                    (Verdict::Forwarded, 200) => {
                        *v |= GOT_IN;
                        self.visit_in[at] = self.visit_in[at].min(event.at);
                    }
                    (Verdict::Blocked, 428) => *v |= TURNED_AWAY | CHALLENGED,
                    (Verdict::Blocked, _) => *v |= TURNED_AWAY,
                    _ => {}
                }
                self.visit_started[at] = self.visit_started[at].min(event.at);
            }
        }
    }

    /// A challenge answered to `event` (offline: the engine issued it). `solved_in` is the CPU time the sender
    /// spent solving it, when it did.
    pub fn note_challenge(&mut self, event: &Event, solved_in: Option<u64>) {
        let Some(actor) = self.actors.get_mut(event.actor as usize) else { return };
        actor.challenges_issued += 1;
        if let Some(nanos) = solved_in {
            actor.pow_solved += 1;
            actor.pow_cpu_nanos += nanos;
        }
        if let Some(v) = self.visits.get_mut(event.visit as usize) {
            *v |= CHALLENGED;
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for (a, b) in self.actors.iter_mut().zip(other.actors) {
            a.sent += b.sent;
            for i in 0..4 {
                a.verdicts[i] += b.verdicts[i];
            }
            a.flagged += b.flagged;
            a.challenged += b.challenged;
            a.logins_ok += b.logins_ok;
            a.logins_failed += b.logins_failed;
            a.valid_pairs += b.valid_pairs;
            a.taken_over.extend(b.taken_over);
            a.resets_elsewhere += b.resets_elsewhere;
            a.topups += b.topups;
            a.fraud_yen += b.fraud_yen;
            a.signups += b.signups;
            a.challenges_issued += b.challenges_issued;
            a.pow_solved += b.pow_solved;
            a.pow_cpu_nanos += b.pow_cpu_nanos;
        }
        for (a, b) in self.visits.iter_mut().zip(other.visits) {
            *a |= b;
        }
        for (a, b) in self.visit_started.iter_mut().zip(other.visit_started) {
            *a = (*a).min(b);
        }
        for (a, b) in self.visit_in.iter_mut().zip(other.visit_in) {
            *a = (*a).min(b);
        }
        for (a, b) in self.timeline.iter_mut().zip(other.timeline) {
            for i in 0..4 {
                a[i] += b[i];
            }
        }
        self.latency.merge(&other.latency);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Counts {
    pub sent: u64,
    pub forwarded: u64,
    /// Refused outright (a block); challenges are counted apart.
    pub blocked: u64,
    /// Answered with a challenge (428): a browser solves it and gets through, a bot that does not run it does not.
    pub challenged: u64,
    pub invalid: u64,
    pub errors: u64,
    /// Offline runs only: requests an observe-mode defense would have blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flagged_in_observe: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Harm {
    /// Distinct accounts the attackers got into (a session, or a reset link sent to them).
    pub accounts_taken_over: u64,
    /// Attacker logins the upstream accepted: pairs the attacker now knows work.
    pub valid_pairs_confirmed: u64,
    pub reset_links_sent_elsewhere: u64,
    pub fraudulent_topup_yen: u64,
    pub fake_signups: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Legit {
    /// Legitimate login visits (a traveller makes two).
    pub visits: u64,
    pub got_in: u64,
    /// Turned away by the gateway and never got in during the visit.
    pub blocked_never_in: u64,
    /// Never got in for another reason (errors, or the upstream said no).
    pub other_never_in: u64,
    pub got_in_percent: f64,
    /// Visits that met a challenge (their browser solved it), and their share.
    pub challenged: u64,
    pub challenged_percent: f64,
    pub blocked_percent: f64,
    /// Seconds from a visit's first request to getting in (retries after a typo or a block included), over the
    /// visits that got in.
    pub time_to_get_in_p50_s: f64,
    pub time_to_get_in_p95_s: f64,
    pub time_to_get_in_max_s: f64,
}

/// What an attacker paid in proof-of-work.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ProofOfWork {
    pub challenges: u64,
    pub solved: u64,
    pub cpu_seconds: f64,
    /// CPU-seconds spent per account taken over (all of it when nothing was taken over).
    pub cpu_seconds_per_takeover: Option<f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ActorReport {
    pub name: String,
    pub kind: ActorKind,
    #[serde(flatten)]
    pub counts: Counts,
    pub logins_ok: u64,
    pub logins_failed: u64,
    #[serde(flatten)]
    pub harm: Harm,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legit: Option<Legit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof_of_work: Option<ProofOfWork>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram) -> Option<Latency> {
        (h.count() > 0).then(|| Latency {
            p50_ms: h.quantile(0.50) as f64 / 1000.0,
            p99_ms: h.quantile(0.99) as f64 / 1000.0,
            p999_ms: h.quantile(0.999) as f64 / 1000.0,
            max_ms: h.max() as f64 / 1000.0,
        })
    }
}

/// The demo upstream's own counters over the run (`GET /__demo/stats` before and after).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct UpstreamDelta {
    pub logins_ok: u64,
    pub logins_failed: u64,
    pub signups: u64,
    pub resets: u64,
    pub reset_links_elsewhere: u64,
    pub topups: u64,
    pub topup_yen: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Timeline {
    pub bucket_seconds: f64,
    /// Per bucket: forwarded, blocked, invalid, error.
    pub buckets: Vec<[u64; 4]>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    /// "online" or "offline".
    pub mode: String,
    pub target: Option<String>,
    pub policy: Option<String>,
    pub seed: u64,
    /// Virtual seconds per real (online) or gateway (offline) second; 0 = as fast as possible.
    pub speed: f64,
    pub virtual_seconds: f64,
    pub wall_seconds: f64,
    pub requests_per_second: f64,
    pub latency: Option<Latency>,
    pub totals: Counts,
    pub harm: Harm,
    pub legit: Legit,
    pub actors: Vec<ActorReport>,
    pub upstream: Option<UpstreamDelta>,
    pub statuses: std::collections::BTreeMap<u16, u64>,
    pub timeline: Timeline,
    pub notes: Vec<String>,
    /// Requests answered (blocked or challenged) per deciding defense: from the engine offline, from the gateway's
    /// findings counters online (when its admin listener is known).
    pub blocked_by: std::collections::BTreeMap<String, u64>,
}

pub struct RunInfo {
    pub mode: &'static str,
    pub target: Option<String>,
    pub policy: Option<String>,
    pub speed: f64,
    pub wall_seconds: f64,
    pub offline: bool,
    pub upstream: Option<UpstreamDelta>,
    pub notes: Vec<String>,
}

fn counts(t: &ActorTally, offline: bool) -> Counts {
    Counts {
        sent: t.sent,
        forwarded: t.verdicts[Verdict::Forwarded.index()],
        blocked: t.verdicts[Verdict::Blocked.index()] - t.challenged,
        challenged: t.challenged,
        invalid: t.verdicts[Verdict::Invalid.index()],
        errors: t.verdicts[Verdict::Error.index()],
        flagged_in_observe: offline.then_some(t.flagged),
    }
}

fn harm(t: &ActorTally, kind: ActorKind) -> Harm {
    if !kind.is_attacker() {
        return Harm::default();
    }
    Harm {
        accounts_taken_over: t.taken_over.len() as u64,
        valid_pairs_confirmed: t.valid_pairs,
        reset_links_sent_elsewhere: t.resets_elsewhere,
        fraudulent_topup_yen: t.fraud_yen,
        fake_signups: if kind == ActorKind::SignupFarmer { t.signups } else { 0 },
    }
}

fn legit_of(visits: impl Iterator<Item = (u8, u64, u64)>) -> Legit {
    let mut l = Legit::default();
    let mut waits: Vec<u64> = Vec::new();
    for (v, started, got_in) in visits {
        l.visits += 1;
        if v & CHALLENGED != 0 {
            l.challenged += 1;
        }
        if got_in != NEVER && started != NEVER {
            waits.push(got_in.saturating_sub(started));
        }
        if v & GOT_IN != 0 {
            l.got_in += 1;
        } else if v & TURNED_AWAY != 0 {
            l.blocked_never_in += 1;
        } else {
            l.other_never_in += 1;
        }
    }
    let share = |n: u64| if l.visits == 0 { 0.0 } else { n as f64 * 100.0 / l.visits as f64 };
    l.got_in_percent = if l.visits == 0 { 100.0 } else { share(l.got_in) };
    l.challenged_percent = share(l.challenged);
    l.blocked_percent = share(l.blocked_never_in);
    waits.sort_unstable();
    let quantile =
        |q: f64| waits.get(((waits.len() as f64 - 1.0) * q).round() as usize).map(|&n| secs(n)).unwrap_or(0.0);
    (l.time_to_get_in_p50_s, l.time_to_get_in_p95_s, l.time_to_get_in_max_s) =
        (quantile(0.5), quantile(0.95), quantile(1.0));
    l
}

fn proof_of_work(t: &ActorTally, kind: ActorKind) -> Option<ProofOfWork> {
    if !kind.is_attacker() || t.challenges_issued == 0 {
        return None;
    }
    let cpu_seconds = t.pow_cpu_nanos as f64 / 1e9;
    Some(ProofOfWork {
        challenges: t.challenges_issued,
        solved: t.pow_solved,
        cpu_seconds,
        cpu_seconds_per_takeover: (t.pow_solved > 0).then(|| cpu_seconds / t.taken_over.len().max(1) as f64),
    })
}

impl Report {
    pub fn build(schedule: &Schedule, tally: &Tally, info: RunInfo) -> Report {
        let mut actors = Vec::with_capacity(schedule.actors.len());
        let mut all_taken: HashSet<u32> = HashSet::new();
        let mut totals = ActorTally::default();
        for (index, (ActorInfo { name, kind, .. }, t)) in schedule.actors.iter().zip(&tally.actors).enumerate() {
            let legit = kind.is_legitimate().then(|| {
                legit_of(
                    schedule
                        .visit_actor
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| **a as usize == index)
                        .map(|(i, _)| (tally.visits[i], tally.visit_started[i], tally.visit_in[i])),
                )
            });
            if kind.is_attacker() {
                all_taken.extend(t.taken_over.iter().copied());
                totals.valid_pairs += t.valid_pairs;
                totals.resets_elsewhere += t.resets_elsewhere;
                totals.fraud_yen += t.fraud_yen;
                if *kind == ActorKind::SignupFarmer {
                    totals.signups += t.signups;
                }
            }
            totals.sent += t.sent;
            totals.flagged += t.flagged;
            totals.challenged += t.challenged;
            for i in 0..4 {
                totals.verdicts[i] += t.verdicts[i];
            }
            actors.push(ActorReport {
                name: name.clone(),
                kind: *kind,
                counts: counts(t, info.offline),
                logins_ok: t.logins_ok,
                logins_failed: t.logins_failed,
                harm: harm(t, *kind),
                legit,
                proof_of_work: proof_of_work(t, *kind),
            });
        }
        let harm = Harm {
            accounts_taken_over: all_taken.len() as u64,
            valid_pairs_confirmed: totals.valid_pairs,
            reset_links_sent_elsewhere: totals.resets_elsewhere,
            fraudulent_topup_yen: totals.fraud_yen,
            fake_signups: totals.signups,
        };
        let legit =
            legit_of((0..tally.visits.len()).map(|i| (tally.visits[i], tally.visit_started[i], tally.visit_in[i])));
        Report {
            scenario: schedule.scenario.clone(),
            mode: info.mode.to_string(),
            target: info.target,
            policy: info.policy,
            seed: schedule.seed,
            speed: info.speed,
            virtual_seconds: secs(schedule.duration),
            wall_seconds: info.wall_seconds,
            requests_per_second: if info.wall_seconds > 0.0 { totals.sent as f64 / info.wall_seconds } else { 0.0 },
            latency: Latency::of(&tally.latency),
            totals: counts(&totals, info.offline),
            harm,
            legit,
            actors,
            upstream: info.upstream,
            statuses: tally.statuses.clone(),
            timeline: Timeline { bucket_seconds: secs(tally.bucket), buckets: tally.timeline.clone() },
            notes: info.notes,
            blocked_by: Default::default(),
        }
    }

    /// The operator's terminal view.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let speed =
            if self.speed == 0.0 { "as fast as possible".to_string() } else { format!("×{}", trim_float(self.speed)) };
        let against = match (&self.target, &self.policy) {
            (Some(t), _) => format!("online against {t}"),
            (None, Some(p)) => format!("offline through the engine with {p}"),
            (None, None) => "offline".to_string(),
        };
        let _ = writeln!(out, "\n{} — {against}", self.scenario);
        let _ = writeln!(
            out,
            "  seed {}, speed {speed}: {} of virtual time in {:.1} s{}",
            self.seed,
            human_duration(self.virtual_seconds),
            self.wall_seconds,
            if self.mode == "offline" { " of computing" } else { "" },
        );
        let mut line = format!(
            "  {} requests, {}/s",
            thousands(self.totals.sent),
            thousands(self.requests_per_second.round() as u64)
        );
        if let Some(l) = &self.latency {
            let _ = write!(line, "; latency p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms);
        }
        let _ = writeln!(out, "{line}\n");

        let headers = ["actor", "kind", "sent", "forwarded", "blocked", "challenged", "invalid", "errors", "outcome"];
        let mut rows: Vec<[String; 9]> = Vec::new();
        for a in &self.actors {
            rows.push([
                a.name.clone(),
                a.kind.as_str().to_string(),
                thousands(a.counts.sent),
                thousands(a.counts.forwarded),
                thousands(a.counts.blocked),
                thousands(a.counts.challenged),
                thousands(a.counts.invalid),
                thousands(a.counts.errors),
                outcome_text(a),
            ]);
        }
        rows.push([
            "total".into(),
            String::new(),
            thousands(self.totals.sent),
            thousands(self.totals.forwarded),
            thousands(self.totals.blocked),
            thousands(self.totals.challenged),
            thousands(self.totals.invalid),
            thousands(self.totals.errors),
            String::new(),
        ]);
        let mut widths = headers.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let fmt_row = |cells: &[String]| {
            let mut s = String::from(" ");
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                if (2..7).contains(&i) {
                    s.push_str(&" ".repeat(pad + 1));
                    s.push_str(cell);
                } else {
                    s.push(' ');
                    s.push_str(cell);
                    if i < 7 {
                        s.push_str(&" ".repeat(pad));
                    }
                }
                s.push(' ');
            }
            s.trim_end().to_string()
        };
        let header_cells: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let _ = writeln!(out, "{}", fmt_row(&header_cells));
        let rule: usize = widths.iter().sum::<usize>() + widths.len() * 2;
        let _ = writeln!(out, "  {}", "─".repeat(rule.min(160)));
        for (i, row) in rows.iter().enumerate() {
            if i + 1 == rows.len() {
                let _ = writeln!(out, "  {}", "─".repeat(rule.min(160)));
            }
            let _ = writeln!(out, "{}", fmt_row(row));
        }

        let h = &self.harm;
        let _ = writeln!(out, "\n  attack outcome");
        let _ = writeln!(out, "    accounts taken over         {}", thousands(h.accounts_taken_over));
        let _ = writeln!(out, "    valid pairs confirmed       {}", thousands(h.valid_pairs_confirmed));
        let _ = writeln!(out, "    reset links sent elsewhere  {}", thousands(h.reset_links_sent_elsewhere));
        let _ = writeln!(out, "    fraudulent top-ups          ¥{}", thousands(h.fraudulent_topup_yen));
        let _ = writeln!(out, "    fake sign-ups               {}", thousands(h.fake_signups));
        let l = &self.legit;
        let _ = writeln!(out, "  legitimate users");
        let _ = writeln!(
            out,
            "    login visits {} — got in {} ({:.1}%), blocked and never got in {}, other failures {}",
            thousands(l.visits),
            thousands(l.got_in),
            l.got_in_percent,
            thousands(l.blocked_never_in),
            thousands(l.other_never_in)
        );
        let _ = writeln!(
            out,
            "    challenged {} ({:.1}%), blocked {:.2}%; time to get in p50 {:.1} s, p95 {:.1} s, max {:.1} s",
            thousands(l.challenged),
            l.challenged_percent,
            l.blocked_percent,
            l.time_to_get_in_p50_s,
            l.time_to_get_in_p95_s,
            l.time_to_get_in_max_s
        );
        for a in self.actors.iter() {
            let Some(pow) = &a.proof_of_work else { continue };
            let per = match pow.cpu_seconds_per_takeover {
                Some(per) if a.harm.accounts_taken_over > 0 => format!("{per:.2} CPU-s per takeover"),
                Some(_) => "no takeover".to_string(),
                None => "never solved".to_string(),
            };
            let _ = writeln!(
                out,
                "  proof of work, {}: {} challenges, {} solved in {:.2} CPU-s ({per})",
                a.name,
                thousands(pow.challenges),
                thousands(pow.solved),
                pow.cpu_seconds
            );
        }
        if let Some(flagged) = self.totals.flagged_in_observe {
            if flagged > 0 {
                let _ = writeln!(
                    out,
                    "  observe mode: {} requests would have been blocked in enforce mode",
                    thousands(flagged)
                );
            }
        }
        if let Some(u) = &self.upstream {
            let _ = writeln!(
                out,
                "  the demo upstream counted: {} logins ok, {} failed, {} reset links sent elsewhere, {} top-ups worth ¥{}, {} sign-ups",
                thousands(u.logins_ok),
                thousands(u.logins_failed),
                thousands(u.reset_links_elsewhere),
                thousands(u.topups),
                thousands(u.topup_yen),
                thousands(u.signups)
            );
        }
        if !self.blocked_by.is_empty() {
            let _ = writeln!(out, "\n  answered by defense (blocked or challenged)");
            let mut by: Vec<_> = self.blocked_by.iter().collect();
            by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let width = by.iter().map(|(d, _)| d.len()).max().unwrap_or(0);
            for (defense, n) in by {
                let _ = writeln!(out, "    {defense:<width$}  {}", thousands(*n));
            }
        }
        if let (Some(policy), Some(_)) = (&self.policy, &self.target) {
            let _ = writeln!(out, "  policy the gateway ran: {policy}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

fn outcome_text(a: &ActorReport) -> String {
    if let Some(l) = &a.legit {
        return format!(
            "got in {}/{} ({:.1}%), blocked {}",
            thousands(l.got_in),
            thousands(l.visits),
            l.got_in_percent,
            thousands(l.blocked_never_in)
        );
    }
    let h = &a.harm;
    let mut parts = Vec::new();
    match a.kind {
        ActorKind::Stuffer | ActorKind::Sprayer => {
            parts.push(format!("{} taken over", thousands(h.accounts_taken_over)));
            if h.fraudulent_topup_yen > 0 {
                parts.push(format!("¥{} topped up", thousands(h.fraudulent_topup_yen)));
            }
        }
        ActorKind::ResetHijacker => {
            parts.push(format!("{} reset links sent to the attacker", thousands(h.reset_links_sent_elsewhere)))
        }
        ActorKind::SignupFarmer => parts.push(format!("{} fake accounts created", thousands(h.fake_signups))),
        ActorKind::Setup => parts.push(format!("{} accounts signed up", thousands(a.counts.forwarded))),
        _ => {}
    }
    parts.join(", ")
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(human_duration(125.0), "2m05s");
        assert_eq!(trim_float(1.0), "1");
        assert_eq!(trim_float(2.5), "2.5");
    }
}
