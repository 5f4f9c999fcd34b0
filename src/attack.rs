//! Site-wide attack mode: an aggregate over every login the gateway sees, not any one key.
//!
//! A distributed stuffing run keeps every address, account and fingerprint under its limits, but it cannot hide
//! from the whole site's picture: failed logins from devices the accounts never used rise by orders of magnitude,
//! and so does their share of all logins, whether or not the passwords are in any breach corpus. The monitor
//! counts, per time bucket, login outcomes and those failures (plus gateway refusals) from unknown devices; a
//! periodic [`AttackMonitor::tick`] compares the last window with a trailing baseline and sets a level that
//! defenses read from the attempt's facts (challenge every unknown device, answer reset-required to breached
//! credentials, tighten thresholds). Known devices are never affected: the level only changes what happens to
//! logins from devices an account has not used.
//!
//! Hot path: [`AttackMonitor::note`] is two relaxed atomic additions on a per-thread shard (no lock). The
//! evaluation runs on the maintenance timer. Entering needs the condition for `enter_after` consecutive buckets,
//! leaving needs `leave_after` consecutive calm buckets at half the entry bar (hysteresis), and nothing is entered
//! below `floor` failures per window (a quiet site where 3 of 5 logins fail is not under attack). The baseline
//! learns only while the mode is off, so an attack does not teach it that attacks are normal.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// How hard the site is being hit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackLevel {
    #[default]
    Off = 0,
    /// Failures from unknown devices well above the baseline and a failure share no real population has.
    Elevated = 1,
    /// The same, several times over the entry bar.
    High = 2,
}

impl AttackLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AttackLevel::Off => "off",
            AttackLevel::Elevated => "elevated",
            AttackLevel::High => "high",
        }
    }

    pub fn on(self) -> bool {
        self != AttackLevel::Off
    }

    fn from_u8(value: u8) -> AttackLevel {
        match value {
            1 => AttackLevel::Elevated,
            2 => AttackLevel::High,
            _ => AttackLevel::Off,
        }
    }
}

/// The operator's say: follow the detector, or hold the mode on or off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    #[default]
    Auto = 0,
    On = 1,
    Off = 2,
}

impl Override {
    pub fn as_str(self) -> &'static str {
        match self {
            Override::Auto => "auto",
            Override::On => "on",
            Override::Off => "off",
        }
    }

    pub fn parse(text: &str) -> Option<Override> {
        match text {
            "auto" => Some(Override::Auto),
            "on" => Some(Override::On),
            "off" => Some(Override::Off),
            _ => None,
        }
    }

    fn from_u8(value: u8) -> Override {
        match value {
            1 => Override::On,
            2 => Override::Off,
            _ => Override::Auto,
        }
    }
}

/// What the detector compares (the policy's `[attack_mode]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttackSettings {
    /// Counting granularity; the level is re-evaluated once per bucket.
    pub bucket: Duration,
    /// Buckets summed into one observation (e.g. 6 × 10 s = one minute).
    pub window_buckets: u32,
    /// Fewest failures from unknown devices per window that can ever mean an attack.
    pub floor: u32,
    /// Failures from unknown devices must exceed this many times the baseline.
    pub rise: f32,
    /// Their share of all logins must reach this (and twice the baseline share).
    pub min_ratio: f32,
    /// `High` once the failures reach this many times the entry bar.
    pub high_factor: f32,
    /// Consecutive buckets over the bar before the mode goes on.
    pub enter_after: u32,
    /// Consecutive calm buckets (under half the bar) before it goes off.
    pub leave_after: u32,
    /// Weight of each calm observation in the trailing baseline (an EWMA; 1/360 ≈ one hour of 10 s buckets).
    pub learn_rate: f32,
}

impl Default for AttackSettings {
    fn default() -> AttackSettings {
        AttackSettings {
            bucket: Duration::from_secs(10),
            window_buckets: 6,
            floor: 30,
            rise: 4.0,
            min_ratio: 0.3,
            high_factor: 4.0,
            enter_after: 3,
            leave_after: 90,
            learn_rate: 1.0 / 360.0,
        }
    }
}

