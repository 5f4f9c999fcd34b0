//! How clients reach the gateway, as the gateway file sets it: the header trusted proxies name the client in, and
//! the limits on client connections (`[connections]`). The proxy enforces them; they are configuration, so they
//! live here, below the proxy.

use std::time::Duration;

/// Which header trusted proxies record the client in (`forwarded_header` in the gateway file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (the default; HAProxy `option forwardfor`, nginx, AWS ELB).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    pub fn parse(name: &str) -> Option<ForwardedHeader> {
        match name.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(ForwardedHeader::XForwardedFor),
            "forwarded" => Some(ForwardedHeader::Forwarded),
            _ => None,
        }
    }

    pub fn header_name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The `[connections]` table of the gateway file, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a connection may wait for its next request after an answer.
    pub idle_timeout: Duration,
    /// How long a request head may take in total, from its first byte (from accept for a new connection).
    pub header_timeout: Duration,
    /// Largest request head (request line and header fields); larger ones get 431 and the connection closes.
    pub max_header_bytes: usize,
    /// Open client connections per process; more are answered 503 and closed.
    pub max_connections: usize,
    /// Open connections per client address; trusted proxies are exempt (they carry many clients).
    pub max_connections_per_client: usize,
    /// Connections from trusted proxies begin with a PROXY protocol header (v1 or v2), which names the client.
    pub proxy_protocol: bool,
    /// How long a protected request's body may take in total, from the end of its head.
    pub body_timeout: Duration,
    /// Refuse a new connection whose address the policy blocks by address alone, when it is accepted.
    pub refuse_blocked_at_accept: bool,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_connections: default_max_connections(open_files_limit()),
            max_connections_per_client: 64,
            proxy_protocol: false,
            body_timeout: Duration::from_secs(10),
            refuse_blocked_at_accept: true,
        }
    }
}

/// The admin listener's limits: a few connections (an operator, a dashboard, Prometheus), closed soon when idle, so
/// that nobody who can reach the admin port can hold the descriptors the proxy needs.
pub fn admin_limits() -> ConnectionLimits {
    ConnectionLimits {
        idle_timeout: Duration::from_secs(10),
        header_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        max_connections: ADMIN_MAX_CONNECTIONS,
        max_connections_per_client: ADMIN_MAX_CONNECTIONS,
        proxy_protocol: false,
        body_timeout: Duration::from_secs(5),
        refuse_blocked_at_accept: false,
    }
}

/// Open admin connections at most.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Descriptors kept out of the proxy's default cap: listeners, data and log files, Redis, and the admin listener's
/// own connections (at most [`ADMIN_MAX_CONNECTIONS`]).
const RESERVED_DESCRIPTORS: u64 = 256 + ADMIN_MAX_CONNECTIONS as u64;

/// Each proxied connection may hold two descriptors (client and upstream); the rest are reserved (see
/// [`RESERVED_DESCRIPTORS`]), so neither the admin listener nor the proxy's clients can take the other's.
pub fn default_max_connections(open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => (limit.saturating_sub(RESERVED_DESCRIPTORS) / 2).clamp(64, 16_384) as usize,
        None => 4096,
    }
}

/// The soft `RLIMIT_NOFILE` of this process (`LimitNOFILE` under systemd).
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own and has no other effect.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_fits_the_descriptor_limit() {
        assert_eq!(default_max_connections(Some(1024)), 352);
        assert_eq!(default_max_connections(Some(65_536)), 16_384);
        assert_eq!(default_max_connections(Some(100)), 64);
        assert_eq!(default_max_connections(None), 4096);
    }
}
