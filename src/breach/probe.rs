//! Bit positions of a key, exactly as `bloomfilter` 3.0 computes them, so the
//! builder can hash a group of keys and then set all their bits, letting the
//! random memory writes overlap (≈ 2× faster inserts on filters larger than
//! the CPU caches than `Bloom::set`). Lookups use the crate's `check`
//! (branch-free lookups measured no better: page walks, not branches,
//! dominate on large filters).
//!
//! bloomfilter 3.0 (`Bloom::bloom_hash`): probe 0 = SipHash-1-3(key0, item),
//! probe 1 = SipHash-1-3(key1, item), probe i ≥ 2 = `(h0 + i·h1) mod (2^64 − 59)`;
//! bit = probe `mod bits`; byte `bit / 8`, mask `1 << (bit % 8)` of the bitmap
//! that follows the crate's 45-byte header (u8 version = 1, u64 bitmap bytes,
//! u32 k, 2 × 16-byte SipHash keys). Our items hash as exactly their 20 bytes
//! (`Key`). `tests::fast_insert_matches_the_bloom_crate` pins this
//! against the crate byte for byte.

use std::hash::Hasher;

use bloomfilter::reexports::siphasher::sip::SipHasher13;

/// Bytes of the Bloom crate's own header inside the payload.
pub(crate) const BLOOM_HEADER_LEN: usize = 45;
/// The largest prime below 2^64, used by the crate's double hashing.
const BLOOM_PRIME: u64 = 0xFFFF_FFFF_FFFF_FFC5;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Probes {
    sips: [SipHasher13; 2],
    k: u64,
    bits: u64,
}

impl Probes {
    /// Reads k, the SipHash keys and the bitmap size from a serialized
    /// `Bloom` (`as_slice()` / `into_bytes()` layout). `None` if the layout
    /// is not the 3.0 one.
    pub(crate) fn from_bloom_bytes(bytes: &[u8]) -> Option<Probes> {
        if bytes.len() <= BLOOM_HEADER_LEN || bytes[0] != 1 {
            return None;
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[1..9]);
        let bitmap_len = (bytes.len() - BLOOM_HEADER_LEN) as u64;
        if u64::from_le_bytes(len) != bitmap_len {
            return None;
        }
        let k = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
        if k == 0 {
            return None;
        }
        let mut k0 = [0u8; 16];
        let mut k1 = [0u8; 16];
        k0.copy_from_slice(&bytes[13..29]);
        k1.copy_from_slice(&bytes[29..45]);
        Some(Probes {
            sips: [SipHasher13::new_with_key(&k0), SipHasher13::new_with_key(&k1)],
            k: u64::from(k),
            bits: bitmap_len.checked_mul(8)?,
        })
    }

    /// Number of probes per key.
    #[inline]
    pub(crate) fn k(&self) -> usize {
        self.k as usize
    }

    #[inline]
    fn base(&self, key: &[u8; 20]) -> (u64, u64) {
        let mut a = self.sips[0];
        a.write(key);
        let mut b = self.sips[1];
        b.write(key);
        (a.finish(), b.finish())
    }

    /// Writes the `k` bit positions of `key` into `out[..k]`.
    #[inline]
    pub(crate) fn positions(&self, key: &[u8; 20], out: &mut [u64]) {
        let (h0, h1) = self.base(key);
        let m = self.bits;
        for (i, o) in (0u64..).zip(out.iter_mut().take(self.k as usize)) {
            let h = match i {
                0 => h0,
                1 => h1,
                _ => h0.wrapping_add(i.wrapping_mul(h1)) % BLOOM_PRIME,
            };
            *o = h % m;
        }
    }
}
