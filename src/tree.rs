//! The daemon's supervision tree: which supervisors sit under `root`, in which order, with which
//! strategy.
//!
//! ```text
//! root                 one_for_one
//! ├── mcp_servers      one_for_one, one child per [[mcp.servers]] entry
//! ├── sidecars         rest_for_one: breaker and queue restart after their sidecar
//! └── sessions         one_for_one, temporary session children
//! ```
//!
//! Children start in this order and stop in reverse, so sessions (which call servers and
//! sidecars) stop before what they use. Each later subsystem adds its children here.

use std::sync::Arc;
use std::time::Duration;

use revka_actors::mcp::hub::McpHub;
use revka_actors::supervisor::{
    ChildSpec, Intensity, RestartType, Shutdown, Strategy, supervisor_spec,
};

use crate::config::Config;
use crate::servers;

/// What the daemon's actors share: the config they were built from, the MCP hub (servers and
/// tools) and the one HTTP client.
#[derive(Debug, Clone)]
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// External MCP servers and their tools.
    pub hub: Arc<McpHub>,
    /// The shared HTTP client for MCP servers.
    pub http: reqwest::Client,
}

impl Services {
    /// Fresh services for `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
            hub: McpHub::new(),
            http: servers::http_client(),
        }
    }
}

/// Shutdown budget of a nested supervisor: its children's timeouts run inside it.
const SUPERVISOR_SHUTDOWN: Duration = Duration::from_secs(60);

/// The children of `root`, in start order.
pub fn root_children(services: &Services) -> Vec<ChildSpec> {
    let config = &services.config;
    let intensity = config.supervisor.intensity();
    // A supervisor that escalated is restarted by root within the configured limits.
    let supervisor_policy = config
        .supervisor
        .policy()
        .with_restart(RestartType::Permanent)
        .with_shutdown(Shutdown::Timeout(SUPERVISOR_SHUTDOWN));
    vec![
        supervisor_spec(
            "mcp_servers",
            supervisor_policy,
            Strategy::OneForOne,
            intensity,
            {
                let services = services.clone();
                move || servers::server_children(&services.config, &services.hub, &services.http)
            },
        ),
        supervisor_spec(
            "sidecars",
            supervisor_policy,
            Strategy::RestForOne,
            intensity,
            Vec::new,
        ),
        supervisor_spec(
            "sessions",
            supervisor_policy,
            Strategy::OneForOne,
            session_intensity(),
            Vec::new,
        ),
    ]
}

/// Sessions are temporary children: they never restart, so they never count toward intensity.
fn session_intensity() -> Intensity {
    Intensity {
        max_restarts: u32::MAX,
        period: Duration::from_secs(60),
    }
}
