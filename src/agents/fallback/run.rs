//! One run of a fallback agent: the CLI as a temporary child `root/agents/agent:<id>` (a
//! [`ProcessActor`] of `revka-actors`: its own process group, the reaper, SIGTERM → SIGKILL
//! of the group on every way out), its stdout read line by line (each line capped), parsed
//! ([`super::parse`]) and recorded on the agent's timeline.
//!
//! The run ends when the CLI closes its stdout and exits, or is stopped: a protocol failure
//! (a line that is not JSON, or longer than `line_cap`), a flood (more than
//! [`MAX_EVENTS_PER_RUN`] events), the agent's budget spent, an interrupt not obeyed within
//! `kill_grace`, the agent closed, the daemon stopping. Stopping is the process actor's stop:
//! SIGTERM to the group, SIGKILL after `kill_grace`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use ractor::{Actor, ActorRef};
use revka_actors::process::{
    ChildIo, ProcessActor, ProcessArguments, ProcessMessage, ProcessSpec, StdioMode,
};
use revka_actors::supervisor::{
    ChildContext, ChildSpec, RestartPolicy, RestartType, Shutdown, SupervisorError,
    SupervisorMessage,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStdout;
use tokio::sync::{mpsc, oneshot, watch};

use super::parse::{Backend, Parsed, Parser, cut};
use super::{Agent, FallbackError, Inner};

/// Events one run may record before it is stopped as a flood.
pub const MAX_EVENTS_PER_RUN: u64 = 100_000;
/// Bytes of the stderr tail an `error` event of a dead run carries.
const STDERR_TAIL: usize = 2048;
/// Lines queued between the stdout reader and the run.
const LINE_QUEUE: usize = 16;

/// Asks a running run to do something.
#[derive(Debug)]
pub(crate) enum Control {
    /// SIGINT to the group; SIGTERM/SIGKILL after `kill_grace` if it is still running.
    Interrupt,
    /// Stop now (close, shutdown): the process actor's stop.
    Stop(&'static str),
}

/// What a run is started with.
pub(crate) struct RunPlan {
    pub(crate) run: u64,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) shown: Vec<String>,
    pub(crate) cwd: PathBuf,
    pub(crate) kill_grace: Duration,
    pub(crate) line_cap: usize,
    pub(crate) supervisor: ActorRef<SupervisorMessage>,
}

/// One line from the reader.
enum Line {
    Json(Vec<u8>),
    TooLong(Vec<u8>),
    Failed(String),
}

/// Names of the daemon's environment variables a run does not get: its secrets and the
/// service manager's, by the terminals' rule (`terminal::launcher::child_env`). The process
/// tree marker is set by the process actor itself.
pub(crate) fn scrubbed_names() -> Vec<String> {
    let kept: std::collections::HashSet<String> = crate::terminal::launcher::child_env(&[])
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| !kept.contains(k) && k != revka_actors::process::TREE_VAR)
        .collect()
}

/// Where `program` is: as given when it has a slash (relative to the daemon's directory),
/// else the first executable file of that name in `PATH`.
pub(crate) fn resolve_program(program: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return Err("the backend's command is empty".into());
    }
    if program.contains('/') {
        let path = std::path::absolute(program).map_err(|e| format!("{program}: {e}"))?;
        return if executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "cannot start `{program}`: no executable file there"
            ))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_absolute() && executable(p))
        .ok_or_else(|| format!("cannot start `{program}`: not found in PATH"))
}

/// The process spec of a run: the program under `env -u …` when the daemon has variables to
/// keep from it (the process actor adds to the daemon's environment, it does not remove).
fn process_spec(agent: &Agent, plan: &RunPlan) -> ProcessSpec {
    process_spec_without(agent, plan, scrubbed_names())
}

/// [`process_spec`] with the names of the variables to remove given.
pub(crate) fn process_spec_without(
    agent: &Agent,
    plan: &RunPlan,
    removed: Vec<String>,
) -> ProcessSpec {
    let (program, args) = if removed.is_empty() {
        (plan.program.display().to_string(), plan.args.clone())
    } else {
        let env = resolve_program("env").unwrap_or_else(|_| PathBuf::from("/usr/bin/env"));
        let mut args = Vec::new();
        for name in removed {
            args.push("-u".to_owned());
            args.push(name);
        }
        args.push("--".into());
        args.push(plan.program.display().to_string());
        args.extend(plan.args.iter().cloned());
        (env.display().to_string(), args)
    };
    let mut spec = ProcessSpec::new(program, args);
    spec.env = vec![("REVKA_AGENT_ID".into(), agent.id.clone())];
    // What codex's MCP overrides name instead of carrying secrets on the command line.
    spec.env.extend(agent.codex_env.iter().cloned());
    spec.cwd = Some(plan.cwd.clone());
    spec.stdio = StdioMode::Piped;
    spec.stop_timeout = plan.kill_grace;
    spec.shown = Some(plan.shown.join(" "));
    spec
}

