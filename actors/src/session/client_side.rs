//! What a session knows of its client as a peer that servers talk to: the capabilities it
//! declared in `initialize` (`sampling`, `elicitation`, `roots`), the log level it asked for
//! (`logging/setLevel`), and the requests Revka relayed to it that wait for its answer.
//!
//! Part of the session's shared state ([`Session::client_side`]). The MCP server's call path
//! relays an upstream server's `sampling/createMessage` or `elicitation/create` to the client
//! under an id of Revka's own ([`ClientSide::open`]); the client's answer, POSTed as a JSON-RPC
//! response, is matched here ([`ClientSide::answer`]) and goes back to the waiting relay. An
//! answer with an id nobody waits for (wrong, repeated, or after the call ended) is ignored and
//! counted. At most [`MAX_CLIENT_REQUESTS`] wait at once per session.
//!
//! [`Session::client_side`]: super::Session::client_side

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use revka_mcp::jsonrpc::{ErrorObject, Id};
use revka_mcp::protocol::LogLevel;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

/// Requests relayed to one client that may wait for its answer at once.
pub const MAX_CLIENT_REQUESTS: usize = 32;

/// The answer a relayed request waits for.
pub type ClientAnswer = Result<Box<RawValue>, ErrorObject>;

/// The capabilities a client declared in `initialize` that servers can use through Revka.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    /// `capabilities.sampling`: it can answer `sampling/createMessage`.
    pub sampling: bool,
    /// `capabilities.elicitation`: it can answer `elicitation/create`.
    pub elicitation: bool,
    /// `capabilities.roots`: it has roots of its own.
    pub roots: bool,
}

impl ClientCapabilities {
    /// Reads the `capabilities` object of an `initialize`'s params.
    pub fn of(capabilities: Option<&Value>) -> Self {
        let has =
            |key: &str| capabilities.is_some_and(|c| c.get(key).is_some_and(Value::is_object));
        Self {
            sampling: has("sampling"),
            elicitation: has("elicitation"),
            roots: has("roots"),
        }
    }

    /// Whether the client declared what `method` (a server-to-client request) needs.
    pub fn allows(&self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" => self.elicitation,
            "roots/list" => self.roots,
            _ => false,
        }
    }
}

/// Why a request could not be relayed to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayRefused {
    /// Too many relayed requests wait for this client already.
    #[error("{0} requests already wait for this session's client")]
    Busy(usize),
}

/// The client side of a session (see the module doc).
#[derive(Debug, Default)]
pub struct ClientSide {
    capabilities: OnceLock<ClientCapabilities>,
    /// `LogLevel::rank() + 1`, or 0 when the client never set a level.
    level: AtomicU8,
    next: AtomicU64,
    waiting: Mutex<HashMap<Box<str>, oneshot::Sender<ClientAnswer>>>,
    /// Answers that matched no waiting request.
    ignored: AtomicU64,
}

