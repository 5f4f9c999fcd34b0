//! Connection-level limits that pingora 0.9 does not have: an idle keep-alive timeout, a total deadline for a
//! request's head (slowloris), a head size cap far below pingora's 1 MiB, and caps on open connections per process
//! and per client address.
//!
//! Without them one client could hold every descriptor and gigabytes of header buffers: an
//! HTTP/1.1 connection that has been used once waits forever for its next request, a head trickled one byte every
//! minute never times out, and 300 connections each holding 1 MB of unterminated head cost 400 MB.
//!
//! Mechanism: [`GuardedApp`] wraps the proxy application. It admits or refuses each accepted connection against the
//! caps, then hands pingora a [`GuardedStream`]: the socket with deadlines and a byte budget applied to the reads that
//! happen while no request is in progress. The proxy's hooks tell the stream when a request head has been parsed
//! ([`request_started`], from `early_request_filter`) and when its answer is done ([`request_finished`], from
//! `logging`); body reads in between are left to pingora's and the body reader's own timeouts.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use super::proxy_protocol::{self, Parsed};
use crate::attempt::IpKey;
pub use crate::config::connections::{admin_limits, ConnectionLimits, ADMIN_MAX_CONNECTIONS};
use crate::ip_ranges::IpRanges;
use crate::reload::PolicyHandle;
use crate::telemetry::metrics;

/// IPv6 clients are counted per /64 against `max_connections_per_client`, as the default policy keys them: one
/// subscriber is handed a whole /64, and counting exact addresses would let it open the cap 2^64 times.
pub const CLIENT_IPV6_PREFIX: u8 = 64;

/// Open connections, in total and per client address.
pub struct Tracker {
    limits: ConnectionLimits,
    /// The trusted proxies: exempt from the per-client cap, and the only peers whose PROXY header is read. The
    /// gateway state's list itself, so a reload that changes `trusted_proxies` applies here too.
    trusted: Arc<ArcSwap<IpRanges>>,
    open: AtomicUsize,
    /// Open connections per client, keyed as the defenses key addresses (IPv6 per /64).
    per_client: Mutex<HashMap<IpKey, usize>>,
    /// Refuses a blocked client a PROXY protocol header names (the listener saw only the proxy's address).
    refuse_blocked: Option<Arc<RefuseBlocked>>,
    /// The admin listener's tracker: its own counters, not the proxy's gauge.
    admin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Global,
    PerClient,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Global => "max_connections",
            Refusal::PerClient => "max_connections_per_client",
        }
    }

    /// The label on the admin listener's tracker.
    pub fn admin_label(self) -> &'static str {
        match self {
            Refusal::Global => "admin_max_connections",
            Refusal::PerClient => "admin_max_connections_per_client",
        }
    }
}

impl Tracker {
    pub fn new(limits: ConnectionLimits, trusted: Arc<ArcSwap<IpRanges>>) -> Arc<Tracker> {
        Arc::new(Tracker {
            limits,
            trusted,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            refuse_blocked: None,
            admin: false,
        })
    }

    /// A proxy tracker whose PROXY protocol clients are checked against `refuse` once their header is read.
    pub fn with_refusal(
        limits: ConnectionLimits,
        trusted: Arc<ArcSwap<IpRanges>>,
        refuse: Option<Arc<RefuseBlocked>>,
    ) -> Arc<Tracker> {
        let mut tracker = Tracker::new(limits, trusted);
        if let Some(tracker) = Arc::get_mut(&mut tracker) {
            tracker.refuse_blocked = refuse;
        }
        tracker
    }

