//! Process-group signalling: the part of process supervision that must never leak.
//!
//! Every child runs in its own process group, so one `killpg` reaches the grandchildren it
//! forked. Before signalling we also walk `/proc` (Linux) for descendants that left the group
//! (`setsid`, `setpgid`) so they are signalled too. A `GroupGuard` SIGKILLs the group when it
//! is dropped: ractor skips `post_stop` after a kill or a panic, but it always drops the state.
//! Live groups are also kept in a process-wide registry so a forced daemon exit can kill them
//! all ([`kill_all_groups`]) even though destructors will not run. What a dead child left behind
//! outside its group is the job of [`super::orphans`].

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Process groups of live children, for [`kill_all_groups`].
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// SIGKILLs every live child process group, and every orphan the children left behind
/// (`orphans::kill_all`). For a forced exit, where `Drop` will not run.
pub fn kill_all_groups() {
    let groups = LIVE_GROUPS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for pgid in groups {
        signal_tree(pgid, Signal::SIGKILL);
    }
    super::orphans::kill_all();
}

/// Sends `sig` to the process group `pgid` and to every descendant of its leader that left
/// the group. Missing processes are not an error.
pub(crate) fn signal_tree(pgid: i32, sig: Signal) {
    let escaped = descendants(pgid);
    super::reaper::track_escaped(&escaped);
    match signal::killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, signal = %sig, error = %e, "killpg failed"),
    }
    for pid in escaped {
        let _ = signal::kill(Pid::from_raw(pid), sig);
    }
    // Orphans of the group are about to appear; make sure they are reaped.
    super::reaper::request_scan();
}

/// Descendants of `root` (by parent pid) that are no longer in its process group.
#[cfg(target_os = "linux")]
fn descendants(root: i32) -> Vec<i32> {
    // (pid, ppid, pgrp) of every process we can read.
    let mut procs: Vec<(i32, i32, i32)> = Vec::new();
    for pid in super::reaper::proc_pids() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((ppid, pgrp)) = parse_stat(&stat)
        {
            procs.push((pid, ppid, pgrp));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, pgrp) in &procs {
            if ppid == parent && !found.contains(&pid) && pid != root {
                frontier.push(pid);
                if pgrp != root {
                    found.push(pid);
                }
            }
        }
    }
    found
}

#[cfg(not(target_os = "linux"))]
fn descendants(_root: i32) -> Vec<i32> {
    Vec::new()
}

/// `(ppid, pgrp)` from `/proc/<pid>/stat`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_stat(stat: &str) -> Option<(i32, i32)> {
    super::reaper::parse_state(stat).map(|(_, ppid, pgrp)| (ppid, pgrp))
}

/// Owns a child's process group: registered while alive, SIGKILLed when dropped.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: i32,
}

impl GroupGuard {
    /// Takes ownership of the group led by `pid` (spawned with `process_group(0)`).
    pub(crate) fn new(pid: i32) -> Self {
        super::reaper::track_group(pid);
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid);
        Self { pgid: pid }
    }

    /// The group id (= the leader's pid).
    pub(crate) fn pgid(&self) -> i32 {
        self.pgid
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // Harmless after a graceful stop (the group is gone: ESRCH); essential after a kill or
        // a panic of the owning actor, when post_stop never ran.
        signal_tree(self.pgid, Signal::SIGKILL);
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.pgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let stat = "4242 (evil) (name) S 17 4242 4242 0 -1 4194560 ...";
        assert_eq!(parse_stat(stat), Some((17, 4242)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }
}
