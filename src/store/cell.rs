//! The state of one defense for one key, kept small: times in whole seconds (u32, wall clock) except GCRA's
//! theoretical arrival time, which needs nanoseconds. Every cell knows until when it matters (`keep_until`), so a
//! record lives exactly as long as its longest-lived cell.

use super::CellId;

const NANOS: u64 = 1_000_000_000;

pub(super) fn secs(nanos: u64) -> u32 {
    (nanos / NANOS).min(u32::MAX as u64) as u32
}

fn secs_ceil(nanos: u64) -> u32 {
    nanos.div_ceil(NANOS).min(u32::MAX as u64) as u32
}

/// When counting turns into a penalty: `threshold` events within `window` impose `penalty`, doubling per repeat up
/// to `max_penalty`; strikes are forgotten `memory` after the last penalty ended. Durations in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Escalation {
    pub threshold: u32,
    pub window: u64,
    pub penalty: u64,
    pub max_penalty: u64,
    pub memory: u64,
}

/// A distinct-set rule: `threshold` members whose latest outcome failed within `window` impose a penalty; with
/// `suspect = (early, ratio)` already `early` when at most `ratio` of the members got in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistinctRule {
    pub threshold: u32,
    pub suspect: Option<(u32, f32)>,
    pub window: u64,
    pub penalty: u64,
    pub max_penalty: u64,
    pub memory: u64,
    /// Most members kept per key.
    pub cap: u16,
}

#[cfg(test)]
impl DistinctRule {
    /// A rule for tests: `threshold` failed members in 10 minutes impose 1 minute, doubling up to 10, remembered 1 h.
    pub(super) fn for_tests(threshold: u32) -> DistinctRule {
        const S: u64 = NANOS;
        DistinctRule {
            threshold,
            suspect: None,
            window: 600 * S,
            penalty: 60 * S,
            max_penalty: 600 * S,
            memory: 3600 * S,
            cap: 16,
        }
    }
}

/// An escalating penalty: second until which the key is blocked, and how many times it was. Stored flat in counting
/// cells (to keep them at 16 bytes) and as this struct in distinct sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Penalty {
    until: u32,
    strikes: u8,
}

fn remaining(until: u32, now: u64) -> u64 {
    (until as u64 * NANOS).saturating_sub(now)
}

fn strike(until: &mut u32, strikes: &mut u8, now: u64, base: u64, max: u64, memory: u64) {
    if *strikes > 0 && now >= *until as u64 * NANOS + memory {
        *strikes = 0;
    }
    let length = base.saturating_mul(1u64 << (*strikes).min(20)).min(max);
    *strikes = strikes.saturating_add(1);
    *until = secs_ceil(now + length);
}

/// Until when a penalty, or the memory of its strikes, matters.
fn penalty_keep(until: u32, strikes: u8, memory: u64) -> u32 {
    if strikes == 0 {
        0
    } else {
        until.saturating_add(secs_ceil(memory))
    }
}

impl Penalty {
    fn is_blocked(&self, now: u64) -> bool {
        secs(now) < self.until
    }
}

/// A distinct set: members (a 32-bit print; bit 0 = latest outcome failed) with the second they were last seen.
#[derive(Debug, Default)]
pub(super) struct DistinctSet {
    /// Most keys see one or two members (distributed attacks, real users): those stay inside the box.
    entries: smallvec::SmallVec<[(u32, u32); 2]>,
    penalty: Penalty,
}

/// A recent set: members, most recent first, with the second each was last seen.
#[derive(Debug, Default)]
pub(super) struct RecentSet {
    entries: Vec<(u32, u32)>,
    keep: u32,
}

/// One defense's state for one key. Every variant carries its cell id, so a cell is 16 bytes.
#[derive(Debug)]
pub(super) enum Cell {
    Gcra {
        id: CellId,
        tat: u64,
    },
    /// An approximate sliding-window count (current and previous fixed window, weighted by overlap: the technique
    /// Cloudflare describes for its rate limiter) with its penalty.
    Count {
        id: CellId,
        start: u32,
        current: u16,
        previous: u16,
        until: u32,
        strikes: u8,
    },
    /// A distinct set of at most one member, inline: most keys only ever see one (a stuffing list tries each
    /// address, account and password once or twice), so they never pay for a box. `seen == 0`: no member.
    DistinctOne {
        id: CellId,
        strikes: u8,
        until: u32,
        print: u32,
        seen: u32,
    },
    /// A distinct set that outgrew the inline form.
    Distinct {
        id: CellId,
        set: Box<DistinctSet>,
    },
    Recent {
        id: CellId,
        set: Box<RecentSet>,
    },
    Last {
        id: CellId,
        value: u32,
        until: u32,
    },
}

