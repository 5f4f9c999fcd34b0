//! Which address is the client's.
//!
//! `X-Forwarded-For` is attacker-writable: any client can send one. It is read only when the TCP peer is one of our
//! configured trusted proxies, and then from the right: each trusted proxy appended the address it saw, so the
//! rightmost address that is *not* a trusted proxy is the first one no proxy of ours can vouch for — the client.

use std::net::IpAddr;

use crate::defense::ip_list::IpRanges;

pub fn resolve(peer: IpAddr, forwarded_for: Option<&[u8]>, trusted: &IpRanges) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let Some(header) = forwarded_for.and_then(|h| std::str::from_utf8(h).ok()) else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        let Some(ip) = parse_hop(hop.trim()) else {
            // A malformed hop cannot have been written by a trusted proxy: stop at the last good one.
            return client;
        };
        client = ip;
        if !trusted.contains(ip) {
            return ip;
        }
    }
    client
}

/// Accepts "1.2.3.4", "1.2.3.4:5678", "2001:db8::1" and "[2001:db8::1]:443".
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(socket) = hop.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> IpRanges {
        IpRanges::new(&["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let got = resolve(ip("203.0.113.9"), Some(b"1.1.1.1"), &trusted());
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        // The client forged "6.6.6.6"; our proxy 10.1.1.1 appended the real client, then 10.2.2.2 forwarded.
        let got = resolve(ip("127.0.0.1"), Some(b"6.6.6.6, 198.51.100.7, 10.1.1.1"), &trusted());
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn ports_and_brackets_are_understood_and_garbage_stops_the_walk() {
        assert_eq!(resolve(ip("10.0.0.1"), Some(b"198.51.100.7:5555"), &trusted()), ip("198.51.100.7"));
        assert_eq!(resolve(ip("10.0.0.1"), Some(b"[2001:db8::7]:443"), &trusted()), ip("2001:db8::7"));
        assert_eq!(resolve(ip("10.0.0.1"), Some(b"198.51.100.7, bogus, 10.0.0.2"), &trusted()), ip("10.0.0.2"));
        assert_eq!(resolve(ip("10.0.0.1"), None, &trusted()), ip("10.0.0.1"));
    }
}
