//! Client addresses for actors: drawn at random from the IPv4 space and kept when the shipped GeoIP database puts
//! them in a wanted country, so a scenario's "300 addresses in CN and VN" are addresses a real country database
//! (and so the gateway's geo defenses) sees there. Deterministic for a seed and a database.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::rng::Rng;
use super::scenario::AddressPool;
use crate::geoip::{is_private, CountryCode, GeoDb};

/// Random draws allowed per address wanted before giving up on a country (a country holding 0.01% of the IPv4
/// space needs ~10,000 draws per address).
const DRAWS_PER_ADDRESS: u64 = 50_000;
const MIN_DRAWS: u64 = 2_000_000;

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("found only {found} of {wanted} addresses for {country} in the GeoIP database after {draws} draws; name a larger country or fewer addresses")]
    Scarce { country: CountryCode, wanted: u32, found: u32, draws: u64 },
    #[error("the scenario names countries but no GeoIP database is loaded: pass --geoip FILE (the shipped one is geoip/country.mmdb)")]
    NoDatabase,
}

/// Where the shipped country database is: beside the working directory, or in the source tree the binary was
/// built from.
pub fn default_geoip_path() -> Option<PathBuf> {
    let local = PathBuf::from(crate::geoip::DEFAULT_COUNTRY_DB);
    if local.exists() {
        return Some(local);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(crate::geoip::DEFAULT_COUNTRY_DB);
    built.exists().then_some(built)
}

/// A public, unicast IPv4 address (not private, loopback, multicast or reserved).
fn usable(ip: Ipv4Addr) -> bool {
    let [a, ..] = ip.octets();
    !(is_private(IpAddr::V4(ip)) || a >= 224 || ip.is_documentation())
}

/// Draw `pool.count` distinct addresses, spread over the pool's countries by weight. `used` keeps addresses
/// distinct across actors.
pub fn draw(
    pool: &AddressPool,
    rng: &mut Rng,
    geo: Option<&GeoDb>,
    used: &mut HashSet<Ipv4Addr>,
) -> Result<Vec<IpAddr>, AddressError> {
    let mut out = Vec::with_capacity(pool.count as usize);
    if pool.countries.is_empty() {
        let mut draws = 0u64;
        while out.len() < pool.count as usize && draws < MIN_DRAWS + pool.count as u64 * 4 {
            draws += 1;
            let ip = Ipv4Addr::from(rng.next_u32());
            if usable(ip) && used.insert(ip) {
                out.push(IpAddr::V4(ip));
            }
        }
        return Ok(out);
    }
    let geo = geo.ok_or(AddressError::NoDatabase)?;
    for (country, wanted) in split(pool) {
        let limit = MIN_DRAWS.max(wanted as u64 * DRAWS_PER_ADDRESS);
        let (mut found, mut draws) = (0u32, 0u64);
        while found < wanted {
            if draws >= limit {
                return Err(AddressError::Scarce { country, wanted, found, draws });
            }
            draws += 1;
            let ip = Ipv4Addr::from(rng.next_u32());
            if !usable(ip) || used.contains(&ip) {
                continue;
            }
            if geo.lookup(IpAddr::V4(ip)).country == Some(country) {
                used.insert(ip);
                out.push(IpAddr::V4(ip));
                found += 1;
            }
        }
    }
    // Interleave countries so that address i of a pool is not always from the first country.
    rng.shuffle(&mut out);
    Ok(out)
}

/// How many of the pool's addresses each country gets: proportional to weight, remainders to the largest.
fn split(pool: &AddressPool) -> Vec<(CountryCode, u32)> {
    let total: u64 = pool.countries.iter().map(|(_, w)| *w as u64).sum();
    let mut shares: Vec<(CountryCode, u32, u64)> = pool
        .countries
        .iter()
        .map(|(c, w)| {
            let exact = pool.count as u64 * *w as u64;
            (*c, (exact / total) as u32, exact % total)
        })
        .collect();
    let mut left = pool.count - shares.iter().map(|s| s.1).sum::<u32>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for &i in order.iter().cycle().take(shares.len() * 2) {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    shares.into_iter().filter(|s| s.1 > 0).map(|(c, n, _)| (c, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> CountryCode {
        s.parse().unwrap()
    }

    #[test]
    fn weights_split_the_count_exactly() {
        let pool = AddressPool { count: 10, countries: vec![(code("CN"), 2), (code("US"), 1)] };
        let split = split(&pool);
        assert_eq!(split.iter().map(|s| s.1).sum::<u32>(), 10);
        assert_eq!(split[0], (code("CN"), 7));
    }

    #[test]
    fn addresses_land_in_the_wanted_country_and_are_distinct() {
        let Some(path) = default_geoip_path() else { return };
        let geo = GeoDb::open(&path, None).unwrap();
        let pool = AddressPool { count: 50, countries: vec![(code("JP"), 1), (code("BR"), 1)] };
        let mut used = HashSet::new();
        let ips = draw(&pool, &mut Rng::new(3), Some(&geo), &mut used).unwrap();
        assert_eq!(ips.len(), 50);
        assert_eq!(used.len(), 50);
        for ip in &ips {
            let country = geo.lookup(*ip).country.unwrap();
            assert!(country == code("JP") || country == code("BR"), "{ip} is in {country}");
        }
        let again = draw(&pool, &mut Rng::new(3), Some(&geo), &mut HashSet::new()).unwrap();
        assert_eq!(ips, again);
    }
}
