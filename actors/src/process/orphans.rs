//! Orphan termination: nothing a supervised child started outlives it.
//!
//! Killing a child's process group reaches what it forked, and [`super::group`] also walks
//! `/proc` for descendants that left the group while their parent still runs. Neither reaches a
//! descendant in a session of its own whose parent died first: the session manager's agents
//! (each run is `detached`) after a `kill -9` of the sidecar, or a daemonized helper of a server
//! that crashed. As a child subreaper (the `reaper` module) the daemon adopts exactly those
//! processes; this module recognises them and terminates them.
//!
//! - **Marking.** Every supervised child gets `REVKA_PROCESS_TREE=<daemon pid>.<token>` (one
//!   token per spawn, never reused) in its environment, which everything it starts inherits.
//! - **Sweep.** Once a child has exited and been reaped, a sweep for its tree runs on the reaper
//!   thread. An *orphan of the tree* is a process whose parent is the daemon, that is not a
//!   supervised child itself, and that carries the tree's marker, or is in the dead child's
//!   process group, or was seen in the tree at an earlier step (by pid and start time). The
//!   orphans and everything below them get SIGTERM (by process group when every member of the
//!   group belongs to the tree, else by pid), SIGKILL from the deadline on (the child's stop
//!   deadline, or its stop timeout after a crash), and are reaped. The sweep ends when none is
//!   left; a graceful stop of the child waits for it. `kill_all` (a forced daemon exit) turns
//!   every pending sweep into SIGKILL and sweeps every tree at once.
//! - **Never a stranger.** Only our own children are roots of a sweep (adopted orphans are our
//!   children, so their pids cannot be reused until we reap them), a direct child that is not
//!   marked (spawned by other code in this process) is never touched, and neither is a
//!   supervised child or the orphans of a tree whose child still runs.
//!
//! Linux only (it needs `/proc` and `PR_SET_CHILD_SUBREAPER`). Elsewhere orphans pass to PID 1:
//! on macOS a descendant that left its parent's process group survives a `kill -9` of that
//! parent (see `docs/supervision.md`). Known gaps on Linux: a process that drops the marker from
//! its environment *and* leaves its group, and whose parent dies before a sweep step saw it, is
//! not recognised; an adopted process that is already a zombie when first seen is recognised
//! only through its group (a zombie has no environment), otherwise it stays a zombie until the
//! daemon exits.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// The variable that marks every process of a supervised tree: `<daemon pid>.<token>`.
pub const TREE_VAR: &str = "REVKA_PROCESS_TREE";

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
/// Children spawned by process actors and not yet reaped (their exit status belongs to tokio).
static LEADERS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Sweeps submitted and not finished.
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// Bumped by [`kill_all`]: sweeps started before it SIGKILL at once.
static KILL_EPOCH: AtomicU64 = AtomicU64::new(0);

/// A fresh marker value for the next spawn.
pub(crate) fn new_mark() -> String {
    format!(
        "{}.{}",
        std::process::id(),
        NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)
    )
}

/// Spawns `cmd` as a supervised child. The leaders lock is held across the spawn, so a sweep
/// can never see the new child before it is known as one.
pub(crate) fn spawn_leader(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut leaders = LEADERS.lock().unwrap_or_else(PoisonError::into_inner);
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        leaders.insert(pid as i32);
    }
    Ok(child)
}

/// The supervised child `pid` has been reaped.
pub(crate) fn leader_reaped(pid: i32) {
    LEADERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&pid);
}

/// Whether `pid` is a supervised child not yet reaped (the reaper must leave it to tokio).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn is_leader(pid: i32) -> bool {
    LEADERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&pid)
}

/// Sweeps submitted and not finished (the daemon waits for them before it exits).
pub(crate) fn pending() -> usize {
    PENDING.load(Ordering::SeqCst)
}

/// Which processes a sweep is after.
#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
enum Scope {
    /// The tree of one supervised child: its marker and its (reaped) pid.
    Tree { mark: String, leader: i32 },
    /// Every tree of this process (a forced exit).
    All,
}

/// One sweep in progress; advanced by the reaper thread.
#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct Sweep {
    /// The status path of the child, for the log.
    path: String,
    scope: Scope,
    /// SIGTERM before, SIGKILL from here.
    deadline: Instant,
    /// Past this the sweep gives up (something survives SIGKILL: uninterruptible sleep).
    give_up: Instant,
    epoch: u64,
    /// Processes seen in the tree: (pid, start time).
    members: BTreeSet<(i32, u64)>,
    /// Group leaders seen in the tree: their groups are the tree's too.
    groups: BTreeSet<(i32, u64)>,
    /// Processes already sent SIGTERM.
    termed: BTreeSet<(i32, u64)>,
    /// Whether any orphan was found (for the log).
    found: bool,
    /// Whether SIGKILL was logged.
    killing: bool,
    done: Option<oneshot::Sender<()>>,
}

/// The log path of [`kill_all`]'s sweeps.
const KILL_ALL_PATH: &str = "(forced exit)";

