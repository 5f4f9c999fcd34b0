//! The admin listener: `/metrics` (Prometheus), `/healthz`, and `/policy` (what is loaded, for operators); readiness,
//! the decisions API are in `admin/ops.rs`, the dashboard in `admin/dashboard.rs`.

pub(crate) mod dashboard;
pub mod ops;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, TextEncoder};

use crate::reload::PolicyHandle;

pub struct AdminApp {
    pub policy: Arc<PolicyHandle>,
    /// Readiness, decisions, dashboard and the admin token (`admin/ops.rs`).
    pub ops: Arc<ops::Operator>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        crate::proxy::connections::admin_request_started(session);
        let response = self.route(session).await;
        crate::proxy::connections::admin_request_finished(session);
        response
    }
}

impl AdminApp {
    async fn route(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        if header.method == http::Method::GET {
            match header.uri.path() {
                "/dashboard" | "/dashboard/" => {
                    return respond(200, "text/html; charset=utf-8", dashboard::PAGE.as_bytes().to_vec())
                }
                "/dashboard/data" => {
                    return respond(200, "application/json", format!("{}\n", dashboard::data(self)).into_bytes())
                }
                _ => {}
            }
        }
        if let Some(response) = self.operator(session).await {
            return response;
        }
        match session.req_header().uri.path() {
            "/metrics" => {
                // The gauges are published by the maintenance timer: a scrape never walks the stores.
                let mut out = Vec::new();
                match TextEncoder::new().encode(&prometheus::gather(), &mut out) {
                    Ok(()) => respond(200, "text/plain; version=0.0.4", out),
                    Err(e) => respond(500, "text/plain", e.to_string().into_bytes()),
                }
            }
            "/healthz" => {
                let policy = self.policy.current();
                let body = serde_json::json!({ "status": "ok", "routes": policy.routes.len() });
                respond(200, "application/json", body.to_string().into_bytes())
            }
            "/policy" => {
                let policy = self.policy.current();
                let routes: Vec<_> = policy
                    .routes
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "kind": r.kind.as_str(),
                            "method": r.method.as_str(),
                            "path": match &r.path {
                                crate::config::PathMatch::Exact(p) | crate::config::PathMatch::Prefix(p) => p.as_str(),
                            },
                            "path_prefix": matches!(r.path, crate::config::PathMatch::Prefix(_)),
                            "body": {
                                "account": r.account_field.as_ref().map(crate::config::FieldPath::form_name),
                                "password": r.password_field.as_ref().map(crate::config::FieldPath::form_name),
                                "target": r.target_field.as_ref().map(crate::config::FieldPath::form_name),
                            },
                            "source": r.source.display().to_string(),
                            "defenses": r.slots.iter().map(|s| serde_json::json!({
                                "type": s.defense.name(),
                                "mode": s.mode.as_str(),
                                "action": match s.action {
                                    crate::defense::Action::Block { status } => format!("block {status}"),
                                    other => other.as_str().to_string(),
                                },
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let tracked: serde_json::Map<String, serde_json::Value> = self
                    .policy
                    .env()
                    .store
                    .tracked_keys()
                    .iter()
                    .map(|(kind, n)| (kind.as_str().to_string(), serde_json::json!(n)))
                    .collect();
                let body = serde_json::json!({ "files": policy.files, "routes": routes, "tracked_keys": tracked });
                respond(200, "application/json", body.to_string().into_bytes())
            }
            _ => respond(
                404,
                "text/plain",
                b"not found: try /metrics, /healthz, /readyz, /policy, /decisions or /dashboard\n".to_vec(),
            ),
        }
    }
}
