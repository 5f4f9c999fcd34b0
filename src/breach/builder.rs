//! Streaming filter builder: input lists → 20-byte keys → Bloom filter.
//!
//! Memory is the filter plus a few MiB of buffers, never the list. Building
//! runs on two threads: a reader thread (file I/O, gzip, line splitting, hex
//! decoding or SHA-1 hashing) sends batches of keys to the inserting thread.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use bloomfilter::Bloom;

use super::probe::{Probes, BLOOM_HEADER_LEN};
use super::{normalise_account_into, pair_key, password_sha1, BreachError, BreachFilter, FilterKind, Key};

/// Input line format (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Have I Been Pwned "Pwned Passwords": `SHA1HEX:COUNT` (any case, CRLF ok;
    /// a bare `SHA1HEX` counts as 1). Builds a password filter.
    Sha1,
    /// One password per line, hashed with SHA-1 while reading. Builds a password filter.
    Plain,
    /// `account:password` combo lines, split at the first ':'; the account is
    /// normalised (trim + lowercase). Builds a pair filter.
    Pairs,
}

impl Format {
    /// The kind of filter this format produces.
    pub fn kind(self) -> FilterKind {
        match self {
            Format::Sha1 | Format::Plain => FilterKind::Password,
            Format::Pairs => FilterKind::Pair,
        }
    }

    /// Rough uncompressed bytes per line and gzip ratio, used to size the
    /// filter from the size of a large `.gz` input (see [`estimate_items`]).
    /// `sha1`: HIBP lines are `40 hex + ':' + count + CRLF` ≈ 42 bytes and
    /// gzip about 2.3×. `plain`: leaked-password lists average ≈ 10 bytes a
    /// line, gzip ≈ 2.5× (Django's list: 4.1 compressed bytes a line).
    /// `pairs`: ≈ 30 bytes a line, ≈ 3×. These are rough: pass
    /// `--expected-items` when you know the count.
    pub fn gz_bytes_per_line(self) -> (f64, f64) {
        match self {
            Format::Sha1 => (42.0, 2.3),
            Format::Plain => (10.0, 2.5),
            Format::Pairs => (30.0, 3.0),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Sha1 => "sha1",
            Format::Plain => "plain",
            Format::Pairs => "pairs",
        })
    }
}

/// Why a line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadReason {
    EmptyLine,
    /// The hash before ':' had this many characters instead of 40.
    HashLength(usize),
    NotHex,
    BadCount,
    MissingSeparator,
    EmptyAccount,
    EmptyPassword,
    AccountNotUtf8,
    /// Longer than [`MAX_LINE`] bytes.
    TooLong,
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::EmptyLine => f.write_str("empty line"),
            BadReason::HashLength(32) => f.write_str(
                "expected 40 hex digits (SHA-1) before ':', found 32 — this looks like the NTLM list; download the SHA-1 one",
            ),
            BadReason::HashLength(35) => f.write_str(
                "expected 40 hex digits (SHA-1) before ':', found 35 — this looks like a range-API file (hash suffixes without their 5-digit prefix); use the downloader's single-file output with full hashes",
            ),
            BadReason::HashLength(n) => {
                write!(f, "expected 40 hex digits (SHA-1) before ':', found {n} characters")
            }
            BadReason::NotHex => f.write_str("the hash has a character that is not a hex digit"),
            BadReason::BadCount => f.write_str("the count after ':' is not a decimal number"),
            BadReason::MissingSeparator => {
                f.write_str("no ':' between account and password (expected account:password)")
            }
            BadReason::EmptyAccount => f.write_str("empty account before ':'"),
            BadReason::EmptyPassword => f.write_str("empty password after ':'"),
            BadReason::AccountNotUtf8 => f.write_str("the account is not valid UTF-8"),
            BadReason::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
        }
    }
}

/// A refused line (its content is never kept: it may hold a password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub source: String,
    pub line: u64,
    pub reason: BadReason,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.reason)
    }
}

