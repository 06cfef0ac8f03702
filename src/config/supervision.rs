//! `[supervisor]` and the per-child `restart` override tables, and their conversion into the
//! supervisor's policy types and the MCP servers' liveness probe ([`PingPolicy`]).
//!
//! Part of the config layer. `revka_actors::supervisor` consumes [`RestartPolicy`] and
//! [`Intensity`]; this module is the only place that builds them from config, so the numbers an
//! operator writes are the numbers the supervision tree runs with.

use std::time::Duration;

use revka_actors::supervisor::{Backoff, Intensity, RestartPolicy, RestartType, Shutdown};
use revka_mcp::spec::PingPolicy;
use serde::{Deserialize, Serialize};

/// `[supervisor]`: the default restart policy of every supervised child, and the restart
/// intensity of each supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [supervisor] table")]
pub struct SupervisorConfig {
    /// Which exits are restarted: `permanent` (all), `transient` (abnormal ones only) or
    /// `temporary` (none). Default `"permanent"`.
    pub restart: RestartType,
    /// Restarts of one child allowed within `window_secs`; one more marks it failed.
    /// Default `5`.
    pub max_restarts: u32,
    /// The sliding window of `max_restarts`, in seconds; must be > 0. Default `60`.
    pub window_secs: u64,
    /// Delay floor between consecutive restarts, in milliseconds; ≤ `backoff_max_ms`.
    /// Default `100`.
    pub backoff_min_ms: u64,
    /// Delay cap between consecutive restarts, in milliseconds. Default `30000`.
    pub backoff_max_ms: u64,
    /// Uptime after which a run counts as stable and the backoff starts over, in seconds;
    /// must be > 0. Default `300`.
    pub reset_after_secs: u64,
    /// How long a stopping child gets before it is killed, in milliseconds; must be > 0.
    /// Default `5000`.
    pub shutdown_timeout_ms: u64,
    /// Restarts across all of one supervisor's children tolerated within
    /// `intensity_period_secs`; more and the supervisor gives up and fails upward. Default `30`.
    pub intensity: u32,
    /// The sliding window of `intensity`, in seconds; must be > 0. Default `60`.
    pub intensity_period_secs: u64,
    /// Grace period of the daemon's whole-tree shutdown, in seconds, after which what is still
    /// running is killed; must be > 0. Default `30`.
    pub shutdown_grace_secs: u64,
    /// An MCP server that sent no answer (and no progress) for this long is pinged, in
    /// seconds; `0` turns the probe off; at most 3600. Default `30`.
    pub ping_interval_secs: u64,
    /// Failed pings in a row after which an MCP server is restarted as `unresponsive`;
    /// 1 to 100. Default `3`.
    pub ping_failures: u32,
}

/// The longest `ping_interval_secs`: an hour (a longer wait finds nothing in useful time; `0`
/// turns the probe off).
pub const MAX_PING_INTERVAL_SECS: u64 = 3600;
/// The most `ping_failures`.
pub const MAX_PING_FAILURES: u32 = 100;

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            restart: RestartType::Permanent,
            max_restarts: 5,
            window_secs: 60,
            backoff_min_ms: 100,
            backoff_max_ms: 30_000,
            reset_after_secs: 300,
            shutdown_timeout_ms: 5000,
            intensity: 30,
            intensity_period_secs: 60,
            shutdown_grace_secs: 30,
            ping_interval_secs: PingPolicy::standard().interval.as_secs(),
            ping_failures: PingPolicy::standard().failures,
        }
    }
}

impl SupervisorConfig {
    /// The default child restart policy.
    pub fn policy(&self) -> RestartPolicy {
        RestartPolicy {
            restart: self.restart,
            max_restarts: self.max_restarts,
            window: Duration::from_secs(self.window_secs),
            backoff: Backoff {
                min: Duration::from_millis(self.backoff_min_ms),
                max: Duration::from_millis(self.backoff_max_ms),
                reset_after: Duration::from_secs(self.reset_after_secs),
            },
            shutdown: Shutdown::Timeout(Duration::from_millis(self.shutdown_timeout_ms)),
        }
    }

    /// Each supervisor's restart intensity.
    pub fn intensity(&self) -> Intensity {
        Intensity {
            max_restarts: self.intensity,
            period: Duration::from_secs(self.intensity_period_secs),
        }
    }

    /// [`Self::shutdown_grace_secs`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The default liveness probe of MCP servers.
    pub fn ping(&self) -> PingPolicy {
        PingPolicy {
            interval: Duration::from_secs(self.ping_interval_secs),
            failures: self.ping_failures,
        }
    }
}

