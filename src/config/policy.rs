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

    /// Match a path already passed through [`normalise_path`].
    pub fn matches_normalised(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()) || p.strip_suffix('/') == Some(path),
        }
    }
}

/// The form in which paths are compared, so that spellings an upstream router may treat as the same route cannot
/// slip past a protected one: `/API//login/`, `/api/./login` and `/api/%6Cogin` all read `/api/login`.
/// (ASCII case is folded: many frameworks route case-insensitively, and over-matching only protects more.)
/// Allocation-free for paths already in normal form.
pub fn normalise_path(path: &str) -> std::borrow::Cow<'_, str> {
    let bytes = path.as_bytes();
    let needs_work = bytes.iter().any(|b| b.is_ascii_uppercase() || *b == b'%')
        || path.contains("//")
        || path.contains("/.")
        || (path.len() > 1 && path.ends_with('/'));
    if !needs_work {
        return std::borrow::Cow::Borrowed(path);
    }
    let decoded = percent_decode_unreserved(path).to_ascii_lowercase();
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    std::borrow::Cow::Owned(format!("/{}", segments.join("/")))
}

/// Decode %XX escapes of unreserved characters (letters, digits, `-._~`) and of `/`; leave others escaped.
fn percent_decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let c = (hi * 16 + lo) as u8;
                if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
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

/// What a route's defenses need together: the engine gathers exactly this per request.
#[derive(Clone, Debug, Default)]
pub struct RouteNeeds {
    pub fields: Fields,
    pub facts: FactNeeds,
    /// The header session-keyed limits read (lower case), when the route has any.
    pub session_header: Option<http::HeaderName>,
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
    pub max_body_bytes: usize,
    pub ipv6_prefix: u8,
    pub slots: Vec<Slot>,
    pub source: PathBuf,
}

impl Route {
    /// Whether the route needs the request body at all.
    pub fn reads_body(&self) -> bool {
        self.account_field.is_some() || self.password_field.is_some() || self.target_field.is_some()
    }

    pub fn wanted_fields(&self) -> crate::body::Wanted<'_> {
        crate::body::Wanted::new(
            self.account_field.as_ref(),
            self.password_field.as_ref(),
            self.target_field.as_ref(),
        )
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
}

impl Policy {
    pub fn match_route(&self, method: &Method, path: &str) -> Option<usize> {
        let path = normalise_path(path);
        self.routes
            .iter()
            .position(|r| r.method == *method && r.path.matches_normalised(&path))
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
        for spelling in ["/api/login", "/API/Login", "/api//login", "/api/login/", "/api/./login", "/api/x/../login", "/api/%6Cogin", "/api%2Flogin"] {
            assert!(login.matches(spelling), "{spelling}");
        }
        for other in ["/api/logins", "/api/log", "/api/login%00", "/apix/login"] {
            assert!(!login.matches(other), "{other}");
        }
        let auth = PathMatch::prefix("/auth/");
        assert!(auth.matches("/auth/login") && auth.matches("/AUTH//token") && auth.matches("/auth"));
        assert!(!auth.matches("/authority"));
    }

    #[test]
    fn normal_paths_are_not_copied() {
        assert!(matches!(normalise_path("/api/login"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(normalise_path("/"), std::borrow::Cow::Borrowed(_)));
    }
}
