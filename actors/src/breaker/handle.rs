//! The shared breaker: calls through it, status, reset, transition logging.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use tokio::sync::watch;
use tokio::time::Instant;

use super::machine::{BreakerCore, Outcome, Permit};
use super::{BreakerConfig, BreakerState, BreakerStatus, Rejected, Transition};

/// Why a call through the breaker did not return the callee's own result.
#[derive(Debug)]
pub enum BreakerError<E> {
    /// The breaker rejected the call without running it.
    Open(Rejected),
    /// The call was a probe and did not complete within `probe_timeout`; the breaker re-opened.
    ProbeTimeout,
    /// The call ran and failed.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The callee's error, if the call ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open(rejected) => rejected.fmt(f),
            Self::ProbeTimeout => f.write_str("circuit breaker probe timed out"),
            Self::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BreakerError<E> {
    /// Transparent for `Inner`: the callee's error is displayed as is, its source follows.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Inner(e) => e.source(),
            _ => None,
        }
    }
}

impl<E> From<Rejected> for BreakerError<E> {
    fn from(rejected: Rejected) -> Self {
        Self::Open(rejected)
    }
}

/// A breaker shared by its callers, its actor, the status tools and the metrics. Cheap to
/// clone. The state lives here, not in the actor: a restarted actor finds it unchanged.
#[derive(Clone)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
}

struct Shared {
    core: Mutex<BreakerCore>,
    /// Shown in logs: the name given at creation, then the actor's StatusNode path.
    path: RwLock<Arc<str>>,
    state: watch::Sender<BreakerState>,
}

impl std::fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("path", &self.path())
            .field("state", &self.state())
            .finish()
    }
}

impl BreakerHandle {
    /// A closed breaker; `name` identifies it in logs until its actor attaches its path.
    pub fn new(name: &str, config: BreakerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                core: Mutex::new(BreakerCore::new(config)),
                path: RwLock::new(name.into()),
                state: watch::Sender::new(BreakerState::Closed),
            }),
        }
    }

    /// The (clamped) config.
    pub fn config(&self) -> BreakerConfig {
        *self.core().config()
    }

    /// The name or path shown in logs (`root/sidecars/breaker:session_manager`).
    pub fn path(&self) -> Arc<str> {
        self.shared
            .path
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the path shown in logs (the actor does this with its StatusNode path).
    pub fn set_path(&self, path: &str) {
        *self
            .shared
            .path
            .write()
            .unwrap_or_else(PoisonError::into_inner) = path.into();
    }

    /// Runs `fut` through the breaker: `Err(_)` is a failure, `Ok(_)` a success.
    /// See [`call_classified`](Self::call_classified).
    pub async fn call<T, E>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, BreakerError<E>> {
        self.call_classified(fut, Result::is_ok).await
    }

    /// Runs `fut` through the breaker; `classify` tells whether the result is a success (e.g. a
    /// malformed sidecar response is a failure although the HTTP call returned `Ok`). The
    /// result is returned as is: classification only feeds the breaker.
    ///
    /// Rejected at once with [`BreakerError::Open`] while open. A probe is bounded by
    /// `probe_timeout`; past it the probe counts as failed and [`BreakerError::ProbeTimeout`]
    /// is returned. Dropping the returned future before it completes is safe: a probe counts
    /// as failed (its slot is released and the breaker re-opens), a normal call counts as
    /// nothing, since its caller gave up and that says nothing about the sidecar. A caller
    /// that wants its own time-out counted must therefore put it *inside* `fut`
    /// (`call(async { timeout(d, req).await.map_err(..)? })`), not around `call`.
    pub async fn call_classified<T, E>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
        classify: impl Fn(&Result<T, E>) -> bool,
    ) -> Result<T, BreakerError<E>> {
        let permit = self.admit()?;
        let deadline = permit.deadline();
        let guard = PermitGuard {
            handle: self,
            permit: Some(permit),
        };
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, fut).await {
                Ok(result) => result,
                Err(_) => {
                    guard.finish(Outcome::TimedOut);
                    return Err(BreakerError::ProbeTimeout);
                }
            },
            None => fut.await,
        };
        let outcome = if classify(&result) {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        guard.finish(outcome);
        result.map_err(BreakerError::Inner)
    }

    /// The current status.
    pub fn status(&self) -> BreakerStatus {
        self.core().status(Instant::now())
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.core().state()
    }

    /// Closes the breaker from any state, resetting the failure count and the backoff.
    pub fn reset(&self) {
        self.step(|core, now| ((), core.reset(now).into_iter().collect()));
    }

    /// Records a failure observed outside [`call`](Self::call): counts towards the threshold
    /// while closed, only in the totals while open or half open (only probes decide there).
    pub fn record_failure(&self) {
        self.step(|core, now| {
            (
                (),
                core.record_unpermitted(false, now).into_iter().collect(),
            )
        });
    }

    /// Records a success observed outside [`call`](Self::call): resets the failure count while
    /// closed, only in the totals while open or half open.
    pub fn record_success(&self) {
        self.step(|core, now| ((), core.record_unpermitted(true, now).into_iter().collect()));
    }

    /// Runs the time-driven transitions now (probe expiry, `open → half_open`); the actor's
    /// tick. Calls do it too, so a breaker without its actor still recovers, lazily.
    pub fn advance(&self) {
        self.step(|core, now| ((), core.advance(now)));
    }

    /// A receiver of the state, updated on every transition (e.g. to wait for `closed`).
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.shared.state.subscribe()
    }

    fn core(&self) -> MutexGuard<'_, BreakerCore> {
        self.shared
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Result<Permit, Rejected> {
        self.step(|core, now| {
            let mut transitions: Vec<Transition> = core.expire_probes(now).into_iter().collect();
            let mut result = core.admit(now);
            if let Ok(permit) = &mut result {
                transitions.extend(permit.take_transition());
            }
            (result, transitions)
        })
    }

    fn finish(&self, permit: Permit, outcome: Outcome) {
        self.step(|core, now| {
            let transition = core.record_outcome(permit, outcome, now);
            ((), transition.into_iter().collect())
        });
    }

    /// Runs `f` on the core under the lock, publishes the new state, then logs the
    /// transitions after the lock is released.
    fn step<R>(&self, f: impl FnOnce(&mut BreakerCore, Instant) -> (R, Vec<Transition>)) -> R {
        let (result, transitions) = {
            let mut core = self.core();
            let (result, transitions) = f(&mut core, Instant::now());
            if !transitions.is_empty() {
                self.shared.state.send_replace(core.state());
            }
            (result, transitions)
        };
        if !transitions.is_empty() {
            let path = self.path();
            for t in &transitions {
                log_transition(&path, t);
            }
        }
        result
    }
}

fn log_transition(path: &str, t: &Transition) {
    let (from, to, reason) = (t.from.as_str(), t.to.as_str(), t.reason.as_str());
    match t.next_probe_in {
        Some(next) => tracing::warn!(
            target: "revka_actors::breaker",
            path,
            from,
            to,
            reason,
            next_probe_in_ms = next.as_millis() as u64,
            "circuit breaker opened"
        ),
        None => tracing::info!(
            target: "revka_actors::breaker",
            path,
            from,
            to,
            reason,
            "circuit breaker state changed"
        ),
    }
}

/// Hands the permit back when the call ends, and when its future is dropped mid-way.
struct PermitGuard<'a> {
    handle: &'a BreakerHandle,
    permit: Option<Permit>,
}

impl PermitGuard<'_> {
    fn finish(mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.handle.finish(permit, outcome);
        }
    }
}

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.handle.finish(permit, Outcome::Cancelled);
        }
    }
}