    /// The admin listener's tracker: `max_connections` at most, no trusted peers, counted apart from the proxy.
    pub fn admin(limits: ConnectionLimits) -> Arc<Tracker> {
        let mut tracker = Tracker::new(limits, Arc::new(ArcSwap::from_pointee(IpRanges::default())));
        if let Some(tracker) = Arc::get_mut(&mut tracker) {
            tracker.admin = true;
        }
        tracker
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.load().contains(ip)
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Count a new connection from `client`, or say which cap refuses it.
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Permit, Refusal> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Global);
        }
        let counted = client.filter(|ip| !self.is_trusted(*ip)).map(|ip| IpKey::new(ip, CLIENT_IPV6_PREFIX));
        if let Some(key) = counted {
            let mut per_client = self.per_client.lock();
            let count = per_client.entry(key).or_insert(0);
            if *count >= self.limits.max_connections_per_client {
                drop(per_client);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerClient);
            }
            *count += 1;
        }
        if !self.admin {
            metrics::OPEN_CONNECTIONS.set(self.open() as i64);
        }
        Ok(Permit { tracker: self.clone(), client: counted })
    }
}

/// One admitted connection; dropping it frees the slot.
pub struct Permit {
    tracker: Arc<Tracker>,
    client: Option<IpKey>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ip) = self.client {
            let mut per_client = self.tracker.per_client.lock();
            if let Some(count) = per_client.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_client.remove(&ip);
                }
            }
        }
        let now = self.tracker.open.fetch_sub(1, Ordering::AcqRel) - 1;
        if !self.tracker.admin {
            metrics::OPEN_CONNECTIONS.set(now as i64);
        }
    }
}

/// The proxy application behind the connection caps and deadlines.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    tracker: Arc<Tracker>,
}

impl<A> GuardedApp<A> {
    pub fn new(inner: A, tracker: Arc<Tracker>) -> GuardedApp<A> {
        GuardedApp { inner: Arc::new(inner), tracker }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if stream.as_any().is::<GuardedStream>() {
            // A stream handed back for reuse is already counted and guarded.
            return self.inner.process_new(stream, shutdown).await;
        }
        let client =
            stream.get_socket_digest().and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        match self.tracker.admit(client) {
            Ok(permit) => {
                let mut stream = stream;
                let limits = self.tracker.limits();
                let mut preamble = Preamble::default();
                if limits.proxy_protocol && client.is_some_and(|ip| self.tracker.is_trusted(ip)) {
                    match read_proxy_header(&mut stream, limits.header_timeout).await {
                        Ok(found) => {
                            let refuse = self.tracker.refuse_blocked.as_ref();
                            if let (Some(refuse), Some(ip)) = (refuse, found.client) {
                                if refuse.refuses(ip) {
                                    // The connection carries this one client: refused before any HTTP parsing.
                                    return None;
                                }
                            }
                            preamble = found
                        }
                        Err(reason) => {
                            // Nothing of the connection reaches the proxy: its address could not be known.
                            metrics::CONNECTIONS_CLOSED.with_label_values(&["proxy_header"]).inc();
                            tracing::warn!(peer = ?client, reason, "connection from a trusted proxy closed: no valid PROXY header");
                            return None;
                        }
                    }
                }
                let guarded = GuardedStream::new(stream, limits, permit, preamble);
                self.inner.process_new(Box::new(guarded), shutdown).await
            }
            Err(refusal) => {
                let label = if self.tracker.admin { refusal.admin_label() } else { refusal.as_str() };
                metrics::CONNECTIONS_REFUSED.with_label_values(&[label]).inc();
                refuse(stream).await;
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The listener's check on each accepted connection, before any HTTP parsing: an address the policy blocks by its
/// address alone (a manual ban, an `ip_list` deny, or an address-level defense's refusal still in force, see
/// `crate::decisions::AddressBlocks`) is closed at once. A trusted proxy's own address is never refused: the
/// clients behind it are judged one by one, by request.
pub struct RefuseBlocked {
    policy: Arc<PolicyHandle>,
    trusted: Arc<ArcSwap<IpRanges>>,
}

impl std::fmt::Debug for RefuseBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefuseBlocked")
    }
}

/// `stuffgate_connections_refused_total{reason="blocked_address"}`, resolved once (the label lookup hashes).
static REFUSED_BLOCKED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| metrics::CONNECTIONS_REFUSED.with_label_values(&["blocked_address"]));

impl RefuseBlocked {
    pub fn new(policy: Arc<PolicyHandle>, trusted: Arc<ArcSwap<IpRanges>>) -> Arc<RefuseBlocked> {
        Arc::new(RefuseBlocked { policy, trusted })
    }