/// A request waiting for the client's answer; dropping it stops waiting (a later answer is then
/// ignored).
#[derive(Debug)]
pub struct Waiting {
    side: Arc<super::Session>,
    /// Revka's id of the request, as the client sees it.
    pub id: Id,
    key: Box<str>,
    /// Resolves with the client's answer.
    pub answer: oneshot::Receiver<ClientAnswer>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.side
            .client_side()
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl ClientSide {
    /// Records the capabilities the client declared (the first `initialize` wins).
    pub fn set_capabilities(&self, capabilities: ClientCapabilities) {
        let _ = self.capabilities.set(capabilities);
    }

    /// What the client declared (nothing before its `initialize`).
    pub fn capabilities(&self) -> ClientCapabilities {
        self.capabilities.get().copied().unwrap_or_default()
    }

    /// Sets the log level the client asked for.
    pub fn set_level(&self, level: LogLevel) {
        self.level.store(level.rank() + 1, Ordering::Relaxed);
    }

    /// The log level the client asked for, if it did.
    pub fn level(&self) -> Option<LogLevel> {
        self.level
            .load(Ordering::Relaxed)
            .checked_sub(1)
            .and_then(LogLevel::from_rank)
    }

    /// Whether a log message at `level` is for this client: at or above the level it asked
    /// for; every message when it asked for none and `unasked` says so.
    pub fn wants(&self, level: Option<LogLevel>, unasked: bool) -> bool {
        match (self.level(), level) {
            (None, _) => unasked,
            (Some(min), Some(level)) => level >= min,
            // A message without a valid level is shown to clients that asked for everything.
            (Some(min), None) => min == LogLevel::Debug,
        }
    }

    /// Matches the client's answer to the request waiting for it. Returns whether one was
    /// waiting; an answer nobody waits for is counted and dropped.
    pub fn answer(&self, id: Option<&Id>, answer: ClientAnswer) -> bool {
        let sender = id.and_then(|id| {
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(id.key().as_ref())
        });
        match sender {
            Some(tx) => tx.send(answer).is_ok(),
            None => {
                self.ignored.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Requests waiting for the client's answer.
    pub fn waiting(&self) -> usize {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Answers that matched no waiting request.
    pub fn ignored(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }
}

impl super::Session {
    /// Opens a request to the session's client: an id of Revka's own (`"revka-rq-<n>"`) and the
    /// receiver its answer comes to. Refused past [`MAX_CLIENT_REQUESTS`] waiting.
    pub fn open_client_request(self: &Arc<Self>) -> Result<Waiting, RelayRefused> {
        let side = self.client_side();
        let mut waiting = side.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() >= MAX_CLIENT_REQUESTS {
            return Err(RelayRefused::Busy(waiting.len()));
        }
        let n = side.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = Id::from(format!("revka-rq-{n}"));
        let key: Box<str> = id.key().into();
        let (tx, rx) = oneshot::channel();
        waiting.insert(key.clone(), tx);
        drop(waiting);
        Ok(Waiting {
            side: self.clone(),
            id,
            key,
            answer: rx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_from_initialize() {
        let caps = ClientCapabilities::of(Some(
            &serde_json::json!({ "sampling": {}, "roots": { "listChanged": true } }),
        ));
        assert!(caps.allows("sampling/createMessage"));
        assert!(!caps.allows("elicitation/create"));
        assert!(caps.allows("roots/list"));
        assert!(!caps.allows("something/else"));
        // `true` or `null` is not a declared capability object.
        let odd = ClientCapabilities::of(Some(&serde_json::json!({ "sampling": true })));
        assert!(!odd.sampling);
        assert_eq!(ClientCapabilities::of(None), ClientCapabilities::default());
    }

    #[test]
    fn a_level_filters_messages_and_unasked_clients_get_only_what_is_theirs() {
        let side = ClientSide::default();
        assert_eq!(side.level(), None);
        assert!(side.wants(Some(LogLevel::Debug), true));
        assert!(!side.wants(Some(LogLevel::Emergency), false));
        side.set_level(LogLevel::Warning);
        assert_eq!(side.level(), Some(LogLevel::Warning));
        assert!(!side.wants(Some(LogLevel::Info), true));
        assert!(side.wants(Some(LogLevel::Warning), false));
        assert!(side.wants(Some(LogLevel::Critical), false));
        assert!(
            !side.wants(None, true),
            "no level: only for a client that asked for all"
        );
        side.set_level(LogLevel::Debug);
        assert!(side.wants(None, false));
    }

    #[test]
    fn answers_nobody_waits_for_are_counted_and_dropped() {
        let side = ClientSide::default();
        let id = Id::from("revka-rq-1".to_owned());
        assert!(!side.answer(Some(&id), Ok(RawValue::from_string("{}".into()).unwrap())));
        assert!(!side.answer(None, Ok(RawValue::from_string("{}".into()).unwrap())));
        assert_eq!(side.ignored(), 2);
        assert_eq!(side.waiting(), 0);
    }
}
