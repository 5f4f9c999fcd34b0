//! Raw-socket helpers for tests that speak HTTP/1.1 by hand: a chosen source address, reading to the close, one
//! response at a time.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::Gateway;

pub fn address(gateway: &Gateway) -> SocketAddr {
    gateway.url.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection from a chosen loopback source address (127.0.0.0/8 is all local on Linux).
pub fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Read until the peer closes or `limit` passes. Returns what arrived and whether the peer closed.
pub fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&seen).into_owned(), false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&seen).into_owned(), false)
            }
            // A reset is a close too.
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), true),
        }
    }
}

/// Read one response head and its content-length body (enough for the small answers used here).
pub fn read_response(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => return String::from_utf8_lossy(&seen).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    seen.extend_from_slice(&body);
    String::from_utf8_lossy(&seen).into_owned()
}
