//! `(scenario, seed) → Vec<Event>` sorted by virtual time, and the follow-ups an answer triggers (a takeover's
//! top-ups with the returned token, a user's second try after a typo or a block). Same scenario and seed, same
//! schedule: every actor draws from its own seeded stream.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use super::addresses::{self, AddressError};
use super::rng::Rng;
use super::scenario::{ActorKind, Cashout, Habits, Params, ResetMethod, Scenario};
use crate::demo_api::{demo_account, demo_password};
use crate::geoip::GeoDb;

/// `Event::visit` of requests that are not a legitimate user's login.
pub const NO_VISIT: u32 = u32::MAX;
/// `Event::account` of requests for an account that does not exist at the target.
pub const NO_ACCOUNT: u32 = u32::MAX;
/// `Event::account` ids from here up name accounts the schedule itself signs up (not `user{i}` demo accounts).
pub const SYNTHETIC_ACCOUNTS: u32 = 0x8000_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Login,
    Reset,
    Signup,
    Topup,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [Endpoint::Login, Endpoint::Reset, Endpoint::Signup, Endpoint::Topup];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Login => "/api/login",
            Endpoint::Reset => "/api/password-reset",
            Endpoint::Signup => "/api/signup",
            Endpoint::Topup => "/api/topup",
        }
    }
}

/// One request of the replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Virtual nanoseconds since the scenario's start.
    pub at: u64,
    pub actor: u16,
    /// The legitimate login this request belongs to, or [`NO_VISIT`].
    pub visit: u32,
    pub ip: IpAddr,
    pub endpoint: Endpoint,
    /// The JSON body, as sent.
    pub body: Box<str>,
    /// The demo account (`user{i:05}@example.com`) concerned, or [`NO_ACCOUNT`].
    pub account: u32,
    /// Login: the pair works at the demo upstream. Reset: a link would go to someone other than the owner.
    pub valid: bool,
    /// Top-up amount in yen.
    pub amount: u64,
    /// Session token of a follow-up (the takeover's top-ups).
    pub bearer: Option<Box<str>>,
    pub plan: Plan,
}

/// What the sender does with the answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    None,
    /// On a successful login, top up with the session token.
    Cashout(Cashout),
    /// A legitimate user's login: with `correct` set, this attempt has a typo and the right password follows
    /// `delay` later, whatever the answer; a gateway block is retried `retries` times, `retry_after` apart.
    Visit {
        correct: Option<Box<str>>,
        delay: u64,
        retries: u8,
        retry_after: u64,
    },
}

/// How a request ended, as far as the schedule cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The upstream answered.
    Forwarded,
    /// The gateway blocked it (4xx/5xx with `x-stuffgate-decision: block`).
    Blocked,
    /// The gateway refused the request as malformed or ambiguous (400/413, `x-stuffgate-decision: invalid`).
    Invalid,
    /// No usable answer: connection error, timeout, or a gateway error page.
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [Verdict::Forwarded, Verdict::Blocked, Verdict::Invalid, Verdict::Error];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Forwarded => "forwarded",
            Verdict::Blocked => "blocked",
            Verdict::Invalid => "invalid",
            Verdict::Error => "error",
        }
    }
}

/// The answer to one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub verdict: Verdict,
    pub status: u16,
    /// The session token of a successful login.
    pub token: Option<Box<str>>,
}

/// Actor names and kinds, in scenario order (`Event::actor` indexes this).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ActorInfo {
    pub name: String,
    pub kind: ActorKind,
    /// Share of its bots that solve challenges (see `Actor::solver_share`).
    pub solver_share: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub scenario: String,
    pub seed: u64,
    pub duration: u64,
    pub actors: Vec<ActorInfo>,
    pub events: Vec<Event>,
    /// The actor of each legitimate visit.
    pub visit_actor: Vec<u16>,
    /// Demo accounts the schedule assumes exist at the target (`user00000` … `user{n-1}`).
    pub accounts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("actor `{actor}`: {source}")]
    Addresses {
        actor: String,
        #[source]
        source: AddressError,
    },
    #[error("the scenario has {0} actors; at most 10,000")]
    TooManyActors(usize),
    #[error("the schedule would hold {0} events; at most 50,000,000 (lower the counts or use --scale)")]
    TooLarge(u64),
}

const SECOND: u64 = 1_000_000_000;
const MAX_EVENTS: u64 = 50_000_000;

