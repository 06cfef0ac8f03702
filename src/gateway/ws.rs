//! The WebSocket relay of an MCP session's progress stream.
//!
//! Used by the gateway's `GET /ws/mcp/events` (under `root/gateway`): once the gateway has
//! checked its own bearer and upgraded the request, [`relay`] opens the in-process MCP server's
//! `GET /session/{id}/events` with the session's `mcp_token` and forwards it to the browser, so
//! all browser traffic stays on one auth surface.
//!
//! - **Frames.** Each SSE event becomes one text frame. Progress events (unnamed or `message`)
//!   and `tools_changed` are sent as their data, exactly (multi-line `data:` joined with `\n`);
//!   `lagged` (`{"dropped": n}`) is sent as `{"event":"lagged","dropped":n}`, and `reset`
//!   (`{"missed": n}`, after a restart of the progress broadcaster) as
//!   `{"event":"reset","missed":n}`. Comments
//!   (keep-alives) and unknown event types are not forwarded; a Ping is sent every
//!   [`PING_INTERVAL`] instead, for intermediaries that close idle sockets.
//! - **Errors.** If the upstream cannot be opened (connect error or refusal, no response within
//!   [`CONNECT_TIMEOUT`], a non-2xx status, not `text/event-stream`), the client gets one
//!   `{"error":"daemon-unreachable","detail":"..."}` frame and a close frame: 1008 for an
//!   upstream 401/403, 1011 otherwise. When the upstream stream ends, the client gets
//!   `{"error":"stream-ended","detail":"..."}` and a close 1000 (1011 if the stream broke).
//! - **Read-only.** Client frames other than Close are ignored. A Close (or a vanished client)
//!   ends the relay and drops the upstream request, so the MCP server sees its subscriber leave.
//! - **Subprotocol.** The upgrade selects the fixed [`WS_PROTOCOL`], never the
//!   `bearer.<token>` a browser authenticates with (that would echo the token). A server may
//!   only select a protocol the client offered, and a browser fails a handshake that selects
//!   none of those it offered, so a client offering `bearer.<token>` must offer [`WS_PROTOCOL`]
//!   too: [`check_subprotocols`] refuses the upgrade otherwise (400, saying so).
//! - **Bounded.** SSE events are parsed incrementally ([`SseParser`], which also handles UTF-8
//!   split across chunks) with a limit of [`MAX_EVENT_BYTES`]; a larger event is skipped with a
//!   warning. Each frame is written before the next chunk is read, so a slow client
//!   backpressures the upstream; a frame not written within [`SEND_TIMEOUT`] closes the socket
//!   with 1008 ("client too slow").

pub(crate) mod agents;
#[cfg(test)]
mod tests;

use std::error::Error as _;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use revka_mcp::sse::{SseEvent, SseParser};
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior, timeout};

/// The WebSocket subprotocol `GET /ws/mcp/events` selects.
pub const WS_PROTOCOL: &str = "revka";
/// The largest SSE event (and line) relayed, in bytes; a larger one is skipped.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// How long opening the upstream stream (up to its response headers) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a Ping is sent to the client.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long writing one frame to the client may take before it is dropped as too slow.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the closing handshake (final frames, close frame, the client's reply) may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How much of an upstream error body is read to explain a refusal.
const ERROR_BODY_LIMIT: usize = 4096;
/// How many characters of an upstream error message are reported.
const ERROR_DETAIL_CHARS: usize = 200;

/// The relay's time limits (shortened by the tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) connect: Duration,
    pub(crate) ping: Duration,
    pub(crate) send: Duration,
    pub(crate) close_grace: Duration,
}

impl Timing {
    const DEFAULT: Timing = Timing {
        connect: CONNECT_TIMEOUT,
        ping: PING_INTERVAL,
        send: SEND_TIMEOUT,
        close_grace: CLOSE_GRACE,
    };
}

/// Relays one MCP session's event stream to a WebSocket until either side ends.
///
/// `events_url` is the MCP server's `GET /session/{id}/events` for the session, opened with
/// `Authorization: Bearer <mcp_token>` through the shared `http` client. Returns once the
/// socket is closed; see the [module documentation](self) for the frames sent.
pub async fn relay(
    socket: WebSocket,
    http: reqwest::Client,
    events_url: String,
    mcp_token: String,
) {
    relay_with(socket, http, events_url, mcp_token, Timing::DEFAULT).await;
}

