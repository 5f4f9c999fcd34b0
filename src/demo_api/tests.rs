//! End-to-end tests: a real listener on 127.0.0.1:0 and a real HTTP client.

use super::*;
use serde_json::{json, Value};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

async fn start(generated: usize) -> (String, DemoState) {
    let state = DemoState::seeded(generated);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(serve(listener, state.clone()));
    (format!("http://{addr}"), state)
}

async fn post(base: &str, path: &str, ctype: &str, body: impl Into<String>) -> (u16, Value) {
    post_auth(base, path, ctype, body, None).await
}

async fn post_auth(base: &str, path: &str, ctype: &str, body: impl Into<String>, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{base}{path}")).header("content-type", ctype).body(body.into());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.expect("send");
    assert_eq!(
        resp.headers().get(UPSTREAM_HEADER).map(|v| v.as_bytes()),
        Some(&b"1"[..]),
        "missing upstream header on {path}"
    );
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

async fn login(base: &str, email: &str, password: &str) -> String {
    let (s, v) = post(base, "/api/login", JSON, json!({"email": email, "password": password}).to_string()).await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn login_json_ok_and_401() {
    let (base, state) = start(3).await;
    let (s, v) = post(
        &base,
        "/api/login",
        JSON,
        json!({"email": "  Alice@Example.COM ", "password": "correct horse battery staple"}).to_string(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["account"], "alice@example.com");
    let token = v["token"].as_str().expect("token");
    assert_eq!(token.len(), 43, "32 bytes base64url without padding");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    let wrong =
        post(&base, "/api/login", JSON, json!({"email": "alice@example.com", "password": "nope"}).to_string()).await;
    let unknown =
        post(&base, "/api/login", JSON, json!({"email": "zed@example.com", "password": "nope"}).to_string()).await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.1, json!({"error": "invalid_credentials"}));
    assert_eq!(wrong, unknown, "no user enumeration");

    // Generated users log in with demo_password(i).
    let _ = login(&base, &demo_account(2), &demo_password(2)).await;
    let (s, _) =
        post(&base, "/api/login", JSON, json!({"email": demo_account(2), "password": demo_password(1)}).to_string())
            .await;
    assert_eq!(s, 401);

    let st = state.stats();
    assert_eq!((st.logins_ok, st.logins_failed), (2, 3));
    assert_eq!(st.users, NAMED_USERS.len() as u64 + 3);
    assert_eq!(st.sessions, 2);
}

#[tokio::test]
async fn login_form_ok() {
    let (base, state) = start(0).await;
    let (s, v) =
        post(&base, "/api/login", FORM, "email=alice%40example.com&password=correct+horse+battery+staple").await;
    assert_eq!(s, 200);
    assert_eq!(v["account"], "alice@example.com");
    let (s, _) = post(
        &base,
        "/api/login",
        "application/x-www-form-urlencoded; charset=utf-8",
        "email=carol%40example.com&password=Tr0ub4dor%263",
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = post(&base, "/api/login", FORM, "email=bob%40example.jp&password=wrong").await;
    assert_eq!((s, v), (401, json!({"error": "invalid_credentials"})));
    assert_eq!(state.stats().logins_ok, 2);
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let (base, state) = start(0).await;
    let bad = json!({"error": "bad_request"});
    for (ctype, body) in [
        (JSON, "{\"email\": \"alice@example.com\", "),
        (JSON, "[1,2]"),
        (JSON, "{\"email\": 5, \"password\": \"x\"}"),
        (JSON, "{\"email\": \"alice@example.com\"}"),
        ("text/plain", "email=alice%40example.com&password=x"),
        (FORM, "email=%zz&password=x"),
    ] {
        let (s, v) = post(&base, "/api/login", ctype, body).await;
        assert_eq!((s, &v), (400, &bad), "{ctype} {body}");
    }
    // No content type at all.
    let resp = reqwest::Client::new().post(format!("{base}/api/login")).body("{}").send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let st = state.stats();
    assert_eq!((st.logins_ok, st.logins_failed), (0, 0));
}

#[tokio::test]
async fn signup_201_409_400() {
    let (base, state) = start(0).await;
    let body = json!({"email": "New@Example.org", "password": "s3cret pass"}).to_string();
    let (s, v) = post(&base, "/api/signup", JSON, body.clone()).await;
    assert_eq!((s, v), (201, json!({"account": "new@example.org"})));
    let (s, _) = post(&base, "/api/signup", JSON, body).await;
    assert_eq!(s, 409);
    let (s, _) = post(&base, "/api/signup", FORM, "email=alice%40example.com&password=x").await;
    assert_eq!(s, 409);
    for b in [
        json!({"email": "no-at-sign", "password": "x"}),
        json!({"email": "a@b.c"}),
        json!({"email": "a@b.c", "password": ""}),
        json!({"email": "@b.c", "password": "x"}),
    ] {
        let (s, _) = post(&base, "/api/signup", JSON, b.to_string()).await;
        assert_eq!(s, 400, "{b}");
    }
    let _ = login(&base, "new@example.org", "s3cret pass").await;
    assert_eq!(state.stats().signups, 1);
}

#[tokio::test]
async fn topup_and_me() {
    let (base, state) = start(0).await;
    let token = login(&base, "bob@example.jp", "hunter2hunter2").await;
    let (s, v) = post_auth(&base, "/api/topup", JSON, json!({"amount": 500}).to_string(), Some(&token)).await;
    assert_eq!((s, v), (200, json!({"balance": 500})));
    let (s, v) = post_auth(&base, "/api/topup", FORM, "amount=1500", Some(&token)).await;
    assert_eq!((s, v), (200, json!({"balance": 2000})));

    for bad in [
        json!({"amount": 0}),
        json!({"amount": -5}),
        json!({"amount": 100_001}),
        json!({"amount": 1.5}),
        json!({"amount": "500"}),
        json!({}),
    ] {
        let (s, _) = post_auth(&base, "/api/topup", JSON, bad.to_string(), Some(&token)).await;
        assert_eq!(s, 400, "{bad}");
    }
    let (s, _) = post(&base, "/api/topup", JSON, json!({"amount": 500}).to_string()).await;
    assert_eq!(s, 401);
    let (s, _) = post_auth(&base, "/api/topup", JSON, json!({"amount": 500}).to_string(), Some("forged")).await;
    assert_eq!(s, 401);

    let client = reqwest::Client::new();
    let resp = client.get(format!("{base}/api/me")).bearer_auth(&token).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, json!({"account": "bob@example.jp", "balance": 2000}));
    let resp = client.get(format!("{base}/api/me")).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 401);

    let st = state.stats();
    assert_eq!((st.topups, st.topup_yen), (2, 2000));
    assert_eq!(state.balance("BOB@example.jp"), Some(2000));

    // Stats endpoint reflects the same counters.
    let v: Value = client.get(format!("{base}/__demo/stats")).send().await.expect("send").json().await.expect("json");
    assert_eq!(v["topups"], 2);
    assert_eq!(v["topup_yen"], 2000);
    assert_eq!(v["logins_ok"], 1);
}

#[tokio::test]
async fn password_reset_send_to_elsewhere() {
    let (base, state) = start(0).await;
    let ok = json!({"status": "sent"});
    // Own address: not "elsewhere".
    let r = post(&base, "/api/password-reset", JSON, json!({"email": "alice@example.com"}).to_string()).await;
    assert_eq!(r, (200, ok.clone()));
    let st = state.stats();
    assert_eq!((st.resets, st.reset_links_sent, st.reset_links_elsewhere), (1, 1, 0));
    // 7pay flaw: link sent to an attacker-chosen address.
    let r = post(
        &base,
        "/api/password-reset",
        JSON,
        json!({"email": "alice@example.com", "send_to": "evil@attacker.test"}).to_string(),
    )
    .await;
    assert_eq!(r, (200, ok.clone()));
    let r = post(&base, "/api/password-reset", FORM, "email=bob%40example.jp&send_to=evil%40attacker.test").await;
    assert_eq!(r, (200, ok.clone()));
    // Unknown account: same answer, counted as a reset but nothing sent.
    let r = post(
        &base,
        "/api/password-reset",
        JSON,
        json!({"email": "ghost@example.com", "send_to": "evil@attacker.test"}).to_string(),
    )
    .await;
    assert_eq!(r, (200, ok));
    let st = state.stats();
    assert_eq!((st.resets, st.reset_links_sent, st.reset_links_elsewhere), (4, 3, 2));
    // Malformed.
    let (s, _) = post(&base, "/api/password-reset", JSON, json!({"email": 7}).to_string()).await;
    assert_eq!(s, 400);
    let (s, _) = post(&base, "/api/password-reset", JSON, "{}").await;
    assert_eq!(s, 400);
    assert_eq!(state.stats().resets, 4);
}

#[tokio::test]
async fn password_reset_email_array() {
    let (base, state) = start(0).await;
    // GitLab CVE-2023-7028 pattern: victim + attacker address in one array.
    let r = post(
        &base,
        "/api/password-reset",
        JSON,
        json!({"email": ["Carol@example.com", "evil@attacker.test"]}).to_string(),
    )
    .await;
    assert_eq!(r, (200, json!({"status": "sent"})));
    let st = state.stats();
    assert_eq!((st.resets, st.reset_links_sent, st.reset_links_elsewhere), (1, 2, 1));
    // Same thing form-encoded with a bracketed repeated key.
    let r = post(&base, "/api/password-reset", FORM, "email%5B%5D=dave%40example.jp&email%5B%5D=evil%40attacker.test")
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(state.stats().reset_links_elsewhere, 2);
}

#[tokio::test]
async fn upstream_header_on_404_405_413_and_index() {
    let (base, _state) = start(0).await;
    let client = reqwest::Client::new();
    let resp = client.get(format!("{base}/no/such/path")).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.headers().get("X-Demo-Upstream").map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert_eq!(resp.json::<Value>().await.expect("json"), json!({"error": "not_found"}));

    let resp = client.get(format!("{base}/api/login")).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 405);
    assert!(resp.headers().contains_key(UPSTREAM_HEADER));

    let big = format!("{{\"email\":\"a@b.c\",\"password\":\"{}\"}}", "x".repeat(BODY_LIMIT_BYTES + 10));
    let (s, v) = post(&base, "/api/login", JSON, big).await; // asserts the header too
    assert_eq!((s, v), (413, json!({"error": "payload_too_large"})));

    let resp = client.get(format!("{base}/")).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().contains_key(UPSTREAM_HEADER));
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let html = resp.text().await.expect("text");
    assert!(html.contains("action=\"/api/login\"") && html.contains("stuffgate demo app"));
}

