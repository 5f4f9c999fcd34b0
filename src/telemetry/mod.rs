//! Logging and metrics. One decision event per protected request (target `stuffgate::decision`), Prometheus
//! counters with low-cardinality labels only: route, defense, verdict, mode — never an address or an account.

pub mod metrics;
pub mod process;
mod sharded;

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written: one JSON object per line, or text for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

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
        valid_level(level)?;
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

/// The levels `log.level` takes, alone or as `target=level`.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Whether a `log.level` text is a usable filter: a comma-separated list of levels (`info`) and `target=level`
/// directives (`stuffgate=debug`). A bare word that is no level is refused: the tracing filter would read it as a
/// target name and enable nothing else, so `"warning"` would silence the gateway.
pub fn valid_level(level: &str) -> Result<(), String> {
    let choices = "use trace, debug, info, warn, error or off, or target=level directives such as \"stuffgate=debug\"";
    if level.trim().is_empty() {
        return Err(format!("is empty: {choices}"));
    }
    for directive in level.split(',').map(str::trim) {
        let word = directive.rsplit_once('=').map_or(directive, |(_, word)| word.trim());
        if !LEVELS.iter().any(|known| known.eq_ignore_ascii_case(word)) {
            let hint = crate::spelling::did_you_mean(word, LEVELS);
            return Err(format!("`{word}` is not a log level: {choices}{hint}"));
        }
    }
    EnvFilter::try_new(level).map(|_| ()).map_err(|e| format!("`{level}` is not a log filter: {e}"))
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
