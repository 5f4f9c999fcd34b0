//! Tests against the shipped database and against fixtures built with
//! [`super::writer`] and read back by the real `maxminddb` reader.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::writer::{MmdbValue as V, MmdbWriter};
use super::*;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/country.mmdb");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cc(s: &str) -> Option<CountryCode> {
    Some(s.parse().unwrap())
}

fn shipped() -> GeoDb {
    GeoDb::open(Path::new(SHIPPED), None).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Writes and forces a distinct mtime, so stamp comparison never depends on
/// the filesystem's timestamp granularity.
fn write_with_mtime(path: &Path, bytes: &[u8], secs: u64) {
    std::fs::write(path, bytes).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

// ---- fixtures in the MaxMind schemas ---------------------------------------------

fn maxmind_country(iso: &str, name: &str) -> V {
    V::map([
        ("continent", V::map([("code", V::str("EU")), ("geoname_id", V::U32(6_255_148))])),
        (
            "country",
            V::map([
                ("geoname_id", V::U32(2_921_044)),
                ("is_in_european_union", V::Bool(true)),
                ("iso_code", V::str(iso)),
                ("names", V::map([("en", V::str(name)), ("ja", V::str("ドイツ連邦共和国"))])),
            ]),
        ),
        ("registered_country", V::map([("iso_code", V::str(iso))])),
    ])
}

/// A GeoLite2-Country-shaped file (IPv6 tree).
fn geolite2_country() -> Vec<u8> {
    let mut w = MmdbWriter::new_ipv6("GeoLite2-Country").description("GeoLite2 Country database");
    w.insert(ip("81.2.69.0"), 24, &maxmind_country("DE", "Germany")).unwrap();
    // Only registered_country (as MaxMind does for anycast/satellite ranges).
    w.insert(
        ip("89.160.20.0"),
        24,
        &V::map([(
            "registered_country",
            V::map([("iso_code", V::str("SE")), ("names", V::map([("en", V::str("Sweden"))]))]),
        )]),
    )
    .unwrap();
    w.insert(ip("2a02:ff00::"), 32, &maxmind_country("IT", "Italy")).unwrap();
    // Private range with data: must still be answered as private, no lookup.
    w.insert(ip("10.0.0.0"), 8, &maxmind_country("DE", "Germany")).unwrap();
    w.to_bytes().unwrap()
}

/// A GeoLite2-City-shaped file (city, location doubles, subdivisions array).
fn geolite2_city() -> Vec<u8> {
    let mut w = MmdbWriter::new_ipv6("GeoLite2-City");
    let rec = V::map([
        ("city", V::map([("geoname_id", V::U32(3_451_190)), ("names", V::map([("en", V::str("Rio de Janeiro"))]))])),
        ("country", V::map([("iso_code", V::str("BR")), ("names", V::map([("pt-BR", V::str("Brasil"))]))])),
        (
            "location",
            V::map([
                ("accuracy_radius", V::U16(20)),
                ("latitude", V::Double(-22.9)),
                ("longitude", V::Double(-43.2)),
                ("time_zone", V::str("America/Sao_Paulo")),
            ]),
        ),
        ("postal", V::map([("code", V::str("20000-000"))])),
        ("registered_country", V::map([("iso_code", V::str("BR"))])),
        ("subdivisions", V::Array(vec![V::map([("iso_code", V::str("RJ"))])])),
    ]);
    w.insert(ip("200.160.0.0"), 20, &rec).unwrap();
    w.to_bytes().unwrap()
}

fn asn_record(n: u32, org: &str) -> V {
    V::map([("autonomous_system_number", V::U32(n)), ("autonomous_system_organization", V::str(org))])
}

/// GeoLite2-ASN-shaped file (IPv6 tree).
fn geolite2_asn() -> Vec<u8> {
    let mut w = MmdbWriter::new_ipv6("GeoLite2-ASN");
    w.insert(ip("81.2.69.0"), 24, &asn_record(20_712, "Andrews & Arnold Ltd")).unwrap();
    w.insert(ip("2a02:ff00::"), 32, &asn_record(12_345, "Example IT")).unwrap();
    w.to_bytes().unwrap()
}

/// ip-location-db-shaped ASN file: IPv4-only tree, empty description.
fn ip_location_db_asn_v4() -> Vec<u8> {
    let mut w = MmdbWriter::new_ipv4("asn ipv4").description("");
    w.insert(ip("8.8.8.0"), 24, &asn_record(15_169, "GOOGLE")).unwrap();
    w.to_bytes().unwrap()
}

/// ip-location-db-shaped country file, IPv4-only.
fn ip_location_db_country_v4(code: &str) -> Vec<u8> {
    let mut w = MmdbWriter::new_ipv4("country ipv4").description("");
    w.insert(ip("1.0.0.0"), 8, &V::map([("country_code", V::str(code))])).unwrap();
    w.insert(ip("8.8.8.0"), 24, &V::map([("country_code", V::str("US"))])).unwrap();
    w.to_bytes().unwrap()
}

// ---- the shipped database -------------------------------------------------------

#[test]
fn shipped_db_resolves_known_addresses() {
    let db = shipped();
    let cases = [
        ("8.8.8.8", "US"),              // Google DNS
        ("2001:4860:4860::8888", "US"), // Google DNS, IPv6
        ("133.1.1.1", "JP"),            // 133.0.0.0/8, Japanese academic
        ("202.232.2.1", "JP"),          // IIJ
        ("153.150.1.1", "JP"),          // NTT OCN
        ("2400:4050::1", "JP"),         // NTT OCN IPv6
        ("114.114.114.114", "CN"),      // 114DNS
        ("1.2.4.8", "CN"),              // CNNIC SDNS
        ("240e::1", "CN"),              // China Telecom IPv6
        ("200.160.0.8", "BR"),          // NIC.br
        ("2001:12ff::1", "BR"),         // NIC.br IPv6
        ("::ffff:8.8.8.8", "US"),       // IPv4-mapped looks up the IPv4 tree
    ];
    for (addr, want) in cases {
        let info = db.lookup(ip(addr));
        assert_eq!(info.country, cc(want), "{addr}");
        assert!(!info.is_private, "{addr}");
        assert_eq!(info.asn, None, "no ASN database loaded");
    }
    assert_eq!(db.lookup_errors(), 0);
}

#[test]
fn shipped_db_schema_and_describe() {
    let db = shipped();
    let m = db.country_metadata();
    assert_eq!(m.ip_version, 6);
    let d = db.describe();
    assert!(d.contains("country.mmdb"), "{d}");
    assert!(d.contains(&m.database_type), "{d}");
    assert!(d.contains(&m.build_epoch.to_string()), "{d}");
    assert!(d.contains("ASN db: none"), "{d}");
    let details = db.lookup_details(ip("8.8.8.8"));
    assert_eq!(details.country, cc("US"));
    assert!(details.country_source.as_deref().unwrap().ends_with("field country_code"));
    assert!(details.country_network.is_some());
}

#[test]
fn private_ranges_are_private_without_lookup() {
    let db = shipped();
    for addr in [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "127.0.0.1",
        "127.255.0.9",
        "169.254.10.1",
        "100.64.0.1",
        "100.127.255.255",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "fc00::1",
        "fec0::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
    ] {
        let info = db.lookup(ip(addr));
        assert!(info.is_private, "{addr} should be private");
        assert_eq!(info.country, None, "{addr}");
        assert!(is_private(ip(addr)), "{addr}");
    }
    for addr in [
        "172.32.0.1",
        "172.15.255.255",
        "100.63.255.255",
        "100.128.0.1",
        "192.169.0.1",
        "8.8.8.8",
        "203.0.113.7",
        "2001:db8::1",
        "2a00:1450:4001::1",
        "fe00::1",
    ] {
        assert!(!db.lookup(ip(addr)).is_private, "{addr} should not be private");
    }
}

#[test]
fn private_range_is_not_looked_up_even_if_the_db_has_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "c.mmdb", &geolite2_country());
    let db = GeoDb::open(&p, None).unwrap();
    let info = db.lookup(ip("10.9.9.9"));
    assert!(info.is_private);
    assert_eq!(info.country, None);
    let d = db.lookup_details(ip("10.9.9.9"));
    assert!(d.is_private && d.country_network.is_none());
}

