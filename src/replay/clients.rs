//! The request heads the replay's senders write, so that fingerprint defenses see what they would see live: real
//! users' browsers come in a handful of profiles, most of them shared by many users (a Chrome release on Windows
//! is one fingerprint for millions), and an attacking tool sends its own head — browser-like user agents rotated
//! per address, but its own header order and `Accept` values, the same from every address it rents.

use std::net::IpAddr;

type Head = &'static [(&'static str, &'static str)];

const CHROME_WIN: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) \
                              Chrome/131.0.0.0 Mobile Safari/537.36";
const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
                          Gecko) Version/17.6 Mobile/15E148 Safari/604.1";
const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                          Version/17.6 Safari/605.1.15";
const FIREFOX: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
const EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                    Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";

/// Browser profiles with the share of users on each (percent).
const BROWSERS: &[(u32, Head)] = &[
    (
        35,
        &[
            ("sec-ch-ua", "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
            ("sec-ch-ua-mobile", "?0"),
            ("sec-ch-ua-platform", "\"Windows\""),
            ("user-agent", CHROME_WIN),
            ("accept", "application/json, text/plain, */*"),
            ("content-type", "application/json"),
            ("origin", "https://shop.example"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("accept-language", "ja,en-US;q=0.9,en;q=0.8"),
        ],
    ),
    (
        20,
        &[
            ("sec-ch-ua", "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
            ("sec-ch-ua-mobile", "?1"),
            ("sec-ch-ua-platform", "\"Android\""),
            ("user-agent", CHROME_ANDROID),
            ("accept", "application/json, text/plain, */*"),
            ("content-type", "application/json"),
            ("origin", "https://shop.example"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("accept-language", "ja-JP,ja;q=0.9,en-US;q=0.8"),
        ],
    ),
    (
        25,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/plain, */*"),
            ("sec-fetch-site", "same-origin"),
            ("accept-language", "ja-JP,ja;q=0.9"),
            ("sec-fetch-mode", "cors"),
            ("accept-encoding", "gzip, deflate, br"),
            ("origin", "https://shop.example"),
            ("user-agent", SAFARI_IOS),
            ("sec-fetch-dest", "empty"),
        ],
    ),
    (
        5,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/plain, */*"),
            ("sec-fetch-site", "same-origin"),
            ("accept-language", "ja-JP,ja;q=0.9"),
            ("sec-fetch-mode", "cors"),
            ("accept-encoding", "gzip, deflate, br"),
            ("origin", "https://shop.example"),
            ("user-agent", SAFARI_MAC),
            ("sec-fetch-dest", "empty"),
        ],
    ),
    (
        7,
        &[
            ("user-agent", FIREFOX),
            ("accept", "application/json, text/plain, */*"),
            ("accept-language", "ja,en-US;q=0.7,en;q=0.3"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("content-type", "application/json"),
            ("origin", "https://shop.example"),
            ("sec-fetch-dest", "empty"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-site", "same-origin"),
        ],
    ),
    (
        8,
        &[
            ("sec-ch-ua", "\"Microsoft Edge\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
            ("sec-ch-ua-mobile", "?0"),
            ("sec-ch-ua-platform", "\"Windows\""),
            ("user-agent", EDGE),
            ("accept", "application/json, text/plain, */*"),
            ("content-type", "application/json"),
            ("origin", "https://shop.example"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("accept-language", "ja,en-US;q=0.9,en;q=0.8"),
        ],
    ),
];

/// The user agents a stuffing tool rotates through (browser-like, so user-agent rules see nothing odd).
const TOOL_AGENTS: &[&str] = &[CHROME_WIN, CHROME_ANDROID, SAFARI_IOS, FIREFOX, EDGE];

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn address_bits(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) ^ (u128::from(v6) >> 64)) as u64,
    }
}

/// A stable number in [0, 1) for a bot (actor and address): which of an actor's bots run a solver.
pub fn draw(actor: u16, ip: IpAddr, salt: u64) -> f64 {
    (mix(address_bits(ip) ^ (u64::from(actor) << 48) ^ salt) >> 11) as f64 / (1u64 << 53) as f64
}

/// The head of a real user's browser: one profile per user, by weight.
pub fn browser(user: u32) -> Head {
    let total: u32 = BROWSERS.iter().map(|(w, _)| w).sum();
    let mut pick = (mix(u64::from(user) ^ 0xb0_0b5) % u64::from(total)) as u32;
    for (weight, head) in BROWSERS {
        if pick < *weight {
            return head;
        }
        pick -= weight;
    }
    BROWSERS[0].1
}

/// The head an attacking tool sends from `ip`: its own order and `Accept` values, a rotated browser user agent.
pub fn tool(actor: u16, ip: IpAddr) -> [(&'static str, &'static str); 5] {
    let agent = TOOL_AGENTS[(mix(address_bits(ip) ^ u64::from(actor)) % TOOL_AGENTS.len() as u64) as usize];
    [
        ("user-agent", agent),
        ("accept", "*/*"),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate"),
        ("content-type", "application/json"),
    ]
}

/// The request head for one replayed request, in the order the sender writes it.
pub fn head(attacker: bool, actor: u16, user: u32, ip: IpAddr) -> http::HeaderMap {
    let mut headers = http::HeaderMap::with_capacity(16);
    let mut put = |pairs: &[(&'static str, &'static str)]| {
        for (name, value) in pairs {
            headers.append(*name, http::HeaderValue::from_static(value));
        }
    };
    if attacker {
        put(&tool(actor, ip));
    } else {
        put(browser(user));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn users_share_a_handful_of_browser_fingerprints_and_a_tool_keeps_its_own() {
        let mut users: HashMap<String, u32> = HashMap::new();
        for user in 0..10_000u32 {
            let print = crate::fingerprint::http(&head(false, 0, user, "192.0.2.1".parse().unwrap())).unwrap();
            *users.entry(print.to_string()).or_default() += 1;
        }
        // Safari on iOS and on macOS send the same head: one fingerprint for both.
        assert_eq!(users.len(), BROWSERS.len() - 1, "{users:?}");
        assert!(users.values().all(|&n| n > 300), "each profile is shared by many users: {users:?}");
        let mut tools = std::collections::HashSet::new();
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x6440_0000 + i * 7));
            tools.insert(crate::fingerprint::http(&head(true, 3, 0, ip)).unwrap().to_string());
        }
        // One per user-agent family the tool claims; none is a real browser's.
        assert!(tools.len() <= TOOL_AGENTS.len());
        assert!(tools.iter().all(|t| !users.contains_key(t)));
    }
}
