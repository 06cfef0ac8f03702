//! Running one program for a built-in tool (`shell`, `git_operations`, `screenshot`): in its
//! own process group, with a fresh environment, stdin closed, each output stream capped,
//! progress reported every second, and the whole group killed at the timeout, on cancel (the
//! call's future dropped: `Group`'s drop) and when the program exits leaving children behind.
//!
//! Killing: `SIGTERM` to the group and to every descendant found in `/proc` (ones that left the
//! group with `setpgid`/`setsid` included, and on Linux any process that still carries the
//! run's marker [`MARK_VAR`] in its environment, so a daemonized grandchild whose parent has
//! exited is found too), then `SIGKILL` after [`GRACE`] until none is left.
//! The daemon is a child subreaper (the process actors make it one), so orphans of a killed
//! group are re-parented to it: their zombies are reaped here (never the leader, which tokio's
//! `Child` reaps).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::task::JoinHandle;

/// How long a group has between `SIGTERM` and `SIGKILL`.
pub const GRACE: Duration = Duration::from_millis(1500);
/// How long killed processes may take to be gone.
const AFTER_KILL: Duration = Duration::from_secs(3);
/// How often the group is looked at while waiting for it to go.
const POLL: Duration = Duration::from_millis(20);
/// How long the output readers get after the group is gone.
const DRAIN: Duration = Duration::from_secs(2);

/// The variable that marks every process of one run (`<daemon pid>.<run>`), inherited by
/// everything the program starts.
pub const MARK_VAR: &str = "REVKA_TOOL_RUN";

static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program (an absolute path).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Killed after this long.
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr, each.
    pub max_output: usize,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The program's pid (its process group's id).
    pub pid: i32,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Stdout, at most `max_output` bytes (cut at a character boundary).
    pub stdout: String,
    /// Stderr, likewise.
    pub stderr: String,
    /// Bytes written to stdout in all.
    pub stdout_bytes: u64,
    /// Bytes written to stderr in all.
    pub stderr_bytes: u64,
    /// Whether either stream was cut.
    pub truncated: bool,
    /// Whether it was killed at the timeout.
    pub timed_out: bool,
    /// How long it ran.
    pub duration: Duration,
}

impl Outcome {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// The structured result of `shell` and `git_operations`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "pid": self.pid,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
            "truncated": self.truncated,
            "timed_out": self.timed_out,
            "duration_ms": self.duration.as_millis() as u64,
        })
    }

    /// A status line: `exit code 2`, `killed by signal 9`, `timed out after 5 s`.
    pub fn status_line(&self) -> String {
        if self.timed_out {
            return format!(
                "timed out after {:.1} s; the process group was killed",
                self.duration.as_secs_f64()
            );
        }
        match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "ended without a status".to_owned(),
        }
    }

    /// The text for the model: stdout, then stderr and the status when there is something
    /// to say.
    pub fn text(&self) -> String {
        let mut text = self.stdout.clone();
        if !self.stderr.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("[stderr]\n");
            text.push_str(&self.stderr);
        }
        if self.truncated {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[output truncated: {} bytes of stdout and {} of stderr written]",
                self.stdout_bytes, self.stderr_bytes
            ));
        }
        if !self.success() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("[{}]", self.status_line()));
        }
        text
    }
}

/// A running group's progress: elapsed time and bytes of output so far.
pub type Progress<'a> = &'a (dyn Fn(Duration, u64) + Send + Sync);

