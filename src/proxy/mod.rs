//! The pingora side: `Gateway` implements `ProxyHttp`, and each phase hands off to one helper.
//! Unprotected traffic passes with a route lookup and the spoofed-header strip; nothing else.

pub mod answer;
pub mod body;
pub mod client_ip;
pub mod connections;
pub mod errors;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

use crate::config::{Policy, Route};
use crate::defense::ip_list::IpRanges;
use crate::defense::{AccountHasher, Decision, Outcome, Subject, Verdict};
use crate::engine::{self, BodyGate};
use crate::reload::PolicyHandle;
use crate::telemetry::metrics;
use answer::Answer;

/// Everything the phases share, built once at start.
pub struct GatewayState {
    pub policy: Arc<PolicyHandle>,
    pub trusted_proxies: IpRanges,
    /// The header trusted proxies name the client in.
    pub forwarded_header: client_ip::ForwardedHeader,
    pub hasher: AccountHasher,
    pub upstream: HttpPeer,
}

pub struct Gateway {
    pub state: Arc<GatewayState>,
}

/// Per-request state. Empty (and allocation-free) for unprotected requests.
#[derive(Default)]
pub struct RequestCtx {
    client_ip: Option<IpAddr>,
    /// The policy the request was matched against, kept alive across a concurrent reload.
    policy: Option<Arc<Policy>>,
    route: usize,
    subject: Option<Subject>,
    decision: Decision,
    /// Set when the gateway answered instead of the upstream because the request itself was unusable.
    invalid: Option<&'static str>,
    outcome: Option<Outcome>,
    decision_started: Option<Instant>,
    decision_micros: u64,
}

impl RequestCtx {
    fn route(&self) -> Option<&Route> {
        self.policy.as_ref().map(|p| &p.routes[self.route])
    }
}

const HEADER_PREFIX: &str = "x-stuffgate-";
/// Longest pause allowed between two reads of a protected request's body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        connections::request_started(session);
        let header = session.req_header();
        let policy = self.state.policy.peek();
        if let Some(index) = policy.match_route(&header.method, header.uri.path()) {
            ctx.policy = Some(arc_swap::Guard::into_inner(policy));
            ctx.route = index;
            ctx.decision_started = Some(Instant::now());
        }
        ctx.client_ip = self.client_ip(session);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(policy) = ctx.policy.clone() else {
            return Ok(false);
        };
        if ctx.client_ip.is_none() {
            // A trusted proxy's hop is not an address: no key would be the client's own (see client_ip.rs).
            ctx.invalid = Some("bad_request");
            let message = "The client address could not be determined from the forwarding header.";
            answer::send(session, &Answer::bad_request(message), false).await?;
            return Ok(true);
        }
        let answered = self.guard(session, ctx, &policy.routes[ctx.route]).await?;
        if let Some(started) = ctx.decision_started {
            ctx.decision_micros = started.elapsed().as_micros() as u64;
        }
        Ok(answered)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.state.upstream.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        strip_spoofed_headers(request);
        if let Some(ip) = ctx.client_ip {
            request.insert_header("x-stuffgate-client-ip", ip.to_string())?;
        }
        if ctx.decision.tags().next().is_some() {
            let list: Vec<&str> = ctx.decision.tags().map(|r| r.defense).collect();
            request.insert_header("x-stuffgate-signals", list.join(","))?;
            for tag in ctx.decision.tags() {
                if let Some((name, value)) = &tag.header {
                    request.append_header(*name, value.as_str())?;
                }
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(policy), Some(subject)) = (ctx.policy.clone(), ctx.subject) else {
            return Ok(());
        };
        let route = &policy.routes[ctx.route];
        let env = self.state.policy.env();
        let outcome = engine::observe(route, env, &subject, response.status.as_u16(), env.clock.now_nanos());
        ctx.outcome = Some(outcome);
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _error: Option<&pingora::Error>, ctx: &mut RequestCtx) {
        connections::request_finished(session);
        let Some(route) = ctx.route() else {
            return;
        };
        let verdict = match (ctx.invalid, ctx.decision.verdict()) {
            (Some(invalid), _) => invalid,
            (None, v) => v.as_str(),
        };
        metrics::REQUESTS.with_label_values(&[route.name.as_str(), verdict]).inc();
        if let Some(subject) = ctx.subject.filter(|_| self.state.policy.env().geo.is_some()) {
            let label = match (subject.geo.country.as_ref(), subject.geo.is_private) {
                (_, true) => "private",
                (Some(code), false) => code.as_str(),
                (None, false) => "unknown",
            };
            metrics::REQUESTS_BY_COUNTRY.with_label_values(&[route.name.as_str(), label, verdict]).inc();
        }
        if let Some(outcome) = ctx.outcome {
            metrics::OUTCOMES.with_label_values(&[route.name.as_str(), outcome.as_str()]).inc();
        }
        for reason in &ctx.decision.reasons {
            metrics::FINDINGS
                .with_label_values(&[route.name.as_str(), reason.defense, reason.action, reason.mode.as_str()])
                .inc();
        }
        metrics::DECISION_SECONDS
            .with_label_values(&[route.name.as_str()])
            .observe(ctx.decision_micros as f64 / 1e6);
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        crate::telemetry::decision_event(route, ctx.client_ip, ctx.subject, &ctx.decision, verdict, ctx.outcome, status, ctx.decision_micros);
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &pingora::Error, _ctx: &mut RequestCtx) -> FailToProxy {
        errors::fail_to_proxy(session, e).await
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        errors::request_summary(session)
    }
}

