//! Opening a connection and running the MCP handshake, shared by the connection actor and the
//! unsupervised [`probe`] (`revka mcp test`, `POST /api/mcp/servers/test`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef};
use revka_mcp::client::{
    CallError, CallOptions, ClientEvent, Inbound, McpClient, Peer, Transport, TransportError,
};
use revka_mcp::http::is_not_streamable;
use revka_mcp::jsonrpc::ErrorObject;
use revka_mcp::protocol::{
    Offers, ServerHello, initialize_params, parse_initialize_result, parse_tools_page,
};
use revka_mcp::spec::{ServerSpec, TransportSpec};
use revka_mcp::stdio::{StdioIo, StdioTransport};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::super::hub::{Catalog, CatalogPart};
use super::{McpConnectionArguments, McpConnectionMessage, McpError, spawn_process};
use crate::process::{ChildIo, ExitInfo, ProcessMessage, ProcessSpec, StdioMode};
use crate::status::{ActorState, StatusNode};

/// `tools/list` pages read before giving up on a server that never ends its list.
const MAX_PAGES: usize = 1000;
/// Tools accepted from one server.
const MAX_TOOLS: usize = 10_000;
/// Resources, templates or prompts accepted from one server, each.
const MAX_ENTRIES: usize = 10_000;
/// Bytes of one list (resources, templates or prompts) accepted from one server, all pages
/// together.
const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;

/// A connected, initialized server.
pub(super) struct Connected {
    pub(super) client: Arc<McpClient>,
    pub(super) hello: ServerHello,
    pub(super) tools: Vec<Value>,
    /// Its resources, templates and prompts (empty parts it does not declare or failed to
    /// list).
    pub(super) catalog: Catalog,
    pub(super) events: mpsc::UnboundedReceiver<ClientEvent>,
    pub(super) process: Option<ActorRef<ProcessMessage>>,
    pub(super) exit: Option<watch::Receiver<Option<ExitInfo>>>,
}

/// An open transport, before the handshake.
pub(super) struct Opened {
    pub(super) client: Arc<McpClient>,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) events: mpsc::UnboundedReceiver<ClientEvent>,
    pub(super) process: Option<ActorRef<ProcessMessage>>,
    pub(super) exit: Option<watch::Receiver<Option<ExitInfo>>>,
}

/// Connects and runs the handshake for the connection actor.
pub(super) async fn connect(
    args: &McpConnectionArguments,
    myself: &ActorRef<McpConnectionMessage>,
) -> Result<Connected, McpError> {
    connect_with(
        &args.spec,
        &args.http,
        &args.node,
        Some(myself.get_cell()),
        args.stop_timeout,
        args.hub.peer(),
    )
    .await
}

/// Opens the transport of `spec` and runs the handshake; what the server sends that no call
/// relates to goes to `peer` (see [`revka_mcp::client::Peer`]).
async fn connect_with(
    spec: &ServerSpec,
    http: &reqwest::Client,
    node: &StatusNode,
    owner: Option<ActorCell>,
    stop_timeout: Duration,
    peer: Option<Arc<dyn Peer>>,
) -> Result<Connected, McpError> {
    let deadline = Instant::now() + spec.handshake_timeout;
    match &spec.transport {
        TransportSpec::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let connect_err = |reason: String| McpError::Connect {
                server: spec.name.clone(),
                reason,
            };
            let mut pspec = ProcessSpec::new(command.clone(), args.clone());
            pspec.shown = Some(spec.shown().line());
            pspec.env = env.clone();
            pspec.cwd = cwd.clone();
            pspec.stdio = StdioMode::Piped;
            pspec.stop_timeout = stop_timeout;
            let owner =
                owner.ok_or_else(|| connect_err("no owner for the server process".into()))?;
            let (process, io_rx) = spawn_process(owner, node, pspec)
                .await
                .map_err(connect_err)?;
            let io = match tokio::time::timeout_at(deadline, io_rx).await {
                Ok(Ok(Ok(io))) => io,
                Ok(Ok(Err(reason))) => return Err(connect_err(reason)),
                Ok(Err(_)) => {
                    return Err(connect_err(
                        "the process actor stopped before starting the server".into(),
                    ));
                }
                Err(_) => return Err(connect_err("timed out starting the server process".into())),
            };
            node.child("process", "process", None)
                .set_state(ActorState::Running);
            let exit = io.exit.clone();
            let (inbound, events) = Inbound::at(&spec.name, node.path(), spec.roots.clone());
            let transport: Arc<dyn Transport> =
                StdioTransport::start(stdio_io(io), inbound.clone());
            let opened = Opened {
                client: Arc::new(McpClient::new(inbound, transport.clone())),
                transport,
                events,
                process: Some(process),
                exit: Some(exit),
            };
            attempt(spec, opened, deadline, peer)
                .await
                .map_err(|(e, _)| e)
        }
        _ => super::remote::connect(spec, http, node.path(), deadline, peer).await,
    }
}

