//! A circuit breaker for the shared store: after `failures` consecutive failed round trips (errors or timeouts) it
//! opens, and while open no request waits on the store at all. A background probe (see `redis.rs`) closes it again;
//! each failed probe doubles the open time up to `max_open`.
//!
//! Lock-free: the hot path reads one atomic.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before the first probe.
    pub open: Duration,
    /// The longest it stays open between probes (the open time doubles per failed probe).
    pub max_open: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings { failures: 5, open: Duration::from_secs(1), max_open: Duration::from_secs(5) }
    }
}

/// What a state change was, for the one log line it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

pub struct Breaker {
    settings: BreakerSettings,
    open: AtomicBool,
    consecutive: AtomicU32,
    /// Milliseconds (monotonic, from [`Breaker::now_ms`]'s origin) after which the next probe may run.
    probe_at: AtomicU64,
    /// The current open time in milliseconds (doubles per failed probe).
    open_for: AtomicU64,
    origin: std::time::Instant,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            open: AtomicBool::new(false),
            consecutive: AtomicU32::new(0),
            probe_at: AtomicU64::new(0),
            open_for: AtomicU64::new(settings.open.as_millis() as u64),
            origin: std::time::Instant::now(),
        }
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// True while requests must not wait on the store.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// A round trip answered.
    pub fn success(&self) -> Option<Transition> {
        self.consecutive.store(0, Ordering::Relaxed);
        None
    }

    /// A round trip failed or timed out. Returns `Opened` for the failure that opened the breaker.
    pub fn failure(&self) -> Option<Transition> {
        let count = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if count >= self.settings.failures && !self.open.swap(true, Ordering::AcqRel) {
            let open_for = self.settings.open.as_millis() as u64;
            self.open_for.store(open_for, Ordering::Relaxed);
            self.probe_at.store(self.now_ms() + open_for, Ordering::Relaxed);
            return Some(Transition::Opened);
        }
        None
    }

    /// Whether the open breaker is due for a probe.
    pub fn probe_due(&self) -> bool {
        self.is_open() && self.now_ms() >= self.probe_at.load(Ordering::Relaxed)
    }

    /// The probe's result: success closes the breaker; failure keeps it open twice as long (up to `max_open`).
    pub fn probed(&self, ok: bool) -> Option<Transition> {
        if ok {
            self.consecutive.store(0, Ordering::Relaxed);
            if self.open.swap(false, Ordering::AcqRel) {
                return Some(Transition::Closed);
            }
            return None;
        }
        let max = self.settings.max_open.as_millis() as u64;
        let open_for = self.open_for.load(Ordering::Relaxed).max(1).saturating_mul(2).min(max.max(1));
        self.open_for.store(open_for, Ordering::Relaxed);
        self.probe_at.store(self.now_ms() + open_for, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_a_success_in_between_resets_the_count() {
        let breaker = Breaker::new(BreakerSettings { failures: 3, ..BreakerSettings::default() });
        breaker.failure();
        breaker.failure();
        breaker.success();
        breaker.failure();
        breaker.failure();
        assert!(!breaker.is_open());
        assert_eq!(breaker.failure(), Some(Transition::Opened));
        assert!(breaker.is_open());
        assert_eq!(breaker.failure(), None, "opening is reported once");
    }

    #[test]
    fn a_probe_closes_it_and_failed_probes_back_off_up_to_the_cap() {
        let settings =
            BreakerSettings { failures: 1, open: Duration::from_millis(0), max_open: Duration::from_millis(40) };
        let breaker = Breaker::new(settings);
        breaker.failure();
        assert!(breaker.probe_due());
        breaker.probed(false);
        assert!(breaker.is_open());
        for _ in 0..10 {
            breaker.probed(false);
        }
        assert_eq!(breaker.open_for.load(Ordering::Relaxed), 40);
        assert_eq!(breaker.probed(true), Some(Transition::Closed));
        assert!(!breaker.is_open());
        assert!(!breaker.probe_due());
    }
}
