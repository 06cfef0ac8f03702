//! The breaker's pure state machine: no tasks, no locks, time passed in by the caller.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{
    BreakerConfig, BreakerState, BreakerStatus, Rejected, Transition, TransitionReason,
    TransitionRecord,
};
use crate::status::rfc3339;

/// What kind of call a [`Permit`] admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitKind {
    /// A call through a closed breaker.
    Normal,
    /// A probe through a half-open breaker, with a deadline.
    Probe,
}

/// Leave to make one call, from [`BreakerCore::admit`]; hand it back to
/// [`BreakerCore::record`] with the outcome. A permit from an earlier state (the breaker
/// changed state while the call ran) updates the totals but drives no transition.
#[derive(Debug)]
#[must_use = "a permit must be handed back to `record` (a lost probe is only reaped at its deadline)"]
pub struct Permit {
    id: u64,
    epoch: u64,
    kind: PermitKind,
    deadline: Option<Instant>,
    transition: Option<Transition>,
}

impl Permit {
    /// Normal call or probe.
    pub fn kind(&self) -> PermitKind {
        self.kind
    }

    /// Whether this is a probe.
    pub fn is_probe(&self) -> bool {
        self.kind == PermitKind::Probe
    }

    /// A probe's deadline: past it, the probe counts as failed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The `open → half_open` transition this admission made, if any (taken once, to be logged).
    pub fn take_transition(&mut self) -> Option<Transition> {
        self.transition.take()
    }
}

/// How a call ended, for [`BreakerCore::record_outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed.
    Failure,
    /// A probe ran past its deadline (a failure).
    TimedOut,
    /// The call was dropped before it completed: a failure for a probe, nothing for a normal
    /// call (its caller gave up; that says nothing about the sidecar).
    Cancelled,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    rejections: u64,
    failures: u64,
    successes: u64,
    opens: u64,
}

/// The breaker's state machine. Time is injected (`now`), so paused-time tests drive it
/// exactly; the wall clock is read only for the RFC 3339 times shown in the status.
#[derive(Debug)]
pub struct BreakerCore {
    config: BreakerConfig,
    state: BreakerState,
    /// Bumped on every transition: permits from an earlier epoch drive no transition.
    epoch: u64,
    next_permit: u64,
    consecutive_failures: u32,
    open_count: u32,
    current_recovery: Duration,
    opened_at: Option<SystemTime>,
    next_probe_at: Option<Instant>,
    /// Probes in flight: permit id and deadline.
    probes: Vec<(u64, Instant)>,
    totals: Totals,
    last_transition: Option<TransitionRecord>,
}

