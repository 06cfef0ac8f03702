//! Native operator health tools (seed 000): `system_dashboard`, `get_circuit_breaker_status`,
//! `reset_circuit_breaker`, `get_retry_queue_status`, `get_agent_health`, `get_journal_health`,
//! and the retry queue's dead-letter tools `replay_dead_letters` and `drop_dead_letters`.
//!
//! They read the daemon's own state (the status tree, the breaker and queue handles, the run
//! log, the agent layer's budget ledger and fallback agents) without going through any actor's
//! mailbox, and ask the session manager only for its agents. `system_dashboard`'s `costs` is
//! the ledger's report (totals per agent and per session, both paths, with the limits and
//! what is left); `get_retry_queue_status` adds the recent outcomes of queued operations.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use revka_actors::StatusNode;
use revka_actors::retry_queue::{OpStatus, QueueStatus, STATUS_OPS_LIMIT, Selection};
use serde_json::{Value, json};

use super::agents::{json_result, text_result};
use super::{BuiltinError, BuiltinTool, ToolContext, ToolRegistry};
use crate::agents::Agents;
use crate::sidecars::SidecarServices;

/// What the health tools look at.
#[derive(Clone)]
struct Health {
    sidecar: SidecarServices,
    root: StatusNode,
    agents: Arc<Agents>,
}

impl Health {
    async fn agents(&self) -> Result<Vec<Value>, String> {
        self.agents
            .sidecar_agents()
            .await
            .map_err(|e| e.to_string())
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
type Runner = fn(Health, Value) -> BoxFuture<'static, Result<Value, BuiltinError>>;

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

    fn call(
        &self,
        _ctx: ToolContext,
        args: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        (self.run)(self.health.clone(), args)
    }
}

fn flag(args: &Value, name: &str) -> bool {
    args.get(name).and_then(Value::as_bool).unwrap_or(true)
}

fn dashboard(h: Health, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    Box::pin(async move {
        let mut out = json!({ "generated_at": revka_actors::status::rfc3339(SystemTime::now()) });
        if flag(&args, "include_health") {
            let (status, report) = crate::health::report(&h.root);
            out["health"] = report;
            out["health"]["status"] = json!(status);
            out["health"]["circuit_breaker"] =
                serde_json::to_value(h.sidecar.breaker.status()).unwrap_or_default();
            out["health"]["journal"] = h.journal();
        }
        if flag(&args, "include_agents") {
            let fallback = h.agents.fallback.list();
            out["agents"] = match h.agents().await {
                Ok(agents) => {
                    json!({ "count": agents.len() + fallback.len(), "agents": agents, "fallback": fallback })
                }
                Err(e) => {
                    json!({ "unavailable": e, "count": fallback.len(), "fallback": fallback })
                }
            };
        }
        if flag(&args, "include_workflows") {
            out["workflows"] =
                json!({ "active": [], "note": "Revka runs no workflow engine; nothing to report" });
        }
        if flag(&args, "include_costs") {
            h.agents.settings();
            out["costs"] = h.agents.ledger.report();
        }
        Ok(json_result(out))
    })
}

fn breaker_status(h: Health, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    Box::pin(async move {
        Ok(json_result(
            serde_json::to_value(h.sidecar.breaker.status()).unwrap_or_default(),
        ))
    })
}

fn breaker_reset(h: Health, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    Box::pin(async move {
        h.sidecar.breaker.reset();
        tracing::info!("circuit breaker of the session manager reset by a tool call");
        Ok(json_result(
            serde_json::to_value(h.sidecar.breaker.status()).unwrap_or_default(),
        ))
    })
}

/// Operations and dead letters listed by `get_retry_queue_status` unless `limit` says otherwise.
const DEFAULT_LIST: usize = 20;
/// Ids accepted by one `replay_dead_letters` or `drop_dead_letters` call.
pub const MAX_SELECTED_IDS: usize = 1000;

/// Keeps the first `limit` entries of `list`, adding the rest to `omitted`.
fn trim(list: &mut Vec<OpStatus>, omitted: &mut usize, limit: usize) {
    if list.len() > limit {
        *omitted += list.len() - limit;
        list.truncate(limit);
    }
}

fn list_limit(args: &Value) -> Result<usize, String> {
    match args.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_LIST),
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= STATUS_OPS_LIMIT as u64)
            .map(|n| n as usize)
            .ok_or_else(|| {
                format!("`limit` must be an integer from 0 to {STATUS_OPS_LIMIT}, not {v}")
            }),
    }
}

