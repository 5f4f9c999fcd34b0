//! Entry points shared by the `cargo fuzz` targets (`fuzz/`) and by `tests/fuzz_corpus.rs`, which replays the
//! committed corpora on every `cargo test`. Each takes arbitrary bytes, runs one parser an attacker or operator
//! feeds, and panics when an invariant breaks — a panic is what the fuzzer reports.
#![doc(hidden)]

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::Path;
use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};

use crate::body::{self, BodyType, Wanted};
use crate::challenge::facts;
use crate::challenge::seal::{self, Original};
use crate::challenge::token::{self as token_mod, ChallengeClaims, DeviceClaims, SigningKey, TokenError, TokenKeys};
use crate::clock::Clock;
use crate::config::{compile_policy_source, FieldPath, PathMatch, Policy, Services};
use crate::ip_ranges::IpRanges;
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

static ENV: LazyLock<Services> = LazyLock::new(|| Services::new(Clock::manual(), 1024));

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

/// `X-Forwarded-For` and `Forwarded` parsing: lines split at `\n`, from a trusted and an untrusted peer; and the
/// PROXY protocol header.
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
    // The PROXY protocol header a trusted load balancer opens a connection with: a complete header lies within
    // what was read, and reading more never turns a verdict around.
    match crate::proxy::proxy_protocol::parse(data) {
        crate::proxy::proxy_protocol::Parsed::Header { length, .. } => {
            assert!(length <= data.len() && length > 0);
            assert_eq!(crate::proxy::proxy_protocol::parse(&data[..length]), crate::proxy::proxy_protocol::parse(data));
        }
        crate::proxy::proxy_protocol::Parsed::Invalid(_) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\nmore");
            assert!(matches!(
                crate::proxy::proxy_protocol::parse(&longer),
                crate::proxy::proxy_protocol::Parsed::Invalid(_)
            ));
        }
        crate::proxy::proxy_protocol::Parsed::Incomplete => {}
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

/// When the token fuzzer checks tokens: 2026-01-01T00:00:00Z, in nanoseconds.
const TOKEN_NOW: u64 = 1_767_225_600 * 1_000_000_000;

/// The fixed keys of the token fuzzer: the first signs, both verify (a rotation in progress).
struct TokenFixture {
    keys: TokenKeys,
    /// Each key alone, to re-encode what it signed, and its key id.
    alone: [TokenKeys; 2],
    kids: [u8; 2],
    hasher: crate::keys::KeyHasher,
}

static TOKENS: LazyLock<TokenFixture> = LazyLock::new(|| {
    let new = SigningKey::from_secret(b"stuffgate fuzz: the new token key");
    let old = SigningKey::from_secret(b"stuffgate fuzz: the old token key");
    let keys = |k: Vec<SigningKey>| TokenKeys::new(k).unwrap_or_else(|e| unreachable!("{e}"));
    TokenFixture {
        kids: [new.kid, old.kid],
        keys: keys(vec![new.clone(), old.clone()]),
        alone: [keys(vec![new]), keys(vec![old])],
        hasher: crate::keys::KeyHasher::from_secret(b"stuffgate fuzz: the key hasher"),
    }
});

/// Challenge and device tokens, the solution header, and the challenge page's re-submit. The first byte picks the
/// mode: 0 device token from a `Cookie` or `X-Stuffgate-Device` header, 1 `X-Stuffgate-Solution`, 2 the page's
/// form (envelope, sealed body, device signals), 3 tokens and seals built from the input's claims, then edited.
pub fn token(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => token_from_headers(selector & 4 != 0, rest),
        1 => token_solution(rest),
        2 => token_envelope(rest),
        _ => token_tamper(rest),
    }
}

/// A token that verified must be one we signed: it re-encodes to the same text and has not expired.
fn check_verified(text: &str, now: u64) {
    let fixture = &*TOKENS;
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(text) else { panic!("a verified token is base64url: {text:?}") };
    let by = |k: &TokenKeys| k.verify_challenge(text, now).is_ok() || k.verify_device(text, now).is_ok();
    let Some(at) = fixture.alone.iter().position(by) else {
        panic!("verified by the pair but by neither key alone: {text:?}")
    };
    let alone = &fixture.alone[at];
    assert_eq!(bytes.get(1), Some(&fixture.kids[at]), "the key id byte names the key");
    let secs = now / 1_000_000_000;
    if let Ok(claims) = fixture.keys.verify_challenge(text, now) {
        assert_eq!(alone.issue_challenge(&claims), text, "a verified challenge re-encodes to its text");
        assert!(u64::from(claims.expires) > secs, "a verified challenge has not expired");
        assert_eq!(text.len(), (token_mod::CHALLENGE_LEN * 4).div_ceil(3));
    }
    if let Ok(claims) = fixture.keys.verify_device(text, now) {
        assert_eq!(alone.issue_device(&claims), text, "a verified device token re-encodes to its text");
        assert!(u64::from(claims.expires) > secs, "a verified device token has not expired");
        assert_eq!(text.len(), (token_mod::DEVICE_LEN * 4).div_ceil(3));
    }
}

