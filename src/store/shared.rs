//! State shared by several gateways: the local store, and Redis/Valkey beside it. Decisions take the stricter of the
//! two, so losing Redis falls back to exactly what one gateway decides alone.
//!
//! * **Reads** are answered by the local store at once, and the reads of shared key kinds by Redis in one pipelined
//!   round trip under the phase deadline. The answers merge per operation:
//!
//!   | read      | merged answer                                                                             |
//!   |-----------|-------------------------------------------------------------------------------------------|
//!   | GCRA      | `Wait` if either waits (the longer wait); both consumed a token                          |
//!   | Penalty   | the longer penalty                                                                        |
//!   | Contains  | true if either holds the member: membership is what other gateways learned (a device or  |
//!   |           | source known through A is known on B); the local set only ever knows less                |
//!   | Last      | Redis's value when it has one (the fleet's latest), else the local one                   |
//!   | Claim     | claimed only if both granted it: a token spent anywhere is refused everywhere            |
//!
//! * **Failure**: a round trip that errs or misses the deadline leaves the local answers standing (counted in
//!   `stuffgate_store_fallbacks_total{reason}`, logged once per interval); `failures` of them in a row open the
//!   circuit breaker, and while it is open no request waits on Redis at all. A probe closes it again.
//! * **Writes** go to the local store at once and, for shared kinds, into a bounded queue that a background task
//!   flushes in pipelined batches; a full queue, an open breaker or a failed batch drops them (counted). The local
//!   store still has them, so a gateway never forgets what it saw itself.
//!
//! Two Redis connections, both on a small runtime of their own ("stuffgate-shared" thread), connected at start: one
//! serves reads, so a read never queues behind a batch of write scripts; the other flushes writes (waking every
//! `write_flush`, never per write) and probes the breaker. (Serving reads from the proxy's own runtime instead was
//! measured: the same CPU per login, and a start-up race; see benches/RESULTS.md.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::sync::mpsc;

use super::breaker::{Breaker, BreakerSettings, Transition};
use super::redis::RedisStore;
use super::{
    KeyCounts, KeyKind, LocalStore, Read, ReadFuture, Reads, Replies, Reply, StateKey, Store, StoreError, Struck, Write,
};
use crate::telemetry::metrics;

/// `[shared_state]` of the gateway file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSettings {
    /// `redis://host:port/db` or `rediss://` (TLS); Valkey speaks the same.
    pub url: String,
    /// Prefix of every key, with the layout version (`sg:v2:`).
    pub key_prefix: String,
    /// Longest a decision phase waits for Redis.
    pub read_deadline: Duration,
    /// Longest a write waits in the queue before its batch is sent.
    pub write_flush: Duration,
    /// Most writes per batch.
    pub write_batch: usize,
    /// Most writes waiting; more are dropped and counted.
    pub write_queue: usize,
    pub breaker: BreakerSettings,
    /// Which key kinds are shared, by `KeyKind as usize`.
    pub share: [bool; 8],
}

impl SharedSettings {
    /// Shared unless configured otherwise: account-keyed state (failures, rates, known sources, last country),
    /// sprayed passwords, client fingerprints, devices and spent challenge tokens. Address- and session-keyed state (the flood guards:
    /// `ip_rate`, `ip_failures`, `distinct_accounts` per address, `session_rate`) stays local: it is where floods
    /// land, and a Redis round trip per flooded request buys little.
    pub const DEFAULT_SHARE: [KeyKind; 6] = [
        KeyKind::Account,
        KeyKind::AccountAddress,
        KeyKind::Password,
        KeyKind::Device,
        KeyKind::Challenge,
        KeyKind::Fingerprint,
    ];