/// The child spec `agent:<id>`: temporary, started once.
fn child_spec(
    id: &str,
    spec: ProcessSpec,
    io: oneshot::Sender<Result<ChildIo, String>>,
    actor: Arc<Mutex<Option<ActorRef<ProcessMessage>>>>,
) -> ChildSpec {
    let policy = RestartPolicy::standard()
        .with_restart(RestartType::Temporary)
        .with_shutdown(Shutdown::Timeout(
            spec.stop_timeout + Duration::from_secs(10),
        ));
    let spec = Arc::new(spec);
    let once = Arc::new(Mutex::new(Some(io)));
    ChildSpec::new(
        format!("agent:{id}"),
        "process",
        policy,
        move |ctx: ChildContext| {
            let (spec, once, slot) = (spec.clone(), once.clone(), actor.clone());
            async move {
                let io = once
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .ok_or_else(|| {
                        ractor::SpawnErr::StartupFailed("an agent run is never restarted".into())
                    })?;
                let args = ProcessArguments {
                    spec,
                    node: ctx.node,
                    io: Some(io),
                };
                let (actor, _) =
                    ProcessActor::spawn_linked(None, ProcessActor, args, ctx.supervisor).await?;
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(actor.clone());
                Ok(actor.get_cell())
            }
        },
    )
}

