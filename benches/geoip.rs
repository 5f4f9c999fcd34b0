//! GeoIP lookup cost on the shipped country database (geoip/country.mmdb).
//!
//! `cargo bench --bench geoip`. Reports time per single lookup over a
//! fixed mix of public IPv4 and IPv6 addresses (cycled so the branch
//! predictor and caches don't see one address only).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use stuffgate::geoip::{is_private, GeoDb, SharedGeoDb};

const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/country.mmdb");

/// 1024 addresses: 3/4 random public IPv4, 1/4 random IPv6 in 2000::/4
/// (most allocated space), deterministic (xorshift).
fn addresses() -> Vec<IpAddr> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(1024);
    while out.len() < 1024 {
        let r = next();
        let ip = if out.len() % 4 == 3 {
            let hi = (0x2000_u128 | u128::from((r >> 48) & 0x0fff)) << 112;
            IpAddr::V6(Ipv6Addr::from(hi | u128::from(next()) << 48))
        } else {
            IpAddr::V4(Ipv4Addr::from((r >> 32) as u32))
        };
        let multicast_or_reserved = matches!(ip, IpAddr::V4(v4) if v4.octets()[0] >= 224);
        if !is_private(ip) && !multicast_or_reserved {
            out.push(ip);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let db = GeoDb::open(Path::new(DB), None).expect("geoip/country.mmdb must exist: run geoip/refresh.sh");
    let ips = addresses();
    let found = ips.iter().filter(|ip| db.lookup(**ip).country.is_some()).count();
    eprintln!("geoip bench: {} addresses, {} with a country; {}", ips.len(), found, db.describe());

    let mut g = c.benchmark_group("geoip");
    let mut i = 0usize;
    g.bench_function("lookup_mixed_v4_v6", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(db.lookup(black_box(ips[i])))
        })
    });
    let v4: Vec<IpAddr> = ips.iter().copied().filter(IpAddr::is_ipv4).collect();
    let v6: Vec<IpAddr> = ips.iter().copied().filter(IpAddr::is_ipv6).collect();
    let mut i = 0usize;
    g.bench_function("lookup_v4", |b| {
        b.iter(|| {
            i = (i + 1) % v4.len();
            black_box(db.lookup(black_box(v4[i])))
        })
    });
    let mut i = 0usize;
    g.bench_function("lookup_v6", |b| {
        b.iter(|| {
            i = (i + 1) % v6.len();
            black_box(db.lookup(black_box(v6[i])))
        })
    });
    let private: IpAddr = "192.168.1.20".parse().expect("literal");
    g.bench_function("lookup_private_fast_path", |b| b.iter(|| black_box(db.lookup(black_box(private)))));

    let shared = SharedGeoDb::new(db);
    let mut i = 0usize;
    g.bench_function("shared_load_then_lookup_mixed", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(shared.load().lookup(black_box(ips[i])))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
