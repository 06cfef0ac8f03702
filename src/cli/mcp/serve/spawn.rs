//! `--start-daemon`: the bridge starts `revka daemon` when it finds none. Part of [`super`].
//!
//! The daemon is this same executable, started with the bridge's `--config` (if any) and
//! environment (so the same `$REVKA_HOME`), in a session of its own (`setsid`): the client's
//! kill of the bridge's process group, or the terminal closing, does not reach it, and it
//! outlives the bridge. Its stdin is `/dev/null`; its output is appended to
//! `$REVKA_HOME/logs/revka.out.log` and `revka.err.log` (owner-only), the files the daemon
//! already rotates when a service manager points it there.
//!
//! One start at a time, and not again while the last one may still be coming up: two bridges
//! starting together cost one daemon that exits at once (the home is locked by the other).
//! A daemon that exits before answering fails the wait at once, with the last line it wrote,
//! unless that line says another daemon holds the home (then that one is waited for).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use revka_actors::fs;

use super::upstream::UpstreamError;

/// How long a started daemon is given to write `mcp.json` and answer.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// Starts a daemon for the bridge; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Starter {
    home: PathBuf,
    /// `--config`, passed on.
    config: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last daemon was started.
    started: Option<Instant>,
    /// That daemon, until it is found running or exited.
    child: Option<tokio::process::Child>,
}

impl Starter {
    /// A starter for the daemon of `home`.
    pub(crate) fn new(home: &std::path::Path, config: Option<PathBuf>) -> Self {
        Self {
            home: home.to_owned(),
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// How long to wait for a daemon just started.
    pub(super) fn patience(&self) -> Duration {
        START_PATIENCE
    }

    fn logs(&self) -> (PathBuf, PathBuf) {
        let [out, err] = crate::logrotate::log_files(&self.home);
        (out, err)
    }

    /// Starts a daemon unless one was started within the patience: `Ok(true)` if it did now.
    pub(super) fn start(&self) -> Result<bool, UpstreamError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .started
            .is_some_and(|at| at.elapsed() < START_PATIENCE)
        {
            return Ok(false);
        }
        let failed = |reason: String| UpstreamError::StartFailed { reason };
        let (out_path, err_path) = self.logs();
        if let Some(dir) = out_path.parent() {
            fs::ensure_private_dir(dir).map_err(|e| failed(e.to_string()))?;
        }
        let append = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .clone();
        let out = fs::open_in_place(&out_path, &append, fs::PRIVATE_FILE)
            .map_err(|e| failed(e.to_string()))?;
        let err = fs::open_in_place(&err_path, &append, fs::PRIVATE_FILE)
            .map_err(|e| failed(e.to_string()))?;
        let program = std::env::current_exe()
            .map_err(|e| failed(format!("cannot find this executable: {e}")))?;
        let mut cmd = std::process::Command::new(&program);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("daemon")
            .env("REVKA_HOME", &self.home)
            // The bridge's service-manager sockets are not the daemon's.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        own_session(&mut cmd);
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
        tracing::warn!(
            pid = child.id(),
            log = %err_path.display(),
            "no daemon was running; started `revka daemon`"
        );
        state.started = Some(Instant::now());
        state.child = Some(child);
        Ok(true)
    }

    /// The error to give up with if the daemon last started has exited (see the [module
    /// documentation](self)).
    pub(super) fn failed(&self) -> Option<UpstreamError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let status = state.child.as_mut()?.try_wait().ok()??;
        state.child = None;
        let (_, err_path) = self.logs();
        let last = std::fs::read_to_string(&err_path)
            .ok()
            .and_then(|text| {
                text.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if last.contains("another revka daemon is running") {
            // That other daemon (another bridge's, or one starting by hand) is waited for.
            return None;
        }
        Some(UpstreamError::StartFailed {
            reason: format!(
                "it exited ({status}) before answering: {last} (its output is in {})",
                err_path.display()
            ),
        })
    }
}

/// Makes the child the leader of a new session (and process group), without a terminal.
#[allow(unsafe_code)]
fn own_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and makes one async-signal-safe
    // system call (setsid); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}
