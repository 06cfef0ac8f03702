//! Process figures from `/proc`: CPU time of a process tree (nanosecond `schedstat` of every
//! thread), resident memory and open file descriptors.

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

/// CPU time of every thread of `pid` (nanoseconds of `/proc/<pid>/task/*/schedstat`).
pub fn cpu(pid: i32) -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += s
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

/// CPU time of `root` and its live descendants.
pub fn tree_cpu(root: i32) -> Duration {
    tree(root).into_iter().map(cpu).sum()
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
    start_tree: Duration,
    start_self: Duration,
    started: std::time::Instant,
}

/// What a [`CpuMeter`] saw.
pub struct CpuUse {
    /// CPU of the measured tree.
    pub tree: Duration,
    /// CPU of the load generator.
    pub load: Duration,
    /// Wall time.
    pub wall: Duration,
}

impl CpuMeter {
    pub fn start(root: i32) -> Self {
        Self {
            root,
            start_tree: tree_cpu(root),
            start_self: self_cpu(),
            started: std::time::Instant::now(),
        }
    }

    pub fn stop(self) -> CpuUse {
        CpuUse {
            tree: tree_cpu(self.root).saturating_sub(self.start_tree),
            load: self_cpu().saturating_sub(self.start_self),
            wall: self.started.elapsed(),
        }
    }
}
