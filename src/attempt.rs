//! One login attempt (or reset, sign-up, top-up) as the defenses see it: who is asking, what they sent, and the
//! facts computed about it once, before any defense reads them.

use std::net::IpAddr;

use crate::geoip::GeoInfo;
use crate::store::StateKey;

/// An address as a limiting key: IPv4 as is, IPv6 cut to a prefix (a subscriber is handed a whole /64, so keying on
/// the full address would let one client rotate through 2^64 keys).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct IpKey(pub u128);

impl IpKey {
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(u32::from(v4) as u128),
                None => {
                    let bits = u128::from(v6);
                    let prefix = ipv6_prefix.clamp(1, 128) as u32;
                    let mask = u128::MAX << (128 - prefix);
                    // Set a bit outside IPv4's range so a v6 key never equals a v4 one.
                    IpKey((bits & mask) | 1)
                }
            },
        }
    }
}

/// What the breach filters said about one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreachSignal {
    pub password: bool,
    pub pair: bool,
}

/// Facts about the attempt, each computed at most once and only when a defense of the route asked for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    /// Country and network of the address (when a GeoIP database is configured and the route needs it).
    pub geo: GeoInfo,
    /// `geo` was looked up (it is looked up only when needed, and for the log after the answer).
    pub located: bool,
    pub breach: BreachSignal,
    /// The account logged in successfully from this address recently (see `defense::known_sources`).
    pub known_source: bool,
    /// The device token, and whether the device is known for the account (see `challenge::facts`).
    pub device: crate::challenge::DeviceFacts,
    /// The challenge solution the request carried, if any.
    pub challenge: crate::challenge::Solution,
    /// The client's TLS or HTTP stack, when the request offered one (see `fingerprint`).
    pub client_fingerprint: Option<crate::fingerprint::ClientFingerprint>,
    /// The site-wide attack mode when the request arrived (see `attack`).
    pub attack: crate::attack::AttackLevel,
}

/// Who is asking, as keys: owned and small, kept from the decision until the upstream's answer is counted. Raw
/// credentials never get here — only their keyed hashes.
#[derive(Clone, Copy, Debug)]
pub struct Subject {
    pub ip: IpAddr,
    pub ip_key: IpKey,
    pub address: StateKey,
    pub account: Option<StateKey>,
    pub account_address: Option<StateKey>,
    /// The submitted password's keyed hash, for spray detection (never the password).
    pub password: Option<StateKey>,
    /// The route's session header (e.g. a bearer token) as a keyed hash, for session-keyed limits.
    pub session: Option<StateKey>,
    pub facts: Facts,
}

impl Subject {
    /// A 32-bit print of the address key, for recent-address sets.
    pub fn address_print(&self) -> u32 {
        print32(self.address.id)
    }
}

/// 32 bits of a keyed hash for set membership (never 0, which marks an empty slot in some sets).
pub fn print32(id: u64) -> u32 {
    (((id >> 32) as u32) ^ (id as u32)).max(1)
}

/// What the request carried, borrowed from the request buffer for the duration of the checks; never stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    /// The account, normalised (see [`normalise_account`]).
    pub account: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// Where a reset asks its link to go (the route's `body.target` field).
    pub target: Option<&'a str>,
}

/// Everything a defense may read about one request.
pub struct Attempt<'r> {
    pub subject: Subject,
    pub credentials: Credentials<'r>,
    pub headers: &'r http::HeaderMap,
}

/// Accounts compare as an upstream may compare them: NFKC-normalised, controls and zero-width characters removed,
/// trimmed and lower-cased (see `crate::account`).
pub fn normalise_account(raw: &str) -> std::borrow::Cow<'_, str> {
    crate::account::normalise_account(raw)
}
