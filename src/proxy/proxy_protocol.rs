//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a load balancer sends at the start of a connection to
//! say whose connection it relays. Read only from trusted proxies and only when the gateway file asks for it
//! (`[connections] proxy_protocol = true`; see `connections.rs`); the address it names stands for the socket's peer
//! (and `X-Forwarded-For` is then read from there as usual).
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Version 2's binary signature.
const SIGNATURE_V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included (the specification's bound).
const MAX_V1: usize = 107;
/// The longest version 2 header accepted: addresses plus a generous allowance of TLVs (the format allows 64 KiB).
pub const MAX_V2: usize = 16 + 2048;

/// What a buffer holding the start of a connection says.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A complete header of `length` bytes. `client` is `None` for a `LOCAL` (v2) or `UNKNOWN` (v1) connection: the
    /// proxy's own, such as a health check; the socket's peer stands.
    Header {
        client: Option<IpAddr>,
        length: usize,
    },
    Invalid(&'static str),
}

/// Parse a PROXY protocol header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let prefix = buf.len().min(SIGNATURE_V2.len());
    if buf[..prefix] == SIGNATURE_V2[..prefix] {
        return if prefix < SIGNATURE_V2.len() { Parsed::Incomplete } else { parse_v2(buf) };
    }
    let prefix = buf.len().min(6);
    if buf[..prefix] == b"PROXY "[..prefix] {
        return if prefix < 6 { Parsed::Incomplete } else { parse_v1(buf) };
    }
    Parsed::Invalid("the connection does not start with a PROXY protocol header")
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let Some(end) = buf.iter().take(MAX_V1).position(|&b| b == b'\n') else {
        return if buf.len() < MAX_V1 { Parsed::Incomplete } else { Parsed::Invalid("PROXY v1 line too long") };
    };
    let Some(line) = buf[..end].strip_suffix(b"\r").and_then(|l| std::str::from_utf8(l).ok()) else {
        return Parsed::Invalid("PROXY v1 line not ended by CRLF");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let client = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", family @ ("TCP4" | "TCP6"), source, destination, source_port, destination_port] => {
            let (Ok(source), Ok(destination)) = (source.parse::<IpAddr>(), destination.parse::<IpAddr>()) else {
                return Parsed::Invalid("PROXY v1 address is not an address");
            };
            if (*family == "TCP4") != (source.is_ipv4() && destination.is_ipv4())
                || source.is_ipv4() != destination.is_ipv4()
            {
                return Parsed::Invalid("PROXY v1 addresses do not match their family");
            }
            if !valid_port(source_port) || !valid_port(destination_port) {
                return Parsed::Invalid("PROXY v1 port is not a port");
            }
            Some(source)
        }
        _ => return Parsed::Invalid("PROXY v1 line is malformed"),
    };
    Parsed::Header { client, length: end + 1 }
}

/// Decimal 0..=65535 without a sign or leading zeros (the specification's form).
fn valid_port(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
        && text.parse::<u16>().is_ok()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let (version_command, family) = (buf[12], buf[13]);
    let length = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if version_command >> 4 != 2 {
        return Parsed::Invalid("PROXY v2 header of an unknown version");
    }
    if length > MAX_V2 {
        return Parsed::Invalid("PROXY v2 header too long");
    }
    if buf.len() < length {
        return Parsed::Incomplete;
    }
    let body = &buf[16..length];
    let client = match (version_command & 0x0F, family) {
        // LOCAL: the proxy's own connection; the address block, if any, is ignored.
        (0x0, _) => None,
        // PROXY over TCP (or a stream over another transport) for IPv4 and IPv6.
        (0x1, 0x11) if body.len() >= 12 => Some(IpAddr::V4(Ipv4Addr::new(body[0], body[1], body[2], body[3]))),
        (0x1, 0x21) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        (0x1, 0x11 | 0x21) => return Parsed::Invalid("PROXY v2 address block too short"),
        // UNSPEC (the proxy does not know) keeps the socket's peer, as LOCAL does.
        (0x1, 0x00) => None,
        (0x1, _) => return Parsed::Invalid("PROXY v2 family is not TCP over IPv4 or IPv6"),
        _ => return Parsed::Invalid("PROXY v2 command is neither LOCAL nor PROXY"),
    };
    Parsed::Header { client, length }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = SIGNATURE_V2.to_vec();
        header.extend([0x20 | command, family]);
        header.extend((body.len() as u16).to_be_bytes());
        header.extend(body);
        header
    }

    #[test]
    fn version_1_names_the_client_and_keeps_what_follows() {
        let buf = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let header = Parsed::Header { client: Some("198.51.100.7".parse().unwrap()), length: 44 };
        assert_eq!(parse(buf), header);
        assert_eq!(&buf[44..48], b"GET ");
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n";
        assert_eq!(parse(v6), Parsed::Header { client: Some("2001:db8::7".parse().unwrap()), length: v6.len() });
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Header { client: None, length: 15 });
    }

    #[test]
    fn version_2_names_the_client_and_skips_its_tlvs() {
        let mut body = vec![198, 51, 100, 7, 10, 0, 0, 1, 0xC8, 0x22, 0x01, 0xBB];
        body.extend([0x04, 0x00, 0x02, b'x', b'y']); // a TLV (NOOP) after the addresses
        let mut buf = v2(1, 0x11, &body);
        let length = buf.len();
        buf.extend(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&buf), Parsed::Header { client: Some("198.51.100.7".parse().unwrap()), length });
        let mut six = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        six.extend([0u8; 16]);
        six.extend([0, 1, 0, 2]);
        let buf = v2(1, 0x21, &six);
        assert_eq!(parse(&buf), Parsed::Header { client: Some("2001:db8::7".parse().unwrap()), length: buf.len() });
        let local = v2(0, 0x00, &[]);
        assert_eq!(parse(&local), Parsed::Header { client: None, length: 16 });
    }

    #[test]
    fn partial_headers_ask_for_more_and_every_malformed_one_is_refused() {
        let full = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Parsed::Incomplete, "{cut} bytes");
        }
        let binary = v2(1, 0x11, &[198, 51, 100, 7, 10, 0, 0, 1, 0, 1, 0, 2]);
        for cut in 0..binary.len() {
            assert_eq!(parse(&binary[..cut]), Parsed::Incomplete, "{cut} bytes");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\n",
            b"PROXY TCP4 198.51.100.7 2001:db8::1 51234 443\r\n",
            b"PROXY TCP6 198.51.100.7 10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 banana 10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 198.51.100.7 10.0.0.1 051234 443\r\n",
            b"PROXY TCP4 198.51.100.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 198.51.100.7 10.0.0.1 1\r\n",
            b"PROXY UDP4 198.51.100.7 10.0.0.1 1 2\r\n",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(_)), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [&b"PROXY TCP4 "[..], &[b'1'; 200]].concat();
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
        assert!(matches!(parse(&v2(1, 0x11, &[1, 2, 3])), Parsed::Invalid(_)), "short address block");
        assert!(matches!(parse(&v2(1, 0x31, &[0; 216])), Parsed::Invalid(_)), "unix sockets are not clients");
        assert!(matches!(parse(&v2(2, 0x11, &[0; 12])), Parsed::Invalid(_)), "unknown command");
        let mut huge = SIGNATURE_V2.to_vec();
        huge.extend([0x21, 0x11, 0xFF, 0xFF]);
        assert!(matches!(parse(&huge), Parsed::Invalid(_)), "longer than accepted");
    }
}
