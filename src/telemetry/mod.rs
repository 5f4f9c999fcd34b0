//! Logging and metrics. One decision event per protected request (target `stuffgate::decision`), Prometheus
//! counters with low-cardinality labels only: route, defense, verdict, mode — never an address or an account.

pub mod metrics;
pub mod process;
mod sharded;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Install the global subscriber. Log lines go through a bounded, lossy channel to a writer thread, so a slow
/// stdout never stalls a request; the returned guard flushes on drop.
///
/// pingora logs through the `log` crate: [`PingoraLog`] turns its records into events of target `pingora` (JSON like
/// every other line, without the build paths `log`'s bridge would add), its start-up and shutdown chatter at debug.
/// The level can be changed later with [`set_level`] (a SIGHUP that re-reads `log.level`).
pub fn init(format: LogFormat, level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stdout());
    let from_env = std::env::var("RUST_LOG").is_ok();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter_for(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    let result = match format {
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_current_span(false).with_filter_reloading();
            install_level_setter(builder.reload_handle(), from_env);
            tracing::subscriber::set_global_default(builder.finish())
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            install_level_setter(builder.reload_handle(), from_env);
            tracing::subscriber::set_global_default(builder.finish())
        }
    };
    match result {
        Ok(()) => {
            if log::set_logger(&PingoraLog).is_ok() {
                sync_log_level();
            }
        }
        Err(error) => eprintln!("stuffgate: logging was already set up: {error}"),
    }
    guard
}

/// Let `log` records (pingora's) through only up to the most verbose level the filter enables anywhere, and never
/// past info (see [`PingoraLog`]): pingora logs a dozen debug lines per proxied request, and each one would otherwise
/// be built and handed to the bridge just to be dropped there.
fn sync_log_level() {
    let level = match tracing::level_filters::LevelFilter::current().into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(_) => log::LevelFilter::Info,
    };
    log::set_max_level(level);
}

/// The filter for a configured level such as "info" or "stuffgate=debug".
fn filter_for(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

type LevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
static LEVEL_SETTER: std::sync::OnceLock<LevelSetter> = std::sync::OnceLock::new();

fn install_level_setter<L, S>(handle: tracing_subscriber::reload::Handle<L, S>, from_env: bool)
where
    L: From<EnvFilter> + Send + Sync + 'static,
    S: 'static,
{
    let _ = LEVEL_SETTER.set(Box::new(move |level: &str| {
        if from_env {
            return Err("RUST_LOG is set and takes precedence over log.level".to_string());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| format!("`{level}` is not a log filter: {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())?;
        sync_log_level();
        Ok(())
    }));
}

/// Change the log level of the running process (validated first). An error says why it was not applied.
pub fn set_level(level: &str) -> Result<(), String> {
    match LEVEL_SETTER.get() {
        Some(set) => set(level),
        None => Err("logging is not set up".to_string()),
    }
}

/// Whether a log filter text is valid (for `stuffgate check`).
pub fn valid_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level).map(|_| ()).map_err(|e| e.to_string())
}

/// pingora's `log` records as tracing events of target `pingora`: warnings and errors as they are, its info records
/// (start-up, shutdown and per-service chatter) at debug. Its debug and trace records are never forwarded, whatever
/// the level: they print whole request heads ("Sending header to upstream …", "Writing request header: …"), with
/// their `Cookie` and `Authorization` values.
struct PingoraLog;

impl log::Log for PingoraLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        match metadata.level() {
            log::Level::Error => tracing::enabled!(target: "pingora", tracing::Level::ERROR),
            log::Level::Warn => tracing::enabled!(target: "pingora", tracing::Level::WARN),
            log::Level::Info => tracing::enabled!(target: "pingora", tracing::Level::DEBUG),
            log::Level::Debug | log::Level::Trace => false,
        }
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let source = record.target();
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: "pingora", source, "{message}"),
            log::Level::Warn => tracing::warn!(target: "pingora", source, "{message}"),
            log::Level::Info => tracing::debug!(target: "pingora", source, "{message}"),
            log::Level::Debug | log::Level::Trace => {}
        }
    }

    fn flush(&self) {}
}

/// The one event per protected request. Never a password; the account only as its keyed hash.
pub fn decision_event(
    route: &crate::config::Route,
    judged: &crate::engine::Judged,
    outcome: Option<crate::defense::Outcome>,
    status: u16,
    decision_micros: u64,
) {
    // Skip the formatting below (a String for the reasons, another for the account hash) when the event is filtered
    // out, e.g. at level "warn".
    if !tracing::enabled!(target: "stuffgate::decision", tracing::Level::INFO) {
        return;
    }
    use std::fmt::Write;
    let decision = &judged.decision;
    let verdict = decision.verdict();
    let mut reasons = String::new();
    for (i, r) in decision.reasons.iter().enumerate() {
        let _ = write!(
            reasons,
            "{}{}:{}:{}:{}",
            if i > 0 { "," } else { "" },
            r.defense,
            r.reason,
            r.action,
            r.mode.as_str()
        );
    }
    if let crate::defense::Verdict::Invalid(problem) = verdict {
        reasons = format!("body:{}", problem.reason());
    }
    let subject = &judged.subject;
    let decided_by = decision.decided_by.and_then(|i| route.slots.get(i)).map(|s| s.defense.name());
    let account = subject.account.map(|a| format!("{:016x}", a.id));
    // Challenge and device: the solution's state, and the page's device signals only as their keyed hash.
    let facts = &subject.facts;
    let solution = (facts.challenge != crate::challenge::Solution::Absent).then(|| facts.challenge.as_str());
    let signals = facts.device.signals.map(|hash| format!("{hash:016x}"));
    let attack_mode = facts.attack.on().then(|| facts.attack.as_str());
    let fingerprint = facts.client_fingerprint.map(|print| print.source().as_str());
    tracing::info!(
        target: "stuffgate::decision",
        route = route.name.as_str(),
        kind = route.kind.as_str(),
        verdict = verdict.as_str(),
        decided_by = decided_by.unwrap_or(""),
        reasons = reasons.as_str(),
        client_ip = %subject.ip,
        country = subject.facts.geo.country.as_ref().map(|c| c.as_str()),
        account = account.as_deref(),
        outcome = outcome.map(|o| o.as_str()),
        status,
        decision_us = decision_micros,
        solution,
        device_signals = signals.as_deref(),
        attack_mode,
        fingerprint_source = fingerprint,
        reset_required = decision.reset_required,
    );
}
