//! `stuffgate replay …` and `stuffgate demo --replay …`.

use std::io::IsTerminal as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::api::{ApiFlags, ApiShape};
use super::http::Target;
use super::load::{self, LoadOptions};
use super::offline::OfflineOptions;
use super::online::OnlineOptions;
use super::scenario::{Scenario, BUNDLED};
use super::{html, offline_report, online_report, schedule_for, Report};
use crate::clock::parse_duration;

/// The common-password filter `stuffgate demo` loads.
const SHIPPED_PASSWORD_FILTER: &str = "policies/data/common-passwords.bloom";

#[derive(clap::Args, Debug, Clone)]
#[command(
    about = "Replay an attack scenario against a gateway (or offline through the engine), or flood logins with --load",
    after_help = "Examples:\n  stuffgate replay list\n  stuffgate replay 7pay-burst --target http://127.0.0.1:8080\n  stuffgate replay spray --offline --policy policies/default.toml --html spray.html\n  stuffgate replay --load --target http://127.0.0.1:8080 --rate 5000 --duration 30s\n"
)]
pub struct ReplayArgs {
    /// Scenario file, or a bundled name: 7pay-burst, distributed, spray, reset-hijack, signup-farm ("list" lists them).
    pub scenario: Option<String>,
    /// The gateway to replay against (loopback only), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub target: Option<String>,
    /// Virtual seconds per real second (2 = twice as fast); 0 = as fast as possible. Default: the scenario's, else 1.
    #[arg(long)]
    pub speed: Option<f64>,
    /// Connections (and requests in flight) to the target.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seed of the schedule; default: the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Multiply every population in the scenario (addresses, users, accounts) by this factor, e.g. 0.1.
    #[arg(long)]
    pub scale: Option<f64>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as a self-contained HTML page.
    #[arg(long, value_name = "REPORT.html")]
    pub html: Option<PathBuf>,
    /// Run the schedule through the decision engine on a virtual clock instead of a gateway.
    #[arg(long)]
    pub offline: bool,
    /// --offline: attacking bots solve challenges, paying the proof-of-work (default: they never run them; users'
    /// browsers always do).
    #[arg(long)]
    pub solvers: bool,
    /// Policy file(s) for --offline; default policies/default.toml.
    #[arg(long)]
    pub policy: Vec<PathBuf>,
    /// --offline: take policies, GeoIP database and breach filters from this gateway file.
    #[arg(long, value_name = "GATEWAY.toml")]
    pub config: Option<PathBuf>,
    /// Country database for the actors' addresses; default the shipped geoip/country.mmdb.
    #[arg(long)]
    pub geoip: Option<PathBuf>,
    /// URL of the demo upstream's counters; default TARGET/__demo/stats.
    #[arg(long, value_name = "URL")]
    pub upstream_stats: Option<String>,
    /// Stop an online run after this long whatever is left, e.g. "10m"; default: the scenario's real duration ×1.5 + 1m.
    #[arg(long)]
    pub max_time: Option<String>,
    /// Login flood for capacity planning instead of a scenario.
    #[arg(long)]
    pub load: bool,
    /// --load: requests per second (open loop); default as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// --load: how long, e.g. "30s" (at most 1h).
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// --load: keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// --load: distinct client addresses in X-Forwarded-For.
    #[arg(long, default_value_t = 100_000)]
    pub addresses: u32,
    /// --load: accounts the logins spread over (user00000@example.com …; beyond the demo's users they fail).
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u32,
    /// --load: share of logins with the right password (demo accounts).
    #[arg(long, default_value_t = 0.0)]
    pub valid_ratio: f64,
    /// The gateway's admin listener (e.g. http://127.0.0.1:9901): the report then shows which defense answered how
    /// many requests, and the policy files the gateway ran.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// Replay even when the demo API has fewer users than the scenario's legitimate users log in as (they then fail
    /// like attackers, and the report counts them as blocked or failed users).
    #[arg(long)]
    pub allow_missing_users: bool,
    /// Your API's login path (default: the policy's login route, else the demo's /api/login).
    #[arg(long, value_name = "PATH")]
    pub login_path: Option<String>,
    /// Your API's password-reset path (default: the policy's reset route, else /api/password-reset).
    #[arg(long, value_name = "PATH")]
    pub reset_path: Option<String>,
    /// Your API's sign-up path (default: the policy's sign-up route, else /api/signup).
    #[arg(long, value_name = "PATH")]
    pub signup_path: Option<String>,
    /// The body field holding the account, e.g. `username` or `user.email` (default: the policy's, else `email`).
    #[arg(long, value_name = "FIELD")]
    pub account_field: Option<String>,
    /// The body field holding the password (default: the policy's, else `password`).
    #[arg(long, value_name = "FIELD")]
    pub password_field: Option<String>,
}

