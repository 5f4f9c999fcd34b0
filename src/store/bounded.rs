use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use parking_lot::Mutex;

/// State that knows when it no longer matters.
pub trait Expiring {
    fn is_expired(&self, now: u64) -> bool;
}

const SHARDS: usize = 64;

/// A sharded map with a hard cap on its number of keys.
///
/// When a shard reaches its share of the cap it first drops expired entries; if that frees less than a tenth of it,
/// it evicts arbitrary entries (the hash order is random per process) until a tenth is free. An attacker who floods
/// distinct keys therefore costs us at most `max_keys` entries, at the price of forgetting some counters early —
/// the right trade: a gateway that runs out of memory protects no one.
pub struct BoundedMap<K, V> {
    shards: Box<[Mutex<HashMap<K, V, ahash::RandomState>>]>,
    per_shard_cap: usize,
    hasher: ahash::RandomState,
}

impl<K: Hash + Eq, V: Expiring> BoundedMap<K, V> {
    pub fn new(max_keys: usize) -> Self {
        let per_shard_cap = (max_keys / SHARDS).max(8);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(HashMap::with_hasher(ahash::RandomState::new())))
            .collect();
        BoundedMap {
            shards,
            per_shard_cap,
            hasher: ahash::RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, V, ahash::RandomState>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Run `f` on the key's state, creating it with `init` when absent.
    pub fn update<R>(&self, key: K, now: u64, init: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> R {
        let mut shard = self.shard(&key).lock();
        if !shard.contains_key(&key) && shard.len() >= self.per_shard_cap {
            make_room(&mut shard, self.per_shard_cap, now);
        }
        f(shard.entry(key).or_insert_with(init))
    }

    /// Read the key's state without creating it; expired state reads as absent.
    pub fn read<R>(&self, key: &K, now: u64, f: impl FnOnce(&V) -> R) -> Option<R> {
        let shard = self.shard(key).lock();
        shard.get(key).filter(|v| !v.is_expired(now)).map(f)
    }

    /// Change the key's state only if it exists.
    pub fn modify<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut shard = self.shard(key).lock();
        shard.get_mut(key).map(f)
    }

    /// Drop every expired entry; called from the pruning timer.
    pub fn prune(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.retain(|_, v| !v.is_expired(now));
            if shard.capacity() > 4 * shard.len().max(16) {
                shard.shrink_to_fit();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity_keys(&self) -> usize {
        self.per_shard_cap * SHARDS
    }
}

fn make_room<K: Hash + Eq, V: Expiring, S: BuildHasher>(shard: &mut HashMap<K, V, S>, cap: usize, now: u64) {
    shard.retain(|_, v| !v.is_expired(now));
    let target = cap - cap / 10 - 1;
    if shard.len() > target {
        let mut excess = shard.len() - target;
        shard.retain(|_, _| {
            if excess > 0 {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Until(u64);
    impl Expiring for Until {
        fn is_expired(&self, now: u64) -> bool {
            now >= self.0
        }
    }

    #[test]
    fn never_holds_more_than_its_cap_under_a_flood_of_distinct_keys() {
        let map = BoundedMap::new(10_000);
        for key in 0..1_000_000u64 {
            map.update(key, 0, || Until(u64::MAX), |_| ());
        }
        assert!(map.len() <= map.capacity_keys(), "{} > {}", map.len(), map.capacity_keys());
        assert!(map.len() > map.capacity_keys() / 2, "evicted far too much: {}", map.len());
    }

    #[test]
    fn prune_drops_expired_and_read_hides_them() {
        let map = BoundedMap::new(1000);
        map.update(1u32, 0, || Until(10), |_| ());
        map.update(2u32, 0, || Until(100), |_| ());
        assert_eq!(map.read(&1, 5, |_| ()), Some(()));
        assert_eq!(map.read(&1, 10, |_| ()), None);
        map.prune(50);
        assert_eq!(map.len(), 1);
        assert_eq!(map.read(&2, 50, |v| v.0), Some(100));
    }

    #[test]
    fn a_full_shard_prefers_dropping_expired_entries() {
        let map = BoundedMap::new(8 * SHARDS);
        // Fill with entries that expire at 10, then add fresh ones after that time: none of the fresh ones may be lost.
        for key in 0..10_000u64 {
            map.update(key, 0, || Until(10), |_| ());
        }
        for key in 20_000..20_100u64 {
            map.update(key, 11, || Until(u64::MAX), |_| ());
        }
        let kept = (20_000..20_100u64).filter(|k| map.read(k, 11, |_| ()).is_some()).count();
        assert_eq!(kept, 100);
    }
}
