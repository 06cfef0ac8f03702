//! The supervision event log: a bounded ring of what happened to the actors of one status tree.
//!
//! Every node of a status tree (`root`, `root/mcp_servers/mcp:fs`, ...) shares one [`EventLog`]:
//! [`StatusNode::root`](crate::StatusNode::root) creates it and every child node holds the
//! same one. The supervisor and the status tree write into it directly, without a message hop:
//! a state change of a node ([`StatusNode::set_state`](crate::StatusNode::set_state)) records
//! its event itself, and the supervisor adds the reasons, delays and attempts
//! ([`StatusNode::set_state_with`](crate::StatusNode::set_state_with),
//! [`StatusNode::record_event`](crate::StatusNode::record_event)). The daemon's live reload
//! records `reloaded` on `root`.
//!
//! Each [`Event`] has a sequence number (`seq`, from 1, one more per event, never reused while
//! the daemon runs), a wall-clock time (RFC 3339, milliseconds, UTC), the node's path, its
//! [`EventKind`], and the node's state and restart count *after* the event, so a reader can
//! update its view of the node from the event alone. The ring keeps the last [`CAPACITY`]
//! events; older ones are overwritten, and a reader that asks for them is told so (a gap).
//!
//! Readers page through the ring ([`EventLog::page`], for `GET /api/events`) or subscribe
//! ([`EventLog::subscribe`], for its SSE stream): a subscription first yields the events kept
//! after its cursor, then live ones. The live feed is a broadcast channel created by the first
//! subscription; while nobody subscribes, recording an event does no broadcast work at all
//! (it checks the receiver count first). A subscriber that falls more than
//! [`SUBSCRIBER_BUFFER`] events behind catches up from the ring, and is told of the events the
//! ring had already overwritten ([`Delivery::Gap`]); it never holds up the recorder.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::status::ActorState;

/// How many events the ring keeps of each class: of the fleet (servers, sidecars, supervisors)
/// and of the short-lived nodes (sessions, terminals: temporary children and their subtrees).
/// Each class has its own share, so a churn of sessions never pushes a server's history out;
/// at 200 servers and 1,000 sessions a restart of everything fits, and it costs about 2 MiB
/// when both are full.
pub const CAPACITY: usize = 4_096;

/// Live events buffered per subscriber; one that falls further behind catches up from the ring.
pub const SUBSCRIBER_BUFFER: usize = 256;

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The node appeared (a supervisor added the child: at start, a new server, a session).
    Added,
    /// The actor reached `running`; after a restart with `after_ms`, the time it was down.
    Started,
    /// The actor exited, with `reason` and `abnormal`; `state` says what follows
    /// (`backing_off`, `stopped`, `failed`).
    Exited,
    /// A restart is due in `delay_ms` (`attempt`: consecutive restarts without a stable run).
    RestartScheduled,
    /// A restart was asked for (`POST /api/actors/{path}/restart`, `revka restart`).
    RestartRequested,
    /// The child exceeded its own restart limit and is left `failed`.
    GaveUp,
    /// A supervisor exceeded its restart intensity: it stops its children and fails.
    Escalated,
    /// The actor was stopped (on request, with its group, or at shutdown), with `reason`.
    Stopped,
    /// The node disappeared (a removed server, an ended session), with its subtree.
    Removed,
    /// The daemon's configuration was reloaded (`detail`: what changed, or why not).
    Reloaded,
}

