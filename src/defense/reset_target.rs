//! Reset links go to the account's own address. 7pay's reset flow mailed the link to any address given alongside a
//! few personal details; a reset that names a destination other than the account is a takeover in progress.
//! (A list of addresses in one field — GitLab CVE-2023-7028 — never gets here: the body is refused as ambiguous.)

use super::{Credentials, Defense, Finding, Subject};

pub struct ResetTarget;

impl Defense for ResetTarget {
    fn name(&self) -> &'static str {
        "reset_target"
    }

    fn needs_credentials(&self) -> bool {
        true
    }

    fn check(&self, _subject: &Subject, credentials: &Credentials<'_>, _now: u64) -> Finding {
        let Some(target) = credentials.target.map(str::trim).filter(|t| !t.is_empty()) else {
            return Finding::Clear;
        };
        let own = credentials.account.is_some_and(|account| target.eq_ignore_ascii_case(account));
        if own {
            Finding::Clear
        } else {
            Finding::Hit {
                reason: "reset_link_elsewhere",
                retry_after: None,
            }
        }
    }

    fn default_status(&self) -> u16 {
        403
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn only_the_accounts_own_address_or_none_may_receive_the_link() {
        let subject = Subject::new("198.51.100.1".parse::<IpAddr>().unwrap(), 64);
        let check = |target: Option<&str>| {
            ResetTarget.check(
                &subject,
                &Credentials { account: Some("victim@example.jp"), password: None, target },
                0,
            )
        };
        assert_eq!(check(None), Finding::Clear);
        assert_eq!(check(Some("")), Finding::Clear);
        assert_eq!(check(Some(" Victim@Example.jp ")), Finding::Clear);
        assert!(matches!(check(Some("attacker@evil.example")), Finding::Hit { .. }));
    }
}
