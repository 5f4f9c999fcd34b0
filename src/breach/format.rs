//! The `.bloom` file format and the loaded [`BreachFilter`].
//!
//! Version 1, all integers little-endian:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 8    | magic `b"SGBREACH"` |
//! | 8      | 2    | u16 format version = 1 |
//! | 10     | 1    | u8 kind: 1 = password (`SHA-1(password)`), 2 = pair ([`super::pair_key`]) |
//! | 11     | 8    | u64 item count (keys inserted; a duplicate input line counts again) |
//! | 19     | 8    | f64 target false-positive rate |
//! | 27     | 8    | u64 creation time, Unix seconds (`SOURCE_DATE_EPOCH` when set, for reproducible builds) |
//! | 35     | 4    | u32 payload length *P* |
//! | 39     | P    | payload: `bloomfilter` 3.x `Bloom::to_bytes()` — its own 45-byte header (version, bitmap length, k, two 16-byte SipHash-1-3 keys) then the bitmap |
//! | 39+P   | 4    | u32 CRC32 (IEEE) of bytes `0 .. 39+P` |
//!
//! Items are hashed by feeding exactly the 20 key bytes to the filter's
//! SipHash-1-3 (no length prefix), see `Key` in mod.rs.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use bloomfilter::Bloom;

use super::probe::BLOOM_HEADER_LEN;
use super::{pair_key, password_sha1, BreachError, FilterKind, Key};

/// File magic.
pub const MAGIC: &[u8; 8] = b"SGBREACH";
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 39;
/// Bytes after the payload (the CRC32).
pub const TRAILER_LEN: usize = 4;