/// How many bad lines are kept as examples.
pub const BAD_EXAMPLES: usize = 5;
/// Longest accepted line; longer ones are counted as bad and skipped.
pub const MAX_LINE: usize = 64 * 1024;
const READ_BUF: usize = 1 << 20;
const BATCH: usize = 8192;
/// Filters are sized for at least this many items: tiny bitmaps make the
/// Bloom crate's double hashing (`h0 + i·h1 mod bits`) collide far more
/// than theory says, and 1024 items cost under 2 KiB at 0.1 %.
pub const MIN_SIZED_ITEMS: u64 = 1024;

/// What one ingest run saw.
#[derive(Clone, Debug, Default)]
pub struct IngestStats {
    /// Lines read (all inputs).
    pub lines: u64,
    /// Keys handed to the filter (lines accepted; duplicates included).
    pub keys: u64,
    /// Lines skipped because their count was below `--min-count`.
    pub skipped_min_count: u64,
    /// Lines refused.
    pub bad_lines: u64,
    /// The first [`BAD_EXAMPLES`] refused lines.
    pub bad_examples: Vec<BadLine>,
}

impl IngestStats {
    fn bad(&mut self, source: &str, line: u64, reason: BadReason) {
        self.bad_lines += 1;
        if self.bad_examples.len() < BAD_EXAMPLES {
            self.bad_examples.push(BadLine { source: source.to_owned(), line, reason });
        }
    }
}

/// Live counters for progress display, updated while reading.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Raw input bytes consumed (compressed bytes for `.gz`).
    pub bytes: AtomicU64,
    /// Lines read so far.
    pub lines: AtomicU64,
}

/// One input: a name for messages and a reader yielding the (decompressed) list.
pub struct Source<'a> {
    pub name: String,
    pub reader: Box<dyn Read + Send + 'a>,
}

impl<'a> Source<'a> {
    pub fn new(name: impl Into<String>, reader: impl Read + Send + 'a) -> Self {
        Source { name: name.into(), reader: Box::new(reader) }
    }
}

/// Keys hashed together before their bits are set, so the random memory
/// writes of several keys overlap (≈ 2× faster inserts on filters larger
/// than the CPU caches).
const GROUP: usize = 8;
/// Keys kept to check, after the build, that the `bloomfilter` crate finds
/// what this builder inserted.
const SELF_CHECK_KEYS: usize = 32;

/// An empty filter being filled. Sized up front for `expected_items`.
///
/// The filter is created with `bloomfilter::Bloom::new_for_fp_rate` and
/// queried with `Bloom::check`, but inserts set the bits directly in the
/// crate's serialized layout (`Bloom::into_bytes` / `Bloom::from_bytes`,
/// no copy), hashing a group of keys before touching memory. The bit
/// positions are exactly the crate's (bloomfilter 3.0: SipHash-1-3 with the
/// two stored keys for probes 0 and 1, then `(h0 + i·h1) mod (2^64 − 59)`,
/// all `mod bits`); the unit test `fast_insert_matches_the_bloom_crate`
/// compares the bitmaps byte for byte, and [`FilterBuilder::finish`] checks
/// sample keys with the crate's own `check`.
pub struct FilterBuilder {
    /// `Bloom::into_bytes()` layout: 45-byte crate header, then the bitmap.
    bytes: Vec<u8>,
    probes: Probes,
    pending: Vec<[u8; 20]>,
    positions: Vec<u64>,
    samples: Vec<[u8; 20]>,
    kind: FilterKind,
    fp_rate: f64,
    inserted: u64,
}

impl FilterBuilder {
    /// A filter for `expected_items` keys at false-positive rate `fp_rate`,
    /// with random SipHash keys.
    pub fn new(kind: FilterKind, expected_items: u64, fp_rate: f64) -> Result<Self, BreachError> {
        Self::create(kind, expected_items, fp_rate, None)
    }

