//! Cost of the defense pipeline per request, on the library directly (no network, no pingora).
//!
//! `cargo bench --bench pipeline` (all), or with a filter, e.g. `cargo bench --bench pipeline -- pipeline/login`.
//!
//! * `pipeline/login_allowed`  — one allowed login on `policies/default.toml`'s `login` route: `engine::decide` on a
//!   minimal JSON body (`{"email":…,"password":…}`: the engine's one entry point reads credentials from the body) +
//!   `observe` (9 in 10 answers 401, 1 in 10 answers 200), each from one of
//!   2^20 distinct client addresses and with an account and password never seen before — the pattern of a
//!   distributed stuffing run, where every lookup misses the CPU caches and every observe inserts state. The policy
//!   is compiled as the gateway compiles it: with the shipped GeoIP database and breached-password filter.
//! * `pipeline/login_at_cap`   — the same after 1.25M such logins, when the stores hold their cap and every new key
//!   evicts: the steady state of a long-running gateway under a distributed attack.
//! * `pipeline/login_full`     — the same with a typical app's larger JSON body (extra fields skipped): everything
//!   the gateway decides per protected login besides HTTP and logging.
//! * `pipeline/flood_blocked`  — one address over its `ip_rate` limit: `decide` answers Block in the address phase,
//!   before any body read (what a blocked flood request costs the gateway in decision work).
//! * `pipeline/route_match`    — `Policy::match_route` for an unprotected path (the only per-request work the
//!   pipeline adds to unprotected traffic).
//! * `body/*`                  — `body_type` + `extract` of typical JSON and form login bodies.
//! * `telemetry/metrics_per_request/{1,2}_thread` — the Prometheus updates `logging()` does for one allowed login,
//!   per thread, from one thread and from two at once; `telemetry/shared_atomics/*` the same on shared counters.
//! * `memory/bounded_2M_ips`   — not a timing: feeds 2M distinct addresses (each with a fresh account, each login
//!   failing) through the login route and prints every defense's `tracked_keys()` before and after `prune`, and the
//!   process RSS. Runs first (fresh RSS) with a manual clock so "later" is deterministic; 20k addresses under
//!   `cargo test --benches`.
//!
//! Timed loops exclude the periodic `prune` calls (the gateway runs them on its maintenance thread every 5 s); the
//! prune cost itself is printed by the memory check.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use stuffgate::body::{body_type, extract};
use stuffgate::clock::Clock;
use stuffgate::config::{compile_policies, Policy, Services};
use stuffgate::defense::{Outcome, Verdict};
use stuffgate::engine::{self, InMemory};
use stuffgate::geoip::SharedGeoDb;
use stuffgate::store::LocalStore;

use std::cell::RefCell;

// The gateway binary runs on mimalloc (src/main.rs); so does this bench, or allocation-heavy paths would be
// judged on glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/default.toml");
/// The data files the default policy's geo and breach defenses need, as a gateway file would name them.
const COUNTRY_DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/country.mmdb");
const PASSWORD_FILTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/data/common-passwords.bloom");
const MAX_TRACKED_KEYS: usize = 1_000_000;
/// Distinct client addresses cycled through by the allowed-login benches.
const ADDRESS_BITS: u32 = 20;
/// Prune every this many requests (outside the timed section): ~1 s of traffic at the measured rates.
const PRUNE_EVERY: u64 = 1 << 20;

struct Bench {
    env: Services,
    local: Arc<LocalStore>,
    policy: Policy,
    login: usize,
    /// One request reused across calls, as the proxy reuses the parsed header map: only address and body change.
    request: RefCell<InMemory>,
}

