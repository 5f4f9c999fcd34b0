//! Breach filter benchmarks: lookup latency on a 10M-item filter at 0.1 %,
//! and build throughput on an in-memory `SHA1HEX:COUNT` stream.
//!
//! `cargo bench --bench breach`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, RngCore, SeedableRng};
use stuffgate::breach::{
    build_filter, parse_line, password_sha1, FilterBuilder, FilterKind, Format, IngestCounters, Source,
};

const LOOKUP_ITEMS: u64 = 10_000_000;
const PROBES: usize = 1 << 20;
const BUILD_LINES: usize = 1_000_000;

fn random_keys(rng: &mut impl RngCore, n: usize) -> Vec<[u8; 20]> {
    (0..n)
        .map(|_| {
            let mut k = [0u8; 20];
            rng.fill_bytes(&mut k);
            k
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut b = FilterBuilder::new(FilterKind::Password, LOOKUP_ITEMS, 0.001).expect("filter parameters are valid");
    let present = random_keys(&mut rng, PROBES);
    for k in &present {
        b.insert_key(k);
    }
    for _ in PROBES as u64..LOOKUP_ITEMS {
        let mut k = [0u8; 20];
        rng.fill_bytes(&mut k);
        b.insert_key(&k);
    }
    let f = b.finish().expect("filter builds");
    let absent = random_keys(&mut rng, PROBES);
    let mut g = c.benchmark_group("breach_lookup_10M_0.1pct");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("contains_sha1_hit", |bch| {
        bch.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(f.contains_sha1(black_box(&present[i])))
        })
    });
    g.bench_function("contains_sha1_miss", |bch| {
        bch.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(f.contains_sha1(black_box(&absent[i])))
        })
    });
    // A fresh password each time (the counter written into a stack buffer),
    // so the filter lines it touches are not already cached.
    let mut pw = *b"not-a-leaked-password-0000000000000000";
    let mut ctr = 0u64;
    let mut next_password = move || {
        ctr = ctr.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let n = pw.len();
        for (i, b) in pw[n - 16..].iter_mut().enumerate() {
            *b = b"0123456789abcdef"[((ctr >> (4 * i)) & 15) as usize];
        }
        pw
    };
    g.bench_function("contains_password_miss", |bch| {
        bch.iter(|| {
            let p = next_password();
            black_box(f.contains_password(black_box(&p)))
        })
    });
    g.bench_function("password_sha1_only", |bch| {
        bch.iter(|| {
            let p = next_password();
            black_box(password_sha1(black_box(&p)))
        })
    });
    g.finish();
}

fn sha1_stream(n: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut out = Vec::with_capacity(n * 48);
    for _ in 0..n {
        let mut k = [0u8; 20];
        rng.fill_bytes(&mut k);
        out.extend_from_slice(hex::encode_upper(k).as_bytes());
        out.extend_from_slice(format!(":{}\r\n", rng.random_range(1..100_000)).as_bytes());
    }
    out
}

fn build(c: &mut Criterion) {
    let data = sha1_stream(BUILD_LINES);
    let mut g = c.benchmark_group("breach_build_1M_lines");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BUILD_LINES as u64));
    g.bench_function("build_filter_sha1_0.1pct", |bch| {
        bch.iter(|| {
            let mut b = FilterBuilder::new(FilterKind::Password, BUILD_LINES as u64, 0.001)
                .expect("filter parameters are valid");
            let counters = IngestCounters::default();
            let stats = build_filter(vec![Source::new("bench", &data[..])], Format::Sha1, 1, &mut b, &counters)
                .expect("in-memory input cannot fail");
            assert_eq!(stats.keys, BUILD_LINES as u64);
            black_box(b.finish().expect("filter builds"))
        })
    });
    // The two halves of the pipeline on their own (they run on separate threads).
    g.bench_function("parse_only", |bch| {
        let mut acct = String::new();
        bch.iter(|| {
            let mut n = 0u64;
            for line in data.split(|&b| b == b'\n') {
                if let Ok(Some(k)) = parse_line(Format::Sha1, line, 1, &mut acct) {
                    n += u64::from(k[0]);
                }
            }
            black_box(n)
        })
    });
    let keys = random_keys(&mut rand::rngs::StdRng::seed_from_u64(3), BUILD_LINES);
    g.bench_function("insert_only", |bch| {
        bch.iter(|| {
            let mut b = FilterBuilder::new(FilterKind::Password, BUILD_LINES as u64, 0.001)
                .expect("filter parameters are valid");
            b.insert_keys(&keys);
            black_box(b.finish().expect("filter builds"))
        })
    });
    g.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
