//! `GET /session/{id}/events`: a session's progress stream (seed 001), Bearer auth only.
//!
//! Each progress event is an unnamed SSE event whose data is a `ProgressEvent`. A change of the
//! session's tool list is an `event: tools_changed` carrying `notifications/tools/list_changed`.
//! A subscriber that falls behind gets `event: lagged` with `{"dropped": n}` and continues with
//! newer events. The stream ends when the client disconnects, the session ends or the server
//! stops; a keep-alive comment is sent every 15 s.

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use revka_actors::session::SessionEvent;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::guard::error;
use super::rpc::bearer;
use super::{McpServer, sse};

/// `GET /session/{id}/events`.
pub(crate) async fn session_events(
    State(server): State<McpServer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let sessions = &server.inner.sessions;
    let Some(session) = bearer(&headers).and_then(|t| sessions.authenticate(&id, t)) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized: unknown session or wrong token",
        );
    };
    let mut events = session.subscribe();
    let (tx, rx) = mpsc::channel(sse::BUFFER);
    let keepalive_every = server.inner.keepalive;
    let shutdown = server.inner.shutdown.clone();
    tokio::spawn(async move {
        if tx.send(sse::comment("connected")).await.is_err() {
            return;
        }
        // The first keep-alive is one period from now. (Not `interval()` plus an awaited first
        // tick: that tick waits for the timer wheel's next 1 ms turn, a millisecond on every call.)
        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive_every,
            keepalive_every,
        );
        loop {
            let frame = tokio::select! {
                () = session.ended().cancelled() => break,
                () = shutdown.cancelled() => break,
                () = tx.closed() => break,
                _ = keepalive.tick() => sse::comment("keep-alive"),
                event = events.recv() => match event {
                    Ok(published) => match published.event() {
                        SessionEvent::Progress(_) => sse::event(None, published.json()),
                        SessionEvent::ToolsChanged => sse::event(Some("tools_changed"), published.json()),
                    },
                    Err(broadcast::error::RecvError::Lagged(dropped)) => {
                        sse::event(Some("lagged"), &json!({ "dropped": dropped }).to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if tx.send(frame).await.is_err() {
                break;
            }
        }
    });
    sse::response(rx)
}

/// Tells every session when the external tool table changes (a server connected, restarted,
/// or announced `list_changed`). Runs until `stop`.
pub(crate) fn announce_tool_changes(
    server: McpServer,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let mut changes = server.inner.registry.hub().subscribe();
    async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                change = changes.recv() => match change {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        for session in server.inner.sessions.all() {
                            session.publish(SessionEvent::ToolsChanged);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}
