//! The per-request metrics of protected routes, written by each worker thread on cache lines of its own and summed
//! when Prometheus scrapes.
//!
//! Every protected request bumps its route's verdict and outcome counters and the decision-time histogram. As
//! `prometheus` counters those are atomics every core writes: a line moves between cores on each write. Measured on
//! the 2-core machine (`cargo bench --bench contention`, `cargo bench --bench pipeline -- telemetry`), those three
//! updates cost ~40 ns a request from one thread and ~360-390 ns from two threads making them at once; these shards,
//! 37 ns either way. Here a thread writes only its own shard, with relaxed atomic adds that never contend; a scrape
//! adds the shards up. The exposition (names, help, labels, buckets) is what the `prometheus` vectors gave before.
//!
//! Routes come and go with policy reloads: the registry keeps every route's shards, and folds those no policy holds
//! any more into retired totals at the next scrape or registration, so counters never go backwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

pub const VERDICT_LABELS: [&str; 6] = ["allow", "tag", "challenge", "block", "bad_request", "too_large"];
pub const OUTCOME_LABELS: [&str; 3] = ["success", "failure", "other"];
/// The decision-time histogram's upper bounds, in microseconds (10 µs to 100 ms).
const BUCKETS_MICROS: [u64; 9] = [10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000];

/// Enough shards for a thread each on the machines a gateway runs on; threads beyond share (still correct).
const SHARDS: usize = 32;

/// Where each count sits, in a thread's shard and in a route's totals alike: requests by verdict, upstream outcomes,
/// decision times by bucket (not cumulative; the last is the overflow bucket), then the count and the sum of decision
/// times in microseconds.
const REQUESTS: usize = 0;
const OUTCOMES: usize = REQUESTS + VERDICT_LABELS.len();
const BUCKETS: usize = OUTCOMES + OUTCOME_LABELS.len();
const COUNT: usize = BUCKETS + BUCKETS_MICROS.len() + 1;
const SUM_MICROS: usize = COUNT + 1;
const SLOTS: usize = SUM_MICROS + 1;

/// One thread's counts for one route. 21 words: it fits the 256 bytes it is aligned to, so no two threads' shards
/// share a cache line (nor the adjacent line the prefetcher pairs with it).
#[repr(align(256))]
#[derive(Default)]
struct Shard([AtomicU64; SLOTS]);
const _: () = assert!(std::mem::size_of::<Shard>() == 256, "a shard is one 256-byte block");

/// A route's shards.
pub struct RouteCounters {
    route: Box<str>,
    shards: Box<[Shard]>,
}

/// Plain totals of one route (summed shards, or what retired routes of that name counted), laid out as a shard.
type Totals = [u64; SLOTS];

fn add(into: &mut Totals, from: &Totals) {
    into.iter_mut().zip(from).for_each(|(into, from)| *into += from);
}

