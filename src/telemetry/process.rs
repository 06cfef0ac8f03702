//! The standard `process_*` families of Prometheus clients, about the daemon's own process,
//! with their usual names and units.
//!
//! Part of [`Telemetry`](super::Telemetry); everything is read at scrape time, except the start
//! time, read once.
//!
//! | family | type | Linux | macOS |
//! |---|---|---|---|
//! | `process_cpu_seconds_total` | counter | `getrusage` | `getrusage` |
//! | `process_open_fds` | gauge | entries of `/proc/self/fd` | entries of `/dev/fd` |
//! | `process_max_fds` | gauge | soft `RLIMIT_NOFILE` | soft `RLIMIT_NOFILE` |
//! | `process_start_time_seconds` | gauge | `/proc/self/stat` and the boot time | when the metrics were registered, at startup |
//! | `process_resident_memory_bytes` | gauge | `/proc/self/stat` | not exported |
//! | `process_virtual_memory_bytes` | gauge | `/proc/self/stat` | not exported |
//!
//! The open fd count leaves out the descriptor opened to count them. On macOS the current
//! resident size needs Mach calls (and `unsafe`), so the memory families are left out there.
//! A value that cannot be read at a scrape leaves its family without series for that scrape.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};
use revka_actors::metrics::{Metrics, MetricsError};

/// Registers the `process_*` families.
pub(super) fn register(metrics: &Metrics) -> Result<(), MetricsError> {
    metrics.register_counter_fn(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        &[],
        Box::new(|| cpu_seconds().map(|s| (vec![], s)).into_iter().collect()),
    )?;
    metrics.register_gauge_fn(
        "process_open_fds",
        "Number of open file descriptors.",
        &[],
        Box::new(|| open_fds().map(|n| (vec![], n as f64)).into_iter().collect()),
    )?;
    metrics.register_gauge_fn(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        &[],
        Box::new(|| max_fds().map(|n| (vec![], n)).into_iter().collect()),
    )?;
    let start = start_time_seconds();
    metrics.register_gauge_fn(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &[],
        Box::new(move || vec![(vec![], start)]),
    )?;
    #[cfg(target_os = "linux")]
    {
        let memory = |pick: fn(&linux::Stat) -> u64| -> revka_actors::metrics::GaugeFn {
            Box::new(move || {
                linux::Stat::read()
                    .map(|stat| (vec![], pick(&stat) as f64))
                    .into_iter()
                    .collect()
            })
        };
        metrics.register_gauge_fn(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[],
            memory(|s| s.rss_bytes),
        )?;
        metrics.register_gauge_fn(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[],
            memory(|s| s.vsize_bytes),
        )?;
    }
    Ok(())
}

/// User plus system CPU time of the whole process, in seconds.
fn cpu_seconds() -> Option<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

/// Open file descriptors, without the one `read_dir` opens to list them.
fn open_fds() -> Option<usize> {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    let entries = std::fs::read_dir(dir).ok()?.count();
    Some(entries.saturating_sub(1))
}

/// The soft limit on open file descriptors (`+Inf` when unlimited).
fn max_fds() -> Option<f64> {
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    Some(if soft == nix::sys::resource::RLIM_INFINITY {
        f64::INFINITY
    } else {
        soft as f64
    })
}

/// When the process started, in Unix seconds: from `/proc` on Linux, else (or when `/proc`
/// cannot be read) now, which is at most moments after the daemon's start.
fn start_time_seconds() -> f64 {
    #[cfg(target_os = "linux")]
    match linux::start_time_seconds() {
        Some(start) => return start,
        None => tracing::warn!(
            "cannot read the process start time from /proc; process_start_time_seconds is the time metrics were registered"
        ),
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(target_os = "linux")]
pub(super) mod linux {
    //! `/proc/self/stat` and `/proc/stat`, as proc(5) lays them out.

    use nix::unistd::{SysconfVar, sysconf};

    /// The fields of `/proc/self/stat` the process families use.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Stat {
        /// Clock ticks after boot at which the process started (field 22).
        pub(crate) start_ticks: u64,
        /// Virtual memory size (field 23, in bytes).
        pub(crate) vsize_bytes: u64,
        /// Resident set size (field 24, in pages, times the page size).
        pub(crate) rss_bytes: u64,
    }

    impl Stat {
        /// Reads `/proc/self/stat`.
        pub(crate) fn read() -> Option<Self> {
            let page = sysconf(SysconfVar::PAGE_SIZE).ok()??;
            Self::parse(
                &std::fs::read_to_string("/proc/self/stat").ok()?,
                page as u64,
            )
        }

        /// Parses a stat line. The command name (field 2) is in parentheses and may hold
        /// spaces and parentheses itself, so fields are counted after the last `)`.
        pub(crate) fn parse(line: &str, page_size: u64) -> Option<Self> {
            let rest = &line[line.rfind(')')? + 1..];
            // `rest` starts at field 3 (the state): field n is at index n - 3.
            let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
            let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
            Some(Self {
                start_ticks: field(22)?,
                vsize_bytes: field(23)?,
                rss_bytes: field(24)?.checked_mul(page_size)?,
            })
        }
    }

    /// The boot time in Unix seconds: the `btime` line of `/proc/stat`.
    pub(crate) fn parse_btime(proc_stat: &str) -> Option<u64> {
        proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }

    /// The boot time plus the process's start, in clock ticks after boot.
    pub(super) fn start_time_seconds() -> Option<f64> {
        let ticks = sysconf(SysconfVar::CLK_TCK).ok()??;
        let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let stat = Stat::read()?;
        Some(btime as f64 + stat.start_ticks as f64 / ticks as f64)
    }
}
