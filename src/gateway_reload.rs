//! Re-reading the gateway file on SIGHUP (or when it is saved, with `watch_interval_secs`): what can change live is
//! applied — the policy list, trusted proxies, the log level (data files are re-read on every reload anyway) — and
//! every other changed setting is refused loudly, named with its running and new value, until a restart.

use std::path::PathBuf;
use std::sync::Arc;

use crate::admin::ops::Health;
use crate::config::GatewayConfig;
use crate::ip_ranges::IpRanges;
use crate::proxy::GatewayState;
use crate::reload::PolicyHandle;
use crate::telemetry::metrics;

/// What a changed gateway file asks for.
#[derive(Debug, Default)]
pub struct Plan {
    pub policies: Option<Vec<PathBuf>>,
    pub trusted_proxies: Option<IpRanges>,
    pub log_level: Option<String>,
    /// TLS listeners whose certificate files changed (same addresses): loaded and swapped in live.
    pub certificates: Option<Vec<crate::config::TlsListener>>,
    /// `(key, running, on disk)` of each changed setting only a restart applies.
    pub restart: Vec<(&'static str, String, String)>,
}

impl Plan {
    /// The settings this plan applies live, by their key in the file.
    pub fn live_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.policies.is_some() {
            keys.push("policies");
        }
        if self.trusted_proxies.is_some() {
            keys.push("trusted_proxies");
        }
        if self.log_level.is_some() {
            keys.push("log.level");
        }
        if self.certificates.is_some() {
            keys.push("listen.tls");
        }
        keys
    }

    pub fn restart_keys(&self) -> Vec<String> {
        self.restart.iter().map(|(key, _, _)| key.to_string()).collect()
    }
}

fn shown<T: std::fmt::Debug>(value: &T) -> String {
    format!("{value:?}")
}

/// Compare the running configuration with the file's.
pub fn plan(running: &GatewayConfig, new: &GatewayConfig) -> Plan {
    let mut plan = Plan::default();
    if running.policy_files != new.policy_files {
        plan.policies = Some(new.policy_files.clone());
    }
    if shown(&running.trusted_proxies) != shown(&new.trusted_proxies) {
        plan.trusted_proxies = Some(new.trusted_proxies.clone());
    }
    if running.log_level != new.log_level {
        plan.log_level = Some(new.log_level.clone());
    }
    let mut restart = |key: &'static str, a: String, b: String| {
        if a != b {
            plan.restart.push((key, a, b));
        }
    };
    restart("listen", shown(&running.listen), shown(&new.listen));
    let addresses = |c: &GatewayConfig| c.tls_listen.iter().map(|l| l.address.clone()).collect::<Vec<_>>();
    restart("listen (TLS addresses)", shown(&addresses(running)), shown(&addresses(new)));
    if addresses(running) == addresses(new) && running.tls_listen != new.tls_listen {
        plan.certificates = Some(new.tls_listen.clone());
    }
    let mut restart = |key: &'static str, a: String, b: String| {
        if a != b {
            plan.restart.push((key, a, b));
        }
    };
    restart("fingerprint_header", shown(&running.fingerprint_header), shown(&new.fingerprint_header));
    restart("upstream.ca", shown(&running.upstream.ca), shown(&new.upstream.ca));
    restart(
        "upstream.forward_fingerprint",
        running.upstream.forward_fingerprint.to_string(),
        new.upstream.forward_fingerprint.to_string(),
    );
    restart("admin", running.admin.clone(), new.admin.clone());
    restart("upstream.address", running.upstream.address.clone(), new.upstream.address.clone());
    restart("upstream.tls", running.upstream.tls.to_string(), new.upstream.tls.to_string());
    restart("upstream.sni", running.upstream.sni.clone(), new.upstream.sni.clone());
    restart("threads", running.threads.to_string(), new.threads.to_string());
    restart("runtime", shown(&running.runtime), shown(&new.runtime));
    restart("max_tracked_keys", running.max_tracked_keys.to_string(), new.max_tracked_keys.to_string());
    restart("watch_interval_secs", shown(&running.watch_interval), shown(&new.watch_interval));
    restart("log.format", shown(&running.log_format), shown(&new.log_format));
    // The secret itself is never shown.
    let secret = |s: &Option<Vec<u8>>| if s.is_some() { "set" } else { "unset" }.to_string();
    if running.hash_secret != new.hash_secret {
        let (a, b) = (secret(&running.hash_secret), secret(&new.hash_secret));
        plan.restart.push(("privacy.hash_key_env", a, if b == "set" { "changed".into() } else { b }));
    }
    let mut restart = |key: &'static str, a: String, b: String| {
        if a != b {
            plan.restart.push((key, a, b));
        }
    };
    restart("geoip", shown(&running.geoip), shown(&new.geoip));
    restart("breach.password_filter", shown(&running.password_filter), shown(&new.password_filter));
    restart("breach.pair_filter", shown(&running.pair_filter), shown(&new.pair_filter));
    restart("forwarded_header / connections / upstream timeouts", shown(&running.hardening), shown(&new.hardening));
    // The challenge keys and the shared store are built into the running engine and store: a change (a retired
    // signing key above all) waits for a restart, and says so. Neither key material nor a store URL (which may hold
    // a password) is shown.
    let challenge_changed = match (&running.challenge, &new.challenge) {
        (None, None) => false,
        (Some(a), Some(b)) => !a.keys.same_keys(&b.keys) || shown(a) != shown(b),
        _ => true,
    };
    if challenge_changed {
        let running_keys = if running.challenge.is_some() { "configured" } else { "unset (random keys)" };
        plan.restart.push(("challenge", running_keys.into(), "changed".into()));
    }
    if running.shared_state != new.shared_state {
        let running_store = if running.shared_state.is_some() { "set" } else { "unset" };
        plan.restart.push(("shared_state", running_store.into(), "changed".into()));
    }
    plan
}

