//! The `sessions_*` tools: Revka's own live MCP sessions, their tool-call history, and
//! messages between them.
//!
//! - `sessions_list` (read): the live sessions the caller may see: id, label, client token,
//!   cwd, idle time, calls in flight, whether it is the caller, and whether it is a cron run's
//!   session (label `cron:<job>`).
//! - `sessions_history` `{session_id?, limit?}` (read): that session's tool calls (default the
//!   caller's), newest first, from the run log's `tool_call` lines (`run.jsonl` and its
//!   rotations `.1`–`.3`, read from the end, at most [`MAX_SCAN`] bytes in all; the log is
//!   flushed first). `limit` 1–200, default 20.
//! - `sessions_send` `{session_id, message}` (write): delivers a `notifications/message`
//!   (level `notice`, logger `revka.sessions`, data `{from, from_label, message}`) to the
//!   target session's server-to-client stream (`GET /mcp`) and its event stream
//!   (`GET /session/{id}/events`, event `message`). At most [`MAX_MESSAGE`] bytes; not sent
//!   when the target's client asked for a log level above `notice` (`logging/setLevel`).
//!
//! Visibility, the same rule as the cron jobs': a session opened with a client token sees
//! (lists, reads the history of, and messages) only the live sessions opened with that same
//! token; a session without one (minted by `POST /session` on the loopback listener, the
//! owner's path) sees every session, and may read the history of an ended one.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use revka_actors::session::{Session, Sessions};
use revka_mcp::protocol::LogLevel;
use serde_json::{Value, json};

use super::{Args, Cx, PolicyTool, Registrar, failed, ok, ok_text};
use crate::security::Effect;
use crate::tools::BuiltinError;

/// The longest message `sessions_send` delivers, in bytes.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// The most run-log bytes one `sessions_history` reads, over all files.
pub const MAX_SCAN: u64 = 16 * 1024 * 1024;
/// `sessions_history`' largest and default `limit`.
const MAX_HISTORY: u64 = 200;
const DEFAULT_HISTORY: u64 = 20;
/// The run log's rotated files read after `run.jsonl`.
const ROTATIONS: u32 = crate::runlog::KEEP;

/// Registers this group's tools.
pub(super) fn register(r: &mut Registrar<'_>) {
    let sessions = r.deps.sessions.clone();
    let runlogs = r.deps.home.join("operator_mcp").join("runlogs");
    r.add(SessionsList(sessions.clone()));
    r.add(SessionsHistory {
        sessions: sessions.clone(),
        dir: runlogs,
    });
    r.add(SessionsSend(sessions));
}

/// Whether `caller` may see `other`: same client token, or the caller has none.
fn visible(caller: &Session, other: &Session) -> bool {
    caller.client().is_none() || caller.client() == other.client()
}

/// A session id argument: 32 lowercase hex digits.
fn session_id(value: &str) -> Result<String, BuiltinError> {
    let id = value.trim().to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BuiltinError::Arguments(
            "`session_id` must be a session id (32 hex digits, from sessions_list)".into(),
        ));
    }
    Ok(id)
}

/// The live session `id` as `caller` may see it, with the same error for one that does not
/// exist and one it may not see.
fn target(sessions: &Sessions, caller: &Session, id: &str) -> Result<Arc<Session>, BuiltinError> {
    sessions
        .get(id)
        .filter(|s| visible(caller, s))
        .ok_or_else(|| {
            BuiltinError::Failed(format!("no live session `{id}` (sessions_list shows them)"))
        })
}

fn id_schema(what: &str) -> Value {
    json!({ "type": "string", "description": what })
}

struct SessionsList(Arc<Sessions>);