impl Gateway {
    /// `None` when a trusted proxy's hop is not an address (see `client_ip`).
    fn client_ip(&self, session: &Session) -> Option<IpAddr> {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let header = self.state.forwarded_header;
        // Every field line, in order: `get` would return only the first, the one a client behind HAProxy wrote.
        let lines = session.req_header().headers.get_all(header.header_name()).iter().map(|v| v.as_bytes());
        client_ip::resolve(peer, lines, header, &self.state.trusted_proxies)
    }

    /// Run the route's defenses; true when the gateway answered and the request must not be forwarded.
    async fn guard(&self, session: &mut Session, ctx: &mut RequestCtx, route: &Route) -> Result<bool> {
        let ip = ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let env = self.state.policy.env();
        let now = env.clock.now_nanos();
        let session_value = route
            .session_header
            .as_ref()
            .and_then(|name| session.req_header().headers.get(name))
            .map(|value| value.as_bytes());
        let (mut subject, decision) = engine::check_address(route, env, ip, session_value, now);
        ctx.subject = Some(subject);
        ctx.decision = decision;
        if ctx.decision.verdict.is_some() {
            return self.answer_block(session, ctx, false).await;
        }
        if !route.reads_body() || ctx.decision.trusted {
            return Ok(false);
        }
        let body = match read_bounded_body(session, route.max_body_bytes).await? {
            Ok(body) => body,
            Err(invalid) => {
                ctx.invalid = Some("too_large");
                answer::send(session, &invalid, false).await?;
                return Ok(true);
            }
        };
        let content_type = session.req_header().headers.get("content-type").map(|v| v.as_bytes());
        let gate = engine::check_body(
            route,
            env,
            &self.state.hasher,
            content_type,
            &body,
            &mut subject,
            now,
            &mut ctx.decision,
        );
        ctx.subject = Some(subject);
        match gate {
            BodyGate::Checked if ctx.decision.verdict.is_some() => self.answer_block(session, ctx, true).await,
            BodyGate::Checked | BodyGate::Forward => Ok(false),
            BodyGate::Reject(message) => {
                ctx.invalid = Some("bad_request");
                answer::send(session, &Answer::bad_request(message), true).await?;
                Ok(true)
            }
            BodyGate::TooLarge => {
                ctx.invalid = Some("too_large");
                answer::send(session, &Answer::too_large(), true).await?;
                Ok(true)
            }
        }
    }

    async fn answer_block(&self, session: &mut Session, ctx: &RequestCtx, body_consumed: bool) -> Result<bool> {
        if let Verdict::Block { status, retry_after } = ctx.decision.verdict() {
            let answer = Answer::block(status, retry_after, ctx.decision.decided_by);
            answer::send(session, &answer, body_consumed).await?;
        }
        Ok(true)
    }
}

/// Read the whole body into pingora's replay buffer (it is sent upstream from there), refusing more than `limit`.
async fn read_bounded_body(session: &mut Session, limit: usize) -> Result<std::result::Result<bytes::Bytes, Answer>> {
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Ok(Err(Answer::too_large()));
    }
    // A login body is small: a client that trickles it is holding a worker task, not typing slowly.
    session.set_read_timeout(Some(BODY_READ_TIMEOUT));
    session.enable_retry_buffering();
    let mut total = 0usize;
    while let Some(chunk) = session.read_request_body().await? {
        total += chunk.len();
        if total > limit {
            return Ok(Err(Answer::too_large()));
        }
    }
    if session.retry_buffer_truncated() {
        return Ok(Err(Answer::too_large()));
    }
    Ok(Ok(session.get_retry_buffer().unwrap_or_default()))
}

/// Clients must not be able to forge the headers the app trusts from us — nor their underscore spellings, which
/// CGI, Rack and WSGI servers map to the same `HTTP_X_STUFFGATE_*` variable.
fn strip_spoofed_headers(request: &mut RequestHeader) {
    let spoofed: Vec<http::HeaderName> = request
        .headers
        .keys()
        .filter(|name| is_reserved_header(name.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        request.remove_header(&name);
    }
}

/// Whether `name` (lower case, as `http` stores it) reads `x-stuffgate-…` once `_` is taken for `-`.
fn is_reserved_header(name: &str) -> bool {
    name.len() >= HEADER_PREFIX.len()
        && name
            .bytes()
            .zip(HEADER_PREFIX.bytes())
            .all(|(got, want)| got == want || (got == b'_' && want == b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_headers_match_in_any_separator_spelling() {
        for name in ["x-stuffgate-client-ip", "x_stuffgate_client_ip", "x-stuffgate_signals", "x_stuffgate-"] {
            assert!(super::is_reserved_header(name), "{name}");
        }
        for name in ["x-stuffgate", "x-stuffgatex", "xx-stuffgate-a", "x-forwarded-for"] {
            assert!(!super::is_reserved_header(name), "{name}");
        }
    }
}