    /// Same with fixed SipHash keys (reproducible builds: same input, seed and
    /// `SOURCE_DATE_EPOCH` give a byte-identical file).
    pub fn with_seed(
        kind: FilterKind,
        expected_items: u64,
        fp_rate: f64,
        seed: &[u8; 32],
    ) -> Result<Self, BreachError> {
        Self::create(kind, expected_items, fp_rate, Some(seed))
    }

    /// Bytes of payload a filter of this size needs (Bloom header + bitmap).
    pub fn payload_bytes(expected_items: u64, fp_rate: f64) -> Result<u64, BreachError> {
        if !(fp_rate > 0.0 && fp_rate < 1.0) {
            return Err(BreachError::InvalidParameters(format!(
                "--fp-rate must be strictly between 0 and 1 (e.g. 0.001), got {fp_rate}"
            )));
        }
        let n = usize::try_from(expected_items.max(MIN_SIZED_ITEMS)).map_err(|_| BreachError::TooLarge {
            items: expected_items,
            fp_rate,
            bytes: u64::MAX,
        })?;
        let bitmap = Bloom::<Key>::compute_bitmap_size(n, fp_rate) as u64;
        Ok(bitmap.max(1) + BLOOM_HEADER_LEN as u64)
    }

    fn create(
        kind: FilterKind,
        expected_items: u64,
        fp_rate: f64,
        seed: Option<&[u8; 32]>,
    ) -> Result<Self, BreachError> {
        let bytes = Self::payload_bytes(expected_items, fp_rate)?;
        if bytes > u64::from(u32::MAX) {
            return Err(BreachError::TooLarge { items: expected_items, fp_rate, bytes });
        }
        let n = usize::try_from(expected_items.max(MIN_SIZED_ITEMS)).map_err(|_| BreachError::TooLarge {
            items: expected_items,
            fp_rate,
            bytes,
        })?;
        let bloom: Bloom<Key> = match seed {
            Some(seed) => Bloom::new_for_fp_rate_with_seed(n, fp_rate, seed),
            None => Bloom::new_for_fp_rate(n, fp_rate),
        }
        .map_err(|e| BreachError::InvalidParameters(format!("cannot create the filter: {e}")))?;
        let k = bloom.number_of_hash_functions() as usize;
        let bits = bloom.len();
        let bytes = bloom.into_bytes();
        let probes = Probes::from_bloom_bytes(&bytes)
            .filter(|p| p.k() == k && bits == (bytes.len() - BLOOM_HEADER_LEN) as u64 * 8)
            .ok_or_else(|| {
                BreachError::Internal(
                    "the bloomfilter crate's serialized layout is not the expected 3.0 one; pin bloomfilter = \"3.0\""
                        .into(),
                )
            })?;
        Ok(FilterBuilder {
            bytes,
            probes,
            pending: Vec::with_capacity(GROUP),
            positions: vec![0; GROUP * k],
            samples: Vec::with_capacity(SELF_CHECK_KEYS),
            kind,
            fp_rate,
            inserted: 0,
        })
    }

    /// The kind of filter being built.
    pub fn kind(&self) -> FilterKind {
        self.kind
    }

    /// Inserts a raw 20-byte key (`SHA-1(password)` or a [`pair_key`]).
    #[inline]
    pub fn insert_key(&mut self, key: &[u8; 20]) {
        self.pending.push(*key);
        if self.pending.len() == GROUP {
            let group = std::mem::take(&mut self.pending);
            self.set_group(&group);
            self.pending = group;
            self.pending.clear();
        }
    }

    /// Inserts many keys (what the streaming build uses).
    pub fn insert_keys(&mut self, keys: &[[u8; 20]]) {
        let mut rest = keys;
        while !self.pending.is_empty() {
            match rest.split_first() {
                Some((k, tail)) => {
                    self.insert_key(k);
                    rest = tail;
                }
                None => return,
            }
        }
        let mut chunks = rest.chunks_exact(GROUP);
        for group in &mut chunks {
            self.set_group(group);
        }
        for k in chunks.remainder() {
            self.insert_key(k);
        }
    }

