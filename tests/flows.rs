//! The default policy on the flows 7pay lost money through: reset links sent elsewhere, sign-up farms on
//! disposable mailboxes, rapid top-ups from one session. Real gateway, real demo API.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{client, demo_api, from_upstream, shipped, Gateway};

fn default_policy() -> String {
    std::fs::read_to_string(shipped("policies/default.toml")).unwrap()
}

fn post(gateway: &Gateway, path: &str, body: serde_json::Value, bearer: Option<&str>) -> reqwest::blocking::Response {
    let mut request = client()
        .post(format!("{}{path}", gateway.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().unwrap()
}

#[test]
fn a_reset_link_may_go_only_to_the_accounts_own_address() {
    let api = demo_api();
    let gateway = Gateway::start(&default_policy(), api.addr());
    let own = post(&gateway, "/api/password-reset", serde_json::json!({ "email": "bob@example.jp" }), None);
    assert_eq!(own.status(), 200);
    assert!(from_upstream(&own));
    let same = post(
        &gateway,
        "/api/password-reset",
        serde_json::json!({ "email": "bob@example.jp", "send_to": "Bob@Example.jp" }),
        None,
    );
    assert_eq!(same.status(), 200);
    let hijack = post(
        &gateway,
        "/api/password-reset",
        serde_json::json!({ "email": "bob@example.jp", "send_to": "collector@evil.example" }),
        None,
    );
    assert_eq!(hijack.status(), 403);
    assert_eq!(hijack.json::<serde_json::Value>().unwrap()["error"], "reset_target_not_allowed");
    let list = post(
        &gateway,
        "/api/password-reset",
        serde_json::json!({ "email": ["bob@example.jp", "collector@evil.example"] }),
        None,
    );
    assert_eq!(list.status(), 400, "GitLab CVE-2023-7028: an address list is refused");
    assert_eq!(api.state().stats().reset_links_elsewhere, 0, "no link ever went elsewhere");
    assert_eq!(api.state().stats().resets, 2);
}

#[test]
fn sign_ups_on_disposable_mailboxes_or_with_breached_passwords_are_refused() {
    let api = demo_api();
    let gateway = Gateway::start(&default_policy(), api.addr());
    let signup = |email: &str, password: &str| {
        post(&gateway, "/api/signup", serde_json::json!({ "email": email, "password": password }), None)
    };
    let farm = signup("coupon4711@mailinator.com", "a long and unusual passphrase");
    assert_eq!(farm.status(), 422);
    assert_eq!(farm.json::<serde_json::Value>().unwrap()["error"], "email_domain_not_accepted");
    assert_eq!(signup("farm@eu.yopmail.com", "a long and unusual passphrase").status(), 422);
    assert_eq!(signup("real.person@example.org", "password1").status(), 422, "breached password");
    let real = signup("real.person@example.org", "a long and unusual passphrase");
    assert_eq!(real.status(), 201);
    assert_eq!(api.state().stats().signups, 1);
}

#[test]
fn a_taken_over_session_cannot_top_up_three_times_in_a_minute() {
    let api = demo_api();
    let gateway = Gateway::start(&default_policy(), api.addr());
    let login = gateway.login(Some("133.1.1.1"), "dave@example.jp", "7pay-summer-2019");
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().unwrap()["token"].as_str().unwrap().to_string();
    let topup = |token: &str| post(&gateway, "/api/topup", serde_json::json!({ "amount": 30000 }), Some(token));
    assert_eq!(topup(&token).status(), 200);
    assert_eq!(topup(&token).status(), 200);
    let third = topup(&token);
    assert_eq!(third.status(), 429, "7pay's victim saw three ¥30,000 top-ups inside one minute");
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(api.state().balance("dave@example.jp"), Some(60_000));
    // Another session (another user behind the same address) is paced on its own.
    let other = gateway.login(Some("133.1.1.1"), "alice@example.com", "correct horse battery staple");
    let other_token = other.json::<serde_json::Value>().unwrap()["token"].as_str().unwrap().to_string();
    assert_eq!(topup(&other_token).status(), 200);
    assert!(!gateway.logs().contains(&token), "tokens are never logged");
}
