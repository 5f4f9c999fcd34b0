//! Cost of the site-wide attack mode's aggregate on the hot path, against the login it is part of.
//!
//! `cargo bench --bench attack`
//!
//! * `attack/note`            — one `AttackMonitor::note` (two relaxed atomic additions on this thread's shard):
//!   what every login's outcome adds.
//! * `attack/note_2_threads`  — the same from two threads at once (each on its own shard: no shared cache line).
//! * `attack/tick`            — one evaluation on the maintenance timer (not per request; once per bucket).
//! * `attack/login`           — one allowed login (`engine::decide` + `observe`) on `policies/default.toml`, from a
//!   fresh address and account each time, with the attack aggregate in it: the reference the note is a share of.
//!
//! The share is printed at the end: `note` / `login` (target ≤ 2%).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use stuffgate::attack::{AttackMonitor, AttackSettings};
use stuffgate::clock::Clock;
use stuffgate::config::{compile_policies, Services};
use stuffgate::engine::{self, InMemory};
use stuffgate::geoip::SharedGeoDb;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/default.toml");
const COUNTRY_DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/country.mmdb");
const PASSWORD_FILTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/data/common-passwords.bloom");

fn per_call(total: Duration, iterations: u64) -> f64 {
    total.as_nanos() as f64 / iterations.max(1) as f64
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("attack");
    let monitor = Arc::new(AttackMonitor::new(AttackSettings::default()));
    let mut note_ns = 0.0;
    group.bench_function("note", |b| {
        let mut i = 0u64;
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                i += 1;
                monitor.note(black_box(1_000_000_000_000 + i * 1_000), true, i % 10 == 0);
            }
            let elapsed = started.elapsed();
            note_ns = per_call(elapsed, iterations);
            elapsed
        })
    });
    group.bench_function("note_2_threads", |b| {
        b.iter_custom(|iterations| {
            let other = monitor.clone();
            let helper = std::thread::spawn(move || {
                for i in 0..iterations {
                    other.note(1_000_000_000_000 + i * 1_000, true, i % 10 == 0);
                }
            });
            let started = Instant::now();
            for i in 0..iterations {
                monitor.note(black_box(1_000_000_000_000 + i * 1_000), true, i % 10 == 0);
            }
            let elapsed = started.elapsed();
            helper.join().expect("the helper thread panicked");
            elapsed
        })
    });
    group.bench_function("tick", |b| {
        let mut now = 2_000_000_000_000u64;
        b.iter(|| {
            now += 10_000_000_000;
            black_box(monitor.tick(now))
        })
    });

    let clock = Clock::manual();
    let geo = SharedGeoDb::open(Path::new(COUNTRY_DB), None).expect("geoip/country.mmdb opens");
    let mut env = Services::new(clock.clone(), 1_000_000).with_geo(Some(Arc::new(geo)));
    env.open_breach_filters(Some(Path::new(PASSWORD_FILTER)), None).expect("the shipped filter opens");
    let policy = compile_policies(&[PathBuf::from(POLICY)], &env, None).expect("the default policy compiles");
    let login = policy.match_route(&http::Method::POST, "/api/login").expect("a login route");
    let route = &policy.routes[login];
    let mut login_ns = 0.0;
    group.bench_function("login", |b| {
        let mut i = 0u32;
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                i = i.wrapping_add(1);
                let mut headers = http::HeaderMap::new();
                headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                let mut request = InMemory {
                    ip: IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i & 0xf_ffff))),
                    headers,
                    body: format!(r#"{{"email":"u{i}@example.com","password":"pw{i}x"}}"#).into(),
                    client_fingerprint: None,
                };
                let now = clock.now_nanos();
                let Ok(judged) = engine::decide_now(route, &env, &mut request, now);
                let status = if i % 10 == 0 { 200 } else { 401 };
                black_box(engine::observe(route, &env, &judged.subject, status, now));
            }
            let elapsed = started.elapsed();
            login_ns = per_call(elapsed, iterations);
            elapsed
        })
    });
    group.finish();
    if login_ns > 0.0 {
        println!(
            "attack/share: note {note_ns:.1} ns of a login's {login_ns:.0} ns = {:.2}% (target ≤ 2%)",
            note_ns * 100.0 / login_ns
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
