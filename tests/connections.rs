//! Connection-level defenses through the real gateway: addresses the policy blocks by address alone refused when
//! they connect (before any HTTP parsing), the total deadline on a protected request's body, and the admin
//! listener's connection cap. Real gateway process, a recording upstream on loopback, raw sockets from chosen
//! loopback source addresses (127.0.0.0/8 is all local on Linux).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::net::{address, connect_from, read_until_close};
use common::{client, recording_upstream, Gateway, Options};

const TOKEN: &str = "connections-test-admin-token-0123456789";

fn login_policy(defenses: &str) -> String {
    format!(
        "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
         body = {{ account = \"email\", password = \"password\" }}\n{defenses}"
    )
}

/// One request per address a minute (burst 1): the second request from an address is refused by `ip_rate`.
const ONE_PER_MINUTE: &str = "[[route.defense]]\ntype = \"ip_rate\"\nlimit = 1\nper = \"1m\"\nburst = 1\n";

fn start(policy: &str, upstream: SocketAddr, trusted: &[&str], extra: &str) -> Gateway {
    let extra = format!("{extra}\n{}", common::SHIPPED_DATA);
    Gateway::start_with(
        policy,
        upstream,
        Options {
            trusted_proxies: trusted,
            extra_config: &extra,
            env: &[("STUFFGATE_ADMIN_TOKEN", TOKEN)],
            ..Options::default()
        },
    )
}

/// One response, lower-cased (the assertions here compare header names and values).
fn read_response(stream: &mut TcpStream) -> String {
    common::net::read_response(stream).to_ascii_lowercase()
}

/// A JSON login on a kept-alive connection, with an optional X-Forwarded-For line.
fn login_request(email: &str, forwarded_for: Option<&str>) -> Vec<u8> {
    let body = serde_json::json!({ "email": email, "password": "not-the-password" }).to_string();
    let xff = forwarded_for.map(|ip| format!("X-Forwarded-For: {ip}\r\n")).unwrap_or_default();
    format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{xff}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn login_on(stream: &mut TcpStream, email: &str, forwarded_for: Option<&str>) -> String {
    stream.write_all(&login_request(email, forwarded_for)).unwrap();
    read_response(stream)
}

/// A new connection from `source` is closed before anything is answered: refused at accept.
fn refused_at_accept(source: &str, to: SocketAddr) -> bool {
    let mut stream = connect_from(source, to);
    let _ = stream.write_all(&login_request("refused@example.com", None));
    let (answer, closed) = read_until_close(&mut stream, Duration::from_secs(5));
    closed && answer.is_empty()
}

/// The next request head the upstream received (lower-cased).
fn next_head(upstream: &Receiver<String>) -> String {
    upstream.recv_timeout(Duration::from_secs(10)).expect("the upstream receives the request")
}

fn metrics(gateway: &Gateway) -> String {
    client().get(format!("{}/metrics", gateway.admin)).send().unwrap().text().unwrap()
}

fn refused_blocked(gateway: &Gateway) -> u64 {
    metrics(gateway)
        .lines()
        .find_map(|l| l.strip_prefix(r#"stuffgate_connections_refused_total{reason="blocked_address"} "#))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

/// Ban `range` through the decisions API; returns the ban's id.
fn ban(gateway: &Gateway, range: &str) -> String {
    let created = client()
        .post(format!("{}/decisions", gateway.admin))
        .bearer_auth(TOKEN)
        .body(serde_json::json!({ "range": range, "duration": "1h", "reason": "test" }).to_string())
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let body: serde_json::Value = created.json().unwrap();
    body["ban"]["id"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// Refused at accept.

#[test]
fn a_banned_address_is_refused_when_it_connects_and_its_open_connection_gets_403_and_is_closed() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = start(&login_policy(""), upstream, &[], "");
    let to = address(&gateway);
    let mut kept = connect_from("127.0.0.21", to);
    assert!(login_on(&mut kept, "before@example.com", None).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 127.0.0.21"));

    ban(&gateway, "127.0.0.21");
    assert!(refused_at_accept("127.0.0.21", to), "a banned address's new connection is closed at once");
    // Its connection opened before the ban gets the ban's answer, then is closed.
    let answer = login_on(&mut kept, "after@example.com", None);
    assert!(answer.starts_with("http/1.1 403") && answer.contains("connection: close"), "{answer}");
    assert!(read_until_close(&mut kept, Duration::from_secs(5)).1, "closed after its answer");

    // Nothing of either reached the upstream: the next head it sees is another client's.
    let mut other = connect_from("127.0.0.22", to);
    assert!(login_on(&mut other, "other@example.com", None).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 127.0.0.22"));
    assert_eq!(refused_blocked(&gateway), 1);
}

#[test]
fn a_ban_lifted_through_the_decisions_api_lets_the_address_connect_again_at_once() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = start(&login_policy(""), upstream, &[], "");
    let to = address(&gateway);
    let id = ban(&gateway, "127.0.0.23/32");
    assert!(refused_at_accept("127.0.0.23", to));
    let lifted = client().delete(format!("{}/decisions/{id}", gateway.admin)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(lifted.status(), 200);
    let mut again = connect_from("127.0.0.23", to);
    assert!(login_on(&mut again, "back@example.com", None).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 127.0.0.23"));
}

#[test]
fn a_trusted_proxy_is_never_refused_at_accept_for_its_own_address_nor_closed_for_a_client_behind_it() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = start(&login_policy(ONE_PER_MINUTE), upstream, &["127.0.0.1"], "");
    let to = address(&gateway);
    // A ban covering the proxy's own address (and an untrusted neighbour's).
    ban(&gateway, "127.0.0.0/8");
    assert!(refused_at_accept("127.0.0.24", to), "an untrusted address in the ban is refused at accept");
    let mut proxy = connect_from("127.0.0.1", to);
    assert!(login_on(&mut proxy, "a@example.com", Some("198.51.100.9")).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 198.51.100.9"));
    // A client behind it over its limit is refused by request; the proxy's connection stays open for the others.
    let refused = login_on(&mut proxy, "b@example.com", Some("198.51.100.9"));
    assert!(refused.starts_with("http/1.1 429") && !refused.contains("connection: close"), "{refused}");
    assert!(login_on(&mut proxy, "c@example.com", Some("198.51.100.10")).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 198.51.100.10"));
    // And its new connections are accepted.
    let mut fresh = connect_from("127.0.0.1", to);
    assert!(login_on(&mut fresh, "d@example.com", Some("198.51.100.11")).starts_with("http/1.1 401"));
    assert_eq!(refused_blocked(&gateway), 1, "only the untrusted neighbour was refused at accept");
}

#[test]
fn an_address_over_its_rate_is_closed_after_its_429_and_refused_at_accept_while_the_limit_holds() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = start(&login_policy(ONE_PER_MINUTE), upstream, &[], "");
    let to = address(&gateway);
    let mut kept = connect_from("127.0.0.25", to);
    assert!(login_on(&mut kept, "first@example.com", None).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 127.0.0.25"));
    let answer = login_on(&mut kept, "second@example.com", None);
    assert!(answer.starts_with("http/1.1 429") && answer.contains("connection: close"), "{answer}");
    assert!(read_until_close(&mut kept, Duration::from_secs(5)).1, "closed after its 429");
    assert!(refused_at_accept("127.0.0.25", to), "refused at accept while ip_rate refuses it");
    // Another address is untouched.
    let mut other = connect_from("127.0.0.26", to);
    assert!(login_on(&mut other, "other@example.com", None).starts_with("http/1.1 401"));
    assert_eq!(refused_blocked(&gateway), 1);

    // With the switch off the refusal stays per request: answered 429, nothing refused at accept.
    let (upstream, _heads) = recording_upstream(401);
    let gateway =
        start(&login_policy(ONE_PER_MINUTE), upstream, &[], "[connections]\nrefuse_blocked_at_accept = false");
    let to = address(&gateway);
    let mut kept = connect_from("127.0.0.25", to);
    assert!(login_on(&mut kept, "first@example.com", None).starts_with("http/1.1 401"));
    let answer = login_on(&mut kept, "second@example.com", None);
    assert!(answer.starts_with("http/1.1 429") && !answer.contains("connection: close"), "{answer}");
    let mut fresh = connect_from("127.0.0.25", to);
    assert!(login_on(&mut fresh, "third@example.com", None).starts_with("http/1.1 429"));
    assert_eq!(refused_blocked(&gateway), 0);
}

#[test]
fn a_denied_network_is_refused_at_accept_until_a_reloaded_policy_drops_it() {
    let (upstream, heads) = recording_upstream(401);
    let deny = "[[route.defense]]\ntype = \"ip_list\"\ndeny = [\"127.0.0.27/32\"]\n";
    let gateway = start(&login_policy(deny), upstream, &[], "");
    let to = address(&gateway);
    assert!(refused_at_accept("127.0.0.27", to));
    let mut neighbour = connect_from("127.0.0.28", to);
    assert!(login_on(&mut neighbour, "n@example.com", None).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 127.0.0.28"));
    // In observe mode the list blocks nothing, so nothing is refused at accept either.
    std::fs::write(&gateway.policy_path, login_policy(&format!("{deny}mode = \"observe\"\n"))).unwrap();
    gateway.hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused_at_accept("127.0.0.27", to) {
        assert!(Instant::now() < deadline, "the reloaded policy's lists apply at accept");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut back = connect_from("127.0.0.27", to);
    assert!(login_on(&mut back, "b@example.com", None).starts_with("http/1.1 401"));
}

#[test]
fn a_client_behind_a_proxy_protocol_header_is_refused_once_the_header_names_it() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = start(&login_policy(""), upstream, &["127.0.0.35"], "[connections]\nproxy_protocol = true");
    let to = address(&gateway);
    ban(&gateway, "198.51.100.50");
    let through_proxy = |client: &str| {
        let mut stream = connect_from("127.0.0.35", to);
        let mut bytes = format!("PROXY TCP4 {client} 127.0.0.1 40000 80\r\n").into_bytes();
        bytes.extend_from_slice(&login_request("p@example.com", None));
        stream.write_all(&bytes).unwrap();
        stream
    };
    let (answer, closed) = read_until_close(&mut through_proxy("198.51.100.50"), Duration::from_secs(5));
    assert!(closed && answer.is_empty(), "refused before any HTTP parsing: {answer:?}");
    let answer = read_response(&mut through_proxy("198.51.100.51"));
    assert!(answer.starts_with("http/1.1 401"), "{answer:?}");
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 198.51.100.51"));
    assert_eq!(refused_blocked(&gateway), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// The body deadline and the admin listener.

#[test]
fn a_body_trickled_a_byte_at_a_time_is_cut_off_at_the_body_deadline_and_never_forwarded() {
    // The probe's slow body: a login whose body arrives one byte every few seconds, each read well within the
    // per-read timeout (10 s), so that only a total deadline ends it. Here a byte every 200 ms against a 1 s one.
    let (upstream, heads) = recording_upstream(401);
    let gateway = start(&login_policy(""), upstream, &[], "[connections]\nbody_timeout_secs = 1");
    let mut stream = connect_from("127.0.0.31", address(&gateway));
    stream
        .write_all(
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{",
        )
        .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    while started.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(200));
        if stream.write_all(b" ").is_err() {
            break;
        }
        let (seen, closed) = read_until_close(&mut stream, Duration::from_millis(1));
        answer.push_str(&seen);
        if closed || !answer.is_empty() {
            break;
        }
    }
    let (rest, _) = read_until_close(&mut stream, Duration::from_secs(2));
    answer.push_str(&rest);
    assert!(answer.starts_with("HTTP/1.1 408"), "cut off before the per-read timeout could fire: {answer:?}");
    assert!(answer.contains("request_timeout"), "{answer:?}");
    // The same body sent at once is forwarded: the upstream's first head is that one.
    let mut quick = connect_from("127.0.0.32", address(&gateway));
    assert!(login_on(&mut quick, "quick@example.com", None).starts_with("http/1.1 401"));
    assert!(next_head(&heads).contains("x-stuffgate-client-ip: 127.0.0.32"));
    assert!(metrics(&gateway).contains(r#"stuffgate_connections_closed_total{reason="body_timeout"} 1"#));
}

#[test]
fn the_admin_listener_caps_its_connections_and_the_proxy_keeps_serving() {
    let (upstream, _heads) = recording_upstream(401);
    let gateway = start(&login_policy(""), upstream, &[], "");
    let admin: SocketAddr = gateway.admin.trim_start_matches("http://").parse().unwrap();
    // Hold the cap with idle connections; wait until each is admitted (it answers a request), so the next one is
    // known to be over the cap.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..64 {
        let mut stream = TcpStream::connect(admin).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(read_response(&mut stream).starts_with("http/1.1 200"));
        held.push(stream);
    }
    let mut over = TcpStream::connect(admin).unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_close(&mut over, Duration::from_secs(5));
    assert!(closed && (answer.is_empty() || answer.starts_with("HTTP/1.1 503")), "{answer:?}");
    // The proxy's clients are unaffected.
    let mut client = connect_from("127.0.0.33", address(&gateway));
    assert!(login_on(&mut client, "c@example.com", None).starts_with("http/1.1 401"));
    // An idle admin connection is closed by the gateway (after its idle timeout), freeing its slot.
    let (_, closed) = read_until_close(&mut held[0], Duration::from_secs(30));
    assert!(closed, "an idle admin connection is not held forever");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(response) = common::client().get(format!("{}/metrics", gateway.admin)).send() {
            let text = response.text().unwrap();
            assert!(text.contains(r#"stuffgate_connections_refused_total{reason="admin_max_connections"} 1"#));
            assert!(text.contains(r#"stuffgate_connections_closed_total{reason="admin_idle_timeout"}"#));
            break;
        }
        assert!(Instant::now() < deadline, "the admin listener serves again once its connections close");
        std::thread::sleep(Duration::from_millis(100));
    }
}
