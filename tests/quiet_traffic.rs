//! Traffic that no defense should act on imposes no penalty: many distinct users, each logging in once from their
//! own address, 9 in 10 failing (the load benchmark's pattern, `benches/load/login.lua`). A penalty here would be a
//! false block, and each one also costs the penalty index a slot.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use stuffgate::clock::Clock;
use stuffgate::config::{compile_policies, Services};
use stuffgate::engine::{self, InMemory};
use stuffgate::geoip::SharedGeoDb;

#[test]
fn distinct_users_failing_once_impose_no_penalty() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let geo = SharedGeoDb::open(&root.join("geoip/country.mmdb"), None).expect("geoip/country.mmdb opens");
    let mut env = Services::new(Clock::system(), 100_000).with_geo(Some(Arc::new(geo)));
    env.open_breach_filters(Some(&root.join("policies/data/common-passwords.bloom")), None).expect("filter opens");
    let policy = compile_policies(&[root.join("policies/default.toml")], &env, None).expect("compiles");
    let route = &policy.routes[policy.match_route(&http::Method::POST, "/api/login").expect("login route")];
    let first = [81u32, 92, 1, 14, 24, 50, 177, 190, 41, 200, 36, 58, 185, 212, 66, 98];
    let mut request = InMemory {
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        headers: [(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))]
            .into_iter()
            .collect(),
        body: bytes::Bytes::new(),
        client_fingerprint: None,
    };
    let mut forwarded = 0;
    for n in 1_000_000u32..1_020_000 {
        let a = n / 16;
        request.ip = IpAddr::V4(Ipv4Addr::from((first[(n % 16) as usize] << 24) | (a & 0xFF_FFFF)));
        request.body = format!(
            r#"{{"email":"user{n:08x}@example.com","password":"Summer{:08x}!","remember_me":true}}"#,
            n ^ 0x5bd1_e995
        )
        .into();
        let now = env.clock.now_nanos();
        let Ok(judged) = engine::decide_now(route, &env, &mut request, now);
        if judged.verdict().forwards() {
            forwarded += 1;
            engine::observe(route, &env, &judged.subject, if n % 10 == 0 { 200 } else { 401 }, now);
        }
    }
    let penalties = env.decisions.penalties(env.clock.now_nanos());
    let mut by_defense: Vec<_> = penalties.iter().map(|p| (p.defense, p.scope)).collect();
    by_defense.sort();
    by_defense.dedup();
    assert!(forwarded > 19_000, "forwarded {forwarded} of 20000");
    assert!(penalties.is_empty(), "{} penalties from quiet traffic: {by_defense:?}", penalties.len());
}
