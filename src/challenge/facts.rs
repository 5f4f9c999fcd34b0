//! The facts the engine computes about devices and challenge solutions, in the credential phase, batched with the
//! phase's other reads: is the device token valid, is the device known for this account (and not shared), was a
//! challenge for this route and account solved, and is it being used for the first time.

use http::HeaderMap;

use super::token::{self, TokenError};
use super::{ChallengeConfig, SecureCookie, DEVICE_NETWORKS_CELL, KNOWN_DEVICES_CELL, NOSCRIPT_CELL, SPENT_CELL};
use crate::attempt::{print32, Subject};
use crate::defense::FactNeeds;
use crate::keys::KeyHasher;
use crate::store::{KeyKind, Read, Reads, Reply, StateKey};

/// The header API clients send their device token in (browsers send the cookie).
pub const DEVICE_HEADER: &str = "x-stuffgate-device";
/// The response header a device token is issued in.
pub const DEVICE_TOKEN_HEADER: &str = "x-stuffgate-device-token";
/// The header a solved challenge comes back in: `<token>:<nonce>`.
pub const SOLUTION_HEADER: &str = "x-stuffgate-solution";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceToken {
    #[default]
    Absent,
    Valid,
    Invalid,
    Expired,
}

/// What the request says about its device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    pub token: DeviceToken,
    /// The presented token's device, or a fresh id for the token a success would issue.
    pub id: [u8; 16],
    /// The account logged in successfully with this device before (within `remember`).
    pub known: bool,
    /// The token came from more networks today than one device plausibly does.
    pub shared: bool,
    /// The request came over TLS (for the cookie's `Secure`).
    pub secure: bool,
    /// Keyed hash of the challenge page's device signals, when the page sent them.
    pub signals: Option<u64>,
    /// Automation tells and impossible combinations in those signals (each raises the difficulty).
    pub tells: u8,
}

impl DeviceFacts {
    /// A device the account logged in from before and that is not passed around: the one kind of client that
    /// attack mode and fingerprint penalties never touch.
    pub fn trusted(&self) -> bool {
        self.known && !self.shared
    }

    /// The device's store key.
    pub fn key(&self, keys: &KeyHasher) -> StateKey {
        keys.key(KeyKind::Device, &self.id)
    }
}

/// A challenge solution the request carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Solution {
    #[default]
    Absent,
    /// Valid, first use: worth `bits`.
    Passed {
        bits: u8,
        solve_ms: u64,
        noscript: bool,
    },
    /// Wrong nonce, bad MAC, another route or account, or the no-JavaScript path taken too early.
    Invalid,
    Expired,
    /// Valid but used before (single use).
    Reused,
    /// The no-JavaScript path, valid and waited for, but taken more often than a person without JavaScript does
    /// from this address or for this account (see [`NOSCRIPT_PER_HOUR`]).
    Throttled,
}

/// How many no-JavaScript passes an address, and an account, get per hour (with a burst of
/// [`NOSCRIPT_BURST`]): the time lock costs no CPU, so its wall time alone would not bound a bot that waits on
/// many connections at once.
pub const NOSCRIPT_PER_HOUR: u64 = 6;
pub const NOSCRIPT_BURST: u64 = 3;

impl Solution {
    pub fn as_str(self) -> &'static str {
        match self {
            Solution::Absent => "absent",
            Solution::Passed { .. } => "passed",
            Solution::Invalid => "invalid",
            Solution::Expired => "expired",
            Solution::Reused => "reused",
            Solution::Throttled => "throttled",
        }
    }
}

/// A solution as sent: the token and the nonce (empty for the no-JavaScript path, which only the page may take).
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    pub token: &'a str,
    pub nonce: &'a str,
    /// The page's signals (JSON): `Some` exactly when the solution came in the page's form (`_sg_*` fields), even
    /// when the page sent none; `None` for the `X-Stuffgate-Solution` header.
    pub signals: Option<&'a str>,
}

/// Where the reads this module added sit in the phase's batch.
#[derive(Debug, Default)]
pub struct Pending {
    known_at: Option<usize>,
    shared_at: Option<usize>,
    claim_at: Option<usize>,
    /// The no-JavaScript pass's admissions, per address and per account.
    noscript_at: Option<(usize, usize)>,
    passed: Solution,
}

/// The solution in an `X-Stuffgate-Solution` header: `<token>:<nonce>`.
pub fn from_header(headers: &HeaderMap) -> Option<Presented<'_>> {
    let value = headers.get(SOLUTION_HEADER)?.to_str().ok()?.trim();
    let (token, nonce) = value.rsplit_once(':')?;
    Some(Presented { token, nonce, signals: None })
}

