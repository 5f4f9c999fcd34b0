//! Attack replays: scenario files → a deterministic schedule of requests → sent to a gateway (online) or run
//! through the decision engine on a virtual clock (offline) → a report an operator reads.
//!
//! ```text
//! examples/attacks/*.toml ─▶ Scenario (scenario.rs, validated, located errors)
//!        │ seed
//!        ▼
//!   schedule::generate ─▶ Vec<Event> sorted by virtual time  (addresses.rs: client IPs from the GeoIP database)
//!        │                       │
//!        ▼                       ▼
//!   online::run                offline::run
//!   keep-alive HTTP/1.1        engine::check_address / check_credentials / observe
//!   (http.rs) to --target      on Clock::manual(), simulated demo upstream
//!        │                       │
//!        └──── follow_ups(event, answer): top-ups with the token, a user's retry ──┘
//!                                ▼
//!                 report::Tally ─▶ Report ─▶ table / JSON / HTML (html.rs)
//! ```
//!
//! `load.rs` is the separate login flood (`stuffgate replay --load`) for capacity planning.

pub mod addresses;
pub mod api;
pub mod cli;
pub mod clients;
pub mod histogram;
pub mod html;
pub mod http;
pub mod load;
pub mod offline;
pub mod online;
pub mod report;
mod rng;
pub mod scenario;
pub mod schedule;

use std::path::Path;
use std::sync::Arc;

pub use report::Report;
pub use scenario::Scenario;
pub use schedule::{generate, Event, Schedule};

use crate::geoip::GeoDb;

/// Open the GeoIP database a scenario needs (none when no actor names a country).
pub fn geo_for(scenario: &Scenario, path: Option<&Path>) -> anyhow::Result<Option<GeoDb>> {
    let needs = scenario
        .actors
        .iter()
        .any(|a| !a.pool.countries.is_empty() || matches!(a.params, scenario::Params::Traveller { .. }));
    if !needs {
        return Ok(None);
    }
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => addresses::default_geoip_path().ok_or_else(|| {
            anyhow::anyhow!(
                "the scenario names countries; pass --geoip FILE (the shipped geoip/country.mmdb was not found)"
            )
        })?,
    };
    Ok(Some(GeoDb::open(&path, None)?))
}

/// Build the schedule of a scenario for a seed.
pub fn schedule_for(scenario: &Scenario, seed: u64, geoip: Option<&Path>) -> anyhow::Result<Arc<Schedule>> {
    let geo = geo_for(scenario, geoip)?;
    Ok(Arc::new(generate(scenario, seed, geo.as_ref())?))
}

/// Run a schedule against a gateway and build the report.
pub fn online_report(schedule: &Arc<Schedule>, options: &online::OnlineOptions) -> anyhow::Result<Report> {
    let before_users = match &options.upstream_stats {
        Some(url) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(online::fetch_stats(url))
            .map(|s| s.users),
        None => None,
    };
    let run = online::run(schedule.clone(), options)?;
    let mut notes = Vec::new();
    if options.speed != 1.0 {
        notes.push(if options.speed == 0.0 {
            "sent as fast as possible: the gateway's time windows saw the attack far denser than the scenario describes".to_string()
        } else {
            format!(
                "time compressed ×{}: the gateway's windows saw the traffic {} times denser than the scenario describes; `--offline --speed {}` reproduces this run",
                options.speed, options.speed, options.speed
            )
        });
    }
    if let Some(lag) = run.lag_p99_ms {
        if lag > 250.0 {
            notes.push(format!("sends fell behind schedule by {lag:.0} ms at the 99th percentile: lower --speed or raise --concurrency"));
        }
    }
    if run.cut_short {
        notes.push(format!(
            "stopped at the time limit ({:.0} s) before the schedule was done",
            options.max_time.as_secs_f64()
        ));
    }
    if let Some(users) = before_users {
        let needed = schedule.accounts as u64 + crate::demo_api::NAMED_USERS.len() as u64;
        if users < needed {
            notes.push(format!(
                "the upstream has {users} accounts but the scenario assumes {needed}: start it with `--users {}`",
                schedule.accounts
            ));
        }
    }
    let errors: u64 = run.tally.actors.iter().map(|a| a.verdicts[schedule::Verdict::Error.index()]).sum();
    if errors > 0 {
        notes.push(format!("{errors} requests got no usable answer (connection errors, timeouts or 502/503/504)"));
    }
    Ok(Report::build(
        schedule,
        &run.tally,
        report::RunInfo {
            mode: "online",
            target: Some(options.target.url.clone()),
            policy: None,
            speed: options.speed,
            wall_seconds: run.wall.as_secs_f64(),
            offline: false,
            upstream: run.upstream,
            notes,
        },
    ))
}

/// Run a schedule through the engine offline and build the report. The note says how fast it went.
pub fn offline_report(schedule: &Schedule, options: &offline::OfflineOptions) -> anyhow::Result<Report> {
    let run = offline::run(schedule, options)?;
    let rate = run.processed as f64 / run.elapsed.as_secs_f64().max(1e-9);
    let mut notes = vec![format!(
        "{} events decided in {:.3} s: {} events/s through the engine",
        report::thousands(run.processed),
        run.elapsed.as_secs_f64(),
        report::thousands(rate.round() as u64)
    )];
    if options.speed != 1.0 {
        notes.push(format!("time compressed ×{} as an online run at that speed would be", options.speed));
    }
    let a = run.attack_mode;
    notes.push(match a.first_on {
        None => "attack mode: never on".to_string(),
        Some(first) => format!(
            "attack mode: on {} time(s), first at {}, for {} in all ({} at the high level)",
            a.switched_on,
            report::human_duration(first.as_secs_f64()),
            report::human_duration(a.on_for.as_secs_f64()),
            report::human_duration(a.high_for.as_secs_f64()),
        ),
    });
    let c = run.challenges;
    if c.issued > 0 {
        notes.push(format!(
            "challenges: {} issued; solved by users' browsers {}, by attacking bots {} ({}); {} SHA-256 computed (CPU \
             time as this build solves: a release build solves ~20x faster)",
            report::thousands(c.issued),
            report::thousands(c.solved_by_users),
            report::thousands(c.solved_by_attackers),
            if options.solvers {
                "--solvers: every bot pays the proof-of-work"
            } else {
                "bots solve where their actor's solver_share says"
            },
            report::thousands(c.hashes),
        ));
    }
    let policy = options.policy_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let mut report = Report::build(
        schedule,
        &run.tally,
        report::RunInfo {
            mode: "offline",
            target: None,
            policy: Some(policy),
            speed: options.speed,
            wall_seconds: run.elapsed.as_secs_f64(),
            offline: true,
            upstream: None,
            notes,
        },
    );
    report.blocked_by = run.blocked_by;
    Ok(report)
}

#[cfg(test)]
mod tests;
