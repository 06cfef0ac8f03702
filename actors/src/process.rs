//! A supervised OS process.
//!
//! [`ProcessActor`] runs one child process for as long as the actor lives. It sits wherever an
//! OS process is needed in the tree: under a connection actor for a stdio MCP server
//! (`root/mcp_servers/mcp:fs/process`), or directly under the `sidecars` supervisor.
//!
//! - The child starts in its own process group, with the daemon's environment plus the spec's
//!   overrides. On Linux it also gets `PR_SET_PDEATHSIG(SIGKILL)`, so even a `kill -9` of the
//!   daemon does not leave it running.
//! - stdin/stdout are handed to the owner through a oneshot (stdio MCP servers), or closed.
//! - stderr goes line by line into a bounded ring (introspection) and the debug log.
//! - Exit classification: status 0 → the actor stops normally; non-zero or a signal → the
//!   actor fails with [`ProcessError::Exited`], which supervisors treat as abnormal.
//! - Stop (`post_stop`): SIGTERM to the whole group, wait up to `stop_timeout`, SIGKILL the
//!   group, and the exit is reaped by the waiter task. After a kill or a panic of the actor,
//!   `post_stop` does not run, but dropping the state SIGKILLs the group ([`group`]).
//! - Orphans: however the child ends, what it started and left behind in a session of its own
//!   (adopted by the daemon, a child subreaper) is terminated by an orphan sweep of its tree
//!   ([`orphans`]); a graceful stop waits for it.
//! - Readiness: an optional probe polled after spawn; not ready within its timeout is an
//!   abnormal start.

pub mod group;
pub mod orphans;
mod reaper;
pub mod stderr;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use group::GroupGuard;
pub use group::kill_all_groups;
pub use orphans::TREE_VAR;
pub use stderr::StderrRing;

use crate::status::{StatusNode, rfc3339};
use crate::supervisor::{ChildContext, ChildSpec, RestartPolicy, Shutdown};

/// How long an exit waits for the rest of the child's stderr before it is reported.
const STDERR_DRAIN: Duration = Duration::from_millis(200);

/// How long a graceful stop waits, after its deadline, for the child's orphans to be gone.
const SWEEP_GRACE: Duration = Duration::from_secs(5);

/// Direct children spawned and not yet reaped, across all process actors.
static UNREAPED: AtomicUsize = AtomicUsize::new(0);

