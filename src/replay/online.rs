//! Online replay: the schedule against a running gateway, virtual time compressed by the speed factor, each
//! event sent from its client address (`X-Forwarded-For` from loopback, which `stuffgate demo` trusts) over a
//! fixed set of keep-alive connections. Follow-ups (top-ups with the returned token, a user's second try) are
//! queued as answers arrive. Bounded in time: the run stops at its deadline and reports what it saw.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::api::ApiShape;
use super::http::{Conn, Response, Target};
use super::report::{Tally, UpstreamDelta};
use super::schedule::{follow_ups, Answer, Endpoint, Event, Schedule, Verdict};

pub struct OnlineOptions {
    pub target: Target,
    /// Virtual seconds per real second; 0 = as fast as possible.
    pub speed: f64,
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// Hard stop for the whole run.
    pub max_time: Duration,
    pub progress: bool,
    /// `GET` URL of the demo upstream's counters (`/__demo/stats`), read before and after.
    pub upstream_stats: Option<String>,
    /// The paths and field names of the API behind the gateway.
    pub api: ApiShape,
}

pub struct OnlineRun {
    pub tally: Tally,
    pub wall: Duration,
    pub upstream: Option<UpstreamDelta>,
    /// The run hit `max_time` before the schedule was done.
    pub cut_short: bool,
    /// How far behind schedule the sends fell at the 99th percentile (ms), when paced.
    pub lag_p99_ms: Option<f64>,
    /// Challenges legitimate users solved (their browsers pay the proof-of-work; bots never do online).
    pub solved_by_users: u64,
}

enum Job {
    Scheduled(usize),
    FollowUp(Box<Event>),
}

struct Queue {
    next: usize,
    followups: BinaryHeap<Reverse<(u64, u64)>>,
    spawned: std::collections::HashMap<u64, Event>,
    seq: u64,
    in_flight: usize,
}

struct Shared {
    schedule: Arc<Schedule>,
    start: tokio::time::Instant,
    /// Virtual seconds per real second; 0 = as fast as possible.
    speed: f64,
    queue: Mutex<Queue>,
    wake: Notify,
    stop: AtomicBool,
    /// Some job was left unsent at the deadline.
    cut: AtomicBool,
    sent: AtomicU64,
    /// Challenges legitimate users' browsers solved.
    solved_by_users: AtomicU64,
}

impl Shared {
    /// The earliest job, or None when there is nothing left and nothing in flight that could add one.
    /// When an event at virtual time `at` is due.
    fn due(&self, at: u64) -> tokio::time::Instant {
        if self.speed > 0.0 {
            self.start + Duration::from_nanos((at as f64 / self.speed) as u64)
        } else {
            self.start
        }
    }

    /// The earliest job once it is due (a job is claimed only then, so a follow-up queued meanwhile still goes
    /// out in time order), or None when nothing is left and nothing in flight could add more.
    async fn next_job(&self, deadline: tokio::time::Instant) -> Option<Job> {
        loop {
            let now = tokio::time::Instant::now();
            if self.stop.load(Ordering::Relaxed) || now >= deadline {
                return None;
            }
            let notified = self.wake.notified();
            let wait_until = {
                let mut q = self.queue.lock();
                let scheduled = self.schedule.events.get(q.next).map(|e| e.at);
                let followup = q.followups.peek().map(|Reverse((at, _))| *at);
                let (at, take_followup) = match (followup, scheduled) {
                    (Some(f), Some(s)) if f < s => (f, true),
                    (Some(f), None) => (f, true),
                    (_, Some(s)) => (s, false),
                    (None, None) if q.in_flight == 0 => return None,
                    (None, None) => (u64::MAX, false),
                };
                let due = if at == u64::MAX { deadline } else { self.due(at) };
                if due >= deadline {
                    if at != u64::MAX {
                        self.cut.store(true, Ordering::Relaxed);
                        self.stop.store(true, Ordering::Relaxed);
                        return None;
                    }
                    now + Duration::from_millis(20)
                } else if due > now + Duration::from_millis(1) {
                    due.min(now + Duration::from_millis(50))
                } else if take_followup {
                    let Some(Reverse((_, id))) = q.followups.pop() else { continue };
                    let Some(event) = q.spawned.remove(&id) else { continue };
                    q.in_flight += 1;
                    return Some(Job::FollowUp(Box::new(event)));
                } else {
                    let index = q.next;
                    q.next += 1;
                    q.in_flight += 1;
                    return Some(Job::Scheduled(index));
                }
            };
            // Not due yet, or nothing ready while answers in flight may add follow-ups.
            let _ = tokio::time::timeout_at(wait_until, notified).await;
        }
    }

