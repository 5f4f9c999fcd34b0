//! [`SharedGeoDb`]: a [`GeoDb`] that can be swapped while requests read it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use super::db::{DbRole, FileStamp, GeoDb, GeoError};

/// A [`GeoDb`] behind an [`ArcSwap`]: readers call [`SharedGeoDb::load`]
/// (wait-free, no refcount traffic in the common case) and keep using the
/// database they got even while a reload swaps in a new one.
///
/// [`SharedGeoDb::reload`] re-opens the same paths; if the new files are
/// missing or corrupt the old database stays in service and the error is
/// returned (and logged) so the caller can report it.
pub struct SharedGeoDb {
    current: ArcSwap<GeoDb>,
    country_path: PathBuf,
    asn_path: Option<PathBuf>,
    /// Serialises reloads so two concurrent ones don't both read the files.
    reload_lock: Mutex<()>,
}

impl std::fmt::Debug for SharedGeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGeoDb")
            .field("country_path", &self.country_path)
            .field("asn_path", &self.asn_path)
            .finish_non_exhaustive()
    }
}

impl SharedGeoDb {
    /// Wraps an opened database; reloads re-open the same paths.
    pub fn new(db: GeoDb) -> SharedGeoDb {
        SharedGeoDb {
            country_path: db.country_path().to_owned(),
            asn_path: db.asn_path().map(|p| p.to_owned()),
            current: ArcSwap::from_pointee(db),
            reload_lock: Mutex::new(()),
        }
    }

    /// Opens the databases and wraps them.
    pub fn open(country_db: &std::path::Path, asn_db: Option<&std::path::Path>) -> Result<SharedGeoDb, GeoError> {
        GeoDb::open(country_db, asn_db).map(SharedGeoDb::new)
    }

    /// The current database, for the request path. Cheap; don't hold the
    /// guard across `.await` for long (use [`SharedGeoDb::snapshot`] then).
    #[inline]
    pub fn load(&self) -> Guard<Arc<GeoDb>> {
        self.current.load()
    }

    /// The current database as an owned `Arc` (one refcount increment).
    pub fn snapshot(&self) -> Arc<GeoDb> {
        self.current.load_full()
    }

    /// Re-opens the same files and swaps them in. On error the old database
    /// stays in service and the error (which says how to fix it) is returned.
    pub fn reload(&self) -> Result<(), GeoError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.reload_locked()
    }

    fn reload_locked(&self) -> Result<(), GeoError> {
        match GeoDb::open(&self.country_path, self.asn_path.as_deref()) {
            Ok(db) => {
                // GeoDb::open logged the new database; the caller logs failures (once per change).
                tracing::debug!(geoip = %db.describe(), "geoip databases reloaded");
                self.current.store(Arc::new(db));
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %e, "geoip reload failed; keeping the previous databases");
                Err(e)
            }
        }
    }

    /// Reloads only if a file's size or modification time changed since the
    /// current database was opened. `Ok(true)`: reloaded; `Ok(false)`:
    /// unchanged. A failed reload keeps the old database and returns the
    /// error; it will be retried on the next call (the stamps stay old).
    pub fn reload_if_changed(&self) -> Result<bool, GeoError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (country_old, asn_old) = self.current.load().stamps();
        let country_now = FileStamp::of(DbRole::Country, &self.country_path);
        let asn_now = self.asn_path.as_deref().map(|p| FileStamp::of(DbRole::Asn, p)).transpose();
        let changed = match (country_now, asn_now) {
            (Ok(c), Ok(a)) => c != country_old || a != asn_old,
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "geoip database file vanished; keeping the previous databases");
                return Err(e);
            }
        };
        if !changed {
            return Ok(false);
        }
        self.reload_locked().map(|()| true)
    }
}
