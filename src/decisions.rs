//! What is blocked now, for operators: the `cscli decisions` of stuffgate (served on the admin listener under
//! `/decisions`, and by `stuffgate decisions list|delete|ban`).
//!
//! The store cannot list what it holds in clear: its keys are keyed 64-bit hashes (see `keys.rs`). So the engine
//! notes each penalty here when an upstream answer imposes it ([`Decisions::note_penalty`], called from
//! `engine::observe`, where the address and the account key are known): a bounded index of recent penalties with the
//! store key and cell that hold them, so that lifting one is a real store operation (`Write::Lift`). Manual bans are
//! address ranges with an expiry, consulted before any defense runs (`engine::decide`, and the proxy for routes that
//! are not protected).
//!
//! Both live in memory: a restart forgets manual bans (as it forgets the local store's penalties).
//!
//! [`AddressBlocks`] is what the listener consults when a connection is accepted, before any HTTP parsing: the
//! manual bans, the policy's `ip_list` deny lists, and the addresses an address-level defense (`ip_rate`,
//! `ip_failures`, `distinct_accounts`) refused, each until the time its refusal named. It holds only what this
//! process decided or was told, so the check costs no store round trip and no allocation.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use parking_lot::Mutex;
use serde::Serialize;

use crate::attempt::IpKey;
use crate::config::Policy;
use crate::defense::{Action, Mode};
use crate::ip_ranges::IpRanges;
use crate::store::{CellId, StateKey};

const NANOS: u64 = 1_000_000_000;

/// Most penalties the index keeps (the oldest are dropped first once it is full; the store keeps enforcing them).
pub const PENALTY_INDEX_CAPACITY: usize = 10_000;
/// Most manual bans.
pub const MAX_BANS: usize = 10_000;
/// Addresses whose blocked requests are counted for the dashboard's "top blocked addresses".
const TOP_BLOCKED_CAPACITY: usize = 4096;

/// A penalty a defense imposed, as the index remembers it.
#[derive(Clone, Debug, Serialize)]
pub struct PenaltyEntry {
    /// `p<number>`: what `DELETE /decisions/{id}` takes.
    pub id: String,
    pub route: String,
    pub defense: &'static str,
    /// What the penalty is keyed on: `address`, `account`, `account_address`, `password` or `session`.
    pub scope: &'static str,
    /// The client address whose request imposed it.
    pub address: IpAddr,
    /// The account's keyed hash (as in the decision log), when the request named one.
    pub account: Option<String>,
    /// Unix seconds.
    pub since: u64,
    pub until: u64,
    /// The number in `id`: orders entries noted within one second.
    #[serde(skip)]
    pub number: u64,
    #[serde(skip)]
    pub key: StateKey,
    #[serde(skip)]
    pub cell: CellId,
}

/// A manual ban: an address range refused (403) on every route until it expires.
#[derive(Clone, Debug, Serialize)]
pub struct Ban {
    /// `b<number>`.
    pub id: String,
    pub range: IpNet,
    pub reason: String,
    pub since: u64,
    /// Unix seconds; `None`: until lifted.
    pub until: Option<u64>,
}

impl Ban {
    fn live(&self, now_secs: u64) -> bool {
        self.until.is_none_or(|until| now_secs < until)
    }
}

/// One address's blocked requests, for the dashboard.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BlockedAddress {
    pub address: IpAddr,
    pub blocked: u64,
}

#[derive(Default)]
struct Index {
    next: u64,
    /// By store key and cell: one entry per penalised cell, re-noted when it is imposed again.
    penalties: HashMap<(StateKey, CellId), PenaltyEntry>,
}

impl Index {
    /// Free a tenth of a full index: the expired entries, then the oldest. One pass frees room for many penalties,
    /// so under an attack that imposes thousands (the index full of live ones) a new penalty costs O(1) amortised,
    /// not a scan of the whole index under the lock every gateway thread takes.
    fn make_room(&mut self, now_secs: u64) {
        self.penalties.retain(|_, entry| entry.until > now_secs);
        let target = PENALTY_INDEX_CAPACITY - PENALTY_INDEX_CAPACITY / 10;
        if self.penalties.len() <= target {
            return;
        }
        let mut since: Vec<(u64, u64)> = self.penalties.values().map(|e| (e.since, e.number)).collect();
        let excess = self.penalties.len() - target;
        let (_, &mut cut, _) = since.select_nth_unstable(excess - 1);
        self.penalties.retain(|_, e| (e.since, e.number) > cut);
    }
}

