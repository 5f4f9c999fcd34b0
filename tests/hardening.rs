//! Regression tests for attacks on the gateway itself: spoofed client addresses behind a real HAProxy,
//! connection exhaustion, route spellings and methods, and the low-severity findings. Real gateway process, real
//! upstream on loopback, raw sockets where the client's behaviour is the point.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::net::{address, connect_from, read_response, read_until_close};
use common::{
    assert_nothing_forwarded, client, demo_api, free_port, from_upstream, metrics, recording_upstream, Gateway, Options,
};

fn login_policy(defenses: &str) -> String {
    format!(
        "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
         body = {{ account = \"email\", password = \"password\" }}\n{defenses}"
    )
}

fn get(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    read_response(stream)
}

fn json_login(path: &str, method: &str, email: &str, password: &str, extra_headers: &str) -> Vec<u8> {
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Wait (bounded) until the gateway counts `open` client connections: the readiness probe's connection closes
/// asynchronously, and the caps must be measured from a known count.
fn wait_open_connections(gateway: &Gateway, open: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = format!("stuffgate_open_connections {open}\n");
    while Instant::now() < deadline {
        if metrics(gateway).contains(&line) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the gateway never reported {open} open connections:\n{}", metrics(gateway));
}

// ---------------------------------------------------------------------------------------------------------------
// 1. X-Forwarded-For behind a real HAProxy.

struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy from the distribution, `option forwardfor`, in front of `backend`. `None` (skip) only outside CI.
fn haproxy(backend: SocketAddr) -> Option<Haproxy> {
    haproxy_with(backend, "", "")
}

/// The same with extra frontend lines and extra options on the server line.
fn haproxy_with(backend: SocketAddr, frontend: &str, server: &str) -> Option<Haproxy> {
    let present = Command::new("haproxy").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !present.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "haproxy is not installed; CI must install it (apt-get install haproxy) — this test may not be skipped there"
        );
        eprintln!("SKIPPED: haproxy is not installed (apt-get install haproxy); CI=true makes this a failure");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global\n  maxconn 200\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  option forwardfor\n{frontend}  default_backend gw\n\
         backend gw\n  server g {backend}{server}\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = Haproxy { child, port, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(proxy)
}

/// A login through HAProxy from `source`, with the client's own (forged) `X-Forwarded-For` line.
fn login_via(proxy: &Haproxy, source: &str, forged: &str, email: &str, password: &str) -> String {
    let mut stream = connect_from(source, SocketAddr::from(([127, 0, 0, 1], proxy.port)));
    let extra = format!("X-Forwarded-For: {forged}\r\n");
    stream.write_all(&json_login("/api/login", "POST", email, password, &extra)).unwrap();
    let response = read_response(&mut stream);
    response.split(' ').nth(1).unwrap_or("none").to_string()
}

#[test]
fn behind_haproxy_a_client_cannot_choose_its_address_with_its_own_forwarded_for_line() {
    let api = demo_api();
    let gateway = Gateway::start(
        &login_policy(
            "[[route.defense]]\ntype = \"failed_logins\"\nkey = \"ip\"\nthreshold = 5\nwindow = \"10m\"\npenalty = \"10m\"\n",
        ),
        api.addr(),
    );
    let Some(proxy) = haproxy(address(&gateway)) else {
        return;
    };
    // The probe's sequence: a fresh forged address on every attempt, each a different account and password.
    let statuses: Vec<String> = (1..=12)
        .map(|i| {
            login_via(&proxy, "127.0.0.7", &format!("45.{i}.1.1"), &format!("hs{i}@example.com"), &format!("hp{i}-x"))
        })
        .collect();
    assert_eq!(statuses[..5], ["401"; 5], "{statuses:?}");
    assert_eq!(statuses[5..], ["429"; 7], "the client is keyed by its real address, not the forged ones: {statuses:?}");
    // A garbage line from one client does not put it under the proxy's shared key: another client is unaffected.
    assert_eq!(login_via(&proxy, "127.0.0.7", "x", "g1@example.com", "gp1"), "429");
    assert_eq!(login_via(&proxy, "127.0.0.8", "x", "g2@example.com", "gp2"), "401");
    let addresses: Vec<String> =
        gateway.decisions().iter().filter_map(|d| d["client_ip"].as_str().map(str::to_string)).collect();
    assert!(!addresses.is_empty(), "decisions carry the client address:\n{}", gateway.logs());
    assert!(addresses.iter().all(|a| a == "127.0.0.7" || a == "127.0.0.8"), "{addresses:?}");
}

#[test]
fn behind_haproxy_the_app_is_told_the_real_client_address() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = Gateway::start(&login_policy(""), upstream);
    let Some(proxy) = haproxy(address(&gateway)) else {
        return;
    };
    assert_eq!(login_via(&proxy, "127.0.0.9", "6.6.6.6", "a@example.com", "pw"), "401");
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-client-ip: 127.0.0.9"), "{head}");
    assert!(!head.contains("x-stuffgate-client-ip: 6.6.6.6"), "{head}");
}

#[test]
fn several_forwarded_for_lines_from_a_trusted_peer_are_read_as_one_list() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = Gateway::start(&login_policy(""), upstream);
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    let lines = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 198.51.100.7\r\n";
    stream.write_all(&json_login("/api/login", "POST", "a@example.com", "pw", lines)).unwrap();
    assert!(read_response(&mut stream).starts_with("HTTP/1.1 401"));
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-client-ip: 198.51.100.7"), "{head}");
}

#[test]
fn a_trusted_proxy_hop_that_is_not_an_address_is_refused_on_protected_routes() {
    let api = demo_api();
    let gateway = Gateway::start(&login_policy(""), api.addr());
    // The peer (127.0.0.1) is trusted and names no address: no key could be the client's own.
    let response = gateway.login(Some("unknown"), "alice@example.com", "correct horse battery staple");
    assert_eq!(response.status(), 400);
    assert!(!from_upstream(&response));
    // Unprotected routes still pass.
    let page = client().get(format!("{}/", gateway.url)).header("x-forwarded-for", "unknown").send().unwrap();
    assert_eq!(page.status(), 200);
}

#[test]
fn rfc_7239_forwarded_is_read_when_the_gateway_file_asks_for_it() {
    let (upstream, heads) = recording_upstream(401);
    let config = format!("forwarded_header = \"forwarded\"\n{}", common::SHIPPED_DATA);
    let gateway =
        Gateway::start_with(&login_policy(""), upstream, Options { extra_config: &config, ..Options::default() });
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    let lines =
        "Forwarded: for=6.6.6.6\r\nForwarded: for=\"198.51.100.8:4711\";proto=https\r\nX-Forwarded-For: 7.7.7.7\r\n";
    stream.write_all(&json_login("/api/login", "POST", "a@example.com", "pw", lines)).unwrap();
    assert!(read_response(&mut stream).starts_with("HTTP/1.1 401"));
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-client-ip: 198.51.100.8"), "{head}");
}

// PROXY protocol: the load balancer at 127.0.0.5 is the trusted proxy (the harness's own checks come from 127.0.0.1,
// untrusted, as plain HTTP).

fn proxy_protocol_gateway(policy: &str, upstream: SocketAddr) -> Gateway {
    let config = limits("proxy_protocol = true");
    let options = Options { extra_config: &config, trusted_proxies: &["127.0.0.5"], ..Options::default() };
    Gateway::start_with(policy, upstream, options)
}

#[test]
fn a_proxy_protocol_header_from_the_trusted_proxy_names_the_client_in_either_version() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = proxy_protocol_gateway(&login_policy(""), upstream);
    // Version 1, then a request whose own forwarded-for line must not count (198.51.100.7 is not a trusted proxy).
    let mut stream = connect_from("127.0.0.5", address(&gateway));
    let mut bytes = b"PROXY TCP4 198.51.100.7 127.0.0.1 51234 80\r\n".to_vec();
    bytes.extend(json_login("/api/login", "POST", "a@example.com", "pw", "X-Forwarded-For: 6.6.6.6\r\n"));
    stream.write_all(&bytes).unwrap();
    assert!(read_response(&mut stream).starts_with("HTTP/1.1 401"));
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-client-ip: 198.51.100.7"), "{head}");
    // Version 2 (binary), IPv6, sent in two pieces.
    let mut stream = connect_from("127.0.0.5", address(&gateway));
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    header.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77]);
    header.extend([0u8; 15].iter().chain([1u8].iter()));
    header.extend([0xC8, 0x22, 0, 80]);
    stream.write_all(&header[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(&header[10..]).unwrap();
    stream.write_all(&json_login("/api/login", "POST", "b@example.com", "pw", "")).unwrap();
    assert!(read_response(&mut stream).starts_with("HTTP/1.1 401"));
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(head.contains("x-stuffgate-client-ip: 2001:db8::77"), "{head}");
}

#[test]
fn without_a_valid_proxy_protocol_header_the_trusted_proxy_gets_nothing_through() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = proxy_protocol_gateway(&login_policy(""), upstream);
    for start in [&b""[..], b"PROXY TCP4 banana 127.0.0.1 1 2\r\n", b"PROXY TCP4 198.51.100.7 127.0.0.1 1 2\n"] {
        let mut stream = connect_from("127.0.0.5", address(&gateway));
        let mut bytes = start.to_vec();
        bytes.extend(json_login("/api/login", "POST", "a@example.com", "pw", ""));
        stream.write_all(&bytes).unwrap();
        let (answer, closed) = read_until_close(&mut stream, Duration::from_secs(5));
        assert!(closed && answer.is_empty(), "{:?}: {answer:?}", String::from_utf8_lossy(start));
    }
    assert_nothing_forwarded(&gateway, &heads, "a trusted proxy without a valid PROXY header");
    assert!(metrics(&gateway).contains(r#"stuffgate_connections_closed_total{reason="proxy_header"} 3"#));
    // A client that is not a trusted proxy speaks plain HTTP, and cannot name itself with a header of its own.
    let mut stream = connect_from("127.0.0.7", address(&gateway));
    stream.write_all(&json_login("/api/login", "POST", "c@example.com", "pw", "")).unwrap();
    assert!(read_response(&mut stream).starts_with("HTTP/1.1 401"));
    assert!(heads.recv_timeout(Duration::from_secs(5)).unwrap().contains("x-stuffgate-client-ip: 127.0.0.7"));
    let mut stream = connect_from("127.0.0.7", address(&gateway));
    let mut bytes = b"PROXY TCP4 198.51.100.9 127.0.0.1 1 2\r\n".to_vec();
    bytes.extend(json_login("/api/login", "POST", "d@example.com", "pw", ""));
    stream.write_all(&bytes).unwrap();
    let (answer, _) = read_until_close(&mut stream, Duration::from_secs(5));
    assert!(!answer.contains("401"), "{answer}");
    assert_nothing_forwarded(&gateway, &heads, "an untrusted PROXY line");
}

#[test]
fn a_reloaded_trusted_proxies_list_decides_whose_proxy_protocol_header_is_read() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = proxy_protocol_gateway(&login_policy(""), upstream);
    let proxied_login = |source: &str, email: &str| {
        let mut stream = connect_from(source, address(&gateway));
        let mut bytes = b"PROXY TCP4 198.51.100.7 127.0.0.1 51234 80\r\n".to_vec();
        bytes.extend(json_login("/api/login", "POST", email, "pw", ""));
        stream.write_all(&bytes).unwrap();
        read_until_close(&mut stream, Duration::from_secs(3)).0
    };
    assert!(proxied_login("127.0.0.5", "a@example.com").starts_with("HTTP/1.1 401"));
    assert!(heads.recv_timeout(Duration::from_secs(5)).unwrap().contains("x-stuffgate-client-ip: 198.51.100.7"));
    // The balancer moves to 127.0.0.6: after SIGHUP, only its headers are read; the old address speaks plain HTTP.
    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    let edited = config.replace("trusted_proxies = [\"127.0.0.5\"]", "trusted_proxies = [\"127.0.0.6\"]");
    assert_ne!(edited, config);
    std::fs::write(gateway.config_path(), edited).unwrap();
    gateway.hangup();
    assert!(gateway.wait_for_log("trusted_proxies applied", Duration::from_secs(10)), "{}", gateway.logs());
    assert!(proxied_login("127.0.0.6", "b@example.com").starts_with("HTTP/1.1 401"));
    assert!(heads.recv_timeout(Duration::from_secs(5)).unwrap().contains("x-stuffgate-client-ip: 198.51.100.7"));
    assert!(!proxied_login("127.0.0.5", "c@example.com").contains("401"), "a PROXY line from a no longer trusted peer");
    assert_nothing_forwarded(&gateway, &heads, "a PROXY line from a no longer trusted peer");
}

#[test]
fn behind_haproxy_send_proxy_v2_per_address_limits_key_on_the_client_it_names() {
    let api = demo_api();
    let gateway = proxy_protocol_gateway(
        &login_policy(
            "[[route.defense]]\ntype = \"failed_logins\"\nkey = \"ip\"\nthreshold = 5\nwindow = \"10m\"\npenalty = \"10m\"\n",
        ),
        api.addr(),
    );
    // HAProxy takes the client's address from a test header (`set-src`) and sends it in a v2 header, from 127.0.0.5.
    let Some(proxy) = haproxy_with(
        address(&gateway),
        "  http-request set-src hdr(x-test-source)\n",
        " send-proxy-v2 source 127.0.0.5",
    ) else {
        return;
    };
    let login = |source: &str, i: u32| {
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        let extra = format!("X-Test-Source: {source}\r\n");
        stream.write_all(&json_login("/api/login", "POST", &format!("pp{i}@example.com"), "nope", &extra)).unwrap();
        read_response(&mut stream).split(' ').nth(1).unwrap_or("none").to_string()
    };
    let statuses: Vec<String> = (1..=7).map(|i| login("203.0.113.50", i)).collect();
    assert_eq!(statuses[..5], ["401"; 5], "{statuses:?}");
    assert_eq!(statuses[5], "429", "{statuses:?}");
    // The next connection's PROXY header names the blocked client: refused at accept (`refuse_blocked_at_accept`),
    // so HAProxy has no answer to relay and says 502 itself.
    assert_eq!(statuses[6], "502", "{statuses:?}");
    assert_eq!(login("203.0.113.51", 8), "401", "another client behind the same balancer is not blocked");
    let addresses: Vec<String> =
        gateway.decisions().iter().filter_map(|d| d["client_ip"].as_str().map(str::to_string)).collect();
    assert!(addresses.iter().all(|a| a.starts_with("203.0.113.5")), "{addresses:?}\n{}", gateway.logs());
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Connection exhaustion.

fn limits(lines: &str) -> String {
    format!("[connections]\n{lines}\n{}", common::SHIPPED_DATA)
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let api = demo_api();
    let config = limits("idle_timeout_secs = 2");
    let gateway =
        Gateway::start_with(&login_policy(""), api.addr(), Options { extra_config: &config, ..Options::default() });
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    assert!(get(&mut stream).starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    let (rest, closed) = read_until_close(&mut stream, Duration::from_secs(8));
    let waited = idle_since.elapsed();
    assert!(closed, "an idle connection must not be held forever");
    assert!(rest.is_empty(), "nothing is sent on an idle close: {rest:?}");
    assert!(waited >= Duration::from_millis(1500), "closed after {waited:?}, before the idle timeout");
    assert!(metrics(&gateway).contains(r#"stuffgate_connections_closed_total{reason="idle_timeout"}"#));
}

#[test]
fn a_connection_is_served_again_while_within_the_idle_timeout() {
    let api = demo_api();
    let config = limits("idle_timeout_secs = 3");
    let gateway =
        Gateway::start_with(&login_policy(""), api.addr(), Options { extra_config: &config, ..Options::default() });
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    for _ in 0..3 {
        assert!(get(&mut stream).starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(1500));
    }
}

#[test]
fn a_slowly_trickled_request_head_is_cut_off_at_the_header_deadline() {
    let api = demo_api();
    let config = limits("header_timeout_secs = 2");
    let gateway =
        Gateway::start_with(&login_policy(""), api.addr(), Options { extra_config: &config, ..Options::default() });
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    let started = Instant::now();
    stream.write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nX-Pad: ").unwrap();
    // One byte every 300 ms: each read is quick, so only a total deadline stops it.
    let mut closed_at = None;
    while started.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(300));
        if stream.write_all(b"a").is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        stream.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut probe = [0u8; 256];
        match stream.read(&mut probe) {
            Ok(0) => {
                closed_at = Some(started.elapsed());
                break;
            }
            Ok(n) => {
                assert!(String::from_utf8_lossy(&probe[..n]).starts_with("HTTP/1.1 408"), "{:?}", &probe[..n]);
                closed_at = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_at = closed_at.expect("a trickled head must be cut off");
    assert!(closed_at >= Duration::from_millis(1500) && closed_at < Duration::from_secs(5), "{closed_at:?}");
}

#[test]
fn a_request_head_over_the_cap_gets_431_and_a_small_one_is_served() {
    let api = demo_api();
    let config = limits("max_header_bytes = 4096");
    let gateway =
        Gateway::start_with(&login_policy(""), api.addr(), Options { extra_config: &config, ..Options::default() });
    let mut small = TcpStream::connect(address(&gateway)).unwrap();
    small.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(2000)).as_bytes()).unwrap();
    assert!(read_response(&mut small).starts_with("HTTP/1.1 200"));
    let mut large = TcpStream::connect(address(&gateway)).unwrap();
    // Unterminated, like the probe's 1 MB heads: the gateway must stop reading, not wait for the end.
    let _ = large.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}", "a".repeat(8000)).as_bytes());
    let (answer, closed) = read_until_close(&mut large, Duration::from_secs(5));
    assert!(closed, "the connection is closed");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(metrics(&gateway).contains(r#"stuffgate_connections_closed_total{reason="header_too_large"} 1"#));
}

#[test]
fn the_per_client_cap_refuses_the_next_connection_while_the_others_are_served() {
    let api = demo_api();
    let config = limits("max_connections_per_client = 3");
    // No trusted proxy: loopback clients are ordinary clients here.
    let gateway = Gateway::start_with(
        &login_policy(""),
        api.addr(),
        Options { extra_config: &config, trusted_proxies: &[], ..Options::default() },
    );
    wait_open_connections(&gateway, 0);
    let to = address(&gateway);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.3", to)).collect();
    for stream in &mut held {
        assert!(get(stream).starts_with("HTTP/1.1 200"));
    }
    let mut refused = connect_from("127.0.0.3", to);
    let _ = refused.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_close(&mut refused, Duration::from_secs(5));
    assert!(closed, "the connection over the cap is closed");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(!answer.contains("x-demo-upstream"), "never served: {answer:?}");
    // The held connections are still served, and so is another client.
    assert!(get(&mut held[0]).starts_with("HTTP/1.1 200"));
    let mut other = connect_from("127.0.0.4", to);
    assert!(get(&mut other).starts_with("HTTP/1.1 200"));
    // Freeing a slot admits the client again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from("127.0.0.3", to);
        let _ = again.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        if read_response(&mut again).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot must be reusable");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metrics(&gateway).contains(r#"stuffgate_connections_refused_total{reason="max_connections_per_client"}"#));
}

#[test]
fn the_global_cap_refuses_the_next_connection_while_the_others_are_served() {
    let api = demo_api();
    let config = limits("max_connections = 4");
    let gateway =
        Gateway::start_with(&login_policy(""), api.addr(), Options { extra_config: &config, ..Options::default() });
    wait_open_connections(&gateway, 0);
    let to = address(&gateway);
    let mut held: Vec<TcpStream> = (0..4).map(|i| connect_from(&format!("127.0.1.{}", i + 1), to)).collect();
    for stream in &mut held {
        assert!(get(stream).starts_with("HTTP/1.1 200"));
    }
    let mut refused = connect_from("127.0.1.9", to);
    let _ = refused.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_close(&mut refused, Duration::from_secs(5));
    assert!(closed);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    for stream in &mut held {
        assert!(get(stream).starts_with("HTTP/1.1 200"), "admitted connections keep being served");
    }
    assert!(metrics(&gateway).contains(r#"stuffgate_connections_refused_total{reason="max_connections"}"#));
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Route spellings and methods.

#[test]
fn every_spelling_and_method_that_may_reach_the_login_handler_is_checked() {
    let api = demo_api();
    let gateway = Gateway::start(
        &login_policy("[[route.defense]]\ntype = \"ip_list\"\ndeny = [\"198.51.100.66\"]\n"),
        api.addr(),
    );
    let to = address(&gateway);
    let denied = "X-Forwarded-For: 198.51.100.66\r\n";
    let send = |method: &str, path: &str| {
        let mut stream = TcpStream::connect(to).unwrap();
        stream.write_all(&json_login(path, method, "alice@example.com", "pw", denied)).unwrap();
        read_response(&mut stream)
    };
    for path in [
        "/api/login",
        "/api/login;x=1",
        "/api/login;",
        "/api;jsessionid=1/login",
        "/api/login/..;/login",
        "/api/login.json",
        "/api\\login",
        "/api%5Clogin",
        "/api/login%20",
        "/api/login%00",
        "/API/Login",
    ] {
        let answer = send("POST", path);
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: checked and blocked, not forwarded: {answer}");
    }
    for method in ["post", "Post", "PUT", "PATCH", "DELETE"] {
        let answer = send(method, "/api/login");
        assert!(answer.starts_with("HTTP/1.1 403"), "{method}: {answer}");
    }
    // A safe method carrying a login body is checked as the route (a method-agnostic handler would log it in).
    let answer = send("GET", "/api/login");
    assert!(answer.starts_with("HTTP/1.1 403"), "GET with a login body: {answer}");
    // A safe method without a body is not a login: a login page at the same path keeps working, unchecked.
    let mut stream = TcpStream::connect(to).unwrap();
    let page = format!("GET /api/login HTTP/1.1\r\nHost: x\r\n{denied}Connection: close\r\n\r\n");
    stream.write_all(page.as_bytes()).unwrap();
    let answer = read_response(&mut stream);
    assert!(answer.contains("x-demo-upstream"), "GET without a body goes to the app: {answer}");
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Low-severity findings.

#[test]
fn a_pipelined_login_is_answered_and_checked() {
    let api = demo_api();
    let gateway = Gateway::start(&login_policy(""), api.addr());
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    bytes.extend(json_login("/api/login", "POST", "alice@example.com", "wrong-pipelined", ""));
    stream.write_all(&bytes).unwrap();
    let (answers, closed) = read_until_close(&mut stream, Duration::from_secs(8));
    assert!(closed, "the client is not left hanging: {answers:?}");
    assert_eq!(answers.matches("HTTP/1.1 ").count(), 2, "both requests are answered: {answers}");
    assert!(answers.contains("HTTP/1.1 401"), "{answers}");
    assert!(gateway.wait_for_log("stuffgate::decision", Duration::from_secs(5)), "the pipelined login was checked");
}

#[test]
fn a_stalled_body_gets_408_and_is_not_forwarded() {
    let api = demo_api();
    let gateway = Gateway::start(&login_policy(""), api.addr());
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    stream
        .write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"email\":")
        .unwrap();
    // The body read allows 10 s between reads; the answer must come after that, and be 408.
    let (answer, _) = read_until_close(&mut stream, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("request_timeout"), "{answer:?}");
}

#[test]
fn a_hung_upstream_gets_504_in_json() {
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = hung.local_addr().unwrap();
    // Accept and never answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hung.incoming().take(20) {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let gateway = Gateway::start_with(
        &login_policy(""),
        upstream,
        Options { upstream_options: ", read_timeout_secs = 1", ..Options::default() },
    );
    let response = gateway.login(Some("198.51.100.30"), "alice@example.com", "pw");
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(20));
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"], "upstream_timeout");
    assert!(metrics(&gateway).contains(r#"stuffgate_upstream_errors_total{kind="timeout"}"#));
}

#[test]
fn a_down_upstream_gets_the_gateways_json_502_is_counted_and_the_query_is_not_logged() {
    let down = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gateway = Gateway::start(&login_policy(""), down);
    let response = client()
        .post(format!("{}/api/login?ref=secretacct@example.com&token=SECRET-QUERY-PASSWORD", gateway.url))
        .header("x-forwarded-for", "198.51.100.31")
        .header("content-type", "application/json")
        .body(r#"{"email":"a@example.com","password":"pw"}"#)
        .send()
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(metrics(&gateway).contains(r#"stuffgate_upstream_errors_total{kind="connect_refused"}"#));
    assert!(gateway.wait_for_log("<redacted>", Duration::from_secs(5)), "pingora's error line:\n{}", gateway.logs());
    let logs = gateway.logs();
    assert!(!logs.contains("SECRET-QUERY-PASSWORD") && !logs.contains("secretacct"), "{logs}");
}

#[test]
fn underscore_spellings_of_the_gateways_headers_are_stripped() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = Gateway::start(&login_policy(""), upstream);
    let mut stream = TcpStream::connect(address(&gateway)).unwrap();
    let spoofed = "X-Forwarded-For: 198.51.100.32\r\nX_Stuffgate_Client_IP: 7.7.7.7\r\nx-stuffgate_signals: forged\r\n";
    stream.write_all(&json_login("/api/login", "POST", "a@example.com", "pw", spoofed)).unwrap();
    assert!(read_response(&mut stream).starts_with("HTTP/1.1 401"));
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!head.contains("7.7.7.7") && !head.contains("forged"), "{head}");
    assert!(head.contains("x-stuffgate-client-ip: 198.51.100.32"), "{head}");
}

#[test]
fn fullwidth_nul_and_zero_width_spellings_of_an_account_share_its_counter() {
    let api = demo_api();
    let gateway = Gateway::start(
        &login_policy(
            "[[route.defense]]\ntype = \"failed_logins\"\nkey = \"account\"\nthreshold = 4\nwindow = \"10m\"\npenalty = \"10m\"\n",
        ),
        api.addr(),
    );
    for (i, spelling) in
        ["ｃａｒｏｌ@example.com", "carol@example.com\u{0}", "car\u{200b}ol@example.com", "CAROL@EXAMPLE.COM"]
            .iter()
            .enumerate()
    {
        let response = gateway.login(Some(&format!("203.0.113.{}", 40 + i)), spelling, "wrong-guess");
        assert_eq!(response.status(), 401, "{spelling:?} reaches the app and fails");
    }
    let blocked = gateway.login(Some("203.0.113.99"), "carol@example.com", "wrong-again");
    assert_eq!(blocked.status(), 429, "four spellings, one account");
}
