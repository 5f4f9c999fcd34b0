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
}

impl ClientFingerprint {
    /// Longer values (from a header) are refused rather than cut, so two different values never read the same.
    pub const MAX_LEN: usize = 64;

    /// `None` when `text` is empty, longer than [`Self::MAX_LEN`] or holds anything but printable ASCII.
    pub fn new(source: FingerprintSource, text: &[u8]) -> Option<ClientFingerprint> {
        if text.is_empty() || text.len() > Self::MAX_LEN || !text.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..text.len()].copy_from_slice(text);
        Some(ClientFingerprint { source, len: text.len() as u8, bytes })
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
}