/// What the stdio transport takes of a started child: its pipes, and its exit as a future of
/// how it ended (`exited with status 1 (stderr: …)`), read when the process actor publishes the
/// exit; `None` if the process actor goes away without one.
fn stdio_io(io: ChildIo) -> StdioIo {
    let ChildIo {
        pid,
        stdin,
        stdout,
        mut exit,
        stderr,
    } = io;
    StdioIo {
        pid,
        stdin: Box::new(stdin),
        stdout: Box::new(stdout),
        exit: Box::pin(async move {
            let _ = exit.wait_for(Option::is_some).await;
            ChildIo::describe_exit(&exit, &stderr)
        }),
    }
}

/// Runs the handshake over an open transport. On failure the transport is closed, and the
/// flag says whether the endpoint looked non-streamable (the `url` transport's fallback cue).
pub(super) async fn attempt(
    spec: &ServerSpec,
    opened: Opened,
    deadline: Instant,
    peer: Option<Arc<dyn Peer>>,
) -> Result<Connected, (McpError, bool)> {
    // Offer only what can be answered: the peer's (and its calls' relays') abilities, and
    // roots when the server has configured ones.
    let mut offers = peer.as_ref().map_or(Offers::NONE, |p| p.offers());
    offers.roots |= !spec.roots.is_empty();
    if let Some(peer) = peer {
        opened.client.set_peer(peer);
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    let handshake = handshake(&opened.client, opened.transport.as_ref(), remaining, offers);
    let result = match tokio::time::timeout(remaining, handshake).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::Other(format!(
            "no answer within {}s",
            spec.handshake_timeout.as_secs()
        ))),
    };
    match result {
        Ok((hello, tools)) => {
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            let (catalog, _) = read_catalog(&opened.client, &hello, None, remaining).await;
            Ok(Connected {
                client: opened.client,
                hello,
                tools,
                catalog,
                events: opened.events,
                process: opened.process,
                exit: opened.exit,
            })
        }
        Err(HandshakeError::Call(CallError::Transport {
            source: TransportError::Unauthorized(reason),
            ..
        })) => {
            opened.client.close(&reason);
            Err((
                McpError::NeedsLogin {
                    server: spec.name.clone(),
                    reason,
                },
                false,
            ))
        }
        Err(e) => {
            let not_streamable = matches!(&e, HandshakeError::Call(CallError::Transport { source, .. }) if is_not_streamable(source));
            let mut reason = e.to_string();
            if let Some(garbage) = invalid_output(&opened.client) {
                reason = format!("{reason}; {garbage}");
            }
            opened.client.close(&reason);
            if let Some(p) = &opened.process {
                p.stop(None);
            }
            Err((
                McpError::Handshake {
                    server: spec.name.clone(),
                    reason,
                },
                not_streamable,
            ))
        }
    }
}

