//! TLS listeners through real clients: Debian's `curl` (HTTP/1.1 and HTTP/2) and `openssl s_client` get their JA4
//! as the `client_fingerprint` of their login decisions, SNI picks between two certificates, a certificate replaced
//! under load fails no request, a silent client is dropped at the ClientHello deadline, and a trusted proxy's
//! fingerprint header is honoured from it alone. Certificates are generated here (rcgen); none is committed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{demo_api, free_port, recording_upstream};

const ALICE: (&str, &str) = ("alice@example.com", "correct horse battery staple");

/// JA4 of Debian 12's curl 7.88.1 on OpenSSL 3.0 (captured here, and the same as the value huginn-proxy's README
/// shows for a curl of that generation). Parts b (ciphers) and c (extensions, signature algorithms) follow the
/// OpenSSL build's defaults, so another OpenSSL release may change them; part a is the client's request.
const CURL_H1: &str = "t13d3112h1_e8f1e7e78f70_b26ce05bbdd6";
const CURL_H2: &str = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";
/// `openssl s_client` of the same OpenSSL: the same ciphers, one extension fewer than curl and no ALPN ("00").
const S_CLIENT: &str = "t13d311000_e8f1e7e78f70_1f22a2ca17c4";

const POLICY: &str = "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
                      body = { account = \"email\", password = \"password\" }\n\
                      [[route.defense]]\ntype = \"ip_rate\"\nlimit = 100000\nper = \"1m\"\n";

fn require(tool: &str) -> bool {
    let found =
        Command::new(tool).arg("--version").output().is_ok() || Command::new(tool).arg("version").output().is_ok();
    if !found && std::env::var("CI").as_deref() == Ok("true") {
        panic!("`{tool}` is needed by this test and is missing");
    }
    found
}

/// A certificate and key for `names`, written under `dir` as `<stem>.pem` and `<stem>.key`.
fn certificate(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

struct TlsGateway {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
    admin: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl TlsGateway {
    /// A gateway with a plain and a TLS listener (default certificate `localhost`, SNI certificate `shop.test`).
    fn start(upstream: SocketAddr, extra: &str) -> TlsGateway {
        TlsGateway::start_with(upstream, "", extra)
    }

    /// As [`TlsGateway::start`], with more keys for the `upstream` table (e.g. `, forward_fingerprint = true`).
    fn start_with(upstream: SocketAddr, upstream_options: &str, extra: &str) -> TlsGateway {
        let dir = tempfile::tempdir().unwrap();
        certificate(dir.path(), "default", &["localhost"]);
        certificate(dir.path(), "shop", &["shop.test"]);
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        let (port, tls_port, admin) = (free_port(), free_port(), free_port());
        let config = format!(
            "listen = [\"127.0.0.1:{port}\", {{ address = \"127.0.0.1:{tls_port}\", tls = {{ cert = \"default.pem\", \
             key = \"default.key\", sni = [{{ cert = \"shop.pem\", key = \"shop.key\" }}] }} }}]\n\
             admin = \"127.0.0.1:{admin}\"\nupstream = {{ address = \"{upstream}\"{upstream_options} }}\npolicies = [\"policy.toml\"]\n\
             threads = 2\nwatch_interval_secs = 1\nlog = {{ format = \"json\" }}\n{extra}\n"
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_stuffgate"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = common::capture_output(&mut child);
        let gateway = TlsGateway { child, dir, port, tls_port, admin: format!("http://127.0.0.1:{admin}"), lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", tls_port)).is_err() || TcpStream::connect(("127.0.0.1", admin)).is_err()
        {
            assert!(Instant::now() < deadline, "gateway did not start:\n{}", gateway.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.lines.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The decision events logged so far.
    fn decisions(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains("stuffgate::decision"))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The fingerprint of the `n`th decision (waiting for it to be logged).
    fn fingerprint_of_decision(&self, n: usize) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(decision) = self.decisions().get(n) {
                return decision["client_fingerprint"].as_str().map(str::to_string);
            }
            assert!(Instant::now() < deadline, "no decision #{n}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metrics(&self) -> String {
        common::client().get(format!("{}/metrics", self.admin)).send().unwrap().text().unwrap()
    }
}

impl Drop for TlsGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn login_body() -> String {
    serde_json::json!({ "email": ALICE.0, "password": "wrong" }).to_string()
}

/// A login through `curl` over TLS; its status.
fn curl_login(gateway: &TlsGateway, version: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", version, "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", gateway.tls_port)])
        .args(["-H", "content-type: application/json", "--data", &login_body()])
        .arg(format!("https://localhost:{}/api/login", gateway.tls_port))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `openssl s_client` sends `request` and returns everything it printed.
fn s_client(port: u16, server_name: &str, request: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", server_name, "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn login_request() -> String {
    let body = login_body();
    format!(
        "POST /api/login HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn curl_over_http1_and_http2_and_openssl_s_client_log_their_ja4() {
    if !require("curl") || !require("openssl") {
        return;
    }
    let api = demo_api();
    let gateway = TlsGateway::start(api.addr(), "");
    assert_eq!(curl_login(&gateway, "--http1.1"), "401 1.1");
    assert_eq!(gateway.fingerprint_of_decision(0).as_deref(), Some(CURL_H1), "{}", gateway.logs());
    assert_eq!(curl_login(&gateway, "--http2"), "401 2");
    assert_eq!(gateway.fingerprint_of_decision(1).as_deref(), Some(CURL_H2));
    let out = s_client(gateway.tls_port, "localhost", &login_request());
    assert!(out.contains("HTTP/1.1 401"), "{out}");
    assert_eq!(gateway.fingerprint_of_decision(2).as_deref(), Some(S_CLIENT));
    assert!(gateway.decisions().iter().all(|d| d["fingerprint_source"] == "tls"));
    // The same login over plain HTTP has no TLS fingerprint: the fallback is the HTTP request head's.
    let plain = common::client()
        .post(format!("http://127.0.0.1:{}/api/login", gateway.port))
        .header("content-type", "application/json")
        .body(login_body())
        .send()
        .unwrap();
    assert_eq!(plain.status(), 401);
    let plain_print = gateway.fingerprint_of_decision(3).unwrap_or_default();
    assert!(plain_print.starts_with("http_"), "{plain_print}");
    assert_eq!(gateway.decisions()[3]["fingerprint_source"], "http");
}

/// The certificate the gateway serves for `server_name`, as PEM.
fn served_certificate(port: u16, server_name: &str) -> String {
    let out = s_client(port, server_name, "");
    let start = out.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("{out}"));
    let end = out.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    out[start..end].to_string()
}

fn pem_file(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn sni_picks_the_certificate_that_names_the_host_and_the_default_otherwise() {
    if !require("openssl") {
        return;
    }
    let api = demo_api();
    let gateway = TlsGateway::start(api.addr(), "");
    let default = pem_file(gateway.dir.path().join("default.pem"));
    let shop = pem_file(gateway.dir.path().join("shop.pem"));
    assert_eq!(served_certificate(gateway.tls_port, "shop.test"), shop);
    assert_eq!(served_certificate(gateway.tls_port, "SHOP.test"), shop);
    assert_eq!(served_certificate(gateway.tls_port, "localhost"), default);
    assert_eq!(served_certificate(gateway.tls_port, "other.example"), default);
}

/// A relay that forwards the client's first bytes in pieces, `piece` bytes at a time with a pause between them,
/// as a ClientHello spread over several TCP segments arrives.
fn trickling_relay(to: u16, piece: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else { return };
        let mut server = TcpStream::connect(("127.0.0.1", to)).unwrap();
        server.set_nodelay(true).unwrap();
        let (mut client_read, mut server_read) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server_read, &mut client);
        });
        let mut first = vec![0u8; 4096];
        let n = client_read.read(&mut first).unwrap_or(0);
        for chunk in first[..n].chunks(piece) {
            server.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        let _ = std::io::copy(&mut client_read, &mut server);
    });
    port
}

#[test]
fn a_client_hello_split_over_segments_gives_the_same_fingerprint() {
    if !require("openssl") {
        return;
    }
    let api = demo_api();
    let gateway = TlsGateway::start(api.addr(), "");
    let relay = trickling_relay(gateway.tls_port, 100);
    let out = s_client(relay, "localhost", &login_request());
    assert!(out.contains("HTTP/1.1 401"), "{out}");
    assert_eq!(gateway.fingerprint_of_decision(0).as_deref(), Some(S_CLIENT), "{}", gateway.logs());
}

#[test]
fn a_client_that_sends_no_hello_is_closed_at_the_deadline() {
    let api = demo_api();
    let gateway = TlsGateway::start(api.addr(), "[connections]\ntls_hello_timeout_secs = 1\n");
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut silent = TcpStream::connect(("127.0.0.1", gateway.tls_port)).unwrap();
        silent.write_all(partial).unwrap();
        // Far beyond the deadline: the gateway, not this timeout, ends the read.
        silent.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 16];
        let read = silent.read(&mut buf);
        assert!(matches!(read, Ok(0)) || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset));
    }
    let metrics = gateway.metrics();
    assert!(metrics.contains("stuffgate_connections_closed_total{reason=\"tls_hello_timeout\"} 2"), "{metrics}");
}

#[test]
fn a_certificate_replaced_under_load_fails_no_request() {
    if !require("curl") {
        return;
    }
    let api = demo_api();
    let gateway = TlsGateway::start(api.addr(), "");
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let url = format!("https://localhost:{}/", gateway.tls_port);
    let resolve = format!("localhost:{}:127.0.0.1", gateway.tls_port);
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, done, failed, url, resolve) =
                (stop.clone(), done.clone(), failed.clone(), url.clone(), resolve.clone());
            std::thread::spawn(move || {
                // Bounded: at most 400 new connections per worker.
                for _ in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let out = Command::new("curl")
                        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--resolve", &resolve, &url])
                        .output()
                        .unwrap();
                    let code = String::from_utf8_lossy(&out.stdout).to_string();
                    if code != "200" {
                        failed.lock().unwrap().push(code);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let wait_for = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(20);
    // A new certificate, written the way an ACME client renews: a new file renamed over the old one, the key
    // first (for a moment the pair does not match, and is refused), then the certificate.
    let fresh = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(fresh.path(), "renewed", &["localhost", "renewed.test"]);
    std::fs::copy(&key, gateway.dir.path().join("default.key.new")).unwrap();
    std::fs::rename(gateway.dir.path().join("default.key.new"), gateway.dir.path().join("default.key")).unwrap();
    std::fs::copy(&cert, gateway.dir.path().join("default.pem.new")).unwrap();
    std::fs::rename(gateway.dir.path().join("default.pem.new"), gateway.dir.path().join("default.pem")).unwrap();
    assert!(gateway.wait_for_log("TLS certificates reloaded"), "{}", gateway.logs());
    let after = done.load(Ordering::Relaxed);
    wait_for(after + 20);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(failed.lock().unwrap().is_empty(), "failed requests: {:?}", failed.lock().unwrap());
    assert!(done.load(Ordering::Relaxed) >= after + 20);
    if require("openssl") {
        assert_eq!(served_certificate(gateway.tls_port, "localhost"), pem_file(cert));
    }
}

#[test]
fn a_fingerprint_header_is_honoured_from_a_trusted_proxy_only() {
    let (upstream, heads) = recording_upstream(401);
    let gateway = TlsGateway::start(
        upstream,
        "trusted_proxies = [\"127.0.0.1\"]\nfingerprint_header = \"CloudFront-Viewer-JA4-Fingerprint\"\n",
    );
    let send = |local: &str| {
        let client = reqwest::blocking::Client::builder()
            .local_address(local.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let response = client
            .post(format!("http://127.0.0.1:{}/api/login", gateway.port))
            .header("content-type", "application/json")
            .header("cloudfront-viewer-ja4-fingerprint", "t13d1516h2_8daaf6152771_e5627efa2ab1")
            .body(login_body())
            .send()
            .unwrap();
        assert_eq!(response.status(), 401);
        heads.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    // From the trusted proxy (127.0.0.1).
    send("127.0.0.1");
    let wait = |n: usize| gateway.fingerprint_of_decision(n);
    assert_eq!(wait(0).as_deref(), Some("t13d1516h2_8daaf6152771_e5627efa2ab1"));
    assert_eq!(gateway.decisions()[0]["fingerprint_source"], "header");
    // From a client (127.0.0.2, not trusted): the header is not the client's word to give.
    send("127.0.0.2");
    let own = wait(1).unwrap_or_default();
    assert!(own.starts_with("http_") && !own.contains("8daaf6152771"), "the client's own HTTP fingerprint: {own}");
    assert_eq!(gateway.decisions()[1]["fingerprint_source"], "http");
}

#[test]
fn the_fingerprint_reaches_the_upstream_only_when_asked() {
    if !require("curl") {
        return;
    }
    for forward in [false, true] {
        let (upstream, heads) = recording_upstream(401);
        let options = if forward { ", forward_fingerprint = true" } else { "" };
        let gateway = TlsGateway::start_with(upstream, options, "");
        assert_eq!(curl_login(&gateway, "--http2"), "401 2");
        let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
        let header = format!("x-stuffgate-client-fingerprint: {CURL_H2}");
        assert_eq!(head.contains(&header), forward, "{head}");
    }
}

#[test]
fn connections_waiting_for_their_hello_count_against_the_per_client_cap() {
    let api = demo_api();
    let gateway = TlsGateway::start(api.addr(), "[connections]\nmax_connections_per_client = 2\n");
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", gateway.tls_port)).unwrap()).collect();
    // Both are counted from accept, before any hello (once each listener's service has taken its connection from
    // the backlog: the per-thread services start independently): then a third is closed at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway.metrics().contains("stuffgate_open_connections 2\n") {
        assert!(Instant::now() < deadline, "the held connections were never counted:\n{}", gateway.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let mut third = TcpStream::connect(("127.0.0.1", gateway.tls_port)).unwrap();
        third.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let read = third.read(&mut [0u8; 8]);
        if matches!(read, Ok(0)) || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset) {
            break;
        }
        // The held connections may not have been accepted yet when the third was.
        assert!(Instant::now() < deadline, "the third connection was never refused");
    }
    let metrics = gateway.metrics();
    assert!(
        metrics.contains("stuffgate_connections_refused_total{reason=\"max_connections_per_client\"}"),
        "{metrics}"
    );
    drop(held);
}

/// A CA, and a certificate for `localhost` it signed, written under `dir`.
fn signed_certificate(dir: &Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("upstream.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("upstream.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    dir.join("ca.pem")
}

#[test]
fn an_https_upstream_is_verified_against_the_configured_ca() {
    // The upstream: a gateway whose TLS listener serves a certificate our own CA signed, in front of the demo API.
    let api = demo_api();
    let upstream = TlsGateway::start(api.addr(), "");
    let ca = signed_certificate(upstream.dir.path());
    for file in ["pem", "key"] {
        std::fs::copy(
            upstream.dir.path().join(format!("upstream.{file}")),
            upstream.dir.path().join(format!("default.{file}")),
        )
        .unwrap();
    }
    assert!(upstream.wait_for_log("TLS certificates reloaded"), "{}", upstream.logs());
    let target: SocketAddr = format!("127.0.0.1:{}", upstream.tls_port).parse().unwrap();
    let login = |gateway: &TlsGateway| {
        common::client()
            .post(format!("http://127.0.0.1:{}/api/login", gateway.port))
            .header("content-type", "application/json")
            .body(login_body())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let ca_option = format!(", tls = true, sni = \"localhost\", ca = \"{}\"", ca.display());
    let verified = TlsGateway::start_with(target, &ca_option, "");
    assert_eq!(login(&verified), 401, "{}", verified.logs());
    // A CA that did not sign it: the upstream is refused, not trusted.
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = signed_certificate(other.path());
    let wrong = TlsGateway::start_with(
        target,
        &format!(", tls = true, sni = \"localhost\", ca = \"{}\"", wrong_ca.display()),
        "",
    );
    assert_eq!(login(&wrong), 502);
}
