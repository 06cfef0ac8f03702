//! `[session_manager]`: the Node session-manager sidecar, its circuit breaker and retry queue.
//!
//! Part of the config layer. The `sidecars` supervisor (rest_for_one) runs the sidecar process,
//! then its breaker, then its retry queue; these types carry their settings. Defaults put the
//! sidecar's script and socket under `REVKA_HOME`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use revka_actors::supervisor::RestartPolicy;
use serde::{Deserialize, Serialize};

use super::supervision::{RestartOverride, SupervisorConfig};

/// `[session_manager]`: the Node.js session manager, serving HTTP on a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [session_manager] table")]
pub struct SessionManagerConfig {
    /// Run the sidecar (it is opt-in: installed with `--with-session-manager`).
    /// Default `false`.
    pub enabled: bool,
    /// The command line (program, then arguments; a leading `~` in each is expanded).
    /// Default `["node", "$REVKA_HOME/operator_mcp/session-manager/session-manager.js"]`.
    pub command: Vec<String>,
    /// The Unix socket it listens on (`~` expanded).
    /// Default `$REVKA_HOME/operator_mcp/session-manager.sock`.
    pub socket_path: PathBuf,
    /// How long it may take to answer `GET /health` after a start, in seconds. Default `15`.
    pub startup_timeout_secs: u64,
    /// Seconds between liveness probes (`GET /health`). Default `10`.
    pub liveness_interval_secs: u64,
    /// Consecutive failed probes after which the sidecar is restarted. Default `3`.
    pub liveness_failures: u32,
    /// Overrides of `[supervisor]`'s restart policy for the sidecar process. Default: none.
    #[serde(skip_serializing_if = "RestartOverride::is_empty")]
    pub restart: RestartOverride,
    /// `[session_manager.breaker]`: the circuit breaker in front of the sidecar.
    pub breaker: BreakerConfig,
    /// `[session_manager.retry_queue]`: where failed sidecar calls wait for another try.
    pub retry_queue: RetryQueueConfig,
}

impl Default for SessionManagerConfig {
    /// The defaults, with paths under the process environment's `REVKA_HOME`.
    fn default() -> Self {
        Self::default_in(&super::revka_home())
    }
}

impl SessionManagerConfig {
    /// The defaults, with paths under `home`.
    pub fn default_in(home: &Path) -> Self {
        Self {
            enabled: false,
            command: Self::default_command(home),
            socket_path: Self::default_socket_path(home),
            startup_timeout_secs: 15,
            liveness_interval_secs: 10,
            liveness_failures: 3,
            restart: RestartOverride::default(),
            breaker: BreakerConfig::default(),
            retry_queue: RetryQueueConfig::default(),
        }
    }

    /// The default command line under `home`.
    pub fn default_command(home: &Path) -> Vec<String> {
        let script = home
            .join("operator_mcp")
            .join("session-manager")
            .join("session-manager.js");
        vec!["node".to_owned(), script.to_string_lossy().into_owned()]
    }

    /// The default socket under `home`.
    pub fn default_socket_path(home: &Path) -> PathBuf {
        home.join("operator_mcp").join("session-manager.sock")
    }

    /// The sidecar's restart policy: `[supervisor]` with its overrides applied.
    pub fn policy(&self, defaults: &SupervisorConfig) -> RestartPolicy {
        self.restart.apply(defaults.policy())
    }

    /// [`Self::startup_timeout_secs`] as a duration.
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_secs)
    }

    /// [`Self::liveness_interval_secs`] as a duration.
    pub fn liveness_interval(&self) -> Duration {
        Duration::from_secs(self.liveness_interval_secs)
    }
}

/// `[session_manager.breaker]`: closed → open after `failure_threshold` failures; open →
/// half-open after the recovery timeout (doubling on each failed probe up to the max);
/// half-open lets `half_open_max_calls` calls through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [session_manager.breaker] table")]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; ≥ 1. Default `3`.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe, in seconds; > 0. Default `10`.
    pub recovery_timeout_secs: u64,
    /// Cap of the growing recovery timeout, in seconds; ≥ `recovery_timeout_secs`.
    /// Default `300`.
    pub max_recovery_timeout_secs: u64,
    /// Calls let through while half-open; ≥ 1. Default `1`.
    pub half_open_max_calls: u32,
    /// Deadline of one probe, in seconds; > 0. Default `10`.
    pub probe_timeout_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            recovery_timeout_secs: 10,
            max_recovery_timeout_secs: 300,
            half_open_max_calls: 1,
            probe_timeout_secs: 10,
        }
    }
}

/// What the retry queue does with a new operation when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse the new operation; its caller gets an error.
    #[default]
    Reject,
    /// Move the oldest queued operation to the dead-letter list and accept the new one.
    DeadLetterOldest,
}

/// `[session_manager.retry_queue]`: operations that failed against the sidecar, retried with
/// backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [session_manager.retry_queue] table")]
pub struct RetryQueueConfig {
    /// Queued operations at most; ≥ 1. Default `1000`.
    pub capacity: u32,
    /// Retries of one operation before it is dead-lettered. Default `3`.
    pub max_retries: u32,
    /// Delay floor between retries, in seconds; ≤ `backoff_max_secs`. Default `2`.
    pub backoff_min_secs: u64,
    /// Delay cap between retries, in seconds. Default `30`.
    pub backoff_max_secs: u64,
    /// Deadline of one attempt, in seconds; > 0. Default `30`.
    pub attempt_timeout_secs: u64,
    /// Attempts in flight at once; ≥ 1. Default `4`.
    pub concurrency: u32,
    /// `reject` or `dead_letter_oldest`. Default `"reject"`.
    pub on_full: OnFull,
    /// Dead-lettered operations kept for inspection (oldest dropped first). Default `1000`.
    pub dead_letter_capacity: u32,
}

impl Default for RetryQueueConfig {
    fn default() -> Self {
        Self {
            capacity: 1000,
            max_retries: 3,
            backoff_min_secs: 2,
            backoff_max_secs: 30,
            attempt_timeout_secs: 30,
            concurrency: 4,
            on_full: OnFull::Reject,
            dead_letter_capacity: 1000,
        }
    }
}
