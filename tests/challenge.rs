//! Challenges and device tokens end to end: a real gateway process in front of the demo API (or a recording
//! upstream that keeps every byte it is sent), the JSON protocol and the browser page's sealed re-submit.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{client, demo_api, from_upstream, Gateway, Options, SHIPPED_DATA};
use stuffgate::challenge::token::solve;

/// A breached password ("password1" is in the shipped common-password filter) on an account that has it.
const EVE: (&str, &str) = ("eve@example.com", "password1");

fn policy(new_device: &str) -> String {
    format!(
        "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
         body = {{ account = \"email\", password = \"password\" }}\n\n\
         [[route.defense]]\ntype = \"breached_password\"\naction = \"tag\"\n\n\
         [[route.defense]]\ntype = \"new_device\"\nwhen = [\"breached_password\"]\n{new_device}"
    )
}

/// The demo API with Eve signed up (straight to the API: the gateway guards logins only here).
fn api_with_eve() -> stuffgate::demo_api::DemoApi {
    let api = demo_api();
    let created = client()
        .post(format!("{}/api/signup", api.base_url()))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "email": EVE.0, "password": EVE.1 }).to_string())
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    api
}

fn login(
    gateway: &Gateway,
    from: &str,
    email: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut request = client()
        .post(format!("{}/api/login", gateway.url))
        .header("content-type", "application/json")
        .header("x-forwarded-for", from)
        .body(serde_json::json!({ "email": email, "password": password }).to_string());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().unwrap()
}

/// The challenge of a 428 JSON answer: (token, bits).
fn challenge_of(response: reqwest::blocking::Response) -> (String, u8) {
    assert_eq!(response.status(), 428);
    assert!(!from_upstream(&response), "a challenge is the gateway's answer");
    assert_eq!(response.headers()["x-stuffgate-decision"], "challenge");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"], "challenge_required");
    assert_eq!(body["challenge"]["expires_in"], 120);
    let token = body["challenge"]["token"].as_str().unwrap().to_string();
    (token, body["challenge"]["bits"].as_u64().unwrap() as u8)
}

fn solution(token: &str, bits: u8) -> String {
    format!("{token}:{}", solve(token, bits))
}

fn metric(gateway: &Gateway, line: &str) -> bool {
    let text = client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap();
    text.lines().any(|l| l == line)
}