#[derive(Default)]
pub struct Decisions {
    index: Mutex<Index>,
    /// Read on every request (lock-free); written by the admin API only.
    bans: ArcSwap<Vec<Ban>>,
    next_ban: Mutex<u64>,
    blocked: [Mutex<HashMap<IpAddr, u64>>; BLOCKED_SHARDS],
    /// What the listener refuses at accept (besides the bans above).
    pub address_blocks: AddressBlocks,
}

/// What [`Decisions::remove`] took away.
pub enum Removed {
    /// A penalty: the caller lifts it in the store.
    Penalty(PenaltyEntry),
    Ban(Ban),
}

impl Decisions {
    pub fn new() -> Arc<Decisions> {
        Arc::new(Decisions::default())
    }

    /// Note a penalty a write just imposed (`remaining` nanoseconds of it left at `now`).
    #[allow(clippy::too_many_arguments)]
    pub fn note_penalty(
        &self,
        key: StateKey,
        cell: CellId,
        route: &str,
        defense: &'static str,
        address: IpAddr,
        account: Option<StateKey>,
        now: u64,
        remaining: u64,
    ) {
        let (since, until) = (now / NANOS, (now + remaining).div_ceil(NANOS));
        let mut index = self.index.lock();
        if let Some(entry) = index.penalties.get_mut(&(key, cell)) {
            if entry.until > since {
                entry.until = until;
                return;
            }
        }
        if index.penalties.len() >= PENALTY_INDEX_CAPACITY {
            index.make_room(since);
        }
        index.next += 1;
        let entry = PenaltyEntry {
            id: format!("p{}", index.next),
            number: index.next,
            route: route.to_string(),
            defense,
            scope: key.kind.as_str(),
            address,
            account: account.map(|a| format!("{:016x}", a.id)),
            since,
            until,
            key,
            cell,
        };
        index.penalties.insert((key, cell), entry);
    }

    /// Penalties in force at `now`, latest first.
    pub fn penalties(&self, now: u64) -> Vec<PenaltyEntry> {
        let at = now / NANOS;
        let mut index = self.index.lock();
        index.penalties.retain(|_, entry| entry.until > at);
        let mut list: Vec<PenaltyEntry> = index.penalties.values().cloned().collect();
        list.sort_by_key(|e| std::cmp::Reverse((e.since, e.number)));
        list
    }

    /// Manual bans in force at `now`.
    pub fn bans(&self, now: u64) -> Vec<Ban> {
        let at = now / NANOS;
        self.bans.load().iter().filter(|b| b.live(at)).cloned().collect()
    }

    /// Ban `range` for `duration` (nanoseconds; `None`: until lifted). Refused when the list is full.
    pub fn ban(&self, range: IpNet, duration: Option<u64>, reason: &str, now: u64) -> Result<Ban, String> {
        let at = now / NANOS;
        let mut next = self.next_ban.lock();
        let mut bans: Vec<Ban> = self.bans.load().iter().filter(|b| b.live(at)).cloned().collect();
        if bans.len() >= MAX_BANS {
            return Err(format!("{MAX_BANS} bans are in force already; lift some first"));
        }
        *next += 1;
        let ban = Ban {
            id: format!("b{}", *next),
            range: range.trunc(),
            reason: reason.to_string(),
            since: at,
            until: duration.map(|d| (now + d).div_ceil(NANOS)),
        };
        bans.push(ban.clone());
        self.bans.store(Arc::new(bans));
        Ok(ban)
    }

