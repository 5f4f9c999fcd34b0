//! Requests that the gateway and the app behind it could read differently: two `Content-Type` lines, a body that is
//! two types at once, field names frameworks fold together, credentials in the query string, a body on a method the
//! route does not declare. Each is refused on a protected route (400, with the reason in the decision log) and never
//! reaches the app. A real Flask app where the framework's own parser is the point (Debian's `python3-flask`); small
//! upstreams here that follow the documented rules of Go's `encoding/json`, PHP's `$_POST` and servlet
//! `getParameter` for the others.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::{free_port, shipped, Gateway};

const VICTIM: &str = "victim@example.com";
const RIGHT: &str = "Tr0ub4dor&3";

fn address(gateway: &Gateway) -> SocketAddr {
    gateway.url.trim_start_matches("http://").parse().unwrap()
}

/// Send raw request bytes (the request says `Connection: close`); the answer's status and whole text.
fn send(to: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(to).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A request with the given method, target, extra header lines (each ending in CRLF) and body.
fn request(method: &str, target: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The decision log's reasons for the requests decided so far.
fn reasons(gateway: &Gateway) -> Vec<String> {
    gateway.decisions().iter().map(|d| d["reasons"].as_str().unwrap_or("").to_string()).collect()
}

/// Wait (bounded) until `count` decisions are logged: the event is written after the answer.
fn wait_decisions(gateway: &Gateway, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.decisions().len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A real Flask app.

struct Flask {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Flask {
    /// What the app logged: one line per login it handled (content type, account, status).
    fn handled(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

const FLASK_APP: &str = r#"
import sys
from flask import Flask, request, jsonify
app = Flask(__name__)
USERS = {"victim@example.com": "Tr0ub4dor&3"}
LOG = open(sys.argv[2], "a", buffering=1)

@app.route("/api/login", methods=["POST"])
def login():
    data = request.get_json(silent=True) if request.is_json else request.form
    account, password = (data or {}).get("email"), (data or {}).get("password")
    ok = USERS.get(account) == password
    LOG.write(f"content_type={request.content_type!r} account={account!r} -> {200 if ok else 401}\n")
    return jsonify(ok=ok), (200 if ok else 401)

app.run(host="127.0.0.1", port=int(sys.argv[1]))
"#;

/// Flask on werkzeug's server, on a free port; `None` (skip) when python3-flask is missing, unless `CI=true`.
fn flask() -> Option<Flask> {
    let found = Command::new("python3").args(["-c", "import flask"]).stderr(Stdio::null()).status();
    if !found.is_ok_and(|s| s.success()) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "python3-flask is required with CI=true");
        eprintln!("skipped: python3-flask is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (script, log) = (dir.path().join("app.py"), dir.path().join("handled.log"));
    std::fs::write(&script, FLASK_APP).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let flask = Flask { child, port, log, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "Flask did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(flask)
}

/// The probe's command against Flask 3.1 behind the default policy, one new address per guess:
///
/// ```text
/// for i in $(seq 1 25); do curl -H 'content-type: application/x-www-form-urlencoded' \
///   -H 'content-type: application/json' -H "X-Forwarded-For: 198.18.8.$i" \
///   --data-binary '{"a":"&email=decoy'$i'%40example.org&password=d&y=","email":"victim@example.com","password":"guess-'$i'"}' \
///   127.0.0.1:28096/api/login; done
/// ```
///
/// The gateway read the first line (a form: `email=decoyN`), Flask the last (JSON: the victim): `401×24, 200`, every
/// account-keyed limit counting decoys. Now each is refused before it reaches the app.
#[test]
fn two_content_types_and_a_polyglot_body_never_reach_flask() {
    let Some(flask) = flask() else { return };
    let policy = std::fs::read_to_string(shipped("policies/default.toml")).unwrap();
    let gateway = Gateway::start(&policy, format!("127.0.0.1:{}", flask.port).parse().unwrap());
    let to = address(&gateway);
    let mut statuses = Vec::new();
    for i in 1..=25 {
        let guess = if i == 25 { RIGHT.to_string() } else { format!("guess-{i}") };
        let body = format!(
            r#"{{"a":"&email=decoy{i}%40example.org&password=Zq8-decoy-{i}&y=","email":"{VICTIM}","password":"{guess}"}}"#
        );
        let headers = format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Type: application/json\r\n\
             X-Forwarded-For: 198.18.8.{i}\r\n"
        );
        statuses.push(send(to, &request("POST", "/api/login", &headers, &body)).0);
    }
    assert_eq!(statuses, vec![400; 25], "every two-type request is refused");
    // The same body under one form type is a polyglot: it is not exactly the type it declares.
    let body = format!(r#"{{"a":"&email=decoy%40example.org&password=d&y=","email":"{VICTIM}","password":"{RIGHT}"}}"#);
    let headers = "Content-Type: application/x-www-form-urlencoded\r\nX-Forwarded-For: 198.18.8.99\r\n";
    assert_eq!(send(to, &request("POST", "/api/login", headers, &body)).0, 400);
    wait_decisions(&gateway, 26);
    let reasons = reasons(&gateway);
    assert_eq!(reasons.iter().filter(|r| *r == "body:repeated_body_header").count(), 25, "{reasons:?}");
    assert!(reasons.contains(&"body:body_not_declared_type".to_string()), "{reasons:?}");
    assert!(flask.handled().is_empty(), "Flask never saw them: {:?}", flask.handled());
    // The app is there: a plain login goes through and Flask reads it.
    let plain = format!(r#"{{"email":"{VICTIM}","password":"{RIGHT}"}}"#);
    let headers = "Content-Type: application/json\r\nX-Forwarded-For: 198.18.9.1\r\n";
    assert_eq!(send(to, &request("POST", "/api/login", headers, &plain)).0, 200);
    assert_eq!(flask.handled(), vec![format!("content_type='application/json' account='{VICTIM}' -> 200")]);
}

// ---------------------------------------------------------------------------------------------------------------
// Upstreams that read parameters the way other frameworks document.

/// How the upstream reads the login, picked per request by an `x-emu` header.
/// - `go`: JSON keys matched case-insensitively, the later key winning (Go's `encoding/json`; ASP.NET Core's
///   web defaults fold case too); any method, as with `http.HandleFunc`.
/// - `php`: `$_POST` — leading spaces dropped from names, ` `, `.` and `[` read as `_`, the later field winning.
/// - `servlet`: `getParameter` — the query string's parameters before the body's, the first winning.
///
/// Each request it handles is sent on the channel as `(method, account it read)`; it answers 200 when that account
/// and password are the victim's, else 401.
fn emulated_app() -> (SocketAddr, Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((head, body)) = read_request(&mut stream) else { continue };
            let mut lines = head.lines();
            let mut start = lines.next().unwrap_or("").split(' ');
            let (method, target) = (start.next().unwrap_or("").to_string(), start.next().unwrap_or(""));
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mode = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("x-emu"))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            let (account, password) = match mode.as_str() {
                "go" => go_json(&body),
                "php" => last_wins(form_pairs(&body).map(|(k, v)| (php_name(&k), v))),
                _ => {
                    let query = form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()));
                    let mut account = None;
                    let mut password = None;
                    for (key, value) in query.chain(form_pairs(&body)) {
                        match key.as_str() {
                            "email" => account = account.or(Some(value)),
                            "password" => password = password.or(Some(value)),
                            _ => {}
                        }
                    }
                    (account, password)
                }
            };
            let ok = account.as_deref() == Some(VICTIM) && password.as_deref() == Some(RIGHT);
            let _ = sender.send((method, account.unwrap_or_default()));
            let status = if ok { "200 OK" } else { "401 Unauthorized" };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}").as_bytes(),
            );
        }
    });
    (address, receiver)
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buffer[..n]);
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&seen[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        if seen.len() >= end + 4 + length {
            return Some((head, seen[end + 4..end + 4 + length].to_vec()));
        }
    }
}

