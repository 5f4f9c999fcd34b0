//! GeoIP: country (and optional ASN) of a client address from MaxMind DB
//! (`.mmdb`) files.
//!
//! ```text
//! GeoDb::open(country.mmdb, Some(asn.mmdb))     refuses missing/corrupt/wrong-kind files
//!   └─ SharedGeoDb::new(db)                       arc-swap; reload()/reload_if_changed()
//!        └─ shared.load().lookup(ip) -> GeoInfo   hot path: Copy result, no allocation
//! ```
//!
//! Schemas understood (decoded into borrowed structs, unknown fields skipped):
//! - ip-location-db country files (the shipped `geoip/country.mmdb`):
//!   `{"country_code": "JP"}`;
//! - MaxMind GeoIP2/GeoLite2 Country and City: `country.iso_code`, falling
//!   back to `registered_country.iso_code`;
//! - ASN files, MaxMind GeoLite2-ASN and ip-location-db ASN alike:
//!   `autonomous_system_number`, `autonomous_system_organization`.
//!
//! Private, loopback, link-local, CGNAT (100.64/10) and ULA addresses are
//! answered as `is_private` without a lookup (see [`is_private`]).
//! See `geoip/README.md` for the shipped data, its licence and refreshing it.

pub mod cli;
mod code;
mod db;
mod private;
mod shared;
#[cfg(test)]
pub(crate) mod writer;

#[cfg(test)]
mod tests;

pub use code::{CountryCode, InvalidCountryCode};
pub use db::{CountryField, DbRole, GeoDb, GeoDetails, GeoError, GeoInfo};
pub use private::is_private;
pub use shared::SharedGeoDb;

/// Default path of the shipped country database, relative to the working
/// directory (the repository root when run from a checkout).
pub const DEFAULT_COUNTRY_DB: &str = "geoip/country.mmdb";
