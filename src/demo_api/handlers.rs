//! HTTP handlers of the demo app. Passwords and tokens are never logged.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::body::{Malformed, Payload};
use super::{normalize_email, page, DemoState, User, MAX_TOPUP_YEN, MAX_USERS};

/// Most addresses accepted in one password-reset request.
const MAX_RESET_ADDRESSES: usize = 100;
/// Longest accepted email address / password at signup.
const MAX_EMAIL_LEN: usize = 254;
const MAX_PASSWORD_LEN: usize = 1024;

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

fn bad_request() -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request")
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized")
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy)]
enum Reject {
    TooLarge,
    Malformed,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Reject::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Reject::Malformed => bad_request(),
        }
    }
}

impl From<Malformed> for Reject {
    fn from(_: Malformed) -> Reject {
        Reject::Malformed
    }
}

/// Decode the body, mapping a too-large body to 413 and anything else unusable to 400.
fn payload(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Payload, Reject> {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Reject::TooLarge);
        }
        Err(_) => return Err(Reject::Malformed),
    };
    Ok(Payload::parse(headers, &body)?)
}

/// Account bound to the request's `Authorization: Bearer <token>`, if any.
fn bearer_account(state: &DemoState, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    state.session_account(token.trim())
}

pub(super) async fn index() -> Html<&'static str> {
    Html(page::LOGIN_PAGE)
}

pub(super) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found")
}

pub(super) async fn stats(State(state): State<DemoState>) -> Response {
    Json(state.stats()).into_response()
}

pub(super) async fn login(
    State(state): State<DemoState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match payload(&headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (email, password) = match (p.string("email"), p.string("password")) {
        (Ok(Some(e)), Ok(Some(pw))) => (normalize_email(&e), pw),
        _ => return bad_request(),
    };
    match state.login(&email, &password) {
        Some(token) => {
            tracing::debug!(account = %email, "demo api: login ok");
            (StatusCode::OK, Json(json!({ "token": token, "account": email }))).into_response()
        }
        None => {
            tracing::debug!("demo api: login failed");
            error(StatusCode::UNAUTHORIZED, "invalid_credentials")
        }
    }
}

/// Deliberately vulnerable password reset (7pay / GitLab CVE-2023-7028 model): the link goes
/// to `send_to` when given, otherwise to every address listed in `email`.
pub(super) async fn password_reset(
    State(state): State<DemoState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match payload(&headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let emails: Vec<String> = match p.string_list("email") {
        Ok(Some(list)) => list.iter().map(|e| normalize_email(e)).filter(|e| !e.is_empty()).collect(),
        _ => return bad_request(),
    };
    let send_to: Option<Vec<String>> = match p.string_list("send_to") {
        Ok(v) => v.map(|list| list.iter().map(|e| normalize_email(e)).filter(|e| !e.is_empty()).collect()),
        Err(_) => return bad_request(),
    };
    if emails.is_empty()
        || emails.len() > MAX_RESET_ADDRESSES
        || send_to.as_ref().is_some_and(|s| s.len() > MAX_RESET_ADDRESSES)
    {
        return bad_request();
    }

    let c = &state.inner.counters;
    c.resets.fetch_add(1, Ordering::Relaxed);

    // The account is the first listed address that exists.
    let account = {
        let users = state.inner.users.read();
        emails.iter().find(|e| users.contains_key(e.as_str())).cloned()
    };
    if let Some(account) = account {
        let mut recipients = match send_to {
            Some(list) if !list.is_empty() => list,
            _ => emails,
        };
        let mut seen = std::collections::HashSet::new();
        recipients.retain(|r| seen.insert(r.clone()));
        let elsewhere = recipients.iter().any(|r| *r != account);
        for r in &recipients {
            // Debug only: the demo runs in the gateway's process, whose logs hold accounts as hashes.
            tracing::debug!(account = %account, recipient = %r, "demo api: password reset link sent");
        }
        c.reset_links_sent.fetch_add(recipients.len() as u64, Ordering::Relaxed);
        if elsewhere {
            c.reset_links_elsewhere.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Same answer whether or not the account exists (no enumeration).
    (StatusCode::OK, Json(json!({ "status": "sent" }))).into_response()
}

pub(super) async fn signup(
    State(state): State<DemoState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match payload(&headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (email, password) = match (p.string("email"), p.string("password")) {
        (Ok(Some(e)), Ok(Some(pw))) => (normalize_email(&e), pw),
        _ => return bad_request(),
    };
    let well_formed = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !password.is_empty()
        && password.len() <= MAX_PASSWORD_LEN;
    if !well_formed {
        return bad_request();
    }
    // Hash outside the lock.
    let user = User::new(&password);
    {
        let mut users = state.inner.users.write();
        if users.contains_key(&email) {
            return error(StatusCode::CONFLICT, "account_exists");
        }
        if users.len() >= MAX_USERS {
            return error(StatusCode::SERVICE_UNAVAILABLE, "user_table_full");
        }
        users.insert(email.clone(), user);
    }
    state.inner.counters.signups.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(account = %email, "demo api: signup");
    (StatusCode::CREATED, Json(json!({ "account": email }))).into_response()
}

pub(super) async fn topup(
    State(state): State<DemoState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(account) = bearer_account(&state, &headers) else {
        return unauthorized();
    };
    let p = match payload(&headers, body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let amount = match p.integer("amount") {
        Ok(Some(a)) if a > 0 && a <= MAX_TOPUP_YEN => a.unsigned_abs(),
        _ => return error(StatusCode::BAD_REQUEST, "bad_amount"),
    };
    let balance = {
        let mut users = state.inner.users.write();
        let Some(user) = users.get_mut(&account) else {
            return unauthorized();
        };
        user.balance = user.balance.saturating_add(amount);
        user.balance
    };
    let c = &state.inner.counters;
    c.topups.fetch_add(1, Ordering::Relaxed);
    c.topup_yen.fetch_add(amount, Ordering::Relaxed);
    tracing::debug!(account = %account, amount, "demo api: top-up");
    (StatusCode::OK, Json(json!({ "balance": balance }))).into_response()
}

pub(super) async fn me(State(state): State<DemoState>, headers: HeaderMap) -> Response {
    let Some(account) = bearer_account(&state, &headers) else {
        return unauthorized();
    };
    let balance = match state.inner.users.read().get(&account) {
        Some(user) => user.balance,
        None => return unauthorized(),
    };
    (StatusCode::OK, Json(json!({ "account": account, "balance": balance }))).into_response()
}
