//! Issuing and verifying challenge and device tokens (target: each well under 10 µs), checking a solution's
//! proof-of-work, and sealing/opening a login body for the challenge page.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use stuffgate::challenge::seal::{self, Original};
use stuffgate::challenge::token::{self, ChallengeClaims, DeviceClaims, SigningKey, TokenKeys};

const NOW: u64 = 1_767_225_600 * 1_000_000_000;

fn tokens(c: &mut Criterion) {
    let keys = TokenKeys::new(vec![
        SigningKey::from_secret(b"the current secret, 32 bytes....."),
        SigningKey::from_secret(b"the previous secret, 32 bytes...."),
    ])
    .expect("two keys");
    let claims = ChallengeClaims {
        issued_ms: NOW / 1_000_000,
        expires: (NOW / 1_000_000_000) as u32 + 120,
        bits: 16,
        id: [7; 16],
        bind: token::bind("login", Some(42)),
    };
    let challenge = keys.issue_challenge(&claims);
    let device_claims = DeviceClaims { issued: 1, expires: u32::MAX, id: [9; 16] };
    let device = keys.issue_device(&device_claims);
    let nonce = token::solve(&challenge, 16).to_string();

    let mut group = c.benchmark_group("challenge");
    group.bench_function("issue_challenge_token", |b| b.iter(|| black_box(keys.issue_challenge(black_box(&claims)))));
    group.bench_function("verify_challenge_token", |b| {
        b.iter(|| black_box(keys.verify_challenge(black_box(&challenge), NOW).is_ok()))
    });
    group.bench_function("verify_solution (token + bind + proof-of-work)", |b| {
        b.iter(|| {
            let ok = keys
                .verify_challenge(black_box(&challenge), NOW)
                .is_ok_and(|c| c.bind == token::bind("login", Some(42)))
                && token::pow_ok(&challenge, black_box(&nonce), 16);
            black_box(ok)
        })
    });
    group.bench_function("issue_device_token", |b| b.iter(|| black_box(keys.issue_device(black_box(&device_claims)))));
    group.bench_function("verify_device_token", |b| {
        b.iter(|| black_box(keys.verify_device(black_box(&device), NOW).is_ok()))
    });
    let original = Original {
        content_type: Some("application/x-www-form-urlencoded".into()),
        body: Bytes::from_static(b"email=someone%40example.com&password=correct+horse+battery+staple&remember=1"),
    };
    let sealed = seal::seal(&keys, &challenge, &original);
    group
        .bench_function("seal_body_80B", |b| b.iter(|| black_box(seal::seal(&keys, &challenge, black_box(&original)))));
    group.bench_function("open_body_80B", |b| b.iter(|| black_box(seal::open(&keys, &challenge, black_box(&sealed)))));
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