    fn done(&self, follow: Vec<Event>) {
        let mut q = self.queue.lock();
        for event in follow {
            let id = q.seq;
            q.seq += 1;
            q.followups.push(Reverse((event.at, id)));
            q.spawned.insert(id, event);
        }
        q.in_flight -= 1;
        drop(q);
        self.wake.notify_waiters();
    }
}

/// Classify an answer: the gateway's own answers carry `x-stuffgate-decision`, the demo upstream's carry
/// `x-demo-upstream`.
pub fn classify(response: &Response, endpoint: Endpoint) -> Answer {
    let verdict = match response.decision.as_deref() {
        // A challenge left unsolved is not forwarded.
        Some("block" | "challenge" | "reset_required") => Verdict::Blocked,
        Some(_) => Verdict::Invalid,
        None if response.upstream => Verdict::Forwarded,
        // Not the demo upstream: anything but a gateway error page counts as the upstream's answer.
        None if matches!(response.status, 502..=504) => Verdict::Error,
        None => Verdict::Forwarded,
    };
    let token = (verdict == Verdict::Forwarded && endpoint == Endpoint::Login && response.status == 200)
        .then(|| serde_json::from_slice::<serde_json::Value>(&response.body).ok())
        .flatten()
        .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(|t| t.to_string().into_boxed_str()));
    Answer { verdict, status: response.status, token }
}

/// Send one event, in the API's terms, with its sender's head (a browser profile, or the attacking tool's; see `clients`). A challenge
/// is paid where the sender solves (users' browsers always, bots per their actor's `solver_share`) and the request
/// sent again with the solution, at most twice, as the offline replay does; the time spent solving is returned.
async fn send(
    conn: &mut Conn,
    api: &ApiShape,
    event: &Event,
    ip: &str,
    bearer: Option<&str>,
    actor: &super::schedule::ActorInfo,
    seed: u64,
) -> (Answer, Vec<u64>) {
    let attacker = actor.kind.is_attacker();
    let head = super::clients::head(attacker, event.actor, event.account, event.ip);
    let mut headers: Vec<(&str, &str)> =
        head.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))).collect();
    headers.push(("x-forwarded-for", ip));
    let auth;
    if let Some(token) = bearer {
        auth = format!("Bearer {token}");
        headers.push(("authorization", &auth));
    }
    let body = api.body(event);
    let path = api.path(event.endpoint);
    let solves = !attacker || super::clients::draw(event.actor, event.ip, seed) < actor.solver_share;
    let mut solved_in = Vec::new();
    let mut solution = String::new();
    for _ in 0..3 {
        let mut sent = headers.clone();
        if !solution.is_empty() {
            sent.push((crate::challenge::facts::SOLUTION_HEADER, &solution));
        }
        let response = match conn.request("POST", path, &sent, body.as_bytes()).await {
            Ok(response) => response,
            Err(_) => return (Answer { verdict: Verdict::Error, status: 0, token: None }, solved_in),
        };
        let challenge = (solves && solved_in.len() < 2 && response.decision.as_deref() == Some("challenge"))
            .then(|| serde_json::from_slice::<serde_json::Value>(&response.body).ok())
            .flatten()
            .and_then(|v| Some((v["challenge"]["token"].as_str()?.to_string(), v["challenge"]["bits"].as_u64()?)));
        let Some((token, bits)) = challenge else {
            return (classify(&response, event.endpoint), solved_in);
        };
        let started = std::time::Instant::now();
        let nonce =
            tokio::task::spawn_blocking(move || (crate::challenge::token::solve(&token, bits.min(32) as u8), token))
                .await;
        let Ok((nonce, token)) = nonce else {
            return (classify(&response, event.endpoint), solved_in);
        };
        solved_in.push(started.elapsed().as_nanos() as u64);
        solution = format!("{token}:{nonce}");
    }
    (Answer { verdict: Verdict::Error, status: 0, token: None }, solved_in)
}

pub async fn fetch_stats(url: &str) -> Option<crate::demo_api::DemoStats> {
    #[derive(serde::Deserialize)]
    struct Stats {
        logins_ok: u64,
        logins_failed: u64,
        signups: u64,
        resets: u64,
        reset_links_sent: u64,
        reset_links_elsewhere: u64,
        topups: u64,
        topup_yen: u64,
        users: u64,
        sessions: u64,
    }
    let body = super::http::get(url, Duration::from_secs(5)).await?;
    let s: Stats = serde_json::from_slice(&body).ok()?;
    Some(crate::demo_api::DemoStats {
        logins_ok: s.logins_ok,
        logins_failed: s.logins_failed,
        signups: s.signups,
        resets: s.resets,
        reset_links_sent: s.reset_links_sent,
        reset_links_elsewhere: s.reset_links_elsewhere,
        topups: s.topups,
        topup_yen: s.topup_yen,
        users: s.users,
        sessions: s.sessions,
    })
}

