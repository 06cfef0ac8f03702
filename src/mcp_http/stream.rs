//! `GET /mcp`: a session's server-to-client stream (the standalone SSE stream of Streamable
//! HTTP), for sessions of either path (`Mcp-Session-Id` with the client token, or
//! `X-Revka-Session` with the session's token).
//!
//! Part of the MCP server (`root/mcp_http`); the messages come from the session's outbound
//! queue (`revka_actors::session`'s `outbound`): `notifications/tools/list_changed` when the
//! session's tool list changes, and whatever else the daemon sends with
//! `Session::send_to_client`. The stream is:
//!
//! - first `retry: 1000` (how long a client waits before it reconnects) and a priming event, an
//!   `id:` with empty data: the id to resume from if nothing else arrives;
//! - then each message as `id: <n>` and `data: <JSON-RPC message>`, `n` increasing within the
//!   session;
//! - a keep-alive comment every 15 s.
//!
//! A client that reconnects with `Last-Event-ID: <n>` gets the messages after `n` again, from
//! the session's replay ring (256 messages, 1 MiB). When the ring no longer holds them, when
//! the id is not one of the session's (garbage, or from before a restart), or when the stream
//! falls behind the ring, the stream sends a gap notice before going on: a
//! `notifications/message` at level `warning` from logger `revka`, whose `data` says what was
//! lost (`{message, lastEventId, missed}`), so a client logs it and can list its tools again.
//! It carries the id of the last message before it, so a reconnect after it asks for nothing
//! twice. One stream per session: a new `GET /mcp` ends the previous stream (the newest
//! connection wins, so a client whose old connection died unnoticed is never locked out).
//! The stream ends when the session ends or the server stops; an open stream keeps the session
//! in use.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use revka_actors::session::{Batch, ClientStream, Gap, Resume};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::standard::{self, Caller};
use super::{McpServer, sse};

/// The `retry:` a stream starts with, in milliseconds: how long a client waits before it
/// reconnects after the stream ends.
pub(crate) const RETRY_MS: u64 = 1000;

/// `Last-Event-ID` values are kept (in the gap notice) up to this many characters.
const MAX_SHOWN_ID: usize = 64;

/// `GET /mcp`.
pub(crate) async fn mcp_get(State(server): State<McpServer>, headers: HeaderMap) -> Response {
    let session = match standard::caller(&server, &headers, standard::GET_ANSWERS) {
        Ok(Caller::Session(session)) => session,
        Ok(Caller::New(_)) => return standard::no_session(None, "GET /mcp"),
        Err(refused) => return refused.into_response(),
    };
    let last_event_id = headers
        .get(header::HeaderName::from_static("last-event-id"))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let resume = match last_event_id.as_deref().map(str::trim) {
        None => Resume::Fresh,
        Some(id) if id.len() <= 20 && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            id.parse().map_or(Resume::Unreadable, Resume::After)
        }
        Some(_) => Resume::Unreadable,
    };
    let stream = session.client_stream(resume);
    tracing::debug!(session = %session.id(), ?resume, "GET /mcp stream opened");
    let head = format!("retry: {RETRY_MS}\nid: {}\ndata:\n\n", stream.cursor());
    let outbound = Outbound {
        stream,
        last_event_id: last_event_id.map(|id| id.chars().take(MAX_SHOWN_ID).collect()),
        shutdown: server.inner.shutdown.clone(),
        keepalive: tokio::time::interval_at(
            tokio::time::Instant::now() + server.inner.keepalive,
            server.inner.keepalive,
        ),
    };
    let rest = futures::stream::unfold(outbound, |mut outbound| async move {
        let chunk = outbound.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), outbound))
    });
    sse::stream_response(&[Bytes::from(head)], rest)
}

/// One open `GET /mcp` stream, polled by its connection's task.
struct Outbound {
    stream: ClientStream,
    /// The `Last-Event-ID` the stream was opened with, shown in a gap notice.
    last_event_id: Option<String>,
    shutdown: CancellationToken,
    keepalive: tokio::time::Interval,
}

impl Outbound {
    /// The next chunk to write, or `None` when the stream ends. Cancel safe.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        tokio::select! {
            biased;
            batch = self.stream.next() => batch.map(|batch| self.frames(batch)),
            () = self.shutdown.cancelled() => None,
            _ = self.keepalive.tick() => Some(sse::comment("keep-alive")),
        }
    }

    /// A batch as SSE events: the gap notice, then each message with its id.
    fn frames(&mut self, batch: Batch) -> Bytes {
        let mut out = Vec::new();
        if let Some(gap) = batch.gap {
            // It carries the id of the message before the first one sent after it.
            let before = batch
                .messages
                .first()
                .map_or(self.stream.cursor(), |(id, _)| id.saturating_sub(1));
            out.extend_from_slice(format!("id: {before}\n").as_bytes());
            out.extend_from_slice(&sse::event(None, &self.gap_notice(gap)));
            tracing::info!(session = %self.stream.session().id(), ?gap, "GET /mcp stream resumed past a gap");
        }
        // Only the first gap of a stream can come from its `Last-Event-ID`.
        self.last_event_id = None;
        for (id, message) in &batch.messages {
            out.extend_from_slice(format!("id: {id}\n").as_bytes());
            out.extend_from_slice(&sse::event(None, message));
        }
        Bytes::from(out)
    }

    fn gap_notice(&self, gap: Gap) -> String {
        let (message, missed) = match gap {
            Gap::UnknownId => (
                format!(
                    "Last-Event-ID {:?} is not an event of this session's stream; messages sent \
                     before this stream may have been missed: list the tools again",
                    self.last_event_id.as_deref().unwrap_or_default()
                ),
                None,
            ),
            Gap::Lost { after, missed } => (
                format!(
                    "{missed} server-to-client message(s) after event {after} left the replay \
                     buffer before this stream could send them: list the tools again"
                ),
                Some(missed),
            ),
        };
        json!({
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {
                "level": "warning",
                "logger": "revka",
                "data": {
                    "message": message,
                    "lastEventId": self.last_event_id,
                    "missed": missed,
                },
            },
        })
        .to_string()
    }
}