/// [`relay`] with explicit time limits.
pub(crate) async fn relay_with(
    mut socket: WebSocket,
    http: reqwest::Client,
    events_url: String,
    mcp_token: String,
    timing: Timing,
) {
    let url = shown_url(&events_url);
    let response = match open(&http, &events_url, &mcp_token, url, timing.connect).await {
        Ok(response) => response,
        Err(refused) => {
            tracing::warn!(url, detail = %refused.detail, "MCP events relay: upstream unreachable");
            let frame = json!({ "error": "daemon-unreachable", "detail": refused.detail });
            close(
                socket,
                Some(frame),
                refused.close,
                "daemon-unreachable",
                timing,
            )
            .await;
            return;
        }
    };
    tracing::debug!(url, "MCP events relay: connected");
    // `pump` owns the response: whatever the outcome, the upstream request is dropped first.
    match pump(&mut socket, response, timing).await {
        Outcome::ClientClosed => {
            tracing::debug!(url, "MCP events relay: the client closed the socket");
            // Read on so that the automatic close reply is flushed.
            let _ = timeout(timing.close_grace, socket.recv()).await;
        }
        Outcome::ClientGone(why) => {
            tracing::debug!(url, why, "MCP events relay: the client went away");
        }
        Outcome::ClientTooSlow => {
            tracing::warn!(url, timeout = ?timing.send, "MCP events relay: client too slow, closing");
            close(socket, None, close_code::POLICY, "client too slow", timing).await;
        }
        Outcome::UpstreamEnded { detail, broke } => {
            if broke {
                tracing::warn!(url, detail, "MCP events relay: upstream stream failed");
            } else {
                tracing::debug!(url, "MCP events relay: upstream stream ended");
            }
            let frame = json!({ "error": "stream-ended", "detail": detail });
            let code = if broke {
                close_code::ERROR
            } else {
                close_code::NORMAL
            };
            close(socket, Some(frame), code, "stream-ended", timing).await;
        }
    }
}

/// Why [`pump`] stopped.
enum Outcome {
    /// The client sent a Close frame.
    ClientClosed,
    /// The client's connection failed or closed without a close handshake.
    ClientGone(String),
    /// A frame was not written within the send timeout.
    ClientTooSlow,
    /// The upstream body ended (`broke`: with an error).
    UpstreamEnded { detail: String, broke: bool },
}

/// Forwards the upstream events until one side ends.
async fn pump(socket: &mut WebSocket, response: reqwest::Response, timing: Timing) -> Outcome {
    let mut body = response.bytes_stream();
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    let mut ping = tokio::time::interval_at(Instant::now() + timing.ping, timing.ping);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) => return Outcome::ClientClosed,
                Some(Ok(_)) => {} // read-only: text, binary and pongs are ignored
                Some(Err(e)) => return Outcome::ClientGone(e.to_string()),
                None => return Outcome::ClientGone("connection closed".into()),
            },
            _ = ping.tick() => {
                if let Err(outcome) = send(socket, Message::Ping(Bytes::new()), timing.send).await {
                    return outcome;
                }
            }
            chunk = body.next() => match chunk {
                Some(Ok(chunk)) => {
                    parser.push(&chunk);
                    while let Some(event) = parser.next_event() {
                        let text = match event {
                            Ok(event) => match frame_text(event) {
                                Some(text) => text,
                                None => continue,
                            },
                            Err(e) => {
                                tracing::warn!(error = %e, "MCP events relay: event skipped");
                                continue;
                            }
                        };
                        if let Err(outcome) = send(socket, Message::Text(text.into()), timing.send).await {
                            return outcome;
                        }
                    }
                }
                Some(Err(e)) => {
                    let detail = format!("the MCP event stream broke: {}", innermost(&e));
                    return Outcome::UpstreamEnded { detail, broke: true };
                }
                None => {
                    if parser.finish() {
                        tracing::debug!("MCP events relay: an unfinished event was discarded");
                    }
                    let detail = "the MCP event stream ended (session ended or server stopped)";
                    return Outcome::UpstreamEnded { detail: detail.into(), broke: false };
                }
            },
        }
    }
}

/// The text frame for one event, or `None` if it is not forwarded.
fn frame_text(event: SseEvent) -> Option<String> {
    match event.event.as_deref() {
        None | Some("message" | "tools_changed") => Some(event.data),
        Some("lagged") => {
            let dropped = serde_json::from_str::<Value>(&event.data)
                .ok()
                .and_then(|v| v.get("dropped").cloned())
                .unwrap_or(Value::Null);
            Some(json!({ "event": "lagged", "dropped": dropped }).to_string())
        }
        Some("reset") => {
            let missed = serde_json::from_str::<Value>(&event.data)
                .ok()
                .and_then(|v| v.get("missed").cloned())
                .unwrap_or(Value::Null);
            Some(json!({ "event": "reset", "missed": missed }).to_string())
        }
        Some(other) => {
            tracing::debug!(
                event = other,
                "MCP events relay: unknown event type not forwarded"
            );
            None
        }
    }
}

/// Writes one frame, within `limit`.
async fn send(socket: &mut WebSocket, message: Message, limit: Duration) -> Result<(), Outcome> {
    match timeout(limit, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Outcome::ClientGone(e.to_string())),
        Err(_) => Err(Outcome::ClientTooSlow),
    }
}

