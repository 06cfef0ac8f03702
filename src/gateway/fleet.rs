//! The session manager as the dashboard's Sidecars view sees it (`root/gateway`): its
//! process, breaker and retry queue in one read, the breaker's reset, and its agents' and
//! chat rooms' events relayed from its Unix socket to the browser's origin.
//!
//! Reads of the sidecar's own state (agents, rooms, events) go through the breaker like every
//! other daemon → sidecar request, with a short deadline: a view must not hang on a wedged
//! sidecar. The agent event stream is passed through as the sidecar writes it (SSE, one
//! connection per viewer, nothing buffered in the daemon beyond hyper's frames); a chat room's
//! messages are turned into one by long polls of the room (`wait`), each held by the sidecar
//! until a message comes or [`ROOM_WAIT_SECS`] pass.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http_body_util::BodyExt;
use revka_actors::breaker::BreakerState;
use revka_actors::sidecar::SidecarError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::server::Gateway;
use crate::http::response::error;
use crate::sidecars::{Field, SidecarCallError};

/// The session manager's node in the tree.
const PROCESS_PATH: &str = "root/sidecars/session_manager";
/// Deadline of the sidecar reads of one view.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline to open an agent's event stream (its head; the stream itself has none).
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one long poll of a room waits for a message.
const ROOM_WAIT_SECS: u64 = 25;
/// Pause after a failed long poll (the sidecar restarting) before the next one.
const ROOM_RETRY: Duration = Duration::from_secs(2);
/// Operations and dead letters listed by `GET /api/sidecars`.
const QUEUE_LIST: usize = 50;

/// `GET /api/sidecars`: the session manager's process (state, restarts, last failure), its
/// breaker, its retry queue (depth, in flight, dead letters with their last error) and, when
/// it runs, its agents and chat rooms (each `{"error": ...}` instead when the read failed).
pub(super) async fn sidecars(State(gw): State<Gateway>) -> Response {
    let services = gw.services();
    let sidecar = &services.sidecar;
    let process = services.status_root.find(PROCESS_PATH).map(|node| {
        json!({
            "path": node.path(),
            "state": node.state(),
            "restarts": node.restarts(),
            "last_failure": node.last_failure(),
        })
    });
    let queue = crate::tools::health::queue_view(sidecar, QUEUE_LIST).await;
    let (agents, rooms) = if sidecar.enabled {
        let (agents, rooms) = tokio::join!(
            list(&gw, "/agents", "agents"),
            list(&gw, "/chat/rooms", "rooms")
        );
        (agents, rooms)
    } else {
        (Value::Null, Value::Null)
    };
    axum::Json(json!({
        "session_manager": {
            "enabled": sidecar.enabled,
            "process": process,
        },
        "breaker": sidecar.breaker.status(),
        "queue": queue,
        "agents": agents,
        "rooms": rooms,
    }))
    .into_response()
}

/// `GET /api/agents`: the agents of both paths — the session manager's (`"path":
/// "sidecar"`, when it answers) and the daemon's CLI fallback's (`"path": "fallback"`) — and
/// `"sidecar": "ok"` or why the session manager's are missing.
pub(super) async fn agents(State(gw): State<Gateway>) -> Response {
    axum::Json(gw.services().agents.list_all().await).into_response()
}

/// The array `field` of the sidecar's answer to `GET path`, or `{"error": ...}`.
async fn list(gw: &Gateway, path: &str, field: &'static str) -> Value {
    match gw
        .services()
        .sidecar
        .request_shaped(
            "GET",
            path,
            None,
            Some(READ_TIMEOUT),
            &[Field::Array(field)],
        )
        .await
    {
        Ok(mut answer) => answer[field].take(),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// `POST /api/sidecars/breaker/reset`: closes the session manager's breaker (as the
/// `reset_circuit_breaker` tool does) and answers its status.
pub(super) async fn reset_breaker(State(gw): State<Gateway>) -> Response {
    let breaker = &gw.services().sidecar.breaker;
    breaker.reset();
    tracing::info!("circuit breaker of the session manager reset from the gateway");
    axum::Json(json!({ "breaker": breaker.status() })).into_response()
}

/// The query of the event reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Since {
    /// Events after this sequence number.
    #[serde(default)]
    since: Option<u64>,
}

/// Whether `id` may be put in a sidecar path as it is (the sidecar's ids are short tokens).
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// `GET /api/sidecars/agents/{id}/events?since=N`: one page of an agent's timeline.
pub(super) async fn agent_events(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> Response {
    read_page(&gw, "agent", &id, "events", q.since).await
}

/// `GET /api/sidecars/rooms/{id}/messages?since=N`: one page of a chat room's messages.
pub(super) async fn room_messages(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> Response {
    read_page(&gw, "room", &id, "messages", q.since).await
}

async fn read_page(gw: &Gateway, what: &str, id: &str, tail: &str, since: Option<u64>) -> Response {
    if !plain_id(id) {
        return error(StatusCode::BAD_REQUEST, format!("invalid {what} id `{id}`"));
    }
    let base = if what == "agent" {
        "/agents"
    } else {
        "/chat/rooms"
    };
    let path = format!("{base}/{id}/{tail}?since={}", since.unwrap_or(0));
    match gw
        .services()
        .sidecar
        .request("GET", &path, None, Some(READ_TIMEOUT))
        .await
    {
        Ok(page) => axum::Json(page).into_response(),
        Err(e) => sidecar_error(what, id, &e),
    }
}

/// The HTTP answer of a failed sidecar read: the sidecar's own 4xx passed on (an unknown
/// agent is a 404), 503 when it is off or unreachable.
fn sidecar_error(what: &str, id: &str, e: &SidecarCallError) -> Response {
    match e {
        SidecarCallError::Sidecar(SidecarError::Status { status, .. })
            if (400..500).contains(status) =>
        {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
            error(code, format!("{what} `{id}`: {e}"))
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The checks of a stream route before it opens: a plain `id` (400 otherwise) and an enabled
/// session manager (503); then where the stream resumes: after `Last-Event-ID` (a number)
/// or else `since`.
fn stream_start(
    gw: &Gateway,
    what: &str,
    id: &str,
    since: Option<u64>,
    headers: &HeaderMap,
) -> Result<Option<u64>, Box<Response>> {
    if !plain_id(id) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid {what} id `{id}`"),
        )));
    }
    if !gw.services().sidecar.enabled {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            SidecarCallError::Disabled.to_string(),
        )));
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    Ok(last.or(since))
}