/// The device token from `X-Stuffgate-Device` or the device cookie.
pub(crate) fn device_token<'h>(headers: &'h HeaderMap, cookie: &str) -> Option<&'h str> {
    if let Some(value) = headers.get(DEVICE_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(value.trim());
    }
    headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == cookie).then_some(value.trim_matches('"'))
        })
    })
}

/// Compute what needs no store, and queue the reads for the rest.
#[allow(clippy::too_many_arguments)]
pub fn gather(
    config: &ChallengeConfig,
    keys: &KeyHasher,
    route: &str,
    needs: FactNeeds,
    subject: &mut Subject,
    headers: &HeaderMap,
    presented: Option<Presented<'_>>,
    now: u64,
    reads: &mut Reads,
) -> Pending {
    let mut pending = Pending::default();
    if needs.device {
        let device = &mut subject.facts.device;
        device.secure = match config.secure_cookie {
            SecureCookie::Always => true,
            SecureCookie::Never => false,
            SecureCookie::Auto => {
                headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
            }
        };
        match device_token(headers, &config.cookie_name).map(|text| config.keys.verify_device(text, now)) {
            Some(Ok(claims)) => {
                device.token = DeviceToken::Valid;
                device.id = claims.id;
            }
            Some(Err(TokenError::Expired)) => device.token = DeviceToken::Expired,
            Some(Err(_)) => device.token = DeviceToken::Invalid,
            None => {}
        }
        if device.token != DeviceToken::Valid {
            device.id = rand::random();
        }
        if let (DeviceToken::Valid, Some(account)) = (device.token, subject.account) {
            let key = device.key(keys);
            pending.known_at = Some(reads.len());
            reads.push(Read::Contains { key: account, cell: KNOWN_DEVICES_CELL, member: print32(key.id) });
            pending.shared_at = Some(reads.len());
            reads.push(Read::Penalty { key, cell: DEVICE_NETWORKS_CELL });
        }
    }
    let Some(presented) = presented.filter(|_| needs.solution) else {
        return pending;
    };
    if let Some(json) = presented.signals {
        let (hash, tells) = signals(keys, json);
        // The page's script sends its signals with every nonce it finds: a nonce without them skipped the page.
        // (The no-JavaScript path sends none, and pays with the wait.)
        let skipped = json.trim().is_empty() && !presented.nonce.is_empty();
        subject.facts.device.signals = hash;
        subject.facts.device.tells = tells.max(u8::from(skipped));
    }
    subject.facts.challenge = match config.keys.verify_challenge(presented.token, now) {
        Err(TokenError::Expired) => Solution::Expired,
        Err(_) => Solution::Invalid,
        Ok(claims) if claims.bind != token::bind(route, subject.account.map(|a| a.id)) => Solution::Invalid,
        Ok(claims) => {
            let elapsed_ms = (now / 1_000_000).saturating_sub(claims.issued_ms);
            let noscript = presented.nonce.is_empty();
            let proven = if noscript {
                // The time lock is the page's, for people without JavaScript: an API client (the header) must
                // present the work itself.
                presented.signals.is_some() && elapsed_ms >= config.noscript_wait_for(claims.bits).as_millis() as u64
            } else {
                token::pow_ok(presented.token, presented.nonce, claims.bits)
            };
            if proven {
                pending.claim_at = Some(reads.len());
                let ttl = (u64::from(claims.expires) * 1_000_000_000).saturating_sub(now).max(1_000_000_000);
                reads.push(Read::Claim { key: keys.key(KeyKind::Challenge, &claims.id), cell: SPENT_CELL, ttl });
                if noscript {
                    let interval = 3_600_000_000_000 / NOSCRIPT_PER_HOUR;
                    let admit = |key| Read::Gcra {
                        key,
                        cell: NOSCRIPT_CELL,
                        interval,
                        tolerance: interval * (NOSCRIPT_BURST - 1),
                    };
                    let at = reads.len();
                    reads.push(admit(subject.address));
                    // Bound to the account (the token's bind): a challenge without one is checked per address twice.
                    reads.push(admit(subject.account.unwrap_or(subject.address)));
                    pending.noscript_at = Some((at, at + 1));
                }
                pending.passed =
                    Solution::Passed { bits: claims.bits, solve_ms: elapsed_ms, noscript: presented.nonce.is_empty() };
            }
            Solution::Invalid
        }
    };
    pending
}

