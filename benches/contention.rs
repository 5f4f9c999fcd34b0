//! What cores writing the same cache lines cost: the primitives behind `telemetry/sharded.rs` and the store's padded
//! shards, from one thread and from two at once (run it with two free cores: `taskset -c 0,1`).
//!
//! `cargo bench --bench contention` prints, per request-sized unit of work and per thread:
//! * the three per-request metric updates on shared `prometheus` atomics, as the gateway made them before;
//! * 8 lock/unlock pairs on random shards of 64 (a login's store operations), with shards of 40 bytes (a lock and a
//!   table header, as `Mutex<HashMap>` is) packed side by side, and with each shard on 128-byte lines.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntCounter};

const ITERATIONS: u64 = 5_000_000;

/// Nanoseconds per call of `work`, averaged over `threads` threads running it at once.
fn per_call(threads: usize, work: &(dyn Fn(u64) + Sync)) -> f64 {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..ITERATIONS {
                        work(i * 64 + t as u64);
                    }
                    start.elapsed().as_nanos() as f64 / ITERATIONS as f64
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap_or(f64::NAN)).sum::<f64>() / threads as f64
    })
}

#[repr(align(128))]
struct Padded(parking_lot::Mutex<[u64; 4]>);

/// 8 random shards of 64 from `seed`, each locked and written once.
fn lock_eight(seed: u64, lock: impl Fn(usize)) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..8 {
        lock((x >> 58) as usize);
        x = x.rotate_left(7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn main() {
    let requests = IntCounter::new("requests", "bench").unwrap_or_else(|e| panic!("{e}"));
    let outcomes = IntCounter::new("outcomes", "bench").unwrap_or_else(|e| panic!("{e}"));
    let buckets = vec![0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1];
    let histogram =
        Histogram::with_opts(HistogramOpts::new("seconds", "bench").buckets(buckets)).unwrap_or_else(|e| panic!("{e}"));
    let shared_metrics = |_: u64| {
        requests.inc();
        outcomes.inc();
        histogram.observe(black_box(12e-6));
    };
    let packed: Arc<Vec<parking_lot::Mutex<[u64; 4]>>> =
        Arc::new((0..64).map(|_| parking_lot::Mutex::new([0; 4])).collect());
    let padded: Arc<Vec<Padded>> = Arc::new((0..64).map(|_| Padded(parking_lot::Mutex::new([0; 4]))).collect());
    let packed_locks = |seed: u64| lock_eight(seed, |at| packed[at].lock()[0] += 1);
    let padded_locks = |seed: u64| lock_eight(seed, |at| padded[at].0.lock()[0] += 1);
    println!("contention: ns per unit of work per thread, {ITERATIONS} units per thread");
    println!("| work | 1 thread | 2 threads at once |");
    println!("|---|---:|---:|");
    let rows: [(&str, &(dyn Fn(u64) + Sync)); 3] = [
        ("3 metric updates on shared prometheus atomics", &shared_metrics),
        ("8 locks, 40-byte shards side by side", &packed_locks),
        ("8 locks, shards on 128-byte lines", &padded_locks),
    ];
    for (name, work) in rows {
        println!("| {name} | {:.1} | {:.1} |", per_call(1, work), per_call(2, work));
    }
}