// ---- refusing bad files ---------------------------------------------------------

fn assert_helpful(msg: &str) {
    assert!(msg.contains("geoip/refresh.sh"), "no refresh hint: {msg}");
    assert!(msg.contains("GeoLite2"), "no GeoLite2 hint: {msg}");
}

#[test]
fn missing_file_is_refused_with_a_hint() {
    let err = GeoDb::open(Path::new("/nonexistent/dir/country.mmdb"), None).unwrap_err();
    assert!(matches!(err, GeoError::NotFound { role: DbRole::Country, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/dir/country.mmdb"), "{msg}");
    assert_helpful(&msg);

    let err = GeoDb::open(Path::new(SHIPPED), Some(Path::new("/nonexistent/asn.mmdb"))).unwrap_err();
    assert!(matches!(err, GeoError::NotFound { role: DbRole::Asn, .. }), "{err:?}");
    assert!(err.to_string().contains("GeoLite2-ASN"), "{err}");
}

#[test]
fn corrupt_files_are_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    // Deterministic pseudo-random bytes (xorshift).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let good = std::fs::read(SHIPPED).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random.mmdb", random),
        ("truncated.mmdb", good[..good.len() / 2].to_vec()),
        ("tail-cut.mmdb", good[..good.len() - 40].to_vec()),
        ("text.mmdb", b"<html>404 Not Found</html>".to_vec()),
    ];
    for (name, bytes) in cases {
        let p = write(dir.path(), name, &bytes);
        let err = GeoDb::open(&p, None).unwrap_err();
        assert!(matches!(err, GeoError::Corrupt { .. }), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("corrupt"), "{msg}");
        assert_helpful(&msg);
    }
    let p = write(dir.path(), "empty.mmdb", b"");
    let err = GeoDb::open(&p, None).unwrap_err();
    assert!(matches!(err, GeoError::Empty { .. }), "{err:?}");
    assert_helpful(&err.to_string());
    // A directory is not a database either.
    let err = GeoDb::open(dir.path(), None).unwrap_err();
    assert!(matches!(err, GeoError::Io { .. } | GeoError::Empty { .. }), "{err:?}");
}

#[test]
fn wrong_kind_or_unknown_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let asn = write(dir.path(), "asn.mmdb", &geolite2_asn());
    let country = write(dir.path(), "country.mmdb", &geolite2_country());

    let err = GeoDb::open(&asn, None).unwrap_err();
    assert!(matches!(err, GeoError::WrongSchema { role: DbRole::Country, .. }), "{err:?}");
    assert!(err.to_string().contains("--asn-db"), "{err}");

    let err = GeoDb::open(&country, Some(&country)).unwrap_err();
    assert!(matches!(err, GeoError::WrongSchema { role: DbRole::Asn, .. }), "{err:?}");

    let mut w = MmdbWriter::new_ipv6("Vendor-Geo");
    w.insert(ip("1.0.0.0"), 8, &V::map([("cc", V::str("AU"))])).unwrap();
    let odd = write(dir.path(), "odd.mmdb", &w.to_bytes().unwrap());
    let err = GeoDb::open(&odd, None).unwrap_err();
    assert!(matches!(err, GeoError::WrongSchema { .. }), "{err:?}");
    assert!(err.to_string().contains("country_code"), "{err}");
}