    /// Whether a connection from `ip` is refused now (and counted). No allocation, no store round trip.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        let env = self.policy.env();
        if !env.decisions.refused_at_accept(ip, env.clock.now_nanos()) || self.trusted.load().contains(ip) {
            return false;
        }
        REFUSED_BLOCKED.inc();
        true
    }
}

#[async_trait]
impl pingora::listeners::ConnectionFilter for RefuseBlocked {
    async fn should_accept(&self, addr: Option<&std::net::SocketAddr>) -> bool {
        addr.is_none_or(|addr| !self.refuses(addr.ip()))
    }
}

/// Answer 503 and close, without reading the request: the connection was never admitted.
async fn refuse(mut stream: Stream) {
    const BODY: &str = r#"{"error":"too_many_connections","message":"Too many open connections. Please retry."}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await
    })
    .await;
    // Send FIN and linger briefly, reading what the client sent, so that its unread request does not turn the close
    // into a reset that would discard the answer before the client reads it.
    Shutdown::shutdown(stream.as_mut()).await;
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut sink = [0u8; 4096];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await;
}

/// What a PROXY protocol header said, and the bytes read after it (the start of the first request).
#[derive(Default)]
struct Preamble {
    client: Option<IpAddr>,
    rest: Vec<u8>,
}

/// Read a PROXY protocol header within `limit` (see `proxy_protocol.rs`).
async fn read_proxy_header(stream: &mut Stream, limit: Duration) -> Result<Preamble, &'static str> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            let mut chunk = [0u8; 512];
            let n = tokio::io::AsyncReadExt::read(stream, &mut chunk).await.map_err(|_| "read error")?;
            if n == 0 {
                return Err("closed before a PROXY header");
            }
            buf.extend_from_slice(&chunk[..n]);
            match proxy_protocol::parse(&buf) {
                Parsed::Incomplete if buf.len() <= proxy_protocol::MAX_V2 => {}
                Parsed::Incomplete => return Err("PROXY header too long"),
                Parsed::Header { client, length } => return Ok(Preamble { client, rest: buf.split_off(length) }),
                Parsed::Invalid(why) => return Err(why),
            }
        }
    };
    tokio::time::timeout(limit, read).await.map_err(|_| "no PROXY header in time")?
}

/// The client address a trusted proxy's PROXY header gave for this session's connection.
pub fn proxied_client(session: &Session) -> Option<IpAddr> {
    guarded(session).and_then(|stream| stream.proxied_client)
}

const AWAIT_FIRST: u8 = 0;
const IN_REQUEST: u8 = 1;
const IDLE: u8 = 2;

/// A client socket whose reads between requests are bounded in time and size.
pub struct GuardedStream {
    inner: Stream,
    idle_timeout: Duration,
    header_timeout: Duration,
    max_header_bytes: usize,
    /// Set by the proxy hooks (through a shared reference to this stream): AWAIT_FIRST, IN_REQUEST or IDLE.
    phase: AtomicU8,
    /// Bumped on every phase change so that the reader notices a request that started and ended between two reads.
    epoch: AtomicU64,
    seen_epoch: u64,
    /// Bytes read since the current head began (or the connection went idle).
    head_bytes: usize,
    /// One timer for the connection's life, moved with `reset` rather than dropped and re-created per request.
    /// That keeps it registered while a request is in progress, which matters for cost: tokio wakes its own driver
    /// (an eventfd write and an extra `epoll_wait`) whenever a timer is added to an empty wheel, and moving a
    /// registered timer later is a single compare-and-swap.
    deadline: Pin<Box<Sleep>>,
    /// Whether `deadline` applies now: between requests, not while one is in progress.
    deadline_armed: bool,
    /// The client a PROXY protocol header named.
    proxied_client: Option<IpAddr>,
    /// Bytes read with the PROXY header that belong to the first request, served before the socket's.
    rest: Vec<u8>,
    rest_at: usize,
    _permit: Permit,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream").field("inner", &self.inner).finish()
    }
}

