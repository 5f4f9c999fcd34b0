//! Reading the account and password out of a login body without building a document tree: the JSON is walked once,
//! only the configured paths are kept, everything else is skipped, and strings without escapes are borrowed from
//! the request buffer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::config::FieldPath;

#[derive(Debug, Default)]
pub struct Extracted<'a> {
    pub account: Option<Cow<'a, str>>,
    pub password: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The content type is neither JSON nor a URL-encoded form.
    UnsupportedType,
    /// The body does not parse as its content type says.
    Malformed(String),
    /// A wanted field is an object, an array or repeated: different parsers would read different values, so
    /// the request is refused rather than guessed at (an e-mail array is the GitLab CVE-2023-7028 reset hijack).
    Ambiguous(&'static str),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::UnsupportedType => {
                write!(f, "the body must be application/json or application/x-www-form-urlencoded")
            }
            BodyError::Malformed(why) => write!(f, "the body could not be parsed: {why}"),
            BodyError::Ambiguous(field) => write!(f, "the {field} field must be a single string"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Form,
}

/// Decide the body type from Content-Type; without one, sniff: JSON bodies start with '{'.
pub fn body_type(content_type: Option<&[u8]>, body: &[u8]) -> Result<BodyType, BodyError> {
    match content_type {
        Some(value) => {
            let value = std::str::from_utf8(value).map_err(|_| BodyError::UnsupportedType)?;
            let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if essence == "application/json" || essence.ends_with("+json") {
                Ok(BodyType::Json)
            } else if essence == "application/x-www-form-urlencoded" {
                Ok(BodyType::Form)
            } else {
                Err(BodyError::UnsupportedType)
            }
        }
        None if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Ok(BodyType::Json),
        None => Ok(BodyType::Form),
    }
}

pub fn extract<'a>(
    kind: BodyType,
    body: &'a [u8],
    account: Option<&FieldPath>,
    password: Option<&FieldPath>,
) -> Result<Extracted<'a>, BodyError> {
    match kind {
        BodyType::Json => extract_json(body, account, password),
        BodyType::Form => extract_form(body, account, password),
    }
}

fn extract_form<'a>(
    body: &'a [u8],
    account: Option<&FieldPath>,
    password: Option<&FieldPath>,
) -> Result<Extracted<'a>, BodyError> {
    let account_name = account.map(FieldPath::form_name);
    let password_name = password.map(FieldPath::form_name);
    let mut out = Extracted::default();
    for (key, value) in form_urlencoded::parse(body) {
        let slot = if Some(key.as_ref()) == account_name.as_deref() || key.strip_suffix("[]") == account_name.as_deref() {
            (&mut out.account, "account")
        } else if Some(key.as_ref()) == password_name.as_deref() {
            (&mut out.password, "password")
        } else {
            continue;
        };
        if slot.0.is_some() || key.ends_with("[]") {
            return Err(BodyError::Ambiguous(slot.1));
        }
        *slot.0 = Some(value);
    }
    Ok(out)
}

fn extract_json<'a>(
    body: &'a [u8],
    account: Option<&FieldPath>,
    password: Option<&FieldPath>,
) -> Result<Extracted<'a>, BodyError> {
    let mut out = Extracted::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let walker = Walker {
        account: account.map(|p| p.0.as_slice()),
        password: password.map(|p| p.0.as_slice()),
        depth: 0,
        out: &mut out,
    };
    walker.deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(out)
}

fn json_error(error: serde_json::Error) -> BodyError {
    let text = error.to_string();
    if let Some(field) = ["account", "password"].into_iter().find(|f| text.starts_with(&format!("ambiguous {f}"))) {
        return BodyError::Ambiguous(if field == "account" { "account" } else { "password" });
    }
    BodyError::Malformed(text)
}

/// Walks one JSON object level, descending only along the wanted paths.
struct Walker<'p, 'o, 'a> {
    account: Option<&'p [String]>,
    password: Option<&'p [String]>,
    depth: usize,
    out: &'o mut Extracted<'a>,
}

