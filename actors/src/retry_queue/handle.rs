//! [`RetryQueueHandle`]: the cheap, cloneable front of a retry queue.
//!
//! The handle outlives the actor's restarts: the running actor attaches itself when it starts
//! and detaches when it goes, and it publishes its counts and totals here, so `queue_depth`,
//! the status-node details and the metrics never wait on its mailbox.
//!
//! While no actor is attached (after its first start), [`RetryQueueHandle::enqueue`] appends
//! to the *inbox*, `<journal>.inbox`: `enq` lines like the journal's, each synced before the
//! enqueue is acknowledged, in a file created 0600. The next start queues the inbox (after
//! loading the journal, before it handles any request) and removes it. One lock, the inbox's,
//! makes "an actor is attached" and "the inbox is appended to" mutually exclusive: the actor
//! attaches under it, so an operation appended before the attach is in the file it loads, and
//! an enqueue after the attach goes to the actor's mailbox, which it reads only once the inbox
//! is loaded. Each operation is therefore queued exactly once (an inbox line whose id is
//! already live, left by a crash between queuing the inbox and removing it, stands as a
//! duplicate).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorId, ActorRef, RpcReplyPort};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::journal::{Journal, Record};
use super::state::Listed;
use super::{
    EnqueueError, Enqueued, JournalStats, OnFull, OpState, Operation, QueueError, QueueStatus,
    RetryQueueMessage, Selection, check_id, check_size, now_ms,
};

/// How long a request waits for the actor by default (an enqueue includes an `fdatasync`).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters kept across actor restarts (since the daemon started).
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) succeeded: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) rejected: AtomicU64,
}

/// What the actor publishes after every change.
#[derive(Debug, Default, Clone)]
pub(super) struct View {
    pub(super) pending: usize,
    pub(super) in_flight: usize,
    pub(super) dead_letters: usize,
    pub(super) capacity: usize,
    pub(super) dead_letter_capacity: usize,
    pub(super) concurrency: usize,
    /// The first few live operations.
    pub(super) head: Vec<Listed>,
    /// The first few dead letters.
    pub(super) dead_head: Vec<Listed>,
    /// The journal's figures (`None` until it is open).
    pub(super) journal: Option<JournalStats>,
}

/// Where the inbox is and what it admits; recorded by the actor at every start, once it has
/// loaded its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InboxConfig {
    /// The inbox file (`<journal>.inbox`).
    pub(super) path: PathBuf,
    /// The queue's capacity.
    pub(super) capacity: usize,
    /// What the queue does at capacity.
    pub(super) on_full: OnFull,
}

/// The ids the queue held when its actor went: what an enqueue into the inbox is checked
/// against.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// Live operations (pending or in flight).
    pub(super) live: HashSet<String>,
    /// Dead letters.
    pub(super) dead: HashSet<String>,
}

/// The inbox as the handle keeps it. Behind the lock every attach and every append takes.
#[derive(Debug, Default)]
struct Inbox {
    /// `None` until the actor has started once.
    config: Option<InboxConfig>,
    /// The open file and the ids in it, from the first enqueue since the actor went until the
    /// next attach.
    open: Option<(Journal, HashSet<String>)>,
    /// The queue's ids when its actor went.
    known: Known,
}

#[derive(Debug)]
struct Shared {
    actor: RwLock<Option<ActorRef<RetryQueueMessage>>>,
    /// Taken before `actor` whenever both are.
    inbox: Mutex<Inbox>,
    /// Woken on every attach and detach.
    changed: Notify,
    view: Mutex<View>,
    depth: AtomicUsize,
    /// Operations in the inbox, not yet queued by an actor.
    inboxed: AtomicUsize,
    /// Whether the inbox is known (the actor has started once): read without the inbox lock.
    accepting: AtomicBool,
    totals: Totals,
}

/// A retry queue, as the rest of the daemon sees it. Create one, pass a clone to
/// [`retry_queue_spec`](super::retry_queue_spec) (or [`RetryQueueArguments`](super::RetryQueueArguments)),
/// and keep the others. Once its actor has started, the handle takes enqueues even while the
/// actor is down (see [`Self::enqueue`]).
#[derive(Debug, Clone)]
pub struct RetryQueueHandle {
    shared: Arc<Shared>,
    call_timeout: Duration,
}