fn token_from_headers(header: bool, data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Ok(value) = HeaderValue::from_bytes(line) else { return };
        if header {
            headers.append(facts::DEVICE_HEADER, value);
        } else {
            headers.append(http::header::COOKIE, value);
        }
    }
    let Some(text) = facts::device_token(&headers, "sg_dev") else {
        return;
    };
    let keys = &TOKENS.keys;
    for now in [TOKEN_NOW, 0, u64::MAX] {
        let device = keys.verify_device(text, now);
        let challenge = keys.verify_challenge(text, now);
        assert!(device.is_err() || challenge.is_err(), "a token is of one kind: {text:?}");
        if device.is_ok() || challenge.is_ok() {
            check_verified(text, now);
        }
    }
}

fn token_solution(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(facts::SOLUTION_HEADER, value);
    let Some(presented) = facts::from_header(&headers) else {
        return;
    };
    assert!(!presented.nonce.contains(':'), "the nonce is after the last ':'");
    let bits = match TOKENS.keys.verify_challenge(presented.token, TOKEN_NOW) {
        Ok(claims) => {
            check_verified(presented.token, TOKEN_NOW);
            claims.bits
        }
        Err(_) => data.len() as u8 % 4,
    };
    let decimal = (1..=20).contains(&presented.nonce.len()) && presented.nonce.bytes().all(|b| b.is_ascii_digit());
    assert_eq!(token_mod::pow_ok(presented.token, presented.nonce, 0), decimal, "{:?}", presented.nonce);
    if token_mod::pow_ok(presented.token, presented.nonce, bits) {
        assert!(decimal);
        for fewer in 0..bits {
            assert!(token_mod::pow_ok(presented.token, presented.nonce, fewer), "fewer bits are easier");
        }
    }
}

fn token_envelope(data: &[u8]) {
    let form = Some(&b"application/x-www-form-urlencoded; charset=utf-8"[..]);
    let Some(envelope) = seal::detect(form, data) else {
        assert!(!data.starts_with(b"_sg_c="), "a form starting with `_sg_c=` is an envelope");
        return;
    };
    let fixture = &*TOKENS;
    if fixture.keys.verify_challenge(&envelope.token, TOKEN_NOW).is_ok() {
        check_verified(&envelope.token, TOKEN_NOW);
    }
    if let Some(original) = seal::open(&fixture.keys, &envelope.token, &envelope.sealed) {
        assert!(original.content_type.as_ref().is_none_or(|t| !t.is_empty() && t.len() <= 3 * 255));
    }
    let _ = token_mod::pow_ok(&envelope.token, &envelope.nonce, 1);
    let (hash, tells) = facts::signals(&fixture.hasher, &envelope.signals);
    assert!(tells <= 3);
    if envelope.signals.is_empty() || envelope.signals.len() > 4096 {
        assert_eq!((hash, tells), (None, 0));
    }
}

/// Cut `n` bytes off the front of `data` (zero-padded when it runs out).
fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(data.len());
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

/// A token issued for `claims` verifies as them until `expires`, then as expired; as the other kind of token, never.
fn check_issued<C: PartialEq + std::fmt::Debug>(
    text: &str,
    claims: C,
    expires: u32,
    verify: impl Fn(&str) -> Result<C, TokenError>,
    as_other_kind: Result<(), TokenError>,
) {
    if u64::from(expires) > TOKEN_NOW / 1_000_000_000 {
        assert_eq!(verify(text), Ok(claims));
        check_verified(text, TOKEN_NOW);
    } else {
        assert_eq!(verify(text), Err(TokenError::Expired));
    }
    assert_eq!(as_other_kind, Err(TokenError::Malformed));
}