impl Cell {
    pub(super) fn id(&self) -> CellId {
        match self {
            Cell::Gcra { id, .. }
            | Cell::Count { id, .. }
            | Cell::DistinctOne { id, .. }
            | Cell::Distinct { id, .. }
            | Cell::Recent { id, .. }
            | Cell::Last { id, .. } => *id,
        }
    }

    /// Second until which the cell still matters, given the memory of the rule that wrote it.
    pub(super) fn penalty_until(&self) -> u32 {
        match self {
            Cell::Count { until, .. } | Cell::DistinctOne { until, .. } => *until,
            Cell::Distinct { set, .. } => set.penalty.until,
            _ => 0,
        }
    }

    pub(super) fn penalty_remaining(&self, now: u64) -> u64 {
        match self {
            Cell::Count { until, .. } | Cell::DistinctOne { until, .. } => remaining(*until, now),
            Cell::Distinct { set, .. } => remaining(set.penalty.until, now),
            _ => 0,
        }
    }

    pub(super) fn contains(&self, member: u32, now: u64) -> bool {
        match self {
            Cell::Recent { set, .. } => {
                let now = secs(now);
                set.entries.iter().any(|&(m, at)| m == member && now < at.saturating_add(set.keep))
            }
            _ => false,
        }
    }

    pub(super) fn last(&self, now: u64) -> Option<u32> {
        match self {
            Cell::Last { value, until, .. } if secs(now) < *until => Some(*value),
            _ => None,
        }
    }
}

/// GCRA admission on a cell's theoretical arrival time. Returns the cell's new keep-until second.
pub(super) fn gcra(tat: &mut u64, now: u64, interval: u64, tolerance: u64) -> Result<u32, u64> {
    let arrival = (*tat).max(now);
    if arrival - now > tolerance {
        return Err(arrival - now - tolerance);
    }
    *tat = arrival + interval;
    Ok(secs_ceil(*tat))
}

fn roll(start: &mut u32, current: &mut u16, previous: &mut u16, now: u32, window: u32) {
    if *start == 0 {
        *start = now;
        return;
    }
    if now < start.saturating_add(window) {
        return;
    }
    let passed = (now - *start) / window;
    *previous = if passed == 1 { *current } else { 0 };
    *current = 0;
    *start += passed * window;
}

fn estimate(start: u32, current: u16, previous: u16, now: u32, window: u32) -> u32 {
    let into = now.saturating_sub(start).min(window);
    let weight = (window - into) as f64 / window as f64;
    current as u32 + (previous as f64 * weight).round() as u32
}

/// Count one event on a counting cell; returns its keep-until second. Events while blocked (observe mode, a spared
/// source) are evidence already acted on: they do not extend the block.
pub(super) fn count(cell: &mut Cell, now: u64, rule: &Escalation) -> u32 {
    let Cell::Count { start, current, previous, until, strikes, .. } = cell else {
        return 0;
    };
    let at = secs(now);
    let window = secs_ceil(rule.window).max(1);
    if at >= *until {
        roll(start, current, previous, at, window);
        *current = current.saturating_add(1);
        if estimate(*start, *current, *previous, at, window) >= rule.threshold {
            strike(until, strikes, now, rule.penalty, rule.max_penalty, rule.memory);
            (*start, *current, *previous) = (0, 0, 0);
        }
    }
    let counted_until = if *start == 0 { 0 } else { start.saturating_add(2 * window) };
    counted_until.max(penalty_keep(*until, *strikes, rule.memory))
}

/// Lift a penalty: the penalty, its strikes and the evidence that led to it are forgotten.
pub(super) fn lift(cell: &mut Cell) {
    match cell {
        Cell::Count { start, current, previous, until, strikes, .. } => {
            (*start, *current, *previous, *until, *strikes) = (0, 0, 0, 0, 0);
        }
        Cell::Distinct { set, .. } => **set = DistinctSet::default(),
        Cell::DistinctOne { strikes, until, print, seen, .. } => (*strikes, *until, *print, *seen) = (0, 0, 0, 0),
        _ => {}
    }
}

pub(super) fn reset_count(cell: &mut Cell) {
    if let Cell::Count { start, current, previous, .. } = cell {
        (*start, *current, *previous) = (0, 0, 0);
    }
}

/// An empty distinct-set cell (inline until a second member arrives).
pub(super) fn empty_distinct(id: CellId) -> Cell {
    Cell::DistinctOne { id, strikes: 0, until: 0, print: 0, seen: 0 }
}

