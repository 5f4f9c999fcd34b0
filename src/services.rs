//! The services a policy's defenses share with the running gateway (see [`Services`]).

use std::sync::Arc;

use crate::breach::FilterKind;
use crate::clock::Clock;
use crate::defense::breach::SharedFilter;
use crate::geoip::SharedGeoDb;
use crate::keys::KeyHasher;
use crate::store::{LocalStore, Store};

/// The services compiled defenses share with the running gateway, read on the hot path: clock, store, key hasher,
/// data files, challenge keys, decisions and the attack monitor. Built once at start; a policy reload compiles
/// against the same services.
#[derive(Clone)]
pub struct Services {
    pub clock: Clock,
    /// Where every defense keeps its state.
    pub store: Arc<dyn Store>,
    /// Turns addresses, accounts, passwords and sessions into store keys.
    pub keys: KeyHasher,
    /// Records the local store keeps per key kind.
    pub max_tracked_keys: usize,
    /// The GeoIP database the engine locates addresses with; geo defenses need one to serve.
    pub geo: Option<Arc<SharedGeoDb>>,
    /// Breached-password and leaked-pair filters, for the breach defenses.
    pub breached_passwords: Option<Arc<SharedFilter>>,
    pub leaked_pairs: Option<Arc<SharedFilter>>,
    /// False for `stuffgate check`: validate defenses that need data files without those files.
    pub require_data: bool,
    /// Challenge and device-token keys and settings (the gateway file's `[challenge]`; random keys without one).
    pub challenge: Arc<crate::challenge::ChallengeConfig>,
    /// Penalties in force and manual bans, for operators (see `crate::decisions`).
    pub decisions: Arc<crate::decisions::Decisions>,
    /// The site-wide attack mode (see `crate::attack`).
    pub attack: Arc<crate::attack::AttackMonitor>,
}

impl Services {
    /// A local store of `max_tracked_keys` records per key kind, and a random key secret (see [`Self::with_secret`]).
    pub fn new(clock: Clock, max_tracked_keys: usize) -> Services {
        Services {
            clock,
            store: Arc::new(LocalStore::new(max_tracked_keys)),
            keys: KeyHasher::random(),
            max_tracked_keys,
            geo: None,
            breached_passwords: None,
            leaked_pairs: None,
            require_data: true,
            challenge: Arc::new(crate::challenge::ChallengeConfig::default()),
            decisions: crate::decisions::Decisions::new(),
            attack: Arc::new(crate::attack::AttackMonitor::default()),
        }
    }

    pub fn with_geo(mut self, geo: Option<Arc<SharedGeoDb>>) -> Services {
        self.geo = geo;
        self
    }

    /// Key the store under a configured secret: stable across restarts (and across gateways sharing it).
    pub fn with_secret(mut self, secret: &[u8]) -> Services {
        self.keys = KeyHasher::from_secret(secret);
        self
    }

    /// Load the breach filters a gateway file names.
    pub fn open_breach_filters(
        &mut self,
        passwords: Option<&std::path::Path>,
        pairs: Option<&std::path::Path>,
    ) -> Result<(), crate::defense::breach::FilterLoadError> {
        if let Some(path) = passwords {
            self.breached_passwords = Some(Arc::new(SharedFilter::open(path, FilterKind::Password)?));
        }
        if let Some(path) = pairs {
            self.leaked_pairs = Some(Arc::new(SharedFilter::open(path, FilterKind::Pair)?));
        }
        Ok(())
    }
}
