//! `gateway.toml` compiled: listeners, upstream, trusted proxies, policy files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::file::GatewayFile;
use super::{line_of, parse_toml, ConfigError};
use crate::defense::ip_list::IpRanges;
use crate::proxy::client_ip::ForwardedHeader;
use crate::proxy::connections::ConnectionLimits;

#[derive(Debug, Clone)]
pub struct Upstream {
    pub address: String,
    pub tls: bool,
    pub sni: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub path: PathBuf,
    pub listen: Vec<String>,
    pub admin: String,
    pub upstream: Upstream,
    pub policy_files: Vec<PathBuf>,
    pub trusted_proxies: IpRanges,
    pub threads: usize,
    pub runtime: super::file::RuntimeLayout,
    pub max_tracked_keys: usize,
    pub watch_interval: Option<Duration>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Secret keying account hashes, read from the environment variable the file names.
    pub hash_secret: Option<Vec<u8>>,
    /// GeoIP databases: (country, optional ASN).
    pub geoip: Option<(PathBuf, Option<PathBuf>)>,
    pub password_filter: Option<PathBuf>,
    pub pair_filter: Option<PathBuf>,
    pub hardening: Hardening,
    /// `[challenge]` keys and settings; `None`: random keys, drawn at start.
    pub challenge: Option<crate::challenge::ChallengeConfig>,
}

/// Client-address source, connection limits and upstream timeouts (the gateway file's `forwarded_header`,
/// `[connections]` and `upstream.*_timeout_secs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    pub forwarded_header: ForwardedHeader,
    pub connections: ConnectionLimits,
    pub upstream_connect_timeout: Duration,
    pub upstream_read_timeout: Duration,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            forwarded_header: ForwardedHeader::default(),
            connections: ConnectionLimits::default(),
            upstream_connect_timeout: Duration::from_secs(3),
            upstream_read_timeout: Duration::from_secs(30),
        }
    }
}

fn hardening(file: &GatewayFile, err: impl Fn(&str, String) -> ConfigError) -> Result<Hardening, ConfigError> {
    let mut out = Hardening::default();
    if let Some(name) = &file.forwarded_header {
        out.forwarded_header = ForwardedHeader::parse(name)
            .ok_or_else(|| err("forwarded_header", format!("`{name}` is not \"x-forwarded-for\" or \"forwarded\"")))?;
    }
    let secs = |key: &str, value: Option<u64>, default: Duration| match value {
        Some(0) => Err(err(key, "must be at least 1 second".into())),
        Some(n) => Ok(Duration::from_secs(n)),
        None => Ok(default),
    };
    let c = &file.connections;
    let limits = &mut out.connections;
    limits.idle_timeout = secs("connections.idle_timeout_secs", c.idle_timeout_secs, limits.idle_timeout)?;
    limits.header_timeout = secs("connections.header_timeout_secs", c.header_timeout_secs, limits.header_timeout)?;
    match c.max_header_bytes {
        // Below 1 KiB ordinary browser requests fail; above pingora's own 1 MiB the cap means nothing.
        Some(n) if !(1024..=1024 * 1024).contains(&n) => {
            return Err(err("connections.max_header_bytes", "must be between 1024 and 1048576".into()))
        }
        Some(n) => limits.max_header_bytes = n,
        None => {}
    }
    match c.max_connections {
        Some(0) => return Err(err("connections.max_connections", "must be greater than zero".into())),
        Some(n) => limits.max_connections = n,
        None => {}
    }
    match c.max_connections_per_client {
        Some(0) => return Err(err("connections.max_connections_per_client", "must be greater than zero".into())),
        Some(n) => limits.max_connections_per_client = n,
        None => {}
    }
    out.upstream_connect_timeout =
        secs("upstream.connect_timeout_secs", file.upstream.connect_timeout_secs, out.upstream_connect_timeout)?;
    out.upstream_read_timeout =
        secs("upstream.read_timeout_secs", file.upstream.read_timeout_secs, out.upstream_read_timeout)?;
    Ok(out)
}

