//! The TOML file formats, exactly as an operator writes them. Unknown keys are errors; meaning is given in
//! `compile.rs`, which turns these into the types the hot path uses.

use serde::Deserialize;
use toml::Spanned;

pub use crate::vocabulary::{Mode, RouteKind};

/// `gateway.toml`: where to listen, where the upstream is, which policies to load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Plain HTTP addresses ("127.0.0.1:8080") and TLS listeners (`{ address = "0.0.0.0:443", tls = { cert, key,
    /// sni = [{ cert, key }] } }`); default ["127.0.0.1:8080"]. Read entry by entry in `gateway.rs`.
    pub listen: Option<Vec<Spanned<toml::Value>>>,
    #[serde(default = "default_admin")]
    pub admin: String,
    pub upstream: UpstreamFile,
    pub policies: Vec<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Worker threads of the proxy service; default: one per core.
    pub threads: Option<usize>,
    /// How the threads serve: "per_thread" (default: one single-threaded proxy service per thread, each with its own
    /// SO_REUSEPORT listener and upstream pool, like nginx workers) or "shared" (one work-stealing service).
    pub runtime: Option<RuntimeLayout>,
    /// Upper bound on the records the state store keeps per key kind (address, account, ...).
    pub max_tracked_keys: Option<usize>,
    /// Seconds between file-change checks for hot reload; 0 disables polling (SIGHUP still reloads).
    pub watch_interval_secs: Option<u64>,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub privacy: PrivacyFile,
    pub geoip: Option<GeoipFile>,
    pub breach: Option<BreachFile>,
    /// Which header trusted proxies name the client in: "x-forwarded-for" (default) or "forwarded" (RFC 7239).
    pub forwarded_header: Option<String>,
    /// A header in which trusted proxies pass the client's TLS fingerprint (e.g. "CloudFront-Viewer-JA4-Fingerprint"),
    /// used when the gateway does not terminate the client's TLS itself. Ignored from any other peer.
    pub fingerprint_header: Option<Spanned<String>>,
    #[serde(default)]
    pub connections: ConnectionsFile,
    /// `[challenge]`: keys and settings for challenges and device tokens.
    pub challenge: Option<ChallengeFile>,
    /// Keep the state of shared defenses in Redis/Valkey, so several gateways enforce one fleet-wide limit.
    pub shared_state: Option<Spanned<SharedStateFile>>,
}

/// `[shared_state]`: where the gateways of a fleet keep the state they share, and how a request may wait on it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedStateFile {
    /// `redis://host:6379/0`, or `rediss://` for TLS (Valkey speaks the same; `valkey://` and `valkeys://` too).
    pub url: String,
    /// Prefix of every key, with the layout version (default "sg:v2:").
    pub key_prefix: Option<String>,
    /// Longest a decision phase waits for the store, in milliseconds (default 3); then it decides on local state.
    pub read_deadline_ms: Option<u64>,
    /// Longest a write waits before its batch is sent, in milliseconds (default 2).
    pub write_flush_ms: Option<u64>,
    /// Most writes per batch (default 128).
    pub write_batch: Option<usize>,
    /// Most writes waiting to be sent (default 65536); more are dropped and counted.
    pub write_queue: Option<usize>,
    /// Consecutive failed round trips that open the circuit breaker (default 5).
    pub breaker_failures: Option<u32>,
    /// How long the breaker stays open before the first probe, in milliseconds (default 1000).
    pub breaker_open_ms: Option<u64>,
    /// The longest it stays open between probes, in milliseconds (default 5000).
    pub breaker_max_open_ms: Option<u64>,
    /// Key kinds whose state is shared: address, account, account_address, password, session, device, challenge
    /// (default: account, account_address, password, device, challenge).
    pub share: Option<Vec<String>>,
}