fn queue_status(h: Health, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    Box::pin(async move {
        let limit = list_limit(&args).map_err(BuiltinError::Arguments)?;
        Ok(json_result(queue_view(&h.sidecar, limit).await))
    })
}

/// The retry queue's status with at most `limit` operations and dead letters listed (the rest
/// counted as omitted): what `get_retry_queue_status` answers and the dashboard shows. While
/// the queue actor is restarting or not running: `{"unavailable": why, "last_known": ...}`,
/// its last published status. `recent_outcomes`: the last `limit` outcomes of queued
/// operations (`{operation_id, operation, ok, result?, error?, at}`), oldest first.
pub(crate) async fn queue_view(sidecar: &SidecarServices, limit: usize) -> Value {
    let mut view = queue_state(sidecar, limit).await;
    let outcomes = sidecar.recent_outcomes();
    let skip = outcomes.len().saturating_sub(limit);
    view["recent_outcomes"] = json!(outcomes[skip..]);
    view
}

/// [`queue_view`] without the recent outcomes of queued operations.
async fn queue_state(sidecar: &SidecarServices, limit: usize) -> Value {
    let shown = |mut status: QueueStatus| {
        trim(
            &mut status.operations,
            &mut status.operations_omitted,
            limit,
        );
        trim(
            &mut status.dead_letter_list,
            &mut status.dead_letters_omitted,
            limit,
        );
        serde_json::to_value(status).unwrap_or_default()
    };
    match sidecar.queue.status().await {
        Ok(status) => shown(status),
        Err(e) => {
            json!({ "unavailable": e.to_string(), "last_known": shown(sidecar.queue.published()) })
        }
    }
}

/// The dead letters a replay or drop names: `ids` (a list) or `all: true`.
fn selection(args: &Value) -> Result<Selection, String> {
    let all = match args.get("all") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(format!("`all` must be a boolean, not {v}")),
    };
    match (args.get("ids").filter(|v| !v.is_null()), all) {
        (Some(_), true) => Err("give either `ids` or `all: true`, not both".into()),
        (None, true) => Ok(Selection::All),
        (None, false) => Err(
            "give `ids` (dead-letter ids, as listed by get_retry_queue_status) or `all: true`"
                .into(),
        ),
        (Some(ids), false) => {
            let ids = ids
                .as_array()
                .ok_or_else(|| format!("`ids` must be an array of strings, not {ids}"))?;
            if ids.is_empty() {
                return Err(
                    "`ids` is empty: give at least one dead-letter id, or `all: true`".into(),
                );
            }
            if ids.len() > MAX_SELECTED_IDS {
                return Err(format!(
                    "`ids` has {} entries; at most {MAX_SELECTED_IDS} at once (or `all: true`)",
                    ids.len()
                ));
            }
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    id.as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .ok_or_else(|| format!("`ids[{i}]` must be a non-empty string, not {id}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Selection::Ids)
        }
    }
}

/// `replay_dead_letters` and `drop_dead_letters`: the ids that moved (or went), and the dead
/// letters left.
fn dead_letter_tool(
    h: Health,
    args: Value,
    replay: bool,
) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    Box::pin(async move {
        let which = selection(&args).map_err(BuiltinError::Arguments)?;
        if !h.sidecar.enabled {
            return Ok(text_result(
                "the retry queue is not running: the session manager is not enabled ([session_manager] enabled = false)",
                true,
            ));
        }
        let queue = &h.sidecar.queue;
        let done = if replay {
            queue.replay_selected(which).await
        } else {
            queue.drop_selected(which).await
        };
        let ids = match done {
            Ok(ids) => ids,
            Err(e) => return Ok(text_result(e.to_string(), true)),
        };
        let verb = if replay { "replayed" } else { "dropped" };
        tracing::info!(
            count = ids.len(),
            "retry queue dead letters {verb} by a tool call"
        );
        let left = queue
            .status()
            .await
            .map_or_else(|_| queue.published().dead_letters, |s| s.dead_letters);
        Ok(json_result(
            json!({ verb: ids, "count": ids.len(), "dead_letters_left": left }),
        ))
    })
}

fn replay_dead(h: Health, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    dead_letter_tool(h, args, true)
}

fn drop_dead(h: Health, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    dead_letter_tool(h, args, false)
}

