//! The agent feed: one hub of feed items (`{"source", "kind", ...}`, see the contract in
//! `src/agents.rs`'s docs) that `GET /ws/agents/events` relays — the session manager's agent
//! events and chat messages (republished by [`super::follow`]), the fallback agents' events,
//! the outcomes of queued operations and the follower's `sidecar_status` notices.
//!
//! Part of the daemon's agent layer (`src/agents.rs`), shared through `SidecarServices`.
//! Publishing is synchronous and cheap: the item goes to the observers (the budget ledger,
//! which must see every `usage` item whoever listens) and to a `tokio::sync::broadcast` ring
//! of [`SUBSCRIBER_BOUND`] items. With no subscriber the broadcast drops it at once; a
//! subscriber that falls more than the bound behind loses the oldest items and gets one
//! `{"source":"revka","kind":"lag","missed":N}` item in their place.

use std::sync::{Arc, PoisonError, RwLock};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Items one subscriber may have queued before the oldest are dropped (and a `lag` item sent).
pub const SUBSCRIBER_BOUND: usize = 1024;

/// Something that sees every item as it is published (synchronously: keep it quick).
pub type Observer = Arc<dyn Fn(&Value) + Send + Sync>;

/// The hub. Cloning shares it.
#[derive(Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<Value>>,
    observers: Arc<RwLock<Vec<Observer>>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("subscribers", &self.tx.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    /// An empty hub.
    pub fn new() -> Self {
        Self::with_bound(SUBSCRIBER_BOUND)
    }

    /// A hub whose subscribers each hold at most `bound` items (tests use small ones).
    pub fn with_bound(bound: usize) -> Self {
        let (tx, _) = broadcast::channel(bound.max(1));
        Self {
            tx,
            observers: Arc::default(),
        }
    }

    /// Adds an observer of every item.
    pub fn observe(&self, observer: Observer) {
        self.observers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
    }

    /// Publishes one item to the observers and the subscribers.
    pub fn publish(&self, item: Value) {
        for observer in self
            .observers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            observer(&item);
        }
        if self.tx.receiver_count() > 0 {
            // Err only when the last subscriber left meanwhile: nobody to tell.
            let _ = self.tx.send(Arc::new(item));
        }
    }

    /// How many subscribers there are.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A new subscriber: the items published from now on.
    pub fn subscribe(&self) -> Subscriber {
        Subscriber {
            rx: self.tx.subscribe(),
        }
    }
}

/// One subscriber's queue (bounded: see [`SUBSCRIBER_BOUND`]).
#[derive(Debug)]
pub struct Subscriber {
    rx: broadcast::Receiver<Arc<Value>>,
}

impl Subscriber {
    /// The next item; a `lag` item when some were dropped; `None` once the hub is gone.
    pub async fn next(&mut self) -> Option<Arc<Value>> {
        match self.rx.recv().await {
            Ok(item) => Some(item),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Arc::new(lag(missed))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The `lag` item of a daemon-side subscriber that fell behind.
pub fn lag(missed: u64) -> Value {
    json!({ "source": "revka", "kind": "lag", "missed": missed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_subscriber_gets_a_lag_item_and_then_the_newest() {
        let feed = Feed::with_bound(4);
        feed.publish(json!({ "n": 0 })); // nobody listens: dropped
        let seen = Arc::new(std::sync::Mutex::new(0));
        let count = seen.clone();
        feed.observe(Arc::new(move |_| *count.lock().unwrap() += 1));
        let mut sub = feed.subscribe();
        assert_eq!(feed.subscribers(), 1);
        for n in 1..=10 {
            feed.publish(json!({ "n": n }));
        }
        assert_eq!(*seen.lock().unwrap(), 10, "observers see every item");
        assert_eq!(*sub.next().await.unwrap(), lag(6));
        for n in 7..=10 {
            assert_eq!(*sub.next().await.unwrap(), json!({ "n": n }));
        }
        drop(sub);
        assert_eq!(feed.subscribers(), 0);
    }
}
