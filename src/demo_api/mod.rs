//! Bundled demo login API: the realistic upstream application that stuffgate protects in
//! `stuffgate demo` and in integration tests.
//!
//! It is a small shop-style account service modelled on the 7pay incident (2019): login,
//! signup, balance top-up and a password-reset endpoint that is **deliberately vulnerable**
//! (the reset link is sent to any caller-supplied `send_to` address, and an `email` array is
//! accepted and mailed in full, GitLab CVE-2023-7028 style). The app itself does nothing to
//! stop credential stuffing: that is the gateway's job.
//!
//! # Endpoints
//! Every response (including 404/405/413) carries `X-Demo-Upstream: 1`.
//!
//! | Method & path            | Body / auth                               | Answers |
//! |--------------------------|-------------------------------------------|---------|
//! | `GET /`                  | –                                         | 200 HTML login page |
//! | `POST /api/login`        | JSON or form `email`, `password`          | 200 `{"token","account"}`, 401 `{"error":"invalid_credentials"}`, 400 |
//! | `POST /api/password-reset` | JSON or form `email` (string or array), `send_to`? | always 200 `{"status":"sent"}` (400 if malformed) |
//! | `POST /api/signup`       | JSON or form `email`, `password`          | 201 `{"account"}`, 409 exists, 400 malformed, 503 table full |
//! | `POST /api/topup`        | `Authorization: Bearer`, `{"amount": yen}` | 200 `{"balance"}`, 401, 400 (amount ≤ 0 or > 100 000) |
//! | `GET /api/me`            | `Authorization: Bearer`                   | 200 `{"account","balance"}`, 401 |
//! | `GET /__demo/stats`      | –                                         | 200 [`DemoStats`] |
//!
//! Bodies are limited to 64 KiB (413). Unknown/malformed bodies answer 400 `{"error":"bad_request"}`.
//!
//! # Seeded accounts ([`DemoState::seeded`])
//! | Account               | Password                         |
//! |-----------------------|----------------------------------|
//! | `alice@example.com`   | `correct horse battery staple`   |
//! | `bob@example.jp`      | `hunter2hunter2`                 |
//! | `carol@example.com`   | `Tr0ub4dor&3`                    |
//! | `dave@example.jp`     | `7pay-summer-2019`               |
//! | `user{i:05}@example.com` ([`demo_account`]) | [`demo_password`]`(i)`, for `i in 0..generated` |
//!
//! All balances start at ¥0.

mod body;
mod handlers;
mod page;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Request body size limit (larger bodies answer 413).
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// Maximum number of accounts; signups beyond it answer 503.
pub const MAX_USERS: usize = 1_000_000;
/// Maximum number of live sessions; the oldest session is evicted when full.
pub const MAX_SESSIONS: usize = 100_000;
/// Largest single top-up, in yen.
pub const MAX_TOPUP_YEN: i64 = 100_000;
/// Name of the header added to every upstream answer.
pub const UPSTREAM_HEADER: &str = "x-demo-upstream";

/// Named seeded accounts: `(email, password)`.
pub const NAMED_USERS: &[(&str, &str)] = &[
    ("alice@example.com", "correct horse battery staple"),
    ("bob@example.jp", "hunter2hunter2"),
    ("carol@example.com", "Tr0ub4dor&3"),
    ("dave@example.jp", "7pay-summer-2019"),
];

/// Account name of generated user `i`: `user{i:05}@example.com`.
pub fn demo_account(i: usize) -> String {
    format!("user{i:05}@example.com")
}

/// Deterministic password of generated user `i` (so attack replays can build "leaked" lists
/// containing some valid pairs). Looks like a typical human password, e.g. `dragon4821!`.
pub fn demo_password(i: usize) -> String {
    const WORDS: &[&str] = &[
        "dragon", "sunshine", "monkey", "sakura", "shadow", "master", "tokyo", "baseball", "princess", "football",
        "letmein", "pokemon", "michael", "summer", "doraemon", "qwerty",
    ];
    const SUFFIXES: &[&str] = &["", "!", "#", "?", "!!", "@", "$", "*"];
    let d = Sha256::digest(format!("stuffgate-demo-password:{i}").as_bytes());
    let word = WORDS[usize::from(d[0]) % WORDS.len()];
    let number = u16::from_be_bytes([d[1], d[2]]) % 10_000;
    let suffix = SUFFIXES[usize::from(d[3]) % SUFFIXES.len()];
    format!("{word}{number:04}{suffix}")
}