const RING: usize = 64;
const SHARDS: usize = 16;

#[derive(Default)]
#[repr(align(64))]
struct Slot {
    bucket: AtomicU64,
    logins: AtomicU64,
    failures: AtomicU64,
}

struct Shard {
    ring: [Slot; RING],
}

/// What one evaluation saw, for the dashboard and the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Observation {
    /// Failed or refused logins from unknown devices in the last window.
    pub failures: u64,
    pub logins: u64,
    /// The baseline failures per window (0 before anything was learned).
    pub baseline_failures: f32,
    pub baseline_ratio: f32,
}

#[derive(Default)]
struct Detector {
    /// The next bucket to evaluate.
    next: u64,
    baseline: Option<(f32, f32)>,
    /// Calm observations learned so far: the baseline is their plain mean until there are `1 / learn_rate`.
    learned: u32,
    over: u32,
    calm: u32,
    last: Observation,
}

/// The site-wide aggregate and its level.
pub struct AttackMonitor {
    shards: Box<[Shard]>,
    bucket_nanos: AtomicU64,
    level: AtomicU8,
    detected: AtomicU8,
    manual: AtomicU8,
    settings: Mutex<AttackSettings>,
    detector: Mutex<Detector>,
}

impl Default for AttackMonitor {
    fn default() -> AttackMonitor {
        AttackMonitor::new(AttackSettings::default())
    }
}

fn shard_index() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|index| {
        if index.get() == usize::MAX {
            index.set(NEXT.fetch_add(1, Relaxed) % SHARDS);
        }
        index.get()
    })
}

impl AttackMonitor {
    pub fn new(settings: AttackSettings) -> AttackMonitor {
        let shards = (0..SHARDS).map(|_| Shard { ring: std::array::from_fn(|_| Slot::default()) }).collect();
        AttackMonitor {
            shards,
            bucket_nanos: AtomicU64::new(settings.bucket.as_nanos().max(1) as u64),
            level: AtomicU8::new(0),
            detected: AtomicU8::new(0),
            manual: AtomicU8::new(0),
            settings: Mutex::new(settings),
            detector: Mutex::new(Detector::default()),
        }
    }

    /// Replace the settings (a policy reload); what was counted and learned stays.
    pub fn configure(&self, settings: AttackSettings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
        self.bucket_nanos.store(settings.bucket.as_nanos().max(1) as u64, Relaxed);
    }

