//! The in-memory queue: live operations in queue order and the dead letters.
//!
//! Every transition is a method here, used both by the actor (after journaling the matching
//! record) and by the journal replay ([`Queue::apply`]), so a replay rebuilds exactly the state
//! the records describe. The queue knows nothing of tasks' outcomes or time policy: the actor
//! decides when to retry and when to dead-letter.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::journal::Record;
use super::{OpState, OpStatus, Operation, preview, rfc3339_ms};

/// A live operation.
#[derive(Debug)]
struct Entry {
    op: Operation,
    /// When its next attempt is due (meaningful while pending).
    due: Instant,
    /// Whether an attempt is running.
    in_flight: bool,
    /// The running attempt's task (absent for an attempt found in flight by a replay).
    task: Option<AbortHandle>,
}

/// An operation in queue order, for status reports (`due` resolved at read time).
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) state: OpState,
    pub(super) attempts: u32,
    pub(super) enqueued_at: u64,
    pub(super) due: Option<Instant>,
    pub(super) last_error: Option<String>,
    pub(super) preview: String,
}

impl Listed {
    fn of(op: &Operation, state: OpState, due: Option<Instant>) -> Self {
        Self {
            id: op.id.clone(),
            kind: op.kind.clone(),
            state,
            attempts: op.attempts,
            enqueued_at: op.enqueued_at,
            due,
            last_error: op.last_error.clone(),
            preview: preview(&op.payload),
        }
    }

    /// The report form at `now` (`now_ms`: the same moment on the wall clock).
    pub(super) fn at(&self, now: Instant, now_ms: u64) -> OpStatus {
        let wait = self
            .due
            .map(|d| d.saturating_duration_since(now).as_millis() as u64);
        OpStatus {
            id: self.id.clone(),
            kind: self.kind.clone(),
            state: self.state,
            attempts: self.attempts,
            enqueued_at: (self.enqueued_at > 0).then(|| rfc3339_ms(self.enqueued_at)),
            next_attempt_in_ms: wait,
            next_attempt_at: wait.map(|w| rfc3339_ms(now_ms.saturating_add(w))),
            last_error: self.last_error.clone(),
            payload_preview: self.preview.clone(),
        }
    }
}

/// Live operations (pending and in flight) plus the dead letters. Ids are unique across both.
#[derive(Debug)]
pub(super) struct Queue {
    live: BTreeMap<u64, Entry>,
    index: HashMap<String, u64>,
    dead: VecDeque<Operation>,
    dead_capacity: usize,
    next_seq: u64,
    in_flight: usize,
}

impl Queue {
    /// An empty queue keeping at most `dead_capacity` dead letters.
    pub(super) fn new(dead_capacity: usize) -> Self {
        Self {
            live: BTreeMap::new(),
            index: HashMap::new(),
            dead: VecDeque::new(),
            dead_capacity: dead_capacity.max(1),
            next_seq: 0,
            in_flight: 0,
        }
    }

    /// Live operations.
    pub(super) fn live(&self) -> usize {
        self.live.len()
    }

    /// Attempts running.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Operations waiting.
    pub(super) fn pending(&self) -> usize {
        self.live.len() - self.in_flight
    }

    /// Dead letters kept.
    pub(super) fn dead_letters(&self) -> &VecDeque<Operation> {
        &self.dead
    }

    /// The state of a live operation.
    pub(super) fn live_state(&self, id: &str) -> Option<OpState> {
        let e = self.live.get(self.index.get(id)?)?;
        Some(if e.in_flight {
            OpState::InFlight
        } else {
            OpState::Pending
        })
    }

    /// Whether `id` is a dead letter.
    pub(super) fn is_dead(&self, id: &str) -> bool {
        self.dead.iter().any(|op| op.id == id)
    }

    /// The ids of the live operations and of the dead letters.
    pub(super) fn ids(&self) -> (HashSet<String>, HashSet<String>) {
        let live = self.index.keys().cloned().collect();
        let dead = self.dead.iter().map(|op| op.id.clone()).collect();
        (live, dead)
    }

    /// Up to `limit` dead letters, oldest first.
    pub(super) fn list_dead(&self, limit: usize) -> Vec<Listed> {
        self.dead
            .iter()
            .take(limit)
            .map(|op| Listed::of(op, OpState::Dead, None))
            .collect()
    }

    /// The running attempt number of an in-flight operation.
    pub(super) fn running_attempt(&self, id: &str) -> Option<u32> {
        let e = self.live.get(self.index.get(id)?)?;
        e.in_flight.then_some(e.op.attempts)
    }

    /// Queues `op` due at `due` (replacing a dead letter with its id); returns the number of
    /// pending operations ahead of it. A live duplicate is left alone (`None`).
    pub(super) fn insert(&mut self, op: Operation, due: Instant) -> Option<usize> {
        if self.index.contains_key(&op.id) {
            return None;
        }
        self.dead.retain(|d| d.id != op.id);
        let ahead = self.pending();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(op.id.clone(), seq);
        let entry = Entry {
            op,
            due,
            in_flight: false,
            task: None,
        };
        self.live.insert(seq, entry);
        Some(ahead)
    }

