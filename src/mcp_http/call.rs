//! `tools/call` as an SSE stream: zero or more `notifications/progress` (keyed to the caller's
//! `progressToken`, or one Revka mints), exactly one JSON-RPC response `{content, isError}`,
//! then `event: done`.
//!
//! A call runs in the connection's task for up to 50 ms (a quick one is answered in one write),
//! then, or from its first progress report, in its own task. It ends early, cancelling the tool (external servers get
//! `notifications/cancelled`), when the client hangs up mid-call, when the client sends
//! `notifications/cancelled` for its id, or when the session ends. A client that hangs up
//! right after the result is not an error. Long calls get a keep-alive comment every 15 s.
//! Running the tool itself (built-in, external or operator, with its panic guard and
//! ceiling) is the registry's ([`ToolRegistry::execute`]): this module only frames it.
//!
//! The call's id and the caller's progress token are echoed exactly as the caller wrote them
//! ([`Id`]); the call is registered for cancellation under [`Id::key`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use revka_actors::session::{CallGuard, ProgressEvent, Session, SessionEvent};
use revka_actors::status::rfc3339;
use revka_mcp::jsonrpc::{ErrorObject, Id, json_string};
use revka_mcp::protocol::{ProgressUpdate, tool_error_result};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::guard::rpc_error;

/// How long a call may run in the connection's task before its headers are sent.
const HOLD_HEADERS: std::time::Duration = std::time::Duration::from_millis(50);
use revka_mcp::wrapper::{ArgumentError, RawArguments, raw_result_is_error};

use super::relay::SessionRelay;
use super::{McpServer, sse};
use crate::telemetry::CallOutcome;
use crate::tools::{Resolved, ToolContext, ToolRegistry};
use revka_mcp::client::CallRelay;
use tokio_util::sync::CancellationToken;

/// Mints progress tokens for callers that did not send one.
static MINTED: AtomicU64 = AtomicU64::new(1);

/// Starts a `tools/call`: a plain JSON-RPC error for an unknown tool or bad params, else the
/// SSE stream.
pub(crate) async fn tools_call(
    server: McpServer,
    session: Arc<Session>,
    id: Id,
    params: Option<&RawValue>,
) -> Response {
    let CallParams {
        name,
        arguments,
        progress_token,
    } = match CallParams::read(params) {
        Ok(p) => p,
        Err(message) => {
            return rpc_error(
                StatusCode::OK,
                Some(&id),
                ErrorObject::INVALID_PARAMS,
                &message,
            );
        }
    };
    let resolved = match server.inner.registry.resolve(&session, &name) {
        Ok(r) => r,
        Err(e) => {
            return rpc_error(
                StatusCode::OK,
                Some(&id),
                ErrorObject::INVALID_PARAMS,
                &e.to_string(),
            );
        }
    };
    // Registered under the id's key, which `notifications/cancelled` matches (`Id::key`).
    let guard = match session.begin_call(&id.key()) {
        Ok(guard) => guard,
        Err(e) => {
            return rpc_error(
                StatusCode::OK,
                Some(&id),
                ErrorObject::INVALID_REQUEST,
                &e.to_string(),
            );
        }
    };
    let token = match progress_token {
        Some(given) => ProgressToken::Given(given),
        None => ProgressToken::Minted(MINTED.fetch_add(1, Ordering::Relaxed)),
    };
    let (tx, mut rx) = mpsc::channel(sse::BUFFER);
    // Held until the response is built: the call's own sender is then never the last one, so
    // its end cannot wake this task (see `sse::response_ended`).
    let stream_tx = tx.clone();
    let server_keepalive = server.inner.keepalive;
    let call = Call {
        server,
        session,
        id,
        name,
        token,
        tx,
    };
    // A quick call runs to its end right here, in the connection's task, and its answer goes
    // out with the headers in one write: no task to spawn, no hand-off back. A call that
    // reports progress first, or is still running after the hold, goes on in a task of its own
    // while its stream is answered.
    let mut run = Box::pin(call.run(resolved, arguments, guard));
    let first = tokio::select! {
        biased;
        tail = &mut run => {
            let response = sse::response_ended(rx, tail.map(Tail::into_frames));
            drop(stream_tx);
            return response;
        }
        Some(frame) = rx.recv() => Some(frame),
        () = tokio::time::sleep(HOLD_HEADERS) => None,
    };
    // Only a call that outlives the hold needs keep-alives: the quick path arms no timer.
    let every = server_keepalive;
    tokio::spawn(async move {
        // The first keep-alive is one period from now. (Not `interval()` plus an awaited first
        // tick: that tick waits for the timer wheel's next 1 ms turn.)
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                tail = &mut run => {
                    match tail {
                        // The client may hang up right after the result: not an error.
                        Some(Tail::Answer(frames)) => { let _ = stream_tx.send(frames).await; }
                        Some(Tail::Done(frame)) => { let _ = stream_tx.try_send(frame); }
                        None => {}
                    }
                    return;
                }
                _ = ticks.tick() => {
                    let _ = stream_tx.try_send(sse::comment("keep-alive"));
                }
            }
        }
    });
    sse::response_after(first, rx)
}