impl PolicyTool for SessionsList {
    fn name(&self) -> &'static str {
        "sessions_list"
    }

    fn description(&self) -> String {
        "Lists Revka's live MCP sessions this session may see (those of the same client token; \
         all of them for a session without one): id, label, client token, workspace (cwd), idle \
         seconds, calls in flight, and which one is you. Sessions labelled `cron:<job>` are \
         cron runs."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({ "type": "object", "properties": {}, "additionalProperties": false })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let sessions = self.0.clone();
        Box::pin(async move {
            Args::new(&args)?;
            let me = &cx.session;
            let mut seen: Vec<Arc<Session>> = sessions
                .all()
                .into_iter()
                .filter(|s| visible(me, s))
                .collect();
            seen.sort_by_key(|s| s.idle_for());
            let list: Vec<Value> = seen
                .iter()
                .map(|s| {
                    json!({
                        "session_id": s.id(),
                        "label": s.label(),
                        "client": s.client(),
                        "cwd": s.cwd(),
                        "idle_secs": s.idle_for().as_secs(),
                        "inflight_calls": s.inflight_calls(),
                        "you": s.id() == me.id(),
                        "cron_run": s.label().is_some_and(|l| l.starts_with("cron:")),
                    })
                })
                .collect();
            let text = seen
                .iter()
                .map(|s| {
                    format!(
                        "{}{} {} cwd {} idle {}s, {} in flight",
                        s.id(),
                        if s.id() == me.id() { " (you)" } else { "" },
                        s.label().unwrap_or("-"),
                        s.cwd().display(),
                        s.idle_for().as_secs(),
                        s.inflight_calls()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            let count = list.len();
            Ok(ok_text(text, json!({ "sessions": list, "count": count })))
        })
    }
}

struct SessionsHistory {
    sessions: Arc<Sessions>,
    dir: PathBuf,
}

impl PolicyTool for SessionsHistory {
    fn name(&self) -> &'static str {
        "sessions_history"
    }

    fn description(&self) -> String {
        "Shows a session's tool calls from Revka's run log, newest first: time, tool, server, \
         outcome, duration and the error's start. `session_id` defaults to this session; \
         another must be one sessions_list shows you. `limit` 1-200 (default 20)."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "session_id": id_schema("The session (default: this one)."),
                "limit": { "type": "integer", "minimum": 1, "maximum": MAX_HISTORY, "description": "How many calls (default 20)." },
            },
            "additionalProperties": false,
        })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let sessions = self.sessions.clone();
        let dir = self.dir.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let limit = a.opt_u64("limit")?.unwrap_or(DEFAULT_HISTORY);
            if limit == 0 || limit > MAX_HISTORY {
                return Err(BuiltinError::Arguments(format!(
                    "`limit` must be 1 to {MAX_HISTORY}, not {limit}"
                )));
            }
            let id = match a.opt_str("session_id")? {
                None => cx.session.id().to_owned(),
                Some(given) => {
                    let id = session_id(given)?;
                    // The owner may read an ended session's history; a client token only its
                    // own live sessions'.
                    if cx.session.client().is_some() || sessions.get(&id).is_some() {
                        target(&sessions, &cx.session, &id)?;
                    }
                    id
                }
            };
            crate::runlog::flush();
            let calls = tokio::task::spawn_blocking(move || history(&dir, &id, limit as usize))
                .await
                .map_err(|e| BuiltinError::Failed(format!("reading the run log failed: {e}")))?;
            let (calls, scanned, complete) = calls;
            let text = if calls.is_empty() {
                "No tool calls recorded for this session.".to_owned()
            } else {
                calls
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {} {} ({} ms)",
                            c["ts"].as_str().unwrap_or_default(),
                            c["tool"].as_str().unwrap_or_default(),
                            c["outcome"].as_str().unwrap_or_default(),
                            c["duration_ms"].as_u64().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let count = calls.len();
            Ok(ok_text(
                text,
                json!({
                    "calls": calls,
                    "count": count,
                    "scanned_bytes": scanned,
                    "whole_log_scanned": complete,
                }),
            ))
        })
    }
}

