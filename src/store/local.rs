//! The in-process backend: per key kind, a sharded map from key to record, with a hard cap.
//!
//! Keys are already uniform keyed hashes, so the maps use them as their own hash (no second hashing). When a shard
//! reaches its share of the cap it drops expired records; if that frees less than a tenth of it, it evicts records
//! without a live penalty, and only then any. A flood of distinct keys therefore costs at most `max_tracked_keys`
//! records per kind and never lifts a penalty that is in force while unpenalised records remain.

use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::Mutex;
use smallvec::SmallVec;

use super::cell::{self, secs, Cell, RecentSet};
use super::pages::OsPages;
use super::{CellId, KeyCounts, KeyKind, Read, ReadFuture, Replies, Reply, StateKey, Store, Struck, Write};

const SHARDS: usize = 64;

/// A record: the cells of every defense keyed on one key, and until when any of them matters.
#[derive(Debug, Default)]
struct Record<const N: usize> {
    /// Second after which nothing in the record matters.
    expires: u32,
    /// Second until which some cell holds a penalty (eviction spares these).
    penalised: u32,
    cells: SmallVec<[Cell; N]>,
}

/// The size of a record as the map stores it (key and value) for the narrow and the wide key kinds, for the memory
/// figures in docs/operations.md.
pub const RECORD_BYTES: [usize; 2] = [std::mem::size_of::<(u64, Record<1>)>(), std::mem::size_of::<(u64, Record<4>)>()];

impl<const N: usize> Record<N> {
    fn cell(&self, id: CellId) -> Option<&Cell> {
        self.cells.iter().find(|c| c.id() == id)
    }

    fn cell_or(&mut self, id: CellId, make: impl FnOnce() -> Cell) -> &mut Cell {
        let at = match self.cells.iter().position(|c| c.id() == id) {
            Some(at) => at,
            None => {
                self.cells.push(make());
                self.cells.len() - 1
            }
        };
        &mut self.cells[at]
    }

    fn extend(&mut self, until: u32) {
        self.expires = self.expires.max(until);
    }
}

/// Keys are keyed hashes already: use them as the map's hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A shard's records: a hashbrown table on pages of its own (see `pages.rs`).
type Map<const N: usize> = hashbrown::HashMap<u64, Record<N>, BuildHasherDefault<IdHasher>, OsPages>;
type Shard<const N: usize> = Padded<Mutex<Map<N>>>;

/// A shard's lock and table header (~40 bytes) on cache lines of their own. Unpadded, neighbouring shards shared a
/// line, and a core locking one shard took the line from a core locking the next: measured with two threads taking
/// 8 random locks of 64 apiece, ~345 ns unpadded against ~252 ns on 128-byte lines (one thread: 130-140 ns either
/// way; `cargo bench --bench contention`).
/// 128, not 64: the adjacent-line prefetcher pulls lines in pairs.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One key kind's shards. Records keep their cells inline, as many as the kind usually needs: an address or an
/// account carries most defenses of a login route (rate, failures, distinct accounts, ...: 3 to 4 cells), a pair, a
/// password, a session or a device one. More still work (they move to the heap); fewer leave no unused slots in a
/// table of a million records, which is most of the memory a tracked key costs.
enum Table {
    Narrow(Box<[Shard<1>]>),
    Wide(Box<[Shard<4>]>),
}

impl Table {
    fn new(kind: KeyKind, per_shard_cap: usize) -> Table {
        match kind {
            KeyKind::Address | KeyKind::Account => Table::Wide(shards(per_shard_cap)),
            _ => Table::Narrow(shards(per_shard_cap)),
        }
    }
}

/// Shards sized for their cap from the start, on pages mapped for them (see `pages.rs`): they never grow, and cost
/// what their records touch.
fn shards<const N: usize>(per_shard_cap: usize) -> Box<[Shard<N>]> {
    (0..SHARDS)
        .map(|_| Padded(Mutex::new(Map::with_capacity_and_hasher_in(per_shard_cap, Default::default(), OsPages))))
        .collect()
}

