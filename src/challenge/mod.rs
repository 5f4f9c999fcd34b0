//! Challenges and devices: proof-of-work challenge tokens, signed device tokens, the challenge page, and the facts
//! the engine computes from them (is the device token valid? is the device known for this account? was a
//! challenge solved?).
//!
//! * A risky login (see `defense::new_device`) from a device the account has not used is answered 428 with a
//!   challenge instead of being forwarded (the JSON protocol in `docs/challenge-protocol.md`, or the page in
//!   [`page`] for a browser that navigates). The client finds a nonce and sends the identical request again with
//!   `X-Stuffgate-Solution: <token>:<nonce>`; the page re-submits the original body sealed ([`seal`]).
//! * After an upstream success the gateway issues a device token (`Set-Cookie` and `X-Stuffgate-Device-Token`) and
//!   remembers the device in the account's record; later logins that present it are not challenged.
//!
//! Tokens ([`token`]) are HMAC-SHA256 over a fixed binary layout; the keys come from the gateway file's
//! `[challenge]` table (several accepted, the first signs).

pub mod facts;
pub mod metrics;
pub mod page;
pub mod seal;
pub mod token;

use std::time::Duration;

pub use facts::{DeviceFacts, DeviceToken, Solution};
pub use token::{SigningKey, TokenKeys};

use crate::store::CellId;

/// The cell of the account record listing the devices that logged in to it.
pub const KNOWN_DEVICES_CELL: CellId = 2;
/// The cell of a device record counting the networks its token came from today.
pub const DEVICE_NETWORKS_CELL: CellId = 3;
/// The cell of a challenge record marking it spent.
pub const SPENT_CELL: CellId = 4;
/// The cell of an address or account record admitting no-JavaScript passes (see `facts::NOSCRIPT_PER_HOUR`).
pub const NOSCRIPT_CELL: CellId = 5;
/// Cells up to this one are the gateway's own; defenses get the others.
pub const RESERVED_CELLS: CellId = 5;

/// Difficulty when a defense names none.
pub const DEFAULT_BITS: u8 = 16;
/// Hardest challenge ever sent: the cost falls on phones, not on native solvers (mCaptcha #186).
pub const MAX_BITS: u8 = 24;

/// How `Secure` is set on the device cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecureCookie {
    /// When the request came over TLS (a trusted front end says `X-Forwarded-Proto: https`).
    Auto,
    Always,
    Never,
}

/// The gateway-wide challenge settings (`[challenge]` in the gateway file).
#[derive(Clone, Debug)]
pub struct ChallengeConfig {
    pub keys: TokenKeys,
    /// Whether the keys came from the configuration (false: drawn at start, tokens die with the process).
    pub configured: bool,
    /// How long a challenge may take to solve.
    pub ttl: Duration,
    pub cookie_name: String,
    pub secure_cookie: SecureCookie,
    /// How long a device token lasts and a device stays known (sliding: each successful login renews it).
    pub remember: Duration,
    pub max_devices: u8,
    /// A token seen from more networks (IPv4 /24, IPv6 /48) than this in a day is shared, not known.
    pub shared_after: u32,
    /// The no-JavaScript path: "Continue" is accepted this long after the challenge was issued (doubled per bit
    /// above the default difficulty).
    pub noscript_wait: Duration,
}

impl ChallengeConfig {
    /// Random keys and the defaults.
    pub fn new(keys: TokenKeys, configured: bool) -> ChallengeConfig {
        ChallengeConfig {
            keys,
            configured,
            ttl: Duration::from_secs(120),
            cookie_name: "sg_dev".to_string(),
            secure_cookie: SecureCookie::Auto,
            remember: Duration::from_secs(90 * 86_400),
            max_devices: 8,
            shared_after: 6,
            noscript_wait: Duration::from_secs(5),
        }
    }

    /// How long the no-JavaScript path waits for a challenge of `bits`. Never less wall time than the work it
    /// replaces takes a browser: `noscript_wait_secs` is at least 1 s at 16 bits (2^16 hashes, about 65 ms in a
    /// JavaScript SHA-256 at 1 MH/s) and doubles with each bit, as the work does.
    pub fn noscript_wait_for(&self, bits: u8) -> Duration {
        let extra = bits.saturating_sub(DEFAULT_BITS).min(8);
        self.noscript_wait * (1u32 << extra)
    }
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        ChallengeConfig::new(TokenKeys::random(), false)
    }
}

/// A challenge the gateway answers with.
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: String,
    pub bits: u8,
    pub expires_in: u64,
    /// The original body sealed for the page (browsers only).
    pub sealed: Option<String>,
    /// How long the no-JavaScript path waits.
    pub noscript_wait: u64,
}

/// Issue a challenge for a request to `route` by `subject`, sealing `original` into it for the page.
pub fn issue(
    config: &ChallengeConfig,
    route: &str,
    subject: &crate::attempt::Subject,
    bits: u8,
    original: Option<&seal::Original>,
    now: u64,
) -> Issued {
    let ttl = config.ttl.as_secs().max(1);
    let claims = token::ChallengeClaims {
        issued_ms: now / 1_000_000,
        expires: (token::secs(now) + ttl).min(u64::from(u32::MAX)) as u32,
        bits,
        id: rand::random(),
        bind: token::bind(route, subject.account.map(|a| a.id)),
    };
    let token = config.keys.issue_challenge(&claims);
    let sealed = original.map(|original| seal::seal(&config.keys, &token, original));
    Issued { token, bits, expires_in: ttl, sealed, noscript_wait: config.noscript_wait_for(bits).as_secs() }
}
