//! [`RetryQueueActor`]: owns the queue and its journal, runs attempts as tasks.
//!
//! Every change is journaled before it is applied in memory. Attempts run as spawned tasks
//! (at most `concurrency`), each bounded by `attempt_timeout`, and report back with
//! [`RetryQueueMessage::AttemptFinished`]; one timer task wakes the actor when the next pending
//! operation is due. Dropping the state (a stop, a kill, a failure) aborts the attempts and
//! the timers: the journal says what was in flight, and the next start counts those attempts
//! as failed.
//!
//! A start attaches to the handle (`pre_start`), then loads the journal, queues the inbox the
//! handle filled while no actor was attached, and records the inbox's place in the handle
//! (`post_start`); a stop detaches in `post_stop`, anything else when the state is dropped,
//! leaving the queue's ids in the handle for the enqueues it takes meanwhile.

mod requests;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::handle::{InboxConfig, Known, View};
use super::journal::{Journal, Record, inbox_path};
use super::state::Queue;
use super::{
    DETAILS_OPS_LIMIT, EnqueueError, Enqueued, Executor, LAZY_SYNC, Operation, QueueConfig,
    QueueError, QueueStatus, RetryQueueHandle, STATUS_OPS_LIMIT, Selection, now_ms,
};
use crate::status::StatusNode;
use crate::supervisor::{ChildContext, ChildSpec, RestartPolicy};

/// The retry queue actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct RetryQueueActor;

/// Arguments of [`RetryQueueActor`].
#[derive(Clone)]
pub struct RetryQueueArguments {
    /// Settings (normalized on start).
    pub config: QueueConfig,
    /// Runs the operations.
    pub executor: Arc<dyn Executor>,
    /// The actor's status node (details: the published [`QueueStatus`]).
    pub node: StatusNode,
    /// The handle the actor attaches to and publishes into.
    pub handle: RetryQueueHandle,
}

impl std::fmt::Debug for RetryQueueArguments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryQueueArguments")
            .field("config", &self.config)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Messages of [`RetryQueueActor`].
#[derive(Debug)]
pub enum RetryQueueMessage {
    /// Queue an operation (replied once durable).
    Enqueue(Operation, RpcReplyPort<Result<Enqueued, EnqueueError>>),
    /// The full status.
    GetStatus(RpcReplyPort<QueueStatus>),
    /// The dead letters, oldest first.
    GetDeadLetters(RpcReplyPort<Vec<Operation>>),
    /// Move dead letters back to pending, attempts reset; replies with the ids moved.
    Replay(Selection, RpcReplyPort<Result<Vec<String>, QueueError>>),
    /// Discard dead letters; replies with the ids discarded.
    DropDeadLetters(Selection, RpcReplyPort<Result<Vec<String>, QueueError>>),
    /// Internal: an attempt finished (or timed out, or panicked).
    AttemptFinished {
        /// The operation.
        id: String,
        /// Which attempt (stale reports are ignored).
        attempt: u32,
        /// Its outcome.
        outcome: Result<(), String>,
    },
    /// Internal: a pending operation is due.
    Wake,
    /// Internal: time to sync progress records.
    SyncDue,
}

/// State of [`RetryQueueActor`].
pub struct RetryQueueState {
    config: QueueConfig,
    executor: Arc<dyn Executor>,
    node: StatusNode,
    handle: RetryQueueHandle,
    me: ActorId,
    queue: Queue,
    journal: Option<Journal>,
    timer: Option<(Instant, JoinHandle<()>)>,
    sync_timer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RetryQueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryQueueState")
            .field("path", &self.node.path())
            .field("live", &self.queue.live())
            .field("in_flight", &self.queue.in_flight())
            .finish_non_exhaustive()
    }
}

impl Drop for RetryQueueState {
    fn drop(&mut self) {
        self.queue.abort_all();
        if let Some((_, t)) = self.timer.take() {
            t.abort();
        }
        if let Some(t) = self.sync_timer.take() {
            t.abort();
        }
        self.detach();
    }
}

