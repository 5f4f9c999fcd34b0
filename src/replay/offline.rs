//! Offline what-if: the schedule through the gateway's own decision engine (`engine::decide`, `observe`) on a
//! virtual clock, with the demo upstream's answers simulated. The same `decide` the proxy calls, same route matching,
//! same data files (GeoIP, breach filters), same pruning cadence — so a policy judged here is judged by the code
//! that will serve it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::challenge::facts::DEVICE_TOKEN_HEADER;
use crate::clock::Clock;
use crate::config::Services;
use crate::defense::{Decision, Mode};
use crate::engine::{self, InMemory};
use crate::store::{KeyKind, Write};

use crate::geoip::SharedGeoDb;
use crate::reload::PolicyHandle;
use bytes::Bytes;

use super::api::{ApiFlags, ApiShape};
use super::report::Tally;
use super::schedule::{follow_ups, Answer, Endpoint, Event, Schedule, Verdict};

/// Share of real users' logins from a device the account has not used before (a new phone, a shared computer):
/// about a fifth in an hour. The rest carry the device cookie of an earlier login.
const NEW_DEVICE_SHARE: f64 = 0.2;

/// How often the gateway's maintenance task prunes (see `server.rs`), in gateway time.
const PRUNE_EVERY: u64 = 5_000_000_000;

pub struct OfflineOptions {
    pub policy_files: Vec<PathBuf>,
    /// Attacking bots solve challenges (pay the proof-of-work); without, they never run them.
    pub solvers: bool,
    /// Country database for the engine's geo defenses (the gateway's `[geoip]`); none: addresses have no country.
    pub geoip: Option<PathBuf>,
    /// Breach filters for the breach defenses (the gateway's `[breach]`).
    pub password_filter: Option<PathBuf>,
    pub pair_filter: Option<PathBuf>,
    /// Virtual seconds per gateway second, as the online run would compress time (1 = faithful).
    pub speed: f64,
    pub max_tracked_keys: usize,
    /// Paths and field names given on the command line, over the policy's own.
    pub api: ApiFlags,
}

pub struct OfflineRun {
    pub tally: Tally,
    /// Blocked or challenged requests per deciding defense.
    pub blocked_by: std::collections::BTreeMap<String, u64>,
    pub processed: u64,
    pub elapsed: Duration,
    pub challenges: Challenges,
    /// The site-wide attack mode over the run.
    pub attack_mode: AttackModeSpan,
}

/// When the site-wide attack mode was on during a run (virtual time since the scenario's start).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttackModeSpan {
    pub first_on: Option<Duration>,
    pub on_for: Duration,
    pub switched_on: u32,
    pub high_for: Duration,
}

/// What the challenges of a run came to. Legitimate users' browsers always solve; attacking bots only with
/// `solvers` (they then pay the proof-of-work, here for real).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Challenges {
    pub issued: u64,
    pub solved_by_attackers: u64,
    pub solved_by_users: u64,
    /// SHA-256 computations the solving took.
    pub hashes: u64,
}

