//! The compiled policy: what the hot path reads. Built once per (re)load by `compile.rs`, swapped atomically.

use std::path::PathBuf;

use http::Method;

pub use super::file::{BadBody, RouteKind};
use crate::defense::{FactNeeds, Fields, Slot};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    /// Build from a configured path, normalised like request paths are.
    pub fn exact(path: &str) -> PathMatch {
        PathMatch::Exact(normalise_path(path).into_owned())
    }

    pub fn prefix(path: &str) -> PathMatch {
        let normal = normalise_path(path).into_owned();
        // Keep a configured trailing slash: "/auth/" must not match "/authority".
        PathMatch::Prefix(if path.ends_with('/') && normal != "/" { normal + "/" } else { normal })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.matches_normalised(&normalise_path(path))
    }

    /// Match a path already passed through [`normalise_path`]. A format suffix on the last segment does not count:
    /// Rails routes `/api/login.json` as `/api/login` (`(.:format)`), and so did Spring MVC's suffix patterns.
    /// Over-matching only protects more: a route configured as `/api/login` also covers `/api/login.php`.
    pub fn matches_normalised(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p || without_suffix(path) == without_suffix(p),
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str()) || p.strip_suffix('/').is_some_and(|dir| without_suffix(path) == dir)
            }
        }
    }
}

/// `/api/login.json` → `/api/login`: the last segment up to its first dot. A leading dot (`/.well-known`) is part
/// of the name, not a suffix.
fn without_suffix(path: &str) -> &str {
    let last = path.rfind('/').map_or(0, |i| i + 1);
    match path[last..].find('.') {
        Some(dot) if dot > 0 => path[..last + dot].trim_end_matches(|c: char| c == ' ' || c.is_ascii_control()),
        _ => path,
    }
}

/// The form in which paths are compared, so that spellings an upstream router may treat as the same route cannot
/// slip past a protected one: `/API//login/`, `/api/./login` and `/api/%6Cogin` all read `/api/login`, and so do
/// - `/api/login;jsessionid=x` and `/api;x/login` (servlet containers drop `;` path parameters before routing),
/// - `/api\login` and `/api%5Clogin` (IIS reads a backslash as a slash),
/// - `/api/login%20`, `/api/login%00.x` (trailing blanks trimmed; a NUL ends the path, as in C-string routers).
///
/// ASCII case is folded: many frameworks route case-insensitively. Format suffixes (`/api/login.json`) are left to
/// [`PathMatch`], which ignores them. Idempotent, and allocation-free for paths already in normal form.
pub fn normalise_path(path: &str) -> std::borrow::Cow<'_, str> {
    if is_normal(path) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut decoded = percent_decode_unreserved(path);
    // Decoding can spell a new escape ("%%36%31" → "%61"); decode until nothing changes, so that a second pass never
    // finds more to do. Each round that changes anything makes the path shorter, so this ends.
    loop {
        let again = percent_decode_unreserved(&decoded);
        if again == decoded {
            break;
        }
        decoded = again;
    }
    let mut decoded = decoded.to_ascii_lowercase().replace('\\', "/");
    if let Some(nul) = decoded.find('\0') {
        decoded.truncate(nul);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match trim_blank(segment) {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    std::borrow::Cow::Owned(format!("/{}", segments.join("/")))
}

/// Nothing for [`normalise_path`] to do: a rooted path of lower-case segments without dots, parameters, escapes,
/// backslashes, blanks or controls.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && (bytes.len() == 1 || !path.ends_with('/'))
        && !path.contains("//")
        && bytes.iter().all(|&b| {
            !(b.is_ascii_uppercase() || b.is_ascii_control() || matches!(b, b'%' | b';' | b'\\' | b'.' | b' '))
        })
}

/// Segment ends that routers ignore: spaces, tabs and other control characters.
fn trim_blank(segment: &str) -> &str {
    segment.trim_matches(|c: char| c == ' ' || c.is_ascii_control())
}