/// Read the replies to the queued reads.
pub fn apply(pending: &Pending, replies: &[Reply], subject: &mut Subject) {
    let reply = |at: Option<usize>| at.and_then(|at| replies.get(at));
    if let Some(Reply::Contains(known)) = reply(pending.known_at) {
        subject.facts.device.known = *known;
    }
    if let Some(Reply::Penalty(remaining)) = reply(pending.shared_at) {
        subject.facts.device.shared = *remaining > 0;
    }
    let throttled = pending.noscript_at.is_some_and(|(address, account)| {
        [address, account].into_iter().any(|at| matches!(replies.get(at), Some(Reply::Wait(_))))
    });
    match reply(pending.claim_at) {
        Some(Reply::Claimed(true)) if throttled => subject.facts.challenge = Solution::Throttled,
        Some(Reply::Claimed(true)) => subject.facts.challenge = pending.passed,
        Some(_) => subject.facts.challenge = Solution::Reused,
        None => {}
    }
}

/// One extra bit per automation tell, two at most: the cost rises (each bit doubles it), the challenge stays
/// solvable.
pub fn with_tells(bits: u8, tells: u8) -> u8 {
    bits.saturating_add(tells.min(2)).min(super::MAX_BITS)
}

/// The page's device signals: a keyed hash of their stable part, and how many automation tells or impossible
/// combinations they show. Raw values are dropped here; only the hash is kept and logged.
pub fn signals(keys: &KeyHasher, json: &str) -> (Option<u64>, u8) {
    if json.is_empty() || json.len() > 4096 {
        return (None, 0);
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return (None, 1);
    };
    let text = |k: &str| map.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let number = |k: &str| map.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let flag = |k: &str| map.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let mut tells = 0u8;
    // Automation says so itself (WebDriver sets it; chromedriver here does).
    tells += u8::from(flag("wd"));
    tells += u8::from(text("ua").contains("HeadlessChrome"));
    // A phone without touch points.
    let mobile = flag("mob") || text("ua").contains("Mobi");
    tells += u8::from(mobile && number("tp") == 0.0);
    // No screen at all.
    tells += u8::from(number("sw") == 0.0 || number("sh") == 0.0);
    let stable = ["ua", "lang", "tz", "plat", "glv", "glr"].map(text).join("\u{1f}");
    let numbers = ["sw", "sh", "cd", "hc", "dm", "tp"].map(|k| number(k).to_string()).join(",");
    let hash = keys.id(KeyKind::Device, format!("signals\u{1f}{stable}\u{1f}{numbers}").as_bytes());
    (Some(hash), tells.min(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_token_comes_from_the_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "a=1; sg_dev=TOKEN; b=2".parse().unwrap());
        assert_eq!(device_token(&headers, "sg_dev"), Some("TOKEN"));
        assert_eq!(device_token(&headers, "other"), None);
        headers.insert(DEVICE_HEADER, "HEADER".parse().unwrap());
        assert_eq!(device_token(&headers, "sg_dev"), Some("HEADER"));
        let mut solution = HeaderMap::new();
        solution.insert(SOLUTION_HEADER, "abc:123".parse().unwrap());
        let presented = from_header(&solution).unwrap();
        assert_eq!((presented.token, presented.nonce), ("abc", "123"));
    }

    #[test]
    fn signals_are_hashed_and_automation_tells_counted() {
        let keys = KeyHasher::from_secret(b"k");
        let person = r#"{"ua":"Mozilla/5.0 (X11; Linux x86_64) Chrome/156","tz":"Asia/Tokyo","sw":1920,"sh":1080,"tp":0,"wd":false,"ms":420}"#;
        let (hash, tells) = signals(&keys, person);
        assert_eq!(tells, 0);
        let slower = person.replace("\"ms\":420", "\"ms\":900");
        assert_eq!(signals(&keys, &slower).0, hash, "the solve time is not part of the device's hash");
        let robot = person.replace("\"wd\":false", "\"wd\":true").replace("Chrome/", "HeadlessChrome/");
        assert_eq!(signals(&keys, &robot).1, 2);
        let phone = r#"{"ua":"Mozilla/5.0 (Linux; Android 14) Mobile","mob":true,"tp":0,"sw":400,"sh":800}"#;
        assert_eq!(signals(&keys, phone).1, 1);
        assert_eq!(signals(&keys, "not json"), (None, 1));
        assert_eq!(signals(&keys, ""), (None, 0));
    }
}
