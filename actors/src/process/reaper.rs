//! Orphan reaping: no zombie, whatever PID 1 is.
//!
//! When a supervised child dies, the grandchildren it forked are orphaned. Normally PID 1 adopts
//! and reaps them, but not every PID 1 does (minimal container inits, sandboxes), and then every
//! crash of a server that forks would leave zombies behind. So on Linux the first process spawn
//! makes this process a *child subreaper* (`PR_SET_CHILD_SUBREAPER`): orphans of our children
//! are re-parented to us, and a small thread reaps them.
//!
//! The thread must not steal exit statuses that tokio is waiting for (our direct children, the
//! group leaders). It only reaps zombies whose parent is us, that are not a supervised child, and
//! that either belong to one of our children's process groups without leading it, or were seen
//! escaping such a group (or in an orphan sweep). Scans run shortly after every group kill (when
//! orphans appear) and every 30 s as a safety net. The same thread runs the orphan sweeps of
//! [`super::orphans`], which terminate adopted orphans that are still alive.

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::{BTreeSet, VecDeque};
    use std::sync::mpsc::{self, RecvTimeoutError, SendError, Sender};
    use std::sync::{Mutex, OnceLock, PoisonError};
    use std::time::{Duration, Instant};

    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::Pid;

    use crate::process::orphans::{Sweep, advance, is_leader};

    /// Process groups of our children, current and recent (bounded).
    static GROUPS: Mutex<VecDeque<i32>> = Mutex::new(VecDeque::new());
    /// Pids seen leaving one of our groups (bounded).
    static ESCAPED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
    static SCAN: OnceLock<Option<Sender<Request>>> = OnceLock::new();

    /// What the reaper thread is asked to do.
    enum Request {
        /// Scan for zombies soon (orphans are about to appear).
        Scan,
        /// Run an orphan sweep.
        Sweep(Box<Sweep>),
    }

    const MAX_REMEMBERED: usize = 4096;
    const FOLLOW_UPS: [Duration; 4] = [
        Duration::from_millis(10),
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(5),
    ];
    const SAFETY_SCAN: Duration = Duration::from_secs(30);
    /// Sweep steps start this often and slow down to `SWEEP_POLL_MAX` while they wait.
    const SWEEP_POLL_MIN: Duration = Duration::from_millis(10);
    const SWEEP_POLL_MAX: Duration = Duration::from_millis(100);

    /// Makes this process a subreaper and starts the reaper thread (once).
    pub(crate) fn ensure_started() {
        SCAN.get_or_init(|| {
            if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
                tracing::warn!(error = %e, "cannot become a child subreaper; orphans go to PID 1");
                return None;
            }
            let (tx, rx) = mpsc::channel::<Request>();
            let spawned = std::thread::Builder::new()
                .name("revka-reaper".into())
                .spawn(move || run(rx));
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the reaper thread");
                    None
                }
            }
        });
    }

    /// Remembers a child's process group.
    pub(crate) fn track_group(pgid: i32) {
        let mut groups = GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
        if !groups.contains(&pgid) {
            groups.push_back(pgid);
            if groups.len() > MAX_REMEMBERED {
                groups.pop_front();
            }
        }
    }

    /// Remembers pids that left one of our groups.
    pub(crate) fn track_escaped(pids: &[i32]) {
        let mut escaped = ESCAPED.lock().unwrap_or_else(PoisonError::into_inner);
        escaped.extend(pids);
        while escaped.len() > MAX_REMEMBERED {
            escaped.pop_first();
        }
    }

    /// Asks for a scan soon (orphans are about to appear).
    pub(crate) fn request_scan() {
        if let Some(Some(tx)) = SCAN.get() {
            let _ = tx.send(Request::Scan);
        }
    }

    /// Hands a sweep to the reaper thread; gives it back when there is no thread (then we are
    /// not a subreaper, nothing is adopted, and there is nothing to sweep).
    pub(crate) fn submit(sweep: Box<Sweep>) -> Result<(), Box<Sweep>> {
        match SCAN.get() {
            Some(Some(tx)) => tx
                .send(Request::Sweep(sweep))
                .map_err(|SendError(r)| match r {
                    Request::Sweep(s) => s,
                    Request::Scan => unreachable!("sent a sweep"),
                }),
            _ => Err(sweep),
        }
    }

    /// Whether `pid` is known as ours: a member of one of our groups that does not lead it, or
    /// a process seen leaving one.
    pub(crate) fn is_tracked(pid: i32, pgrp: i32) -> bool {
        (pgrp != pid
            && GROUPS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&pgrp))
            || ESCAPED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&pid)
    }

    fn run(rx: mpsc::Receiver<Request>) {
        let mut due: Vec<Instant> = Vec::new();
        let mut sweeps: Vec<Sweep> = Vec::new();
        let mut poll = SWEEP_POLL_MIN;
        let mut next_step = Instant::now();
        loop {
            let now = Instant::now();
            let mut wake = due.iter().min().copied().unwrap_or(now + SAFETY_SCAN);
            if !sweeps.is_empty() {
                wake = wake.min(next_step);
            }
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Request::Scan) => {
                    let now = Instant::now();
                    due.extend(FOLLOW_UPS.iter().map(|d| now + *d));
                    due.sort();
                    due.dedup_by(|a, b| a.saturating_duration_since(*b) < Duration::from_millis(5));
                    continue;
                }
                Ok(Request::Sweep(sweep)) => {
                    // A new sweep gets its first step at once.
                    sweeps.push(*sweep);
                    poll = SWEEP_POLL_MIN;
                    next_step = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if !sweeps.is_empty() && now >= next_step {
                advance(&mut sweeps);
                next_step = Instant::now() + poll;
                poll = (poll * 2).min(SWEEP_POLL_MAX);
            }
            if due.first().is_some_and(|t| *t <= now) || (due.is_empty() && now >= wake) {
                due.retain(|t| *t > now);
                reap_orphans();
            }
        }
    }

    pub(crate) fn reap_orphans() {
        let me = std::process::id() as i32;
        let groups: Vec<i32> = GROUPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        for pid in super::proc_pids() {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((state, ppid, pgrp)) = super::parse_state(&stat) else {
                continue;
            };
            if state != 'Z' || ppid != me || is_leader(pid) {
                continue;
            }
            let orphan_of_ours = (pgrp != pid && groups.contains(&pgrp))
                || ESCAPED
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&pid);
            if orphan_of_ours {
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                tracing::debug!(pid, pgrp, "reaped an orphaned grandchild");
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use crate::process::orphans::Sweep;

    pub(crate) fn submit(sweep: Box<Sweep>) -> Result<(), Box<Sweep>> {
        Err(sweep)
    }
    pub(crate) fn ensure_started() {}
    pub(crate) fn track_group(_pgid: i32) {}
    pub(crate) fn track_escaped(_pids: &[i32]) {}
    pub(crate) fn request_scan() {}
    pub(crate) fn reap_orphans() {}
}

#[cfg(target_os = "linux")]
pub(crate) use imp::is_tracked;
pub(crate) use imp::{
    ensure_started, reap_orphans, request_scan, submit, track_escaped, track_group,
};

/// Parses state, ppid and pgrp out of `/proc/<pid>/stat` (fields after the last `)`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
/// Reaps every zombie child of this process (whoever it was), and returns how many child
/// processes are left (live ones; zombies just reaped are not counted).
#[cfg(target_os = "linux")]
pub(crate) fn reap_every_zombie_child() -> usize {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::Pid;
    let me = std::process::id() as i32;
    let mut left = 0;
    for pid in proc_pids() {
        match read_stat(pid) {
            Some(stat) if stat.ppid == me && !stat.alive() => {
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            }
            Some(stat) if stat.ppid == me => left += 1,
            _ => {}
        }
    }
    left
}

/// Elsewhere orphans are not adopted: nothing to do.
#[cfg(not(target_os = "linux"))]
pub(crate) fn reap_every_zombie_child() -> usize {
    0
}

pub(crate) fn parse_state(stat: &str) -> Option<(char, i32, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// The pids listed in `/proc` (none if it cannot be read).
#[cfg(target_os = "linux")]
pub(crate) fn proc_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
}

/// What the orphan sweeps need from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct Stat {
    /// `R`, `S`, `Z`, …
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) pgrp: i32,
    /// Start time in clock ticks after boot: with the pid, it names one process for good.
    pub(crate) start: u64,
}

