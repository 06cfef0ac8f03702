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

use std::time::Duration;

use revka_actors::supervisor::{
    ChildSpec, Intensity, RestartType, Shutdown, Strategy, supervisor_spec,
};

use crate::config::Config;

/// Shutdown budget of a nested supervisor: its children's timeouts run inside it.
const SUPERVISOR_SHUTDOWN: Duration = Duration::from_secs(60);

/// The children of `root`, in start order.
pub fn root_children(config: &Config) -> Vec<ChildSpec> {
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
            Vec::new,
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
