//! The operator's side of the admin listener: readiness (`/readyz`), the decisions API (`/decisions`), the live
//! dashboard (`/dashboard`) and admin authentication.
//!
//! | endpoint | auth | what |
//! |---|---|---|
//! | `GET /readyz` | – | 200 when the upstream accepts a TCP connection, 503 otherwise; the last reload's result |
//! | `GET /decisions` | token, when one is set | penalties in force and manual bans |
//! | `POST /decisions` | token | manual ban: `{"range": "198.51.100.0/24", "duration": "1h", "reason": "..."}` |
//! | `DELETE /decisions/{id}` | token | lift a penalty (`p…`) or a ban (`b…`) |
//! | `GET /dashboard`, `/dashboard/data` | – | the live dashboard page and its JSON |
//!
//! The token is read from `STUFFGATE_ADMIN_TOKEN` at start (at least 16 characters) and sent as
//! `Authorization: Bearer <token>`. Without one, nothing on the admin listener can change state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use parking_lot::Mutex;
use pingora::protocols::http::ServerSession;
use serde::Serialize;

use super::{respond, AdminApp};
use crate::clock::unix_now;
use crate::decisions::Removed;
use crate::store::Write;

/// The environment variable holding the admin token.
pub const TOKEN_ENV: &str = "STUFFGATE_ADMIN_TOKEN";
/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// What the operator endpoints share: the token, the upstream to probe, the last reload.
pub struct Operator {
    pub token: Option<String>,
    pub upstream: Option<SocketAddr>,
    pub health: Arc<Health>,
    /// The TLS listeners' certificates, for their expiry.
    pub certificates: Vec<Arc<crate::certs::Resolver>>,
}

impl Operator {
    /// The token from [`TOKEN_ENV`]; an error names what is wrong with it.
    pub fn token_from_env() -> Result<Option<String>, String> {
        match std::env::var(TOKEN_ENV) {
            Ok(token) if token.trim().len() >= 16 => Ok(Some(token.trim().to_string())),
            Ok(token) if token.trim().is_empty() => Ok(None),
            Ok(_) => Err(format!("${TOKEN_ENV} must hold at least 16 characters (e.g. `openssl rand -hex 24`)")),
            Err(_) => Ok(None),
        }
    }
}

/// The result of the last reload (policy files or gateway file), for `/readyz` and the dashboard.
#[derive(Clone, Debug, Serialize, Default)]
pub struct ReloadStatus {
    /// Unix seconds of the last reload attempt (0: none since start).
    pub at: u64,
    pub ok: bool,
    pub message: String,
    /// Gateway-file settings changed on disk that only a restart applies.
    pub pending_restart: Vec<String>,
}

pub struct Health {
    reload: Mutex<ReloadStatus>,
    /// Why the gateway file was last refused, until it is read successfully again: a policy reload that follows
    /// must not make a refused gateway file look applied.
    gateway_file_refused: Mutex<Option<String>>,
    pub started: u64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            reload: Mutex::new(ReloadStatus { ok: true, message: "loaded at start".into(), ..Default::default() }),
            gateway_file_refused: Mutex::new(None),
            started: unix_now(),
        }
    }
}

impl Health {
    pub fn record_reload(&self, ok: bool, message: String, pending_restart: Vec<String>) {
        *self.reload.lock() = ReloadStatus { at: unix_now(), ok, message, pending_restart };
    }

    /// The outcome of the last gateway-file read: `Some(why)` when it (or one of its settings) was refused.
    pub fn record_gateway_file(&self, refused: Option<String>) {
        *self.gateway_file_refused.lock() = refused;
    }

    pub fn reload(&self) -> ReloadStatus {
        let mut status = self.reload.lock().clone();
        if let Some(refused) = self.gateway_file_refused.lock().as_ref() {
            status.ok = false;
            if !status.message.contains(refused.as_str()) {
                status.message = format!("{refused}; then: {}", status.message);
            }
        }
        status
    }
}

/// The attack mode as the admin API and the dashboard show it.
pub fn attack_status(attack: &crate::attack::AttackMonitor) -> serde_json::Value {
    let last = attack.last();
    serde_json::json!({
        "level": attack.level().as_str(),
        "detected": attack.detected().as_str(),
        "override": attack.override_mode().as_str(),
        "failures": last.failures,
        "logins": last.logins,
        "baseline_failures": last.baseline_failures,
        "baseline_ratio": last.baseline_ratio,
    })
}

fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", format!("{value}\n").into_bytes())
}

fn problem(status: u16, error: &str, message: impl Into<String>) -> Response<Vec<u8>> {
    json(status, serde_json::json!({ "error": error, "message": message.into() }))
}

/// Compare without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminApp {
    /// The operator endpoints; `None` hands the request on to the basic ones (`/metrics`, `/healthz`, `/policy`).
    pub(super) async fn operator(&self, session: &mut ServerSession) -> Option<Response<Vec<u8>>> {
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        match (method.as_str(), path.as_str()) {
            (_, "/metrics") => {
                crate::telemetry::process::refresh();
                None
            }
            ("GET", "/readyz") => Some(self.readyz().await),
            (_, "/decisions") | (_, "/decisions/") => Some(match method.as_str() {
                "GET" => match self.authorize(session, false) {
                    Err(refused) => refused,
                    Ok(()) => self.list(),
                },
                "POST" => match self.authorize(session, true) {
                    Err(refused) => refused,
                    Ok(()) => match read_body(session).await {
                        Ok(body) => self.ban(&body),
                        Err(refused) => refused,
                    },
                },
                _ => problem(405, "method_not_allowed", "use GET (list) or POST (ban) on /decisions"),
            }),
            ("GET", "/attack-mode") => Some(json(200, attack_status(&self.policy.env().attack))),
            ("POST", "/attack-mode") => Some(match self.authorize(session, true) {
                Err(refused) => refused,
                Ok(()) => match read_body(session).await {
                    Ok(body) => self.set_attack_mode(&body),
                    Err(refused) => refused,
                },
            }),
            (_, "/attack-mode") => {
                Some(problem(405, "method_not_allowed", "use GET (status) or POST {\"mode\": \"on|off|auto\"}"))
            }
            (method, path) if path.starts_with("/decisions/") => Some(match method {
                "DELETE" => match self.authorize(session, true) {
                    Err(refused) => refused,
                    Ok(()) => self.delete(&path["/decisions/".len()..]),
                },
                _ => problem(405, "method_not_allowed", "use DELETE /decisions/{id} to lift a decision"),
            }),
            _ => None,
        }
    }

    /// Changes need the token; reads need it only when one is set. The refusal is the answer to send (large, but made
    /// once per refused admin request).
    #[allow(clippy::result_large_err)]
    fn authorize(&self, session: &ServerSession, changes: bool) -> Result<(), Response<Vec<u8>>> {
        let Some(token) = self.ops.token.as_deref() else {
            if !changes {
                return Ok(());
            }
            return Err(problem(
                403,
                "admin_token_unset",
                format!(
                    "changes through the admin API are disabled: start the gateway with {TOKEN_ENV} set (at least 16 \
                     characters) and send `Authorization: Bearer <token>`"
                ),
            ));
        };
        let given = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        match given {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(unauthorized("the bearer token does not match the gateway's")),
            None => Err(unauthorized(&format!(
                "send `Authorization: Bearer <token>` with the token the gateway was started with (${TOKEN_ENV}); \
                 the CLI reads it from ${TOKEN_ENV}"
            ))),
        }
    }

    async fn readyz(&self) -> Response<Vec<u8>> {
        let reload = self.ops.health.reload();
        let (reachable, error) = match self.ops.upstream {
            None => (true, None),
            Some(address) => {
                match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(address)).await {
                    Ok(Ok(_)) => (true, None),
                    Ok(Err(e)) => (false, Some(e.to_string())),
                    Err(_) => (false, Some("no answer within 1s".to_string())),
                }
            }
        };
        let mut certificates = Vec::new();
        let mut expiring = false;
        for resolver in &self.ops.certificates {
            for cert in resolver.current().certificates() {
                let left = crate::certs::seconds_left(cert.not_after);
                let soon = left < crate::certs::EXPIRY_WARNING_SECS;
                expiring |= soon;
                certificates.push(serde_json::json!({
                    "listener": resolver.address(),
                    "name": cert.label(),
                    "expires_in_secs": left,
                    "expiring_soon": soon,
                }));
            }
        }
        // Settings waiting for a restart mean the gateway is not running what its file says: degraded too.
        let status = match (reachable, reload.ok && reload.pending_restart.is_empty() && !expiring) {
            (false, _) => "not_ready",
            (true, false) => "degraded",
            (true, true) => "ready",
        };
        let body = serde_json::json!({
            "status": status,
            "upstream": {
                "address": self.ops.upstream.map(|a| a.to_string()),
                "reachable": reachable,
                "error": error,
            },
            "reload": reload,
            "routes": self.policy.current().routes.len(),
            "tls_certificates": certificates,
        });
        json(if reachable { 200 } else { 503 }, body)
    }

    /// Hold the attack mode on or off, or hand it back to the detector.
    fn set_attack_mode(&self, body: &[u8]) -> Response<Vec<u8>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ModeRequest {
            mode: String,
        }
        let mode = serde_json::from_slice::<ModeRequest>(body)
            .ok()
            .and_then(|request| crate::attack::Override::parse(&request.mode));
        let Some(mode) = mode else {
            return problem(400, "bad_request", "send {\"mode\": \"on\"}, {\"mode\": \"off\"} or {\"mode\": \"auto\"}");
        };
        let attack = &self.policy.env().attack;
        attack.set_override(mode);
        tracing::warn!(target: "stuffgate::attack_mode", mode = mode.as_str(), level = attack.level().as_str(), "attack mode override set by an operator");
        json(200, attack_status(attack))
    }

    fn list(&self) -> Response<Vec<u8>> {
        let env = self.policy.env();
        let now = env.clock.now_nanos();
        let body = serde_json::json!({
            "penalties": env.decisions.penalties(now),
            "bans": env.decisions.bans(now),
        });
        json(200, body)
    }

    fn ban(&self, body: &[u8]) -> Response<Vec<u8>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct BanRequest {
            range: String,
            duration: Option<String>,
            #[serde(default)]
            reason: String,
        }
        let request: BanRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => {
                return problem(
                    400,
                    "bad_request",
                    format!("{e}; send {{\"range\": \"198.51.100.7\" or \"198.51.100.0/24\", \"duration\": \"1h\", \"reason\": \"...\"}}"),
                )
            }
        };
        let range = match request.range.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => match request.range.parse::<std::net::IpAddr>() {
                Ok(ip) => ipnet::IpNet::from(ip),
                Err(_) => {
                    return problem(
                        400,
                        "bad_range",
                        format!("`{}` is neither an address nor a CIDR block such as 198.51.100.0/24", request.range),
                    )
                }
            },
        };
        let duration = match request.duration.as_deref() {
            None => None,
            Some(text) => match crate::clock::parse_duration(text) {
                Ok(d) if !d.is_zero() => Some(d.as_nanos() as u64),
                _ => {
                    return problem(
                        400,
                        "bad_duration",
                        format!("`{text}` is not a duration such as \"30m\", \"4h\" or \"7d\""),
                    )
                }
            },
        };
        let env = self.policy.env();
        match env.decisions.ban(range, duration, request.reason.trim(), env.clock.now_nanos()) {
            Ok(ban) => {
                tracing::warn!(id = %ban.id, range = %ban.range, until = ?ban.until, reason = %ban.reason, "manual ban added");
                json(201, serde_json::json!({ "ban": ban }))
            }
            Err(message) => problem(409, "too_many_bans", message),
        }
    }

    fn delete(&self, id: &str) -> Response<Vec<u8>> {
        let env = self.policy.env();
        match env.decisions.remove(id) {
            Some(Removed::Penalty(entry)) => {
                env.store.write(&[Write::Lift { key: entry.key, cell: entry.cell }], env.clock.now_nanos());
                tracing::warn!(id, defense = entry.defense, address = %entry.address, "penalty lifted by an operator");
                json(200, serde_json::json!({ "lifted": entry }))
            }
            Some(Removed::Ban(ban)) => {
                tracing::warn!(id, range = %ban.range, "manual ban lifted by an operator");
                json(200, serde_json::json!({ "lifted": ban }))
            }
            None => problem(
                404,
                "not_found",
                format!("no decision `{id}` is in force (it may have expired); `stuffgate decisions list` shows them"),
            ),
        }
    }
}

fn unauthorized(message: &str) -> Response<Vec<u8>> {
    let mut response = problem(401, "unauthorized", message);
    if let Ok(value) = http::HeaderValue::from_str("Bearer realm=\"stuffgate admin\"") {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
    }
    response
}

#[allow(clippy::result_large_err)]
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(problem(413, "payload_too_large", "the admin API reads at most 64 KiB"));
                }
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(problem(400, "bad_request", format!("the request body could not be read: {e}"))),
        }
    }
}
