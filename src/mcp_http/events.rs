//! `GET /session/{id}/events`: a session's progress stream (seed 001), Bearer auth only.
//!
//! Each progress event is an unnamed SSE event whose data is a `ProgressEvent`. A change of the
//! session's tool list is an `event: tools_changed` carrying `notifications/tools/list_changed`.
//! A subscriber that falls behind gets `event: lagged` with `{"dropped": n}` and continues with
//! newer events. When the progress broadcaster (`root/progress`) crashes and is restarted, the
//! stream stays open: it gets `event: reset` with `{"missed": n}` (the events published while
//! it was re-registering, which it could not receive) and continues with newer events. The
//! stream ends when the client disconnects, the session ends or the server stops; a keep-alive
//! comment is sent every 15 s. The connection's own task reads the session's broadcast channel:
//! no task per subscriber, and events that are waiting go out together in one write. Opening a
//! stream while the broadcaster is down waits for it up to 5 s, then answers 503.
//!
//! **Pacing.** An event that follows the stream's last write by less than about [`PACE`] waits
//! for the rest of that time and goes out with whatever else arrived meanwhile: a busy session
//! costs each subscriber about one write per [`PACE`], not one per event. An event after a
//! quiet spell goes out at once. The hold is drawn at random between half and one and a half
//! [`PACE`], so a hundred subscribers of one session do not all write in the same instant and
//! hold up the daemon's other connections (docs/benchmarks.md, "Progress fan-out"). A chunk
//! of [`BUSY`] events or more, or one stopped at [`MAX_CHUNK`] with more waiting, is not
//! followed by a hold: events that fast go out as fast as the client reads them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use revka_actors::mcp::hub::CatalogPart;
use revka_actors::progress::{Received, Subscription};
use revka_actors::session::{EVENT_BUFFER, SessionEvent};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::rpc::bearer;
use super::{McpServer, sse};
use crate::http::response::error;

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
    let subscription = match session.subscribe().await {
        Ok(subscription) => subscription,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let subscriber = Subscriber::new(
        subscription,
        server.inner.shutdown.clone(),
        server.inner.keepalive,
    );
    let rest = futures::stream::unfold(subscriber, |mut subscriber| async move {
        let chunk = subscriber.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), subscriber))
    });
    sse::stream_response(&[sse::comment("connected")], rest)
}

/// Waiting events are gathered into one write until it holds at least this many bytes.
pub(super) const MAX_CHUNK: usize = 64 * 1024;

/// The mean time a subscriber holds events that follow its last write (module docs). At 1,000
/// events/s that is about 10 events per write (the broadcast channel holds 256), and a
/// progress display is still updated 100 times a second.
pub(super) const PACE: Duration = Duration::from_millis(10);

/// A chunk of this many events is not followed by a hold: at that rate a hold of up to
/// 1.5 × [`PACE`] could overrun the session's broadcast channel, and the subscriber would
/// lose events it could have read.
const BUSY: usize = EVENT_BUFFER / 4;

/// One subscriber's stream, polled by its connection's own task: an event goes from the
/// session's broadcast channel to the socket with no task in between, and the events waiting
/// when the stream is polled go out in one write. A client that reads too slowly falls behind
/// the broadcast channel and is told how many events it lost; it never holds up the session.
pub(super) struct Subscriber {
    events: Subscription,
    shutdown: CancellationToken,
    keepalive: tokio::time::Interval,
    /// Events are held until then: set by a write of events ([`PACE`]).
    hold_until: Option<Instant>,
}

impl Subscriber {
    /// The stream of a subscription to a session's events; it ends when the session ends or
    /// `shutdown` is cancelled, and sends a keep-alive comment every `keepalive`.
    pub(super) fn new(
        events: Subscription,
        shutdown: CancellationToken,
        keepalive: std::time::Duration,
    ) -> Self {
        Self {
            events,
            shutdown,
            // The first keep-alive is one period from now. (Not `interval()` plus an awaited
            // first tick: that tick waits for the timer wheel's next 1 ms turn.)
            keepalive: tokio::time::interval_at(Instant::now() + keepalive, keepalive),
            hold_until: None,
        }
    }

    /// The next chunk to write, or `None` when the stream ends (the session ended or the
    /// server is stopping). Events published before the end are still sent. Cancel safe.
    pub(super) async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(until) = self.hold_until {
            // The end cuts the hold short; what is waiting then goes out before the stream ends.
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = self.events.session().ended().cancelled() => {}
                () = self.shutdown.cancelled() => {}
            }
            self.hold_until = None;
        }
        let first = tokio::select! {
            biased;
            // `None` once the session ended.
            event = self.events.recv() => frame(event?),
            () = self.shutdown.cancelled() => return None,
            _ = self.keepalive.tick() => return Some(sse::comment("keep-alive")),
        };
        let mut chunk: Option<Vec<u8>> = None;
        let mut events = 1;
        while chunk.as_ref().map_or(first.len(), Vec::len) < MAX_CHUNK {
            let Some(next) = self.events.try_recv().map(frame) else {
                break;
            };
            events += 1;
            chunk
                .get_or_insert_with(|| first.to_vec())
                .extend_from_slice(&next);
        }
        let chunk = chunk.map_or(first, Bytes::from);
        // Hold the next events, unless this chunk shows them coming too fast for a hold: the
        // channel could fill up during it, or more are waiting than one chunk takes.
        if events < BUSY && chunk.len() < MAX_CHUNK {
            // Half to one and a half PACE, at random (module docs).
            let hold = PACE / 2 + PACE.mul_f64(fastrand::f64());
            self.hold_until = Some(Instant::now() + hold);
        }
        Some(chunk)
    }
}

/// The SSE frame of a received event (an event's is made once, shared by all subscribers). An
/// open stream keeps the session in use, and its end touches it (the subscription's drop).
fn frame(received: Received) -> Bytes {
    match received {
        Received::Event(published) => published.frame(|event, json| match event {
            SessionEvent::Progress(_) => sse::event(None, json),
            SessionEvent::ToolsChanged => sse::event(Some("tools_changed"), json),
            SessionEvent::Message(_) => sse::event(Some("message"), json),
        }),
        Received::Lagged(dropped) => {
            sse::event(Some("lagged"), &json!({ "dropped": dropped }).to_string())
        }
        Received::Reset { missed } => {
            sse::event(Some("reset"), &json!({ "missed": missed }).to_string())
        }
    }
}

/// Tells every session when the external tool table changes (a server connected, restarted,
/// or announced `list_changed`), and when what it can list of resources or prompts changes
/// (`notifications/resources/list_changed`, `notifications/prompts/list_changed`, delivered
/// with [`Session::deliver`](revka_actors::session::Session::deliver): on the `GET /mcp`
/// stream, or as event `message` here). Runs until `stop`.
pub(crate) fn announce_tool_changes(
    server: McpServer,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let hub = server.inner.registry.hub();
    let mut changes = hub.subscribe();
    let mut surface = hub.surface_changes();
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
                change = surface.recv() => {
                    let parts: &[CatalogPart] = match change {
                        Ok(part) => &[part],
                        // Some were missed: say both may have changed.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            &[CatalogPart::Resources, CatalogPart::Prompts]
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    for part in parts {
                        let method = match part {
                            CatalogPart::Resources => "notifications/resources/list_changed",
                            CatalogPart::Prompts => "notifications/prompts/list_changed",
                        };
                        let message: Arc<str> =
                            json!({ "jsonrpc": "2.0", "method": method }).to_string().into();
                        for session in server.inner.sessions.all() {
                            session.deliver(message.clone());
                        }
                    }
                }
            }
        }
    }
}