/// Run `$body` with `$shards` bound to a table's shards, whatever its record width.
macro_rules! on_table {
    ($table:expr, |$shards:ident| $body:expr) => {
        match $table {
            Table::Narrow($shards) => $body,
            Table::Wide($shards) => $body,
        }
    };
}

pub struct LocalStore {
    kinds: Vec<Table>,
    per_shard_cap: usize,
}

impl LocalStore {
    /// At most `max_keys` records per key kind.
    pub fn new(max_keys: usize) -> LocalStore {
        let per_shard_cap = table_fill(max_keys / SHARDS);
        let kinds = KeyKind::ALL.iter().map(|&kind| Table::new(kind, per_shard_cap)).collect();
        LocalStore { kinds, per_shard_cap }
    }

    /// The most records one key kind may hold.
    pub fn capacity_per_kind(&self) -> usize {
        self.per_shard_cap * SHARDS
    }

    /// Apply an answer's writes, grouped by key: one shard lock and one map lookup per key, as for reads (a login
    /// writes several cells of the address, of the account, ...). Order within a key is kept.
    fn write_grouped(&self, writes: &[Write], now: u64, struck: &mut Struck) {
        for_each_key(
            writes.len(),
            |i| writes[i].key(),
            |key, group| {
                on_table!(&self.kinds[key.kind as usize], |shards| {
                    write_group(&shards[shard_index(&key)], self.per_shard_cap, writes, group, now, struck)
                })
            },
        )
    }

    /// Per kind: records, cells, records whose cells spilled to the heap, and boxed sets (for the memory benchmark).
    pub fn cell_census(&self) -> Vec<(KeyKind, usize, usize, usize, usize)> {
        KeyKind::ALL
            .iter()
            .map(|&kind| {
                let (mut records, mut cells, mut spilled, mut boxed) = (0, 0, 0, 0);
                on_table!(&self.kinds[kind as usize], |shards| {
                    for shard in shards.iter() {
                        for record in shard.lock().values() {
                            records += 1;
                            cells += record.cells.len();
                            spilled += usize::from(record.cells.spilled());
                            boxed += record
                                .cells
                                .iter()
                                .filter(|c| matches!(c, Cell::Distinct { .. } | Cell::Recent { .. }))
                                .count();
                        }
                    }
                });
                (kind, records, cells, spilled, boxed)
            })
            .collect()
    }

    /// Records per kind, and how many hold a penalty in force (for the memory benchmark and tests).
    pub fn census(&self, now: u64) -> Vec<(KeyKind, usize, usize)> {
        let at = secs(now);
        KeyKind::ALL
            .iter()
            .map(|&kind| {
                let (mut records, mut penalised) = (0, 0);
                on_table!(&self.kinds[kind as usize], |shards| {
                    for shard in shards.iter() {
                        let shard = shard.lock();
                        records += shard.len();
                        penalised += shard.values().filter(|r| r.penalised > at).count();
                    }
                });
                (kind, records, penalised)
            })
            .collect()
    }
}

/// Call `serve` once per distinct key of `n` operations, with the indices of that key's operations in their order.
fn for_each_key(n: usize, key: impl Fn(usize) -> StateKey, mut serve: impl FnMut(StateKey, &[usize])) {
    let mut order: SmallVec<[usize; 16]> = (0..n).collect();
    // Stable: a key's operations keep their order.
    order.sort_by_key(|&i| {
        let k = key(i);
        (k.kind as u8, k.id)
    });
    for group in order.chunk_by(|&a, &b| key(a) == key(b)) {
        serve(key(group[0]), group);
    }
}