    /// Whether a ban covers `ip` at `now`: [`Decisions::banned`] without copying the ban out (the listener asks on
    /// every accepted connection).
    pub fn is_banned(&self, ip: IpAddr, now: u64) -> bool {
        let bans = self.bans.load();
        if bans.is_empty() {
            return false;
        }
        let ip = unmapped(ip);
        let at = now / NANOS;
        bans.iter().any(|b| b.live(at) && b.range.contains(&ip))
    }

    /// Whether a new connection from `ip` is refused at accept: banned, denied by the policy, or refused by an
    /// address-level defense less than its retry time ago. Lock-free for bans and deny lists; one uncontended shard
    /// lock when any address is noted; never allocates.
    pub fn refused_at_accept(&self, ip: IpAddr, now: u64) -> bool {
        self.is_banned(ip, now) || self.address_blocks.blocks(ip, now)
    }

    /// The ban covering `ip` at `now`, if any. Lock-free; one pointer load when there are none.
    pub fn banned(&self, ip: IpAddr, now: u64) -> Option<Ban> {
        let bans = self.bans.load();
        if bans.is_empty() {
            return None;
        }
        let ip = unmapped(ip);
        let at = now / NANOS;
        bans.iter().find(|b| b.live(at) && b.range.contains(&ip)).cloned()
    }

    /// Remove a penalty from the index (the caller lifts it in the store) or lift a ban.
    pub fn remove(&self, id: &str) -> Option<Removed> {
        if id.starts_with('p') {
            let mut index = self.index.lock();
            let key = index.penalties.iter().find(|(_, e)| e.id == id).map(|(k, _)| *k)?;
            let removed = index.penalties.remove(&key)?;
            if removed.scope == "address" {
                // Lifted: the address may connect again at once (a penalty still in force refuses it again, by
                // request, and notes it again).
                self.address_blocks.forget(removed.address);
            }
            return Some(Removed::Penalty(removed));
        }
        if id.starts_with('b') {
            let _one_writer = self.next_ban.lock();
            let bans = self.bans.load();
            let ban = bans.iter().find(|b| b.id == id)?.clone();
            self.bans.store(Arc::new(bans.iter().filter(|b| b.id != id).cloned().collect()));
            return Some(Removed::Ban(ban));
        }
        None
    }

    /// Count a blocked request from `ip` (for the dashboard's top blocked addresses; bounded).
    pub fn note_block(&self, ip: IpAddr) {
        // Each thread counts in its own shard: a flood from one address, refused on every worker thread, would
        // otherwise have all of them take one lock per refused request.
        let mut blocked = self.blocked[thread_shard()].lock();
        if !blocked.contains_key(&ip) && blocked.len() >= TOP_BLOCKED_CAPACITY / BLOCKED_SHARDS {
            // Keep the heavy hitters: drop the addresses blocked least.
            let mut counts: Vec<u64> = blocked.values().copied().collect();
            counts.sort_unstable();
            let floor = counts[counts.len() / 2];
            blocked.retain(|_, n| *n > floor);
        }
        *blocked.entry(ip).or_insert(0) += 1;
    }

    /// The `n` addresses blocked most.
    pub fn top_blocked(&self, n: usize) -> Vec<BlockedAddress> {
        let mut total: HashMap<IpAddr, u64> = HashMap::new();
        for shard in &self.blocked {
            for (&address, &count) in shard.lock().iter() {
                *total.entry(address).or_insert(0) += count;
            }
        }
        let mut list: Vec<BlockedAddress> =
            total.into_iter().map(|(address, blocked)| BlockedAddress { address, blocked }).collect();
        list.sort_by(|a, b| b.blocked.cmp(&a.blocked).then(a.address.cmp(&b.address)));
        list.truncate(n);
        list
    }
}

/// Shards of the blocked-address counts (see [`Decisions::note_block`]).
const BLOCKED_SHARDS: usize = 16;

/// IPv4-mapped IPv6 addresses as the IPv4 address they carry.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Most addresses noted as refused (see [`AddressBlocks::note`]); past it new ones are refused per request only.
pub const ADDRESS_BLOCKS_CAPACITY: usize = 65_536;
const ADDRESS_SHARDS: usize = 16;

