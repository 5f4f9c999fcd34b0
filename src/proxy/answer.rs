//! Writing the gateway's own answers (rendered by `crate::answer`) to the client, keeping the connection when that
//! is cheap and safe.

use std::time::Duration;

use crate::answer::{wants_html, Answer};

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Largest unread body drained to keep the connection alive after answering without reading it.
const DRAIN_LIMIT: u64 = 16 * 1024;

/// A small body with a declared length need not cost the connection: reading it is cheap, and a refused flood over
/// keep-alive then costs no new TCP connection per request (nginx's limit_req does the same). Larger, chunked or
/// unknown-length bodies still close it.
fn drain_is_cheap(session: &Session) -> bool {
    let headers = &session.req_header().headers;
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(http::header::CONTENT_LENGTH) {
        None => true,
        Some(value) => std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|len| len <= DRAIN_LIMIT),
    }
}

/// Write the answer. `body_consumed` false means the request body was never read: a small declared body is drained
/// so the connection stays open; otherwise the connection closes, or its unread bytes would be taken for the next
/// request.
pub async fn send(session: &mut Session, answer: &Answer, body_consumed: bool) -> Result<()> {
    let accept = session.req_header().headers.get(http::header::ACCEPT).map(|v| v.as_bytes());
    let (content_type, body) = answer.render(wants_html(accept));
    send_rendered(session, answer, content_type, body, body_consumed).await
}

/// Write `answer` with a body already rendered (a challenge: the JSON protocol or the page).
pub async fn send_rendered(
    session: &mut Session,
    answer: &Answer,
    content_type: &str,
    body: String,
    body_consumed: bool,
) -> Result<()> {
    // No case map: the names below are written as given (lower case), and a refused flood request is the one
    // whose cost matters most, so each header is one map insert, not two. Room for ours and the `date` and
    // `connection` pingora adds, so the map never grows.
    let mut header = ResponseHeader::build_no_case(answer.status, Some(8))?;
    header.insert_header("content-type", content_type)?;
    header.insert_header("content-length", http::HeaderValue::from(body.len()))?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("x-stuffgate-decision", answer.decision)?;
    if let Some(secs) = answer.retry_secs() {
        header.insert_header("retry-after", http::HeaderValue::from(secs))?;
    }
    if !body_consumed {
        if drain_is_cheap(session) {
            // Read the small unread body now (it usually came in the header's packet), so pingora keeps the
            // connection: it closes any connection answered before its request body was finished.
            session.set_read_timeout(Some(Duration::from_secs(10)));
            session.as_downstream_mut().drain_request_body().await?;
        } else {
            session.set_keepalive(None);
        }
    }
    session.write_response_header(Box::new(header), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await?;
    Ok(())
}
