//! The progress broadcaster, `root/progress`: the actor that owns every session's event channel
//! and registers its subscribers (`GET /session/{id}/events`, and through it the gateway's
//! WebSocket relay).
//!
//! **Two paths.** Publishing (a tool's progress, a tool-list change) is the hot path and crosses
//! no mailbox: the session holds a weak reference to its channel and sends into it (a read lock
//! and a broadcast send; see `session::events`). Subscribing is rare and goes through the actor
//! ([`ProgressMessage::Subscribe`]): it makes the session's channel on the first subscription,
//! hands out receivers, and drops a channel once its last subscriber has gone
//! ([`ProgressMessage::Unsubscribed`]). The fan-out itself is the broadcast channel's: each
//! subscriber's own task reads it, so one slow subscriber never holds up another, nor the
//! publisher; a subscriber that falls behind loses the oldest events and is told how many
//! ([`Received::Lagged`]).
//!
//! **Crash and restart.** The channels live in the actor's state. When the actor crashes (a
//! panic, a kill), its state is dropped and every channel closes; its supervisor (`root`,
//! `permanent`) restarts it. Sessions are untouched: they live in the session table. Each open
//! [`Subscription`] sees its channel close after the events still buffered in it, registers
//! again with the restarted actor (waiting for it as long as its session lives), and then yields
//! [`Received::Reset`] with the exact number of events published in between, which it could
//! not receive, before the events that follow: an explicit gap, never a silent one. Publishers
//! meanwhile never wait: what they publish while the session has no channel is counted, not
//! queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{broadcast, watch};

use crate::session::{Channel, Feed};
use crate::session::{EVENT_BUFFER, Published, Session};
use crate::status::StatusNode;
use crate::supervisor::{ChildContext, ChildSpec, RestartPolicy};

#[cfg(test)]
mod tests;

/// How long opening a subscription waits for the broadcaster (restarting after a crash, say)
/// before it is refused.
pub const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

/// The broadcaster as the rest of the daemon sees it: where subscriptions register, whatever
/// incarnation of the actor is running. Shared by the session table and the child spec.
#[derive(Debug)]
pub struct Progress {
    /// The running actor; `None` from a crash until its restart.
    actor: watch::Sender<Option<ActorRef<ProgressMessage>>>,
}

/// Why a subscription could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProgressError {
    /// The broadcaster is not running and did not come back in time.
    #[error(
        "the progress broadcaster is not running (restarting?); none answered within {}s, retry",
        .0.as_secs()
    )]
    Unavailable(Duration),
}

impl Progress {
    /// A broadcaster handle with no actor yet: start one with [`progress_spec`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            actor: watch::channel(None).0,
        })
    }

    /// The running actor, if any.
    pub fn actor(&self) -> Option<ActorRef<ProgressMessage>> {
        self.actor.borrow().clone()
    }

    /// Registers a subscriber of `session` with the running actor, waiting for one as long as
    /// it takes (the caller bounds the wait). Returns the receiver and the count of events the
    /// session had published before it.
    async fn register(&self, session: &Arc<Session>) -> (broadcast::Receiver<Arc<Published>>, u64) {
        let mut actors = self.actor.subscribe();
        loop {
            let actor = actors
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|actor| actor.clone());
            // `None` is unreachable: `self` holds the sender.
            let Some(actor) = actor else {
                return std::future::pending().await;
            };
            let subscribed = actor
                .call(
                    |reply| ProgressMessage::Subscribe(session.clone(), reply),
                    None,
                )
                .await;
            if let Ok(ractor::rpc::CallResult::Success(subscribed)) = subscribed {
                return (subscribed.receiver, subscribed.published_before);
            }
            // It died with the request: wait for the next incarnation.
            let _ = actors.changed().await;
        }
    }

    /// Tells the running actor that a subscription of `session` ended.
    fn unsubscribed(&self, session: &Arc<str>) {
        if let Some(actor) = &*self.actor.borrow() {
            let _ = actor.cast(ProgressMessage::Unsubscribed(session.clone()));
        }
    }
}

