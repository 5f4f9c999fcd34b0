//! Breached-password and leaked-pair filters.
//!
//! A [`BreachFilter`] is an immutable Bloom filter over 20-byte keys:
//!
//! * **Password** filters hold `SHA-1(password)` — the same digests that the
//!   Have I Been Pwned "Pwned Passwords" list publishes (`SHA1HEX:COUNT` lines).
//! * **Pair** filters hold [`pair_key`]`(normalised account, password)` =
//!   `SHA-1(account ‖ 0x00 ‖ password)` built from `account:password` combo lists,
//!   so the gateway can tell "this exact credential pair has leaked" apart from
//!   "this password is common".
//!
//! Filters are built offline with `stuffgate breach build` ([`cli::run_build`]),
//! stored in a small versioned, checksummed file (see [`mod@format`]), and loaded
//! once at start-up with [`BreachFilter::load`]. A filter answers "definitely
//! not in the list" or "in the list, up to the false-positive rate it was
//! built for" (0.1 % by default); there are no false negatives.
//!
//! Lookups cost two SipHash-1-3 runs over 20 bytes plus up to *k* bit probes
//! (k = 10 at 0.1 %); negative lookups usually stop after one or two probes.

pub mod builder;
pub mod cli;
pub mod format;
mod probe;

use std::fmt;
use std::hash::{Hash, Hasher};

use sha1::{Digest, Sha1};

pub use builder::{
    build_filter, decode_sha1_hex, parse_line, parse_sha1_line, BadLine, BadReason, FilterBuilder, Format,
    IngestCounters, IngestStats, ItemCountSource, Source,
};
pub use format::{BreachFilter, FORMAT_VERSION, MAGIC};

/// What the 20-byte keys in a filter are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterKind {
    /// `SHA-1(password)`; query with [`BreachFilter::contains_password`] / [`BreachFilter::contains_sha1`].
    Password,
    /// [`pair_key`]`(account, password)`; query with [`BreachFilter::contains_pair`].
    Pair,
}

impl FilterKind {
    /// The byte stored in the file header.
    pub fn to_byte(self) -> u8 {
        match self {
            FilterKind::Password => 1,
            FilterKind::Pair => 2,
        }
    }

    /// Inverse of [`FilterKind::to_byte`].
    pub fn from_byte(b: u8) -> Option<FilterKind> {
        match b {
            1 => Some(FilterKind::Password),
            2 => Some(FilterKind::Pair),
            _ => None,
        }
    }

    /// The `--format` of `stuffgate breach build` that produces this kind (for messages).
    pub fn build_format_hint(self) -> &'static str {
        match self {
            FilterKind::Password => "sha1 (or plain)",
            FilterKind::Pair => "pairs",
        }
    }
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterKind::Password => "password",
            FilterKind::Pair => "pair",
        })
    }
}