/// The address-level blocks the policy makes, as the listener checks them when a connection is accepted.
///
/// Addresses are keyed as the defenses key them ([`IpKey`]: IPv6 cut to the route's prefix), with the prefix length,
/// so a /64 noted under one route's prefix never stands for a /48 under another's. The policy's deny lists are
/// swapped in whole when a policy is loaded; a new policy also forgets every noted address (its limits may differ:
/// the next request re-notes any address still refused).
pub struct AddressBlocks {
    /// The union of the deny lists of every enforced, blocking `ip_list` of the policy.
    denied: ArcSwap<IpRanges>,
    /// `(prefix, key)` → refused until (clock nanoseconds). IPv4 keys use prefix 0.
    noted: [Mutex<HashMap<(u8, u128), u64>>; ADDRESS_SHARDS],
    /// Entries in `noted`, so that the common case (none) is one atomic load.
    count: AtomicUsize,
    /// The IPv6 prefix lengths noted so far, as a bit set (bit `p - 1` for /p): the keys to compute at accept.
    prefixes: [AtomicU64; 2],
}

impl Default for AddressBlocks {
    fn default() -> Self {
        AddressBlocks {
            denied: ArcSwap::from_pointee(IpRanges::default()),
            noted: Default::default(),
            count: AtomicUsize::new(0),
            prefixes: Default::default(),
        }
    }
}

impl AddressBlocks {
    /// Take a newly loaded policy's deny lists, and forget the addresses noted under the previous one.
    pub fn policy_loaded(&self, policy: &Policy) {
        let mut nets: Vec<(u128, u128)> = Vec::new();
        for (_, slot) in policy.slots() {
            if slot.mode != Mode::Enforce || !matches!(slot.action, Action::Block { .. }) {
                continue;
            }
            if let Some(denied) = slot.defense.denied_networks() {
                nets.extend_from_slice(denied.spans());
            }
        }
        self.denied.store(Arc::new(IpRanges::from_spans(nets)));
        for shard in &self.noted {
            let mut shard = shard.lock();
            self.count.fetch_sub(shard.len(), Ordering::Relaxed);
            shard.clear();
        }
    }

