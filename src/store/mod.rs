//! Keyed state behind a small set of typed operations, so a remote backend (Redis, shared by several gateways) can
//! stand in for the local one.
//!
//! * **Keys** are [`StateKey`]s: a key kind (address, account, account+address, password, session, device) and a
//!   keyed 64-bit hash (see `keys.rs`). One *record* per key: every defense that keys on an address keeps its state in
//!   a *cell* of that address's record, so a login touches one record per key kind, not one map per defense.
//! * **Cells** are addressed by a [`CellId`] derived from the route and the defense's parameters: stable across
//!   reloads and across gateways running the same policy.
//! * **Reads** are batched per decision phase ([`Read`] → [`Reply`]): one round trip for a remote backend. The one
//!   read that writes, GCRA admission, is atomic in every backend.
//! * **Writes** ([`Write`]) come from the upstream's answer; a remote backend queues and batches them.
//! * **Time** is wall-clock nanoseconds (see `clock.rs`): expiries mean the same on every gateway.
//!
//! Every record expires (a window after its last event, or a strike memory after a penalty) and the local backend
//! holds at most `max_tracked_keys` records per key kind, evicting records without a live penalty first.

pub mod breaker;
mod cell;
mod local;
mod pages;
mod redis;
pub mod shared;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use cell::{DistinctRule, Escalation};
pub use local::{LocalStore, RECORD_BYTES};
pub use shared::{SharedSettings, SharedStore};

/// What a store key identifies. The discriminant is part of the key hash and of a remote key's name: never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeyKind {
    Address = 0,
    Account = 1,
    AccountAddress = 2,
    Password = 3,
    Session = 4,
    Device = 5,
    /// A challenge token (spent-token records: single use across gateways).
    Challenge = 6,
    /// A client fingerprint (`fingerprint`): one TLS or HTTP stack, shared by every user of that client.
    Fingerprint = 7,
}

impl KeyKind {
    pub const ALL: [KeyKind; 8] = [
        KeyKind::Address,
        KeyKind::Account,
        KeyKind::AccountAddress,
        KeyKind::Password,
        KeyKind::Session,
        KeyKind::Device,
        KeyKind::Challenge,
        KeyKind::Fingerprint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Address => "address",
            KeyKind::Account => "account",
            KeyKind::AccountAddress => "account_address",
            KeyKind::Password => "password",
            KeyKind::Session => "session",
            KeyKind::Device => "device",
            KeyKind::Challenge => "challenge",
            KeyKind::Fingerprint => "fingerprint",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub kind: KeyKind,
    pub id: u64,
}

/// Which cell of a record: one per stateful defense (and one per shared fact such as known sources).
pub type CellId = u16;

/// The cell of the account record that lists the addresses the account recently logged in from.
pub const KNOWN_SOURCES_CELL: CellId = 1;

/// A read of a decision phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Read {
    /// GCRA admission: admits and consumes, or says how long to wait. `interval` is the emission interval and
    /// `tolerance` the burst allowance (`interval × (burst − 1)`), in nanoseconds.
    Gcra { key: StateKey, cell: CellId, interval: u64, tolerance: u64 },
    /// The remaining penalty of a counting or distinct-set cell.
    Penalty { key: StateKey, cell: CellId },
    /// Whether `member` is in the key's recent set.
    Contains { key: StateKey, cell: CellId, member: u32 },
    /// The last value set, when set within its keep time.
    Last { key: StateKey, cell: CellId },
    /// Claim the cell for `ttl` nanoseconds if nobody holds it (SET NX): true for the one caller that got it. Used
    /// for single-use tokens.
    Claim { key: StateKey, cell: CellId, ttl: u64 },
}

impl Write {
    pub fn key(&self) -> StateKey {
        match self {
            Write::Count { key, .. }
            | Write::ResetCount { key, .. }
            | Write::Distinct { key, .. }
            | Write::Remember { key, .. }
            | Write::SetLast { key, .. }
            | Write::Lift { key, .. } => *key,
        }
    }

