//! The daemon's Prometheus metrics (`GET /metrics` on the gateway).
//!
//! Families updated on hot paths (tool calls) are held as handles; everything that is already
//! state somewhere else (actor states and restarts in the status tree, sessions, event
//! subscribers) is read by callback gauges at scrape time, so it can never drift.

use std::sync::Arc;
use std::time::Duration;

use revka_actors::metrics::{Counter, Family, Histogram, Metrics, MetricsError};
use revka_actors::session::Sessions;
use revka_actors::{ActorState, StatusNode};

/// The states an actor can be in, for the one-hot `revka_actor_state` gauge.
const STATES: [ActorState; 6] = [
    ActorState::Starting,
    ActorState::Running,
    ActorState::BackingOff,
    ActorState::Stopping,
    ActorState::Stopped,
    ActorState::Failed,
];

/// Metric handles of the tool-call path.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The registry.
    pub metrics: Arc<Metrics>,
    calls: Family<Counter>,
    latency: Family<Histogram>,
}

/// How a tool call ended, for the `outcome` label.
#[derive(Debug, Clone, Copy)]
pub enum CallOutcome {
    /// A result that is not an error.
    Ok,
    /// An error result (tool error, timeout, server down).
    Error,
    /// Cancelled by the client, or the client left.
    Cancelled,
}

impl Telemetry {
    /// Registers every family and the callback gauges over `root` and `sessions`.
    pub fn new(root: &StatusNode, sessions: &Arc<Sessions>) -> Result<Self, MetricsError> {
        let metrics = Arc::new(Metrics::new());
        let calls = metrics.counter(
            "revka_tool_calls_total",
            "Tool calls through the MCP server, by server (\"builtin\" for built-in tools), tool and outcome.",
            &["server", "tool", "outcome"],
        )?;
        let latency = metrics.histogram(
            "revka_tool_call_duration_seconds",
            "Wall time of tool calls through the MCP server, by server.",
            &["server"],
        )?;
        let tree = root.clone();
        metrics.register_gauge_fn(
            "revka_actor_restarts",
            "Restarts of each supervised actor since the daemon started.",
            &["path", "kind"],
            Box::new(move || {
                let mut rows = Vec::new();
                tree.walk(&mut |n| {
                    rows.push((
                        vec![n.path().to_owned(), n.kind().to_owned()],
                        n.restarts() as f64,
                    ))
                });
                rows
            }),
        )?;
        let tree = root.clone();
        metrics.register_gauge_fn(
            "revka_actor_state",
            "Current state of each supervised actor (1 for its state, 0 otherwise).",
            &["path", "kind", "state"],
            Box::new(move || {
                let mut rows = Vec::new();
                tree.walk(&mut |n| {
                    let current = n.state();
                    for state in STATES {
                        let value = if state == current { 1.0 } else { 0.0 };
                        rows.push((
                            vec![
                                n.path().to_owned(),
                                n.kind().to_owned(),
                                state.as_str().to_owned(),
                            ],
                            value,
                        ));
                    }
                });
                rows
            }),
        )?;
        let table = sessions.clone();
        metrics.register_gauge_fn(
            "revka_sessions",
            "Live MCP sessions.",
            &[],
            Box::new(move || vec![(vec![], table.len() as f64)]),
        )?;
        let table = sessions.clone();
        metrics.register_gauge_fn(
            "revka_session_events_total",
            "MCP sessions created, expired and evicted since start.",
            &["event"],
            Box::new(move || {
                let (created, expired, evicted) = table.counters();
                vec![
                    (vec!["created".into()], created as f64),
                    (vec!["expired".into()], expired as f64),
                    (vec!["evicted".into()], evicted as f64),
                ]
            }),
        )?;
        let table = sessions.clone();
        metrics.register_gauge_fn(
            "revka_progress_subscribers",
            "Subscribers of session event streams.",
            &[],
            Box::new(move || {
                vec![(
                    vec![],
                    table.all().iter().map(|s| s.subscribers()).sum::<usize>() as f64,
                )]
            }),
        )?;
        Ok(Self {
            metrics,
            calls,
            latency,
        })
    }

    /// Registers the breaker and retry-queue gauges of the session manager.
    pub fn register_sidecar(
        &self,
        sidecar: &crate::sidecars::SidecarServices,
    ) -> Result<(), MetricsError> {
        sidecar.breakers.register_metrics(&self.metrics)?;
        let queue = sidecar.queue.clone();
        self.metrics.register_gauge_fn(
            "revka_retry_queue_depth",
            "Operations waiting in the session manager's retry queue (pending, in flight, and in the inbox while the queue restarts with its sidecar) and dead-lettered.",
            &["queue", "state"],
            Box::new(move || {
                let status = queue.published();
                vec![
                    (vec!["session_manager".into(), "pending".into()], status.pending as f64),
                    (vec!["session_manager".into(), "in_flight".into()], status.in_flight as f64),
                    (vec!["session_manager".into(), "inbox".into()], status.inbox as f64),
                    (vec!["session_manager".into(), "dead".into()], status.dead_letters as f64),
                ]
            }),
        )
    }

    /// Records one tool call.
    pub fn record_call(&self, server: &str, tool: &str, outcome: CallOutcome, took: Duration) {
        let outcome = match outcome {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Cancelled => "cancelled",
        };
        self.calls.with(&[server, tool, outcome]).inc();
        self.latency.with(&[server]).observe_duration(took);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.metrics.render()
    }
}