#[test]
fn the_json_protocol_end_to_end_and_a_solution_is_single_use() {
    let api = api_with_eve();
    let gateway = Gateway::start(&policy(""), api.addr());
    // Not risky: forwarded as ever.
    let plain = login(&gateway, "198.51.100.1", "alice@example.com", "correct horse battery staple", &[]);
    assert_eq!(plain.status(), 200);
    assert!(from_upstream(&plain));

    let (token, bits) = challenge_of(login(&gateway, "198.51.100.1", EVE.0, EVE.1, &[]));
    assert_eq!(bits, 16);
    assert_eq!(api.state().stats().logins_ok, 1, "the challenged login never reached the app");
    let solved = solution(&token, bits);
    let passed = login(&gateway, "198.51.100.1", EVE.0, EVE.1, &[("x-stuffgate-solution", &solved)]);
    assert_eq!(passed.status(), 200);
    assert!(from_upstream(&passed));
    assert!(passed.headers().contains_key("x-stuffgate-device-token"));
    let cookie = passed.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("sg_dev=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure");

    // The same solution again (from another address, even): refused, with a fresh challenge.
    let again = login(&gateway, "198.51.100.2", EVE.0, EVE.1, &[("x-stuffgate-solution", &solved)]);
    let (fresh, _) = challenge_of(again);
    assert_ne!(fresh, token);
    // A wrong nonce, a token of another account, a tampered token: each a fresh challenge.
    let wrong = format!("{fresh}:{}", solve(&fresh, bits) + 1);
    let wrong_nonce = login(&gateway, "198.51.100.1", EVE.0, EVE.1, &[("x-stuffgate-solution", &wrong)]);
    assert_eq!(wrong_nonce.status(), 428, "a nonce off by one is no solution (it could be one by chance: 2^-16)");
    let for_eve = solution(&fresh, bits);
    let other = login(&gateway, "198.51.100.1", "mallory@example.com", EVE.1, &[("x-stuffgate-solution", &for_eve)]);
    assert_eq!(other.status(), 428, "a challenge is bound to its account");
    let mut tampered = fresh.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}:0", String::from_utf8(tampered).unwrap());
    assert_eq!(login(&gateway, "198.51.100.1", EVE.0, EVE.1, &[("x-stuffgate-solution", &tampered)]).status(), 428);
    // The untouched solution of the fresh token still works once.
    let passed = login(&gateway, "198.51.100.3", EVE.0, EVE.1, &[("x-stuffgate-solution", &for_eve)]);
    assert_eq!(passed.status(), 200);

    assert!(metric(&gateway, r#"stuffgate_challenges_total{result="passed",route="login"} 2"#));
    assert!(metric(&gateway, r#"stuffgate_challenges_total{result="failed",route="login"} 4"#));
    assert!(metric(&gateway, r#"stuffgate_challenges_total{result="issued",route="login"} 5"#));
    assert!(metric(&gateway, r#"stuffgate_challenge_solve_seconds_count{path="pow",route="login"} 2"#));
    assert!(!gateway.logs().contains(EVE.1), "no password in the log");
}

#[test]
fn a_device_becomes_known_only_after_an_upstream_success_and_is_not_challenged_next_time() {
    let api = api_with_eve();
    let gateway = Gateway::start(&policy(""), api.addr());
    // A solved challenge whose password is wrong (and breached): forwarded, fails, and earns no device token.
    let (token, bits) = challenge_of(login(&gateway, "203.0.113.5", EVE.0, "123456", &[]));
    let failed = login(&gateway, "203.0.113.5", EVE.0, "123456", &[("x-stuffgate-solution", &solution(&token, bits))]);
    assert_eq!(failed.status(), 401);
    assert!(!failed.headers().contains_key("x-stuffgate-device-token") && !failed.headers().contains_key("set-cookie"));

    let (token, bits) = challenge_of(login(&gateway, "203.0.113.5", EVE.0, EVE.1, &[]));
    let ok = login(&gateway, "203.0.113.5", EVE.0, EVE.1, &[("x-stuffgate-solution", &solution(&token, bits))]);
    assert_eq!(ok.status(), 200);
    let device = ok.headers()["x-stuffgate-device-token"].to_str().unwrap().to_string();
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(!device.contains(EVE.1) && !cookie.contains(EVE.1));

    // Known now: the same risky login goes straight through, by header or by cookie, from another address too.
    for (name, value) in [("x-stuffgate-device", device.as_str()), ("cookie", cookie.as_str())] {
        let known = login(&gateway, "192.0.2.77", EVE.0, EVE.1, &[(name, value)]);
        assert_eq!(known.status(), 200, "{name}");
        assert!(from_upstream(&known));
        assert!(known.headers().contains_key("x-stuffgate-device-token"), "renewed on each success");
    }
    // Known for Eve only: another account's risky login from this device is challenged.
    let mallory = login(&gateway, "192.0.2.77", "mallory@example.com", EVE.1, &[("x-stuffgate-device", &device)]);
    assert_eq!(mallory.status(), 428);
    // A forged device token is no device.
    let mut forged = device.clone().into_bytes();
    forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(login(&gateway, "192.0.2.77", EVE.0, EVE.1, &[("x-stuffgate-device", &forged)]).status(), 428);
}

#[test]
fn observe_mode_counts_the_challenge_without_sending_it() {
    let api = api_with_eve();
    let gateway = Gateway::start(&policy("mode = \"observe\"\n"), api.addr());
    let response = login(&gateway, "198.51.100.20", EVE.0, EVE.1, &[]);
    assert_eq!(response.status(), 200);
    assert!(from_upstream(&response));
    assert!(
        gateway.wait_for_log("new_device:new_device:challenge:observe", Duration::from_secs(5)),
        "{}",
        gateway.logs()
    );
    assert!(metric(
        &gateway,
        r#"stuffgate_defense_findings_total{action="challenge",defense="new_device",mode="observe",route="login"} 1"#
    ));
}

/// An upstream that keeps each request's head and body, and answers 200.
fn recording_app() -> (SocketAddr, Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut seen = Vec::new();
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
                let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                if seen.len() >= end + 4 + length {
                    if head.starts_with("post") {
                        let _ = sender.send((head, seen[end + 4..end + 4 + length].to_vec()));
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 7\r\nx-demo-upstream: 1\r\nconnection: close\r\n\r\nwelcome";
                    let _ = stream.write_all(answer.as_bytes());
                    break;
                }
            }
        }
    });
    (address, receiver)
}

/// The value of a hidden field in the challenge page.
fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("{name} in {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

#[test]
fn a_browser_style_sealed_resubmit_reaches_the_app_byte_identical_and_nothing_of_ours_does() {
    let (app, requests) = recording_app();
    let gateway = Gateway::start(&policy(""), app);
    // A form body with everything a naive re-post breaks: '+', '%2B', '&' and '=' inside values, quotes, and a
    // field named `submit`.
    let original_form = "email=Eve%40Example.com&password=password1&note=a+b%2Bc%26d%3De&quote=%22x%22&submit=Sign+in";
    let json_body = r#"{"email":"eve@example.com","password":"password1","remember":true}"#;
    for (content_type, original) in
        [("application/x-www-form-urlencoded", original_form), ("application/json", json_body)]
    {
        let page = client()
            .post(format!("{}/api/login?next=%2Fhome", gateway.url))
            .header("content-type", content_type)
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("x-forwarded-for", "198.51.100.40")
            .body(original)
            .send()
            .unwrap();
        assert_eq!(page.status(), 428);
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert_eq!(page.headers()["x-stuffgate-decision"], "challenge");
        let page = page.text().unwrap();
        assert!(
            !page.contains("password1") && !page.contains("Eve%40Example"),
            "nothing readable of the login in the page"
        );
        assert!(page.contains("action=\"/api/login?next=%2Fhome\""));
        assert!(page.contains("role=\"status\"") && page.contains("<noscript>"));
        let token = field(&page, "_sg_c");
        let sealed = field(&page, "_sg_s");
        let bits = 16;
        let nonce = solve(&token, bits).to_string();
        let signals = r#"{"ua":"Mozilla/5.0 (X11; Linux x86_64) Chrome/156","tz":"Asia/Tokyo","sw":1280,"sh":800,"wd":false,"ms":300}"#;
        let resubmit = form(&[("_sg_c", &token), ("_sg_n", &nonce), ("_sg_s", &sealed), ("_sg_f", signals)]);
        let answer = client()
            .post(format!("{}/api/login?next=%2Fhome", gateway.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .header("x-forwarded-for", "198.51.100.40")
            .body(resubmit.clone())
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", gateway.logs());
        assert!(answer.headers().contains_key("set-cookie"));
        assert_eq!(answer.text().unwrap(), "welcome");
        let (head, body) = requests.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(body, original.as_bytes(), "the app gets the original body, byte for byte; head {head}");
        assert!(head.contains(&format!("content-length: {}", original.len())), "{head}");
        assert!(head.contains(&format!("content-type: {content_type}")), "{head}");
        assert!(head.starts_with("post /api/login?next=%2fhome "), "{head}");
        assert!(head.contains("x-stuffgate-signals: breached_password,new_device"), "{head}");
        assert!(!head.contains("x-stuffgate-solution") && !head.contains("_sg_"), "{head}");
        assert!(!String::from_utf8_lossy(&body).contains("_sg_"));

        // The same re-submit again: single use, a fresh page, nothing forwarded.
        let replay = client()
            .post(format!("{}/api/login", gateway.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .body(resubmit.clone())
            .send()
            .unwrap();
        assert_eq!(replay.status(), 400, "a spent sealed login is refused, not sealed again into a fresh page");
        // A sealed body that was changed is refused outright.
        let mut broken = sealed.clone().into_bytes();
        broken[40] = if broken[40] == b'A' { b'B' } else { b'A' };
        let broken = form(&[("_sg_c", &token), ("_sg_n", &nonce), ("_sg_s", &String::from_utf8(broken).unwrap())]);
        let refused = client()
            .post(format!("{}/api/login", gateway.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(broken)
            .send()
            .unwrap();
        assert_eq!(refused.status(), 400);
    }
    assert!(requests.try_recv().is_err(), "nothing else reached the app");
    assert!(gateway.wait_for_log("\"device_signals\":\"", Duration::from_secs(5)), "signals logged as a keyed hash");
    assert!(gateway.wait_for_log("\"solution\":\"passed\"", Duration::from_secs(5)));
    let logs = gateway.logs();
    assert!(!logs.contains("password1"), "no password in the log");
    assert!(!logs.contains("Asia/Tokyo") && !logs.contains("Chrome/156"), "no raw device signal in the log");
}

#[test]
fn without_javascript_the_page_continues_after_the_wait() {
    std::env::set_var("STUFFGATE_TEST_CHALLENGE_KEY", "k".repeat(32));
    let (app, requests) = recording_app();
    let extra = format!(
        "{SHIPPED_DATA}[challenge]\nsecrets_env = [\"STUFFGATE_TEST_CHALLENGE_KEY\"]\nnoscript_wait_secs = 1\n"
    );
    let gateway = Gateway::start_with(&policy(""), app, Options { extra_config: &extra, ..Options::default() });
    let original = "email=eve%40example.com&password=password1";
    let page = client()
        .post(format!("{}/api/login", gateway.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(original)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("wait 1 seconds"), "{page}");
    let continue_form =
        form(&[("_sg_c", &field(&page, "_sg_c")), ("_sg_n", ""), ("_sg_s", &field(&page, "_sg_s")), ("_sg_f", "")]);
    let post = || {
        client()
            .post(format!("{}/api/login", gateway.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .body(continue_form.clone())
            .send()
            .unwrap()
    };
    assert_eq!(post().status(), 400, "too early: refused, and the challenge is not spent");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(post().status(), 200);
    let (_, body) = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(body, original.as_bytes());
    assert!(metric(&gateway, r#"stuffgate_challenge_solve_seconds_count{path="noscript",route="login"} 1"#));
}

#[test]
fn the_python_client_of_the_protocol_doc_passes_a_challenge_and_keeps_its_device_token() {
    let doc = std::fs::read_to_string(common::shipped("docs/challenge-protocol.md")).unwrap();
    let example = doc.split("## 4.").nth(1).expect("the doc's example section");
    let script = example.split("```python\n").nth(1).and_then(|rest| rest.split("```").next()).expect("its Python");
    let api = api_with_eve();
    let gateway = Gateway::start(&policy(""), api.addr());
    assert!(script.contains("http://127.0.0.1:8080/api/login"), "{script}");
    let script = script.replace("http://127.0.0.1:8080", &gateway.url);
    let output = match std::process::Command::new("python3").arg("-c").arg(&script).output() {
        Ok(output) => output,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true but python3 cannot run: {e}"),
        Err(_) => {
            eprintln!("skipping: python3 is not installed");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    // It prints the final status and the device token the gateway handed out.
    let (status, device) = stdout.trim().split_once(' ').unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(status, "200", "{stdout}");
    assert!(device != "None" && device.len() > 20, "{stdout}");
    // The token it printed is the real thing: the next login with it is not challenged.
    let again = login(&gateway, "198.51.100.90", EVE.0, EVE.1, &[("x-stuffgate-device", device)]);
    assert_eq!(again.status(), 200);
    assert!(from_upstream(&again));
}

// ---------------------------------------------------------------------------------------------------------------
// The work cannot be skipped, and a sealed login cannot be replayed.

/// A gateway with a configured challenge key, a 1 s no-JavaScript wait and challenges that live `ttl_secs`.
fn quick_gateway(upstream: SocketAddr, ttl_secs: u64) -> Gateway {
    std::env::set_var("STUFFGATE_TEST_QUICK_KEY", "q".repeat(32));
    let extra = format!(
        "{SHIPPED_DATA}[challenge]\nsecrets_env = [\"STUFFGATE_TEST_QUICK_KEY\"]\nnoscript_wait_secs = 1\nttl_secs = {ttl_secs}\n"
    );
    Gateway::start_with(&policy(""), upstream, Options { extra_config: &extra, ..Options::default() })
}

/// The challenge page for a form login by `email` from `from`: (token, sealed body).
fn page_for(gateway: &Gateway, from: &str, email: &str) -> (String, String) {
    let page = client()
        .post(format!("{}/api/login", gateway.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .header("x-forwarded-for", from)
        .body(form(&[("email", email), ("password", EVE.1)]))
        .send()
        .unwrap();
    assert_eq!(page.status(), 428);
    let page = page.text().unwrap();
    (field(&page, "_sg_c"), field(&page, "_sg_s"))
}

/// The page's re-submit: its fields as a form.
fn resubmit(gateway: &Gateway, from: &str, fields: &[(&str, &str)]) -> reqwest::blocking::Response {
    client()
        .post(format!("{}/api/login", gateway.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .header("x-forwarded-for", from)
        .body(form(fields))
        .send()
        .unwrap()
}

const SIGNALS: &str = r#"{"ua":"Mozilla/5.0 (X11; Linux x86_64) Chrome/156","sw":1280,"sh":800,"wd":false}"#;

/// The probe's command: `c=$(login c10 …); sleep 5.2; curl … -H "X-Stuffgate-Solution: $TOKEN:" …/api/login` (an
/// empty nonce, after the no-JavaScript wait) was `200` and a device token, with no work done.
#[test]
fn an_api_client_must_present_the_work_the_wait_is_only_the_pages() {
    let (app, requests) = recording_app();
    let gateway = quick_gateway(app, 120);
    let (token, bits) = challenge_of(login(&gateway, "198.51.100.50", EVE.0, EVE.1, &[]));
    // Waited for, as the page's "Continue" would be.
    std::thread::sleep(Duration::from_millis(1100));
    let skipped = login(&gateway, "198.51.100.50", EVE.0, EVE.1, &[("x-stuffgate-solution", &format!("{token}:"))]);
    assert_eq!(skipped.status(), 428, "an empty nonce in the header is no solution");
    assert!(requests.try_recv().is_err(), "nothing reached the app");
    // The work itself still passes.
    let (token, _) = challenge_of(skipped);
    let passed = login(&gateway, "198.51.100.50", EVE.0, EVE.1, &[("x-stuffgate-solution", &solution(&token, bits))]);
    assert_eq!(passed.status(), 200);
}

/// The time lock costs no CPU: a bot waiting on many connections would pass as many challenges as it holds. It is
/// admitted a few times an hour per address and per account.
#[test]
fn the_no_javascript_path_is_limited_per_account_and_per_address() {
    let (app, requests) = recording_app();
    let gateway = quick_gateway(app, 120);
    let continue_from = |from: &str, email: &str, pages: &[(String, String)]| -> Vec<u16> {
        pages
            .iter()
            .map(|(token, sealed)| {
                resubmit(&gateway, from, &[("_sg_c", token), ("_sg_n", ""), ("_sg_s", sealed), ("_sg_f", "")])
                    .status()
                    .as_u16()
            })
            .inspect(|_| assert!(!email.is_empty()))
            .collect()
    };
    // One account, four addresses.
    let pages: Vec<_> = (1..=4).map(|i| page_for(&gateway, &format!("198.51.100.{}", 60 + i), EVE.0)).collect();
    std::thread::sleep(Duration::from_millis(1100));
    let statuses: Vec<u16> = pages
        .iter()
        .enumerate()
        .map(|(i, page)| continue_from(&format!("198.51.100.{}", 60 + i + 1), EVE.0, std::slice::from_ref(page))[0])
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 400], "the fourth pass for one account within the hour is refused");
    // One address, four accounts.
    let accounts = ["c1@example.com", "c2@example.com", "c3@example.com", "c4@example.com"];
    let pages: Vec<_> = accounts.iter().map(|email| page_for(&gateway, "203.0.113.9", email)).collect();
    std::thread::sleep(Duration::from_millis(1100));
    let statuses = continue_from("203.0.113.9", "any", &pages);
    assert_eq!(statuses, vec![200, 200, 200, 400], "the fourth pass from one address within the hour is refused");
    assert_eq!(requests.try_iter().count(), 6);
    assert!(gateway.wait_for_log("\"solution\":\"throttled\"", Duration::from_secs(5)));
}

/// The probe's `t_env.py`: the same c04 envelope again from 203.0.113.50, and c06's never-used envelope posted after
/// its challenge expired, were each answered with a page that sealed the login again: solved, `200` and a new
/// device token.
#[test]
fn a_sealed_resubmit_is_single_use_and_dies_with_its_challenge() {
    let (app, requests) = recording_app();
    // Long enough for a debug-build solve on a busy machine (4 s at least: expiry counts whole seconds).
    let gateway = quick_gateway(app, 5);
    let (token, sealed) = page_for(&gateway, "198.51.100.70", EVE.0);
    let nonce = solve(&token, 16).to_string();
    let fields = [("_sg_c", token.as_str()), ("_sg_n", &nonce), ("_sg_s", &sealed), ("_sg_f", SIGNALS)];
    assert_eq!(resubmit(&gateway, "198.51.100.70", &fields).status(), 200);
    let replay = resubmit(&gateway, "203.0.113.50", &fields);
    assert_eq!(replay.status(), 400, "spent: refused, not sealed into a fresh page");
    assert!(!replay.text().unwrap().contains("_sg_s"));
    // Never used, but expired.
    let (token, sealed) = page_for(&gateway, "198.51.100.71", EVE.0);
    let nonce = solve(&token, 16).to_string();
    std::thread::sleep(Duration::from_millis(5100));
    let late = resubmit(
        &gateway,
        "198.51.100.71",
        &[("_sg_c", &token), ("_sg_n", &nonce), ("_sg_s", &sealed), ("_sg_f", SIGNALS)],
    );
    assert_eq!(late.status(), 400, "expired: refused");
    // Unsolved.
    let (token, sealed) = page_for(&gateway, "198.51.100.72", EVE.0);
    let wrong = (solve(&token, 16) + 1).to_string();
    let unsolved = resubmit(
        &gateway,
        "198.51.100.72",
        &[("_sg_c", &token), ("_sg_n", &wrong), ("_sg_s", &sealed), ("_sg_f", SIGNALS)],
    );
    assert_eq!(unsolved.status(), 400);
    assert_eq!(requests.try_iter().count(), 1, "only the first, valid re-submit reached the app");
    let refused = || gateway.decisions().iter().filter(|d| d["reasons"] == "body:sealed_login_unusable").count();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while refused() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(refused(), 3, "{:?}", gateway.decisions().iter().map(|d| d["reasons"].clone()).collect::<Vec<_>>());
}

/// The probe: a re-submit with `_sg_f=` (empty) and a solved nonce got `200`, where `_sg_f={}` raised the
/// difficulty. The page's script always sends its signals with a nonce: leaving them out is a tell.
#[test]
fn a_solved_page_without_its_signals_counts_as_an_automation_tell() {
    let (app, requests) = recording_app();
    let gateway = quick_gateway(app, 120);
    let (token, sealed) = page_for(&gateway, "198.51.100.80", EVE.0);
    let nonce = solve(&token, 16).to_string();
    let answer =
        resubmit(&gateway, "198.51.100.80", &[("_sg_c", &token), ("_sg_n", &nonce), ("_sg_s", &sealed), ("_sg_f", "")]);
    assert_eq!(answer.status(), 428, "a harder round follows");
    let page = answer.text().unwrap();
    assert!(page.contains("\"bits\":17"), "{page}");
    assert!(requests.try_recv().is_err());
}

/// The probe: `curl --path-as-is -H 'Accept: text/html' … '127.0.0.1:28080//attacker.example/..%2fapi/login'`
/// matched the login route and the page's form posted to `//attacker.example/..%2fapi/login`, which a browser
/// resolves to another host (it would receive the solved token and the sealed login).
#[test]
fn the_page_posts_back_to_the_routes_own_path_never_to_another_host() {
    use std::io::{Read, Write};
    let (app, _requests) = recording_app();
    let gateway = Gateway::start(&policy(""), app);
    let to: SocketAddr = gateway.url.trim_start_matches("http://").parse().unwrap();
    let body = "email=eve%40example.com&password=password1";
    for path in [
        "//attacker.example/..%2fapi/login",
        "/\\attacker.example/../api/login",
        "//attacker.example/%2e%2e/api/login?next=%2F",
    ] {
        let mut stream = std::net::TcpStream::connect(to).unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut page = String::new();
        stream.read_to_string(&mut page).unwrap();
        assert!(page.starts_with("HTTP/1.1 428"), "{path}: {page}");
        let action = page.split("action=\"").nth(1).unwrap().split('"').next().unwrap();
        let expected = if path.contains('?') { "/api/login?next=%2F" } else { "/api/login" };
        assert_eq!(action, expected, "{path}");
    }
}
