//! `stuffgate breach build|query`: clap argument structs and their runners.
//!
//! Mount with e.g.
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command { #[command(subcommand)] Breach(stuffgate::breach::cli::BreachCommand), /* ... */ }
//! // ...
//! Command::Breach(cmd) => std::process::exit(stuffgate::breach::cli::run(&cmd)),
//! ```

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::builder::{
    build_filter, estimate_items, open_input, BadLine, FilterBuilder, Format, IngestCounters, ItemCountSource,
    OpenedInput,
};
use super::{decode_sha1_hex_str, normalise_account, BreachFilter, FilterKind};

/// Breached-password and leaked-pair filters.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BreachCommand {
    /// Build a breached-password or leaked-pair filter from lists.
    Build(BuildArgs),
    /// Look a password (read from standard input) up in a filter.
    Query(QueryArgs),
}

/// Runs a [`BreachCommand`]; returns the process exit code.
pub fn run(cmd: &BreachCommand) -> i32 {
    match cmd {
        BreachCommand::Build(args) => match run_build(args) {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        BreachCommand::Query(args) => run_query(args),
    }
}

/// `stuffgate breach build`.
#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// Input list (repeatable). `.gz` is read transparently; `-` is standard input.
    #[arg(long = "input", value_name = "FILE", required = true)]
    pub input: Vec<PathBuf>,
    /// Where to write the filter (written to `OUT.tmp`, then renamed).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Target false-positive rate: 0.001 costs ≈ 1.8 bytes per entry, 0.01 ≈ 1.2.
    #[arg(long, default_value_t = 0.001)]
    pub fp_rate: f64,
    /// `sha1` format: skip entries seen fewer than this many times.
    #[arg(long, default_value_t = 1)]
    pub min_count: u64,
    /// Input line format.
    #[arg(long, value_enum, default_value_t = Format::Sha1)]
    pub format: Format,
    /// Number of entries to size the filter for (default: count them in a
    /// first pass, or estimate from the size of a large .gz).
    #[arg(long)]
    pub expected_items: Option<u64>,
    /// Fixed 64-hex-digit SipHash seed for a reproducible file (with
    /// SOURCE_DATE_EPOCH); default random.
    #[arg(long, value_name = "HEX")]
    pub seed: Option<String>,
    /// Fail (and write nothing) if any line is bad.
    #[arg(long)]
    pub strict: bool,
    /// No progress output and no summary.
    #[arg(long)]
    pub quiet: bool,
}

impl BuildArgs {
    /// Defaults for `input` → `out` (as clap would fill them).
    pub fn new(input: Vec<PathBuf>, out: PathBuf) -> Self {
        BuildArgs {
            input,
            out,
            fp_rate: 0.001,
            min_count: 1,
            format: Format::Sha1,
            expected_items: None,
            seed: None,
            strict: false,
            quiet: false,
        }
    }
}

/// What `run_build` did.
#[derive(Clone, Debug)]
pub struct BuildReport {
    pub out: PathBuf,
    pub kind: FilterKind,
    pub format: Format,
    /// Entries the filter was sized for, and how that number was obtained.
    pub expected_items: u64,
    pub expected_items_source: ItemCountSource,
    /// Lines read.
    pub lines: u64,
    /// Lines accepted (duplicates included).
    pub keys: u64,
    /// Keys in the filter (the header's item count; duplicates included).
    pub items: u64,
    /// Distinct keys, estimated from the bits set.
    pub estimated_distinct: u64,
    pub skipped_min_count: u64,
    pub bad_lines: u64,
    pub bad_examples: Vec<BadLine>,
    pub fp_rate: f64,
    /// `(bits set / bits)^k` after the build.
    pub estimated_fp_rate: f64,
    pub bits: u64,
    pub hash_functions: u32,
    pub file_bytes: u64,
    /// Seconds spent sizing (first pass) and building.
    pub count_secs: f64,
    pub build_secs: f64,
}

