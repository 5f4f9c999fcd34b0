//! The decision engine: one [`decide`] for the live proxy and the offline replay alike, so a what-if run judges
//! exactly the sequence that serves.
//!
//! ```text
//! address      client address → its key (and the session header's); facts the address phase needs (geo);
//!              the address-phase defenses: one store round trip, then each decides       → may answer here
//! body         read (bounded) only when the route reads one and nothing answered yet       → 413 / 400 / forward
//! credentials  account normalised and keyed, password keyed (never kept)
//! facts        breach lookups, known source (read in the same round trip as the phase's state)
//! defenses     the credential-phase defenses: one round trip, then each decides             → may answer here
//! ```
//!
//! The upstream's answer comes back through [`observe`]: the defenses name their writes, the store applies them.

use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;

use crate::attempt::{normalise_account, Attempt, Credentials, Facts, IpKey, Subject};
use crate::body::{self, BodyProblem};
use crate::challenge;
use crate::challenge::facts::Presented;
use crate::challenge::seal::{self, Original};
use crate::config::{BadBody, Route, RouteKind, Services};
use crate::defense::pipeline::{self, Batch};
pub use crate::defense::Verdict;
use crate::defense::{known_sources, Decision, Effects, Outcome, Phase};
use crate::fingerprint::ClientFingerprint;
use crate::keys::pair_id;
use crate::store::{KeyKind, Read, Replies, Reply, StateKey, Store, StoreError, Struck, Write};

/// A request as the engine sees it: the client connection (proxy) or a scenario's event (offline replay).
pub trait Request {
    type Error;
    /// The client address, already resolved through trusted proxies.
    fn ip(&self) -> IpAddr;
    fn headers(&self) -> &http::HeaderMap;
    /// The client's stack (JA4, a trusted header, or the request head's), when known.
    fn client_fingerprint(&self) -> Option<ClientFingerprint> {
        None
    }
    /// The request's method, when it has one (the offline replay's events have none).
    fn method(&self) -> Option<&http::Method> {
        None
    }
    /// The request's query string, when it has one.
    fn query(&self) -> Option<&str> {
        None
    }
    /// Read the whole body, refusing more than `limit` bytes.
    fn read_body(&mut self, limit: usize) -> impl Future<Output = Result<BodyRead, Self::Error>> + Send;
}

/// A protected request's body, as far as the engine is concerned.
pub enum BodyRead {
    Read(Bytes),
    /// Larger than the limit it was read with (and not read to its end).
    TooLarge,
}

/// A request held in memory (offline replay, tests, benchmarks).
pub struct InMemory {
    pub ip: IpAddr,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub client_fingerprint: Option<ClientFingerprint>,
}

impl Request for InMemory {
    type Error = std::convert::Infallible;
    fn ip(&self) -> IpAddr {
        self.ip
    }
    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
    fn client_fingerprint(&self) -> Option<ClientFingerprint> {
        self.client_fingerprint
    }
    async fn read_body(&mut self, limit: usize) -> Result<BodyRead, Self::Error> {
        Ok(if self.body.len() > limit { BodyRead::TooLarge } else { BodyRead::Read(self.body.clone()) })
    }
}

/// The engine's verdict on a request, with what it keeps for the upstream's answer.
pub struct Judged {
    pub subject: Subject,
    pub decision: Decision,
    /// The body was read (so an answer need not drain it).
    pub body_read: bool,
    /// Headers for the upstream request (tags) — see also [`observe`] for the response's.
    pub effects: Effects,
    /// The challenge to answer with, when the verdict is `Challenge`.
    pub challenge: Option<challenge::Issued>,
    /// The body to forward instead of the one read: the original login, unsealed from a challenge page's
    /// re-submit (the proxy swaps it in and fixes `Content-Type` and `Content-Length`).
    pub replacement: Option<Original>,
    /// The body was read but did not give the route's fields, and the request went on (observe mode, or
    /// `on_bad_body = "forward"`): logged with the decision.
    pub body_problem: Option<BodyProblem>,
}