/// Serve one key's reads (`group`, indices into `reads`) under one shard lock and one map lookup, each reply into
/// the same index of `out`.
fn read_group<const N: usize>(
    shard: &Shard<N>,
    cap: usize,
    reads: &[Read],
    group: &[usize],
    now: u64,
    out: &mut [Reply],
) {
    let Some(&first) = group.first() else { return };
    let key = reads[first].key();
    let at = secs(now);
    let mut shard = shard.lock();
    let creates = group.iter().any(|&i| matches!(reads[i], Read::Gcra { .. } | Read::Claim { .. }));
    if creates && is_full(&shard, cap) && !shard.contains_key(&key.id) {
        make_room(&mut shard, cap, at);
    }
    let mut record = if creates { Some(shard.entry(key.id).or_default()) } else { shard.get_mut(&key.id) };
    for &i in group {
        out[i] = match (&reads[i], record.as_deref_mut()) {
            (Read::Gcra { cell: id, interval, tolerance, .. }, Some(record)) => {
                let id = *id;
                let Cell::Gcra { tat, .. } = record.cell_or(id, || Cell::Gcra { id, tat: 0 }) else {
                    out[i] = Reply::Admit;
                    continue;
                };
                match cell::gcra(tat, now, *interval, *tolerance) {
                    Ok(until) => {
                        record.extend(until);
                        Reply::Admit
                    }
                    Err(wait) => Reply::Wait(wait),
                }
            }
            (Read::Claim { cell: id, ttl, .. }, Some(record)) => {
                let id = *id;
                let until = secs(now + ttl).max(at + 1);
                let cell = record.cell_or(id, || Cell::Last { id, value: 0, until: 0 });
                match cell {
                    Cell::Last { value, until: held_until, .. } if !(*value == 1 && at < *held_until) => {
                        (*value, *held_until) = (1, until);
                        record.extend(until);
                        Reply::Claimed(true)
                    }
                    _ => Reply::Claimed(false),
                }
            }
            (Read::Penalty { cell, .. }, record) => {
                Reply::Penalty(record.and_then(|r| r.cell(*cell)).map(|c| c.penalty_remaining(now)).unwrap_or(0))
            }
            (Read::Contains { cell, member, .. }, record) => {
                Reply::Contains(record.and_then(|r| r.cell(*cell)).is_some_and(|c| c.contains(*member, now)))
            }
            (Read::Last { cell, .. }, record) => {
                Reply::Last(record.and_then(|r| r.cell(*cell)).and_then(|c| c.last(now)))
            }
            (Read::Gcra { .. }, None) => Reply::Admit,
            (Read::Claim { .. }, None) => Reply::Claimed(false),
        };
    }
}

/// Apply one key's writes under one shard lock and one lookup (see [`LocalStore::write_grouped`]).
fn write_group<const N: usize>(
    shard: &Shard<N>,
    cap: usize,
    writes: &[Write],
    group: &[usize],
    now: u64,
    struck: &mut Struck,
) {
    let Some(&first) = group.first() else { return };
    let key = writes[first].key();
    let mut shard = shard.lock();
    let creates = group.iter().any(|&i| !matches!(writes[i], Write::ResetCount { .. } | Write::Lift { .. }));
    if creates && is_full(&shard, cap) && !shard.contains_key(&key.id) {
        make_room(&mut shard, cap, secs(now));
    }
    let record = if creates { Some(shard.entry(key.id).or_default()) } else { shard.get_mut(&key.id) };
    let Some(record) = record else { return };
    for &i in group {
        if let Some(left) = apply(record, &writes[i], now) {
            struck.push((i, left));
        }
    }
}

