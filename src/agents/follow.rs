//! The follower of the session manager's global event stream (`GET /events/stream`, SSE on
//! its Unix socket): every agent event and chat message it writes is republished on the
//! daemon's [`Feed`] as a `source: "sidecar"` item.
//!
//! Part of the daemon's agent layer (`src/agents.rs`); a task the daemon starts with the tree
//! and aborts when it stops. It runs whenever the session manager is enabled, whether or not
//! anyone watches `/ws/agents/events`: the budget ledger needs every `usage` item, and the
//! cost is one idle connection on a local socket. It talks to the socket directly, not
//! through the breaker: a stream that stays open is no request to count, and its failures
//! are the process supervisor's to see.
//!
//! Resuming: the stream's ids are one counter of the sidecar process. Before each connection
//! the follower asks `GET /health` for the process's pid: the same process is resumed with
//! `Last-Event-ID` (what it still has in its replay ring; a `lag` item says what it no longer
//! has), a new process (a restart) from its start (`since=0`), so the events of agents created
//! right after a restart, queued operations among them, are not lost. Losing and regaining
//! the stream is published as `{"source":"revka","kind":"sidecar_status","status":"down"|"up",
//! "reason"?}`; reconnection backs off from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].

use std::time::Duration;

use http_body_util::BodyExt;
use revka_mcp::sse::{SseEvent, SseParser};
use serde_json::{Value, json};

use super::feed::Feed;
use crate::sidecars::SidecarServices;

/// First pause after a lost stream.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest pause between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Deadline of the stream's head and of the `/health` read.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest event relayed; a larger one is skipped.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Follows the stream until the task is aborted.
pub async fn run(sidecar: SidecarServices, feed: Feed) {
    if !sidecar.enabled {
        return;
    }
    let mut state = Follow::default();
    let mut backoff = BACKOFF_MIN;
    loop {
        // A stream that delivered something earns a fresh start; one that ended empty (a
        // sidecar shutting its streams while /health still answers) backs off like a failure,
        // never a tight loop.
        let pause = match state.once(&sidecar, &feed).await {
            Ok(true) => {
                backoff = BACKOFF_MIN;
                BACKOFF_MIN
            }
            Ok(false) => next(&mut backoff),
            Err(reason) => {
                state.down(&feed, reason);
                next(&mut backoff)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// The pause to take now, doubling the next one (up to [`BACKOFF_MAX`]).
fn next(backoff: &mut Duration) -> Duration {
    let now = *backoff;
    *backoff = (now * 2).min(BACKOFF_MAX);
    now
}

/// Where the follower is.
#[derive(Debug, Default)]
struct Follow {
    /// The sidecar process the ids belong to.
    pid: Option<u64>,
    /// The last id received.
    last_id: Option<u64>,
    /// Whether `up` was published last (`None`: nothing published yet).
    up: Option<bool>,
}

impl Follow {
    /// One connection: opens the stream and relays it until it ends. `Ok(delivered)` when a
    /// stream was followed (and ended), with whether it relayed any event; `Err(why)` when
    /// none could be opened.
    async fn once(&mut self, sidecar: &SidecarServices, feed: &Feed) -> Result<bool, String> {
        let health = sidecar
            .client
            .request("GET", "/health", None, OPEN_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let pid = health["pid"].as_u64();
        if pid.is_none() || pid != self.pid {
            // A new process (or the first): its counter started again; replay its ring.
            self.last_id = Some(0);
            self.pid = pid;
        }
        let resume = self.last_id.map(|n| n.to_string());
        let mut stream = sidecar
            .client
            .stream("/events/stream", resume.as_deref(), OPEN_TIMEOUT)
            .await
            .map_err(|e| format!("cannot follow the session manager's events: {e}"))?;
        // A restart between the pid's read and the stream's open would resume the new
        // process from the old one's id, skipping its first events: asked again.
        let now = sidecar
            .client
            .request("GET", "/health", None, OPEN_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if now["pid"].as_u64() != pid {
            self.pid = None;
            return Ok(false);
        }
        let mut delivered = false;
        if self.up != Some(true) {
            self.up = Some(true);
            feed.publish(json!({ "source": "revka", "kind": "sidecar_status", "status": "up" }));
        }
        let mut parser = SseParser::new(MAX_EVENT_BYTES);
        loop {
            match stream.body.frame().await {
                None => {
                    self.down(feed, "the session manager's event stream ended".into());
                    return Ok(delivered);
                }
                Some(Err(e)) => {
                    self.down(
                        feed,
                        format!("the session manager's event stream broke: {e}"),
                    );
                    return Ok(delivered);
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    parser.push(&data);
                    while let Some(event) = parser.next_event() {
                        match event {
                            Ok(event) => {
                                if let Some(id) = event.id.as_deref().and_then(|i| i.parse().ok()) {
                                    self.last_id = Some(id);
                                }
                                if let Some(item) = item_of(&event) {
                                    delivered = true;
                                    feed.publish(item);
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "sidecar event skipped"),
                        }
                    }
                }
            }
        }
    }

    /// Publishes `down` once per loss.
    fn down(&mut self, feed: &Feed, reason: String) {
        if self.up != Some(false) {
            tracing::debug!(reason, "lost the session manager's event stream");
            self.up = Some(false);
            feed.publish(json!({
                "source": "revka", "kind": "sidecar_status", "status": "down", "reason": reason,
            }));
        }
    }
}

/// The feed item of one sidecar SSE event, `None` for event types not relayed.
pub fn item_of(event: &SseEvent) -> Option<Value> {
    let data: Value = serde_json::from_str(&event.data).ok()?;
    match event.event.as_deref() {
        Some("agent") => Some(json!({
            "source": "sidecar", "kind": "agent_event",
            "agent": data.get("agent").cloned().unwrap_or(Value::Null),
            "event": data.get("event").cloned().unwrap_or(Value::Null),
        })),
        Some("chat") => Some(json!({
            "source": "sidecar", "kind": "chat_message",
            "room": data.get("room").cloned().unwrap_or(Value::Null),
            "message": data.get("message").cloned().unwrap_or(Value::Null),
        })),
        Some("lag") => Some(json!({
            "source": "sidecar", "kind": "lag",
            "missed": data.get("missed").cloned().unwrap_or(Value::Null),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_events_become_feed_items() {
        let event = |kind: &str, data: Value| SseEvent {
            event: Some(kind.into()),
            data: data.to_string(),
            id: Some("3".into()),
            retry: None,
        };
        let agent = json!({ "id": "a1", "name": "n", "backend": "echo", "status": "running" });
        let ev = json!({ "seq": 1, "ts": "t", "type": "output", "text": "hi" });
        assert_eq!(
            item_of(&event("agent", json!({ "agent": agent, "event": ev }))).unwrap(),
            json!({ "source": "sidecar", "kind": "agent_event", "agent": agent, "event": ev })
        );
        let room = json!({ "id": "r1", "name": "room" });
        let message = json!({ "id": 1, "from": "x", "text": "hello" });
        assert_eq!(
            item_of(&event("chat", json!({ "room": room, "message": message }))).unwrap(),
            json!({ "source": "sidecar", "kind": "chat_message", "room": room, "message": message })
        );
        assert_eq!(
            item_of(&event("lag", json!({ "missed": 7 }))).unwrap(),
            json!({ "source": "sidecar", "kind": "lag", "missed": 7 })
        );
        assert_eq!(item_of(&event("other", json!({}))), None);
    }
}
