//! The Redis/Valkey side of shared state: the same cells as the local store (`cell.rs`), one Redis key per cell,
//! read in one pipelined round trip per decision phase and written behind in batches.
//!
//! | cell (local)        | Redis key (`<prefix><kind>:{<id>}:<cell>`)                  | read           | write            |
//! |---------------------|-------------------------------------------------------------|----------------|------------------|
//! | GCRA                | string: theoretical arrival time (µs)                       | `gcra.lua`     | (the read)       |
//! | count + penalty     | hash `s c p u k` (window start, current, previous, until, strikes) | `HGET u` | `count.lua`, `reset.lua` |
//! | distinct + penalty  | hash `u k` + sorted set `…:m` of member prints by last second | `HGET u`     | `distinct.lua`   |
//! | recent set          | sorted set of members by the second they are forgotten     | `ZSCORE`       | `remember.lua`   |
//! | last value          | string `value:until`                                         | `GET`          | `SET EXAT`       |
//! | claim               | string                                                       | `SET NX EXAT`  | —                |
//!
//! An operator's lift (`Write::Lift`) deletes the cell's keys (and a distinct cell's member set): the penalty, its
//! strikes and the evidence are forgotten fleet-wide, as in the local store.
//!
//! Every key is written with an expiry (the cell's keep-until second, as the local record's), and every set is
//! capped by its rule, so Redis memory is bounded like the local store's. Ids are the keyed hashes of `keys.rs`:
//! nothing in Redis names an address or an account without the gateways' secret. The `{id}` hash tag keeps a
//! distinct cell's two keys in one cluster slot. Times go to the scripts in microseconds (exact in Lua's doubles
//! until the year 2255); the scripts take the gateways' wall clock (NTP keeps gateways within milliseconds, far
//! below any window here).
//!
//! The client is `fred`: every command is sent with `fail_fast` (no waiting for a reconnection), one attempt and the
//! phase deadline, so a dead server answers in microseconds (see docs/shared-state.md).

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use sha1::Digest;

use super::cell::secs;
use super::{KeyKind, Read, Reply, StateKey, StoreError, Write};

const NANOS: u64 = 1_000_000_000;

struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    fn new(source: &'static str) -> Script {
        Script { source, sha: hex::encode(sha1::Sha1::digest(source.as_bytes())) }
    }
}

struct Scripts {
    gcra: Script,
    count: Script,
    reset: Script,
    distinct: Script,
    remember: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            gcra: Script::new(include_str!("lua/gcra.lua")),
            count: Script::new(include_str!("lua/count.lua")),
            reset: Script::new(include_str!("lua/reset.lua")),
            distinct: Script::new(include_str!("lua/distinct.lua")),
            remember: Script::new(include_str!("lua/remember.lua")),
        }
    }

    fn all(&self) -> [&Script; 5] {
        [&self.gcra, &self.count, &self.reset, &self.distinct, &self.remember]
    }
}

/// The short name of a key kind in Redis keys (part of the layout: bump the prefix's version to change it).
fn kind_code(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Address => "ad",
        KeyKind::Account => "ac",
        KeyKind::AccountAddress => "aa",
        KeyKind::Password => "pw",
        KeyKind::Session => "se",
        KeyKind::Device => "dv",
        KeyKind::Challenge => "ch",
        KeyKind::Fingerprint => "fp",
    }
}

fn micros(nanos: u64) -> u64 {
    nanos / 1000
}