fn token_tamper(mut data: &[u8]) {
    let fixture = &*TOKENS;
    let [flags] = take::<1>(&mut data);
    let signer = &fixture.alone[usize::from(flags & 1)];
    let challenge = flags & 2 != 0;
    let expires = u32::from_le_bytes(take(&mut data));
    let text = if challenge {
        let claims = ChallengeClaims {
            issued_ms: u64::from_le_bytes(take(&mut data)),
            expires,
            bits: take::<1>(&mut data)[0],
            id: take(&mut data),
            bind: take(&mut data),
        };
        let text = signer.issue_challenge(&claims);
        let as_device = fixture.keys.verify_device(&text, 0).map(drop);
        check_issued(&text, claims, expires, |text| fixture.keys.verify_challenge(text, TOKEN_NOW), as_device);
        text
    } else {
        let claims = DeviceClaims { issued: u32::from_le_bytes(take(&mut data)), expires, id: take(&mut data) };
        let text = signer.issue_device(&claims);
        let as_challenge = fixture.keys.verify_challenge(&text, 0).map(drop);
        check_issued(&text, claims, expires, |text| fixture.keys.verify_device(text, TOKEN_NOW), as_challenge);
        text
    };
    // The original body: a content type of at most 255 bytes, then the rest up to the edits.
    let [type_len, body_len] = take::<2>(&mut data);
    let (content_type, rest) = data.split_at(usize::from(type_len).min(data.len()));
    data = rest;
    // The seal keeps 255 bytes of the type: cut at a character boundary so that it opens as it was sealed.
    let mut content_type = String::from_utf8_lossy(content_type).into_owned();
    let mut end = content_type.len().min(255);
    while !content_type.is_char_boundary(end) {
        end -= 1;
    }
    content_type.truncate(end);
    let body_len = usize::from(body_len).min(data.len());
    let (body, edits) = data.split_at(body_len);
    let original = Original {
        content_type: (!content_type.is_empty()).then_some(content_type),
        body: bytes::Bytes::copy_from_slice(body),
    };
    let sealed = seal::seal(&fixture.keys, &text, &original);
    assert_eq!(seal::open(&fixture.keys, &text, &sealed).as_ref(), Some(&original), "a seal opens for its token");
    // Edits: (position, xor) pairs on the token's bytes, then on the seal's.
    let (token_edits, seal_edits) = edits.split_at((edits.len() / 2) & !1);
    let mut raw = URL_SAFE_NO_PAD.decode(&text).unwrap_or_else(|_| unreachable!());
    for pair in token_edits.chunks_exact(2) {
        let at = usize::from(pair[0]) % raw.len();
        raw[at] ^= pair[1];
    }
    let edited = URL_SAFE_NO_PAD.encode(&raw);
    if edited != text {
        assert!(fixture.keys.verify_challenge(&edited, 0).is_err(), "an edited token verified: {edited}");
        assert!(fixture.keys.verify_device(&edited, 0).is_err(), "an edited token verified: {edited}");
        assert_eq!(seal::open(&fixture.keys, &edited, &sealed), None, "a seal opened for another token");
    }
    // The same on the text: each edit replaces a character with one of the base64url alphabet.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut chars = text.clone().into_bytes();
    for pair in token_edits.chunks_exact(2) {
        let at = usize::from(pair[0]) % chars.len();
        chars[at] = alphabet[usize::from(pair[1]) % alphabet.len()];
    }
    let edited = String::from_utf8(chars).unwrap_or_else(|_| unreachable!());
    if edited != text {
        assert!(fixture.keys.verify_challenge(&edited, 0).is_err(), "an edited token text verified: {edited}");
        assert!(fixture.keys.verify_device(&edited, 0).is_err(), "an edited token text verified: {edited}");
    }
    let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap_or_else(|_| unreachable!());
    for pair in seal_edits.chunks_exact(2) {
        let at = usize::from(pair[0]) % raw.len();
        raw[at] ^= pair[1];
    }
    let edited = URL_SAFE_NO_PAD.encode(&raw);
    if edited != sealed {
        assert_eq!(seal::open(&fixture.keys, &text, &edited), None, "an edited seal opened");
    }
}

/// ClientHello reassembly and JA4: any prefix of the client's first bytes either waits for more, is refused, or gives
/// a fingerprint of the fixed shape; reading the same bytes in two pieces never changes the answer.
pub fn client_hello(data: &[u8]) {
    use crate::ja4::{self, Scan};
    let whole = ja4::fingerprint(data);
    if let Some(print) = whole {
        for text in [print.full(), print.counting()] {
            assert_eq!(text.len(), ja4::JA4_LEN, "{text}");
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{text}");
        }
    }
    // A prefix of bytes that held a hello never holds a different one.
    for cut in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
        if let Scan::Hello(message) = ja4::scan_records(&data[..cut]) {
            assert_eq!(ja4::ja4(&message).ok(), whole, "prefix of {cut} bytes");
        }
    }
    // The message alone, without its records, parses the same way.
    if let Scan::Hello(message) = ja4::scan_records(data) {
        let _ = ja4::ja4(&message[..message.len() / 2]);
    }
}