#[test]
fn demo_api_handle_with_blocking_client() {
    let api = DemoApi::spawn("127.0.0.1:0".parse().expect("addr"), DemoState::seeded(5)).expect("spawn");
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!("{}/api/login", api.base_url()))
        .header("content-type", JSON)
        .body(json!({"email": demo_account(4), "password": demo_password(4)}).to_string())
        .send()
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().contains_key(UPSTREAM_HEADER));
    assert_eq!(api.state().stats().logins_ok, 1);
    let addr = api.addr();
    api.shutdown();
    assert!(client.get(format!("http://{addr}/")).send().is_err(), "server stopped");
}

#[test]
fn demo_passwords_are_deterministic_and_varied() {
    assert_eq!(demo_password(42), demo_password(42));
    assert_eq!(demo_account(42), "user00042@example.com");
    let distinct: std::collections::HashSet<String> = (0..1000).map(demo_password).collect();
    assert!(distinct.len() > 990, "{}", distinct.len());
}

#[test]
fn sessions_are_bounded() {
    let mut s = Sessions::default();
    for i in 0..MAX_SESSIONS + 5 {
        s.insert(format!("t{i}"), "a@b.c".to_string());
    }
    assert_eq!(s.by_token.len(), MAX_SESSIONS);
    assert!(!s.by_token.contains_key("t4"));
    assert!(s.by_token.contains_key("t5"));
}

#[test]
fn stored_password_is_salted_hash() {
    let a = User::new("pw");
    let b = User::new("pw");
    assert_ne!(a.hash, b.hash, "per-user salt");
    assert!(a.verify("pw") && !a.verify("pw2"));
}
