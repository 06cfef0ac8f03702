//! The operator process of a session: `root/sessions/session:<id>/operator`.
//!
//! A session's operator (a Python MCP server over stdio, seed 000) is started lazily, on the
//! session's first operator tool call, as a small supervisor under the session actor running
//! one ordinary connection actor (`…/operator/mcp:revka-operator` and its `process`). It is
//! restarted by its policy, never takes its session down when it fails, and is stopped
//! gracefully when the session ends. Its tools reach the session through the session's own
//! [`McpHub`], as `revka-operator__<tool>`.
//!
//! A call ([`Session::call_operator`]) asks the session actor to start the operator only when
//! it is not connected (the common case crosses no mailbox), then waits, within
//! [`OPERATOR_WAIT`], on the hub's watches: for the operator's server to be registered, then
//! for its client (failing at once if the operator is restarting or failed). Nothing polls.
//! The call goes to the operator's client by the operator's own tool name. The tools the
//! operator publishes when it connects (or changes its list) go to the table's
//! [`Sessions::on_operator_tools`] listener, the MCP server's catalog of operator tools.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use revka_mcp::client::{CallOptions, McpClient};
use revka_mcp::naming;
use revka_mcp::spec::{ServerSpec, TransportSpec};
use revka_mcp::wrapper::Arguments;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::mcp::connection::connection_spec;
use crate::mcp::hub::{
    HubError, McpHub, ServerEntry, ServerUnavailable, ToolsListener, effective_options,
};
use crate::status::StatusNode;
use crate::supervisor::{
    Intensity, RestartPolicy, Strategy, SupervisorActor, SupervisorArguments, SupervisorMessage,
};

use super::{Session, SessionMessage, Sessions};

/// How long an operator call waits for the operator to start and connect.
pub const OPERATOR_WAIT: Duration = Duration::from_secs(60);
/// How long an operator call waits for the session actor to start the operator's supervisor.
const ENSURE_WAIT: Duration = Duration::from_secs(30);

/// Why an operator call did not reach the operator's tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// No operator is configured (or its package is missing).
    #[error("the operator is not available ([operator] disabled or not installed)")]
    Disabled,
    /// The session actor is not running (the session is ending).
    #[error("the session is not running")]
    SessionNotRunning,
    /// The session actor did not answer within its bound.
    #[error("the session did not answer")]
    SessionSilent,
    /// The session actor stopped while asked.
    #[error("the session is gone: {0}")]
    SessionGone(String),
    /// The operator's supervisor could not be spawned.
    #[error("cannot start the operator: {0}")]
    Start(ractor::SpawnErr),
    /// The operator's server was not registered within [`OPERATOR_WAIT`].
    #[error("the operator did not start in time")]
    NotStarted,
    /// The operator is restarting, failed, or did not connect within [`OPERATOR_WAIT`].
    #[error("{0}")]
    Unavailable(ServerUnavailable),
    /// The call reached the operator's hub and failed there (unknown tool, bad arguments) or
    /// at the operator.
    #[error(transparent)]
    Call(#[from] HubError),
}

impl Sessions {
    /// Sets the listener told of the tools each session's operator publishes. Operators
    /// started before keep the listener they were started with.
    pub fn on_operator_tools(&self, listener: ToolsListener) {
        *self
            .operator_tools
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// A hub for one session's operator, reporting its tools to the table's listener.
    pub(super) fn operator_hub(&self) -> Arc<McpHub> {
        let listener = self
            .operator_tools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match listener {
            Some(listener) => McpHub::with_tools_listener(listener),
            None => McpHub::new(),
        }
    }
}

impl Session {
    /// Calls `tool` (the operator's own name for it) on this session's operator, starting the
    /// operator on first use and waiting up to [`OPERATOR_WAIT`] for it to connect. `opts` as
    /// for any server: a zero timeout is the operator's `tool_timeout_secs`.
    pub async fn call_operator(
        &self,
        tool: &str,
        arguments: Arguments,
        opts: &CallOptions,
    ) -> Result<Box<RawValue>, OperatorError> {
        let hub = self.operator_hub().await?;
        let (entry, client) = operator_client(&hub, Instant::now() + OPERATOR_WAIT).await?;
        let table = hub.tools();
        let route = table
            .tools
            .values()
            .find(|route| route.tool == tool)
            .ok_or_else(|| {
                HubError::UnknownTool(naming::exposed_name(super::OPERATOR_SERVER, tool))
            })?;
        let arguments = route.prepare(arguments)?;
        let opts = effective_options(opts, &entry.spec());
        Ok(client
            .call_tool(tool, &arguments, &opts)
            .await
            .map_err(HubError::from)?)
    }

    /// The hub of this session's operator tools, asking the session actor to start the
    /// operator unless it is connected.
    async fn operator_hub(&self) -> Result<Arc<McpHub>, OperatorError> {
        if let Some(hub) = self.operator_hub.get()
            && hub
                .server(OPERATOR_SERVER)
                .and_then(|s| s.client())
                .is_some()
        {
            return Ok(hub.clone());
        }
        let actor = self.actor().ok_or(OperatorError::SessionNotRunning)?;
        match actor
            .call(SessionMessage::EnsureOperator, Some(ENSURE_WAIT))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(_) => Err(OperatorError::SessionSilent),
            Err(e) => Err(OperatorError::SessionGone(e.to_string())),
        }
    }
}

/// The operator's server entry and live client, waiting until `deadline` on the hub's
/// watches: its registration, then its connection.
pub(super) async fn operator_client(
    hub: &McpHub,
    deadline: Instant,
) -> Result<(Arc<ServerEntry>, Arc<McpClient>), OperatorError> {
    let mut registrations = hub.registrations();
    let entry = loop {
        if let Some(entry) = hub.server(OPERATOR_SERVER) {
            break entry;
        }
        if tokio::time::timeout_at(deadline, registrations.changed())
            .await
            .is_err()
        {
            return Err(OperatorError::NotStarted);
        }
    };
    let client = entry
        .connected_client(deadline.saturating_duration_since(Instant::now()))
        .await
        .map_err(OperatorError::Unavailable)?;
    Ok((entry, client))
}

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
) -> Result<ActorRef<SupervisorMessage>, ractor::SpawnErr> {
    let spec = Arc::new(template.for_session(session));
    let child = connection_spec(spec, template.policy, hub, template.http.clone());
    let node = node.child("operator", "supervisor", None);
    let path = node.path().to_owned();
    let args = SupervisorArguments {
        node,
        strategy: Strategy::OneForOne,
        intensity: Intensity {
            max_restarts: template.policy.max_restarts.saturating_add(1),
            period: template.policy.window.max(Duration::from_secs(1)),
        },
        children: vec![child],
    };
    let (sup, _) = SupervisorActor::spawn_linked(None, SupervisorActor, args, owner).await?;
    tracing::info!(session = %session.id(), %path, "operator started");
    Ok(sup)
}