    pub fn new(url: &str) -> SharedSettings {
        let mut share = [false; KeyKind::ALL.len()];
        for kind in Self::DEFAULT_SHARE {
            share[kind as usize] = true;
        }
        SharedSettings {
            url: url.to_string(),
            key_prefix: "sg:v2:".to_string(),
            read_deadline: Duration::from_millis(3),
            write_flush: Duration::from_millis(2),
            write_batch: 128,
            write_queue: 65_536,
            breaker: BreakerSettings::default(),
            share,
        }
    }

    pub fn shares(&self, kind: KeyKind) -> bool {
        self.share[kind as usize]
    }

    /// How long a write batch may take: generous next to the read deadline (nobody waits on it), short enough that
    /// a hung server fills the queue slowly.
    fn write_timeout(&self) -> Duration {
        (self.read_deadline * 20).max(Duration::from_millis(50))
    }
}

/// The phase a batch of reads belongs to, for the histogram: credentials once any key comes from the body.
fn phase_of(reads: &[Read]) -> &'static str {
    let from_body =
        reads.iter().any(|r| matches!(r.key().kind, KeyKind::Account | KeyKind::AccountAddress | KeyKind::Password));
    if from_body {
        "credentials"
    } else {
        "address"
    }
}

/// The stricter of a local and a shared answer to the same read (see the module's table).
pub fn stricter(local: Reply, shared: Reply) -> Reply {
    match (local, shared) {
        (Reply::Wait(a), Reply::Wait(b)) => Reply::Wait(a.max(b)),
        (Reply::Wait(a), Reply::Admit) | (Reply::Admit, Reply::Wait(a)) => Reply::Wait(a),
        (Reply::Admit, Reply::Admit) => Reply::Admit,
        (Reply::Penalty(a), Reply::Penalty(b)) => Reply::Penalty(a.max(b)),
        (Reply::Contains(a), Reply::Contains(b)) => Reply::Contains(a || b),
        (Reply::Last(a), Reply::Last(b)) => Reply::Last(b.or(a)),
        (Reply::Claimed(a), Reply::Claimed(b)) => Reply::Claimed(a && b),
        (local, _) => local,
    }
}

/// At most one warning per interval, with how many events it stands for.
struct LogLimiter {
    last: AtomicU64,
    pending: AtomicU64,
    origin: Instant,
}

const LOG_INTERVAL_MS: u64 = 10_000;

impl LogLimiter {
    fn new() -> LogLimiter {
        LogLimiter { last: AtomicU64::new(0), pending: AtomicU64::new(0), origin: Instant::now() }
    }

    fn note(&self, reason: &'static str, detail: &str) {
        let events = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.origin.elapsed().as_millis() as u64 + LOG_INTERVAL_MS;
        let last = self.last.load(Ordering::Relaxed);
        if now < last + LOG_INTERVAL_MS
            || self.last.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        self.pending.fetch_sub(events, Ordering::Relaxed);
        tracing::warn!(
            reason,
            detail,
            events,
            "shared state store unavailable: deciding on local state (logged at most every 10 s)"
        );
    }
}

/// What the request path and the background tasks share.
struct Shared {
    /// Reads (see the module note).
    reader: Arc<RedisStore>,
    /// Whether the read client has been connected once: until then a read waits (within the deadline) for the
    /// connection it started; afterwards a disconnected client means a server gone, and reads do not wait.
    reader_was_up: AtomicBool,
    /// Writes and probes, on the background runtime.
    redis: Arc<RedisStore>,
    breaker: Breaker,
    settings: SharedSettings,
    log: LogLimiter,
    /// The background runtime, for script reloads asked for by the request path.
    runtime: tokio::runtime::Handle,
    reloading: AtomicBool,
}

impl Shared {
    fn fail(&self, reason: &'static str, detail: &str) {
        metrics::STORE_FALLBACKS.with_label_values(&[reason]).inc();
        self.log.note(reason, detail);
    }