    /// Hashes every key of `group`, then sets all their bits.
    fn set_group(&mut self, group: &[[u8; 20]]) {
        if self.samples.len() < SELF_CHECK_KEYS {
            self.samples.extend(group.iter().take(SELF_CHECK_KEYS - self.samples.len()));
        }
        self.inserted += group.len() as u64;
        let k = self.probes.k();
        let mut p = 0;
        for key in group {
            self.probes.positions(key, &mut self.positions[p..p + k]);
            p += k;
        }
        let bitmap = &mut self.bytes[BLOOM_HEADER_LEN..];
        for &q in &self.positions[..p] {
            bitmap[(q / 8) as usize] |= 1 << (q % 8);
        }
    }

    /// Password filters: inserts `SHA-1(password)`.
    pub fn insert_password(&mut self, password: &[u8]) {
        self.insert_key(&password_sha1(password));
    }

    /// Pair filters: inserts [`pair_key`]`(account_normalised, password)`.
    pub fn insert_pair(&mut self, account_normalised: &str, password: &[u8]) {
        self.insert_key(&pair_key(account_normalised, password));
    }

    /// Keys inserted so far, duplicates included.
    pub fn inserted(&self) -> u64 {
        self.inserted + self.pending.len() as u64
    }

    /// Freezes the filter. The creation time is `SOURCE_DATE_EPOCH` when that
    /// is set (reproducible builds), else now. The header's item count is the
    /// number of keys inserted (duplicates included).
    pub fn finish(mut self) -> Result<BreachFilter, BreachError> {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            self.set_group(&pending);
        }
        let created_unix = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        let bloom = Bloom::from_bytes(self.bytes)
            .map_err(|e| BreachError::Internal(format!("the bloomfilter crate refused the built bitmap: {e}")))?;
        let filter = BreachFilter { bloom, kind: self.kind, items: self.inserted, fp_rate: self.fp_rate, created_unix };
        // `contains_key` is the crate's own `check`.
        if !self.samples.iter().all(|k| filter.contains_key(k)) {
            return Err(BreachError::Internal(
                "the bloomfilter crate does not find keys this builder inserted (its hashing changed?); pin bloomfilter = \"3.0\"".into(),
            ));
        }
        Ok(filter)
    }
}

// ---------------------------------------------------------------- parsing

const HEX_BAD: u8 = 0xff;
static HEX: [u8; 256] = {
    let mut t = [HEX_BAD; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes 40 hex digits (any case) into 20 bytes.
#[inline]
pub fn decode_sha1_hex(hex: &[u8]) -> Option<[u8; 20]> {
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = HEX[pair[0] as usize];
        let lo = HEX[pair[1] as usize];
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    if bad & 0xf0 != 0 {
        None
    } else {
        Some(out)
    }
}

#[inline]
fn trim_end_ws(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if matches!(last, b'\r' | b' ' | b'\t') {
            s = rest;
        } else {
            break;
        }
    }
    s
}

#[inline]
fn strip_cr(s: &[u8]) -> &[u8] {
    match s {
        [rest @ .., b'\r'] => rest,
        _ => s,
    }
}

/// Parses one `SHA1HEX[:COUNT]` line: `Ok(None)` when below `min_count`.
#[inline]
pub fn parse_sha1_line(line: &[u8], min_count: u64) -> Result<Option<[u8; 20]>, BadReason> {
    let line = trim_end_ws(line);
    if line.is_empty() {
        return Err(BadReason::EmptyLine);
    }
    let (hash, count) = if line.len() > 40 && line[40] == b':' {
        (&line[..40], Some(&line[41..]))
    } else {
        match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        }
    };
    if hash.len() != 40 {
        return Err(BadReason::HashLength(hash.len()));
    }
    let key = decode_sha1_hex(hash).ok_or(BadReason::NotHex)?;
    let count = match count {
        None => 1,
        Some(digits) => parse_count(digits).ok_or(BadReason::BadCount)?,
    };
    if count < min_count {
        return Ok(None);
    }
    Ok(Some(key))
}

