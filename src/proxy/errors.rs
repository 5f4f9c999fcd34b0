//! What the gateway says and logs when a request fails rather than being answered: pingora's `fail_to_proxy` and
//! `request_summary` hooks.
//!
//! pingora's defaults answer a stalled client body with 500, a hung upstream with 502 and a dead upstream with an
//! empty 502, and write the request line — query string included — into its error log. A password or token sent
//! as `?password=` must not reach the log, and a client should get a status that says whose fault it was.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType};

use crate::telemetry::metrics;

/// How a failed request is answered: the status and the JSON `error` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub error: &'static str,
    pub message: &'static str,
}

/// Classify a proxy failure. `None`: the client is gone (nothing can be written), or pingora's status is kept.
pub fn classify(error: &Error) -> Option<Failure> {
    use ErrorType::*;
    let etype = error.etype();
    if let HTTPStatus(code) = etype {
        return Some(Failure { status: *code, error: "error", message: "The request could not be served." });
    }
    match error.esource() {
        ErrorSource::Upstream => Some(match etype {
            ConnectTimedout | ReadTimedout | WriteTimedout => Failure {
                status: 504,
                error: "upstream_timeout",
                message: "The service did not answer in time. Please try again.",
            },
            _ => Failure {
                status: 502,
                error: "upstream_unavailable",
                message: "The service is unavailable. Please try again.",
            },
        }),
        // A client that stops sending its body mid-way: 408, the client's fault, not ours.
        ErrorSource::Downstream | ErrorSource::Internal | ErrorSource::Unset if matches!(etype, ReadTimedout) => {
            Some(Failure { status: 408, error: "request_timeout", message: "The request body arrived too slowly." })
        }
        ErrorSource::Downstream if matches!(etype, WriteError | ReadError | ConnectionClosed | WriteTimedout) => None,
        ErrorSource::Downstream => {
            Some(Failure { status: 400, error: "bad_request", message: "The request could not be read." })
        }
        ErrorSource::Internal | ErrorSource::Unset => {
            Some(Failure { status: 500, error: "internal_error", message: "The request could not be served." })
        }
    }
}

/// The label of `stuffgate_upstream_errors_total` for an upstream failure.
pub fn upstream_error_kind(error: &Error) -> Option<&'static str> {
    use ErrorType::*;
    if error.esource() != &ErrorSource::Upstream {
        return None;
    }
    Some(match error.etype() {
        ConnectRefused => "connect_refused",
        ConnectTimedout => "connect_timeout",
        ConnectError | ConnectNoRoute | SocketError | BindError | TLSHandshakeFailure | TLSHandshakeTimedout
        | InvalidCert => "connect_error",
        ReadTimedout | WriteTimedout => "timeout",
        ConnectionClosed | ReadError | WriteError => "closed",
        InvalidHTTPHeader | H1Error | H2Error | InvalidH2 => "bad_response",
        _ => "other",
    })
}

/// `fail_to_proxy`: answer with the gateway's JSON, count upstream failures, and never reuse the connection (a
/// half-read body may still be on it).
pub async fn fail_to_proxy(session: &mut Session, error: &Error) -> FailToProxy {
    if let Some(kind) = upstream_error_kind(error) {
        metrics::UPSTREAM_ERRORS.with_label_values(&[kind]).inc();
    }
    let Some(failure) = classify(error) else {
        return FailToProxy { error_code: 0, can_reuse_downstream: false };
    };
    if session.response_written().is_none() {
        session.set_keepalive(None);
        if let Err(write_error) = write(session, &failure).await {
            tracing::debug!(%write_error, "could not answer a failed request");
        }
    }
    FailToProxy { error_code: failure.status, can_reuse_downstream: false }
}

async fn write(session: &mut Session, failure: &Failure) -> pingora::Result<()> {
    let body = format!(r#"{{"error":"{}","message":"{}"}}"#, failure.error, failure.message);
    let mut header = ResponseHeader::build(failure.status, Some(4))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("connection", "close")?;
    session.write_response_header(Box::new(header), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await
}

/// `request_summary`, as pingora prints it in its error lines, without the query string: a login sent as
/// `?email=…&password=…` or an API call carrying `?token=…` must not be logged.
pub fn request_summary(session: &Session) -> String {
    let header = session.req_header();
    let host = header.headers.get(http::header::HOST).map(|h| String::from_utf8_lossy(h.as_bytes()));
    format!(
        "{} {}, Host: {}",
        header.method.as_str(),
        redact_query(header.uri.path_and_query().map_or("/", |p| p.as_str())),
        host.as_deref().unwrap_or("-")
    )
}

/// `/api/login?password=x` → `/api/login?<redacted>`.
pub fn redact_query(target: &str) -> std::borrow::Cow<'_, str> {
    match target.split_once('?') {
        Some((path, _)) => std::borrow::Cow::Owned(format!("{path}?<redacted>")),
        None => std::borrow::Cow::Borrowed(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_say_whose_fault_it_was() {
        let up = |t| {
            let mut e = Error::new(t);
            e.as_up();
            e
        };
        assert_eq!(classify(&up(ErrorType::ConnectRefused)).map(|f| f.status), Some(502));
        assert_eq!(classify(&up(ErrorType::ConnectTimedout)).map(|f| f.status), Some(504));
        assert_eq!(classify(&up(ErrorType::ReadTimedout)).map(|f| f.status), Some(504));
        // The body read timeout of a protected route surfaces unset or downstream.
        assert_eq!(classify(&Error::new(ErrorType::ReadTimedout)).map(|f| f.status), Some(408));
        let mut down = Error::new(ErrorType::ReadTimedout);
        down.as_down();
        assert_eq!(classify(&down).map(|f| f.status), Some(408));
        let mut gone = Error::new(ErrorType::ConnectionClosed);
        gone.as_down();
        assert_eq!(classify(&gone), None);
        assert_eq!(classify(&Error::new(ErrorType::HTTPStatus(413))).map(|f| f.status), Some(413));
        assert_eq!(upstream_error_kind(&up(ErrorType::ConnectRefused)), Some("connect_refused"));
        assert_eq!(upstream_error_kind(&Error::new(ErrorType::ConnectRefused)), None);
    }

    #[test]
    fn query_strings_are_redacted() {
        assert_eq!(redact_query("/api/login?password=hunter2"), "/api/login?<redacted>");
        assert_eq!(redact_query("/api/login"), "/api/login");
    }
}