/// Decode %XX escapes of unreserved characters (letters, digits, `-._~`), of the separators routers read (`/`, `\`,
/// `;`), and of blanks and controls (so that `%20`, `%09` and `%00` can be trimmed or cut), and `%25` that starts
/// another escape; leave others escaped.
fn percent_decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let c = (hi * 16 + lo) as u8;
                // `%25` followed by an escape is that escape, encoded twice (`%2500`, `%252f`): an app or a proxy in
                // front of it that decodes twice reads the character, so the path is read as it would.
                let double = c == b'%'
                    && bytes.get(i + 3).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 4).is_some_and(u8::is_ascii_hexdigit);
                if c.is_ascii_alphanumeric() || b"-._~/\\; ".contains(&c) || c.is_ascii_control() || double {
                    out.push(c as char);
                    i += 3;
                    continue;
                }
            }
        }
        // Push the whole UTF-8 character starting here.
        let ch_len = path[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Whether a request with `method` may reach the handler of a route configured for `route_method`: the same
/// method in any letter case (`post`, `Post`), or any method other than the safe ones (`GET`, `HEAD`, `OPTIONS`,
/// `TRACE`) when the route's own is unsafe — `PUT`, `PATCH`, `DELETE` and extension methods are checked as the
/// route's method. Safe methods stay unchecked so that a login page (`GET /login`) and CORS preflights still work.
pub fn method_may_reach(route_method: &Method, method: &Method) -> bool {
    if route_method.as_str().eq_ignore_ascii_case(method.as_str()) {
        return true;
    }
    let safe = |m: &Method| ["GET", "HEAD", "OPTIONS", "TRACE"].iter().any(|s| m.as_str().eq_ignore_ascii_case(s));
    !safe(route_method) && !safe(method)
}

pub use crate::body::FieldPath;

/// What a route's defenses need together: the engine gathers exactly this per request.
#[derive(Clone, Debug, Default)]
pub struct RouteNeeds {
    pub fields: Fields,
    pub facts: FactNeeds,
    /// The header session-keyed limits read (lower case), when the route has any.
    pub session_header: Option<http::HeaderName>,
    /// An address-phase defense reads the geo fact: locate before the body (otherwise only once it is read, so a
    /// flood answered from the address alone costs no lookup).
    pub geo_before_body: bool,
}

pub struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub method: Method,
    pub path: PathMatch,
    pub account_field: Option<FieldPath>,
    pub password_field: Option<FieldPath>,
    /// Where a reset asks its link to be sent (7pay let callers choose).
    pub target_field: Option<FieldPath>,
    pub needs: RouteNeeds,
    pub success_status: Vec<u16>,
    pub failure_status: Vec<u16>,
    pub on_bad_body: BadBody,
    /// Every defense of the route observes: nothing is refused, not even a body it cannot read.
    pub observes_only: bool,
    /// The app matches body field names case-insensitively (`body.case_insensitive_keys`).
    pub case_insensitive_keys: bool,
    pub max_body_bytes: usize,
    pub ipv6_prefix: u8,
    pub slots: Vec<Slot>,
    /// Where a `password_reset_required` answer sends the user.
    pub reset_url: Option<std::sync::Arc<str>>,
    pub source: PathBuf,
    pub metrics: crate::telemetry::metrics::RouteMetrics,
}

impl Route {
    /// Whether the route needs the request body at all.
    pub fn reads_body(&self) -> bool {
        self.account_field.is_some() || self.password_field.is_some() || self.target_field.is_some()
    }

    pub fn wanted_fields(&self) -> crate::body::Wanted<'_> {
        let mut wanted = crate::body::Wanted::new(
            self.account_field.as_ref(),
            self.password_field.as_ref(),
            self.target_field.as_ref(),
        );
        wanted.case_insensitive = self.case_insensitive_keys;
        wanted
    }

    /// A request that reached this route with a method other than its own and other than those checked as it
    /// (see [`method_may_reach`]) came here because it carries a body (see [`Policy::match_route_with_body`]):
    /// an app whose handler ignores the method would read that body as a login.
    pub fn check_method(&self, method: Option<&Method>) -> Result<(), crate::body::BodyError> {
        match method {
            Some(method) if !method_may_reach(&self.method, method) => Err(crate::body::BodyError::UndeclaredMethod),
            _ => Ok(()),
        }
    }

    pub fn outcome_of(&self, status: u16) -> crate::defense::Outcome {
        if self.success_status.contains(&status) {
            crate::defense::Outcome::Success
        } else if self.failure_status.contains(&status) {
            crate::defense::Outcome::Failure
        } else {
            crate::defense::Outcome::Other
        }
    }
}

/// All routes of all policy files, in file order; the first match wins.
#[derive(Default)]
pub struct Policy {
    pub routes: Vec<Route>,
    pub files: Vec<PathBuf>,
    /// Things that compile but look like mistakes (e.g. a misspelt body field): `check` prints them, `run` logs them.
    pub warnings: Vec<super::ConfigError>,
}

impl Policy {
    /// The first route whose method and path match; failing that, the first whose path matches when the request's
    /// method could carry the same credentials (see [`method_may_reach`]). An upstream that folds method case or
    /// also accepts `PUT`/`PATCH` on its login handler must not get those requests unchecked.
    pub fn match_route(&self, method: &Method, path: &str) -> Option<usize> {
        let path = normalise_path(path);
        self.routes.iter().position(|r| r.method == *method && r.path.matches_normalised(&path)).or_else(|| {
            self.routes.iter().position(|r| method_may_reach(&r.method, method) && r.path.matches_normalised(&path))
        })
    }