/// What a server wrote that was not JSON-RPC, if anything: the likeliest cause of a failed
/// handshake (a server that logs to stdout, or a command that is not an MCP server at all).
fn invalid_output(client: &McpClient) -> Option<String> {
    let lines = client.invalid_lines();
    if lines == 0 {
        return None;
    }
    let last = client.last_invalid_line().unwrap_or_default();
    let (noun, verb) = if lines == 1 {
        ("line", "is")
    } else {
        ("lines", "are")
    };
    Some(format!(
        "the server wrote {lines} {noun} that {verb} not JSON-RPC, the last: {last:?}"
    ))
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    /// A request failed (transport, timeout, server error, closed).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The server answered, but not acceptably.
    #[error("{0}")]
    Other(String),
}

/// The parent of a probe's server process: when the probe ends, or its future is dropped
/// mid-handshake, the owner is killed and ractor takes the linked process actor with it (whose
/// `Drop` kills the process group).
struct ProbeOwner;

impl Actor for ProbeOwner {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        _: ractor::SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(()) // the probe notices a dead process through its pipes
    }
}

struct KillOnDrop(ActorRef<()>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// `initialize` → version check → `notifications/initialized` → every `tools/list` page.
pub(super) async fn handshake(
    client: &McpClient,
    transport: &dyn Transport,
    timeout: Duration,
    offers: Offers,
) -> Result<(ServerHello, Vec<Value>), HandshakeError> {
    let opts = CallOptions {
        timeout,
        ..Default::default()
    };
    let raw = client
        .request("initialize", Some(initialize_params(offers)), &opts)
        .await?;
    let hello = parse_initialize_result(&raw).map_err(|e| HandshakeError::Other(e.to_string()))?;
    transport.negotiated(&hello.protocol_version);
    client.notify("notifications/initialized", None)?;
    let tools = if hello.capabilities.get("tools").is_some() {
        list_tools(client, timeout)
            .await
            .map_err(HandshakeError::Other)?
    } else {
        Vec::new() // the server offers no tools
    };
    Ok((hello, tools))
}

/// Reads `tools/list` to its last page.
pub(super) async fn list_tools(
    client: &McpClient,
    timeout: Duration,
) -> Result<Vec<Value>, String> {
    let page = |raw: &RawValue| {
        let page = parse_tools_page(raw).map_err(|e| e.to_string())?;
        Ok((page.tools, page.next_cursor))
    };
    every_page(client, "tools/list", timeout, MAX_TOOLS, page).await
}

/// Reads what the server declares of resources, resource templates and prompts (`part`: only
/// that part; `None`: all), every page, within `timeout` for each list. A list that fails is
/// logged and left empty (at connect the server's tools are served all the same), and the
/// flag returned is false.
pub(super) async fn read_catalog(
    client: &McpClient,
    hello: &ServerHello,
    part: Option<CatalogPart>,
    timeout: Duration,
) -> (Catalog, bool) {
    let complete = std::sync::atomic::AtomicBool::new(true);
    let declares = |name: &str| hello.capabilities.get(name).is_some_and(|c| !c.is_null());
    let read =
        async |method: &str, field: &str| match list_all(client, method, field, timeout).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(server = %client.server(), %method, error = %e, "listing failed");
                complete.store(false, std::sync::atomic::Ordering::Relaxed);
                Vec::new()
            }
        };
    let mut catalog = Catalog::default();
    let resources = part.is_none_or(|p| p == CatalogPart::Resources) && declares("resources");
    if resources {
        catalog.resources = read("resources/list", "resources").await;
        catalog.templates = read("resources/templates/list", "resourceTemplates").await;
    }
    if part.is_none_or(|p| p == CatalogPart::Prompts) && declares("prompts") {
        catalog.prompts = read("prompts/list", "prompts").await;
    }
    (catalog, complete.into_inner())
}

/// Reads a paginated list (`resources/list`, `prompts/list`, ...) to its last page: the
/// entries of every page's `field`. Bounded in pages, entries and bytes; a server without the
/// method lists nothing.
async fn list_all(
    client: &McpClient,
    method: &str,
    field: &str,
    timeout: Duration,
) -> Result<Vec<Value>, String> {
    let mut bytes = 0;
    let page = |raw: &RawValue| {
        bytes += raw.get().len();
        if bytes > MAX_LIST_BYTES {
            return Err(format!(
                "{method} is larger than {} MiB",
                MAX_LIST_BYTES >> 20
            ));
        }
        let mut page: Value =
            serde_json::from_str(raw.get()).map_err(|e| format!("invalid {method} result: {e}"))?;
        let entries = match page.get_mut(field).map(Value::take) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(format!("{method} result: `{field}` is not an array")),
        };
        let next = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok((entries, next))
    };
    every_page(client, method, timeout, MAX_ENTRIES, page).await
}