pub fn load_gateway(path: &Path) -> Result<GatewayConfig, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
    gateway_from_str(path, &source)
}

pub fn gateway_from_str(path: &Path, source: &str) -> Result<GatewayConfig, ConfigError> {
    let file: GatewayFile = parse_toml(path, source)?;
    let err = |key: &str, message: String| ConfigError::new(path, None, Some(key.to_string()), message);
    let base = path.parent().unwrap_or(Path::new("."));

    if file.listen.is_empty() {
        return Err(err("listen", "needs at least one address, e.g. [\"0.0.0.0:8080\"]".into()));
    }
    for address in file.listen.iter().chain(std::iter::once(&file.admin)) {
        if address.parse::<std::net::SocketAddr>().is_err() {
            return Err(err("listen", format!("`{address}` is not an IP:port address")));
        }
    }
    if file.upstream.address.trim().is_empty() || !file.upstream.address.contains(':') {
        return Err(err("upstream.address", "must be host:port, e.g. \"127.0.0.1:8081\"".into()));
    }
    if file.policies.is_empty() {
        return Err(err("policies", "names no policy file; add e.g. [\"policies/default.toml\"]".into()));
    }
    let mut nets: Vec<IpNet> = Vec::new();
    for entry in &file.trusted_proxies {
        let text = entry.get_ref();
        let net =
            text.parse::<IpNet>().or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                ConfigError::new(
                    path,
                    Some(line_of(source, entry.span().start)),
                    Some("trusted_proxies".into()),
                    format!("`{text}` is neither an address nor a CIDR block such as \"10.0.0.0/8\""),
                )
            })?;
        nets.push(net);
    }
    let threads = match file.threads {
        Some(0) => return Err(err("threads", "must be greater than zero".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    let max_tracked_keys = match file.max_tracked_keys {
        Some(n) if n < 1024 => return Err(err("max_tracked_keys", "must be at least 1024".into())),
        Some(n) => n,
        None => 1_000_000,
    };
    let log_format = match file.log.format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => return Err(err("log.format", format!("`{other}` is not \"json\" or \"text\""))),
    };
    let hash_secret = match &file.privacy.hash_key_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(value) if value.len() >= 16 => Some(value.into_bytes()),
            Ok(_) => return Err(err("privacy.hash_key_env", format!("${var} must hold at least 16 characters"))),
            Err(_) => return Err(err("privacy.hash_key_env", format!("${var} is not set"))),
        },
    };
    let hardening = hardening(&file, err)?;
    let challenge = match &file.challenge {
        Some(section) => Some(challenge_config(section, &err)?),
        None => None,
    };
    Ok(GatewayConfig {
        path: path.to_path_buf(),
        listen: file.listen,
        admin: file.admin,
        upstream: Upstream { address: file.upstream.address, tls: file.upstream.tls, sni: file.upstream.sni },
        policy_files: file.policies.iter().map(|p| base.join(p)).collect(),
        trusted_proxies: IpRanges::new(&nets),
        threads,
        runtime: file.runtime.unwrap_or_default(),
        max_tracked_keys,
        watch_interval: match file.watch_interval_secs {
            Some(0) => None,
            Some(n) => Some(Duration::from_secs(n)),
            None => Some(Duration::from_secs(2)),
        },
        log_format,
        log_level: file.log.level.unwrap_or_else(|| "info".to_string()),
        hash_secret,
        geoip: file.geoip.map(|g| (base.join(g.country_db), g.asn_db.map(|a| base.join(a)))),
        password_filter: file.breach.as_ref().and_then(|b| b.password_filter.as_ref()).map(|p| base.join(p)),
        pair_filter: file.breach.as_ref().and_then(|b| b.pair_filter.as_ref()).map(|p| base.join(p)),
        hardening,
        challenge,
    })
}