impl Default for RetryQueueHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryQueueHandle {
    /// A handle with no actor attached yet.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                actor: RwLock::new(None),
                inbox: Mutex::new(Inbox::default()),
                changed: Notify::new(),
                view: Mutex::new(View::default()),
                depth: AtomicUsize::new(0),
                inboxed: AtomicUsize::new(0),
                accepting: AtomicBool::new(false),
                totals: Totals::default(),
            }),
            call_timeout: CALL_TIMEOUT,
        }
    }

    /// The same handle with another request timeout.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The running actor, if any.
    pub fn actor(&self) -> Option<ActorRef<RetryQueueMessage>> {
        self.shared
            .actor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.shared
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Attaches a starting actor: from now on enqueues go to its mailbox, and the inbox file
    /// is the actor's to load.
    pub(super) fn attach(&self, actor: ActorRef<RetryQueueMessage>) {
        let mut inbox = self.inbox();
        inbox.open = None;
        *self
            .shared
            .actor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(actor);
        drop(inbox);
        self.shared.changed.notify_waiters();
    }

    /// The attached actor has queued the inbox: records where the inbox is and what it admits
    /// for the next time the actor is down.
    pub(super) fn inbox_loaded(&self, config: InboxConfig) {
        let mut inbox = self.inbox();
        inbox.config = Some(config);
        inbox.known = Known::default();
        self.shared.inboxed.store(0, Ordering::Relaxed);
        self.shared.accepting.store(true, Ordering::Release);
    }

    /// Detaches actor `id` if it is the attached one; `known` gives its queue's ids (`None` if
    /// it never loaded its journal: the ids from before still hold).
    pub(super) fn detach(&self, id: ActorId, known: impl FnOnce() -> Option<Known>) {
        let mut inbox = self.inbox();
        let mut slot = self
            .shared
            .actor
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|a| a.get_id() == id) {
            *slot = None;
            if let Some(known) = known() {
                inbox.known = known;
            }
            drop((slot, inbox));
            self.shared.changed.notify_waiters();
        }
    }

    pub(super) fn totals(&self) -> &Totals {
        &self.shared.totals
    }

    pub(super) fn publish(&self, view: View) {
        self.shared
            .depth
            .store(view.pending + view.in_flight, Ordering::Relaxed);
        *self
            .shared
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = view;
    }

    /// Live operations (pending plus in flight) as last published, plus those waiting in the
    /// inbox; for metrics gauges.
    pub fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed) + self.shared.inboxed.load(Ordering::Relaxed)
    }

    /// Whether [`Self::enqueue`] can take an operation while no actor is attached: true once
    /// the actor has started (loaded its journal) once.
    pub fn accepts_while_down(&self) -> bool {
        self.shared.accepting.load(Ordering::Acquire)
    }

    /// The status as last published (only the first few operations listed), without a
    /// mailbox round trip: what the status-node details show.
    pub fn published(&self) -> QueueStatus {
        let view = self
            .shared
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let live = view.pending + view.in_flight;
        self.status_of(&view, live)
    }

    /// Builds a status from a view listing `view.head` out of `live` operations (and
    /// `view.dead_head` out of `view.dead_letters`).
    pub(super) fn status_of(&self, view: &View, live: usize) -> QueueStatus {
        let (now, wall) = (Instant::now(), now_ms());
        let t = &self.shared.totals;
        QueueStatus {
            pending: view.pending,
            in_flight: view.in_flight,
            dead_letters: view.dead_letters,
            capacity: view.capacity,
            dead_letter_capacity: view.dead_letter_capacity,
            concurrency: view.concurrency,
            succeeded: t.succeeded.load(Ordering::Relaxed),
            failed: t.failed.load(Ordering::Relaxed),
            dead_lettered: t.dead_lettered.load(Ordering::Relaxed),
            rejected: t.rejected.load(Ordering::Relaxed),
            operations: view.head.iter().map(|l| l.at(now, wall)).collect(),
            operations_omitted: live.saturating_sub(view.head.len()),
            dead_letter_list: view.dead_head.iter().map(|l| l.at(now, wall)).collect(),
            dead_letters_omitted: view.dead_letters.saturating_sub(view.dead_head.len()),
            inbox: self.shared.inboxed.load(Ordering::Relaxed),
            journal: view.journal.clone(),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> RetryQueueMessage,
    ) -> Result<T, String> {
        let actor = self.actor().ok_or("the retry queue is not running")?;
        match actor.call(msg, Some(self.call_timeout)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(CallResult::Timeout) => Err(format!("no answer within {:?}", self.call_timeout)),
            Ok(CallResult::SenderError) => Err("the retry queue stopped".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Queues `op` (see [`Enqueued`] for duplicates). `Ok` means it is on disk.
    ///
    /// While the actor runs, it queues `op`. While it is down (stopped, backing off before a
    /// restart, or gone before answering), `op` is appended to the inbox and synced, and the
    /// next start queues it; this needs one earlier start, which records where the inbox is
    /// (before it, the error is [`EnqueueError::Unavailable`]). The inbox admits what the actor
    /// would, as far as the queue is known from the moment the actor went:
    ///
    /// - an invalid operation is refused the same way ([`EnqueueError::Invalid`]);
    /// - an id that was live then, or is already in the inbox, queues nothing:
    ///   [`Enqueued::Duplicate`], state [`OpState::Pending`] (nothing runs while the actor is
    ///   down); the id of a dead letter is queued and replaces it at the start
    ///   (`replaced_dead_letter`);
    /// - with [`OnFull::Reject`], the live operations then plus the inbox are at most
    ///   `capacity`; beyond, [`EnqueueError::Full`] (counted in `rejected`). With
    ///   [`OnFull::DeadLetterOldest`], the inbox holds up to `capacity` operations and the start
    ///   dead-letters the oldest pending ones to make room, as the actor does;
    /// - `position` counts the live operations then and the inbox ahead of `op`.
    ///
    /// An inbox operation the start finds no room for (the capacity was lowered in between) is
    /// queued beyond capacity rather than lost.
    pub async fn enqueue(&self, op: Operation) -> Result<Enqueued, EnqueueError> {
        let deadline = Instant::now() + self.call_timeout;
        loop {
            let Some(actor) = self.actor() else {
                // The inbox append opens, writes and fsyncs a file: off the async threads. The
                // actor is looked for again under the inbox lock, which its attach also takes,
                // so an append and an attach never overlap.
                let handle = self.clone();
                let op = op.clone();
                let appended = tokio::task::spawn_blocking(move || {
                    let mut inbox = handle.inbox();
                    match handle.actor() {
                        Some(_) => None, // attached meanwhile: it takes `op`
                        None => Some(handle.append_to_inbox(&mut inbox, op)),
                    }
                })
                .await;
                match appended {
                    Ok(Some(result)) => return result,
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(EnqueueError::Journal(format!(
                            "the inbox append did not finish: {e}"
                        )));
                    }
                }
            };
            let wait = deadline.saturating_duration_since(Instant::now());
            let call = actor.call(|r| RetryQueueMessage::Enqueue(op.clone(), r), Some(wait));
            match call.await {
                Ok(CallResult::Success(result)) => return result,
                Ok(CallResult::Timeout) => {
                    return Err(EnqueueError::Unavailable(format!(
                        "no answer within {:?}",
                        self.call_timeout
                    )));
                }
                // The actor went before it handled `op`: once it has detached, the inbox (or
                // its successor) takes it.
                Ok(CallResult::SenderError) | Err(_) => {
                    if !self.wait_detached(actor.get_id(), deadline).await {
                        return Err(EnqueueError::Unavailable(
                            "the retry queue stopped and did not detach".to_owned(),
                        ));
                    }
                }
            }
        }
    }

    /// Waits until actor `gone` is no longer attached; false if it still is at `deadline`.
    async fn wait_detached(&self, gone: ActorId, deadline: Instant) -> bool {
        loop {
            let changed = self.shared.changed.notified();
            if self.actor().is_none_or(|a| a.get_id() != gone) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    /// Appends `op` to the inbox (the actor is down; the caller holds the inbox lock).
    fn append_to_inbox(
        &self,
        inbox: &mut Inbox,
        mut op: Operation,
    ) -> Result<Enqueued, EnqueueError> {
        let Some(config) = inbox.config.clone() else {
            return Err(EnqueueError::Unavailable(
                "the retry queue has not started yet".to_owned(),
            ));
        };
        check_id(&op)?;
        let Inbox { open, known, .. } = inbox;
        let (file, ids) = match open {
            Some(open) => open,
            None => {
                let mut ids = HashSet::new();
                let (file, _) = Journal::open(&config.path, "retry queue journal", |r| {
                    if let Record::Enqueued { op } = r {
                        ids.insert(op.id);
                    }
                })
                .map_err(|e| {
                    EnqueueError::Journal(format!(
                        "cannot open the inbox {}: {e}",
                        config.path.display()
                    ))
                })?;
                self.shared.inboxed.store(ids.len(), Ordering::Relaxed);
                open.insert((file, ids))
            }
        };
        if known.live.contains(&op.id) || ids.contains(&op.id) {
            return Ok(Enqueued::Duplicate {
                state: OpState::Pending,
            });
        }
        check_size(&op)?;
        let live = self.shared.depth.load(Ordering::Relaxed);
        let full = match config.on_full {
            OnFull::Reject => live + ids.len() >= config.capacity,
            OnFull::DeadLetterOldest => ids.len() >= config.capacity,
        };
        if full {
            self.shared.totals.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(EnqueueError::Full {
                capacity: config.capacity,
            });
        }
        if op.enqueued_at == 0 {
            op.enqueued_at = now_ms();
        }
        let id = op.id.clone();
        file.append_durable(&[Record::Enqueued { op }])
            .map_err(|e| {
                EnqueueError::Journal(format!(
                    "cannot append to the inbox {}: {e}",
                    config.path.display()
                ))
            })?;
        let position = live + ids.len();
        let replaced_dead_letter = known.dead.contains(&id);
        ids.insert(id);
        self.shared.inboxed.store(ids.len(), Ordering::Relaxed);
        tracing::debug!(path = %config.path.display(), position, "retry queue down: operation appended to its inbox");
        Ok(Enqueued::Queued {
            position,
            replaced_dead_letter,
        })
    }

    /// The full status (up to [`STATUS_OPS_LIMIT`](super::STATUS_OPS_LIMIT) operations).
    pub async fn status(&self) -> Result<QueueStatus, QueueError> {
        self.call(RetryQueueMessage::GetStatus)
            .await
            .map_err(QueueError::Unavailable)
    }

    /// The dead letters, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<Operation>, QueueError> {
        self.call(RetryQueueMessage::GetDeadLetters)
            .await
            .map_err(QueueError::Unavailable)
    }

    /// Moves dead letter `id` (or all, oldest first, as many as fit) back to pending with
    /// attempts reset; returns how many moved.
    pub async fn replay(&self, id: Option<&str>) -> Result<usize, QueueError> {
        self.replay_selected(selection(id))
            .await
            .map(|ids| ids.len())
    }

    /// Discards dead letter `id` (or all); returns how many went.
    pub async fn drop_dead_letters(&self, id: Option<&str>) -> Result<usize, QueueError> {
        self.drop_selected(selection(id)).await.map(|ids| ids.len())
    }

    /// Moves the selected dead letters back to pending with attempts reset (see [`Selection`]
    /// for what is all or nothing); returns the ids that moved, in the order they were queued.
    pub async fn replay_selected(&self, which: Selection) -> Result<Vec<String>, QueueError> {
        self.call(|r| RetryQueueMessage::Replay(which, r))
            .await
            .map_err(QueueError::Unavailable)?
    }

    /// Discards the selected dead letters; returns the ids that went.
    pub async fn drop_selected(&self, which: Selection) -> Result<Vec<String>, QueueError> {
        self.call(|r| RetryQueueMessage::DropDeadLetters(which, r))
            .await
            .map_err(QueueError::Unavailable)?
    }
}

fn selection(id: Option<&str>) -> Selection {
    id.map_or(Selection::All, |id| Selection::Ids(vec![id.to_owned()]))
}