/// Trim and lowercase an email address.
pub(crate) fn normalize_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// A stored account. Passwords are kept only as salted SHA-256.
///
/// NOTE: a single salted SHA-256 is fine for a demo but is NOT an appropriate password
/// storage scheme for a real service (use a slow KDF such as Argon2id / scrypt / bcrypt).
struct User {
    salt: [u8; 16],
    hash: [u8; 32],
    balance: u64,
}

impl User {
    fn new(password: &str) -> User {
        let mut salt = [0u8; 16];
        rand::rng().fill(&mut salt[..]);
        User { salt, hash: hash_password(&salt, password), balance: 0 }
    }

    fn verify(&self, password: &str) -> bool {
        ct_eq(&self.hash, &hash_password(&self.salt, password))
    }
}

fn hash_password(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Constant-time comparison of two digests.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fresh session token: 32 random bytes, base64url without padding.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Bounded in-memory session store (token → account), FIFO eviction when full.
#[derive(Default)]
struct Sessions {
    by_token: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Sessions {
    fn insert(&mut self, token: String, account: String) {
        while self.by_token.len() >= MAX_SESSIONS {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_token.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(token.clone());
        self.by_token.insert(token, account);
    }
}

#[derive(Default)]
struct Counters {
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    signups: AtomicU64,
    resets: AtomicU64,
    reset_links_sent: AtomicU64,
    reset_links_elsewhere: AtomicU64,
    topups: AtomicU64,
    topup_yen: AtomicU64,
}

struct Inner {
    users: RwLock<HashMap<String, User>>,
    sessions: Mutex<Sessions>,
    counters: Counters,
    /// Salt used to hash the password of unknown accounts, so that "unknown user" and
    /// "wrong password" take about the same time.
    dummy_salt: [u8; 16],
}

/// Snapshot of the demo app's counters (`GET /__demo/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DemoStats {
    /// Successful logins.
    pub logins_ok: u64,
    /// Failed logins (wrong password or unknown account).
    pub logins_failed: u64,
    /// Successful signups.
    pub signups: u64,
    /// Well-formed password-reset requests (for existing or unknown accounts).
    pub resets: u64,
    /// Reset links actually "sent" (one per recipient, existing accounts only).
    pub reset_links_sent: u64,
    /// Reset requests for an existing account where a link went to an address other than
    /// the account's own (7pay `send_to` / GitLab email-array takeover).
    pub reset_links_elsewhere: u64,
    /// Successful top-ups.
    pub topups: u64,
    /// Total yen topped up.
    pub topup_yen: u64,
    /// Current number of accounts.
    pub users: u64,
    /// Current number of live sessions.
    pub sessions: u64,
}

/// Shared state of the demo app. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct DemoState {
    inner: Arc<Inner>,
}

impl Default for DemoState {
    fn default() -> Self {
        DemoState::empty()
    }
}

impl DemoState {
    /// A state with no accounts at all.
    pub fn empty() -> DemoState {
        let mut dummy_salt = [0u8; 16];
        rand::rng().fill(&mut dummy_salt[..]);
        DemoState {
            inner: Arc::new(Inner {
                users: RwLock::new(HashMap::new()),
                sessions: Mutex::new(Sessions::default()),
                counters: Counters::default(),
                dummy_salt,
            }),
        }
    }

    /// Seeded users: the named ones in [`NAMED_USERS`] (alice@example.com /
    /// "correct horse battery staple", bob@example.jp / "hunter2hunter2",
    /// carol@example.com / "Tr0ub4dor&3", dave@example.jp / "7pay-summer-2019") plus
    /// `generated` users [`demo_account`]`(i)` with password [`demo_password`]`(i)` for
    /// `i in 0..generated`. All balances start at ¥0. Seeding is not limited by [`MAX_USERS`]
    /// (only signups are).
    pub fn seeded(generated: usize) -> DemoState {
        let state = DemoState::empty();
        {
            let mut users = state.inner.users.write();
            users.reserve(NAMED_USERS.len() + generated);
            for (email, password) in NAMED_USERS {
                users.insert((*email).to_string(), User::new(password));
            }
            for i in 0..generated {
                users.insert(demo_account(i), User::new(&demo_password(i)));
            }
        }
        state
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> DemoStats {
        let c = &self.inner.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DemoStats {
            logins_ok: ld(&c.logins_ok),
            logins_failed: ld(&c.logins_failed),
            signups: ld(&c.signups),
            resets: ld(&c.resets),
            reset_links_sent: ld(&c.reset_links_sent),
            reset_links_elsewhere: ld(&c.reset_links_elsewhere),
            topups: ld(&c.topups),
            topup_yen: ld(&c.topup_yen),
            users: self.inner.users.read().len() as u64,
            sessions: self.inner.sessions.lock().by_token.len() as u64,
        }
    }

    /// Current balance of `account` (normalised), if it exists.
    pub fn balance(&self, account: &str) -> Option<u64> {
        self.inner.users.read().get(&normalize_email(account)).map(|u| u.balance)
    }

    /// Check credentials; on success create a session and return its token.
    fn login(&self, email: &str, password: &str) -> Option<String> {
        let ok = match self.inner.users.read().get(email) {
            Some(user) => user.verify(password),
            None => {
                // Same work as a real check, so timing does not reveal unknown accounts.
                let _ = hash_password(&self.inner.dummy_salt, password);
                false
            }
        };
        let c = &self.inner.counters;
        if !ok {
            c.logins_failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        c.logins_ok.fetch_add(1, Ordering::Relaxed);
        let token = new_token();
        self.inner.sessions.lock().insert(token.clone(), email.to_string());
        Some(token)
    }

    fn session_account(&self, token: &str) -> Option<String> {
        self.inner.sessions.lock().by_token.get(token).cloned()
    }
}

/// Convenience handle: the demo app served on its own OS thread with its own tokio runtime,
/// so it works from synchronous code (pingora's `run_forever` main, blocking tests).
/// The server stops when the handle is dropped.
pub struct DemoApi {
    addr: SocketAddr,
    state: DemoState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DemoApi {
    /// Bind `bind` (use port 0 for an ephemeral port) and serve `state` on a background
    /// thread. Bind errors are returned synchronously.
    pub fn spawn(bind: SocketAddr, state: DemoState) -> std::io::Result<DemoApi> {
        let std_listener = std::net::TcpListener::bind(bind)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("demo-api")
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        let thread = std::thread::Builder::new().name("demo-api-main".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "demo api: cannot register listener");
                        return;
                    }
                };
                tokio::select! {
                    res = serve(listener, serve_state) => {
                        if let Err(e) = res {
                            tracing::error!(error = %e, "demo api: server stopped");
                        }
                    }
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime here cancels in-flight connection tasks.
            runtime.shutdown_background();
        })?;
        tracing::info!(%addr, "demo api listening");
        Ok(DemoApi { addr, state, stop: Some(stop_tx), thread: Some(thread) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The served state (for reading stats).
    pub fn state(&self) -> &DemoState {
        &self.state
    }

    /// Stop the server and wait for its thread to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DemoApi {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

async fn add_upstream_header(mut res: Response) -> Response {
    res.headers_mut().insert(UPSTREAM_HEADER, HeaderValue::from_static("1"));
    res
}

/// The demo app's router (all routes, 404 fallback, 64 KiB body limit, `X-Demo-Upstream: 1`).
pub fn router(state: DemoState) -> Router {
    Router::new()
        .route("/", get(handlers::index))
        .route("/api/login", post(handlers::login))
        .route("/api/password-reset", post(handlers::password_reset))
        .route("/api/signup", post(handlers::signup))
        .route("/api/topup", post(handlers::topup))
        .route("/api/me", get(handlers::me))
        .route("/__demo/stats", get(handlers::stats))
        .fallback(handlers::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::map_response(add_upstream_header))
}

/// Serve the demo app on `listener` until the process ends (or the future is dropped).
pub async fn serve(listener: tokio::net::TcpListener, state: DemoState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}
