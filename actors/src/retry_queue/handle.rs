//! [`RetryQueueHandle`]: the cheap, cloneable front of a retry queue.
//!
//! The handle outlives the actor's restarts: the running actor attaches itself when it has
//! loaded its journal and detaches when it goes, and it publishes its counts and totals here,
//! so `queue_depth`, the status-node details and the metrics never wait on its mailbox.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorId, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use super::state::Listed;
use super::{
    EnqueueError, Enqueued, Operation, QueueError, QueueStatus, RetryQueueMsg, Selection, now_ms,
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
}

#[derive(Debug)]
struct Shared {
    actor: RwLock<Option<ActorRef<RetryQueueMsg>>>,
    view: Mutex<View>,
    depth: AtomicUsize,
    totals: Totals,
}

/// A retry queue, as the rest of the daemon sees it. Create one, pass a clone to
/// [`retry_queue_spec`](super::retry_queue_spec) (or [`RetryQueueArgs`](super::RetryQueueArgs)),
/// and keep the others.
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
                view: Mutex::new(View::default()),
                depth: AtomicUsize::new(0),
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
    pub fn actor(&self) -> Option<ActorRef<RetryQueueMsg>> {
        self.shared
            .actor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn attach(&self, actor: ActorRef<RetryQueueMsg>) {
        *self
            .shared
            .actor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(actor);
    }

    pub(super) fn detach(&self, id: ActorId) {
        let mut slot = self
            .shared
            .actor
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|a| a.get_id() == id) {
            *slot = None;
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

    /// Live operations (pending plus in flight) as last published; for metrics gauges.
    pub fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
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
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> RetryQueueMsg,
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
    pub async fn enqueue(&self, op: Operation) -> Result<Enqueued, EnqueueError> {
        self.call(|r| RetryQueueMsg::Enqueue(op, r))
            .await
            .map_err(EnqueueError::Unavailable)?
    }

    /// The full status (up to [`STATUS_OPS_LIMIT`](super::STATUS_OPS_LIMIT) operations).
    pub async fn status(&self) -> Result<QueueStatus, QueueError> {
        self.call(RetryQueueMsg::Status)
            .await
            .map_err(QueueError::Unavailable)
    }

    /// The dead letters, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<Operation>, QueueError> {
        self.call(RetryQueueMsg::ListDeadLetters)
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
        self.call(|r| RetryQueueMsg::Replay(which, r))
            .await
            .map_err(QueueError::Unavailable)?
    }

    /// Discards the selected dead letters; returns the ids that went.
    pub async fn drop_selected(&self, which: Selection) -> Result<Vec<String>, QueueError> {
        self.call(|r| RetryQueueMsg::DropDeadLetters(which, r))
            .await
            .map_err(QueueError::Unavailable)?
    }
}

fn selection(id: Option<&str>) -> Selection {
    id.map_or(Selection::All, |id| Selection::Ids(vec![id.to_owned()]))
}