impl BuildReport {
    /// Build throughput (lines read per second, second pass only).
    pub fn lines_per_sec(&self) -> f64 {
        if self.build_secs > 0.0 {
            self.lines as f64 / self.build_secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote {} ({} filter, {} bytes, {} bits, k={})",
            self.out.display(),
            self.kind,
            self.file_bytes,
            self.bits,
            self.hash_functions
        )?;
        writeln!(
            f,
            "  {} lines read in {:.1}s ({:.0} lines/s); {} accepted (≈{} distinct); {} below --min-count; {} bad",
            self.lines,
            self.build_secs,
            self.lines_per_sec(),
            self.keys,
            self.estimated_distinct,
            self.skipped_min_count,
            self.bad_lines
        )?;
        writeln!(
            f,
            "  sized for {} entries ({}, {:.1}s); target fp rate {}, estimated {:.6}",
            self.expected_items, self.expected_items_source, self.count_secs, self.fp_rate, self.estimated_fp_rate
        )?;
        for b in &self.bad_examples {
            writeln!(f, "  bad line {b}")?;
        }
        if self.bad_lines > self.bad_examples.len() as u64 {
            writeln!(f, "  ... and {} more bad lines", self.bad_lines - self.bad_examples.len() as u64)?;
        }
        Ok(())
    }
}

/// Builds a filter as `stuffgate breach build` does: sizes it (unless
/// `--expected-items`), streams every input through the parser on a reader
/// thread into the filter on this thread, then writes the file atomically.
/// Progress goes to stderr (a bar on a terminal, else a line every 5 s), and
/// the summary too unless `--quiet`.
pub fn run_build(args: &BuildArgs) -> anyhow::Result<BuildReport> {
    if !(args.fp_rate > 0.0 && args.fp_rate < 1.0) {
        bail!("--fp-rate must be strictly between 0 and 1 (e.g. 0.001), got {}", args.fp_rate);
    }
    if args.input.is_empty() {
        bail!("give at least one --input FILE");
    }
    if args.input.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("standard input (`--input -`) can be given only once");
    }
    let seed = match &args.seed {
        None => None,
        Some(hex) => {
            Some(parse_seed(hex).with_context(|| format!("--seed must be 64 hex digits (32 bytes), got {hex:?}"))?)
        }
    };
    probe_writable(&args.out)?;
    let kind = args.format.kind();
    if args.min_count > 1 && args.format != Format::Sha1 && !args.quiet {
        eprintln!("note: --min-count applies to --format sha1 only; ignored for --format {}", args.format);
    }

    // Pass 1: size the filter.
    let t0 = Instant::now();
    let (expected_items, expected_source) = match args.expected_items {
        Some(n) => (n, ItemCountSource::Given),
        None => {
            let counters = IngestCounters::default();
            let total = total_size(&args.input);
            let mut sum = 0u64;
            let mut how = ItemCountSource::Counted;
            if !args.quiet {
                eprintln!(
                    "sizing the filter: counting the entries of {} input(s) (pass --expected-items N to skip this pass)",
                    args.input.len()
                );
            }
            let res = with_progress("sizing", total, &counters, args.quiet, || {
                for p in &args.input {
                    let (n, h) = estimate_items(p, args.format, args.min_count, &counters.bytes)?;
                    if h == ItemCountSource::Estimated {
                        how = h;
                    }
                    sum = sum.saturating_add(n);
                }
                Ok::<_, super::BreachError>(())
            });
            res.with_context(|| "cannot size the filter; pass --expected-items N to skip this pass")?;
            if how == ItemCountSource::Estimated && args.min_count > 1 && !args.quiet {
                eprintln!(
                    "note: the .gz size estimate counts every line; with --min-count {} pass --expected-items for a smaller filter",
                    args.min_count
                );
            }
            (sum, how)
        }
    };
    let count_secs = t0.elapsed().as_secs_f64();
    let mut builder = match &seed {
        Some(s) => FilterBuilder::with_seed(kind, expected_items, args.fp_rate, s)?,
        None => FilterBuilder::new(kind, expected_items, args.fp_rate)?,
    };

    // Pass 2: build.
    let t1 = Instant::now();
    let counters = IngestCounters::default();
    let mut sources = Vec::with_capacity(args.input.len());
    for p in &args.input {
        let OpenedInput { source, .. } = open_input(p, &counters.bytes)?;
        sources.push(source);
    }
    let total = total_size(&args.input);
    let stats = with_progress("building", total, &counters, args.quiet, || {
        build_filter(sources, args.format, args.min_count, &mut builder, &counters)
    })?;
    let build_secs = t1.elapsed().as_secs_f64();

    if stats.keys == 0 {
        bail!(
            "no entries were accepted from {} lines ({} bad, {} below --min-count); check --format (is {}) and the inputs; nothing was written",
            stats.lines,
            stats.bad_lines,
            stats.skipped_min_count,
            args.format
        );
    }
    if args.strict && stats.bad_lines > 0 {
        let first: Vec<String> = stats.bad_examples.iter().map(|b| b.to_string()).collect();
        bail!("{} bad lines with --strict (first: {}); nothing was written", stats.bad_lines, first.join("; "));
    }
    let filter = builder.finish()?;
    let estimated_fp_rate = filter.estimated_fp_rate();
    let estimated_distinct = filter.estimated_distinct_items();
    filter.save(&args.out)?;

    let report = BuildReport {
        out: args.out.clone(),
        kind,
        format: args.format,
        expected_items,
        expected_items_source: expected_source,
        lines: stats.lines,
        keys: stats.keys,
        items: filter.items(),
        estimated_distinct,
        skipped_min_count: stats.skipped_min_count,
        bad_lines: stats.bad_lines,
        bad_examples: stats.bad_examples,
        fp_rate: args.fp_rate,
        estimated_fp_rate,
        bits: filter.bits(),
        hash_functions: filter.hash_functions(),
        file_bytes: filter.file_size(),
        count_secs,
        build_secs,
    };
    if !args.quiet {
        eprint!("{report}");
        if estimated_fp_rate > 2.0 * args.fp_rate {
            eprintln!(
                "warning: the filter holds ≈{} entries but was sized for {}; its false-positive rate is about {:.4} instead of {}; rebuild with --expected-items {}",
                estimated_distinct,
                expected_items,
                estimated_fp_rate,
                args.fp_rate,
                estimated_distinct
            );
        }
    }
    Ok(report)
}

