//! The live dashboard on the admin listener: one self-contained page (`dashboard.html`, no external script, font or
//! service) that polls `/dashboard/data` every two seconds and draws rates from the counters' differences.
//!
//! The data is the gateway's own Prometheus counters (read from the same exposition `/metrics` serves, so the page
//! and a Grafana board agree) plus what only the gateway knows: the top blocked addresses and the decisions in force.

use std::collections::BTreeMap;

use prometheus::{Encoder, TextEncoder};

use super::AdminApp;

pub const PAGE: &str = include_str!("dashboard.html");

/// One sample of the exposition: metric name, labels, value.
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse Prometheus' text exposition (as `prometheus::TextEncoder` writes it).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest.trim_end_matches('}'))),
        };
        samples.push(Sample { name, labels, value });
    }
    samples
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

fn exposition() -> String {
    crate::telemetry::process::refresh();
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Everything the page draws, as one JSON object.
pub fn data(app: &AdminApp) -> serde_json::Value {
    let text = exposition();
    let samples = parse_exposition(&text);
    let label = |s: &Sample, key: &str| s.labels.get(key).cloned().unwrap_or_default();
    let of = |name: &'static str| samples.iter().filter(move |s| s.name == name);

    // route → verdict → total
    let mut requests: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for s in of("stuffgate_requests_total") {
        *requests.entry(label(s, "route")).or_default().entry(label(s, "verdict")).or_default() += s.value;
    }
    let mut findings: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for s in of("stuffgate_defense_findings_total") {
        *findings.entry((label(s, "defense"), label(s, "action"), label(s, "mode"))).or_default() += s.value;
    }
    let findings: Vec<_> = findings
        .into_iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|((defense, action, mode), n)| serde_json::json!({"defense": defense, "action": action, "mode": mode, "count": n}))
        .collect();
    let mut countries: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for s in of("stuffgate_requests_by_country_total") {
        let entry = countries.entry(label(s, "country")).or_default();
        entry.0 += s.value;
        if label(s, "verdict") == "block" {
            entry.1 += s.value;
        }
    }
    let mut countries: Vec<_> = countries.into_iter().filter(|(_, (_, blocked))| *blocked > 0.0).collect();
    countries.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let countries: Vec<_> = countries
        .into_iter()
        .take(10)
        .map(|(country, (total, blocked))| serde_json::json!({"country": country, "requests": total, "blocked": blocked}))
        .collect();
    let mut upstream_errors: BTreeMap<String, f64> = BTreeMap::new();
    for s in of("stuffgate_upstream_errors_total") {
        *upstream_errors.entry(label(s, "kind")).or_default() += s.value;
    }
    let mut outcomes: BTreeMap<String, f64> = BTreeMap::new();
    for s in of("stuffgate_upstream_outcomes_total") {
        *outcomes.entry(label(s, "outcome")).or_default() += s.value;
    }
    // Challenges: answered as verdict "challenge"; passes where the device-challenge defense counts them.
    let challenged: f64 =
        of("stuffgate_requests_total").filter(|s| label(s, "verdict") == "challenge").map(|s| s.value).sum();
    let mut challenge_results: BTreeMap<String, f64> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name.starts_with("stuffgate_challenge") && s.name.ends_with("_total")) {
        let result =
            s.labels.get("result").or_else(|| s.labels.get("outcome")).cloned().unwrap_or_else(|| s.name.clone());
        *challenge_results.entry(result).or_default() += s.value;
    }
    let process = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
    let env = app.policy.env();
    let now = env.clock.now_nanos();
    serde_json::json!({
        "time": crate::clock::unix_now(),
        "version": env!("CARGO_PKG_VERSION"),
        "started": app.ops.health.started,
        "routes": app.policy.current().routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "requests": requests,
        "findings": findings,
        "countries": countries,
        "top_blocked": env.decisions.top_blocked(10),
        "penalties": env.decisions.penalties(now).len(),
        "bans": env.decisions.bans(now).len(),
        "attack_mode": super::ops::attack_status(&env.attack),
        "upstream_errors": upstream_errors,
        "outcomes": outcomes,
        "challenges": { "answered": challenged, "results": challenge_results },
        "reload": app.ops.health.reload(),
        "process": {
            "resident_memory_bytes": process("process_resident_memory_bytes"),
            "cpu_seconds_total": process("process_cpu_seconds_total"),
            "open_fds": process("process_open_fds"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_parser_reads_names_labels_and_values() {
        let text = "# HELP x y\n# TYPE x counter\nstuffgate_requests_total{route=\"login\",verdict=\"block\"} 3\nprocess_open_fds 12\nodd{a=\"q\\\"uote\",b=\"\"} 1.5\n";
        let samples = parse_exposition(text);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "stuffgate_requests_total");
        assert_eq!(samples[0].labels["verdict"], "block");
        assert_eq!(samples[0].value, 3.0);
        assert!(samples[1].labels.is_empty());
        assert_eq!(samples[2].labels["a"], "q\"uote");
        assert_eq!(samples[2].labels["b"], "");
    }
}