/// Reads `stdout` line by line (each at most `cap` bytes) into `tx`, until EOF.
async fn read_lines(stdout: ChildStdout, cap: usize, tx: mpsc::Sender<Line>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Line::Failed(e.to_string())).await;
                return;
            }
        };
        if buf.is_empty() {
            if !line.is_empty() && !too_long {
                let _ = tx.send(Line::Json(std::mem::take(&mut line))).await;
            }
            return;
        }
        let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            let room = (cap + 1).saturating_sub(line.len());
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if line.len() > cap {
                too_long = true;
                line.truncate(200);
                if tx
                    .send(Line::TooLong(std::mem::take(&mut line)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let used = end.unwrap_or(buf.len());
        reader.consume(used);
        if end.is_some() {
            if !too_long
                && !line.iter().all(u8::is_ascii_whitespace)
                && tx
                    .send(Line::Json(std::mem::take(&mut line)))
                    .await
                    .is_err()
            {
                return;
            }
            line.clear();
            too_long = false;
        }
    }
}

/// Starts a run and returns once its process runs (its pid), or why it could not start. The
/// run goes on in a task of its own; `ctl` steers it, `done` turns true when it has ended.
pub(crate) async fn start(
    inner: Arc<Inner>,
    agent: Arc<Agent>,
    plan: RunPlan,
    ctl: mpsc::Receiver<Control>,
    done: watch::Sender<bool>,
) -> Result<u32, FallbackError> {
    let (started_tx, started_rx) = oneshot::channel();
    tokio::spawn(run(inner, agent, plan, ctl, done, started_tx));
    started_rx
        .await
        .unwrap_or_else(|_| Err(FallbackError::Spawn("the run ended as it started".into())))
}

/// How a run ended, before its last status.
enum End {
    /// The stream ended.
    Eof,
    /// Stopped for a failure (`reason`); its `error` event is recorded.
    Failed(&'static str),
    /// Stopped by close or shutdown (why).
    Stopped(&'static str),
}

async fn run(
    inner: Arc<Inner>,
    agent: Arc<Agent>,
    plan: RunPlan,
    mut ctl: mpsc::Receiver<Control>,
    done: watch::Sender<bool>,
    started: oneshot::Sender<Result<u32, FallbackError>>,
) {
    let run_no = plan.run;
    let slot = Arc::new(Mutex::new(None));
    let spec = process_spec(&agent, &plan);
    let mut outcome = Err(String::new());
    // The previous run's child may still be on its way out of the supervisor (2 s at most).
    for _ in 0..200 {
        let (tx, rx) = oneshot::channel::<Result<ChildIo, String>>();
        let cs = child_spec(&agent.id, spec.clone(), tx, slot.clone());
        match revka_actors::supervisor::start_child(&plan.supervisor, cs).await {
            Ok(()) => {
                outcome = rx
                    .await
                    .unwrap_or_else(|_| Err("the process ended as it started".into()));
                break;
            }
            Err(SupervisorError::AlreadyExists(_)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                outcome = Err(e.to_string());
                break;
            }
        }
    }
    let io = match outcome {
        Ok(io) => io,
        Err(e) => {
            let message = if e.is_empty() {
                format!("agent:{} is still stopping its last run", agent.id)
            } else {
                format!("cannot start {}: {e}", agent.backend.name())
            };
            inner.record(
                &agent,
                "error",
                Some(message.clone()),
                json!({"run": run_no, "reason": "spawn"}),
            );
            inner.finish(&agent, run_no, "error", Some("spawn"));
            let _ = started.send(Err(FallbackError::Spawn(message)));
            let _ = done.send(true);
            return;
        }
    };
    let actor = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let pid = io.pid;
    agent.set_pid(Some(pid));
    let _ = started.send(Ok(pid));
    let ChildIo {
        stdin,
        stdout,
        exit: mut exit_rx,
        stderr,
        ..
    } = io;
    drop(stdin);
    let (line_tx, mut lines) = mpsc::channel(LINE_QUEUE);
    let reader = tokio::spawn(read_lines(stdout, plan.line_cap, line_tx));
    let stop = |why: &str| {
        if let Some(a) = &actor {
            a.stop(Some(why.to_owned()));
        }
    };

    let mut parser = Parser::new(agent.backend);
    let mut events: u64 = 0;
    let mut interrupted = false;
    let mut escalate: Option<tokio::time::Instant> = None;
    // Once the process has exited, its output is read for kill_grace more at most: a
    // descendant that left its group may hold the pipe open forever.
    let mut drain_until: Option<tokio::time::Instant> = exit_rx
        .borrow()
        .is_some()
        .then(|| tokio::time::Instant::now() + plan.kill_grace);
    let end = loop {
        tokio::select! {
            changed = exit_rx.changed(), if drain_until.is_none() => {
                if changed.is_err() || exit_rx.borrow().is_some() {
                    drain_until = Some(tokio::time::Instant::now() + plan.kill_grace);
                }
            }
            _ = async {
                match drain_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => break End::Eof,
            line = lines.recv() => {
                let bytes = match line {
                    None => break End::Eof,
                    Some(Line::Json(b)) => b,
                    Some(Line::TooLong(head)) => {
                        let message = format!(
                            "protocol error: a line of {} longer than {} bytes: {}",
                            agent.backend.name(), plan.line_cap,
                            String::from_utf8_lossy(&head)
                        );
                        inner.record(&agent, "error", Some(message), json!({"run": run_no, "reason": "protocol"}));
                        break End::Failed("protocol");
                    }
                    Some(Line::Failed(e)) => {
                        tracing::debug!(agent = %agent.id, error = %e, "reading the run's output failed");
                        break End::Eof;
                    }
                };
                let value: Value = match serde_json::from_slice(&bytes) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                        let message = format!("protocol error: {} wrote a line that is not a JSON object: {head}", agent.backend.name());
                        inner.record(&agent, "error", Some(message), json!({"run": run_no, "reason": "protocol", "line": head}));
                        break End::Failed("protocol");
                    }
                };
                let mut failed = None;
                for parsed in parser.line(&value) {
                    events += 1;
                    if events > MAX_EVENTS_PER_RUN {
                        let message = format!("flood: more than {MAX_EVENTS_PER_RUN} events in one run; stopped");
                        inner.record(&agent, "error", Some(message), json!({"run": run_no, "reason": "flood"}));
                        failed = Some("flood");
                        break;
                    }
                    match parsed {
                        Parsed::Event { kind, text, mut data } => {
                            data.insert("run".into(), json!(run_no));
                            inner.record(&agent, kind, text, Value::Object(data));
                        }
                        Parsed::Usage(usage) => {
                            if inner.add_usage(&agent, run_no, usage) {
                                failed = Some("budget_exceeded");
                                break;
                            }
                        }
                    }
                }
                agent.learn(&parser);
                if let Some(reason) = failed {
                    break End::Failed(reason);
                }
            }
            c = ctl.recv() => match c {
                Some(Control::Interrupt) if !interrupted => {
                    interrupted = true;
                    inner.record(&agent, "interrupt", Some("interrupted".into()), json!({"run": run_no}));
                    if let Err(e) = killpg(Pid::from_raw(pid as i32), Signal::SIGINT) {
                        tracing::debug!(agent = %agent.id, error = %e, "SIGINT to the run's group failed");
                    }
                    escalate = Some(tokio::time::Instant::now() + plan.kill_grace);
                }
                Some(Control::Interrupt) => {}
                Some(Control::Stop(why)) => break End::Stopped(why),
                None => break End::Stopped("its agent is gone"),
            },
            _ = async {
                match escalate {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                escalate = None;
                stop("interrupted; it did not stop within kill_grace");
            }
        }
    };

    // The process's end: stopped now after a failure, else given kill_grace to exit after
    // closing its output.
    match end {
        End::Failed(reason) => stop(reason),
        End::Stopped(why) => stop(why),
        End::Eof => {
            if tokio::time::timeout(plan.kill_grace, exit_rx.wait_for(Option::is_some))
                .await
                .is_err()
            {
                stop("it closed its output but did not exit");
            }
        }
    }
    let _ = tokio::time::timeout(
        plan.kill_grace + Duration::from_secs(10),
        exit_rx.wait_for(Option::is_some),
    )
    .await;
    if let Some(a) = &actor {
        let _ = a
            .get_cell()
            .wait(Some(plan.kill_grace + Duration::from_secs(10)))
            .await;
    }
    reader.abort();
    let exit = *exit_rx.borrow();

    match end {
        End::Failed(reason) => inner.finish(&agent, run_no, "error", Some(reason)),
        End::Stopped(_) => inner.finish(&agent, run_no, "idle", Some("stopped")),
        End::Eof if interrupted => inner.finish(&agent, run_no, "idle", Some("interrupted")),
        End::Eof if parser.finished && !parser.failed => inner.finish(&agent, run_no, "idle", None),
        End::Eof if parser.failed => inner.finish(&agent, run_no, "error", Some("backend")),
        End::Eof => {
            let tail = {
                let ring = stderr.lock().unwrap_or_else(PoisonError::into_inner);
                let t = ring.tail();
                let start = t.len().saturating_sub(STDERR_TAIL);
                let mut start = start;
                while !t.is_char_boundary(start) {
                    start += 1;
                }
                t[start..].to_owned()
            };
            let how = exit.map_or_else(|| "ended".to_owned(), |e| e.to_string());
            let message = cut(
                &format!(
                    "{} {how} before the end of its turn{}",
                    agent.backend.name(),
                    if tail.trim().is_empty() {
                        String::new()
                    } else {
                        format!(" (stderr: {})", tail.trim_end())
                    }
                ),
                STDERR_TAIL + 256,
            );
            inner.record(
                &agent,
                "error",
                Some(message),
                json!({"run": run_no, "reason": "died", "code": exit.and_then(|e| e.code),
                       "signal": exit.and_then(|e| e.signal), "stderr": tail}),
            );
            inner.finish(&agent, run_no, "error", Some("died"));
        }
    }
    let _ = done.send(true);
}

/// The argv of a run: `(program, args, shown)`; `shown` has the prompt elided and secret
/// values masked.
pub(crate) fn argv(
    backend: Backend,
    command: &[String],
    agent: &Agent,
    resume: Option<&str>,
    prompt: &str,
) -> (Vec<String>, Vec<String>) {
    let mut real: Vec<String> = command.to_vec();
    let mut shown: Vec<String> = command.to_vec();
    let mut both = |r: String, s: String| {
        real.push(r);
        shown.push(s);
    };
    match backend {
        Backend::Claude => {
            for f in ["-p", "--output-format", "stream-json", "--verbose"] {
                both(f.into(), f.into());
            }
            if let Some(m) = &agent.model {
                both("--model".into(), "--model".into());
                both(m.clone(), m.clone());
            }
            if !agent.allowed_tools.is_empty() {
                let tools = agent.allowed_tools.join(",");
                both("--allowedTools".into(), "--allowedTools".into());
                both(tools.clone(), tools);
            }
            if let Some(s) = &agent.system_prompt {
                both(
                    "--append-system-prompt".into(),
                    "--append-system-prompt".into(),
                );
                both(s.clone(), s.clone());
            }
            if let Some(file) = &agent.claude_mcp {
                let f = file.display().to_string();
                both("--mcp-config".into(), "--mcp-config".into());
                both(f.clone(), f);
            }
            if let Some(id) = resume {
                both("--resume".into(), "--resume".into());
                both(id.to_owned(), id.to_owned());
            }
        }
        Backend::Codex => {
            for f in ["exec", "--json", "--skip-git-repo-check"] {
                both(f.into(), f.into());
            }
            if let Some(m) = &agent.model {
                both("--model".into(), "--model".into());
                both(m.clone(), m.clone());
            }
            let cwd = agent.cwd.display().to_string();
            both("-C".into(), "-C".into());
            both(cwd.clone(), cwd);
            for (r, s) in &agent.codex_overrides {
                both("-c".into(), "-c".into());
                both(r.clone(), s.clone());
            }
            if let Some(id) = resume {
                both("resume".into(), "resume".into());
                both(id.to_owned(), id.to_owned());
            }
        }
    }
    both("--".into(), "--".into());
    both(prompt.to_owned(), "<prompt>".into());
    (real, shown)
}
