//! Native operator health tools (seed 000): `system_dashboard`, `get_circuit_breaker_status`,
//! `reset_circuit_breaker`, `get_retry_queue_status`, `get_agent_health`, `get_journal_health`.
//!
//! They read the daemon's own state (the status tree, the breaker and queue handles, the run
//! log) without going through any actor's mailbox, and ask the session manager only for its
//! agents.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use revka_actors::StatusNode;
use serde_json::{Value, json};

use super::agents::{json_result, text_result};
use super::{BuiltinTool, ToolContext, ToolRegistry};
use crate::sidecars::SidecarServices;

/// What the health tools look at.
#[derive(Clone)]
struct Health {
    sidecar: SidecarServices,
    root: StatusNode,
}

impl Health {
    async fn agents(&self) -> Result<Vec<Value>, String> {
        let listed = self
            .sidecar
            .request("GET", "/agents", None, Some(Duration::from_secs(10)))
            .await
            .map_err(|e| e.to_string())?;
        Ok(listed
            .get("agents")
            .and_then(Value::as_array)
            .or_else(|| listed.as_array())
            .cloned()
            .unwrap_or_default())
    }

    fn journal(&self) -> Value {
        let runlog = crate::runlog::get()
            .map(|l| l.health())
            .unwrap_or_else(|| json!({ "status": "not open" }));
        let queue = self.sidecar.queue.published();
        json!({ "run_log": runlog, "retry_queue": queue })
    }
}

/// What a health tool runs.
type Runner = fn(Health, Value) -> BoxFuture<'static, Result<Value, String>>;

/// A health tool: a name, a description, its parameters, and what it does.
struct HealthTool {
    name: &'static str,
    description: &'static str,
    parameters: Value,
    run: Runner,
    health: Health,
}

impl BuiltinTool for HealthTool {
    fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": { "type": "object", "properties": self.parameters },
        })
    }

    fn call(&self, _ctx: ToolContext, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        (self.run)(self.health.clone(), args)
    }
}

fn flag(args: &Value, name: &str) -> bool {
    args.get(name).and_then(Value::as_bool).unwrap_or(true)
}

fn dashboard(h: Health, args: Value) -> BoxFuture<'static, Result<Value, String>> {
    Box::pin(async move {
        let mut out = json!({ "generated_at": revka_actors::status::rfc3339(SystemTime::now()) });
        if flag(&args, "include_health") {
            let (status, report) = crate::gateway::health_report(&h.root);
            out["health"] = report;
            out["health"]["status"] = json!(status);
            out["health"]["circuit_breaker"] =
                serde_json::to_value(h.sidecar.breaker.status()).unwrap_or_default();
            out["health"]["journal"] = h.journal();
        }
        if flag(&args, "include_agents") {
            out["agents"] = match h.agents().await {
                Ok(agents) => json!({ "count": agents.len(), "agents": agents }),
                Err(e) => json!({ "unavailable": e }),
            };
        }
        if flag(&args, "include_workflows") {
            out["workflows"] =
                json!({ "active": [], "note": "Revka runs no workflow engine; nothing to report" });
        }
        if flag(&args, "include_costs") {
            out["costs"] = json!({ "tracked": false, "note": "Revka does not meter model costs" });
        }
        Ok(json_result(out))
    })
}

fn breaker_status(h: Health, _: Value) -> BoxFuture<'static, Result<Value, String>> {
    Box::pin(async move {
        Ok(json_result(
            serde_json::to_value(h.sidecar.breaker.status()).unwrap_or_default(),
        ))
    })
}

fn breaker_reset(h: Health, _: Value) -> BoxFuture<'static, Result<Value, String>> {
    Box::pin(async move {
        h.sidecar.breaker.reset();
        tracing::info!("circuit breaker of the session manager reset by a tool call");
        Ok(json_result(
            serde_json::to_value(h.sidecar.breaker.status()).unwrap_or_default(),
        ))
    })
}

fn queue_status(h: Health, _: Value) -> BoxFuture<'static, Result<Value, String>> {
    Box::pin(async move {
        match h.sidecar.queue.status().await {
            Ok(status) => Ok(json_result(
                serde_json::to_value(status).unwrap_or_default(),
            )),
            // The queue actor is restarting or not running: its last published status.
            Err(e) => Ok(json_result(
                json!({ "unavailable": e.to_string(), "last_known": h.sidecar.queue.published() }),
            )),
        }
    })
}

fn agent_health(h: Health, args: Value) -> BoxFuture<'static, Result<Value, String>> {
    Box::pin(async move {
        let stuck_after = args
            .get("stuck_after_secs")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        let agents = match h.agents().await {
            Ok(a) => a,
            Err(e) => return Ok(text_result(e, true)),
        };
        let now = SystemTime::now();
        let mut stuck = Vec::new();
        for agent in &agents {
            let running = agent["status"] == "running";
            let last = agent["last_event_at"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            let quiet = last
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs());
            if running && quiet.is_none_or(|q| q > stuck_after) {
                stuck
                    .push(json!({ "id": agent["id"], "name": agent["name"], "quiet_secs": quiet }));
            }
        }
        Ok(json_result(json!({
            "agents": agents.len(),
            "running": agents.iter().filter(|a| a["status"] == "running").count(),
            "stuck_after_secs": stuck_after,
            "stuck": stuck,
        })))
    })
}

fn journal_health(h: Health, _: Value) -> BoxFuture<'static, Result<Value, String>> {
    Box::pin(async move { Ok(json_result(h.journal())) })
}

/// Registers the health tools.
pub fn register(registry: &mut ToolRegistry, sidecar: &SidecarServices, root: &StatusNode) {
    let health = Health {
        sidecar: sidecar.clone(),
        root: root.clone(),
    };
    let tools: [(&'static str, &'static str, Value, Runner); 6] = [
        (
            "system_dashboard",
            "One-call health check: active agents, workflow status, costs, and the health of the daemon, its MCP servers, sidecars, breaker and journals.",
            json!({
                "include_costs": { "type": "boolean" }, "include_agents": { "type": "boolean" },
                "include_workflows": { "type": "boolean" }, "include_health": { "type": "boolean" }
            }),
            dashboard,
        ),
        (
            "get_circuit_breaker_status",
            "State of the session manager's circuit breaker (closed/open/half_open), failure count, recovery timing.",
            json!({}),
            breaker_status,
        ),
        (
            "reset_circuit_breaker",
            "Force the session manager's circuit breaker back to closed (after confirming the sidecar is healthy).",
            json!({}),
            breaker_reset,
        ),
        (
            "get_retry_queue_status",
            "Pending and in-flight operations of the retry queue, success/failure counts, dead letters, per-operation details.",
            json!({}),
            queue_status,
        ),
        (
            "get_agent_health",
            "Find stuck agents: running with no event for longer than a threshold.",
            json!({ "stuck_after_secs": { "type": "integer", "description": "Default 300." } }),
            agent_health,
        ),
        (
            "get_journal_health",
            "Run log and retry-queue journal: size, write latency, rotation status.",
            json!({}),
            journal_health,
        ),
    ];
    for (name, description, parameters, run) in tools {
        registry.register(Arc::new(HealthTool {
            name,
            description,
            parameters,
            run,
            health: health.clone(),
        }));
    }
}