/// The gateway file as running, for reloads.
pub struct GatewayFile {
    path: std::path::PathBuf,
    running: parking_lot::Mutex<GatewayConfig>,
    stamp: parking_lot::Mutex<Option<(std::time::SystemTime, u64)>>,
    state: Arc<GatewayState>,
}

fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl GatewayFile {
    /// `None` for a gateway without a file (`stuffgate demo`).
    pub fn new(config: &GatewayConfig, state: Arc<GatewayState>) -> Option<GatewayFile> {
        let stamp = file_stamp(&config.path)?;
        Some(GatewayFile {
            path: config.path.clone(),
            running: parking_lot::Mutex::new(config.clone()),
            stamp: parking_lot::Mutex::new(Some(stamp)),
            state,
        })
    }

    pub fn changed(&self) -> bool {
        *self.stamp.lock() != file_stamp(&self.path)
    }

    /// Settings changed on disk that wait for a restart.
    pub fn pending(&self) -> Vec<String> {
        match crate::config::load_gateway(&self.path) {
            Ok(new) => crate::gateway_reload::plan(&self.running.lock(), &new).restart_keys(),
            Err(_) => Vec::new(),
        }
    }

    /// Returns whether the policy list was replaced (and so compiled already).
    pub fn reload(&self, policy: &PolicyHandle, health: &Health) -> bool {
        *self.stamp.lock() = file_stamp(&self.path);
        let new = match crate::config::load_gateway(&self.path) {
            Ok(new) => new,
            Err(error) => {
                metrics::RELOADS.with_label_values(&["error"]).inc();
                tracing::error!(%error, "gateway file reload refused; the running settings stay");
                let refusal = format!("gateway file refused: {error}");
                health.record_gateway_file(Some(refusal.clone()));
                health.record_reload(false, refusal, Vec::new());
                return false;
            }
        };
        let mut running = self.running.lock();
        let plan = crate::gateway_reload::plan(&running, &new);
        for (key, was, now) in &plan.restart {
            tracing::error!(
                file = %self.path.display(),
                key,
                running = %was,
                on_disk = %now,
                "gateway file: `{key}` changed, but it takes effect only after a restart; the running value stays"
            );
        }
        if !plan.restart.is_empty() {
            metrics::RELOADS.with_label_values(&["restart_required"]).inc();
        }
        let mut problems = Vec::new();
        let mut replaced = false;
        if let Some(files) = &plan.policies {
            replaced = true;
            match policy.replace_files(files.clone()) {
                Ok(()) => {
                    tracing::info!(policies = ?files, "gateway file: now serving these policy files");
                    running.policy_files = files.clone();
                }
                Err(error) => problems.push(format!("policies refused: {error}")),
            }
        }
        if let Some(trusted) = &plan.trusted_proxies {
            self.state.trusted_proxies.store(Arc::new(trusted.clone()));
            running.trusted_proxies = trusted.clone();
            tracing::info!(
                "gateway file: trusted_proxies applied (client addresses, PROXY headers, per-client connection cap)"
            );
        }
        if let Some(listeners) = &plan.certificates {
            for listener in listeners {
                let Some(resolver) = self.state.certificates.iter().find(|r| r.address() == listener.address) else {
                    continue;
                };
                match resolver.replace(&listener.files) {
                    crate::certs::Reloaded::Refused(error) => {
                        problems.push(format!("TLS certificates of {} refused: {error}", listener.address))
                    }
                    _ => tracing::info!(listener = %listener.address, "gateway file: TLS certificate files applied"),
                }
            }
            running.tls_listen = listeners.clone();
            crate::proxy::tls::publish_expiry(&self.state.certificates);
        }
        if let Some(level) = &plan.log_level {
            match crate::telemetry::set_level(level) {
                Ok(()) => {
                    running.log_level = level.clone();
                    tracing::info!(level = %level, "gateway file: log level applied");
                }
                Err(error) => problems.push(format!("log.level refused: {error}")),
            }
        }
        let pending = plan.restart_keys();
        let applied = plan.live_keys();
        health.record_gateway_file((!problems.is_empty()).then(|| problems.join("; ")));
        if problems.is_empty() {
            let message = if applied.is_empty() && pending.is_empty() {
                "gateway file unchanged; policy reloaded".to_string()
            } else {
                format!("gateway file applied live: {:?}; waiting for a restart: {:?}", applied, pending)
            };
            if !applied.is_empty() {
                tracing::info!(applied = ?applied, restart_required = ?pending, "gateway file reloaded");
            }
            health.record_reload(pending.is_empty(), message, pending);
        } else {
            for problem in &problems {
                tracing::error!(problem = %problem, "gateway file reload: a setting was refused; its running value stays");
            }
            health.record_reload(false, problems.join("; "), pending);
        }
        replaced
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::gateway_from_str;

    const BASE: &str = "listen = [\"127.0.0.1:8080\"]\nupstream = { address = \"127.0.0.1:8081\" }\n";

    fn config(extra: &str) -> GatewayConfig {
        gateway_from_str(Path::new("/etc/stuffgate/gw.toml"), &format!("{BASE}{extra}")).unwrap()
    }

    #[test]
    fn live_settings_are_applied_and_the_rest_waits_for_a_restart() {
        let running = config("policies = [\"a.toml\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nthreads = 2\n");
        let same =
            plan(&running, &config("policies = [\"a.toml\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nthreads = 2\n"));
        assert!(same.live_keys().is_empty() && same.restart.is_empty(), "{same:?}");
        let changed = plan(
            &running,
            &config(
                "policies = [\"b.toml\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\nthreads = 4\n\
                 log = { level = \"debug\" }\nadmin = \"127.0.0.1:9999\"\n",
            ),
        );
        assert_eq!(changed.live_keys(), ["policies", "trusted_proxies", "log.level"]);
        assert_eq!(changed.policies, Some(vec![PathBuf::from("/etc/stuffgate/b.toml")]));
        assert_eq!(changed.restart_keys(), ["admin", "threads"]);
        assert_eq!(changed.restart[1], ("threads", "2".to_string(), "4".to_string()));
    }
}
