//! Request-body decoding shared by the demo endpoints: JSON or
//! `application/x-www-form-urlencoded`, chosen by `Content-Type`.

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};

/// A decoded request body.
pub(super) enum Payload {
    Json(Map<String, Value>),
    Form(Vec<(String, String)>),
}

/// Why a body could not be decoded (always answered with 400 `bad_request`).
#[derive(Debug)]
pub(super) struct Malformed;

impl Payload {
    /// Decode `body` according to the request's `Content-Type`.
    /// Missing or unsupported content types are rejected; JSON must be an object.
    pub(super) fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Payload, Malformed> {
        let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).ok_or(Malformed)?;
        let mime = ctype.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => Ok(Payload::Json(map)),
                _ => Err(Malformed),
            }
        } else if mime == "application/x-www-form-urlencoded" {
            parse_form(body).map(Payload::Form)
        } else {
            Err(Malformed)
        }
    }

    /// A single string field. `Ok(None)` when absent; `Err` when present with the wrong type.
    pub(super) fn string(&self, name: &str) -> Result<Option<String>, Malformed> {
        match self {
            Payload::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Malformed),
            },
            Payload::Form(pairs) => Ok(pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())),
        }
    }

    /// A string-or-list field: JSON string or array of strings; in a form, every value
    /// of `name` or `name[]` (repeated keys). `Ok(None)` when absent.
    pub(super) fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, Malformed> {
        match self {
            Payload::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
                Some(Value::Array(items)) => {
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Value::String(s) => out.push(s.clone()),
                            _ => return Err(Malformed),
                        }
                    }
                    Ok(Some(out))
                }
                Some(_) => Err(Malformed),
            },
            Payload::Form(pairs) => {
                let bracketed = format!("{name}[]");
                let out: Vec<String> =
                    pairs.iter().filter(|(k, _)| k == name || *k == bracketed).map(|(_, v)| v.clone()).collect();
                Ok(if out.is_empty() { None } else { Some(out) })
            }
        }
    }

    /// An integer field: a JSON integer, or a decimal string in a form. `Ok(None)` when absent.
    pub(super) fn integer(&self, name: &str) -> Result<Option<i64>, Malformed> {
        match self {
            Payload::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(Malformed),
                Some(_) => Err(Malformed),
            },
            Payload::Form(pairs) => match pairs.iter().find(|(k, _)| k == name) {
                None => Ok(None),
                Some((_, v)) => v.trim().parse::<i64>().map(Some).map_err(|_| Malformed),
            },
        }
    }
}

/// Minimal `application/x-www-form-urlencoded` decoder (`+` → space, `%XX` escapes).
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, Malformed> {
    let mut out = Vec::new();
    for part in body.split(|&b| b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        out.push((decode_component(k)?, decode_component(v)?));
    }
    Ok(out)
}

fn decode_component(raw: &[u8]) -> Result<String, Malformed> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&c| hex_val(c)).ok_or(Malformed)?;
                let lo = raw.get(i + 2).and_then(|&c| hex_val(c)).ok_or(Malformed)?;
                bytes.push(hi << 4 | lo);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| Malformed)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let pairs = parse_form(b"email=a%40b.com&password=x+y%21&flag&&email%5B%5D=c").expect("valid");
        assert_eq!(
            pairs,
            vec![
                ("email".to_string(), "a@b.com".to_string()),
                ("password".to_string(), "x y!".to_string()),
                ("flag".to_string(), String::new()),
                ("email[]".to_string(), "c".to_string()),
            ]
        );
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff").is_err()); // not UTF-8
    }
}
