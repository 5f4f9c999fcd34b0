//! The pingora side: `Gateway` implements `ProxyHttp`, and each phase hands off to one helper.
//! Unprotected traffic passes with a route lookup and the spoofed-header strip; nothing else.

pub mod answer;
pub mod client_ip;
pub mod connections;
mod decision_log;
pub mod errors;
pub mod proxy_protocol;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

use crate::answer::Answer;
use crate::config::{Policy, Route};
use crate::defense::{Effects, Outcome};
use crate::engine::{self, BodyRead, Judged};
use crate::fingerprint::{ClientFingerprint, FingerprintSource};
use crate::ip_ranges::IpRanges;
use crate::reload::PolicyHandle;
use crate::telemetry::metrics;

/// Everything the phases share, built once at start.
pub struct GatewayState {
    pub policy: Arc<PolicyHandle>,
    /// Swapped when a reloaded gateway file changes `trusted_proxies`; shared with the connection tracker.
    pub trusted_proxies: Arc<arc_swap::ArcSwap<IpRanges>>,
    /// The header trusted proxies name the client in.
    pub forwarded_header: client_ip::ForwardedHeader,
    pub upstream: HttpPeer,
    /// `[connections] refuse_blocked_at_accept`: an address-level refusal also closes the client's connection and is
    /// noted for the listener, which then refuses the address's new connections while the block lasts.
    pub refuse_blocked_at_accept: bool,
    /// `[connections] body_timeout_secs`: the whole of a protected request's body must arrive within this.
    pub body_timeout: std::time::Duration,
    /// JA4 of the open TLS connections (filled before each handshake, see `tls.rs`).
    pub fingerprints: Arc<tls::Fingerprints>,
    /// The header trusted proxies pass the client's TLS fingerprint in.
    pub fingerprint_header: Option<http::HeaderName>,
    /// Send `X-Stuffgate-Client-Fingerprint` upstream.
    pub forward_fingerprint: bool,
    /// The certificates of each TLS listener.
    pub certificates: Vec<Arc<crate::certs::Resolver>>,
}

pub struct Gateway {
    pub state: Arc<GatewayState>,
}

/// Per-request state. Empty (and allocation-free) for unprotected requests.
#[derive(Default)]
pub struct RequestCtx {
    client_ip: Option<IpAddr>,
    /// The connection is the client's own (not a trusted proxy's carrying others): closing it and refusing its
    /// address at accept touch that client only.
    client_owns_connection: bool,
    /// The policy the request was matched against, kept alive across a concurrent reload.
    policy: Option<Arc<Policy>>,
    route: usize,
    /// The engine's decision, once made.
    judged: Option<Judged>,
    outcome: Option<Outcome>,
    decision_started: Option<Instant>,
    decision_micros: u64,
    /// The challenge page's re-submit was replaced by the original body.
    body_swapped: bool,
    /// The client's fingerprint, once looked up (`None` inside: the request has none).
    fingerprint: Option<Option<ClientFingerprint>>,
}

