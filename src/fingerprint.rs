//! The client's software stack as one short text: the fact `client_fingerprint`, which defenses may count and key
//! by, as they do an address or an account.
//!
//! A credential-stuffing tool rotates addresses and user agents cheaply, but not its TLS and HTTP stack. Where the
//! value comes from, best first: JA4 of the ClientHello when the gateway terminates TLS; a header set by a trusted
//! CDN or load balancer (e.g. `CloudFront-Viewer-JA4-Fingerprint`); a cheap fingerprint of the HTTP request head
//! on plain HTTP.

use std::fmt;

/// Where a [`ClientFingerprint`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FingerprintSource {
    /// JA4, computed from the ClientHello this gateway read.
    Tls,
    /// A header a trusted proxy set.
    Header,
    /// The HTTP request head (header-name order, `Accept*` values, user-agent family).
    Http,
}

impl FingerprintSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FingerprintSource::Tls => "tls",
            FingerprintSource::Header => "header",
            FingerprintSource::Http => "http",
        }
    }
}

/// A client fingerprint as printable ASCII, at most [`ClientFingerprint::MAX_LEN`] bytes, held inline so that it
/// rides in the `Copy` facts of an attempt without an allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientFingerprint {
    source: FingerprintSource,
    len: u8,
    bytes: [u8; ClientFingerprint::MAX_LEN],
    /// JA4's resumption-insensitive variant, when it differs from the JA4 (empty: count by the value itself).
    counting_len: u8,
    counting: [u8; ClientFingerprint::COUNTING_LEN],
}

impl ClientFingerprint {
    /// Longer values (from a header) are refused rather than cut, so two different values never read the same.
    pub const MAX_LEN: usize = 64;
    const COUNTING_LEN: usize = 40;

    /// `None` when `text` is empty, longer than [`Self::MAX_LEN`] or holds anything but printable ASCII.
    pub fn new(source: FingerprintSource, text: &[u8]) -> Option<ClientFingerprint> {
        if text.is_empty() || text.len() > Self::MAX_LEN || !text.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..text.len()].copy_from_slice(text);
        Some(ClientFingerprint { source, len: text.len() as u8, bytes, counting_len: 0, counting: [0; 40] })
    }

    /// A JA4 from this gateway's TLS listener, with the variant defenses count by: a resumed session adds
    /// `pre_shared_key` and changes a browser's JA4, and one browser must stay one key.
    pub fn ja4(full: &str, counting: &str) -> Option<ClientFingerprint> {
        let mut print = ClientFingerprint::new(FingerprintSource::Tls, full.as_bytes())?;
        if counting != full && !counting.is_empty() && counting.len() <= Self::COUNTING_LEN {
            print.counting[..counting.len()].copy_from_slice(counting.as_bytes());
            print.counting_len = counting.len() as u8;
        }
        Some(print)
    }

    /// What defenses key and count by: the resumption-insensitive JA4 for a TLS fingerprint, else the value.
    pub fn counting_bytes(&self) -> &[u8] {
        match self.counting_len {
            0 => self.as_bytes(),
            n => &self.counting[..n as usize],
        }
    }

    pub fn source(&self) -> FingerprintSource {
        self.source
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored (see `new`).
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Debug for ClientFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source.as_str(), self.as_str())
    }
}

impl fmt::Display for ClientFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Headers that vary per user or per request rather than per client stack, left out of the HTTP fingerprint: a
/// browser with a device cookie and the same browser without one are the same stack.
const VOLATILE: &[&str] = &[
    "cookie",
    "referer",
    "content-length",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
    "host",
];

/// The user agent's family, coarsely: what a tool claims to be, not its version.
fn agent_family(agent: &[u8]) -> &'static str {
    let has = |needle: &[u8]| agent.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    if agent.is_empty() {
        "none"
    } else if has(b"edg/") {
        "edge"
    } else if has(b"firefox/") {
        "firefox"
    } else if has(b"chrome/") || has(b"chromium/") {
        "chrome"
    } else if has(b"safari/") {
        "safari"
    } else if has(b"curl/") {
        "curl"
    } else if has(b"python") {
        "python"
    } else if has(b"go-http-client") {
        "go"
    } else if has(b"okhttp") || has(b"java") {
        "java"
    } else if has(b"mozilla/") {
        "mozilla"
    } else {
        "other"
    }
}

/// FNV-1a, 64 bits: stable across processes and releases (a fingerprint is a shared key in Redis).
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x100_0000_01b3))
}

