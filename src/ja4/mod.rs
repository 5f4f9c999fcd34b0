//! JA4, the TLS client fingerprint of FoxIO (BSD-3-Clause, `technical_details/JA4.md` in FoxIO-LLC/ja4), computed
//! from the raw bytes of a ClientHello as they arrive on the socket: the record layer is reassembled here, so a hello
//! split over several TCP segments or several TLS records reads the same as one in a single packet.
//!
//! Only JA4 itself: the other JA4+ methods (JA4H, JA4S, JA4T, JA4X, ...) are under FoxIO's non-commercial licence.
//!
//! Two fingerprints come out of one hello:
//! - [`Ja4::full`], the standard JA4, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`;
//! - [`Ja4::counting`], the same computed without the extensions a resumed session adds (`pre_shared_key`, 0x0029,
//!   and `early_data`, 0x002a), so that a browser's first and resumed connections count as one client stack.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use smallvec::SmallVec;

/// The most raw bytes (record headers included) read while looking for a ClientHello. Post-quantum hellos are
/// about 1.8 KB; no client sends one near this size, and a reader never holds more.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// The length of a JA4 text: `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub const JA4_LEN: usize = 36;

const RECORD_HEADER: usize = 5;
const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_PRE_SHARED_KEY: u16 = 0x0029;
const EXT_EARLY_DATA: u16 = 0x002a;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A ClientHello has begun; more bytes are needed.
    Incomplete,
    /// The whole ClientHello message (handshake header included), borrowed when it sat in one record.
    Hello(Cow<'a, [u8]>),
    /// Not the start of a TLS ClientHello (another protocol, or a malformed record), or one too large to read.
    NotAHello(&'static str),
}

/// Reassemble the first handshake message from TLS records (`raw` starts at the first byte the client sent).
pub fn scan_records(raw: &[u8]) -> Scan<'_> {
    let mut at = 0;
    let mut message: Option<Vec<u8>> = None;
    loop {
        let Some(header) = raw.get(at..at + RECORD_HEADER) else {
            return incomplete_or_too_large(raw);
        };
        if header[0] != HANDSHAKE {
            return Scan::NotAHello("not a TLS handshake record");
        }
        if header[1] != 0x03 {
            return Scan::NotAHello("not a TLS record version");
        }
        let length = u16::from_be_bytes([header[3], header[4]]) as usize;
        if length == 0 || length > 16_384 + 256 {
            return Scan::NotAHello("bad TLS record length");
        }
        let Some(fragment) = raw.get(at + RECORD_HEADER..at + RECORD_HEADER + length) else {
            return incomplete_or_too_large(raw);
        };
        at += RECORD_HEADER + length;
        let so_far: &[u8] = match &mut message {
            None if fragment.len() >= 4 && handshake_length(fragment) + 4 <= fragment.len() => {
                if fragment[0] != CLIENT_HELLO {
                    return Scan::NotAHello("first handshake message is not a ClientHello");
                }
                // The common case: the whole hello in the first record, read in place.
                return Scan::Hello(Cow::Borrowed(&fragment[..handshake_length(fragment) + 4]));
            }
            None => message.insert(fragment.to_vec()),
            Some(buffer) => {
                buffer.extend_from_slice(fragment);
                buffer
            }
        };
        if so_far[0] != CLIENT_HELLO {
            return Scan::NotAHello("first handshake message is not a ClientHello");
        }
        if so_far.len() >= 4 {
            let total = handshake_length(so_far) + 4;
            if total > MAX_HELLO_BYTES {
                return Scan::NotAHello("ClientHello too large");
            }
            if so_far.len() >= total {
                let mut whole = message.unwrap_or_default();
                whole.truncate(total);
                return Scan::Hello(Cow::Owned(whole));
            }
        }
    }
}

fn incomplete_or_too_large(raw: &[u8]) -> Scan<'_> {
    if raw.len() >= MAX_HELLO_BYTES {
        Scan::NotAHello("ClientHello too large")
    } else {
        Scan::Incomplete
    }
}

fn handshake_length(message: &[u8]) -> usize {
    u32::from_be_bytes([0, message[1], message[2], message[3]]) as usize
}