/// Sends `frame` (if any) and a close frame, then waits for the client's close reply; all
/// within the close grace period.
async fn close(
    mut socket: WebSocket,
    frame: Option<Value>,
    code: u16,
    reason: &str,
    timing: Timing,
) {
    let handshake = async {
        if let Some(frame) = frame {
            socket.send(Message::Text(frame.to_string().into())).await?;
        }
        let close = CloseFrame {
            code,
            reason: reason.into(),
        };
        socket.send(Message::Close(Some(close))).await?;
        while let Some(message) = socket.recv().await {
            if matches!(message?, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), axum::Error>(())
    };
    match timeout(timing.close_grace, handshake).await {
        Ok(Ok(())) => tracing::debug!(code, "MCP events relay: socket closed"),
        Ok(Err(e)) => tracing::debug!(code, error = %e, "MCP events relay: closing failed"),
        Err(_) => tracing::debug!(
            code,
            "MCP events relay: no close reply; dropping the socket"
        ),
    }
}

/// Why the upstream stream could not be opened.
struct Refused {
    detail: String,
    /// The close code for the client.
    close: u16,
}

impl Refused {
    fn error(detail: String) -> Self {
        Refused {
            detail,
            close: close_code::ERROR,
        }
    }
}

/// Opens the upstream stream and checks that it is one.
async fn open(
    http: &reqwest::Client,
    events_url: &str,
    token: &str,
    url: &str,
    limit: Duration,
) -> Result<reqwest::Response, Refused> {
    let request = http
        .get(events_url)
        .bearer_auth(token)
        .header(ACCEPT, "text/event-stream")
        .send();
    let response = match timeout(limit, request).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(Refused::error(describe(&e, url))),
        Err(_) => {
            let detail = format!("no response from {url} within {limit:?}");
            return Err(Refused::error(detail));
        }
    };
    let status = response.status();
    if !status.is_success() {
        let close = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => close_code::POLICY,
            _ => close_code::ERROR,
        };
        let message = match timeout(limit, error_message(response)).await {
            Ok(Some(message)) => message,
            _ => status.canonical_reason().unwrap_or("no reason").to_owned(),
        };
        let detail = format!("HTTP {}: {message}", status.as_u16());
        return Err(Refused { detail, close });
    }
    let content_type = response.headers().get(CONTENT_TYPE);
    let content_type = content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let media = content_type.as_deref().and_then(|v| v.split(';').next());
    if !media.is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream")) {
        let got = content_type.map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
        let detail =
            format!("unexpected content type {got} from {url} (expected text/event-stream)");
        return Err(Refused::error(detail));
    }
    Ok(response)
}

/// A request error in words, naming the URL.
fn describe(e: &reqwest::Error, url: &str) -> String {
    let io_kind = std::iter::successors(e.source(), |&s| s.source())
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        format!("connection refused to {url}")
    } else if e.is_connect() {
        format!("cannot connect to {url}: {}", innermost(e))
    } else if e.is_builder() {
        format!("invalid events URL {url}: {}", innermost(e))
    } else {
        format!("request to {url} failed: {}", innermost(e))
    }
}

/// The most specific message in an error's source chain.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |&s| s.source())
        .last()
        .map_or_else(String::new, ToString::to_string)
}

/// The message of an error response: its JSON `error` (a string, or an object's `message`), or
/// its text; `None` if empty. Reads at most [`ERROR_BODY_LIMIT`] bytes.
async fn error_message(mut response: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    let json = serde_json::from_slice::<Value>(&body).ok();
    let error = json.as_ref().and_then(|v| v.get("error"));
    let from_json = error.and_then(|e| e.as_str().or_else(|| e.get("message")?.as_str()));
    let text = match from_json {
        Some(message) => message.to_owned(),
        None => String::from_utf8_lossy(&body).into_owned(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text: String = text.chars().take(ERROR_DETAIL_CHARS).collect();
    Some(text).filter(|t| !t.is_empty())
}

/// The URL without its query or fragment, for messages and logs.
fn shown_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// `Err(why)` when the `Sec-WebSocket-Protocol` offer of an upgrade cannot be answered: it
/// offers `bearer.<token>` (any case) without `selected`, the route's own subprotocol and the
/// only one the gateway selects (selecting the bearer one would echo the token, and a browser
/// fails a handshake that selects none it offered). [`WS_PROTOCOL`] for `/ws/mcp/events`.
pub fn check_subprotocols(headers: &axum::http::HeaderMap, selected: &str) -> Result<(), String> {
    const BEARER: &str = "bearer.";
    let offered: Vec<&str> = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim))
        .collect();
    let bearer = offered.iter().any(|p| {
        p.get(..BEARER.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(BEARER))
    });
    if bearer && !offered.contains(&selected) {
        return Err(format!(
            "the bearer.<token> subprotocol must be offered together with the \
             {selected:?} subprotocol, which the gateway selects (it never echoes the \
             token): new WebSocket(url, [\"{selected}\", \"bearer.<token>\"])"
        ));
    }
    Ok(())
}