/// Apply one write to its key's record; for a count or distinct-set write that imposed a new penalty, the
/// nanoseconds it lasts.
fn apply<const N: usize>(record: &mut Record<N>, write: &Write, now: u64) -> Option<u64> {
    let mut struck = None;
    let until = match *write {
        Write::ResetCount { cell: id, .. } => {
            if let Some(cell) = record.cells.iter_mut().find(|c| c.id() == id) {
                cell::reset_count(cell);
            }
            return None;
        }
        Write::Lift { cell: id, .. } => {
            if let Some(cell) = record.cells.iter_mut().find(|c| c.id() == id) {
                cell::lift(cell);
            }
            // Eviction may take the record again once no other cell holds a penalty.
            record.penalised = record.cells.iter().map(Cell::penalty_until).max().unwrap_or(0);
            return None;
        }
        Write::Count { cell: id, rule, .. } => {
            let cell =
                record.cell_or(id, || Cell::Count { id, start: 0, current: 0, previous: 0, until: 0, strikes: 0 });
            let before = cell.penalty_until();
            let keep = cell::count(cell, now, &rule);
            struck = new_penalty(before, cell, now);
            let penalised = cell.penalty_until();
            record.penalised = record.penalised.max(penalised);
            keep
        }
        Write::Distinct { cell: id, member, failed, rule, .. } => {
            let cell = record.cell_or(id, || cell::empty_distinct(id));
            let before = cell.penalty_until();
            let keep = cell::distinct_cell(cell, now, member, failed, &rule);
            struck = new_penalty(before, cell, now);
            let penalised = cell.penalty_until();
            record.penalised = record.penalised.max(penalised);
            keep
        }
        Write::Remember { cell: id, member, cap, keep, .. } => {
            let cell = record.cell_or(id, || Cell::Recent { id, set: Box::<RecentSet>::default() });
            let Cell::Recent { set, .. } = cell else { return None };
            cell::remember(set, now, member, cap, keep)
        }
        Write::SetLast { cell: id, value, keep, .. } => {
            let until = secs(now + keep);
            let cell = record.cell_or(id, || Cell::Last { id, value, until });
            if let Cell::Last { value: v, until: u, .. } = cell {
                (*v, *u) = (value, until);
            }
            until
        }
    };
    record.extend(until);
    struck
}

/// The shard of a key: its top bits (hashbrown uses the low and top-7 bits inside the shard, which stay uniform).
fn shard_index(key: &StateKey) -> usize {
    (key.id >> 40) as usize % SHARDS
}

/// The most records a shard holds: the request, rounded down to what a hash table of a power-of-two size holds at
/// its maximum load (7/8). A cap just above that boundary would double the table for a few more records, and
/// leave half of it empty: 134 bytes of table per record instead of 73 at 1M keys.
fn table_fill(wanted: usize) -> usize {
    let wanted = wanted.max(8);
    let mut buckets = 16usize;
    while (buckets * 2) / 8 * 7 <= wanted {
        buckets *= 2;
    }
    (buckets / 8 * 7).min(wanted).max(8)
}

/// The penalty a write imposed: the cell's penalty moved later and is in force.
fn new_penalty(before: u32, cell: &Cell, now: u64) -> Option<u64> {
    let after = cell.penalty_until();
    (after > before).then(|| cell.penalty_remaining(now)).filter(|left| *left > 0)
}

/// A shard takes no new key before it makes room: it holds its cap, or its table has no room left that a new key
/// could take without hashbrown growing it (tombstones left by removals take room until a new key lands on one).
fn is_full<const N: usize>(shard: &Map<N>, cap: usize) -> bool {
    shard.len() >= cap || shard.capacity() <= shard.len()
}

/// Free a tenth of a full shard's cap: expired records first, then records without a live penalty, then any.
fn make_room<const N: usize>(shard: &mut Map<N>, cap: usize, now: u32) {
    let target = shard.len().min(cap).saturating_sub(cap / 10 + 1);
    shard.retain(|_, r| r.expires > now);
    for spare_penalties in [true, false] {
        if shard.len() <= target {
            break;
        }
        let mut excess = shard.len() - target;
        shard.retain(|_, r| {
            if excess == 0 || (spare_penalties && r.penalised > now) {
                return true;
            }
            excess -= 1;
            false
        });
    }
    keep_size(shard, cap);
}

/// Clean a shard's table of tombstones once they leave it less than a twentieth of its cap in room. Removing from
/// a full hash table leaves tombstones, which use up its room like records do until a new key lands on one; with no
/// room left, hashbrown doubles a table that is more than half full rather than clean it in place (measured: every
/// shard of a store churning at its cap had doubled, and a tracked key cost twice the table it needs). `is_full`
/// makes room before that can happen, and this puts the records back into the same memory: no new mapping, no page
/// faults, no pages for the kernel to zero (`pipeline/login_allowed` 7.0 -> 6.2 us, the 2M-login memory feed 7.1 ->
/// 6.0 us per login, `benches/RESULTS.md`). Runs at most once per make_room or prune.
fn keep_size<const N: usize>(shard: &mut Map<N>, cap: usize) {
    if shard.capacity() >= (shard.len() + cap / 20).min(cap) {
        return;
    }
    // Drained, the table keeps its memory with every slot empty again.
    let records: Vec<(u64, Record<N>)> = shard.drain().collect();
    shard.extend(records);
}