impl Stat {
    /// Neither a zombie nor dead.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/<pid>/stat`: the fields after the last `)` (the command name may hold any
/// character) are state, ppid, pgrp, …, and the 20th of them is the start time.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_stat(stat: &str) -> Option<Stat> {
    let (state, ppid, pgrp) = parse_state(stat)?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(3);
    // Fields 6..=21 of the line lie between pgrp and the start time (field 22).
    let start = fields.nth(16)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgrp,
        start,
    })
}

/// Reads and parses `/proc/<pid>/stat`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::time::Duration;

    use super::*;
    use crate::testing::{eventually, process_exists};

    fn ppid_of(pid: i32) -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_state(&stat).map(|(_, ppid, _)| ppid)
    }

    #[tokio::test]
    async fn orphans_of_our_groups_are_adopted_and_reaped_by_us() {
        ensure_started();
        // A child that forks a grandchild and exits at once, orphaning it.
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
            .process_group(0)
            .output()
            .unwrap();
        let grandchild: i32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The group id is the grandchild's group (its parent led it); remember it as ours.
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap();
        let (_, _, pgrp) = parse_state(&stat).unwrap();
        track_group(pgrp);

        let me = std::process::id() as i32;
        eventually(
            "orphan re-parented to us (subreaper)",
            Duration::from_secs(5),
            || ppid_of(grandchild) == Some(me),
        )
        .await;
        // Only we can reap it now: PID 1 is not its parent any more.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(grandchild),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        request_scan();
        eventually("orphan reaped by us", Duration::from_secs(10), || {
            !process_exists(grandchild)
        })
        .await;
    }
}