impl Bench {
    fn new(clock: Clock) -> Bench {
        // As `server::build_state` does for a gateway file with `[geoip]` and `[breach]`.
        let geo = SharedGeoDb::open(Path::new(COUNTRY_DB), None).expect("geoip/country.mmdb opens");
        let mut env = Services::new(clock, MAX_TRACKED_KEYS).with_geo(Some(Arc::new(geo)));
        // The same store `Services::new` makes, kept typed here for the memory check's census.
        let local = Arc::new(LocalStore::new(MAX_TRACKED_KEYS));
        env.store = local.clone();
        env.open_breach_filters(Some(Path::new(PASSWORD_FILTER)), None)
            .expect("policies/data/common-passwords.bloom opens");
        let policy = compile_policies(&[PathBuf::from(POLICY)], &env, None).expect("policies/default.toml compiles");
        let login =
            policy.match_route(&http::Method::POST, "/api/login").expect("the default policy protects POST /api/login");
        Bench {
            env,
            local,
            policy,
            login,
            request: RefCell::new(InMemory {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                headers: [(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))]
                    .into_iter()
                    .collect(),
                body: bytes::Bytes::new(),
                client_fingerprint: None,
            }),
        }
    }

    fn prune(&self) {
        self.env.store.prune(self.env.clock.now_nanos());
    }

    /// One protected login decided from its JSON body and observed; returns whether it was forwarded.
    fn login(&self, ip: IpAddr, body: &[u8], status: u16) -> bool {
        let route = &self.policy.routes[self.login];
        let now = self.env.clock.now_nanos();
        let mut request = self.request.borrow_mut();
        request.ip = ip;
        request.body = bytes::Bytes::copy_from_slice(body);
        let Ok(judged) = engine::decide_now(route, &self.env, &mut *request, now);
        if !judged.verdict().forwards() {
            return false;
        }
        black_box(engine::observe(route, &self.env, &judged.subject, status, now));
        true
    }

    /// Only the decision (no observe), for a request expected to be refused.
    fn decide(&self, ip: IpAddr) -> Verdict {
        let route = &self.policy.routes[self.login];
        let mut request = self.request.borrow_mut();
        request.ip = ip;
        let Ok(judged) = engine::decide_now(route, &self.env, &mut *request, self.env.clock.now_nanos());
        judged.verdict()
    }
}

/// The i-th of 2^ADDRESS_BITS distinct public-looking IPv4 addresses (an odd multiplier permutes the low bits, so
/// consecutive requests land on unrelated map slots).
fn address(i: u64) -> IpAddr {
    let mask = (1u32 << ADDRESS_BITS) - 1;
    let low = (i as u32).wrapping_mul(0x9E37_79B1) & mask;
    IpAddr::V4(Ipv4Addr::from(0x5C00_0000 | low)) // 92.0.0.0/12
}

/// A text with 8 hex digits of a request number at fixed places, rewritten in place per request: a distinct account
/// (and password) per request without an allocation in the timed loop.
struct Numbered {
    text: Vec<u8>,
    slots: Vec<usize>,
}

impl Numbered {
    /// `template` marks each slot with "########".
    fn new(template: &str) -> Numbered {
        let text = template.as_bytes().to_vec();
        let slots = text.windows(8).enumerate().filter(|(_, w)| *w == b"########").map(|(i, _)| i).collect();
        Numbered { text, slots }
    }

    fn set(&mut self, n: u64) -> &[u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = n as u32;
        for &at in &self.slots {
            for i in 0..8 {
                self.text[at + i] = HEX[((n >> (28 - 4 * i)) & 0xf) as usize];
            }
        }
        &self.text
    }
}

/// The smallest JSON login body.
const MINIMAL_TEMPLATE: &str = r#"{"email":"user########@example.com","password":"Summer########!"}"#;

/// A typical JSON login body; account and password differ per request (stuffing lists pair each account with its
/// own leaked password, so `password_spray` stays quiet as it should).
const JSON_TEMPLATE: &str = r#"{"email":"user########@example.com","password":"Summer########!","remember_me":true,"client":{"app":"web","version":"4.12.0"}}"#;

fn status_for(i: u64) -> u16 {
    if i % 10 == 0 {
        200
    } else {
        401
    }
}

/// Times `iters` calls of `one(i)`, pruning every PRUNE_EVERY outside the clock. Counts refusals so a bench that
/// meant to measure the allowed path can say if it did not.
fn timed(bench: &Bench, next: &mut u64, refused: &mut u64, iters: u64, mut one: impl FnMut(u64) -> bool) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let until_prune = PRUNE_EVERY - (*next % PRUNE_EVERY);
        let chunk = left.min(until_prune);
        let start = Instant::now();
        for _ in 0..chunk {
            if !one(*next) {
                *refused += 1;
            }
            *next += 1;
        }
        total += start.elapsed();
        left -= chunk;
        if *next % PRUNE_EVERY == 0 {
            bench.prune();
        }
    }
    total
}

