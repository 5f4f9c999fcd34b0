//! `stuffgate geoip lookup IP...`: look addresses up from the command line.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use super::db::{GeoDb, GeoDetails};

/// Arguments of `stuffgate geoip lookup`.
#[derive(Debug, Clone, clap::Args)]
pub struct LookupArgs {
    /// IPv4 or IPv6 addresses to look up, e.g. 8.8.8.8 2001:4860:4860::8888
    #[arg(required = true, value_name = "IP")]
    pub ips: Vec<String>,
    /// Country database (.mmdb): ip-location-db country, or MaxMind GeoLite2/GeoIP2 Country or City
    #[arg(long, value_name = "PATH", default_value = "geoip/country.mmdb")]
    pub db: PathBuf,
    /// Optional ASN database (.mmdb): MaxMind GeoLite2-ASN or an ip-location-db ASN file
    #[arg(long, value_name = "PATH")]
    pub asn_db: Option<PathBuf>,
    /// Print one JSON object per address (JSON Lines) instead of text
    #[arg(long)]
    pub json: bool,
}

/// Parses every argument first so a typo is reported before any output.
fn parse_ips(raw: &[String]) -> anyhow::Result<Vec<IpAddr>> {
    let mut bad = Vec::new();
    let mut ips = Vec::with_capacity(raw.len());
    for s in raw {
        let t = s.trim();
        // Accept the bracketed form people paste from URLs: [2001:db8::1]
        let t = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(t);
        match t.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => bad.push(format!("{s:?}")),
        }
    }
    if !bad.is_empty() {
        anyhow::bail!(
            "invalid IP address{} {}: give IPv4 like 203.0.113.7 or IPv6 like 2001:db8::1 (no port, no CIDR)",
            if bad.len() > 1 { "es" } else { "" },
            bad.join(", ")
        );
    }
    Ok(ips)
}

fn text_line(d: &GeoDetails) -> String {
    if d.is_private {
        return format!("{}\tprivate\t-\tprivate/loopback/link-local range, no lookup", d.ip);
    }
    let country = d.country.map_or_else(|| "--".to_owned(), |c| c.to_string());
    let asn = match (d.asn, &d.asn_org) {
        (Some(n), Some(org)) => format!("AS{n} {org}"),
        (Some(n), None) => format!("AS{n}"),
        _ => "-".to_owned(),
    };
    let mut sources = Vec::new();
    match (&d.country_source, &d.country_network) {
        (Some(src), Some(net)) => sources.push(format!("country: {src}, network {net}")),
        (Some(src), None) => sources.push(format!("country: {src}")),
        (None, _) => sources.push("country: not in database".to_owned()),
    }
    if let Some(src) = &d.asn_source {
        match &d.asn_network {
            Some(net) => sources.push(format!("asn: {src}, network {net}")),
            None => sources.push(format!("asn: {src}")),
        }
    }
    format!("{}\t{}\t{}\t{}", d.ip, country, asn, sources.join("; "))
}

/// Runs `geoip lookup`: prints, per address, the country, the ASN where an
/// ASN database is given, and which database (and field) answered.
/// The database description goes to stderr so stdout stays parseable.
pub fn run_lookup(args: &LookupArgs) -> anyhow::Result<()> {
    let ips = parse_ips(&args.ips)?;
    // The default database is found from any working directory (see `crate::shipped`).
    let path = crate::shipped::resolve(&args.db, super::DEFAULT_COUNTRY_DB);
    let db = GeoDb::open(&path, args.asn_db.as_deref()).context("cannot open the GeoIP database")?;
    eprintln!("# {}", db.describe());
    let mut out = String::new();
    for ip in ips {
        let d = db.lookup_details(ip);
        if args.json {
            out.push_str(&serde_json::to_string(&d).context("serialising lookup result")?);
        } else {
            out.push_str(&text_line(&d));
        }
        out.push('\n');
    }
    print!("{out}");
    if db.lookup_errors() > 0 {
        anyhow::bail!(
            "{} lookup(s) hit a corrupt record in {}; re-fetch it with geoip/refresh.sh",
            db.lookup_errors(),
            path.display()
        );
    }
    Ok(())
}
