//! Child specifications: how a supervisor starts, restarts and stops each child.
//!
//! A [`ChildSpec`] is plain data plus a start function. The supervisor calls the start function
//! with a [`ChildContext`] every time the child (re)starts; the function spawns the child actor
//! linked to `ctx.supervisor` and returns its cell. Policies are validated values: the config
//! layer builds them from `[supervisor]` and per-server overrides.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{ActorCell, SpawnErr};
use serde::{Deserialize, Serialize};

use crate::status::StatusNode;

/// When a child is restarted after it exits (OTP restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always restarted, whatever the exit.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (panic, error, kill, non-zero exit, signal).
    Transient,
    /// Never restarted; removed from the supervisor when it exits.
    Temporary,
}

impl RestartType {
    /// Whether an exit of this kind gets a restart.
    pub fn restarts_after(self, exit: &ExitKind) -> bool {
        match self {
            Self::Permanent => true,
            Self::Transient => exit.is_abnormal(),
            Self::Temporary => false,
        }
    }
}

impl fmt::Display for RestartType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Permanent => "permanent",
            Self::Transient => "transient",
            Self::Temporary => "temporary",
        })
    }
}

/// How a child is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Ask it to stop (its `post_stop` runs: an OS process gets SIGTERM), then kill it if it
    /// has not stopped within the timeout.
    Timeout(Duration),
    /// Kill it at once (no `post_stop`; OS resources go in `Drop`).
    BrutalKill,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::Timeout(Duration::from_millis(5000))
    }
}

/// Restart delays: the first restart after a stable run is immediate; consecutive restarts
/// wait `min`, then up to `2·min`, `4·min`, ... capped at `max`, with full jitter above `min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Floor of the delay between consecutive restarts.
    pub min: Duration,
    /// Cap of the delay.
    pub max: Duration,
    /// Uptime after which a run counts as stable and the sequence starts over.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The largest delay the `attempt`-th consecutive restart (1-based) may get.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempt - 2).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max).max(self.min)
    }

    /// The delay before the `attempt`-th consecutive restart (1-based): zero for the first,
    /// then uniformly random in `[min, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        if ceiling.is_zero() || ceiling <= self.min {
            return ceiling;
        }
        let span = (ceiling - self.min).as_nanos().min(u64::MAX as u128) as u64;
        self.min + Duration::from_nanos(fastrand::u64(0..=span))
    }
}

/// A child's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestartPolicy {
    /// Which exits are restarted.
    pub restart: RestartType,
    /// Restarts allowed within `window`; one more marks the child `failed`.
    pub max_restarts: u32,
    /// The sliding window of `max_restarts`.
    pub window: Duration,
    /// Delays between restarts.
    pub backoff: Backoff,
    /// How the child is stopped.
    pub shutdown: Shutdown,
}

impl RestartPolicy {
    /// The project default: permanent, 5 restarts in 60 s, backoff 100 ms → 30 s, reset after
    /// 300 s, 5 s graceful shutdown.
    pub fn standard() -> Self {
        Self {
            restart: RestartType::Permanent,
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Backoff::default(),
            shutdown: Shutdown::default(),
        }
    }

    /// The same policy with another restart type.
    pub fn with_restart(mut self, restart: RestartType) -> Self {
        self.restart = restart;
        self
    }

    /// The same policy with another shutdown.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// How the failure of one child affects its siblings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the failed child is restarted.
    #[default]
    OneForOne,
    /// Every child is stopped (reverse order) and all are restarted (in order).
    OneForAll,
    /// The children started after the failed one are stopped (reverse order), then the failed
    /// child and those after it are restarted (in order).
    RestForOne,
}

/// A supervisor's own restart intensity: more than `max_restarts` restarts across all its
/// children within `period` and it gives up, stopping its children and failing upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts tolerated within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Self {
            max_restarts: 30,
            period: Duration::from_secs(60),
        }
    }
}

