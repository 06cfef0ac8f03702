//! From `[[mcp.servers]]` config entries to the connection actors under `root/mcp_servers`.
//!
//! The config layer has already validated and `${VAR}`-expanded each entry; this module turns
//! it into the actor crate's [`ServerSpec`] and a supervised child spec with the server's
//! restart policy. A server with `auto_connect = false` is registered but only started when
//! asked (`revka restart`, `POST /api/actors/{path}/restart`).

use std::sync::Arc;
use std::time::Duration;

use ractor::SpawnErr;
use revka_actors::mcp::connection::connection_spec;
use revka_actors::mcp::hub::{McpHub, PingPolicy, ServerSpec, TransportSpec};
use revka_actors::mcp::protocol::Root;
use revka_actors::supervisor::{ChildSpec, RestartPolicy};

use crate::config::{Config, InvalidServer, McpConfig, McpServerConfig, Transport};

/// The actor-side spec of one configured (validated) server, without the liveness probe (a
/// one-off handshake or call needs none); the daemon runs [`supervised_spec`].
pub fn server_spec(server: &McpServerConfig, mcp: &McpConfig) -> ServerSpec {
    let headers: Vec<(String, String)> = server
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let url = server.url.clone().unwrap_or_default();
    let transport = match server.transport {
        Transport::Stdio => TransportSpec::Stdio {
            command: server.command.clone().unwrap_or_default(),
            args: server.args.clone(),
            env: server
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: None,
        },
        Transport::Http => TransportSpec::Http { url, headers },
        Transport::Sse => TransportSpec::Sse { url, headers },
        // Validation moves entries with an unknown transport to `invalid_servers`.
        Transport::Url | Transport::Unknown => TransportSpec::Url { url, headers },
    };
    ServerSpec {
        name: server.name.clone(),
        transport,
        tool_timeout: server.tool_timeout(),
        ping: PingPolicy::OFF,
        handshake_timeout: mcp.handshake_timeout(),
        roots: server
            .effective_roots(mcp)
            .iter()
            .map(|p| Root::from_path(p))
            .collect(),
        reset_timeout_on_progress: server.reset_timeout_on_progress,
        // Logs and introspection show the config's unexpanded form, masked.
        shown: Some(server.shown()),
    }
}

/// The spec the daemon's connection actor runs for `server`: [`server_spec`] with the liveness
/// probe of `[supervisor]` and the server's `restart` table.
pub fn supervised_spec(server: &McpServerConfig, config: &Config) -> ServerSpec {
    ServerSpec {
        ping: server.ping(&config.supervisor),
        ..server_spec(server, &config.mcp)
    }
}

/// The children of `root/mcp_servers`: one connection actor per configured server, in config
/// order. Empty when `[mcp] enabled = false`.
pub fn server_children(
    config: &Config,
    hub: &Arc<McpHub>,
    http: &reqwest::Client,
) -> Vec<ChildSpec> {
    if !config.mcp.enabled {
        return Vec::new();
    }
    let valid = config.mcp.servers.iter().map(|server| {
        // Set before the connection exists, so no filtered tool is ever registered.
        hub.set_tool_filter(&server.name, server.tool_filter());
        let spec = Arc::new(supervised_spec(server, config));
        let policy = server.policy(&config.supervisor);
        let child = connection_spec(spec, policy, hub.clone(), http.clone());
        if server.auto_connect {
            child
        } else {
            child.manual()
        }
    });
    let invalid = config.mcp.invalid_servers.iter().map(invalid_server_child);
    valid.chain(invalid).collect()
}

/// A server whose config entry is invalid: a child that fails to start with the validation
/// error, so it shows as `failed` with that reason while the other servers carry on.
pub(crate) fn invalid_server_child(invalid: &InvalidServer) -> ChildSpec {
    let reason = format!("invalid configuration: {}", invalid.reason);
    let policy = RestartPolicy {
        max_restarts: 0,
        ..RestartPolicy::standard()
    };
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
