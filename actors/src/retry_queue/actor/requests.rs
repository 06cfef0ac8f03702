//! The requests of [`RetryQueueActor`](super::RetryQueueActor): loading the journal and the
//! inbox, enqueues, and the dead-letter operations (replay, drop). Each change is journaled
//! durably before it is replied to; the inbox's admissions at a start are appended, applied,
//! and synced as one batch before any request is handled or any operation runs.

use std::collections::HashSet;
use std::io;
use std::time::Duration;

use ractor::ActorProcessingErr;
use tokio::time::Instant;

use super::{RELAXED, RetryQueueState};
use crate::retry_queue::journal::{Journal, Record, inbox_path, remove_synced};
use crate::retry_queue::state::Queue;
use crate::retry_queue::{
    EnqueueError, Enqueued, NotDead, OnFull, Operation, QueueError, Selection, check_id,
    check_size, now_ms,
};

/// Where an operation to queue comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// An enqueue request: refused at capacity (unless room is made), replied once synced.
    Request,
    /// The inbox, already acknowledged by the handle: never refused for room, synced with the
    /// rest of the inbox.
    Inbox,
}

impl RetryQueueState {
    /// Replays the journal, requeues (or buries) the attempts found in flight, compacts.
    pub(super) fn load(&mut self) -> Result<(), ActorProcessingErr> {
        let path = self.config.journal.clone();
        let now = (Instant::now(), now_ms());
        let max_delay = self.config.backoff_max;
        let mut misfits = 0u64;
        let queue = &mut self.queue;
        let (mut journal, report) = Journal::open(&path, "retry queue journal", |r| {
            if !queue.apply(r, now, max_delay) {
                misfits += 1;
            }
        })
        .map_err(|e| {
            format!(
                "cannot open the retry queue journal {}: {e}",
                path.display()
            )
        })?;
        let interrupted = self.queue.in_flight_ids();
        for (id, attempt) in &interrupted {
            let err = format!("interrupted: the daemon stopped during attempt {attempt}");
            if *attempt > self.config.max_retries {
                self.bury(id, err);
            } else {
                self.queue.retry(id, err, now.1, now.0);
            }
        }
        journal.compact(self.queue.snapshot()).map_err(|e| {
            format!(
                "cannot compact the retry queue journal {}: {e}",
                path.display()
            )
        })?;
        tracing::info!(
            path = %self.node.path(), journal = %path.display(), records = report.records,
            skipped = report.skipped, torn = report.torn, misfits, interrupted = interrupted.len(),
            pending = self.queue.pending(), dead_letters = self.queue.dead_letters().len(),
            "retry queue loaded"
        );
        self.journal = Some(journal);
        Ok(())
    }

    fn journal(&mut self) -> Result<&mut Journal, String> {
        self.journal
            .as_mut()
            .ok_or_else(|| "the journal is not open".to_owned())
    }