#[inline]
fn parse_count(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        let v = d.wrapping_sub(b'0');
        if v > 9 {
            return None;
        }
        n = n.saturating_mul(10).saturating_add(u64::from(v));
    }
    Some(n)
}

/// Parses one line of `format` into a key. `account_buf` is scratch space
/// for pair lines. `Ok(None)`: skipped because of `min_count`.
#[inline]
pub fn parse_line(
    format: Format,
    line: &[u8],
    min_count: u64,
    account_buf: &mut String,
) -> Result<Option<[u8; 20]>, BadReason> {
    match format {
        Format::Sha1 => parse_sha1_line(line, min_count),
        Format::Plain => {
            let pw = strip_cr(line);
            if pw.is_empty() {
                return Err(BadReason::EmptyLine);
            }
            Ok(Some(password_sha1(pw)))
        }
        Format::Pairs => {
            let l = strip_cr(line);
            if l.is_empty() {
                return Err(BadReason::EmptyLine);
            }
            let i = l.iter().position(|&b| b == b':').ok_or(BadReason::MissingSeparator)?;
            let account = std::str::from_utf8(&l[..i]).map_err(|_| BadReason::AccountNotUtf8)?;
            let password = &l[i + 1..];
            normalise_account_into(account, account_buf);
            if account_buf.is_empty() {
                return Err(BadReason::EmptyAccount);
            }
            if password.is_empty() {
                return Err(BadReason::EmptyPassword);
            }
            Ok(Some(pair_key(account_buf, password)))
        }
    }
}

/// One item from [`for_each_line`].
pub(crate) enum LineItem<'a> {
    Line(&'a [u8]),
    TooLong,
}

