//! `stuffgate check --dump`: the merged, compiled configuration, like `nginx -T` — the gateway's resolved settings,
//! then every route as the gateway serves it (in match order, across all policy files), each defense with its
//! effective mode, action and status (defaults applied) and its parameters as written.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::file::{DefenseFile, PolicyFile};
use crate::config::{FieldPath, GatewayConfig, PathMatch, Policy};
use crate::defense::Action;

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// The gateway file's settings as resolved (paths absolute or relative to where they were found, defaults filled).
pub fn gateway(config: &GatewayConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# gateway file {}", config.path.display());
    let mut listen: Vec<String> = config.listen.iter().map(|l| quoted(l)).collect();
    for tls in &config.tls_listen {
        let pair = |p: &crate::certs::CertFiles| {
            format!("cert = {}, key = {}", quoted(&p.cert.display().to_string()), quoted(&p.key.display().to_string()))
        };
        let sni: Vec<String> = tls.files.sni.iter().map(|p| format!("{{ {} }}", pair(p))).collect();
        listen.push(format!(
            "{{ address = {}, tls = {{ {}, sni = {} }} }}",
            quoted(&tls.address),
            pair(&tls.files.default),
            list(&sni)
        ));
    }
    let _ = writeln!(out, "listen = {}", list(&listen));
    let _ = writeln!(out, "admin = {}", quoted(&config.admin));
    let _ = writeln!(
        out,
        "upstream = {{ address = {}, tls = {}, sni = {}, connect_timeout_secs = {}, read_timeout_secs = {} }}",
        quoted(&config.upstream.address),
        config.upstream.tls,
        quoted(&config.upstream.sni),
        config.hardening.upstream_connect_timeout.as_secs(),
        config.hardening.upstream_read_timeout.as_secs()
    );
    let policies: Vec<String> = config.policy_files.iter().map(|p| quoted(&p.display().to_string())).collect();
    let _ = writeln!(out, "policies = {}", list(&policies));
    let proxies: Vec<String> = config.trusted_proxies.to_strings().iter().map(|p| quoted(p)).collect();
    let _ = writeln!(out, "trusted_proxies = {}", list(&proxies));
    let _ = writeln!(out, "threads = {}", config.threads);
    let runtime = match config.runtime {
        crate::config::file::RuntimeLayout::PerThread => "per_thread",
        crate::config::file::RuntimeLayout::Shared => "shared",
    };
    let _ = writeln!(out, "runtime = {}", quoted(runtime));
    let _ = writeln!(out, "max_tracked_keys = {}", config.max_tracked_keys);
    let _ = writeln!(out, "watch_interval_secs = {}", config.watch_interval.map(|d| d.as_secs()).unwrap_or(0));
    let _ = writeln!(
        out,
        "log = {{ format = {}, level = {} }}",
        quoted(&format!("{:?}", config.log_format).to_lowercase()),
        quoted(&config.log_level)
    );
    let _ = writeln!(
        out,
        "# privacy: hash secret {}",
        if config.hash_secret.is_some() { "set" } else { "unset (random per start)" }
    );
    let _ = writeln!(out, "forwarded_header = {}", quoted(config.hardening.forwarded_header.header_name()));
    if let Some(name) = &config.fingerprint_header {
        let _ = writeln!(out, "fingerprint_header = {}", quoted(name.as_str()));
    }
    if let Some(ca) = &config.upstream.ca {
        let _ = writeln!(out, "# upstream.ca = {}", quoted(&ca.display().to_string()));
    }
    if config.upstream.forward_fingerprint {
        let _ = writeln!(out, "# upstream.forward_fingerprint = true");
    }
    let _ = writeln!(out, "# connections.tls_hello_timeout_secs = {}", config.hardening.tls_hello_timeout.as_secs());
    let c = &config.hardening.connections;
    let _ = writeln!(
        out,
        "connections = {{ idle_timeout_secs = {}, header_timeout_secs = {}, max_header_bytes = {}, max_connections = {}, \
         max_connections_per_client = {}, proxy_protocol = {} }}",
        c.idle_timeout.as_secs(),
        c.header_timeout.as_secs(),
        c.max_header_bytes,
        c.max_connections,
        c.max_connections_per_client,
        c.proxy_protocol
    );
    if let Some((country, asn)) = &config.geoip {
        let asn = asn.as_ref().map(|a| format!(", asn_db = {}", quoted(&a.display().to_string()))).unwrap_or_default();
        let _ = writeln!(out, "geoip = {{ country_db = {}{asn} }}", quoted(&country.display().to_string()));
    }
    let filter = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| quoted(&p.display().to_string()));
    if config.password_filter.is_some() || config.pair_filter.is_some() {
        let mut parts = Vec::new();
        if let Some(p) = filter(&config.password_filter) {
            parts.push(format!("password_filter = {p}"));
        }
        if let Some(p) = filter(&config.pair_filter) {
            parts.push(format!("pair_filter = {p}"));
        }
        let _ = writeln!(out, "breach = {{ {} }}", parts.join(", "));
    }
    out
}