/// Words and domains for made-up accounts that do not exist at the target.
const NAME_PARTS: &[&str] = &[
    "ka", "to", "mi", "ha", "ru", "shi", "na", "ko", "yu", "ri", "ta", "ke", "li", "wei", "chen", "ana", "jo", "mar",
    "el", "sa",
];
const MAIL_DOMAINS: &[&str] = &["mail.example", "example.net", "example.org", "inbox.example", "example.jp"];
const PASSWORD_WORDS: &[&str] = &[
    "dragon", "sunshine", "monkey", "sakura", "shadow", "master", "tokyo", "baseball", "princess", "football",
    "letmein", "pokemon", "michael", "summer", "doraemon", "qwerty", "iloveyou", "welcome", "password", "abc123",
];

fn made_up_name(rng: &mut Rng) -> String {
    let a = NAME_PARTS[rng.below(NAME_PARTS.len() as u64) as usize];
    let b = NAME_PARTS[rng.below(NAME_PARTS.len() as u64) as usize];
    format!("{a}{b}.{:x}", rng.next_u32() & 0xfffff)
}

fn made_up_email(rng: &mut Rng) -> String {
    let domain = MAIL_DOMAINS[rng.below(MAIL_DOMAINS.len() as u64) as usize];
    format!("{}@{domain}", made_up_name(rng))
}

fn made_up_password(rng: &mut Rng) -> String {
    let word = PASSWORD_WORDS[rng.below(PASSWORD_WORDS.len() as u64) as usize];
    format!("{word}{:04}{}", rng.below(10_000), ["", "!", "#", "1", "?"][rng.below(5) as usize])
}

/// A wrong password for demo account `i`, never its real one.
fn wrong_password(rng: &mut Rng, i: u32) -> String {
    let real = demo_password(i as usize);
    loop {
        let guess = made_up_password(rng);
        if guess != real {
            return guess;
        }
    }
}

/// A typo of `password`: one character dropped or a neighbour added.
fn typo(rng: &mut Rng, password: &str) -> String {
    let mut chars: Vec<char> = password.chars().collect();
    if chars.len() > 1 && rng.chance(0.5) {
        let at = rng.below(chars.len() as u64) as usize;
        chars.remove(at);
    } else {
        let at = rng.below(chars.len() as u64 + 1) as usize;
        chars.insert(at, ['1', 'q', 'a', 's', ' '][rng.below(5) as usize]);
    }
    chars.into_iter().collect()
}

fn login_body(account: &str, password: &str) -> Box<str> {
    json!({ "email": account, "password": password }).to_string().into_boxed_str()
}

pub fn topup_body(amount: u64) -> Box<str> {
    json!({ "amount": amount }).to_string().into_boxed_str()
}

/// `n` times in `[start, start + span)`: spaced by `pace` (±25%) from a random start when paced, else uniform.
fn times(rng: &mut Rng, n: u32, start: u64, span: u64, pace: Option<u64>) -> Vec<u64> {
    match pace {
        Some(pace) => {
            let needed = pace.saturating_mul(n as u64);
            let mut t = start + rng.below(span.saturating_sub(needed).max(1));
            let end = start + span;
            let mut out = Vec::with_capacity(n as usize);
            for _ in 0..n {
                if t >= end {
                    break;
                }
                out.push(t);
                t += pace * 3 / 4 + rng.below(pace / 2 + 1);
            }
            out
        }
        None => {
            let mut out: Vec<u64> = (0..n).map(|_| start + rng.below(span)).collect();
            out.sort_unstable();
            out
        }
    }
}

/// Accounts handed out to actors, in scenario order, from `user00000` up.
struct Accounts {
    next: u32,
}

impl Accounts {
    fn take(&mut self, n: u32) -> u32 {
        let base = self.next;
        self.next = self.next.saturating_add(n);
        base
    }
}

/// What the first pass settles for each actor before events are drawn.
struct Plan1 {
    base: u32,
    per_address: Vec<u32>,
    valid: u32,
}