pub fn run(schedule: &Schedule, options: &OfflineOptions) -> anyhow::Result<OfflineRun> {
    let clock = Clock::manual();
    let geo = match &options.geoip {
        Some(path) => Some(Arc::new(SharedGeoDb::open(path, None)?)),
        None => None,
    };
    // A fixed key: offline results depend on the seed alone.
    let mut env =
        Services::new(clock.clone(), options.max_tracked_keys).with_geo(geo).with_secret(b"stuffgate offline replay");
    env.open_breach_filters(options.password_filter.as_deref(), options.pair_filter.as_deref())?;
    let handle = PolicyHandle::load(options.policy_files.clone(), env)?;
    let policy = handle.current();
    let env = handle.env();
    let speed = if options.speed > 0.0 { options.speed } else { 1.0 };
    let origin = clock.now_nanos();
    let mut tally = Tally::new(schedule);
    let mut pending: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut spawned: Vec<Option<Event>> = Vec::new();
    let mut next = 0usize;
    let mut next_prune = origin + PRUNE_EVERY;
    let mut processed = 0u64;
    let mut challenges = Challenges::default();
    let mut attack_mode = AttackModeSpan::default();
    let mut blocked_by: std::collections::BTreeMap<String, u64> = Default::default();
    // The device cookie each real user's browser holds, by account.
    let mut devices: std::collections::HashMap<u32, String> = Default::default();
    let started = Instant::now();
    // The API the policy protects: its paths and field names replace the demo's the schedule is written in.
    let files: Vec<String> = options.policy_files.iter().map(|p| p.display().to_string()).collect();
    let api = ApiShape::from_policy(&policy, &format!("the policy {}", files.join(", ")), &options.api);
    api.refuse_unmatched(&schedule.events, &schedule.scenario)?;
    // The route of each endpoint, matched once as the proxy would match every request.
    let routes = Endpoint::ALL.map(|e| policy.match_route(&http::Method::POST, api.path(e)));

    loop {
        // The earliest of the next scheduled event and the earliest follow-up.
        let from_heap = match (pending.peek(), schedule.events.get(next)) {
            (Some(Reverse((at, _))), Some(e)) => *at < e.at,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let owned;
        let event: &Event = if from_heap {
            let Some(Reverse((_, slot))) = pending.pop() else { break };
            let Some(e) = spawned.get_mut(slot as usize).and_then(Option::take) else { continue };
            owned = e;
            &owned
        } else {
            next += 1;
            &schedule.events[next - 1]
        };
        processed += 1;

        let now = origin + (event.at as f64 / speed) as u64;
        let current = clock.now_nanos();
        if now > current {
            clock.advance(Duration::from_nanos(now - current));
        }
        let now = clock.now_nanos();
        if now >= next_prune {
            let was = env.attack.level();
            handle.maintain();
            let level = env.attack.level();
            if level.on() {
                let since_start = Duration::from_nanos(now - origin);
                attack_mode.first_on.get_or_insert(since_start);
                attack_mode.on_for += Duration::from_nanos(PRUNE_EVERY);
                attack_mode.switched_on += u32::from(!was.on());
                if level == crate::attack::AttackLevel::High {
                    attack_mode.high_for += Duration::from_nanos(PRUNE_EVERY);
                }
            }
            next_prune = now + PRUNE_EVERY;
        }

        let mut flagged = false;
        let answer = match routes[event.endpoint as usize] {
            None => upstream(event),
            Some(index) => {
                let route = &policy.routes[index];
                // The runner sends follow-ups' tokens as `Authorization: Bearer …`; session limits key on that.
                let actor = &schedule.actors[event.actor as usize];
                let attacker = actor.kind.is_attacker();
                let mut headers = super::clients::head(attacker, event.actor, event.account, event.ip);
                if actor.kind.is_legitimate() && event.account < super::schedule::SYNTHETIC_ACCOUNTS {
                    if let Some(cookie) = device_cookie(env, &mut devices, event.account, now) {
                        headers.append(http::header::COOKIE, cookie);
                    }
                }
                if let Some(value) =
                    event.bearer.as_deref().and_then(|t| http::HeaderValue::try_from(format!("Bearer {t}")).ok())
                {
                    headers.insert(http::header::AUTHORIZATION, value);
                }
                let client_fingerprint = crate::fingerprint::http(&headers);
                let mut request = InMemory {
                    ip: event.ip,
                    headers,
                    body: Bytes::copy_from_slice(api.body(event).as_bytes()),
                    client_fingerprint,
                };
                let Ok(mut judged) = engine::decide_now(route, env, &mut request, now);
                // Which bots run a native solver: a stable draw per address, below the actor's share.
                let solves = !attacker
                    || options.solvers
                    || super::clients::draw(event.actor, event.ip, schedule.seed) < actor.solver_share;
                // A challenge: a browser pays it and sends the request again (a solving bot too); at most twice.
                for _ in 0..2 {
                    let Some(issued) = judged.challenge.as_ref().filter(|_| solves) else {
                        break;
                    };
                    challenges.issued += 1;
                    let started = thread_cpu_nanos();
                    let nonce = crate::challenge::token::solve(&issued.token, issued.bits);
                    tally.note_challenge(event, Some(thread_cpu_nanos().saturating_sub(started)));
                    challenges.hashes += nonce + 1;
                    *if attacker { &mut challenges.solved_by_attackers } else { &mut challenges.solved_by_users } += 1;
                    if let Ok(value) = http::HeaderValue::try_from(format!("{}:{nonce}", issued.token)) {
                        request.headers.insert(crate::challenge::facts::SOLUTION_HEADER, value);
                    }
                    let Ok(again) = engine::decide_now(route, env, &mut request, now);
                    judged = again;
                }
                if judged.challenge.is_some() {
                    challenges.issued += 1;
                    tally.note_challenge(event, None);
                }
                flagged = would_block(&judged.decision);
                if matches!(
                    judged.verdict(),
                    crate::defense::Verdict::Block { .. } | crate::defense::Verdict::Challenge
                ) {
                    let by = judged.decision.decided_by.and_then(|i| route.slots.get(i)).map(|s| s.defense.name());
                    let by = by.or_else(|| judged.decision.reasons.first().map(|r| r.defense)).unwrap_or("unknown");
                    *blocked_by.entry(by.to_string()).or_default() += 1;
                }
                match judged.verdict() {
                    crate::defense::Verdict::Block { status, .. } => {
                        Answer { verdict: Verdict::Blocked, status, token: None }
                    }
                    crate::defense::Verdict::Challenge => {
                        Answer { verdict: Verdict::Blocked, status: 428, token: None }
                    }
                    crate::defense::Verdict::Invalid(problem) => {
                        Answer { verdict: Verdict::Invalid, status: problem.status(), token: None }
                    }
                    crate::defense::Verdict::Allow | crate::defense::Verdict::Tag => {
                        let answer = upstream(event);
                        let (_, effects) = engine::observe(route, env, &judged.subject, answer.status, now);
                        // The browser keeps the device token a success issued.
                        let issued = effects.response.iter().find(|(name, _)| *name == DEVICE_TOKEN_HEADER);
                        if let (false, Some((_, token))) = (attacker, issued) {
                            devices.insert(event.account, token.clone());
                        }
                        answer
                    }
                }
            }
        };
        let kind = schedule.actors[event.actor as usize].kind;
        tally.record(event, kind, &answer, None, flagged);
        for follow in follow_ups(event, &answer) {
            let slot = spawned.len() as u64;
            pending.push(Reverse((follow.at, slot)));
            spawned.push(Some(follow));
        }
        // Bounded: follow-ups only come from answered events and never chain without end (retries count down).
        if processed > schedule.events.len() as u64 * 8 + 1_000 {
            break;
        }
    }
    Ok(OfflineRun { tally, blocked_by, processed, elapsed: started.elapsed(), challenges, attack_mode })
}

/// The device cookie a real user's browser sends: the token of an earlier login, except for the share of users on
/// a new device. A user's earlier logins happened before the replay: the device is made known for the account
/// the first time the user shows up.
fn device_cookie(
    env: &Services,
    devices: &mut std::collections::HashMap<u32, String>,
    account: u32,
    now: u64,
) -> Option<http::HeaderValue> {
    use crate::challenge::token::DeviceClaims;
    if let std::collections::hash_map::Entry::Vacant(slot) = devices.entry(account) {
        if super::clients::draw(0, std::net::IpAddr::from([0, 0, 0, 0]), u64::from(account)) < NEW_DEVICE_SHARE {
            return None;
        }
        let seconds = (now / 1_000_000_000) as u32;
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&account.to_le_bytes());
        id[4..8].copy_from_slice(b"user");
        let claims = DeviceClaims { issued: seconds, expires: seconds.saturating_add(30 * 86_400), id };
        let token = env.challenge.keys.issue_device(&claims);
        let email = crate::demo_api::demo_account(account as usize);
        let owner = env.keys.key(KeyKind::Account, crate::attempt::normalise_account(&email).as_bytes());
        let device = env.keys.key(KeyKind::Device, &id);
        let remember = Write::Remember {
            key: owner,
            cell: crate::challenge::KNOWN_DEVICES_CELL,
            member: crate::attempt::print32(device.id),
            cap: env.challenge.max_devices,
            keep: env.challenge.remember.as_nanos() as u64,
        };
        env.store.write(&[remember], now);
        slot.insert(token);
    }
    let token = devices.get(&account)?;
    http::HeaderValue::try_from(format!("{}={token}", env.challenge.cookie_name)).ok()
}