fn parse_seed(hex_str: &str) -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_str.trim(), &mut seed)?;
    Ok(seed)
}

/// Fails early (before a long build) when the output cannot be written.
fn probe_writable(out: &Path) -> anyhow::Result<()> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::File::create(&tmp).with_context(|| {
        format!(
            "cannot write next to --out {} (tried {}); check that the directory exists and is writable",
            out.display(),
            tmp.display()
        )
    })?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn total_size(inputs: &[PathBuf]) -> Option<u64> {
    let mut total = 0u64;
    for p in inputs {
        if p.as_os_str() == "-" {
            return None;
        }
        total += std::fs::metadata(p).ok()?.len();
    }
    Some(total)
}

/// Runs `work` while showing progress from `counters` on stderr: an
/// indicatif bar (bytes, rate, ETA) on a terminal, else a log line every 5 s.
fn with_progress<T>(
    phase: &str,
    total: Option<u64>,
    counters: &IngestCounters,
    quiet: bool,
    work: impl FnOnce() -> T,
) -> T {
    if quiet {
        return work();
    }
    let tty = io::stderr().is_terminal();
    std::thread::scope(|s| {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        s.spawn(move || {
            if tty {
                show_bar(phase, total, counters, &stop_rx);
            } else {
                log_lines(phase, total, counters, &stop_rx);
            }
        });
        let out = work();
        drop(stop_tx);
        out
    })
}

fn show_bar(phase: &str, total: Option<u64>, counters: &IngestCounters, stop: &mpsc::Receiver<()>) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if total.is_some() {
        "{prefix} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{prefix} [{elapsed_precise}] {spinner} {bytes} {bytes_per_sec} {msg}"
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_prefix(phase.to_owned());
    loop {
        bar.set_position(counters.bytes.load(Ordering::Relaxed));
        let lines = counters.lines.load(Ordering::Relaxed);
        if lines > 0 {
            bar.set_message(format!("{lines} lines"));
        }
        if !matches!(stop.recv_timeout(Duration::from_millis(150)), Err(mpsc::RecvTimeoutError::Timeout)) {
            break;
        }
    }
    bar.finish_and_clear();
}

fn log_lines(phase: &str, total: Option<u64>, counters: &IngestCounters, stop: &mpsc::Receiver<()>) {
    let start = Instant::now();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_secs(5)) {
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let lines = counters.lines.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        let mut msg = format!("stuffgate breach build: {phase}: {:.1} MB read", bytes as f64 / 1e6);
        if lines > 0 {
            msg.push_str(&format!(", {lines} lines, {:.0} lines/s", lines as f64 / secs));
        }
        if let Some(t) = total.filter(|&t| t > 0) {
            let frac = (bytes as f64 / t as f64).min(1.0);
            let eta = if frac > 0.0 { secs * (1.0 - frac) / frac } else { 0.0 };
            msg.push_str(&format!(" ({:.1}% of {:.1} MB, ETA {:.0}s)", frac * 100.0, t as f64 / 1e6, eta));
        }
        eprintln!("{msg}");
    }
}

