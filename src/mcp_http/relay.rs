//! A tool call's relay: what an upstream server sends to Revka's client while it serves the
//! call ([`revka_mcp::client::CallRelay`]) goes to the client that made the call, on the
//! call's own SSE stream (the spec's related-request rule).
//!
//! - `sampling/createMessage` and `elicitation/create` are sent to the client as requests with
//!   an id of Revka's own ([`Session::open_client_request`]); the client POSTs its answer to
//!   `/mcp` (matched in [`revka_actors::session::ClientSide::answer`]) and the answer goes back
//!   upstream under the server's id. A client that did not declare the capability in its
//!   `initialize` is never asked: the server gets an error at once. The wait ends with the call:
//!   its answer, its timeout, its cancellation or the client hanging up — a client that never
//!   answers holds nothing past the call.
//! - `roots/list` is answered here, without asking the client: the server's configured roots
//!   (`[mcp] roots`) and the session's working directory.
//! - `notifications/message` goes out on the stream when the session's log level lets it
//!   through (every level when the client never set one); a stream full of unread frames drops
//!   it, counted.
//!
//! One relay per external or operator call, made in `call` and dropped with the call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use revka_actors::session::Session;
use revka_mcp::client::{CallRelay, PeerAnswer};
use revka_mcp::jsonrpc::{ErrorObject, Id};
use revka_mcp::protocol::{LogLevel, Root, to_raw};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sse;

/// The relay of one call (see the module doc).
pub(crate) struct SessionRelay {
    session: Arc<Session>,
    /// The call's SSE stream.
    tx: mpsc::Sender<Bytes>,
    /// Cancelled when the call ends, however it ends.
    ended: CancellationToken,
    /// The called server's configured roots.
    roots: Vec<Root>,
    /// Log messages the stream had no room for.
    dropped: AtomicU64,
}

impl SessionRelay {
    /// The relay of a call of `session` streaming on `tx`, ending with `ended`; `roots` are the
    /// called server's.
    pub(crate) fn new(
        session: Arc<Session>,
        tx: mpsc::Sender<Bytes>,
        ended: CancellationToken,
        roots: Vec<Root>,
    ) -> Self {
        Self {
            session,
            tx,
            ended,
            roots,
            dropped: AtomicU64::new(0),
        }
    }
}

/// A JSON-RPC request to the client, written with Revka's id exactly.
#[derive(Serialize)]
struct ClientRequest<'a> {
    jsonrpc: &'static str,
    id: &'a Id,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
}

/// A server-to-client notification as the client receives it.
#[derive(Serialize)]
pub(crate) struct Note<'a> {
    pub(crate) jsonrpc: &'static str,
    pub(crate) method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) params: Option<&'a RawValue>,
}

impl<'a> Note<'a> {
    /// `method` with `params`, as JSON.
    pub(crate) fn line(method: &'a str, params: Option<&'a RawValue>) -> String {
        serde_json::to_string(&Note {
            jsonrpc: "2.0",
            method,
            params,
        })
        .unwrap_or_default()
    }
}

/// The `roots/list` result of `roots` plus, when given, a working directory.
pub(crate) fn roots_result(roots: &[Root], cwd: Option<&std::path::Path>) -> Box<RawValue> {
    let mut all: Vec<Root> = roots.to_vec();
    if let Some(cwd) = cwd {
        let root = Root::from_path(cwd);
        if !all.iter().any(|r| r.uri == root.uri) {
            all.push(root);
        }
    }
    to_raw(&json!({ "roots": all }))
}

fn ready(answer: Result<Box<RawValue>, ErrorObject>) -> PeerAnswer {
    Box::pin(std::future::ready(answer))
}

impl CallRelay for SessionRelay {
    fn owner(&self) -> &str {
        self.session.id()
    }

    fn request(&self, method: &str, params: Option<Box<RawValue>>) -> PeerAnswer {
        match method {
            "roots/list" => ready(Ok(roots_result(&self.roots, Some(self.session.cwd())))),
            "sampling/createMessage" | "elicitation/create" => self.ask_client(method, params),
            other => ready(Err(ErrorObject::method_not_found(other))),
        }
    }

    fn notification(&self, method: &str, params: Option<&RawValue>) {
        let level = LogLevel::of_message(params);
        if !self.session.client_side().wants(level, true) {
            return;
        }
        let frame = sse::event(None, &Note::line(method, params));
        if self.tx.try_send(frame).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::debug!(session = %self.session.id(), dropped = n, "log messages dropped: the call's stream is full");
            }
        }
    }
}

impl SessionRelay {
    /// Sends `method` to the client and waits for its answer, at most as long as the call.
    fn ask_client(&self, method: &str, params: Option<Box<RawValue>>) -> PeerAnswer {
        let capability = method.split('/').next().unwrap_or(method);
        if !self.session.client_side().capabilities().allows(method) {
            return ready(Err(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                format!(
                    "the client did not declare the `{capability}` capability, so Revka cannot relay {method} to it"
                ),
            )));
        }
        let mut waiting = match self.session.open_client_request() {
            Ok(w) => w,
            Err(e) => {
                return ready(Err(ErrorObject::new(
                    ErrorObject::INTERNAL_ERROR,
                    format!("{method} refused: {e}"),
                )));
            }
        };
        let line = serde_json::to_string(&ClientRequest {
            jsonrpc: "2.0",
            id: &waiting.id,
            method,
            params: params.as_deref(),
        })
        .unwrap_or_default();
        let frame = sse::event(None, &line);
        let (tx, ended) = (self.tx.clone(), self.ended.clone());
        let session = self.session.id().to_owned();
        let method = method.to_owned();
        Box::pin(async move {
            let call_ended = || {
                ErrorObject::new(
                    ErrorObject::INTERNAL_ERROR,
                    format!("the call ended before the client answered {method}"),
                )
            };
            tokio::select! {
                sent = tx.send(frame) => if sent.is_err() {
                    return Err(ErrorObject::new(
                        ErrorObject::INTERNAL_ERROR,
                        format!("the client's stream closed before {method} could be sent"),
                    ));
                },
                () = ended.cancelled() => return Err(call_ended()),
            }
            tracing::debug!(%session, id = ?waiting.id, %method, "relayed to the client");
            tokio::select! {
                answer = &mut waiting.answer => answer.unwrap_or_else(|_| Err(call_ended())),
                () = ended.cancelled() => Err(call_ended()),
            }
        })
    }
}
