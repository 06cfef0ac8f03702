//! Ending a terminal's processes: the session its process leads, its process group, every
//! descendant, with nothing left behind (`root/terminals/term:<id>`).
//!
//! A terminal's process leads a session of its own ([`super::pty`]), and an interactive shell
//! puts each job in a process group of its own within that session, so one `killpg` of the
//! leader's group would miss them. On Linux the processes of a terminal are found in `/proc`:
//! those whose session is the leader's, those in its group, and the descendants of any of them
//! (a job that called `setsid` again). [`terminate`] sends them `SIGHUP` and `SIGTERM` (and
//! `SIGCONT`, so a stopped job sees them), waits up to the grace for them to go, then
//! `SIGKILL`s what is left. Zombies among them whose parent is the daemon (orphans it adopted
//! as a child subreaper) are reaped here; the leader is reaped by its own waiter. Elsewhere
//! the leader's group is signalled alone.
//!
//! [`kill_now`] is the synchronous `SIGKILL` for a terminal actor that is dropped without a
//! graceful stop (killed, or panicked).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::Instant;

use revka_actors::process::ExitInfo;

/// The leaders of the live terminals, each with whether it has been reaped: for a forced exit
/// ([`kill_all_now`]), where no actor state is dropped.
static LIVE: Mutex<BTreeMap<i32, Arc<AtomicBool>>> = Mutex::new(BTreeMap::new());

/// Registers a terminal's leader; `reaped` is set by its waiter.
pub(crate) fn register(leader: i32, reaped: Arc<AtomicBool>) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(leader, reaped);
}

/// Forgets a terminal's leader (its processes are gone, or are being killed).
pub(crate) fn unregister(leader: i32) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&leader);
}

/// SIGKILLs every process of every live terminal at once: for a forced exit, where the
/// terminal actors are not stopped.
pub fn kill_all_now() {
    let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for (leader, reaped) in live {
        kill_now(leader, !reaped.load(Ordering::SeqCst));
    }
}

/// How often the processes are looked for while waiting.
const POLL: Duration = Duration::from_millis(20);
/// How long SIGKILLed processes may take to be gone.
const AFTER_KILL: Duration = Duration::from_secs(3);

/// SIGHUP + SIGTERM to every process of the terminal led by `leader`, SIGKILL from `grace`
/// on; returns once none is left (or [`AFTER_KILL`] after the SIGKILL). `exit` is the leader's.
pub(crate) async fn terminate(
    leader: i32,
    grace: Duration,
    exit: &watch::Receiver<Option<ExitInfo>>,
) {
    let leader_alive = || exit.borrow().is_none();
    for sig in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGCONT] {
        signal_all(leader, sig, leader_alive());
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !leader_alive() && !any_left(leader) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(
        pid = leader,
        grace_ms = grace.as_millis() as u64,
        "terminal processes outlived SIGTERM; sending SIGKILL"
    );
    let deadline = Instant::now() + AFTER_KILL;
    loop {
        signal_all(leader, Signal::SIGKILL, leader_alive());
        if !leader_alive() && !any_left(leader) {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(pid = leader, "terminal processes still there after SIGKILL");
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGKILL to every process of the terminal led by `leader`, at once.
pub(crate) fn kill_now(leader: i32, leader_alive: bool) {
    signal_all(leader, Signal::SIGKILL, leader_alive);
}

/// Sends `sig` to the leader's group, to every other process of its terminal, and to the
/// leader itself while it is not reaped (its pid cannot be reused before that).
fn signal_all(leader: i32, sig: Signal, leader_alive: bool) {
    if leader_alive {
        let _ = signal::kill(Pid::from_raw(leader), sig);
    }
    match signal::killpg(Pid::from_raw(leader), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::debug!(pgid = leader, signal = %sig, error = %e, "killpg failed"),
    }
    for member in imp::members(leader) {
        if member.pid != leader && !member.zombie {
            let _ = signal::kill(Pid::from_raw(member.pid), sig);
        }
    }
    imp::reap(leader);
}

/// Whether any process of the terminal but its (reaped) leader is left, zombies adopted by
/// the daemon included (they are reaped on the way).
fn any_left(leader: i32) -> bool {
    imp::reap(leader);
    imp::members(leader).iter().any(|m| m.pid != leader)
}

/// One process of a terminal (or of a built-in tool's run: `tools::builtin::exec::process`).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct Member {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) zombie: bool,
}

pub(crate) use imp::members_where;

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::BTreeSet;

    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::Pid;

    use super::Member;

    /// `(state, ppid, pgrp, session)` from `/proc/<pid>/stat` (the command name may hold
    /// spaces and parentheses: the fields start after the last `)`).
    pub(super) fn parse_stat(stat: &str) -> Option<(char, i32, i32, i32)> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        let session = fields.next()?.parse().ok()?;
        Some((state, ppid, pgrp, session))
    }

    /// The processes of the terminal led by `leader`: its session, its group, and the
    /// descendants of any of them.
    pub(super) fn members(leader: i32) -> Vec<Member> {
        members_where(leader, &|_, _| false)
    }

    /// The processes in `leader`'s session or group, those `also(pid, state)` picks, and the
    /// descendants of any of them.
    pub(crate) fn members_where(leader: i32, also: &dyn Fn(i32, char) -> bool) -> Vec<Member> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                && let Some((state, ppid, pgrp, session)) = parse_stat(&stat)
            {
                all.push((pid, state, ppid, pgrp, session));
            }
        }
        let mut found: BTreeSet<i32> = all
            .iter()
            // The leader's own session id is its pid; a process that merely reuses the pid
            // of a reaped leader is in another session and group.
            .filter(|&&(pid, state, _, pgrp, session)| {
                pgrp == leader || session == leader || also(pid, state)
            })
            .map(|&(pid, ..)| pid)
            .collect();
        // Descendants that left the session (bounded by the number of processes).
        loop {
            let before = found.len();
            for &(pid, _, ppid, _, _) in &all {
                if found.contains(&ppid) {
                    found.insert(pid);
                }
            }
            if found.len() == before {
                break;
            }
        }
        all.iter()
            .filter(|(pid, ..)| found.contains(pid))
            .map(|&(pid, state, ppid, _, _)| Member {
                pid,
                ppid,
                zombie: state == 'Z' || state == 'X',
            })
            .collect()
    }

    /// Reaps the zombies of the terminal whose parent is the daemon (orphans it adopted),
    /// never the leader (its waiter reaps it).
    pub(super) fn reap(leader: i32) {
        let me = std::process::id() as i32;
        for member in members(leader) {
            if member.zombie && member.ppid == me && member.pid != leader {
                let _ = waitpid(Pid::from_raw(member.pid), Some(WaitPidFlag::WNOHANG));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn stat_fields_after_the_command_name() {
            let stat = "4242 (a) b) (c) S 17 4242 4000 0 -1 4194560 ...";
            assert_eq!(super::parse_stat(stat), Some(('S', 17, 4242, 4000)));
            assert_eq!(super::parse_stat("garbage"), None);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Member;

    pub(super) fn members(_leader: i32) -> Vec<Member> {
        Vec::new()
    }

    pub(crate) fn members_where(_leader: i32, _also: &dyn Fn(i32, char) -> bool) -> Vec<Member> {
        Vec::new()
    }

    pub(super) fn reap(_leader: i32) {}
}
