//! TLS listeners: the ClientHello read before the handshake (a deadline, the connection caps, JA4), the client's
//! fingerprint kept per connection, and the upstream's TLS settings.
//!
//! pingora's TLS listener calls [`HelloReader`] (its `PreTlsProcess` hook) on the raw socket before the handshake.
//! It counts the connection against the caps, reads the whole ClientHello within `tls_hello_timeout` (however many
//! TCP segments and TLS records it spans), computes JA4 (`crate::ja4`) and puts every byte back (`rewind`) for
//! rustls. The fingerprint waits in a [`Fingerprints`] table keyed by the connection's addresses; once the handshake
//! is done, [`TlsConnections`] (around the rest of the application) claims it, keeps it for the connection's life
//! and removes it when the connection closes. Requests over HTTP/1.1 and HTTP/2 find it by the same key, from the
//! session's socket digest.
//!
//! Memory: an entry per connection between accept and close. A handshake that fails leaves an entry the next
//! hello reaps once it is older than pingora's 60 s handshake limit, so the table never holds more than the
//! connections accepted in the last minute or so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::ServerApp;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use super::connections::{Permit, Tracker};
use crate::fingerprint::ClientFingerprint;
use crate::ja4::{self, Scan};
use crate::telemetry::metrics;

/// A handshake older than this has ended one way or another (pingora gives each one 60 s).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(65);
const SHARDS: usize = 32;

/// A connection, by its two ends: unique among open connections.
type Key = (SocketAddr, SocketAddr);

fn key_of(digest: &pingora::protocols::SocketDigest) -> Option<Key> {
    let peer = *digest.peer_addr()?.as_inet()?;
    let local = *digest.local_addr()?.as_inet()?;
    Some((peer, local))
}

struct Entry {
    /// Which connection wrote the entry: only it removes it.
    id: u64,
    fingerprint: Option<ClientFingerprint>,
    /// The connection's place under the caps, from the hello until the handshake is done.
    permit: Option<Permit>,
    /// When the hello was read; `None` once the handshake completed and the connection claimed the entry.
    pending_since: Option<Instant>,
}

/// The fingerprints of open TLS connections.
#[derive(Default)]
pub struct Fingerprints {
    shards: [Mutex<HashMap<Key, Entry>>; SHARDS],
    next_id: AtomicU64,
    reap_at: AtomicUsize,
}

impl Fingerprints {
    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Entry>> {
        let hash = key.0.port() as usize ^ (key.1.port() as usize) << 3 ^ ip_bits(key.0.ip());
        &self.shards[hash % SHARDS]
    }

    fn insert(&self, key: Key, fingerprint: Option<ClientFingerprint>, permit: Option<Permit>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry { id, fingerprint, permit, pending_since: Some(Instant::now()) };
        self.shard(&key).lock().insert(key, entry);
        self.reap_one_shard();
    }

    /// Drop the entries of handshakes that never completed, one shard per call.
    fn reap_one_shard(&self) {
        let index = self.reap_at.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let now = Instant::now();
        self.shards[index]
            .lock()
            .retain(|_, entry| entry.pending_since.is_none_or(|since| now.duration_since(since) < HANDSHAKE_LIMIT));
    }

    /// The handshake is done: hand over the caps' permit (the connection is counted again by the guard behind) and
    /// keep the fingerprint until [`Claim`] is dropped.
    fn claim(self: &Arc<Self>, key: Key) -> Option<Claim> {
        let mut shard = self.shard(&key).lock();
        let entry = shard.get_mut(&key)?;
        entry.pending_since = None;
        let permit = entry.permit.take();
        let id = entry.id;
        drop(shard);
        drop(permit);
        Some(Claim { table: self.clone(), key, id })
    }

    /// The fingerprint of the open connection `key`.
    pub fn get(&self, key: &Key) -> Option<ClientFingerprint> {
        self.shard(key).lock().get(key).and_then(|entry| entry.fingerprint)
    }

    /// Entries held now (open TLS connections, and handshakes in progress or abandoned within the last minute).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JA4 of the connection a request came on, when it is a TLS connection of this gateway.
    pub fn of_session(&self, session: &Session) -> Option<ClientFingerprint> {
        let digest = session.digest()?;
        digest.ssl_digest.as_ref()?;
        self.get(&key_of(digest.socket_digest.as_ref()?)?)
    }
}

fn ip_bits(ip: std::net::IpAddr) -> usize {
    match ip {
        std::net::IpAddr::V4(v4) => u32::from(v4) as usize,
        std::net::IpAddr::V6(v6) => (u128::from(v6) as u64) as usize,
    }
}

/// A TLS connection's claim on its fingerprint: removes it when the connection ends.
pub struct Claim {
    table: Arc<Fingerprints>,
    key: Key,
    id: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut shard = self.table.shard(&self.key).lock();
        if shard.get(&self.key).is_some_and(|entry| entry.id == self.id) {
            shard.remove(&self.key);
        }
    }
}

/// The pre-handshake step of TLS listeners.
pub struct HelloReader {
    pub table: Arc<Fingerprints>,
    pub tracker: Arc<Tracker>,
    pub timeout: Duration,
}

/// Why a connection was closed before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HelloFailure {
    Timeout,
    Closed,
}

