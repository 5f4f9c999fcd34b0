// stuffgate patch: the keep-alive pool of upstream streams, without a task per idle stream.
//
// pingora's `ConnectionPool` (pingora-pool) spawns a task for every released stream, which waits for the peer to
// close it, for its idle timeout, or for a request to pick it up. A release and a reuse cost two oneshot channels,
// a `Notify`, an `Arc<Mutex<Stream>>`, an LRU update and a task spawn, wake and drop, and every reuse a
// `getpeername` call: ~7% of the CPU of a proxied login in stuffgate's profile (`benches/RESULTS.md`, session 6).
//
// Here an idle stream just waits in a list, newest last, as nginx's upstream keep-alive cache does. The reactor
// keeps recording its readiness while no task waits on it, so a stream the peer closed (or wrote to) is found by the
// same non-blocking read pingora makes on every reuse (`test_reusable_stream`) and dropped. A sweep once a second
// closes the streams whose idle timeout passed and those the peer closed, so none lingers half-closed for long.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::test_reusable_stream;
use crate::protocols::Stream;

/// How often the sweep looks at the idle streams.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct IdlePool {
    inner: Mutex<Groups>,
    /// The most idle streams kept, all peers together.
    capacity: usize,
    sweeping: AtomicBool,
    unexpected_data: Arc<AtomicU64>,
}

#[derive(Default)]
struct Groups {
    /// Idle streams by the peer's `reuse_hash`, oldest first.
    by_key: HashMap<u64, VecDeque<Idle>>,
    len: usize,
}

pub(crate) struct Idle {
    pub(crate) stream: Stream,
    pub(crate) since: Instant,
    /// When the idle timeout the releasing caller asked for runs out (none: kept until closed or evicted).
    expires: Option<Instant>,
}

impl Idle {
    /// Reads the clock only for a stream released with an idle timeout (the gateway sets none).
    fn expired(&self) -> bool {
        self.expires.is_some_and(|at| at <= Instant::now())
    }
}

impl IdlePool {
    pub(crate) fn new(capacity: usize, unexpected_data: Arc<AtomicU64>) -> Self {
        IdlePool {
            inner: Mutex::new(Groups::default()),
            capacity,
            sweeping: AtomicBool::new(false),
            unexpected_data,
        }
    }

    /// The most recently released stream for `key` that is still in its idle timeout (the warmest one, and the
    /// least likely to have been closed by the peer's own idle timeout). The caller still checks that it is open.
    pub(crate) fn take(&self, key: u64) -> Option<Stream> {
        let mut expired = Vec::new();
        let found = {
            let mut groups = self.inner.lock();
            let Groups { by_key, len } = &mut *groups;
            let group = by_key.get_mut(&key)?;
            let mut found = None;
            while let Some(idle) = group.pop_back() {
                *len -= 1;
                if idle.expired() {
                    expired.push(idle);
                    continue;
                }
                found = Some(idle.stream);
                break;
            }
            found
        };
        // Closed outside the lock.
        drop(expired);
        found
    }

    /// Keep `stream` for a later request to `key`; the stream it evicted to make room, if the pool was full.
    pub(crate) fn put(
        self: &Arc<Self>,
        key: u64,
        stream: Stream,
        idle_timeout: Option<Duration>,
    ) -> Option<Idle> {
        if self.capacity == 0 {
            return None;
        }
        self.start_sweeping();
        let now = Instant::now();
        let idle = Idle {
            stream,
            since: now,
            expires: idle_timeout.map(|timeout| now + timeout),
        };
        let mut groups = self.inner.lock();
        let Groups { by_key, len } = &mut *groups;
        let evicted = if *len >= self.capacity {
            // The oldest of this peer's streams, or else of any peer's.
            let from_own = by_key.get_mut(&key).and_then(VecDeque::pop_front);
            let evicted =
                from_own.or_else(|| by_key.values_mut().find_map(VecDeque::pop_front));
            *len -= usize::from(evicted.is_some());
            evicted
        } else {
            None
        };
        by_key.entry(key).or_default().push_back(idle);
        *len += 1;
        evicted
    }

    /// Close the streams whose idle timeout passed and those the peer closed or wrote to (once a second, a few
    /// closes at most: under the lock).
    fn sweep(&self) {
        let mut groups = self.inner.lock();
        let Groups { by_key, len } = &mut *groups;
        by_key.retain(|_, group| {
            group.retain_mut(|idle| {
                !idle.expired() && test_reusable_stream(&mut idle.stream, &self.unexpected_data)
            });
            !group.is_empty()
        });
        *len = by_key.values().map(VecDeque::len).sum();
    }

    /// The first release starts the sweep on the runtime that released it; it ends once the pool is dropped.
    fn start_sweeping(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<IdlePool> = Arc::downgrade(self);
        pingora_runtime::current_handle().spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }
}