/// The child spec of the broadcaster: `progress`, kind `broadcaster`, under `root`.
pub fn progress_spec(progress: Arc<Progress>, policy: RestartPolicy) -> ChildSpec {
    ChildSpec::new(
        "progress",
        "broadcaster",
        policy,
        move |ctx: ChildContext| {
            let progress = progress.clone();
            async move {
                let args = ProgressArguments {
                    progress,
                    node: ctx.node,
                };
                let (actor, _) =
                    ProgressActor::spawn_linked(None, ProgressActor, args, ctx.supervisor).await?;
                Ok(actor.get_cell())
            }
        },
    )
}

/// The broadcaster actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgressActor;

/// What [`ProgressActor`] starts with.
#[derive(Debug)]
pub struct ProgressArguments {
    /// The handle it announces itself on.
    pub progress: Arc<Progress>,
    /// Its node in the status tree (details: sessions with a channel, subscribers).
    pub node: StatusNode,
}

/// Messages of [`ProgressActor`].
#[derive(Debug)]
pub enum ProgressMessage {
    /// Register a subscriber of the session: make its channel if it has none, reply with a
    /// receiver.
    Subscribe(Arc<Session>, RpcReplyPort<Subscribed>),
    /// A subscription of the session with this id ended: channels left without subscribers
    /// are dropped.
    Unsubscribed(Arc<str>),
}

/// The reply to [`ProgressMessage::Subscribe`].
#[derive(Debug)]
pub struct Subscribed {
    receiver: broadcast::Receiver<Arc<Published>>,
    /// Events the session had published before the receiver was made.
    published_before: u64,
}

/// State of [`ProgressActor`]: the channels. Dropping it (a stop, a panic, a kill) closes every
/// channel and withdraws the actor from its handle.
#[derive(Debug)]
pub struct ProgressState {
    progress: Arc<Progress>,
    me: ActorId,
    /// Keyed by session id.
    channels: HashMap<Arc<str>, Arc<Channel>>,
    shown: Arc<Shown>,
}

/// What the status node shows, updated by the actor after each message.
#[derive(Debug, Default)]
struct Shown {
    sessions: AtomicUsize,
    subscribers: AtomicUsize,
}

impl ProgressState {
    fn show(&self) {
        let subscribers = self.channels.values().map(|c| c.receiver_count()).sum();
        self.shown
            .sessions
            .store(self.channels.len(), Ordering::Relaxed);
        self.shown.subscribers.store(subscribers, Ordering::Relaxed);
    }
}

impl Drop for ProgressState {
    fn drop(&mut self) {
        let me = self.me;
        self.progress.actor.send_if_modified(|actor| {
            let mine = actor.as_ref().is_some_and(|a| a.get_id() == me);
            if mine {
                *actor = None;
            }
            mine
        });
    }
}

impl Actor for ProgressActor {
    type Msg = ProgressMessage;
    type State = ProgressState;
    type Arguments = ProgressArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<ProgressMessage>,
        ProgressArguments { progress, node }: ProgressArguments,
    ) -> Result<ProgressState, ActorProcessingErr> {
        let shown = Arc::new(Shown::default());
        let details = shown.clone();
        node.set_details(Arc::new(move || {
            serde_json::json!({
                "sessions": details.sessions.load(Ordering::Relaxed),
                "subscribers": details.subscribers.load(Ordering::Relaxed),
            })
        }));
        Ok(ProgressState {
            progress,
            me: myself.get_id(),
            channels: HashMap::new(),
            shown,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ProgressMessage>,
        state: &mut ProgressState,
    ) -> Result<(), ActorProcessingErr> {
        state.progress.actor.send_replace(Some(myself));
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ProgressMessage>,
        msg: ProgressMessage,
        state: &mut ProgressState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProgressMessage::Subscribe(session, reply) => {
                let channel = state
                    .channels
                    .entry(session.id_arc())
                    .or_insert_with(|| Arc::new(broadcast::channel(EVENT_BUFFER).0));
                let (receiver, published_before) = session.feed().attach(channel);
                let _ = reply.send(Subscribed {
                    receiver,
                    published_before,
                });
            }
            ProgressMessage::Unsubscribed(_) => {
                // All of them: a receiver whose reply was never taken leaves no message.
                state
                    .channels
                    .retain(|_, channel| channel.receiver_count() > 0);
            }
        }
        state.show();
        Ok(())
    }
}

