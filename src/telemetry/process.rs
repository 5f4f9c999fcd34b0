//! Process metrics in Prometheus' standard names (`process_*`, as the Go and Python clients export them) and
//! `stuffgate_build_info`, refreshed on each scrape from `/proc/self` (Linux; elsewhere they stay at zero).

use std::sync::LazyLock;

use parking_lot::Mutex;
use prometheus::{register_counter, register_gauge, register_int_gauge_vec, Counter, Gauge, IntGaugeVec};

fn registered<T>(result: prometheus::Result<T>) -> T {
    #[allow(clippy::expect_used)]
    result.expect("metric names are unique")
}

static CPU_SECONDS: LazyLock<Counter> = LazyLock::new(|| {
    registered(register_counter!("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."))
});
static RESIDENT: LazyLock<Gauge> =
    LazyLock::new(|| registered(register_gauge!("process_resident_memory_bytes", "Resident memory size in bytes.")));
static VIRTUAL: LazyLock<Gauge> =
    LazyLock::new(|| registered(register_gauge!("process_virtual_memory_bytes", "Virtual memory size in bytes.")));
static OPEN_FDS: LazyLock<Gauge> =
    LazyLock::new(|| registered(register_gauge!("process_open_fds", "Number of open file descriptors.")));
static MAX_FDS: LazyLock<Gauge> =
    LazyLock::new(|| registered(register_gauge!("process_max_fds", "Maximum number of open file descriptors.")));
static THREADS: LazyLock<Gauge> =
    LazyLock::new(|| registered(register_gauge!("process_threads", "Number of OS threads in the process.")));
static START_TIME: LazyLock<Gauge> = LazyLock::new(|| {
    registered(register_gauge!("process_start_time_seconds", "Start time of the process since unix epoch in seconds."))
});
static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    registered(register_int_gauge_vec!(
        "stuffgate_build_info",
        "Always 1; the labels say which build is running (version, target OS and architecture, debug or release).",
        &["version", "os", "arch", "profile"]
    ))
});

/// CPU seconds already added to the counter (it only goes up by differences).
static CPU_SEEN: Mutex<f64> = Mutex::new(0.0);

/// Read `/proc/self` and update the gauges; cheap (a few small reads), called per scrape.
pub fn refresh() {
    BUILD_INFO
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            if cfg!(debug_assertions) { "debug" } else { "release" },
        ])
        .set(1);
    let Some(stat) = read_stat() else { return };
    let mut seen = CPU_SEEN.lock();
    if stat.cpu_seconds > *seen {
        CPU_SECONDS.inc_by(stat.cpu_seconds - *seen);
        *seen = stat.cpu_seconds;
    }
    RESIDENT.set(stat.resident_bytes);
    VIRTUAL.set(stat.virtual_bytes);
    THREADS.set(stat.threads);
    START_TIME.set(stat.start_time);
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        OPEN_FDS.set(entries.count() as f64);
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        MAX_FDS.set(limit.rlim_cur as f64);
    }
}

struct Stat {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    start_time: f64,
}

fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3] here (pid and comm are before the ')').
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
    let boot = now - uptime;
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        threads: field(20)?,
        start_time: boot + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_metrics_read_this_process() {
        super::refresh();
        let stat = super::read_stat().expect("/proc/self/stat parses");
        assert!(stat.resident_bytes > 1_000_000.0, "{}", stat.resident_bytes);
        assert!(stat.threads >= 1.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((now - stat.start_time).abs() < 3600.0, "started within the hour: {}", stat.start_time);
        assert!(super::OPEN_FDS.get() >= 3.0);
    }
}
