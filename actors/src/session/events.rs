//! A session's event stream: tool progress (seed 001's `ProgressEvent`) and tool-list changes,
//! fanned out to any number of subscribers (`GET /session/{id}/events`, the gateway's
//! WebSocket relay).
//!
//! Publishing never blocks a tool call: a subscriber that falls behind loses the oldest events
//! and is told how many (tokio's broadcast `Lagged`). The channel is created on the first
//! subscription, so sessions nobody watches cost nothing.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::mcp::jsonrpc::Id;

/// Events buffered per session before slow subscribers start losing them.
pub const EVENT_BUFFER: usize = 256;

/// Progress of one tool call, as published on the session stream (seed 001).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressEvent {
    /// The call's progress token: the caller's (a number or a string, exactly as it wrote it),
    /// or one Revka minted.
    pub token: Id,
    /// Progress so far.
    pub progress: Value,
    /// Total, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Value>,
    /// Status line, when sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The tool reporting it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// When (RFC 3339, UTC).
    pub timestamp: String,
}

/// What a session's subscribers receive.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A tool reported progress.
    Progress(ProgressEvent),
    /// The session's tool list changed (`notifications/tools/list_changed`).
    ToolsChanged,
}

/// An event as subscribers receive it: shared, with its JSON made once for all of them (a
/// hundred subscribers of a busy session would otherwise serialize every event a hundred
/// times).
#[derive(Debug)]
pub struct Published {
    event: SessionEvent,
    json: OnceLock<String>,
    /// The event as its subscribers' transport frames it (an SSE event), made once.
    frame: OnceLock<bytes::Bytes>,
}

impl Published {
    /// The event.
    pub fn event(&self) -> &SessionEvent {
        &self.event
    }

    /// The event framed for a subscriber's stream by `make` (given the event and its JSON),
    /// made by the first subscriber that asks and shared by the others.
    pub fn frame(&self, make: impl FnOnce(&SessionEvent, &str) -> bytes::Bytes) -> bytes::Bytes {
        self.frame
            .get_or_init(|| make(&self.event, self.json()))
            .clone()
    }

    /// Its JSON: the [`ProgressEvent`] object, or the `notifications/tools/list_changed`
    /// notification. Serialized by the first subscriber that asks.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| match &self.event {
            SessionEvent::Progress(p) => serde_json::to_string(p).unwrap_or_default(),
            SessionEvent::ToolsChanged => {
                r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.to_owned()
            }
        })
    }
}

/// The lazily created broadcast channel of one session.
#[derive(Debug, Default)]
pub(crate) struct Broadcaster {
    tx: OnceLock<broadcast::Sender<Arc<Published>>>,
    published: AtomicU64,
}

impl Broadcaster {
    pub(crate) fn publish(&self, event: SessionEvent) {
        if let Some(tx) = self.tx.get()
            && tx.receiver_count() > 0
        {
            let _ = tx.send(Arc::new(Published {
                event,
                json: OnceLock::new(),
                frame: OnceLock::new(),
            }));
            self.published.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx
            .get_or_init(|| broadcast::channel(EVENT_BUFFER).0)
            .subscribe()
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.tx.get().map_or(0, broadcast::Sender::receiver_count)
    }
}
