//! The daemon's lifecycle: build the tree, run until a signal, stop everything, reap, exit.
//!
//! [`Daemon::start`] takes the validated config (nothing is bound before the config is known to
//! be good), refuses a `$REVKA_HOME` others can write in, locks it against a second daemon,
//! and spawns `root`. [`run`] sends `READY=1`, starts the watchdog task ([`crate::watchdog`])
//! and the task that runs SIGHUP reloads ([`crate::reload::serve_signals`]), and waits for
//! SIGTERM/SIGINT (or the root failing); its signal loop never waits on anything else. It then
//! tells systemd, stops the tree in reverse order within `[supervisor] shutdown_grace_secs`; a
//! second signal, or the grace running out, kills what is left. Either way every child process
//! is killed and reaped before the process exits.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use ractor::{Actor, ActorRef, RactorErr};
use revka_actors::supervisor::{Strategy, SupervisorActor, SupervisorArguments, SupervisorMessage};
use revka_actors::{ActorState, Snapshot, StatusNode};
use revka_actors::{fs, process};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::config::{Config, Loaded};
use crate::notify::Notifier;
use crate::tree::{self, Services};

/// How long to wait for killed children to be reaped before exiting anyway.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// A running daemon: the supervision tree and what it needs to stop cleanly.
#[derive(Debug)]
pub struct Daemon {
    services: Services,
    status: StatusNode,
    root: ActorRef<SupervisorMessage>,
    root_task: JoinHandle<()>,
    /// The agent layer's tasks (the sidecar event follower, the budget enforcer).
    agent_tasks: Option<crate::agents::Tasks>,
    home: PathBuf,
    _lock: Flock<File>,
}

impl Daemon {
    /// Locks `home`, then builds and starts the supervision tree.
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
        home: &Path,
    ) -> anyhow::Result<Self> {
        create_private_dir(home)?;
        let lock = lock_home(home)?;
        let services = Services::new(config, home, config_path)?;
        crate::runlog::install(home);
        // Learn the operator's tools in the background (sessions start their own operators).
        if let Some(template) =
            crate::tree::operator_template(&services.config.plan(), &services.http)
        {
            let tools = services.tools.clone();
            let http = services.http.clone();
            tokio::spawn(async move {
                let report = revka_actors::mcp::connection::probe(&template.spec, &http).await;
                match report.error {
                    None => tools.set_operator_catalog(report.definitions),
                    Some(e) => tracing::warn!(error = %e, "cannot list the operator's tools"),
                }
            });
        }
        let mut pairing = None;
        if services.config.get().gateway.enabled {
            services
                .tokens
                .ensure_owner_token(home)
                .context("cannot write the owner token")?;
            let ttl = crate::auth::DEFAULT_PAIRING_TTL;
            pairing = Some((services.pairing.issue(ttl), ttl)); // shown in the banner
        }
        let status = services.status_root.clone();
        let args = SupervisorArguments {
            node: status.clone(),
            strategy: Strategy::OneForOne,
            intensity: services.config.plan().supervision.intensity,
            children: tree::root_children(&services)?,
        };
        let (root, root_task) = SupervisorActor::spawn(None, SupervisorActor, args)
            .await
            .context("cannot start the supervision tree")?;
        status.set_state(ActorState::Running);
        let agent_tasks = Some(services.agents.start());
        let mut listeners = vec!["root/mcp_http"];
        if services.config.get().gateway.enabled {
            listeners.push("root/gateway");
        }
        wait_until_listening(&status, &listeners).await;
        tracing::info!(
            home = %home.display(),
            pid = std::process::id(),
            workers = tokio::runtime::Handle::current().metrics().num_workers(),
            "daemon started"
        );
        let banner = crate::banner::facts(&services, home, services.config.path(), pairing);
        crate::banner::log(&banner);
        Ok(Self {
            services,
            status,
            root,
            root_task,
            agent_tasks,
            home: home.to_owned(),
            _lock: lock,
        })
    }

    /// What the actors share (config, MCP hub, HTTP client).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The live status tree (read without any actor's mailbox).
    pub fn status(&self) -> &StatusNode {
        &self.status
    }

    /// The whole supervision tree as serde data.
    pub fn snapshot(&self) -> Snapshot {
        self.status.snapshot()
    }

    /// `$REVKA_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The root supervisor.
    pub fn root(&self) -> &ActorRef<SupervisorMessage> {
        &self.root
    }

    /// Stops the tree gracefully within `grace` (children in reverse order), kills what is
    /// left after that, and waits until every child process is reaped. Returns whether the
    /// graceful stop finished in time.
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.status.set_state(ActorState::Stopping);
        // The agent layer first: its tasks end, the fallback's runs are killed as groups.
        drop(self.agent_tasks.take());
        self.services.agents.fallback.shutdown().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "stopping the supervision tree"
        );
        let graceful = match self
            .root
            .stop_and_wait(Some("daemon shutdown".into()), Some(grace))
            .await
        {
            Ok(()) => true,
            Err(RactorErr::Timeout) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "shutdown grace period exceeded; killing the tree"
                );
                false
            }
            Err(_) => true, // already stopped
        };
        self.kill_rest().await;
        self.status.set_state(ActorState::Stopped);
        graceful
    }

    /// Kills the tree at once (second signal, or after the grace period).
    async fn kill_rest(&self) {
        let _ = self.root.kill_and_wait(Some(Duration::from_secs(5))).await;
        // Actors killed above drop their state, which kills their process groups; this also
        // covers anything a wedged actor still holds.
        process::kill_all_groups();
        if !process::wait_all_reaped(REAP_WAIT).await {
            tracing::error!(
                left = process::unreaped_children(),
                "some child processes were not reaped in time"
            );
        }
    }
}