/// How long a sweep keeps trying after its deadline.
const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl Sweep {
    /// A new sweep, counted in [`pending`] until it finishes (or is dropped).
    fn new(path: &str, scope: Scope, deadline: Instant) -> (Box<Self>, oneshot::Receiver<()>) {
        let (done, rx) = oneshot::channel();
        PENDING.fetch_add(1, Ordering::SeqCst);
        let sweep = Box::new(Self {
            path: path.to_owned(),
            scope,
            deadline,
            give_up: deadline + GIVE_UP_AFTER,
            epoch: KILL_EPOCH.load(Ordering::SeqCst),
            members: BTreeSet::new(),
            groups: BTreeSet::new(),
            termed: BTreeSet::new(),
            found: false,
            killing: false,
            done: Some(done),
        });
        (sweep, rx)
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            PENDING.fetch_sub(1, Ordering::SeqCst);
            let _ = done.send(());
        }
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Terminates the orphans of the tree marked `mark` whose child `leader` has just been reaped:
/// SIGTERM now, SIGKILL from `deadline`. Resolves once none is left (or at once when orphans
/// cannot be adopted on this platform).
pub(crate) fn sweep(
    path: &str,
    mark: String,
    leader: i32,
    deadline: Instant,
) -> oneshot::Receiver<()> {
    submit(path, Scope::Tree { mark, leader }, deadline)
}

fn submit(path: &str, scope: Scope, deadline: Instant) -> oneshot::Receiver<()> {
    let (sweep, rx) = Sweep::new(path, scope, deadline);
    // Without the reaper thread nothing is adopted, so there is nothing to sweep: dropping the
    // job finishes it.
    let _ = super::reaper::submit(sweep);
    rx
}

/// For a forced exit: every pending sweep SIGKILLs from now on, and every process of every
/// tree of ours that was adopted is SIGKILLed at once and then reaped. The daemon waits for
/// it through [`pending`].
pub(crate) fn kill_all() {
    KILL_EPOCH.fetch_add(1, Ordering::SeqCst);
    #[cfg(target_os = "linux")]
    {
        // The first pass runs here, so the kill does not depend on the reaper thread being
        // scheduled before the process exits.
        let (mut sweep, _) = Sweep::new(KILL_ALL_PATH, Scope::All, Instant::now());
        imp::step(&mut sweep, &imp::Snapshot::take());
    }
    // Then a sweep on the reaper thread reaps them and catches what they forked meanwhile.
    drop(submit(KILL_ALL_PATH, Scope::All, Instant::now()));
}

#[cfg(target_os = "linux")]
pub(crate) use imp::advance;

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::BufRead;
    use std::sync::PoisonError;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use nix::errno::Errno;
    use nix::sys::signal::{self, Signal};
    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::Pid;

    use super::{KILL_EPOCH, LEADERS, Scope, Sweep, TREE_VAR};
    use crate::process::reaper::{self, Stat};

    /// One reading of `/proc`.
    pub(crate) struct Snapshot {
        me: i32,
        my_pgrp: i32,
        procs: BTreeMap<i32, Stat>,
        children: BTreeMap<i32, Vec<i32>>,
    }

    impl Snapshot {
        pub(crate) fn take() -> Self {
            let me = std::process::id() as i32;
            let mut procs = BTreeMap::new();
            let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for pid in reaper::proc_pids() {
                if let Some(stat) = reaper::read_stat(pid) {
                    children.entry(stat.ppid).or_default().push(pid);
                    procs.insert(pid, stat);
                }
            }
            Self {
                me,
                my_pgrp: nix::unistd::getpgrp().as_raw(),
                procs,
                children,
            }
        }
    }

    /// Advances every sweep by one step; finished ones are removed.
    pub(crate) fn advance(sweeps: &mut Vec<Sweep>) {
        if sweeps.is_empty() {
            return;
        }
        let snapshot = Snapshot::take();
        sweeps.retain_mut(|sweep| !step(sweep, &snapshot));
    }

    /// The marker in `/proc/<pid>/environ`, read one variable at a time (bounded memory).
    fn marker(pid: i32) -> Option<String> {
        let file = std::fs::File::open(format!("/proc/{pid}/environ")).ok()?;
        let mut reader = std::io::BufReader::new(file);
        let prefix = format!("{TREE_VAR}=");
        let mut var = Vec::new();
        loop {
            var.clear();
            if reader.read_until(0, &mut var).ok()? == 0 {
                return None;
            }
            if var.last() == Some(&0) {
                var.pop();
            }
            if let Some(value) = var.strip_prefix(prefix.as_bytes()) {
                return String::from_utf8(value.to_vec()).ok();
            }
        }
    }

    /// Whether our child `pid` belongs to the sweep's tree.
    fn owns(sweep: &Sweep, pid: i32, stat: &Stat, snapshot: &Snapshot) -> bool {
        if sweep.members.contains(&(pid, stat.start)) {
            return true;
        }
        // The group of a (former) member or of the dead child: while such a group has members
        // its id cannot be reused, and if its leader's pid was reused the leader is a
        // different process (a new start time) and the group is a new one.
        let group_is = |leader: i32, start: Option<u64>| {
            stat.pgrp == leader
                && match snapshot.procs.get(&leader) {
                    None => true,
                    Some(l) => Some(l.start) == start,
                }
        };
        if sweep
            .groups
            .iter()
            .any(|&(g, start)| group_is(g, Some(start)))
        {
            return true;
        }
        let me = snapshot.me;
        match &sweep.scope {
            Scope::Tree { mark, leader } => {
                group_is(*leader, None) || marker(pid).as_deref() == Some(mark.as_str())
            }
            Scope::All => {
                reaper::is_tracked(pid, stat.pgrp)
                    || marker(pid).is_some_and(|m| {
                        m.split_once('.').is_some_and(|(p, _)| p == me.to_string())
                    })
            }
        }
    }

    /// One step of a sweep. Returns whether it is finished.
    pub(crate) fn step(sweep: &mut Sweep, snapshot: &Snapshot) -> bool {
        let now = Instant::now();
        let kill = now >= sweep.deadline || KILL_EPOCH.load(Ordering::SeqCst) != sweep.epoch;
        // The roots: our own children that belong to the tree and are not supervised children.
        let leaders = LEADERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let roots: Vec<i32> = snapshot
            .children
            .get(&snapshot.me)
            .into_iter()
            .flatten()
            .copied()
            .filter(|pid| !leaders.contains(pid))
            .filter(|pid| owns(sweep, *pid, &snapshot.procs[pid], snapshot))
            .collect();
        // The roots and everything below them.
        let mut tree: BTreeSet<i32> = BTreeSet::new();
        let mut frontier = roots.clone();
        while let Some(pid) = frontier.pop() {
            if tree.insert(pid) {
                frontier.extend(snapshot.children.get(&pid).into_iter().flatten());
            }
        }
        let escaped: Vec<i32> = tree.iter().copied().collect();
        reaper::track_escaped(&escaped);
        for &pid in &tree {
            let stat = &snapshot.procs[&pid];
            sweep.members.insert((pid, stat.start));
            if stat.pgrp == pid {
                sweep.groups.insert((pid, stat.start));
            }
        }
        let live: Vec<i32> = tree
            .iter()
            .copied()
            .filter(|pid| snapshot.procs[pid].alive())
            .collect();
        if !live.is_empty() {
            if !sweep.found {
                sweep.found = true;
                tracing::info!(path = %sweep.path, pids = ?live,
                    "processes orphaned by an exited child; terminating them");
            }
            if kill && !sweep.killing {
                sweep.killing = true;
                if !sweep.termed.is_empty() {
                    tracing::warn!(path = %sweep.path, pids = ?live,
                        "orphaned processes outlived SIGTERM; sending SIGKILL");
                }
            }
            signal_all(sweep, snapshot, &tree, &live, kill);
        }
        // Our zombie children in the tree: reap them (their own children were re-parented to
        // us, and appear at the next step).
        for &pid in &roots {
            if !snapshot.procs[&pid].alive()
                && !super::is_leader(pid)
                && let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            {
                tracing::debug!(path = %sweep.path, pid, ?status, "reaped an orphan");
            }
        }
        if live.is_empty() {
            if sweep.found {
                tracing::info!(path = %sweep.path, "orphaned processes gone");
            }
            sweep.finish();
            return true;
        }
        if now >= sweep.give_up {
            tracing::error!(path = %sweep.path, pids = ?live,
                "orphaned processes survive SIGKILL; giving up on them");
            sweep.finish();
            return true;
        }
        false
    }

    /// Sends SIGKILL (or, once per process, SIGTERM) to the live processes of the tree: by
    /// group when every member of the group is in the tree, else one by one.
    fn signal_all(
        sweep: &mut Sweep,
        snapshot: &Snapshot,
        tree: &BTreeSet<i32>,
        live: &[i32],
        kill: bool,
    ) {
        let sig = if kill {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        // pgrp → whether the whole group is in the tree.
        let mut groups: BTreeMap<i32, bool> = BTreeMap::new();
        let mut signalled_groups = BTreeSet::new();
        for &pid in live {
            let stat = &snapshot.procs[&pid];
            if !kill && !sweep.termed.insert((pid, stat.start)) {
                continue;
            }
            let pgrp = stat.pgrp;
            let whole_group = *groups.entry(pgrp).or_insert_with(|| {
                pgrp > 1
                    && pgrp != snapshot.my_pgrp
                    && snapshot
                        .procs
                        .iter()
                        .all(|(p, s)| s.pgrp != pgrp || tree.contains(p))
            });
            if whole_group {
                if signalled_groups.insert(pgrp) {
                    match signal::killpg(Pid::from_raw(pgrp), sig) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(e) => {
                            tracing::warn!(pgid = pgrp, signal = %sig, error = %e, "killpg failed")
                        }
                    }
                }
            } else {
                let _ = signal::kill(Pid::from_raw(pid), sig);
            }
        }
    }
}
