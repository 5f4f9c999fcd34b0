//! A small HTTP/1.1 client over tokio's TcpStream for the replay and the load generator: keep-alive, one
//! request in flight per connection, Content-Length or chunked answers, bounded sizes and timeouts. Loopback
//! targets only — the replay sends attack traffic.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head and body read.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub url: String,
}

impl Target {
    /// `http://127.0.0.1:8080` (a trailing path is ignored). Refuses anything but plain HTTP to loopback.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: the replay speaks plain HTTP; write http://127.0.0.1:PORT"))?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("`{url}` names no host"));
        }
        let with_port =
            if host.contains(':') && !host.ends_with(']') { host.to_string() } else { format!("{host}:80") };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("`{host}` does not resolve: {e}"))?
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| {
                format!("`{host}` is not a loopback address: replays and load runs only target this machine (127.0.0.1 / ::1)")
            })?;
        Ok(Target { addr, host: host.to_string(), url: format!("http://{host}") })
    }
}

#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    /// `x-stuffgate-decision`, when the gateway answered itself.
    pub decision: Option<String>,
    /// `x-demo-upstream` was present: the demo app answered.
    pub upstream: bool,
    pub body: Vec<u8>,
}

pub struct Conn {
    target: Target,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    head: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    pub fn new(target: Target, timeout: Duration) -> Conn {
        Conn { target, stream: None, buf: Vec::with_capacity(8192), head: Vec::with_capacity(512), timeout }
    }

    /// Send one request and read its answer. A kept-alive connection the server closed meanwhile is reopened
    /// once, when not a byte of the answer had arrived.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let reused = self.stream.is_some();
        match tokio::time::timeout(self.timeout, self.attempt(method, path, headers, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if reused && is_stale(&e) => {
                self.stream = None;
                match tokio::time::timeout(self.timeout, self.attempt(method, path, headers, body)).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.stream = None;
                        Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
                    }
                }
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
            }
        }
    }

    async fn attempt(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        self.head.clear();
        use std::io::Write as _;
        write!(self.head, "{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.target.host)?;
        for (name, value) in headers {
            write!(self.head, "{name}: {value}\r\n")?;
        }
        if !body.is_empty() || method == "POST" {
            write!(self.head, "content-length: {}\r\n", body.len())?;
        }
        self.head.extend_from_slice(b"\r\n");
        self.head.extend_from_slice(body);
        let Conn { stream, buf, head, .. } = self;
        let Some(stream) = stream.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no connection"));
        };
        stream.write_all(head).await.map_err(stale)?;
        let (response, close) = read_response(stream, buf, method == "HEAD").await?;
        if close {
            self.stream = None;
        }
        Ok(response)
    }
}

/// Mark errors that mean "the server had closed the kept-alive connection".
fn stale(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            io::Error::new(io::ErrorKind::ConnectionReset, STALE)
        }
        _ => e,
    }
}

const STALE: &str = "stale keep-alive connection";

fn is_stale(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionReset && e.to_string() == STALE
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, nothing_yet: bool) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await;
    match n {
        Ok(0) if nothing_yet => Err(io::Error::new(io::ErrorKind::ConnectionReset, STALE)),
        Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection mid-answer")),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if nothing_yet => Err(stale(e)),
        Err(e) => Err(e),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Read one answer from `stream`; `buf` keeps bytes past it (none, as one request is in flight). Returns whether
/// the connection must close.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> io::Result<(Response, bool)> {
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
        }
        let nothing_yet = buf.is_empty();
        fill(stream, buf, nothing_yet).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response head is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line `{status_line}`")))?;
    let mut response = Response { status, ..Response::default() };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("x-stuffgate-decision") {
            response.decision = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("x-demo-upstream") {
            response.upstream = true;
        }
    }
    buf.drain(..head_end + 4);
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((response, close));
    }
    if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = find(buf, b"\r\n") {
                    break at;
                }
                fill(stream, buf, false).await?;
            };
            let size_text =
                std::str::from_utf8(&buf[..line_end]).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
            let size = usize::from_str_radix(&size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    if let Some(at) = find(buf, b"\r\n") {
                        let empty = at == 0;
                        buf.drain(..at + 2);
                        if empty {
                            break;
                        }
                        continue;
                    }
                    fill(stream, buf, false).await?;
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "response body too large"));
            }
            while buf.len() < size + 2 {
                fill(stream, buf, false).await?;
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
        response.body = body;
    } else if let Some(length) = length {
        if length > MAX_BODY {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response body too large"));
        }
        while buf.len() < length {
            fill(stream, buf, false).await?;
        }
        response.body = buf.drain(..length).collect();
    } else {
        // Delimited by the end of the connection.
        loop {
            if buf.len() > MAX_BODY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "response body too large"));
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await? {
                0 => break,
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
        response.body = std::mem::take(buf);
        close = true;
    }
    Ok((response, close))
}

/// GET a URL on loopback and return its body when the answer is 200 (for `/__demo/stats` and `/healthz`).
pub async fn get(url: &str, timeout: Duration) -> Option<Vec<u8>> {
    let target = Target::parse(url).ok()?;
    let path =
        url.strip_prefix("http://").and_then(|r| r.find('/').map(|i| r[i..].to_string())).unwrap_or_else(|| "/".into());
    let mut conn = Conn::new(target, timeout);
    let response = conn.request("GET", &path, &[("connection", "close")], b"").await.ok()?;
    (response.status == 200).then_some(response.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(Target::parse("http://127.0.0.1:8080").is_ok());
        assert!(Target::parse("http://localhost:8080/x").is_ok());
        assert!(Target::parse("https://127.0.0.1:8080").is_err());
        assert!(Target::parse("http://192.0.2.1:80").unwrap_err().contains("loopback"));
    }

    #[test]
    fn keep_alive_chunked_and_close_delimited_answers_are_read() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut seen = Vec::new();
                let answers: [&[u8]; 2] = [
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-demo-upstream: 1\r\n\r\nhello",
                    b"HTTP/1.1 429 Too Many\r\ntransfer-encoding: chunked\r\nx-stuffgate-decision: block\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                ];
                for answer in answers {
                    loop {
                        let mut chunk = [0u8; 1024];
                        let n = socket.read(&mut chunk).await.unwrap();
                        seen.extend_from_slice(&chunk[..n]);
                        if let Some(at) = find(&seen, b"\r\n\r\n") {
                            let len = if seen.starts_with(b"POST") { 2 } else { 0 };
                            if seen.len() >= at + 4 + len {
                                seen.drain(..at + 4 + len);
                                break;
                            }
                        }
                    }
                    socket.write_all(answer).await.unwrap();
                }
                // The server closes the kept-alive connection; the client's next request is retried on a new one.
                drop(socket);
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut chunk = [0u8; 1024];
                let _ = socket.read(&mut chunk).await.unwrap();
                socket.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
            });
            let target = Target::parse(&format!("http://{addr}")).unwrap();
            let mut conn = Conn::new(target, Duration::from_secs(5));
            let first = conn.request("POST", "/a", &[], b"{}").await.unwrap();
            assert_eq!((first.status, first.upstream, first.body.as_slice()), (200, true, &b"hello"[..]));
            let second = conn.request("GET", "/b", &[], b"").await.unwrap();
            assert_eq!(second.status, 429);
            assert_eq!(second.decision.as_deref(), Some("block"));
            assert_eq!(second.body, b"abcde");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let third = conn.request("GET", "/c", &[], b"").await.unwrap();
            assert_eq!(third.status, 201);
        });
    }
}
