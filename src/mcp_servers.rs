//! The children of `root/mcp_servers`: a connection actor per valid server, a failed child
//! per invalid one; and the one-off probe the CLI runs against a configured server.
//!
//! The plan ([`crate::config::plan`]) has already turned each validated, `${VAR}`-expanded
//! entry into a [`ServerPlan`] (spec, restart policy, autostart, tool filter) or an
//! [`InvalidServer`]; this module only makes their child specs. A server with
//! `auto_connect = false` is registered but only started when asked (`revka restart`,
//! `POST /api/actors/{path}/restart`).

use std::sync::Arc;
use std::time::Duration;

use ractor::SpawnErr;
use revka_actors::mcp::connection::{ProbeReport, connection_spec, probe};
use revka_actors::mcp::hub::McpHub;
use revka_actors::supervisor::{ChildSpec, RestartPolicy};

use crate::config::plan::ServerPlan;
use crate::config::{InvalidServer, McpConfig, McpServerConfig, server_spec};

/// The connection actor of `server`, run with `policy`. Its tool filter is set on the hub
/// first, so no filtered tool is ever registered.
pub fn connection_child(
    server: &ServerPlan,
    policy: RestartPolicy,
    hub: &Arc<McpHub>,
    http: &reqwest::Client,
) -> ChildSpec {
    hub.set_tool_filter(server.name(), server.tool_filter.clone());
    connection_spec(
        Arc::new(server.spec.clone()),
        policy,
        hub.clone(),
        http.clone(),
    )
}

/// A server whose config entry is invalid: a child that fails to start with the validation
/// error, so it shows as `failed` with that reason while the other servers carry on (`policy`
/// allows no restart).
pub(crate) fn invalid_server_child(invalid: &InvalidServer, policy: RestartPolicy) -> ChildSpec {
    let reason = format!("invalid configuration: {}", invalid.reason);
    ChildSpec::new(
        format!("mcp:{}", invalid.name),
        "mcp_connection",
        policy,
        move |_ctx| {
            let reason = reason.clone();
            async move { Err(SpawnErr::StartupFailed(reason.into())) }
        },
    )
}

/// A one-off handshake with a configured server (`revka mcp list | test`, `revka doctor`).
/// An entry the plan cannot run is reported as failed with the reason.
pub async fn probe_server(
    server: &McpServerConfig,
    mcp: &McpConfig,
    http: &reqwest::Client,
) -> ProbeReport {
    match server_spec(server, mcp) {
        Ok(spec) => probe(&spec, http).await,
        Err(invalid) => ProbeReport {
            ok: false,
            tool_count: None,
            tools: None,
            definitions: Vec::new(),
            error: Some(format!("invalid configuration: {}", invalid.reason)),
            protocol_version: None,
            latency_ms: 0,
        },
    }
}

/// The daemon's one HTTP client for MCP servers: connection timeout, no overall timeout (SSE
/// streams are long-lived; calls carry their own timeouts).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("revka/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