/// Waits until every child spawned by a process actor has been reaped and every orphan sweep
/// has finished, up to `timeout`. Returns whether none is left. The daemon calls this after
/// stopping the tree.
pub async fn wait_all_reaped(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while UNREAPED.load(Ordering::SeqCst) > 0 || orphans::pending() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Reaps orphaned grandchildren now (see [`reap_all_before_exit`] for the daemon's last act).
pub fn reap_orphans_now() {
    reaper::reap_orphans();
}

/// The daemon's last act, once its tree is stopped and every supervised child reaped: waits
/// (at most `timeout`) until it has no child process left, reaping every zombie child as it
/// goes. As a subreaper it adopted the orphans of its trees; one killed in the last moments
/// is still a zombie here, and would pass to PID 1, which in a container may never reap it.
/// Returns the number of child processes still there at the deadline (0: none).
pub async fn reap_all_before_exit(timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let left = reaper::reap_every_zombie_child();
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The number of spawned, not yet reaped children (for introspection and tests).
pub fn unreaped_children() -> usize {
    UNREAPED.load(Ordering::SeqCst)
}

/// What happens to the child's stdin and stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdioMode {
    /// Both are piped and handed to the owner through [`ProcessArguments::io`].
    Piped,
    /// Both are connected to `/dev/null`.
    #[default]
    Null,
}

/// An async readiness check (e.g. "the socket answers `GET /health`").
pub type ProbeFn = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// A readiness probe: polled every `interval` until it answers true or `timeout` passes.
#[derive(Clone)]
pub struct Readiness {
    /// The check.
    pub probe: ProbeFn,
    /// Delay between checks.
    pub interval: Duration,
    /// Deadline from spawn; past it the start is abnormal.
    pub timeout: Duration,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A liveness probe: run every `interval` (each run bounded by `interval`) once the process is
/// ready; `failures` consecutive failures fail the actor, so its supervisor restarts it (a hung
/// child that still accepts connections but never answers).
#[derive(Clone)]
pub struct Liveness {
    /// The check.
    pub probe: ProbeFn,
    /// Delay between checks, and the deadline of each.
    pub interval: Duration,
    /// Consecutive failures tolerated before the process counts as dead.
    pub failures: u32,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness")
            .field("interval", &self.interval)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// How to run the child.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Program to execute (looked up in `PATH` when it has no slash).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment overrides on top of the daemon's environment.
    pub env: Vec<(String, String)>,
    /// Working directory (default: the daemon's).
    pub cwd: Option<PathBuf>,
    /// stdin/stdout handling.
    pub stdio: StdioMode,
    /// SIGTERM → SIGKILL grace on stop.
    pub stop_timeout: Duration,
    /// Optional readiness probe.
    pub readiness: Option<Readiness>,
    /// Optional liveness probe, run once ready.
    pub liveness: Option<Liveness>,
    /// The command line logs and status details show (an MCP server's config form, masked);
    /// `None` shows `program` and `args` masked by [`revka_mcp::redact::command_line`].
    pub shown: Option<String>,
}

impl ProcessSpec {
    /// A spec for `program args…` with defaults: stdio closed, 5 s stop timeout, no probe.
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            stdio: StdioMode::Null,
            stop_timeout: Duration::from_secs(5),
            readiness: None,
            liveness: None,
            shown: None,
        }
    }

    /// `program arg…` as logs and status details show it: [`Self::shown`], else the real
    /// command line with secret-looking values masked ([`revka_mcp::redact`]).
    pub fn command_line(&self) -> String {
        self.shown
            .clone()
            .unwrap_or_else(|| revka_mcp::redact::command_line(&self.program, &self.args))
    }
}

/// The piped stdio of a started child, and what its owner needs to explain its death.
#[derive(Debug)]
pub struct ChildIo {
    /// The child's pid.
    pub pid: u32,
    /// Its stdin.
    pub stdin: ChildStdin,
    /// Its stdout.
    pub stdout: ChildStdout,
    /// Becomes `Some` once the child has exited and been reaped.
    pub exit: watch::Receiver<Option<ExitInfo>>,
    /// The child's stderr tail.
    pub stderr: Arc<Mutex<StderrRing>>,
}

impl ChildIo {
    /// Describes how the child ended (`exited with status 1 (stderr: …)`), if it has.
    pub fn exit_reason(&self) -> Option<String> {
        Self::describe_exit(&self.exit, &self.stderr)
    }

    /// [`Self::exit_reason`] from the parts, for owners that took the pipes apart.
    pub fn describe_exit(
        exit: &watch::Receiver<Option<ExitInfo>>,
        stderr: &Mutex<StderrRing>,
    ) -> Option<String> {
        let exit = (*exit.borrow())?;
        let ring = stderr.lock().unwrap_or_else(PoisonError::into_inner);
        Some(match ring.last_line() {
            Some(line) => format!(
                "{exit} (stderr: {})",
                line.chars().take(200).collect::<String>()
            ),
            None => exit.to_string(),
        })
    }
}

/// Hands the piped stdio to the owner, or the reason the child could not be started.
pub type IoSender = oneshot::Sender<Result<ChildIo, String>>;

/// Arguments of [`ProcessActor`].
#[derive(Debug)]
pub struct ProcessArguments {
    /// What to run.
    pub spec: Arc<ProcessSpec>,
    /// The actor's status node (pid, exit status and stderr tail are published here).
    pub node: StatusNode,
    /// Receives stdin/stdout when `spec.stdio` is [`StdioMode::Piped`], or the spawn error.
    pub io: Option<IoSender>,
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    /// Exit status, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl ExitInfo {
    fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with status {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "killed by signal {sig} ({s})"),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
            (None, None) => f.write_str("ended"),
        }
    }
}

/// Why a process actor failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The process exited abnormally.
    #[error("process {exit}{}", last_stderr.as_ref().map(|l| format!(" (stderr: {l})")).unwrap_or_default())]
    Exited {
        /// The program.
        program: String,
        /// How it ended.
        exit: ExitInfo,
        /// Its last stderr line.
        last_stderr: Option<String>,
    },
    /// The readiness probe did not pass in time.
    #[error("process `{program}` not ready within {timeout:?}")]
    NotReady {
        /// The program.
        program: String,
        /// The readiness timeout.
        timeout: Duration,
    },
    /// The liveness probe failed too many times in a row.
    #[error(
        "process `{program}` stopped answering its health checks ({failures} failures in a row)"
    )]
    NotLive {
        /// The program.
        program: String,
        /// Consecutive failures.
        failures: u32,
    },
}

