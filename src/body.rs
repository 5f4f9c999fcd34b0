//! Reading the account and password out of a login body without building a document tree: the JSON is walked once,
//! only the configured paths are kept, everything else is skipped, and strings without escapes are borrowed from
//! the request buffer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// A dotted path into a JSON body ("user.email"), or a form field name (one segment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn parse(text: &str) -> Option<FieldPath> {
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(FieldPath(parts))
    }

    /// The name used for form bodies: the whole text.
    pub fn form_name(&self) -> String {
        self.0.join(".")
    }
}

/// The fields a route reads from a body, by role.
pub const ROLES: [&str; 3] = ["account", "password", "target"];

/// Where each role's value is in the body; `None` for roles the route does not read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wanted<'p> {
    pub paths: [Option<&'p FieldPath>; 3],
}

impl<'p> Wanted<'p> {
    pub fn new(account: Option<&'p FieldPath>, password: Option<&'p FieldPath>, target: Option<&'p FieldPath>) -> Self {
        Wanted { paths: [account, password, target] }
    }
}

/// The values found, by role. Strings without escapes borrow from the body.
#[derive(Debug, Default)]
pub struct Extracted<'a> {
    pub values: [Option<Cow<'a, str>>; 3],
}

impl Extracted<'_> {
    pub fn account(&self) -> Option<&str> {
        self.values[0].as_deref()
    }
    pub fn password(&self) -> Option<&str> {
        self.values[1].as_deref()
    }
    /// Where a reset asks its link to be sent, when the route names such a field.
    pub fn target(&self) -> Option<&str> {
        self.values[2].as_deref()
    }
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
            // Compared without lowercasing a copy: this runs on every protected request.
            let essence = value.split(';').next().unwrap_or("").trim().as_bytes();
            let json_suffix = essence.len() >= 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json");
            if essence.eq_ignore_ascii_case(b"application/json") || json_suffix {
                Ok(BodyType::Json)
            } else if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
                Ok(BodyType::Form)
            } else {
                Err(BodyError::UnsupportedType)
            }
        }
        None if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Ok(BodyType::Json),
        None => Ok(BodyType::Form),
    }
}

pub fn extract<'a>(kind: BodyType, body: &'a [u8], wanted: Wanted<'_>) -> Result<Extracted<'a>, BodyError> {
    match kind {
        BodyType::Json => extract_json(body, wanted),
        BodyType::Form => extract_form(body, wanted),
    }
}

fn extract_form<'a>(body: &'a [u8], wanted: Wanted<'_>) -> Result<Extracted<'a>, BodyError> {
    let names = wanted.paths.map(|p| p.map(FieldPath::form_name));
    let mut out = Extracted::default();
    for (key, value) in form_urlencoded::parse(body) {
        let bare = key.strip_suffix("[]").unwrap_or(&key);
        let Some(role) = names.iter().position(|n| n.as_deref() == Some(bare)) else {
            continue;
        };
        if out.values[role].is_some() || key.ends_with("[]") {
            return Err(BodyError::Ambiguous(ROLES[role]));
        }
        out.values[role] = Some(value);
    }
    Ok(out)
}

fn extract_json<'a>(body: &'a [u8], wanted: Wanted<'_>) -> Result<Extracted<'a>, BodyError> {
    let mut out = Extracted::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let walker = Walker { paths: wanted.paths.map(|p| p.map(|p| p.0.as_slice())), depth: 0, out: &mut out };
    walker.deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(out)
}

fn json_error(error: serde_json::Error) -> BodyError {
    let text = error.to_string();
    match ROLES.iter().find(|role| text.starts_with(&format!("ambiguous {role}"))) {
        Some(role) => BodyError::Ambiguous(role),
        None => BodyError::Malformed(text),
    }
}