/// Build the schedule. `geo` is needed when an actor names countries.
pub fn generate(scenario: &Scenario, seed: u64, geo: Option<&GeoDb>) -> Result<Schedule, ScheduleError> {
    let given_seed = seed;
    if scenario.actors.len() > 10_000 {
        return Err(ScheduleError::TooManyActors(scenario.actors.len()));
    }
    // Streams also depend on the scenario's name, so two scenarios run with one seed against one gateway do not
    // reuse each other's addresses (and inherit each other's counters).
    let seed = seed
        ^ scenario.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    // Pass 1: counts per address and the accounts each actor owns (valid pairs, its users).
    let mut accounts = Accounts { next: 0 };
    let mut plans = Vec::with_capacity(scenario.actors.len());
    let mut total_events = 0u64;
    for (index, actor) in scenario.actors.iter().enumerate() {
        let mut rng = Rng::derive(seed, index as u64, 1);
        let per_address = |rng: &mut Rng, (lo, hi): (u32, u32)| -> Vec<u32> {
            (0..actor.pool.count).map(|_| rng.between(lo as u64, hi as u64) as u32).collect()
        };
        let plan = match &actor.params {
            Params::Stuffer { attempts, valid_ratio, .. } => {
                let per_address = per_address(&mut rng, *attempts);
                let total: u64 = per_address.iter().map(|&n| n as u64).sum();
                total_events += total;
                let valid = (total as f64 * valid_ratio).round() as u32;
                Plan1 { base: accounts.take(valid), per_address, valid }
            }
            Params::Sprayer { passwords, accounts: targets, valid_ratio, .. } => {
                let valid = ((*targets as f64 * valid_ratio).round() as u32).min(*targets);
                total_events += passwords.len() as u64 * *targets as u64 + valid as u64;
                Plan1 { base: 0, per_address: Vec::new(), valid }
            }
            Params::ResetHijacker { attempts, .. } | Params::SignupFarmer { attempts, .. } => {
                let per_address = per_address(&mut rng, *attempts);
                total_events += per_address.iter().map(|&n| n as u64).sum::<u64>();
                Plan1 { base: 0, per_address, valid: 0 }
            }
            Params::Users { users, .. } => {
                total_events += *users as u64;
                Plan1 { base: accounts.take(*users), per_address: Vec::new(), valid: 0 }
            }
            Params::Traveller { users, .. } => {
                total_events += *users as u64 * 2;
                Plan1 { base: accounts.take(*users), per_address: Vec::new(), valid: 0 }
            }
        };
        plans.push(plan);
    }
    if total_events > MAX_EVENTS {
        return Err(ScheduleError::TooLarge(total_events));
    }
    let population = scenario.accounts.unwrap_or(0).max(accounts.next).max(1);

    // Pass 2: addresses and events.
    let mut used = HashSet::new();
    let mut extra_actors: Vec<ActorInfo> = Vec::new();
    // Ids of accounts the schedule creates (not `user{i}` demo accounts), for counting takeovers.
    let mut synthetic: u32 = SYNTHETIC_ACCOUNTS;
    let mut events = Vec::with_capacity(total_events as usize);
    let mut visit_actor = Vec::new();
    for (index, (actor, plan)) in scenario.actors.iter().zip(&plans).enumerate() {
        let actor_id = index as u16;
        let mut rng = Rng::derive(seed, index as u64, 2);
        let address_error = |source| ScheduleError::Addresses { actor: actor.name.clone(), source };
        let pool = addresses::draw(&actor.pool, &mut Rng::derive(seed, index as u64, 3), geo, &mut used)
            .map_err(address_error)?;
        let event =
            |at: u64, ip: IpAddr, endpoint: Endpoint, body: Box<str>, account: u32, valid: bool, plan: Plan| Event {
                at,
                actor: actor_id,
                visit: NO_VISIT,
                ip,
                endpoint,
                body,
                account,
                valid,
                amount: 0,
                bearer: None,
                plan,
            };
        match &actor.params {
            Params::Stuffer { known_account_ratio, cashout, .. } => {
                let total: u32 = plan.per_address.iter().sum();
                // The combo list: valid pairs first, then failures (known accounts with stale passwords, and
                // accounts the target never had), shuffled.
                let mut list: Vec<(u32, bool)> = Vec::with_capacity(total as usize);
                list.extend((0..plan.valid).map(|k| (plan.base + k, true)));
                while list.len() < total as usize {
                    if rng.chance(*known_account_ratio) {
                        list.push((rng.below(population as u64) as u32, false));
                    } else {
                        list.push((NO_ACCOUNT, false));
                    }
                }
                rng.shuffle(&mut list);
                let plan_of = cashout.map(Plan::Cashout).unwrap_or(Plan::None);
                let mut next = 0usize;
                for (address, &count) in plan.per_address.iter().enumerate() {
                    let Some(&ip) = pool.get(address) else { break };
                    for at in times(&mut rng, count, actor.start, actor.span, actor.pace) {
                        let Some(&(account, valid)) = list.get(next) else { break };
                        next += 1;
                        let body = match (account, valid) {
                            (NO_ACCOUNT, _) => login_body(&made_up_email(&mut rng), &made_up_password(&mut rng)),
                            (i, true) => login_body(&demo_account(i as usize), &demo_password(i as usize)),
                            (i, false) => login_body(&demo_account(i as usize), &wrong_password(&mut rng, i)),
                        };
                        events.push(event(at, ip, Endpoint::Login, body, account, valid, plan_of.clone()));
                    }
                }
            }
            Params::Sprayer { passwords, accounts: targets, cashout, .. } => {
                // The accounts whose password is on the list belong to users who signed up with it: they sign up
                // (from their own addresses) as the spray begins, under a setup actor of their own, so the
                // upstream really holds those pairs. The other targets are harvested accounts that exist.
                let setup_actor = (scenario.actors.len() + extra_actors.len()) as u16;
                if plan.valid > 0 {
                    extra_actors.push(ActorInfo {
                        name: format!("{} (victims' sign-ups)", actor.name),
                        kind: ActorKind::Setup,
                        solver_share: 0.0,
                    });
                }
                let victim_pool = addresses::draw(
                    &super::scenario::AddressPool { count: plan.valid, countries: Vec::new() },
                    &mut Rng::derive(seed, index as u64, 5),
                    geo,
                    &mut used,
                )
                .map_err(address_error)?;
                let hit_round: Vec<usize> =
                    (0..plan.valid).map(|_| rng.below(passwords.len() as u64) as usize).collect();
                let mut target_list: Vec<(u32, String)> = Vec::with_capacity(*targets as usize);
                for (k, &round) in hit_round.iter().enumerate() {
                    let id = synthetic;
                    synthetic += 1;
                    let email = format!("{}@example.jp", made_up_name(&mut rng));
                    let body = json!({ "email": email, "password": passwords[round] }).to_string().into_boxed_str();
                    let ip = victim_pool[k % victim_pool.len().max(1)];
                    events.push(Event {
                        actor: setup_actor,
                        ..event(actor.start, ip, Endpoint::Signup, body, id, true, Plan::None)
                    });
                    target_list.push((id, email));
                }
                while target_list.len() < *targets as usize {
                    let i = rng.below(population as u64) as u32;
                    target_list.push((i, demo_account(i as usize)));
                }
                let rounds = passwords.len() as u64;
                // The sign-ups land before the first guess.
                let spray_start = actor.start + SECOND.min(actor.span / 10);
                let spray_span = actor.start + actor.span - spray_start;
                let plan_of = cashout.map(Plan::Cashout).unwrap_or(Plan::None);
                let mut k = 0usize;
                // Spraying goes one password at a time across every account, to stay under per-account lockouts.
                for (round, password) in passwords.iter().enumerate() {
                    let from = spray_start + spray_span * round as u64 / rounds;
                    let width = (spray_span / rounds).max(1);
                    let mut order: Vec<usize> = (0..target_list.len()).collect();
                    rng.shuffle(&mut order);
                    for t in order {
                        let (account, email) = &target_list[t];
                        let valid = hit_round.get(t) == Some(&round);
                        let ip = pool[k % pool.len().max(1)];
                        k += 1;
                        let at = from + rng.below(width);
                        let plan = if valid { plan_of.clone() } else { Plan::None };
                        events.push(event(at, ip, Endpoint::Login, login_body(email, password), *account, valid, plan));
                    }
                }
            }
            Params::ResetHijacker { methods, attacker_domain, known_account_ratio, .. } => {
                let mut k = 0usize;
                for (address, &count) in plan.per_address.iter().enumerate() {
                    let Some(&ip) = pool.get(address) else { break };
                    for at in times(&mut rng, count, actor.start, actor.span, actor.pace) {
                        let (account, victim) = if rng.chance(*known_account_ratio) {
                            let i = rng.below(population as u64) as u32;
                            (i, demo_account(i as usize))
                        } else {
                            (NO_ACCOUNT, made_up_email(&mut rng))
                        };
                        let attacker = format!("{}@{attacker_domain}", made_up_name(&mut rng));
                        let body = match methods[k % methods.len()] {
                            ResetMethod::SendTo => json!({ "email": victim, "send_to": attacker }),
                            ResetMethod::EmailList => json!({ "email": [victim, attacker] }),
                        };
                        k += 1;
                        events.push(event(
                            at,
                            ip,
                            Endpoint::Reset,
                            body.to_string().into_boxed_str(),
                            account,
                            account != NO_ACCOUNT,
                            Plan::None,
                        ));
                    }
                }
            }
            Params::SignupFarmer { domains, .. } => {
                for (address, &count) in plan.per_address.iter().enumerate() {
                    let Some(&ip) = pool.get(address) else { break };
                    for at in times(&mut rng, count, actor.start, actor.span, actor.pace) {
                        let domain = &domains[rng.below(domains.len() as u64) as usize];
                        let email = format!("{}{}@{domain}", made_up_name(&mut rng), rng.below(1000));
                        let body = json!({ "email": email, "password": made_up_password(&mut rng) });
                        events.push(event(
                            at,
                            ip,
                            Endpoint::Signup,
                            body.to_string().into_boxed_str(),
                            NO_ACCOUNT,
                            true,
                            Plan::None,
                        ));
                    }
                }
            }
            Params::Users { users, habits } => {
                for u in 0..*users {
                    let account = plan.base + u;
                    // A user keeps their address; behind a NAT, many users share each one.
                    let ip = pool[u as usize % pool.len().max(1)];
                    let at = actor.start + rng.below(actor.span);
                    let visit = visit_actor.len() as u32;
                    visit_actor.push(actor_id);
                    events.push(visit_event(&mut rng, actor_id, visit, at, ip, account, habits));
                }
            }
            Params::Traveller { users, home, gap, habits } => {
                let home_pool = addresses::draw(home, &mut Rng::derive(seed, index as u64, 4), geo, &mut used)
                    .map_err(address_error)?;
                for u in 0..*users {
                    let account = plan.base + u;
                    let at = actor.start + rng.below(actor.span.saturating_sub(*gap).max(1));
                    for (at, ip) in [
                        (at, home_pool[u as usize % home_pool.len().max(1)]),
                        (at + gap, pool[u as usize % pool.len().max(1)]),
                    ] {
                        let visit = visit_actor.len() as u32;
                        visit_actor.push(actor_id);
                        events.push(visit_event(&mut rng, actor_id, visit, at, ip, account, habits));
                    }
                }
            }
        }
    }
    // Stable: ties keep generation order, so the order is a function of the scenario and seed alone.
    events.sort_by_key(|e| e.at);
    Ok(Schedule {
        scenario: scenario.name.clone(),
        seed: given_seed,
        duration: scenario.duration,
        actors: scenario
            .actors
            .iter()
            .map(|a| ActorInfo { name: a.name.clone(), kind: a.kind, solver_share: a.solver_share })
            .chain(extra_actors)
            .collect(),
        events,
        visit_actor,
        accounts: population,
    })
}