/// The fixed header fields.
#[derive(Clone, Copy, Debug)]
struct Header {
    kind: FilterKind,
    items: u64,
    fp_rate: f64,
    created_unix: u64,
    payload_len: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[10] = self.kind.to_byte();
        h[11..19].copy_from_slice(&self.items.to_le_bytes());
        h[19..27].copy_from_slice(&self.fp_rate.to_le_bytes());
        h[27..35].copy_from_slice(&self.created_unix.to_le_bytes());
        h[35..39].copy_from_slice(&self.payload_len.to_le_bytes());
        h
    }

    /// Decodes and validates a header. `total_len` is the whole file length,
    /// when known, to tell truncation apart from corruption.
    fn decode(h: &[u8], total_len: u64, name: &str) -> Result<Header, BreachError> {
        if h.len() < 8 || &h[0..8] != MAGIC {
            // An empty file, or one shorter than the magic that starts like it, is
            // truncated; anything else is simply not ours.
            if h.len() < 8 && MAGIC.starts_with(h) {
                return Err(BreachError::Truncated {
                    path: name.to_owned(),
                    actual: total_len,
                    expected: (HEADER_LEN + TRAILER_LEN) as u64,
                });
            }
            return Err(BreachError::BadMagic { path: name.to_owned() });
        }
        if h.len() < HEADER_LEN {
            return Err(BreachError::Truncated {
                path: name.to_owned(),
                actual: total_len,
                expected: (HEADER_LEN + TRAILER_LEN) as u64,
            });
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != FORMAT_VERSION {
            return Err(BreachError::UnsupportedVersion {
                path: name.to_owned(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let kind = FilterKind::from_byte(h[10])
            .ok_or_else(|| BreachError::UnknownKind { path: name.to_owned(), found: h[10] })?;
        let items = u64::from_le_bytes(arr8(&h[11..19]));
        let fp_rate = f64::from_le_bytes(arr8(&h[19..27]));
        let created_unix = u64::from_le_bytes(arr8(&h[27..35]));
        let payload_len = u32::from_le_bytes([h[35], h[36], h[37], h[38]]);
        let expected = (HEADER_LEN + TRAILER_LEN) as u64 + u64::from(payload_len);
        if total_len < expected {
            return Err(BreachError::Truncated { path: name.to_owned(), actual: total_len, expected });
        }
        if total_len > expected {
            return Err(BreachError::Corrupt {
                path: name.to_owned(),
                reason: format!(
                    "{} unexpected bytes after the checksum (file is {total_len} bytes, header says {expected})",
                    total_len - expected
                ),
            });
        }
        Ok(Header { kind, items, fp_rate, created_unix, payload_len })
    }
}

fn arr8(s: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&s[..8]);
    a
}

/// A loaded breached-password or leaked-pair filter. Immutable and
/// `Send + Sync`: share it behind an `Arc` across worker threads.
#[derive(Clone)]
pub struct BreachFilter {
    pub(crate) bloom: Bloom<Key>,
    pub(crate) kind: FilterKind,
    pub(crate) items: u64,
    pub(crate) fp_rate: f64,
    pub(crate) created_unix: u64,
}

impl std::fmt::Debug for BreachFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreachFilter")
            .field("kind", &self.kind)
            .field("items", &self.items)
            .field("fp_rate", &self.fp_rate)
            .field("created_unix", &self.created_unix)
            .field("bits", &self.bloom.len())
            .field("hash_functions", &self.bloom.number_of_hash_functions())
            .finish()
    }
}

impl BreachFilter {
    /// Loads a filter file: one sequential read straight into the bitmap
    /// (peak memory ≈ filter size), then verifies header, length and CRC32.
    pub fn load(path: &Path) -> Result<BreachFilter, BreachError> {
        let name = path.display().to_string();
        let read_err = |cause: io::Error| BreachError::Read { path: name.clone(), cause };
        let mut file = File::open(path).map_err(read_err)?;
        let total_len = file.metadata().map_err(read_err)?.len();

        let mut head = [0u8; HEADER_LEN];
        let got = read_full(&mut file, &mut head).map_err(read_err)?;
        let header = Header::decode(&head[..got], total_len, &name)?;

        let payload_len = usize::try_from(header.payload_len).map_err(|_| BreachError::Corrupt {
            path: name.clone(),
            reason: "payload does not fit in memory on this platform".into(),
        })?;
        let mut payload = vec![0u8; payload_len];
        let got = read_full(&mut file, &mut payload).map_err(read_err)?;
        let mut trailer = [0u8; TRAILER_LEN];
        let got_trailer = read_full(&mut file, &mut trailer).map_err(read_err)?;
        if got < payload_len || got_trailer < TRAILER_LEN {
            // The file shrank between metadata() and read().
            return Err(BreachError::Truncated {
                path: name,
                actual: (HEADER_LEN + got + got_trailer) as u64,
                expected: (HEADER_LEN + payload_len + TRAILER_LEN) as u64,
            });
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&payload);
        check_crc(crc.finalize(), u32::from_le_bytes(trailer), &name)?;
        let bloom = Bloom::from_bytes(payload)
            .map_err(|e| BreachError::Corrupt { path: name.clone(), reason: format!("Bloom payload rejected: {e}") })?;
        Self::assemble(bloom, header, &name)
    }

    /// Like [`BreachFilter::load`], and refuses a filter of another kind
    /// with [`BreachError::WrongKind`].
    pub fn load_kind(path: &Path, expected: FilterKind) -> Result<BreachFilter, BreachError> {
        let f = Self::load(path)?;
        f.expect_kind(expected, &path.display().to_string())?;
        Ok(f)
    }

    /// Parses a filter from an in-memory copy of the file (copies the bitmap).
    pub fn from_bytes(bytes: &[u8]) -> Result<BreachFilter, BreachError> {
        Self::from_bytes_named(bytes, "<in-memory filter>")
    }

    /// [`BreachFilter::from_bytes`] with a name used in error messages (e.g.
    /// the path of a file embedded with `include_bytes!`).
    pub fn from_bytes_named(bytes: &[u8], name: &str) -> Result<BreachFilter, BreachError> {
        let header = Header::decode(&bytes[..bytes.len().min(HEADER_LEN)], bytes.len() as u64, name)?;
        // decode() checked that the length is exactly header + payload + trailer.
        let body_end = bytes.len() - TRAILER_LEN;
        let stored =
            u32::from_le_bytes([bytes[body_end], bytes[body_end + 1], bytes[body_end + 2], bytes[body_end + 3]]);
        check_crc(crc32fast::hash(&bytes[..body_end]), stored, name)?;
        let bloom = Bloom::from_slice(&bytes[HEADER_LEN..body_end]).map_err(|e| BreachError::Corrupt {
            path: name.to_owned(),
            reason: format!("Bloom payload rejected: {e}"),
        })?;
        Self::assemble(bloom, header, name)
    }

    fn assemble(bloom: Bloom<Key>, header: Header, name: &str) -> Result<BreachFilter, BreachError> {
        if !(header.fp_rate > 0.0 && header.fp_rate < 1.0) {
            return Err(BreachError::Corrupt {
                path: name.to_owned(),
                reason: format!("false-positive rate {} is out of range", header.fp_rate),
            });
        }
        Ok(BreachFilter {
            bloom,
            kind: header.kind,
            items: header.items,
            fp_rate: header.fp_rate,
            created_unix: header.created_unix,
        })
    }

    /// Returns [`BreachError::WrongKind`] unless this filter is of kind `expected`.
    pub fn expect_kind(&self, expected: FilterKind, name: &str) -> Result<(), BreachError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(BreachError::WrongKind { path: name.to_owned(), expected, found: self.kind })
        }
    }

    /// What the keys are.
    pub fn kind(&self) -> FilterKind {
        self.kind
    }

    /// Keys inserted when it was built (duplicate input lines count again;
    /// see [`BreachFilter::estimated_distinct_items`]).
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The false-positive rate it was built for (`--fp-rate`).
    pub fn fp_rate(&self) -> f64 {
        self.fp_rate
    }

    /// Creation time (Unix seconds) recorded in the header.
    pub fn created_unix(&self) -> u64 {
        self.created_unix
    }

    /// Size of the bitmap in bits.
    pub fn bits(&self) -> u64 {
        self.bloom.len()
    }

    /// Number of bit probes per key (k).
    pub fn hash_functions(&self) -> u32 {
        self.bloom.number_of_hash_functions()
    }

    /// Size of the serialized file in bytes.
    pub fn file_size(&self) -> u64 {
        (HEADER_LEN + self.bloom.as_slice().len() + TRAILER_LEN) as u64
    }

    fn ones_and_bits(&self) -> (f64, f64) {
        let bitmap = self.bloom.as_slice().get(BLOOM_HEADER_LEN..).unwrap_or(&[]);
        let ones: u64 = bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
        (ones as f64, bitmap.len() as f64 * 8.0)
    }

    /// The false-positive rate actually reached, from the fraction of bits set:
    /// `(ones / bits)^k`. Scans the whole bitmap (≈ 0.1 s per 100 MB): call it
    /// once after building or loading, not per request.
    pub fn estimated_fp_rate(&self) -> f64 {
        let (ones, bits) = self.ones_and_bits();
        if bits == 0.0 {
            return 1.0;
        }
        (ones / bits).powi(self.bloom.number_of_hash_functions() as i32)
    }

    /// Distinct keys estimated from the fraction of bits set,
    /// `−(bits / k) · ln(1 − ones / bits)` (Swamidass & Baldi). Scans the bitmap.
    pub fn estimated_distinct_items(&self) -> u64 {
        let (ones, bits) = self.ones_and_bits();
        let k = f64::from(self.bloom.number_of_hash_functions());
        if bits == 0.0 || ones >= bits {
            return self.items;
        }
        (-(bits / k) * (1.0 - ones / bits).ln()).round() as u64
    }

    /// Is this raw 20-byte key in the filter, whatever the kind?
    #[inline]
    pub fn contains_key(&self, key: &[u8; 20]) -> bool {
        self.bloom.check(&Key(*key))
    }

    /// Password filters: is `SHA-1(password) == sha1` (probably) in the list?
    /// Always `false` on a pair filter — use [`BreachFilter::load_kind`] to
    /// refuse the wrong kind at load time.
    #[inline]
    pub fn contains_sha1(&self, sha1: &[u8; 20]) -> bool {
        self.kind == FilterKind::Password && self.contains_key(sha1)
    }

    /// Password filters: hashes `password` with SHA-1 and checks it.
    #[inline]
    pub fn contains_password(&self, password: &[u8]) -> bool {
        self.kind == FilterKind::Password && self.contains_key(&password_sha1(password))
    }

    /// Password filters: the password as given, or else its lowercase form.
    ///
    /// Use this with lists that only hold lowercased passwords, such as the
    /// shipped `common-passwords.bloom` (Django's list; Django's own validator
    /// also compares the lowercased password). Non-UTF-8 input is lowercased
    /// byte-wise (ASCII only).
    pub fn contains_password_any_case(&self, password: &[u8]) -> bool {
        if self.contains_password(password) {
            return true;
        }
        if password.is_ascii() && !password.iter().any(u8::is_ascii_uppercase) {
            return false; // already lower case: nothing else to try, and no allocation
        }
        let lowered: Vec<u8> = match std::str::from_utf8(password) {
            Ok(s) => s.to_lowercase().into_bytes(),
            Err(_) => password.to_ascii_lowercase(),
        };
        lowered != password && self.contains_password(&lowered)
    }

    /// Pair filters: is this exact (account, password) pair in the leak?
    /// `account_normalised` must come from [`super::normalise_account`].
    /// Always `false` on a password filter.
    #[inline]
    pub fn contains_pair(&self, account_normalised: &str, password: &[u8]) -> bool {
        self.kind == FilterKind::Pair && self.contains_key(&pair_key(account_normalised, password))
    }

    /// Writes the file format to `w`, without copying the bitmap.
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let payload = self.bloom.as_slice();
        let payload_len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter payload exceeds 4 GiB"))?;
        let head = Header {
            kind: self.kind,
            items: self.items,
            fp_rate: self.fp_rate,
            created_unix: self.created_unix,
            payload_len,
        }
        .encode();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(payload);
        w.write_all(&head)?;
        w.write_all(payload)?;
        w.write_all(&crc.finalize().to_le_bytes())?;
        Ok(())
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(usize::try_from(self.file_size()).unwrap_or(0));
        // Writing to a Vec only fails if the payload exceeds the u32 limit,
        // which the builder refuses up front.
        if self.write_to(&mut v).is_err() {
            v.clear();
        }
        v
    }

    /// Saves atomically: writes `<path>.tmp`, fsyncs, then renames over `path`,
    /// so a running gateway never sees a half-written file.
    pub fn save(&self, path: &Path) -> Result<(), BreachError> {
        let name = path.display().to_string();
        let werr = |cause: io::Error| BreachError::Write { path: name.clone(), cause };
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp_name);
        let result = (|| {
            let file = File::create(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            self.write_to(&mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(werr(e));
        }
        Ok(())
    }
}

fn check_crc(computed: u32, stored: u32, name: &str) -> Result<(), BreachError> {
    if computed == stored {
        Ok(())
    } else {
        Err(BreachError::ChecksumMismatch { path: name.to_owned(), stored, computed })
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

// `BreachFilter` must stay shareable across the gateway's worker threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BreachFilter>();
};