fn form_pairs(body: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn php_name(name: &str) -> String {
    name.trim_start_matches(' ').chars().map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c }).collect()
}

fn last_wins(pairs: impl Iterator<Item = (String, String)>) -> (Option<String>, Option<String>) {
    let (mut account, mut password) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "email" => account = Some(value),
            "password" => password = Some(value),
            _ => {}
        }
    }
    (account, password)
}

/// Go's `encoding/json` into `struct { Email, Password string }`: keys in document order, matched ignoring case.
fn go_json(body: &[u8]) -> (Option<String>, Option<String>) {
    struct Pairs(Vec<(String, serde_json::Value)>);
    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Pairs;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Pairs, M::Error> {
                    let mut pairs = Vec::new();
                    while let Some(pair) = map.next_entry()? {
                        pairs.push(pair);
                    }
                    Ok(Pairs(pairs))
                }
            }
            deserializer.deserialize_map(V)
        }
    }
    let Ok(Pairs(pairs)) = serde_json::from_slice::<Pairs>(body) else { return (None, None) };
    last_wins(pairs.into_iter().filter_map(|(k, v)| Some((k.to_lowercase(), v.as_str()?.to_string()))))
}

fn login_policy(body_options: &str, defenses: &str) -> String {
    format!(
        "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
         body = {{ account = \"email\", password = \"password\"{body_options} }}\n{defenses}"
    )
}

/// Guessing one account: the fourth failure from anywhere is refused (429).
const ACCOUNT_LIMIT: &str =
    "[[route.defense]]\ntype = \"failed_logins\"\nkey = \"account\"\nthreshold = 3\nwindow = \"10m\"\npenalty = \"10m\"\n";

/// The probe's commands against apps that parse like Go, PHP and a servlet (`emu.py`, 25 guesses from 25
/// addresses each; `401×24, 200` before, where a plain guess gets `401×3 428×7 429×15`):
///
/// ```text
/// go:      -H 'X-Emu: go' -d '{"email":"decoy'$i'@example.org","password":"guess-'$i'","EMAIL":"victim@example.com"}'
/// go:      12 accounts: '{"email":"userNN@…","password":"<random>","Password":"password1"}' (hides a breached password)
/// php:     -H 'X-Emu: php' form 'email=decoy$i%40example.org&password=guess-$i&%20email=victim%40example.com'
/// servlet: -H 'X-Emu: servlet' '…/api/login?email=victim%40example.com&password=guess-$i' body 'email=decoy$i…'
/// ```
#[test]
fn field_names_frameworks_fold_together_and_query_credentials_never_reach_the_app() {
    let (upstream, handled) = emulated_app();
    let gateway = Gateway::start(&login_policy("", ACCOUNT_LIMIT), upstream);
    let to = address(&gateway);
    handled.try_iter().for_each(drop); // the readiness probe's `GET /`
    let json = "Content-Type: application/json\r\n";
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("go", json.into(), format!(r#"{{"email":"decoy@example.org","password":"{RIGHT}","EMAIL":"{VICTIM}"}}"#), ""),
        ("go", json.into(), format!(r#"{{"Email":"{VICTIM}","password":"{RIGHT}"}}"#), ""),
        ("go", json.into(), format!(r#"{{"email":"{VICTIM}","password":"x","Password":"password1"}}"#), ""),
        ("go", json.into(), format!(r#"{{"email":"{VICTIM}","pa\u017f\u017fword":"{RIGHT}"}}"#), ""),
        (
            "php",
            form.into(),
            "email=decoy%40example.org&password=Tr0ub4dor%263&%20email=victim%40example.com".into(),
            "",
        ),
        (
            "php",
            form.into(),
            "email=decoy%40example.org&password=Tr0ub4dor%263&email[0]=victim%40example.com".into(),
            "",
        ),
        ("servlet", form.into(), "email=decoy%40example.org&password=x".into(), "?email=victim%40example.com"),
        ("servlet", form.into(), "email=victim%40example.com&password=x".into(), "?password=Tr0ub4dor%263"),
    ];
    for (i, (mode, content_type, body, query)) in cases.iter().enumerate() {
        let headers = format!("{content_type}X-Emu: {mode}\r\nX-Forwarded-For: 198.18.7.{}\r\n", i + 1);
        let (status, answer) = send(to, &request("POST", &format!("/api/login{query}"), &headers, body));
        assert_eq!(status, 400, "{mode} {body} {query}: {answer}");
    }
    assert_eq!(handled.try_iter().collect::<Vec<_>>(), vec![], "the app saw none of them");
    wait_decisions(&gateway, cases.len());
    let reasons = reasons(&gateway);
    for expected in ["body:field_name_variant", "body:ambiguous_field", "body:credential_in_query"] {
        assert!(reasons.iter().any(|r| r == expected), "{expected} in {reasons:?}");
    }
    // The plain login, for each parser, still goes through.
    let plain = format!(r#"{{"email":"{VICTIM}","password":"{RIGHT}"}}"#);
    let headers = format!("{json}X-Emu: go\r\nX-Forwarded-For: 198.18.7.100\r\n");
    assert_eq!(send(to, &request("POST", "/api/login", &headers, &plain)).0, 200);
    let headers = format!("{form}X-Emu: servlet\r\nX-Forwarded-For: 198.18.7.101\r\n");
    let body = "email=victim%40example.com&password=Tr0ub4dor%263";
    assert_eq!(send(to, &request("POST", "/api/login?lang=en", &headers, body)).0, 200);
}

/// With `case_insensitive_keys`, `Email` is the account (and counted as such); two spellings are still refused.
#[test]
fn a_route_whose_app_folds_case_reads_other_spellings_as_the_field() {
    let (upstream, handled) = emulated_app();
    let gateway = Gateway::start(&login_policy(", case_insensitive_keys = true", ACCOUNT_LIMIT), upstream);
    let to = address(&gateway);
    handled.try_iter().for_each(drop); // the readiness probe's `GET /`
    let headers =
        |i: usize| format!("Content-Type: application/json\r\nX-Emu: go\r\nX-Forwarded-For: 198.18.5.{i}\r\n");
    for i in 1..=3 {
        let body = format!(r#"{{"email":"{VICTIM}","password":"guess-{i}"}}"#);
        assert_eq!(send(to, &request("POST", "/api/login", &headers(i), &body)).0, 401);
    }
    // The fourth guess, spelled `EMAIL`, is the same account: refused by the account limit, not let through.
    let body = format!(r#"{{"EMAIL":"{VICTIM}","Password":"{RIGHT}"}}"#);
    let (status, answer) = send(to, &request("POST", "/api/login", &headers(4), &body));
    assert_eq!(status, 429, "{answer}");
    let body = format!(r#"{{"email":"decoy@example.org","Email":"{VICTIM}","password":"{RIGHT}"}}"#);
    assert_eq!(send(to, &request("POST", "/api/login", &headers(5), &body)).0, 400);
    let seen: Vec<_> = handled.try_iter().collect();
    assert_eq!(seen.len(), 3, "only the three plain guesses reached the app: {seen:?}");
}

/// The probe's command, 25 guesses from one address at an app whose handler takes any method:
///
/// ```text
/// curl -X GET -H 'content-type: application/json' -H 'X-Forwarded-For: 198.18.6.1' \
///   -d '{"email":"victim@…","password":"guess-'$i'"}' 127.0.0.1:28095/api/login   # ×25
/// ```
///
/// Before: `401×24, 200` and no decision logged (GET passed unchecked, with its body). Now a body on a method the
/// route does not declare is refused; a GET or OPTIONS without a body (a login page, a CORS preflight) still passes.
#[test]
fn a_login_body_on_a_method_the_route_does_not_declare_is_refused() {
    let (upstream, handled) = emulated_app();
    let gateway = Gateway::start(&login_policy("", ACCOUNT_LIMIT), upstream);
    let to = address(&gateway);
    handled.try_iter().for_each(drop); // the readiness probe's `GET /`
    let headers = "Content-Type: application/json\r\nX-Emu: go\r\nX-Forwarded-For: 198.18.6.1\r\n";
    for i in 1..=25 {
        let guess = if i == 25 { RIGHT.to_string() } else { format!("guess-{i}") };
        let body = format!(r#"{{"email":"{VICTIM}","password":"{guess}"}}"#);
        let (status, answer) = send(to, &request("GET", "/api/login", headers, &body));
        assert_eq!(status, 400, "guess {i}: {answer}");
    }
    let body = format!(r#"{{"email":"{VICTIM}","password":"{RIGHT}"}}"#);
    for method in ["OPTIONS", "TRACE", "get"] {
        assert_eq!(send(to, &request(method, "/API/Login", headers, &body)).0, 400, "{method}");
    }
    let chunked = format!(
        "GET /api/login HTTP/1.1\r\nHost: x\r\n{headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    assert_eq!(send(to, chunked.as_bytes()).0, 400, "chunked");
    assert_eq!(handled.try_iter().count(), 0, "none reached the app");
    wait_decisions(&gateway, 29);
    assert!(reasons(&gateway).iter().all(|r| r == "body:body_on_undeclared_method"), "{:?}", reasons(&gateway));
    // Without a body, GET and OPTIONS are not logins: they pass unchecked.
    for method in ["GET", "OPTIONS"] {
        let (status, _) = send(to, &request(method, "/api/login", "X-Emu: go\r\n", ""));
        assert_eq!(status, 401, "{method} reached the app");
        assert_eq!(handled.recv_timeout(Duration::from_secs(5)).unwrap().0, method);
    }
    assert_eq!(gateway.decisions().len(), 29, "and no decision was made for them");
}

/// The probe: double-encoded paths (`/api/login%2500`) were not checked; an app, or a proxy before it, that decodes
/// twice reads `/api/login`.
#[test]
fn a_double_encoded_spelling_of_the_login_path_is_checked() {
    let (upstream, handled) = emulated_app();
    let denied = "[[route.defense]]\ntype = \"ip_list\"\ndeny = [\"198.51.100.66\"]\n";
    let gateway = Gateway::start(&login_policy("", denied), upstream);
    let to = address(&gateway);
    handled.try_iter().for_each(drop); // the readiness probe's `GET /`
    let body = format!(r#"{{"email":"{VICTIM}","password":"{RIGHT}"}}"#);
    let headers = "Content-Type: application/json\r\nX-Emu: go\r\nX-Forwarded-For: 198.51.100.66\r\n";
    for path in ["/api/login%2500", "/api%252flogin", "/api/%256Cogin", "/api/login%252500.json"] {
        let (status, answer) = send(to, &request("POST", path, headers, &body));
        assert_eq!(status, 403, "{path}: checked as the login and refused: {answer}");
    }
    assert_eq!(handled.try_iter().count(), 0);
}

/// The probe: with `Expect: 100-continue` no `100` was sent (curl waited its timeout before sending the body).
#[test]
fn a_protected_request_that_expects_100_continue_gets_it_and_is_then_checked() {
    let (upstream, handled) = emulated_app();
    let gateway = Gateway::start(&login_policy("", ACCOUNT_LIMIT), upstream);
    handled.try_iter().for_each(drop); // the readiness probe's `GET /`
    let body = format!(r#"{{"email":"{VICTIM}","password":"{RIGHT}"}}"#);
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Emu: go\r\nExpect: 100-continue\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Nothing else is sent until the interim answer arrives (the body read allows 10 s between reads).
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("an interim answer before the body is sent");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(handled.try_iter().count(), 1);
    wait_decisions(&gateway, 1);
    assert_eq!(gateway.decisions().len(), 1, "checked");
}