fn visit_event(rng: &mut Rng, actor: u16, visit: u32, at: u64, ip: IpAddr, account: u32, habits: &Habits) -> Event {
    let name = demo_account(account as usize);
    let password = demo_password(account as usize);
    let mistyped = rng.chance(habits.mistype_ratio);
    let (body, correct) = if mistyped {
        (login_body(&name, &typo(rng, &password)), Some(login_body(&name, &password)))
    } else {
        (login_body(&name, &password), None)
    };
    Event {
        at,
        actor,
        visit,
        ip,
        endpoint: Endpoint::Login,
        body,
        account,
        valid: !mistyped,
        amount: 0,
        bearer: None,
        plan: Plan::Visit {
            correct,
            // People notice a typo and retype within seconds.
            delay: rng.between(3, 15) * SECOND,
            retries: habits.retries,
            retry_after: habits.retry_after,
        },
    }
}

/// The requests an answer triggers. Deterministic: delays come from the event, never from a clock.
pub fn follow_ups(event: &Event, answer: &Answer) -> Vec<Event> {
    match &event.plan {
        Plan::None => Vec::new(),
        Plan::Cashout(cashout) => {
            let (Verdict::Forwarded, 200, Some(token)) = (answer.verdict, answer.status, &answer.token) else {
                return Vec::new();
            };
            let n = cashout.topups as u64;
            (1..=n)
                .map(|k| Event {
                    at: event.at + cashout.within * k / (n + 1),
                    endpoint: Endpoint::Topup,
                    body: topup_body(cashout.amount),
                    amount: cashout.amount,
                    valid: true,
                    bearer: Some(token.clone()),
                    plan: Plan::None,
                    visit: NO_VISIT,
                    ..event.clone()
                })
                .collect()
        }
        Plan::Visit { correct, delay, retries, retry_after } => match correct {
            Some(body) => vec![Event {
                at: event.at + delay,
                body: body.clone(),
                valid: true,
                plan: Plan::Visit { correct: None, delay: *delay, retries: *retries, retry_after: *retry_after },
                ..event.clone()
            }],
            None if answer.verdict == Verdict::Blocked && *retries > 0 => vec![Event {
                at: event.at + retry_after,
                plan: Plan::Visit { correct: None, delay: *delay, retries: retries - 1, retry_after: *retry_after },
                ..event.clone()
            }],
            None => Vec::new(),
        },
    }
}

/// Seconds, for reports.
pub fn secs(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64()
}