// ---- both schemas --------------------------------------------------------------

#[test]
fn maxmind_country_schema_resolves_via_iso_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "GeoLite2-Country.mmdb", &geolite2_country());
    let db = GeoDb::open(&p, None).unwrap();
    assert_eq!(db.country_metadata().database_type, "GeoLite2-Country");
    assert_eq!(db.lookup(ip("81.2.69.160")).country, cc("DE"));
    assert_eq!(db.lookup(ip("::ffff:81.2.69.1")).country, cc("DE"));
    assert_eq!(db.lookup(ip("2a02:ff00::1")).country, cc("IT"));
    // Fallback to registered_country.iso_code.
    assert_eq!(db.lookup(ip("89.160.20.128")).country, cc("SE"));
    // Not in the file.
    assert_eq!(db.lookup(ip("8.8.8.8")), GeoInfo::default());

    let d = db.lookup_details(ip("81.2.69.160"));
    assert_eq!(d.country_network.as_deref(), Some("81.2.69.0/24"));
    assert!(d.country_source.as_deref().unwrap().ends_with("field country.iso_code"));
    let d = db.lookup_details(ip("89.160.20.128"));
    assert!(d.country_source.as_deref().unwrap().ends_with("field registered_country.iso_code"));
    assert_eq!(db.lookup_errors(), 0);
}