/// The plain-HTTP fingerprint, the fallback when neither TLS nor a trusted header gives one: the order of the
/// header names (without per-user ones such as `Cookie`), the `Accept`, `Accept-Encoding` and the first five
/// characters of `Accept-Language` values, and the user agent's family. `http_<family>_<16 hex digits>`.
/// A tool that rotates user agents keeps its header order and `Accept` values; browsers of one kind share one
/// value, so a defense keyed by it must judge by the share of failures, never by volume alone. No allocation.
pub fn http(headers: &http::HeaderMap) -> Option<ClientFingerprint> {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let mut hash = OFFSET;
    let mut names = 0u32;
    let mut previous: Option<&http::HeaderName> = None;
    for name in headers.keys() {
        if previous == Some(name) || VOLATILE.contains(&name.as_str()) || name.as_str().starts_with("x-stuffgate-") {
            continue;
        }
        previous = Some(name);
        hash = fnv(hash, name.as_str().as_bytes());
        hash = fnv(hash, b"\n");
        names += 1;
    }
    if names == 0 {
        return None;
    }
    let value = |name: http::header::HeaderName| headers.get(name).map(|v| v.as_bytes()).unwrap_or_default();
    hash = fnv(hash, b"\0");
    hash = fnv(hash, value(http::header::ACCEPT));
    hash = fnv(hash, b"\0");
    hash = fnv(hash, value(http::header::ACCEPT_ENCODING));
    hash = fnv(hash, b"\0");
    let language = value(http::header::ACCEPT_LANGUAGE);
    hash = fnv(hash, &language[..language.len().min(5)]);
    let family = agent_family(value(http::header::USER_AGENT));
    let mut text = [0u8; 5 + 8 + 1 + 16];
    text[..5].copy_from_slice(b"http_");
    text[5..5 + family.len()].copy_from_slice(family.as_bytes());
    let at = 5 + family.len();
    text[at] = b'_';
    for (i, nibble) in (0..16).rev().map(|i| (hash >> (i * 4)) & 0xf).enumerate() {
        text[at + 1 + i] = b"0123456789abcdef"[nibble as usize];
    }
    ClientFingerprint::new(FingerprintSource::Http, &text[..at + 17])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_printable_ascii_and_refuses_the_rest() {
        let ja4 = b"t13d1516h2_8daaf6152771_02713d6af862";
        let print = ClientFingerprint::new(FingerprintSource::Tls, ja4).unwrap();
        assert_eq!(print.as_str(), "t13d1516h2_8daaf6152771_02713d6af862");
        assert_eq!(print.source(), FingerprintSource::Tls);
        assert!(ClientFingerprint::new(FingerprintSource::Header, b"").is_none());
        assert!(ClientFingerprint::new(FingerprintSource::Header, b"a b").is_none());
        assert!(ClientFingerprint::new(FingerprintSource::Header, "é".as_bytes()).is_none());
        assert!(ClientFingerprint::new(FingerprintSource::Header, &[b'a'; 65]).is_none());
        assert!(ClientFingerprint::new(FingerprintSource::Header, &[b'a'; 64]).is_some());
    }

    #[test]
    fn a_resumed_sessions_ja4_counts_as_the_fresh_one_and_logs_as_itself() {
        let fresh =
            ClientFingerprint::ja4("t13d1516h2_8daaf6152771_e5627efa2ab1", "t13d1516h2_8daaf6152771_e5627efa2ab1")
                .unwrap();
        let resumed =
            ClientFingerprint::ja4("t13d1517h2_8daaf6152771_b1ff8ab2d16f", "t13d1516h2_8daaf6152771_e5627efa2ab1")
                .unwrap();
        assert_eq!(resumed.as_str(), "t13d1517h2_8daaf6152771_b1ff8ab2d16f", "the log shows the real JA4");
        assert_eq!(resumed.counting_bytes(), fresh.counting_bytes(), "one browser, one key");
        assert_eq!(fresh.counting_bytes(), fresh.as_bytes());
        let header = ClientFingerprint::new(FingerprintSource::Header, b"abc").unwrap();
        assert_eq!(header.counting_bytes(), b"abc");
    }

    fn head(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    const CHROME: &str =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

    #[test]
    fn the_http_fingerprint_follows_the_stack_not_the_user() {
        let browser = |cookie: &str, language: &str| {
            http(&head(&[
                ("host", "example.com"),
                ("user-agent", CHROME),
                ("accept", "application/json"),
                ("accept-language", language),
                ("accept-encoding", "gzip, deflate, br"),
                ("cookie", cookie),
                ("content-type", "application/json"),
            ]))
            .unwrap()
        };
        let one = browser("sg_dev=a", "en-US,en;q=0.9");
        assert!(one.as_str().starts_with("http_chrome_"), "{one}");
        assert_eq!(one.source(), FingerprintSource::Http);
        assert_eq!(one, browser("sg_dev=b; x=1", "en-US,en;q=0.8"), "cookies and language weights do not split it");
        assert_ne!(one, browser("", "ja-JP"), "another language is another population");
        // A tool claiming to be Chrome, with its own header order.
        let tool = http(&head(&[
            ("content-type", "application/json"),
            ("user-agent", CHROME),
            ("accept", "*/*"),
            ("host", "example.com"),
        ]))
        .unwrap();
        assert!(tool.as_str().starts_with("http_chrome_") && tool != one);
        assert!(http(&head(&[("host", "example.com"), ("cookie", "a=b")])).is_none());
    }
}