/// Both fingerprints of one ClientHello.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ja4 {
    full: [u8; JA4_LEN],
    counting: [u8; JA4_LEN],
}

impl Ja4 {
    /// The standard JA4.
    pub fn full(&self) -> &str {
        // Only ASCII is ever written (see `render`).
        std::str::from_utf8(&self.full).unwrap_or_default()
    }

    /// JA4 without the extensions of a resumed session (`pre_shared_key`, `early_data`): the key to count by.
    pub fn counting(&self) -> &str {
        std::str::from_utf8(&self.counting).unwrap_or_default()
    }
}

impl std::fmt::Debug for Ja4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (counting {})", self.full(), self.counting())
    }
}

/// Why a ClientHello could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// JA4 of raw client bytes (records), when they hold a whole ClientHello.
pub fn fingerprint(raw: &[u8]) -> Option<Ja4> {
    match scan_records(raw) {
        Scan::Hello(message) => ja4(&message).ok(),
        _ => None,
    }
}

/// A GREASE value (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa. JA4 ignores them wherever they appear.
pub fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if self.bytes.len() < n {
            return Err(Malformed(what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = self.u8(what)? as usize;
        self.take(n, what)
    }

    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }
}

fn u16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// What JA4 reads from a ClientHello.
struct Hello<'a> {
    legacy_version: u16,
    ciphers: SmallVec<[u16; 64]>,
    /// Extension types in wire order, GREASE left out.
    extensions: SmallVec<[u16; 32]>,
    sni: bool,
    first_alpn: Option<&'a [u8]>,
    highest_supported_version: Option<u16>,
    signature_algorithms: &'a [u8],
}