#[test]
fn maxmind_city_schema_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "GeoLite2-City.mmdb", &geolite2_city());
    let db = GeoDb::open(&p, None).unwrap();
    assert_eq!(db.lookup(ip("200.160.0.8")).country, cc("BR"));
    assert_eq!(db.lookup(ip("200.160.16.1")).country, None);
    assert_eq!(db.lookup_errors(), 0);
}

#[test]
fn asn_databases_both_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let country = write(dir.path(), "GeoLite2-Country.mmdb", &geolite2_country());
    let asn = write(dir.path(), "GeoLite2-ASN.mmdb", &geolite2_asn());
    let db = GeoDb::open(&country, Some(&asn)).unwrap();
    assert_eq!(db.lookup(ip("81.2.69.160")), GeoInfo { country: cc("DE"), asn: Some(20_712), is_private: false });
    assert_eq!(db.lookup(ip("2a02:ff00::5")).asn, Some(12_345));
    let d = db.lookup_details(ip("81.2.69.160"));
    assert_eq!(d.asn_org.as_deref(), Some("Andrews & Arnold Ltd"));
    assert_eq!(d.asn_network.as_deref(), Some("81.2.69.0/24"));
    assert!(d.asn_source.as_deref().unwrap().contains("GeoLite2-ASN"));
    assert!(db.describe().contains("ASN db"), "{}", db.describe());
    assert_eq!(db.asn_path(), Some(asn.as_path()));

    // ip-location-db shapes, IPv4-only trees: IPv6 lookups simply find nothing.
    let c4 = write(dir.path(), "country-v4.mmdb", &ip_location_db_country_v4("AU"));
    let a4 = write(dir.path(), "asn-v4.mmdb", &ip_location_db_asn_v4());
    let db = GeoDb::open(&c4, Some(&a4)).unwrap();
    assert_eq!(db.lookup(ip("8.8.8.8")), GeoInfo { country: cc("US"), asn: Some(15_169), is_private: false });
    assert_eq!(db.lookup(ip("1.1.1.1")).country, cc("AU"));
    assert_eq!(db.lookup(ip("2001:4860::1")), GeoInfo::default());
    assert_eq!(db.lookup_details(ip("8.8.8.8")).asn_org.as_deref(), Some("GOOGLE"));
    assert_eq!(db.lookup_errors(), 0);
}

// ---- reloading ------------------------------------------------------------------

#[test]
fn reload_keeps_old_db_on_corrupt_file_and_swaps_on_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("country.mmdb");
    write_with_mtime(&p, &ip_location_db_country_v4("JP"), 1_000);
    let shared = SharedGeoDb::open(&p, None).unwrap();
    assert_eq!(shared.load().lookup(ip("1.2.3.4")).country, cc("JP"));
    assert!(!shared.reload_if_changed().unwrap(), "nothing changed yet");

    // Corrupt replacement: refused, old stays.
    let held = shared.snapshot();
    let good = ip_location_db_country_v4("BR");
    write_with_mtime(&p, &good[..good.len() / 2], 2_000);
    let err = shared.reload().unwrap_err();
    assert!(matches!(err, GeoError::Corrupt { .. }), "{err:?}");
    assert_eq!(shared.load().lookup(ip("1.2.3.4")).country, cc("JP"));
    assert!(shared.reload_if_changed().is_err(), "changed but corrupt: error, retried later");
    assert_eq!(shared.load().lookup(ip("1.2.3.4")).country, cc("JP"));

    // File removed: error, old stays.
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(shared.reload_if_changed(), Err(GeoError::NotFound { .. })));
    assert!(matches!(shared.reload(), Err(GeoError::NotFound { .. })));
    assert_eq!(shared.load().lookup(ip("1.2.3.4")).country, cc("JP"));

    // Valid replacement (same size as the original): swapped.
    write_with_mtime(&p, &good, 3_000);
    assert!(shared.reload_if_changed().unwrap());
    assert_eq!(shared.load().lookup(ip("1.2.3.4")).country, cc("BR"));
    assert!(!shared.reload_if_changed().unwrap());
    // A reader that held the old one keeps a working database.
    assert_eq!(held.lookup(ip("1.2.3.4")).country, cc("JP"));

    // Explicit reload of a valid file swaps too.
    write_with_mtime(&p, &ip_location_db_country_v4("CN"), 4_000);
    shared.reload().unwrap();
    assert_eq!(shared.load().lookup(ip("1.2.3.4")).country, cc("CN"));
}