    fn failed_round_trip(&self, reason: &'static str, detail: &str) {
        self.fail(reason, detail);
        if self.breaker.failure() == Some(Transition::Opened) {
            metrics::SHARED_STORE_UP.set(0);
            tracing::warn!(
                reason,
                failures = self.breaker.settings().failures,
                "shared state store: circuit breaker open; deciding on local state until a probe succeeds"
            );
        }
    }

    /// Load the scripts again (a restarted server forgot them), once at a time.
    fn reload_scripts(self: &Arc<Self>) {
        if self.reloading.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            shared.reader.load_scripts().await;
            shared.reloading.store(false, Ordering::Release);
        });
    }
}

/// The composite store: local state, with Redis beside it for the shared key kinds.
pub struct SharedStore {
    local: LocalStore,
    shared: Arc<Shared>,
    queue: mpsc::Sender<(Write, u64)>,
}

impl SharedStore {
    /// Start the Redis client and the background tasks. Does not wait for Redis: a server that is down at start
    /// means local decisions (and counted fallbacks) until it is up.
    pub fn start(local: LocalStore, settings: SharedSettings) -> Result<SharedStore, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the shared-state runtime: {e}"))?;
        let client = || {
            RedisStore::new(&settings.url, &settings.key_prefix, settings.read_deadline, settings.write_timeout())
                .map(Arc::new)
        };
        let (reader, redis) = (client()?, client()?);
        let (queue, receiver) = mpsc::channel(settings.write_queue.max(1));
        let shared = Arc::new(Shared {
            reader,
            reader_was_up: AtomicBool::new(false),
            redis,
            breaker: Breaker::new(settings.breaker),
            settings,
            log: LogLimiter::new(),
            runtime: runtime.handle().clone(),
            reloading: AtomicBool::new(false),
        });
        let background = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("stuffgate-shared".into())
            .spawn(move || {
                runtime.block_on(async move {
                    background.reader.connect();
                    background.redis.connect();
                    // The writer ends when the store is dropped (its queue closes); the probe with it.
                    tokio::select! {
                        () = write_behind(Arc::clone(&background), receiver) => {}
                        () = probe(Arc::clone(&background)) => {}
                    }
                });
            })
            .map_err(|e| format!("cannot start the shared-state thread: {e}"))?;
        metrics::SHARED_STORE_UP.set(0);
        Ok(SharedStore { local, shared, queue })
    }

    pub fn settings(&self) -> &SharedSettings {
        &self.shared.settings
    }

    /// The local side (tests, gauges).
    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// Whether the breaker lets requests wait on Redis now.
    pub fn breaker_open(&self) -> bool {
        self.shared.breaker.is_open()
    }

    fn shares(&self, key: StateKey) -> bool {
        self.shared.settings.shares(key.kind)
    }

    /// Redis's own answers to `reads`, without the local store, deadline or breaker (tests, diagnostics).
    pub async fn read_shared_only(&self, reads: &[Read], now: u64) -> Result<Vec<Result<Reply, String>>, StoreError> {
        self.shared.reader.read(reads, now).await
    }

    /// Send `writes` to Redis now, bypassing the queue and the local store (tests, diagnostics). Returns how many
    /// of them Redis refused.
    pub async fn write_shared_now(&self, writes: &[Write], now: u64) -> Result<usize, StoreError> {
        let batch: Vec<(Write, u64)> = writes.iter().map(|w| (*w, now)).collect();
        self.shared.redis.write(&batch).await.map(|report| report.failed)
    }

    /// Wait (up to `timeout`) until the client is connected and the scripts are loaded.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.shared.reader.is_connected() && self.shared.redis.is_connected() && self.shared.redis.ping().await {
                self.shared.redis.load_scripts().await;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Store for SharedStore {
    fn read<'a>(&'a self, reads: &'a [Read], now: u64, replies: &'a mut Replies) -> ReadFuture<'a> {
        let first = replies.len();
        // The local store answers at once; its answers stand if Redis does not answer.
        if let Some(Err(error)) = self.local.read(reads, now, replies).now_or_never() {
            return ReadFuture::Ready(Err(error));
        }
        let picked: SmallVec<[usize; 8]> =
            reads.iter().enumerate().filter(|(_, r)| self.shares(r.key())).map(|(i, _)| i).collect();
        if picked.is_empty() {
            return ReadFuture::Ready(Ok(()));
        }
        let shared = &self.shared;
        if shared.breaker.is_open() {
            shared.fail("breaker_open", "circuit breaker open");
            return ReadFuture::Ready(Ok(()));
        }
        let connected = shared.reader.is_connected();
        if connected {
            if !shared.reader_was_up.load(Ordering::Relaxed) {
                shared.reader_was_up.store(true, Ordering::Relaxed);
            }
        } else if shared.reader_was_up.load(Ordering::Relaxed) {
            // The server is gone and the client reconnecting in the background: nothing to wait for.
            shared.fail("error", "not connected");
            return ReadFuture::Ready(Ok(()));
        }
        ReadFuture::Pending(Box::pin(async move {
            let subset: Reads = picked.iter().map(|&i| reads[i]).collect();
            let started = Instant::now();
            let deadline = shared.settings.read_deadline;
            let round_trip = async {
                if !connected {
                    // The first reads after start: the connection is being made.
                    shared.reader.wait_for_connect().await?;
                }
                shared.reader.read(&subset, now).await
            };
            let answer = tokio::time::timeout(deadline, round_trip).await;
            metrics::SHARED_SECONDS.with_label_values(&[phase_of(&subset)]).observe(started.elapsed().as_secs_f64());
            match answer {
                Ok(Ok(answers)) => {
                    shared.breaker.success();
                    let mut failed = None;
                    for (&at, answer) in picked.iter().zip(answers) {
                        match answer {
                            Ok(reply) => replies[first + at] = stricter(replies[first + at], reply),
                            Err(error) => failed = Some(error),
                        }
                    }
                    if let Some(error) = failed {
                        if error.contains("NOSCRIPT") {
                            shared.reload_scripts();
                        }
                        shared.fail("error", &error);
                    }
                }
                Ok(Err(StoreError::Timeout)) | Err(_) => shared.failed_round_trip("timeout", "deadline passed"),
                Ok(Err(StoreError::Backend(error))) => shared.failed_round_trip("error", &error),
            }
            Ok(())
        }))
    }

    fn write(&self, writes: &[Write], now: u64) {
        self.write_reporting(writes, now, &mut Struck::new());
    }

    /// The local store applies at once and reports its penalties; the shared writes go behind.
    fn write_reporting(&self, writes: &[Write], now: u64, struck: &mut Struck) {
        self.local.write_reporting(writes, now, struck);
        for write in writes.iter().filter(|w| self.shares(w.key())) {
            if self.shared.breaker.is_open() {
                metrics::SHARED_WRITES_DROPPED.with_label_values(&["breaker_open"]).inc();
                continue;
            }
            if self.queue.try_send((*write, now)).is_err() {
                metrics::SHARED_WRITES_DROPPED.with_label_values(&["queue_full"]).inc();
            }
        }
    }

    fn prune(&self, now: u64) {
        // Redis expires its keys itself.
        self.local.prune(now);
    }

    fn tracked_keys(&self) -> KeyCounts {
        self.local.tracked_keys()
    }
}

