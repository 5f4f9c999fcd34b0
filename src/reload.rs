//! Hot reload: parse → validate → compile → atomic swap. A policy that fails any step is logged with file, line and
//! key, counted, and the running policy keeps serving. Defenses whose parameters did not change keep their state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::config::{compile_policies, ConfigError, Policy, Services};
use crate::telemetry::metrics;

pub struct PolicyHandle {
    current: ArcSwap<Policy>,
    /// The policy files, in merge order; a gateway-file reload may replace the list (see [`Self::replace_files`]).
    files: Mutex<Vec<PathBuf>>,
    env: Services,
    /// (modified time, length) of each file when last loaded, to notice edits by polling.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
    /// Serialises reloads (SIGHUP and the poller may fire together).
    reloading: Mutex<()>,
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl PolicyHandle {
    /// Load the first policy; any error here stops start-up.
    pub fn load(files: Vec<PathBuf>, env: Services) -> Result<PolicyHandle, ConfigError> {
        let stamps = files.iter().map(stamp).collect();
        let policy = compile_policies(&files, &env, None)?;
        metrics::ROUTES.set(policy.routes.len() as i64);
        env.decisions.address_blocks.policy_loaded(&policy);
        Ok(PolicyHandle {
            current: ArcSwap::from_pointee(policy),
            files: Mutex::new(files),
            env,
            stamps: Mutex::new(stamps),
            reloading: Mutex::new(()),
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Borrow the current policy without touching its reference count (the per-request fast path).
    pub fn peek(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.current.load()
    }

    pub fn env(&self) -> &Services {
        &self.env
    }

    /// Recompile from the files and swap. On error the old policy stays.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let files = self.files.lock().clone();
        self.load_files(files, false)
    }

    /// Serve the policies of another list of files (the gateway file's `policies` changed). Compiled before anything
    /// changes: on error the running files and policy stay.
    pub fn replace_files(&self, files: Vec<PathBuf>) -> Result<(), ConfigError> {
        self.load_files(files, true)
    }

    /// The policy files in merge order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.lock().clone()
    }

    fn load_files(&self, files: Vec<PathBuf>, replace: bool) -> Result<(), ConfigError> {
        let _one_at_a_time = self.reloading.lock();
        let stamps: Vec<_> = files.iter().map(stamp).collect();
        let previous = self.current.load_full();
        let result = compile_policies(&files, &self.env, Some(&previous));
        if replace && result.is_ok() {
            *self.files.lock() = files;
        }
        if !replace || result.is_ok() {
            *self.stamps.lock() = stamps;
        }
        match result {
            Ok(policy) => {
                let routes = policy.routes.len();
                metrics::ROUTES.set(routes as i64);
                self.env.decisions.address_blocks.policy_loaded(&policy);
                self.current.store(Arc::new(policy));
                metrics::RELOADS.with_label_values(&["ok"]).inc();
                tracing::info!(routes, "policy reloaded");
                Ok(())
            }
            Err(error) => {
                metrics::RELOADS.with_label_values(&["error"]).inc();
                tracing::error!(
                    file = %error.file.display(),
                    line = error.line,
                    key = error.key.as_deref().unwrap_or(""),
                    error = %error,
                    "policy reload refused; the previous policy keeps serving"
                );
                Err(error)
            }
        }
    }

    /// Reload when any policy file's modification time or length changed since the last load.
    pub fn reload_if_changed(&self) -> Option<Result<(), ConfigError>> {
        let now: Vec<_> = self.files.lock().iter().map(stamp).collect();
        if *self.stamps.lock() == now {
            return None;
        }
        Some(self.reload())
    }

    /// Prune the state store and publish the tracked-key gauges.
    pub fn maintain(&self) {
        let now = self.env.clock.now_nanos();
        self.env.store.prune(now);
        self.env.attack.tick(now);
        for (kind, records) in self.env.store.tracked_keys() {
            metrics::TRACKED_KEYS.with_label_values(&[kind.as_str()]).set(records as i64);
        }
    }
}