fn parse(message: &[u8]) -> Result<Hello<'_>, Malformed> {
    let mut r = Reader { bytes: message };
    if r.u8("handshake type")? != CLIENT_HELLO {
        return Err(Malformed("not a ClientHello"));
    }
    let length = r.take(3, "handshake length")?;
    let length = u32::from_be_bytes([0, length[0], length[1], length[2]]) as usize;
    let mut r = Reader { bytes: r.take(length, "truncated ClientHello")? };
    let legacy_version = r.u16("version")?;
    r.take(32, "random")?;
    r.vec8("session id")?;
    let cipher_bytes = r.vec16("cipher suites")?;
    if cipher_bytes.len() % 2 != 0 {
        return Err(Malformed("odd cipher suite list"));
    }
    let ciphers = u16s(cipher_bytes).filter(|c| !is_grease(*c)).collect();
    r.vec8("compression methods")?;
    let mut hello = Hello {
        legacy_version,
        ciphers,
        extensions: SmallVec::new(),
        sni: false,
        first_alpn: None,
        highest_supported_version: None,
        signature_algorithms: &[],
    };
    if r.bytes.is_empty() {
        return Ok(hello);
    }
    let mut extensions = Reader { bytes: r.vec16("extensions")? };
    while !extensions.bytes.is_empty() {
        let kind = extensions.u16("extension type")?;
        let data = extensions.vec16("extension data")?;
        if is_grease(kind) {
            continue;
        }
        hello.extensions.push(kind);
        let mut d = Reader { bytes: data };
        match kind {
            EXT_SERVER_NAME => hello.sni = true,
            EXT_ALPN => {
                let mut list = Reader { bytes: d.vec16("ALPN list")? };
                if !list.bytes.is_empty() {
                    hello.first_alpn = Some(list.vec8("ALPN value")?);
                }
            }
            EXT_SUPPORTED_VERSIONS => {
                let versions = d.vec8("supported versions")?;
                hello.highest_supported_version = u16s(versions).filter(|v| !is_grease(*v)).max();
            }
            EXT_SIGNATURE_ALGORITHMS => {
                let algorithms = d.vec16("signature algorithms")?;
                if algorithms.len() % 2 != 0 {
                    return Err(Malformed("odd signature algorithm list"));
                }
                hello.signature_algorithms = algorithms;
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// JA4 of one ClientHello message (handshake header included, as [`scan_records`] returns it).
pub fn ja4(message: &[u8]) -> Result<Ja4, Malformed> {
    let hello = parse(message)?;
    let mut ciphers = hello.ciphers.clone();
    ciphers.sort_unstable();
    let cipher_hash = hash_list(&ciphers, &[]);
    let signature_algorithms: SmallVec<[u16; 32]> =
        u16s(hello.signature_algorithms).filter(|s| !is_grease(*s)).collect();
    let render_with = |keep: &dyn Fn(u16) -> bool| {
        let mut extensions: SmallVec<[u16; 32]> = hello.extensions.iter().copied().filter(|e| keep(*e)).collect();
        let count = extensions.len();
        extensions.retain(|e| *e != EXT_SERVER_NAME && *e != EXT_ALPN);
        extensions.sort_unstable();
        let extension_hash = hash_list(&extensions, &signature_algorithms);
        render(&hello, count, &cipher_hash, &extension_hash)
    };
    let full = render_with(&|_| true);
    let counting = render_with(&|e| e != EXT_PRE_SHARED_KEY && e != EXT_EARLY_DATA);
    Ok(Ja4 { full, counting })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex4(value: u16) -> [u8; 4] {
    [
        HEX[(value >> 12) as usize],
        HEX[(value >> 8 & 0xf) as usize],
        HEX[(value >> 4 & 0xf) as usize],
        HEX[(value & 0xf) as usize],
    ]
}

/// The first 12 hex digits of SHA-256 over `a,b,c` (then `_x,y` when `tail` is not empty); zeros for an empty list.
fn hash_list(list: &[u16], tail: &[u16]) -> [u8; 12] {
    if list.is_empty() {
        return *b"000000000000";
    }
    let mut hasher = Sha256::new();
    for (i, value) in list.iter().enumerate() {
        if i > 0 {
            hasher.update(b",");
        }
        hasher.update(hex4(*value));
    }
    for (i, value) in tail.iter().enumerate() {
        hasher.update(if i == 0 { b"_" } else { b"," });
        hasher.update(hex4(*value));
    }
    let digest = hasher.finalize();
    let mut out = [0u8; 12];
    for (i, byte) in digest[..6].iter().enumerate() {
        out[2 * i] = HEX[(byte >> 4) as usize];
        out[2 * i + 1] = HEX[(byte & 0xf) as usize];
    }
    out
}

fn version_code(version: u16) -> [u8; 2] {
    match version {
        0x0304 => *b"13",
        0x0303 => *b"12",
        0x0302 => *b"11",
        0x0301 => *b"10",
        0x0300 => *b"s3",
        0x0002 => *b"s2",
        0xfeff => *b"d1",
        0xfefd => *b"d2",
        0xfefc => *b"d3",
        _ => *b"00",
    }
}

/// The two ALPN characters: first and last of the first value when both are ASCII letters or digits, else the first
/// and last digits of its hex form; `00` without one.
fn alpn_code(first: Option<&[u8]>) -> [u8; 2] {
    match first {
        None | Some([]) => *b"00",
        Some(value) => {
            let (a, z) = (value[0], value[value.len() - 1]);
            if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
                [a, z]
            } else {
                [HEX[(a >> 4) as usize], HEX[(z & 0xf) as usize]]
            }
        }
    }
}

fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

fn render(hello: &Hello<'_>, extension_count: usize, ciphers: &[u8; 12], extensions: &[u8; 12]) -> [u8; JA4_LEN] {
    let mut out = [0u8; JA4_LEN];
    out[0] = b't';
    out[1..3].copy_from_slice(&version_code(hello.highest_supported_version.unwrap_or(hello.legacy_version)));
    out[3] = if hello.sni { b'd' } else { b'i' };
    out[4..6].copy_from_slice(&two_digits(hello.ciphers.len()));
    out[6..8].copy_from_slice(&two_digits(extension_count));
    out[8..10].copy_from_slice(&alpn_code(hello.first_alpn));
    out[10] = b'_';
    out[11..23].copy_from_slice(ciphers);
    out[23] = b'_';
    out[24..36].copy_from_slice(extensions);
    out
}

#[cfg(test)]
mod tests;