/// Calls `f(line_number, item)` for every line of `r` (terminator removed;
/// a final line without '\n' counts). Reuses one buffer: no per-line
/// allocation. `f` returns `false` to stop early.
pub(crate) fn for_each_line<R: Read>(mut r: R, mut f: impl FnMut(u64, LineItem<'_>) -> bool) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    let mut line_no = 0u64;
    let mut skipping = false;
    let mut eof = false;
    loop {
        while let Some(pos) = buf[start..end].iter().position(|&b| b == b'\n') {
            let line_end = start + pos;
            if skipping {
                skipping = false;
            } else {
                line_no += 1;
                let item =
                    if line_end - start > MAX_LINE { LineItem::TooLong } else { LineItem::Line(&buf[start..line_end]) };
                if !f(line_no, item) {
                    return Ok(());
                }
            }
            start = line_end + 1;
        }
        if eof {
            if start < end && !skipping {
                line_no += 1;
                let item = if end - start > MAX_LINE { LineItem::TooLong } else { LineItem::Line(&buf[start..end]) };
                f(line_no, item);
            }
            return Ok(());
        }
        if skipping {
            start = 0;
            end = 0;
        } else if end - start > MAX_LINE {
            line_no += 1;
            if !f(line_no, LineItem::TooLong) {
                return Ok(());
            }
            skipping = true;
            start = 0;
            end = 0;
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = loop {
            match r.read(&mut buf[end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            eof = true;
        } else {
            end += n;
        }
    }
}

/// Reads every source, parses its lines as `format` and inserts the keys
/// into `builder`, on two threads. Bad lines are counted, never fatal.
pub fn build_filter(
    sources: Vec<Source<'_>>,
    format: Format,
    min_count: u64,
    builder: &mut FilterBuilder,
    counters: &IngestCounters,
) -> Result<IngestStats, BreachError> {
    if builder.kind() != format.kind() {
        return Err(BreachError::InvalidParameters(format!(
            "--format {format} makes a {} filter, but the builder is for a {} filter",
            format.kind(),
            builder.kind()
        )));
    }
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Vec<[u8; 20]>>(8);
        let (back_tx, back_rx) = mpsc::channel::<Vec<[u8; 20]>>();
        let reader = s.spawn(move || read_sources(sources, format, min_count, counters, tx, back_rx));
        for mut batch in rx {
            builder.insert_keys(&batch);
            batch.clear();
            // The reader may have finished already; then the batch is just dropped.
            let _ = back_tx.send(batch);
        }
        match reader.join() {
            Ok(result) => result,
            Err(_) => Err(BreachError::InvalidParameters("the input reader thread panicked".into())),
        }
    })
}

fn read_sources(
    sources: Vec<Source<'_>>,
    format: Format,
    min_count: u64,
    counters: &IngestCounters,
    tx: mpsc::SyncSender<Vec<[u8; 20]>>,
    back_rx: mpsc::Receiver<Vec<[u8; 20]>>,
) -> Result<IngestStats, BreachError> {
    let mut stats = IngestStats::default();
    let mut batch: Vec<[u8; 20]> = Vec::with_capacity(BATCH);
    let mut account_buf = String::with_capacity(256);
    let mut pending_lines = 0u64;
    let mut receiver_gone = false;
    for src in sources {
        let name = src.name;
        let res = for_each_line(src.reader, |line_no, item| {
            stats.lines += 1;
            pending_lines += 1;
            match item {
                LineItem::TooLong => stats.bad(&name, line_no, BadReason::TooLong),
                LineItem::Line(line) => match parse_line(format, line, min_count, &mut account_buf) {
                    Ok(Some(key)) => {
                        stats.keys += 1;
                        batch.push(key);
                        if batch.len() == BATCH {
                            let next = back_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
                            let full = std::mem::replace(&mut batch, next);
                            counters.lines.fetch_add(pending_lines, Ordering::Relaxed);
                            pending_lines = 0;
                            if tx.send(full).is_err() {
                                receiver_gone = true;
                                return false;
                            }
                        }
                    }
                    Ok(None) => stats.skipped_min_count += 1,
                    Err(reason) => stats.bad(&name, line_no, reason),
                },
            }
            true
        });
        counters.lines.fetch_add(pending_lines, Ordering::Relaxed);
        pending_lines = 0;
        res.map_err(|cause| BreachError::Input { path: name.clone(), cause })?;
        if receiver_gone {
            break;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    Ok(stats)
}

// ---------------------------------------------------------------- inputs

/// Counts bytes read into a shared counter (progress).
pub(crate) struct CountingReader<'a, R> {
    inner: R,
    counter: &'a AtomicU64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Compressed `.gz` inputs up to this size are counted exactly by
/// decompressing them once; larger ones are estimated from their size.
pub const GZ_EXACT_COUNT_LIMIT: u64 = 64 << 20;
/// Head-room added to size-based estimates.
pub const ESTIMATE_HEADROOM: f64 = 1.10;

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn has_gz_extension(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// An opened input list.
pub struct OpenedInput<'a> {
    /// The decompressed line stream.
    pub source: Source<'a>,
    /// Raw (compressed) size, when known (not for standard input).
    pub size: Option<u64>,
    /// Whether it is being gunzipped.
    pub gz: bool,
}

/// Opens one input: `-` is standard input; gzip is detected by the `.gz`
/// extension or the gzip magic bytes and decompressed transparently
/// (concatenated members too). Raw bytes read are added to `bytes_read`.
pub fn open_input<'a>(path: &Path, bytes_read: &'a AtomicU64) -> Result<OpenedInput<'a>, BreachError> {
    let name = path.display().to_string();
    let ierr = |cause: io::Error| BreachError::Input { path: name.clone(), cause };
    let (raw, size): (Box<dyn Read + Send + 'a>, Option<u64>) = if is_stdin(path) {
        (Box::new(io::stdin()), None)
    } else {
        let file = File::open(path).map_err(ierr)?;
        let meta = file.metadata().map_err(ierr)?;
        if meta.is_dir() {
            return Err(ierr(io::Error::new(io::ErrorKind::InvalidInput, "is a directory")));
        }
        (Box::new(file), Some(meta.len()))
    };
    let mut br = BufReader::with_capacity(READ_BUF, CountingReader { inner: raw, counter: bytes_read });
    let magic = br.fill_buf().map_err(ierr)?;
    let gz = magic.starts_with(&[0x1f, 0x8b]) || has_gz_extension(path);
    let source = if gz { Source::new(name, flate2::bufread::MultiGzDecoder::new(br)) } else { Source::new(name, br) };
    Ok(OpenedInput { source, size, gz })
}

/// How an expected item count was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemCountSource {
    /// `--expected-items`.
    Given,
    /// Counted by a first pass over the input.
    Counted,
    /// Estimated from the size of a large `.gz` input ([`Format::gz_bytes_per_line`]).
    Estimated,
}

impl fmt::Display for ItemCountSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ItemCountSource::Given => "given with --expected-items",
            ItemCountSource::Counted => "counted in a first pass",
            ItemCountSource::Estimated => "estimated from the .gz size",
        })
    }
}

