//! [`GeoDb`]: one country database plus an optional ASN database.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use maxminddb::{MaxMindDbError, Reader};
use serde::Deserialize;

use super::code::CountryCode;
use super::private::is_private;

/// What the gateway needs to know about a client address. `Copy`, no heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct GeoInfo {
    /// Country from the country database (`None`: private, unknown, or no data).
    pub country: Option<CountryCode>,
    /// Autonomous system number, when an ASN database is loaded and knows it.
    pub asn: Option<u32>,
    /// The address is private/loopback/link-local/CGNAT/ULA: no lookup was done.
    pub is_private: bool,
}

/// Which of the two databases a message or error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DbRole {
    /// The country database (required).
    Country,
    /// The optional ASN database.
    Asn,
}

impl DbRole {
    fn hint(self) -> &'static str {
        match self {
            DbRole::Country => {
                "The repository ships one, geoip/country.mmdb (in a packaged install \
                 /usr/share/stuffgate/geoip/country.mmdb): name it in the gateway file's `[geoip] country_db` \
                 (`--db` for `stuffgate geoip lookup`), or a MaxMind GeoLite2-Country or GeoLite2-City .mmdb \
                 (see geoip/README.md). If the shipped file is damaged, `git checkout geoip/country.mmdb` \
                 restores it; `geoip/refresh.sh` fetches a newer one (needs npm and the network)"
            }
            DbRole::Asn => {
                "To get one: download MaxMind GeoLite2-ASN.mmdb (free account) or run \
                 `geoip/refresh.sh --asn` for an ip-location-db ASN .mmdb (see geoip/README.md); \
                 or leave the ASN database unset, it is optional"
            }
        }
    }
}

impl fmt::Display for DbRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbRole::Country => "country",
            DbRole::Asn => "ASN",
        })
    }
}

/// Why a GeoIP database was refused. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file does not exist.
    #[error("GeoIP {role} database {} not found. {}", .path.display(), .role.hint())]
    NotFound {
        /// Which database.
        role: DbRole,
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read GeoIP {role} database {}: {cause}. Check the path and its permissions. {}", .path.display(), .role.hint())]
    Io {
        /// Which database.
        role: DbRole,
        /// The path that was tried.
        path: PathBuf,
        /// The I/O error (shown in the message, so not chained as `source`).
        cause: std::io::Error,
    },
    /// The file is empty.
    #[error("GeoIP {role} database {} is empty (0 bytes), probably an interrupted download. {}", .path.display(), .role.hint())]
    Empty {
        /// Which database.
        role: DbRole,
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file is not a readable MaxMind DB (`.mmdb`) file.
    #[error("GeoIP {role} database {} is not a valid MaxMind DB (.mmdb) file, it may be truncated or corrupt ({cause}). {}", .path.display(), .role.hint())]
    Corrupt {
        /// Which database.
        role: DbRole,
        /// The path that was tried.
        path: PathBuf,
        /// What the reader said (shown in the message, so not chained as `source`).
        cause: MaxMindDbError,
    },
    /// The file is a valid `.mmdb` but of the wrong kind or an unknown schema.
    #[error("GeoIP {role} database {} (database_type {database_type:?}) cannot be used as the {role} database: {problem}. {}", .path.display(), .role.hint())]
    WrongSchema {
        /// Which database.
        role: DbRole,
        /// The path that was tried.
        path: PathBuf,
        /// The file's `database_type` metadata.
        database_type: String,
        /// What is wrong.
        problem: String,
    },
}

/// Size and modification time of a database file, to notice replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    mtime: Option<SystemTime>,
}

impl FileStamp {
    pub(crate) fn of(role: DbRole, path: &Path) -> Result<FileStamp, GeoError> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(FileStamp { len: m.len(), mtime: m.modified().ok() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(GeoError::NotFound { role, path: path.to_owned() })
            }
            Err(e) => Err(GeoError::Io { role, path: path.to_owned(), cause: e }),
        }
    }
}

// ---- record schemas (borrowed, no allocation) -------------------------------

/// `{"iso_code": "US", ...}` inside MaxMind's `country`/`registered_country`.
#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

/// Country record, both schemas:
/// ip-location-db `{"country_code": "US"}` and MaxMind GeoIP2/GeoLite2
/// Country/City `{"country": {"iso_code": "US"}, "registered_country": {...}}`.
/// Unknown fields (names, city, location, ...) are skipped without decoding.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
}