impl GuardedStream {
    fn new(inner: Stream, limits: &ConnectionLimits, permit: Permit, preamble: Preamble) -> GuardedStream {
        GuardedStream {
            inner,
            idle_timeout: limits.idle_timeout,
            header_timeout: limits.header_timeout,
            max_header_bytes: limits.max_header_bytes,
            phase: AtomicU8::new(AWAIT_FIRST),
            epoch: AtomicU64::new(0),
            seen_epoch: 0,
            head_bytes: 0,
            // A new connection has `header_timeout` from accept to deliver its first head.
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            deadline_armed: true,
            proxied_client: preamble.client,
            rest: preamble.rest,
            rest_at: 0,
            _permit: permit,
        }
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Best effort: the connection is about to be closed for `status`; tell the client why if the socket takes the
    /// bytes right now. Nothing of a response can have been written, since no request is in progress.
    fn try_answer(&mut self, cx: &mut Context<'_>, status: &str) {
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = Pin::new(&mut self.inner).poll_write(cx, answer.as_bytes());
    }

    fn close_for(&mut self, cx: &mut Context<'_>, reason: &'static str) -> Poll<io::Result<()>> {
        let label = match (self._permit.tracker.admin, reason) {
            (false, _) => reason,
            (true, "idle_timeout") => "admin_idle_timeout",
            (true, "header_timeout") => "admin_header_timeout",
            (true, _) => "admin_header_too_large",
        };
        metrics::CONNECTIONS_CLOSED.with_label_values(&[label]).inc();
        match reason {
            "header_too_large" => self.try_answer(cx, "431 Request Header Fields Too Large"),
            "header_timeout" => self.try_answer(cx, "408 Request Timeout"),
            _ => {}
        }
        let kind = if reason == "header_too_large" { io::ErrorKind::InvalidData } else { io::ErrorKind::TimedOut };
        Poll::Ready(Err(io::Error::new(kind, reason)))
    }
}

/// The guarded stream under a session, when there is one (HTTP/1 over a guarded listener).
fn guarded(session: &Session) -> Option<&GuardedStream> {
    guarded_server(session.as_downstream())
}

fn guarded_server(session: &ServerSession) -> Option<&GuardedStream> {
    let stream = session.stream()?;
    (**stream).as_any().downcast_ref::<GuardedStream>()
}

/// The admin listener's request head is parsed: its body reads are the handler's.
pub fn admin_request_started(session: &ServerSession) {
    if let Some(stream) = guarded_server(session) {
        stream.set_phase(IN_REQUEST);
    }
}

/// The admin listener's answer is ready: the connection is idle until its next head.
pub fn admin_request_finished(session: &ServerSession) {
    if let Some(stream) = guarded_server(session) {
        stream.set_phase(IDLE);
    }
}

/// The request head is parsed: from here until [`request_finished`] reads belong to the request body.
pub fn request_started(session: &mut Session) {
    // Pipelined requests are then served in order (RFC 9112 §9.3.2) instead of being dropped while their client
    // waits; each one goes through every phase, checks included.
    session.as_downstream_mut().set_pipelining_enabled(true);
    if let Some(stream) = guarded(session) {
        stream.set_phase(IN_REQUEST);
    }
}

/// The answer is written: the connection is idle until the next head begins.
pub fn request_finished(session: &Session) {
    if let Some(stream) = guarded(session) {
        stream.set_phase(IDLE);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let epoch = this.epoch.load(Ordering::Acquire);
        let phase = this.phase.load(Ordering::Acquire);
        if epoch != this.seen_epoch {
            this.seen_epoch = epoch;
            this.head_bytes = 0;
            this.deadline_armed = phase == IDLE;
            if this.deadline_armed {
                this.deadline.as_mut().reset(tokio::time::Instant::now() + this.idle_timeout);
            }
        }
        if this.rest_at < this.rest.len() {
            // What came with the PROXY header: the start of the first head, under its budget like the rest.
            let n = (this.rest.len() - this.rest_at).min(buf.remaining()).min(this.max_header_bytes - this.head_bytes);
            if n == 0 && this.head_bytes >= this.max_header_bytes {
                return this.close_for(cx, "header_too_large");
            }
            buf.put_slice(&this.rest[this.rest_at..this.rest_at + n]);
            this.rest_at += n;
            this.head_bytes += n;
            return Poll::Ready(Ok(()));
        }
        if phase == IN_REQUEST {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.head_bytes >= this.max_header_bytes {
            return this.close_for(cx, "header_too_large");
        }
        // Never read past the budget, so that the cap holds however large pingora's buffer has grown.
        let allowed = this.max_header_bytes - this.head_bytes;
        let result = if buf.remaining() > allowed {
            let mut scratch = vec![0u8; allowed];
            let mut limited = ReadBuf::new(&mut scratch);
            let result = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
            buf.put_slice(limited.filled());
            result.map_ok(|()| limited.filled().len())
        } else {
            let before = buf.filled().len();
            let result = Pin::new(&mut this.inner).poll_read(cx, buf);
            result.map_ok(|()| buf.filled().len() - before)
        };
        match result {
            Poll::Ready(Ok(read)) => {
                if read > 0 && this.head_bytes == 0 && phase == IDLE {
                    // The next head has begun: it has `header_timeout` in total, however slowly it trickles.
                    this.deadline.as_mut().reset(tokio::time::Instant::now() + this.header_timeout);
                }
                this.head_bytes += read;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let expired = this.deadline_armed && this.deadline.as_mut().poll(cx).is_ready();
                if !expired {
                    return Poll::Pending;
                }
                if this.head_bytes == 0 {
                    // Nothing of a request yet: close quietly (pingora treats this as the client leaving).
                    this.close_for(cx, "idle_timeout")
                } else {
                    this.close_for(cx, "header_timeout")
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        // The bytes read with a PROXY header come first, then the socket's.
        let rest = &self.rest[self.rest_at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        if n == buf.len() {
            return Ok(true);
        }
        self.inner.try_peek(&mut buf[n..]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: usize, per_client: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: global,
            max_connections_per_client: per_client,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn caps_count_open_connections_and_free_them_on_drop() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = Arc::new(ArcSwap::from_pointee(IpRanges::new(&["10.0.0.0/8".parse().unwrap()])));
        let tracker = Tracker::new(limits(3, 2), trusted);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let first = tracker.admit(Some(a)).unwrap();
        let _second = tracker.admit(Some(a)).unwrap();
        assert_eq!(tracker.admit(Some(a)).err(), Some(Refusal::PerClient));
        // A trusted proxy carries many clients: only the global cap applies to it.
        let _p = tracker.admit(Some(proxy)).unwrap();
        assert_eq!(tracker.admit(Some(proxy)).err(), Some(Refusal::Global));
        drop(first);
        assert_eq!(tracker.open(), 2);
        let _again = tracker.admit(Some(a)).unwrap();
        assert_eq!(tracker.open(), 3);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_as_the_defenses_key_them() {
        let tracker = Tracker::new(limits(100, 2), Arc::new(ArcSwap::from_pointee(IpRanges::default())));
        let one: IpAddr = "2001:db8:5:6::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:5:6:ffff:ffff:ffff:fffe".parse().unwrap();
        let next_64: IpAddr = "2001:db8:5:7::1".parse().unwrap();
        let _a = tracker.admit(Some(one)).unwrap();
        let _b = tracker.admit(Some(same_64)).unwrap();
        assert_eq!(tracker.admit(Some(one)).err(), Some(Refusal::PerClient));
        assert_eq!(tracker.admit(Some("2001:db8:5:6::9".parse().unwrap())).err(), Some(Refusal::PerClient));
        assert!(tracker.admit(Some(next_64)).is_ok(), "another /64 is another client");
    }
}