thread_local! {
    /// This thread's shard, handed out in turn.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

impl RouteCounters {
    /// The counters of a route, registered for scraping (one set per compiled route; a reload makes new ones).
    pub fn register(route: &str) -> Arc<RouteCounters> {
        register();
        let counters =
            Arc::new(RouteCounters { route: route.into(), shards: (0..SHARDS).map(|_| Shard::default()).collect() });
        let mut registry = lock(&REGISTRY.routes);
        registry.retire_unused();
        registry.live.push(counters.clone());
        counters
    }

    /// Add one to a count of this thread's shard.
    fn bump(&self, slot: usize, by: u64) {
        self.shards[SHARD.with(|s| *s)].0[slot].fetch_add(by, Relaxed);
    }

    /// Count a request by its verdict's index in [`VERDICT_LABELS`].
    pub fn request(&self, verdict: usize) {
        self.bump(REQUESTS + verdict.min(OUTCOMES - REQUESTS - 1), 1);
    }

    /// Count an upstream outcome by its index in [`OUTCOME_LABELS`].
    pub fn outcome(&self, outcome: usize) {
        self.bump(OUTCOMES + outcome.min(BUCKETS - OUTCOMES - 1), 1);
    }

    /// Record the time a decision took.
    pub fn decision_micros(&self, micros: u64) {
        let bucket = BUCKETS_MICROS.iter().position(|&upper| micros <= upper).unwrap_or(BUCKETS_MICROS.len());
        self.bump(BUCKETS + bucket, 1);
        self.bump(COUNT, 1);
        self.bump(SUM_MICROS, micros);
    }

    fn totals(&self) -> Totals {
        let mut totals = [0; SLOTS];
        for shard in self.shards.iter() {
            totals.iter_mut().zip(&shard.0).for_each(|(total, count)| *total += count.load(Relaxed));
        }
        totals
    }
}

#[derive(Default)]
struct Routes {
    live: Vec<Arc<RouteCounters>>,
    /// What routes no policy holds any more counted, by route name.
    retired: BTreeMap<Box<str>, Totals>,
}

impl Routes {
    /// Fold the counters only this registry still holds into the retired totals. Nothing else can reach them, so
    /// nothing can count into them after this. A route that never counted anything leaves nothing behind (a policy
    /// compiled and dropped without traffic, as `stuffgate check` and the fuzzers do, would otherwise add a name).
    fn retire_unused(&mut self) {
        let Routes { live, retired } = self;
        live.retain(|counters| {
            if Arc::strong_count(counters) > 1 {
                return true;
            }
            let totals = counters.totals();
            if totals.iter().any(|&n| n > 0) {
                add(retired.entry(counters.route.clone()).or_default(), &totals);
            }
            false
        });
    }
}

/// The registry, also the collector the default Prometheus registry scrapes.
struct Registry {
    routes: Mutex<Routes>,
    descs: [Desc; 3],
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    routes: Mutex::new(Routes::default()),
    descs: [
        desc(REQUESTS_NAME, REQUESTS_HELP, &["route", "verdict"]),
        desc(OUTCOMES_NAME, OUTCOMES_HELP, &["route", "outcome"]),
        desc(DECISION_NAME, DECISION_HELP, &["route"]),
    ],
});

const REQUESTS_NAME: &str = "stuffgate_requests_total";
const REQUESTS_HELP: &str =
    "Protected requests by route and final verdict (allow, tag, challenge, block, bad_request, too_large).";
const OUTCOMES_NAME: &str = "stuffgate_upstream_outcomes_total";
const OUTCOMES_HELP: &str = "Outcomes of forwarded protected requests (success, failure, other).";
const DECISION_NAME: &str = "stuffgate_decision_seconds";
const DECISION_HELP: &str = "Time the gateway spent deciding on a protected request, body read included.";

fn desc(name: &str, help: &str, labels: &[&str]) -> Desc {
    #[allow(clippy::expect_used)] // fixed, valid names: any test catches a typo
    Desc::new(name.into(), help.into(), labels.iter().map(|l| l.to_string()).collect(), Default::default())
        .expect("valid metric description")
}

/// Register the route registry with the default Prometheus registry (once; later calls do nothing).
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| register_static(&*REGISTRY));
}

/// Hand a collector that lives in a static to the default Prometheus registry (which takes its collectors boxed).
fn register_static<T: Collector>(collector: &'static T) {
    struct Static<T: 'static>(&'static T);
    impl<T: Collector> Collector for Static<T> {
        fn desc(&self) -> Vec<&Desc> {
            self.0.desc()
        }
        fn collect(&self) -> Vec<MetricFamily> {
            self.0.collect()
        }
    }
    #[allow(clippy::expect_used)] // the names are this module's alone: a clash is a bug any test shows
    prometheus::register(Box::new(Static(collector))).expect("a metric family registers once");
}