/// CPU time this thread has used: what a native solver pays, whatever else the machine runs.
fn thread_cpu_nanos() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes one `timespec` through a valid pointer to a local.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if ok {
        now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
    } else {
        0
    }
}

/// An observe-mode defense wanted to block.
fn would_block(decision: &Decision) -> bool {
    decision.reasons.iter().any(|r| r.action == "block" && r.mode == Mode::Observe)
}

/// The demo upstream's answer, simulated: valid pair → 200 with a token; else 401; resets → 200; sign-ups → 201;
/// top-ups with a session → 200 (up to the demo's ¥100,000 cap).
fn upstream(event: &Event) -> Answer {
    let (status, token) = match event.endpoint {
        // One session per successful login, as the demo API issues: session-keyed limits must see them apart.
        Endpoint::Login if event.valid => (200, Some(format!("offline-session-{}-{}", event.account, event.at).into())),
        Endpoint::Login => (401, None),
        Endpoint::Reset => (200, None),
        Endpoint::Signup => (201, None),
        Endpoint::Topup
            if event.bearer.is_some() && (1..=crate::demo_api::MAX_TOPUP_YEN as u64).contains(&event.amount) =>
        {
            (200, None)
        }
        Endpoint::Topup => (400, None),
    };
    Answer { verdict: Verdict::Forwarded, status, token }
}