    pub fn settings(&self) -> AttackSettings {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one login outcome: `failed_unknown` when it failed (or the gateway refused it) from a device the
    /// account has not used. Lock-free: two relaxed additions on this thread's shard.
    pub fn note(&self, now: u64, login: bool, failed_unknown: bool) {
        let bucket = now / self.bucket_nanos.load(Relaxed);
        let slot = &self.shards[shard_index()].ring[bucket as usize % RING];
        if slot.bucket.load(Relaxed) != bucket + 1 && slot.bucket.swap(bucket + 1, Relaxed) != bucket + 1 {
            // This slot held an older bucket: start it afresh (a count racing with the reset may be lost; the
            // aggregate is a rate, not a ledger).
            slot.logins.store(0, Relaxed);
            slot.failures.store(0, Relaxed);
        }
        if login {
            slot.logins.fetch_add(1, Relaxed);
        }
        if failed_unknown {
            slot.failures.fetch_add(1, Relaxed);
        }
    }

    /// The level defenses act on: the operator's override, else the detector's.
    pub fn level(&self) -> AttackLevel {
        AttackLevel::from_u8(self.level.load(Relaxed))
    }

    /// What the detector alone says.
    pub fn detected(&self) -> AttackLevel {
        AttackLevel::from_u8(self.detected.load(Relaxed))
    }

    pub fn override_mode(&self) -> Override {
        Override::from_u8(self.manual.load(Relaxed))
    }

    pub fn set_override(&self, mode: Override) {
        self.manual.store(mode as u8, Relaxed);
        self.publish();
    }

    pub fn last(&self) -> Observation {
        self.detector.lock().unwrap_or_else(|p| p.into_inner()).last
    }

    fn publish(&self) {
        let level = match self.override_mode() {
            Override::Auto => self.detected(),
            Override::On => self.detected().max(AttackLevel::Elevated),
            Override::Off => AttackLevel::Off,
        };
        self.level.store(level as u8, Relaxed);
        crate::telemetry::metrics::ATTACK_MODE.set(level as i64);
    }

    /// Sum one bucket across shards (0 for a bucket no slot holds any more).
    fn bucket_counts(&self, bucket: u64) -> (u64, u64) {
        let mut totals = (0, 0);
        for shard in self.shards.iter() {
            let slot = &shard.ring[bucket as usize % RING];
            if slot.bucket.load(Relaxed) == bucket + 1 {
                totals.0 += slot.logins.load(Relaxed);
                totals.1 += slot.failures.load(Relaxed);
            }
        }
        totals
    }

    /// Evaluate every bucket completed since the last call (the maintenance timer calls this every few seconds).
    pub fn tick(&self, now: u64) -> AttackLevel {
        let settings = self.settings();
        let current = now / self.bucket_nanos.load(Relaxed);
        let mut detector = self.detector.lock().unwrap_or_else(|p| p.into_inner());
        let window = u64::from(settings.window_buckets.clamp(1, RING as u32 / 2));
        // After a long pause only the buckets still in the ring matter.
        let first = detector.next.max(current.saturating_sub(RING as u64 / 2));
        let mut level = self.detected();
        for done in first..current {
            let (mut logins, mut failures) = (0, 0);
            for bucket in done.saturating_sub(window - 1)..=done {
                let (l, f) = self.bucket_counts(bucket);
                logins += l;
                failures += f;
            }
            level = step(&settings, &mut detector, level, logins, failures);
        }
        detector.next = detector.next.max(current);
        drop(detector);
        self.detected.store(level as u8, Relaxed);
        self.publish();
        self.level()
    }
}

/// One evaluation of a window: the state machine with hysteresis, floor and levels.
fn step(s: &AttackSettings, d: &mut Detector, level: AttackLevel, logins: u64, failures: u64) -> AttackLevel {
    let next = judge(s, d, level, logins, failures);
    let (baseline_failures, baseline_ratio) = d.baseline.unwrap_or((0.0, 0.0));
    d.last = Observation { failures, logins, baseline_failures, baseline_ratio };
    next
}

fn judge(s: &AttackSettings, d: &mut Detector, level: AttackLevel, logins: u64, failures: u64) -> AttackLevel {
    let (base_failures, base_ratio) = d.baseline.unwrap_or((0.0, 0.0));
    let ratio = if logins == 0 { 0.0 } else { failures as f32 / logins.max(failures) as f32 };
    let bar = (s.floor as f32).max(s.rise * base_failures);
    let ratio_bar = s.min_ratio.max(2.0 * base_ratio).min(0.95);
    let over = failures as f32 >= bar && ratio >= ratio_bar;
    let strength = if failures as f32 >= s.high_factor * bar { AttackLevel::High } else { AttackLevel::Elevated };
    if !level.on() {
        if over {
            d.over += 1;
            if d.over >= s.enter_after.max(1) {
                d.calm = 0;
                return strength;
            }
        } else {
            d.over = 0;
            let sample = (failures as f32, ratio);
            d.learned = d.learned.saturating_add(1);
            // A plain mean while young (a cold start learns fast), then an exponentially weighted one.
            let rate = s.learn_rate.max(1.0 / d.learned as f32);
            d.baseline = Some(match d.baseline {
                None => sample,
                Some((f, r)) => (f + rate * (sample.0 - f), r + rate * (sample.1 - r)),
            });
        }
        return AttackLevel::Off;
    }
    let calm = (failures as f32) < bar / 2.0 || ratio < ratio_bar / 2.0;
    if calm {
        d.calm += 1;
        if d.calm >= s.leave_after.max(1) {
            d.over = 0;
            return AttackLevel::Off;
        }
        return level;
    }
    d.calm = 0;
    if over {
        strength
    } else {
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn settings() -> AttackSettings {
        AttackSettings { enter_after: 3, leave_after: 6, ..AttackSettings::default() }
    }

    /// Feed `seconds` of traffic at `logins` and `failures` per 10 s bucket, ticking every bucket.
    fn run(m: &AttackMonitor, clock: &mut u64, seconds: u64, logins: u64, failures: u64) -> Vec<AttackLevel> {
        let mut levels = Vec::new();
        for _ in 0..seconds / 10 {
            for i in 0..logins.max(failures) {
                m.note(*clock, i < logins, i < failures);
            }
            *clock += 10 * S;
            levels.push(m.tick(*clock));
        }
        levels
    }

    #[test]
    fn a_normal_day_never_switches_on_and_an_attack_does_after_the_entry_delay() {
        let m = AttackMonitor::new(settings());
        let mut clock = 1_000 * S;
        // 100 logins per 10 s, 10% failing (typos) for an hour.
        assert!(run(&m, &mut clock, 3600, 100, 10).iter().all(|l| *l == AttackLevel::Off));
        let baseline = m.last().baseline_failures;
        assert!((50.0..70.0).contains(&baseline), "learned about 60 failures a minute: {baseline}");
        // An attack adds 400 failing logins per 10 s: on after three buckets over the bar, not before.
        let levels = run(&m, &mut clock, 60, 500, 410);
        assert_eq!(levels[0], AttackLevel::Off);
        assert_eq!(levels[1], AttackLevel::Off);
        assert!(levels[2].on(), "{levels:?}");
        assert!(levels[3..].iter().all(|l| l.on()));
    }

    #[test]
    fn hysteresis_keeps_it_on_through_a_lull_and_off_only_after_calm_buckets() {
        let m = AttackMonitor::new(settings());
        let mut clock = 1_000 * S;
        run(&m, &mut clock, 600, 100, 10);
        assert!(run(&m, &mut clock, 60, 500, 410).last().unwrap().on());
        // Between the bar and half of it: not calm, stays on however long.
        assert!(run(&m, &mut clock, 300, 150, 40).iter().all(|l| l.on()));
        // Calm: off after `leave_after` buckets (the window still holds the attack for its first buckets).
        let levels = run(&m, &mut clock, 200, 100, 10);
        let first_off = levels.iter().position(|l| !l.on()).unwrap();
        assert!((6..=12).contains(&first_off), "{levels:?}");
        assert!(levels[first_off..].iter().all(|l| !l.on()));
    }

    #[test]
    fn a_quiet_site_below_the_floor_never_flaps() {
        let m = AttackMonitor::new(settings());
        let mut clock = 1_000 * S;
        // 5 logins per 10 s, 3 of them failing: a high share, but 18 a minute, under the floor of 30.
        assert!(run(&m, &mut clock, 1800, 5, 3).iter().all(|l| *l == AttackLevel::Off));
    }

    #[test]
    fn a_heavy_attack_is_high_and_the_operator_can_hold_it_on_or_off() {
        let m = AttackMonitor::new(settings());
        let mut clock = 1_000 * S;
        run(&m, &mut clock, 600, 100, 10);
        assert_eq!(*run(&m, &mut clock, 60, 5000, 4900).last().unwrap(), AttackLevel::High);
        m.set_override(Override::Off);
        assert_eq!(m.level(), AttackLevel::Off);
        assert_eq!(m.detected(), AttackLevel::High);
        m.set_override(Override::Auto);
        assert_eq!(m.level(), AttackLevel::High);
        let quiet = AttackMonitor::new(settings());
        quiet.set_override(Override::On);
        assert_eq!(quiet.level(), AttackLevel::Elevated);
    }

    #[test]
    fn the_baseline_does_not_learn_from_an_attack() {
        let m = AttackMonitor::new(settings());
        let mut clock = 1_000 * S;
        run(&m, &mut clock, 600, 100, 10);
        let before = m.last().baseline_failures;
        run(&m, &mut clock, 600, 500, 410);
        assert_eq!(m.last().baseline_failures, before);
    }
}
