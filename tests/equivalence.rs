//! The offline replay and the live proxy judge with the same `engine::decide`: the same request sequence, sent
//! through a real gateway in front of the demo API and fed to the engine offline (with the upstream answers the
//! live run got, at the same relative times), must get the same verdict from the same defense, request by request.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, demo_api, from_upstream, shipped, Gateway, Options};
use stuffgate::clock::Clock;
use stuffgate::config::{compile_policies, Services};
use stuffgate::engine::{self, InMemory};
use stuffgate::fingerprint::{ClientFingerprint, FingerprintSource};
use stuffgate::geoip::SharedGeoDb;

struct Sent {
    ip: &'static str,
    body: String,
    at: Duration,
    status: u16,
    forwarded: bool,
}

/// A mixed sequence: real users (with typos), one address stuffing a list, a spray of one password over many
/// accounts from many addresses, a brute force on one account, a breached password (challenged: an unknown
/// device), unusable bodies, and impossible travel.
fn sequence() -> Vec<(&'static str, String)> {
    let login = |email: &str, password: &str| serde_json::json!({ "email": email, "password": password }).to_string();
    let mut out = Vec::new();
    out.push(("192.0.2.10", login("alice@example.com", "correct horse battery staple")));
    out.push(("192.0.2.10", login("alice@example.com", "correct horse batery staple")));
    out.push(("192.0.2.10", login("alice@example.com", "correct horse battery staple")));
    for i in 0..12 {
        out.push(("203.0.113.5", login(&format!("victim{i}@example.com"), &format!("leaked-{i}-pw"))));
    }
    const SPRAY: [&str; 12] = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
        "198.51.100.5",
        "198.51.100.6",
        "198.51.100.7",
        "198.51.100.8",
        "198.51.100.9",
        "198.51.100.10",
        "198.51.100.11",
        "198.51.100.12",
    ];
    for (i, ip) in SPRAY.iter().enumerate() {
        out.push((*ip, login(&format!("user{:05}@example.com", i + 1), "Winter2026!")));
    }
    const BRUTE: [&str; 4] = ["100.64.1.1", "100.64.1.2", "100.64.1.3", "100.64.1.4"];
    for i in 0..14 {
        out.push((BRUTE[i % 4], login("bob@example.com", &format!("guess-{i}"))));
    }
    out.push(("192.0.2.44", login("carol@example.com", "password")));
    out.push(("192.0.2.45", "{\"email\": [\"a@x\", \"b@y\"], \"password\": \"p\"}".to_string()));
    out.push(("192.0.2.46", "not json at all".to_string()));
    out.push(("192.0.2.10", login("alice@example.com", "correct horse battery staple")));
    // Impossible travel (tagged for the app): Japan, then Brazil minutes later.
    out.push(("133.242.0.1", login("dave@example.jp", "7pay-summer-2019")));
    out.push(("200.160.0.1", login("dave@example.jp", "7pay-summer-2019")));
    out
}

#[test]
fn offline_replay_and_live_proxy_decide_the_same() {
    let policy = std::fs::read_to_string(shipped("policies/default.toml")).unwrap();
    let api = demo_api();
    let gateway = Gateway::start_with(&policy, api.addr(), Options::default());
    let http = client();
    let started = Instant::now();
    let mut sent = Vec::new();
    for (ip, body) in sequence() {
        let at = started.elapsed();
        let response = http
            .post(format!("{}/api/login", gateway.url))
            .header("content-type", "application/json")
            .header("x-forwarded-for", ip)
            .body(body.clone())
            .send()
            .unwrap();
        sent.push(Sent { ip, body, at, status: response.status().as_u16(), forwarded: from_upstream(&response) });
    }
    assert!(gateway.wait_for_log("\"status\":200", Duration::from_secs(5)));
    let mut live = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.len() < sent.len() && Instant::now() < deadline {
        live = gateway.decisions();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(live.len(), sent.len(), "one decision event per request");

    // The same policy and data, offline, on a manual clock moved to each request's time.
    let clock = Clock::manual();
    let geo = SharedGeoDb::open(Path::new(&shipped("geoip/country.mmdb")), None).unwrap();
    let mut env = Services::new(clock.clone(), 100_000).with_geo(Some(Arc::new(geo)));
    env.open_breach_filters(Some(Path::new(&shipped("policies/data/common-passwords.bloom"))), None).unwrap();
    let compiled = compile_policies(&[PathBuf::from(shipped("policies/default.toml"))], &env, None).unwrap();
    let index = compiled.match_route(&http::Method::POST, "/api/login").unwrap();
    let route = &compiled.routes[index];
    let origin = clock.now_nanos();
    let mut verdicts = std::collections::BTreeMap::<String, usize>::new();
    for (i, (request, event)) in sent.iter().zip(&live).enumerate() {
        let now = origin + request.at.as_nanos() as u64;
        clock.advance(Duration::from_nanos(now - clock.now_nanos()));
        let mut offline = InMemory {
            ip: request.ip.parse().unwrap(),
            headers: [(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))]
                .into_iter()
                .collect(),
            body: bytes::Bytes::from(request.body.clone()),
            // The fingerprint the live gateway took from the request head (the HTTP one: no TLS here).
            client_fingerprint: event["client_fingerprint"]
                .as_str()
                .and_then(|print| ClientFingerprint::new(FingerprintSource::Http, print.as_bytes())),
        };
        let Ok(judged) = engine::decide_now(route, &env, &mut offline, now);
        let decided_by = judged.decision.decided_by.map(|s| route.slots[s].defense.name()).unwrap_or("");
        assert_eq!(
            (judged.verdict().as_str(), decided_by),
            (event["verdict"].as_str().unwrap(), event["decided_by"].as_str().unwrap()),
            "request {i} from {}: offline and live disagree (live status {})",
            request.ip,
            request.status
        );
        assert_eq!(judged.verdict().forwards(), request.forwarded, "request {i}");
        if request.forwarded {
            engine::observe(route, &env, &judged.subject, request.status, now);
        }
        *verdicts.entry(judged.verdict().as_str().to_string()).or_default() += 1;
    }
    // The sequence must exercise more than the allowed path, or agreeing proves little. (Which of the step-up
    // verdicts shows depends on the policy's order: a breached password is challenged, impossible travel tagged.)
    for verdict in ["allow", "block", "bad_request"] {
        assert!(verdicts.contains_key(verdict), "no {verdict} in the sequence: {verdicts:?}");
    }
    assert!(verdicts.contains_key("tag") || verdicts.contains_key("challenge"), "no step-up verdict: {verdicts:?}");
}