/// The `params` of a `tools/call`, read without parsing the arguments into a JSON tree.
struct CallParams {
    name: String,
    arguments: RawArguments,
    /// The caller's `_meta.progressToken`, if it is a number or a string, kept as it wrote it.
    progress_token: Option<Id>,
}

impl CallParams {
    /// Reads the params; `Err` is the message of an invalid-params error.
    fn read(params: Option<&RawValue>) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            #[serde(borrow, default)]
            name: Option<&'a RawValue>,
            #[serde(borrow, default)]
            arguments: Option<&'a RawValue>,
            #[serde(borrow, default, rename = "_meta")]
            meta: Option<&'a RawValue>,
        }
        #[derive(serde::Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, rename = "progressToken", default)]
            progress_token: Option<&'a RawValue>,
        }
        const NEEDS_NAME: &str = "tools/call needs params.name (a string)";
        let text = params.map_or("null", RawValue::get);
        if !text.trim_start().starts_with('{') {
            return Err(NEEDS_NAME.to_owned());
        }
        let fields: Fields<'_> =
            serde_json::from_str(text).map_err(|e| format!("invalid params: {e}"))?;
        let name = fields
            .name
            .and_then(|raw| json_string(raw).ok())
            .ok_or(NEEDS_NAME)?;
        let arguments = match fields.arguments {
            None => RawArguments::empty(),
            Some(raw) => RawArguments::new(raw).map_err(|e| match e {
                ArgumentError::NotAnObject { kind } => {
                    format!("tools/call arguments must be an object, not {kind}")
                }
                other => format!("invalid params: {other}"),
            })?,
        };
        let progress_token = fields
            .meta
            .and_then(|raw| serde_json::from_str::<Meta<'_>>(raw.get()).ok())
            .and_then(|meta| meta.progress_token)
            .and_then(Id::from_json);
        Ok(CallParams {
            name,
            arguments,
            progress_token,
        })
    }
}

/// The last frames of a call's stream, which [`Call::run`] returns rather than sends: a quick
/// call's are written with the headers, without a trip through the channel.
enum Tail {
    /// The JSON-RPC response (after a `list_changed` note, if one is due), then `done`.
    Answer(Bytes),
    /// Only `done`: the call was abandoned, and is sent only if there is room.
    Done(Bytes),
}

impl Tail {
    fn into_frames(self) -> Bytes {
        match self {
            Self::Answer(frames) | Self::Done(frames) => frames,
        }
    }
}

/// A tool call's line in the run log.
#[derive(serde::Serialize)]
struct ToolCallRecord<'a> {
    session: &'a str,
    tool: &'a str,
    server: &'a str,
    outcome: &'a str,
    duration_ms: u64,
    error: Option<String>,
}

/// The token a call's progress is keyed to.
#[derive(Clone)]
enum ProgressToken {
    /// The caller's `_meta.progressToken`.
    Given(Id),
    /// One Revka drew for a caller that sent none: `"revka-<n>"`, spelled out only if the
    /// call reports progress.
    Minted(u64),
}

impl ProgressToken {
    fn to_id(&self) -> Id {
        match self {
            Self::Given(token) => token.clone(),
            Self::Minted(n) => Id::from(format!("revka-{n}")),
        }
    }
}

/// A `notifications/progress` for the caller, written with its token exactly as given (not
/// through a `Value`, whose numbers are doubles).
#[derive(serde::Serialize)]
struct ProgressNote<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: ProgressParams<'a>,
}

#[derive(serde::Serialize)]
struct ProgressParams<'a> {
    #[serde(rename = "progressToken")]
    progress_token: &'a Id,
    progress: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

struct Call {
    server: McpServer,
    session: Arc<Session>,
    /// The request's id, echoed byte for byte in the response.
    id: Id,
    name: String,
    token: ProgressToken,
    tx: mpsc::Sender<Bytes>,
}

