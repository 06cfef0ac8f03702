//! A session's server-to-client messages: the queue behind `GET /mcp` (the standalone SSE
//! stream of Streamable HTTP), with a bounded replay ring.
//!
//! Part of the session's shared state ([`Session`]); the MCP server's `GET /mcp` handler reads
//! it, and anything that has a message for the client (a tool-list change today, server-to-client
//! requests later) writes it with [`Session::send_to_client`].
//!
//! - Every message gets the session's next event id (1, 2, …) and is kept in a ring of at most
//!   [`OUTBOUND_EVENTS`] messages and [`OUTBOUND_BYTES`] bytes; the oldest leave first. Nothing
//!   else buffers messages: a stream ([`ClientStream`]) is a cursor into the ring and takes what
//!   follows its cursor when its connection can write, so a slow client costs no memory of its
//!   own and never holds up a sender.
//! - A stream resumed with `Last-Event-ID` ([`Resume::After`]) continues after that id when the
//!   ring still holds everything that follows it. Otherwise (the id left the ring, was never
//!   issued, or is not an id at all), and whenever a stream falls behind the ring, the stream
//!   reports a [`Gap`] and continues with the oldest message still held.
//! - One stream at a time: opening one ends the previous one (its [`ClientStream::next`] returns
//!   `None`), so each message is sent on one stream, never on two. A stream opened without
//!   `Last-Event-ID` starts after the last message a stream took, so what was queued while no
//!   stream was open goes out on the next one.
//! - `notifications/tools/list_changed` says nothing but that the list changed: one that no
//!   stream has taken yet is not queued a second time, so a session whose client never opens a
//!   stream holds at most one.
//! - An open stream keeps the session in use (never expired nor evicted); its idle time starts
//!   when the stream ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Session;

/// Messages the replay ring holds at most.
pub const OUTBOUND_EVENTS: usize = 256;
/// Bytes of messages the replay ring holds at most (a message larger than this is refused).
pub const OUTBOUND_BYTES: usize = 1024 * 1024;
/// Bytes a stream takes from the ring at once (at least one message): what one write carries.
pub const OUTBOUND_CHUNK: usize = 64 * 1024;

/// The notification of a tool-list change, as the client receives it.
pub const TOOLS_LIST_CHANGED: &str =
    r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;

/// A message [`Session::send_to_client`] refused: larger than the whole replay ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a server-to-client message of {size} bytes is larger than the replay ring ({max} bytes)")]
pub struct MessageTooLarge {
    /// The message's size in bytes.
    pub size: usize,
    /// [`OUTBOUND_BYTES`].
    pub max: usize,
}

/// Where a new stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No `Last-Event-ID`: after the last message a stream took.
    Fresh,
    /// `Last-Event-ID: <n>`: after event `n`.
    After(u64),
    /// A `Last-Event-ID` that is not an event id: treated as a gap, then as [`Resume::Fresh`].
    Unreadable,
}

/// Messages a stream did not get and never will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The stream resumed from an id this session never issued (or not an id at all): what the
    /// client missed, if anything, is unknown.
    UnknownId,
    /// `missed` messages after event `after` left the ring before the stream took them.
    Lost {
        /// The last event the stream had (or resumed from).
        after: u64,
        /// How many messages it lost.
        missed: u64,
    },
}

/// What a stream takes at once: a gap first, if there was one, then messages in id order.
#[derive(Debug, Default)]
pub struct Batch {
    /// Messages lost before these.
    pub gap: Option<Gap>,
    /// `(event id, JSON-RPC message)`, ids increasing.
    pub messages: Vec<(u64, Arc<str>)>,
}

/// The queue and ring of one session.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    ring: Mutex<Ring>,
    /// Woken by every message queued.
    wake: Notify,
    /// The open stream: its number and the token that ends it when a newer one opens.
    current: Mutex<Option<(u64, CancellationToken)>>,
    /// Numbers streams, so that a stream that ends clears `current` only if it is still its own.
    opened: AtomicU64,
    /// Streams open (one, or two for the moment one replaces another).
    open: AtomicUsize,
}

#[derive(Debug, Default)]
struct Ring {
    /// Contiguous ids, oldest first.
    entries: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
    /// The id of the last message queued (0: none yet).
    last: u64,
    /// The highest id a stream took.
    taken: u64,
}

impl Ring {
    /// The id of the oldest message held (`last + 1` when empty).
    fn oldest(&self) -> u64 {
        self.entries.front().map_or(self.last + 1, |(id, _)| *id)
    }

    fn push(&mut self, message: Arc<str>) -> u64 {
        self.last += 1;
        self.bytes += message.len();
        self.entries.push_back((self.last, message));
        while self.entries.len() > OUTBOUND_EVENTS || self.bytes > OUTBOUND_BYTES {
            match self.entries.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
        self.last
    }
}

impl Outbound {
    fn send(&self, message: Arc<str>) -> Result<u64, MessageTooLarge> {
        if message.len() > OUTBOUND_BYTES {
            return Err(MessageTooLarge {
                size: message.len(),
                max: OUTBOUND_BYTES,
            });
        }
        let id = self.lock().push(message);
        self.wake.notify_waiters();
        Ok(id)
    }