impl Collector for Registry {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let by_route = {
            let mut routes = lock(&self.routes);
            routes.retire_unused();
            let mut by_route = routes.retired.clone();
            for counters in &routes.live {
                add(by_route.entry(counters.route.clone()).or_default(), &counters.totals());
            }
            by_route
        };
        let mut requests = Vec::new();
        let mut outcomes = Vec::new();
        let mut decisions = Vec::new();
        for (route, totals) in &by_route {
            for (label, value) in VERDICT_LABELS.iter().zip(&totals[REQUESTS..OUTCOMES]) {
                requests.push(counter(&[("route", route), ("verdict", label)], *value));
            }
            for (label, value) in OUTCOME_LABELS.iter().zip(&totals[OUTCOMES..BUCKETS]) {
                outcomes.push(counter(&[("route", route), ("outcome", label)], *value));
            }
            decisions.push(histogram(route, totals));
        }
        vec![
            family(REQUESTS_NAME, REQUESTS_HELP, MetricType::COUNTER, requests),
            family(OUTCOMES_NAME, OUTCOMES_HELP, MetricType::COUNTER, outcomes),
            family(DECISION_NAME, DECISION_HELP, MetricType::HISTOGRAM, decisions),
        ]
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            pair
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut counter = proto::Counter::default();
    counter.set_value(value as f64);
    let mut metric = proto::Metric::from_label(labels(pairs));
    metric.set_counter(counter);
    metric
}

fn histogram(route: &str, totals: &Totals) -> proto::Metric {
    let mut cumulative = 0;
    let buckets = BUCKETS_MICROS
        .iter()
        .zip(&totals[BUCKETS..COUNT])
        .map(|(&upper, count)| {
            cumulative += count;
            let mut bucket = proto::Bucket::default();
            bucket.set_cumulative_count(cumulative);
            bucket.set_upper_bound(upper as f64 / 1e6);
            bucket
        })
        .collect();
    let mut histogram = proto::Histogram::default();
    histogram.set_sample_count(totals[COUNT]);
    histogram.set_sample_sum(totals[SUM_MICROS] as f64 / 1e6);
    histogram.set_bucket(buckets);
    let mut metric = proto::Metric::from_label(labels(&[("route", route)]));
    metric.set_histogram(histogram);
    metric
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

/// A counter family whose cells each belong to one thread: a thread asks for its own cell of a label set once
/// (and caches it), then counts into it alone; a scrape adds up the cells of each label set. For counters with more
/// label sets than a fixed per-thread array could hold, such as requests by country.
pub struct ThreadCounterVec {
    desc: Desc,
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    cells: Mutex<Cells>,
}

/// Label values, in the order of the family's label names.
type Labels = Box<[Box<str>]>;

#[derive(Default)]
struct Cells {
    live: Vec<(Labels, Arc<AtomicU64>)>,
    /// What cells no thread holds any more counted, by label set.
    retired: BTreeMap<Labels, u64>,
}

impl Cells {
    fn retire_unused(&mut self) {
        let Cells { live, retired } = self;
        live.retain(|(labels, cell)| {
            if Arc::strong_count(cell) > 1 {
                return true;
            }
            *retired.entry(labels.clone()).or_default() += cell.load(Relaxed);
            false
        });
    }
}

impl ThreadCounterVec {
    pub fn new(name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> ThreadCounterVec {
        ThreadCounterVec { desc: desc(name, help, label_names), name, help, label_names, cells: Default::default() }
    }

    /// A family for the life of the process, registered with the default Prometheus registry.
    pub fn register(
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
    ) -> &'static ThreadCounterVec {
        let family: &'static ThreadCounterVec = Box::leak(Box::new(ThreadCounterVec::new(name, help, label_names)));
        register_static(family);
        family
    }

    /// A new cell of `labels` for the calling thread to count into (keep it: each call registers another).
    pub fn cell(&self, labels: &[&str]) -> Arc<AtomicU64> {
        let cell = Arc::new(AtomicU64::new(0));
        let mut cells = lock(&self.cells);
        if cells.live.len() % 1024 == 1023 {
            cells.retire_unused();
        }
        cells.live.push((labels.iter().map(|&l| Box::from(l)).collect(), cell.clone()));
        cell
    }
}

impl Collector for ThreadCounterVec {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let totals = {
            let mut cells = lock(&self.cells);
            cells.retire_unused();
            let mut totals = cells.retired.clone();
            for (labels, cell) in &cells.live {
                *totals.entry(labels.clone()).or_default() += cell.load(Relaxed);
            }
            totals
        };
        let metrics = totals
            .iter()
            .map(|(values, total)| {
                let pairs: Vec<(&str, &str)> =
                    self.label_names.iter().copied().zip(values.iter().map(|v| &**v)).collect();
                counter(&pairs, *total)
            })
            .collect();
        vec![family(self.name, self.help, MetricType::COUNTER, metrics)]
    }
}