fn agent_health(h: Health, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
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

fn journal_health(h: Health, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
    Box::pin(async move { Ok(json_result(h.journal())) })
}

/// Registers the health tools.
pub fn register(registry: &mut ToolRegistry, agents: &Arc<Agents>, root: &StatusNode) {
    let health = Health {
        sidecar: agents.sidecar.clone(),
        root: root.clone(),
        agents: agents.clone(),
    };
    let select = json!({
        "ids": { "type": "array", "items": { "type": "string" }, "description": "Dead-letter ids (see get_retry_queue_status); all must be dead letters, or nothing changes." },
        "all": { "type": "boolean", "description": "Every dead letter instead of `ids`." }
    });
    let tools: [(&'static str, &'static str, Value, Runner); 8] = [
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
            "Pending and in-flight operations of the retry queue, success/failure counts, and dead letters, with per-operation details (id, attempts, last error, next attempt time); lists are bounded by `limit`, the rest counted.",
            json!({ "limit": { "type": "integer", "description": "Operations and dead letters listed, each (default 20, at most 100)." } }),
            queue_status,
        ),
        (
            "replay_dead_letters",
            "Move dead letters of the retry queue back to pending with their attempts reset, by id (all or nothing) or all (as many as fit).",
            select.clone(),
            replay_dead,
        ),
        (
            "drop_dead_letters",
            "Discard dead letters of the retry queue, by id (all or nothing) or all.",
            select,
            drop_dead,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_selections_and_their_errors() {
        let ok = |v: Value| selection(&v);
        assert_eq!(ok(json!({ "all": true })), Ok(Selection::All));
        assert_eq!(
            ok(json!({ "ids": ["a", "b"] })),
            Ok(Selection::Ids(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            ok(json!({ "ids": ["a"], "all": false })),
            Ok(Selection::Ids(vec!["a".into()]))
        );
        let err = |v: Value| selection(&v).unwrap_err();
        assert_eq!(
            err(json!({})),
            "give `ids` (dead-letter ids, as listed by get_retry_queue_status) or `all: true`"
        );
        assert_eq!(
            err(json!({ "ids": ["a"], "all": true })),
            "give either `ids` or `all: true`, not both"
        );
        assert_eq!(
            err(json!({ "all": "yes" })),
            "`all` must be a boolean, not \"yes\""
        );
        assert_eq!(
            err(json!({ "ids": "a" })),
            "`ids` must be an array of strings, not \"a\""
        );
        assert_eq!(
            err(json!({ "ids": [] })),
            "`ids` is empty: give at least one dead-letter id, or `all: true`"
        );
        assert_eq!(
            err(json!({ "ids": ["a", 3] })),
            "`ids[1]` must be a non-empty string, not 3"
        );
        assert_eq!(
            err(json!({ "ids": ["a", ""] })),
            "`ids[1]` must be a non-empty string, not \"\""
        );
        let many: Vec<String> = (0..=MAX_SELECTED_IDS).map(|i| i.to_string()).collect();
        assert_eq!(
            err(json!({ "ids": many })),
            "`ids` has 1001 entries; at most 1000 at once (or `all: true`)"
        );
    }

    #[test]
    fn the_status_list_limit_is_checked() {
        assert_eq!(list_limit(&json!({})), Ok(DEFAULT_LIST));
        assert_eq!(list_limit(&json!({ "limit": 0 })), Ok(0));
        assert_eq!(list_limit(&json!({ "limit": 100 })), Ok(100));
        for bad in [json!(101), json!(-1), json!("5"), json!(2.5)] {
            assert_eq!(
                list_limit(&json!({ "limit": bad })),
                Err(format!(
                    "`limit` must be an integer from 0 to 100, not {bad}"
                ))
            );
        }
    }

    #[test]
    fn trimming_counts_what_it_cuts() {
        let op = |id: &str| OpStatus {
            id: id.into(),
            kind: "k".into(),
            state: revka_actors::retry_queue::OpState::Dead,
            attempts: 1,
            enqueued_at: None,
            next_attempt_in_ms: None,
            next_attempt_at: None,
            last_error: None,
            payload_preview: String::new(),
        };
        let mut list = vec![op("a"), op("b"), op("c")];
        let mut omitted = 4;
        trim(&mut list, &mut omitted, 1);
        assert_eq!((list.len(), list[0].id.as_str(), omitted), (1, "a", 6));
        trim(&mut list, &mut omitted, 5);
        assert_eq!((list.len(), omitted), (1, 6));
    }
}