/// How long start-up waits for the listeners before it reports ready anyway.
const LISTEN_WAIT: Duration = Duration::from_secs(30);

/// Waits until every listener in `paths` serves (bound, its discovery file written), so that
/// `READY=1` and "daemon started" mean a client can connect. The root starts its children in
/// the background; a listener that fails or takes longer than [`LISTEN_WAIT`] is logged and
/// start-up goes on (the supervisor keeps trying, and `/api/health` shows it).
async fn wait_until_listening(root: &StatusNode, paths: &[&str]) {
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    loop {
        let states: Vec<(&str, Option<ActorState>)> = paths
            .iter()
            .map(|p| (*p, root.find(p).map(|n| n.state())))
            .collect();
        // `stopped` (or no node yet) is "not started yet": only `failed` ends the wait early.
        let failed = states.iter().find(|(_, s)| *s == Some(ActorState::Failed));
        let waiting = states.iter().find(|(_, s)| *s != Some(ActorState::Running));
        let give_up = failed.or(waiting.filter(|_| tokio::time::Instant::now() >= deadline));
        if let Some(&(path, state)) = give_up {
            let state = state.map_or("not started", ActorState::as_str);
            tracing::warn!(%path, state, "listener not serving yet; reporting ready anyway");
            return;
        }
        if waiting.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Returns the process exit code.
pub async fn run(
    loaded: Loaded,
    config_path: Option<PathBuf>,
    home: PathBuf,
    notifier: Notifier,
) -> anyhow::Result<i32> {
    for warning in &loaded.warnings {
        tracing::warn!("config: {warning}");
    }
    for server in &loaded.config.mcp.invalid_servers {
        let path = format!("root/mcp_servers/mcp:{}", server.name);
        tracing::error!(server = %server.name, %path, reason = %server.reason, "invalid MCP server entry; it will not start");
    }
    let config = loaded.config;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;

    let mut daemon = Daemon::start(config, config_path, &home).await?;
    let notifier = Arc::new(notifier);
    if let Err(e) = notifier.notify("READY=1") {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
    // From now on reloads tell systemd; the watchdog pings from its own task while the root
    // answers (see `crate::watchdog`), so nothing in this loop can starve it.
    let _ = daemon.services().notifier.set(notifier.clone());
    let watchdog = crate::watchdog::spawn(
        notifier.clone(),
        daemon.root().clone(),
        daemon.status().clone(),
    );
    // Under launchd our stdout/stderr are files nobody else rotates.
    let _log_rotation = crate::logrotate::spawn(&home);
    let reload_requests = Arc::new(tokio::sync::Notify::new());
    let reloads = crate::reload::serve_signals(daemon.services().clone(), reload_requests.clone());
    let reason = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = &mut daemon.root_task => break "the root supervisor failed",
            // Never waits: the reload runs in its own task (signals during one fold into one more).
            _ = sighup.recv() => reload_requests.notify_one(),
        }
    };
    reloads.abort();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    let root_failed = daemon.root_task.is_finished();
    if root_failed {
        tracing::error!(failure = ?daemon.status.last_failure(), "root supervisor terminated; shutting down");
    } else {
        tracing::info!(signal = reason, "shutting down");
    }
    let _ = notifier.notify("STOPPING=1");

    let grace = daemon.services().config.get().supervisor.shutdown_grace();
    let stopped = tokio::select! {
        graceful = daemon.stop(grace) => Some(graceful),
        _ = sigterm.recv() => None,
        _ = sigint.recv() => None,
    };
    if stopped.is_none() {
        tracing::warn!("second signal: forcing shutdown");
        process::kill_all_groups();
        crate::terminal::kill_all_now();
        process::wait_all_reaped(REAP_WAIT).await;
    }
    // Orphans killed in the last moments may still be zombies: reap them, not PID 1.
    let left = process::reap_all_before_exit(Duration::from_secs(2)).await;
    if left > 0 {
        tracing::warn!(left, "child processes still running at exit");
    }
    tracing::info!("daemon stopped");
    crate::runlog::flush();
    Ok(if root_failed { 1 } else { 0 })
}

/// Creates `dir` (and parents) with mode 0700 if missing, and refuses it unless it is owned by
/// this user and not writable by its group or others ([`revka_actors::fs::check_private_dir`]):
/// anyone who can write in `$REVKA_HOME` can replace the config, the tokens or the sidecars
/// the daemon runs. The error names the path, its owner and mode, and the command that fixes
/// it.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    Ok(fs::ensure_private_dir(dir)?)
}

/// Takes an exclusive lock on `$REVKA_HOME/daemon.lock` (holding our pid), so two daemons never
/// share one home. The file is opened without following links ([`fs::open_in_place`]): a link
/// planted there is refused with an error naming it, and the pid is written only into a
/// regular file of ours (truncated after the checks, never through `O_TRUNC`).
fn lock_home(home: &Path) -> anyhow::Result<Flock<File>> {
    let path = home.join("daemon.lock");
    let options = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .clone();
    let file = fs::open_in_place(&path, &options, fs::PRIVATE_FILE)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another revka daemon is running on {} (pid {})",
                home.display(),
                holder.trim()
            );
        }
        Err((_, e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
    };
    lock.set_len(0)?;
    writeln!(&mut *lock, "{}", std::process::id())?;
    Ok(lock)
}
