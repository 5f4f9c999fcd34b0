use super::Expiring;

/// An approximate sliding-window counter in 16 bytes: the current fixed window plus the previous one, weighted by
/// how much of it still overlaps the sliding window (the technique Cloudflare describes for its rate limiter).
#[derive(Clone, Copy, Debug, Default)]
pub struct SlidingCount {
    window_start: u64,
    current: u32,
    previous: u32,
}

impl SlidingCount {
    fn roll(&mut self, now: u64, window: u64) {
        if now < self.window_start + window {
            return;
        }
        let windows_passed = (now - self.window_start) / window;
        self.previous = if windows_passed == 1 { self.current } else { 0 };
        self.current = 0;
        self.window_start += windows_passed * window;
    }

    /// Count one event at `now` and return the estimate including it.
    pub fn add(&mut self, now: u64, window: u64) -> u32 {
        if self.window_start == 0 {
            self.window_start = now;
        }
        self.roll(now, window);
        self.current = self.current.saturating_add(1);
        self.estimate_rolled(now, window)
    }

    /// The number of events in the sliding window ending at `now`.
    pub fn estimate(&self, now: u64, window: u64) -> u32 {
        let mut copy = *self;
        if copy.window_start == 0 {
            return 0;
        }
        copy.roll(now, window);
        copy.estimate_rolled(now, window)
    }

    fn estimate_rolled(&self, now: u64, window: u64) -> u32 {
        let into_window = now.saturating_sub(self.window_start).min(window);
        let previous_weight = (window - into_window) as f64 / window as f64;
        self.current + (self.previous as f64 * previous_weight).round() as u32
    }

    pub fn reset(&mut self) {
        *self = SlidingCount::default();
    }

    /// True when nothing counted is still inside a window ending at `now`.
    pub fn is_idle(&self, now: u64, window: u64) -> bool {
        self.window_start == 0 || now >= self.window_start + 2 * window
    }
}

/// An escalating penalty: each time a key crosses its threshold again, the block lasts twice as long, up to a cap.
/// Strikes are forgotten after `memory` without a new one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Penalty {
    pub blocked_until: u64,
    pub strikes: u8,
    pub last_strike: u64,
}

impl Penalty {
    pub fn is_blocked(&self, now: u64) -> bool {
        now < self.blocked_until
    }

    pub fn remaining(&self, now: u64) -> u64 {
        self.blocked_until.saturating_sub(now)
    }

    /// Impose the next penalty and return its length.
    pub fn strike(&mut self, now: u64, base: u64, max: u64, memory: u64) -> u64 {
        if self.strikes > 0 && now >= self.last_strike + memory {
            self.strikes = 0;
        }
        let length = base.saturating_mul(1u64 << self.strikes.min(20)).min(max);
        self.strikes = self.strikes.saturating_add(1);
        self.last_strike = now;
        self.blocked_until = now + length;
        length
    }

    pub fn remembers(&self, now: u64, memory: u64) -> bool {
        self.is_blocked(now) || (self.strikes > 0 && now < self.last_strike + memory)
    }
}

/// A counter for a key together with its penalty: the state of one key of a failure-counting defense.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountWithPenalty {
    pub count: SlidingCount,
    pub penalty: Penalty,
    /// The span after which idle state may be dropped (window and strike memory).
    pub keep_for: u64,
    pub last_seen: u64,
}

/// When counting turns into a penalty: `threshold` events within `window` impose `penalty`, doubling per repeat up
/// to `max_penalty`; strikes are remembered for `memory`. All in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Escalation {
    pub threshold: u32,
    pub window: u64,
    pub penalty: u64,
    pub max_penalty: u64,
    pub memory: u64,
}

impl CountWithPenalty {
    /// Count one event; crossing the threshold imposes the next penalty and starts counting afresh. Events while
    /// blocked (observe mode, a spared source) are evidence already acted on: they do not extend the block.
    pub fn record(&mut self, now: u64, rule: &Escalation) {
        self.last_seen = now;
        if !self.penalty.is_blocked(now) && self.count.add(now, rule.window) >= rule.threshold {
            self.penalty.strike(now, rule.penalty, rule.max_penalty, rule.memory);
            self.count.reset();
        }
    }
}

impl Expiring for CountWithPenalty {
    fn is_expired(&self, now: u64) -> bool {
        now >= self.last_seen + self.keep_for && !self.penalty.is_blocked(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn sliding_count_forgets_gradually_then_entirely() {
        let window = 60 * S;
        let mut c = SlidingCount::default();
        let t0 = 1000 * S;
        for _ in 0..10 {
            c.add(t0, window);
        }
        assert_eq!(c.estimate(t0 + 30 * S, window), 10);
        // Half-way into the next window half of the previous one still counts.
        assert_eq!(c.estimate(t0 + 90 * S, window), 5);
        assert_eq!(c.estimate(t0 + 121 * S, window), 0);
        assert!(c.is_idle(t0 + 121 * S, window));
    }

    #[test]
    fn penalties_double_up_to_the_cap_and_strikes_are_forgotten() {
        let mut p = Penalty::default();
        let (base, max, memory) = (60 * S, 300 * S, 3600 * S);
        assert_eq!(p.strike(0, base, max, memory), 60 * S);
        assert!(p.is_blocked(59 * S) && !p.is_blocked(60 * S));
        assert_eq!(p.strike(100 * S, base, max, memory), 120 * S);
        assert_eq!(p.strike(300 * S, base, max, memory), 240 * S);
        assert_eq!(p.strike(600 * S, base, max, memory), 300 * S);
        // Much later the slate is clean again.
        assert_eq!(p.strike(600 * S + memory, base, max, memory), 60 * S);
    }
}