/// A poisoned lock only means a scrape panicked midway; the counts are still whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape() -> String {
        register();
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &prometheus::gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn line(text: &str, start: &str) -> String {
        text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no {start} in\n{text}")).to_string()
    }

    #[test]
    fn counts_from_many_threads_add_up_and_survive_a_reload() {
        let first = RouteCounters::register("sharded_test");
        std::thread::scope(|scope| {
            for t in 0..40u64 {
                let counters = &first;
                scope.spawn(move || {
                    for i in 0..1000 {
                        counters.request(3);
                        counters.outcome((i % 2) as usize);
                        counters.decision_micros(t * 10);
                    }
                });
            }
        });
        let text = scrape();
        assert_eq!(
            line(&text, r#"stuffgate_requests_total{route="sharded_test",verdict="block"}"#).split(' ').nth(1),
            Some("40000")
        );
        assert!(text.contains(r#"stuffgate_requests_total{route="sharded_test",verdict="allow"} 0"#), "{text}");
        assert!(text.contains(r#"stuffgate_upstream_outcomes_total{route="sharded_test",outcome="failure"} 20000"#));
        // Threads 0 and 1 decided in 0 and 10 µs (bucket 10 µs); 2..=5 in 20..50 µs (bucket 50 µs).
        assert!(
            text.contains(r#"stuffgate_decision_seconds_bucket{route="sharded_test",le="0.00001"} 2000"#),
            "{text}"
        );
        assert!(text.contains(r#"stuffgate_decision_seconds_bucket{route="sharded_test",le="0.00005"} 6000"#));
        assert!(text.contains(r#"stuffgate_decision_seconds_bucket{route="sharded_test",le="+Inf"} 40000"#));
        assert!(text.contains(r#"stuffgate_decision_seconds_count{route="sharded_test"} 40000"#));
        // 1000 × (0 + 10 + ... + 390) µs = 7.8 s.
        assert!(text.contains(r#"stuffgate_decision_seconds_sum{route="sharded_test"} 7.8"#), "{text}");

        // A reload: the new route's counters start at zero, the old ones go away; the totals keep counting on.
        let second = RouteCounters::register("sharded_test");
        drop(first);
        second.request(3);
        let text = scrape();
        assert!(text.contains(r#"stuffgate_requests_total{route="sharded_test",verdict="block"} 40001"#), "{text}");
        drop(second);
        let text = scrape();
        assert!(text.contains(r#"stuffgate_requests_total{route="sharded_test",verdict="block"} 40001"#), "{text}");

        // A route compiled and dropped without a request leaves no series behind.
        let idle = RouteCounters::register("sharded_test_idle");
        assert!(scrape().contains(r#"stuffgate_requests_total{route="sharded_test_idle",verdict="allow"} 0"#));
        drop(idle);
        assert!(!scrape().contains("sharded_test_idle"));
    }

    #[test]
    fn thread_cells_add_up_by_label_set_and_outlive_their_threads() {
        let vec = ThreadCounterVec::new("sharded_test_total", "test", &["route", "country"]);
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let vec = &vec;
                scope.spawn(move || {
                    let jp = vec.cell(&["login", "JP"]);
                    let other = vec.cell(&["login", if t % 2 == 0 { "BR" } else { "US" }]);
                    for _ in 0..1000 {
                        jp.fetch_add(1, Relaxed);
                        other.fetch_add(1, Relaxed);
                    }
                });
            }
        });
        // Every thread is gone (and dropped its cells): the counts stay, one series per label set.
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &vec.collect(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                r#"sharded_test_total{route="login",country="BR"} 4000"#,
                r#"sharded_test_total{route="login",country="JP"} 8000"#,
                r#"sharded_test_total{route="login",country="US"} 4000"#,
            ],
            "{text}"
        );
    }
}