/// Read until the bytes hold a whole ClientHello, are not one, or the client stops sending.
async fn read_hello(stream: &mut L4Stream, buf: &mut Vec<u8>) -> Result<(), HelloFailure> {
    loop {
        match ja4::scan_records(buf) {
            Scan::Incomplete => {}
            Scan::Hello(_) | Scan::NotAHello(_) => return Ok(()),
        }
        let mut chunk = [0u8; 2048];
        let want = chunk.len().min(ja4::MAX_HELLO_BYTES - buf.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return Err(HelloFailure::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[async_trait]
impl PreTlsProcess for HelloReader {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let digest = stream.get_socket_digest();
        let key = digest.as_deref().and_then(key_of);
        let permit = match self.tracker.admit(key.map(|k| k.0.ip())) {
            Ok(permit) => permit,
            Err(refusal) => {
                // Nothing can be answered before a handshake: the connection is closed.
                metrics::CONNECTIONS_REFUSED.with_label_values(&[refusal.as_str()]).inc();
                return Err(pingora::Error::explain(pingora::ErrorType::ConnectRefused, refusal.as_str()));
            }
        };
        let mut buf = Vec::with_capacity(2048);
        let read = tokio::time::timeout(self.timeout, read_hello(stream, &mut buf)).await;
        let failure = match read {
            Err(_) => Some(HelloFailure::Timeout),
            Ok(Err(failure)) => Some(failure),
            Ok(Ok(())) => None,
        };
        if let Some(failure) = failure {
            if failure == HelloFailure::Timeout {
                metrics::CONNECTIONS_CLOSED.with_label_values(&["tls_hello_timeout"]).inc();
            }
            let why =
                if failure == HelloFailure::Timeout { "no ClientHello in time" } else { "closed before a ClientHello" };
            return Err(pingora::Error::explain(pingora::ErrorType::ReadTimedout, why));
        }
        let fingerprint =
            ja4::fingerprint(&buf).and_then(|print| ClientFingerprint::ja4(print.full(), print.counting()));
        stream.rewind(&buf);
        if let Some(key) = key {
            self.table.insert(key, fingerprint, Some(permit));
        }
        Ok(())
    }
}

/// The application behind TLS listeners: claims each TLS connection's fingerprint once its handshake is done, and
/// releases it when the connection closes.
pub struct TlsConnections<A> {
    inner: Arc<A>,
    table: Arc<Fingerprints>,
}

impl<A> TlsConnections<A> {
    pub fn new(inner: A, table: Arc<Fingerprints>) -> TlsConnections<A> {
        TlsConnections { inner: Arc::new(inner), table }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsConnections<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let claim = match stream.get_ssl() {
            Some(_) => stream.get_socket_digest().as_deref().and_then(key_of).and_then(|key| self.table.claim(key)),
            None => None,
        };
        if claim.is_none() {
            return self.inner.process_new(stream, shutdown).await;
        }
        // Keep-alive reuse runs here, under the claim, so the fingerprint lives exactly as long as the connection.
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        drop(claim);
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The upstream's certificate authorities from a PEM file, in the form pingora's peer options take.
pub fn upstream_ca(path: &std::path::Path) -> Result<Arc<pingora::protocols::tls::CaType>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut list = Vec::new();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = cert.map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("{}: a certificate does not parse: {e}", path.display()))?;
        list.push(pingora::utils::tls::WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509));
    }
    if list.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(Arc::from(list))
}

/// Set `stuffgate_tls_cert_expiry_seconds` and warn about certificates that expire within 14 days.
pub fn publish_expiry(resolvers: &[Arc<crate::certs::Resolver>]) {
    for resolver in resolvers {
        for cert in resolver.current().certificates() {
            let left = crate::certs::seconds_left(cert.not_after);
            let name = cert.label();
            metrics::TLS_CERT_EXPIRY.with_label_values(&[resolver.address(), name.as_str()]).set(left);
            if left < crate::certs::EXPIRY_WARNING_SECS {
                tracing::warn!(
                    listener = resolver.address(),
                    certificate = %name,
                    file = %cert.files.cert.display(),
                    days_left = left / 86_400,
                    "TLS certificate expires within 14 days: replace the file (it is reloaded when it changes)"
                );
            }
        }
    }
}

/// Re-read the certificate files that changed (all of them on SIGHUP); a refused set leaves the serving one.
pub fn reload_certificates(resolvers: &[Arc<crate::certs::Resolver>], sighup: bool) {
    use crate::certs::Reloaded;
    let mut changed = false;
    for resolver in resolvers {
        let result = if sighup { resolver.replace(&resolver.files()) } else { resolver.reload_if_changed() };
        match result {
            Reloaded::Unchanged => {}
            Reloaded::Swapped => {
                changed = true;
                metrics::RELOADS.with_label_values(&["tls_certificates"]).inc();
                tracing::info!(listener = resolver.address(), "TLS certificates reloaded");
            }
            Reloaded::Refused(error) => {
                metrics::RELOADS.with_label_values(&["error"]).inc();
                tracing::error!(
                    listener = resolver.address(),
                    %error,
                    "TLS certificate reload refused; the previous certificates keep serving"
                );
            }
        }
    }
    if changed || sighup {
        publish_expiry(resolvers);
    }
}
