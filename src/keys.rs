//! Stable keyed hashes: how an address, an account, a password or a session becomes a store key.
//!
//! SipHash-2-4 under a 128-bit key derived from the gateway's secret (HMAC-SHA256 of a fixed label, once), 64 bits
//! out. Stable across processes and machines, so several gateways sharing one store agree on every key (the layout
//! is pinned by a known answer below; changing it means a new shared-state prefix version); keyed, so the store (or
//! a leaked log line) holds nothing that names a person to anyone without the secret. SipHash is a pseudo-random
//! function built for exactly this, short keyed hashes of attacker-chosen input, and costs ~30 ns for an address or
//! an e-mail where HMAC-SHA256 cost ~200 (two SHA-256 blocks): a login derives four keys (address, account,
//! password, device). Without a configured secret a random one is drawn at start: keys then change across
//! restarts, which is fine for a single gateway's in-memory state.

use std::cell::RefCell;
use std::hash::Hasher;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip::SipHasher24;

use crate::store::{KeyKind, StateKey};

/// Derives store keys from request data.
#[derive(Clone)]
pub struct KeyHasher {
    /// Keyed once: a copy starts every key.
    sip: SipHasher24,
    /// Tells this hasher's entries apart in the per-thread address cache (several hashers may share a thread).
    tag: u64,
}

/// Addresses recently keyed on this thread. A flood comes from few addresses and every request needs the address
/// key before anything else; a hash costs ~30 ns, a hit here a few. Fixed size (32 KiB a thread): a flood of
/// distinct addresses only misses, it cannot grow it.
const ADDRESS_CACHE_SLOTS: usize = 1024;

thread_local! {
    static ADDRESS_CACHE: RefCell<Vec<(u128, u64, u64)>> = RefCell::new(vec![(0, 0, 0); ADDRESS_CACHE_SLOTS]);
}

impl KeyHasher {
    pub fn from_secret(secret: &[u8]) -> KeyHasher {
        KeyHasher { sip: SipHasher24::new_with_key(&sip_key(secret)), tag: rand::random::<u64>() | 1 }
    }

    pub fn random() -> KeyHasher {
        let secret: [u8; 32] = rand::random();
        KeyHasher::from_secret(&secret)
    }

    /// The 64-bit keyed hash of `bytes` in the domain of `kind` (the same bytes give unrelated keys per kind).
    pub fn id(&self, kind: KeyKind, bytes: &[u8]) -> u64 {
        let mut sip = self.sip;
        sip.write_u8(kind as u8);
        sip.write(bytes);
        sip.finish()
    }

    pub fn key(&self, kind: KeyKind, bytes: &[u8]) -> StateKey {
        StateKey { kind, id: self.id(kind, bytes) }
    }

    /// The key of an address (its limiting key, see `attempt::IpKey`), through the per-thread cache.
    pub fn address(&self, ip_key: u128) -> StateKey {
        let folded = (ip_key as u64) ^ ((ip_key >> 64) as u64);
        let slot = (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % ADDRESS_CACHE_SLOTS;
        let cached = ADDRESS_CACHE.with(|cache| {
            let entry = cache.borrow()[slot];
            (entry.0 == ip_key && entry.1 == self.tag).then_some(entry.2)
        });
        let id = cached.unwrap_or_else(|| {
            let id = self.id(KeyKind::Address, &ip_key.to_le_bytes());
            ADDRESS_CACHE.with(|cache| cache.borrow_mut()[slot] = (ip_key, self.tag, id));
            id
        });
        StateKey { kind: KeyKind::Address, id }
    }
}

/// The SipHash key of a secret: HMAC-SHA256 of a fixed label under the secret (a secret of any length, through a
/// PRF, to 128 bits), so the hash key and the token keys derived from the same secret are unrelated.
fn sip_key(secret: &[u8]) -> [u8; 16] {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(b"stuffgate store keys: siphash-2-4");
    let mut key = [0u8; 16];
    key.copy_from_slice(&mac.finalize().into_bytes()[..16]);
    key
}

/// The key of an (account, address) pair, from the two keyed hashes: no third MAC per login, and still nothing an
/// outsider can compute without the secret.
pub fn pair_id(account: u64, address: u64) -> u64 {
    let mixed = (account ^ address.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed ^ (mixed >> 31) ^ account.rotate_right(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `KeyHasher::from_secret(b"one secret").id(KeyKind::Account, b"alice")` for this layout.
    const PINNED_ALICE: u64 = 7_630_695_298_092_239_285;

    #[test]
    fn keys_are_stable_for_a_secret_and_differ_across_secrets_and_kinds() {
        let a = KeyHasher::from_secret(b"one secret");
        let b = KeyHasher::from_secret(b"one secret");
        let c = KeyHasher::from_secret(b"another secret");
        assert_eq!(a.id(KeyKind::Account, b"alice"), b.id(KeyKind::Account, b"alice"));
        assert_ne!(a.id(KeyKind::Account, b"alice"), c.id(KeyKind::Account, b"alice"));
        assert_ne!(a.id(KeyKind::Account, b"alice"), a.id(KeyKind::Password, b"alice"));
        // A known answer pins the layout (kind byte, then the bytes) so a change cannot slip by unnoticed: gateways
        // of different versions sharing a store must agree.
        let expected = {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"one secret").unwrap();
            mac.update(b"stuffgate store keys: siphash-2-4");
            let key: [u8; 16] = mac.finalize().into_bytes()[..16].try_into().unwrap();
            let mut sip = SipHasher24::new_with_key(&key);
            sip.write(&[KeyKind::Account as u8]);
            sip.write(b"alice");
            sip.finish()
        };
        assert_eq!(a.id(KeyKind::Account, b"alice"), expected);
        // And the number itself, so a change in the hash crate cannot slip by either.
        assert_eq!(a.id(KeyKind::Account, b"alice"), PINNED_ALICE);
    }

    #[test]
    fn the_address_cache_never_changes_a_key() {
        let (a, c) = (KeyHasher::from_secret(b"one secret"), KeyHasher::from_secret(b"another secret"));
        for round in 0..3 {
            for ip in (0..5000u128).map(|i| i.wrapping_mul(0x0123_4567_89AB_CDEF)) {
                let expected = a.id(KeyKind::Address, &ip.to_le_bytes());
                assert_eq!(a.address(ip).id, expected, "round {round}");
                assert_ne!(c.address(ip).id, expected, "another secret, another key, same cache");
            }
        }
    }
}