    /// The cell written.
    pub fn cell(&self) -> CellId {
        match self {
            Write::Count { cell, .. }
            | Write::ResetCount { cell, .. }
            | Write::Distinct { cell, .. }
            | Write::Remember { cell, .. }
            | Write::SetLast { cell, .. }
            | Write::Lift { cell, .. } => *cell,
        }
    }
}

impl Read {
    pub fn key(&self) -> StateKey {
        match self {
            Read::Gcra { key, .. }
            | Read::Penalty { key, .. }
            | Read::Contains { key, .. }
            | Read::Last { key, .. }
            | Read::Claim { key, .. } => *key,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Admit,
    /// Not admitted; nanoseconds until it would be.
    Wait(u64),
    /// Nanoseconds of penalty left (0: none).
    Penalty(u64),
    Contains(bool),
    Last(Option<u32>),
    /// Whether this read claimed the cell (false: someone already held it).
    Claimed(bool),
}

/// A write from an upstream's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Write {
    /// Count one event; crossing the rule's threshold imposes its next penalty.
    Count { key: StateKey, cell: CellId, rule: Escalation },
    /// Forget the count (not the penalty): the owner got in, earlier typos no longer count.
    ResetCount { key: StateKey, cell: CellId },
    /// Note `member` (e.g. an account) with its latest outcome in a distinct set.
    Distinct { key: StateKey, cell: CellId, member: u32, failed: bool, rule: DistinctRule },
    /// Put `member` first in a recent set of at most `cap`, kept `keep` nanoseconds after its last use.
    Remember { key: StateKey, cell: CellId, member: u32, cap: u8, keep: u64 },
    /// Set the cell's value, kept `keep` nanoseconds.
    SetLast { key: StateKey, cell: CellId, value: u32, keep: u64 },
    /// Lift the penalty of a counting or distinct-set cell (an operator's `DELETE /decisions/{id}`): the penalty,
    /// the strikes that would escalate the next one and the count or set that led to it are forgotten.
    Lift { key: StateKey, cell: CellId },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer within its deadline")]
    Timeout,
    #[error("store error: {0}")]
    Backend(String),
}

/// A phase's reads in flight. The local backend answers at once (no allocation, no await point); a remote backend
/// returns the round trip to await.
pub enum ReadFuture<'a> {
    Ready(Result<(), StoreError>),
    Pending(Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>),
}

impl Future for ReadFuture<'_> {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ReadFuture::Ready(result) => Poll::Ready(std::mem::replace(result, Ok(()))),
            ReadFuture::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl ReadFuture<'_> {
    /// The result, when the backend answered without waiting (always, for the local store).
    pub fn now_or_never(self) -> Option<Result<(), StoreError>> {
        match self {
            ReadFuture::Ready(result) => Some(result),
            ReadFuture::Pending(_) => None,
        }
    }
}

/// A phase's reads and their replies: on the stack for the usual handful.
pub type Reads = smallvec::SmallVec<[Read; 8]>;
pub type Replies = smallvec::SmallVec<[Reply; 8]>;

/// Writes that imposed a penalty: (index into the writes, nanoseconds left).
pub type Struck = smallvec::SmallVec<[(usize, u64); 4]>;

/// Records by key kind, for gauges.
pub type KeyCounts = [(KeyKind, usize); 8];

pub trait Store: Send + Sync {
    /// Serve one phase's reads, appending one reply per read to `replies`, in order.
    fn read<'a>(&'a self, reads: &'a [Read], now: u64, replies: &'a mut Replies) -> ReadFuture<'a>;
    /// Apply (or queue) the writes of an answer.
    fn write(&self, writes: &[Write], now: u64);
    /// The same, also reporting the writes that imposed a new penalty (index into `writes`, nanoseconds it lasts), where
    /// the backend knows at once — so the engine can list penalties for operators without reading the store back.
    fn write_reporting(&self, writes: &[Write], now: u64, struck: &mut Struck) {
        let _ = struck;
        self.write(writes, now);
    }
    /// Drop expired records; called from the maintenance timer.
    fn prune(&self, now: u64);
    fn tracked_keys(&self) -> KeyCounts;
}