fn pipeline_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));

    {
        let bench = Bench::new(Clock::system());
        let (mut next, mut refused, mut total) = (0u64, 0u64, 0u64);
        let mut body = Numbered::new(MINIMAL_TEMPLATE);
        group.bench_function("login_allowed", |b| {
            b.iter_custom(|iters| {
                total += iters;
                timed(&bench, &mut next, &mut refused, iters, |i| bench.login(address(i), body.set(i), status_for(i)))
            })
        });
        report_refused("pipeline/login_allowed", refused, total);
    }

    {
        // The same once the stores hold their cap: the state of a gateway that has seen a million distinct accounts,
        // where every new key evicts (make_room, tombstone clean-up) instead of growing the tables.
        let bench = Bench::new(Clock::system());
        let (mut next, mut refused, mut total) = (0u64, 0u64, 0u64);
        let mut body = Numbered::new(MINIMAL_TEMPLATE);
        let fill = MAX_TRACKED_KEYS as u64 + MAX_TRACKED_KEYS as u64 / 4;
        timed(&bench, &mut next, &mut refused, fill, |i| bench.login(address(i), body.set(i), status_for(i)));
        let at_cap = bench.env.store.tracked_keys().iter().map(|(_, n)| *n).max().unwrap_or(0);
        eprintln!("pipeline/login_at_cap: {fill} logins fed first; the largest store holds {at_cap} keys");
        refused = 0;
        group.bench_function("login_at_cap", |b| {
            b.iter_custom(|iters| {
                total += iters;
                timed(&bench, &mut next, &mut refused, iters, |i| bench.login(address(i), body.set(i), status_for(i)))
            })
        });
        report_refused("pipeline/login_at_cap", refused, total);
    }

    {
        let bench = Bench::new(Clock::system());
        let (mut next, mut refused, mut total) = (0u64, 0u64, 0u64);
        let mut body = Numbered::new(JSON_TEMPLATE);
        group.bench_function("login_full", |b| {
            b.iter_custom(|iters| {
                total += iters;
                timed(&bench, &mut next, &mut refused, iters, |i| bench.login(address(i), body.set(i), status_for(i)))
            })
        });
        report_refused("pipeline/login_full", refused, total);
    }

    {
        let bench = Bench::new(Clock::system());
        let attacker = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66));
        // Exhaust the burst first so every timed call is a refusal.
        for _ in 0..1000 {
            let _ = bench.decide(attacker);
        }
        let probe = bench.decide(attacker);
        assert!(
            matches!(probe, Verdict::Block { status: 429, .. }),
            "the flood address must be blocked by now: {probe:?}"
        );
        group.bench_function("flood_blocked", |b| b.iter(|| black_box(bench.decide(black_box(attacker)))));
    }

    {
        let bench = Bench::new(Clock::system());
        group.bench_function("route_match", |b| {
            b.iter(|| bench.policy.match_route(black_box(&http::Method::GET), black_box("/static/app.js")))
        });
    }
    group.finish();
}

fn report_refused(name: &str, refused: u64, total: u64) {
    if total > 0 {
        eprintln!(
            "{name}: {refused} of {total} requests refused ({:.3}%) — the allowed path is what was measured",
            100.0 * refused as f64 / total as f64
        );
    }
}

fn body_benches(c: &mut Criterion) {
    let bench = Bench::new(Clock::system());
    let route = &bench.policy.routes[bench.login];
    let wanted = || route.wanted_fields();
    let mut group = c.benchmark_group("body");
    group.throughput(Throughput::Elements(1));

    let json: &[u8] = br#"{"email":"alice.smith@example.com","password":"correct horse battery staple","remember_me":true,"client":{"app":"web","version":"4.12.0"}}"#;
    group.bench_function("json_login", |b| {
        b.iter(|| {
            let body = black_box(json);
            let kind = body_type(Some(black_box(b"application/json; charset=utf-8")), body).expect("json");
            let out = extract(kind, body, wanted()).expect("parses");
            black_box(out.account().map(str::len));
            black_box(out.password().map(str::len))
        })
    });

    let minimal: &[u8] = br#"{"email":"alice.smith@example.com","password":"correct horse battery staple"}"#;
    group.bench_function("json_login_minimal", |b| {
        b.iter(|| {
            let body = black_box(minimal);
            let kind = body_type(Some(black_box(b"application/json")), body).expect("json");
            let out = extract(kind, body, wanted()).expect("parses");
            black_box(out.account().map(str::len))
        })
    });

    let escaped: &[u8] = br#"{"email":"alice.smith@example.com","password":"p\u00e4ss\"word\\1","remember_me":true}"#;
    group.bench_function("json_login_escaped_password", |b| {
        b.iter(|| {
            let body = black_box(escaped);
            let kind = body_type(Some(black_box(b"application/json")), body).expect("json");
            let out = extract(kind, body, wanted()).expect("parses");
            black_box(out.password().map(str::len))
        })
    });

    let form: &[u8] = b"email=alice.smith%40example.com&password=correct+horse+battery+staple&remember_me=1";
    group.bench_function("form_login", |b| {
        b.iter(|| {
            let body = black_box(form);
            let kind = body_type(Some(black_box(b"application/x-www-form-urlencoded")), body).expect("form");
            let out = extract(kind, body, wanted()).expect("parses");
            black_box(out.account().map(str::len))
        })
    });
    group.finish();
}

