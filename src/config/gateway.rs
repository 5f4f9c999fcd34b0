//! `gateway.toml` compiled: listeners, upstream, trusted proxies, policy files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::connections::{ConnectionLimits, ForwardedHeader};
use super::file::{GatewayFile, SharedStateFile};
use super::{line_of, line_of_dotted, line_of_key, parse_toml, ConfigError};
use crate::certs::{CertFiles, TlsFiles};
use crate::ip_ranges::IpRanges;
use crate::store::breaker::BreakerSettings;
use crate::store::{KeyKind, SharedSettings};

#[derive(Debug, Clone)]
pub struct Upstream {
    pub address: String,
    pub tls: bool,
    pub sni: String,
    /// Certificate authorities for the upstream's certificate; `None`: the system's.
    pub ca: Option<PathBuf>,
    /// Send `X-Stuffgate-Client-Fingerprint` upstream.
    pub forward_fingerprint: bool,
}

/// A listener that terminates TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub address: String,
    pub files: TlsFiles,
}

pub use crate::telemetry::LogFormat;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub path: PathBuf,
    /// The file's text, to locate the keys of errors found after parsing (empty for a configuration built in code).
    pub source: String,
    /// Plain HTTP listeners.
    pub listen: Vec<String>,
    /// TLS listeners (HTTP/2 and HTTP/1.1 by ALPN).
    pub tls_listen: Vec<TlsListener>,
    /// The header trusted proxies pass the client's TLS fingerprint in.
    pub fingerprint_header: Option<http::HeaderName>,
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
    /// `[shared_state]`: Redis/Valkey shared by the gateways of a fleet; `None` keeps all state in this process.
    pub shared_state: Option<SharedSettings>,
}

impl GatewayConfig {
    /// An error about the dotted `key` of this file, with the line it is written on.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.path, line_of_dotted(&self.source, key), Some(key.to_string()), message)
    }
}

/// Client-address source, connection limits and upstream timeouts (the gateway file's `forwarded_header`,
/// `[connections]` and `upstream.*_timeout_secs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    pub forwarded_header: ForwardedHeader,
    pub connections: ConnectionLimits,
    pub upstream_connect_timeout: Duration,
    pub upstream_read_timeout: Duration,
    /// How long a TLS client has, from accept, to send its whole ClientHello.
    pub tls_hello_timeout: Duration,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            forwarded_header: ForwardedHeader::default(),
            connections: ConnectionLimits::default(),
            upstream_connect_timeout: Duration::from_secs(3),
            upstream_read_timeout: Duration::from_secs(30),
            tls_hello_timeout: Duration::from_secs(5),
        }
    }
}