/// `GET /api/sidecars/agents/{id}/stream`: the agent's live event stream (SSE), relayed from
/// the session manager as it writes it; `Last-Event-ID` (or `?since=`) resumes after an event.
/// 503 while the session manager is off, down or its breaker open; the sidecar's 404 for an
/// unknown agent.
pub(super) async fn agent_stream(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
    headers: HeaderMap,
) -> Response {
    let last = match stream_start(&gw, "agent", &id, q.since, &headers) {
        Ok(last) => last.map(|n| n.to_string()),
        Err(response) => return *response,
    };
    let sidecar = &gw.services().sidecar;
    if sidecar.breaker.state() == BreakerState::Open {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session manager's circuit breaker is open (it failed recently); \
             POST /api/sidecars/breaker/reset to try it now",
        );
    }
    let path = format!("/agents/{id}/stream");
    match sidecar
        .client
        .stream(&path, last.as_deref(), STREAM_OPEN_TIMEOUT)
        .await
    {
        Ok(stream) => {
            // Data frames as they arrive; the stream (and its connection) lives as long as the
            // body, and ends with the sidecar's stream or the viewer.
            let frames = futures::stream::unfold(stream, |mut stream| async move {
                loop {
                    match stream.body.frame().await? {
                        Ok(frame) => match frame.into_data() {
                            Ok(data) => return Some((Ok::<_, hyper::Error>(data), stream)),
                            Err(_) => continue, // trailers
                        },
                        Err(e) => return Some((Err(e), stream)),
                    }
                }
            });
            crate::http::response::event_stream(Body::from_stream(frames))
        }
        Err(e) => sidecar_error("agent", &id, &SidecarCallError::Sidecar(e)),
    }
}

/// `GET /api/sidecars/rooms/{id}/stream`: a chat room's messages, live (SSE): those after
/// `Last-Event-ID` (or `?since=`; default: from now on), then each as it is posted. Every
/// message is an `event: message` with `id:` its room sequence number; while the session manager
/// is down or restarting an `event: unavailable` says why and the stream waits for it; a room
/// that is deleted (or unknown) ends it with `event: gone`. 503 at once while the session
/// manager is not enabled.
pub(super) async fn room_stream(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
    headers: HeaderMap,
) -> Response {
    let since = match stream_start(&gw, "room", &id, q.since, &headers) {
        Ok(since) => since,
        Err(response) => return *response,
    };
    let room = RoomFeed {
        gw,
        id,
        since,
        ended: false,
    };
    let frames = futures::stream::unfold(room, |mut room| async move {
        let chunk = room.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), room))
    });
    let head = futures::stream::iter([Ok(bytes::Bytes::from_static(b"retry: 2000\n\n"))]);
    crate::http::response::event_stream(Body::from_stream(head.chain(frames)))
}

/// The state of one room relay.
struct RoomFeed {
    gw: Gateway,
    id: String,
    /// The last message relayed (`None`: only messages posted from now on).
    since: Option<u64>,
    ended: bool,
}

impl RoomFeed {
    /// The next SSE chunk: the messages of one long poll, a keep-alive comment after a poll
    /// that timed out, a notice; `None` once the room is gone.
    async fn next_chunk(&mut self) -> Option<bytes::Bytes> {
        if self.ended {
            return None;
        }
        let sidecar = &self.gw.services().sidecar;
        let mut path = format!("/chat/rooms/{}/wait?timeout={ROOM_WAIT_SECS}", self.id);
        if let Some(since) = self.since {
            path.push_str(&format!("&since={since}"));
        }
        let deadline = Duration::from_secs(ROOM_WAIT_SECS + 5);
        match sidecar.request("GET", &path, None, Some(deadline)).await {
            Ok(answer) => {
                let mut out = String::new();
                for message in answer["messages"].as_array().into_iter().flatten() {
                    let seq = message["id"].as_u64();
                    if let Some(seq) = seq {
                        out.push_str(&format!("id: {seq}\n"));
                    }
                    out.push_str(&format!("event: message\ndata: {message}\n\n"));
                }
                self.since = answer["next_since"].as_u64().or(self.since);
                if out.is_empty() {
                    out.push_str(": waiting\n\n");
                }
                Some(out.into())
            }
            Err(SidecarCallError::Sidecar(SidecarError::Status { status: 404, .. })) => {
                self.ended = true;
                let data = json!({ "room_id": self.id, "detail": "no such room (deleted?)" });
                Some(format!("event: gone\ndata: {data}\n\n").into())
            }
            Err(e) => {
                tokio::time::sleep(ROOM_RETRY).await;
                let data = json!({ "room_id": self.id, "detail": e.to_string() });
                Some(format!("event: unavailable\ndata: {data}\n\n").into())
            }
        }
    }
}
