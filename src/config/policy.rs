//! The compiled policy: what the hot path reads. Built once per (re)load by `compile.rs`, swapped atomically.

use std::path::PathBuf;

use http::Method;

use crate::defense::Slot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Login,
    Reset,
    Signup,
    Generic,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Login => "login",
            RouteKind::Reset => "reset",
            RouteKind::Signup => "signup",
            RouteKind::Generic => "generic",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBody {
    /// Answer 400 (the default): an unparsed login is never forwarded.
    Reject,
    /// Forward without credentials-based checks (the address-based ones still ran).
    Forward,
}

pub struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub method: Method,
    pub path: PathMatch,
    pub account_field: Option<FieldPath>,
    pub password_field: Option<FieldPath>,
    pub success_status: Vec<u16>,
    pub failure_status: Vec<u16>,
    pub on_bad_body: BadBody,
    pub max_body_bytes: usize,
    pub ipv6_prefix: u8,
    pub slots: Vec<Slot>,
    pub source: PathBuf,
    /// Whether the engine must look the credentials up in the breach filters.
    pub checks_breach: bool,
}

impl Route {
    /// Whether the route needs the request body at all.
    pub fn reads_body(&self) -> bool {
        self.account_field.is_some() || self.password_field.is_some()
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
        self.routes
            .iter()
            .position(|r| r.method == *method && r.path.matches(path))
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
