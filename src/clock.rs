//! The one clock every defense reads.
//!
//! Rate limiters (governor) and our own windowed stores share it, so a test — or the offline replay — can move time
//! for all of them at once instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use governor::nanos::Nanos;

/// Monotonic nanoseconds since the clock was made, or a manually advanced virtual time.
#[derive(Clone, Debug)]
pub enum Clock {
    Monotonic { base: Instant },
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn monotonic() -> Clock {
        Clock::Monotonic {
            base: Instant::now(),
        }
    }

    /// A virtual clock starting at an arbitrary non-zero time (zero would read as "never" in some stores).
    pub fn manual() -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(1_000_000_000)))
    }

    /// Move a manual clock forward; a monotonic clock ignores this.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            t.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    pub fn now_nanos(&self) -> u64 {
        match self {
            Clock::Monotonic { base } => base.elapsed().as_nanos() as u64 + 1_000_000_000,
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

impl governor::clock::Clock for Clock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::new(self.now_nanos())
    }
}

/// Parse "500ms", "30s", "10m", "2h", "1d" into a Duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. \"30s\", \"10m\", \"1h\", \"1d\""))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = Clock::manual();
        let t0 = clock.now_nanos();
        assert_eq!(clock.now_nanos(), t0);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_nanos(), t0 + 2_000_000_000);
    }
}