    fn entry_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.live.get_mut(self.index.get(id)?)
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let e = self.live.remove(&self.index.remove(id)?)?;
        if e.in_flight {
            self.in_flight -= 1;
        }
        Some(e)
    }

    /// Marks a pending operation in flight and counts the attempt; returns the operation.
    pub(super) fn start(&mut self, id: &str) -> Option<Operation> {
        let e = self.entry_mut(id).filter(|e| !e.in_flight)?;
        e.in_flight = true;
        e.op.attempts = e.op.attempts.saturating_add(1);
        let op = e.op.clone();
        self.in_flight += 1;
        Some(op)
    }

    /// Records the task running an operation's attempt (aborted if the queue is dropped).
    pub(super) fn set_task(&mut self, id: &str, task: AbortHandle) {
        if let Some(e) = self.entry_mut(id) {
            e.task = Some(task);
        }
    }

    /// Removes an operation that succeeded.
    pub(super) fn succeed(&mut self, id: &str) -> bool {
        self.remove(id).is_some()
    }

    /// Puts an operation back to pending after a failed attempt.
    pub(super) fn retry(&mut self, id: &str, err: String, next_ms: u64, due: Instant) -> bool {
        let Some(e) = self.entry_mut(id) else {
            return false;
        };
        let was_in_flight = std::mem::take(&mut e.in_flight);
        e.task = None;
        e.op.last_error = Some(err);
        e.op.next_attempt_at = next_ms;
        e.due = due;
        if was_in_flight {
            self.in_flight -= 1;
        }
        true
    }

    /// Moves a live operation to the dead letters with `err`, discarding the oldest dead letter
    /// beyond capacity (returned).
    pub(super) fn bury(&mut self, id: &str, err: String) -> Option<Option<Operation>> {
        let mut op = self.remove(id)?.op;
        op.last_error = Some(err);
        self.dead.push_back(op);
        let evicted = (self.dead.len() > self.dead_capacity)
            .then(|| self.dead.pop_front())
            .flatten();
        Some(evicted)
    }

    /// Moves a dead letter back to pending, attempts reset, due at `due`.
    pub(super) fn replay(&mut self, id: &str, now_ms: u64, due: Instant) -> bool {
        let Some(pos) = self.dead.iter().position(|d| d.id == id) else {
            return false;
        };
        let Some(mut op) = self.dead.remove(pos) else {
            return false;
        };
        op.attempts = 0;
        op.last_error = None;
        op.next_attempt_at = now_ms;
        self.insert(op, due).is_some()
    }

    /// Discards a dead letter.
    pub(super) fn drop_dead(&mut self, id: &str) -> bool {
        let before = self.dead.len();
        self.dead.retain(|d| d.id != id);
        self.dead.len() != before
    }

    /// The oldest pending operation.
    pub(super) fn oldest_pending(&self) -> Option<String> {
        self.live
            .values()
            .find(|e| !e.in_flight)
            .map(|e| e.op.id.clone())
    }

    /// Up to `limit` pending operations due at `now`, oldest first.
    pub(super) fn due(&self, now: Instant, limit: usize) -> Vec<String> {
        self.live
            .values()
            .filter(|e| !e.in_flight && e.due <= now)
            .take(limit)
            .map(|e| e.op.id.clone())
            .collect()
    }

    /// When the earliest pending operation is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.live
            .values()
            .filter(|e| !e.in_flight)
            .map(|e| e.due)
            .min()
    }

    /// Operations found in flight (after a replay), oldest first.
    pub(super) fn in_flight_ids(&self) -> Vec<(String, u32)> {
        self.live
            .values()
            .filter(|e| e.in_flight)
            .map(|e| (e.op.id.clone(), e.op.attempts))
            .collect()
    }

    /// Up to `limit` live operations in queue order.
    pub(super) fn list(&self, limit: usize) -> Vec<Listed> {
        let list = self.live.values().take(limit).map(|e| {
            let state = if e.in_flight {
                OpState::InFlight
            } else {
                OpState::Pending
            };
            Listed::of(&e.op, state, (!e.in_flight).then_some(e.due))
        });
        list.collect()
    }

    /// Aborts every running attempt (the queue's owner is going away).
    pub(super) fn abort_all(&mut self) {
        for e in self.live.values_mut() {
            if let Some(task) = e.task.take() {
                task.abort();
            }
        }
    }

    /// Records that replay to this queue's state (see `journal.rs`).
    pub(super) fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.live.len() + self.in_flight + 2 * self.dead.len());
        for e in self.live.values() {
            let mut op = e.op.clone();
            if e.in_flight {
                op.attempts = op.attempts.saturating_sub(1);
            }
            out.push(Record::Enqueued { op });
        }
        for e in self.live.values().filter(|e| e.in_flight) {
            let id = e.op.id.clone();
            out.push(Record::Started { id });
        }
        for op in &self.dead {
            let err = op.last_error.clone().unwrap_or_default();
            out.push(Record::Enqueued { op: op.clone() });
            out.push(Record::Dead {
                id: op.id.clone(),
                err,
            });
        }
        out
    }

    /// Applies one replayed record; `now` pairs the monotonic and wall clocks so due times in
    /// Unix ms become instants (never further out than `max_delay`). Returns false for a record
    /// that does not fit the state (unknown id), which is skipped.
    pub(super) fn apply(
        &mut self,
        record: Record,
        now: (Instant, u64),
        max_delay: Duration,
    ) -> bool {
        let due_at = |ms: u64| {
            let wait = Duration::from_millis(ms.saturating_sub(now.1)).min(max_delay);
            now.0 + wait
        };
        match record {
            Record::Enqueued { op } => {
                let due = due_at(op.next_attempt_at);
                self.insert(op, due).is_some()
            }
            Record::Started { id } => self.start(&id).is_some(),
            Record::Succeeded { id } => self.succeed(&id),
            Record::Failed { id, err, next_ms } => self.retry(&id, err, next_ms, due_at(next_ms)),
            Record::Dead { id, err } => self.bury(&id, err).is_some(),
            Record::Replayed { id } => self.replay(&id, now.1, now.0),
            Record::Dropped { id } => self.drop_dead(&id),
        }
    }
}