/// `stuffgate breach query`. The password is read from standard input (first
/// line, without its line ending), never from the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct QueryArgs {
    /// Filter file made by `stuffgate breach build`.
    #[arg(long, value_name = "FILE")]
    pub filter: PathBuf,
    /// Look up this SHA-1 (40 hex digits) instead of reading a password.
    #[arg(long, value_name = "HEX", conflicts_with = "account")]
    pub sha1: Option<String>,
    /// Account for pair filters (normalised: trim + lowercase).
    #[arg(long)]
    pub account: Option<String>,
    /// Password filters: also try the lower-cased password (for lists that
    /// hold only lower-cased passwords, like the shipped Django list).
    #[arg(long)]
    pub any_case: bool,
}

/// Exit code: found.
pub const EXIT_FOUND: i32 = 0;
/// Exit code: not found.
pub const EXIT_NOT_FOUND: i32 = 1;
/// Exit code: error (message on stderr).
pub const EXIT_ERROR: i32 = 2;

/// Runs `stuffgate breach query` on the process's stdin/stdout/stderr.
/// Returns 0 when found, 1 when not found, 2 on error.
pub fn run_query(args: &QueryArgs) -> i32 {
    let stdin = io::stdin();
    if args.sha1.is_none() && stdin.is_terminal() {
        eprint!("password (it will be echoed), then Enter: ");
    }
    let mut input = stdin.lock();
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    query(args, &mut input, &mut out, &mut err)
}

/// [`run_query`] with explicit streams (testable).
pub fn query(args: &QueryArgs, input: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match query_inner(args, input) {
        Ok((found, what, filter)) => {
            let _ = writeln!(
                out,
                "{}: {what} {} in {} ({} filter, {} entries, false-positive rate {})",
                if found { "found" } else { "not found" },
                if found { "is" } else { "is not" },
                args.filter.display(),
                filter.kind(),
                filter.items(),
                filter.fp_rate()
            );
            if found {
                EXIT_FOUND
            } else {
                EXIT_NOT_FOUND
            }
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            EXIT_ERROR
        }
    }
}

fn query_inner(args: &QueryArgs, input: &mut dyn Read) -> anyhow::Result<(bool, &'static str, BreachFilter)> {
    if args.sha1.is_some() && args.account.is_some() {
        bail!("--sha1 and --account cannot be combined: --sha1 is for password filters");
    }
    let sha1 = match &args.sha1 {
        Some(h) => Some(decode_sha1_hex_str(h).ok_or_else(|| {
            anyhow::anyhow!(
                "--sha1 must be 40 hex digits (the SHA-1 of the password), got {} characters",
                h.trim().len()
            )
        })?),
        None => None,
    };
    let filter = BreachFilter::load(&args.filter)?;
    let path = args.filter.display().to_string();
    match filter.kind() {
        FilterKind::Password => {
            if args.account.is_some() {
                bail!("{path} is a password filter: drop --account, or point --filter at a pair filter (built with --format pairs)");
            }
            if let Some(h) = sha1 {
                return Ok((filter.contains_sha1(&h), "the SHA-1", filter));
            }
            let pw = read_password(input)?;
            let found =
                if args.any_case { filter.contains_password_any_case(&pw) } else { filter.contains_password(&pw) };
            Ok((found, "the password", filter))
        }
        FilterKind::Pair => {
            if sha1.is_some() {
                bail!("{path} is a pair filter: give --account ACCOUNT and the password on standard input instead of --sha1");
            }
            let Some(account) = &args.account else {
                bail!("{path} is a pair filter: give --account ACCOUNT (the password comes from standard input)");
            };
            let account = normalise_account(account);
            if account.is_empty() {
                bail!("--account is empty after trimming");
            }
            let pw = read_password(input)?;
            let found = filter.contains_pair(&account, &pw);
            Ok((found, "the account/password pair", filter))
        }
    }
}

/// First line of `input`, without "\n" / "\r\n"; at most 64 KiB.
fn read_password(input: &mut dyn Read) -> anyhow::Result<Vec<u8>> {
    let mut r = io::BufReader::new(input.take(64 * 1024 + 1));
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).context("cannot read the password from standard input")?;
    if n == 0 {
        bail!("no password on standard input; pipe it in, e.g. `printf '%s\\n' \"$PW\" | stuffgate breach query --filter FILE`");
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > 64 * 1024 {
        bail!("the password on standard input is longer than 64 KiB");
    }
    if line.is_empty() {
        bail!("the password on standard input is empty");
    }
    Ok(line)
}
