//! `stuffgate replay --load`: a pure login flood for capacity planning. Keep-alive connections, either open-loop
//! at a fixed rate (latency measured from when each request was *due*, so a stalled gateway cannot hide its queue:
//! no coordinated omission) or closed-loop as fast as the gateway answers. Bounded in time and connections.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::histogram::Histogram;
use super::http::{Conn, Target};
use super::online::classify;
use super::report::{thousands, Latency};
use super::rng::Rng;
use super::schedule::{Endpoint, Verdict};
use crate::demo_api::{demo_account, demo_password};

pub struct LoadOptions {
    pub target: Target,
    /// Requests per second across all connections; None: as fast as possible.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub connections: usize,
    /// Distinct client addresses sent in `X-Forwarded-For`.
    pub addresses: u32,
    /// Accounts the logins name (`user00000` …; those beyond the demo's seeded users do not exist).
    pub accounts: u32,
    /// Share of logins with the right password.
    pub valid_ratio: f64,
    pub seed: u64,
    pub request_timeout: Duration,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub target: String,
    pub connections: usize,
    pub rate_asked: Option<f64>,
    pub seconds: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub latency: Option<Latency>,
    pub forwarded: u64,
    pub blocked: u64,
    pub invalid: u64,
    pub errors: u64,
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

impl LoadReport {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "\nlogin flood against {} — {} connections, {}\n",
            self.target,
            self.connections,
            match self.rate_asked {
                Some(r) => format!("open loop at {} requests/s", thousands(r.round() as u64)),
                None => "as fast as possible (closed loop)".into(),
            }
        );
        out.push_str(&format!(
            "  {} requests in {:.1} s: {}/s\n",
            thousands(self.requests),
            self.seconds,
            thousands(self.requests_per_second.round() as u64)
        ));
        if let Some(l) = &self.latency {
            out.push_str(&format!(
                "  latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms{}\n",
                l.p50_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms,
                if self.rate_asked.is_some() { " (from when each request was due)" } else { "" }
            ));
        }
        out.push_str(&format!(
            "  forwarded {}, blocked {}, invalid {}, errors {}\n",
            thousands(self.forwarded),
            thousands(self.blocked),
            thousands(self.invalid),
            thousands(self.errors)
        ));
        let statuses: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s}: {}", thousands(*n))).collect();
        out.push_str(&format!("  statuses {}\n", statuses.join(", ")));
        out
    }
}

/// The client addresses the flood comes from.
fn addresses(options: &LoadOptions) -> Vec<String> {
    let mut rng = Rng::derive(options.seed, 0, 77);
    let mut ips = Vec::with_capacity(options.addresses as usize);
    while ips.len() < options.addresses.max(1) as usize {
        let ip = Ipv4Addr::from(rng.next_u32());
        if !crate::geoip::is_private(IpAddr::V4(ip)) && ip.octets()[0] < 224 {
            ips.push(ip.to_string());
        }
    }
    ips
}

/// One login body: a demo account, with its right password at `valid_ratio`.
fn login_body(rng: &mut Rng, accounts: u32, valid_ratio: f64, out: &mut String) {
    use std::fmt::Write as _;
    let i = rng.below(accounts.max(1) as u64) as usize;
    out.clear();
    if rng.chance(valid_ratio) {
        let body = serde_json::json!({ "email": demo_account(i), "password": demo_password(i) });
        let _ = write!(out, "{body}");
    } else {
        let _ = write!(out, r#"{{"email":"{}","password":"guess{}"}}"#, demo_account(i), rng.below(1_000_000_000));
    }
}

pub fn run(options: &LoadOptions) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(
        options.duration > Duration::ZERO && options.duration <= Duration::from_secs(3600),
        "--duration must be between 1s and 1h"
    );
    anyhow::ensure!((1..=4096).contains(&options.connections), "--connections must be 1..=4096");
    if let Some(rate) = options.rate {
        anyhow::ensure!(rate > 0.0 && rate <= 10_000_000.0, "--rate must be between 0 and 10,000,000 requests/s");
    }
    let ips = Arc::new(addresses(options));
    let (accounts, valid_ratio, seed) = (options.accounts, options.valid_ratio, options.seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stuffgate-load")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let start = tokio::time::Instant::now();
        let end = start + options.duration;
        let progress = options.progress.then(|| {
            let bar = indicatif::ProgressBar::new(options.duration.as_secs());
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} s")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        let ticker = progress.clone().map(|bar| {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    bar.set_position(start.elapsed().as_secs());
                }
            })
        });
        let mut handles = Vec::with_capacity(options.connections);
        for c in 0..options.connections {
            let ips = ips.clone();
            let target = options.target.clone();
            let timeout = options.request_timeout;
            let interval = options.rate.map(|r| Duration::from_secs_f64(options.connections as f64 / r));
            // Stagger the connections across one interval.
            let offset = interval.map(|i| i.mul_f64(c as f64 / options.connections as f64)).unwrap_or_default();
            handles.push(tokio::spawn(async move {
                let mut conn = Conn::new(target, timeout);
                let mut histogram = Histogram::default();
                let mut counts = [0u64; 4];
                let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
                let mut rng = Rng::derive(seed, c as u64 + 1, 78);
                let mut body = String::with_capacity(128);
                let mut due = start + offset;
                loop {
                    let now = tokio::time::Instant::now();
                    if now >= end {
                        break;
                    }
                    let began = match interval {
                        Some(interval) => {
                            if due >= end {
                                break;
                            }
                            if due > now {
                                tokio::time::sleep_until(due).await;
                            }
                            let began = due;
                            due += interval;
                            began.into_std()
                        }
                        None => Instant::now(),
                    };
                    login_body(&mut rng, accounts, valid_ratio, &mut body);
                    let ip = &ips[rng.below(ips.len() as u64) as usize];
                    let headers = [("content-type", "application/json"), ("x-forwarded-for", ip.as_str())];
                    let answer = match conn.request("POST", Endpoint::Login.path(), &headers, body.as_bytes()).await {
                        Ok(response) => classify(&response, Endpoint::Login),
                        Err(_) => super::schedule::Answer { verdict: Verdict::Error, status: 0, token: None },
                    };
                    histogram.record(began.elapsed().as_micros() as u64);
                    counts[answer.verdict.index()] += 1;
                    *statuses.entry(answer.status).or_default() += 1;
                    if answer.verdict == Verdict::Error {
                        // Back off a little so a dead target does not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                (histogram, counts, statuses)
            }));
        }
        let mut histogram = Histogram::default();
        let mut counts = [0u64; 4];
        let mut statuses = std::collections::BTreeMap::new();
        for handle in handles {
            let (h, c, s) = handle.await?;
            histogram.merge(&h);
            for i in 0..4 {
                counts[i] += c[i];
            }
            for (status, n) in s {
                *statuses.entry(status).or_default() += n;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        if let Some(t) = ticker {
            t.abort();
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        let requests = histogram.count();
        Ok(LoadReport {
            target: options.target.url.clone(),
            connections: options.connections,
            rate_asked: options.rate,
            seconds,
            requests,
            requests_per_second: requests as f64 / seconds.max(1e-9),
            latency: Latency::of(&histogram),
            forwarded: counts[Verdict::Forwarded.index()],
            blocked: counts[Verdict::Blocked.index()],
            invalid: counts[Verdict::Invalid.index()],
            errors: counts[Verdict::Error.index()],
            statuses,
        })
    })
}