/// `[challenge]`: secrets from the environment (each checked), and the device settings.
fn challenge_config(
    file: &super::file::ChallengeFile,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<crate::challenge::ChallengeConfig, ConfigError> {
    use crate::challenge::{ChallengeConfig, SigningKey, TokenKeys};
    let key = "challenge.secrets_env";
    if file.secrets_env.is_empty() {
        return Err(err(key, "name at least one environment variable holding a secret of 32 or more bytes".into()));
    }
    let mut keys = Vec::new();
    for var in &file.secrets_env {
        match std::env::var(var) {
            Ok(value) if value.len() >= 32 => keys.push(SigningKey::from_secret(value.as_bytes())),
            Ok(_) => {
                return Err(err(
                    key,
                    format!("${var} must hold at least 32 bytes (e.g. from `openssl rand -base64 32`)"),
                ))
            }
            Err(_) => return Err(err(key, format!("${var} is not set"))),
        }
    }
    let keys = TokenKeys::new(keys).map_err(|why| err(key, why))?;
    let mut config = ChallengeConfig::new(keys, true);
    let positive = |name: &str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(err(&format!("challenge.{name}"), "must be greater than zero".into())),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let ttl = positive("ttl_secs", file.ttl_secs, 120)?;
    if ttl > 3600 {
        return Err(err("challenge.ttl_secs", "must be at most 3600 (a challenge is solved in seconds)".into()));
    }
    config.ttl = Duration::from_secs(ttl);
    let days = positive("remember_days", file.remember_days, 90)?;
    if days > 400 {
        return Err(err("challenge.remember_days", "must be at most 400 (browsers cap cookies there)".into()));
    }
    config.remember = Duration::from_secs(days * 86_400);
    config.noscript_wait = Duration::from_secs(positive("noscript_wait_secs", file.noscript_wait_secs, 5)?);
    if config.noscript_wait >= config.ttl {
        return Err(err("challenge.noscript_wait_secs", format!("must be shorter than ttl_secs ({ttl})")));
    }
    config.max_devices = match file.max_devices_per_account {
        Some(n) if !(1..=16).contains(&n) => {
            return Err(err("challenge.max_devices_per_account", "must be between 1 and 16".into()))
        }
        Some(n) => n,
        None => 8,
    };
    config.shared_after = positive("shared_after_networks", file.shared_after_networks.map(u64::from), 6)? as u32;
    if let Some(name) = &file.cookie_name {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(err("challenge.cookie_name", format!("`{name}` must be letters, digits, '_' or '-'")));
        }
        config.cookie_name = name.clone();
    }
    if let Some(secure) = file.secure_cookie {
        config.secure_cookie = secure;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_trusted_proxy_names_its_line() {
        let source = "upstream = { address = \"127.0.0.1:8081\" }\npolicies = [\"p.toml\"]\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"banana\",\n]\n";
        let error = gateway_from_str(Path::new("gw.toml"), source).unwrap_err();
        assert_eq!(error.line, Some(5));
        assert!(error.to_string().contains("banana"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let source = "upstream = { address = \"127.0.0.1:8081\" }\npolicies = [\"p.toml\"]\nthreadz = 4\n";
        let error = gateway_from_str(Path::new("gw.toml"), source).unwrap_err();
        assert_eq!(error.line, Some(3));
        assert!(error.message.contains("threadz"), "{error}");
    }

    #[test]
    fn hardening_settings_have_safe_defaults_and_are_checked() {
        let base = "upstream = { address = \"127.0.0.1:8081\" }\npolicies = [\"p.toml\"]\n";
        let config = gateway_from_str(Path::new("gw.toml"), base).unwrap();
        assert_eq!(config.hardening, Hardening::default());
        assert_eq!(config.hardening.connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.hardening.connections.max_header_bytes, 32 * 1024);
        let set = format!(
            "{base}forwarded_header = \"Forwarded\"\n[connections]\nidle_timeout_secs = 5\nheader_timeout_secs = 2\n\
             max_header_bytes = 4096\nmax_connections = 100\nmax_connections_per_client = 3\n"
        );
        let hardening = gateway_from_str(Path::new("gw.toml"), &set).unwrap().hardening;
        assert_eq!(hardening.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(hardening.connections.idle_timeout, Duration::from_secs(5));
        assert_eq!(hardening.connections.header_timeout, Duration::from_secs(2));
        assert_eq!(hardening.connections.max_header_bytes, 4096);
        assert_eq!(hardening.connections.max_connections, 100);
        assert_eq!(hardening.connections.max_connections_per_client, 3);
        for bad in [
            "forwarded_header = \"x-real-ip\"\n",
            "[connections]\nidle_timeout_secs = 0\n",
            "[connections]\nmax_header_bytes = 10\n",
            "[connections]\nmax_connections_per_client = 0\n",
            "[connections]\nmax_idle = 3\n",
        ] {
            assert!(gateway_from_str(Path::new("gw.toml"), &format!("{base}{bad}")).is_err(), "{bad}");
        }
        let upstream = "upstream = { address = \"127.0.0.1:8081\", read_timeout_secs = 2 }\npolicies = [\"p.toml\"]\n";
        let config = gateway_from_str(Path::new("gw.toml"), upstream).unwrap();
        assert_eq!(config.hardening.upstream_read_timeout, Duration::from_secs(2));
    }

    #[test]
    fn challenge_keys_come_from_the_environment_with_clear_errors() {
        let base = "upstream = { address = \"127.0.0.1:8081\" }\npolicies = [\"p.toml\"]\n[challenge]\n";
        let load = |extra: &str| gateway_from_str(Path::new("gw.toml"), &format!("{base}{extra}"));
        std::env::set_var("SG_TEST_CHALLENGE_NEW", "n".repeat(32));
        std::env::set_var("SG_TEST_CHALLENGE_OLD", "o".repeat(40));
        std::env::set_var("SG_TEST_CHALLENGE_SHORT", "short");
        let config = load("secrets_env = [\"SG_TEST_CHALLENGE_NEW\", \"SG_TEST_CHALLENGE_OLD\"]\nremember_days = 30\n")
            .unwrap()
            .challenge
            .unwrap();
        assert!(config.configured);
        assert_eq!(config.remember, Duration::from_secs(30 * 86_400));
        for (extra, says) in [
            ("secrets_env = []\n", "at least one"),
            ("secrets_env = [\"SG_TEST_CHALLENGE_UNSET\"]\n", "$SG_TEST_CHALLENGE_UNSET is not set"),
            ("secrets_env = [\"SG_TEST_CHALLENGE_SHORT\"]\n", "at least 32 bytes"),
            ("secrets_env = [\"SG_TEST_CHALLENGE_NEW\", \"SG_TEST_CHALLENGE_NEW\"]\n", "share the key id"),
            ("secrets_env = [\"SG_TEST_CHALLENGE_NEW\"]\nttl_secs = 0\n", "greater than zero"),
            ("secrets_env = [\"SG_TEST_CHALLENGE_NEW\"]\nnoscript_wait_secs = 200\n", "shorter than ttl_secs"),
            ("secrets_env = [\"SG_TEST_CHALLENGE_NEW\"]\ncookie_name = \"a b\"\n", "letters"),
            ("secrets_env = [\"SG_TEST_CHALLENGE_NEW\"]\nsecure_cookie = \"sometimes\"\n", "sometimes"),
        ] {
            let error = load(extra).unwrap_err();
            assert!(error.to_string().contains(says), "{extra}: {error}");
        }
    }

    #[test]
    fn policy_paths_resolve_next_to_the_gateway_file() {
        let source = "upstream = { address = \"127.0.0.1:8081\" }\npolicies = [\"p.toml\"]\n";
        let config = gateway_from_str(Path::new("/etc/stuffgate/gw.toml"), source).unwrap();
        assert_eq!(config.policy_files, vec![PathBuf::from("/etc/stuffgate/p.toml")]);
        assert_eq!(config.admin, "127.0.0.1:9901");
    }
}