/// Which field answered a country lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CountryField {
    /// ip-location-db: top-level `country_code`.
    CountryCode,
    /// MaxMind: `country.iso_code`.
    CountryIsoCode,
    /// MaxMind fallback: `registered_country.iso_code`.
    RegisteredCountryIsoCode,
}

impl CountryField {
    /// The field path as written in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CountryField::CountryCode => "country_code",
            CountryField::CountryIsoCode => "country.iso_code",
            CountryField::RegisteredCountryIsoCode => "registered_country.iso_code",
        }
    }
}

impl CountryRecord<'_> {
    fn code(&self) -> Option<(CountryCode, CountryField)> {
        let iso = |c: &Option<IsoCode<'_>>| c.as_ref().and_then(|c| c.iso_code).and_then(CountryCode::from_db);
        if let Some(c) = self.country_code.and_then(CountryCode::from_db) {
            return Some((c, CountryField::CountryCode));
        }
        if let Some(c) = iso(&self.country) {
            return Some((c, CountryField::CountryIsoCode));
        }
        iso(&self.registered_country).map(|c| (c, CountryField::RegisteredCountryIsoCode))
    }
}

/// ASN number only (hot path: the organisation string is skipped).
#[derive(Deserialize)]
struct AsnNumber {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

/// ASN record, MaxMind GeoLite2-ASN and ip-location-db ASN files alike.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

// ---- one open file ------------------------------------------------------------

struct DbFile {
    role: DbRole,
    path: PathBuf,
    stamp: FileStamp,
    reader: Reader<Vec<u8>>,
}

impl DbFile {
    fn open(role: DbRole, path: &Path) -> Result<DbFile, GeoError> {
        // Stamp before reading: if the file is replaced mid-read the stamp is
        // the older one and the next reload_if_changed() picks up the new file.
        let stamp = FileStamp::of(role, path)?;
        if stamp.len == 0 {
            return Err(GeoError::Empty { role, path: path.to_owned() });
        }
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GeoError::NotFound { role, path: path.to_owned() },
            _ => GeoError::Io { role, path: path.to_owned(), cause: e },
        })?;
        if bytes.is_empty() {
            return Err(GeoError::Empty { role, path: path.to_owned() });
        }
        let reader =
            Reader::from_source(bytes).map_err(|cause| GeoError::Corrupt { role, path: path.to_owned(), cause })?;
        let f = DbFile { role, path: path.to_owned(), stamp, reader };
        f.check_schema()?;
        Ok(f)
    }

    fn wrong(&self, problem: String) -> GeoError {
        GeoError::WrongSchema {
            role: self.role,
            path: self.path.clone(),
            database_type: self.reader.metadata().database_type.clone(),
            problem,
        }
    }

    /// Refuses files of the other kind and files whose records carry none of
    /// the fields we read; decodes a sample of records so a corrupt data
    /// section is noticed now rather than on the request path.
    fn check_schema(&self) -> Result<(), GeoError> {
        let ty = self.reader.metadata().database_type.to_ascii_lowercase();
        match self.role {
            DbRole::Country if ty.contains("asn") && !ty.contains("country") => {
                return Err(self.wrong(
                    "it is an ASN database; name it as the ASN database instead (`asn_db`, or --asn-db)".into(),
                ));
            }
            DbRole::Asn if ty.contains("country") || ty.contains("city") => {
                return Err(self.wrong(
                    "it is a country/city database; name it as the country database instead (`country_db`, or --db)"
                        .into(),
                ));
            }
            _ => {}
        }
        const SAMPLE: usize = 64;
        let corrupt = |cause: MaxMindDbError| GeoError::Corrupt { role: self.role, path: self.path.clone(), cause };
        let (mut with_data, mut understood) = (0usize, 0usize);
        for item in self.reader.networks(Default::default()).map_err(corrupt)?.take(SAMPLE) {
            let res = item.map_err(corrupt)?;
            if !res.has_data() {
                continue;
            }
            with_data += 1;
            let ok = match self.role {
                DbRole::Country => {
                    res.decode::<CountryRecord<'_>>().map_err(corrupt)?.is_some_and(|r| r.code().is_some())
                }
                DbRole::Asn => res
                    .decode::<AsnRecord<'_>>()
                    .map_err(corrupt)?
                    .is_some_and(|r| r.autonomous_system_number.is_some()),
            };
            understood += usize::from(ok);
        }
        if with_data > 0 && understood == 0 {
            let fields = match self.role {
                DbRole::Country => {
                    "country_code (ip-location-db) or country.iso_code / registered_country.iso_code (MaxMind)"
                }
                DbRole::Asn => "autonomous_system_number",
            };
            return Err(self.wrong(format!(
                "none of the first {with_data} records has a {fields} field, so this schema is not supported"
            )));
        }
        Ok(())
    }

    /// The raw lookup; `None` when the address is not in the tree or the
    /// family does not fit (IPv6 in an IPv4-only file).
    #[inline]
    fn find(&self, ip: IpAddr, errors: &AtomicU64) -> Option<maxminddb::LookupResult<'_, Vec<u8>>> {
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return None;
        }
        match self.reader.lookup(ip) {
            Ok(r) if r.has_data() => Some(r),
            Ok(_) => None,
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%ip, db = %self.path.display(), error = %e, "geoip lookup failed");
                None
            }
        }
    }

    fn decode<'a, T: Deserialize<'a>>(
        &self,
        r: &maxminddb::LookupResult<'a, Vec<u8>>,
        ip: IpAddr,
        errors: &AtomicU64,
    ) -> Option<T> {
        match r.decode::<T>() {
            Ok(v) => v,
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%ip, db = %self.path.display(), error = %e, "geoip record decode failed");
                None
            }
        }
    }

    fn describe(&self) -> String {
        let m = self.reader.metadata();
        format!(
            "{} db {}: type {:?}, IPv{} tree, {} nodes, built {} (epoch {}), {} bytes",
            self.role,
            self.path.display(),
            m.database_type,
            m.ip_version,
            m.node_count,
            fmt_epoch(m.build_epoch),
            m.build_epoch,
            self.stamp.len
        )
    }

    fn source_label(&self) -> String {
        format!("{} ({})", self.path.display(), self.reader.metadata().database_type)
    }
}