#[derive(Clone, Copy)]
enum Want {
    Leaf(&'static str),
    Deeper,
    Skip,
}

fn want(path: Option<&[String]>, depth: usize, key: &str) -> Option<bool> {
    let path = path?;
    (path.get(depth).map(String::as_str) == Some(key)).then_some(path.len() == depth + 1)
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Walker<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Walker<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let key = key.0;
            let account = want(self.account, self.depth, &key);
            let password = want(self.password, self.depth, &key);
            let action = match (account, password) {
                (Some(true), _) => Want::Leaf("account"),
                (_, Some(true)) => Want::Leaf("password"),
                (Some(false), _) | (_, Some(false)) => Want::Deeper,
                _ => Want::Skip,
            };
            match action {
                Want::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                Want::Leaf(which) => {
                    let value = map.next_value::<Scalar<'de>>()?;
                    let slot = if which == "account" {
                        &mut self.out.account
                    } else {
                        &mut self.out.password
                    };
                    match value {
                        Scalar::Text(text) if slot.is_none() => *slot = Some(text),
                        Scalar::Null if slot.is_none() => {}
                        _ => return Err(de::Error::custom(format!("ambiguous {which}"))),
                    }
                }
                Want::Deeper => {
                    map.next_value_seed(Walker {
                        account: self.account.filter(|_| account == Some(false)),
                        password: self.password.filter(|_| password == Some(false)),
                        depth: self.depth + 1,
                        out: &mut *self.out,
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// A string that borrows from the input when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A wanted leaf: a string or a number (phone-number logins) is a value; null is absent; anything else is ambiguous.
enum Scalar<'de> {
    Text(Cow<'de, str>),
    Null,
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    fn json(body: &str, account: &str, password: &str) -> Result<(Option<String>, Option<String>), BodyError> {
        let out = extract(BodyType::Json, body.as_bytes(), Some(&path(account)), Some(&path(password)))?;
        Ok((out.account.map(Cow::into_owned), out.password.map(Cow::into_owned)))
    }

    #[test]
    fn json_fields_at_top_level_and_nested_paths() {
        let got = json(r#"{"x":[1,{"a":2}],"email":"a@b.c","password":"p\"w"}"#, "email", "password").unwrap();
        assert_eq!(got, (Some("a@b.c".into()), Some("p\"w".into())));
        let got = json(r#"{"user":{"email":"a@b.c","other":1},"auth":{"secret":"s"}}"#, "user.email", "auth.secret").unwrap();
        assert_eq!(got, (Some("a@b.c".into()), Some("s".into())));
        let got = json(r#"{"phone":819012345678}"#, "phone", "password").unwrap();
        assert_eq!(got, (Some("819012345678".into()), None));
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let body = br#"{"email":"a@b.c","password":"plain"}"#;
        let out = extract(BodyType::Json, body, Some(&path("email")), Some(&path("password"))).unwrap();
        assert!(matches!(out.account, Some(Cow::Borrowed(_))));
        assert!(matches!(out.password, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn malformed_and_ambiguous_json_is_refused() {
        assert!(matches!(json("{\"email\":", "email", "password"), Err(BodyError::Malformed(_))));
        assert!(matches!(json("[1,2]", "email", "password"), Err(BodyError::Malformed(_))));
        assert!(matches!(json("{} trailing", "email", "password"), Err(BodyError::Malformed(_))));
        assert_eq!(
            json(r#"{"email":["victim@x.com","attacker@y.com"]}"#, "email", "password"),
            Err(BodyError::Ambiguous("account"))
        );
        assert_eq!(
            json(r#"{"email":"a@x.com","email":"b@y.com"}"#, "email", "password"),
            Err(BodyError::Ambiguous("account"))
        );
    }

    #[test]
    fn form_bodies_decode_and_repeats_are_refused() {
        let out = extract(BodyType::Form, b"email=A%40b.c&password=p+w", Some(&path("email")), Some(&path("password"))).unwrap();
        assert_eq!(out.account.as_deref(), Some("A@b.c"));
        assert_eq!(out.password.as_deref(), Some("p w"));
        let repeated = extract(BodyType::Form, b"email=a&email=b", Some(&path("email")), None);
        assert_eq!(repeated.unwrap_err(), BodyError::Ambiguous("account"));
        let array = extract(BodyType::Form, b"email[]=a", Some(&path("email")), None);
        assert_eq!(array.unwrap_err(), BodyError::Ambiguous("account"));
    }

    #[test]
    fn content_types_are_recognised_or_refused() {
        assert_eq!(body_type(Some(b"application/json; charset=utf-8"), b""), Ok(BodyType::Json));
        assert_eq!(body_type(Some(b"application/vnd.api+json"), b""), Ok(BodyType::Json));
        assert_eq!(body_type(Some(b"application/x-www-form-urlencoded"), b""), Ok(BodyType::Form));
        assert_eq!(body_type(Some(b"multipart/form-data; boundary=x"), b""), Err(BodyError::UnsupportedType));
        assert_eq!(body_type(None, b"  {\"a\":1}"), Ok(BodyType::Json));
    }
}
