//! Addresses an account has recently logged in from.
//!
//! Account-keyed blocks are a lockout weapon: anyone who knows a victim's login name could keep them out by failing
//! on purpose (Keycloak documents exactly this). So an account-level block does not apply to a source that has
//! logged in to that account successfully in the last 30 days — the attacker keeps being blocked, the owner at home
//! does not. The list lives in the account's record (its last few addresses) and is read as the `known_source` fact
//! by the engine when a defense of the route asks for it.

use std::time::Duration;

use crate::attempt::Subject;
use crate::store::{Read, Write, KNOWN_SOURCES_CELL};

/// Addresses remembered per account.
pub const PER_ACCOUNT: u8 = 4;
/// How long a successful login keeps its address known.
pub const REMEMBER: Duration = Duration::from_secs(30 * 86_400);

/// The read that answers "did this account log in from here recently?".
pub fn read(subject: &Subject) -> Option<Read> {
    Some(Read::Contains { key: subject.account?, cell: KNOWN_SOURCES_CELL, member: subject.address_print() })
}

/// The write after a successful login.
pub fn record_success(subject: &Subject) -> Option<Write> {
    Some(Write::Remember {
        key: subject.account?,
        cell: KNOWN_SOURCES_CELL,
        member: subject.address_print(),
        cap: PER_ACCOUNT,
        keep: REMEMBER.as_nanos() as u64,
    })
}