/// Walks one JSON object level, descending only along the wanted paths.
struct Walker<'p, 'o, 'a> {
    paths: [Option<&'p [String]>; 3],
    depth: usize,
    out: &'o mut Extracted<'a>,
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
            let depth = self.depth;
            // For each role: does this key lead to it, and is it the last step?
            let along = self.paths.map(|path| {
                path.filter(|p| p.get(depth).map(String::as_str) == Some(key.as_ref())).map(|p| p.len() == depth + 1)
            });
            if let Some(role) = along.iter().position(|a| *a == Some(true)) {
                let value = map.next_value::<Scalar<'de>>()?;
                let slot = &mut self.out.values[role];
                match value {
                    Scalar::Text(text) if slot.is_none() => *slot = Some(text),
                    Scalar::Null if slot.is_none() => {}
                    _ => return Err(de::Error::custom(format!("ambiguous {}", ROLES[role]))),
                }
            } else if along.contains(&Some(false)) {
                let mut deeper = self.paths;
                for (path, a) in deeper.iter_mut().zip(along) {
                    if a != Some(false) {
                        *path = None;
                    }
                }
                map.next_value_seed(Walker { paths: deeper, depth: depth + 1, out: &mut *self.out })?;
            } else {
                map.next_value::<IgnoredAny>()?;
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
        let (account, password) = (path(account), path(password));
        let out = extract(BodyType::Json, body.as_bytes(), Wanted::new(Some(&account), Some(&password), None))?;
        Ok((out.account().map(str::to_owned), out.password().map(str::to_owned)))
    }

    #[test]
    fn json_fields_at_top_level_and_nested_paths() {
        let got = json(r#"{"x":[1,{"a":2}],"email":"a@b.c","password":"p\"w"}"#, "email", "password").unwrap();
        assert_eq!(got, (Some("a@b.c".into()), Some("p\"w".into())));
        let got =
            json(r#"{"user":{"email":"a@b.c","other":1},"auth":{"secret":"s"}}"#, "user.email", "auth.secret").unwrap();
        assert_eq!(got, (Some("a@b.c".into()), Some("s".into())));
        let got = json(r#"{"phone":819012345678}"#, "phone", "password").unwrap();
        assert_eq!(got, (Some("819012345678".into()), None));
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let body = br#"{"email":"a@b.c","password":"plain"}"#;
        let (email, password) = (path("email"), path("password"));
        let out = extract(BodyType::Json, body, Wanted::new(Some(&email), Some(&password), None)).unwrap();
        assert!(matches!(out.values[0], Some(Cow::Borrowed(_))));
        assert!(matches!(out.values[1], Some(Cow::Borrowed(_))));
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
        let (email, password) = (path("email"), path("password"));
        let wanted = Wanted::new(Some(&email), Some(&password), None);
        let out = extract(BodyType::Form, b"email=A%40b.c&password=p+w", wanted).unwrap();
        assert_eq!(out.account(), Some("A@b.c"));
        assert_eq!(out.password(), Some("p w"));
        let repeated = extract(BodyType::Form, b"email=a&email=b", wanted);
        assert_eq!(repeated.unwrap_err(), BodyError::Ambiguous("account"));
        let array = extract(BodyType::Form, b"email[]=a", wanted);
        assert_eq!(array.unwrap_err(), BodyError::Ambiguous("account"));
    }

    #[test]
    fn content_types_are_recognised_or_refused() {
        assert_eq!(body_type(Some(b"application/json; charset=utf-8"), b""), Ok(BodyType::Json));
        assert_eq!(body_type(Some(b"application/vnd.api+json"), b""), Ok(BodyType::Json));
        assert_eq!(body_type(Some(b"Application/JSON"), b""), Ok(BodyType::Json));
        assert_eq!(body_type(Some(b"application/problem+JSON ; q=1"), b""), Ok(BodyType::Json));
        assert_eq!(body_type(Some(b"APPLICATION/X-WWW-FORM-URLENCODED"), b""), Ok(BodyType::Form));
        assert_eq!(body_type(Some("text/\u{e9}\u{e9}\u{e9}".as_bytes()), b""), Err(BodyError::UnsupportedType));
        assert_eq!(body_type(Some(b"json"), b""), Err(BodyError::UnsupportedType));
        assert_eq!(body_type(Some(b"application/x-www-form-urlencoded"), b""), Ok(BodyType::Form));
        assert_eq!(body_type(Some(b"multipart/form-data; boundary=x"), b""), Err(BodyError::UnsupportedType));
        assert_eq!(body_type(None, b"  {\"a\":1}"), Ok(BodyType::Json));
    }

    #[test]
    fn a_third_field_is_read_alongside_and_can_share_a_parent() {
        let (email, target) = (path("user.email"), path("user.send_to"));
        let wanted = Wanted::new(Some(&email), None, Some(&target));
        let body = br#"{"user":{"send_to":"evil@x.net","email":"v@y.jp"}}"#;
        let out = extract(BodyType::Json, body, wanted).unwrap();
        assert_eq!((out.account(), out.target()), (Some("v@y.jp"), Some("evil@x.net")));
        let listed = extract(BodyType::Json, br#"{"user":{"email":"v@y.jp","send_to":["a","b"]}}"#, wanted);
        assert_eq!(listed.unwrap_err(), BodyError::Ambiguous("target"));
    }
}

/// Why a protected request's body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyProblem {
    TooLarge,
    UnsupportedType,
    Malformed,
    NoAccount,
    /// The reset names more than one destination (GitLab CVE-2023-7028).
    AmbiguousTarget,
    /// A credential field is an object, an array or repeated.
    AmbiguousField,
}

impl BodyProblem {
    pub fn from_error(error: &BodyError) -> BodyProblem {
        match error {
            BodyError::UnsupportedType => BodyProblem::UnsupportedType,
            BodyError::Malformed(_) => BodyProblem::Malformed,
            BodyError::Ambiguous("target") => BodyProblem::AmbiguousTarget,
            BodyError::Ambiguous(_) => BodyProblem::AmbiguousField,
        }
    }

    /// The verdict label (metrics): `too_large` or `bad_request`.
    pub fn label(self) -> &'static str {
        match self {
            BodyProblem::TooLarge => "too_large",
            _ => "bad_request",
        }
    }

    /// A short reason for the decision log.
    pub fn reason(self) -> &'static str {
        match self {
            BodyProblem::TooLarge => "body_too_large",
            BodyProblem::UnsupportedType => "unsupported_content_type",
            BodyProblem::Malformed => "malformed_body",
            BodyProblem::NoAccount => "no_account_field",
            BodyProblem::AmbiguousTarget => "ambiguous_target",
            BodyProblem::AmbiguousField => "ambiguous_field",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            BodyProblem::TooLarge => 413,
            _ => 400,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            BodyProblem::TooLarge => "The request body is larger than this endpoint accepts.",
            BodyProblem::UnsupportedType => "The body must be JSON or a URL-encoded form.",
            BodyProblem::Malformed => "The body could not be parsed.",
            BodyProblem::NoAccount => "The request has no account field.",
            BodyProblem::AmbiguousTarget => "The reset must name one address.",
            BodyProblem::AmbiguousField => "A credential field must be a single string.",
        }
    }
}