    /// Queues the operations the handle appended to the inbox while no actor was attached,
    /// syncs them, then removes the inbox. Runs after [`Self::load`], before any request. A
    /// crash in between leaves the inbox to the next start, where the operations already
    /// queued are live duplicates and stand: each is queued once.
    pub(super) fn load_inbox(&mut self) -> Result<(), ActorProcessingErr> {
        let path = inbox_path(&self.config.journal);
        let cannot = |what: &str, e: &dyn std::fmt::Display| {
            format!(
                "cannot {what} the retry queue inbox {}: {e}",
                path.display()
            )
        };
        match path.symlink_metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(cannot("read", &e).into()),
            Ok(_) => {}
        }
        let (mut ops, mut misfits) = (Vec::new(), 0u64);
        let (inbox, report) = Journal::open(&path, "retry queue journal", |r| match r {
            Record::Enqueued { op } => ops.push(op),
            _ => misfits += 1,
        })
        .map_err(|e| cannot("read", &e))?;
        drop(inbox);
        let (mut queued, mut duplicates, mut invalid) = (0usize, 0usize, 0usize);
        for op in ops {
            let id = op.id.clone();
            match self.admit(op, Source::Inbox) {
                Ok(Enqueued::Queued { .. }) => queued += 1,
                Ok(Enqueued::Duplicate { .. }) => duplicates += 1,
                Err(EnqueueError::Invalid(why)) => {
                    tracing::warn!(path = %path.display(), %id, "retry queue inbox: skipping an invalid operation: {why}");
                    invalid += 1;
                }
                Err(e) => return Err(cannot("queue the operations of", &e).into()),
            }
        }
        self.journal()
            .and_then(|j| j.sync().map_err(|e| e.to_string()))
            .map_err(|e| cannot("queue the operations of", &e))?;
        remove_synced(&path).map_err(|e| cannot("remove", &e))?;
        tracing::info!(
            path = %self.node.path(), inbox = %path.display(), queued, duplicates, invalid,
            misfits, torn = report.torn, pending = self.queue.pending(),
            "retry queue inbox loaded"
        );
        Ok(())
    }

    pub(super) fn enqueue(&mut self, op: Operation) -> Result<Enqueued, EnqueueError> {
        self.admit(op, Source::Request)
    }

    fn admit(&mut self, mut op: Operation, source: Source) -> Result<Enqueued, EnqueueError> {
        check_id(&op)?;
        if let Some(state) = self.queue.live_state(&op.id) {
            return Ok(Enqueued::Duplicate { state });
        }
        check_size(&op)?;
        let capacity = self.config.capacity;
        let mut records = Vec::with_capacity(2);
        let mut evict = None;
        if self.queue.live() >= capacity {
            let oldest = match self.config.on_full {
                OnFull::Reject => None,
                OnFull::DeadLetterOldest => self.queue.oldest_pending(),
            };
            match oldest {
                Some(oldest) => {
                    let err =
                        format!("dead-lettered to make room: the queue was full ({capacity})");
                    records.push(Record::Dead {
                        id: oldest.clone(),
                        err: err.clone(),
                    });
                    evict = Some((oldest, err));
                }
                // Acknowledged by the handle: queued beyond capacity rather than lost.
                None if source == Source::Inbox => {
                    tracing::warn!(path = %self.node.path(), id = %op.id, capacity, "retry queue over capacity: queuing an operation accepted while the queue was down");
                }
                None => {
                    self.handle.totals().rejected.fetch_add(1, RELAXED);
                    return Err(EnqueueError::Full { capacity });
                }
            }
        }
        let now = now_ms();
        if op.enqueued_at == 0 {
            op.enqueued_at = now;
        }
        op.next_attempt_at = op.next_attempt_at.max(now);
        let wait = Duration::from_millis(op.next_attempt_at - now).min(self.config.backoff_max);
        let replaced_dead_letter = self.queue.is_dead(&op.id);
        records.push(Record::Enqueued { op: op.clone() });
        self.journal()
            .and_then(|j| {
                match source {
                    Source::Request => j.append_durable(&records),
                    Source::Inbox => j.append(&records),
                }
                .map_err(|e| e.to_string())
            })
            .map_err(EnqueueError::Journal)?;
        if let Some((oldest, err)) = evict {
            tracing::warn!(path = %self.node.path(), id = %oldest, "{err}");
            self.bury(&oldest, err);
        }
        let position = self.queue.insert(op, Instant::now() + wait).unwrap_or(0);
        Ok(Enqueued::Queued {
            position,
            replaced_dead_letter,
        })
    }

    pub(super) fn bury(&mut self, id: &str, err: String) {
        if let Some(Some(evicted)) = self.queue.bury(id, err) {
            tracing::warn!(path = %self.node.path(), id = %evicted.id, "dead letters full: discarding the oldest");
        }
        self.handle.totals().dead_lettered.fetch_add(1, RELAXED);
    }

    /// The dead letters `which` names: every one (oldest first), or the given ids without
    /// duplicates, each of which must be a dead letter.
    fn select(&self, which: Selection) -> Result<Vec<String>, QueueError> {
        match which {
            Selection::All => Ok(self
                .queue
                .dead_letters()
                .iter()
                .map(|op| op.id.clone())
                .collect()),
            Selection::Ids(ids) => {
                let mut seen = HashSet::new();
                let ids: Vec<String> = ids
                    .into_iter()
                    .filter(|id| seen.insert(id.clone()))
                    .collect();
                let missing: Vec<NotDead> = ids
                    .iter()
                    .filter(|id| !self.queue.is_dead(id))
                    .map(|id| NotDead {
                        id: id.clone(),
                        live: self.queue.live_state(id),
                    })
                    .collect();
                if missing.is_empty() {
                    Ok(ids)
                } else {
                    Err(QueueError::NotFound(missing))
                }
            }
        }
    }

    /// Journals one `record` per id durably, then applies `apply` to each.
    fn admin(
        &mut self,
        ids: Vec<String>,
        record: fn(String) -> Record,
        apply: impl Fn(&mut Queue, &str),
    ) -> Result<Vec<String>, QueueError> {
        if ids.is_empty() {
            return Ok(ids);
        }
        let records: Vec<Record> = ids.iter().cloned().map(record).collect();
        self.journal()
            .and_then(|j| j.append_durable(&records).map_err(|e| e.to_string()))
            .map_err(QueueError::Journal)?;
        for id in &ids {
            apply(&mut self.queue, id);
        }
        Ok(ids)
    }

    pub(super) fn replay(&mut self, which: Selection) -> Result<Vec<String>, QueueError> {
        let all = which == Selection::All;
        let mut ids = self.select(which)?;
        let capacity = self.config.capacity;
        let room = capacity.saturating_sub(self.queue.live());
        if room == 0 && !ids.is_empty() {
            return Err(QueueError::Full { capacity });
        }
        if ids.len() > room {
            if !all {
                return Err(QueueError::NoRoom {
                    requested: ids.len(),
                    room,
                    capacity,
                });
            }
            ids.truncate(room);
        }
        let (now, now_ms) = (Instant::now(), now_ms());
        self.admin(
            ids,
            |id| Record::Replayed { id },
            |q, id| {
                q.replay(id, now_ms, now);
            },
        )
    }

    pub(super) fn drop_dead(&mut self, which: Selection) -> Result<Vec<String>, QueueError> {
        let ids = self.select(which)?;
        self.admin(
            ids,
            |id| Record::Dropped { id },
            |q, id| {
                q.drop_dead(id);
            },
        )
    }
}