const HEADER_PREFIX: &str = "x-stuffgate-";
/// Longest pause allowed between two reads of a protected request's body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // None. Pingora's default adds a response-compression module, disabled, that still costs every request an
        // allocated context and a call in each phase; the gateway compresses nothing.
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        connections::request_started(session);
        let header = session.req_header();
        let policy = self.state.policy.peek();
        let matched = policy
            .match_route(&header.method, header.uri.path())
            .or_else(|| carries_body(header).then(|| policy.match_route_with_body(header.uri.path())).flatten());
        if let Some(index) = matched {
            ctx.policy = Some(arc_swap::Guard::into_inner(policy));
            ctx.route = index;
            ctx.decision_started = Some(Instant::now());
        }
        (ctx.client_ip, ctx.client_owns_connection) = self.client_ip(session);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Taken out of the context and put back, not cloned: an `Arc` clone per phase is an atomic write on a line
        // that every worker thread shares (the policy's reference count), which costs more the more threads run.
        let Some(policy) = ctx.policy.take() else {
            return self.refuse_banned(session, ctx).await;
        };
        if ctx.client_ip.is_none() {
            // A trusted proxy's hop is not an address: no key would be the client's own (see client_ip.rs).
            ctx.policy = Some(policy);
            answer::send(session, &Answer::unknown_client(), false).await?;
            return Ok(true);
        }
        let answered = self.guard(session, ctx, &policy.routes[ctx.route]).await;
        ctx.policy = Some(policy);
        let answered = answered?;
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
        session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        strip_spoofed_headers(request);
        strip_device_cookie(request, &self.state.policy.env().challenge.cookie_name)?;
        if let Some(ip) = ctx.client_ip {
            request.insert_header("x-stuffgate-client-ip", client_ip_value(ip))?;
        }
        if self.state.forward_fingerprint {
            if let Some(print) = self.fingerprint(session, ctx) {
                request.insert_header("x-stuffgate-client-fingerprint", print.as_str())?;
            }
        }
        if let Some(judged) = &ctx.judged {
            if judged.body_read {
                // The client was answered `100 Continue` and its body is read: the app is not asked again.
                request.remove_header(&http::header::EXPECT);
            }
            for (name, value) in &judged.effects.upstream {
                request.append_header(*name, value.as_str())?;
            }
            if let Some(original) = &judged.replacement {
                // The original login, unsealed from a challenge page's re-submit: its own type and length.
                request.remove_header(&http::header::TRANSFER_ENCODING);
                request.insert_header(http::header::CONTENT_LENGTH, original.body.len().to_string())?;
                match &original.content_type {
                    Some(content_type) => request.insert_header(http::header::CONTENT_TYPE, content_type.as_str())?,
                    None => {
                        request.remove_header(&http::header::CONTENT_TYPE);
                    }
                }
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(judged) = ctx.judged.as_mut() else {
            return Ok(());
        };
        if let Some(original) = judged.replacement.as_ref() {
            // The body was read whole into the replay buffer, which pingora sends in one piece: swap it once, and
            // send nothing of anything after it.
            if ctx.body_swapped {
                *body = None;
            } else {
                *body = Some(original.body.clone());
                ctx.body_swapped = true;
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
        let (Some(policy), Some(judged)) = (ctx.policy.as_ref(), ctx.judged.as_ref()) else {
            return Ok(());
        };
        let route = &policy.routes[ctx.route];
        let env = self.state.policy.env();
        let (outcome, effects) =
            engine::observe(route, env, &judged.subject, response.status.as_u16(), env.clock.now_nanos());
        apply_response_effects(response, &effects)?;
        ctx.outcome = Some(outcome);
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _error: Option<&pingora::Error>, ctx: &mut RequestCtx) {
        connections::request_finished(session);
        let Some(policy) = ctx.policy.as_ref() else {
            return;
        };
        let route = &policy.routes[ctx.route];
        let Some(judged) = ctx.judged.as_mut() else {
            return;
        };
        let verdict = judged.decision.verdict().as_str();
        route.metrics.request(verdict);
        let env = self.state.policy.env();
        if verdict == "block" {
            env.decisions.note_block(judged.subject.ip);
        }
        if env.geo.is_some() {
            if !judged.subject.facts.located {
                // Located here, after the answer, when no defense needed it before.
                engine::locate(env, &mut judged.subject);
            }
            let geo = &judged.subject.facts.geo;
            let label = match (geo.country.as_ref(), geo.is_private) {
                (_, true) => "private",
                (Some(code), false) => code.as_str(),
                (None, false) => "unknown",
            };
            metrics::count_by_country(&route.name, label, verdict);
        }
        if let Some(outcome) = ctx.outcome {
            route.metrics.outcome(outcome as usize);
        }
        for reason in &judged.decision.reasons {
            if let Some(counters) = route.slots.get(reason.slot).and_then(|s| s.metrics.as_ref()) {
                if reason.action == "trusted" { &counters.trusted } else { &counters.hit }.inc();
            }
        }
        route.metrics.decision_micros(ctx.decision_micros);
        if route.needs.facts.solution {
            crate::challenge::metrics::record(&route.name, judged.subject.facts.challenge, judged.challenge.is_some());
        }
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        decision_log::write(route, judged, ctx.outcome, status, ctx.decision_micros);
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &pingora::Error, _ctx: &mut RequestCtx) -> FailToProxy {
        errors::fail_to_proxy(session, e).await
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        errors::request_summary(session)
    }
}

impl Gateway {
    /// The client address (`None` when a trusted proxy's hop is not an address, see `client_ip`), and whether the
    /// connection is the client's own: its peer is not a trusted proxy, or a PROXY protocol header named the client.
    fn client_ip(&self, session: &Session) -> (Option<IpAddr>, bool) {
        // A trusted proxy's PROXY protocol header stands for the socket's peer (see `proxy_protocol.rs`).
        let proxied = connections::proxied_client(session);
        let peer = proxied
            .or_else(|| session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let header = self.state.forwarded_header;
        // Every field line, in order: `get` would return only the first, the one a client behind HAProxy wrote.
        let lines = session.req_header().headers.get_all(header.header_name()).iter().map(|v| v.as_bytes());
        let trusted = self.state.trusted_proxies.load();
        let owns = proxied.is_some() || !trusted.contains(peer);
        (client_ip::resolve(peer, lines, header, &trusted), owns)
    }

    /// An address-level refusal on the client's own connection: close the connection after the answer, and note the
    /// address for the listener until `retry_after` (none: a ban or deny list, which the listener reads itself).
    fn refuse_address(&self, session: &mut Session, ctx: &RequestCtx, prefix: u8, retry_after: Option<Duration>) {
        let (true, true, Some(ip)) = (self.state.refuse_blocked_at_accept, ctx.client_owns_connection, ctx.client_ip)
        else {
            return;
        };
        if let Some(retry_after) = retry_after {
            let env = self.state.policy.env();
            let now = env.clock.now_nanos();
            env.decisions.address_blocks.note(ip, prefix, now.saturating_add(retry_after.as_nanos() as u64), now);
        }
        session.set_keepalive(None);
    }

    /// The client's fingerprint, looked up once per request. With `fingerprint_header` set, a trusted proxy's
    /// request carries the client's in that header (the proxy's own TLS fingerprint says nothing about the client,
    /// so it is never used for such a peer); otherwise it is the JA4 of the ClientHello on this connection. The
    /// header is never read from any other peer.
    fn fingerprint(&self, session: &Session, ctx: &mut RequestCtx) -> Option<ClientFingerprint> {
        if let Some(known) = ctx.fingerprint {
            return known;
        }
        let from_proxy = self.state.fingerprint_header.as_ref().filter(|_| {
            let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
            peer.is_some_and(|ip| self.state.trusted_proxies.load().contains(ip))
        });
        let found = match from_proxy {
            Some(name) => session
                .req_header()
                .headers
                .get(name)
                .and_then(|value| ClientFingerprint::new(FingerprintSource::Header, value.as_bytes().trim_ascii())),
            // Without TLS on this connection: a fingerprint of the HTTP request head.
            None => self
                .state
                .fingerprints
                .of_session(session)
                .or_else(|| crate::fingerprint::http(&session.req_header().headers)),
        };
        ctx.fingerprint = Some(found);
        found
    }

    /// Manual bans (`crate::decisions`) hold on every route; on protected routes the engine applies them.
    async fn refuse_banned(&self, session: &mut Session, ctx: &RequestCtx) -> Result<bool> {
        let (Some(ip), env) = (ctx.client_ip, self.state.policy.env()) else {
            return Ok(false);
        };
        let now = env.clock.now_nanos();
        let Some(ban) = env.decisions.banned(ip, now) else {
            return Ok(false);
        };
        env.decisions.note_block(ip);
        let engine::Verdict::Block { retry_after, .. } = engine::banned_verdict(&ban, now) else {
            return Ok(false);
        };
        self.refuse_address(session, ctx, 128, None);
        answer::send(session, &Answer::banned(retry_after), false).await?;
        Ok(true)
    }

    /// Run the route's defenses; true when the gateway answered and the request must not be forwarded.
    async fn guard(&self, session: &mut Session, ctx: &mut RequestCtx, route: &Route) -> Result<bool> {
        let ip = ctx.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let env = self.state.policy.env();
        let now = env.clock.now_nanos();
        let fingerprint = self.fingerprint(session, ctx);
        let judged = engine::decide(
            route,
            env,
            &mut Downstream { session: &mut *session, ip, body_timeout: self.state.body_timeout, fingerprint },
            now,
        )
        .await?;
        let answer = Answer::for_decision(route, &judged.decision);
        if let Some(retry_after) = address_refusal(route, &judged) {
            self.refuse_address(session, ctx, route.ipv6_prefix, retry_after);
        }
        let body_read = judged.body_read;
        let challenge = judged.challenge.as_ref().map(|issued| {
            let accept = session.req_header().headers.get(http::header::ACCEPT).map(|v| v.as_bytes());
            if crate::answer::wants_html(accept) {
                // The path as routes read it (one leading '/'): the raw one may say `//other.host/..%2f…`, which
                // a browser resolves to another host and would post the solved token and sealed login to.
                let uri = &session.req_header().uri;
                let path = crate::config::policy::normalise_path(uri.path());
                let action = match uri.query() {
                    Some(query) => format!("{path}?{query}"),
                    None => path.into_owned(),
                };
                ("text/html; charset=utf-8", crate::challenge::page::html(issued, &action))
            } else {
                ("application/json", crate::challenge::page::json(issued))
            }
        });
        ctx.judged = Some(judged);
        match (answer, challenge) {
            (None, _) => Ok(false),
            (Some(answer), Some((content_type, body))) => {
                answer::send_rendered(session, &answer, content_type, body, body_read).await?;
                Ok(true)
            }
            (Some(answer), None) => {
                answer::send(session, &answer, body_read).await?;
                Ok(true)
            }
        }
    }
}

/// When the decision refuses the address itself, whatever it sends (a manual ban, or an enforced block by an
/// address-level defense): `Some` with how long the refusal lasts, when the decision says.
fn address_refusal(route: &Route, judged: &Judged) -> Option<Option<Duration>> {
    let engine::Verdict::Block { retry_after, .. } = judged.decision.verdict() else {
        return None;
    };
    match judged.decision.decided_by {
        Some(slot) => route.slots.get(slot).filter(|s| s.defense.address_level()).map(|_| retry_after),
        // Not decided by a slot: a manual ban (see `engine::decide`).
        None => judged.decision.reasons.iter().any(|r| r.defense == "manual_ban").then_some(None),
    }
}

/// The client's request as the engine reads it.
struct Downstream<'s> {
    session: &'s mut Session,
    ip: IpAddr,
    body_timeout: Duration,
    /// See [`Gateway::fingerprint`] for where it comes from.
    fingerprint: Option<ClientFingerprint>,
}

impl engine::Request for Downstream<'_> {
    type Error = Box<pingora::Error>;

    fn ip(&self) -> IpAddr {
        self.ip
    }

    fn headers(&self) -> &http::HeaderMap {
        &self.session.req_header().headers
    }

    fn client_fingerprint(&self) -> Option<ClientFingerprint> {
        self.fingerprint
    }

    fn method(&self) -> Option<&http::Method> {
        Some(&self.session.req_header().method)
    }

    fn query(&self) -> Option<&str> {
        self.session.req_header().uri.query()
    }

    async fn read_body(&mut self, limit: usize) -> Result<BodyRead> {
        read_bounded_body(self.session, limit, self.body_timeout).await
    }
}

/// The request announces a body: a non-zero `Content-Length` or any `Transfer-Encoding`.
fn carries_body(header: &RequestHeader) -> bool {
    let headers = &header.headers;
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().iter().any(|b| (b'1'..=b'9').contains(b)))
}

