//! The connection actor: one per configured MCP server, `root/mcp_servers/mcp:<name>`.
//!
//! It owns the server's transport and, for stdio servers, the server's OS process (a linked
//! [`ProcessActor`] child, `…/mcp:<name>/process`). On start it connects, runs the handshake
//! (`initialize` offering the newest protocol version, `notifications/initialized`, `tools/list`
//! to the last page) within the handshake timeout, and publishes the client and tools in the
//! [`McpHub`]. Calls never pass through this actor: callers use the hub's client directly.
//!
//! The actor fails, and its supervisor restarts it by policy, when the connection ends: the
//! process exits, the stream closes, a line is too long; or when its liveness probe (a `ping`
//! when the server has been silent for an interval, see [`liveness`]) finds the server
//! `unresponsive`. On the way out every in-flight call fails at once with the reason, while
//! the server's tools stay listed. On
//! `notifications/tools/list_changed` it re-reads the tool list.
//!
//! When the server declares `resources` or `prompts`, the handshake is followed by
//! `resources/list`, `resources/templates/list` and `prompts/list` (every page, bounded), published
//! as the server's catalog in the hub; `notifications/resources/list_changed` and
//! `notifications/prompts/list_changed` re-read that part. After a reconnect the server is sent
//! `resources/subscribe` again for every resource sessions follow. A graceful stop follows the
//! MCP shutdown sequence: close stdin, give the server a moment to exit, then SIGTERM and SIGKILL.

mod connect;
pub mod liveness;
mod remote;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use connect::Connected;
pub use connect::{ProbeReport, probe};
use liveness::{ProbeStatus, Unresponsive};
use revka_mcp::client::{ClientEvent, McpClient};
use revka_mcp::oauth::AuthState;
use revka_mcp::spec::{ServerSpec, TransportSpec};

use super::hub::{CatalogPart, McpHub, ServerEntry};
use crate::process::{ExitInfo, ProcessActor, ProcessMessage};
use crate::status::{ActorState, StatusNode};
use crate::supervisor::{
    ChildContext, ChildSpec, NeedsOperator, RestartPolicy, Shutdown, error_chain,
};

