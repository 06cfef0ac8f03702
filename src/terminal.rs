//! The Code tab's terminals: `root/terminals`, a supervisor whose temporary children
//! `term:<id>` each own one pseudo-terminal and the process running on it.
//!
//! The gateway's `GET /ws/terminal` (`gateway/terminal.rs`) asks [`Terminals::open`] for a
//! terminal and then only moves bytes: [`TerminalIo`] carries the output (bounded: the PTY is
//! not read while the queue is full, so nothing is dropped and a flood stalls the process, not
//! the daemon), the input (bounded: the socket is not read while the queue is full) and the
//! resizes. The actor (`actor::TerminalActor`) owns the rest:
//!
//! - **Process.** Spawned on a fresh PTY as the leader of a session of its own, with the PTY as
//!   its controlling terminal (`pty`); its environment is the daemon's without its secrets,
//!   plus what its launcher adds ([`launcher`]).
//! - **Session.** Every launcher but `shell` gets a fresh MCP session (label
//!   `code:<launcher>`, the terminal's cwd), owned by the gateway token that opened the
//!   terminal (`Session::set_proxy_owner`), so the same page can follow its progress on
//!   `/ws/mcp/events` without the MCP token. It is kept from idling out while the terminal
//!   lives and ended with it. Its config files live in `$REVKA_HOME/terminals/<id>/` (0700,
//!   files 0600), removed with it.
//! - **End.** The terminal ends when its process exits, when its WebSocket closes (dropping
//!   the [`Opened`] stops the actor), when the actor is stopped (a restart is refused: it is
//!   temporary) and when the daemon stops (the tree stops it). Each way, every process of the
//!   terminal gets SIGHUP and SIGTERM, then SIGKILL after `[terminal] stop_grace_ms`
//!   (`kill`); a killed or panicked actor SIGKILLs them as its state is dropped, and a
//!   forced exit of the daemon (a second signal) calls [`kill_all_now`].
//! - **Cap.** At most `[terminal] max_terminals` live at once ([`OpenError::TooMany`]).
//!
//! Its status node's details: pid, command, launcher, cwd, session_id, cols, rows,
//! started_at, bytes_in, bytes_out and, once it has ended, exit.

pub(crate) mod actor;
pub(crate) mod kill;
pub use kill::kill_all_now;
pub mod launcher;
mod pty;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorRef};
use revka_actors::process::ExitInfo;
use revka_actors::session::NewSession;
use revka_actors::supervisor::{ChildContext, ChildSpec, RestartPolicy, SupervisorMessage};
use tokio::sync::{mpsc, oneshot, watch};

use crate::tree::Services;
use launcher::Injected;

/// The largest output chunk sent in one frame, and the largest input frame.
pub const MAX_FRAME: usize = 64 * 1024;
/// Output chunks queued between the PTY and the socket.
const OUTPUT_QUEUE: usize = 8;
/// Input frames queued between the socket and the PTY.
const INPUT_QUEUE: usize = 8;
/// The terminal sizes accepted (columns and rows alike).
pub const SIZE_RANGE: std::ops::RangeInclusive<u16> = 1..=1000;
/// The id of the supervisor in `root`.
pub const SUPERVISOR_ID: &str = "terminals";

/// The live terminals and the supervisor they run under (in [`Services`]).
#[derive(Debug, Default)]
pub struct Terminals {
    supervisor: RwLock<Option<ActorRef<SupervisorMessage>>>,
    live: AtomicUsize,
}

/// What a terminal is opened with.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// The launcher's name.
    pub launcher: String,
    /// The working directory (absolute, an existing directory).
    pub cwd: PathBuf,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// The id of the gateway token opening it (its session's proxy owner).
    pub owner: String,
}

/// Why a terminal was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No launcher has that name.
    #[error("unknown launcher {name:?} (known: {known})")]
    UnknownLauncher {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// `max_terminals` are live.
    #[error("too many terminals: {0} are open ([terminal] max_terminals); close one first")]
    TooMany(usize),
    /// Something the terminal needs is not running (the MCP server, the supervisors).
    #[error("{0}")]
    Unavailable(String),
    /// The process could not be started.
    #[error("{0}")]
    Start(String),
}

/// A running terminal as its WebSocket sees it. Dropping it ends the terminal.
#[derive(Debug)]
pub struct Opened {
    /// `term:<id>`.
    pub id: String,
    /// Its status path, `root/terminals/term:<id>`.
    pub path: String,
    /// The launcher's name.
    pub launcher: String,
    /// The command line (the session token, if any, shown as `<token>`).
    pub command: Vec<String>,
    /// Its MCP session's id, if it has one.
    pub session_id: Option<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Its bytes.
    pub io: TerminalIo,
    actor: ActorRef<actor::TerminalMessage>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.actor.stop(Some("its WebSocket closed".to_owned()));
    }
}

/// A terminal's data paths.
#[derive(Debug)]
pub struct TerminalIo {
    /// PTY output, in chunks of at most [`MAX_FRAME`]; ends when no process holds the terminal
    /// any more, or the terminal ended.
    pub output: mpsc::Receiver<Bytes>,
    /// Input to the PTY.
    pub input: mpsc::Sender<Bytes>,
    /// The process's exit, once reaped.
    pub exit: watch::Receiver<Option<ExitInfo>>,
    resize: Arc<actor::Resizer>,
}

impl TerminalIo {
    /// Resizes the terminal (the caller checked the bounds).
    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        self.resize.resize(cols, rows)
    }
}

