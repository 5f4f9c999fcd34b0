//! stuffgate: a credential-stuffing defense gateway on pingora.
//!
//! The request's way through the gateway (see `proxy`):
//!
//! ```text
//! client ─▶ listener ─▶ Gateway (ProxyHttp) ─────────────────────────────▶ upstream login API
//!             early_request_filter    client IP (trusted proxies only), route match
//!             request_filter          body-free defenses; bounded body read → Credentials;
//!                                     the remaining defenses; non-Allow verdict → answer here
//!             upstream_request_filter strip spoofed X-Stuffgate-*; add client IP and tags
//!             upstream_response_filter the upstream's status → success/failure → observe()
//!             logging                 one decision event + Prometheus counters
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod account;
pub(crate) mod admin;
pub mod admin_client;
pub(crate) mod answer;
pub mod attack;
pub mod attempt;
pub mod body;
pub mod breach;
pub mod certs;
pub mod challenge;
pub mod clock;
pub mod config;
pub mod decisions;
pub mod defense;
pub mod demo_api;
pub mod dump;
pub mod engine;
pub mod fingerprint;
pub mod fuzzing;
pub mod gateway_reload;
pub mod geoip;
pub mod ip_ranges;
pub mod ja4;
pub mod keys;
pub mod proxy;
pub mod reload;
pub mod replay;
pub mod server;
pub mod services;
pub mod shipped;
pub(crate) mod spelling;
pub mod store;
pub mod telemetry;
pub mod vocabulary;
