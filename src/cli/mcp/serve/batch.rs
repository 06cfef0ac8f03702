//! JSON-RPC batches (a top-level array of messages). Part of [`super`].
//!
//! Of the protocol versions Revka speaks, only 2025-03-26 has batches (2025-06-18 removed
//! them, and 2024-11-05 never had them), and the daemon takes one message per POST. So a
//! batch is accepted only once `initialize` agreed on 2025-03-26: its messages are relayed one
//! by one, as if they had come on lines of their own, and the responses to its requests are
//! written back as one array when the last is in (in the order they were ready, which JSON-RPC
//! allows). Notifications, progress and server requests the batch causes still go out on
//! their own as they come. An element that is not a valid message gets its error response in
//! the array; a batch of notifications only gets no answer; an empty batch is -32600. In any
//! other version, or before `initialize`, a batch is answered with one -32600 error.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use revka_mcp::jsonrpc::{ErrorObject, Incoming, parse_message};
use serde_json::value::RawValue;

use super::answer::Reply;
use super::io::Output;
use super::relay::{Relay, error_line};

/// The one protocol version with batches.
const BATCH_VERSION: &str = "2025-03-26";

/// Relays the batch `line` (a JSON array).
pub(super) async fn handle(relay: &mut Relay, line: &[u8]) {
    let version = relay.up.version();
    if version.as_deref() != Some(BATCH_VERSION) {
        let message = match version {
            Some(v) => format!(
                "JSON-RPC batches are not supported in protocol version {v} (only in {BATCH_VERSION})"
            ),
            None => format!(
                "a JSON-RPC batch cannot come before initialize (only protocol version \
                 {BATCH_VERSION} has batches)"
            ),
        };
        let answer = error_line(None, ErrorObject::INVALID_REQUEST, &message);
        relay.out.send(answer).await;
        return;
    }
    let items: Vec<&RawValue> = match serde_json::from_slice(line) {
        Ok(items) => items,
        Err(e) => {
            let answer = error_line(None, ErrorObject::PARSE_ERROR, &e.to_string());
            relay.out.send(answer).await;
            return;
        }
    };
    if items.is_empty() {
        let answer = error_line(None, ErrorObject::INVALID_REQUEST, "empty batch");
        relay.out.send(answer).await;
        return;
    }
    let collector = Collector::new(relay.out.clone());
    for item in items {
        let bytes = item.get().as_bytes();
        match parse_message(bytes) {
            Ok(message @ Incoming::Request(_)) => {
                let reply = Reply::Batch(collector.slot());
                relay
                    .dispatch(Bytes::copy_from_slice(bytes), message, reply)
                    .await;
            }
            Ok(message) => {
                relay
                    .dispatch(Bytes::copy_from_slice(bytes), message, Reply::Direct)
                    .await;
            }
            Err(e) => collector.push(error_line(None, e.code(), &e.to_string())),
        }
    }
    collector.seal();
}

/// Gathers a batch's responses.
#[derive(Debug)]
struct Collector {
    out: Output,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    answers: Vec<Bytes>,
    /// Requests handed a [`Slot`] whose task has not ended.
    open: usize,
    /// Every element was handed out: the array can go once `open` is 0.
    sealed: bool,
    sent: bool,
}

impl Collector {
    fn new(out: Output) -> Arc<Self> {
        Arc::new(Self {
            out,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one request's response.
    fn slot(self: &Arc<Self>) -> Slot {
        self.state().open += 1;
        Slot {
            collector: self.clone(),
            answer: None,
        }
    }

    /// Adds a response made without a request task (an invalid element's error).
    fn push(&self, answer: Bytes) {
        self.state().answers.push(answer);
    }

    /// Every element was handed out.
    fn seal(&self) {
        let mut state = self.state();
        state.sealed = true;
        self.send_if_complete(&mut state);
    }

    /// A request's task ended, with its response or (cancelled) without.
    fn finish(&self, answer: Option<Bytes>) {
        let mut state = self.state();
        state.open -= 1;
        state.answers.extend(answer);
        self.send_if_complete(&mut state);
    }

    fn send_if_complete(&self, state: &mut State) {
        if !state.sealed || state.open > 0 || state.sent {
            return;
        }
        state.sent = true;
        if state.answers.is_empty() {
            return;
        }
        let size = state.answers.iter().map(|a| a.len() + 1).sum::<usize>() + 1;
        let mut array = Vec::with_capacity(size);
        array.push(b'[');
        for (i, answer) in state.answers.drain(..).enumerate() {
            if i > 0 {
                array.push(b',');
            }
            array.extend_from_slice(&answer);
        }
        array.push(b']');
        self.out.send_soon(Bytes::from(array));
    }
}

/// Where one request of a batch puts its response; when it is dropped (its task ended), the
/// collector counts it in.
#[derive(Debug)]
pub(super) struct Slot {
    collector: Arc<Collector>,
    answer: Option<Bytes>,
}

impl Slot {
    /// Keeps the response (the first one: a request has one).
    pub(super) fn fill(&mut self, answer: Bytes) {
        self.answer.get_or_insert(answer);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.collector.finish(self.answer.take());
    }
}