impl Store for LocalStore {
    /// Reads grouped by key, as writes are (a phase's defenses read the account, the password, the account
    /// again...): one shard lock and one lookup per key.
    fn read<'a>(&'a self, reads: &'a [Read], now: u64, replies: &'a mut Replies) -> ReadFuture<'a> {
        let base = replies.len();
        replies.resize(base + reads.len(), Reply::Admit);
        let out = &mut replies[base..];
        for_each_key(
            reads.len(),
            |i| reads[i].key(),
            |key, group| {
                on_table!(&self.kinds[key.kind as usize], |shards| {
                    read_group(&shards[shard_index(&key)], self.per_shard_cap, reads, group, now, out)
                })
            },
        );
        ReadFuture::Ready(Ok(()))
    }

    fn write(&self, writes: &[Write], now: u64) {
        self.write_grouped(writes, now, &mut Struck::new());
    }

    fn write_reporting(&self, writes: &[Write], now: u64, struck: &mut Struck) {
        self.write_grouped(writes, now, struck);
    }

    fn prune(&self, now: u64) {
        let at = secs(now);
        for table in &self.kinds {
            on_table!(table, |shards| {
                for shard in shards.iter() {
                    let mut shard = shard.lock();
                    // Never shrunk nor grown: the table keeps the size it was given (see `shards`, `keep_size`).
                    shard.retain(|_, r| r.expires > at);
                    keep_size(&mut shard, self.per_shard_cap);
                }
            })
        }
    }

    fn tracked_keys(&self) -> KeyCounts {
        KeyKind::ALL.map(|kind| {
            (kind, on_table!(&self.kinds[kind as usize], |shards| shards.iter().map(|s| s.lock().len()).sum()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DistinctRule, Escalation};

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_767_225_600 * S;

    fn key(kind: KeyKind, id: u64) -> StateKey {
        // Spread test ids over the shards as real keyed hashes would be.
        StateKey { kind, id: id.wrapping_mul(0x9E37_79B9_7F4A_7C15) }
    }

    fn rule(threshold: u32) -> Escalation {
        Escalation { threshold, window: 600 * S, penalty: 900 * S, max_penalty: 3600 * S, memory: 86_400 * S }
    }

    fn penalty(store: &LocalStore, key: StateKey, cell: CellId, now: u64) -> u64 {
        let mut replies = Replies::new();
        let _ = store.read(&[Read::Penalty { key, cell }], now, &mut replies).now_or_never();
        match replies[0] {
            Reply::Penalty(left) => left,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_store_churning_at_its_cap_never_grows_its_tables() {
        let store = LocalStore::new(64 * 1024);
        let size = |store: &LocalStore| {
            on_table!(&store.kinds[KeyKind::Password as usize], |shards| {
                shards.iter().map(|s| s.lock().capacity()).max().unwrap_or(0)
            })
        };
        let before = size(&store);
        assert!(before >= store.per_shard_cap);
        let rule = rule(1000);
        // Ten times the cap in distinct keys: every shard evicts again and again.
        for i in 0..(10 * store.capacity_per_kind() as u64) {
            store.write(&[Write::Count { key: key(KeyKind::Password, i), cell: 1, rule }], T0 + i * 1000);
        }
        assert_eq!(size(&store), before, "tombstones must not make a table double");
        let tracked = store.tracked_keys()[KeyKind::Password as usize].1;
        assert!(tracked <= store.capacity_per_kind());
        // Making room when tombstones use up a table's room must not cost the store its cap: it still tracks most
        // of what it was given.
        assert!(tracked * 10 >= store.capacity_per_kind() * 8, "{tracked} of {}", store.capacity_per_kind());
    }

    #[test]
    fn reads_of_keys_interleaved_are_answered_in_their_order_as_if_one_by_one() {
        let store = LocalStore::new(10_000);
        let (a, b) = (key(KeyKind::Account, 1), key(KeyKind::Password, 2));
        // One token of burst: a key's second GCRA read in the same batch waits, whatever lies between.
        let gcra = |key| Read::Gcra { key, cell: 3, interval: 10 * S, tolerance: 0 };
        store.write(&[Write::Count { key: b, cell: 4, rule: rule(1) }], T0);
        let reads = [gcra(a), Read::Penalty { key: b, cell: 4 }, gcra(b), gcra(a), Read::Penalty { key: a, cell: 4 }];
        let mut replies = Replies::new();
        replies.push(Reply::Claimed(true)); // replies are appended after what is there
        let _ = store.read(&reads, T0, &mut replies).now_or_never();
        assert_eq!(
            replies.as_slice(),
            [
                Reply::Claimed(true),
                Reply::Admit,
                Reply::Penalty(900 * S),
                Reply::Admit,
                Reply::Wait(10 * S),
                Reply::Penalty(0)
            ]
        );
    }

    #[test]
    fn a_record_holds_one_cell_per_defense_and_a_login_touches_one_record_per_key() {
        let store = LocalStore::new(10_000);
        let address = key(KeyKind::Address, 1);
        store.write(&[Write::Count { key: address, cell: 10, rule: rule(5) }], T0);
        store.write(&[Write::Count { key: address, cell: 11, rule: rule(1) }], T0);
        let counts = store.tracked_keys();
        assert_eq!(counts[KeyKind::Address as usize].1, 1, "two defenses, one record");
        assert_eq!(penalty(&store, address, 10, T0), 0);
        assert_eq!(penalty(&store, address, 11, T0), 900 * S, "cells are apart");
    }

    #[test]
    fn records_without_a_strike_expire_after_their_window_and_penalties_are_remembered() {
        let store = LocalStore::new(10_000);
        let quiet = key(KeyKind::Address, 1);
        let struck = key(KeyKind::Address, 2);
        store.write(&[Write::Count { key: quiet, cell: 10, rule: rule(5) }], T0);
        store.write(&[Write::Count { key: struck, cell: 10, rule: rule(1) }], T0);
        // Two windows (the sliding window's reach) later the unstruck record is gone, not kept a day.
        store.prune(T0 + 1201 * S);
        assert_eq!(store.tracked_keys()[0].1, 1);
        store.prune(T0 + 900 * S + 86_400 * S + S);
        assert_eq!(store.tracked_keys()[0].1, 0, "strike memory over");
    }

    #[test]
    fn eviction_under_the_cap_keeps_live_penalties() {
        let store = LocalStore::new(8 * SHARDS);
        let blocked: Vec<StateKey> = (0..40).map(|i| key(KeyKind::Account, i)).collect();
        for &k in &blocked {
            store.write(&[Write::Count { key: k, cell: 3, rule: rule(1) }], T0);
        }
        for i in 1000..200_000 {
            store.write(&[Write::Count { key: key(KeyKind::Account, i), cell: 3, rule: rule(5) }], T0 + S);
        }
        assert!(store.tracked_keys()[1].1 <= store.capacity_per_kind());
        for &k in &blocked {
            assert!(penalty(&store, k, 3, T0 + 2 * S) > 0, "a live penalty was evicted by a flood");
        }
    }

    #[test]
    fn lift_clears_a_count_penalty_and_a_distinct_set_penalty() {
        let store = LocalStore::new(10_000);
        let address = key(KeyKind::Address, 3);
        store.write(&[Write::Count { key: address, cell: 10, rule: rule(1) }], T0);
        assert_eq!(penalty(&store, address, 10, T0), 900 * S);
        store.write(&[Write::Lift { key: address, cell: 10 }], T0 + S);
        assert_eq!(penalty(&store, address, 10, T0 + S), 0);
        let password = key(KeyKind::Password, 3);
        let rule = DistinctRule::for_tests(1);
        store.write(&[Write::Distinct { key: password, cell: 5, member: 100, failed: true, rule }], T0);
        assert_eq!(penalty(&store, password, 5, T0), 60 * S);
        store.write(&[Write::Lift { key: password, cell: 5 }], T0);
        assert_eq!(penalty(&store, password, 5, T0), 0);
        // Lifting what is not there creates nothing.
        store.write(&[Write::Lift { key: key(KeyKind::Account, 99), cell: 1 }], T0);
        assert_eq!(store.tracked_keys()[KeyKind::Account as usize].1, 0);
    }

    #[test]
    fn gcra_state_lives_in_the_record() {
        let store = LocalStore::new(1000);
        let k = key(KeyKind::Address, 9);
        let read = [Read::Gcra { key: k, cell: 2, interval: 12 * S, tolerance: 48 * S }];
        let mut replies = Replies::new();
        for _ in 0..6 {
            let _ = store.read(&read, T0, &mut replies).now_or_never();
        }
        assert_eq!(replies[..5], [Reply::Admit; 5]);
        assert_eq!(replies[5], Reply::Wait(12 * S));
    }

    #[test]
    fn a_write_reports_the_penalty_it_imposed_once() {
        let store = LocalStore::new(1000);
        let k = key(KeyKind::Account, 5);
        let count = [Write::Count { key: k, cell: 3, rule: rule(2) }];
        let mut struck = Struck::new();
        store.write_reporting(&count, T0, &mut struck);
        assert!(struck.is_empty(), "below the threshold");
        store.write_reporting(&count, T0, &mut struck);
        assert_eq!(struck[..], [(0, 900 * S)], "the second failure strikes");
        struck.clear();
        store.write_reporting(&count, T0 + S, &mut struck);
        assert!(struck.is_empty(), "events while blocked impose nothing new");
    }

    #[test]
    fn shard_caps_fill_their_tables() {
        assert_eq!(table_fill(15_625), 14_336, "1M keys over 64 shards: a 16,384-bucket table at 7/8");
        assert_eq!(table_fill(14_336), 14_336);
        assert_eq!(table_fill(100), 56);
        assert_eq!(table_fill(3), 8);
    }

    #[test]
    fn a_claim_is_granted_once_until_it_expires() {
        let store = LocalStore::new(1000);
        let token = key(KeyKind::Challenge, 42);
        let claim = [Read::Claim { key: token, cell: 2, ttl: 120 * S }];
        let mut replies = Replies::new();
        for at in [T0, T0 + S, T0 + 121 * S] {
            let _ = store.read(&claim, at, &mut replies).now_or_never();
        }
        assert_eq!(replies[..], [Reply::Claimed(true), Reply::Claimed(false), Reply::Claimed(true)]);
    }

    #[test]
    fn distinct_and_recent_sets_round_trip() {
        let store = LocalStore::new(1000);
        let k = key(KeyKind::Password, 4);
        let rule = DistinctRule::for_tests(2);
        store.write(&[Write::Distinct { key: k, cell: 5, member: 100, failed: true, rule }], T0);
        assert_eq!(penalty(&store, k, 5, T0), 0);
        store.write(&[Write::Distinct { key: k, cell: 5, member: 200, failed: true, rule }], T0);
        assert_eq!(penalty(&store, k, 5, T0), 60 * S);
        let account = key(KeyKind::Account, 4);
        store.write(&[Write::Remember { key: account, cell: 1, member: 77, cap: 4, keep: 100 * S }], T0);
        let mut replies = Replies::new();
        let reads = [
            Read::Contains { key: account, cell: 1, member: 77 },
            Read::Contains { key: account, cell: 1, member: 78 },
        ];
        let _ = store.read(&reads, T0, &mut replies).now_or_never();
        assert_eq!(replies[..], [Reply::Contains(true), Reply::Contains(false)]);
    }
}