/// How a call ended.
enum Outcome {
    /// The tool answered (a raw MCP result, possibly `isError: true`).
    Result(Box<RawValue>),
    /// The call was cancelled or its client left: nothing more is sent.
    Abandoned(&'static str),
}

impl Call {
    /// Runs the call to its end: progress goes out on the stream as it comes, the last frames
    /// are returned (`None` when the client is gone).
    async fn run(
        self,
        resolved: Resolved,
        arguments: RawArguments,
        guard: CallGuard,
    ) -> Option<Tail> {
        let started = std::time::Instant::now();
        let spec = match &resolved {
            Resolved::External(route) => Some(route.server.spec()),
            Resolved::Operator(_) | Resolved::Builtin(_) => None,
        };
        let server_label = match (&resolved, &spec) {
            (_, Some(spec)) => spec.name.as_str(),
            (Resolved::Operator(_), None) => revka_actors::session::OPERATOR_SERVER,
            _ => "builtin",
        };
        let session = self.session.clone();
        // Whatever the server asked the client about this call stops waiting when it ends.
        let ended = CancellationToken::new();
        let _end_relay = ended.clone().drop_guard();
        // Only a server can ask the client anything: a built-in tool's call makes no relay.
        let relay = match &resolved {
            Resolved::Builtin(_) => None,
            Resolved::External(_) | Resolved::Operator(_) => Some(Arc::new(SessionRelay::new(
                session.clone(),
                self.tx.clone(),
                ended,
                spec.as_ref().map(|s| s.roots.clone()).unwrap_or_default(),
            ))
                as Arc<dyn CallRelay>),
        };
        // Boxed so that dropping it below really cancels a call still running.
        let mut work = Box::pin(self.execute(resolved, arguments, relay));
        let outcome = tokio::select! {
            result = &mut work => Outcome::Result(result),
            () = guard.cancelled().cancelled() => Outcome::Abandoned("cancelled"),
            () = self.tx.closed() => Outcome::Abandoned("client disconnected"),
            () = self.server.inner.shutdown.cancelled() => {
                Outcome::Result(tool_error_result("Revka's MCP server is shutting down"))
            }
        };
        drop(work); // a call still running is cancelled here (upstream gets notifications/cancelled)
        drop(guard);
        let elapsed = started.elapsed();
        let kind = match &outcome {
            Outcome::Result(r) if raw_result_is_error(r) => CallOutcome::Error,
            Outcome::Result(_) => CallOutcome::Ok,
            Outcome::Abandoned(_) => CallOutcome::Cancelled,
        };
        if let Some(log) = crate::runlog::get() {
            let (outcome, error) = match (&outcome, kind) {
                (Outcome::Result(r), CallOutcome::Error) => {
                    ("error", Some(r.get().chars().take(300).collect::<String>()))
                }
                (Outcome::Result(_), _) => ("ok", None),
                (Outcome::Abandoned(why), _) => (*why, None),
            };
            log.record_with(
                "tool_call",
                &ToolCallRecord {
                    session: session.id(),
                    tool: &self.name,
                    server: server_label,
                    outcome,
                    duration_ms: elapsed.as_millis() as u64,
                    error,
                },
            );
        }
        self.server
            .inner
            .telemetry
            .record_call(server_label, &self.name, kind, elapsed);
        match outcome {
            Outcome::Result(result) => {
                let version = self.server.inner.registry.hub().tools().version;
                let answer = sse::final_frames(&self.id, &result);
                // One buffer, one write.
                Some(Tail::Answer(if session.take_list_changed(version) {
                    let note =
                        json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" });
                    sse::concat(&[sse::event(None, &note.to_string()), answer])
                } else {
                    answer
                }))
            }
            Outcome::Abandoned(why) => {
                tracing::debug!(session = %session.id(), tool = %self.name, why, "call abandoned");
                (why != "client disconnected").then(|| Tail::Done(sse::event(Some("done"), "{}")))
            }
        }
    }

    /// Runs the tool to its result ([`ToolRegistry::execute`]), reporting progress on this
    /// call's stream. Failures become error results.
    async fn execute(
        &self,
        resolved: Resolved,
        arguments: RawArguments,
        relay: Option<Arc<dyn CallRelay>>,
    ) -> Box<RawValue> {
        let ctx = ToolContext {
            session: self.session.clone(),
            registry: self.server.inner.registry.clone(),
            progress: self.progress_sink(),
            relay,
        };
        ToolRegistry::execute(resolved, ctx, arguments).await
    }

    /// Progress goes to this call's stream (keyed to the caller's token) and to the session's
    /// event stream. Neither ever blocks the tool: a full stream drops the update.
    fn progress_sink(&self) -> Arc<dyn Fn(ProgressUpdate) + Send + Sync> {
        let tx = self.tx.clone();
        let token = self.token.clone();
        let session = self.session.clone();
        let tool = self.name.clone();
        Arc::new(move |p: ProgressUpdate| {
            let token = token.to_id();
            let note = ProgressNote {
                jsonrpc: "2.0",
                method: "notifications/progress",
                params: ProgressParams {
                    progress_token: &token,
                    progress: &p.progress,
                    total: p.total.as_ref(),
                    message: p.message.as_deref(),
                },
            };
            // Cannot fail: an id and `Value`s always serialise.
            let note = serde_json::to_string(&note).unwrap_or_default();
            let _ = tx.try_send(sse::event(None, &note));
            session.publish(SessionEvent::Progress(ProgressEvent {
                token,
                progress: p.progress,
                total: p.total,
                message: p.message,
                tool: Some(tool.clone()),
                timestamp: rfc3339(SystemTime::now()),
            }));
        })
    }
}