    /// Queues `notifications/tools/list_changed`, unless one is queued that no stream took yet.
    pub(crate) fn send_list_changed(&self) {
        {
            let mut ring = self.lock();
            let pending = ring
                .entries
                .back()
                .is_some_and(|(id, m)| *id > ring.taken && &**m == TOOLS_LIST_CHANGED);
            if pending {
                return;
            }
            ring.push(Arc::from(TOOLS_LIST_CHANGED));
        }
        self.wake.notify_waiters();
    }

    /// Streams open.
    pub(crate) fn streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One `GET /mcp` stream of a session: a cursor into its ring. Dropping it ends the stream's
/// claim on the session (it is then no longer in use through it).
#[derive(Debug)]
pub struct ClientStream {
    session: Arc<Session>,
    /// The last id taken (or resumed from).
    cursor: u64,
    /// Set at opening, reported with the first batch.
    gap: Option<Gap>,
    number: u64,
    replaced: CancellationToken,
}

impl Session {
    /// Queues a JSON-RPC message (request or notification) for the client's `GET /mcp` stream;
    /// returns its event id. Never blocks: the ring drops its oldest messages to make room.
    pub fn send_to_client(&self, message: impl Into<Arc<str>>) -> Result<u64, MessageTooLarge> {
        self.outbound.send(message.into())
    }

    /// Opens the client's stream from `resume`, ending the stream open before, if any.
    pub fn client_stream(self: &Arc<Self>, resume: Resume) -> ClientStream {
        let out = &self.outbound;
        let number = out.opened.fetch_add(1, Ordering::Relaxed);
        let replaced = CancellationToken::new();
        let previous = out
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace((number, replaced.clone()));
        if let Some((_, previous)) = previous {
            previous.cancel();
        }
        out.open.fetch_add(1, Ordering::Relaxed);
        let ring = out.lock();
        let (cursor, gap) = match resume {
            Resume::Fresh => (ring.taken, None),
            Resume::After(n) if n <= ring.last => {
                let oldest = ring.oldest();
                if n + 1 >= oldest {
                    (n, None)
                } else {
                    let missed = oldest - 1 - n;
                    (oldest - 1, Some(Gap::Lost { after: n, missed }))
                }
            }
            Resume::After(_) | Resume::Unreadable => (ring.taken, Some(Gap::UnknownId)),
        };
        drop(ring);
        ClientStream {
            session: self.clone(),
            cursor,
            gap,
            number,
            replaced,
        }
    }

    /// Streams open on `GET /mcp` (0 or 1; 2 for the moment one replaces another).
    pub fn client_streams(&self) -> usize {
        self.outbound.streams()
    }
}

impl ClientStream {
    /// What is waiting: a gap (at opening, or because the ring dropped messages this stream had
    /// not taken) and up to [`OUTBOUND_CHUNK`] bytes of messages (at least one). `None` when
    /// nothing is. Never waits.
    pub fn take(&mut self) -> Option<Batch> {
        let mut ring = self.session.outbound.lock();
        let mut gap = self.gap.take();
        let oldest = ring.oldest();
        if self.cursor + 1 < oldest {
            let missed = oldest - 1 - self.cursor;
            gap = Some(Gap::Lost {
                after: self.cursor,
                missed,
            });
            self.cursor = oldest - 1;
        }
        // Ids are contiguous: the first message after the cursor is at this index.
        let start = usize::try_from(self.cursor + 1 - oldest).unwrap_or(usize::MAX);
        let mut messages = Vec::new();
        let mut bytes = 0;
        for (id, message) in ring.entries.iter().skip(start) {
            if bytes >= OUTBOUND_CHUNK {
                break;
            }
            bytes += message.len();
            messages.push((*id, message.clone()));
            self.cursor = *id;
        }
        ring.taken = ring.taken.max(self.cursor);
        (gap.is_some() || !messages.is_empty()).then_some(Batch { gap, messages })
    }

    /// The next batch, waiting for one; `None` once a newer stream replaced this one or the
    /// session ended. Cancel safe.
    pub async fn next(&mut self) -> Option<Batch> {
        loop {
            if self.replaced.is_cancelled() || self.session.ended().is_cancelled() {
                return None;
            }
            let session = self.session.clone();
            let notified = session.outbound.wake.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so a message queued in between still wakes us.
            notified.as_mut().enable();
            if let Some(batch) = self.take() {
                return Some(batch);
            }
            tokio::select! {
                () = notified => {}
                () = self.replaced.cancelled() => return None,
                () = self.session.ended().cancelled() => return None,
            }
        }
    }

    /// The last event id this stream took (or resumed from).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Cancelled when a newer stream of the session replaces this one.
    pub fn replaced(&self) -> &CancellationToken {
        &self.replaced
    }

    /// The session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        let out = &self.session.outbound;
        let mut current = out.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(n, _)| *n == self.number) {
            *current = None;
        }
        drop(current);
        out.open.fetch_sub(1, Ordering::Relaxed);
        // An open stream keeps the session in use; its idle time starts now.
        self.session.touch();
    }
}