impl Actor for RetryQueueActor {
    type Msg = RetryQueueMessage;
    type State = RetryQueueState;
    type Arguments = RetryQueueArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<RetryQueueMessage>,
        args: RetryQueueArguments,
    ) -> Result<RetryQueueState, ActorProcessingErr> {
        let shown = args.handle.clone();
        args.node.set_details(Arc::new(move || {
            serde_json::to_value(shown.published()).unwrap_or_default()
        }));
        let config = args.config.normalized();
        // Requests sent from now on wait in the mailbox until the journal and the inbox are
        // loaded; from now on the handle appends nothing more to the inbox.
        args.handle.attach(myself.clone());
        Ok(RetryQueueState {
            queue: Queue::new(config.dead_letter_capacity),
            config,
            executor: args.executor,
            node: args.node,
            handle: args.handle,
            me: myself.get_id(),
            journal: None,
            timer: None,
            sync_timer: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<RetryQueueMessage>,
        state: &mut RetryQueueState,
    ) -> Result<(), ActorProcessingErr> {
        state.load()?;
        state.load_inbox()?;
        state.handle.inbox_loaded(InboxConfig {
            path: inbox_path(&state.config.journal),
            capacity: state.config.capacity,
            on_full: state.config.on_full,
        });
        state.pump(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<RetryQueueMessage>,
        state: &mut RetryQueueState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(j) = state.journal.as_mut()
            && let Err(e) = j.sync()
        {
            tracing::warn!(path = %state.node.path(), error = %e, "retry queue journal: final sync failed");
        }
        // Not later: ractor hands the state of a stopped actor to its supervisor, which may
        // drop it long after; enqueues go to the inbox from here on.
        state.detach();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RetryQueueMessage>,
        msg: RetryQueueMessage,
        state: &mut RetryQueueState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RetryQueueMessage::Enqueue(op, reply) => {
                let _ = reply.send(state.enqueue(op));
            }
            RetryQueueMessage::GetStatus(reply) => {
                let _ = reply.send(state.status());
            }
            RetryQueueMessage::GetDeadLetters(reply) => {
                let _ = reply.send(state.queue.dead_letters().iter().cloned().collect());
            }
            RetryQueueMessage::Replay(id, reply) => {
                let _ = reply.send(state.replay(id));
            }
            RetryQueueMessage::DropDeadLetters(id, reply) => {
                let _ = reply.send(state.drop_dead(id));
            }
            RetryQueueMessage::AttemptFinished {
                id,
                attempt,
                outcome,
            } => state.attempt_done(&myself, id, attempt, outcome),
            RetryQueueMessage::Wake => {}
            RetryQueueMessage::SyncDue => {
                state.sync_timer = None;
                if let Some(Err(e)) = state.journal.as_mut().map(Journal::sync) {
                    tracing::warn!(path = %state.node.path(), error = %e, "retry queue journal: sync failed");
                }
            }
        }
        state.pump(&myself);
        Ok(())
    }
}

impl RetryQueueState {
    /// Detaches from the handle, leaving it the queue's ids if the journal was loaded.
    fn detach(&self) {
        let (queue, loaded) = (&self.queue, self.journal.is_some());
        self.handle.detach(self.me, || {
            loaded.then(|| {
                let (live, dead) = queue.ids();
                Known { live, dead }
            })
        });
    }

    fn attempt_done(
        &mut self,
        myself: &ActorRef<RetryQueueMessage>,
        id: String,
        attempt: u32,
        outcome: Result<(), String>,
    ) {
        if self.queue.running_attempt(&id) != Some(attempt) {
            return;
        }
        let record = match outcome {
            Ok(()) => {
                self.queue.succeed(&id);
                self.handle.totals().succeeded.fetch_add(1, RELAXED);
                Record::Succeeded { id }
            }
            Err(err) if attempt > self.config.max_retries => {
                self.handle.totals().failed.fetch_add(1, RELAXED);
                tracing::warn!(path = %self.node.path(), %id, attempts = attempt, error = %err, "operation dead-lettered: retries exhausted");
                self.bury(&id, err.clone());
                Record::Dead { id, err }
            }
            Err(err) => {
                self.handle.totals().failed.fetch_add(1, RELAXED);
                let delay = self.config.retry_delay(attempt);
                let next_ms = now_ms() + delay.as_millis() as u64;
                tracing::debug!(path = %self.node.path(), %id, attempt, error = %err, delay_ms = delay.as_millis() as u64, "attempt failed; retrying");
                self.queue
                    .retry(&id, err.clone(), next_ms, Instant::now() + delay);
                Record::Failed { id, err, next_ms }
            }
        };
        self.progress(myself, &[record]);
    }

    /// Writes progress records (synced lazily, within [`LAZY_SYNC`]).
    fn progress(&mut self, myself: &ActorRef<RetryQueueMessage>, records: &[Record]) {
        let path = self.node.path().to_owned();
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if let Err(e) = journal.append(records) {
            tracing::warn!(%path, error = %e, "retry queue journal: cannot record progress (the operation may run again after a restart)");
            return;
        }
        if self.sync_timer.is_none() {
            let me = myself.clone();
            self.sync_timer = Some(tokio::spawn(async move {
                tokio::time::sleep(LAZY_SYNC).await;
                let _ = me.send_message(RetryQueueMessage::SyncDue);
            }));
        }
    }

    /// Starts due attempts, re-arms the timer, compacts if due, publishes the status.
    fn pump(&mut self, myself: &ActorRef<RetryQueueMessage>) {
        let paused = self.executor.unavailable_for();
        if paused.is_none() {
            let free = self
                .config
                .concurrency
                .saturating_sub(self.queue.in_flight());
            for id in self.queue.due(Instant::now(), free) {
                self.start_attempt(myself, &id);
            }
        } else if self
            .queue
            .next_due()
            .is_some_and(|due| due <= Instant::now())
        {
            tracing::debug!(path = %self.node.path(), wait_ms = paused.unwrap_or_default().as_millis() as u64, "target unavailable; due attempts wait");
        }
        self.arm_timer(myself, paused);
        let live = self.queue.live() + self.queue.in_flight() + 2 * self.queue.dead_letters().len();
        if let Some(journal) = self.journal.as_mut()
            && journal.needs_compaction(live)
        {
            let before = journal.bytes();
            match journal.compact(self.queue.snapshot()) {
                Ok(()) => {
                    tracing::debug!(path = %journal.path().display(), before, after = journal.bytes(), "retry queue journal compacted")
                }
                Err(e) => {
                    tracing::warn!(path = %journal.path().display(), error = %e, "retry queue journal: compaction failed")
                }
            }
        }
        self.publish();
    }

    fn start_attempt(&mut self, myself: &ActorRef<RetryQueueMessage>, id: &str) {
        let Some(op) = self.queue.start(id) else {
            return;
        };
        self.progress(myself, &[Record::Started { id: id.to_owned() }]);
        let (executor, limit, me) = (
            self.executor.clone(),
            self.config.attempt_timeout,
            myself.clone(),
        );
        let task = tokio::spawn(async move {
            let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| executor.execute(&op)))
            {
                Err(_) => Err("the executor panicked".to_owned()),
                Ok(fut) => {
                    match tokio::time::timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await {
                        Ok(Ok(result)) => result,
                        Ok(Err(_)) => Err("the executor panicked".to_owned()),
                        Err(_) => Err(format!(
                            "attempt timed out after {}",
                            humantime::format_duration(limit)
                        )),
                    }
                }
            };
            let _ = me.send_message(RetryQueueMessage::AttemptFinished {
                id: op.id,
                attempt: op.attempts,
                outcome,
            });
        });
        self.queue.set_task(id, task.abort_handle());
    }

    /// Arms the wake-up for the next due operation, not before `paused` has passed.
    fn arm_timer(
        &mut self,
        myself: &ActorRef<RetryQueueMessage>,
        paused: Option<std::time::Duration>,
    ) {
        let next = if self.queue.in_flight() < self.config.concurrency {
            self.queue.next_due()
        } else {
            None
        };
        // A pause of zero still waits a little, so an open breaker cannot make us spin.
        let next = match paused {
            Some(wait) => next.map(|due| due.max(Instant::now() + wait.max(PAUSE_FLOOR))),
            None => next,
        };
        if self
            .timer
            .as_ref()
            .is_some_and(|(at, _)| *at <= Instant::now())
        {
            self.timer = None; // it fired (its Wake is how we got here)
        }
        if self.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, t)) = self.timer.take() {
            t.abort();
        }
        if let Some(at) = next {
            let me = myself.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let _ = me.send_message(RetryQueueMessage::Wake);
            });
            self.timer = Some((at, task));
        }
    }

    fn view(&self, limit: usize) -> View {
        View {
            pending: self.queue.pending(),
            in_flight: self.queue.in_flight(),
            dead_letters: self.queue.dead_letters().len(),
            capacity: self.config.capacity,
            dead_letter_capacity: self.config.dead_letter_capacity,
            concurrency: self.config.concurrency,
            head: self.queue.list(limit),
            dead_head: self.queue.list_dead(limit),
            journal: self.journal.as_ref().map(Journal::stats),
        }
    }

    fn publish(&self) {
        self.handle.publish(self.view(DETAILS_OPS_LIMIT));
    }

    fn status(&self) -> QueueStatus {
        self.handle
            .status_of(&self.view(STATUS_OPS_LIMIT), self.queue.live())
    }
}

const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// The shortest pause when the executor says its target is unavailable.
const PAUSE_FLOOR: std::time::Duration = std::time::Duration::from_millis(100);

/// The child spec of a retry queue with id `id` (e.g. `retry:session_manager`), attaching to
/// `handle`.
pub fn retry_queue_spec(
    id: &str,
    config: QueueConfig,
    executor: Arc<dyn Executor>,
    handle: RetryQueueHandle,
    policy: RestartPolicy,
) -> ChildSpec {
    ChildSpec::new(id, "retry_queue", policy, move |ctx: ChildContext| {
        let args = RetryQueueArguments {
            config: config.clone(),
            executor: executor.clone(),
            node: ctx.node,
            handle: handle.clone(),
        };
        async move {
            let (actor, _) =
                RetryQueueActor::spawn_linked(None, RetryQueueActor, args, ctx.supervisor).await?;
            Ok(actor.get_cell())
        }
    })
}