/// Headers the decision adds to the client's response (e.g. a device cookie).
fn apply_response_effects(response: &mut ResponseHeader, effects: &Effects) -> Result<()> {
    for (name, value) in &effects.response {
        response.append_header(*name, value.as_str())?;
    }
    Ok(())
}

/// Read the whole body into pingora's replay buffer (it is sent upstream from there), refusing more than `limit`.
/// The whole body must arrive within `deadline` (a read timeout alone lets a body trickled a byte a few seconds
/// apart hold the connection for hours); a late one gets 408 like a stalled one.
async fn read_bounded_body(session: &mut Session, limit: usize, deadline: Duration) -> Result<BodyRead> {
    match tokio::time::timeout(deadline, read_body_within(session, limit)).await {
        Ok(result) => result,
        Err(_) => {
            metrics::CONNECTIONS_CLOSED.with_label_values(&["body_timeout"]).inc();
            Err(pingora::Error::explain(pingora::ErrorType::ReadTimedout, "request body not complete in time"))
        }
    }
}

async fn read_body_within(session: &mut Session, limit: usize) -> Result<BodyRead> {
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Ok(BodyRead::TooLarge);
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        // The client waits for this before it sends the body the checks need (curl waits a second, then sends).
        session.write_continue_response().await?;
    }
    // A login body is small: a client that trickles it is holding a worker task, not typing slowly.
    session.set_read_timeout(Some(BODY_READ_TIMEOUT));
    session.enable_retry_buffering();
    let mut total = 0usize;
    while let Some(chunk) = session.read_request_body().await? {
        total += chunk.len();
        if total > limit {
            return Ok(BodyRead::TooLarge);
        }
    }
    if session.retry_buffer_truncated() {
        return Ok(BodyRead::TooLarge);
    }
    Ok(BodyRead::Read(session.get_retry_buffer().unwrap_or_default()))
}

