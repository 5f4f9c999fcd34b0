//! The admin listener's dashboard in a real browser: Debian's chromium driven by chromedriver over the W3C WebDriver
//! protocol (plain HTTP + JSON, so no extra crate). The page must load, poll its data, and draw what the gateway saw:
//! the route's verdicts, the defense that blocked, the blocked address and its country, a rate line.
//!
//! Without chromium and chromedriver the test says so and passes, except under `CI=true`, where it fails.
//! `STUFFGATE_SCREENSHOT=docs/dashboard.png cargo test --test dashboard` refreshes the dashboard screenshot in docs/operations.md.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::browser::{Chromedriver, CHROMIUM, HEADLESS_FLAGS};
use common::{client, demo_api, Gateway, Options};
use serde_json::{json, Value};

const WINDOW: &str = "--window-size=1400,1100";

/// A WebDriver session in chromium, spoken to over plain HTTP; the session is deleted on drop.
struct Driver {
    session: String,
    driver: Chromedriver,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = client().delete(format!("{}/session/{}", self.driver.url, self.session)).send();
    }
}

impl Driver {
    fn start() -> Option<Driver> {
        let driver = Chromedriver::start()?;
        let mut args = HEADLESS_FLAGS.to_vec();
        args.push(WINDOW);
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        }}});
        let created: Value = client()
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .timeout(Duration::from_secs(60))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
        Some(Driver { session: session.to_string(), driver })
    }

    fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = client().request(method, format!("{}/session/{}{path}", self.driver.url, self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let value: Value = request.timeout(Duration::from_secs(30)).send().unwrap().json().unwrap();
        assert!(value["value"].get("error").is_none(), "WebDriver error: {value}");
        value["value"].clone()
    }

    fn script(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }
}

#[test]
fn the_dashboard_shows_live_traffic_in_a_real_browser() {
    let Some(driver) = Driver::start() else { return };
    let api = demo_api();
    let policy = "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
                  body = { account = \"email\", password = \"password\" }\n\
                  [[route.defense]]\ntype = \"failed_logins\"\nkey = \"ip\"\nthreshold = 3\nwindow = \"10m\"\n";
    let gateway = Gateway::start_with(policy, api.addr(), Options::default());
    let traffic = |n: usize| {
        for i in 0..n {
            // 8.8.8.8 (US in the shipped database) fails and is blocked; others log in.
            gateway.login(Some("8.8.8.8"), &format!("user{i:05}@example.com"), "wrong");
            gateway.login(
                Some(&format!("192.0.2.{}", 10 + i % 50)),
                "alice@example.com",
                "correct horse battery staple",
            );
            gateway.login(Some(&format!("192.0.2.{}", 100 + i % 50)), "bob@example.jp", "hunter2hunter2");
        }
    };
    traffic(6);

    driver.command(reqwest::Method::POST, "/url", Some(json!({ "url": format!("{}/dashboard", gateway.admin) })));
    let updates =
        || driver.script("return Number(document.getElementById('status').dataset.updates)").as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(40);
    // Traffic between polls, so the page has rates to draw.
    while updates() < 4 {
        assert!(
            Instant::now() < deadline,
            "the page did not poll its data: {}",
            driver.script("return document.body.innerText")
        );
        traffic(2);
        std::thread::sleep(Duration::from_millis(300));
    }
    let seen = driver.script(
        "return { status: document.getElementById('status').textContent,
                  routes: document.getElementById('routes').innerText,
                  findings: document.getElementById('findings').innerText,
                  addresses: document.getElementById('addresses').innerText,
                  countries: document.getElementById('countries').innerText,
                  upstream: document.getElementById('upstream').innerText,
                  penalties: document.getElementById('penalties').textContent,
                  lines: document.querySelectorAll('#chart polyline').length,
                  verdicts: Array.from(document.querySelectorAll('#chart polyline')).map(p => p.dataset.verdict) }",
    );
    assert_eq!(seen["status"], "live", "{seen}");
    // Every column of the routes table, `now/s` last, lies inside its panel: nothing is clipped.
    let fits = driver.script(
        "const table = document.getElementById('routes');
         const panel = table.closest('section').getBoundingClientRect();
         return Array.from(table.querySelectorAll('th')).every(th => th.getBoundingClientRect().right <= panel.right + 0.5)",
    );
    assert_eq!(fits, json!(true), "the routes table overflows its panel: {seen}");
    assert!(seen["routes"].as_str().unwrap().contains("login"), "{seen}");
    assert!(seen["findings"].as_str().unwrap().contains("ip_failures"), "{seen}");
    assert!(seen["addresses"].as_str().unwrap().contains("8.8.8.8"), "{seen}");
    assert!(seen["countries"].as_str().unwrap().contains("US"), "{seen}");
    assert!(seen["upstream"].as_str().unwrap().contains("login success"), "{seen}");
    assert_eq!(seen["penalties"], "1", "{seen}");
    let verdicts = seen["verdicts"].as_array().unwrap();
    assert!(verdicts.contains(&json!("block")) && verdicts.contains(&json!("allow")), "{seen}");
    // The chart by route: choosing the login route still shows its lines.
    let per_route = driver.script(
        "const s = document.getElementById('route'); s.value = 'login'; s.dispatchEvent(new Event('change'));
         return document.querySelectorAll('#chart polyline').length",
    );
    assert!(per_route.as_u64().unwrap() >= 2, "{per_route}");
    driver.script(
        "const s = document.getElementById('route'); s.value = ''; s.dispatchEvent(new Event('change')); return 0",
    );

    let png = driver.command(reqwest::Method::GET, "/screenshot", None);
    let png = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    let out = std::env::var("STUFFGATE_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"));
    std::fs::write(&out, png).unwrap();
    eprintln!("dashboard screenshot: {}", out.display());
}
