//! Address ranges that never have a country: answered without a DB lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for addresses that belong to a private or host-local network and so
/// have no country: the gateway's own machine, a LAN, a carrier NAT.
///
/// IPv4: `0.0.0.0/8` ("this network"), `10.0.0.0/8`, `100.64.0.0/10` (CGNAT),
/// `127.0.0.0/8`, `169.254.0.0/16` (link-local), `172.16.0.0/12`,
/// `192.168.0.0/16`, `255.255.255.255`.
/// IPv6: `::` and `::1`, `fc00::/7` (ULA), `fe80::/10` (link-local),
/// `fec0::/10` (deprecated site-local); IPv4-mapped `::ffff:a.b.c.d` is judged
/// by its IPv4 address.
///
/// Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
/// 2001:db8::/32) are deliberately *not* private: tests use them as stand-ins
/// for public clients. They simply have no country in any real database.
#[inline]
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

#[inline]
fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    match a {
        0 | 10 | 127 => true,
        100 => (64..128).contains(&b),
        169 => b == 254,
        172 => (16..32).contains(&b),
        192 => b == 168,
        255 => ip == Ipv4Addr::BROADCAST,
        _ => false,
    }
}

#[inline]
fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (first & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (first & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
}
