//! The one clock every defense and store reads: wall-clock nanoseconds since the UNIX epoch.
//!
//! Wall-clock, not monotonic, because expiries are written into a store that other gateways share (Redis): two
//! machines agree on "blocked until 12:05:00", not on each other's uptime. A test — or the offline replay — uses a
//! manual clock and moves time for every defense at once instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z: where manual clocks start, so stored times look like real ones.
const MANUAL_START: u64 = 1_767_225_600 * 1_000_000_000;

/// The system's wall clock, or a manually advanced virtual time.
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock::System
    }

    /// A virtual clock starting at 2026-01-01 (never zero, which would read as "never" in some stores).
    pub fn manual() -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(MANUAL_START)))
    }

    /// Move a manual clock forward; the system clock ignores this.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            t.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// Nanoseconds since the UNIX epoch.
    pub fn now_nanos(&self) -> u64 {
        match self {
            Clock::System => {
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(MANUAL_START)
            }
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// Parse "500ms", "30s", "10m", "2h", "1d" into a Duration.
/// Seconds since the Unix epoch by the system clock, for what operators read (reload times, ban expiries).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. \"30s\", \"10m\", \"1h\", \"1d\""))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` does not start with a whole number"))?;
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
