//! The daemon's health verdict, read from the status tree: `healthy`, `degraded` or
//! `unhealthy`, with the states behind it.
//!
//! A reading of `tree`'s status nodes, part of neither face: the gateway serves it as
//! `GET /api/health` (503 when unhealthy), and the built-in `system_dashboard` tool
//! ([`crate::tools`]) puts it in its report. Unhealthy: the root or `root/mcp_http` is not
//! running. Degraded: an MCP server or a sidecar is failed, backing off, starting or stopping
//! (a server that sits `stopped` because of `auto_connect = false` is not a problem).

use revka_actors::{ActorState, Snapshot, StatusNode};
use serde_json::{Value, json};

/// The health verdict over the status tree `root`: the verdict, and the report that explains
/// it (the verdict again, every core component's state, the state of each MCP server and
/// sidecar).
pub(crate) fn report(root: &StatusNode) -> (&'static str, Value) {
    let snapshot = root.snapshot();
    let component = |id: &str| snapshot.children.iter().find(|c| c.id == id);
    let states = |parent: Option<&Snapshot>| -> Vec<Value> {
        parent
            .map(|p| {
                p.children
                    .iter()
                    .map(|c| {
                        json!({
                            "name": c.id, "path": c.path, "state": c.state, "restarts": c.restarts,
                            "last_failure": c.last_failure,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let servers = states(component("mcp_servers"));
    let sidecars = states(component("sidecars"));
    let core_down = snapshot.state != ActorState::Running
        || component("mcp_http").is_none_or(|c| c.state != ActorState::Running);
    // A server configured with auto_connect = false sits `stopped`: that is not a problem.
    let unwell = |v: &Value| {
        matches!(
            v["state"].as_str(),
            Some("failed" | "backing_off" | "starting" | "stopping")
        )
    };
    let status = if core_down {
        "unhealthy"
    } else if servers.iter().chain(&sidecars).any(unwell) {
        "degraded"
    } else {
        "healthy"
    };
    let core: serde_json::Map<String, Value> = snapshot
        .children
        .iter()
        .map(|c| (c.id.clone(), json!(c.state)))
        .collect();
    (
        status,
        json!({ "status": status, "components": core, "mcp_servers": servers, "sidecars": sidecars }),
    )
}
