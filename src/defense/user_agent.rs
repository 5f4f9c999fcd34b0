//! The client's `User-Agent`: a login with none, or one naming an HTTP library or a headless browser, is a script.
//! Serious stuffing tools (OpenBullet, SentryMBA configs) copy browser headers, so this catches the cheap end only —
//! which is why its default action is `tag`: the app (or a later challenge) decides, and no real browser is refused.
//! Mobile apps often send their HTTP library's agent (`okhttp`, `CFNetwork`, `Dalvik`): none of those is listed.

use std::sync::Arc;

use serde::Deserialize;

use super::registry::{self, BuildContext, BuildError, DefaultAction, DefenseSpec};
use super::{Defense, Finding, Needs, Phase};
use crate::attempt::Attempt;
use crate::store::Reply;

pub const SPEC: DefenseSpec =
    DefenseSpec { name: "user_agent", findings: &["user_agent"], build, default_action: |_| DefaultAction::Tag };

/// Agents of HTTP libraries and automation that no person logs in with (matched case-insensitively, anywhere).
const SCRIPTED: &[&str] = &[
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "undici",
    "scrapy",
    "headlesschrome",
    "phantomjs",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Extra substrings to flag, besides the built-in list of HTTP libraries and headless browsers.
    #[serde(default)]
    deny: Vec<String>,
    /// Flag requests without a User-Agent (default true).
    missing: Option<bool>,
}

pub struct UserAgent {
    deny: Vec<String>,
    missing: bool,
}

fn build(table: &toml::Table, _cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    if let Some(empty) = p.deny.iter().position(|d| d.trim().is_empty()) {
        return Err(registry::error("deny", format!("entry {empty} is empty: it would match every agent")));
    }
    let mut deny: Vec<String> = SCRIPTED.iter().map(|s| s.to_string()).collect();
    deny.extend(p.deny.iter().map(|d| d.to_ascii_lowercase()));
    Ok(Arc::new(UserAgent { deny, missing: p.missing.unwrap_or(true) }))
}

impl Defense for UserAgent {
    fn name(&self) -> &'static str {
        "user_agent"
    }

    fn needs(&self) -> Needs {
        Needs { phase: Some(Phase::Address), ..Needs::default() }
    }

    fn decide(&self, attempt: &Attempt<'_>, _replies: &[Reply], _now: u64) -> Finding {
        let agent = attempt.headers.get(http::header::USER_AGENT).map(|v| v.as_bytes()).unwrap_or_default();
        if agent.iter().all(u8::is_ascii_whitespace) {
            return if self.missing {
                Finding::Hit { reason: "no_user_agent", retry_after: None }
            } else {
                Finding::Clear
            };
        }
        let lower = agent.to_ascii_lowercase();
        let listed = self.deny.iter().any(|d| lower.windows(d.len()).any(|w| w == d.as_bytes()));
        if listed {
            Finding::Hit { reason: "scripted_user_agent", retry_after: None }
        } else {
            Finding::Clear
        }
    }

    fn default_status(&self) -> u16 {
        403
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::Credentials;

    fn finding(agent: Option<&str>) -> Finding {
        let defense = UserAgent { deny: SCRIPTED.iter().map(|s| s.to_string()).collect(), missing: true };
        let mut headers = http::HeaderMap::new();
        if let Some(agent) = agent {
            headers.insert(http::header::USER_AGENT, agent.parse().unwrap());
        }
        let subject = crate::defense::testing::Harness::new().subject("198.51.100.1", None);
        let attempt = Attempt { subject, credentials: Credentials::default(), headers: &headers };
        defense.decide(&attempt, &[], 0)
    }

    #[test]
    fn scripts_and_missing_agents_are_flagged_and_browsers_and_apps_are_not() {
        assert!(matches!(finding(None), Finding::Hit { reason: "no_user_agent", .. }));
        assert!(matches!(finding(Some("python-requests/2.32.3")), Finding::Hit { .. }));
        assert!(matches!(finding(Some("Mozilla/5.0 HeadlessChrome/126.0")), Finding::Hit { .. }));
        let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
        assert_eq!(finding(Some(browser)), Finding::Clear);
        assert_eq!(finding(Some("okhttp/4.12.0")), Finding::Clear, "Android apps use okhttp");
        assert_eq!(finding(Some("MyBank/5.2 CFNetwork/1498 Darwin/23.6.0")), Finding::Clear);
    }
}
