//! The terminal actor, `root/terminals/term:<id>`: one PTY, its process, its session, its
//! files, for as long as the actor lives.
//!
//! `pre_start` spawns the process ([`super::pty`]) and three tasks: the reader (PTY → the
//! bounded output queue; it waits while the queue is full, so the PTY is not read and the
//! process blocks on its writes), the writer (the bounded input queue → PTY; it waits while
//! the PTY does not drain) and the waiter (reaps the process and tells the actor). The
//! process's exit stops the actor normally. `post_stop` ends every process of the terminal
//! ([`super::kill::terminate`]), lets the reader pass on the last output, and the state's
//! drop ends the session, removes the directory and frees the slot; a state dropped without
//! `post_stop` (the actor was killed or panicked) SIGKILLs the processes first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use revka_actors::StatusNode;
use revka_actors::process::ExitInfo;
use revka_actors::session::{Session, Sessions};
use revka_actors::status::rfc3339;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::pty::{self, Pty};
use super::{INPUT_QUEUE, MAX_FRAME, OUTPUT_QUEUE, Slot, TerminalIo, kill};

/// How much the reader reads at once (at most [`MAX_FRAME`]).
const READ_CHUNK: usize = 32 * 1024;
/// How long the reader may take to pass on the last output once the processes are gone.
const DRAIN: Duration = Duration::from_secs(1);

/// Everything a terminal actor is started with (made by `Terminals::open`).
#[derive(Debug)]
pub(crate) struct TerminalSpec {
    pub(crate) launcher: String,
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// The whole environment of the process.
    pub(crate) env: Vec<(String, String)>,
    /// The command line shown (the session token masked).
    pub(crate) shown: Vec<String>,
    pub(crate) cwd: PathBuf,
    pub(crate) cols: u16,
    pub(crate) rows: u16,
    /// SIGTERM → SIGKILL.
    pub(crate) grace: Duration,
    /// The sessions' idle timeout: the session is touched well within it.
    pub(crate) idle_timeout: Duration,
    pub(crate) slot: Slot,
    pub(crate) dir: TerminalDir,
    pub(crate) session: Option<SessionGuard>,
    /// Receives the data paths once the process runs.
    pub(crate) io: oneshot::Sender<(TerminalIo, ActorRef<TerminalMessage>)>,
}

/// Arguments of [`TerminalActor`].
#[derive(Debug)]
pub(crate) struct TerminalArguments {
    pub(crate) spec: Box<TerminalSpec>,
    pub(crate) node: StatusNode,
}

/// `$REVKA_HOME/terminals/<id>/`: created 0700, removed when dropped.
#[derive(Debug)]
pub(crate) struct TerminalDir(PathBuf);

impl TerminalDir {
    pub(crate) fn create(home: &Path, id: &str) -> std::io::Result<Self> {
        revka_actors::fs::create_private_subdir(&home.join("terminals"), id)
            .map(Self)
            .map_err(std::io::Error::other)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TerminalDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove the terminal's directory");
        }
    }
}

/// A terminal's MCP session: ended when dropped.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    sessions: Arc<Sessions>,
    session: Arc<Session>,
}

impl SessionGuard {
    pub(crate) fn new(sessions: Arc<Sessions>, session: Arc<Session>) -> Self {
        Self { sessions, session }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.end(self.session.id(), "its terminal ended");
    }
}

/// What the status details show, shared with the tasks.
#[derive(Debug)]
struct Shared {
    launcher: String,
    command: Vec<String>,
    cwd: PathBuf,
    session_id: Option<String>,
    pid: u32,
    started_at: SystemTime,
    /// `cols << 16 | rows`.
    size: AtomicU32,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    exit: Mutex<Option<(ExitInfo, SystemTime)>>,
}

impl Shared {
    fn details(&self) -> serde_json::Value {
        let size = self.size.load(Ordering::Relaxed);
        let exit = *self.exit.lock().unwrap_or_else(PoisonError::into_inner);
        serde_json::json!({
            "pid": self.pid,
            "command": self.command,
            "launcher": self.launcher,
            "cwd": self.cwd,
            "session_id": self.session_id,
            "cols": size >> 16,
            "rows": size & 0xffff,
            "started_at": rfc3339(self.started_at),
            "bytes_in": self.bytes_in.load(Ordering::Relaxed),
            "bytes_out": self.bytes_out.load(Ordering::Relaxed),
            "exit": exit.map(|(e, at)| serde_json::json!({
                "code": e.code, "signal": e.signal, "description": e.to_string(), "at": rfc3339(at),
            })),
        })
    }
}

/// Resizes a terminal from its WebSocket.
#[derive(Debug)]
pub(crate) struct Resizer {
    pty: Arc<Pty>,
    shared: Arc<Shared>,
}

impl Resizer {
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        self.pty.resize(cols, rows)?;
        self.shared
            .size
            .store(u32::from(cols) << 16 | u32::from(rows), Ordering::Relaxed);
        Ok(())
    }
}

/// The terminal actor.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TerminalActor;

/// Messages of [`TerminalActor`].
#[derive(Debug)]
pub(crate) enum TerminalMessage {
    /// Internal: the process exited and was reaped.
    Exited(ExitInfo),
}

/// State of [`TerminalActor`]. Dropping it SIGKILLs what is left of the terminal's processes
/// (unless `post_stop` ended them), ends the session and removes the directory.
#[derive(Debug)]
pub(crate) struct TerminalState {
    leader: i32,
    path: String,
    exit: watch::Receiver<Option<ExitInfo>>,
    grace: Duration,
    reader: Option<JoinHandle<()>>,
    writer: JoinHandle<()>,
    toucher: Option<JoinHandle<()>>,
    ended: bool,
    // Dropped in this order, after the processes are gone.
    _session: Option<SessionGuard>,
    _dir: TerminalDir,
    _slot: Slot,
}