impl BreakerCore {
    /// A closed breaker. The config is clamped: threshold and probe count at least 1, the
    /// recovery cap at least the initial recovery timeout.
    pub fn new(config: BreakerConfig) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            half_open_max_calls: config.half_open_max_calls.max(1),
            max_recovery_timeout: config.max_recovery_timeout.max(config.recovery_timeout),
            ..config
        };
        Self {
            config,
            state: BreakerState::Closed,
            epoch: 0,
            next_permit: 0,
            consecutive_failures: 0,
            open_count: 0,
            current_recovery: config.recovery_timeout,
            opened_at: None,
            next_probe_at: None,
            probes: Vec::new(),
            totals: Totals::default(),
            last_transition: None,
        }
    }

    /// The (clamped) config.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state. An open breaker whose recovery timeout has passed still says `open`
    /// until [`advance`](Self::advance) or [`admit`](Self::admit) moves it.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Admits a call or rejects it. Closed: a normal permit. Open: rejected until the recovery
    /// timeout has passed, then the breaker goes half open (the transition is carried by the
    /// permit) and the call is its first probe. Half open: a probe permit while fewer than
    /// `half_open_max_calls` probes are in flight, else rejected.
    ///
    /// Expired probes are not reaped here (that would be a transition a rejection could not
    /// report): call [`expire_probes`](Self::expire_probes) first, as the handle does.
    pub fn admit(&mut self, now: Instant) -> Result<Permit, Rejected> {
        let transition = match self.state {
            BreakerState::Closed => return Ok(self.permit(PermitKind::Normal, None, None)),
            BreakerState::Open => match self.next_probe_at {
                Some(at) if now < at => return Err(self.reject(at - now)),
                _ => Some(self.enter_half_open(now)),
            },
            BreakerState::HalfOpen => None,
        };
        if self.probes.len() >= self.config.half_open_max_calls as usize {
            let earliest = self.probes.iter().map(|&(_, d)| d).min().unwrap_or(now);
            return Err(self.reject(earliest.saturating_duration_since(now)));
        }
        let deadline = now + self.config.probe_timeout;
        let permit = self.permit(PermitKind::Probe, Some(deadline), transition);
        self.probes.push((permit.id, deadline));
        Ok(permit)
    }

    /// Records a call's success (`ok`) or failure. See [`record_outcome`](Self::record_outcome).
    pub fn record(&mut self, permit: Permit, ok: bool, now: Instant) -> Option<Transition> {
        let outcome = if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.record_outcome(permit, outcome, now)
    }

    /// Records how a call ended. Closed: a success resets the failure count, a failure counts
    /// towards the threshold. Half open: a probe success closes (and resets the backoff), a
    /// probe failure, time-out or cancellation re-opens with the recovery timeout doubled.
    /// A permit from an earlier state only updates the totals.
    pub fn record_outcome(
        &mut self,
        permit: Permit,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        if permit.kind == PermitKind::Normal && outcome == Outcome::Cancelled {
            return None;
        }
        let ok = outcome == Outcome::Success;
        if ok {
            self.totals.successes += 1;
        } else {
            self.totals.failures += 1;
        }
        if permit.epoch != self.epoch {
            return None;
        }
        match permit.kind {
            PermitKind::Normal => self.observe(ok, now),
            PermitKind::Probe => {
                let before = self.probes.len();
                self.probes.retain(|&(id, _)| id != permit.id);
                if self.probes.len() == before {
                    return None; // already reaped by `expire_probes`
                }
                if ok {
                    Some(self.close(TransitionReason::ProbeSucceeded, now))
                } else {
                    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                    let reason = match outcome {
                        Outcome::TimedOut => TransitionReason::ProbeTimedOut,
                        Outcome::Cancelled => TransitionReason::ProbeCancelled,
                        _ => TransitionReason::ProbeFailed,
                    };
                    Some(self.open(reason, now))
                }
            }
        }
    }

    /// Records an outcome observed without a permit (a caller that classifies outcomes
    /// itself), like a normal call admitted now: it counts towards the threshold while closed
    /// and only updates the totals while open or half open (only probes decide there).
    pub fn record_unpermitted(&mut self, ok: bool, now: Instant) -> Option<Transition> {
        let permit = self.permit(PermitKind::Normal, None, None);
        self.record(permit, ok, now)
    }

    /// Re-opens a half-open breaker if a probe's deadline has passed: a probe that never
    /// reports counts as a failure instead of wedging the breaker.
    pub fn expire_probes(&mut self, now: Instant) -> Option<Transition> {
        if self.state != BreakerState::HalfOpen || !self.probes.iter().any(|&(_, d)| d <= now) {
            return None;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        Some(self.open(TransitionReason::ProbeTimedOut, now))
    }

    /// Runs the time-driven transitions: probe expiry, then `open → half_open` once the
    /// recovery timeout has passed.
    pub fn advance(&mut self, now: Instant) -> Vec<Transition> {
        let mut out: Vec<Transition> = self.expire_probes(now).into_iter().collect();
        if self.state == BreakerState::Open && self.next_probe_at.is_none_or(|at| now >= at) {
            out.push(self.enter_half_open(now));
        }
        out
    }

    /// Closes the breaker from any state and resets the failure count and the backoff. No
    /// transition when it was already closed (the failure count is still cleared).
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        if self.state == BreakerState::Closed {
            self.consecutive_failures = 0;
            return None;
        }
        Some(self.close(TransitionReason::ManualReset, now))
    }

    /// The status at `now`.
    pub fn status(&self, now: Instant) -> BreakerStatus {
        let next_probe_in = match self.state {
            BreakerState::Closed => None,
            BreakerState::Open => Some(
                self.next_probe_at
                    .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
            ),
            BreakerState::HalfOpen => Some(
                if self.probes.len() < self.config.half_open_max_calls as usize {
                    Duration::ZERO
                } else {
                    let earliest = self.probes.iter().map(|&(_, d)| d).min().unwrap_or(now);
                    earliest.saturating_duration_since(now)
                },
            ),
        };
        BreakerStatus {
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            failure_threshold: self.config.failure_threshold,
            opened_at: self.opened_at.map(rfc3339),
            next_probe_in_ms: next_probe_in.map(millis),
            current_recovery_timeout_ms: millis(self.current_recovery),
            open_count: self.open_count,
            probes_in_flight: self.probes.len() as u32,
            total_rejections: self.totals.rejections,
            total_failures: self.totals.failures,
            total_successes: self.totals.successes,
            total_opens: self.totals.opens,
            last_transition: self.last_transition.clone(),
        }
    }

    fn permit(
        &mut self,
        kind: PermitKind,
        deadline: Option<Instant>,
        transition: Option<Transition>,
    ) -> Permit {
        self.next_permit += 1;
        Permit {
            id: self.next_permit,
            epoch: self.epoch,
            kind,
            deadline,
            transition,
        }
    }

    fn reject(&mut self, retry_in: Duration) -> Rejected {
        self.totals.rejections += 1;
        Rejected {
            state: self.state,
            retry_in,
        }
    }

    /// A normal outcome in the current epoch (so the breaker is closed).
    fn observe(&mut self, ok: bool, now: Instant) -> Option<Transition> {
        if self.state != BreakerState::Closed {
            return None;
        }
        if ok {
            self.consecutive_failures = 0;
            return None;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        (self.consecutive_failures >= self.config.failure_threshold)
            .then(|| self.open(TransitionReason::FailureThreshold, now))
    }

    fn open(&mut self, reason: TransitionReason, now: Instant) -> Transition {
        self.open_count = self.open_count.saturating_add(1);
        let factor = 1u32.checked_shl(self.open_count - 1).unwrap_or(u32::MAX);
        self.current_recovery = self
            .config
            .recovery_timeout
            .saturating_mul(factor)
            .min(self.config.max_recovery_timeout);
        self.opened_at = Some(SystemTime::now());
        self.next_probe_at = Some(now + self.current_recovery);
        self.probes.clear();
        self.totals.opens += 1;
        let mut t = self.transition(BreakerState::Open, reason, now);
        t.next_probe_in = Some(self.current_recovery);
        t
    }

    fn enter_half_open(&mut self, now: Instant) -> Transition {
        self.next_probe_at = None;
        self.probes.clear();
        self.transition(
            BreakerState::HalfOpen,
            TransitionReason::RecoveryTimeoutElapsed,
            now,
        )
    }

    fn close(&mut self, reason: TransitionReason, now: Instant) -> Transition {
        self.consecutive_failures = 0;
        self.open_count = 0;
        self.current_recovery = self.config.recovery_timeout;
        self.opened_at = None;
        self.next_probe_at = None;
        self.probes.clear();
        self.transition(BreakerState::Closed, reason, now)
    }

    fn transition(
        &mut self,
        to: BreakerState,
        reason: TransitionReason,
        now: Instant,
    ) -> Transition {
        let from = self.state;
        self.state = to;
        self.epoch += 1;
        self.last_transition = Some(TransitionRecord {
            from,
            to,
            reason,
            at: rfc3339(SystemTime::now()),
        });
        Transition {
            from,
            to,
            reason,
            at: now,
            next_probe_in: None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