// ---- GeoDb ----------------------------------------------------------------------

/// A country database and an optional ASN database, loaded into memory.
///
/// `Send + Sync`; lookups take `&self` and never block. Replace it at run time
/// through [`super::SharedGeoDb`].
pub struct GeoDb {
    country: DbFile,
    asn: Option<DbFile>,
    errors: AtomicU64,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("country_db", &self.country.path)
            .field("asn_db", &self.asn.as_ref().map(|a| &a.path))
            .finish_non_exhaustive()
    }
}

/// Everything known about one address, for the CLI and for debugging.
/// Allocates; use [`GeoDb::lookup`] on the request path.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GeoDetails {
    /// The address as looked up (IPv4-mapped IPv6 is converted to IPv4).
    pub ip: IpAddr,
    /// Country code, if known.
    pub country: Option<CountryCode>,
    /// Autonomous system number, if known.
    pub asn: Option<u32>,
    /// Autonomous system organisation, if known.
    pub asn_org: Option<String>,
    /// Private/loopback/link-local/CGNAT/ULA address: no lookup was done.
    pub is_private: bool,
    /// The database network that contains the address, e.g. `8.8.0.0/15`.
    pub country_network: Option<String>,
    /// Which file and field answered the country, e.g.
    /// `geoip/country.mmdb (country ipvAll) field country_code`.
    pub country_source: Option<String>,
    /// The ASN database network that contains the address.
    pub asn_network: Option<String>,
    /// Which file answered the ASN.
    pub asn_source: Option<String>,
}

impl GeoDb {
    /// Opens the country database and, optionally, an ASN database.
    ///
    /// Accepted: ip-location-db country files (`country_code`), MaxMind
    /// GeoIP2/GeoLite2 Country and City (`country.iso_code`, falling back to
    /// `registered_country.iso_code`); ASN files with
    /// `autonomous_system_number`/`autonomous_system_organization` (MaxMind
    /// GeoLite2-ASN, ip-location-db ASN). Missing, empty, corrupt or wrong-kind
    /// files are refused with a [`GeoError`] saying how to get a good one.
    pub fn open(country_db: &Path, asn_db: Option<&Path>) -> Result<GeoDb, GeoError> {
        let country = DbFile::open(DbRole::Country, country_db)?;
        let asn = asn_db.map(|p| DbFile::open(DbRole::Asn, p)).transpose()?;
        let db = GeoDb { country, asn, errors: AtomicU64::new(0) };
        tracing::info!(geoip = %db.describe(), "geoip databases loaded");
        Ok(db)
    }

