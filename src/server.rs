//! Assemble the pingora server: the proxy service, the admin listener, and the maintenance task (pruning, gauges,
//! hot reload on SIGHUP and on file change).

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TcpSocketOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;

use crate::admin::ops::{Health, Operator};
use crate::admin::AdminApp;
use crate::clock::Clock;
use crate::config::file::RuntimeLayout;
use crate::config::{ConfigError, GatewayConfig, Services};
use crate::gateway_reload::GatewayFile;
use crate::proxy::connections::{self, GuardedApp, RefuseBlocked, Tracker};
use crate::proxy::tls::{HelloReader, TlsConnections};
use crate::proxy::{Gateway, GatewayState};
use crate::reload::PolicyHandle;

mod preflight;

use preflight::admin_token;
pub use preflight::preflight;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("shared state store `{url}`: {why}")]
    SharedState { url: String, why: String },
    #[error("TLS listener {address}: {error}")]
    Certificates { address: String, error: crate::certs::CertError },
    #[error("upstream.ca: {0}")]
    UpstreamCa(String),
}

/// Whether [`build_state`] builds for serving or only to validate (`stuffgate check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Serve,
    /// Everything is opened, compiled and resolved as for serving, but no connection to a shared store is started.
    Check,
}

/// Build the shared state: the data files opened, the policy compiled, the upstream
/// resolved. `run` and `check` both come through here, so `check` refuses whatever `run` would; `run` calls it
/// before anything listens, so a configuration error is never hidden behind a busy port.
pub fn build_state(config: &GatewayConfig, clock: Clock, purpose: Purpose) -> Result<Arc<GatewayState>, StartError> {
    let geo = match &config.geoip {
        Some((country, asn)) => Some(Arc::new(
            crate::geoip::SharedGeoDb::open(country, asn.as_deref())
                .map_err(|e| config.error("geoip.country_db", e.to_string()))?,
        )),
        None => None,
    };
    let mut env = Services::new(clock, config.max_tracked_keys).with_geo(geo);
    if let Some(secret) = &config.hash_secret {
        env = env.with_secret(secret);
    }
    if let (Some(settings), Purpose::Serve) = (&config.shared_state, purpose) {
        // Local state stays, and decisions take the stricter of it and Redis (store/shared.rs).
        let local = crate::store::LocalStore::new(config.max_tracked_keys);
        let shared = crate::store::SharedStore::start(local, settings.clone())
            .map_err(|why| StartError::SharedState { url: crate::store::shared::redacted(&settings.url), why })?;
        env.store = Arc::new(shared);
    }
    env.open_breach_filters(config.password_filter.as_deref(), config.pair_filter.as_deref()).map_err(|e| {
        let message = e.to_string();
        let pair = config.pair_filter.as_ref().is_some_and(|p| message.contains(&p.display().to_string()));
        config.error(if pair { "breach.pair_filter" } else { "breach.password_filter" }, message)
    })?;
    if let Some(challenge) = &config.challenge {
        env.challenge = Arc::new(challenge.clone());
    }
    let policy = Arc::new(PolicyHandle::load(config.policy_files.clone(), env).map_err(|error| {
        // A policy file that cannot be read is the gateway file's `policies` entry to fix.
        let unreadable = error.line.is_none() && error.key.is_none() && config.policy_files.contains(&error.file);
        if unreadable {
            config.error("policies", format!("{}: {}", error.file.display(), error.message))
        } else {
            error
        }
    })?);
    let upstream_address = config
        .upstream
        .address
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut found| found.next().ok_or_else(|| "no address".to_string()))
        .map_err(|why| {
            config.error(
                "upstream.address",
                format!("`{}` does not resolve to an address: {why}", config.upstream.address),
            )
        })?;
    let mut upstream = HttpPeer::new(upstream_address, config.upstream.tls, upstream_sni(&config.upstream));
    upstream.options.connection_timeout = Some(config.hardening.upstream_connect_timeout);
    upstream.options.read_timeout = Some(config.hardening.upstream_read_timeout);
    if let Some(ca) = &config.upstream.ca {
        upstream.options.ca = Some(crate::proxy::tls::upstream_ca(ca).map_err(StartError::UpstreamCa)?);
    }
    let mut certificates = Vec::new();
    for listener in &config.tls_listen {
        let set = crate::certs::CertSet::load(&listener.files)
            .map_err(|error| StartError::Certificates { address: listener.address.clone(), error })?;
        certificates.push(crate::certs::Resolver::new(&listener.address, listener.files.clone(), set));
    }
    crate::proxy::tls::publish_expiry(&certificates);
    Ok(Arc::new(GatewayState {
        policy,
        trusted_proxies: Arc::new(arc_swap::ArcSwap::from_pointee(config.trusted_proxies.clone())),
        forwarded_header: config.hardening.forwarded_header,
        upstream,
        refuse_blocked_at_accept: config.hardening.connections.refuse_blocked_at_accept,
        body_timeout: config.hardening.connections.body_timeout,
        fingerprints: Default::default(),
        fingerprint_header: config.fingerprint_header.clone(),
        forward_fingerprint: config.upstream.forward_fingerprint,
        certificates,
    }))
}