/// Calls the paginated `method` page after page (`page` reads one: its entries and the next
/// cursor) until the last, at most [`MAX_PAGES`] pages and `max_entries` entries, refusing a
/// repeated cursor. A server without the method (`-32601`) lists nothing.
async fn every_page(
    client: &McpClient,
    method: &str,
    timeout: Duration,
    max_entries: usize,
    mut page: impl FnMut(&RawValue) -> Result<(Vec<Value>, Option<String>), String>,
) -> Result<Vec<Value>, String> {
    let opts = CallOptions {
        timeout,
        ..Default::default()
    };
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
        let raw = match client.request(method, params, &opts).await {
            Ok(raw) => raw,
            Err(CallError::Rpc { error, .. }) if error.code == ErrorObject::METHOD_NOT_FOUND => {
                return Ok(entries);
            }
            Err(e) => return Err(e.to_string()),
        };
        let (items, next) = page(&raw)?;
        entries.extend(items);
        if entries.len() > max_entries {
            return Err(format!("{method} lists more than {max_entries} entries"));
        }
        match next {
            None => return Ok(entries),
            Some(next) if !seen.insert(next.clone()) => {
                return Err(format!("server repeated the {method} cursor `{next}`"));
            }
            Some(next) => cursor = Some(next),
        }
    }
    Err(format!("{method} did not end within {MAX_PAGES} pages"))
}

/// The result of a one-off handshake with a server that is not (yet) supervised.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// Whether the handshake succeeded.
    pub ok: bool,
    /// Number of tools, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_count: Option<usize>,
    /// Tool names (as the server names them), on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// The full tool definitions, on success (not serialised: reports show names).
    #[serde(skip)]
    pub definitions: Vec<Value>,
    /// What went wrong, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Negotiated protocol version, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Wall time of the whole attempt.
    pub latency_ms: u64,
}

/// Connects to `spec`, runs the handshake, disconnects, and reports. Never panics and never
/// leaves a process behind; bounded by `spec.handshake_timeout`.
pub async fn probe(spec: &ServerSpec, http: &reqwest::Client) -> ProbeReport {
    let start = Instant::now();
    let node = StatusNode::root("probe", "mcp_connection");
    let owner = match ProbeOwner::spawn(None, ProbeOwner, ()).await {
        Ok((owner, _)) => KillOnDrop(owner),
        Err(e) => {
            return ProbeReport {
                ok: false,
                tool_count: None,
                tools: None,
                definitions: Vec::new(),
                error: Some(format!("cannot start the probe: {e}")),
                protocol_version: None,
                latency_ms: 0,
            };
        }
    };
    let result = connect_with(
        spec,
        http,
        &node,
        Some(owner.0.get_cell()),
        Duration::from_secs(2),
        None,
    )
    .await;
    let latency_ms = start.elapsed().as_millis() as u64;
    match result {
        Ok(connected) => {
            connected.client.close("probe finished");
            if let Some(p) = connected.process {
                // Graceful (SIGTERM first); `owner` kills whatever is left when it drops.
                let _ = p.stop_and_wait(None, Some(Duration::from_secs(5))).await;
            }
            drop(owner);
            let names: Vec<String> = connected
                .tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect();
            ProbeReport {
                ok: true,
                tool_count: Some(names.len()),
                tools: Some(names),
                definitions: connected.tools,
                error: None,
                protocol_version: Some(connected.hello.protocol_version),
                latency_ms,
            }
        }
        Err(e) => ProbeReport {
            ok: false,
            tool_count: None,
            tools: None,
            definitions: Vec::new(),
            error: Some(e.to_string()),
            protocol_version: None,
            latency_ms,
        },
    }
}
