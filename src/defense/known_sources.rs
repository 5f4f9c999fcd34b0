//! Addresses an account has recently logged in from.
//!
//! Account-keyed blocks are a lockout weapon: anyone who knows a victim's login name could keep them out by failing
//! on purpose (Keycloak documents exactly this). So an account-level block does not apply to a source that has
//! logged in to that account successfully in the last `remember` period — the attacker keeps being blocked, the
//! owner at home does not.

use crate::store::{BoundedMap, Expiring};

use super::{AccountKey, IpKey};

const PER_ACCOUNT: usize = 4;

#[derive(Clone, Copy, Default)]
struct Recent {
    /// 32-bit fingerprints of the address keys, most recent first; 0 is empty.
    sources: [u32; PER_ACCOUNT],
    last_success: u64,
    remember: u64,
}

impl Expiring for Recent {
    fn is_expired(&self, now: u64) -> bool {
        now >= self.last_success + self.remember
    }
}

pub struct KnownSources {
    map: BoundedMap<AccountKey, Recent>,
    remember: u64,
}

fn fingerprint(ip: IpKey) -> u32 {
    let folded = (ip.0 as u64) ^ ((ip.0 >> 64) as u64);
    let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) as u32).max(1)
}

impl KnownSources {
    pub fn new(max_accounts: usize, remember: std::time::Duration) -> KnownSources {
        KnownSources {
            map: BoundedMap::new(max_accounts),
            remember: remember.as_nanos() as u64,
        }
    }

    pub fn record_success(&self, account: AccountKey, ip: IpKey, now: u64) {
        let print = fingerprint(ip);
        let remember = self.remember;
        self.map.update(
            account,
            now,
            || Recent {
                remember,
                ..Recent::default()
            },
            |recent| {
                if let Some(at) = recent.sources.iter().position(|&s| s == print) {
                    recent.sources[..=at].rotate_right(1);
                } else {
                    recent.sources.rotate_right(1);
                    recent.sources[0] = print;
                }
                recent.last_success = now;
            },
        );
    }

    pub fn is_known(&self, account: AccountKey, ip: IpKey, now: u64) -> bool {
        let print = fingerprint(ip);
        self.map
            .read(&account, now, |recent| recent.sources.contains(&print))
            .unwrap_or(false)
    }

    /// Whether an account-keyed block should spare this subject: it logged in to the account from here recently.
    /// `None` (the defense does not spare known sources) spares no one.
    pub fn spares(known: Option<&KnownSources>, subject: &super::Subject, now: u64) -> bool {
        match (known, subject.account) {
            (Some(known), Some(account)) => known.is_known(account, subject.ip_key, now),
            _ => false,
        }
    }

    pub fn prune(&self, now: u64) {
        self.map.prune(now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn remembers_the_last_few_sources_for_a_while() {
        let known = KnownSources::new(1000, Duration::from_secs(100));
        let account = AccountKey(7);
        let s = 1_000_000_000u64;
        known.record_success(account, IpKey(1), s);
        assert!(known.is_known(account, IpKey(1), 2 * s));
        assert!(!known.is_known(account, IpKey(2), 2 * s));
        assert!(!known.is_known(AccountKey(8), IpKey(1), 2 * s));
        for ip in 2..=5 {
            known.record_success(account, IpKey(ip), 3 * s);
        }
        assert!(!known.is_known(account, IpKey(1), 3 * s), "oldest source should have been pushed out");
        assert!(known.is_known(account, IpKey(5), 3 * s));
        assert!(!known.is_known(account, IpKey(5), 200 * s), "forgotten after the remember period");
    }
}
