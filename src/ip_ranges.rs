//! Sets of addresses as sorted, merged ranges (trusted proxies, allow- and deny-lists), searched in O(log n), so
//! thousands of entries cost what ten do.

use std::net::IpAddr;

use ipnet::IpNet;

/// Sorted, non-overlapping inclusive ranges over one 128-bit space (IPv4 mapped into ::ffff:0:0/96).
#[derive(Debug, Default, Clone)]
pub struct IpRanges {
    ranges: Vec<(u128, u128)>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl IpRanges {
    pub fn new(nets: &[IpNet]) -> IpRanges {
        IpRanges::from_spans(nets.iter().map(|net| (to_u128(net.network()), to_u128(net.broadcast()))).collect())
    }

    /// The ranges as inclusive spans of the 128-bit space, sorted and merged.
    pub fn spans(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    /// Ranges from inclusive spans (as [`IpRanges::spans`] gives them), in any order, overlapping or not.
    pub fn from_spans(mut ranges: Vec<(u128, u128)>) -> IpRanges {
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        IpRanges { ranges: merged }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let point = to_u128(ip);
        let after = self.ranges.partition_point(|&(start, _)| start <= point);
        after > 0 && self.ranges[after - 1].1 >= point
    }

    /// The ranges as written in a configuration: an address, a CIDR block, or `first-last` when a range is no
    /// block.
    pub fn to_strings(&self) -> Vec<String> {
        let ip = |n: u128| {
            let v6 = std::net::Ipv6Addr::from(n);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        };
        self.ranges
            .iter()
            .map(|&(first, last)| {
                let span = last - first;
                let aligned =
                    span.checked_add(1).map_or(first == 0, |size| size.is_power_of_two() && first % size == 0);
                if first == last {
                    ip(first).to_string()
                } else if aligned {
                    let host_bits = 128 - span.leading_zeros();
                    let prefix = match ip(first) {
                        IpAddr::V4(_) => 32 - host_bits,
                        IpAddr::V6(_) => 128 - host_bits,
                    };
                    format!("{}/{prefix}", ip(first))
                } else {
                    format!("{}-{}", ip(first), ip(last))
                }
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn ranges_match_v4_v6_and_mapped_addresses() {
        let ranges = IpRanges::new(&nets(&["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "2001:db8::/32"]));
        assert!(ranges.contains("10.200.3.4".parse().unwrap()));
        assert!(ranges.contains("192.0.2.255".parse().unwrap()));
        assert!(!ranges.contains("192.0.3.0".parse().unwrap()));
        assert!(!ranges.contains("9.255.255.255".parse().unwrap()));
        assert!(ranges.contains("2001:db8::1".parse().unwrap()));
        assert!(ranges.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!ranges.contains("2001:db9::1".parse().unwrap()));
    }
}