/// Runs `spec` to its end (or its timeout), reporting progress every second.
pub async fn run(spec: Spec, progress: Progress<'_>) -> Result<Outcome, String> {
    let started = Instant::now();
    let mark = format!(
        "{}.{}",
        std::process::id(),
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    );
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(MARK_VAR, &mark)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e}",
            spec.program
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        )
    })?;
    let Some(pid) = child.id().map(|p| p as i32) else {
        return Err("the program exited before it could be watched".to_owned());
    };
    let counted = Arc::new(AtomicU64::new(0));
    let stdout = child
        .stdout
        .take()
        .map(|s| reader(s, spec.max_output, counted.clone()));
    let stderr = child
        .stderr
        .take()
        .map(|s| reader(s, spec.max_output, counted.clone()));
    let mut group = Group {
        tree: Tree { leader: pid, mark },
        child: Some(child),
    };
    let tree = group.tree.clone();
    let mut timed_out = false;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let status = loop {
        let child = group.child.as_mut().ok_or("the child is gone")?;
        tokio::select! {
            status = child.wait() => break status.map_err(|e| format!("waiting for the program: {e}"))?,
            () = &mut deadline => {
                timed_out = true;
                terminate(&tree, true).await;
                let child = group.child.as_mut().ok_or("the child is gone")?;
                break child.wait().await.map_err(|e| format!("waiting for the program: {e}"))?;
            }
            _ = tick.tick() => progress(started.elapsed(), counted.load(Ordering::Relaxed)),
        }
    };
    // The leader is reaped: whatever it left in its group (or below it) goes too.
    group.child = None;
    terminate(&tree, false).await;
    let (stdout, stdout_bytes) = collect(stdout).await;
    let (stderr, stderr_bytes) = collect(stderr).await;
    let max = spec.max_output;
    let (stdout, cut_out) = super::super::capped(&stdout, max);
    let (stderr, cut_err) = super::super::capped(&stderr, max);
    use std::os::unix::process::ExitStatusExt;
    Ok(Outcome {
        pid,
        exit_code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_bytes,
        stderr_bytes,
        truncated: cut_out || cut_err || stdout_bytes > max as u64 || stderr_bytes > max as u64,
        timed_out,
        duration: started.elapsed(),
    })
}

/// Reads a stream to its end, keeping at most `max` (+3, for the character boundary) bytes
/// and counting all of them.
fn reader(
    mut stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    max: usize,
    counted: Arc<AtomicU64>,
) -> JoinHandle<(Vec<u8>, u64)> {
    tokio::spawn(async move {
        let keep = max.saturating_add(3);
        let mut kept = Vec::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n as u64;
                    counted.fetch_add(n as u64, Ordering::Relaxed);
                    let room = keep.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                }
            }
        }
        (kept, total)
    })
}

/// A reader's bytes and count, waiting at most [`DRAIN`] (a process that escaped every kill
/// may still hold the pipe).
async fn collect(reader: Option<JoinHandle<(Vec<u8>, u64)>>) -> (Vec<u8>, u64) {
    let Some(mut reader) = reader else {
        return (Vec::new(), 0);
    };
    match tokio::time::timeout(DRAIN, &mut reader).await {
        Ok(Ok(out)) => out,
        _ => {
            reader.abort();
            (Vec::new(), 0)
        }
    }
}

/// A running process group: dropped before its leader was reaped (the call was cancelled),
/// it SIGKILLs the group and hands the leader to a reaper task.
struct Group {
    tree: Tree,
    child: Option<Child>,
}

/// The processes of one run: the leader's group, its descendants, and what carries the mark.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The leader's pid (= the group id).
    pub leader: i32,
    /// The value of [`MARK_VAR`] in the run's environment.
    pub mark: String,
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let tree = self.tree.clone();
        signal_all(&tree, Signal::SIGKILL, true);
        let reap = async move {
            let _ = child.wait().await;
            terminate(&tree, false).await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(reap);
            }
            // No runtime: tokio's own orphan queue reaps the dropped child.
            Err(_) => drop(reap),
        }
    }
}

/// Ends every process of the group led by `leader` (and its descendants): `SIGTERM` (and
/// `SIGCONT`), `SIGKILL` after [`GRACE`] — at once when `graceful` is false — then waits
/// until none is left, reaping adopted zombies.
pub async fn terminate(tree: &Tree, graceful: bool) {
    let leader = tree.leader;
    let mut leader_alive = graceful;
    if graceful {
        signal_all(tree, Signal::SIGTERM, true);
        signal_all(tree, Signal::SIGCONT, true);
        let deadline = tokio::time::Instant::now() + GRACE;
        while tokio::time::Instant::now() < deadline {
            if !any_left(tree) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        leader_alive = is_alive(tree);
    }
    let deadline = tokio::time::Instant::now() + AFTER_KILL;
    loop {
        signal_all(tree, Signal::SIGKILL, leader_alive);
        if !any_left(tree) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                pgid = leader,
                "processes of a tool's command outlived SIGKILL"
            );
            return;
        }
        tokio::time::sleep(POLL).await;
        leader_alive = leader_alive && is_alive(tree);
    }
}

