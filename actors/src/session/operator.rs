//! The operator process of a session: `root/sessions/session:<id>/operator`.
//!
//! A session's operator (a Python MCP server over stdio, seed 000) is started lazily, on the
//! session's first operator tool call, as a small supervisor under the session actor running
//! one ordinary connection actor (`…/operator/mcp:revka-operator` and its `process`). It is
//! restarted by its policy, never takes its session down when it fails, and is stopped
//! gracefully when the session ends. Its tools reach the session through the session's own
//! [`McpHub`], as `revka-operator__<tool>`.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};

use crate::mcp::connection::connection_spec;
use crate::mcp::hub::{McpHub, ServerSpec, TransportSpec};
use crate::status::StatusNode;
use crate::supervisor::{
    Intensity, RestartPolicy, Strategy, Supervisor, SupervisorArgs, SupervisorMsg,
};

use super::Session;

/// The operator's server name: its tools are `revka-operator__<tool>`.
pub const OPERATOR_SERVER: &str = "revka-operator";

/// How to run a session's operator.
#[derive(Debug, Clone)]
pub struct OperatorTemplate {
    /// The server spec; the session's cwd and id are filled in per session.
    pub spec: ServerSpec,
    /// Restart policy of the operator's connection.
    pub policy: RestartPolicy,
    /// The shared HTTP client (unused by stdio, required by the connection actor).
    pub http: reqwest::Client,
}

impl OperatorTemplate {
    /// The operator spec for one session: its working directory and id in the environment.
    pub fn for_session(&self, session: &Session) -> ServerSpec {
        let mut spec = self.spec.clone();
        spec.name = OPERATOR_SERVER.to_owned();
        if let TransportSpec::Stdio { env, cwd, .. } = &mut spec.transport {
            env.push(("REVKA_SESSION_ID".into(), session.id().to_owned()));
            *cwd = Some(session.cwd().to_path_buf());
        }
        spec
    }
}

/// Starts the operator supervisor of a session, linked to the session actor.
pub(super) async fn start(
    owner: ractor::ActorCell,
    node: &StatusNode,
    template: &OperatorTemplate,
    session: &Session,
    hub: Arc<McpHub>,
) -> Result<ActorRef<SupervisorMsg>, String> {
    let spec = Arc::new(template.for_session(session));
    let child = connection_spec(spec, template.policy, hub, template.http.clone());
    let node = node.child("operator", "supervisor", None);
    let path = node.path().to_owned();
    let args = SupervisorArgs {
        node,
        strategy: Strategy::OneForOne,
        intensity: Intensity {
            max_restarts: template.policy.max_restarts.saturating_add(1),
            period: template.policy.window.max(Duration::from_secs(1)),
        },
        children: vec![child],
    };
    let (sup, _) = Supervisor::spawn_linked(None, Supervisor, args, owner)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(session = %session.id(), %path, "operator started");
    Ok(sup)
}
