//! How a proxied request reaches the upstream on the wire (the `vendor/pingora-core` patches): a small request with a
//! body leaves the gateway in one TCP segment, counted by the upstream's own socket (`TCP_INFO`), every kind of
//! body still arrives whole, and idle upstream connections are reused while open and closed once the upstream closes
//! them.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use common::{shipped, Gateway};

/// What the upstream saw.
enum Seen {
    /// A complete request head, reported as soon as it is parsed (before its body).
    Head(String),
    /// A complete request: its head, its body as sent on the wire (chunk framing included), and the number of TCP
    /// segments with data its socket received.
    Request { head: String, body: Vec<u8>, data_segments: u32, connection: usize },
}

/// An upstream on loopback that reports every request it reads. With `keep_alive` false it answers 200 with
/// `connection: close`, so each request has a connection, and a segment count, of its own; with `keep_alive` true
/// the connection stays open and the segment count it reports is the connection's total so far.
fn counting_upstream(keep_alive: bool) -> (SocketAddr, Receiver<Seen>) {
    upstream_closing_idle(keep_alive, None)
}

/// As [`counting_upstream`]; with `idle_close`, a kept-alive connection idle that long is closed by the upstream
/// (as Node's 5 s or gunicorn's 2 s keep-alive timeouts do).
fn upstream_closing_idle(keep_alive: bool, idle_close: Option<Duration>) -> (SocketAddr, Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for (connection, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(idle_close).unwrap();
            let sender = sender.clone();
            std::thread::spawn(move || while serve_one(&mut stream, &sender, connection, keep_alive) {});
        }
    });
    (address, receiver)
}

/// Read and answer one request; whether the connection stays open for another.
fn serve_one(stream: &mut TcpStream, sender: &Sender<Seen>, connection: usize, keep_alive: bool) -> bool {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut head_end = None;
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        if head_end.is_none() {
            head_end = find(&buffer, b"\r\n\r\n").map(|at| at + 4);
            if let Some(end) = head_end {
                let _ = sender.send(Seen::Head(String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase()));
            }
        }
        let Some(end) = head_end else { continue };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let body = &buffer[end..];
        let complete = if head.contains("transfer-encoding: chunked") {
            body.ends_with(b"0\r\n\r\n")
        } else {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            body.len() >= length
        };
        if complete {
            let data_segments = data_segments_in(stream);
            let _ = sender.send(Seen::Request { head, body: body.to_vec(), data_segments, connection });
            let answer: &[u8] = if keep_alive {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
            };
            return stream.write_all(answer).is_ok() && keep_alive;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Segments carrying data that this socket has received (`tcpi_data_segs_in`, Linux 4.6+).
fn data_segments_in(stream: &TcpStream) -> u32 {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a valid, writable tcp_info and `length` holds its size.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut length,
        )
    };
    assert_eq!(rc, 0, "getsockopt(TCP_INFO): {}", std::io::Error::last_os_error());
    info.tcpi_data_segs_in
}

/// The next complete request the upstream saw, skipping head reports (and the gateway's readiness probes).
fn next_request(seen: &Receiver<Seen>, method_path: &str) -> (String, Vec<u8>, u32) {
    let (head, body, data_segments, _) = next_request_on(seen, method_path);
    (head, body, data_segments)
}

/// As [`next_request`], with the number of the upstream connection it came on.
fn next_request_on(seen: &Receiver<Seen>, method_path: &str) -> (String, Vec<u8>, u32, usize) {
    loop {
        match seen.recv_timeout(Duration::from_secs(10)).expect("the upstream got the request") {
            Seen::Request { head, body, data_segments, connection } if head.starts_with(method_path) => {
                return (head, body, data_segments, connection)
            }
            _ => continue,
        }
    }
}

fn drain(seen: &Receiver<Seen>) {
    while seen.try_recv().is_ok() {}
}

fn gateway(upstream: SocketAddr) -> Gateway {
    let policy = std::fs::read_to_string(shipped("benches/load/policy-route-only.toml")).unwrap();
    Gateway::start(&policy, upstream)
}

