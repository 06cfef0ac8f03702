//! The circuit breaker guarding every daemon → sidecar call.
//!
//! One breaker per sidecar (the session manager first), supervised at
//! `root/sidecars/breaker:session_manager`. Calls to the sidecar go through a [`BreakerHandle`]:
//! while the sidecar keeps failing the breaker **opens** and rejects calls at once with the time
//! until the next probe ([`Rejected`]), instead of letting every caller wait for a dead socket.
//!
//! # States
//!
//! - `closed`: calls pass; `failure_threshold` consecutive failures open the breaker (a success
//!   resets the count).
//! - `open`: calls are rejected. After the current recovery timeout the breaker goes
//!   `half_open`. The timeout starts at `recovery_timeout` and doubles on each consecutive
//!   re-open, capped at `max_recovery_timeout`; closing resets it.
//! - `half_open`: at most `half_open_max_calls` probe calls are admitted, the rest rejected. A
//!   probe success closes the breaker; a probe failure re-opens it. Every probe has its own
//!   deadline (`probe_timeout`): a probe that never reports counts as a failure when the deadline
//!   passes, so a lost probe can never wedge the breaker in `half_open` (the defect of the
//!   original implementation). A manual [`reset`](BreakerHandle::reset) closes it from any state.
//!
//! # Pieces
//!
//! - [`BreakerCore`]: the pure state machine, with injected time (`tokio::time::Instant`); every
//!   method that can change the state returns the [`Transition`]s it made.
//! - [`BreakerHandle`]: the shared, cloneable breaker (`Arc<Mutex<BreakerCore>>` plus a
//!   [`watch`](tokio::sync::watch) notifier of the state). [`BreakerHandle::call`] admits, runs
//!   the call (a probe bounded by `probe_timeout`), records the outcome and logs transitions.
//!   The lock is never held across an await.
//! - [`BreakerActor`]: the supervised actor owning the timers. It ticks every [`TICK`] so
//!   time-driven transitions (`open → half_open`, probe expiry) happen, are logged and are
//!   visible without traffic, and it publishes [`BreakerStatus`] as its StatusNode details.
//!   The state lives in the handle, so a restart of the actor keeps the breaker's state.
//! - [`BreakerRegistry`]: the daemon's named breakers, for the status tools and the metrics
//!   (`revka_breaker_state`, `revka_breaker_rejections_total`, `revka_breaker_opens_total`).
//!
//! Every transition is logged (`tracing`, target `revka_actors::breaker`) with the breaker's
//! path, the from/to states and the reason, recorded as `last_transition` in the status, and
//! published to the receivers of [`BreakerHandle::subscribe`] (e.g. the retry queue waits for
//! `closed`).

mod actor;
mod handle;
mod machine;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use actor::{
    BreakerActor, BreakerActorState, BreakerArguments, BreakerMessage, BreakerRegistry, TICK,
    breaker_spec,
};
pub use handle::{BreakerError, BreakerHandle};
pub use machine::{BreakerCore, Outcome, Permit, PermitKind};

/// A breaker's tuning. Out-of-range values are clamped by [`BreakerCore::new`]: the threshold
/// and the probe count are at least 1, the cap is at least the initial recovery timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (default 3).
    pub failure_threshold: u32,
    /// How long the breaker stays open after it first opens (default 10 s); doubled on each
    /// consecutive re-open.
    pub recovery_timeout: Duration,
    /// The cap of the doubled recovery timeout (default 300 s).
    pub max_recovery_timeout: Duration,
    /// Probe calls admitted at once while half open (default 1).
    pub half_open_max_calls: u32,
    /// How long a probe may run before it counts as a failure (default 10 s).
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            recovery_timeout: Duration::from_secs(10),
            max_recovery_timeout: Duration::from_secs(300),
            half_open_max_calls: 1,
            probe_timeout: Duration::from_secs(10),
        }
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are rejected until the recovery timeout passes.
    Open,
    /// A bounded number of probe calls decide between closing and re-opening.
    HalfOpen,
}

impl BreakerState {
    /// The snake-case name used in status, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Every state, for the one-hot `revka_breaker_state` family.
    pub const ALL: [Self; 3] = [Self::Closed, Self::Open, Self::HalfOpen];
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    /// `closed → open`: `failure_threshold` consecutive failures.
    FailureThreshold,
    /// `open → half_open`: the recovery timeout passed.
    RecoveryTimeoutElapsed,
    /// `half_open → closed`: a probe succeeded.
    ProbeSucceeded,
    /// `half_open → open`: a probe failed.
    ProbeFailed,
    /// `half_open → open`: a probe passed its deadline without reporting.
    ProbeTimedOut,
    /// `half_open → open`: a probe call was dropped before it completed.
    ProbeCancelled,
    /// `open | half_open → closed`: reset on request.
    ManualReset,
}

impl TransitionReason {
    /// The snake-case name used in status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailureThreshold => "failure_threshold",
            Self::RecoveryTimeoutElapsed => "recovery_timeout_elapsed",
            Self::ProbeSucceeded => "probe_succeeded",
            Self::ProbeFailed => "probe_failed",
            Self::ProbeTimedOut => "probe_timed_out",
            Self::ProbeCancelled => "probe_cancelled",
            Self::ManualReset => "manual_reset",
        }
    }
}

impl std::fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, returned to the caller so it can log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// When (the `now` passed in).
    pub at: Instant,
    /// When entering `open`: how long until the next probe.
    pub next_probe_in: Option<Duration>,
}

/// A call rejected by an open (or saturated half-open) breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {state}: next probe in {:.1} s", retry_in.as_secs_f64())]
pub struct Rejected {
    /// The breaker's state (`open` or `half_open`).
    pub state: BreakerState,
    /// How long until a call may be admitted again (at the latest, for `half_open`: the
    /// deadline of the earliest probe in flight).
    pub retry_in: Duration,
}

/// The last transition as shown in [`BreakerStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRecord {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// When (RFC 3339, UTC, second precision).
    pub at: String,
}

/// A breaker's status: the introspection details of its actor, the `get_circuit_breaker_status`
/// tool's answer, and the source of its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerStatus {
    /// `closed`, `open` or `half_open`.
    pub state: BreakerState,
    /// Consecutive failures (closed: towards the threshold; open: those that led here,
    /// including failed probes). Reset by a success.
    pub consecutive_failures: u32,
    /// Failures that open the breaker.
    pub failure_threshold: u32,
    /// When the breaker last opened (RFC 3339), while open or half open.
    pub opened_at: Option<String>,
    /// Milliseconds until a call would be admitted again: open, the time until `half_open`;
    /// half open, 0 if a probe slot is free, else the time until the earliest probe deadline.
    /// `null` while closed.
    pub next_probe_in_ms: Option<u64>,
    /// The recovery timeout of the current (or, while closed, the next) opening.
    pub current_recovery_timeout_ms: u64,
    /// Consecutive openings without a close in between (1 after the first opening).
    pub open_count: u32,
    /// Probe calls in flight (half open only).
    pub probes_in_flight: u32,
    /// Calls rejected since the breaker was created.
    pub total_rejections: u64,
    /// Failed calls since the breaker was created (failed, timed out or cancelled probes
    /// included).
    pub total_failures: u64,
    /// Successful calls since the breaker was created.
    pub total_successes: u64,
    /// Times the breaker opened (from closed or half open) since it was created.
    pub total_opens: u64,
    /// The last state change, if any.
    pub last_transition: Option<TransitionRecord>,
}
