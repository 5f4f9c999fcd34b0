//! The gateway's own answers: JSON bodies for API clients, Retry-After where waiting helps.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

pub struct Answer {
    pub status: u16,
    pub error: &'static str,
    pub message: &'static str,
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The answer to a block by `defense` (the one that decided), in words a client can show.
    pub fn block(status: u16, retry_after: Option<Duration>, defense: Option<&str>) -> Answer {
        let (error, message) = match (defense, status) {
            (Some("breached_password"), _) => {
                ("breached_password", "This password appears in known data breaches. Please choose another.")
            }
            (Some("email_domain"), _) => ("email_domain_not_accepted", "Addresses at this e-mail domain are not accepted."),
            (Some("reset_target"), _) => {
                ("reset_target_not_allowed", "Reset links are sent only to the account's own address.")
            }
            (_, 429) => ("too_many_attempts", "Too many attempts. Please wait before trying again."),
            (_, 403) => ("forbidden", "This request is not allowed."),
            _ => ("blocked", "This request was blocked."),
        };
        Answer {
            status,
            error,
            message,
            retry_after,
        }
    }

    pub fn bad_request(message: &'static str) -> Answer {
        Answer {
            status: 400,
            error: "bad_request",
            message,
            retry_after: None,
        }
    }

    pub fn too_large() -> Answer {
        Answer {
            status: 413,
            error: "payload_too_large",
            message: "The request body is larger than this endpoint accepts.",
            retry_after: None,
        }
    }
}

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
    let retry_secs = answer.retry_after.map(|d| d.as_secs().max(1) + u64::from(d.subsec_nanos() > 0));
    let body = match retry_secs {
        Some(secs) => format!(
            r#"{{"error":"{}","message":"{}","retry_after":{secs}}}"#,
            answer.error, answer.message
        ),
        None => format!(r#"{{"error":"{}","message":"{}"}}"#, answer.error, answer.message),
    };
    let mut header = ResponseHeader::build(answer.status, Some(6))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("x-stuffgate-decision", if answer.status == 400 || answer.status == 413 { "invalid" } else { "block" })?;
    if let Some(secs) = retry_secs {
        header.insert_header("retry-after", secs.to_string())?;
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