/// A `restart` table on a server or sidecar: each key set replaces the same key of
/// `[supervisor]` for that child only. All keys are optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a restart table")]
pub struct RestartOverride {
    /// Replaces `supervisor.restart`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartType>,
    /// Replaces `supervisor.max_restarts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Replaces `supervisor.window_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u64>,
    /// Replaces `supervisor.backoff_min_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_min_ms: Option<u64>,
    /// Replaces `supervisor.backoff_max_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// Replaces `supervisor.reset_after_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_after_secs: Option<u64>,
    /// Replaces `supervisor.shutdown_timeout_ms` (and makes the shutdown graceful).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_ms: Option<u64>,
    /// `true`: kill the child at once instead of stopping it gracefully; `false`: graceful
    /// stop with the timeout. Default: graceful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brutal_kill: Option<bool>,
    /// Replaces `supervisor.ping_interval_secs` (MCP servers only; `0` turns the probe off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_interval_secs: Option<u64>,
    /// Replaces `supervisor.ping_failures` (MCP servers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_failures: Option<u32>,
}

impl RestartOverride {
    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The liveness probe `base` with the ping keys set here replaced.
    pub fn ping(&self, base: PingPolicy) -> PingPolicy {
        PingPolicy {
            interval: self
                .ping_interval_secs
                .map_or(base.interval, Duration::from_secs),
            failures: self.ping_failures.unwrap_or(base.failures),
        }
    }

    /// The ping keys set here, as `(key, set)` (a sidecar's table must have none).
    pub(crate) fn ping_keys(&self) -> [(&'static str, bool); 2] {
        [
            ("ping_interval_secs", self.ping_interval_secs.is_some()),
            ("ping_failures", self.ping_failures.is_some()),
        ]
    }

    /// `base` with every key set here replaced.
    pub fn apply(&self, base: RestartPolicy) -> RestartPolicy {
        let mut p = base;
        if let Some(restart) = self.restart {
            p.restart = restart;
        }
        if let Some(n) = self.max_restarts {
            p.max_restarts = n;
        }
        if let Some(s) = self.window_secs {
            p.window = Duration::from_secs(s);
        }
        if let Some(ms) = self.backoff_min_ms {
            p.backoff.min = Duration::from_millis(ms);
        }
        if let Some(ms) = self.backoff_max_ms {
            p.backoff.max = Duration::from_millis(ms);
        }
        if let Some(s) = self.reset_after_secs {
            p.backoff.reset_after = Duration::from_secs(s);
        }
        let timeout = match (self.shutdown_timeout_ms, base.shutdown) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Shutdown::Timeout(t)) => t,
            (None, Shutdown::BrutalKill) => default_shutdown_timeout(),
        };
        p.shutdown = match self.brutal_kill {
            Some(true) => Shutdown::BrutalKill,
            Some(false) => Shutdown::Timeout(timeout),
            None if self.shutdown_timeout_ms.is_some() => Shutdown::Timeout(timeout),
            None => base.shutdown,
        };
        p
    }
}

/// The policy problems of `policy`, as `(key, message)` with keys relative to the table that
/// set them (`[supervisor]` or a `restart` override).
pub(crate) fn policy_problems(policy: &RestartPolicy) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if policy.window.is_zero() {
        out.push(("window_secs", "must be greater than 0".to_owned()));
    }
    if policy.backoff.min > policy.backoff.max {
        out.push((
            "backoff_min_ms",
            format!(
                "backoff_min_ms ({} ms) is greater than backoff_max_ms ({} ms)",
                policy.backoff.min.as_millis(),
                policy.backoff.max.as_millis()
            ),
        ));
    }
    if policy.backoff.reset_after.is_zero() {
        out.push(("reset_after_secs", "must be greater than 0".to_owned()));
    }
    if policy.shutdown == Shutdown::Timeout(Duration::ZERO) {
        out.push((
            "shutdown_timeout_ms",
            "must be greater than 0 (use brutal_kill = true to kill at once)".to_owned(),
        ));
    }
    out
}

/// The problem of a ping key's value, if any, as `(key, message)`: an interval above
/// [`MAX_PING_INTERVAL_SECS`], failures out of `1..=`[`MAX_PING_FAILURES`].
pub(crate) fn ping_problem(
    interval_secs: Option<u64>,
    failures: Option<u32>,
) -> Option<(&'static str, String)> {
    if interval_secs.is_some_and(|s| s > MAX_PING_INTERVAL_SECS) {
        return Some((
            "ping_interval_secs",
            format!("must be at most {MAX_PING_INTERVAL_SECS} (0 turns the probe off)"),
        ));
    }
    match failures {
        Some(0) => Some((
            "ping_failures",
            "must be at least 1 (ping_interval_secs = 0 turns the probe off)".to_owned(),
        )),
        Some(n) if n > MAX_PING_FAILURES => Some((
            "ping_failures",
            format!("must be at most {MAX_PING_FAILURES}"),
        )),
        _ => None,
    }
}

/// The graceful timeout of `Shutdown::default()`, for an override that turns a brutal kill
/// back into a graceful stop without giving a timeout.
fn default_shutdown_timeout() -> Duration {
    match Shutdown::default() {
        Shutdown::Timeout(t) => t,
        Shutdown::BrutalKill => Duration::from_millis(5000),
    }
}