fn hardening(file: &GatewayFile, err: impl Fn(&str, String) -> ConfigError) -> Result<Hardening, ConfigError> {
    let mut out = Hardening::default();
    if let Some(name) = &file.forwarded_header {
        out.forwarded_header = ForwardedHeader::parse(name).ok_or_else(|| {
            let hint = crate::spelling::did_you_mean(name, ["x-forwarded-for", "forwarded"]);
            err("forwarded_header", format!("`{name}` is not \"x-forwarded-for\" or \"forwarded\"{hint}"))
        })?;
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
    limits.body_timeout = secs("connections.body_timeout_secs", c.body_timeout_secs, limits.body_timeout)?;
    limits.refuse_blocked_at_accept = c.refuse_blocked_at_accept.unwrap_or(limits.refuse_blocked_at_accept);
    out.tls_hello_timeout =
        secs("connections.tls_hello_timeout_secs", c.tls_hello_timeout_secs, out.tls_hello_timeout)?;
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
    limits.proxy_protocol = c.proxy_protocol.unwrap_or(false);
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
    let err = |key: &str, message: String| {
        ConfigError::new(path, line_of_dotted(source, key), Some(key.to_string()), message)
    };
    let base = path.parent().unwrap_or(Path::new("."));

    let (listen, tls_listen) = listeners(path, source, base, file.listen.as_deref())?;
    if file.admin.parse::<std::net::SocketAddr>().is_err() {
        return Err(err("admin", format!("`{}` is not an IP:port address", file.admin)));
    }
    let fingerprint_header = match &file.fingerprint_header {
        None => None,
        Some(name) => Some(http::HeaderName::from_bytes(name.get_ref().trim().as_bytes()).map_err(|_| {
            ConfigError::new(
                path,
                Some(line_of(source, name.span().start)),
                Some("fingerprint_header".into()),
                format!("`{}` is not a header name", name.get_ref()),
            )
        })?),
    };
    if let Some(ca) = &file.upstream.ca {
        if !file.upstream.tls {
            return Err(err("upstream.ca", "applies only with tls = true".into()));
        }
        let pem = std::fs::read(base.join(ca))
            .map_err(|e| err("upstream.ca", format!("cannot read `{}`: {e}", base.join(ca).display())))?;
        let found = rustls_pemfile::certs(&mut pem.as_slice()).filter(|c| c.is_ok()).count();
        if found == 0 {
            return Err(err("upstream.ca", format!("`{}` holds no PEM certificate", base.join(ca).display())));
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
        Some(other) => {
            let hint = crate::spelling::did_you_mean(other, ["json", "text"]);
            return Err(err("log.format", format!("`{other}` is not \"json\" or \"text\"{hint}")));
        }
    };
    let log_level = file.log.level.clone().unwrap_or_else(|| "info".to_string());
    crate::telemetry::valid_level(&log_level).map_err(|why| err("log.level", why))?;
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
    let shared_state = match &file.shared_state {
        None => None,
        Some(table) => {
            if hash_secret.is_none() {
                return Err(ConfigError::new(
                    path,
                    Some(line_of(source, table.span().start)),
                    Some("privacy.hash_key_env".into()),
                    "is required with [shared_state]: every gateway must key shared state under the same secret \
                     (e.g. privacy = { hash_key_env = \"STUFFGATE_HASH_KEY\" }, set alike on all of them)",
                ));
            }
            let at = |key: &str| Some(line_of_key(source, table.span(), key));
            Some(shared_settings(table.get_ref(), |key, message| {
                ConfigError::new(path, at(key), Some(format!("shared_state.{key}")), message)
            })?)
        }
    };
    Ok(GatewayConfig {
        path: path.to_path_buf(),
        source: source.to_string(),
        listen,
        tls_listen,
        fingerprint_header,
        admin: file.admin,
        upstream: Upstream {
            address: file.upstream.address,
            tls: file.upstream.tls,
            sni: file.upstream.sni,
            ca: file.upstream.ca.map(|ca| base.join(ca)),
            forward_fingerprint: file.upstream.forward_fingerprint,
        },
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
        log_level,
        hash_secret,
        geoip: file.geoip.map(|g| (data_path(base, &g.country_db), g.asn_db.map(|a| data_path(base, &a)))),
        password_filter: file.breach.as_ref().and_then(|b| b.password_filter.as_ref()).map(|p| data_path(base, p)),
        pair_filter: file.breach.as_ref().and_then(|b| b.pair_filter.as_ref()).map(|p| data_path(base, p)),
        hardening,
        challenge,
        shared_state,
    })
}

/// A data file the gateway file names (GeoIP database, breach filter): relative to the gateway file's directory;
/// when it is not there and the name is relative, the shipped files' places are searched as for `stuffgate demo`
/// (the working directory, the checkout, /usr/share/stuffgate), so `country_db = "geoip/country.mmdb"` works from a
/// gateway file anywhere.
fn data_path(base: &Path, written: &str) -> PathBuf {
    let beside = base.join(written);
    if beside.exists() || Path::new(written).is_absolute() {
        return beside;
    }
    crate::shipped::find(written).unwrap_or(beside)
}

/// `listen`: plain addresses and TLS listeners, each TLS listener's certificates loaded and checked (a certificate
/// and key that do not parse or do not belong together are refused here, by `stuffgate check` and by a reload).
fn listeners(
    path: &Path,
    source: &str,
    base: &Path,
    entries: Option<&[toml::Spanned<toml::Value>]>,
) -> Result<(Vec<String>, Vec<TlsListener>), ConfigError> {
    let Some(entries) = entries else {
        return Ok((vec!["127.0.0.1:8080".to_string()], Vec::new()));
    };
    if entries.is_empty() {
        return Err(ConfigError::new(
            path,
            None,
            Some("listen".into()),
            "needs at least one address, e.g. [\"0.0.0.0:8080\"]",
        ));
    }
    let mut plain = Vec::new();
    let mut tls = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let line = Some(line_of(source, entry.span().start));
        let err = |key: String, message: String| ConfigError::new(path, line, Some(key), message);
        let at = format!("listen[{index}]");
        let address_of = |value: &toml::Value, key: &str| match value.as_str() {
            Some(text) if text.parse::<std::net::SocketAddr>().is_ok() => Ok(text.to_string()),
            Some(text) => Err(err(key.to_string(), format!("`{text}` is not an IP:port address"))),
            None => Err(err(key.to_string(), "must be an \"IP:port\" string".into())),
        };
        match entry.get_ref() {
            value @ toml::Value::String(_) => plain.push(address_of(value, &at)?),
            toml::Value::Table(table) => {
                for key in table.keys() {
                    if key != "address" && key != "tls" {
                        return Err(err(
                            format!("{at}.{key}"),
                            "unknown key; a listener has `address` and `tls`".into(),
                        ));
                    }
                }
                let address = match table.get("address") {
                    Some(value) => address_of(value, &format!("{at}.address"))?,
                    None => return Err(err(format!("{at}.address"), "is required, e.g. \"0.0.0.0:443\"".into())),
                };
                let Some(files) = table.get("tls") else {
                    plain.push(address);
                    continue;
                };
                let files = tls_files(files, base, &format!("{at}.tls"), &err)?;
                if let Err(error) = crate::certs::CertSet::load(&files) {
                    let which = files
                        .all()
                        .position(|pair| crate::certs::load_pair(pair).is_err())
                        .map(|i| if i == 0 { String::new() } else { format!(".sni[{}]", i - 1) })
                        .unwrap_or_default();
                    return Err(err(format!("{at}.tls{which}.{}", error.which), error.to_string()));
                }
                tls.push(TlsListener { address, files });
            }
            _ => {
                return Err(err(
                    at,
                    "must be an address (\"127.0.0.1:8080\") or a listener ({ address = \"0.0.0.0:443\", tls = { cert \
                     = \"...\", key = \"...\" } })"
                        .into(),
                ))
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for address in plain.iter().chain(tls.iter().map(|l| &l.address)) {
        if !seen.insert(address) {
            return Err(ConfigError::new(path, None, Some("listen".into()), format!("`{address}` is named twice")));
        }
    }
    Ok((plain, tls))
}

/// `tls = { cert, key, sni = [{ cert, key }, ...] }`, paths relative to the gateway file.
fn tls_files(
    value: &toml::Value,
    base: &Path,
    at: &str,
    err: &impl Fn(String, String) -> ConfigError,
) -> Result<TlsFiles, ConfigError> {
    let pair = |value: &toml::Value, at: &str, allowed: &[&str]| -> Result<CertFiles, ConfigError> {
        let Some(table) = value.as_table() else {
            return Err(err(at.to_string(), "must be a table: { cert = \"fullchain.pem\", key = \"key.pem\" }".into()));
        };
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(err(format!("{at}.{key}"), format!("unknown key; known: {}", allowed.join(", "))));
            }
        }
        let file = |key: &str| match table.get(key).and_then(|v| v.as_str()) {
            Some(text) if !text.trim().is_empty() => Ok(base.join(text)),
            _ => Err(err(format!("{at}.{key}"), "is required: the path of a PEM file".into())),
        };
        Ok(CertFiles { cert: file("cert")?, key: file("key")? })
    };
    let default = pair(value, at, &["cert", "key", "sni"])?;
    let mut sni = Vec::new();
    if let Some(list) = value.get("sni") {
        let Some(list) = list.as_array() else {
            return Err(err(format!("{at}.sni"), "must be a list of { cert, key } tables".into()));
        };
        for (index, entry) in list.iter().enumerate() {
            sni.push(pair(entry, &format!("{at}.sni[{index}]"), &["cert", "key"])?);
        }
    }
    Ok(TlsFiles { default, sni })
}

/// `[shared_state]` checked against what works: a URL the client accepts, deadlines of milliseconds, known kinds.
fn shared_settings(
    file: &SharedStateFile,
    err: impl Fn(&str, String) -> ConfigError,
) -> Result<SharedSettings, ConfigError> {
    let url = file.url.trim();
    let scheme = url.split("://").next().unwrap_or("");
    if !url.contains("://") || !["redis", "rediss", "valkey", "valkeys"].contains(&scheme) {
        return Err(err(
            "url",
            format!("`{url}` is not a redis:// or rediss:// URL, e.g. \"redis://127.0.0.1:6379/0\""),
        ));
    }
    if let Err(e) = fred::types::config::Config::from_url(url) {
        return Err(err("url", format!("`{url}` is not usable: {}", e.details())));
    }
    let mut out = SharedSettings::new(url);
    if let Some(prefix) = &file.key_prefix {
        if prefix.is_empty()
            || prefix.len() > 64
            || prefix.contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
            return Err(err(
                "key_prefix",
                "must be 1 to 64 characters without spaces or braces, e.g. \"sg:v2:\"".into(),
            ));
        }
        out.key_prefix = prefix.clone();
    }
    let millis = |key: &str, value: Option<u64>, range: std::ops::RangeInclusive<u64>, default: Duration| match value {
        Some(n) if !range.contains(&n) => {
            Err(err(key, format!("must be between {} and {} milliseconds", range.start(), range.end())))
        }
        Some(n) => Ok(Duration::from_millis(n)),
        None => Ok(default),
    };
    out.read_deadline = millis("read_deadline_ms", file.read_deadline_ms, 1..=1000, out.read_deadline)?;
    out.write_flush = millis("write_flush_ms", file.write_flush_ms, 1..=1000, out.write_flush)?;
    let count = |key: &str, value: Option<usize>, range: std::ops::RangeInclusive<usize>, default: usize| match value {
        Some(n) if !range.contains(&n) => {
            Err(err(key, format!("must be between {} and {}", range.start(), range.end())))
        }
        Some(n) => Ok(n),
        None => Ok(default),
    };
    out.write_batch = count("write_batch", file.write_batch, 1..=10_000, out.write_batch)?;
    out.write_queue = count("write_queue", file.write_queue, 1..=10_000_000, out.write_queue)?;
    let defaults = BreakerSettings::default();
    out.breaker = BreakerSettings {
        failures: count("breaker_failures", file.breaker_failures.map(|n| n as usize), 1..=1000, 5)? as u32,
        open: millis("breaker_open_ms", file.breaker_open_ms, 10..=600_000, defaults.open)?,
        max_open: millis("breaker_max_open_ms", file.breaker_max_open_ms, 10..=600_000, defaults.max_open)?,
    };
    if out.breaker.max_open < out.breaker.open {
        return Err(err("breaker_max_open_ms", "must be at least breaker_open_ms".into()));
    }
    if let Some(names) = &file.share {
        if names.is_empty() {
            return Err(err("share", "names no key kind; remove [shared_state] to keep all state local".into()));
        }
        out.share = [false; KeyKind::ALL.len()];
        for name in names {
            let kind = KeyKind::ALL.iter().find(|k| k.as_str() == name).ok_or_else(|| {
                let known: Vec<&str> = KeyKind::ALL.iter().map(|k| k.as_str()).collect();
                let hint = crate::spelling::did_you_mean(name, known.iter().copied());
                err("share", format!("`{name}` is not a key kind; known: {}{hint}", known.join(", ")))
            })?;
            out.share[*kind as usize] = true;
        }
    }
    Ok(out)
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
        let defaults = gateway_from_str(Path::new("gw.toml"), base).unwrap().hardening.connections;
        assert!(defaults.refuse_blocked_at_accept, "on unless the operator says otherwise");
        assert_eq!(defaults.body_timeout, Duration::from_secs(10));
        let off = format!("{base}[connections]\nrefuse_blocked_at_accept = false\nbody_timeout_secs = 3\n");
        let off = gateway_from_str(Path::new("gw.toml"), &off).unwrap().hardening.connections;
        assert!(!off.refuse_blocked_at_accept);
        assert_eq!(off.body_timeout, Duration::from_secs(3));
        // A wrong value names the file, the line and the dotted key, and says what is expected.
        let wrong = format!("{base}[connections]\nrefuse_blocked_at_accept = \"yes\"\n");
        let error = gateway_from_str(Path::new("gw.toml"), &wrong).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("connections.refuse_blocked_at_accept"), "{error}");
        assert_eq!(error.line, Some(wrong.lines().count()), "{error}");
        assert!(error.to_string().contains("gw.toml") && error.to_string().contains("boolean"), "{error}");
        let zero = format!("{base}[connections]\nbody_timeout_secs = 0\n");
        let error = gateway_from_str(Path::new("gw.toml"), &zero).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("connections.body_timeout_secs"), "{error}");
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
    fn shared_state_is_checked_and_needs_the_hash_secret() {
        let base = "upstream = { address = \"127.0.0.1:8081\" }\npolicies = [\"p.toml\"]\n";
        let without_secret = format!("{base}[shared_state]\nurl = \"redis://127.0.0.1:6379/0\"\n");
        let error = gateway_from_str(Path::new("gw.toml"), &without_secret).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("privacy.hash_key_env"), "{error}");
        assert_eq!(error.line, Some(3));

        std::env::set_var("STUFFGATE_TEST_SHARED_KEY", "0123456789abcdef0123");
        let secret = format!("{base}privacy = {{ hash_key_env = \"STUFFGATE_TEST_SHARED_KEY\" }}\n");
        let on = format!("{secret}[shared_state]\nurl = \"redis://127.0.0.1:6379/0\"\nread_deadline_ms = 5\n");
        let settings = gateway_from_str(Path::new("gw.toml"), &on).unwrap().shared_state.unwrap();
        assert_eq!(settings.read_deadline, Duration::from_millis(5));
        assert!(settings.shares(KeyKind::Account) && !settings.shares(KeyKind::Address));
        assert!(gateway_from_str(Path::new("gw.toml"), &secret).unwrap().shared_state.is_none());

        for (bad, key, line) in [
            ("url = \"http://127.0.0.1:6379\"\n", "shared_state.url", 5),
            ("url = \"redis://127.0.0.1:6379\"\nread_deadline_ms = 0\n", "shared_state.read_deadline_ms", 6),
            ("url = \"redis://127.0.0.1:6379\"\n\nshare = [\"account\", \"accounts\"]\n", "shared_state.share", 7),
            (
                "url = \"redis://127.0.0.1:6379\"\nbreaker_open_ms = 900\nbreaker_max_open_ms = 100\n",
                "shared_state.breaker_max_open_ms",
                7,
            ),
            ("url = \"redis://127.0.0.1:6379\"\nkey_prefix = \"a b\"\n", "shared_state.key_prefix", 6),
        ] {
            let source = format!("{secret}[shared_state]\n{bad}");
            let error = gateway_from_str(Path::new("gw.toml"), &source).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{bad}: {error}");
            assert_eq!(error.line, Some(line), "{bad}: {error}");
        }
        let unknown = format!("{secret}[shared_state]\nurl = \"redis://127.0.0.1:6379\"\ndeadline = 3\n");
        let error = gateway_from_str(Path::new("gw.toml"), &unknown).unwrap_err();
        assert_eq!(error.line, Some(6), "{error}");
    }

    #[test]
    fn tls_listeners_are_read_and_their_certificates_checked_with_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |stem: &str, name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        };
        write("a", "a.example");
        write("b", "b.example");
        let path = dir.path().join("gw.toml");
        let load = |listen: &str| {
            let source = format!(
                "upstream = {{ address = \"127.0.0.1:8081\" }}\npolicies = [\"p.toml\"]\nlisten = [\n{listen}]\n"
            );
            gateway_from_str(&path, &source)
        };
        let config = load(
            "  \"127.0.0.1:8080\",\n  { address = \"0.0.0.0:8443\", tls = { cert = \"a.pem\", key = \"a.key\", sni = [\n    \
             { cert = \"b.pem\", key = \"b.key\" }] } },\n",
        )
        .unwrap();
        assert_eq!(config.listen, ["127.0.0.1:8080"]);
        assert_eq!(config.tls_listen.len(), 1);
        assert_eq!(config.tls_listen[0].address, "0.0.0.0:8443");
        assert_eq!(config.tls_listen[0].files.sni[0].key, dir.path().join("b.key"));
        for (listen, key, says) in [
            ("  \"x\",\n", "listen[0]", "not an IP:port"),
            ("  \"127.0.0.1:1\",\n  { address = \"0.0.0.0:8443\", tls = { cert = \"a.pem\", key = \"b.key\" } },\n", "listen[1].tls.key", "is not the key of the certificate"),
            ("  \"127.0.0.1:1\",\n  { address = \"0.0.0.0:8443\", tls = { cert = \"a.pem\", key = \"a.key\", sni = [{ cert = \"a.key\", key = \"a.key\" }] } },\n", "listen[1].tls.sni[0].cert", "holds no PEM certificate"),
            ("  \"127.0.0.1:1\",\n  { address = \"0.0.0.0:8443\", tls = { cert = \"a.pem\" } },\n", "listen[1].tls.key", "is required"),
            ("  \"127.0.0.1:1\",\n  { address = \"0.0.0.0:8443\", tls = { cert = \"a.pem\", key = \"a.key\", h3 = true } },\n", "listen[1].tls.h3", "unknown key"),
            ("  \"127.0.0.1:1\",\n  { address = \"0.0.0.0:8443\", tls = { cert = \"nope.pem\", key = \"a.key\" } },\n", "listen[1].tls.cert", "cannot read"),
        ] {
            let error = load(listen).unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{listen}: {error}");
            assert!(error.to_string().contains(says), "{listen}: {error}");
            let line = if key == "listen[0]" { 4 } else { 5 };
            assert_eq!(error.line, Some(line), "{listen}: {error}");
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