    /// For a request [`Policy::match_route`] left unprotected that carries a body: the first route that reads a
    /// body at this path, whatever its method. A `GET` with a login body reaches handlers that ignore the method
    /// (Go's `HandleFunc`, Express's `app.all`, Spring's `@RequestMapping` without one); a `GET` without a body
    /// (a login page, a CORS preflight) is not matched here and still passes unchecked.
    pub fn match_route_with_body(&self, path: &str) -> Option<usize> {
        let path = normalise_path(path);
        self.routes.iter().position(|r| r.reads_body() && r.path.matches_normalised(&path))
    }

    /// Every defense of every route, for the pruning timer and the gauges.
    pub fn slots(&self) -> impl Iterator<Item = (&Route, &Slot)> {
        self.routes.iter().flat_map(|r| r.slots.iter().map(move |s| (r, s)))
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("routes", &self.routes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
            .field("files", &self.files)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_a_protected_path_all_match_it() {
        let login = PathMatch::exact("/api/login");
        for spelling in [
            "/api/login",
            "/API/Login",
            "/api//login",
            "/api/login/",
            "/api/./login",
            "/api/x/../login",
            "/api/%6Cogin",
            "/api%2Flogin",
        ] {
            assert!(login.matches(spelling), "{spelling}");
        }
        for other in ["/api/logins", "/api/log", "/apix/login", "/api/login/x", "/api/login%2541", "/api/.login"] {
            assert!(!login.matches(other), "{other}");
        }
        let auth = PathMatch::prefix("/auth/");
        assert!(auth.matches("/auth/login") && auth.matches("/AUTH//token") && auth.matches("/auth"));
        assert!(!auth.matches("/authority"));
    }

    #[test]
    fn spellings_servlet_rails_iis_and_c_routers_read_as_the_login_match_it() {
        let login = PathMatch::exact("/api/login");
        for spelling in [
            "/api/login;x=1",
            "/api/login;",
            "/api;jsessionid=1/login",
            "/api/login/..;/login",
            "/api/login.json",
            "/api/login.",
            "/API/LOGIN.JSON;x",
            "/api\\login",
            "/api%5Clogin",
            "/api%5clogin",
            "/api/login%20",
            "/api/login%09",
            "/api%20/login",
            "/api/login%00",
            "/api/login%00.jpg",
            "/api/login%3Bx=1",
            "/api/%%36%63ogin",
            "/api/login%2500",
            "/api%252flogin",
            "/api/%256Cogin",
            "/api/login%252500",
        ] {
            assert!(login.matches(spelling), "{spelling}");
        }
        let auth = PathMatch::prefix("/auth/");
        assert!(auth.matches("/auth;x/login") && auth.matches("/auth.json") && auth.matches("/auth\\token"));
        assert!(!auth.matches("/authority.json"));
        // A configured path with a dot still matches itself and its other spellings.
        let php = PathMatch::exact("/login.php");
        assert!(php.matches("/login.php") && php.matches("/LOGIN.PHP;x") && php.matches("/login"));
    }

    #[test]
    fn methods_that_may_reach_a_login_handler_are_matched() {
        let post = Method::POST;
        let lower = Method::from_bytes(b"post").unwrap();
        for (method, expected) in [
            (lower, true),
            (Method::from_bytes(b"Post").unwrap(), true),
            (Method::PUT, true),
            (Method::PATCH, true),
            (Method::DELETE, true),
            (Method::from_bytes(b"LOGIN").unwrap(), true),
            (Method::GET, false),
            (Method::HEAD, false),
            (Method::OPTIONS, false),
            (Method::from_bytes(b"get").unwrap(), false),
        ] {
            assert_eq!(method_may_reach(&post, &method), expected, "{method}");
        }
        assert!(!method_may_reach(&Method::GET, &Method::POST));
        assert!(method_may_reach(&Method::GET, &Method::from_bytes(b"get").unwrap()));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in
            ["/api/%%36%31", "/a/b/..;/c", "/x%2541", "/ a /. /", "/api\\..\\login", "", "*", "/%00", "/a.b/c.d/"]
        {
            let once = normalise_path(raw).into_owned();
            assert_eq!(normalise_path(&once), once, "{raw:?}");
        }
    }

    #[test]
    fn normal_paths_are_not_copied() {
        assert!(matches!(normalise_path("/api/login"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(normalise_path("/"), std::borrow::Cow::Borrowed(_)));
    }
}