/// Whether the leader is there and not a zombie (only asked while it is not reaped).
fn is_alive(tree: &Tree) -> bool {
    members(tree)
        .iter()
        .any(|m| m.pid == tree.leader && !m.zombie)
}

/// Sends `sig` to the group, to every descendant outside it, and to the leader while it is
/// not reaped; reaps adopted zombies.
fn signal_all(tree: &Tree, sig: Signal, leader_alive: bool) {
    let leader = tree.leader;
    // Found before any is signalled: once the leader dies its children are re-parented and
    // no longer its descendants.
    let members = members(tree);
    if leader_alive {
        let _ = signal::kill(Pid::from_raw(leader), sig);
    }
    match signal::killpg(Pid::from_raw(leader), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::debug!(pgid = leader, signal = %sig, error = %e, "killpg failed"),
    }
    for m in members {
        if m.pid != leader && !m.zombie {
            let _ = signal::kill(Pid::from_raw(m.pid), sig);
        }
    }
    reap(tree);
}

/// Whether any process of the group but its leader is left (adopted zombies are reaped on
/// the way), or the leader itself is still running.
fn any_left(tree: &Tree) -> bool {
    reap(tree);
    members(tree)
        .iter()
        .any(|m| m.pid != tree.leader || !m.zombie)
}

/// Reaps the group's zombies whose parent is the daemon, never the leader.
fn reap(tree: &Tree) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let me = std::process::id() as i32;
    for m in members(tree) {
        if m.zombie && m.ppid == me && m.pid != tree.leader {
            let _ = waitpid(Pid::from_raw(m.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// The processes in the leader's group or session, those that carry the run's mark, and
/// their descendants.
fn members(tree: &Tree) -> Vec<crate::terminal::kill::Member> {
    let needle = format!("{MARK_VAR}={}\0", tree.mark);
    crate::terminal::kill::members_where(tree.leader, &|pid, state| {
        state != 'Z' && marked(pid, needle.as_bytes())
    })
}

/// Whether `/proc/<pid>/environ` holds `needle` (`VAR=value\0`).
#[cfg(target_os = "linux")]
fn marked(pid: i32, needle: &[u8]) -> bool {
    if pid == std::process::id() as i32 {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle))
}

/// Elsewhere only the group itself is signalled (`killpg`); nothing is found by walking.
#[cfg(not(target_os = "linux"))]
fn marked(_pid: i32, _needle: &[u8]) -> bool {
    false
}

/// A scratch directory (mode 0700) under the system's temporary directory, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates one named `revka-<what>-<random>`.
    pub fn new(what: &str) -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!(
            "revka-{what}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, args: &[&str], timeout: Duration, max: usize) -> Spec {
        Spec {
            program: crate::security::command::locate(program).unwrap(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), crate::security::command::SAFE_PATH.into())],
            timeout,
            max_output: max,
        }
    }

    #[tokio::test]
    async fn output_is_capped_and_counted() {
        let out = run(
            spec(
                "head",
                &["-c", "100000", "/dev/zero"],
                Duration::from_secs(10),
                1000,
            ),
            &|_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(out.exit_code, Some(0));
        assert!(out.truncated);
        assert_eq!(out.stdout.len(), 1000);
        assert_eq!(out.stdout_bytes, 100_000);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let out = run(
            spec(
                "sh",
                &["-c", "sleep 30 & sleep 30 & echo started; wait"],
                Duration::from_millis(500),
                1000,
            ),
            &|_, _| {},
        )
        .await
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.stdout, "started\n");
        assert!(out.text().contains("timed out"));
    }
}