/// Note a member's latest outcome in a distinct-set cell of either form; returns the cell's keep-until second. The
/// inline form goes through the same [`distinct`] on a set built on the stack, and is boxed once it holds two members.
pub(super) fn distinct_cell(cell: &mut Cell, now: u64, member: u32, failed: bool, rule: &DistinctRule) -> u32 {
    let (id, mut set) = match cell {
        Cell::Distinct { set, .. } => return distinct(set, now, member, failed, rule),
        Cell::DistinctOne { id, strikes, until, print, seen } => {
            let entries = if *seen == 0 { smallvec::SmallVec::new() } else { smallvec::smallvec![(*print, *seen)] };
            (*id, DistinctSet { entries, penalty: Penalty { until: *until, strikes: *strikes } })
        }
        _ => return 0,
    };
    let keep = distinct(&mut set, now, member, failed, rule);
    *cell = match set.entries.as_slice() {
        [] => Cell::DistinctOne { id, strikes: set.penalty.strikes, until: set.penalty.until, print: 0, seen: 0 },
        &[(print, seen)] => {
            Cell::DistinctOne { id, strikes: set.penalty.strikes, until: set.penalty.until, print, seen }
        }
        _ => Cell::Distinct { id, set: Box::new(set) },
    };
    keep
}

/// Note a member's latest outcome in a distinct set; returns the cell's keep-until second.
pub(super) fn distinct(set: &mut DistinctSet, now: u64, member: u32, failed: bool, rule: &DistinctRule) -> u32 {
    let at = secs(now);
    let window = secs_ceil(rule.window).max(1);
    let keep = |set: &DistinctSet| {
        let last = set.entries.iter().map(|&(_, seen)| seen).max().unwrap_or(0);
        let seen_until = if last == 0 { 0 } else { last.saturating_add(window) };
        seen_until.max(penalty_keep(set.penalty.until, set.penalty.strikes, rule.memory))
    };
    if set.penalty.is_blocked(now) {
        return keep(set);
    }
    let print = (member & !1) | failed as u32;
    let horizon = at.saturating_sub(window);
    match set.entries.iter_mut().find(|(m, _)| m & !1 == member & !1) {
        Some(entry) => *entry = (print, at),
        None => {
            if set.entries.len() >= rule.cap as usize {
                set.entries.retain(|entry| entry.1 >= horizon);
            }
            if set.entries.len() >= rule.cap as usize {
                if let Some(oldest) = (0..set.entries.len()).min_by_key(|&i| set.entries[i].1) {
                    set.entries.swap_remove(oldest);
                }
            }
            set.entries.push((print, at));
        }
    }
    let recent = || set.entries.iter().filter(|&&(_, seen)| seen >= horizon);
    let failures = recent().filter(|&&(m, _)| m & 1 == 1).count() as u32;
    let successes = recent().filter(|&&(m, _)| m & 1 == 0).count() as u32;
    let suspicious = rule
        .suspect
        .is_some_and(|(early, ratio)| failures >= early && successes as f32 <= ratio * (failures + successes) as f32);
    if failures >= rule.threshold || suspicious {
        strike(&mut set.penalty.until, &mut set.penalty.strikes, now, rule.penalty, rule.max_penalty, rule.memory);
        set.entries = smallvec::SmallVec::new();
    }
    keep(set)
}