/// Sizes the filter for one input without building it:
/// * an uncompressed file is counted by a fast newline-counting pass (with
///   `--format sha1 --min-count N>1`, only lines whose count passes);
/// * a `.gz` up to [`GZ_EXACT_COUNT_LIMIT`] is decompressed and counted the same way;
/// * a larger `.gz` is estimated as `compressed size × ratio ÷ bytes per line`
///   ([`Format::gz_bytes_per_line`]: HIBP ≈ 42 bytes a line, gzip ≈ 2.3×)
///   plus 10 % head-room;
/// * standard input cannot be sized: pass `--expected-items`.
pub fn estimate_items(
    path: &Path,
    format: Format,
    min_count: u64,
    bytes_read: &AtomicU64,
) -> Result<(u64, ItemCountSource), BreachError> {
    if is_stdin(path) {
        return Err(BreachError::InvalidParameters(
            "standard input cannot be counted in advance; pass --expected-items N (the number of entries)".into(),
        ));
    }
    let OpenedInput { source, size, gz } = open_input(path, bytes_read)?;
    let size = size.unwrap_or(0);
    if gz && size > GZ_EXACT_COUNT_LIMIT {
        let (per_line, ratio) = format.gz_bytes_per_line();
        let est = (size as f64 * ratio / per_line * ESTIMATE_HEADROOM).ceil() as u64;
        return Ok((est, ItemCountSource::Estimated));
    }
    let n = count_lines(source, format, min_count)?;
    Ok((n, ItemCountSource::Counted))
}

fn count_lines(src: Source<'_>, format: Format, min_count: u64) -> Result<u64, BreachError> {
    let name = src.name;
    let ierr = |cause: io::Error| BreachError::Input { path: name.clone(), cause };
    if format == Format::Sha1 && min_count > 1 {
        let mut n = 0u64;
        for_each_line(src.reader, |_, item| {
            if let LineItem::Line(l) = item {
                if let Ok(Some(_)) = parse_sha1_line(l, min_count) {
                    n += 1;
                }
            }
            true
        })
        .map_err(ierr)?;
        return Ok(n);
    }
    let mut r = src.reader;
    let mut buf = vec![0u8; READ_BUF];
    let mut n = 0u64;
    let mut last = b'\n';
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ierr(e)),
        };
        n += count_newlines(&buf[..k]);
        last = buf[k - 1];
    }
    if last != b'\n' {
        n += 1;
    }
    Ok(n)
}

#[inline]
fn count_newlines(s: &[u8]) -> u64 {
    // Sum in u8 lanes over blocks of 255 so the compiler vectorises it.
    let mut total = 0u64;
    for block in s.chunks(255 * 32) {
        let mut acc = [0u8; 32];
        for chunk in block.chunks(32) {
            for (a, &b) in acc.iter_mut().zip(chunk) {
                *a += u8::from(b == b'\n');
            }
        }
        total += acc.iter().map(|&x| u64::from(x)).sum::<u64>();
    }
    total
}