/// Flush queued writes every `write_flush` (and at once while a full batch waits). Writers only fill the queue: a
/// write never wakes this task, so a login costs no thread hand-off for its writes.
async fn write_behind(shared: Arc<Shared>, mut receiver: mpsc::Receiver<(Write, u64)>) {
    let settings = &shared.settings;
    let most = settings.write_batch.max(1);
    let mut batch = Vec::with_capacity(most);
    let mut tick = tokio::time::interval(settings.write_flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            batch.clear();
            while batch.len() < most {
                match receiver.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) if batch.is_empty() => return,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == most;
            flush(&shared, &batch).await;
            if !full {
                break;
            }
        }
    }
}

async fn flush(shared: &Shared, batch: &[(Write, u64)]) {
    let sent = batch.len() as u64;
    if shared.breaker.is_open() {
        metrics::SHARED_WRITES_DROPPED.with_label_values(&["breaker_open"]).inc_by(sent);
        return;
    }
    match tokio::time::timeout(shared.settings.write_timeout(), shared.redis.write(batch)).await {
        Ok(Ok(report)) => {
            shared.breaker.success();
            metrics::SHARED_WRITES.inc_by(sent - report.failed as u64);
            if report.failed > 0 {
                metrics::SHARED_WRITES_DROPPED.with_label_values(&["error"]).inc_by(report.failed as u64);
                if report.noscript {
                    shared.redis.load_scripts().await;
                }
            }
        }
        Ok(Err(StoreError::Timeout)) | Err(_) => {
            metrics::SHARED_WRITES_DROPPED.with_label_values(&["timeout"]).inc_by(sent);
            if shared.breaker.failure() == Some(Transition::Opened) {
                metrics::SHARED_STORE_UP.set(0);
                tracing::warn!("shared state store: circuit breaker open (writes timed out)");
            }
        }
        Ok(Err(StoreError::Backend(error))) => {
            metrics::SHARED_WRITES_DROPPED.with_label_values(&["error"]).inc_by(sent);
            shared.log.note("error", &error);
            if shared.breaker.failure() == Some(Transition::Opened) {
                metrics::SHARED_STORE_UP.set(0);
                tracing::warn!(%error, "shared state store: circuit breaker open (writes failed)");
            }
        }
    }
}