/// Put a member first in a recent set; returns the cell's keep-until second.
pub(super) fn remember(set: &mut RecentSet, now: u64, member: u32, cap: u8, keep: u64) -> u32 {
    let at = secs(now);
    set.keep = secs_ceil(keep);
    set.entries.retain(|&(m, _)| m != member);
    set.entries.insert(0, (member, at));
    set.entries.truncate(cap.max(1) as usize);
    at.saturating_add(set.keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS;
    const T0: u64 = 1_767_225_600 * S;

    fn rule() -> Escalation {
        Escalation { threshold: 3, window: 600 * S, penalty: 60 * S, max_penalty: 300 * S, memory: 3600 * S }
    }

    fn counter(id: CellId) -> Cell {
        Cell::Count { id, start: 0, current: 0, previous: 0, until: 0, strikes: 0 }
    }

    #[test]
    fn a_cell_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Cell>(), 16);
    }

    #[test]
    fn counts_strike_at_the_threshold_and_penalties_double_up_to_the_cap() {
        let mut cell = counter(7);
        count(&mut cell, T0, &rule());
        count(&mut cell, T0, &rule());
        assert_eq!(cell.penalty_remaining(T0), 0);
        count(&mut cell, T0, &rule());
        assert_eq!(cell.penalty_remaining(T0), 60 * S);
        for (n, expected) in [(2u64, 120), (3, 240), (4, 300)] {
            let later = T0 + n * 1000 * S;
            for _ in 0..3 {
                count(&mut cell, later, &rule());
            }
            assert_eq!(cell.penalty_remaining(later), expected * S, "strike {n}");
        }
    }

    #[test]
    fn without_a_strike_a_count_is_kept_two_windows_not_a_day() {
        let mut cell = counter(1);
        let keep = count(&mut cell, T0, &rule());
        assert_eq!(keep as u64, T0 / S + 1200);
        for _ in 0..2 {
            count(&mut cell, T0, &rule());
        }
        let keep = count(&mut cell, T0 + S, &rule());
        assert!(keep as u64 >= T0 / S + 3600, "a strike is remembered for the rule's memory");
    }

    #[test]
    fn the_sliding_count_forgets_gradually() {
        let lenient = Escalation { threshold: 100, ..rule() };
        let mut cell = counter(1);
        for _ in 0..10 {
            count(&mut cell, T0, &lenient);
        }
        let Cell::Count { start, current, previous, .. } = &mut cell else { unreachable!() };
        let (mut s, mut c, mut p) = (*start, *current, *previous);
        roll(&mut s, &mut c, &mut p, secs(T0 + 900 * S), 600);
        assert_eq!(estimate(s, c, p, secs(T0 + 900 * S), 600), 5);
    }

    #[test]
    fn a_lifted_penalty_is_gone_and_does_not_escalate_the_next_one() {
        let mut cell = counter(7);
        for _ in 0..3 {
            count(&mut cell, T0, &rule());
        }
        assert_eq!(cell.penalty_remaining(T0), 60 * S);
        lift(&mut cell);
        assert_eq!(cell.penalty_remaining(T0), 0);
        for _ in 0..3 {
            count(&mut cell, T0 + S, &rule());
        }
        assert_eq!(cell.penalty_remaining(T0 + S), 60 * S, "a first penalty again, not a doubled one");
    }

    #[test]
    fn gcra_admits_a_burst_then_paces() {
        let mut tat = 0;
        let interval = 12 * S;
        for _ in 0..5 {
            assert!(gcra(&mut tat, T0, interval, 4 * interval).is_ok());
        }
        assert_eq!(gcra(&mut tat, T0, interval, 4 * interval), Err(12 * S));
        assert!(gcra(&mut tat, T0 + 12 * S, interval, 4 * interval).is_ok());
    }

    #[test]
    fn a_distinct_set_counts_members_whose_latest_outcome_failed() {
        let rule = DistinctRule::for_tests(3);
        let mut set = DistinctSet::default();
        distinct(&mut set, T0, 10, true, &rule);
        distinct(&mut set, T0, 10, false, &rule); // resolved: the owner got in
        distinct(&mut set, T0, 20, true, &rule);
        distinct(&mut set, T0, 30, true, &rule);
        assert!(!set.penalty.is_blocked(T0));
        distinct(&mut set, T0, 40, true, &rule);
        assert!(set.penalty.is_blocked(T0));
        assert!(set.entries.is_empty());
    }

    #[test]
    fn the_inline_distinct_cell_decides_as_the_boxed_set_does_and_boxes_only_a_second_member() {
        let rule = DistinctRule { suspect: Some((2, 0.25)), cap: 4, ..DistinctRule::for_tests(3) };
        let mut cell = empty_distinct(7);
        distinct_cell(&mut cell, T0, 10, true, &rule);
        distinct_cell(&mut cell, T0 + S, 10, false, &rule);
        assert!(matches!(cell, Cell::DistinctOne { print: 10, .. }), "one member stays inline: {cell:?}");
        distinct_cell(&mut cell, T0 + 2 * S, 20, true, &rule);
        assert!(matches!(cell, Cell::Distinct { .. }), "a second member is boxed");
        // Pseudo-random sequences (members, outcomes, times) through both forms: same keep times and penalties.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200 {
            let (mut inline, mut boxed) = (empty_distinct(1), DistinctSet::default());
            let mut now = T0;
            for _ in 0..12 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                now += (seed % 400) * S;
                let (member, failed) = (((seed >> 8) % 3) as u32 * 2 + 2, (seed >> 16) % 4 != 0);
                let kept = distinct_cell(&mut inline, now, member, failed, &rule);
                assert_eq!(kept, distinct(&mut boxed, now, member, failed, &rule));
                assert_eq!(inline.penalty_until(), boxed.penalty.until);
            }
        }
    }

    #[test]
    fn a_recent_set_keeps_the_latest_members_for_a_while() {
        let mut set = RecentSet::default();
        for member in 1..=5 {
            remember(&mut set, T0, member, 4, 100 * S);
        }
        let cell = Cell::Recent { id: 1, set: Box::new(set) };
        assert!(!cell.contains(1, T0), "the oldest was pushed out");
        assert!(cell.contains(5, T0));
        assert!(!cell.contains(5, T0 + 200 * S), "forgotten after its keep time");
    }
}