    /// Looks an address up. The hot path: no allocation of its own (the
    /// records are decoded into borrowed structs), no locking.
    ///
    /// Private/loopback/link-local/CGNAT/ULA addresses (see
    /// [`super::is_private`]) return `is_private: true` and no country without
    /// touching the database. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is looked up
    /// as IPv4. Lookup or decode errors (a corrupt record) are counted in
    /// [`GeoDb::lookup_errors`] and yield `None` fields.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let ip = ip.to_canonical();
        if is_private(ip) {
            return GeoInfo { is_private: true, ..GeoInfo::default() };
        }
        let country = self.country.find(ip, &self.errors).and_then(|r| {
            self.country.decode::<CountryRecord<'_>>(&r, ip, &self.errors).and_then(|rec| rec.code()).map(|(c, _)| c)
        });
        let asn = self.asn.as_ref().and_then(|a| {
            a.find(ip, &self.errors)
                .and_then(|r| a.decode::<AsnNumber>(&r, ip, &self.errors))
                .and_then(|rec| rec.autonomous_system_number)
        });
        GeoInfo { country, asn, is_private: false }
    }

    /// Like [`GeoDb::lookup`] but with the ASN organisation, the matching
    /// networks and which file/field answered. Allocates: CLI and debugging.
    pub fn lookup_details(&self, ip: IpAddr) -> GeoDetails {
        let ip = ip.to_canonical();
        let mut d = GeoDetails {
            ip,
            country: None,
            asn: None,
            asn_org: None,
            is_private: is_private(ip),
            country_network: None,
            country_source: None,
            asn_network: None,
            asn_source: None,
        };
        if d.is_private {
            return d;
        }
        if let Some(r) = self.country.find(ip, &self.errors) {
            d.country_network = r.network().ok().map(|n| n.to_string());
            if let Some((c, field)) =
                self.country.decode::<CountryRecord<'_>>(&r, ip, &self.errors).and_then(|rec| rec.code())
            {
                d.country = Some(c);
                d.country_source = Some(format!("{} field {}", self.country.source_label(), field.as_str()));
            }
        }
        if let Some(a) = &self.asn {
            if let Some(r) = a.find(ip, &self.errors) {
                d.asn_network = r.network().ok().map(|n| n.to_string());
                if let Some(rec) = a.decode::<AsnRecord<'_>>(&r, ip, &self.errors) {
                    d.asn = rec.autonomous_system_number;
                    d.asn_org = rec.autonomous_system_organization.map(str::to_owned);
                    if d.asn.is_some() {
                        d.asn_source = Some(a.source_label());
                    }
                }
            }
        }
        d
    }

    /// One line for logs and the CLI: which files, their `database_type`,
    /// IP version, build date/epoch and size.
    pub fn describe(&self) -> String {
        let asn = match &self.asn {
            Some(a) => a.describe(),
            None => "ASN db: none".to_owned(),
        };
        format!("{}; {}", self.country.describe(), asn)
    }

    /// Path of the country database.
    pub fn country_path(&self) -> &Path {
        &self.country.path
    }

    /// Path of the ASN database, if one is loaded.
    pub fn asn_path(&self) -> Option<&Path> {
        self.asn.as_ref().map(|a| a.path.as_path())
    }

    /// Metadata of the country database (`database_type`, `build_epoch`, ...).
    pub fn country_metadata(&self) -> &maxminddb::Metadata {
        self.country.reader.metadata()
    }

    /// Metadata of the ASN database, if one is loaded.
    pub fn asn_metadata(&self) -> Option<&maxminddb::Metadata> {
        self.asn.as_ref().map(|a| a.reader.metadata())
    }

    /// How many lookups hit a lookup/decode error (corrupt records) since
    /// this database was opened. Export it as a metric.
    pub fn lookup_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn stamps(&self) -> (FileStamp, Option<FileStamp>) {
        (self.country.stamp, self.asn.as_ref().map(|a| a.stamp))
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds (no date crate needed).
pub(crate) fn fmt_epoch(epoch: u64) -> String {
    let days = i64::try_from(epoch / 86_400).unwrap_or(i64::MAX / 2);
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, (secs % 3600) / 60, secs % 60)
}