impl ReplayArgs {
    fn api_flags(&self) -> ApiFlags {
        ApiFlags {
            login_path: self.login_path.clone(),
            reset_path: self.reset_path.clone(),
            signup_path: self.signup_path.clone(),
            account_field: self.account_field.clone(),
            password_field: self.password_field.clone(),
        }
    }
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    if args.load {
        return run_load(args);
    }
    let Some(name) = args.scenario.as_deref() else {
        bail!("name a scenario (`stuffgate replay list` shows the bundled ones) or use --load");
    };
    if name == "list" {
        return print_list();
    }
    let scenario = load_scenario(name, args.scale)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let speed = args.speed.or(scenario.speed).unwrap_or(1.0);
    if !(speed.is_finite() && speed >= 0.0) {
        bail!("--speed must be a number ≥ 0");
    }
    let schedule = schedule_for(&scenario, seed, args.geoip.as_deref())?;
    let report = if args.offline {
        let mut options = offline_options(args)?;
        options.speed = if speed == 0.0 { 1.0 } else { speed };
        offline_report(&schedule, &options)?
    } else {
        let Some(target) = args.target.as_deref() else {
            bail!("give the gateway with --target http://127.0.0.1:PORT, or run --offline --policy FILE");
        };
        let target = Target::parse(target).map_err(anyhow::Error::msg)?;
        let upstream_stats =
            Some(args.upstream_stats.clone().unwrap_or_else(|| format!("{}/__demo/stats", target.url)));
        let mut demo_upstream = false;
        if let Some(url) = &upstream_stats {
            demo_upstream = check_population(url, &schedule, args.allow_missing_users)?;
        }
        let api = online_api(args, demo_upstream)?;
        api.refuse_unmatched(&schedule.events, &scenario.name)?;
        let options = OnlineOptions {
            target,
            speed,
            concurrency: args.concurrency,
            request_timeout: Duration::from_secs(10),
            max_time: max_time(args.max_time.as_deref(), schedule.duration, speed)?,
            progress: std::io::stderr().is_terminal() && !args.json,
            upstream_stats,
            api,
        };
        let before = args.admin.as_deref().map(gateway_findings);
        let mut report = online_report(&schedule, &options)?;
        if let (Some(admin), Some(before)) = (args.admin.as_deref(), before) {
            attribute(&mut report, admin, &before);
        }
        report
    };
    emit(&report, args.json, args.html.as_deref())
}

