//! A session's event stream: tool progress (seed 001's `ProgressEvent`) and tool-list changes,
//! fanned out to any number of subscribers (`GET /session/{id}/events`, the gateway's
//! WebSocket relay).
//!
//! The channels belong to the progress broadcaster, `root/progress` (`crate::progress`), which
//! registers subscribers; this module holds the events and the session's end of it ([`Feed`]).
//! Publishing never blocks a tool call and crosses no mailbox: a send into the session's
//! broadcast channel. A subscriber that falls behind loses the oldest events and is told how
//! many (tokio's broadcast `Lagged`). The channel is created on the first subscription, so
//! sessions nobody watches cost nothing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};

use revka_mcp::jsonrpc::Id;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::progress::Progress;

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
    /// A JSON-RPC message for the session's client from a server (a log message, a resource
    /// update, a list change), as the client receives it ([`crate::session::Session::deliver`]).
    Message(Arc<str>),
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

    /// Its JSON: the [`ProgressEvent`] object, the `notifications/tools/list_changed`
    /// notification, or the message. Serialized by the first subscriber that asks.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| match &self.event {
            SessionEvent::Progress(p) => serde_json::to_string(p).unwrap_or_default(),
            SessionEvent::ToolsChanged => {
                r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.to_owned()
            }
            SessionEvent::Message(message) => message.to_string(),
        })
    }
}

/// A session's broadcast channel, owned by the progress broadcaster (`crate::progress`).
pub(crate) type Channel = broadcast::Sender<Arc<Published>>;

/// A session's end of the progress broadcaster: where its publishers send, and how its
/// subscriptions are counted.
///
/// The channel itself belongs to the broadcaster actor; the session only holds a weak
/// reference to it, so a publisher sends straight into the channel (no mailbox) and a crash of
/// the broadcaster closes the channel for its subscribers, who then subscribe again and are
/// told how many events they missed ([`crate::progress::Received::Reset`]).
#[derive(Debug)]
pub(crate) struct Feed {
    /// The broadcaster the session's subscriptions register with.
    pub(crate) progress: Arc<Progress>,
    /// The session's channel while the broadcaster holds one for it (dead before the first
    /// subscription, and from a crash of the broadcaster until the next subscription). Its lock
    /// orders publishing against subscribing, which makes the counts of missed events exact.
    channel: RwLock<Weak<Channel>>,
    /// Events published while the session had a subscription, delivered or not.
    published: AtomicU64,
    /// Open subscriptions, including one waiting for the broadcaster to come back: the
    /// session is in use meanwhile.
    pub(crate) subscriptions: AtomicUsize,
}

impl Feed {
    pub(crate) fn new(progress: Arc<Progress>) -> Self {
        Self {
            progress,
            channel: RwLock::new(Weak::new()),
            published: AtomicU64::new(0),
            subscriptions: AtomicUsize::new(0),
        }
    }

    /// Sends `event` to the session's channel, if anyone subscribed. Never blocks: a
    /// read lock that only a subscription being registered takes for writing, and a
    /// broadcast send.
    pub(crate) fn publish(&self, event: SessionEvent) {
        let channel = self.channel.read().unwrap_or_else(PoisonError::into_inner);
        // Read under the lock: a subscription counted before its receiver was made is seen.
        if self.subscriptions.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.published.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = channel.upgrade() {
            let _ = tx.send(Arc::new(Published {
                event,
                json: OnceLock::new(),
                frame: OnceLock::new(),
            }));
        }
    }

    /// Points the session at `channel` and subscribes to it; also returns how many events had
    /// been published before the receiver, so that a subscriber can count what it missed.
    /// Called by the broadcaster.
    pub(crate) fn attach(
        &self,
        channel: &Arc<Channel>,
    ) -> (broadcast::Receiver<Arc<Published>>, u64) {
        let mut slot = self.channel.write().unwrap_or_else(PoisonError::into_inner);
        *slot = Arc::downgrade(channel);
        (channel.subscribe(), self.published.load(Ordering::Relaxed))
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }
}