    /// An address-level defense refused `ip` (keyed with `ipv6_prefix`) until `until`.
    pub fn note(&self, ip: IpAddr, ipv6_prefix: u8, until: u64, now: u64) {
        let key = Self::key(ip, ipv6_prefix);
        let mut shard = self.noted[shard_of(key)].lock();
        if let Some(entry) = shard.get_mut(&key) {
            *entry = (*entry).max(until);
            return;
        }
        if shard.len() >= ADDRESS_BLOCKS_CAPACITY / ADDRESS_SHARDS {
            let before = shard.len();
            shard.retain(|_, until| *until > now);
            self.count.fetch_sub(before - shard.len(), Ordering::Relaxed);
            if shard.len() >= ADDRESS_BLOCKS_CAPACITY / ADDRESS_SHARDS {
                return;
            }
        }
        if key.0 != 0 {
            let bit = u32::from(key.0) - 1;
            self.prefixes[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
        shard.insert(key, until);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Forget every note about `ip` (a penalty on it was lifted).
    pub fn forget(&self, ip: IpAddr) {
        self.each_key(ip, |key| {
            let mut shard = self.noted[shard_of(key)].lock();
            if shard.remove(&key).is_some() {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            false
        });
    }

    /// Whether the policy refuses `ip` at `now` by its address alone.
    pub fn blocks(&self, ip: IpAddr, now: u64) -> bool {
        let denied = self.denied.load();
        if !denied.is_empty() && denied.contains(ip) {
            return true;
        }
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.each_key(ip, |key| self.noted[shard_of(key)].lock().get(&key).is_some_and(|until| *until > now))
    }

    /// Call `f` with each key `ip` may be noted under, until it returns true.
    fn each_key(&self, ip: IpAddr, mut f: impl FnMut((u8, u128)) -> bool) -> bool {
        let ip = unmapped(ip);
        if ip.is_ipv4() {
            return f(Self::key(ip, 0));
        }
        for (word, bits) in self.prefixes.iter().enumerate() {
            let mut bits = bits.load(Ordering::Relaxed);
            while bits != 0 {
                let prefix = (word * 64) as u8 + bits.trailing_zeros() as u8 + 1;
                bits &= bits - 1;
                if f(Self::key(ip, prefix)) {
                    return true;
                }
            }
        }
        false
    }

    fn key(ip: IpAddr, ipv6_prefix: u8) -> (u8, u128) {
        let ip = unmapped(ip);
        let prefix = if ip.is_ipv4() { 0 } else { ipv6_prefix.clamp(1, 128) };
        (prefix, IpKey::new(ip, prefix.max(1)).0)
    }
}

fn shard_of(key: (u8, u128)) -> usize {
    let folded = (key.1 as u64) ^ ((key.1 >> 64) as u64) ^ u64::from(key.0);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % ADDRESS_SHARDS
}

/// This thread's shard: threads are numbered as they first count a block.
fn thread_shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % BLOCKED_SHARDS;
    }
    SHARD.with(|shard| *shard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyKind;

    const S: u64 = NANOS;
    const T0: u64 = 1_767_225_600 * S;

    fn key(id: u64) -> StateKey {
        StateKey { kind: KeyKind::Address, id }
    }

    #[test]
    fn a_penalty_is_listed_until_it_expires_and_noted_once_per_cell() {
        let decisions = Decisions::default();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        decisions.note_penalty(key(1), 4, "login", "ip_failures", ip, None, T0, 300 * S);
        decisions.note_penalty(key(1), 4, "login", "ip_failures", ip, None, T0 + S, 600 * S);
        let list = decisions.penalties(T0 + 2 * S);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].until, T0 / S + 601);
        assert_eq!(list[0].scope, "address");
        assert!(decisions.penalties(T0 + 700 * S).is_empty());
    }

    #[test]
    fn a_full_index_of_live_penalties_drops_the_oldest_tenth_at_once() {
        let decisions = Decisions::default();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let cap = PENALTY_INDEX_CAPACITY as u64;
        // All in force for an hour: nothing has expired when the index fills.
        for i in 0..cap {
            decisions.note_penalty(key(i), 1, "login", "account_failures", ip, None, T0 + i * S / 1000, 3600 * S);
        }
        decisions.note_penalty(key(cap), 1, "login", "account_failures", ip, None, T0 + 11 * S, 3600 * S);
        let list = decisions.penalties(T0 + 11 * S);
        assert_eq!(list.len(), PENALTY_INDEX_CAPACITY - PENALTY_INDEX_CAPACITY / 10 + 1);
        assert_eq!(list[0].key, key(cap), "the newest is listed first");
        let oldest_kept = list.iter().map(|e| e.number).min().unwrap();
        assert_eq!(oldest_kept, cap / 10 + 1, "the oldest tenth went, nothing newer");
        // The next penalties find room without another sweep.
        for i in 1..100 {
            decisions.note_penalty(key(cap + i), 1, "login", "account_failures", ip, None, T0 + 12 * S, 3600 * S);
        }
        assert_eq!(decisions.penalties(T0 + 12 * S).len(), list.len() + 99);
    }

    #[test]
    fn removing_a_penalty_returns_its_store_key() {
        let decisions = Decisions::default();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        decisions.note_penalty(key(7), 9, "login", "distinct_accounts", ip, None, T0, 60 * S);
        let id = decisions.penalties(T0)[0].id.clone();
        match decisions.remove(&id) {
            Some(Removed::Penalty(entry)) => assert_eq!((entry.key, entry.cell), (key(7), 9)),
            _ => panic!("not removed"),
        }
        assert!(decisions.penalties(T0).is_empty());
        assert!(decisions.remove(&id).is_none());
    }

    #[test]
    fn bans_cover_their_range_until_they_expire_or_are_lifted() {
        let decisions = Decisions::default();
        let inside: IpAddr = "198.51.100.77".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.78".parse().unwrap();
        let outside: IpAddr = "198.51.101.1".parse().unwrap();
        assert!(decisions.banned(inside, T0).is_none());
        let ban = decisions.ban("198.51.100.0/24".parse().unwrap(), Some(60 * S), "test", T0).unwrap();
        assert!(decisions.banned(inside, T0 + S).is_some());
        assert!(decisions.banned(mapped, T0 + S).is_some());
        assert!(decisions.banned(outside, T0 + S).is_none());
        assert!(decisions.banned(inside, T0 + 61 * S).is_none(), "expired");
        assert!(matches!(decisions.remove(&ban.id), Some(Removed::Ban(_))));
        assert!(decisions.bans(T0).is_empty());
    }

    #[test]
    fn a_noted_address_is_refused_at_accept_until_its_time_or_until_forgotten() {
        let decisions = Decisions::default();
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert!(!decisions.refused_at_accept(v4, T0));
        decisions.address_blocks.note(v4, 64, T0 + 2 * S, T0);
        assert!(decisions.refused_at_accept(v4, T0 + S));
        assert!(decisions.refused_at_accept(mapped, T0 + S), "the mapped spelling is the same address");
        assert!(!decisions.refused_at_accept("198.51.100.8".parse().unwrap(), T0 + S));
        assert!(!decisions.refused_at_accept(v4, T0 + 2 * S), "refused until the time its refusal named");
        decisions.address_blocks.note(v4, 64, T0 + 60 * S, T0);
        decisions.address_blocks.forget(v4);
        assert!(!decisions.refused_at_accept(v4, T0 + S), "forgotten when its penalty is lifted");
    }

    #[test]
    fn ipv6_addresses_are_refused_per_the_prefix_their_route_keys_them_by() {
        let blocks = AddressBlocks::default();
        let noted: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        blocks.note(noted, 64, T0 + 60 * S, T0);
        assert!(blocks.blocks("2001:db8:1:2:ffff::1".parse().unwrap(), T0), "same /64");
        assert!(!blocks.blocks("2001:db8:1:3::5".parse().unwrap(), T0), "another /64");
        blocks.note("2001:db8:9::1".parse().unwrap(), 48, T0 + 60 * S, T0);
        assert!(blocks.blocks("2001:db8:9:77::1".parse().unwrap(), T0), "same /48");
        // A /64 key never stands for the /48 around it.
        assert!(!blocks.blocks("2001:db8:1:9::1".parse().unwrap(), T0));
    }

    #[test]
    fn a_full_table_drops_expired_notes_first_and_never_grows_past_its_bound() {
        let blocks = AddressBlocks::default();
        for i in 0..(ADDRESS_BLOCKS_CAPACITY as u32 * 2) {
            blocks.note(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()), 64, T0 + S, T0);
        }
        let held = || blocks.noted.iter().map(|s| s.lock().len()).sum::<usize>();
        assert!(held() <= ADDRESS_BLOCKS_CAPACITY);
        assert_eq!(held(), blocks.count.load(Ordering::Relaxed));
        let late: IpAddr = "203.0.113.200".parse().unwrap();
        blocks.note(late, 64, T0 + 60 * S, T0 + 2 * S);
        assert!(blocks.blocks(late, T0 + 3 * S), "expired notes make room");
    }

    #[test]
    fn blocks_counted_on_several_threads_add_up() {
        let decisions = Decisions::default();
        let flood: IpAddr = "198.51.100.66".parse().unwrap();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..250).for_each(|_| decisions.note_block(flood)));
            }
        });
        assert_eq!(decisions.top_blocked(5), vec![BlockedAddress { address: flood, blocked: 1000 }]);
    }

    #[test]
    fn top_blocked_keeps_the_heaviest_hitters_within_its_bound() {
        let decisions = Decisions::default();
        let heavy: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..50 {
            decisions.note_block(heavy);
        }
        for i in 0..(TOP_BLOCKED_CAPACITY as u32 * 2) {
            decisions.note_block(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()));
        }
        assert!(decisions.blocked.iter().map(|shard| shard.lock().len()).sum::<usize>() <= TOP_BLOCKED_CAPACITY);
        assert_eq!(decisions.top_blocked(1)[0], BlockedAddress { address: heavy, blocked: 50 });
    }
}
