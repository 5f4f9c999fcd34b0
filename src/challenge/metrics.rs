//! Challenge metrics, by route (never by address or account).

use std::sync::LazyLock;

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};

use super::Solution;

fn registered<T>(result: prometheus::Result<T>) -> T {
    #[allow(clippy::expect_used)]
    result.expect("metric names are unique")
}

/// Challenges by route and what became of them.
pub static CHALLENGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    registered(register_int_counter_vec!(
        "stuffgate_challenges_total",
        "Challenges by route and result: issued (answered 428), passed (solved, first use: forwarded), failed \
         (wrong nonce or token, or reused), expired, raised (valid but too easy once automation tells showed: a \
         harder one was issued).",
        &["route", "result"]
    ))
});

/// How long passed challenges took, issue to re-submit.
pub static SOLVE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    registered(register_histogram_vec!(
        "stuffgate_challenge_solve_seconds",
        "Time from issuing a challenge to its passed solution arriving, by route and path (pow, noscript).",
        &["route", "path"],
        vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0]
    ))
});

/// Count one request's challenge events: the solution it carried and whether it was answered with a challenge.
pub fn record(route: &str, solution: Solution, issued: bool) {
    match solution {
        Solution::Absent => {}
        // Valid, but the request turned out to need more (automation tells in the page's signals): a harder round.
        Solution::Passed { .. } if issued => CHALLENGES.with_label_values(&[route, "raised"]).inc(),
        Solution::Passed { solve_ms, noscript, .. } => {
            CHALLENGES.with_label_values(&[route, "passed"]).inc();
            let path = if noscript { "noscript" } else { "pow" };
            SOLVE_SECONDS.with_label_values(&[route, path]).observe(solve_ms as f64 / 1000.0);
        }
        Solution::Invalid | Solution::Reused | Solution::Throttled => {
            CHALLENGES.with_label_values(&[route, "failed"]).inc()
        }
        Solution::Expired => CHALLENGES.with_label_values(&[route, "expired"]).inc(),
    }
    if issued {
        CHALLENGES.with_label_values(&[route, "issued"]).inc();
    }
}
