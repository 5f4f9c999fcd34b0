//! Assemble the pingora server: the proxy service, the admin listener, and the maintenance task (pruning, gauges,
//! hot reload on SIGHUP and on file change).

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;

use crate::admin::AdminApp;
use crate::clock::Clock;
use crate::config::{CompileEnv, ConfigError, GatewayConfig};
use crate::proxy::connections::{GuardedApp, Tracker};
use crate::proxy::{Gateway, GatewayState};
use crate::reload::PolicyHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Geo(#[from] crate::geoip::GeoError),
    #[error("{0}")]
    Breach(#[from] crate::defense::breach::FilterLoadError),
    #[error("upstream `{address}` does not resolve to an address: {why}")]
    Upstream { address: String, why: String },
    #[error("shared state store `{url}`: {why}")]
    SharedState { url: String, why: String },
}

/// Build the shared state: the compiled policy and the upstream. Fails before anything listens.
pub fn build_state(config: &GatewayConfig, clock: Clock) -> Result<Arc<GatewayState>, StartError> {
    let geo = match &config.geoip {
        Some((country, asn)) => Some(Arc::new(crate::geoip::SharedGeoDb::open(country, asn.as_deref())?)),
        None => None,
    };
    let mut env = CompileEnv::new(clock, config.max_tracked_keys).with_geo(geo);
    if let Some(secret) = &config.hash_secret {
        env = env.with_secret(secret);
    }
    if let Some(settings) = &config.shared_state {
        // Local state stays, and decisions take the stricter of it and Redis (store/shared.rs).
        let local = crate::store::LocalStore::new(config.max_tracked_keys);
        let shared = crate::store::SharedStore::start(local, settings.clone())
            .map_err(|why| StartError::SharedState { url: crate::store::shared::redacted(&settings.url), why })?;
        env.store = Arc::new(shared);
    }
    env.open_breach_filters(config.password_filter.as_deref(), config.pair_filter.as_deref())?;
    let policy = Arc::new(PolicyHandle::load(config.policy_files.clone(), env)?);
    let upstream_address = config
        .upstream
        .address
        .to_socket_addrs()
        .map_err(|e| StartError::Upstream { address: config.upstream.address.clone(), why: e.to_string() })?
        .next()
        .ok_or_else(|| StartError::Upstream { address: config.upstream.address.clone(), why: "no address".into() })?;
    let mut upstream = HttpPeer::new(upstream_address, config.upstream.tls, config.upstream.sni.clone());
    upstream.options.connection_timeout = Some(config.hardening.upstream_connect_timeout);
    upstream.options.read_timeout = Some(config.hardening.upstream_read_timeout);
    Ok(Arc::new(GatewayState {
        policy,
        trusted_proxies: config.trusted_proxies.clone(),
        forwarded_header: config.hardening.forwarded_header,
        upstream,
    }))
}

/// Start serving; never returns.
pub fn run(config: GatewayConfig, state: Arc<GatewayState>) -> ! {
    let mut conf = ServerConf { threads: config.threads, work_stealing: true, ..ServerConf::default() };
    conf.pid_file = std::env::temp_dir().join(format!("stuffgate-{}.pid", std::process::id())).display().to_string();
    conf.upgrade_sock =
        std::env::temp_dir().join(format!("stuffgate-{}.sock", std::process::id())).display().to_string();
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Connection caps and header/idle deadlines sit between the listener and pingora's HTTP handling.
    let tracker = Tracker::new(config.hardening.connections.clone(), config.trusted_proxies.clone());
    let app = pingora::proxy::http_proxy(&server.configuration, Gateway { state: state.clone() });
    let mut proxy = Service::new("stuffgate".to_string(), GuardedApp::new(app, tracker));
    for address in &config.listen {
        proxy.add_tcp(address);
    }
    server.add_service(proxy);

    let mut admin = Service::new("stuffgate admin".to_string(), AdminApp { policy: state.policy.clone() });
    admin.add_tcp(&config.admin);
    admin.threads = Some(1);
    server.add_service(admin);

    let mut maintenance = background_service(
        "maintenance",
        Maintenance { policy: state.policy.clone(), watch_interval: config.watch_interval },
    );
    maintenance.threads = Some(1);
    server.add_service(maintenance);

    tracing::info!(
        listen = ?config.listen,
        admin = %config.admin,
        upstream = %config.upstream.address,
        routes = state.policy.current().routes.len(),
        "stuffgate started"
    );
    server.run_forever()
}

impl Maintenance {
    /// Swap in replaced data files (GeoIP); a missing or corrupt file is refused and the previous one serves.
    fn reload_data(&self, always: bool) {
        let env = self.policy.env();
        for filter in env.breached_passwords.iter().chain(env.leaked_pairs.iter()) {
            match filter.reload_if_changed() {
                Ok(true) => tracing::info!(path = %filter.path().display(), "breach filter reloaded"),
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "breach filter reload refused; the previous one keeps serving"),
            }
        }
        if let Some(geo) = &self.policy.env().geo {
            let result = if always { geo.reload().map(|()| true) } else { geo.reload_if_changed() };
            match result {
                Ok(true) => tracing::info!(db = %geo.load().describe(), "GeoIP database reloaded"),
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "GeoIP database reload refused; the previous one keeps serving"),
            }
        }
    }
}

/// Prunes keyed state, publishes gauges, and reloads the policy on SIGHUP or when a file changes.
struct Maintenance {
    policy: Arc<PolicyHandle>,
    watch_interval: Option<Duration>,
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
                    let _ = self.policy.reload_if_changed();
                    self.reload_data(false);
                }
                Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the policy and data files");
                    let _ = self.policy.reload();
                    self.reload_data(true);
                }
            }
        }
    }
}
