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
    /// The app matches field names case-insensitively (`Email` is its `email`): read such a spelling as the field
    /// instead of refusing it. Two spellings of one field are refused either way.
    pub case_insensitive: bool,
}

impl<'p> Wanted<'p> {
    pub fn new(account: Option<&'p FieldPath>, password: Option<&'p FieldPath>, target: Option<&'p FieldPath>) -> Self {
        Wanted { paths: [account, password, target], case_insensitive: false }
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
    /// A wanted field is sent under another spelling of its name that some frameworks read as the field (`Email`,
    /// `EMAIL`, `pa\u017f\u017fword` in JSON; ` email`, `e.mail` in a form): the app may read it, the gateway would not.
    Variant(&'static str),
    /// More than one line of a header that decides how the body is read (`Content-Type`, `Content-Length`,
    /// `Transfer-Encoding`): the gateway and the app could each read a different one.
    RepeatedHeader(&'static str),
    /// The body also reads as another type than the one declared (a form that is a JSON object).
    NotDeclaredType,
    /// The query string names a wanted field: servlet `getParameter` and Spring read it before the body.
    InQuery(&'static str),
    /// A body on a method the route does not declare (`GET` with a login body).
    UndeclaredMethod,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::UnsupportedType => {
                write!(f, "the body must be application/json or application/x-www-form-urlencoded")
            }
            BodyError::Malformed(why) => write!(f, "the body could not be parsed: {why}"),
            BodyError::Ambiguous(field) => write!(f, "the {field} field must be a single string"),
            BodyError::Variant(field) => write!(f, "the {field} field is sent under another spelling of its name"),
            BodyError::RepeatedHeader(name) => write!(f, "more than one {name} header"),
            BodyError::NotDeclaredType => write!(f, "the body also reads as another type than its Content-Type"),
            BodyError::InQuery(field) => write!(f, "the query string names the {field} field"),
            BodyError::UndeclaredMethod => write!(f, "a body on a method the route does not declare"),
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
    if looks_like_json(body) {
        // A form whose text is a JSON object (a polyglot): an app that reads it as JSON sees other fields.
        return Err(BodyError::NotDeclaredType);
    }
    let names = wanted.paths.map(|p| p.map(FieldPath::form_name));
    let mut out = Extracted::default();
    for (key, value) in form_urlencoded::parse(body) {
        let mut found = None;
        for (role, name) in names.iter().enumerate() {
            let Some(name) = name else { continue };
            match form_name_match(&key, name) {
                NameMatch::No => continue,
                NameMatch::Exact => {}
                NameMatch::Case if wanted.case_insensitive => {}
                NameMatch::Case | NameMatch::Folded => return Err(BodyError::Variant(ROLES[role])),
                NameMatch::Indexed => return Err(BodyError::Ambiguous(ROLES[role])),
            }
            found = Some(role);
            break;
        }
        let Some(role) = found else { continue };
        if out.values[role].is_some() {
            return Err(BodyError::Ambiguous(ROLES[role]));
        }
        out.values[role] = Some(value);
    }
    Ok(out)
}

/// A body whose first non-blank byte (after a byte-order mark) opens a JSON object or array.
fn looks_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['))
}

/// How a form or query field name compares with a wanted one, under the rules of the frameworks that fold names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameMatch {
    No,
    /// The same bytes.
    Exact,
    /// The same once case is folded (ASP.NET Core's form and query binding).
    Case,
    /// The same once PHP folds it: leading spaces dropped, ` `, `.` and a `[` without a `]` read as `_`.
    Folded,
    /// The field as an array or map entry (`email[]`, `email[0]`, `email[x]` in PHP and Rails).
    Indexed,
}

fn form_name_match(key: &str, name: &str) -> NameMatch {
    if key == name {
        return NameMatch::Exact;
    }
    // PHP drops leading spaces, and a `[` with a `]` after it starts an index: the name is what comes before.
    let trimmed = key.trim_start_matches(' ');
    let (base, indexed) = match trimmed.find('[') {
        Some(at) if trimmed[at..].contains(']') => (&trimmed[..at], true),
        _ => (trimmed, false),
    };
    let php = |c: char| if matches!(c, ' ' | '.' | '[') { '_' } else { fold_char(c) };
    if !base.chars().map(php).eq(name.chars().map(php)) {
        return NameMatch::No;
    }
    if indexed {
        NameMatch::Indexed
    } else if same_but_case(key, name) {
        NameMatch::Case
    } else {
        NameMatch::Folded
    }
}

/// Equal once case is folded the way Go's `encoding/json` (`bytes.EqualFold`) and .NET's ordinal-ignore-case
/// comparisons fold it: `Email`, `EMAIL` and `emai\u{212a}`-style spellings (the Kelvin sign folds to `k`, the long
/// s `\u{17f}` to `s`) all read as `email`. Allocation-free.
pub(crate) fn same_but_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

/// One character's case-folded form: lower, upper, then lower again, so that every member of a simple case-folding
/// orbit (`k`, `K`, U+212A) lands on the same character.
fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
        let first = chars.next()?;
        chars.next().is_none().then_some(first)
    }
    let lower = single(c.to_lowercase()).unwrap_or(c);
    let upper = single(lower.to_uppercase()).unwrap_or(lower);
    single(upper.to_lowercase()).unwrap_or(upper)
}

/// What a request says around its body that two parsers could read differently, checked on protected routes
/// before the body is: repeated framing headers, and wanted fields named in the query string.
pub fn check_request(headers: &http::HeaderMap, query: Option<&str>, wanted: Wanted<'_>) -> Result<(), BodyError> {
    for (header, name) in [
        (http::header::CONTENT_TYPE, "Content-Type"),
        (http::header::CONTENT_LENGTH, "Content-Length"),
        (http::header::TRANSFER_ENCODING, "Transfer-Encoding"),
    ] {
        if headers.get_all(&header).iter().nth(1).is_some() {
            return Err(BodyError::RepeatedHeader(name));
        }
    }
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    for (key, _) in form_urlencoded::parse(query.as_bytes()) {
        for (role, path) in wanted.paths.iter().enumerate() {
            let Some(path) = path else { continue };
            // A JSON path's last step is the name a query parameter would use (`user.email` → `email`).
            let leaf = path.0.last().map(String::as_str).unwrap_or("");
            let joined = path.0.len() > 1 && form_name_match(&key, &path.form_name()) != NameMatch::No;
            if joined || form_name_match(&key, leaf) != NameMatch::No {
                return Err(BodyError::InQuery(ROLES[role]));
            }
        }
    }
    Ok(())
}

fn extract_json<'a>(body: &'a [u8], wanted: Wanted<'_>) -> Result<Extracted<'a>, BodyError> {
    let mut out = Extracted::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let walker = Walker {
        paths: wanted.paths.map(|p| p.map(|p| p.0.as_slice())),
        case_insensitive: wanted.case_insensitive,
        depth: 0,
        out: &mut out,
    };
    walker.deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(out)
}

fn json_error(error: serde_json::Error) -> BodyError {
    let text = error.to_string();
    if let Some(role) = ROLES.iter().find(|role| text.starts_with(&format!("ambiguous {role}"))) {
        return BodyError::Ambiguous(role);
    }
    match ROLES.iter().find(|role| text.starts_with(&format!("variant {role}"))) {
        Some(role) => BodyError::Variant(role),
        None => BodyError::Malformed(text),
    }
}

/// Walks one JSON object level, descending only along the wanted paths.
struct Walker<'p, 'o, 'a> {
    paths: [Option<&'p [String]>; 3],
    case_insensitive: bool,
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
            // For each role: does this key lead to it, and is it the last step? A key that only differs in case
            // leads there too for an app that folds case (Go, ASP.NET Core); for any other app it is refused, since
            // the gateway cannot know which spelling the app reads.
            let mut along = [None; 3];
            for (role, (slot, path)) in along.iter_mut().zip(self.paths).enumerate() {
                let Some(step) = path.and_then(|p| p.get(depth)) else { continue };
                if step.as_str() != key.as_ref() {
                    if !same_but_case(step, &key) {
                        continue;
                    }
                    if !self.case_insensitive {
                        return Err(de::Error::custom(format!("variant {}", ROLES[role])));
                    }
                }
                *slot = path.map(|p| p.len() == depth + 1);
            }
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
                map.next_value_seed(Walker {
                    paths: deeper,
                    case_insensitive: self.case_insensitive,
                    depth: depth + 1,
                    out: &mut *self.out,
                })?;
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
    fn json_keys_in_another_case_are_refused_unless_the_app_folds_case() {
        for body in [
            r#"{"email":"decoy@x.org","password":"p","EMAIL":"victim@x.org"}"#,
            r#"{"Email":"victim@x.org","password":"p"}"#,
            r#"{"email":"a@x.org","pa\u017f\u017fword":"p"}"#,
            r#"{"email":"a@x.org","password":"p","Password":"password1"}"#,
        ] {
            assert!(matches!(json(body, "email", "password"), Err(BodyError::Variant(_))), "{body}");
        }
        let (email, password) = (path("user.email"), path("password"));
        let mut wanted = Wanted::new(Some(&email), Some(&password), None);
        let nested = extract(BodyType::Json, br#"{"User":{"email":"v@x.org"}}"#, wanted);
        assert_eq!(nested.unwrap_err(), BodyError::Variant("account"));
        wanted.case_insensitive = true;
        let out = extract(BodyType::Json, br#"{"USER":{"Email":"v@x.org"},"PASSWORD":"p"}"#, wanted).unwrap();
        assert_eq!((out.account(), out.password()), (Some("v@x.org"), Some("p")));
        let twice = extract(BodyType::Json, br#"{"user":{"email":"d@x.org","eMail":"v@x.org"}}"#, wanted);
        assert_eq!(twice.unwrap_err(), BodyError::Ambiguous("account"));
    }

    #[test]
    fn form_names_php_or_asp_net_fold_together_are_refused() {
        let (email, password) = (path("email"), path("password"));
        let mut wanted = Wanted::new(Some(&email), Some(&password), None);
        for (body, expected) in [
            (&b"email=d&password=p&%20email=v"[..], BodyError::Variant("account")),
            (b"email=d&password=p&+email=v", BodyError::Variant("account")),
            (b"email=d&Email=v", BodyError::Variant("account")),
            (b"email=d&email[0]=v", BodyError::Ambiguous("account")),
            (b"email=d&email[x]=v", BodyError::Ambiguous("account")),
        ] {
            assert_eq!(extract(BodyType::Form, body, wanted).unwrap_err(), expected, "{body:?}");
        }
        // PHP reads `pass.word` and `pass word` as `pass_word`.
        let underscored = path("pass_word");
        for body in [&b"pass.word=p"[..], b"pass+word=p", b"pass[word=p"] {
            let got = extract(BodyType::Form, body, Wanted::new(Some(&email), Some(&underscored), None));
            assert_eq!(got.unwrap_err(), BodyError::Variant("password"), "{body:?}");
        }
        wanted.case_insensitive = true;
        let out = extract(BodyType::Form, b"EMAIL=v&Password=p", wanted).unwrap();
        assert_eq!((out.account(), out.password()), (Some("v"), Some("p")));
        assert_eq!(extract(BodyType::Form, b"email=d&EMAIL=v", wanted).unwrap_err(), BodyError::Ambiguous("account"));
        // Case folding does not stretch to PHP's folding: a leading space is still refused.
        assert_eq!(extract(BodyType::Form, b"%20email=v", wanted).unwrap_err(), BodyError::Variant("account"));
        // Other fields pass, whatever they are called.
        assert!(extract(BodyType::Form, b"email=v&password=p&emails=x&remember_me=1", wanted).is_ok());
    }

    #[test]
    fn a_form_that_is_also_json_is_refused() {
        let (email, password) = (path("email"), path("password"));
        let wanted = Wanted::new(Some(&email), Some(&password), None);
        let polyglot = br#"{"a":"&email=decoy%40x.org&password=d&y=","email":"victim@x.org","password":"guess"}"#;
        assert_eq!(extract(BodyType::Form, polyglot, wanted).unwrap_err(), BodyError::NotDeclaredType);
        assert_eq!(extract(BodyType::Form, b"  [1]", wanted).unwrap_err(), BodyError::NotDeclaredType);
        assert_eq!(extract(BodyType::Form, b"\xEF\xBB\xBF {}", wanted).unwrap_err(), BodyError::NotDeclaredType);
        assert!(extract(BodyType::Form, b"email=a%7B&password=%7B", wanted).is_ok());
    }

    #[test]
    fn repeated_framing_headers_and_credentials_in_the_query_are_refused() {
        let (email, password) = (path("user.email"), path("password"));
        let wanted = Wanted::new(Some(&email), Some(&password), None);
        let mut headers = http::HeaderMap::new();
        headers.append("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        assert_eq!(check_request(&headers, None, wanted), Ok(()));
        headers.append("content-type", "application/json".parse().unwrap());
        assert_eq!(check_request(&headers, None, wanted), Err(BodyError::RepeatedHeader("Content-Type")));
        let mut headers = http::HeaderMap::new();
        headers.append("content-length", "5".parse().unwrap());
        headers.append("content-length", "50".parse().unwrap());
        assert_eq!(check_request(&headers, None, wanted), Err(BodyError::RepeatedHeader("Content-Length")));
        let headers = http::HeaderMap::new();
        for query in ["email=v%40x.org", "next=/&password=p", "user.email=v", "Email=v", "%20password=x", "email[]=v"] {
            assert!(matches!(check_request(&headers, Some(query), wanted), Err(BodyError::InQuery(_))), "{query}");
        }
        for query in ["", "next=/home", "emails=1", "lang=en&redirect=%2F"] {
            assert_eq!(check_request(&headers, Some(query), wanted), Ok(()), "{query}");
        }
    }

    #[test]
    fn case_folding_reads_as_go_and_dot_net_do() {
        assert!(same_but_case("EMAIL", "email"));
        assert!(same_but_case("pa\u{17f}\u{17f}word", "password"));
        assert!(same_but_case("\u{212a}ey", "key"));
        assert!(same_but_case("\u{c9}cole", "\u{e9}COLE"));
        assert!(!same_but_case("emails", "email"));
        assert!(!same_but_case("e-mail", "email"));
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
    /// A credential field under another spelling of its name (`Email`, ` email`).
    FieldVariant,
    /// More than one `Content-Type`, `Content-Length` or `Transfer-Encoding` line.
    RepeatedHeader,
    /// The body also reads as another type than its `Content-Type` (a polyglot).
    NotDeclaredType,
    /// The query string names a credential field.
    CredentialInQuery,
    /// A body on a method the route does not declare.
    UndeclaredMethod,
    /// A challenge page's re-submit whose solution did not pass (spent, expired, wrong or throttled).
    SealedLoginUnusable,
}

impl BodyProblem {
    pub fn from_error(error: &BodyError) -> BodyProblem {
        match error {
            BodyError::UnsupportedType => BodyProblem::UnsupportedType,
            BodyError::Malformed(_) => BodyProblem::Malformed,
            BodyError::Ambiguous("target") => BodyProblem::AmbiguousTarget,
            BodyError::Ambiguous(_) => BodyProblem::AmbiguousField,
            BodyError::Variant(_) => BodyProblem::FieldVariant,
            BodyError::RepeatedHeader(_) => BodyProblem::RepeatedHeader,
            BodyError::NotDeclaredType => BodyProblem::NotDeclaredType,
            BodyError::InQuery(_) => BodyProblem::CredentialInQuery,
            BodyError::UndeclaredMethod => BodyProblem::UndeclaredMethod,
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
            BodyProblem::FieldVariant => "field_name_variant",
            BodyProblem::RepeatedHeader => "repeated_body_header",
            BodyProblem::NotDeclaredType => "body_not_declared_type",
            BodyProblem::CredentialInQuery => "credential_in_query",
            BodyProblem::UndeclaredMethod => "body_on_undeclared_method",
            BodyProblem::SealedLoginUnusable => "sealed_login_unusable",
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
            BodyProblem::FieldVariant => "A credential field must be sent under its own name, in one spelling.",
            BodyProblem::RepeatedHeader => "Content-Type, Content-Length and Transfer-Encoding may each be sent once.",
            BodyProblem::NotDeclaredType => "The body must be exactly the type its Content-Type declares.",
            BodyProblem::CredentialInQuery => "Credential fields belong in the body, not in the query string.",
            BodyProblem::UndeclaredMethod => "This endpoint takes no body with this method.",
            BodyProblem::SealedLoginUnusable => {
                "This sign-in check was already used or has expired. Please sign in again."
            }
        }
    }
}