fn telemetry_benches(c: &mut Criterion) {
    use stuffgate::telemetry::metrics;
    let mut group = c.benchmark_group("telemetry");
    group.throughput(Throughput::Elements(1));
    // What `Gateway::logging` does for one allowed, observed login (no findings, no GeoIP), from one thread and from
    // two at once (time per request per thread), beside the same three updates on shared `prometheus` atomics (what
    // it was before the per-thread shards). On one core per thread, the two-thread figures show what cores writing
    // the same cache lines cost.
    let route = metrics::RouteMetrics::new("login");
    let sharded = || {
        route.request(black_box("allow"));
        route.outcome(black_box(Outcome::Failure as usize));
        route.decision_micros(black_box(12));
    };
    let requests = prometheus::IntCounter::new("bench_requests", "bench").expect("valid");
    let outcomes = prometheus::IntCounter::new("bench_outcomes", "bench").expect("valid");
    let opts = prometheus::HistogramOpts::new("bench_seconds", "bench")
        .buckets(vec![0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1]);
    let histogram = prometheus::Histogram::with_opts(opts).expect("valid");
    let shared = || {
        requests.inc();
        outcomes.inc();
        histogram.observe(black_box(12e-6));
    };
    for (name, update) in [("metrics_per_request", &sharded as &(dyn Fn() + Sync)), ("shared_atomics", &shared)] {
        for threads in [1u64, 2] {
            group.bench_function(format!("{name}/{threads}_thread"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|scope| {
                        for _ in 0..threads {
                            scope.spawn(|| (0..iters).for_each(|_| update()));
                        }
                    });
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

/// 2M distinct addresses through the login route; tracked keys before and after pruning.
fn memory_check(addresses: u64) {
    let clock = Clock::manual();
    let bench = Bench::new(clock.clone());
    let route = &bench.policy.routes[bench.login];
    let mut body = Numbered::new(MINIMAL_TEMPLATE);
    let rss0 = rss_mib();
    smaps_summary();
    let start = Instant::now();
    let mut refused = 0u64;
    for i in 0..addresses {
        // Distinct addresses over the whole IPv4 space (a bijection of u32), one fresh account each, all failing,
        // at 100k requests per virtual second.
        let ip = IpAddr::V4(Ipv4Addr::from((i as u32).wrapping_mul(0x9E37_79B1)));
        if !bench.login(ip, body.set(i), 401) {
            refused += 1;
        }
        if i % 10 == 9 {
            clock.advance(Duration::from_micros(100));
        }
    }
    let feed = start.elapsed();
    println!(
        "\nmemory/bounded: {addresses} distinct addresses, one fresh account each, all 401, over {:.1} virtual s \
         (max_tracked_keys = {MAX_TRACKED_KEYS}); fed in {:.2} s = {:.0} ns/login, {refused} refused",
        addresses as f64 / 100_000.0,
        feed.as_secs_f64(),
        feed.as_nanos() as f64 / addresses as f64
    );
    let _ = route;
    let row = |label: &str| {
        let counts = bench.env.store.tracked_keys();
        let records: usize = counts.iter().map(|(_, n)| n).sum();
        let cells: Vec<String> =
            counts.iter().filter(|(_, n)| *n > 0).map(|(kind, n)| format!("{}={n}", kind.as_str())).collect();
        let rss = rss_mib();
        let per_record = if records > 0 { (rss - rss0) * 1024.0 * 1024.0 / records as f64 } else { 0.0 };
        println!(
            "  {label:<34} {} records={records} rss={rss:.0} MiB ({per_record:.0} B of RSS growth per record)",
            cells.join(" ")
        );
    };
    let [narrow, wide] = stuffgate::store::RECORD_BYTES;
    println!("  record size in the map: {narrow} B narrow (pair, password, ...), {wide} B wide (address, account), before heap cells");
    println!("  {:<34} rss={rss0:.0} MiB", "before the feed");
    row("after the feed, before prune");
    smaps_summary();
    for (kind, records, cells, spilled, boxed) in bench.local.cell_census() {
        if records > 0 {
            println!(
                "    {:<16} {records} records, {cells} cells, {spilled} spilled to the heap, {boxed} boxed sets",
                kind.as_str()
            );
        }
    }
    let timed_prune = |label: &str| {
        let t = Instant::now();
        bench.prune();
        let took = t.elapsed();
        row(&format!("{label} ({:.0} ms)", took.as_secs_f64() * 1e3));
    };
    timed_prune("prune at once");
    clock.advance(Duration::from_secs(60));
    timed_prune("prune +1 min");
    clock.advance(Duration::from_secs(25 * 3600));
    timed_prune("prune +25 h");
}

/// Where the RSS is: the process's mappings grouped by size (the store's shard tables are mappings of their own),
/// and the largest few.
fn smaps_summary() {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else { return };
    let mut maps: Vec<(u64, u64, String)> = Vec::new(); // (size, rss, header)
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|(a, _)| u64::from_str_radix(a, 16).is_ok()) {
            let size = u64::from_str_radix(end, 16).unwrap_or(0) - u64::from_str_radix(start, 16).unwrap_or(0);
            maps.push((size, 0, line.to_string()));
        } else if first == "AnonHugePages:" && words.clone().next() != Some("0") {
            if let Some(last) = maps.last_mut() {
                last.2.push_str(&format!(" (huge pages: {} kB)", words.next().unwrap_or("?")));
            }
        } else if first == "Rss:" {
            if let (Some(last), Some(kb)) = (maps.last_mut(), words.next().and_then(|w| w.parse::<u64>().ok())) {
                last.1 = kb * 1024;
            }
        }
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let tables: Vec<_> = maps.iter().filter(|m| (256 << 10..4 << 20).contains(&m.0)).collect();
    let rest: u64 = maps.iter().filter(|m| !(256 << 10..4 << 20).contains(&m.0)).map(|m| m.1).sum();
    println!(
        "  RSS by mapping: {} mappings of 256 KiB-4 MiB (the shard tables) {:.0} MiB of {:.0} MiB mapped; the rest {:.0} MiB",
        tables.len(),
        mib(tables.iter().map(|m| m.1).sum()),
        mib(tables.iter().map(|m| m.0).sum()),
        mib(rest)
    );
    maps.sort_by_key(|m| std::cmp::Reverse(m.1));
    for (size, rss, header) in maps.iter().take(4) {
        println!("    {:.0} MiB resident of {:.0} MiB: {header}", mib(*rss), mib(*size));
    }
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn key_benches(c: &mut Criterion) {
    let bench = Bench::new(Clock::system());
    let mut group = c.benchmark_group("keys");
    group.throughput(Throughput::Elements(1));
    // SipHash-2-4 under the secret's key (src/keys.rs) (it replaced HMAC-SHA256, see benches/RESULTS.md).
    let address = 0x5C00_1234u128.to_le_bytes();
    group.bench_function("address_key", |b| {
        b.iter(|| bench.env.keys.key(stuffgate::store::KeyKind::Address, black_box(&address)))
    });
    let account = b"someone.with.a.long.name@example.com";
    group.bench_function("account_key", |b| {
        b.iter(|| bench.env.keys.key(stuffgate::store::KeyKind::Account, black_box(account)))
    });
    group.finish();
}

criterion_group!(benches, pipeline_benches, body_benches, telemetry_benches, key_benches);

/// Instruction counting (valgrind --tool=callgrind, deterministic where timings are not):
/// `STUFFGATE_COUNT=login:N` or `flood:N` runs N operations as the benches above do, then exits.
fn count_mode() -> bool {
    let Ok(spec) = std::env::var("STUFFGATE_COUNT") else { return false };
    let (what, n) = spec.split_once(':').expect("STUFFGATE_COUNT=login:N or flood:N");
    let n: u64 = n.parse().expect("a count");
    let bench = Bench::new(Clock::system());
    if what == "flood" {
        let attacker = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66));
        for _ in 0..1000 {
            let _ = bench.decide(attacker);
        }
        for _ in 0..n {
            black_box(bench.decide(black_box(attacker)));
        }
    } else {
        let mut body = Numbered::new(MINIMAL_TEMPLATE);
        for i in 0..n {
            black_box(bench.login(address(i), body.set(i), status_for(i)));
        }
    }
    true
}

fn main() {
    if count_mode() {
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion then runs each bench once).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    // First, so its RSS figures start from a fresh process.
    if filter.is_none_or(|f| "memory/bounded_2M_ips".contains(f.as_str())) {
        memory_check(if bench_mode { 2_000_000 } else { 20_000 });
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