/// Send `request` over a fresh connection and return the gateway's answer.
fn exchange(gateway: &Gateway, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(gateway.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[test]
fn a_small_request_reaches_the_upstream_in_one_segment_with_its_body_whole() {
    let (upstream, seen) = counting_upstream(false);
    let gateway = gateway(upstream);
    drain(&seen);

    // A protected login: the gateway reads the body whole, judges it, then forwards it.
    let login = br#"{"email":"someone@example.com","password":"correct horse"}"#;
    let answer = exchange(&gateway, &post("/api/login", "", login));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (head, body, segments) = next_request(&seen, "post /api/login");
    assert_eq!(body, login);
    assert!(head.contains(&format!("content-length: {}", login.len())), "{head}");
    assert_eq!(segments, 1, "head and body of a login should leave the gateway in one segment");

    // An unprotected route: pingora streams the body, and the head still waits for it.
    let form = b"{\"comment\":\"hello\"}";
    let answer = exchange(&gateway, &post("/api/comments", "", form));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, body, segments) = next_request(&seen, "post /api/comments");
    assert_eq!(body, form);
    assert_eq!(segments, 1, "head and body of a streamed request should leave the gateway in one segment");
}

#[test]
fn large_chunked_and_empty_bodies_still_arrive_whole() {
    let (upstream, seen) = counting_upstream(false);
    let gateway = gateway(upstream);
    drain(&seen);

    // Larger than one joined write: the head goes first, then the body.
    let large: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let answer = exchange(&gateway, &post("/upload", "", &large));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, body, _) = next_request(&seen, "post /upload");
    assert_eq!(body.len(), large.len());
    assert!(body == large, "the large body arrived changed");

    // Chunked, with data, then chunked and empty: the held head is written by the final chunk.
    for (chunks, payload) in [("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"), ("0\r\n\r\n", "")] {
        let request = format!(
            "POST /chunked HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunks}"
        );
        let answer = exchange(&gateway, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (head, body, _) = next_request(&seen, "post /chunked");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let text = String::from_utf8_lossy(&body);
        let unframed: String = text.split("\r\n").enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, s)| s).collect();
        assert_eq!(unframed, payload, "chunked body on the wire: {text:?}");
    }
}

#[test]
fn a_request_that_expects_100_continue_has_its_head_sent_before_its_body() {
    let (upstream, seen) = counting_upstream(false);
    let gateway = gateway(upstream);
    drain(&seen);

    let body = b"{\"big\":\"upload\"}";
    let head = format!(
        "POST /api/upload HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(gateway.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // The client holds its body until told to continue, so the upstream must get the head alone.
    let upstream_head = loop {
        match seen.recv_timeout(Duration::from_secs(5)).expect("the head reached the upstream before any body") {
            Seen::Head(text) if text.starts_with("post /api/upload") => break text,
            _ => continue,
        }
    };
    assert!(upstream_head.contains("expect: 100-continue"), "{upstream_head}");
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    let (_, received, _) = next_request(&seen, "post /api/upload");
    assert_eq!(received, body);
}

#[test]
fn requests_on_a_reused_upstream_connection_each_take_one_segment() {
    let (upstream, seen) = counting_upstream(true);
    let gateway = gateway(upstream);
    drain(&seen);

    // The upstream reports the connection's segment total so far; the readiness probes may have used the connection
    // before, so compare each login with the one before it.
    let mut previous: Option<(usize, u32)> = None;
    for i in 1..=3u32 {
        let login = format!(r#"{{"email":"user{i}@example.com","password":"pass {i}"}}"#);
        let answer = exchange(&gateway, &post("/api/login", "", login.as_bytes()));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (_, body, segments, connection) = next_request_on(&seen, "post /api/login");
        assert_eq!(body, login.as_bytes(), "login {i} arrived changed");
        if let Some((first_connection, segments_before)) = previous {
            assert_eq!(connection, first_connection, "login {i} should reuse the pooled upstream connection");
            assert_eq!(segments, segments_before + 1, "login {i} should add one segment to the connection");
        }
        previous = Some((connection, segments));
    }
}

/// Sockets of this machine connected to `port` in state CLOSE_WAIT: the peer closed, this side has not yet.
fn close_wait_towards(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port =
                fields.get(2).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&"08")
        })
        .count()
}

#[test]
fn an_upstream_connection_the_upstream_closed_while_idle_is_never_reused_and_is_closed_soon() {
    let (upstream, seen) = upstream_closing_idle(true, Some(Duration::from_millis(300)));
    let gateway = gateway(upstream);
    drain(&seen);

    let login = |i: u32| {
        let body = format!(r#"{{"email":"user{i}@example.com","password":"pass {i}"}}"#);
        let answer = exchange(&gateway, &post("/api/login", "", body.as_bytes()));
        assert!(answer.starts_with("HTTP/1.1 200"), "login {i}: {answer}");
        let (_, received, _, connection) = next_request_on(&seen, "post /api/login");
        assert_eq!(received, body.as_bytes());
        connection
    };

    // Back to back, the pooled connection is reused.
    let first = login(1);
    assert_eq!(login(2), first, "a request right after another should reuse its upstream connection");

    // The upstream closes it after 300 ms idle: the next request must not be sent on it (it would fail), and goes
    // out on a new connection.
    std::thread::sleep(Duration::from_millis(800));
    let third = login(3);
    assert_ne!(third, first, "a connection the upstream closed must not be reused");

    // The gateway closes its side of connections the upstream closed while they sat in the pool, without waiting
    // for a request to find them (pingora's pool watched each with a task; ours sweeps once a second).
    // Past the upstream's 300 ms, so it has closed the third login's connection too.
    std::thread::sleep(Duration::from_millis(800));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut lingering = close_wait_towards(upstream.port());
    while lingering > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        lingering = close_wait_towards(upstream.port());
    }
    assert_eq!(lingering, 0, "upstream connections left half-closed in the gateway's pool");

    // And the gateway still serves.
    let fourth = login(4);
    assert_ne!(fourth, third);
}
