//! The site-wide attack mode and the reset-required answer, end to end through the real gateway and binary: the
//! operator's override through the admin API and the CLI, the metric, and what a login with a breached password
//! from an unknown device gets while the mode is on (JSON for API clients, a page with the link for browsers).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::process::Command;
use std::time::Duration;

use common::{client, recording_upstream, Gateway, Options};

const TOKEN: &str = "test-admin-token-0123456789";
const BIN: &str = env!("CARGO_BIN_EXE_stuffgate");

const POLICY: &str = "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
    body = { account = \"email\", password = \"password\" }\nreset_url = \"https://shop.example/reset?from=login\"\n\
    [[route.defense]]\ntype = \"breached_password\"\naction = \"tag\"\nunder_attack = \"reset_required\"\n\
    [[route]]\nname = \"strict\"\nkind = \"login\"\npath = \"/api/strict-login\"\n\
    body = { account = \"email\", password = \"password\" }\nreset_url = \"/reset\"\n\
    [[route.defense]]\ntype = \"breached_password\"\naction = \"reset_required\"\n";

fn with_token() -> Options<'static> {
    Options { env: &[("STUFFGATE_ADMIN_TOKEN", TOKEN)], ..Options::default() }
}

fn post(gateway: &Gateway, path: &str, accept: &str, password: &str) -> reqwest::blocking::Response {
    client()
        .post(format!("{}{path}", gateway.url))
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(serde_json::json!({ "email": "someone@example.com", "password": password }).to_string())
        .send()
        .unwrap()
}

fn attack_mode(gateway: &Gateway, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .arg("attack-mode")
        .args(args)
        .args(["--admin", &gateway.admin])
        .env("STUFFGATE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn metric(gateway: &Gateway) -> String {
    let text = client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap();
    text.lines().find(|l| l.starts_with("stuffgate_attack_mode ")).unwrap_or("missing").to_string()
}

#[test]
fn under_attack_a_breached_password_from_an_unknown_device_must_be_reset_and_calm_it_is_only_tagged() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = Gateway::start_with(POLICY, upstream, with_token());

    // Calm: tagged and forwarded.
    assert_eq!(post(&gateway, "/api/login", "application/json", "qwerty").status(), 401);
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-breached: password"), "{head}");

    // The operator holds the mode on, with the CLI.
    let (ok, stdout, stderr) = attack_mode(&gateway, &["on"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("attack mode elevated") && stdout.contains("override: on"), "{stdout}");
    assert_eq!(metric(&gateway), "stuffgate_attack_mode 1");

    let api = post(&gateway, "/api/login", "application/json", "qwerty");
    assert_eq!(api.status(), 403);
    assert_eq!(api.headers()["x-stuffgate-decision"], "reset_required");
    let body: serde_json::Value = serde_json::from_str(&api.text().unwrap()).unwrap();
    assert_eq!(body["error"], "password_reset_required");
    assert_eq!(body["reset_url"], "https://shop.example/reset?from=login");

    let page = post(&gateway, "/api/login", "text/html,application/xhtml+xml,*/*;q=0.8", "qwerty");
    assert_eq!(page.status(), 403);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().unwrap();
    assert!(html.contains("<a href=\"https://shop.example/reset?from=login\">Reset your password</a>"), "{html}");

    // A password in no corpus is not affected by the mode here (this route has no new-device challenge).
    assert_eq!(post(&gateway, "/api/login", "application/json", "a long and unusual passphrase").status(), 401);
    assert!(heads.recv_timeout(Duration::from_secs(5)).is_ok());
    let logged = gateway.wait_for_log("\"attack_mode\":\"elevated\"", Duration::from_secs(5));
    assert!(logged, "the decision log names the mode: {}", gateway.logs());
    assert!(gateway.wait_for_log("breached_password:password_in_breach_corpus:reset_required", Duration::from_secs(5)));

    // Back to the detector, which sees no attack: tagged again.
    let (ok, stdout, _) = attack_mode(&gateway, &["auto"]);
    assert!(ok && stdout.contains("attack mode off"), "{stdout}");
    assert_eq!(metric(&gateway), "stuffgate_attack_mode 0");
    assert_eq!(post(&gateway, "/api/login", "application/json", "qwerty").status(), 401);
}

#[test]
fn reset_required_is_an_action_any_route_can_use_without_attack_mode() {
    let (upstream, _heads) = recording_upstream(401);
    let gateway = Gateway::start_with(POLICY, upstream, with_token());
    let answer = post(&gateway, "/api/strict-login", "application/json", "letmein");
    assert_eq!(answer.status(), 403);
    let body: serde_json::Value = serde_json::from_str(&answer.text().unwrap()).unwrap();
    assert_eq!((body["error"].as_str(), body["reset_url"].as_str()), (Some("password_reset_required"), Some("/reset")));
    assert_eq!(post(&gateway, "/api/strict-login", "application/json", "a long and unusual passphrase").status(), 401);
}

#[test]
fn the_override_needs_the_token_and_a_known_mode() {
    let (upstream, _heads) = recording_upstream(401);
    let gateway = Gateway::start_with(POLICY, upstream, with_token());
    let url = format!("{}/attack-mode", gateway.admin);
    let status: serde_json::Value = client().get(&url).send().unwrap().json().unwrap();
    assert_eq!((status["level"].as_str(), status["override"].as_str()), (Some("off"), Some("auto")));
    let refused = client().post(&url).body(r#"{"mode":"on"}"#).send().unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = client().post(&url).bearer_auth(TOKEN).body(r#"{"mode":"panic"}"#).send().unwrap();
    assert_eq!(wrong.status(), 400);
    let off = client().post(&url).bearer_auth(TOKEN).body(r#"{"mode":"off"}"#).send().unwrap();
    assert_eq!(off.status(), 200);
    let held: serde_json::Value = off.json().unwrap();
    assert_eq!((held["level"].as_str(), held["override"].as_str()), (Some("off"), Some("off")));
    let (ok, stdout, _) = attack_mode(&gateway, &[]);
    assert!(ok && stdout.contains("override: off"), "{stdout}");
}