/// Gives back a terminal slot when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Terminals>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Terminals {
    /// No terminals yet.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Called by `root/terminals` when it starts: terminals go under it.
    pub fn attach_supervisor(&self, sup: ActorRef<SupervisorMessage>) {
        *self
            .supervisor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(sup);
    }

    /// Live terminals.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Takes a slot, if fewer than `max` are live.
    fn take_slot(self: &Arc<Self>, max: usize) -> Result<Slot, OpenError> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| Slot(self.clone()))
            .map_err(OpenError::TooMany)
    }

    /// Opens a terminal: its session (unless the launcher is `shell`), its files, its process
    /// under `root/terminals/term:<id>`.
    pub async fn open(services: &Services, request: OpenRequest) -> Result<Opened, OpenError> {
        let config = services.config.get();
        let settings = &config.terminal;
        let all = launcher::launchers(settings);
        let Some(chosen) = all.iter().find(|l| l.name == request.launcher).cloned() else {
            return Err(OpenError::UnknownLauncher {
                name: request.launcher,
                known: all
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let terminals = services.terminals.clone();
        let slot = terminals.take_slot(settings.max_terminals as usize)?;
        let sup = terminals
            .supervisor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                OpenError::Unavailable("the terminals supervisor is not running".into())
            })?;
        let id = new_id().map_err(|e| OpenError::Unavailable(format!("no randomness: {e}")))?;
        let dir = actor::TerminalDir::create(&services.home, &id).map_err(|e| {
            OpenError::Unavailable(format!("cannot create the terminal's directory: {e}"))
        })?;

        // The session, for every launcher but the shell.
        let mut session = None;
        let mut injected = None;
        if chosen.wants_session() {
            let addr = *services.mcp_bound.borrow();
            let addr = addr.ok_or_else(|| {
                OpenError::Unavailable("the MCP server is not bound; no session for the CLI".into())
            })?;
            let new = NewSession::new(request.cwd.clone().into())
                .with_label(Some(format!("code:{}", chosen.name)));
            let (s, token) = services.sessions.create(new).await.map_err(|e| {
                OpenError::Unavailable(format!("cannot create its MCP session: {e}"))
            })?;
            s.set_proxy_owner(&request.owner);
            injected = Some(Injected {
                mcp_url: format!("http://{addr}/mcp"),
                session_id: s.id().to_owned(),
                token,
            });
            session = Some(actor::SessionGuard::new(services.sessions.clone(), s));
        }
        let prepared = chosen
            .prepare(dir.path(), injected.as_ref())
            .map_err(|e| OpenError::Start(format!("cannot write the CLI's MCP config: {e}")))?;
        let mut command = vec![prepared.program.clone()];
        command.extend(prepared.args.iter().cloned());
        if let Some(inj) = &injected {
            for part in &mut command {
                *part = part.replace(&inj.token, "<token>");
            }
        }
        let (io_tx, io_rx) = oneshot::channel();
        let spec = actor::TerminalSpec {
            launcher: chosen.name.clone(),
            program: prepared.program,
            args: prepared.args,
            env: launcher::child_env(&prepared.env),
            shown: command.clone(),
            cwd: request.cwd.clone(),
            cols: request.cols,
            rows: request.rows,
            grace: settings.stop_grace(),
            idle_timeout: services.sessions.limits().idle_timeout,
            slot,
            dir,
            session,
            io: io_tx,
        };
        let session_id = injected.map(|i| i.session_id);
        let child_id = format!("term:{id}");
        revka_actors::supervisor::start_child(&sup, term_spec(&child_id, spec))
            .await
            .map_err(|e| OpenError::Start(e.to_string()))?;
        let (io, actor) = io_rx
            .await
            .map_err(|_| OpenError::Start("the terminal ended as it started".into()))?;
        Ok(Opened {
            path: format!("root/{SUPERVISOR_ID}/{child_id}"),
            id: child_id,
            launcher: chosen.name,
            command,
            session_id,
            cwd: request.cwd,
            io,
            actor,
        })
    }
}

/// A fresh terminal id: 16 hex digits.
fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The child spec of one terminal: temporary (never restarted; a restart is refused), with
/// time to end its processes on stop. Its start function runs once: a second run fails.
fn term_spec(id: &str, spec: actor::TerminalSpec) -> ChildSpec {
    let grace = spec.grace;
    let policy = RestartPolicy::standard()
        .with_restart(revka_actors::supervisor::RestartType::Temporary)
        .with_shutdown(revka_actors::supervisor::Shutdown::Timeout(
            grace + Duration::from_secs(10),
        ));
    let once = Arc::new(std::sync::Mutex::new(Some(spec)));
    ChildSpec::new(id, "terminal", policy, move |ctx: ChildContext| {
        let once = once.clone();
        async move {
            let spec = once
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .ok_or_else(|| {
                    ractor::SpawnErr::StartupFailed("a terminal is never restarted".into())
                })?;
            let args = actor::TerminalArguments {
                spec: Box::new(spec),
                node: ctx.node,
            };
            let (actor, _) = actor::TerminalActor::spawn_linked(
                None,
                actor::TerminalActor,
                args,
                ctx.supervisor,
            )
            .await?;
            Ok(actor.get_cell())
        }
    })
}

/// The `terminals` supervisor: terminal actors are its temporary children. Each time it
/// starts, it is attached to the terminal table, which starts new terminals under it.
pub fn supervisor_spec(terminals: Arc<Terminals>, policy: RestartPolicy) -> ChildSpec {
    crate::tree::dynamic_supervisor_spec(SUPERVISOR_ID, policy, move |sup| {
        terminals.attach_supervisor(sup)
    })
}