/// Probe an open breaker with PING (its open time doubling per failure, up to `max_open`), and keep the up gauge.
async fn probe(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up = false;
    loop {
        tick.tick().await;
        if shared.breaker.probe_due() {
            let ok = shared.redis.ping().await;
            if ok {
                shared.redis.load_scripts().await;
            }
            if shared.breaker.probed(ok) == Some(Transition::Closed) {
                tracing::info!("shared state store: answering again, circuit breaker closed");
            }
        }
        let up = !shared.breaker.is_open() && shared.redis.is_connected() && shared.reader.is_connected();
        if up != was_up {
            metrics::SHARED_STORE_UP.set(up as i64);
            if up {
                tracing::info!(url = %redacted(&shared.settings.url), "shared state store connected");
            }
            was_up = up;
        }
    }
}

/// A URL without its password, for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stricter_answer_wins() {
        assert_eq!(stricter(Reply::Admit, Reply::Wait(5)), Reply::Wait(5));
        assert_eq!(stricter(Reply::Wait(7), Reply::Admit), Reply::Wait(7));
        assert_eq!(stricter(Reply::Wait(7), Reply::Wait(9)), Reply::Wait(9));
        assert_eq!(stricter(Reply::Penalty(3), Reply::Penalty(0)), Reply::Penalty(3));
        assert_eq!(stricter(Reply::Contains(false), Reply::Contains(true)), Reply::Contains(true));
        assert_eq!(stricter(Reply::Last(Some(1)), Reply::Last(None)), Reply::Last(Some(1)));
        assert_eq!(stricter(Reply::Last(Some(1)), Reply::Last(Some(2))), Reply::Last(Some(2)));
        assert_eq!(stricter(Reply::Claimed(true), Reply::Claimed(false)), Reply::Claimed(false));
        assert_eq!(stricter(Reply::Claimed(true), Reply::Claimed(true)), Reply::Claimed(true));
    }

    #[test]
    fn urls_lose_their_password_in_logs() {
        assert_eq!(redacted("redis://:hunter2@10.0.0.7:6379/0"), "redis://***@10.0.0.7:6379/0");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
