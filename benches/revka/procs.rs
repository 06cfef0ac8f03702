//! Process figures from `/proc`: CPU time of a process tree and how many times its threads
//! were put on a CPU (the nanosecond `schedstat` of every thread), resident memory and open
//! file descriptors.

use std::collections::HashMap;
use std::time::Duration;

/// `pid`'s parent, from `/proc/<pid>/stat` (the field after the parenthesised command name).
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// `root` and all its live descendants.
pub fn tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// What the scheduler counted for a process tree: CPU time, and how many times one of its
/// threads was put on a CPU (each one a wake-up or a preemption: a figure the machine's noise
/// moves much less than time).
#[derive(Clone, Copy, Default)]
pub struct Sched {
    pub cpu: Duration,
    pub runs: u64,
}

impl std::ops::Add for Sched {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            cpu: self.cpu + other.cpu,
            runs: self.runs + other.runs,
        }
    }
}

impl Sched {
    fn since(self, start: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(start.cpu),
            runs: self.runs.saturating_sub(start.runs),
        }
    }
}

/// The scheduler's figures summed over every thread of `pid` (`/proc/<pid>/task/*/schedstat`:
/// nanoseconds on a CPU, nanoseconds waiting, times run).
pub fn sched(pid: i32) -> Sched {
    let mut total = Sched::default();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                let mut fields = s.split_whitespace().map(|n| n.parse::<u64>().unwrap_or(0));
                let cpu = fields.next().unwrap_or(0);
                let runs = fields.nth(1).unwrap_or(0);
                total = total
                    + Sched {
                        cpu: Duration::from_nanos(cpu),
                        runs,
                    };
            }
        }
    }
    total
}

/// CPU time of every thread of `pid`.
pub fn cpu(pid: i32) -> Duration {
    sched(pid).cpu
}

/// The scheduler's figures for `root` and its live descendants.
pub fn tree_sched(root: i32) -> Sched {
    tree(root)
        .into_iter()
        .map(sched)
        .fold(Sched::default(), |a, b| a + b)
}

/// CPU time of this process (the load generator).
pub fn self_cpu() -> Duration {
    cpu(std::process::id() as i32)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Resident set size of `root` and its live descendants, in KiB.
pub fn tree_rss_kib(root: i32) -> u64 {
    tree(root).into_iter().map(rss_kib).sum()
}

/// Open file descriptors of `pid`.
pub fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Measures the CPU used by a process tree and by the load generator over a span.
pub struct CpuMeter {
    root: i32,
    start_tree: Sched,
    start_self: Duration,
    started: std::time::Instant,
}

/// What a [`CpuMeter`] saw.
pub struct CpuUse {
    /// CPU of the measured tree.
    pub tree: Duration,
    /// Times a thread of the measured tree was put on a CPU.
    pub runs: u64,
    /// CPU of the load generator.
    pub load: Duration,
    /// Wall time.
    pub wall: Duration,
}

impl CpuMeter {
    pub fn start(root: i32) -> Self {
        Self {
            root,
            start_tree: tree_sched(root),
            start_self: self_cpu(),
            started: std::time::Instant::now(),
        }
    }

    pub fn stop(self) -> CpuUse {
        let tree = tree_sched(self.root).since(self.start_tree);
        CpuUse {
            tree: tree.cpu,
            runs: tree.runs,
            load: self_cpu().saturating_sub(self.start_self),
            wall: self.started.elapsed(),
        }
    }
}