/// `[challenge]`: the keys challenge and device tokens are signed with, and device settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeFile {
    /// Environment variables holding the secrets (at least 32 bytes each): the first signs, all verify. Rotate by
    /// putting a new variable first and removing the old one after `remember_days`.
    pub secrets_env: Vec<String>,
    /// Seconds a challenge may take to solve (default 120).
    pub ttl_secs: Option<u64>,
    /// The device cookie's name (default "sg_dev").
    pub cookie_name: Option<String>,
    /// "auto" (default: when a trusted front end says `X-Forwarded-Proto: https`), "always" or "never".
    pub secure_cookie: Option<crate::challenge::SecureCookie>,
    /// Days a device stays known after its last successful login, and its token's lifetime (default 90).
    pub remember_days: Option<u64>,
    /// Devices remembered per account (default 8).
    pub max_devices_per_account: Option<u8>,
    /// A device token seen from more networks (IPv4 /24, IPv6 /48) in a day is shared, not known (default 6).
    pub shared_after_networks: Option<u32>,
    /// Seconds the no-JavaScript path waits before "Continue" is accepted, at 16 bits (default 5).
    pub noscript_wait_secs: Option<u64>,
}

/// `[connections]`: limits that keep one client from holding every connection or megabytes of header buffers.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsFile {
    /// Seconds a keep-alive connection may wait for its next request (default 60).
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a request head may take in total, however slowly it trickles (default 10).
    pub header_timeout_secs: Option<u64>,
    /// Largest request head in bytes (default 32768); larger ones get 431.
    pub max_header_bytes: Option<usize>,
    /// Open client connections per process (default: from the open-files limit, (LimitNOFILE - 256) / 2).
    pub max_connections: Option<usize>,
    /// Open connections per client address (default 64); trusted proxies are exempt.
    pub max_connections_per_client: Option<usize>,
    /// Connections from `trusted_proxies` begin with a PROXY protocol header (HAProxy `send-proxy`/`send-proxy-v2`,
    /// AWS NLB, ...), whose address is the client's (default false). Others are plain HTTP.
    pub proxy_protocol: Option<bool>,
    /// Seconds a protected request's body may take in total, however slowly it trickles (default 10).
    pub body_timeout_secs: Option<u64>,
    /// Refuse a new connection from an address the policy blocks by address alone (a manual ban, an `ip_list`
    /// deny, an `ip_rate`, `ip_failures` or `distinct_accounts` block) when it is accepted, before any HTTP
    /// parsing; an open connection of such an address is closed after its refusal (default true).
    pub refuse_blocked_at_accept: Option<bool>,
    /// Seconds a client on a TLS listener has to send its whole ClientHello from accept (default 5); then the
    /// connection is closed.
    pub tls_hello_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreachFile {
    /// Breached-password filter (SHA-1 keys), e.g. the shipped policies/data/common-passwords.bloom.
    pub password_filter: Option<String>,
    /// Leaked account:password pair filter, built with `stuffgate breach build --format pairs`.
    pub pair_filter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipFile {
    /// Country database (.mmdb): the shipped geoip/country.mmdb, or MaxMind GeoLite2/GeoIP2 Country or City.
    pub country_db: String,
    /// Optional ASN database (.mmdb), e.g. GeoLite2-ASN.
    pub asn_db: Option<String>,
}

fn default_admin() -> String {
    "127.0.0.1:9901".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub address: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub sni: String,
    /// PEM file of the certificate authorities that sign the upstream's certificate (with `tls = true`); default:
    /// the system's. The upstream's certificate is always verified.
    pub ca: Option<String>,
    /// Send the client's fingerprint to the upstream as `X-Stuffgate-Client-Fingerprint` (default false).
    #[serde(default)]
    pub forward_fingerprint: bool,
    /// Seconds to wait for the upstream's TCP (and TLS) connection (default 3); then 504.
    pub connect_timeout_secs: Option<u64>,
    /// Seconds to wait for each read from the upstream (default 30); then 504.
    pub read_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// "json" (default) or "text".
    pub format: Option<String>,
    /// A tracing filter such as "info" or "stuffgate=debug".
    pub level: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrivacyFile {
    /// Secret that keys the hash under which accounts are tracked and logged. Name an environment variable with
    /// `hash_key_env`; without one a random key is drawn at start (hashes then change across restarts).
    pub hash_key_env: Option<String>,
}

/// A policy file: defaults and an ordered list of protected routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub defaults: DefaultsFile,
    pub attack_mode: Option<AttackModeFile>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RouteFile>>,
    /// Accept a policy that protects no route at all (the gateway is then a plain proxy). Without it, a policy
    /// whose files hold no `[[route]]` — an empty or truncated file — is refused at start, by `check` and on reload.
    #[serde(default)]
    pub allow_no_routes: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DefaultsFile {
    /// "enforce" or "observe"; defenses without their own `mode` take this one.
    pub mode: Option<Mode>,
    /// IPv6 clients are keyed by this prefix length (one subscriber usually holds a whole /64).
    pub ipv6_prefix: Option<u8>,
    /// What to do with a protected request whose body cannot be read: "reject" (400) or "forward".
    pub on_bad_body: Option<BadBody>,
    /// Largest body read on a protected route; larger ones get 413. At most 65536 (pingora's replay buffer).
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub name: String,
    /// login | reset | signup | generic
    pub kind: RouteKind,
    #[serde(default = "default_method")]
    pub method: String,
    /// Exact path, e.g. "/api/login".
    pub path: Option<String>,
    /// Path prefix, e.g. "/api/v1/auth/".
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub body: BodyFile,
    #[serde(default)]
    pub outcome: OutcomeFile,
    pub on_bad_body: Option<BadBody>,
    /// Where a `password_reset_required` answer sends the user (a URL or a path of the site).
    pub reset_url: Option<String>,
    #[serde(default, rename = "defense")]
    pub defenses: Vec<Spanned<DefenseFile>>,
}

fn default_method() -> String {
    "POST".to_string()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BodyFile {
    /// Dotted JSON path ("user.email") or form field name holding the account identifier.
    pub account: Option<String>,
    /// Same, for the password.
    pub password: Option<String>,
    /// Reset routes: the field where a caller may name the address the link goes to.
    pub target: Option<String>,
    /// The app matches field names case-insensitively (Go's `encoding/json`, ASP.NET Core): read `Email` as
    /// `email` instead of refusing it. Two spellings of one field are refused either way.
    #[serde(default)]
    pub case_insensitive_keys: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutcomeFile {
    /// Upstream statuses that mean "the login succeeded"; default [200].
    pub success: Option<Vec<u16>>,
    /// Upstream statuses that mean "wrong credentials"; default [401, 403].
    pub failure: Option<Vec<u16>>,
}

/// One defense of a route: the settings every defense shares, and its own parameters, which its module
/// deserializes into its own struct (unknown keys refused there, see `defense::registry`).
#[derive(Debug, Deserialize, Clone, PartialEq)]
pub struct DefenseFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub mode: Option<Mode>,
    pub action: Option<ActionName>,
    pub status: Option<u16>,
    /// The action while the site-wide attack mode is on, for logins from devices the account has not used.
    pub under_attack: Option<ActionName>,
    #[serde(flatten)]
    pub params: toml::Table,
}

/// `runtime`: how the proxy's threads are laid out.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeLayout {
    /// One single-threaded service per thread, each binding the listen addresses with SO_REUSEPORT: the kernel spreads
    /// connections, and no task, wake-up or upstream connection crosses a thread.
    #[default]
    PerThread,
    /// One service whose tasks any of its threads may steal (pingora's default).
    Shared,
}

/// `action`: what an enforced finding does.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    Block,
    Tag,
    Challenge,
    /// 403 `password_reset_required` with the route's `reset_url`.
    ResetRequired,
}

/// `[attack_mode]`: the site-wide detector (see `crate::attack`). Every key is optional.
#[derive(Debug, Deserialize, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttackModeFile {
    /// Counting granularity and how often the level is re-evaluated, e.g. "10s".
    pub bucket: Option<String>,
    /// The span one observation sums, e.g. "1m" (a whole number of buckets).
    pub window: Option<String>,
    /// Fewest failed logins from unknown devices per window that can mean an attack.
    pub floor: Option<u32>,
    /// Those failures must exceed this many times the trailing baseline.
    pub rise: Option<f32>,
    /// ... and their share of all logins must reach this (and twice the baseline share).
    pub min_ratio: Option<f32>,
    /// "high" at this many times the entry bar.
    pub high_factor: Option<f32>,
    /// How long the condition must hold before the mode goes on, e.g. "30s".
    pub enter_after: Option<String>,
    /// How long it must stay calm (under half the bar) before the mode goes off, e.g. "15m".
    pub leave_after: Option<String>,
}

/// `on_bad_body`: what to do with a protected request whose body cannot be read.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadBody {
    /// Answer 400 (the default): an unparsed login is never forwarded.
    #[default]
    Reject,
    /// Forward without credentials-based checks (the address-based ones still ran).
    Forward,
}