/// The API behind the gateway of an online run, from (first found) the policy files given (`--config`,
/// `--policy`), the gateway's admin listener (`--admin`: its `/policy`), or the demo API when the target's upstream
/// is one; the flags override each. Without any of these, only the flags can say what the API is.
fn online_api(args: &ReplayArgs, demo_upstream: bool) -> anyhow::Result<ApiShape> {
    let flags = args.api_flags();
    if args.config.is_some() || !args.policy.is_empty() {
        let options = offline_options(args)?;
        let mut env = crate::config::Services::new(crate::clock::Clock::system(), 1024);
        env.require_data = false;
        let policy = crate::config::compile_policies(&options.policy_files, &env, None)?;
        let files: Vec<String> = options.policy_files.iter().map(|p| p.display().to_string()).collect();
        return Ok(ApiShape::from_policy(&policy, &format!("the policy {}", files.join(", ")), &flags));
    }
    if let Some(admin) = &args.admin {
        let url = format!("{}/policy", admin.trim_end_matches('/'));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let Some(body) = runtime.block_on(super::http::get(&url, Duration::from_secs(5))) else {
            bail!("the gateway's admin listener does not answer at {url}: check --admin")
        };
        let policy: serde_json::Value = serde_json::from_slice(&body).with_context(|| format!("reading {url}"))?;
        return Ok(ApiShape::from_admin_policy(&policy, &format!("the gateway's policy ({url})"), &flags));
    }
    let named = flags.login_path.is_some() || flags.account_field.is_some() || flags.password_field.is_some();
    if !demo_upstream && !named {
        bail!(
            "the target's upstream is not the demo API, and nothing says which paths and body fields your API uses: \
             give the gateway's admin listener (--admin http://127.0.0.1:9901), its gateway file (--config) or \
             policy (--policy), or the names (--login-path, --account-field, --password-field)"
        );
    }
    Ok(ApiShape::demo().with_flags(&flags))
}

/// Before an online run: the demo API must hold the `user00000…` accounts the scenario's legitimate users log in as.
/// With too few, real users fail their logins and look like attackers (a carrier-NAT address full of "failing"
/// users gets blocked), and the report would only say so at its end. Refused up front unless allowed.
/// Whether the upstream is the demo API (it answers with its counters).
fn check_population(stats_url: &str, schedule: &super::Schedule, allow: bool) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Not the demo API (no stats): nothing to check.
    let Some(stats) = runtime.block_on(super::online::fetch_stats(stats_url)) else { return Ok(false) };
    let needed = schedule.accounts as u64 + crate::demo_api::NAMED_USERS.len() as u64;
    if stats.users >= needed {
        return Ok(true);
    }
    let message = format!(
        "the demo API behind the target has {} users, but this scenario's legitimate users log in as {} demo accounts \
         (user00000 … user{:05}): the missing ones would fail like attackers and show up as blocked real users. Restart \
         it with more: `stuffgate demo-api --users {}` (or `stuffgate demo --users {}`)",
        stats.users,
        schedule.accounts,
        schedule.accounts.saturating_sub(1),
        schedule.accounts,
        schedule.accounts
    );
    if allow {
        eprintln!("stuffgate: warning: {message}; going on (--allow-missing-users)");
        return Ok(true);
    }
    bail!("{message}; or pass --allow-missing-users to replay anyway")
}

fn load_scenario(name: &str, scale: Option<f64>) -> anyhow::Result<Scenario> {
    let scenario = Scenario::load(name)?;
    Ok(match scale {
        Some(f) if !(f.is_finite() && f > 0.0 && f <= 1000.0) => bail!("--scale must be a number in (0, 1000]"),
        Some(f) => scenario.scaled(f),
        None => scenario,
    })
}

fn print_list() -> anyhow::Result<()> {
    let mut text = String::from("bundled scenarios (examples/attacks/):\n");
    for (name, source) in BUNDLED {
        let description = Scenario::parse(Path::new(name), source).map(|s| s.description).unwrap_or_default();
        let first = description.lines().next().unwrap_or("").trim();
        text.push_str(&format!("  {name:<14} {first}\n"));
    }
    out(&text)
}