/// How a child exited, as classified by its supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    /// It stopped by itself without error, or an OS process exited with status 0.
    Normal(Option<String>),
    /// A panic, an `Err` from a handler, a kill, a failed start, or an OS process that exited
    /// non-zero or by a signal.
    Abnormal(String),
    /// A failure no restart can fix: a person must act first (the child's error was a
    /// [`NeedsOperator`]). The child is marked failed at once, whatever its restart type.
    Fatal(String),
}

/// The error a child fails with when restarting it cannot help (e.g. an MCP server whose
/// OAuth tokens were revoked: "run `revka mcp login <name>`"): its supervisor marks it failed
/// with this reason instead of restarting it in a loop. A restart on request still works.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NeedsOperator(pub String);

impl ExitKind {
    /// Whether this exit is abnormal.
    pub fn is_abnormal(&self) -> bool {
        matches!(self, Self::Abnormal(_) | Self::Fatal(_))
    }

    /// The human-readable reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::Normal(Some(r)) | Self::Abnormal(r) | Self::Fatal(r) => r,
            Self::Normal(None) => "normal",
        }
    }
}

/// What a start function receives.
#[derive(Debug, Clone)]
pub struct ChildContext {
    /// The supervisor to link the child to (`spawn_linked(.., ctx.supervisor)`).
    pub supervisor: ActorCell,
    /// The child's status node: the child publishes its details here.
    pub node: StatusNode,
    /// 0 for the first start, then the number of restarts so far.
    pub attempt: u64,
}

/// Starts one child, linked to `ctx.supervisor`, and returns its cell.
pub type StartFn =
    Arc<dyn Fn(ChildContext) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// Everything a supervisor needs to run one child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique id among its siblings; the last segment of its path.
    pub id: String,
    /// The actor kind shown in introspection.
    pub kind: &'static str,
    /// Restart and shutdown policy.
    pub policy: RestartPolicy,
    /// The start function.
    pub start: StartFn,
    /// Whether the supervisor starts it with its siblings. A child that is not autostarted
    /// stays `stopped` until a `RestartChild` request (e.g. an MCP server with
    /// `auto_connect = false`).
    pub autostart: bool,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("policy", &self.policy)
            .field("autostart", &self.autostart)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A spec from an async start function.
    pub fn new<F, Fut>(
        id: impl Into<String>,
        kind: &'static str,
        policy: RestartPolicy,
        start: F,
    ) -> Self
    where
        F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
    {
        Self {
            id: id.into(),
            kind,
            policy,
            start: Arc::new(move |ctx| Box::pin(start(ctx))),
            autostart: true,
        }
    }

    /// The same spec, registered but not started until requested.
    pub fn manual(mut self) -> Self {
        self.autostart = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_doubles_with_jitter_within_bounds() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            reset_after: Duration::from_secs(300),
        };
        assert_eq!(b.delay(1), Duration::ZERO);
        assert_eq!(b.delay(2), Duration::from_millis(100));
        let ceilings: Vec<u128> = (1..=7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [0, 100, 200, 400, 800, 1000, 1000]);
        for attempt in 3..40 {
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(
                    d >= b.min && d <= b.ceiling(attempt),
                    "attempt {attempt}: {d:?}"
                );
            }
        }
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert_eq!(b.ceiling(u32::MAX), b.max);
    }

    #[test]
    fn restart_types_against_exit_kinds() {
        let normal = ExitKind::Normal(None);
        let abnormal = ExitKind::Abnormal("killed".into());
        let table = [
            (RestartType::Permanent, &normal, true),
            (RestartType::Permanent, &abnormal, true),
            (RestartType::Transient, &normal, false),
            (RestartType::Transient, &abnormal, true),
            (RestartType::Temporary, &normal, false),
            (RestartType::Temporary, &abnormal, false),
        ];
        for (rt, exit, want) in table {
            assert_eq!(rt.restarts_after(exit), want, "{rt} after {exit:?}");
        }
    }
}
