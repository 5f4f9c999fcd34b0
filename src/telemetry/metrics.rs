//! Prometheus metrics in the default registry (served on the admin listener).

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, HistogramVec, IntCounterVec, IntGaugeVec,
};

/// Registration only fails on a duplicate name, which is a programming error caught by any test.
fn registered<T>(result: prometheus::Result<T>) -> T {
    #[allow(clippy::expect_used)]
    result.expect("metric names are unique")
}

/// Protected requests by country: bounded (~250 codes plus "private" and "unknown"), never per address. Counted per
/// thread (see `sharded.rs`): each thread counts into cells of its own, cached by label set.
static REQUESTS_BY_COUNTRY: LazyLock<&'static super::sharded::ThreadCounterVec> = LazyLock::new(|| {
    super::sharded::ThreadCounterVec::register(
        "stuffgate_requests_by_country_total",
        "Protected requests by route, client country (ISO code, private or unknown) and final verdict.",
        &["route", "country", "verdict"],
    )
});

/// Count one protected request by country. A per-thread cache holds this thread's cell of each label set, so a
/// request costs a map lookup and an add no other thread makes. Bounded: cleared past 4,096 entries (labels are
/// bounded too: routes x ~250 countries x verdicts); a cleared cell's count is kept (see `ThreadCounterVec`).
pub fn count_by_country(route: &str, country: &str, verdict: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    type Entry = (Box<str>, std::sync::Arc<AtomicU64>);
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<(usize, u64, usize), Entry>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    if country.len() > 8 {
        REQUESTS_BY_COUNTRY.cell(&[route, country, verdict]).fetch_add(1, Relaxed);
        return;
    }
    let mut packed = [0u8; 8];
    packed[..country.len()].copy_from_slice(country.as_bytes());
    // The route name's address tells routes apart; its text is compared too, since a reloaded policy may reuse it.
    let key = (route.as_ptr() as usize, u64::from_le_bytes(packed), verdict.as_ptr() as usize);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((name, cell)) = cache.get(&key) {
            if **name == *route {
                cell.fetch_add(1, Relaxed);
                return;
            }
        }
        if cache.len() >= 4096 {
            cache.clear();
        }
        let cell = REQUESTS_BY_COUNTRY.cell(&[route, country, verdict]);
        cell.fetch_add(1, Relaxed);
        cache.insert(key, (route.into(), cell));
    });
}

/// What each defense found, by the action it led to and mode: observe-mode hits show here without blocking.
pub static FINDINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_defense_findings_total",
        "Defense findings by route, defense, action (block, challenge, tag, trusted) and mode (enforce, observe).",
        &["route", "defense", "action", "mode"]
    ))
});

/// Protected requests whose body did not give the route's fields: a misspelt `body.account` shows here (route
/// matched, field missing) whether the request was refused or let through.
pub static BODY_PROBLEMS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_body_problems_total",
        "Protected requests whose body did not give the route's fields, by route, problem (e.g. no_account_field) \
         and handling (refused; forwarded: observe mode or on_bad_body = \"forward\").",
        &["route", "problem", "handling"]
    ))
});

/// Records the store holds per key kind: the gauge that shows memory staying bounded under a flood of distinct keys.
pub static TRACKED_KEYS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    registered(register_int_gauge_vec!(
        "stuffgate_tracked_keys",
        "Records held in the state store, by key kind (address, account, account_address, password, session, device).",
        &["kind"]
    ))
});

/// Phases decided without the store's answer (it failed or timed out): the local decision stood.
pub static STORE_FALLBACKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_store_fallbacks_total",
        "Decision phases that went on without the state store's answer, by reason (timeout, error, breaker_open).",
        &["reason"]
    ))
});

pub static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_policy_reloads_total",
        "Policy reload attempts by result (ok, error).",
        &["result"]
    ))
});

/// Routes the serving policy protects: 0 means every request passes unchecked.
pub static ROUTES: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    registered(prometheus::register_int_gauge!(
        "stuffgate_routes",
        "Routes the serving policy protects (0: the gateway is a plain proxy)."
    ))
});

/// Requests that failed on the way to the upstream, by kind (connect_refused, connect_timeout, connect_error,
/// timeout, closed, bad_response, other): an upstream that is down shows here, not only as client-side 502s.
pub static UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_upstream_errors_total",
        "Requests the upstream failed, by kind; the client got the gateway's 502 or 504 answer.",
        &["kind"]
    ))
});

