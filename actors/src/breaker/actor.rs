//! The breaker's supervised actor (timers, introspection) and the registry of named breakers
//! (status tools, metrics).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use super::{BreakerHandle, BreakerState, BreakerStatus};
use crate::metrics::{Metrics, MetricsError, one_hot};
use crate::status::StatusNode;
use crate::supervisor::{ChildContext, ChildSpec, RestartPolicy};

/// How often the actor runs the time-driven transitions: the latest an `open → half_open` or a
/// lost probe's expiry shows without traffic.
pub const TICK: Duration = Duration::from_millis(250);

/// The breaker actor: owns the timers of one [`BreakerHandle`] and publishes its status.
///
/// It holds no breaker state of its own: the state lives in the shared handle, so a restart of
/// the actor (after a panic, say) keeps the breaker as it was, and callers keep using their
/// handle meanwhile (transitions then happen lazily, on the next call).
#[derive(Debug, Default, Clone, Copy)]
pub struct BreakerActor;

/// Arguments of [`BreakerActor`].
#[derive(Debug)]
pub struct BreakerArguments {
    /// The breaker whose timers the actor runs.
    pub handle: BreakerHandle,
    /// The actor's status node (details: the breaker's status).
    pub node: StatusNode,
}

/// Messages of [`BreakerActor`].
#[derive(Debug)]
pub enum BreakerMessage {
    /// Internal: run the time-driven transitions.
    Tick,
    /// Close the breaker (the `reset_circuit_breaker` tool); replies with the new status.
    Reset(RpcReplyPort<BreakerStatus>),
    /// Reply with the current status.
    GetStatus(RpcReplyPort<BreakerStatus>),
}

/// State of [`BreakerActor`]. Dropping it stops the ticker.
#[derive(Debug)]
pub struct BreakerActorState {
    handle: BreakerHandle,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for BreakerActorState {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

impl Actor for BreakerActor {
    type Msg = BreakerMessage;
    type State = BreakerActorState;
    type Arguments = BreakerArguments;

    /// Attaches the node's path to the handle (for logs), installs the status as the node's
    /// details (they stay installed after a stop: they read the handle, which outlives the
    /// actor) and starts the ticker.
    async fn pre_start(
        &self,
        myself: ActorRef<BreakerMessage>,
        BreakerArguments { handle, node }: BreakerArguments,
    ) -> Result<BreakerActorState, ActorProcessingErr> {
        handle.set_path(node.path());
        let shown = handle.clone();
        node.set_details(Arc::new(move || {
            serde_json::to_value(shown.status()).unwrap_or(serde_json::Value::Null)
        }));
        let ticker = myself.send_interval(TICK, || BreakerMessage::Tick);
        Ok(BreakerActorState {
            handle,
            ticker: Some(ticker),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<BreakerMessage>,
        msg: BreakerMessage,
        state: &mut BreakerActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BreakerMessage::Tick => state.handle.advance(),
            BreakerMessage::Reset(reply) => {
                state.handle.reset();
                let _ = reply.send(state.handle.status());
            }
            BreakerMessage::GetStatus(reply) => {
                state.handle.advance();
                let _ = reply.send(state.handle.status());
            }
        }
        Ok(())
    }
}

/// The child spec of the breaker actor with id `id` (`breaker:session_manager`), kind
/// `breaker`. Every (re)start gets the same handle, hence the same breaker state.
pub fn breaker_spec(id: &str, handle: BreakerHandle, policy: RestartPolicy) -> ChildSpec {
    ChildSpec::new(id, "breaker", policy, move |ctx: ChildContext| {
        let handle = handle.clone();
        async move {
            let args = BreakerArguments {
                handle,
                node: ctx.node,
            };
            let (actor, _) =
                BreakerActor::spawn_linked(None, BreakerActor, args, ctx.supervisor).await?;
            Ok(actor.get_cell())
        }
    })
}

/// The daemon's breakers by name (`session_manager`), shared by the status tools and the
/// metrics. Cheap to clone.
///
/// Callback gauges can be registered only once per name in a [`Metrics`] registry, so the
/// metrics are registered once for the whole registry ([`register_metrics`](Self::register_metrics))
/// and read whatever breakers it holds at scrape time: breakers added later need no
/// registration of their own.
#[derive(Debug, Clone, Default)]
pub struct BreakerRegistry {
    breakers: Arc<RwLock<BTreeMap<String, BreakerHandle>>>,
}

impl BreakerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the breaker `name`; returns the one it replaced.
    pub fn insert(&self, name: impl Into<String>, handle: BreakerHandle) -> Option<BreakerHandle> {
        self.write().insert(name.into(), handle)
    }

    /// Removes the breaker `name`.
    pub fn remove(&self, name: &str) -> Option<BreakerHandle> {
        self.write().remove(name)
    }

    /// The breaker `name`.
    pub fn get(&self, name: &str) -> Option<BreakerHandle> {
        self.read().get(name).cloned()
    }

    /// Every breaker, sorted by name.
    pub fn handles(&self) -> Vec<(String, BreakerHandle)> {
        self.read()
            .iter()
            .map(|(name, handle)| (name.clone(), handle.clone()))
            .collect()
    }

    /// Every breaker's status, by name.
    pub fn statuses(&self) -> BTreeMap<String, BreakerStatus> {
        self.handles()
            .into_iter()
            .map(|(name, handle)| (name, handle.status()))
            .collect()
    }

    /// Registers the breaker families, labelled `breaker` (the name) and evaluated at scrape
    /// time: `revka_breaker_state` (a gauge, one-hot over `state`: `closed`, `open`,
    /// `half_open`), and the counters `revka_breaker_rejections_total` and
    /// `revka_breaker_opens_total`. Call once per [`Metrics`]; a second call fails with
    /// [`MetricsError::AlreadyRegistered`].
    pub fn register_metrics(&self, metrics: &Metrics) -> Result<(), MetricsError> {
        let registry = self.clone();
        metrics.register_gauge_fn(
            "revka_breaker_state",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            &["breaker", "state"],
            Box::new(move || {
                let mut rows = Vec::new();
                for (name, handle) in registry.handles() {
                    let current = handle.state();
                    one_hot(
                        &mut rows,
                        &[&name],
                        &BreakerState::ALL,
                        current,
                        BreakerState::as_str,
                    );
                }
                rows
            }),
        )?;
        type Read = fn(&BreakerStatus) -> u64;
        let counters: [(&str, &str, Read); 2] = [
            (
                "revka_breaker_rejections_total",
                "Calls rejected by the circuit breaker.",
                |s| s.total_rejections,
            ),
            (
                "revka_breaker_opens_total",
                "Times the circuit breaker opened.",
                |s| s.total_opens,
            ),
        ];
        for (name, help, read) in counters {
            let registry = self.clone();
            metrics.register_counter_fn(
                name,
                help,
                &["breaker"],
                Box::new(move || {
                    registry
                        .handles()
                        .into_iter()
                        .map(|(name, handle)| (vec![name], read(&handle.status()) as f64))
                        .collect()
                }),
            )?;
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, BreakerHandle>> {
        self.breakers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, BreakerHandle>> {
        self.breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
