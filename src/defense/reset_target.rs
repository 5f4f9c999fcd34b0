//! Reset links go to the account's own address. 7pay's reset flow mailed the link to any address given alongside a
//! few personal details; a reset that names a destination other than the account is a takeover in progress.
//! (A list of addresses in one field — GitLab CVE-2023-7028 — never gets here: the body is refused as ambiguous.)

use std::sync::Arc;

use serde::Deserialize;

use super::registry::{self, block, BuildContext, BuildError, DefenseSpec};
use super::{Defense, Fields, Finding, Message, Needs, Phase};
use crate::attempt::Attempt;
use crate::store::Reply;

pub const SPEC: DefenseSpec =
    DefenseSpec { name: "reset_target", findings: &["reset_target"], build, default_action: block };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

fn build(table: &toml::Table, _cx: &BuildContext<'_>) -> Result<Arc<dyn Defense>, BuildError> {
    let NoParams {} = registry::params(table)?;
    Ok(Arc::new(ResetTarget))
}

pub struct ResetTarget;

impl Defense for ResetTarget {
    fn name(&self) -> &'static str {
        "reset_target"
    }

    fn needs(&self) -> Needs {
        Needs {
            phase: Some(Phase::Credentials),
            fields: Fields { account: true, password: false, target: true },
            ..Needs::default()
        }
    }

    fn decide(&self, attempt: &Attempt<'_>, _replies: &[Reply], _now: u64) -> Finding {
        let credentials = &attempt.credentials;
        let Some(target) = credentials.target.map(str::trim).filter(|t| !t.is_empty()) else {
            return Finding::Clear;
        };
        let own = credentials.account.is_some_and(|account| target.eq_ignore_ascii_case(account));
        if own {
            Finding::Clear
        } else {
            Finding::Hit { reason: "reset_link_elsewhere", retry_after: None }
        }
    }

    fn default_status(&self) -> u16 {
        403
    }

    fn message(&self) -> Option<Message> {
        Some(Message {
            error: "reset_target_not_allowed",
            text: "Reset links are sent only to the account's own address.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::Credentials;
    use crate::defense::testing::Harness;

    #[test]
    fn only_the_accounts_own_address_or_none_may_receive_the_link() {
        let h = Harness::new();
        let subject = h.subject("198.51.100.1", Some("victim@example.jp"));
        let check = |target: Option<&str>| {
            h.check_with(
                &ResetTarget,
                &subject,
                Credentials { account: Some("victim@example.jp"), password: None, target },
            )
        };
        assert_eq!(check(None), Finding::Clear);
        assert_eq!(check(Some("")), Finding::Clear);
        assert_eq!(check(Some(" Victim@Example.jp ")), Finding::Clear);
        assert!(matches!(check(Some("attacker@evil.example")), Finding::Hit { .. }));
    }
}