#[test]
fn shared_db_is_usable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GeoDb>();
    assert_send_sync::<SharedGeoDb>();
    let shared = std::sync::Arc::new(SharedGeoDb::open(Path::new(SHIPPED), None).unwrap());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let s = shared.clone();
            std::thread::spawn(move || s.load().lookup(ip("8.8.8.8")).country)
        })
        .collect();
    shared.reload().unwrap();
    for h in handles {
        assert_eq!(h.join().unwrap(), cc("US"));
    }
}

// ---- CountryCode, CLI, helpers ---------------------------------------------------

#[test]
fn country_code_parsing_and_serde() {
    let us: CountryCode = "us".parse().unwrap();
    assert_eq!(us.as_str(), "US");
    assert_eq!(us.to_string(), "US");
    assert_eq!(format!("[{us:>4}]"), "[  US]");
    assert_eq!(format!("{us:?}"), "CountryCode(US)");
    for bad in ["", "U", "USA", "1A", "U-", "ÜS", "日本"] {
        let err = bad.parse::<CountryCode>().unwrap_err();
        assert!(err.to_string().contains("two ASCII letters"), "{err}");
    }
    assert_eq!(serde_json::to_string(&us).unwrap(), "\"US\"");
    let jp: CountryCode = serde_json::from_str("\"jp\"").unwrap();
    assert_eq!(jp, CountryCode::from_bytes(*b"JP").unwrap());
    assert!(serde_json::from_str::<CountryCode>("\"JPN\"").is_err());
    let info = GeoInfo { country: Some(jp), asn: Some(2516), is_private: false };
    assert_eq!(serde_json::to_string(&info).unwrap(), r#"{"country":"JP","asn":2516,"is_private":false}"#);
}

#[test]
fn cli_lookup_reports_and_rejects() {
    let args = |ips: &[&str], json: bool| cli::LookupArgs {
        ips: ips.iter().map(|s| s.to_string()).collect(),
        db: PathBuf::from(SHIPPED),
        asn_db: None,
        json,
    };
    cli::run_lookup(&args(&["8.8.8.8", "[2001:4860:4860::8888]", "10.0.0.1"], false)).unwrap();
    cli::run_lookup(&args(&["1.1.1.1"], true)).unwrap();
    let err = cli::run_lookup(&args(&["8.8.8.8", "not-an-ip", "1.2.3.4:80"], false)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("\"not-an-ip\"") && msg.contains("\"1.2.3.4:80\""), "{msg}");
    let mut a = args(&["8.8.8.8"], false);
    a.db = PathBuf::from("/nonexistent.mmdb");
    let msg = format!("{:#}", cli::run_lookup(&a).unwrap_err());
    assert!(msg.contains("refresh.sh"), "{msg}");
}

#[test]
fn cli_args_parse_with_clap() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: cli::LookupArgs,
    }
    let t = T::try_parse_from(["t", "1.1.1.1", "::1", "--json", "--asn-db", "x.mmdb"]).unwrap();
    assert_eq!(t.a.ips, ["1.1.1.1", "::1"]);
    assert_eq!(t.a.db, PathBuf::from(DEFAULT_COUNTRY_DB));
    assert_eq!(t.a.asn_db, Some(PathBuf::from("x.mmdb")));
    assert!(t.a.json);
    assert!(T::try_parse_from(["t"]).is_err(), "at least one IP is required");
}

