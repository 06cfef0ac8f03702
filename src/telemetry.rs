//! The daemon's Prometheus metrics (`GET /metrics` on the gateway).
//!
//! Families updated on hot paths (tool calls) are held as handles; everything that is already
//! state somewhere else (actor states and restarts in the status tree, sessions, breakers, the
//! retry queue, the process itself) is read by callback families at scrape time, so it can
//! never drift. `actors` exports the status tree without listing anything per session,
//! `process` the standard `process_*` families. `history` keeps per-server calls/s, error
//! rate and latency percentiles of the last 15 minutes from the same counters, for the
//! dashboard.
//!
//! No label value comes from a client: labels are configured names (servers, tools, breakers),
//! paths of the bounded part of the tree, and fixed sets (states, outcomes, events). Session
//! ids and labels appear nowhere.

mod actors;
pub mod history;
mod process;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use revka_actors::StatusNode;
use revka_actors::metrics::{Counter, Family, Histogram, Metrics, MetricsError};
use revka_actors::session::Sessions;

/// Metric handles of the tool-call path.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The registry.
    pub metrics: Arc<Metrics>,
    calls: Family<Counter>,
    latency: Family<Histogram>,
    relayed: Family<Counter>,
    relay_latency: Family<Histogram>,
    server_logs: Family<Counter>,
    refusals: Family<Counter>,
    /// Per-server call statistics over the last minutes (`GET /api/servers/stats`).
    history: Arc<history::History>,
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
    /// Registers every family and the callback families over `root` and `sessions`.
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
        let relayed = metrics.counter(
            "revka_relayed_requests_total",
            "Requests upstream servers sent to Revka's clients (sampling, elicitation, roots), by server, method and outcome (result, error, cancelled).",
            &["server", "method", "outcome"],
        )?;
        let relay_latency = metrics.histogram(
            "revka_relayed_request_duration_seconds",
            "Time from an upstream server's request to the answer Revka sent back, by server.",
            &["server"],
        )?;
        let server_logs = metrics.counter(
            "revka_server_log_messages_total",
            "Log messages (notifications/message) of upstream servers that no call relates to, by server and outcome (delivered, dropped by the flood limit).",
            &["server", "outcome"],
        )?;
        let refusals = metrics.counter(
            "revka_builtin_refusals_total",
            "Built-in tool calls the security policy refused, by tool and rule.",
            &["tool", "rule"],
        )?;
        metrics
            .gauge(
                "revka_build_info",
                "Always 1; the labels say which build is running.",
                &["version", "os", "arch"],
            )?
            .with(&[
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
            ])
            .set(1.0);
        actors::register(&metrics, root)?;
        process::register(&metrics)?;
        let table = sessions.clone();
        metrics.register_gauge_fn(
            "revka_sessions",
            "Live MCP sessions.",
            &[],
            Box::new(move || vec![(vec![], table.len() as f64)]),
        )?;
        let table = sessions.clone();
        metrics.register_counter_fn(
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
            relayed,
            relay_latency,
            server_logs,
            refusals,
            history: Arc::default(),
        })
    }

    /// Registers the breaker and retry-queue families of the session manager.
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

    /// Records one request of an upstream server relayed to a client (or answered for it).
    /// The method label is one of a fixed set: a server's own method names are not labels.
    pub fn record_relay(
        &self,
        server: &str,
        method: &str,
        outcome: revka_mcp::client::Outcome,
        took: Duration,
    ) {
        let method = match method {
            "sampling/createMessage" | "elicitation/create" | "roots/list" => method,
            _ => "other",
        };
        let outcome = match outcome {
            revka_mcp::client::Outcome::Result => "result",
            revka_mcp::client::Outcome::Error => "error",
            revka_mcp::client::Outcome::Cancelled => "cancelled",
        };
        self.relayed.with(&[server, method, outcome]).inc();
        self.relay_latency.with(&[server]).observe_duration(took);
    }

    /// Records one unrelated log message of an upstream server: delivered, or dropped by the
    /// flood limit.
    pub fn record_server_log(&self, server: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "dropped" };
        self.server_logs.with(&[server, outcome]).inc();
    }

    /// Counts one built-in tool call the security policy refused by `rule`.
    pub fn record_refusal(&self, tool: &str, rule: &str) {
        self.refusals.with(&[tool, rule]).inc();
    }

    /// The per-server call statistics of the last minutes (filled by
    /// [`history::spawn_sampler`]).
    pub fn history(&self) -> &history::History {
        &self.history
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.metrics.render()
    }
}