/// The name the upstream's certificate is checked against: `upstream.sni`, else the host of its address.
fn upstream_sni(upstream: &crate::config::Upstream) -> String {
    if !upstream.sni.is_empty() || !upstream.tls {
        return upstream.sni.clone();
    }
    let host = upstream.address.rsplit_once(':').map(|(host, _)| host).unwrap_or(&upstream.address);
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// Start serving; never returns.
pub fn run(config: GatewayConfig, state: Arc<GatewayState>) -> ! {
    let per_thread = config.runtime == RuntimeLayout::PerThread;
    // Per-thread services each run a single-threaded runtime: nothing to steal, so no stealing runtime either.
    let mut conf = ServerConf { threads: config.threads, work_stealing: !per_thread, ..ServerConf::default() };
    conf.pid_file = std::env::temp_dir().join(format!("stuffgate-{}.pid", std::process::id())).display().to_string();
    conf.upgrade_sock =
        std::env::temp_dir().join(format!("stuffgate-{}.sock", std::process::id())).display().to_string();
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Connection caps and header/idle deadlines sit between the listener and pingora's HTTP handling.
    let limits = &config.hardening.connections;
    // Addresses the policy blocks by address alone are refused when they connect, before any HTTP parsing.
    let refuse = limits
        .refuse_blocked_at_accept
        .then(|| RefuseBlocked::new(state.policy.clone(), state.trusted_proxies.clone()));
    let tracker = Tracker::with_refusal(limits.clone(), state.trusted_proxies.clone(), refuse.clone());
    // Per thread: N services of one thread, each with its own listening sockets (SO_REUSEPORT: the kernel spreads
    // connections) and its own upstream connection pool. They share the policy, the state store, the connection
    // tracker and the metrics, so limits hold across them. Measured in benches/RESULTS.md ("threads").
    let services = if per_thread { config.threads } else { 1 };
    // TLS listeners: the ClientHello is read first (deadline, caps, JA4; see proxy/tls.rs), then rustls answers
    // with the certificate the SNI picks from a set that reloads live.
    let hello = Arc::new(HelloReader {
        table: state.fingerprints.clone(),
        tracker: tracker.clone(),
        timeout: config.hardening.tls_hello_timeout,
    });
    for index in 0..services {
        let app = pingora::proxy::http_proxy(&server.configuration, Gateway { state: state.clone() });
        let app = TlsConnections::new(GuardedApp::new(app, tracker.clone()), state.fingerprints.clone());
        let mut proxy = Service::new(format!("stuffgate-{index}"), app);
        proxy.endpoints().set_pre_tls_callback(hello.clone());
        for address in &config.listen {
            if per_thread {
                let mut options = TcpSocketOptions::default();
                options.so_reuseport = Some(true);
                proxy.add_tcp_with_settings(&respelled(address, index), options);
            } else {
                proxy.add_tcp(address);
            }
        }
        if let Some(refuse) = &refuse {
            proxy.set_connection_filter(refuse.clone());
        }
        for resolver in &state.certificates {
            let mut settings = match TlsSettings::intermediate("", "") {
                Ok(settings) => settings,
                Err(error) => panic!("TLS settings for {}: {error}", resolver.address()),
            };
            settings.set_cert_resolver(resolver.clone());
            settings.enable_h2();
            let options = per_thread.then(|| {
                let mut options = TcpSocketOptions::default();
                options.so_reuseport = Some(true);
                options
            });
            proxy.add_tls_with_settings(&respelled(resolver.address(), index), options, settings);
        }
        if per_thread {
            proxy.threads = Some(1);
        }
        server.add_service(proxy);
    }

    let health = Arc::new(Health::default());
    let ops = Operator {
        token: admin_token(),
        upstream: config.upstream.address.to_socket_addrs().ok().and_then(|mut a| a.next()),
        health: health.clone(),
        certificates: state.certificates.clone(),
    };
    // Capped and timed out like the proxy's, with its own small limits (admin_limits).
    let admin_app = AdminApp { policy: state.policy.clone(), ops: Arc::new(ops) };
    let admin_tracker = Tracker::admin(connections::admin_limits());
    let mut admin = Service::new("stuffgate admin".to_string(), GuardedApp::new(admin_app, admin_tracker));
    admin.add_tcp(&config.admin);
    admin.threads = Some(1);
    server.add_service(admin);

    let mut maintenance = background_service(
        "maintenance",
        Maintenance {
            policy: state.policy.clone(),
            watch_interval: config.watch_interval,
            gateway: GatewayFile::new(&config, state.clone()),
            health,
            data_errors: Default::default(),
            certificates: state.certificates.clone(),
        },
    );
    maintenance.threads = Some(1);
    server.add_service(maintenance);

    tracing::info!(
        listen = ?config.listen,
        listen_tls = ?config.tls_listen.iter().map(|l| l.address.as_str()).collect::<Vec<_>>(),
        admin = %config.admin,
        upstream = %config.upstream.address,
        routes = state.policy.current().routes.len(),
        "stuffgate started"
    );
    server.run_forever()
}

/// The same listen address, written differently per service. pingora keeps listening sockets in a table keyed by
/// their address text (to hand them to a new process on a graceful upgrade) and reuses a socket whose text it has
/// seen: one text per service gives each service a socket of its own, which SO_REUSEPORT lets share the port.
/// Leading zeros in the port change the text, not the address.
fn respelled(address: &str, index: usize) -> String {
    match address.rsplit_once(':') {
        Some((host, port)) if index > 0 => format!("{host}:{}{port}", "0".repeat(index)),
        _ => address.to_string(),
    }
}

impl Maintenance {
    /// Swap in replaced data files (GeoIP, breach filters); a missing or corrupt file is refused and the previous one
    /// serves. A refusal is logged once, and again only when it changes or the file comes back: not every poll.
    fn reload_data(&self, sighup: bool) {
        let env = self.policy.env();
        for filter in env.breached_passwords.iter().chain(env.leaked_pairs.iter()) {
            let name = filter.path().display().to_string();
            let result = filter.reload_if_changed();
            match result {
                Err(error) => self.data_refused(&name, error.to_string(), "breach filter"),
                // Still missing: refused (and logged) when it went; nothing new to say.
                Ok(_) if !filter.path().is_file() => {}
                Ok(true) => {
                    self.data_recovered(&name);
                    tracing::info!(path = %name, "breach filter reloaded")
                }
                Ok(false) => {
                    self.data_recovered(&name);
                    if sighup {
                        tracing::info!(path = %name, "breach filter unchanged");
                    }
                }
            }
        }
        if let Some(geo) = &env.geo {
            let name = "geoip".to_string();
            match geo.reload_if_changed() {
                // GeoDb::open logs the new database's description: one line per change.
                Ok(true) => self.data_recovered(&name),
                Ok(false) => {
                    self.data_recovered(&name);
                    if sighup {
                        tracing::info!(db = %geo.load().describe(), "GeoIP database unchanged");
                    }
                }
                Err(error) => self.data_refused(&name, error.to_string(), "GeoIP database"),
            }
        }
    }

    fn data_refused(&self, name: &str, error: String, what: &str) {
        let mut seen = self.data_errors.lock();
        if seen.get(name) != Some(&error) {
            tracing::error!(%error, "{what} reload refused; the previous one keeps serving (logged again when this changes)");
            seen.insert(name.to_string(), error);
        }
    }

    fn data_recovered(&self, name: &str) {
        if self.data_errors.lock().remove(name).is_some() {
            tracing::info!(file = name, "data file readable again");
        }
    }

    /// SIGHUP or a saved gateway file: re-read it, apply what can be applied live, refuse the rest loudly. Reloads
    /// the policy files either way.
    fn reload_all(&self, sighup: bool) {
        let policies_replaced = match &self.gateway {
            Some(gateway) => gateway.reload(&self.policy, &self.health),
            None => false,
        };
        if !policies_replaced {
            let result = self.policy.reload();
            let pending = self.gateway.as_ref().map(|g| g.pending()).unwrap_or_default();
            match result {
                Ok(()) => self.health.record_reload(true, "policy reloaded".into(), pending),
                Err(error) => self.health.record_reload(false, format!("policy refused: {error}"), pending),
            }
        }
        self.reload_data(sighup);
        crate::proxy::tls::reload_certificates(&self.certificates, sighup);
    }
}

impl Maintenance {
    fn pending(&self) -> Vec<String> {
        self.gateway.as_ref().map(GatewayFile::pending).unwrap_or_default()
    }
}

/// Prunes keyed state, publishes gauges, and reloads the policy on SIGHUP or when a file changes.
struct Maintenance {
    policy: Arc<PolicyHandle>,
    watch_interval: Option<Duration>,
    /// The gateway file, re-read on SIGHUP and when saved; `None` for the demo.
    gateway: Option<GatewayFile>,
    health: Arc<Health>,
    /// The last refusal logged per data file, so a missing file is logged once, not every poll.
    data_errors: parking_lot::Mutex<std::collections::HashMap<String, String>>,
    /// The TLS listeners' certificates, re-read when their files change.
    certificates: Vec<Arc<crate::certs::Resolver>>,
}

#[async_trait]
impl BackgroundService for Maintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut prune = tokio::time::interval(Duration::from_secs(5));
        let mut watch = tokio::time::interval(self.watch_interval.unwrap_or(Duration::from_secs(3600)));
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload by file change only");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = prune.tick() => self.policy.maintain(),
                _ = watch.tick(), if self.watch_interval.is_some() => {
                    crate::proxy::tls::reload_certificates(&self.certificates, false);
                    if self.gateway.as_ref().is_some_and(GatewayFile::changed) {
                        tracing::info!("gateway file changed: reloading it");
                        self.reload_all(false);
                    } else {
                        match self.policy.reload_if_changed() {
                            Some(Ok(())) => self.health.record_reload(true, "policy reloaded".into(), self.pending()),
                            Some(Err(error)) => self.health.record_reload(false, format!("policy refused: {error}"), self.pending()),
                            None => {}
                        }
                        self.reload_data(false);
                    }
                }
                Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the gateway file, the policy and data files");
                    self.reload_all(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::respelled;

    #[test]
    fn each_service_spells_the_address_apart_and_it_still_parses_to_the_same_socket() {
        use std::net::ToSocketAddrs;
        let spellings: Vec<String> = (0..4).map(|i| respelled("127.0.0.1:8080", i)).collect();
        assert_eq!(spellings[0], "127.0.0.1:8080");
        assert_eq!(spellings.iter().collect::<std::collections::HashSet<_>>().len(), 4);
        for text in spellings.iter().chain([&respelled("[::1]:8080", 2)]) {
            let port = text.to_socket_addrs().unwrap().next().unwrap().port();
            assert_eq!(port, 8080, "{text}");
        }
    }
}
