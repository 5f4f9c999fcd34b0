//! A fixed-size latency histogram in microseconds: exact below 64 µs, then 32 sub-buckets per power of two
//! (≤ 3% error), up to ~1 hour. Mergeable, so each sender keeps its own and they are summed at the end.

const LINEAR: usize = 64;
const SUB: usize = 32;
const OCTAVES: usize = 26;
const BUCKETS: usize = LINEAR + SUB * OCTAVES;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

fn index(micros: u64) -> usize {
    if micros < LINEAR as u64 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros() as usize; // ≥ 6
    let sub = ((micros >> (exp - 5)) & (SUB as u64 - 1)) as usize;
    (LINEAR + (exp - 6) * SUB + sub).min(BUCKETS - 1)
}

/// The upper edge of a bucket.
fn value(index: usize) -> u64 {
    if index < LINEAR {
        return index as u64;
    }
    let exp = (index - LINEAR) / SUB + 6;
    let sub = ((index - LINEAR) % SUB) as u64;
    ((SUB as u64 + sub + 1) << (exp - 5)) - 1
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        self.counts[index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1) in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_few_percent() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5000.0 - 1.0).abs() < 0.04, "{p50}");
        assert!((p99 / 9900.0 - 1.0).abs() < 0.04, "{p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.quantile(0.0), 1);
        let mut other = Histogram::default();
        other.record(3_600_000_000);
        h.merge(&other);
        assert_eq!(h.count(), 10_001);
        assert_eq!(h.max(), 3_600_000_000);
        for i in 0..BUCKETS - 1 {
            assert!(value(i) < value(i + 1));
            assert_eq!(index(value(i)), i, "bucket {i}");
        }
    }
}
