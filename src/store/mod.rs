//! Keyed state for the defenses.
//!
//! Every map here is keyed by attacker-controlled data (addresses, account names), so every map is bounded: entries
//! expire, a timer prunes them, and a full shard evicts before it grows. Accounts are stored as keyed 64-bit hashes,
//! never as text.

mod bounded;
mod window;

pub use bounded::{BoundedMap, Expiring};
pub use window::{CountWithPenalty, Escalation, Penalty, SlidingCount};