#[test]
fn epoch_formatting() {
    assert_eq!(db::fmt_epoch(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(db::fmt_epoch(1_781_725_900), "2026-06-17 19:51:40 UTC");
    assert_eq!(db::fmt_epoch(951_782_400), "2000-02-29 00:00:00 UTC");
}

#[test]
fn writer_round_trips_through_the_real_reader() {
    let long = "x".repeat(300);
    let longer = "y".repeat(70_000);
    let rec = V::map([
        ("s", V::str("héllo")),
        ("long", V::Str(long.clone())),
        ("longer", V::Str(longer.clone())),
        ("u16", V::U16(65_535)),
        ("u32", V::U32(0)),
        ("u64", V::U64(u64::MAX)),
        ("d", V::Double(1.5)),
        ("b", V::Bool(true)),
        ("a", V::Array((0..40).map(V::U32).collect())),
    ]);
    let mut w = MmdbWriter::new_ipv6("Test");
    w.insert(ip("2001:db8::"), 32, &rec).unwrap();
    w.insert(ip("192.0.2.0"), 24, &rec).unwrap(); // same record, de-duplicated
    let r = maxminddb::Reader::from_source(w.to_bytes().unwrap()).unwrap();
    for a in ["2001:db8::1", "192.0.2.1"] {
        let res = r.lookup(ip(a)).unwrap();
        let v: serde_json::Value = res.decode().unwrap().unwrap();
        assert_eq!(v["s"], "héllo");
        assert_eq!(v["long"].as_str().unwrap(), long);
        assert_eq!(v["longer"].as_str().unwrap(), longer);
        assert_eq!(v["u16"], 65_535);
        assert_eq!(v["u32"], 0);
        assert_eq!(v["u64"], u64::MAX);
        assert_eq!(v["d"], 1.5);
        assert_eq!(v["b"], true);
        assert_eq!(v["a"].as_array().unwrap().len(), 40);
    }
    assert_eq!(r.lookup(ip("192.0.2.0")).unwrap().network().unwrap().to_string(), "192.0.2.0/24");
    assert!(!r.lookup(ip("192.0.3.1")).unwrap().has_data());
    // A more specific network inserted later overrides part of a larger one.
    let mut w = MmdbWriter::new_ipv4("Test");
    w.insert(ip("10.0.0.0"), 8, &V::str("big")).unwrap();
    w.insert(ip("10.1.0.0"), 16, &V::str("small")).unwrap();
    let r = maxminddb::Reader::from_source(w.to_bytes().unwrap()).unwrap();
    let get = |a: &str| r.lookup(ip(a)).unwrap().decode::<String>().unwrap();
    assert_eq!(get("10.1.2.3").as_deref(), Some("small"));
    assert_eq!(get("10.2.0.1").as_deref(), Some("big"));
    assert_eq!(get("11.0.0.1"), None);
    assert!(MmdbWriter::new_ipv4("T").insert(ip("::1"), 128, &V::U16(1)).is_err());
    assert!(MmdbWriter::new_ipv4("T").insert(ip("1.0.0.0"), 33, &V::U16(1)).is_err());
}

/// A file whose record for 200.0.0.0/8 has invalid UTF-8 in its country code,
/// after `good_networks` networks sharing one good record.
fn db_with_bad_record(good_networks: u8) -> Vec<u8> {
    let mut w = MmdbWriter::new_ipv4("country ipv4");
    for n in 1..=good_networks {
        w.insert(IpAddr::from([n, 0, 0, 0]), 8, &V::map([("country_code", V::str("AU"))])).unwrap();
    }
    w.insert(ip("200.0.0.0"), 8, &V::map([("country_code", V::str("FR"))])).unwrap();
    let mut bytes = w.to_bytes().unwrap();
    // 0x42 = string of length 2; patch its payload to invalid UTF-8.
    let at = bytes.windows(3).position(|x| x == b"\x42FR").unwrap();
    bytes[at + 1] = 0xff;
    bytes[at + 2] = 0xfe;
    bytes
}

#[test]
fn corrupt_record_is_refused_at_open_or_counted_at_lookup() {
    let dir = tempfile::tempdir().unwrap();
    // Within the records sampled at open: refused.
    let p = write(dir.path(), "bad-early.mmdb", &db_with_bad_record(3));
    let err = GeoDb::open(&p, None).unwrap_err();
    assert!(matches!(err, GeoError::Corrupt { .. }), "{err:?}");
    assert_helpful(&err.to_string());
    // Beyond the sample: opens; the bad record yields None and is counted.
    let p = write(dir.path(), "bad-late.mmdb", &db_with_bad_record(100));
    let db = GeoDb::open(&p, None).unwrap();
    assert_eq!(db.lookup(ip("1.2.3.4")).country, cc("AU"));
    assert_eq!(db.lookup_errors(), 0);
    assert_eq!(db.lookup(ip("200.1.1.1")), GeoInfo::default());
    assert_eq!(db.lookup_errors(), 1);
}