/// Shared with the status details and the waiter task.
#[derive(Debug, Default)]
struct Shared {
    pid: AtomicU32,
    started_at: Mutex<Option<SystemTime>>,
    exit: Mutex<Option<(ExitInfo, SystemTime)>>,
    /// Set by a graceful stop: by then the child and its orphans must be gone (SIGKILL after).
    stop_deadline: Mutex<Option<std::time::Instant>>,
    stderr: Arc<Mutex<StderrRing>>,
}

impl Shared {
    fn details(&self, spec: &ProcessSpec) -> serde_json::Value {
        let pid = self.pid.load(Ordering::Relaxed);
        let exit = *self.exit.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        serde_json::json!({
            "pid": (pid != 0).then_some(pid),
            "command": spec.command_line(),
            "process_started_at": self.started_at.lock().unwrap_or_else(PoisonError::into_inner).map(rfc3339),
            "exit": exit.map(|(e, at)| serde_json::json!({
                "code": e.code, "signal": e.signal, "description": e.to_string(), "at": rfc3339(at),
            })),
            "stderr_lines": ring.total_lines(),
            "stderr_tail": ring.tail(),
        })
    }
}

/// The process actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessActor;

/// Messages of [`ProcessActor`].
#[derive(Debug)]
pub enum ProcessMessage {
    /// Internal: the child exited.
    Exited(ExitInfo),
    /// Internal: time for a liveness check.
    CheckLiveness,
    /// Internal: the outcome of a liveness check.
    LivenessChecked(bool),
}

/// State of [`ProcessActor`]. Dropping it SIGKILLs the process group.
#[derive(Debug)]
pub struct ProcessState {
    spec: Arc<ProcessSpec>,
    node: StatusNode,
    io: Option<IoSender>,
    shared: Arc<Shared>,
    /// Present while a child runs; its `Drop` kills the group.
    guard: Option<GroupGuard>,
    /// Set by the waiter task when the child has exited and been reaped.
    exit_rx: Option<watch::Receiver<Option<ExitInfo>>>,
    /// Becomes true once the orphans the child left behind are gone.
    swept_rx: Option<watch::Receiver<bool>>,
    /// Consecutive liveness failures.
    liveness_failures: u32,
}

impl Actor for ProcessActor {
    type Msg = ProcessMessage;
    type State = ProcessState;
    type Arguments = ProcessArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<ProcessMessage>,
        args: ProcessArguments,
    ) -> Result<ProcessState, ActorProcessingErr> {
        let shared = Arc::new(Shared::default());
        let details_shared = shared.clone();
        let details_spec = args.spec.clone();
        args.node
            .set_details(Arc::new(move || details_shared.details(&details_spec)));
        Ok(ProcessState {
            spec: args.spec,
            node: args.node,
            io: args.io,
            shared,
            guard: None,
            exit_rx: None,
            swept_rx: None,
            liveness_failures: 0,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ProcessMessage>,
        state: &mut ProcessState,
    ) -> Result<(), ActorProcessingErr> {
        if let Err(e) = state.spawn(myself.clone()) {
            if let Some(tx) = state.io.take() {
                let _ = tx.send(Err(e.to_string()));
            }
            return Err(e.into());
        }
        if let Some(readiness) = state.spec.readiness.clone() {
            state.await_ready(&readiness).await?;
        }
        if let Some(liveness) = &state.spec.liveness {
            myself.send_after(liveness.interval, || ProcessMessage::CheckLiveness);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ProcessMessage>,
        state: &mut ProcessState,
    ) -> Result<(), ActorProcessingErr> {
        state.terminate().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProcessMessage>,
        message: ProcessMessage,
        state: &mut ProcessState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProcessMessage::Exited(exit) => {
                // Grandchildren left in the group go with their parent.
                if let Some(guard) = state.guard.take() {
                    drop(guard);
                }
                if exit.success() {
                    myself.stop(Some(format!("process {exit}")));
                    Ok(())
                } else {
                    Err(state.exit_error(exit).into())
                }
            }
            ProcessMessage::CheckLiveness => {
                // The probe runs in its own task: a hung probe never blocks this actor.
                if let Some(liveness) = state.spec.liveness.clone() {
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let ok = matches!(
                            tokio::time::timeout(liveness.interval, (liveness.probe)()).await,
                            Ok(true)
                        );
                        let _ = me.send_message(ProcessMessage::LivenessChecked(ok));
                    });
                }
                Ok(())
            }
            ProcessMessage::LivenessChecked(ok) => {
                let Some(liveness) = state.spec.liveness.clone() else {
                    return Ok(());
                };
                if ok {
                    state.liveness_failures = 0;
                } else {
                    state.liveness_failures += 1;
                    tracing::warn!(
                        path = %state.node.path(),
                        failures = state.liveness_failures,
                        limit = liveness.failures,
                        "liveness check failed"
                    );
                    if state.liveness_failures >= liveness.failures {
                        return Err(ProcessError::NotLive {
                            program: state.spec.program.clone(),
                            failures: state.liveness_failures,
                        }
                        .into());
                    }
                }
                myself.send_after(liveness.interval, || ProcessMessage::CheckLiveness);
                Ok(())
            }
        }
    }
}