/// Everything that can go wrong loading, building or saving a filter.
///
/// Every message names the file and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum BreachError {
    #[error("cannot read breach filter {path}: {cause}; check the path and permissions, or rebuild it with `stuffgate breach build --input <list> --out {path}`")]
    Read { path: String, cause: std::io::Error },
    #[error("cannot write breach filter {path}: {cause}; check that the directory exists, is writable and has enough free space")]
    Write { path: String, cause: std::io::Error },
    #[error("cannot read input list {path}: {cause}; check the path (use `-` for standard input) and that .gz files are complete")]
    Input { path: String, cause: std::io::Error },
    #[error("breach filter {path} is truncated ({actual} bytes, the header says {expected}); it was cut short while copying or building — copy it again or rebuild it with `stuffgate breach build --input <list> --out {path}`")]
    Truncated { path: String, actual: u64, expected: u64 },
    #[error("{path} is not a stuffgate breach filter (wrong magic bytes, expected \"SGBREACH\"); point the policy at a file made by `stuffgate breach build --input <list> --out {path}`")]
    BadMagic { path: String },
    #[error("breach filter {path} has format version {found}, this stuffgate reads version {supported}; rebuild it with this stuffgate: `stuffgate breach build --input <list> --out {path}`")]
    UnsupportedVersion { path: String, found: u16, supported: u16 },
    #[error("breach filter {path} has unknown filter kind byte {found}; it is damaged or from a newer stuffgate — rebuild it with `stuffgate breach build --input <list> --out {path}`")]
    UnknownKind { path: String, found: u8 },
    #[error("breach filter {path} is corrupted (CRC32 stored {stored:08x}, computed {computed:08x}); copy it again or rebuild it with `stuffgate breach build --input <list> --out {path}`")]
    ChecksumMismatch { path: String, stored: u32, computed: u32 },
    #[error("breach filter {path} is a {found} filter but a {expected} filter is needed here; rebuild it with `stuffgate breach build --format {hint} --input <list> --out {path}` or point the policy at the right file", hint = expected.build_format_hint())]
    WrongKind { path: String, expected: FilterKind, found: FilterKind },
    #[error("breach filter {path} is corrupted ({reason}); rebuild it with `stuffgate breach build --input <list> --out {path}`")]
    Corrupt { path: String, reason: String },
    #[error("internal error building a breach filter: {0}")]
    Internal(String),
    #[error("invalid breach filter parameters: {0}")]
    InvalidParameters(String),
    #[error("a filter for {items} items at false-positive rate {fp_rate} needs {bytes} bytes, more than the 4 GiB the file format allows; raise --fp-rate, raise --min-count, or split the list into several filters")]
    TooLarge { items: u64, fp_rate: f64, bytes: u64 },
}

/// A 20-byte filter key with a platform-independent `Hash`: exactly the 20
/// bytes are fed to the Bloom filter's SipHash (no length prefix), so the
/// on-disk bit positions do not depend on the build target.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key(pub(crate) [u8; 20]);

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

/// `SHA-1(password)`, the key of password filters (and of the HIBP list).
pub fn password_sha1(password: &[u8]) -> [u8; 20] {
    Sha1::digest(password).into()
}

/// The account normalisation rule shared with the gateway ([`crate::account::normalise_account`]: NFKC, invisible
/// characters dropped, trimmed, lower-cased), so that pair filters are built under the keys the gateway looks up.
pub fn normalise_account(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    normalise_account_into(raw, &mut out);
    out
}

/// [`normalise_account`] into a reused buffer (no allocation for ASCII input
/// once the buffer is large enough).
pub fn normalise_account_into(raw: &str, out: &mut String) {
    out.clear();
    let trimmed = raw.trim();
    if trimmed.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        // Printable ASCII (the bulk of a breach dump): NFKC and the invisible-character strip change nothing.
        out.extend(trimmed.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        out.push_str(&crate::account::normalise_account(raw));
    }
}

/// The key of pair filters: `SHA-1(account_normalised ‖ 0x00 ‖ password)`.
///
/// `account_normalised` must already be normalised with [`normalise_account`].
pub fn pair_key(account_normalised: &str, password: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(account_normalised.as_bytes());
    h.update([0u8]);
    h.update(password);
    h.finalize().into()
}

/// The shipped default filter, embedded in the binary:
/// `policies/data/common-passwords.bloom`, built by
/// `policies/data/build-common-passwords.sh` from Django's common-password
/// list (19,640 lower-cased passwords, BSD-3-Clause, see
/// `policies/data/LICENSE-django-common-passwords.txt`), fp rate 0.001, 35 KB.
pub const COMMON_PASSWORDS_BLOOM: &[u8] = include_bytes!("../../policies/data/common-passwords.bloom");

/// Parses [`COMMON_PASSWORDS_BLOOM`]. Its passwords are lower-cased: query it
/// with [`BreachFilter::contains_password_any_case`].
pub fn common_passwords() -> Result<BreachFilter, BreachError> {
    BreachFilter::from_bytes_named(COMMON_PASSWORDS_BLOOM, "policies/data/common-passwords.bloom (embedded)")
}

/// Decodes a 40-hex-digit SHA-1 (any case, surrounding whitespace ignored).
pub fn decode_sha1_hex_str(s: &str) -> Option<[u8; 20]> {
    decode_sha1_hex(s.trim().as_bytes())
}

#[cfg(test)]
mod tests;
