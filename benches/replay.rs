//! Offline replay throughput: events per second through the decision engine (virtual clock, simulated upstream).
//!
//! `cargo bench --bench replay`. The schedule is the bundled 7pay-burst (~33,000 requests: stuffing, users, NAT,
//! travellers, top-ups) run through policies/default.toml; one iteration replays it whole with fresh state.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stuffgate::replay::offline::{self, OfflineOptions};

fn bench(c: &mut Criterion) {
    let (_, schedule) = stuffgate::replay::cli::prepare("7pay-burst", None, None).expect("the bundled scenario builds");
    let options = OfflineOptions {
        policy_files: vec![PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/default.toml"))],
        geoip: None,
        password_filter: None,
        pair_filter: None,
        speed: 1.0,
        max_tracked_keys: 1_000_000,
        solvers: false,
        api: Default::default(),
    };
    let mut group = c.benchmark_group("replay_offline");
    group.throughput(Throughput::Elements(schedule.events.len() as u64));
    group.sample_size(20);
    group.bench_function("7pay-burst", |b| {
        b.iter(|| black_box(offline::run(&schedule, &options).expect("the policy compiles").processed))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