/// How long a stdio server gets to exit after its stdin is closed, before SIGTERM.
const STDIN_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why a connection failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The transport could not be opened (process not started, host unreachable, ...).
    #[error("server `{server}`: cannot connect: {reason}")]
    Connect {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// The handshake failed or timed out.
    #[error("server `{server}`: handshake failed: {reason}")]
    Handshake {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// The connection ended after the handshake.
    #[error("server `{server}`: {reason}")]
    Disconnected {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// The server demands authorization that only a person can give (OAuth: no token, or a
    /// refused refresh); `reason` ends with what to do. Not restarted.
    #[error("server `{server}`: {reason}")]
    NeedsLogin {
        /// The server.
        server: String,
        /// Why, and the login hint.
        reason: String,
    },
    /// The server stopped answering: its liveness probe failed too many times in a row.
    #[error("server `{server}`: {}", found.reason())]
    Unresponsive {
        /// The server.
        server: String,
        /// What the probe found.
        found: Unresponsive,
    },
}

/// The connection actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct McpConnectionActor;

/// Arguments of [`McpConnectionActor`].
#[derive(Debug, Clone)]
pub struct McpConnectionArguments {
    /// The server.
    pub spec: Arc<ServerSpec>,
    /// The actor's status node.
    pub node: StatusNode,
    /// Where the client and tools are published.
    pub hub: Arc<McpHub>,
    /// The shared HTTP client (HTTP, SSE and url transports).
    pub http: reqwest::Client,
    /// SIGTERM → SIGKILL grace of a stdio server process.
    pub stop_timeout: Duration,
}

/// Messages of [`McpConnectionActor`].
#[derive(Debug)]
pub enum McpConnectionMessage {
    /// The client reported something (tools changed, connection closed).
    ClientReported(ClientEvent),
    /// The liveness probe found the server unresponsive.
    LivenessFailed(Unresponsive),
}

/// State of [`McpConnectionActor`]. Dropping it fails in-flight calls and withdraws the client.
#[derive(Debug)]
pub struct McpConnectionState {
    args: McpConnectionArguments,
    entry: Arc<ServerEntry>,
    client: Option<Arc<McpClient>>,
    process: Option<ActorRef<ProcessMessage>>,
    exit: Option<watch::Receiver<Option<ExitInfo>>>,
    forwarder: Option<JoinHandle<()>>,
    /// The liveness probe's task, while connected.
    probe: Option<JoinHandle<()>>,
    /// What the probe last did, for the details.
    probe_status: Arc<ProbeStatus>,
}

impl Drop for McpConnectionState {
    fn drop(&mut self) {
        if let Some(f) = self.forwarder.take() {
            f.abort();
        }
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        // Runs after a stop, a failure, a panic or a kill alike: nobody waits on a dead server.
        let reason = self
            .client
            .as_ref()
            .and_then(|c| c.closed_reason())
            .unwrap_or_else(|| "connection stopped".to_owned());
        self.args.hub.disconnected(&self.entry, &reason);
    }
}

impl Actor for McpConnectionActor {
    type Msg = McpConnectionMessage;
    type State = McpConnectionState;
    type Arguments = McpConnectionArguments;

    async fn pre_start(
        &self,
        _: ActorRef<McpConnectionMessage>,
        args: McpConnectionArguments,
    ) -> Result<McpConnectionState, ActorProcessingErr> {
        let entry = args.hub.register(args.spec.clone(), args.node.clone());
        let probe_status = Arc::new(ProbeStatus::default());
        let (details_entry, details_probe) = (entry.clone(), probe_status.clone());
        args.node
            .set_details(Arc::new(move || details(&details_entry, &details_probe)));
        Ok(McpConnectionState {
            args,
            entry,
            client: None,
            process: None,
            exit: None,
            forwarder: None,
            probe: None,
            probe_status,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<McpConnectionMessage>,
        state: &mut McpConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        let args = &state.args;
        let name = args.spec.name.clone();
        let connected = match connect::connect(args, &myself).await {
            Ok(c) => c,
            // No restart helps until someone logs in: failed at once, not retried in a loop.
            Err(e @ McpError::NeedsLogin { .. }) => {
                return Err(Box::new(NeedsOperator(e.to_string())));
            }
            Err(e) => return Err(e.into()),
        };
        state.process = connected.process;
        state.exit = connected.exit;
        let client = connected.client;
        tracing::info!(
            server = %name,
            path = %args.node.path(),
            protocol = %connected.hello.protocol_version,
            tools = connected.tools.len(),
            "MCP server connected"
        );
        args.hub.set_catalog(&state.entry, connected.catalog, None);
        args.hub.connected(
            &state.entry,
            client.clone(),
            connected.hello,
            connected.tools,
        );
        if !args.hub.subscribed_uris(&name).is_empty() {
            let (hub, entry, client) = (args.hub.clone(), state.entry.clone(), client.clone());
            tokio::spawn(async move { hub.resubscribe(&entry, &client).await });
        }
        let probe = liveness::run(
            state.entry.clone(),
            client.clone(),
            state.probe_status.clone(),
        );
        let me = myself.clone();
        state.probe = Some(tokio::spawn(async move {
            if let Some(found) = probe.await {
                let _ = me.send_message(McpConnectionMessage::LivenessFailed(found));
            }
        }));
        state.client = Some(client);
        let mut events = connected.events;
        let me = myself.clone();
        state.forwarder = Some(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if me
                    .send_message(McpConnectionMessage::ClientReported(event))
                    .is_err()
                {
                    break;
                }
            }
        }));
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<McpConnectionMessage>,
        state: &mut McpConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(client) = &state.client {
            client.close("connection stopped"); // closes a stdio server's stdin
        }
        if let Some(exit) = &mut state.exit {
            let _ = tokio::time::timeout(STDIN_CLOSE_GRACE, exit.wait_for(Option::is_some)).await;
        }
        if let Some(process) = state.process.take() {
            let _ = process
                .stop_and_wait(
                    Some("connection stopped".into()),
                    Some(state.args.stop_timeout + Duration::from_secs(2)),
                )
                .await;
            process_stopped(&state.args.node);
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<McpConnectionMessage>,
        msg: McpConnectionMessage,
        state: &mut McpConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        let event = match msg {
            McpConnectionMessage::ClientReported(event) => event,
            McpConnectionMessage::LivenessFailed(found) => {
                let reason = found.reason();
                tracing::warn!(server = %state.args.spec.name, path = %state.args.node.path(), %reason, "server unresponsive; failing its calls and restarting it");
                // In-flight calls fail now, with the reason, instead of at their timeouts.
                if let Some(client) = &state.client {
                    client.close(&reason);
                }
                return Err(McpError::Unresponsive {
                    server: state.args.spec.name.clone(),
                    found,
                }
                .into());
            }
        };
        match event {
            ClientEvent::ToolsChanged => {
                let Some(client) = state.client.clone() else {
                    return Ok(());
                };
                client.tools_changed_handled();
                match connect::list_tools(&client, state.args.spec.handshake_timeout).await {
                    Ok(tools) => {
                        tracing::info!(server = %state.args.spec.name, path = %state.args.node.path(), tools = tools.len(), "tool list changed");
                        state.args.hub.set_tools(&state.entry, tools);
                    }
                    Err(e) => {
                        tracing::warn!(server = %state.args.spec.name, path = %state.args.node.path(), error = %e, "re-reading the tool list failed; keeping the old one")
                    }
                }
                Ok(())
            }
            ClientEvent::ResourcesChanged | ClientEvent::PromptsChanged => {
                let (Some(client), Some(hello)) = (&state.client, state.entry.hello()) else {
                    return Ok(());
                };
                let part = if event == ClientEvent::ResourcesChanged {
                    client.resources_changed_handled();
                    CatalogPart::Resources
                } else {
                    client.prompts_changed_handled();
                    CatalogPart::Prompts
                };
                let timeout = state.args.spec.handshake_timeout;
                let (catalog, complete) =
                    connect::read_catalog(client, &hello, Some(part), timeout).await;
                if !complete {
                    tracing::warn!(server = %state.args.spec.name, path = %state.args.node.path(), ?part, "re-reading the list failed; keeping the old one");
                    return Ok(());
                }
                tracing::info!(server = %state.args.spec.name, path = %state.args.node.path(), ?part, resources = catalog.resources.len(), templates = catalog.templates.len(), prompts = catalog.prompts.len(), "list changed");
                state
                    .args
                    .hub
                    .set_catalog(&state.entry, catalog, Some(part));
                Ok(())
            }
            ClientEvent::Closed(reason) => Err(McpError::Disconnected {
                server: state.args.spec.name.clone(),
                reason,
            }
            .into()),
        }
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<McpConnectionMessage>,
        event: SupervisionEvent,
        state: &mut McpConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        let reason = match event {
            SupervisionEvent::ActorFailed(_, err) => error_chain(err.as_ref()),
            SupervisionEvent::ActorTerminated(_, _, reason) => {
                reason.unwrap_or_else(|| "server process ended".into())
            }
            _ => return Ok(()),
        };
        // The server process is gone: fail every in-flight call with the reason, then fail.
        process_stopped(&state.args.node);
        if let Some(client) = &state.client {
            client.close(&reason);
        }
        Err(McpError::Disconnected {
            server: state.args.spec.name.clone(),
            reason,
        }
        .into())
    }
}

/// The server process under `node` is gone (killed, exited, or stopped with its connection):
/// its node says so until the next connect starts another (which sets it running).
fn process_stopped(node: &StatusNode) {
    if let Some(process) = node.find("process") {
        process.set_state(ActorState::Stopped);
    }
}

fn details(entry: &ServerEntry, probe: &ProbeStatus) -> serde_json::Value {
    let spec = entry.spec();
    // The config's unexpanded form, masked: never a secret's value (see `revka_mcp::redact`).
    let target = spec.shown().to_json();
    let hello = entry.hello();
    let client = entry.client();
    let catalog = entry.catalog();
    json!({
        "server": spec.name,
        "transport": spec.transport.kind(),
        "target": target,
        "connected": client.as_ref().is_some_and(|c| c.closed_reason().is_none()),
        "protocol_version": hello.as_ref().map(|h| h.protocol_version.clone()),
        "server_info": hello.as_ref().map(|h| h.server_info.clone()),
        "has_instructions": hello.as_ref().is_some_and(|h| h.instructions.is_some()),
        "tools": entry.tools().len(),
        "resources": catalog.resources.len(),
        "resource_templates": catalog.templates.len(),
        "prompts": catalog.prompts.len(),
        "pending_calls": entry.pending_calls(),
        // Lines of the current connection that were not JSON-RPC (skipped), and the last one.
        "invalid_lines": client.as_ref().map(|c| c.invalid_lines()),
        "last_invalid_line": client.as_ref().and_then(|c| c.last_invalid_line()),
        // The server's own requests on this connection (sampling, elicitation, roots): how
        // they ended and how long the answers took.
        "relayed_requests": client.as_ref().map(|c| c.relayed()),
        // Log messages dropped by the flood limit on this connection.
        "log_messages_dropped": client.as_ref().map(|c| c.dropped_logs()),
        "tool_timeout_secs": spec.tool_timeout.as_secs(),
        // The liveness probe: its policy, pings sent, and the last one's time and latency.
        "liveness": probe.details(spec.ping),
        // OAuth (an http server without an Authorization header): the stored authorization.
        "oauth": oauth_details(&spec),
    })
}

/// `{state, expires_in_secs, scope}` of the server's stored OAuth authorization (never a
/// token), or null when OAuth does not apply.
fn oauth_details(spec: &ServerSpec) -> serde_json::Value {
    let (Some(oauth), TransportSpec::Http { url, .. }) = (&spec.oauth, &spec.transport) else {
        return serde_json::Value::Null;
    };
    match revka_mcp::oauth::stored_state(oauth, url) {
        Ok(AuthState::Authorized { expires_in, scope }) => json!({
            "state": "authorized",
            "expires_in_secs": expires_in,
            "scope": scope,
        }),
        Ok(state) => json!({ "state": state.label() }),
        Err(e) => json!({ "state": "unreadable", "error": e.to_string() }),
    }
}

/// The child spec of a server's connection actor, id `mcp:<name>`. Its shutdown budget covers
/// the stdin grace and the process's SIGTERM → SIGKILL grace.
pub fn connection_spec(
    spec: Arc<ServerSpec>,
    policy: RestartPolicy,
    hub: Arc<McpHub>,
    http: reqwest::Client,
) -> ChildSpec {
    let stop_timeout = match policy.shutdown {
        Shutdown::Timeout(t) => t,
        Shutdown::BrutalKill => Duration::ZERO,
    };
    let mut policy = policy;
    if let Shutdown::Timeout(t) = policy.shutdown {
        policy.shutdown = Shutdown::Timeout(t + STDIN_CLOSE_GRACE + Duration::from_secs(3));
    }
    let id = format!("mcp:{}", spec.name);
    ChildSpec::new(id, "mcp_connection", policy, move |ctx: ChildContext| {
        let args = McpConnectionArguments {
            spec: spec.clone(),
            node: ctx.node,
            hub: hub.clone(),
            http: http.clone(),
            stop_timeout,
        };
        async move {
            let (actor, _) =
                McpConnectionActor::spawn_linked(None, McpConnectionActor, args, ctx.supervisor)
                    .await?;
            Ok(actor.get_cell())
        }
    })
}

/// Spawns the process actor of a stdio server, linked to `owner`.
pub(crate) async fn spawn_process(
    owner: ractor::ActorCell,
    node: &StatusNode,
    spec: crate::process::ProcessSpec,
) -> Result<
    (
        ActorRef<ProcessMessage>,
        tokio::sync::oneshot::Receiver<Result<crate::process::ChildIo, String>>,
    ),
    String,
> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let args = crate::process::ProcessArguments {
        spec: Arc::new(spec),
        node: node.child("process", "process", None),
        io: Some(tx),
    };
    let (actor, _) = ProcessActor::spawn_linked(None, ProcessActor, args, owner)
        .await
        .map_err(|e| e.to_string())?;
    Ok((actor, rx))
}
