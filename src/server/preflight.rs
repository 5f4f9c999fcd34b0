//! Checks before anything starts, and the admin token.

use crate::admin::ops::Operator;
use crate::config::GatewayConfig;

/// The admin token from the environment (see `admin::ops`); a malformed one was refused by [`preflight`].
pub(super) fn admin_token() -> Option<String> {
    Operator::token_from_env().ok().flatten()
}

/// Checks before anything is started, each failure a sentence saying what to change: every listen address and the
/// admin address can be bound (pingora would log and retry forever, looking alive while serving nothing), and the
/// admin token, when given, is usable.
pub fn preflight(config: &GatewayConfig) -> Result<(), String> {
    Operator::token_from_env()?;
    let mut seen = std::collections::HashSet::new();
    let listeners = config.listen.iter().chain(config.tls_listen.iter().map(|l| &l.address)).map(|a| ("listen", a));
    for (what, address) in listeners.chain(std::iter::once(("admin", &config.admin))) {
        if !seen.insert(address.clone()) {
            return Err(format!(
                "{address} is named twice (`{what}`): the proxy and the admin listener need their own ports"
            ));
        }
        if let Err(error) = std::net::TcpListener::bind(address.as_str()) {
            let hint = match error.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "another process is listening there (find it with `ss -ltnp`), or another stuffgate is still running"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit grants it)"
                }
                std::io::ErrorKind::AddrNotAvailable => "no interface of this machine has that address",
                _ => "choose another address",
            };
            return Err(format!("cannot listen on {address} (`{what}` in {}): {error}; {hint}", config.path.display()));
        }
    }
    Ok(())
}