/// The site-wide attack mode level (see `crate::attack`).
pub static ATTACK_MODE: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    registered(prometheus::register_int_gauge!(
        "stuffgate_attack_mode",
        "Site-wide attack mode level: 0 off, 1 elevated, 2 high (the operator's override included)."
    ))
});

/// Client connections open now (admitted by the connection caps).
pub static OPEN_CONNECTIONS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    registered(prometheus::register_int_gauge!(
        "stuffgate_open_connections",
        "Client connections currently open on the proxy listeners."
    ))
});

/// Seconds until each TLS listener certificate expires (negative once expired), refreshed on every file check.
pub static TLS_CERT_EXPIRY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    registered(register_int_gauge_vec!(
        "stuffgate_tls_cert_expiry_seconds",
        "Seconds until a TLS listener's certificate expires (negative: expired), by listener and certificate name.",
        &["listener", "certificate"]
    ))
});

/// Connections refused at accept, by the cap that refused them.
pub static CONNECTIONS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_connections_refused_total",
        "Client connections refused at accept: over a cap and answered 503 (max_connections, \
         max_connections_per_client, admin_max_connections), or closed at once for an address the policy blocks \
         (blocked_address).",
        &["reason"]
    ))
});

/// Connections closed by the gateway between requests, by reason.
pub static CONNECTIONS_CLOSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_connections_closed_total",
        "Client connections closed by the gateway (idle_timeout, header_timeout, header_too_large, body_timeout, \
         proxy_header; admin_* on the admin listener).",
        &["reason"]
    ))
});

/// A route's per-request metrics: requests by verdict, upstream outcomes and the decision-time histogram
/// (`stuffgate_requests_total`, `stuffgate_upstream_outcomes_total`, `stuffgate_decision_seconds`), written per
/// thread and summed at scrape time (see `sharded.rs`).
pub struct RouteMetrics {
    counters: std::sync::Arc<super::sharded::RouteCounters>,
}

pub use super::sharded::{OUTCOME_LABELS, VERDICT_LABELS};

impl RouteMetrics {
    pub fn new(route: &str) -> RouteMetrics {
        RouteMetrics { counters: super::sharded::RouteCounters::register(route) }
    }

    /// Count a request by its final verdict (one of [`VERDICT_LABELS`]).
    pub fn request(&self, verdict: &str) {
        self.counters.request(VERDICT_LABELS.iter().position(|v| *v == verdict).unwrap_or(0));
    }

    /// Count the upstream's answer by its index in [`OUTCOME_LABELS`] (an `Outcome` as `usize`).
    pub fn outcome(&self, outcome: usize) {
        self.counters.outcome(outcome);
    }

    pub fn decision_micros(&self, micros: u64) {
        self.counters.decision_micros(micros);
    }
}

/// A slot's findings counters (its action and mode are fixed per compiled slot; trust is counted apart).
pub struct SlotMetrics {
    pub hit: prometheus::IntCounter,
    pub trusted: prometheus::IntCounter,
}

impl SlotMetrics {
    pub fn new(route: &str, defense: &str, action: &str, mode: &str) -> SlotMetrics {
        SlotMetrics {
            hit: FINDINGS.with_label_values(&[route, defense, action, mode]),
            trusted: FINDINGS.with_label_values(&[route, defense, "trusted", mode]),
        }
    }
}

/// Shared state (Redis): the round trip of a decision phase's reads, by phase (address, credentials).
pub static SHARED_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    registered(register_histogram_vec!(
        "stuffgate_shared_store_seconds",
        "Round trip of a decision phase's reads to the shared state store, by phase (address, credentials).",
        &["phase"],
        vec![0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1]
    ))
});

/// Shared state: writes that never reached the store, by reason (queue_full, breaker_open, error, timeout).
pub static SHARED_WRITES_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_shared_writes_dropped_total",
        "Writes to the shared state store dropped, by reason (queue_full, breaker_open, error, timeout); the local \
         store still has them.",
        &["reason"]
    ))
});

/// Shared state: writes the store accepted.
pub static SHARED_WRITES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    registered(prometheus::register_int_counter!(
        "stuffgate_shared_writes_total",
        "Writes the shared state store accepted (sent in batches behind the answers)."
    ))
});

/// Shared state: 1 while the store is connected and its breaker closed.
pub static SHARED_STORE_UP: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    registered(prometheus::register_int_gauge!(
        "stuffgate_shared_store_up",
        "1 while the shared state store is connected and its circuit breaker is closed; 0 while decisions use local \
         state only."
    ))
});