/// What an offline run decides with: a gateway file's policies and data files, or the policy given and the files
/// `stuffgate demo` uses (the shipped GeoIP database and common-password filter).
fn offline_options(args: &ReplayArgs) -> anyhow::Result<OfflineOptions> {
    if let Some(path) = &args.config {
        let gateway = crate::config::load_gateway(path)?;
        return Ok(OfflineOptions {
            policy_files: if args.policy.is_empty() { gateway.policy_files.clone() } else { args.policy.clone() },
            geoip: args.geoip.clone().or(gateway.geoip.map(|(country, _)| country)),
            password_filter: gateway.password_filter,
            pair_filter: gateway.pair_filter,
            speed: 1.0,
            max_tracked_keys: gateway.max_tracked_keys,
            solvers: args.solvers,
            api: args.api_flags(),
        });
    }
    let shipped_filter = crate::shipped::find(SHIPPED_PASSWORD_FILTER);
    Ok(OfflineOptions {
        policy_files: policy_files(&args.policy)?,
        geoip: args.geoip.clone().or_else(super::addresses::default_geoip_path),
        password_filter: shipped_filter,
        pair_filter: None,
        speed: 1.0,
        max_tracked_keys: 1_000_000,
        solvers: args.solvers,
        api: args.api_flags(),
    })
}

fn policy_files(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    // The shipped policy, found from any directory (see `crate::shipped`); no temporary copy is written.
    match crate::shipped::find("policies/default.toml") {
        Some(path) => Ok(vec![path]),
        None => bail!(
            "no policy given and the shipped policies/default.toml is not found (searched {}): pass --policy FILE",
            crate::shipped::candidates("policies/default.toml")
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn max_time(given: Option<&str>, duration: u64, speed: f64) -> anyhow::Result<Duration> {
    if let Some(text) = given {
        return parse_duration(text).map_err(anyhow::Error::msg);
    }
    if speed == 0.0 {
        return Ok(Duration::from_secs(3600));
    }
    let real = Duration::from_nanos((duration as f64 / speed) as u64);
    Ok(real.mul_f64(1.5) + Duration::from_secs(60))
}

/// Write to stdout; a closed pipe (`| head`) ends the output quietly.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn emit(report: &Report, json: bool, html_path: Option<&Path>) -> anyhow::Result<()> {
    if json {
        out(&format!("{}\n", serde_json::to_string_pretty(report)?))?;
    } else {
        out(&report.render_text())?;
    }
    if let Some(path) = html_path {
        std::fs::write(path, html::render(report)).with_context(|| format!("writing {}", path.display()))?;
        if !json {
            out(&format!("  HTML report: {}\n", path.display()))?;
        }
    }
    Ok(())
}

fn run_load(args: &ReplayArgs) -> anyhow::Result<()> {
    let Some(target) = args.target.as_deref() else {
        bail!("--load needs --target http://127.0.0.1:PORT");
    };
    let duration = parse_duration(&args.duration).map_err(anyhow::Error::msg)?;
    let options = LoadOptions {
        target: Target::parse(target).map_err(anyhow::Error::msg)?,
        rate: args.rate,
        duration,
        connections: args.connections,
        addresses: args.addresses.clamp(1, 10_000_000),
        accounts: args.accounts.max(1),
        valid_ratio: args.valid_ratio.clamp(0.0, 1.0),
        seed: args.seed.unwrap_or(1),
        request_timeout: Duration::from_secs(10),
        progress: std::io::stderr().is_terminal() && !args.json,
    };
    let report = load::run(&options)?;
    if args.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&report)?))
    } else {
        out(&report.render_text())
    }
}