impl EventKind {
    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Started => "started",
            Self::Exited => "exited",
            Self::RestartScheduled => "restart_scheduled",
            Self::RestartRequested => "restart_requested",
            Self::GaveUp => "gave_up",
            Self::Escalated => "escalated",
            Self::Stopped => "stopped",
            Self::Removed => "removed",
            Self::Reloaded => "reloaded",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One supervision event. Absent fields are omitted from JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its sequence number: from 1, one more per event.
    pub seq: u64,
    /// When it was recorded (RFC 3339 UTC with milliseconds).
    pub at: String,
    /// The node's path (`root/mcp_servers/mcp:fs`).
    pub path: String,
    /// What happened.
    pub kind: EventKind,
    /// The node's state after the event.
    pub state: ActorState,
    /// The node's restart count after the event.
    pub restarts: u64,
    /// Why (an exit's reason, a stop's reason, the limit given up at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether an exit was abnormal (a crash, a kill, a failed start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abnormal: Option<bool>,
    /// The delay before a scheduled restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// For `started` after an exit or a stop: how long the actor was down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<u64>,
    /// The backoff attempt of a scheduled restart (consecutive restarts without a stable run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    /// Free text (what a reload changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    /// Whether the event concerns the node at `prefix` or one below it (`root/mcp_servers`
    /// matches `root/mcp_servers/mcp:fs`, not `root/mcp_servers2`).
    pub fn is_under(&self, prefix: &str) -> bool {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || self
                .path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// What a recorder supplies of an event; the log adds the sequence number and the time, the
/// node its path, state and restart count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// The kind; `None` lets a state change derive it (see
    /// [`StatusNode::set_state_with`](crate::StatusNode::set_state_with)).
    pub kind: Option<EventKind>,
    /// [`Event::reason`].
    pub reason: Option<String>,
    /// [`Event::abnormal`].
    pub abnormal: Option<bool>,
    /// [`Event::delay_ms`].
    pub delay_ms: Option<u64>,
    /// [`Event::after_ms`].
    pub after_ms: Option<u64>,
    /// [`Event::attempt`].
    pub attempt: Option<u64>,
    /// [`Event::detail`].
    pub detail: Option<String>,
}

impl Note {
    /// A note of `kind`.
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind: Some(kind),
            ..Self::default()
        }
    }

    /// With a reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// With whether an exit was abnormal.
    pub fn abnormal(mut self, abnormal: bool) -> Self {
        self.abnormal = Some(abnormal);
        self
    }

    /// With a restart delay.
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.delay_ms = Some(millis(delay));
        self
    }

    /// With a backoff attempt.
    pub fn attempt(mut self, attempt: u64) -> Self {
        self.attempt = Some(attempt);
        self
    }

    /// With free text.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Events the ring no longer holds: `missed_from..=missed_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The first sequence number lost.
    pub missed_from: u64,
    /// The last sequence number lost.
    pub missed_to: u64,
}

/// One page of the ring, as [`EventLog::page`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The events after the cursor that passed the filter, oldest first.
    pub events: Vec<Arc<Event>>,
    /// The cursor for the next page: the last event read (or skipped by the filter).
    pub next: u64,
    /// The oldest sequence number still kept (0 while the ring is empty).
    pub oldest: u64,
    /// Events after the cursor that were already overwritten.
    pub gap: Option<Gap>,
}

/// The ring of one status tree, shared by all its nodes.
pub struct EventLog {
    ring: Mutex<Ring>,
    capacity: usize,
    /// The live feed, created by the first subscription.
    live: OnceLock<broadcast::Sender<Arc<Event>>>,
    /// Events handed to the live feed (for the no-subscriber cost test and for metrics).
    broadcasts: AtomicU64,
}

struct Ring {
    /// The fleet's events, oldest first.
    fleet: VecDeque<Arc<Event>>,
    /// The events of short-lived nodes (sessions, terminals), oldest first.
    ephemeral: VecDeque<Arc<Event>>,
    /// The sequence number of the next event.
    next_seq: u64,
    /// The newest sequence number overwritten so far, of either class (0: none).
    evicted: u64,
}

impl Ring {
    /// The sequence number of the oldest event kept, or of the next one while none is kept.
    fn first_kept(&self) -> u64 {
        let front = |q: &VecDeque<Arc<Event>>| q.front().map(|e| e.seq);
        match (front(&self.fleet), front(&self.ephemeral)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => self.next_seq,
        }
    }

    /// The oldest sequence number still kept (0 while none is).
    fn oldest(&self) -> u64 {
        if self.fleet.is_empty() && self.ephemeral.is_empty() {
            0
        } else {
            self.first_kept()
        }
    }

    /// Events kept, of both classes.
    fn len(&self) -> usize {
        self.fleet.len() + self.ephemeral.len()
    }

    /// The newest sequence number recorded (0 before the first event).
    fn newest(&self) -> u64 {
        self.next_seq - 1
    }

    /// A cursor from another run of the daemon (ahead of the newest event) reads from the
    /// start; the rest stay.
    fn cursor(&self, since: u64) -> u64 {
        if since > self.newest() { 0 } else { since }
    }

    /// The events after `since` that the ring no longer holds: some of `since + 1 ..=` the
    /// newest overwritten one (the two classes overwrite at their own pace, so events of that
    /// range may still be kept, and are read as usual).
    fn gap_after(&self, since: u64) -> Option<Gap> {
        (self.evicted > since).then_some(Gap {
            missed_from: since + 1,
            missed_to: self.evicted,
        })
    }