/// The last `limit` `tool_call` records of session `id`, newest first, from the run log in
/// `dir`; the bytes scanned and whether the whole log was.
fn history(dir: &Path, id: &str, limit: usize) -> (Vec<Value>, u64, bool) {
    let needle = format!("\"session\":\"{id}\"");
    let mut out = Vec::new();
    let mut budget = MAX_SCAN;
    let mut complete = true;
    let files = std::iter::once(dir.join("run.jsonl"))
        .chain((1..=ROTATIONS).map(|n| dir.join(format!("run.jsonl.{n}"))));
    for path in files {
        if out.len() >= limit {
            break;
        }
        if budget == 0 {
            complete = false;
            break;
        }
        let Some((text, whole)) = tail(&path, budget) else {
            continue;
        };
        budget = budget.saturating_sub(text.len() as u64);
        complete &= whole;
        let lines: Vec<&str> = text.lines().collect();
        // A tail that starts mid-file starts mid-line: its first line is not whole.
        let skip = usize::from(!whole);
        for line in lines.iter().skip(skip).rev() {
            if !line.contains(&needle) || !line.contains("\"kind\":\"tool_call\"") {
                continue;
            }
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if record["kind"] != "tool_call" || record["session"] != id {
                continue;
            }
            out.push(json!({
                "ts": record["ts"],
                "tool": record["tool"],
                "server": record["server"],
                "outcome": record["outcome"],
                "duration_ms": record["duration_ms"],
                "error": record.get("error").cloned().unwrap_or(Value::Null),
            }));
            if out.len() >= limit {
                break;
            }
        }
        if !whole {
            break;
        }
    }
    (out, MAX_SCAN - budget, complete)
}

/// The last `max` bytes of the file at `path` (not followed if it is a link), as text, and
/// whether that is the whole file. `None` when it cannot be read.
fn tail(path: &Path, max: u64) -> Option<(String, bool)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let len = meta.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some((String::from_utf8_lossy(&bytes).into_owned(), start == 0))
}

struct SessionsSend(Arc<Sessions>);

impl PolicyTool for SessionsSend {
    fn name(&self) -> &'static str {
        "sessions_send"
    }

    fn description(&self) -> String {
        format!(
            "Sends a message to another live session (one sessions_list shows you): its client \
             receives a logging notification (`notifications/message`, level notice, logger \
             `revka.sessions`, data {{from, from_label, message}}) on its server-to-client \
             stream. At most {MAX_MESSAGE} bytes."
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "session_id": id_schema("The session to send to."),
                "message": { "type": "string", "description": "The message (at most 8 KiB)." },
            },
            "required": ["session_id", "message"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Write
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let sessions = self.0.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let id = session_id(a.str("session_id")?)?;
            let message = a.str("message")?;
            if message.len() > MAX_MESSAGE {
                return Err(BuiltinError::Arguments(format!(
                    "`message` is {} bytes; at most {MAX_MESSAGE}",
                    message.len()
                )));
            }
            if message.trim().is_empty() {
                return Err(BuiltinError::Arguments("`message` is empty".into()));
            }
            let to = target(&sessions, &cx.session, &id)?;
            if let Some(level) = to.client_side().level()
                && level > LogLevel::Notice
            {
                return Ok(failed(
                    format!(
                        "not sent: the client of session {id} asked for log messages at level \
                         `{}` and above (logging/setLevel); this message is a notice",
                        level.as_str()
                    ),
                    json!({ "delivered": false, "session_id": id }),
                ));
            }
            let notification = json!({
                "jsonrpc": "2.0",
                "method": "notifications/message",
                "params": {
                    "level": "notice",
                    "logger": "revka.sessions",
                    "data": {
                        "from": cx.session.id(),
                        "from_label": cx.session.label(),
                        "message": message,
                    },
                },
            });
            to.deliver(Arc::from(notification.to_string()));
            Ok(ok(json!({
                "delivered": true,
                "session_id": id,
                "bytes": message.len(),
            })))
        })
    }
}
