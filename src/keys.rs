//! Stable keyed hashes: how an address, an account, a password or a session becomes a store key.
//!
//! HMAC-SHA256 under the gateway's secret, truncated to 64 bits. Stable across processes, machines and versions, so
//! several gateways sharing one store agree on every key; keyed, so the store (or a leaked log line) holds nothing
//! that names a person to anyone without the secret. Without a configured secret a random one is drawn at start:
//! keys then change across restarts, which is fine for a single gateway's in-memory state.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{KeyKind, StateKey};

/// Derives store keys from request data.
#[derive(Clone)]
pub struct KeyHasher {
    /// Keyed once: cloning a keyed MAC skips re-deriving the inner and outer pads per key.
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    pub fn from_secret(secret: &[u8]) -> KeyHasher {
        KeyHasher {
            // HMAC takes keys of any length; this cannot fail.
            mac: <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
        }
    }

    pub fn random() -> KeyHasher {
        let secret: [u8; 32] = rand::random();
        KeyHasher::from_secret(&secret)
    }

    /// The 64-bit keyed hash of `bytes` in the domain of `kind` (the same bytes give unrelated keys per kind).
    pub fn id(&self, kind: KeyKind, bytes: &[u8]) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(&[kind as u8]);
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    pub fn key(&self, kind: KeyKind, bytes: &[u8]) -> StateKey {
        StateKey { kind, id: self.id(kind, bytes) }
    }
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
            mac.update(&[KeyKind::Account as u8]);
            mac.update(b"alice");
            u64::from_le_bytes(mac.finalize().into_bytes()[..8].try_into().unwrap())
        };
        assert_eq!(a.id(KeyKind::Account, b"alice"), expected);
    }
}