/// The client address as a header value. IPv4 without `fmt` (whose `Display` for addresses pads through a
/// buffer: ~0.2 µs of a ~25 µs proxied request in the profile, on every request).
fn client_ip_value(ip: std::net::IpAddr) -> http::HeaderValue {
    let std::net::IpAddr::V4(v4) = ip else {
        return http::HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| http::HeaderValue::from_static(""));
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    http::HeaderValue::from_bytes(&text[..len]).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// Clients must not be able to forge the headers the app trusts from us — nor their underscore spellings, which
/// CGI, Rack and WSGI servers map to the same `HTTP_X_STUFFGATE_*` variable.
fn strip_spoofed_headers(request: &mut RequestHeader) {
    let spoofed: Vec<http::HeaderName> =
        request.headers.keys().filter(|name| is_reserved_header(name.as_str())).cloned().collect();
    for name in spoofed {
        request.remove_header(&name);
    }
}

/// The gateway's device cookie is the gateway's: the app gets the other cookies, not the device token.
fn strip_device_cookie(request: &mut RequestHeader, name: &str) -> Result<()> {
    let carries =
        request.headers.get_all(http::header::COOKIE).iter().any(|v| without_cookie(v.as_bytes(), name).is_some());
    if !carries {
        return Ok(());
    }
    let kept: Vec<String> = request
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| {
            without_cookie(v.as_bytes(), name).unwrap_or_else(|| String::from_utf8_lossy(v.as_bytes()).into_owned())
        })
        .filter(|v| !v.is_empty())
        .collect();
    request.remove_header(&http::header::COOKIE);
    for value in kept {
        request.append_header(http::header::COOKIE, value)?;
    }
    Ok(())
}