    /// The events kept after `since`, of both classes, in sequence order.
    fn after(&self, since: u64) -> impl Iterator<Item = &Arc<Event>> {
        fn tail(
            q: &VecDeque<Arc<Event>>,
            since: u64,
        ) -> std::collections::vec_deque::Iter<'_, Arc<Event>> {
            let start = q.partition_point(|e| e.seq <= since);
            q.range(start..)
        }
        let mut fleet = tail(&self.fleet, since).peekable();
        let mut ephemeral = tail(&self.ephemeral, since).peekable();
        std::iter::from_fn(move || match (fleet.peek(), ephemeral.peek()) {
            (Some(a), Some(b)) if a.seq < b.seq => fleet.next(),
            (Some(_), Some(_)) | (None, Some(_)) => ephemeral.next(),
            (Some(_), None) => fleet.next(),
            (None, None) => None,
        })
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.lock();
        f.debug_struct("EventLog")
            .field("capacity", &self.capacity)
            .field("kept", &ring.len())
            .field("newest", &ring.newest())
            .finish()
    }
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl EventLog {
    /// An empty log keeping the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ring: Mutex::new(Ring {
                fleet: VecDeque::new(),
                ephemeral: VecDeque::new(),
                next_seq: 1,
                evicted: 0,
            }),
            capacity,
            live: OnceLock::new(),
            broadcasts: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many events the ring keeps at most, of each class.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records an event of `kind` at `path` (of a short-lived node when `ephemeral`: a session,
    /// a terminal, see [`CAPACITY`]); returns its sequence number. Callers that derive it from
    /// a node's state hold that node's lock meanwhile, so a node's events are in the order of
    /// its changes.
    pub fn record(
        &self,
        path: &str,
        ephemeral: bool,
        kind: EventKind,
        state: ActorState,
        restarts: u64,
        note: Note,
    ) -> u64 {
        let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut ring = self.lock();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        let event = Arc::new(Event {
            seq,
            at,
            path: path.to_owned(),
            kind,
            state,
            restarts,
            reason: note.reason,
            abnormal: note.abnormal,
            delay_ms: note.delay_ms,
            after_ms: note.after_ms,
            attempt: note.attempt,
            detail: note.detail,
        });
        let class = if ephemeral {
            &mut ring.ephemeral
        } else {
            &mut ring.fleet
        };
        let overwritten = if class.len() == self.capacity {
            class.pop_front()
        } else {
            None
        };
        class.push_back(event.clone());
        if let Some(old) = overwritten {
            ring.evicted = ring.evicted.max(old.seq);
        }
        // Under the ring's lock, so subscribers receive events in sequence order. Nobody
        // listening: no broadcast work at all.
        if let Some(live) = self.live.get()
            && live.receiver_count() > 0
        {
            self.broadcasts.fetch_add(1, Ordering::Relaxed);
            let _ = live.send(event);
        }
        seq
    }

    /// The newest sequence number recorded (0 before the first event).
    pub fn newest(&self) -> u64 {
        self.lock().newest()
    }

    /// The oldest sequence number still kept (0 while the ring is empty).
    pub fn oldest(&self) -> u64 {
        self.lock().oldest()
    }

    /// Events handed to the live feed so far (none while nobody subscribes).
    pub fn broadcasts(&self) -> u64 {
        self.broadcasts.load(Ordering::Relaxed)
    }

    /// Whether anyone subscribes to the live feed now.
    pub fn has_subscribers(&self) -> bool {
        self.live.get().is_some_and(|l| l.receiver_count() > 0)
    }

    /// Up to `limit` events with `seq > since` that pass `filter`, oldest first. A `since`
    /// ahead of the newest event (a cursor from before a daemon restart) reads from the start.
    pub fn page(&self, since: u64, limit: usize, filter: impl Fn(&Event) -> bool) -> Page {
        let ring = self.lock();
        let since = ring.cursor(since);
        let mut events = Vec::new();
        // The last event read: at the limit, the last one returned.
        let mut next = since;
        for event in ring.after(since) {
            if events.len() == limit {
                break;
            }
            if filter(event) {
                events.push(event.clone());
            }
            next = event.seq;
        }
        Page {
            events,
            next,
            oldest: ring.oldest(),
            gap: ring.gap_after(since),
        }
    }

    /// A subscription that first yields the events kept after `since` (after a gap notice if
    /// some were overwritten), then every new event as it is recorded. A `since` ahead of the
    /// newest event reads from the start, as in [`EventLog::page`].
    pub fn subscribe(self: &Arc<Self>, since: u64) -> Subscription {
        let live = self
            .live
            .get_or_init(|| broadcast::channel(SUBSCRIBER_BUFFER).0);
        // Under the ring's lock: no event is both in the backlog and received, or in neither.
        let ring = self.lock();
        let receiver = live.subscribe();
        let since = ring.cursor(since);
        let mut pending: VecDeque<Delivery> = VecDeque::new();
        if let Some(gap) = ring.gap_after(since) {
            pending.push_back(Delivery::Gap(gap));
        }
        pending.extend(ring.after(since).cloned().map(Delivery::Event));
        let cursor = ring.newest().max(since);
        drop(ring);
        Subscription {
            log: Arc::downgrade(self),
            receiver,
            pending,
            cursor,
        }
    }
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The next event.
    Event(Arc<Event>),
    /// Events lost: the subscriber fell behind by more than the ring holds.
    Gap(Gap),
}