/// The defenses of one route as written in its file, to show their parameters.
fn written_defenses(source: &Path, route: &str) -> Vec<DefenseFile> {
    let Ok(text) = std::fs::read_to_string(source) else { return Vec::new() };
    let Ok(file) = toml::from_str::<PolicyFile>(&text) else { return Vec::new() };
    file.routes
        .into_iter()
        .map(|r| r.into_inner())
        .find(|r| r.name == route)
        .map(|r| r.defenses.into_iter().map(|d| d.into_inner()).collect())
        .unwrap_or_default()
}

fn field(path: &Option<FieldPath>) -> Option<String> {
    path.as_ref().map(|p| p.0.join("."))
}

/// Every route, in match order, as compiled.
pub fn policy(policy: &Policy) -> String {
    let mut out = String::new();
    let files: Vec<String> = policy.files.iter().map(|f| f.display().to_string()).collect();
    let _ = writeln!(out, "# policy files, merged in this order: {}", files.join(", "));
    let _ = writeln!(out, "# routes in match order (the first match wins); defaults applied\n");
    for route in &policy.routes {
        let _ = writeln!(out, "[[route]]  # from {}", route.source.display());
        let _ = writeln!(out, "name = {}", quoted(&route.name));
        let _ = writeln!(out, "kind = {}", quoted(route.kind.as_str()));
        let _ = writeln!(out, "method = {}", quoted(route.method.as_str()));
        match &route.path {
            PathMatch::Exact(path) => writeln!(out, "path = {}", quoted(path)),
            PathMatch::Prefix(prefix) => writeln!(out, "path_prefix = {}", quoted(prefix)),
        }
        .unwrap_or(());
        let mut body: Vec<String> =
            [("account", &route.account_field), ("password", &route.password_field), ("target", &route.target_field)]
                .into_iter()
                .filter_map(|(name, f)| field(f).map(|f| format!("{name} = {}", quoted(&f))))
                .collect();
        if route.case_insensitive_keys {
            body.push("case_insensitive_keys = true".to_string());
        }
        if !body.is_empty() {
            let _ = writeln!(out, "body = {{ {} }}", body.join(", "));
        }
        let _ = writeln!(
            out,
            "outcome = {{ success = {}, failure = {} }}",
            list(&route.success_status),
            list(&route.failure_status)
        );
        let _ = writeln!(out, "on_bad_body = {}", quoted(&format!("{:?}", route.on_bad_body).to_lowercase()));
        let _ = writeln!(out, "max_body_bytes = {}", route.max_body_bytes);
        let _ = writeln!(out, "ipv6_prefix = {}", route.ipv6_prefix);
        let written = written_defenses(&route.source, &route.name);
        for (index, slot) in route.slots.iter().enumerate() {
            let _ = writeln!(out, "\n[[route.defense]]  # {}", slot.defense.name());
            match written.get(index) {
                Some(defense) => {
                    let _ = writeln!(out, "type = {}", quoted(&defense.kind));
                }
                None => {
                    let _ = writeln!(out, "# {}", slot.fingerprint);
                }
            }
            let _ = writeln!(out, "mode = {}", quoted(slot.mode.as_str()));
            let _ = writeln!(out, "action = {}", quoted(slot.action.as_str()));
            if let Action::Block { status } = slot.action {
                let _ = writeln!(out, "status = {status}");
            }
            if let Some(stricter) = slot.under_attack {
                let _ = writeln!(out, "under_attack = {}", quoted(stricter.as_str()));
            }
            if let Some(defense) = written.get(index) {
                let params = toml::to_string(&defense.params).unwrap_or_default();
                out.push_str(&params);
            }
        }
        out.push('\n');
    }
    out
}