/// The cookie line without `name=…` pairs, when it had one.
fn without_cookie(line: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let is_named = |pair: &str| pair.trim().split_once('=').is_some_and(|(n, _)| n.trim() == name);
    if !text.split(';').any(is_named) {
        return None;
    }
    Some(text.split(';').filter(|pair| !is_named(pair)).map(str::trim).collect::<Vec<_>>().join("; "))
}

/// Whether `name` (lower case, as `http` stores it) reads `x-stuffgate-…` once `_` is taken for `-`.
fn is_reserved_header(name: &str) -> bool {
    name.len() >= HEADER_PREFIX.len()
        && name.bytes().zip(HEADER_PREFIX.bytes()).all(|(got, want)| got == want || (got == b'_' && want == b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_client_ip_header_reads_as_the_address_display_does() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut addresses: Vec<std::net::IpAddr> =
            ["0.0.0.0", "255.255.255.255", "10.0.0.1", "100.64.9.99", "203.0.113.7", "2001:db8::1", "::ffff:1.2.3.4"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        for _ in 0..10_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            addresses.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(rng as u32)));
        }
        for ip in addresses {
            assert_eq!(super::client_ip_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    #[test]
    fn the_device_cookie_is_cut_out_of_a_cookie_line() {
        assert_eq!(super::without_cookie(b"a=1; sg_dev=TOKEN; b=2", "sg_dev").as_deref(), Some("a=1; b=2"));
        assert_eq!(super::without_cookie(b"sg_dev=TOKEN", "sg_dev").as_deref(), Some(""));
        assert_eq!(super::without_cookie(b"a=1; xsg_dev=2", "sg_dev"), None);
    }

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
