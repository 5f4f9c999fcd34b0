//! Which address is the client's.
//!
//! `X-Forwarded-For` is attacker-writable: any client can send one. It is read only when the TCP peer is one of our
//! configured trusted proxies, and then from the right: each trusted proxy appended the address it saw, so the
//! rightmost address that is *not* a trusted proxy is the first one no proxy of ours can vouch for — the client.
//!
//! All field lines count, in order, as one comma-separated list (RFC 9110 §5.3): HAProxy's `option forwardfor` adds
//! its own line *after* the one the client wrote, so reading only the first line reads the client's invention.
//!
//! A hop that is not an address (`unknown`, garbage, an obfuscated `Forwarded` node) where a trusted proxy should
//! have written one means nobody we trust vouches for what lies left of it — and the proxy's own address is not the
//! client's either (using it would let one client get the key shared by everyone behind that proxy blocked). Such a
//! request has no identifiable client: [`resolve`] answers `None`, and protected routes refuse it.

use std::net::IpAddr;

pub use crate::config::connections::ForwardedHeader;
use crate::ip_ranges::IpRanges;

/// The client's address given the TCP peer and every field line of the forwarding header, in order.
/// `None`: the peer is trusted but the chain holds a hop that is not an address (see the module comment).
pub fn resolve<'a, I>(peer: IpAddr, lines: I, header: ForwardedHeader, trusted: &IpRanges) -> Option<IpAddr>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    if trusted.is_empty() || !trusted.contains(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for line in lines.into_iter().rev() {
        let line = std::str::from_utf8(line).ok()?;
        for hop in line.rsplit(',') {
            let hop = hop.trim();
            if hop.is_empty() {
                // RFC 9110 §5.6.1: empty list elements are ignored.
                continue;
            }
            let ip = match header {
                ForwardedHeader::XForwardedFor => parse_hop(hop),
                ForwardedHeader::Forwarded => forwarded_for(hop),
            }?;
            client = ip;
            if !trusted.contains(ip) {
                return Some(ip);
            }
        }
    }
    // Every hop was a trusted proxy: the leftmost is as far as the chain goes.
    Some(client)
}

/// Accepts "1.2.3.4", "1.2.3.4:5678", "2001:db8::1", "[2001:db8::1]" and "[2001:db8::1]:443".
pub fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(|ip| canonical(IpAddr::V6(ip)))
}

/// `::ffff:198.51.100.7` is the IPv4 client 198.51.100.7: one key, not two.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The node of one `Forwarded` element's `for=` parameter; `None` when absent, `unknown` or obfuscated.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value.trim())
    })?;
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    parse_hop(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    fn trusted() -> IpRanges {
        IpRanges::new(&["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn one(peer: &str, line: &str) -> Option<IpAddr> {
        resolve(ip(peer), [line.as_bytes()], XFF, &trusted())
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        assert_eq!(one("203.0.113.9", "1.1.1.1"), Some(ip("203.0.113.9")));
        assert_eq!(one("203.0.113.9", "garbage"), Some(ip("203.0.113.9")));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        // The client forged "6.6.6.6"; our proxy 10.1.1.1 appended the real client, then 10.2.2.2 forwarded.
        assert_eq!(one("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.1.1"), Some(ip("198.51.100.7")));
    }

    #[test]
    fn every_field_line_counts_in_order() {
        // HAProxy `option forwardfor`: the client's own line first, the proxy's line (the real client) last.
        let lines: [&[u8]; 2] = [b"6.6.6.6", b"198.51.100.7"];
        assert_eq!(resolve(ip("127.0.0.1"), lines, XFF, &trusted()), Some(ip("198.51.100.7")));
        let lines: [&[u8]; 3] = [b"6.6.6.6, 7.7.7.7", b"198.51.100.7, 10.0.0.5", b"10.0.0.6"];
        assert_eq!(resolve(ip("127.0.0.1"), lines, XFF, &trusted()), Some(ip("198.51.100.7")));
        // A garbage line written by the client, left of the real hop, does not matter.
        let lines: [&[u8]; 2] = [b"x", b"198.51.100.7"];
        assert_eq!(resolve(ip("127.0.0.1"), lines, XFF, &trusted()), Some(ip("198.51.100.7")));
    }

    #[test]
    fn ports_and_brackets_are_understood() {
        assert_eq!(one("10.0.0.1", "198.51.100.7:5555"), Some(ip("198.51.100.7")));
        assert_eq!(one("10.0.0.1", "[2001:db8::7]:443"), Some(ip("2001:db8::7")));
        assert_eq!(one("10.0.0.1", "[2001:db8::7]"), Some(ip("2001:db8::7")));
        assert_eq!(one("10.0.0.1", "::ffff:198.51.100.7"), Some(ip("198.51.100.7")));
        assert_eq!(one("10.0.0.1", "198.51.100.7, , 10.0.0.2"), Some(ip("198.51.100.7")));
        let none: [&[u8]; 0] = [];
        assert_eq!(resolve(ip("10.0.0.1"), none, XFF, &trusted()), Some(ip("10.0.0.1")));
    }

    #[test]
    fn garbage_where_a_trusted_proxy_should_have_written_makes_the_client_unidentifiable() {
        // Not the trusted peer's (shared) address: that would put everyone behind the proxy under one key.
        assert_eq!(one("10.0.0.1", "bogus"), None);
        assert_eq!(one("10.0.0.1", "198.51.100.7, unknown, 10.0.0.2"), None);
        assert_eq!(resolve(ip("10.0.0.1"), [&b"\xff\xfe"[..]], XFF, &trusted()), None);
        // All trusted: the leftmost hop is as far as the chain goes.
        assert_eq!(one("10.0.0.1", "10.0.0.3, 10.0.0.2"), Some(ip("10.0.0.3")));
    }

    #[test]
    fn rfc_7239_forwarded_is_read_when_configured() {
        let fwd = ForwardedHeader::Forwarded;
        let lines: [&[u8]; 2] = [b"for=6.6.6.6", b"for=198.51.100.7;proto=https;by=10.0.0.1, For=\"10.0.0.5:80\""];
        assert_eq!(resolve(ip("10.0.0.1"), lines, fwd, &trusted()), Some(ip("198.51.100.7")));
        let v6: [&[u8]; 1] = [b"for=\"[2001:db8:cafe::17]:4711\""];
        assert_eq!(resolve(ip("10.0.0.1"), v6, fwd, &trusted()), Some(ip("2001:db8:cafe::17")));
        for bad in [&b"for=unknown"[..], b"for=_hidden", b"proto=https", b"for="] {
            assert_eq!(resolve(ip("10.0.0.1"), [bad], fwd, &trusted()), None, "{bad:?}");
        }
        assert_eq!(ForwardedHeader::parse("Forwarded"), Some(fwd));
        assert_eq!(ForwardedHeader::parse("x-real-ip"), None);
    }
}
