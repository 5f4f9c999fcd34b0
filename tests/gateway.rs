//! The gateway in front of the demo login API, end to end: real pingora process, real upstream, real HTTP.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::{client, demo_api, from_upstream, recording_upstream, Gateway, Options};

const ALICE: (&str, &str) = ("alice@example.com", "correct horse battery staple");

fn login_route(defenses: &str) -> String {
    format!(
        "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
         body = {{ account = \"email\", password = \"password\" }}\n{defenses}"
    )
}

#[test]
fn one_address_hammering_gets_429_with_retry_after_once_over_its_limit() {
    let api = demo_api();
    let gateway =
        Gateway::start(&login_route("[[route.defense]]\ntype = \"ip_rate\"\nlimit = 5\nper = \"1m\"\n"), api.addr());
    for _ in 0..5 {
        let response = gateway.login(Some("198.51.100.1"), ALICE.0, ALICE.1);
        assert_eq!(response.status(), 200);
        assert!(from_upstream(&response));
    }
    let blocked = gateway.login(Some("198.51.100.1"), ALICE.0, ALICE.1);
    assert_eq!(blocked.status(), 429);
    assert!(!from_upstream(&blocked), "a blocked login must not reach the app");
    let retry_after: u64 = blocked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry_after), "retry-after {retry_after}");
    let body: serde_json::Value = blocked.json().unwrap();
    assert_eq!(body["error"], "too_many_attempts");
    // Another address is untouched.
    assert_eq!(gateway.login(Some("198.51.100.2"), ALICE.0, ALICE.1).status(), 200);
    let metrics = client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap();
    assert!(metrics.contains(r#"stuffgate_requests_total{route="login",verdict="block"} 1"#), "{metrics}");
}

#[test]
fn failures_for_one_account_spread_over_many_addresses_block_the_account_but_not_its_owner() {
    let api = demo_api();
    let gateway = Gateway::start(
        &login_route(
            "[[route.defense]]\ntype = \"failed_logins\"\nkey = \"account\"\nthreshold = 5\nwindow = \"10m\"\n",
        ),
        api.addr(),
    );
    // The owner logged in from home earlier.
    assert_eq!(gateway.login(Some("192.0.2.10"), ALICE.0, ALICE.1).status(), 200);
    for i in 1..=5 {
        let response = gateway.login(Some(&format!("203.0.113.{i}")), ALICE.0, "wrong-guess");
        assert_eq!(response.status(), 401, "attempt {i} reaches the app and fails");
    }
    let blocked = gateway.login(Some("203.0.113.77"), ALICE.0, ALICE.1);
    assert_eq!(blocked.status(), 429, "the account is blocked from new addresses, even with the right password");
    assert!(!from_upstream(&blocked));
    // Other accounts are unaffected, and the owner at home still gets in (no lockout DoS).
    assert_eq!(gateway.login(Some("203.0.113.77"), "bob@example.jp", "hunter2hunter2").status(), 200);
    assert_eq!(gateway.login(Some("192.0.2.10"), ALICE.0, ALICE.1).status(), 200);
}

#[test]
fn many_failing_accounts_from_one_address_block_that_address() {
    let api = demo_api();
    let gateway = Gateway::start(
        &login_route(
            "[[route.defense]]\ntype = \"distinct_accounts\"\nthreshold = 5\nwindow = \"10m\"\npenalty = \"5m\"\n",
        ),
        api.addr(),
    );
    for i in 0..5 {
        let response = gateway.login(Some("198.51.100.9"), &format!("victim{i}@example.com"), "Password1");
        assert_eq!(response.status(), 401);
    }
    let blocked = gateway.login(Some("198.51.100.9"), ALICE.0, ALICE.1);
    assert_eq!(blocked.status(), 429);
    assert_eq!(gateway.login(Some("198.51.100.10"), ALICE.0, ALICE.1).status(), 200);
    let decision =
        gateway.decisions().into_iter().find(|d| d["verdict"] == "block").expect("a block decision is logged");
    assert_eq!(decision["decided_by"], "distinct_accounts");
    assert_eq!(decision["client_ip"], "198.51.100.9");
}

#[test]
fn observe_mode_forwards_everything_but_logs_what_it_would_have_done() {
    let api = demo_api();
    let gateway = Gateway::start(
        &login_route("[[route.defense]]\ntype = \"ip_rate\"\nlimit = 2\nper = \"1m\"\nmode = \"observe\"\n"),
        api.addr(),
    );
    for _ in 0..5 {
        let response = gateway.login(Some("198.51.100.3"), ALICE.0, ALICE.1);
        assert_eq!(response.status(), 200);
        assert!(from_upstream(&response));
    }
    assert!(gateway.wait_for_log("ip_rate:rate_exceeded:block:observe", Duration::from_secs(5)), "{}", gateway.logs());
    let observed =
        || gateway.decisions().iter().filter(|d| d["reasons"].as_str().unwrap_or("").contains("observe")).count();
    // Log lines are written by a background thread: give the last ones a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while observed() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(observed(), 3);
    assert!(!gateway.logs().contains(ALICE.1), "the password must never be logged");
    assert!(!gateway.logs().contains(ALICE.0), "the account is logged only as a hash");
}

#[test]
fn at_debug_level_no_cookie_token_or_password_reaches_the_log() {
    let api = demo_api();
    let options = Options { log_level: "debug", ..Options::default() };
    let gateway = Gateway::start_with(&login_route(""), api.addr(), options);
    let response = client()
        .post(format!("{}/api/login", gateway.url))
        .header("cookie", "session=cookie-value-never-logged")
        .header("authorization", "Bearer token-value-never-logged")
        .json(&serde_json::json!({ "email": ALICE.0, "password": ALICE.1 }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    // Debug is really on: the gateway's own debug events and pingora's start-up lines (forwarded at debug) show.
    assert!(gateway.wait_for_log("\"level\":\"DEBUG\"", Duration::from_secs(5)), "{}", gateway.logs());
    assert!(gateway.wait_for_log("\"target\":\"pingora\"", Duration::from_secs(5)), "{}", gateway.logs());
    // The log is written in order by a background thread: once a later request's decision line is there, every
    // line about the first request is too.
    gateway.login(None, "marker@example.com", "wrong");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gateway.decisions().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the second decision was never logged:\n{}", gateway.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = gateway.logs();
    // pingora's own debug records print whole request heads; they are never forwarded.
    assert!(!logs.contains("cookie-value-never-logged"), "a cookie reached the log:\n{logs}");
    assert!(!logs.contains("token-value-never-logged"), "a bearer token reached the log:\n{logs}");
    assert!(!logs.contains(ALICE.1), "the password reached the log");
}

#[test]
fn forwarded_for_is_honoured_only_from_a_trusted_peer() {
    let api = demo_api();
    let policy = login_route("[[route.defense]]\ntype = \"ip_rate\"\nlimit = 3\nper = \"1m\"\n");
    let trusting = Gateway::start(&policy, api.addr());
    let untrusting = Gateway::start_with(&policy, api.addr(), Options { trusted_proxies: &[], ..Options::default() });
    for i in 0..4 {
        let ip = format!("198.51.100.{}", 100 + i);
        assert_eq!(
            trusting.login(Some(&ip), ALICE.0, ALICE.1).status(),
            200,
            "distinct clients behind a trusted proxy"
        );
    }
    let statuses: Vec<u16> = (0..4)
        .map(|i| untrusting.login(Some(&format!("198.51.100.{}", 100 + i)), ALICE.0, ALICE.1).status().as_u16())
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429], "a forged header from an untrusted peer changes nothing");
    assert!(untrusting.wait_for_log("\"client_ip\":\"127.0.0.1\"", Duration::from_secs(5)));
}

#[test]
fn malformed_and_oversized_bodies_are_answered_cleanly_and_never_forwarded() {
    let api = demo_api();
    let gateway =
        Gateway::start(&login_route("[[route.defense]]\ntype = \"ip_rate\"\nlimit = 100\nper = \"1m\"\n"), api.addr());
    let post = |body: Vec<u8>, content_type: &str| {
        client()
            .post(format!("{}/api/login", gateway.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    };
    let bad = post(b"{\"email\": ".to_vec(), "application/json");
    assert_eq!(bad.status(), 400);
    assert!(!from_upstream(&bad));
    assert_eq!(bad.json::<serde_json::Value>().unwrap()["error"], "bad_request");
    assert_eq!(post(b"{\"password\":\"x\"}".to_vec(), "application/json").status(), 400, "no account field");
    assert_eq!(post(b"{\"email\":[\"a@x\",\"b@y\"]}".to_vec(), "application/json").status(), 400, "account array");
    assert_eq!(post(b"<login/>".to_vec(), "text/xml").status(), 400);
    let mut huge = b"{\"email\":\"a@b.c\",\"password\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 100 * 1024));
    huge.extend(b"\"}");
    let too_large = post(huge, "application/json");
    assert_eq!(too_large.status(), 413);
    assert!(!from_upstream(&too_large));
    assert_eq!(api.state().stats().logins_ok + api.state().stats().logins_failed, 0, "nothing reached the app");
    // The worker survived all of that.
    assert_eq!(gateway.login(None, ALICE.0, ALICE.1).status(), 200);
    // Form bodies work on the same route.
    let form = post(
        b"email=alice%40example.com&password=correct+horse+battery+staple".to_vec(),
        "application/x-www-form-urlencoded",
    );
    assert_eq!(form.status(), 200);
}

#[test]
fn unprotected_traffic_streams_through_without_a_decision() {
    let api = demo_api();
    let gateway = Gateway::start(&login_route(""), api.addr());
    let page = client().get(format!("{}/", gateway.url)).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(from_upstream(&page));
    assert!(page.text().unwrap().contains("<form"));
    assert!(gateway.decisions().is_empty(), "unprotected requests produce no decision events");
}

#[test]
fn the_app_gets_the_resolved_client_address_and_tags_but_never_forged_gateway_headers() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = Gateway::start(
        &login_route("[[route.defense]]\ntype = \"failed_logins\"\nkey = \"ip\"\nthreshold = 1\nwindow = \"1m\"\naction = \"tag\"\n"),
        upstream,
    );
    let send = || {
        client()
            .post(format!("{}/api/login", gateway.url))
            .header("content-type", "application/json")
            .header("x-forwarded-for", "198.51.100.23")
            .header("X-Stuffgate-Signals", "none, trust me")
            .header("x-stuffgate-client-ip", "1.2.3.4")
            .body(r#"{"email":"a@b.c","password":"p"}"#)
            .send()
            .unwrap()
    };
    let next_post = || heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(send().status(), 401);
    let first = next_post();
    assert!(first.contains("x-stuffgate-client-ip: 198.51.100.23"), "{first}");
    assert!(!first.contains("1.2.3.4") && !first.contains("trust me"), "forged headers must be stripped: {first}");
    // The first failure crossed the threshold: the next request is forwarded with the tag.
    assert_eq!(send().status(), 401);
    let second = next_post();
    assert!(second.contains("x-stuffgate-signals: ip_failures"), "{second}");
}

#[test]
fn a_broken_policy_on_reload_keeps_the_old_one_serving_and_a_good_one_takes_over() {
    let api = demo_api();
    let strict = login_route("[[route.defense]]\ntype = \"ip_rate\"\nlimit = 2\nper = \"1m\"\n");
    let gateway = Gateway::start(&strict, api.addr());
    std::fs::write(&gateway.policy_path, strict.replace("limit = 2", "limit = -2")).unwrap();
    assert!(gateway.wait_for_log("policy reload refused", Duration::from_secs(10)), "{}", gateway.logs());
    let refusal = gateway.logs().lines().find(|l| l.contains("policy reload refused")).unwrap().to_string();
    assert!(refusal.contains("policy.toml") && refusal.contains("\"line\":"), "names file and line: {refusal}");
    let statuses: Vec<u16> =
        (0..3).map(|_| gateway.login(Some("198.51.100.50"), ALICE.0, ALICE.1).status().as_u16()).collect();
    assert_eq!(statuses, vec![200, 200, 429], "the old policy still enforces");

    // Give the new file a different length so the change is seen even within one mtime tick.
    std::fs::write(&gateway.policy_path, strict.replace("limit = 2", "limit = 200")).unwrap();
    assert!(gateway.wait_for_log("policy reloaded", Duration::from_secs(10)), "{}", gateway.logs());
    assert_eq!(gateway.login(Some("198.51.100.50"), ALICE.0, ALICE.1).status(), 200);
}

#[test]
fn sighup_reloads_the_policy_and_unchanged_defenses_keep_their_counts() {
    let api = demo_api();
    let policy = login_route(
        "[[route.defense]]\ntype = \"ip_rate\"\nlimit = 3\nper = \"1m\"\n\
         [[route.defense]]\ntype = \"account_ip_rate\"\nlimit = 100\nper = \"1m\"\n",
    );
    let gateway = Gateway::start_with(&policy, api.addr(), Options { watch_interval_secs: 0, ..Options::default() });
    for _ in 0..3 {
        assert_eq!(gateway.login(Some("198.51.100.60"), ALICE.0, ALICE.1).status(), 200);
    }
    // Only the second defense changes: the address's spent budget in the first must survive the reload.
    std::fs::write(&gateway.policy_path, policy.replace("limit = 100", "limit = 99")).unwrap();
    gateway.hangup();
    assert!(gateway.wait_for_log("policy reloaded", Duration::from_secs(10)), "{}", gateway.logs());
    assert_eq!(gateway.login(Some("198.51.100.60"), ALICE.0, ALICE.1).status(), 429);
    let policy_view: serde_json::Value =
        client().get(format!("{}/policy", gateway.admin)).send().unwrap().json().unwrap();
    assert_eq!(policy_view["routes"][0]["defenses"].as_array().unwrap().len(), 2);
}

#[test]
fn other_spellings_of_a_protected_path_are_protected_too() {
    let api = demo_api();
    let gateway =
        Gateway::start(&login_route("[[route.defense]]\ntype = \"ip_rate\"\nlimit = 1\nper = \"1m\"\n"), api.addr());
    assert_eq!(gateway.login(Some("198.51.100.70"), ALICE.0, ALICE.1).status(), 200);
    for spelling in ["/API/login", "/api//login", "/api/login/", "/api/%6cogin"] {
        let response = client()
            .post(format!("{}{spelling}", gateway.url))
            .header("content-type", "application/json")
            .header("x-forwarded-for", "198.51.100.70")
            .body(r#"{"email":"alice@example.com","password":"x"}"#)
            .send()
            .unwrap();
        assert_eq!(response.status(), 429, "{spelling} must not slip past the login route's limit");
    }
}

#[test]
fn metrics_counted_on_several_worker_threads_add_up_at_scrape_time() {
    // Each worker thread counts into its own shards (`telemetry/sharded.rs`); a scrape adds them up. A new
    // connection per login lets the kernel spread them over the four threads' listeners.
    let api = demo_api();
    let gateway = Gateway::start_with(&login_route(""), api.addr(), Options { threads: 4, ..Options::default() });
    for _ in 0..30 {
        assert_eq!(gateway.login(Some("8.8.8.8"), ALICE.0, ALICE.1).status(), 200);
    }
    for _ in 0..10 {
        assert_eq!(gateway.login(Some("8.8.8.8"), ALICE.0, "wrong-guess").status(), 401);
    }
    let metrics = client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap();
    for series in [
        r#"stuffgate_requests_total{route="login",verdict="allow"} 40"#,
        r#"stuffgate_requests_total{route="login",verdict="block"} 0"#,
        r#"stuffgate_upstream_outcomes_total{route="login",outcome="success"} 30"#,
        r#"stuffgate_upstream_outcomes_total{route="login",outcome="failure"} 10"#,
        r#"stuffgate_decision_seconds_count{route="login"} 40"#,
        r#"stuffgate_decision_seconds_bucket{route="login",le="+Inf"} 40"#,
        r#"stuffgate_requests_by_country_total{route="login",country="US",verdict="allow"} 40"#,
    ] {
        assert!(metrics.lines().any(|line| line == series), "{series} missing from\n{metrics}");
    }
}

/// A route whose body field is misspelt (`emial`): every login lacks it.
fn misspelt_route(mode: &str) -> String {
    format!(
        "[defaults]\nmode = \"{mode}\"\non_bad_body = \"reject\"\n\
         [[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
         body = {{ account = \"emial\", password = \"password\" }}\n\
         [[route.defense]]\ntype = \"ip_rate\"\nlimit = 100\nper = \"1m\"\n"
    )
}

fn scrape(gateway: &Gateway) -> String {
    client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap()
}

#[test]
fn observe_mode_forwards_a_login_whose_field_is_missing_and_counts_and_logs_it() {
    let api = demo_api();
    let gateway = Gateway::start(&misspelt_route("observe"), api.addr());
    let response = gateway.login(Some("198.51.100.60"), ALICE.0, ALICE.1);
    assert_eq!(response.status(), 200, "observe mode refuses nothing: the login reaches the app");
    assert!(from_upstream(&response));
    let counted = r#"stuffgate_body_problems_total{handling="forwarded",problem="no_account_field",route="login"} 1"#;
    assert!(scrape(&gateway).contains(counted), "{}", scrape(&gateway));
    assert!(gateway.wait_for_log("body:no_account_field:forward", Duration::from_secs(5)), "{}", gateway.logs());
    assert!(
        gateway.logs().contains("emial") && gateway.logs().contains("misspelling of `email`"),
        "{}",
        gateway.logs()
    );

    // Enforced, the same mistake is refused, and counted as refused.
    let enforced = Gateway::start(&misspelt_route("enforce"), api.addr());
    let response = enforced.login(Some("198.51.100.61"), ALICE.0, ALICE.1);
    assert_eq!(response.status(), 400);
    assert!(!from_upstream(&response));
    let counted = r#"stuffgate_body_problems_total{handling="refused",problem="no_account_field",route="login"} 1"#;
    assert!(scrape(&enforced).contains(counted), "{}", scrape(&enforced));
}
