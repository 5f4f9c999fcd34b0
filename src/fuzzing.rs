//! Entry points shared by the `cargo fuzz` targets (`fuzz/`) and by `tests/fuzz_corpus.rs`, which replays the
//! committed corpora on every `cargo test`. Each takes arbitrary bytes, runs one parser an attacker or operator
//! feeds, and panics when an invariant breaks — a panic is what the fuzzer reports.
#![doc(hidden)]

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::Path;
use std::sync::LazyLock;

use http::Method;

use crate::body::{self, BodyType, Wanted};
use crate::clock::Clock;
use crate::config::{compile_policy_source, CompileEnv, FieldPath, PathMatch, Policy};
use crate::defense::ip_list::IpRanges;
use crate::proxy::client_ip::{self, ForwardedHeader};

/// Body extraction: the first byte picks the content type; JSON results are checked against `serde_json::Value`.
pub fn body(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type: Option<&[u8]> = match selector % 6 {
        0 => None,
        1 => Some(b"application/json"),
        2 => Some(b"application/x-www-form-urlencoded"),
        3 => Some(b"application/vnd.api+json; charset=utf-8"),
        4 => Some(b"text/plain"),
        _ => Some(b"APPLICATION/X-WWW-FORM-URLENCODED ; q"),
    };
    static FIELDS: LazyLock<[FieldPath; 3]> = LazyLock::new(|| {
        ["email", "password", "user.reset.to"].map(|p| FieldPath::parse(p).unwrap_or(FieldPath(vec![p.into()])))
    });
    let wanted = Wanted::new(Some(&FIELDS[0]), Some(&FIELDS[1]), Some(&FIELDS[2]));
    let Ok(kind) = body::body_type(content_type, body) else {
        return;
    };
    let Ok(found) = body::extract(kind, body, wanted) else {
        return;
    };
    if let Some(account) = found.account() {
        let once = crate::account::normalise_account(account);
        assert_eq!(crate::account::normalise_account(&once), once, "account normalisation is idempotent");
    }
    if kind == BodyType::Json {
        // Where a general JSON parser reads an object, the streaming extractor must read the same values: strings,
        // and integers as their decimal text (phone-number logins); floats and booleans are refused before this.
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
            let text = |v: Option<&serde_json::Value>| {
                v.and_then(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| v.as_u64().map(|n| n.to_string()))
                        .or_else(|| v.as_i64().map(|n| n.to_string()))
                })
            };
            let nested = map.get("user").and_then(|u| u.get("reset")).and_then(|r| r.get("to"));
            assert_eq!(found.account().map(str::to_string), text(map.get("email")), "account differs from serde_json");
            assert_eq!(found.password().map(str::to_string), text(map.get("password")), "password differs");
            assert_eq!(found.target().map(str::to_string), text(nested), "nested target differs from serde_json");
        }
    }
}

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    let source = "[[route]]\nname = \"login\"\nkind = \"login\"\npath = \"/api/login\"\n\
                  [[route]]\nname = \"auth\"\nkind = \"generic\"\npath_prefix = \"/auth/\"\n\
                  [[route]]\nname = \"me\"\nkind = \"generic\"\nmethod = \"GET\"\npath = \"/api/me\"\n";
    #[allow(clippy::expect_used)]
    compile_policy_source(Path::new("/fuzz/routes.toml"), source, &ENV, None).expect("the fixed policy compiles")
});

static ENV: LazyLock<CompileEnv> = LazyLock::new(|| CompileEnv::new(Clock::manual(), 1024));

/// Path normalisation and route matching.
pub fn path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let once = crate::config::policy::normalise_path(raw);
    assert!(once.starts_with('/'), "normal form is rooted: {once:?}");
    let twice = crate::config::policy::normalise_path(&once);
    assert_eq!(twice, once, "normalisation is idempotent for {raw:?}");
    if matches!(once, Cow::Borrowed(_)) {
        assert_eq!(once, raw);
    }
    assert!(PathMatch::exact(raw).matches(raw), "a path matches itself: {raw:?}");
    let methods = [Method::POST, Method::GET, Method::PUT];
    for method in &methods {
        let direct = POLICY.match_route(method, raw);
        assert_eq!(direct, POLICY.match_route(method, &once), "matching sees only the normal form of {raw:?}");
    }
    if once.as_ref() == "/api/login" {
        assert_eq!(POLICY.match_route(&Method::POST, raw), Some(0), "{raw:?} must match the login route");
    }
}

/// `X-Forwarded-For` and `Forwarded` parsing: lines split at `\n`, from a trusted and an untrusted peer.
pub fn forwarded_for(data: &[u8]) {
    static TRUSTED: LazyLock<IpRanges> = LazyLock::new(|| {
        let nets =
            ["127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"].map(|n| n.parse().unwrap_or_else(|_| unreachable!()));
        IpRanges::new(&nets)
    });
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let proxy: IpAddr = [127, 0, 0, 1].into();
    let stranger: IpAddr = [203, 0, 113, 9].into();
    for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        assert_eq!(client_ip::resolve(stranger, lines.iter().copied(), header, &TRUSTED), Some(stranger));
        if let Some(client) = client_ip::resolve(proxy, lines.iter().copied(), header, &TRUSTED) {
            // Without any hop the client is the proxy itself.
            assert!(client == proxy || !data.is_empty());
            assert!(!matches!(client, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()), "mapped forms are folded");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = client_ip::parse_hop(text);
    }
}

/// Gateway and policy files: the first byte picks which. Policy files that name other files are only parsed, not
/// compiled, so that the fuzzer cannot make the compiler read `/dev/zero`.
pub fn config(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(source) = std::str::from_utf8(rest) else { return };
    if selector % 2 == 0 {
        let _ = crate::config::gateway_from_str(Path::new("/nonexistent/gateway.toml"), source);
        return;
    }
    let Ok(file) = toml::from_str::<crate::config::file::PolicyFile>(source) else {
        return;
    };
    // Data files: the text may spell a key or a path with escapes (`"\u0066ile"`), so the parsed keys are checked
    // too.
    let names_file = |table: &toml::Table| table.keys().any(|k| k.contains("file"));
    if source.contains("file")
        || source.contains("/dev")
        || file.routes.iter().any(|r| r.get_ref().defenses.iter().any(|d| names_file(&d.get_ref().params)))
    {
        return;
    }
    let path = Path::new("/fuzz/policy.toml");
    match compile_policy_source(path, source, &ENV, None) {
        Ok(policy) => {
            for route in &policy.routes {
                assert!(policy.match_route(&route.method, &route_path(&route.path)).is_some());
            }
        }
        Err(error) => assert_eq!(error.file, path, "errors name the file"),
    }
}

fn route_path(path: &PathMatch) -> String {
    match path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p.clone(),
    }
}
