//! The API a replay speaks: which path each kind of request goes to and what its body's fields are called. The
//! schedule is written in the demo API's terms (`/api/login`, `email`, `password`, `send_to`); a replay against a
//! policy for another API sends its paths and field names instead, taken from the policy's routes (or the
//! `--login-path`/`--account-field`/… flags), so the gateway sees what that API's clients would send.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::schedule::{Endpoint, Event};
use crate::config::{FieldPath, PathMatch, Policy, RouteKind};

/// The demo API's names, as the schedule writes them.
const DEMO_ACCOUNT: &str = "email";
const DEMO_PASSWORD: &str = "password";
const DEMO_TARGET: &str = "send_to";

/// Paths and body fields given on the command line; each overrides what the policy says.
#[derive(Clone, Debug, Default)]
pub struct ApiFlags {
    pub login_path: Option<String>,
    pub reset_path: Option<String>,
    pub signup_path: Option<String>,
    pub account_field: Option<String>,
    pub password_field: Option<String>,
}

/// What a replay needs of a route: its kind, path and body field names.
struct RouteSummary {
    kind: RouteKind,
    path: PathMatch,
    account: Option<String>,
    password: Option<String>,
    target: Option<String>,
}

fn flag_path(flags: &ApiFlags, endpoint: Endpoint) -> Option<&String> {
    match endpoint {
        Endpoint::Login => flags.login_path.as_ref(),
        Endpoint::Reset => flags.reset_path.as_ref(),
        Endpoint::Signup => flags.signup_path.as_ref(),
        Endpoint::Topup => None,
    }
}

/// Where one kind of request goes and how its fields are named (dotted paths nest: `user.email`).
#[derive(Clone, Debug, PartialEq)]
struct EndpointShape {
    path: String,
    account: String,
    password: String,
    target: String,
    /// A route of the policy protects this path (unknown without a policy).
    protected: Option<bool>,
}

/// The API a replay speaks: one [`EndpointShape`] per [`Endpoint`].
#[derive(Clone, Debug, PartialEq)]
pub struct ApiShape {
    endpoints: [EndpointShape; 4],
    /// Where the shape came from, for messages ("the policy policies/x.toml", "the demo API").
    pub source: String,
}

impl Default for ApiShape {
    fn default() -> Self {
        ApiShape::demo()
    }
}

fn route_kind(endpoint: Endpoint) -> Option<RouteKind> {
    match endpoint {
        Endpoint::Login => Some(RouteKind::Login),
        Endpoint::Reset => Some(RouteKind::Reset),
        Endpoint::Signup => Some(RouteKind::Signup),
        // The demo's cash-out after a takeover: no route kind, always the demo's path.
        Endpoint::Topup => None,
    }
}

impl ApiShape {
    /// The demo API (`stuffgate demo`, `stuffgate demo-api`).
    pub fn demo() -> ApiShape {
        ApiShape {
            endpoints: Endpoint::ALL.map(|endpoint| EndpointShape {
                path: endpoint.path().to_string(),
                account: DEMO_ACCOUNT.into(),
                password: DEMO_PASSWORD.into(),
                target: DEMO_TARGET.into(),
                protected: None,
            }),
            source: "the demo API".into(),
        }
    }

    /// The API a policy protects: for each kind of request, the flag's path or else the first route of that kind's
    /// (its path or prefix), and the flags' or that route's body fields. Kinds without a route keep the demo's
    /// names; whether a path is protected is what the policy's route matching says.
    pub fn from_policy(policy: &Policy, source: &str, flags: &ApiFlags) -> ApiShape {
        let routes: Vec<RouteSummary> = policy
            .routes
            .iter()
            .map(|r| RouteSummary {
                kind: r.kind,
                path: r.path.clone(),
                account: r.account_field.as_ref().map(FieldPath::form_name),
                password: r.password_field.as_ref().map(FieldPath::form_name),
                target: r.target_field.as_ref().map(FieldPath::form_name),
            })
            .collect();
        ApiShape::from_routes(&routes, source, flags, |path| policy.match_route(&http::Method::POST, path).is_some())
    }