impl Drop for TerminalState {
    fn drop(&mut self) {
        if !self.ended {
            let alive = self.exit.borrow().is_none();
            kill::kill_now(self.leader, alive);
            tracing::warn!(path = %self.path, pid = self.leader, "terminal dropped without a stop; its processes were SIGKILLed");
        }
        kill::unregister(self.leader);
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        self.writer.abort();
        if let Some(toucher) = self.toucher.take() {
            toucher.abort();
        }
    }
}

impl Actor for TerminalActor {
    type Msg = TerminalMessage;
    type State = TerminalState;
    type Arguments = TerminalArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<TerminalMessage>,
        args: TerminalArguments,
    ) -> Result<TerminalState, ActorProcessingErr> {
        let TerminalArguments { spec, node } = args;
        let spec = *spec;
        let (pty, slave) = Pty::open(spec.cols, spec.rows)
            .map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
        let command = pty::Command {
            program: &spec.program,
            args: &spec.args,
            env: &spec.env,
            cwd: &spec.cwd,
        };
        let mut child = pty::spawn(&command, slave)
            .map_err(|e| format!("cannot start `{}`: {e}", spec.program))?;
        let pid = child.id().unwrap_or(0);
        let reaped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        kill::register(pid as i32, reaped.clone());
        let shared = Arc::new(Shared {
            launcher: spec.launcher.clone(),
            command: spec.shown.clone(),
            cwd: spec.cwd.clone(),
            session_id: spec.session.as_ref().map(|s| s.session.id().to_owned()),
            pid,
            started_at: SystemTime::now(),
            size: AtomicU32::new(u32::from(spec.cols) << 16 | u32::from(spec.rows)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            exit: Mutex::new(None),
        });
        let details = shared.clone();
        node.set_details(Arc::new(move || details.details()));
        let pty = Arc::new(pty);

        // PTY → output queue: waits while the queue is full (the PTY is then not read).
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
        let (reader_pty, reader_shared) = (pty.clone(), shared.clone());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK.min(MAX_FRAME)];
            loop {
                match reader_pty.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        reader_shared
                            .bytes_out
                            .fetch_add(n as u64, Ordering::Relaxed);
                        if out_tx
                            .send(Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "terminal read failed");
                        break;
                    }
                }
            }
        });

        // Input queue → PTY: waits while the PTY does not drain.
        let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(INPUT_QUEUE);
        let (writer_pty, writer_shared) = (pty.clone(), shared.clone());
        let writer = tokio::spawn(async move {
            while let Some(data) = in_rx.recv().await {
                if let Err(e) = writer_pty.write_all(&data).await {
                    tracing::debug!(error = %e, "terminal write failed");
                    break;
                }
                writer_shared
                    .bytes_in
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        });

        // The waiter owns the child, so it is always reaped, even if this actor is killed.
        let (exit_tx, exit_rx) = watch::channel(None);
        let (waiter_shared, me) = (shared.clone(), myself.clone());
        tokio::spawn(async move {
            use std::os::unix::process::ExitStatusExt;
            let exit = match child.wait().await {
                Ok(status) => ExitInfo {
                    code: status.code(),
                    signal: status.signal(),
                },
                Err(_) => ExitInfo {
                    code: None,
                    signal: None,
                },
            };
            reaped.store(true, Ordering::SeqCst);
            *waiter_shared
                .exit
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((exit, SystemTime::now()));
            let _ = exit_tx.send(Some(exit));
            let _ = me.send_message(TerminalMessage::Exited(exit));
        });

        // The session must not idle out while its terminal lives.
        let toucher = spec.session.as_ref().map(|guard| {
            let session = guard.session.clone();
            let every =
                (spec.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            tokio::spawn(async move {
                loop {
                    session.touch();
                    tokio::time::sleep(every).await;
                }
            })
        });

        let path = node.path().to_owned();
        tracing::info!(%path, pid, command = ?spec.shown, cwd = %spec.cwd.display(), "terminal started");
        let io = TerminalIo {
            output: out_rx,
            input: in_tx,
            exit: exit_rx.clone(),
            resize: Arc::new(Resizer {
                pty,
                shared: shared.clone(),
            }),
        };
        if spec.io.send((io, myself.clone())).is_err() {
            // Nobody waits for it any more (the request went away).
            myself.stop(Some("nobody opened it".to_owned()));
        }
        Ok(TerminalState {
            leader: pid as i32,
            path,
            exit: exit_rx,
            grace: spec.grace,
            reader: Some(reader),
            writer,
            toucher,
            ended: false,
            _session: spec.session,
            _dir: spec.dir,
            _slot: spec.slot,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TerminalMessage>,
        state: &mut TerminalState,
    ) -> Result<(), ActorProcessingErr> {
        kill::terminate(state.leader, state.grace, &state.exit).await;
        state.ended = true;
        // The last output reaches the socket, unless nobody reads it.
        if let Some(mut reader) = state.reader.take()
            && tokio::time::timeout(DRAIN, &mut reader).await.is_err()
        {
            reader.abort();
        }
        let exit = *state.exit.borrow();
        tracing::info!(path = %state.path, pid = state.leader, exit = ?exit, "terminal ended");
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TerminalMessage>,
        message: TerminalMessage,
        _state: &mut TerminalState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TerminalMessage::Exited(exit) => {
                myself.stop(Some(format!("its process {exit}")));
                Ok(())
            }
        }
    }
}