/// A child process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `stuffgate demo --replay SCENARIO`: start the demo (gateway + demo API) as a child process on fresh loopback
/// ports, wait until it is healthy, replay the scenario through it, print the report, stop the child.
pub fn run_demo(scenario_name: &str, policy: Option<&Path>, users: usize) -> anyhow::Result<()> {
    let scenario = load_scenario(scenario_name, None)?;
    let seed = scenario.seed;
    let speed = scenario.speed.unwrap_or(1.0);
    let schedule = schedule_for(&scenario, seed, None)?;
    let users = users.max(schedule.accounts as usize);
    let (listen, admin, api) = (free_port()?, free_port()?, free_port()?);
    let log_path = std::env::temp_dir().join(format!("stuffgate-demo-replay-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(std::env::current_exe().context("finding this program")?);
    command
        .arg("demo")
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--api", &format!("127.0.0.1:{api}")])
        .args(["--users", &users.to_string()])
        .args(["--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
    }
    let mut child = ChildGuard(command.spawn().context("starting the demo gateway")?);
    out(&format!(
        "stuffgate demo --replay {}: gateway http://127.0.0.1:{listen}, demo API http://127.0.0.1:{api} ({users} users), decision log {} (removed after a clean run)\n",
        scenario.name,
        log_path.display()
    ))?;
    wait_healthy(&mut child, admin, listen, &log_path)?;
    let options = OnlineOptions {
        target: Target::parse(&format!("http://127.0.0.1:{listen}")).map_err(anyhow::Error::msg)?,
        speed,
        concurrency: 64,
        request_timeout: Duration::from_secs(10),
        max_time: max_time(None, schedule.duration, speed)?,
        progress: std::io::stderr().is_terminal(),
        upstream_stats: Some(format!("http://127.0.0.1:{api}/__demo/stats")),
        api: ApiShape::demo(),
    };
    let admin_url = format!("http://127.0.0.1:{admin}");
    let before = gateway_findings(&admin_url);
    let mut report = online_report(&schedule, &options)
        .with_context(|| format!("the demo gateway's log: {}", log_path.display()))?;
    attribute(&mut report, &admin_url, &before);
    drop(child);
    // The log holds one decision line per request; it is kept only when something went wrong.
    if report.totals.errors == 0 {
        let _ = std::fs::remove_file(&log_path);
    }
    out(&report.render_text())
}

/// Enforced block and challenge findings per defense, from the gateway's `/metrics`.
fn gateway_findings(admin: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return out };
    let url = format!("{}/metrics", admin.trim_end_matches('/'));
    let Some(body) = runtime.block_on(super::http::get(&url, Duration::from_secs(5))) else { return out };
    for sample in crate::admin::dashboard::parse_exposition(&String::from_utf8_lossy(&body)) {
        let label = |k: &str| sample.labels.get(k).map(String::as_str).unwrap_or("");
        if sample.name == "stuffgate_defense_findings_total"
            && matches!(label("action"), "block" | "challenge")
            && label("mode") == "enforce"
        {
            *out.entry(label("defense").to_string()).or_default() += sample.value as u64;
        }
    }
    out
}

/// Fill the report's per-defense counts (the findings' growth over the run) and the gateway's policy files.
fn attribute(report: &mut Report, admin: &str, before: &std::collections::BTreeMap<String, u64>) {
    for (defense, after) in gateway_findings(admin) {
        let grown = after.saturating_sub(before.get(&defense).copied().unwrap_or(0));
        if grown > 0 {
            report.blocked_by.insert(defense, grown);
        }
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let url = format!("{}/policy", admin.trim_end_matches('/'));
    if let Some(body) = runtime.block_on(super::http::get(&url, Duration::from_secs(5))) {
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(files) = value["files"].as_array() {
            let files: Vec<&str> = files.iter().filter_map(|f| f.as_str()).collect();
            report.policy = Some(files.join(", "));
        }
    }
}

fn wait_healthy(child: &mut ChildGuard, admin: u16, listen: u16, log: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{admin}/healthz");
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the demo gateway exited ({status}) before it was ready; its log:\n{}", last_lines(&tail, 20));
        }
        let healthy = runtime.block_on(super::http::get(&url, Duration::from_secs(1))).is_some();
        if healthy && std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the demo gateway did not become healthy within 30 s; see {}", log.display())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Used by tests and benches: a schedule from a bundled or local scenario with a seed and scale.
pub fn prepare(name: &str, seed: Option<u64>, scale: Option<f64>) -> anyhow::Result<(Scenario, Arc<super::Schedule>)> {
    let scenario = load_scenario(name, scale)?;
    let seed = seed.unwrap_or(scenario.seed);
    let schedule = schedule_for(&scenario, seed, None)?;
    Ok((scenario, schedule))
}