/// What a subscription receives.
#[derive(Debug)]
pub enum Received {
    /// An event of the session.
    Event(Arc<Published>),
    /// The subscriber fell behind and lost this many of the oldest events; newer ones follow.
    Lagged(u64),
    /// The broadcaster restarted: the subscription is registered again, and `missed` events
    /// were published meanwhile that it could not receive. Newer ones follow.
    Reset {
        /// Events published between the crash and the new registration.
        missed: u64,
    },
}

/// A subscription to one session's events; it keeps the session in use while open, and lasts
/// across restarts of the broadcaster ([`Received::Reset`]).
#[derive(Debug)]
pub struct Subscription {
    session: Arc<Session>,
    /// `None` once the channel closed: the next [`recv`](Self::recv) registers again.
    receiver: Option<broadcast::Receiver<Arc<Published>>>,
    /// Events the session had published before the current receiver.
    base: u64,
    /// Events received or lost to lag by the current receiver.
    seen: u64,
}

impl Subscription {
    /// Opens a subscription to `session`, waiting up to `wait` for the broadcaster.
    pub(crate) async fn open(session: Arc<Session>, wait: Duration) -> Result<Self, ProgressError> {
        // Counted before it registers: a publisher that sees the receiver sees the count.
        session.feed().subscriptions.fetch_add(1, Ordering::Relaxed);
        let mut subscription = Self {
            session,
            receiver: None,
            base: 0,
            seen: 0,
        };
        let progress = subscription.session.feed().progress.clone();
        let (receiver, base) = tokio::time::timeout(wait, progress.register(&subscription.session))
            .await
            .map_err(|_| ProgressError::Unavailable(wait))?;
        subscription.receiver = Some(receiver);
        subscription.base = base;
        Ok(subscription)
    }

    /// The session it watches.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The next event, lag notice or reset; `None` once the session has ended (after the
    /// events already waiting). After a crash of the broadcaster, waits for its restart.
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Received> {
        loop {
            if let Some(receiver) = &mut self.receiver {
                tokio::select! {
                    biased;
                    event = receiver.recv() => {
                        if let Some(received) = self.count(event) {
                            return Some(received);
                        }
                    }
                    () = self.session.ended().cancelled() => return None,
                }
            } else {
                let progress = self.session.feed().progress.clone();
                let (receiver, base) = tokio::select! {
                    biased;
                    () = self.session.ended().cancelled() => return None,
                    registered = progress.register(&self.session) => registered,
                };
                // Everything published since the last receiver was made, less what it took.
                let missed = base.saturating_sub(self.base).saturating_sub(self.seen);
                self.receiver = Some(receiver);
                self.base = base;
                self.seen = 0;
                return Some(Received::Reset { missed });
            }
        }
    }

    /// The next event or lag notice if one is waiting. A closed channel yields nothing here;
    /// the next [`recv`](Self::recv) deals with it.
    pub fn try_recv(&mut self) -> Option<Received> {
        let receiver = self.receiver.as_mut()?;
        let event = match receiver.try_recv() {
            Ok(published) => Ok(published),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                Err(broadcast::error::RecvError::Lagged(n))
            }
            Err(broadcast::error::TryRecvError::Closed) => Err(broadcast::error::RecvError::Closed),
            Err(broadcast::error::TryRecvError::Empty) => return None,
        };
        self.count(event)
    }

    /// Counts a receiver's result; forgets the receiver once it is closed.
    fn count(
        &mut self,
        event: Result<Arc<Published>, broadcast::error::RecvError>,
    ) -> Option<Received> {
        match event {
            Ok(published) => {
                self.seen += 1;
                Some(Received::Event(published))
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.seen += n;
                Some(Received::Lagged(n))
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.receiver = None;
                None
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver first, so that the actor sees it gone.
        self.receiver = None;
        let feed: &Feed = self.session.feed();
        feed.subscriptions.fetch_sub(1, Ordering::Relaxed);
        feed.progress.unsubscribed(&self.session.id_arc());
        // A session in use is not idle: its idle time starts when the subscription ends.
        self.session.touch();
    }
}
