//! `stuffgate decisions list|delete|ban`: a small client of the admin listener's decisions API (see `admin/ops.rs`).
//! Plain HTTP/1.1 over one TCP connection: the admin listener is on loopback or a private network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context as _};

pub use crate::admin::ops::TOKEN_ENV;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum DecisionsCommand {
    /// Penalties in force (address, account hash, defense, expiry) and manual bans.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lift a penalty (p…) or a manual ban (b…) by the id `list` shows.
    Delete { id: String },
    /// Ban an address or CIDR block on every route (403) until the duration is over (default: until lifted).
    Ban {
        /// An address (198.51.100.7) or a block (198.51.100.0/24, 2001:db8::/48).
        range: String,
        /// e.g. 30m, 4h, 7d.
        #[arg(long)]
        duration: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "The admin token is read from $STUFFGATE_ADMIN_TOKEN (the gateway must have been started with the same).\n\nExamples:\n  stuffgate decisions list\n  stuffgate decisions ban 198.51.100.0/24 --duration 4h --reason \"stuffing from a VPS range\"\n  stuffgate decisions delete p12"
)]
pub struct DecisionsArgs {
    #[command(subcommand)]
    pub command: DecisionsCommand,
    /// The gateway's admin listener [default: $STUFFGATE_ADMIN, else http://127.0.0.1:9901].
    #[arg(long, global = true)]
    pub admin: Option<String>,
}

impl DecisionsArgs {
    fn admin(&self) -> String {
        self.admin
            .clone()
            .or_else(|| std::env::var("STUFFGATE_ADMIN").ok().filter(|a| !a.trim().is_empty()))
            .unwrap_or_else(|| "http://127.0.0.1:9901".to_string())
    }
}

