//! Words the policy files, the defenses and the engine share: what kind of route a request is on, and whether a
//! defense's findings act or are only counted. They live below all three so that none needs another for them.

use serde::Deserialize;

/// `mode`: whether findings act or are only logged and counted.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enforce,
    /// Decide, log and count, but forward anyway: how an operator starts in front of a live login API.
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        }
    }
}

/// `kind` of a route.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
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
