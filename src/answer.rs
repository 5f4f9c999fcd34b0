//! Every answer the gateway gives instead of the upstream: a block, a challenge, a refused body. JSON for API
//! clients; a small HTML page when the client navigates (a browser form POST asks for `text/html`). The wording comes
//! from the defense that decided, or from the status.

use std::time::Duration;

use crate::config::Route;
use crate::defense::{Decision, Message, Verdict};

/// An answer, before it is written in a format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `X-Stuffgate-Decision` header: block, challenge or invalid.
    pub decision: &'static str,
    pub message: Message,
    pub retry_after: Option<Duration>,
    /// A `password_reset_required` answer's link (the route's `reset_url`, validated when the policy compiled).
    pub reset_url: Option<std::sync::Arc<str>>,
}

/// The words of a reset-required answer.
const RESET_REQUIRED: Message = Message {
    error: "password_reset_required",
    text: "For your security, this password must be changed before you can sign in. Please reset your password.",
};

impl Answer {
    /// The answer for a decision that does not forward; `None` when it does.
    pub fn for_decision(route: &Route, decision: &Decision) -> Option<Answer> {
        let own = decision.decided_by.and_then(|i| route.slots.get(i)).and_then(|slot| slot.defense.message());
        let answer = match decision.verdict() {
            Verdict::Allow | Verdict::Tag => return None,
            Verdict::Block { status, .. } if decision.reset_required => Answer {
                status,
                decision: "reset_required",
                message: RESET_REQUIRED,
                retry_after: None,
                reset_url: route.reset_url.clone(),
            },
            Verdict::Block { status, retry_after } => Answer {
                status,
                decision: "block",
                message: own.unwrap_or_else(|| generic(status)),
                retry_after,
                reset_url: None,
            },
            Verdict::Challenge => Answer {
                status: 428,
                decision: "challenge",
                message: Message {
                    error: "challenge_required",
                    text: "Please confirm this request comes from you, then send it again.",
                },
                retry_after: None,
                reset_url: None,
            },
            Verdict::Invalid(problem) => Answer {
                status: problem.status(),
                decision: "invalid",
                message: Message {
                    error: if problem.status() == 413 { "payload_too_large" } else { "bad_request" },
                    text: problem.message(),
                },
                retry_after: None,
                reset_url: None,
            },
        };
        Some(answer)
    }

    /// An address under an operator's manual ban (`stuffgate decisions ban`), on a route that is not protected.
    pub fn banned(retry_after: Option<std::time::Duration>) -> Answer {
        Answer { status: 403, decision: "block", message: generic(403), retry_after, reset_url: None }
    }

    /// A trusted proxy named something that is not an address as the client: no key would be the client's own.
    pub fn unknown_client() -> Answer {
        Answer {
            status: 400,
            decision: "invalid",
            message: Message {
                error: "bad_request",
                text: "The client address could not be determined from the forwarding header.",
            },
            retry_after: None,
            reset_url: None,
        }
    }

    /// Whole seconds to wait, rounded up (Retry-After takes no fractions).
    pub fn retry_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))
    }

    /// The body and its content type: HTML for a client that navigates, JSON otherwise.
    pub fn render(&self, wants_html: bool) -> (&'static str, String) {
        if wants_html {
            return ("text/html; charset=utf-8", self.html());
        }
        if let Some(url) = &self.reset_url {
            // The link was checked when the policy compiled: no quotes, backslashes or angle brackets.
            let body = format!(
                r#"{{"error":"{}","message":"{}","reset_url":"{url}"}}"#,
                self.message.error, self.message.text
            );
            return ("application/json", body);
        }
        let body = match self.retry_secs() {
            Some(secs) => format!(
                r#"{{"error":"{}","message":"{}","retry_after":{secs}}}"#,
                self.message.error, self.message.text
            ),
            None => format!(r#"{{"error":"{}","message":"{}"}}"#, self.message.error, self.message.text),
        };
        ("application/json", body)
    }

    fn html(&self) -> String {
        let wait = match (self.retry_secs(), &self.reset_url) {
            (_, Some(url)) => format!("<p><a href=\"{url}\">Reset your password</a></p>"),
            (Some(secs), None) => format!("<p>You can try again in {secs} seconds.</p>"),
            (None, None) => String::new(),
        };
        // The texts are the gateway's own constants (no request data), so nothing here needs escaping.
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width\"><title>{status}</title></head><body><main><h1>{text}</h1>{wait}\
             <p><small>{error}</small></p></main></body></html>",
            status = self.status,
            text = self.message.text,
            error = self.message.error,
        )
    }
}

/// The wording of a block when the defense has none of its own.
fn generic(status: u16) -> Message {
    match status {
        429 => Message { error: "too_many_attempts", text: "Too many attempts. Please wait before trying again." },
        403 => Message { error: "forbidden", text: "This request is not allowed." },
        _ => Message { error: "blocked", text: "This request was blocked." },
    }
}

/// A client that navigates (a form post from a page) prefers HTML; an API client asks for JSON or anything.
pub fn wants_html(accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return false;
    };
    let position = |needle: &str| accept.find(needle);
    match (position("text/html"), position("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        assert!(wants_html(Some(b"text/html,application/xhtml+xml,*/*;q=0.8")));
        assert!(!wants_html(Some(b"application/json")));
        assert!(!wants_html(Some(b"*/*")));
        assert!(!wants_html(None));
        let answer = Answer {
            status: 429,
            decision: "block",
            message: generic(429),
            retry_after: Some(Duration::from_millis(1500)),
            reset_url: None,
        };
        let (kind, body) = answer.render(false);
        assert_eq!(kind, "application/json");
        assert_eq!(
            body,
            r#"{"error":"too_many_attempts","message":"Too many attempts. Please wait before trying again.","retry_after":2}"#
        );
        let (kind, page) = answer.render(true);
        assert!(kind.starts_with("text/html") && page.contains("try again in 2 seconds"), "{page}");
    }
}
