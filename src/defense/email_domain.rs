//! E-mail domains refused as account identifiers: disposable-address services on sign-up (promotion farming makes
//! thousands of accounts on them). The shipped list is the `disposable-email-domains` project's (MIT), in
//! `policies/data/`.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use super::registry::{self, block, error, BuildContext, BuildError, DefenseSpec};
use super::{Defense, Fields, Finding, Message, Needs, Phase};
use crate::attempt::Attempt;
use crate::store::Reply;

pub const SPEC: DefenseSpec =
    DefenseSpec { name: "email_domain", findings: &["email_domain"], build, default_action: block };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    deny_domains: Vec<String>,
    /// A list file (one domain a line), relative to the policy file.
    deny_domains_file: Option<String>,
    #[serde(default)]
    deny_disposable: bool,
}

fn build(table: &toml::Table, cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let p: Params = registry::params(table)?;
    let mut domains = p.deny_domains;
    if let Some(list) = &p.deny_domains_file {
        let path = cx.base_dir.join(list);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| error("deny_domains_file", format!("cannot read {}: {e}", path.display())))?;
        domains.extend(EmailDomain::parse_list(&text));
    }
    if p.deny_disposable {
        domains.extend(EmailDomain::parse_list(DISPOSABLE_DOMAINS));
    }
    if domains.is_empty() {
        return Err(error(
            "deny_domains",
            "`email_domain` needs `deny_disposable = true`, `deny_domains` or a non-empty `deny_domains_file`",
        ));
    }
    Ok(Arc::new(EmailDomain::new(domains)))
}

/// The shipped disposable-domain list, compiled in so that `deny_disposable = true` needs no file at run time.
pub const DISPOSABLE_DOMAINS: &str = include_str!("../../policies/data/disposable-email-domains.txt");

pub struct EmailDomain {
    denied: HashSet<String>,
}

impl EmailDomain {
    pub fn new(denied: impl IntoIterator<Item = String>) -> EmailDomain {
        EmailDomain {
            denied: denied.into_iter().map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase()).collect(),
        }
    }

    /// Parse a list file: one domain a line, `#` comments and blank lines ignored.
    pub fn parse_list(text: &str) -> impl Iterator<Item = String> + '_ {
        text.lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty())
            .map(str::to_string)
    }

    pub fn len(&self) -> usize {
        self.denied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.denied.is_empty()
    }

    /// The domain or any parent domain is listed: `x.mailinator.com` is `mailinator.com`.
    fn denies(&self, account: &str) -> bool {
        let Some((_, mut domain)) = account.rsplit_once('@') else {
            return false;
        };
        domain = domain.trim_end_matches('.');
        loop {
            if self.denied.contains(domain) {
                return true;
            }
            match domain.split_once('.') {
                Some((_, parent)) if parent.contains('.') => domain = parent,
                _ => return false,
            }
        }
    }
}

impl Defense for EmailDomain {
    fn name(&self) -> &'static str {
        "email_domain"
    }

    fn needs(&self) -> Needs {
        Needs {
            phase: Some(Phase::Credentials),
            fields: Fields { account: true, ..Fields::default() },
            ..Needs::default()
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, _replies: &[Reply], _now: u64) -> Finding {
        match attempt.credentials.account {
            Some(account) if self.denies(account) => Finding::Hit { reason: "denied_email_domain", retry_after: None },
            _ => Finding::Clear,
        }
    }

    fn default_status(&self) -> u16 {
        422
    }

    fn message(&self) -> Option<Message> {
        Some(Message { error: "email_domain_not_accepted", text: "Addresses at this e-mail domain are not accepted." })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_domains_and_their_subdomains_are_refused() {
        let d = EmailDomain::new(
            EmailDomain::parse_list("# disposable\nmailinator.com\n\nYOPMAIL.com  # caps\n").collect::<Vec<_>>(),
        );
        assert_eq!(d.len(), 2);
        assert!(d.denies("farm1@mailinator.com"));
        assert!(d.denies("farm2@eu.mailinator.com"));
        assert!(d.denies("x@yopmail.com"));
        assert!(!d.denies("someone@gmail.com"));
        assert!(!d.denies("mailinator.com"), "no @: not an e-mail account");
        assert!(!d.denies("a@notmailinator.com"));
    }
}