/// `EVALSHA` as a custom command: fred's pipelines have no script interface. Routed by its first key (cluster).
async fn evalsha<C: ClientLike>(pipe: &C, sha: &str, keys: &[&str], args: &[i64]) -> Result<(), Error> {
    let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
    all.push(sha.into());
    all.push((keys.len() as i64).into());
    all.extend(keys.iter().map(|&k| Value::from(k)));
    all.extend(args.iter().map(|&a| Value::from(a)));
    pipe.custom::<(), Value>(CustomCommand::new_static("EVALSHA", ClusterHash::Offset(2), false), all).await
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(n) => Some(*n as f64),
        Value::Double(d) => Some(*d),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// A Redis connection speaking the store's operations.
pub struct RedisStore {
    client: Client,
    prefix: String,
    scripts: Scripts,
    /// Applied to every command: fail at once while disconnected, one attempt, the deadline.
    read_options: Options,
    write_options: Options,
}

/// What a read phase's round trip brought back: one reply per read, or that read's own error (e.g. `NOSCRIPT`
/// after a server restart); `Err` when the round trip itself failed.
pub type SharedReplies = Vec<Result<Reply, String>>;

impl RedisStore {
    /// A client for `url` (redis:// or rediss://). It connects, and reconnects, in the background on the current
    /// tokio runtime: a server that is down at start costs nothing but fallbacks.
    pub fn new(url: &str, prefix: &str, deadline: Duration, write_timeout: Duration) -> Result<RedisStore, String> {
        let config = Config::from_url(url).map_err(|e| e.details().to_string())?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(1);
                c.internal_command_timeout = Duration::from_secs(1);
                c.max_command_attempts = 1;
                c.tcp = TcpConfig { nodelay: Some(true), ..TcpConfig::default() };
            })
            .with_performance_config(|p| p.default_command_timeout = write_timeout)
            // Reconnect forever, 50 ms doubling to 500 ms: a restarted server is found within half a second.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 500, 2));
        let client = builder.build().map_err(|e| e.details().to_string())?;
        let options =
            |timeout| Options { fail_fast: true, max_attempts: Some(1), timeout: Some(timeout), ..Options::default() };
        Ok(RedisStore {
            client,
            prefix: prefix.to_string(),
            scripts: Scripts::new(),
            read_options: options(deadline),
            write_options: options(write_timeout),
        })
    }

    /// Start connecting (spawns the connection task on the current runtime) and load the scripts on every
    /// (re)connection: a restarted server has forgotten them.
    pub fn connect(self: &Arc<Self>) {
        // Both return the handle of a spawned task; dropping it detaches the task, which lives with the client.
        drop(self.client.connect());
        let store = Arc::clone(self);
        drop(self.client.on_reconnect(move |_server| {
            let store = Arc::clone(&store);
            async move {
                store.load_scripts().await;
                Ok(())
            }
        }));
    }

    pub async fn load_scripts(&self) {
        for script in self.scripts.all() {
            let loaded: Result<String, _> = self.client.script_load(script.source).await;
            if let Err(error) = loaded {
                tracing::debug!(error = %error.details(), "shared state: SCRIPT LOAD failed");
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Until the client is connected (at once when it is).
    pub async fn wait_for_connect(&self) -> Result<(), StoreError> {
        self.client.wait_for_connect().await.map_err(|e| StoreError::Backend(e.details().to_string()))
    }

    /// One PING with fail-fast and the write timeout: the breaker's probe.
    pub async fn ping(&self) -> bool {
        let with = self.client.with_options(&self.write_options);
        let answer: Result<String, _> = with.ping(None).await;
        answer.is_ok()
    }

    pub fn key(&self, key: &StateKey, cell: u16) -> String {
        format!("{}{}:{{{:016x}}}:{:x}", self.prefix, kind_code(key.kind), key.id, cell)
    }

    /// Serve `reads` in one pipelined round trip (bounded by the deadline in the client as well as by the caller).
    pub async fn read(&self, reads: &[Read], now: u64) -> Result<SharedReplies, StoreError> {
        let pipeline = self.client.pipeline();
        let pipe = pipeline.with_options(&self.read_options);
        for read in reads {
            self.queue_read(&pipe, read, now).await.map_err(|e| StoreError::Backend(e.details().to_string()))?;
        }
        let results: Vec<Result<Value, Error>> = pipe.try_all().await;
        if let Some(error) = round_trip_error(&results, reads.len()) {
            return Err(error);
        }
        let replies = reads
            .iter()
            .zip(results)
            .map(|(read, result)| match result {
                Ok(value) => reply_of(read, &value, now),
                Err(error) => Err(error.details().to_string()),
            })
            .collect();
        Ok(replies)
    }

    async fn queue_read<C: KeysInterface + HashesInterface + SortedSetsInterface + Sync>(
        &self,
        pipe: &C,
        read: &Read,
        now: u64,
    ) -> Result<(), Error> {
        match *read {
            Read::Gcra { key, cell, interval, tolerance } => {
                let args = [micros(now), micros(interval), micros(tolerance)].map(|n| n as i64);
                evalsha(pipe, &self.scripts.gcra.sha, &[&self.key(&key, cell)], &args).await
            }
            Read::Penalty { key, cell } => pipe.hget::<(), _, _>(self.key(&key, cell), "u").await,
            Read::Contains { key, cell, member } => pipe.zscore::<(), _, _>(self.key(&key, cell), member as i64).await,
            Read::Last { key, cell } => pipe.get::<(), _>(self.key(&key, cell)).await,
            Read::Claim { key, cell, ttl } => {
                let until = secs(now + ttl).max(secs(now) + 1);
                pipe.set::<(), _, _>(
                    self.key(&key, cell),
                    1,
                    Some(Expiration::EXAT(until as i64)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
            }
        }
    }

    /// Send a batch of writes in one pipelined round trip. Returns how many failed (each is dropped) and whether
    /// a failure asks for the scripts to be loaded again.
    pub async fn write(&self, writes: &[(Write, u64)]) -> Result<WriteReport, StoreError> {
        let pipeline = self.client.pipeline();
        let pipe = pipeline.with_options(&self.write_options);
        for (write, now) in writes {
            self.queue_write(&pipe, write, *now).await.map_err(|e| StoreError::Backend(e.details().to_string()))?;
        }
        let results: Vec<Result<Value, Error>> = pipe.try_all().await;
        if let Some(error) = round_trip_error(&results, writes.len()) {
            return Err(error);
        }
        let mut report = WriteReport::default();
        for error in results.into_iter().filter_map(Result::err) {
            report.failed += 1;
            report.noscript |= error.details().contains("NOSCRIPT");
        }
        Ok(report)
    }

    async fn queue_write<C: KeysInterface + HashesInterface + SortedSetsInterface + Sync>(
        &self,
        pipe: &C,
        write: &Write,
        now: u64,
    ) -> Result<(), Error> {
        let now_us = micros(now);
        match *write {
            Write::Count { key, cell, rule } => {
                let args = [
                    now_us,
                    rule.threshold as u64,
                    micros(rule.window),
                    micros(rule.penalty),
                    micros(rule.max_penalty),
                    micros(rule.memory),
                ]
                .map(|n| n as i64);
                evalsha(pipe, &self.scripts.count.sha, &[&self.key(&key, cell)], &args).await
            }
            Write::ResetCount { key, cell } => {
                evalsha(pipe, &self.scripts.reset.sha, &[&self.key(&key, cell)], &[]).await
            }
            Write::Distinct { key, cell, member, failed, rule } => {
                let cell_key = self.key(&key, cell);
                let members = format!("{cell_key}:m");
                // The suspect ratio goes as parts per million: every argument is an integer.
                let (early, ratio) = match rule.suspect {
                    Some((early, ratio)) => (early as i64, (ratio as f64 * 1e6).round() as i64),
                    None => (-1, 0),
                };
                let args = [
                    now_us as i64,
                    (member & !1) as i64,
                    failed as i64,
                    rule.threshold as i64,
                    early,
                    ratio,
                    micros(rule.window) as i64,
                    micros(rule.penalty) as i64,
                    micros(rule.max_penalty) as i64,
                    micros(rule.memory) as i64,
                    rule.cap as i64,
                ];
                evalsha(pipe, &self.scripts.distinct.sha, &[&cell_key, &members], &args).await
            }
            Write::Remember { key, cell, member, cap, keep } => {
                let until = secs(now) as u64 + keep.div_ceil(NANOS);
                let args = [member as i64, until as i64, cap.max(1) as i64];
                evalsha(pipe, &self.scripts.remember.sha, &[&self.key(&key, cell)], &args).await
            }
            Write::Lift { key, cell } => {
                let cell_key = self.key(&key, cell);
                let members = format!("{cell_key}:m");
                pipe.del::<(), _>(vec![cell_key, members]).await
            }
            Write::SetLast { key, cell, value, keep } => {
                let until = secs(now + keep);
                pipe.set::<(), _, _>(
                    self.key(&key, cell),
                    format!("{value}:{until}"),
                    Some(Expiration::EXAT(until.max(secs(now) + 1) as i64)),
                    None,
                    false,
                )
                .await
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WriteReport {
    pub failed: usize,
    pub noscript: bool,
}

/// Whether the pipeline's answer says the round trip failed (disconnected, timed out, refused) rather than some
/// command of it (a script missing after a restart, a key of another type).
fn round_trip_error(results: &[Result<Value, Error>], sent: usize) -> Option<StoreError> {
    let transport = |e: &Error| {
        matches!(
            e.kind(),
            ErrorKind::IO
                | ErrorKind::Canceled
                | ErrorKind::Timeout
                | ErrorKind::Backpressure
                | ErrorKind::Routing
                | ErrorKind::Protocol
                | ErrorKind::Tls
                | ErrorKind::Config
                | ErrorKind::Url
                | ErrorKind::Auth
                | ErrorKind::Sentinel
        )
    };
    let error = results.iter().filter_map(|r| r.as_ref().err()).find(|e| transport(e));
    match error {
        Some(e) if *e.kind() == ErrorKind::Timeout => Some(StoreError::Timeout),
        Some(e) => Some(StoreError::Backend(e.details().to_string())),
        None if results.len() != sent => Some(StoreError::Backend("short pipeline answer".into())),
        None => None,
    }
}

/// A Redis reply as the store's reply to `read` at `now`.
fn reply_of(read: &Read, value: &Value, now: u64) -> Result<Reply, String> {
    let bad = || Err(format!("unexpected reply {value:?}"));
    Ok(match read {
        Read::Gcra { .. } => match number(value) {
            Some(wait) if wait > 0.0 => Reply::Wait(wait as u64 * 1000),
            Some(_) => Reply::Admit,
            None => return bad(),
        },
        Read::Penalty { .. } => match value {
            Value::Null => Reply::Penalty(0),
            other => match number(other) {
                Some(until) => Reply::Penalty((until as u64).saturating_mul(NANOS).saturating_sub(now)),
                None => return bad(),
            },
        },
        Read::Contains { .. } => match value {
            Value::Null => Reply::Contains(false),
            other => match number(other) {
                Some(until) => Reply::Contains((secs(now) as f64) < until),
                None => return bad(),
            },
        },
        Read::Last { .. } => match value {
            Value::Null => Reply::Last(None),
            other => {
                let text = other.as_string().unwrap_or_default();
                let Some((value, until)) = text.split_once(':') else {
                    return bad();
                };
                let (Ok(value), Ok(until)) = (value.parse::<u32>(), until.parse::<u32>()) else {
                    return bad();
                };
                Reply::Last((secs(now) < until).then_some(value))
            }
        },
        Read::Claim { .. } => Reply::Claimed(!value.is_null()),
    })
}