/// A subscriber of an [`EventLog`] (see [`EventLog::subscribe`]). Dropping it unsubscribes.
pub struct Subscription {
    log: Weak<EventLog>,
    receiver: broadcast::Receiver<Arc<Event>>,
    /// The backlog, or a catch-up from the ring, still to deliver.
    pending: VecDeque<Delivery>,
    /// The last sequence number delivered or queued in `pending`.
    cursor: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.cursor)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Subscription {
    /// The next delivery; `None` once the log is gone. Cancel safe.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Some(next);
            }
            let received = self.receiver.recv().await;
            if let Some(delivery) = self.accept(received)? {
                return Some(delivery);
            }
        }
    }

    /// The next delivery if one is ready now.
    pub fn try_next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Some(next);
            }
            let received = match self.receiver.try_recv() {
                Ok(event) => Ok(event),
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    Err(broadcast::error::RecvError::Closed)
                }
            };
            if let Some(delivery) = self.accept(received)? {
                return Some(delivery);
            }
        }
    }

    /// Handles one receive: `Some(Some(_))` to deliver, `Some(None)` to look again (an event
    /// already delivered, or a catch-up queued), `None` when the log is gone.
    fn accept(
        &mut self,
        received: Result<Arc<Event>, broadcast::error::RecvError>,
    ) -> Option<Option<Delivery>> {
        match received {
            Ok(event) if event.seq <= self.cursor => Some(None),
            Ok(event) if event.seq == self.cursor + 1 => {
                self.cursor = event.seq;
                Some(Some(Delivery::Event(event)))
            }
            // Fell behind (or a hole, which cannot happen): catch up from the ring.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                self.catch_up()?;
                Some(None)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Queues what the ring holds after the cursor, after a gap notice for what it lost.
    fn catch_up(&mut self) -> Option<()> {
        let log = self.log.upgrade()?;
        let ring = log.lock();
        if let Some(gap) = ring.gap_after(self.cursor) {
            self.pending.push_back(Delivery::Gap(gap));
        }
        self.pending
            .extend(ring.after(self.cursor).cloned().map(Delivery::Event));
        self.cursor = ring.newest().max(self.cursor);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(log: &EventLog, path: &str) -> u64 {
        log.record(
            path,
            false,
            EventKind::Started,
            ActorState::Running,
            0,
            Note::default(),
        )
    }

    fn seqs(events: &[Arc<Event>]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn sequence_numbers_start_at_one_and_only_grow() {
        let log = EventLog::new(4);
        assert_eq!((log.newest(), log.oldest()), (0, 0));
        let got: Vec<u64> = (0..10).map(|_| record(&log, "root")).collect();
        assert_eq!(got, (1..=10).collect::<Vec<_>>());
        assert_eq!(log.newest(), 10);
    }

    #[test]
    fn the_ring_keeps_the_last_capacity_events() {
        let log = EventLog::new(4);
        for _ in 0..10 {
            record(&log, "root");
        }
        let page = log.page(0, 100, |_| true);
        assert_eq!(seqs(&page.events), [7, 8, 9, 10]);
        assert_eq!(page.oldest, 7);
        assert_eq!(page.next, 10);
        assert_eq!(
            page.gap,
            Some(Gap {
                missed_from: 1,
                missed_to: 6
            })
        );
        assert_eq!(EventLog::default().capacity(), CAPACITY);
    }

    #[test]
    fn since_reads_strictly_after_and_gaps_only_when_events_were_lost() {
        let log = EventLog::new(4);
        for _ in 0..10 {
            record(&log, "root");
        }
        let page = log.page(8, 100, |_| true);
        assert_eq!(seqs(&page.events), [9, 10]);
        assert_eq!(page.gap, None);
        // 6 was the last one read: 7.. are all kept.
        assert_eq!(log.page(6, 100, |_| true).gap, None);
        let page = log.page(5, 100, |_| true);
        assert_eq!(
            page.gap,
            Some(Gap {
                missed_from: 6,
                missed_to: 6
            })
        );
        assert_eq!(seqs(&page.events), [7, 8, 9, 10]);
        // Up to date: nothing, and the cursor stays.
        let page = log.page(10, 100, |_| true);
        assert!(page.events.is_empty());
        assert_eq!((page.next, page.gap), (10, None));
        // A cursor from another run of the daemon reads from the start.
        let page = log.page(500, 100, |_| true);
        assert_eq!(seqs(&page.events), [7, 8, 9, 10]);
        assert!(page.gap.is_some());
    }

    #[test]
    fn a_limit_pages_and_next_continues_after_the_page() {
        let log = EventLog::new(100);
        for _ in 0..10 {
            record(&log, "root");
        }
        let first = log.page(0, 4, |_| true);
        assert_eq!(seqs(&first.events), [1, 2, 3, 4]);
        assert_eq!(first.next, 4);
        let second = log.page(first.next, 4, |_| true);
        assert_eq!(seqs(&second.events), [5, 6, 7, 8]);
        let last = log.page(second.next, 4, |_| true);
        assert_eq!(seqs(&last.events), [9, 10]);
        assert_eq!(last.next, 10);
    }

    #[test]
    fn the_path_filter_takes_a_subtree_and_next_skips_what_it_left_out() {
        let log = EventLog::new(100);
        record(&log, "root/mcp_servers");
        record(&log, "root/mcp_servers/mcp:fs");
        record(&log, "root/mcp_servers2");
        record(&log, "root/sessions/s1");
        let page = log.page(0, 100, |e| e.is_under("root/mcp_servers"));
        assert_eq!(seqs(&page.events), [1, 2]);
        assert_eq!(page.next, 4, "the events filtered out are not read again");
        let page = log.page(0, 1, |e| e.is_under("root/sessions"));
        assert_eq!(seqs(&page.events), [4]);
        assert!(log.page(0, 9, |e| e.is_under("root")).events.len() == 4);
    }

    #[test]
    fn events_serialise_without_absent_fields() {
        let log = EventLog::new(4);
        log.record(
            "root/mcp_servers/mcp:fs",
            false,
            EventKind::Exited,
            ActorState::BackingOff,
            3,
            Note::new(EventKind::Exited).reason("boom").abnormal(true),
        );
        let event = &log.page(0, 1, |_| true).events[0];
        let json = serde_json::to_value(event.as_ref()).unwrap();
        assert_eq!(json["kind"], "exited");
        assert_eq!(json["state"], "backing_off");
        assert_eq!(json["restarts"], 3);
        assert_eq!(json["abnormal"], true);
        assert!(json.get("delay_ms").is_none(), "{json}");
        let at = json["at"].as_str().unwrap();
        assert!(
            at.ends_with('Z') && at.len() == 24,
            "millisecond RFC 3339: {at}"
        );
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(&back, event.as_ref());
    }

    #[test]
    fn nobody_subscribing_costs_no_broadcast() {
        let log = Arc::new(EventLog::new(16));
        for _ in 0..100 {
            record(&log, "root");
        }
        assert_eq!(log.broadcasts(), 0);
        assert!(!log.has_subscribers());
        let subscription = log.subscribe(0);
        record(&log, "root");
        assert_eq!(log.broadcasts(), 1);
        drop(subscription);
        assert!(!log.has_subscribers());
        record(&log, "root");
        assert_eq!(
            log.broadcasts(),
            1,
            "no work after the last subscriber left"
        );
    }

    #[tokio::test]
    async fn a_subscription_yields_the_backlog_then_live_events_once_each() {
        let log = Arc::new(EventLog::new(16));
        for _ in 0..3 {
            record(&log, "root");
        }
        let mut sub = log.subscribe(1);
        for _ in 0..2 {
            record(&log, "root");
        }
        let mut got = Vec::new();
        while let Some(Delivery::Event(e)) = sub.try_next() {
            got.push(e.seq);
        }
        assert_eq!(got, [2, 3, 4, 5]);
        let waiter = tokio::spawn(async move {
            match sub.next().await {
                Some(Delivery::Event(e)) => e.seq,
                other => panic!("{other:?}"),
            }
        });
        tokio::task::yield_now().await;
        record(&log, "root");
        assert_eq!(waiter.await.unwrap(), 6);
    }

    #[tokio::test]
    async fn a_subscriber_that_lags_gets_a_gap_and_continues_from_the_ring() {
        let log = Arc::new(EventLog::new(300));
        let mut sub = log.subscribe(0);
        // More than the subscriber's buffer, less than the ring: caught up without a loss.
        for _ in 0..(SUBSCRIBER_BUFFER + 20) {
            record(&log, "root");
        }
        let mut got = Vec::new();
        while let Some(delivery) = sub.try_next() {
            match delivery {
                Delivery::Event(e) => got.push(e.seq),
                Delivery::Gap(gap) => panic!("nothing was lost yet: {gap:?}"),
            }
        }
        assert_eq!(
            got,
            (1..=(SUBSCRIBER_BUFFER as u64 + 20)).collect::<Vec<_>>()
        );

        // More than the ring: a gap, then what the ring kept, in order.
        let before = log.newest();
        for _ in 0..1000 {
            record(&log, "root");
        }
        let first = sub.next().await.unwrap();
        assert_eq!(
            first,
            Delivery::Gap(Gap {
                missed_from: before + 1,
                missed_to: before + 1000 - 300
            })
        );
        let mut got = Vec::new();
        while let Some(Delivery::Event(e)) = sub.try_next() {
            got.push(e.seq);
        }
        assert_eq!(got.len(), 300);
        assert!(
            got.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, once each"
        );
        assert_eq!(got.last(), Some(&log.newest()));
        record(&log, "root");
        assert!(matches!(sub.try_next(), Some(Delivery::Event(e)) if e.seq == log.newest()));
    }

    #[tokio::test]
    async fn a_subscription_from_an_overwritten_cursor_starts_with_a_gap() {
        let log = Arc::new(EventLog::new(4));
        for _ in 0..10 {
            record(&log, "root");
        }
        let mut sub = log.subscribe(2);
        assert_eq!(
            sub.try_next(),
            Some(Delivery::Gap(Gap {
                missed_from: 3,
                missed_to: 6
            }))
        );
        assert!(matches!(sub.try_next(), Some(Delivery::Event(e)) if e.seq == 7));
    }

    #[test]
    fn a_churn_of_sessions_never_pushes_the_fleets_history_out() {
        let log = EventLog::new(4);
        let session = |log: &EventLog| {
            log.record(
                "root/sessions/s",
                true,
                EventKind::Added,
                ActorState::Stopped,
                0,
                Note::default(),
            )
        };
        let fs = record(&log, "root/mcp_servers/mcp:fs");
        let s1 = session(&log);
        let git = record(&log, "root/mcp_servers/mcp:git");
        let later: Vec<u64> = (0..10).map(|_| session(&log)).collect();
        let page = log.page(0, 100, |_| true);
        // The fleet's two events stay; the sessions keep their last four; in sequence order.
        let mut kept = vec![fs, git];
        kept.extend_from_slice(&later[6..]);
        assert_eq!(seqs(&page.events), kept);
        assert_eq!(page.oldest, fs);
        // What was overwritten (sessions only) is a gap up to the newest one lost.
        assert_eq!(
            page.gap,
            Some(Gap {
                missed_from: 1,
                missed_to: later[5]
            })
        );
        assert!(s1 < later[5]);
        // After the last one lost, no gap; reading resumes in order across both classes.
        let page = log.page(later[5], 100, |_| true);
        assert_eq!(page.gap, None);
        assert_eq!(seqs(&page.events), later[6..].to_vec());
        // A subscriber catching up sees the same.
        let log = Arc::new(log);
        let mut sub = log.subscribe(0);
        assert!(matches!(sub.try_next(), Some(Delivery::Gap(_))));
        let mut got = Vec::new();
        while let Some(Delivery::Event(e)) = sub.try_next() {
            got.push(e.seq);
        }
        assert_eq!(got, kept);
    }
}
