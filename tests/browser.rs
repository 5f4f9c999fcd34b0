//! A real browser (Debian's chromium, driven through chromedriver) against the gateway with the default policy in
//! front of the demo app: its login page, a breached password from a fresh browser → the challenge page → solved
//! in the browser → the app's answer; and once with JavaScript disabled (the `<noscript>` path).
//!
//! Needs `chromium` and `chromium-driver` (apt); see `common::browser` for what happens without them.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::{Chromedriver, CHROMIUM, HEADLESS_FLAGS};
use common::{client, demo_api, metrics, shipped, Gateway, Options, SHIPPED_DATA};
use fantoccini::{Client, ClientBuilder, Locator};

const EVE: (&str, &str) = ("eve@example.com", "password1");

async fn browser(driver: &Chromedriver, javascript: bool) -> Client {
    let mut args = HEADLESS_FLAGS.to_vec();
    args.push("--window-size=900,700");
    let mut chrome = serde_json::json!({ "binary": CHROMIUM, "args": args });
    if !javascript {
        chrome["prefs"] = serde_json::json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), chrome);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Sign in on the demo app's page through the gateway.
async fn sign_in(browser: &Client, gateway: &str) {
    browser.goto(&format!("{gateway}/")).await.unwrap();
    browser.find(Locator::Css("#email")).await.unwrap().send_keys(EVE.0).await.unwrap();
    browser.find(Locator::Css("#password")).await.unwrap().send_keys(EVE.1).await.unwrap();
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
}

/// Wait until the page's text contains `needle`; returns the text.
async fn wait_for_text(browser: &Client, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = browser.source().await.unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "`{needle}` never showed; the page:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn setup(extra: &str) -> (stuffgate::demo_api::DemoApi, Gateway) {
    let api = demo_api();
    let created = client()
        .post(format!("{}/api/signup", api.base_url()))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "email": EVE.0, "password": EVE.1 }).to_string())
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let policy = std::fs::read_to_string(shipped("policies/default.toml")).unwrap();
    let config = format!("{SHIPPED_DATA}{extra}");
    let gateway = Gateway::start_with(&policy, api.addr(), Options { extra_config: &config, ..Options::default() });
    (api, gateway)
}

#[test]
fn a_fresh_browser_with_a_breached_password_solves_the_challenge_and_reaches_the_app() {
    let Some(driver) = Chromedriver::start() else { return };
    let (api, gateway) = setup("");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shot = runtime.block_on(async {
        let browser = browser(&driver, true).await;
        sign_in(&browser, &gateway.url).await;
        // The challenge page shows while the browser works (chromedriver sets navigator.webdriver, an automation
        // tell: a second, harder round follows the first).
        let mut shot = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        let answer = loop {
            let page = browser.source().await.unwrap_or_default();
            if page.contains("\"token\"") && page.contains(EVE.0) {
                break page;
            }
            if shot.is_none() && page.contains("Checking this sign-in") {
                shot = browser.screenshot().await.ok();
            }
            assert!(Instant::now() < deadline, "the app's answer never came; the page:\n{page}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!answer.contains("challenge_required"));
        // The page's plain-JavaScript SHA-256 (used where `crypto.subtle` is missing) finds the nonce Rust finds.
        let script = "var out = null; (new Function('return function(m,p){' + arguments[0] + '\\nsolve(m,p);}'))()(\
                      {token: 'abc', bits: 10, subtle: false}, function (m) { if (m.nonce !== undefined) out = m; });\
                      var h = (new Function(arguments[0] + '\\nreturn sha256(ascii(\"abc\"));'))();\
                      return [out, Array.from(h).map(function (b) { return ('0' + b.toString(16)).slice(-2); }).join('')];";
        let result = browser.execute(script, vec![serde_json::json!(stuffgate::challenge::page::WORKER)]).await.unwrap();
        assert_eq!(result[1], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "SHA-256(\"abc\")");
        assert_eq!(result[0]["how"], "js");
        assert_eq!(result[0]["nonce"], stuffgate::challenge::token::solve("abc", 10).to_string());
        browser.close().await.unwrap();
        shot
    });
    assert_eq!(api.state().stats().logins_ok, 1, "the app saw the login once, after the challenge");
    let metrics = metrics(&gateway);
    assert!(metrics.contains(r#"stuffgate_challenges_total{result="passed",route="login"} 1"#), "{metrics}");
    let decisions = gateway.decisions();
    assert!(decisions.iter().any(|d| d["verdict"] == "challenge" && d["decided_by"] == "new_device"));
    assert!(!gateway.logs().contains(EVE.1), "no password in the log");
    if let Some(png) = shot {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("challenge.png");
        std::fs::write(&path, png).unwrap();
        eprintln!("challenge page screenshot: {}", path.display());
    }
}

#[test]
fn without_javascript_the_challenge_page_continues_after_a_short_wait() {
    let Some(driver) = Chromedriver::start() else { return };
    std::env::set_var("STUFFGATE_BROWSER_TEST_KEY", "b".repeat(32));
    let (api, gateway) = setup("[challenge]\nsecrets_env = [\"STUFFGATE_BROWSER_TEST_KEY\"]\nnoscript_wait_secs = 2\n");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let browser = browser(&driver, false).await;
        sign_in(&browser, &gateway.url).await;
        let page = wait_for_text(&browser, "JavaScript is turned off", Duration::from_secs(10)).await;
        assert!(page.contains("wait 2 seconds"), "{page}");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        browser.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
        wait_for_text(&browser, EVE.0, Duration::from_secs(10)).await;
        browser.close().await.unwrap();
    });
    assert_eq!(api.state().stats().logins_ok, 1);
    let metrics = metrics(&gateway);
    assert!(
        metrics.contains(r#"stuffgate_challenge_solve_seconds_count{path="noscript",route="login"} 1"#),
        "{metrics}"
    );
}