pub fn delta(before: &crate::demo_api::DemoStats, after: &crate::demo_api::DemoStats) -> UpstreamDelta {
    UpstreamDelta {
        logins_ok: after.logins_ok.saturating_sub(before.logins_ok),
        logins_failed: after.logins_failed.saturating_sub(before.logins_failed),
        signups: after.signups.saturating_sub(before.signups),
        resets: after.resets.saturating_sub(before.resets),
        reset_links_elsewhere: after.reset_links_elsewhere.saturating_sub(before.reset_links_elsewhere),
        topups: after.topups.saturating_sub(before.topups),
        topup_yen: after.topup_yen.saturating_sub(before.topup_yen),
    }
}

pub fn run(schedule: Arc<Schedule>, options: &OnlineOptions) -> anyhow::Result<OnlineRun> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stuffgate-replay")
        .enable_all()
        .build()?;
    runtime.block_on(run_async(schedule, options))
}

async fn run_async(schedule: Arc<Schedule>, options: &OnlineOptions) -> anyhow::Result<OnlineRun> {
    let before = match &options.upstream_stats {
        Some(url) => fetch_stats(url).await,
        None => None,
    };
    let progress = if options.progress {
        let bar = indicatif::ProgressBar::new(schedule.events.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} requests  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let start = tokio::time::Instant::now();
    let shared = Arc::new(Shared {
        schedule: schedule.clone(),
        start,
        speed: options.speed,
        queue: Mutex::new(Queue {
            next: 0,
            followups: BinaryHeap::new(),
            spawned: Default::default(),
            seq: 0,
            in_flight: 0,
        }),
        wake: Notify::new(),
        stop: AtomicBool::new(false),
        cut: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        solved_by_users: AtomicU64::new(0),
    });
    let deadline = start + options.max_time;
    let speed = options.speed;
    let workers = options.concurrency.clamp(1, 4096);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let shared = shared.clone();
        let target = options.target.clone();
        let api = options.api.clone();
        let timeout = options.request_timeout;
        let progress = progress.clone();
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::new(&shared.schedule);
            let mut lag = super::histogram::Histogram::default();
            let mut conn = Conn::new(target, timeout);
            let mut ip_text = String::with_capacity(40);
            while let Some(job) = shared.next_job(deadline).await {
                let owned;
                let event: &Event = match &job {
                    Job::Scheduled(i) => &shared.schedule.events[*i],
                    Job::FollowUp(e) => {
                        owned = e;
                        owned
                    }
                };
                if speed > 0.0 {
                    let due = shared.due(event.at);
                    let now = tokio::time::Instant::now();
                    if due > now {
                        tokio::time::sleep_until(due).await;
                        lag.record(0);
                    } else {
                        lag.record(now.duration_since(due).as_micros() as u64);
                    }
                }
                ip_text.clear();
                use std::fmt::Write as _;
                let _ = write!(ip_text, "{}", event.ip);
                let sent_at = Instant::now();
                let actor = &shared.schedule.actors[event.actor as usize];
                let seed = shared.schedule.seed;
                let (answer, solved) =
                    send(&mut conn, &api, event, &ip_text, event.bearer.as_deref(), actor, seed).await;
                if !actor.kind.is_attacker() {
                    shared.solved_by_users.fetch_add(solved.len() as u64, Ordering::Relaxed);
                }
                let micros = sent_at.elapsed().as_micros() as u64;
                for nanos in &solved {
                    tally.note_challenge(event, Some(*nanos));
                }
                if answer.status == 428 {
                    tally.note_challenge(event, None);
                }
                tally.record(event, actor.kind, &answer, Some(micros), false);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
                let follow = follow_ups(event, &answer);
                if let Some(bar) = &progress {
                    bar.inc_length(follow.len() as u64);
                }
                shared.done(follow);
            }
            (tally, lag)
        }));
    }
    let mut tally = Tally::new(&schedule);
    let mut lag = super::histogram::Histogram::default();
    for handle in handles {
        let (t, l) = handle.await?;
        tally.merge(t);
        lag.merge(&l);
    }
    let wall = start.elapsed();
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let cut_short = {
        let q = shared.queue.lock();
        q.next < schedule.events.len() || !q.followups.is_empty() || shared.cut.load(Ordering::Relaxed)
    };
    let upstream = match (&options.upstream_stats, before) {
        (Some(url), Some(before)) => fetch_stats(url).await.map(|after| delta(&before, &after)),
        _ => None,
    };
    Ok(OnlineRun {
        tally,
        wall,
        upstream,
        cut_short,
        lag_p99_ms: (lag.count() > 0).then(|| lag.quantile(0.99) as f64 / 1000.0),
        solved_by_users: shared.solved_by_users.load(Ordering::Relaxed),
    })
}