impl Judged {
    /// A decision before the body is read: no effects, challenge or replacement yet.
    fn before_body(subject: Subject, decision: Decision) -> Judged {
        Judged {
            subject,
            decision,
            body_read: false,
            effects: Effects::default(),
            challenge: None,
            replacement: None,
            body_problem: None,
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.decision.verdict()
    }
}

/// Who is asking, from the address alone.
fn address_subject<R: Request>(route: &Route, env: &Services, request: &R) -> Subject {
    let ip = request.ip();
    let ip_key = IpKey::new(ip, route.ipv6_prefix);
    let session = route
        .needs
        .session_header
        .as_ref()
        .and_then(|name| request.headers().get(name))
        .map(|value| env.keys.key(KeyKind::Session, value.as_bytes()));
    Subject {
        ip,
        ip_key,
        address: env.keys.address(ip_key.0),
        account: None,
        account_address: None,
        password: None,
        session,
        facts: Facts {
            client_fingerprint: request.client_fingerprint(),
            attack: env.attack.level(),
            ..Default::default()
        },
    }
}

/// Serve a phase's reads. A failing store never fails the request: its reads answer as if nothing were stored
/// (fail open to what the local defenses decide), and the fallback is counted.
async fn read_phase(store: &dyn Store, batch: &mut Batch, now: u64) {
    if batch.reads.is_empty() {
        return;
    }
    let result = store.read(&batch.reads, now, &mut batch.replies).await;
    if let Err(error) = result {
        fallback(&batch.reads, &mut batch.replies, &error);
    }
}

fn fallback(reads: &[Read], replies: &mut Replies, error: &StoreError) {
    crate::telemetry::metrics::STORE_FALLBACKS
        .with_label_values(&[match error {
            StoreError::Timeout => "timeout",
            StoreError::Backend(_) => "error",
        }])
        .inc();
    replies.clear();
    replies.extend(reads.iter().map(|read| match read {
        Read::Gcra { .. } => Reply::Admit,
        Read::Penalty { .. } => Reply::Penalty(0),
        Read::Contains { .. } => Reply::Contains(false),
        Read::Last { .. } => Reply::Last(None),
        // A single-use token cannot be checked: refuse it (the client gets a fresh challenge, not a bypass).
        Read::Claim { .. } => Reply::Claimed(false),
    }));
}

/// Decide on one request to `route`. Reads the body from `body` only when the route needs it and no address-phase
/// defense answered first.
pub async fn decide<R: Request>(route: &Route, env: &Services, request: &mut R, now: u64) -> Result<Judged, R::Error> {
    let mut subject = address_subject(route, env, request);
    if route.needs.geo_before_body {
        locate(env, &mut subject);
    }
    let mut decision = Decision::default();
    if let Some(ban) = env.decisions.banned(subject.ip, now) {
        decision.answered = Some(banned_verdict(&ban, now));
        decision.reasons.push(banned_reason());
        return Ok(Judged::before_body(subject, decision));
    }
    let mut batch = Batch::default();
    {
        let attempt = Attempt { subject, credentials: Credentials::default(), headers: request.headers() };
        batch.gather(&route.slots, Phase::Address, &attempt);
        read_phase(env.store.as_ref(), &mut batch, now).await;
        pipeline::judge(&route.slots, &batch, &attempt, now, &mut decision);
    }
    let mut judged = Judged::before_body(subject, decision);
    if !judged.decision.open() || !route.reads_body() {
        note_refusal(route, env, &judged, now);
        finish(&mut judged);
        return Ok(judged);
    }

    let facts = route.needs.facts;
    // A challenge page's re-submit carries the original body sealed, so it is larger than the route's bodies.
    let limit = if facts.solution { seal::envelope_limit(route.max_body_bytes) } else { route.max_body_bytes };
    let bytes = match request.read_body(limit).await? {
        BodyRead::Read(bytes) => {
            judged.body_read = true;
            bytes
        }
        BodyRead::TooLarge => {
            judged.decision.answered = Some(Verdict::Invalid(BodyProblem::TooLarge));
            return Ok(judged);
        }
    };
    let headers = request.headers();
    let sent_type = headers.get(http::header::CONTENT_TYPE).map(|v| v.as_bytes());
    let envelope = if facts.solution { seal::detect(sent_type, &bytes) } else { None };
    let original = match &envelope {
        None => None,
        Some(envelope) => match seal::open(&env.challenge.keys, &envelope.token, &envelope.sealed) {
            Some(original) => Some(original),
            None => {
                judged.decision.answered = Some(Verdict::Invalid(BodyProblem::Malformed));
                return Ok(judged);
            }
        },
    };
    // The body checks run on the original body, whichever way it came.
    let (bytes, content_type): (&[u8], Option<&[u8]>) = match &original {
        Some(original) => (&original.body, original.content_type.as_deref().map(str::as_bytes)),
        None => (&bytes, sent_type),
    };
    if bytes.len() > route.max_body_bytes {
        judged.decision.answered = Some(Verdict::Invalid(BodyProblem::TooLarge));
        return Ok(judged);
    }
    // What two parsers could read differently is refused like a body that cannot be read (see `body`).
    let extracted = route
        .check_method(request.method())
        .and_then(|()| body::check_request(headers, request.query(), route.wanted_fields()))
        .and_then(|()| body::body_type(content_type, bytes))
        .and_then(|kind| body::extract(kind, bytes, route.wanted_fields()));
    let fields = match extracted {
        Ok(fields) if fields.account().is_some() || route.account_field.is_none() => fields,
        refused => {
            let problem = match &refused {
                Ok(_) => BodyProblem::NoAccount,
                Err(error) => BodyProblem::from_error(error),
            };
            // Observe mode lets through what it would refuse: a missing field is counted and logged, not answered.
            let refuse = route.on_bad_body == BadBody::Reject && !route.observes_only;
            let handling = if refuse { "refused" } else { "forwarded" };
            crate::telemetry::metrics::BODY_PROBLEMS
                .with_label_values(&[&route.name, problem.reason(), handling])
                .inc();
            if refuse {
                judged.decision.answered = Some(Verdict::Invalid(problem));
            } else {
                judged.body_problem = Some(problem);
            }
            finish(&mut judged);
            return Ok(judged);
        }
    };

    let account = fields.account().map(normalise_account);
    let password = fields.password().map(str::as_bytes);
    let subject = &mut judged.subject;
    if let Some(account) = account.as_deref() {
        let key = env.keys.key(KeyKind::Account, account.as_bytes());
        subject.account = Some(key);
        subject.account_address =
            Some(StateKey { kind: KeyKind::AccountAddress, id: pair_id(key.id, subject.address.id) });
    }
    if let (true, Some(password)) = (route.needs.fields.password, password) {
        subject.password = Some(env.keys.key(KeyKind::Password, password));
    }
    if facts.geo && !route.needs.geo_before_body {
        locate(env, subject);
    }
    if let Some(password) = password {
        if let (true, Some(filter)) = (facts.breached_password, &env.breached_passwords) {
            subject.facts.breach.password = filter.load().contains_password_any_case(password);
        }
        if let (true, Some(filter), Some(account)) = (facts.leaked_pair, &env.leaked_pairs, account.as_deref()) {
            subject.facts.breach.pair = filter.load().contains_pair(account, password);
        }
    }

    let credentials = Credentials { account: account.as_deref(), password, target: fields.target() };
    let mut attempt = Attempt { subject: judged.subject, credentials, headers };
    batch.clear();
    let known_source_read = if facts.known_source { known_sources::read(&attempt.subject) } else { None };
    batch.reads.extend(known_source_read);
    let presented = match &envelope {
        Some(e) => Some(Presented { token: &e.token, nonce: &e.nonce, signals: Some(&e.signals) }),
        None => challenge::facts::from_header(headers),
    };
    let pending = if facts.device || facts.solution {
        let subject = &mut attempt.subject;
        challenge::facts::gather(
            &env.challenge,
            &env.keys,
            &route.name,
            facts,
            subject,
            headers,
            presented,
            now,
            &mut batch.reads,
        )
    } else {
        Default::default()
    };
    batch.gather(&route.slots, Phase::Credentials, &attempt);
    read_phase(env.store.as_ref(), &mut batch, now).await;
    if known_source_read.is_some() {
        attempt.subject.facts.known_source = batch.replies.first() == Some(&Reply::Contains(true));
    }
    challenge::facts::apply(&pending, &batch.replies, &mut attempt.subject);
    if envelope.is_some() && !matches!(attempt.subject.facts.challenge, challenge::Solution::Passed { .. }) {
        // A sealed login is single use and bound to its challenge: once spent, expired, unsolved or throttled it
        // is refused, never forwarded nor sealed again into a fresh challenge (which made it replayable).
        judged.subject = attempt.subject;
        judged.decision.answered = Some(Verdict::Invalid(BodyProblem::SealedLoginUnusable));
        return Ok(judged);
    }
    pipeline::judge(&route.slots, &batch, &attempt, now, &mut judged.decision);
    judged.subject = attempt.subject;
    if judged.decision.answered == Some(Verdict::Challenge) {
        // A browser gets a page that re-submits the original body, sealed.
        let accept = headers.get(http::header::ACCEPT).map(|v| v.as_bytes());
        let to_seal = crate::answer::wants_html(accept).then(|| match &original {
            Some(original) => original.clone(),
            None => Original {
                content_type: sent_type.map(|t| String::from_utf8_lossy(t).into_owned()),
                body: Bytes::copy_from_slice(bytes),
            },
        });
        let bits = judged.decision.challenge_bits;
        judged.challenge =
            Some(challenge::issue(&env.challenge, &route.name, &judged.subject, bits, to_seal.as_ref(), now));
    } else if judged.decision.verdict().forwards() {
        judged.replacement = original;
    }
    note_refusal(route, env, &judged, now);
    finish(&mut judged);
    Ok(judged)
}

/// A login the gateway refused (blocked, reset required) from a device the account has not used counts as a
/// failure for the site-wide attack mode: an attack the gateway already stops must keep the mode on.
/// Challenges are not counted: a real user's browser pays them and the login's outcome is counted then.
fn note_refusal(route: &Route, env: &Services, judged: &Judged, now: u64) {
    if route.kind == RouteKind::Login && matches!(judged.decision.verdict(), Verdict::Block { .. }) {
        let device = &judged.subject.facts.device;
        if !device.trusted() {
            env.attack.note(now, true, true);
        }
    }
}

/// The answer to an address under a manual ban (see `crate::decisions`): 403 until the ban ends.
pub fn banned_verdict(ban: &crate::decisions::Ban, now: u64) -> Verdict {
    let retry_after =
        ban.until.map(|until| std::time::Duration::from_secs(until.saturating_sub(now / 1_000_000_000).max(1)));
    Verdict::Block { status: 403, retry_after }
}

/// The decision event's reason for a manual ban (no slot of the route decided it).
fn banned_reason() -> crate::defense::Reason {
    crate::defense::Reason {
        slot: usize::MAX,
        defense: "manual_ban",
        reason: "banned",
        action: "block",
        mode: crate::defense::Mode::Enforce,
        header: None,
    }
}

/// The tags for the app, once the decision is final.
fn finish(judged: &mut Judged) {
    if !judged.decision.verdict().forwards() || judged.decision.tags().next().is_none() {
        return;
    }
    let mut signals = String::new();
    for tag in judged.decision.tags() {
        if !signals.is_empty() {
            signals.push(',');
        }
        signals.push_str(tag.defense);
    }
    judged.effects.upstream.push(("x-stuffgate-signals", signals));
    let own: Vec<_> = judged.decision.tags().filter_map(|tag| tag.header.clone()).collect();
    judged.effects.upstream.extend(own);
}

/// Locate the subject's address, once.
pub fn locate(env: &Services, subject: &mut Subject) {
    if let Some(geo) = &env.geo {
        subject.facts.geo = geo.load().lookup(subject.ip);
        subject.facts.located = true;
    }
}

/// Feed the upstream's answer back: the defenses' writes go to the store; returns the outcome and the headers the
/// client's response gets.
pub fn observe(route: &Route, env: &Services, subject: &Subject, status: u16, now: u64) -> (Outcome, Effects) {
    let outcome = route.outcome_of(status);
    if route.kind == RouteKind::Login && outcome != Outcome::Other {
        let device = &subject.facts.device;
        let unknown = !device.trusted();
        env.attack.note(now, true, outcome == Outcome::Failure && unknown);
    }
    // Sized once: a login under the default policy writes about one record per defense, and growing from empty
    // cost three allocations per request.
    let mut writes: Vec<Write> = Vec::with_capacity(route.slots.len() + 1);
    let mut effects = Effects::default();
    // Where each slot's writes start, so that a penalty a write imposes is listed under its defense.
    let mut owners: smallvec::SmallVec<[(usize, usize); 8]> = smallvec::SmallVec::new();
    for (index, slot) in route.slots.iter().enumerate() {
        let before = writes.len();
        slot.defense.record(subject, outcome, &mut writes);
        owners.push((before, index));
        slot.defense.on_answer(subject, outcome, &mut effects);
    }
    if let (Outcome::Success, RouteKind::Login) = (outcome, route.kind) {
        writes.extend(known_sources::record_success(subject));
    }
    if !writes.is_empty() {
        let mut struck = Struck::new();
        env.store.write_reporting(&writes, now, &mut struck);
        // List the penalties these writes imposed (see `crate::decisions`) under the defense that named them.
        for (at, left) in struck {
            let (Some(slot), Some(write)) = (owners.iter().rev().find(|(start, _)| *start <= at), writes.get(at))
            else {
                continue;
            };
            let defense = route.slots[slot.1].defense.name();
            let (key, cell) = (write.key(), write.cell());
            env.decisions.note_penalty(key, cell, &route.name, defense, subject.ip, subject.account, now, left);
        }
    }
    (outcome, effects)
}

/// Poll a decision that cannot wait: the offline replay and benchmarks run on the local store, which answers at
/// once, and on in-memory bodies.
pub fn decide_now<R: Request>(route: &Route, env: &Services, request: &mut R, now: u64) -> Result<Judged, R::Error> {
    let future = std::pin::pin!(decide(route, env, request, now));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut cx) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => unreachable!("decide_now is used with the local store and in-memory bodies only"),
    }
}