impl ProcessState {
    fn spawn(&mut self, myself: ActorRef<ProcessMessage>) -> Result<(), ProcessError> {
        let spec = &self.spec;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        let piped = spec.stdio == StdioMode::Piped;
        let stdio = || {
            if piped {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            }
        };
        cmd.stdin(stdio()).stdout(stdio());
        // Last, so the spec cannot override it: this names the child's tree for the sweep.
        let mark = orphans::new_mark();
        cmd.env(TREE_VAR, &mark);
        set_parent_death_signal(&mut cmd);
        reaper::ensure_started();

        let mut child = orphans::spawn_leader(&mut cmd).map_err(|source| ProcessError::Spawn {
            program: spec.program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        UNREAPED.fetch_add(1, Ordering::SeqCst);
        self.guard = Some(GroupGuard::new(pid as i32));
        self.shared.pid.store(pid, Ordering::Relaxed);
        *self
            .shared
            .started_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(SystemTime::now());
        tracing::info!(path = %self.node.path(), pid, command = %spec.command_line(), "process started");

        let pump = child.stderr.take().map(|stderr| {
            tokio::spawn(stderr::pump(
                stderr,
                self.shared.stderr.clone(),
                self.node.path().to_owned(),
            ))
        });
        // The waiter owns the child, so it is always reaped, even if this actor is killed.
        let (exit_tx, exit_rx) = watch::channel(None);
        if let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take())
            && let Some(tx) = self.io.take()
        {
            let _ = tx.send(Ok(ChildIo {
                pid,
                stdin,
                stdout,
                exit: exit_rx.clone(),
                stderr: self.shared.stderr.clone(),
            }));
        }
        self.exit_rx = Some(exit_rx);
        let (swept_tx, swept_rx) = watch::channel(false);
        self.swept_rx = Some(swept_rx);
        let shared = self.shared.clone();
        let path = self.node.path().to_owned();
        let stop_timeout = spec.stop_timeout;
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => ExitInfo::from_status(status),
                Err(_) => ExitInfo {
                    code: None,
                    signal: None,
                },
            };
            orphans::leader_reaped(pid as i32);
            // The exit is described with the last stderr line, so let the pump read what the
            // child wrote just before it died. Bounded: a grandchild may hold stderr open.
            if let Some(pump) = pump {
                let _ = tokio::time::timeout(STDERR_DRAIN, pump).await;
            }
            // Submitted before the child stops counting as unreaped, so the daemon never sees
            // a moment with neither while orphans are still alive.
            let deadline = shared
                .stop_deadline
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| std::time::Instant::now() + stop_timeout);
            let swept = orphans::sweep(&path, mark, pid as i32, deadline);
            UNREAPED.fetch_sub(1, Ordering::SeqCst);
            *shared.exit.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((exit, SystemTime::now()));
            let _ = exit_tx.send(Some(exit));
            let _ = myself.send_message(ProcessMessage::Exited(exit));
            let _ = swept.await;
            let _ = swept_tx.send(true);
        });
        Ok(())
    }

    async fn await_ready(&mut self, readiness: &Readiness) -> Result<(), ProcessError> {
        let deadline = Instant::now() + readiness.timeout;
        let mut exit_rx = self.exit_rx.clone().expect("spawned");
        loop {
            if let Some(exit) = *exit_rx.borrow() {
                return Err(self.exit_error(exit));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            if let Ok(true) = tokio::time::timeout(remaining, (readiness.probe)()).await {
                tracing::info!(path = %self.node.path(), "process ready");
                return Ok(());
            }
            let pause = readiness
                .interval
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = exit_rx.changed() => {}
            }
        }
        Err(ProcessError::NotReady {
            program: self.spec.program.clone(),
            timeout: readiness.timeout,
        })
    }

    /// Graceful stop: SIGTERM the group, wait for the exit, SIGKILL what is left.
    async fn terminate(&mut self) {
        let Some(guard) = self.guard.take() else {
            let pid = self.shared.pid.load(Ordering::Relaxed);
            if pid != 0 {
                // Its orphans may still be going (their deadline runs from the exit).
                self.await_swept(self.spec.stop_timeout + SWEEP_GRACE).await;
                tracing::info!(path = %self.node.path(), pid, "process stopped (it had already exited)");
            }
            return;
        };
        let pgid = guard.pgid();
        let path = self.node.path().to_owned();
        let deadline = Instant::now() + self.spec.stop_timeout;
        // The sweep's clock is the wall clock (tokio's may be paused in tests).
        *self
            .shared
            .stop_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some(std::time::Instant::now() + self.spec.stop_timeout);
        group::signal_tree(pgid, Signal::SIGTERM);
        if let Some(mut exit_rx) = self.exit_rx.clone() {
            let exited =
                tokio::time::timeout(self.spec.stop_timeout, exit_rx.wait_for(Option::is_some))
                    .await
                    .is_ok();
            if !exited {
                tracing::warn!(%path, pid = pgid, timeout_ms = self.spec.stop_timeout.as_millis() as u64,
                    "process ignored SIGTERM; sending SIGKILL");
            }
            drop(guard); // SIGKILL to the group: stragglers and grandchildren
            let _ = tokio::time::timeout(Duration::from_secs(5), exit_rx.wait_for(Option::is_some))
                .await;
        }
        // What the child left behind in sessions of its own: SIGTERMed above while the child
        // still ran, SIGKILLed by the sweep from the same deadline.
        self.await_swept(deadline.saturating_duration_since(Instant::now()) + SWEEP_GRACE)
            .await;
        tracing::info!(%path, pid = pgid, "process stopped");
    }

    /// Waits up to `wait` for the orphan sweep of the exited child to finish.
    async fn await_swept(&self, wait: Duration) {
        let Some(mut swept) = self.swept_rx.clone() else {
            return;
        };
        if tokio::time::timeout(wait, swept.wait_for(|done| *done))
            .await
            .is_err()
        {
            tracing::warn!(path = %self.node.path(), "orphans of the process are still being terminated");
        }
    }

    fn exit_error(&self, exit: ExitInfo) -> ProcessError {
        let last_stderr = self
            .shared
            .stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_line()
            .map(|l| l.chars().take(200).collect());
        ProcessError::Exited {
            program: self.spec.program.clone(),
            exit,
            last_stderr,
        }
    }
}

/// Asks Linux to SIGKILL the child if the daemon dies (even by `kill -9`), so no process is
/// orphaned when `Drop` cannot run.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls (prctl, getppid); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The parent may have died between fork and prctl: then nobody would signal us.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {}

/// A child spec running `spec` as a supervised process with stdio closed. The process's
/// SIGTERM → SIGKILL grace follows the policy's shutdown.
pub fn child_spec(id: impl Into<String>, spec: ProcessSpec, policy: RestartPolicy) -> ChildSpec {
    let mut spec = spec;
    spec.stop_timeout = match policy.shutdown {
        Shutdown::Timeout(t) => t,
        Shutdown::BrutalKill => Duration::ZERO,
    };
    let spec = Arc::new(spec);
    ChildSpec::new(id, "process", policy, move |ctx: ChildContext| {
        let spec = spec.clone();
        async move {
            let args = ProcessArguments {
                spec,
                node: ctx.node,
                io: None,
            };
            let (actor, _) =
                ProcessActor::spawn_linked(None, ProcessActor, args, ctx.supervisor).await?;
            Ok(actor.get_cell())
        }
    })
}
