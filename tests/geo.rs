//! Geo-blocking and impossible travel through the real gateway, against the shipped country database.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::{demo_api, from_upstream, recording_upstream, shipped, Gateway, Options};

fn geo_config() -> String {
    format!("[geoip]\ncountry_db = \"{}\"\n", shipped("geoip/country.mmdb"))
}

const JP: &str = "133.1.1.1"; // Osaka University (AS4730)
const US: &str = "8.8.8.8";
const BR: &str = "200.160.0.8"; // NIC.br

#[test]
fn shipped_database_places_known_addresses() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stuffgate"))
        .args(["geoip", "lookup", "--db", &shipped("geoip/country.mmdb"), JP, US, "114.114.114.114", BR, "10.0.0.1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let country_of = |ip: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{ip}\t")))
            .and_then(|l| l.split('\t').nth(1))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(country_of(JP), "JP");
    assert_eq!(country_of(US), "US");
    assert_eq!(country_of("114.114.114.114"), "CN");
    assert_eq!(country_of(BR), "BR");
    assert_eq!(country_of("10.0.0.1"), "private");
}

#[test]
fn a_japan_only_login_route_refuses_foreign_addresses_and_forwards_japanese_ones() {
    let api = demo_api();
    let config = geo_config();
    let gateway = Gateway::start_with(
        &std::fs::read_to_string(shipped("policies/jp-incident.toml")).unwrap(),
        api.addr(),
        Options { extra_config: &config, ..Options::default() },
    );
    let japanese = gateway.login(Some(JP), "alice@example.com", "correct horse battery staple");
    assert_eq!(japanese.status(), 200);
    assert!(from_upstream(&japanese));
    for foreign in [US, BR, "114.114.114.114"] {
        let refused = gateway.login(Some(foreign), "alice@example.com", "correct horse battery staple");
        assert_eq!(refused.status(), 403, "{foreign}");
        assert!(!from_upstream(&refused));
    }
    // The address looked up is the forwarded one from the trusted peer, not the loopback peer.
    assert!(gateway.wait_for_log("\"country\":\"BR\"", Duration::from_secs(5)), "{}", gateway.logs());
}

#[test]
fn a_login_from_another_country_soon_after_a_success_is_tagged_for_the_app() {
    let (upstream, heads) = recording_upstream(200);
    let config = geo_config();
    let policy = "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
                  body = { account = \"email\", password = \"password\" }\n\
                  [[route.defense]]\ntype = \"geo_velocity\"\nwindow = \"2h\"\naction = \"tag\"\n";
    let gateway = Gateway::start_with(policy, upstream, Options { extra_config: &config, ..Options::default() });
    assert_eq!(gateway.login(Some(JP), "carol@example.com", "pw").status(), 200);
    let first = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!first.contains("x-stuffgate-geo-velocity"), "{first}");
    assert_eq!(gateway.login(Some(BR), "carol@example.com", "pw").status(), 200);
    let second = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(second.contains("x-stuffgate-geo-velocity: jp->br"), "{second}");
    assert!(second.contains("x-stuffgate-signals: geo_velocity"), "{second}");
    // Another account is not affected by carol's travels.
    assert_eq!(gateway.login(Some(BR), "dave@example.jp", "pw").status(), 200);
    let third = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!third.contains("geo-velocity"), "{third}");
}

#[test]
fn a_corrupt_database_is_refused_at_start_with_a_way_to_get_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("country.mmdb");
    std::fs::write(&corrupt, b"this is not a maxmind database at all, just bytes").unwrap();
    std::fs::write(dir.path().join("policy.toml"), "").unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = {{ address = \"127.0.0.1:9\" }}\npolicies = [\"policy.toml\"]\nlisten = [\"127.0.0.1:{}\"]\nadmin = \"127.0.0.1:{}\"\n[geoip]\ncountry_db = \"{}\"\n",
            common::free_port(),
            common::free_port(),
            corrupt.display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stuffgate"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("refresh.sh"), "says how to get a database: {message}");
}

#[test]
fn a_database_replaced_by_garbage_while_running_keeps_the_previous_one_serving() {
    let api = demo_api();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    std::fs::copy(shipped("geoip/country.mmdb"), &db).unwrap();
    let config = format!("[geoip]\ncountry_db = \"{}\"\n", db.display());
    let gateway = Gateway::start_with(
        &std::fs::read_to_string(shipped("policies/jp-incident.toml")).unwrap(),
        api.addr(),
        Options { extra_config: &config, ..Options::default() },
    );
    std::fs::write(&db, b"garbage").unwrap();
    assert!(gateway.wait_for_log("GeoIP database reload refused", Duration::from_secs(10)), "{}", gateway.logs());
    assert_eq!(gateway.login(Some(JP), "alice@example.com", "correct horse battery staple").status(), 200);
    assert_eq!(gateway.login(Some(US), "alice@example.com", "correct horse battery staple").status(), 403);
}