pub fn run(args: &DecisionsArgs) -> anyhow::Result<()> {
    let admin = args.admin();
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
    let token = token.as_deref().map(str::trim);
    match &args.command {
        DecisionsCommand::List { json } => {
            let body = call(&admin, "GET", "/decisions", token, None)?;
            if *json {
                println!("{body}");
                return Ok(());
            }
            print!("{}", render_list(&serde_json::from_str(&body).context("the admin API answered no JSON")?));
            Ok(())
        }
        DecisionsCommand::Delete { id } => {
            let body = call(&admin, "DELETE", &format!("/decisions/{id}"), token, None)?;
            let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            println!("lifted {id}: {}", value["lifted"]);
            Ok(())
        }
        DecisionsCommand::Ban { range, duration, reason } => {
            let request = serde_json::json!({ "range": range, "duration": duration, "reason": reason });
            let body = call(&admin, "POST", "/decisions", token, Some(&request.to_string()))?;
            let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let ban = &value["ban"];
            println!(
                "banned {} as {} ({})",
                ban["range"].as_str().unwrap_or(range),
                ban["id"].as_str().unwrap_or("?"),
                match ban["until"].as_u64() {
                    Some(until) => format!("for {}s", until.saturating_sub(crate::clock::unix_now())),
                    None => "until lifted".to_string(),
                }
            );
            Ok(())
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "The admin token is read from $STUFFGATE_ADMIN_TOKEN for on/off/auto.\n\nExamples:\n  stuffgate attack-mode\n  stuffgate attack-mode on      # hold it on (every unknown device is challenged)\n  stuffgate attack-mode auto    # back to the detector"
)]
pub struct AttackModeArgs {
    /// status (default), on, off or auto.
    #[arg(default_value = "status", value_parser = ["status", "on", "off", "auto"])]
    pub mode: String,
    /// The gateway's admin listener [default: $STUFFGATE_ADMIN, else http://127.0.0.1:9901].
    #[arg(long)]
    pub admin: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

/// `stuffgate attack-mode [status|on|off|auto]`: show or override the site-wide attack mode.
pub fn attack_mode(args: &AttackModeArgs) -> anyhow::Result<()> {
    let admin = DecisionsArgs { command: DecisionsCommand::List { json: false }, admin: args.admin.clone() }.admin();
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
    let token = token.as_deref().map(str::trim);
    let body = if args.mode == "status" {
        call(&admin, "GET", "/attack-mode", token, None)?
    } else {
        let request = serde_json::json!({ "mode": args.mode });
        call(&admin, "POST", "/attack-mode", token, Some(&request.to_string()))?
    };
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("the admin API answered no JSON")?;
    println!(
        "attack mode {} (detector: {}, override: {}); last window: {} failed logins from unknown devices of {} (baseline {:.1})",
        v["level"].as_str().unwrap_or("?"),
        v["detected"].as_str().unwrap_or("?"),
        v["override"].as_str().unwrap_or("?"),
        v["failures"],
        v["logins"],
        v["baseline_failures"].as_f64().unwrap_or(0.0),
    );
    Ok(())
}

/// The `list` table.
pub fn render_list(value: &serde_json::Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let penalties = value["penalties"].as_array().unwrap_or(&empty);
    let bans = value["bans"].as_array().unwrap_or(&empty);
    let now = crate::clock::unix_now();
    let left = |until: Option<u64>| match until {
        Some(until) => format!("{}s", until.saturating_sub(now)),
        None => "until lifted".to_string(),
    };
    out.push_str(&format!("{} penalt{} in force\n", penalties.len(), if penalties.len() == 1 { "y" } else { "ies" }));
    if !penalties.is_empty() {
        out.push_str(&format!(
            "  {:<6} {:<39} {:<16} {:<20} {:<16} {:<10} {}\n",
            "id", "address", "scope", "defense", "account", "route", "expires in"
        ));
    }
    for p in penalties {
        out.push_str(&format!(
            "  {:<6} {:<39} {:<16} {:<20} {:<16} {:<10} {}\n",
            p["id"].as_str().unwrap_or(""),
            p["address"].as_str().unwrap_or(""),
            p["scope"].as_str().unwrap_or(""),
            p["defense"].as_str().unwrap_or(""),
            p["account"].as_str().unwrap_or("-"),
            p["route"].as_str().unwrap_or(""),
            left(p["until"].as_u64()),
        ));
    }
    out.push_str(&format!("{} manual ban{}\n", bans.len(), if bans.len() == 1 { "" } else { "s" }));
    for b in bans {
        out.push_str(&format!(
            "  {:<6} {:<39} {:<14} {}\n",
            b["id"].as_str().unwrap_or(""),
            b["range"].as_str().unwrap_or(""),
            left(b["until"].as_u64()),
            b["reason"].as_str().unwrap_or(""),
        ));
    }
    out
}

/// One request; an answer other than 2xx is an error carrying the API's message.
pub fn call(admin: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> anyhow::Result<String> {
    let authority = admin.trim_end_matches('/').strip_prefix("http://").unwrap_or(admin.trim_end_matches('/'));
    if authority.contains('/') || admin.starts_with("https://") {
        bail!("--admin takes http://HOST:PORT (the admin listener speaks plain HTTP), not `{admin}`");
    }
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("`{authority}` is not HOST:PORT"))?
        .next()
        .with_context(|| format!("`{authority}` resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).with_context(|| {
        format!("cannot reach the admin listener at {address}: is the gateway running (and is `admin` that address)?")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("reading the admin listener's answer")?;
    let (status, text) = parse_response(&raw)?;
    if (200..300).contains(&status) {
        return Ok(text);
    }
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let message = value["message"].as_str().map(str::to_string).unwrap_or(text);
    if status == 401 && token.is_none() {
        bail!("the admin API refused ({status}): {message}; set {TOKEN_ENV} to the gateway's admin token");
    }
    bail!("the admin API refused ({status}): {message}")
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("the admin listener's answer has no head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the admin listener's answer has no status")?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else { break };
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_are_read_plain_and_chunked() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(super::parse_response(plain).unwrap(), (201, "{}".to_string()));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(super::parse_response(chunked).unwrap(), (200, "abcde".to_string()));
    }

    #[test]
    fn the_list_renders_penalties_and_bans() {
        let value = serde_json::json!({
            "penalties": [{"id": "p1", "address": "203.0.113.5", "scope": "address", "defense": "ip_failures",
                           "account": null, "route": "login", "until": 1}],
            "bans": [{"id": "b1", "range": "198.51.100.0/24", "until": null, "reason": "vps"}]
        });
        let text = super::render_list(&value);
        assert!(text.contains("1 penalty in force") && text.contains("203.0.113.5") && text.contains("ip_failures"));
        assert!(text.contains("1 manual ban") && text.contains("until lifted") && text.contains("vps"), "{text}");
    }
}