    /// The API a running gateway protects, from its admin listener's `/policy` answer.
    pub fn from_admin_policy(policy: &Value, source: &str, flags: &ApiFlags) -> ApiShape {
        let routes: Vec<RouteSummary> = policy["routes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let kind = match r["kind"].as_str()? {
                    "login" => RouteKind::Login,
                    "reset" => RouteKind::Reset,
                    "signup" => RouteKind::Signup,
                    _ => RouteKind::Generic,
                };
                let path = r["path"].as_str()?;
                let field = |name: &str| r["body"][name].as_str().map(str::to_string);
                Some(RouteSummary {
                    kind,
                    path: if r["path_prefix"].as_bool() == Some(true) {
                        PathMatch::prefix(path)
                    } else {
                        PathMatch::exact(path)
                    },
                    account: field("account"),
                    password: field("password"),
                    target: field("target"),
                })
            })
            .collect();
        let protected = |path: &str| routes.iter().any(|r| r.path.matches(path));
        ApiShape::from_routes(&routes, source, flags, protected)
    }

    fn from_routes(
        routes: &[RouteSummary],
        source: &str,
        flags: &ApiFlags,
        protected: impl Fn(&str) -> bool,
    ) -> ApiShape {
        let mut shape = ApiShape::demo().with_flags(flags);
        shape.source = source.to_string();
        for endpoint in Endpoint::ALL {
            let slot = &mut shape.endpoints[endpoint as usize];
            let route = route_kind(endpoint).and_then(|kind| routes.iter().find(|r| r.kind == kind));
            if let Some(route) = route {
                if flag_path(flags, endpoint).is_none() {
                    slot.path = match &route.path {
                        PathMatch::Exact(path) | PathMatch::Prefix(path) => path.clone(),
                    };
                }
                let pick = |flag: &Option<String>, written: &Option<String>, demo: &str| {
                    flag.clone().or_else(|| written.clone()).unwrap_or_else(|| demo.to_string())
                };
                slot.account = pick(&flags.account_field, &route.account, DEMO_ACCOUNT);
                slot.password = pick(&flags.password_field, &route.password, DEMO_PASSWORD);
                slot.target = route.target.clone().unwrap_or_else(|| DEMO_TARGET.to_string());
            }
            slot.protected = Some(protected(&slot.path));
        }
        shape
    }

    /// The demo's shape with the command line's paths and fields.
    pub fn with_flags(mut self, flags: &ApiFlags) -> ApiShape {
        for endpoint in Endpoint::ALL {
            if let Some(path) = flag_path(flags, endpoint) {
                self.endpoints[endpoint as usize].path = path.clone();
            }
        }
        for slot in &mut self.endpoints[..3] {
            if let Some(field) = &flags.account_field {
                slot.account = field.clone();
            }
            if let Some(field) = &flags.password_field {
                slot.password = field.clone();
            }
        }
        self
    }

    /// Whether a policy said which paths it protects (see [`ApiShape::refuse_unmatched`]).
    pub fn knows_protection(&self) -> bool {
        self.endpoints.iter().any(|e| e.protected.is_some())
    }

    pub fn path(&self, endpoint: Endpoint) -> &str {
        &self.endpoints[endpoint as usize].path
    }

    /// Refuse a replay none of whose requests would reach a protected route: it would measure nothing (every
    /// request forwarded, "0 blocked") and look like a result.
    pub fn refuse_unmatched(&self, events: &[Event], scenario: &str) -> anyhow::Result<()> {
        if !self.knows_protection() {
            return Ok(());
        }
        let mut sent: Vec<Endpoint> = Vec::new();
        for event in events {
            if !sent.contains(&event.endpoint) {
                sent.push(event.endpoint);
            }
        }
        if sent.iter().any(|e| self.endpoints[*e as usize].protected == Some(true)) {
            return Ok(());
        }
        let described: Vec<String> =
            sent.iter().map(|e| format!("{} requests to {}", endpoint_name(*e), self.path(*e))).collect();
        anyhow::bail!(
            "no request of scenario `{scenario}` matches a protected route of {}: it sends {}. Give the policy a \
             route of that kind (kind = \"login\", …), or name your API's paths and fields with --login-path, \
             --reset-path, --signup-path, --account-field and --password-field",
            self.source,
            described.join(", ")
        )
    }

    /// The event's body in this API's field names (the schedule writes the demo's). Borrowed when nothing changes.
    pub fn body<'a>(&self, event: &'a Event) -> Cow<'a, str> {
        let shape = &self.endpoints[event.endpoint as usize];
        if shape.account == DEMO_ACCOUNT && shape.password == DEMO_PASSWORD && shape.target == DEMO_TARGET {
            return Cow::Borrowed(&event.body);
        }
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&event.body) else {
            return Cow::Borrowed(&event.body);
        };
        let mut out = Map::new();
        for (name, value) in fields {
            let renamed = match name.as_str() {
                DEMO_ACCOUNT => shape.account.as_str(),
                DEMO_PASSWORD => shape.password.as_str(),
                DEMO_TARGET => shape.target.as_str(),
                other => other,
            };
            insert_at(&mut out, renamed, value);
        }
        Cow::Owned(Value::Object(out).to_string())
    }
}

fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Login => "login",
        Endpoint::Reset => "reset",
        Endpoint::Signup => "sign-up",
        Endpoint::Topup => "top-up",
    }
}

/// Put `value` at a dotted path, making the objects on the way.
fn insert_at(object: &mut Map<String, Value>, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        None => {
            object.insert(dotted.to_string(), value);
        }
        Some((head, rest)) => {
            let inner = object.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !inner.is_object() {
                *inner = Value::Object(Map::new());
            }
            if let Value::Object(inner) = inner {
                insert_at(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::schedule::{Plan, NO_VISIT};

    fn event(endpoint: Endpoint, body: &str) -> Event {
        Event {
            at: 0,
            actor: 0,
            visit: NO_VISIT,
            ip: "192.0.2.1".parse().unwrap(),
            endpoint,
            body: body.into(),
            account: 0,
            valid: false,
            amount: 0,
            bearer: None,
            plan: Plan::None,
        }
    }

    #[test]
    fn bodies_take_the_apis_field_names_nested_where_dotted_and_the_demos_stay_untouched() {
        let login = event(Endpoint::Login, r#"{"email":"a@example.com","password":"pw","remember":true}"#);
        assert!(matches!(ApiShape::demo().body(&login), Cow::Borrowed(_)));
        let flags = ApiFlags {
            login_path: Some("/v2/session".into()),
            account_field: Some("user.login".into()),
            password_field: Some("secret".into()),
            ..ApiFlags::default()
        };
        let shape = ApiShape::demo().with_flags(&flags);
        assert_eq!(shape.path(Endpoint::Login), "/v2/session");
        assert_eq!(shape.path(Endpoint::Topup), "/api/topup");
        let body: Value = serde_json::from_str(&shape.body(&login)).unwrap();
        assert_eq!(body, serde_json::json!({"user": {"login": "a@example.com"}, "secret": "pw", "remember": true}));
        assert!(!shape.knows_protection(), "flags alone say nothing of what the gateway protects");
    }
}
